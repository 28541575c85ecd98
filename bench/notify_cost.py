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

from bench.round_trips import ENV, Bench, order, rules_doc, signup  # noqa: E402


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=5)
    args = parser.parse_args(argv)
    os.environ.update(ENV)
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
        bench.counter.take()
        from chalicelib.notify import sources

        delivered: list[Any] = []
        sources.outcome_listeners.append(delivered.append)
        poller.drain()
        calls = bench.counter.take()
        sent = [o for o in delivered if o.status == "sent"]
        print("outcomes:", Counter(o.status for o in delivered), [o.error for o in delivered if o.error])
        dynamo = {k: v for k, v in calls.items() if k not in ("DescribeTable",)}
        total = sum(dynamo.values())
        print(f"messages delivered: {len(sent)} ({Counter(o.kind for o in sent)})")
        print(f"DynamoDB round trips by the consumer: {total} ({dict(dynamo)})")
        print(f"SES/SNS calls: {sum(provider.values())} ({dict(provider)})")
        if sent:
            print(f"per message: {total / len(sent):.1f} DynamoDB round trips + "
                  f"{sum(provider.values()) / len(sent):.1f} provider calls")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
