"""Settlement aggregates from the table's stream: ``ledger_entry`` INSERTs, through the one dispatcher.

Why the stream and not the event's transaction (or sharded counters there): a per-program or
per-partner-day aggregate written by every event would be a hot item that serialises the
program's writes and makes concurrent events conflict (``TransactionConflict``, retried with a
fresh read). Written here, the event transaction is unchanged (same items, same round trips), and
the aggregates lag the ledger by the stream's delay (seconds). Sharded counters would keep the
aggregates inside the event but add items and write units to every event and still fan-in on
read; the stream costs the events nothing.

Idempotent per ledger entry, a batch at a time (``store.count_once``): the entries of one event share a
``SETTLED#…`` marker holding the ids of the entries counted; a batch's markers (each ``ADD``ing its entries'
ids, conditioned on none being there yet) and the ``ADD`` updates of the day's partner and pair rows, merged
per row, go into one transaction (more if they do not fit 100 items). A redelivered or differently split
batch (Lambda retries from the first failed record; a batch may arrive twice) has its counted entries
dropped and the rest committed: every entry counts once.
Entry points never change (corrections are new entries), so only INSERTs count.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from chalicelib.domain import settlement
from chalicelib.notify import dispatcher
from chalicelib.services import ports
from chalicelib.store import count_once, keys
from chalicelib.store.count_once import Source
from chalicelib.store.db import shared_connection
from chalicelib.store.ledger import LedgerEntryItem, day_of
from chalicelib.store.settlement import MARKER_TTL_DAYS

log = logging.getLogger("sarafan.settlement")


def _row_updates(entry: LedgerEntryItem) -> list[tuple[tuple[str, str], dict[str, Any], dict[str, int]]]:
    """(key, fixed fields, ADDs) of the aggregate rows one entry changes."""
    a = settlement.attribute(str(entry.kind), int(entry.points), entry.partner_id, entry.funding_partner_id)
    if a is None:
        return []
    day = day_of(entry.created_at)
    pid = entry.program_id
    out = [(keys.settlement_row(pid, day, f"PARTNER#{a.partner}"),
            {"program_id": pid, "day": day, "partner_id": a.partner}, {a.column: a.points, "entries": 1})]
    if a.pair is not None:
        funder, at = a.pair
        out.append((keys.settlement_row(pid, day, f"PAIR#{funder}#{at}"),
                    {"program_id": pid, "day": day, "partner_id": funder, "at_partner_id": at}, {"points": a.points}))
    return out


Rows = dict[tuple[str, str], tuple[dict[str, Any], dict[str, int]]]


def _merged(chunk: list[Source[LedgerEntryItem]]) -> Rows:
    rows: Rows = {}
    for s in chunk:
        for key, fixed, adds in _row_updates(s.payload):
            _, sums = rows.setdefault(key, (fixed, {}))
            for name, value in adds.items():
                sums[name] = sums.get(name, 0) + value
    return rows


def _build(chunk: list[Source[LedgerEntryItem]]) -> list[dict[str, Any]]:
    """One ``ADD`` update per aggregate row the chunk's entries change (DynamoDB takes one operation per item in
    a transaction)."""
    table = shared_connection().table_name
    items = []
    for (pk, sk), (fixed, sums) in _merged(chunk).items():
        fields = {"entity": "settlement_row", **fixed}
        names = {f"#f{i}": name for i, name in enumerate(fields)}
        values: dict[str, Any] = {f":f{i}": {"S": str(v)} for i, v in enumerate(fields.values())}
        adds = {name: v for name, v in sums.items() if v}
        names |= {f"#a{i}": name for i, name in enumerate(adds)}
        values |= {f":a{i}": {"N": str(int(v))} for i, v in enumerate(adds.values())}
        expression = "SET " + ", ".join(f"#f{i} = :f{i}" for i in range(len(fields)))
        if adds:
            expression += " ADD " + ", ".join(f"#a{i} :a{i}" for i in range(len(adds)))
        items.append({"Update": {"TableName": table, "Key": {"PK": {"S": pk}, "SK": {"S": sk}},
                                 "UpdateExpression": expression, "ExpressionAttributeNames": names,
                                 "ExpressionAttributeValues": values}})
    return items


def _touches(source: Source[LedgerEntryItem]) -> list[tuple[str, str]]:
    return [key for key, _, _ in _row_updates(source.payload)]


def _source(entry: LedgerEntryItem) -> Source[LedgerEntryItem]:
    """An event's entries share one marker (a hash of its business key); an entry of no event has its own."""
    group = (hashlib.sha256(entry.business_key.encode()).hexdigest()[:32] if entry.business_key
             else str(entry.entry_id))
    return Source(keys.settled_marker(entry.program_id, group), str(entry.entry_id), entry)


def count(entries: list[LedgerEntryItem]) -> int:
    """Add ``entries`` to the aggregates, each at most once ever; the number newly counted."""
    expires = int(ports.current().clock.now().timestamp()) + MARKER_TTL_DAYS * 86400
    wanted = [_source(e) for e in entries if _row_updates(e)]
    return count_once.count(wanted, _build, _touches, marker_entity="settled_marker", expires_at=expires)


@dispatcher.handles("ledger_entry")
def on_ledger_entries(records: list[dispatcher.StreamRecord]) -> set[str]:
    entries: list[LedgerEntryItem] = []
    for record in records:
        if record.event_name != "INSERT":
            continue
        item = record.item()
        if isinstance(item, LedgerEntryItem) and item.created_at is not None:
            entries.append(item)
    if entries:
        log.info("settlement counted", extra={"entries": len(entries), "new": count(entries)})
    return set()
