#!/usr/bin/env python3
"""What the table's stream consumers cost per order, per handler module, counted (not a test).

    .venv/bin/python bench/consumer_cost.py [--webhooks 200 --customers 40] [--skip-mix] [--cpu-orders 20]

Three parts, all in-process moto with the local run's engine (``infra/moto_tuning.py``), the stream read
as Lambda would (``infra/local_stream.py``, ``app.handler_map["table_stream"]``):

1. **One order** (``bench/round_trips.py``'s headline case, members with an e-mail address so that their
   messages go out): a referred buyer's depth-3 first order, then
   the same buyer's repeat order; after each, the stream is drained and every handler module's DynamoDB
   calls are metered (write and read units from the real request and item bytes, ``bench/capacity.py``).
   A handler's derived items (messages) come back through the stream and are counted too.
2. **The local run's mix** (``bench/local_run.py``'s plan: the demo rules, 25 % of the customers referred in
   chains of 3, first orders level by level, then repeat orders), the stream read after every 20 webhooks as
   ``bench/local_engine.py`` does: write/read units per webhook per module (a metered pass) and CPU
   milliseconds per webhook per module (a second, unmetered pass: the meter's own work is not the
   consumers'). CPU is the process's time (``time.process_time``), threads included. The metered passes
   deliver one member at a time (``notify.sources.MAX_PARALLEL = 1``: the meter follows one call at a time).

3. **Stream CPU per order** (``--cpu-orders``, default 20): the headline case again, unmetered, for that
   many buyers (each a depth-3 first order on a chain of its own, then a repeat order), the stream drained
   after each order. ``time.process_time`` is split three ways: "handlers" (while a handler module runs: a
   flag the metering wrapper sets), "function" (the whole stream Lambda invocation,
   ``app.handler_map["table_stream"]``: decoding, dispatch and the handlers) and "poller" (the rest of
   ``poller.drain()``: DescribeStream/GetShardIterator/GetRecords and the record conversion, Lambda's event
   source mapping on AWS, not billed to the function). In each, "moto" is the time moto spent answering the
   AWS calls made there (``AwsClock``: ``BotocoreStubber.__call__``, network time on AWS) and "own" the rest:
   the function's own CPU is what Lambda bills (botocore's serialising, signing and parsing included: this
   part sends every call the usual way, without the local engine's in-process hop,
   ``infra.moto_tuning.DIRECT_CALLS``). The AWS calls per order are printed for each of the three, the
   round trips and provider calls whose latency adds to the billed duration on AWS in the first.

Figures are printed (docs/cost.md, "Stream consumers"), never asserted.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.round_trips import ENV, MAX_DEPTH, Bench, order, provision, rules_doc, signup  # noqa: E402

SHORT = {"chalicelib.analytics.consumer": "analytics", "chalicelib.notify.sources": "notifications",
         "chalicelib.services.settlement_feed": "settlement", "chalicelib.notify.partner_events": "partner events",
         "chalicelib.notify.pool_alerts": "pool alerts"}


class Slot:
    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.wru = 0.0
        self.rru = 0.0
        self.cpu = 0.0
        self.invocations = 0
        self.wru_by_item: Counter[str] = Counter()


class Metered:
    """Every registered stream handler wrapped: its DynamoDB usage (with a meter) and CPU, by module."""

    def __init__(self, meter: Any | None) -> None:
        from chalicelib.notify import dispatcher

        self.meter = meter
        self.by_module: dict[str, Slot] = {}
        self.running = 0  # handlers running now (the dispatcher calls them one at a time)
        if hasattr(dispatcher, "wrap_handlers"):
            self.restore = dispatcher.wrap_handlers(self._wrap)
        else:  # a tree from before handlers of several item kinds (to measure "before")
            dispatcher._load()
            saved = {entity: list(handlers) for entity, handlers in dispatcher._handlers.items()}
            for entity, handlers in dispatcher._handlers.items():
                dispatcher._handlers[entity] = [self._wrap(h) for h in handlers]

            def restore() -> None:
                dispatcher._handlers.clear()
                dispatcher._handlers.update(saved)

            self.restore = restore

    def _wrap(self, handler: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any, **kwargs: Any) -> Any:
            outer = self.meter.take() if self.meter else None
            self.running += 1  # AwsClock counts moto's time only while a handler runs
            started = time.process_time()
            try:
                return handler(*args, **kwargs)
            finally:
                cpu = time.process_time() - started
                self.running -= 1
                slot = self.by_module.setdefault(handler.__module__, Slot())
                slot.cpu += cpu
                slot.invocations += 1
                if self.meter is not None:
                    used = self.meter.take()
                    slot.calls.update(used.calls)
                    slot.wru += used.wru
                    slot.rru += used.rru
                    slot.wru_by_item.update(used.wru_by_entity)
                    self.meter.usage = outer
        run.__module__ = handler.__module__
        return run

    def clear(self) -> None:
        self.by_module.clear()


def _table(title: str, by_module: dict[str, Slot], per: float, cpu: bool, items: bool = False) -> None:
    """Per consumer: write/read units and round trips (metered), or CPU milliseconds (``cpu``), per ``per``."""
    print(title)
    print(f"  {'consumer':<16} {'CPU ms':>7}" if cpu else f"  {'consumer':<16} {'WRU':>7} {'RRU':>6} {'round trips':>11}  calls")
    total = Slot()
    for module, slot in sorted(by_module.items(), key=lambda kv: -(kv[1].cpu if cpu else kv[1].wru)):
        total.wru += slot.wru
        total.rru += slot.rru
        total.cpu += slot.cpu
        total.calls.update(slot.calls)
        name = SHORT.get(module, module)
        if cpu:
            print(f"  {name:<16} {slot.cpu / per * 1000:>7.1f}")
            continue
        print(f"  {name:<16} {slot.wru / per:>7.1f} {slot.rru / per:>6.1f} {sum(slot.calls.values()) / per:>11.1f}"
              f"  {dict(slot.calls)}")
        if items and slot.wru_by_item:
            print("    WRU by item written: " + ", ".join(f"{name} {units / per:g}"
                                                        for name, units in slot.wru_by_item.most_common()))
    if cpu:
        print(f"  {'all consumers':<16} {total.cpu / per * 1000:>7.1f}")
    else:
        print(f"  {'all consumers':<16} {total.wru / per:>7.1f} {total.rru / per:>6.1f} "
              f"{sum(total.calls.values()) / per:>11.1f}")



def _bench_program(bench: Any) -> tuple[dict[str, Any], Callable[..., dict[str, Any]]]:
    """A program with the bench's rules and one partner: (the partner, how to sign up a member with an e-mail,
    so the messages are sent, optionally referred by a code)."""
    program = bench.call("POST", "/v1/programs", {"name": "Bench", "settings": {"max_depth": MAX_DEPTH}})
    pid = program["program_id"]
    partner = bench.call("POST", f"/v1/programs/{pid}/partners", {"name": "Shop"})
    bench.call("PUT", f"/v1/programs/{pid}/rules", rules_doc(MAX_DEPTH))

    def member(name: str, code: str | None = None) -> dict[str, Any]:
        event = signup(name, code)
        event["customer"]["email"] = f"{name}@example.com"
        return bench.send(partner, event)["member"]  # type: ignore[no-any-return]

    return partner, member


def one_order() -> None:
    """Part 1: a depth-3 first order and a repeat order, metered per consumer."""
    from moto import mock_aws

    from chalicelib.domain import clock
    from chalicelib.notify import sources
    from tests.conftest import reset_process_state
    from tests.support import CLOCK

    sources.MAX_PARALLEL = 1  # the meter follows one call at a time

    reset_process_state()  # the production ports on the tests' clock (tests.support.CLOCK)
    CLOCK.set(clock.parse_iso("2026-01-16T12:00:00Z"))
    with mock_aws():
        provision()
        from chalicelib import aws

        aws.client("ses").verify_email_identity(EmailAddress=ENV["SARAFAN_SES_SENDER"])
        bench = Bench()
        partner, member = _bench_program(bench)

        member("warmup")
        chain = [member("chain0")]
        for i in range(1, 3):
            chain.append(member(f"chain{i}", chain[-1]["code"]))
        member("buyer", chain[2]["code"])
        from app import app
        from infra.local_stream import StreamPoller

        poller = StreamPoller(app.handler_map["table_stream"], log=lambda _m: None)
        metered = Metered(bench.meter)
        poller.drain()
        metered.clear()
        bench.meter.take()
        reply = bench.send(partner, order("buyer", "o-1"))
        poller.drain()
        _table(f"depth-3 first order ({len(reply['rewards']['postings'])} postings), per order:",
               metered.by_module, 1, cpu=False, items=True)
        metered.clear()
        bench.meter.take()
        reply = bench.send(partner, order("buyer", "o-2"))
        poller.drain()
        _table(f"repeat order ({len(reply['rewards']['postings'])} postings), per order:", metered.by_module, 1,
               cpu=False, items=True)
        metered.restore()
    CLOCK.set(None)


class AwsClock:
    """CPU spent by moto answering AWS calls in process (``BotocoreStubber.__call__``, what botocore's
    ``before-send`` hands the request to), by where the call was made (``where()``: "handler" while a stream
    handler runs, the metering wrapper's flag; "dispatch" in the stream function outside the handlers; "poller"
    outside the function). In the handlers that is their DynamoDB, SES and SNS calls: network time on AWS, not
    the function's CPU. In the poller, its own DescribeStream/GetShardIterator/GetRecords (Lambda's event
    source mapping on AWS, not the function's). Calls are counted here too, by the ``before-send`` event name, so
    every client in the process is seen (the poller's stream client included). The app's side of a call
    (botocore serialising, signing and parsing, PynamoDB) stays in the handlers' own CPU. Only with the local
    engine's in-process hop off (``infra.moto_tuning.DIRECT_CALLS``): that hop answers DynamoDB calls in a
    ``before-call`` handler, outside the stubber, and skips botocore's own work, which AWS would not."""

    def __init__(self, where: Callable[[], str]) -> None:
        from moto.core.botocore_stubber import BotocoreStubber

        self.where = where
        self.clear()
        self._stubber, self._call = BotocoreStubber, BotocoreStubber.__call__
        clock = self

        def timed(stubber: Any, event_name: str, *args: Any, **kwargs: Any) -> Any:
            bucket = clock.where()
            name = ".".join(event_name.split(".")[1:3])  # before-send.<service>.<Operation>
            started = time.process_time()
            try:
                return clock._call(stubber, event_name, *args, **kwargs)
            finally:
                clock.cpu[bucket] += time.process_time() - started
                clock.calls[bucket][name] += 1

        BotocoreStubber.__call__ = timed  # type: ignore[method-assign,assignment]

    def clear(self) -> None:
        self.cpu: dict[str, float] = dict.fromkeys(("handler", "dispatch", "poller"), 0.0)
        self.calls: dict[str, Counter[str]] = {bucket: Counter() for bucket in ("handler", "dispatch", "poller")}

    def restore(self) -> None:
        self._stubber.__call__ = self._call  # type: ignore[method-assign]


def order_cpu(orders: int) -> None:
    """Part 3: the handlers' CPU per depth-3 first order and per repeat order, unmetered."""
    from moto import mock_aws

    from chalicelib.domain import clock
    from chalicelib.notify import sources
    from infra import moto_tuning
    from tests.conftest import reset_process_state
    from tests.support import CLOCK

    reset_process_state()
    sources.MAX_PARALLEL = 1  # as in the metered part (one member's deliveries at a time)
    moto_tuning.DIRECT_CALLS[0] = False  # every call the way botocore makes it to AWS: moto in the stubber only
    CLOCK.set(clock.parse_iso("2026-01-16T12:00:00Z"))
    with mock_aws():
        provision()
        from chalicelib import aws

        aws.client("ses").verify_email_identity(EmailAddress=ENV["SARAFAN_SES_SENDER"])
        bench = Bench()
        events = bench.meter.client.meta.events  # the meter's hooks off: its work is not the consumers'
        events.unregister("before-call.dynamodb", bench.meter._before)
        events.unregister("after-call.dynamodb", bench.meter._after)
        partner, member = _bench_program(bench)

        member("warmup")
        from app import app
        from infra.local_stream import StreamPoller

        function_running = [0]

        def function(event: Any, context: Any) -> Any:  # the stream Lambda's entry: dispatch + handlers
            function_running[0] += 1
            started = time.process_time()
            try:
                return app.handler_map["table_stream"](event, context)
            finally:
                function_cpu[0] += time.process_time() - started
                function_running[0] -= 1

        function_cpu = [0.0]
        poller = StreamPoller(function, log=lambda _m: None)
        metered = Metered(None)
        aws_clock = AwsClock(lambda: "handler" if metered.running else "dispatch" if function_running[0] else "poller")
        results: dict[str, dict[str, Any]] = {}
        for kind in ("first", "repeat"):
            total: dict[str, Any] = {"drain": 0.0, "function": 0.0, "handlers": 0.0, "moto": dict.fromkeys(aws_clock.cpu, 0.0),
                                     "calls": {b: Counter() for b in aws_clock.calls}, "modules": Counter()}
            for n in range(orders + 1):  # the first of each kind warms the consumers' code paths, not counted
                buyer = f"cpu{n}"
                if kind == "first":  # every buyer its own chain of 3: no member's daily message cap is reached
                    code = None
                    for level in range(3):
                        code = member(f"{buyer}up{level}", code)["code"]
                    member(buyer, code)
                poller.drain()
                bench.send(partner, order(buyer, f"{buyer}-{kind}"))
                metered.clear()
                aws_clock.clear()
                function_cpu[0] = 0.0
                started = time.process_time()
                poller.drain()
                drain = time.process_time() - started
                if n == 0:
                    continue
                total["drain"] += drain
                total["function"] += function_cpu[0]
                total["handlers"] += sum(slot.cpu for slot in metered.by_module.values())
                for bucket, cpu in aws_clock.cpu.items():
                    total["moto"][bucket] += cpu
                for bucket, calls in aws_clock.calls.items():
                    total["calls"][bucket].update(calls)
                for module, slot in metered.by_module.items():
                    total["modules"][SHORT.get(module, module)] += slot.cpu
            results[kind] = total
        metered.restore()
        aws_clock.restore()
    moto_tuning.DIRECT_CALLS[0] = True
    CLOCK.set(None)

    def ms(seconds: float) -> str:
        return f"{seconds / orders * 1000:.1f}"

    print(f"\nstream CPU per order, unmetered, mean of {orders} orders each (stream drained after every order),"
          " ms of CPU (time.process_time):")
    print(f"  {'order':<14} {'handlers':>8} {'moto':>6} {'own':>6} | {'function':>8} {'moto':>6} {'own':>6} | "
          f"{'poller':>6} {'moto':>6}  per module (handlers)")
    for kind, t in results.items():
        label = "depth-3 first" if kind == "first" else "repeat"
        moto = t["moto"]
        function_aws = moto["handler"] + moto["dispatch"]
        per_module = ", ".join(f"{name} {ms(cpu)}" for name, cpu in sorted(t["modules"].items(), key=lambda kv: -kv[1]))
        print(f"  {label:<14} {ms(t['handlers']):>8} {ms(moto['handler']):>6} {ms(t['handlers'] - moto['handler']):>6} | "
              f"{ms(t['function']):>8} {ms(function_aws):>6} {ms(t['function'] - function_aws):>6} | "
              f"{ms(t['drain'] - t['function']):>6} {ms(moto['poller']):>6}  {per_module}")
        for bucket, where in (("handler", "in the handlers"), ("dispatch", "in the function outside the handlers"),
                              ("poller", "in the poller (stream reads)")):
            calls = t["calls"][bucket]
            print(f"    AWS calls per order {where}: "
                  + (", ".join(f"{name} {count / orders:g}" for name, count in sorted(calls.items())) or "-"))
    print("  handlers: while a stream handler module runs (the metering wrapper's flag); function: the whole stream\n"
          "  Lambda invocation (app.handler_map['table_stream']: decoding, dispatch and the handlers); poller: the rest of\n"
          "  poller.drain() (DescribeStream/GetShardIterator/GetRecords and the record conversion: Lambda's event source\n"
          "  mapping on AWS, not billed to the function). moto: moto answering the AWS calls made there in process\n"
          "  (BotocoreStubber.__call__), network time on AWS; own: the column before minus moto, the CPU itself\n"
          "  (botocore's and PynamoDB's side of the calls included); function own is what Lambda bills as CPU.")


def mix(webhooks: int, customers: int, every: int, meter: bool) -> tuple[dict[str, Slot], int, float, float]:
    """Part 2: the local run's workload; returns (by module, webhooks, request CPU s, stream CPU s)."""
    from bench.local_run import order_event, plan
    from infra.local_run import DEMO_RULES
    from tests.conftest import reset_process_state

    reset_process_state()
    from moto import mock_aws

    from chalicelib.notify import sources

    # The meter follows one call at a time; unmetered, members are delivered concurrently as in the local run.
    sources.MAX_PARALLEL = 1 if meter else 8

    with mock_aws():
        provision()
        from chalicelib import aws

        aws.client("ses").verify_email_identity(EmailAddress=ENV["SARAFAN_SES_SENDER"])
        bench = Bench()
        if not meter:  # the meter's hooks off: its own reads are not the consumers' CPU
            events = bench.meter.client.meta.events
            events.unregister("before-call.dynamodb", bench.meter._before)
            events.unregister("after-call.dynamodb", bench.meter._after)
        program = bench.call("POST", "/v1/programs", {"name": "Mix"})
        pid = program["program_id"]
        partner = bench.call("POST", f"/v1/programs/{pid}/partners", {"name": "Shop"})
        bench.call("PUT", f"/v1/programs/{pid}/rules", DEMO_RULES)
        from app import app
        from infra.local_stream import StreamPoller

        poller = StreamPoller(app.handler_map["table_stream"], log=lambda _m: None)
        poller.drain()
        metered = Metered(bench.meter if meter else None)
        people = plan(customers, webhooks, 0.25, 3, 1)
        sends = [(p, 0) for level in range(4) for p in people if p.level == level]
        sends += [(p, n) for p in people for n in range(1, len(p.orders))]
        request_cpu = stream_cpu = 0.0
        for count, (person, number) in enumerate(sends, 1):
            started = time.process_time()
            reply = bench.send(partner, order_event(person, number))
            request_cpu += time.process_time() - started
            if number == 0:
                person.member_id, person.code = reply["member"]["member_id"], reply["member"]["code"]
            if count % every == 0 or count == len(sends):
                started = time.process_time()
                poller.drain()
                stream_cpu += time.process_time() - started
        assert not poller.dead_letters, poller.dead_letters[:1]
        metered.restore()
        return metered.by_module, len(sends), request_cpu, stream_cpu


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--webhooks", type=int, default=200)
    parser.add_argument("--customers", type=int, default=40)
    parser.add_argument("--every", type=int, default=20, help="read the stream after this many webhooks")
    parser.add_argument("--skip-mix", action="store_true")
    parser.add_argument("--cpu-orders", type=int, default=20, help="orders of each kind for the CPU part (0: skip)")
    args = parser.parse_args(argv)
    os.environ.update(ENV)
    import logging

    logging.disable(logging.WARNING)  # the JSON log lines are not the figures
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    one_order()
    if args.cpu_orders:
        order_cpu(args.cpu_orders)
    if args.skip_mix:
        return 0
    by_module, n, _, _ = mix(args.webhooks, args.customers, args.every, meter=True)
    _table(f"\nlocal-run mix ({n} webhooks, stream read every {args.every}), per webhook:", by_module, n, cpu=False)
    by_module, n, request_cpu, stream_cpu = mix(args.webhooks, args.customers, args.every, meter=False)
    _table("\nthe same mix unmetered, CPU per webhook (handlers only; the stream reads and dispatch are in the "
           "stream total):", by_module, n, cpu=True)
    print(f"  request CPU {request_cpu / n * 1000:.1f} ms per webhook, stream CPU {stream_cpu / n * 1000:.1f} ms "
          f"per webhook (reads + dispatch + handlers), total {(request_cpu + stream_cpu) / n * 1000:.1f} ms")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
