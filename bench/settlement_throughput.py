#!/usr/bin/env python3
"""Settlement aggregates and event throughput, measured (not a test). Run: ``.venv/bin/python bench/settlement_throughput.py``.

The question: does keeping settlement aggregates limit how many events a program can take at once?
In DynamoDB two transactions that write one item conflict (one is cancelled with
``TransactionConflict`` and retried), so the throughput of *concurrent* events is bounded by the
item most of them write. moto does not model that contention, so the bench measures its cause:

1. For ``--events`` ``order.paid`` events of distinct customers at three partners, every item
   each event's ``TransactWriteItems`` writes is recorded. Printed: items per event, the items
   written by more than one event, and the most events sharing one item. With the aggregates fed
   from the stream (``services.settlement_feed``) no event writes a settlement item, so concurrent
   events share nothing and their throughput is not limited by settlement. For comparison the same
   figure for the design we did not choose: one aggregate row per partner and day ADDed inside
   the event (every event of a partner on a day writes it).
2. The stream side: the records of those events handed to the deployed ``table_stream`` handler
   (the one dispatcher) in Lambda-sized batches, twice (a redelivery), with entries counted and
   the wall time of each pass (moto in-process: an order of magnitude, not AWS's figure).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=60)
    args = parser.parse_args()

    from chalicelib.store import transact
    from tests.conftest import fresh_api
    from tests.functional.test_ledger_support import Shop, utc
    from tests.notify_support import stream_poller
    from tests.support import CLOCK

    written: list[list[tuple[str, str]]] = []
    original = transact.Transaction._commit_once

    def recording(self: transact.Transaction, token: str | None) -> None:
        written.append([self._key(op) for op in self.ops if op.kind != "condition_check"])
        original(self, token)

    with fresh_api() as api:
        CLOCK.set(utc("2026-03-10T12:00:00Z"))
        shop = Shop(api, None, partners=3)
        pids = [p["partner_id"] for p in shop.partners]
        doc = {"name": "bench", "currency": "RUB", "point_value_minor": 100, "hold_days": 0,
               "rules": [{"id": "earn", "name": "Earn", "trigger": {"event": "order.paid"},
                          "recipient": {"type": "self"}, "amount": {"rate_bp": 100},
                          "partners": {pids[1]: {"amount": {"rate_bp": 300}}}}]}
        assert api.put(f"/v1/programs/{shop.pid}/rules", doc).status == 200
        transact.Transaction._commit_once = recording  # type: ignore[method-assign]
        started = time.perf_counter()
        for n in range(args.events):
            shop.order(f"c{n}", f"o-{n}", 100_000 + n, at="2026-03-10T10:00:00Z", partner=shop.partners[n % 3])
        events_s = time.perf_counter() - started
        transact.Transaction._commit_once = original  # type: ignore[method-assign]
        event_txs = [keys for keys in written if any(sk.startswith("LEDGER#") for _, sk in keys)]
        shared = Counter(k for keys in event_txs for k in set(keys))
        settle_items = sum(1 for keys in event_txs for pk, _ in keys if pk.startswith(("SETTLE#", "SETTLED#")))
        hot = Counter(f"SETTLE#{shop.pid}|DAY#2026-03-10#PARTNER#{pids[n % 3]}" for n in range(len(event_txs)))
        print(f"events: {len(event_txs)} order.paid at 3 partners, {events_s / len(event_txs) * 1000:.1f} ms each "
              f"in moto (sequential)")
        print(f"items per event transaction: {sum(map(len, event_txs)) / len(event_txs):.1f}; "
              f"settlement items in them: {settle_items}")
        print(f"items written by more than one event: {sum(1 for c in shared.values() if c > 1)}; "
              f"most events sharing one item: {max(shared.values())}")
        print(f"not chosen (a partner-day row ADDed in the event): most events sharing one item: "
              f"{max(hot.values())} of {len(event_txs)} (they would serialise on it)")

        from app import app
        from infra.local_stream import lambda_record

        poller = stream_poller()
        records = poller._new_records()
        arn = "arn:aws:dynamodb:eu-central-1:123456789012:table/bench/stream/x"
        batches = [records[i:i + 100] for i in range(0, len(records), 100)]
        entries = sum(1 for r in records if r["dynamodb"].get("NewImage", {}).get("entity", {}).get("S")
                      == "ledger_entry" and r["eventName"] == "INSERT")
        for label in ("first delivery", "redelivery"):
            started = time.perf_counter()
            for batch in batches:
                reply = app.handler_map["table_stream"](
                    {"Records": [lambda_record(r, arn, "eu-central-1") for r in batch]}, None)
                assert reply == {"batchItemFailures": []}, reply
            took = time.perf_counter() - started
            print(f"stream {label}: {len(records)} records ({entries} ledger entries) in {len(batches)} batch(es), "
                  f"{took:.2f} s (includes the other handlers: notifications)")
        body: Any = api.get(f"/v1/programs/{shop.pid}/settlement?from=2026-03-10&to=2026-03-10").body
        funded = sum(p["funded"] for p in body["partners"])
        print(f"settlement after both deliveries: funded {funded} points over {len(body['partners'])} partners "
              f"(each entry counted once: liability change {body['liability_change_points']})")


if __name__ == "__main__":
    main()
