#!/usr/bin/env python3
"""What the notification consumer costs per message, counted (not a test).

Run: ``.venv/bin/python bench/notify_cost.py [--members 5]``. In-process moto. A chain of
``--members`` members signs up (each referrer gets ``friend_joined``), then the last one orders
(buyer, referrer and level-2 referrer are notified). The stream is read as Lambda would
(``infra/local_stream.py``) and every DynamoDB round trip and SES/SNS call the handler makes is
counted, per delivered message. The webhook's own round trips are in ``bench/round_trips.py``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.round_trips import ENV, Bench, logs_to_stderr, order, rules_doc, signup  # noqa: E402


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=5)
    args = parser.parse_args(argv)
    os.environ.update(ENV)
    logs_to_stderr()  # stdout is the figures
    from moto import mock_aws

    with mock_aws():
        from chalicelib import aws
        from chalicelib.store.tables import create_table

        create_table()
        aws.client("ses").verify_email_identity(EmailAddress=ENV["SARAFAN_SES_SENDER"])
        bench = Bench()
        program = bench.call("POST", "/v1/programs", {"name": "Bench"})
        partner = bench.call("POST", f"/v1/programs/{program['program_id']}/partners", {"name": "P"})
        bench.call("PUT", f"/v1/programs/{program['program_id']}/rules", rules_doc(2))
        provider: Counter[str] = Counter()

        def count_provider(model: Any = None, **_: Any) -> None:
            provider[model.name] += 1

        for service in ("ses", "sns"):
            aws.client(service).meta.events.register(f"before-call.{service}", count_provider)
        from app import app
        from infra.local_stream import StreamPoller

        poller = StreamPoller(app.handler_map["table_stream"], log=lambda _m: None)
        previous: dict[str, Any] | None = None
        for n in range(args.members):
            event = signup(f"m{n}", previous["code"] if previous else None)
            event["customer"]["email"] = f"m{n}@example.com"
            member = bench.send(partner, event)["member"]
            previous = member
        bench.send(partner, order(f"m{args.members - 1}", "o-1"))
        # Stream reads by the poller are not the handler's cost: count them apart.
        bench.meter.take()
        from chalicelib.notify import sources

        sources.MAX_PARALLEL = 1  # one member's deliveries at a time: the meter follows one call at a time
        delivered: list[Any] = []
        sources.outcome_listeners.append(delivered.append)
        # The table's one stream consumer also runs other features' handlers (analytics, settlement feed):
        # attribute each handler's DynamoDB calls to its module, so the notification cost stands apart.
        from chalicelib.notify import dispatcher

        by_module: dict[str, Any] = {}

        def metered(handler: Any) -> Any:
            def run(records: Any) -> Any:
                bench.meter.take()
                try:
                    return handler(records)
                finally:
                    used = bench.meter.take()
                    slot = by_module.setdefault(handler.__module__, {"calls": Counter(), "wru": 0.0, "rru": 0.0})
                    slot["calls"].update(used.calls)
                    slot["wru"] += used.wru
                    slot["rru"] += used.rru
            return run

        dispatcher.wrap_handlers(metered)
        poller.drain()
        bench.meter.take()
        for module, slot in sorted(by_module.items()):
            print(f"handler module {module}: {sum(slot['calls'].values())} round trips ({dict(slot['calls'])}), "
                  f"{slot['wru']:.0f} WRU, {slot['rru']:.0f} RRU")
        notify = by_module.get("chalicelib.notify.sources", {"calls": Counter(), "wru": 0.0, "rru": 0.0})
        calls = notify["calls"]
        sent = [o for o in delivered if o.status == "sent"]
        print("outcomes:", Counter(o.status for o in delivered), [o.error for o in delivered if o.error])
        dynamo = {k: v for k, v in calls.items() if k not in ("DescribeTable",)}
        total = sum(dynamo.values())
        print(f"messages delivered: {len(sent)} ({Counter(o.kind for o in sent)})")
        print(f"DynamoDB round trips by the notification handlers: {total} ({dict(dynamo)})")
        print(f"SES/SNS calls: {sum(provider.values())} ({dict(provider)})")
        if sent:
            print(f"per message: {total / len(sent):.1f} DynamoDB round trips + "
                  f"{sum(provider.values()) / len(sent):.1f} provider calls, "
                  f"{notify['wru'] / len(sent):.1f} WRU + {notify['rru'] / len(sent):.1f} RRU")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
