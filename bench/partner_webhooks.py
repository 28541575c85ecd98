#!/usr/bin/env python3
"""Outgoing partner webhooks: DynamoDB work per message, and the sender's pace (not a test).

Run: ``.venv/bin/python bench/partner_webhooks.py [--orders 200] [--endpoints 2]``.

In process, in moto, through ``chalice.test.Client``: one partner with ``endpoints`` endpoints on a
local ``http.server`` receiver (the local run's setting allows 127.0.0.1), ``orders`` paid orders, each
posting one cashback reward (so ``orders * endpoints`` messages). It prints, for the stream fan-out
(reading the table's stream as Lambda does) and for the sender's runs: DynamoDB round trips per message
and the messages per second the sender delivered (its 8 parallel requests against the receiver on this
machine; moto's time included). Figures are printed, never asserted (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.round_trips import ENV  # noqa: E402

RULES = {"hold_days": 0, "rules": [{"id": "cashback", "trigger": {"event": "order.paid"},
                                    "recipient": {"type": "self"}, "amount": {"rate_bp": 500}}]}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=200)
    parser.add_argument("--endpoints", type=int, default=2)
    args = parser.parse_args(argv)
    os.environ.update({**ENV, "SARAFAN_WEBHOOK_ALLOW_ANY_TARGET": "1"})
    from moto import mock_aws

    from chalicelib.domain import clock
    from chalicelib.services import ports

    with mock_aws():
        from bench.round_trips import Bench, provision
        from chalicelib.store.db import raw_client

        provision()
        from chalicelib.jobs import partner_webhooks as sender
        from tests.functional.test_partner_webhooks_delivery import Receiver
        from tests.notify_support import stream_poller

        receiver = Receiver()
        calls: list[str] = []
        raw_client().meta.events.register("before-call.dynamodb", lambda model, **_: calls.append(model.name))
        try:
            bench = Bench()
            program = bench.call("POST", "/v1/programs", {"name": "Webhooks"})
            pid = program["program_id"]
            partner = bench.call("POST", f"/v1/programs/{pid}/partners", {"name": "Shop"})
            bench.call("PUT", f"/v1/programs/{pid}/rules", RULES)
            for i in range(args.endpoints):
                bench.call("POST", f"/v1/programs/{pid}/partners/{partner['partner_id']}/webhook-endpoints",
                           {"url": f"{receiver.url}/{i}", "event_types": ["reward.posted"]})
            poller = stream_poller()
            poller.drain()
            for i in range(args.orders):
                bench.send(partner, {"type": "order.paid", "occurred_at": clock.iso(ports.current().clock.now())[:19] + "Z",
                                     "object": {"type": "order", "id": f"o-{i}"}, "customer": {"id": f"c{i}"},
                                     "order": {"total": 100_000, "currency": "RUB"}})
            calls.clear()
            poller.drain()
            fan_out = [c for c in calls if c in ("PutItem", "Query")]
            messages = args.orders * args.endpoints
            calls.clear()
            started = time.perf_counter()
            runs = 0
            while len(receiver.requests) < messages and runs < 100:
                sender.run()
                runs += 1
            seconds = time.perf_counter() - started
            sent = [c for c in calls if c in ("GetItem", "UpdateItem", "Query")]
        finally:
            receiver.stop()
    print(f"{args.orders} orders x {args.endpoints} endpoints = {messages} messages (moto in process)")
    print(f"stream consumer (every handler, the delivery is one of them): {fan_out.count('PutItem') / messages:.2f} PutItem + "
          f"{fan_out.count('Query') / messages:.3f} Query per message (endpoints read once per partner and batch)")
    print(f"sender: {runs} run(s), {len(receiver.requests)} delivered in {seconds:.2f} s "
          f"({len(receiver.requests) / seconds:.0f} messages/s); per message {sent.count('UpdateItem') / messages:.2f} "
          f"UpdateItem, {sent.count('GetItem') / messages:.3f} GetItem, {sent.count('Query') / messages:.3f} Query")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
