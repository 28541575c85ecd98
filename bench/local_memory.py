#!/usr/bin/env python3
"""What a long local run keeps in memory, per webhook (not a test).

    .venv/bin/python bench/local_memory.py --webhooks 2000 --customers 200 [--tracemalloc]

Drives the app and its stream consumer in one process and one thread, as ``bench/local_engine.py`` does
(moto with ``infra/moto_tuning.py``, the demo's rules, signed ``order.paid`` webhooks, the stream read
after every 20), then, after the first orders (``--customers`` of them: every member created) and at the
end, counts what moto holds: the table's items by kind (the ``entity`` attribute; their DynamoDB JSON and
their packed bytes), the items with a TTL that has passed, the stream's records, shard iterators, SES's
sent emails, the attribute indexes, and the process's resident memory. It prints the growth per webhook
between the two points. With ``--tracemalloc`` it also prints where the memory kept in between was
allocated (file and line), so what is not data shows up.
"""

from __future__ import annotations

import argparse
import collections
import gc
import json
import sys
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _stored_items(table: Any) -> Iterator[Any]:
    """Every stored item (from the disk store's file a chunk at a time: nothing is kept for the count)."""
    if table.range_key_attr is None:
        yield from table.items.values()
        return
    for partition in table.items.values():
        yield from partition.values()


def _unmarshal(packed: tuple[str, Any]) -> dict[str, Any]:
    kind, raw = packed
    if kind == "L":
        raw = [_unmarshal(member) for member in raw]
    elif kind == "M":
        raw = {name: _unmarshal(member) for name, member in raw.items()}
    return {kind: raw}


def _plain(item: Any) -> dict[str, Any]:
    """The item's attributes as DynamoDB JSON, from its packed bytes when it is packed (no unpacking)."""
    import marshal

    blob = item.__dict__.get("_packed")
    if blob is not None:
        return {name: _unmarshal(packed) for name, packed in marshal.loads(blob).items()}
    return item.to_json()["Attributes"]  # type: ignore[no-any-return]


