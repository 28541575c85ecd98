#!/usr/bin/env python3
"""CPU per webhook of the local run's engine, in one process and one thread (not a test).

    .venv/bin/python bench/local_engine.py --webhooks 400 --customers 40 [--profile out.pstats]

What ``bench/local_run.py`` measures over HTTP, without the HTTP server, the threads and the
machine's load in the way: moto with the local run's adjustments (``infra/moto_tuning.py``), the table, a program with the demo's
rules, then signed ``order.paid`` webhooks through the Chalice app (``chalice.test.Client``), the
table's stream read after every 20 webhooks by the same poller the local run uses
(``infra/local_stream.py``: notifications, analytics, settlement). Prints the process's CPU time
per webhook for the requests and for the stream, so a change to the engine can be compared on a
shared machine (CPU time is what the load disturbs least; compare ratios of runs made together).
The stream's CPU is also split into the part spent inside moto (``stream_moto_ms_cpu``: every
``BaseResponse.dispatch``, DynamoDB, DynamoDB Streams and SES, counted per thread with
``time.thread_time``) and the consumers' own (``stream_own_ms_cpu``: the handlers, PynamoDB, botocore,
rendering; what a Lambda consumer is billed for, moto's share being the network wait there).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--webhooks", type=int, default=400)
    parser.add_argument("--customers", type=int, default=40)
    parser.add_argument("--every", type=int, default=20, help="read the stream after this many webhooks")
    parser.add_argument("--profile", type=Path, help="write cProfile statistics of the measured part here")
    args = parser.parse_args(argv)

    from bench.local_run import expected_balances, order_event, plan
    from infra.local_run import DEMO_RULES
    from tests.conftest import moto_aws

    with moto_aws():
        from app import app

        engine = _meter_engine()
        from infra.local_stream import StreamPoller
        from tests.conftest import OPERATOR_KEY
        from tests.support import ApiClient

        api = ApiClient(app, OPERATOR_KEY)
        api.check_openapi = False
        program = api.create_program(name="Engine bench")
        pid = program["program_id"]
        partner = api.create_partner(pid)
        assert api.put(f"/v1/programs/{pid}/rules", DEMO_RULES).status == 200
        poller = StreamPoller(app.handler_map["table_stream"], log=lambda _m: None)
        poller.drain()
        people = plan(args.customers, args.webhooks, 0.25, 3, 1)
        sends = [(p, 0) for level in range(4) for p in people if p.level == level]
        sends += [(p, n) for p in people for n in range(1, len(p.orders))]
        profile = cProfile.Profile() if args.profile else None
        request_cpu = stream_cpu = 0.0
        wall = time.perf_counter()
        if profile:
            profile.enable()
        for count, (person, number) in enumerate(sends, 1):
            event = order_event(person, number)
            started = time.process_time()
            reply = api.send_event(partner, event)
            request_cpu += time.process_time() - started
            assert reply.status == 200, reply.body
            if number == 0:
                person.member_id, person.code = reply.body["member"]["member_id"], reply.body["member"]["code"]
            if count % args.every == 0 or count == len(sends):
                started = time.process_time()
                engine["on"] = True
                poller.drain()
                engine["on"] = False
                stream_cpu += time.process_time() - started
        if profile:
            profile.disable()
            profile.dump_stats(str(args.profile))
        wall = time.perf_counter() - wall
        expected = expected_balances(people, int(program.get("point_value_minor", 100)))
        wrong = 0
        for person in people:
            body = api.get(f"/v1/programs/{pid}/members/{person.member_id}/balance").body
            wrong += body["available"] != expected[person.external_id]
    n = len(sends)
    print(json.dumps({
        "webhooks": n, "request_ms_cpu": round(request_cpu / n * 1000, 1), "stream_ms_cpu": round(stream_cpu / n * 1000, 1),
        "stream_moto_ms_cpu": round(engine["cpu"] / n * 1000, 1),
        "stream_own_ms_cpu": round((stream_cpu - engine["cpu"]) / n * 1000, 1),
        "total_ms_cpu": round((request_cpu + stream_cpu) / n * 1000, 1), "wall_s": round(wall, 1),
        "balances_wrong": wrong, "dead_letters": len(poller.dead_letters),
    }))
    return 0 if not wrong else 1


def _meter_engine() -> dict[str, Any]:
    """Count the CPU of every thread inside moto's ``BaseResponse.dispatch`` while ``meter["on"]`` (the stream)."""
    from moto.core.responses import BaseResponse

    meter: dict[str, Any] = {"on": False, "cpu": 0.0}
    inside = threading.local()
    original = BaseResponse.dispatch.__func__  # type: ignore[attr-defined]

    def dispatch(cls: Any, *args: Any, **kwargs: Any) -> Any:
        if not meter["on"] or getattr(inside, "depth", 0):
            return original(cls, *args, **kwargs)
        inside.depth = 1
        started = time.thread_time()
        try:
            return original(cls, *args, **kwargs)
        finally:
            meter["cpu"] += time.thread_time() - started
            inside.depth = 0

    BaseResponse.dispatch = classmethod(dispatch)  # type: ignore[method-assign,assignment]
    return meter


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