def census() -> dict[str, Any]:
    """What moto holds now (under the engine lock)."""
    from moto.dynamodb.models import dynamodb_backends
    from moto.dynamodbstreams.models import dynamodbstreams_backends
    from moto.ses.models import ses_backends

    from infra import moto_tuning

    kinds: collections.Counter[str] = collections.Counter()
    json_bytes: collections.Counter[str] = collections.Counter()
    packed_bytes: collections.Counter[str] = collections.Counter()
    expired = expired_bytes = ttl_items = 0
    now = time.time()
    records = record_bytes = iterators = index_keys = sent = hot_items = file_bytes = 0
    with moto_tuning.engine_paused():
        for regions in dynamodb_backends.values():
            for backend in regions.values():
                for table in backend.tables.values():
                    for item in _stored_items(table):  # read without unpacking (that would change what we measure)
                        blob = item.__dict__.get("_packed")
                        attrs = _plain(item)
                        kind = attrs.get("entity", {}).get("S", "?")
                        size = len(json.dumps(attrs, default=str))
                        kinds[kind] += 1
                        json_bytes[kind] += size
                        packed_bytes[kind] += len(blob) if blob is not None else 0
                        ttl = attrs.get("expires_at_epoch", {}).get("N")
                        if ttl is not None:
                            ttl_items += 1
                            if float(ttl) < now:
                                expired += 1
                                expired_bytes += size
                    shard = table.stream_shard
                    if shard is not None:
                        records += len(shard.items)
                        # a record is kept as its JSON text (moto_tuning.record_as_text) or, older, pickled
                        record_bytes += sum(len(r.__dict__.get("_text") or r.__dict__.get("_packed") or b"")
                                            for r in shard.items)
                    for by_value, _of_key in (table.__dict__.get("_sarafan_index") or {}).values():
                        index_keys += sum(len(keys) for keys in by_value.values())
                    store = table.items
                    if getattr(store, "on_disk", False):  # infra/moto_disk.py: rows in its file, objects in memory
                        hot_items += len(store.hot)
                        file_bytes += store.stored_bytes()
                        index_keys += int(store._sql("SELECT COUNT(*) FROM x{t}")[0][0])
        for stream_regions in dynamodbstreams_backends.values():
            for streams in stream_regions.values():
                iterators += len(streams.shard_iterators)
        for ses_regions in ses_backends.values():
            for ses in ses_regions.values():
                sent += len(ses.sent_messages)
    return {"items": dict(kinds), "json_bytes": dict(json_bytes), "packed_bytes": dict(packed_bytes),
            "ttl_items": ttl_items, "expired_items": expired, "expired_bytes": expired_bytes,
            "stream_records": records, "stream_record_bytes": record_bytes, "shard_iterators": iterators,
            "index_keys": index_keys, "ses_sent": sent, "unpacked_items": len(moto_tuning._unpacked),
            "hot_items": hot_items, "disk_item_bytes": file_bytes,
            "rss_mb": round(rss_mb(), 1)}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--webhooks", type=int, default=2000)
    parser.add_argument("--customers", type=int, default=200)
    parser.add_argument("--every", type=int, default=20, help="read the stream after this many webhooks")
    parser.add_argument("--tracemalloc", action="store_true", help="where the memory kept after warm-up was allocated")
    args = parser.parse_args(argv)

    import logging

    logging.disable(logging.INFO)  # the app's line per request and per message
    from bench.local_run import order_event, plan
    from infra.local_run import DEMO_RULES
    from tests.conftest import moto_aws

    with moto_aws():
        from app import app
        from infra.local_stream import POSITIONS, StreamPoller, install_holds
        from tests.conftest import OPERATOR_KEY
        from tests.support import ApiClient

        install_holds(POSITIONS)
        api = ApiClient(app, OPERATOR_KEY)
        api.check_openapi = False
        program = api.create_program(name="Memory bench")
        pid = program["program_id"]
        partner = api.create_partner(pid)
        assert api.put(f"/v1/programs/{pid}/rules", DEMO_RULES).status == 200
        poller = StreamPoller(app.handler_map["table_stream"], log=lambda _m: None, positions=POSITIONS)
        poller.drain()
        people = plan(args.customers, args.webhooks, 0.25, 3, 1)
        sends = [(p, 0) for level in range(4) for p in people if p.level == level]
        sends += [(p, n) for p in people for n in range(1, len(p.orders))]
        points: list[tuple[int, dict[str, Any]]] = []
        snapshot = None
        for count, (person, number) in enumerate(sends, 1):
            reply = api.send_event(partner, order_event(person, number))
            assert reply.status == 200, reply.body
            if number == 0:
                person.member_id, person.code = reply.body["member"]["member_id"], reply.body["member"]["code"]
            if count % args.every == 0 or count == len(sends):
                poller.drain()
            if count in (args.customers, len(sends)):
                poller.drain()
                gc.collect()
                rss = rss_mb()
                points.append((count, {**census(), "rss_mb": round(rss, 1)}))
                if count == args.customers and args.tracemalloc:
                    tracemalloc.start(1)
                    snapshot = tracemalloc.take_snapshot()
        later = tracemalloc.take_snapshot() if snapshot is not None else None

    (n0, first), (n1, last) = points
    span = n1 - n0
    print(f"after {n0} webhooks: {json.dumps(first)}")
    print(f"after {n1} webhooks: {json.dumps(last)}")
    print(f"\nper webhook over the last {span} (repeat orders of existing members):")
    print(f"  resident memory      {(last['rss_mb'] - first['rss_mb']) * 1024 / span:.1f} KB")
    for kind in sorted(last["items"], key=lambda k: -(last["packed_bytes"].get(k, 0) - first["packed_bytes"].get(k, 0))):
        grown = last["items"][kind] - first["items"].get(kind, 0)
        if grown:
            print(f"  {kind:<24} {grown / span:5.2f} items, "
                  f"{(last['json_bytes'][kind] - first['json_bytes'].get(kind, 0)) / span / 1024:5.2f} KB as DynamoDB JSON, "
                  f"{(last['packed_bytes'][kind] - first['packed_bytes'].get(kind, 0)) / span / 1024:5.2f} KB packed")
    for name in ("stream_records", "shard_iterators", "index_keys", "ses_sent", "expired_items", "ttl_items",
                 "unpacked_items", "hot_items", "disk_item_bytes"):
        print(f"  {name:<24} {first[name]} -> {last[name]}")
    if snapshot is not None and later is not None:
        print("\nwhere the memory kept since warm-up was allocated (tracemalloc, top 25 lines):")
        for stat in later.compare_to(snapshot, "lineno")[:25]:
            frame = stat.traceback[0]
            print(f"  {stat.size_diff / 1024 / span:7.2f} KB/webhook  {stat.count_diff / span:6.1f} blocks/webhook  "
                  f"{frame.filename.split('site-packages/')[-1].replace(str(ROOT) + '/', '')}:{frame.lineno}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
