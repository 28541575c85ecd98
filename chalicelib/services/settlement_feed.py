"""Settlement aggregates from the table's stream: ``ledger_entry`` INSERTs, through the one dispatcher.

Why the stream and not the event's transaction (or sharded counters there): a per-program or
per-partner-day aggregate written by every event would be a hot item that serialises the
program's writes and makes concurrent events conflict (``TransactionConflict``, retried with a
fresh read). Written here, the event transaction is unchanged (same items, same round trips), and
the aggregates lag the ledger by the stream's delay (seconds). Sharded counters would keep the
aggregates inside the event but add items and write units to every event and still fan-in on
read; the stream costs the events nothing.

Idempotent per ledger entry: each entry's ``SETTLED#…`` marker is created with
``attribute_not_exists`` in the same transaction as the ``ADD`` updates of its day's partner and
pair rows, so a redelivered batch (Lambda retries from the first failed record; a batch may arrive
twice) counts every entry once. A batch is written in chunks of up to 100 items; a chunk that meets
an existing marker is replayed entry by entry, skipping the entries already counted.
Entry points never change (corrections are new entries), so only INSERTs count.
"""

from __future__ import annotations

import logging
from typing import Any

from chalicelib.domain import clock, settlement
from chalicelib.notify import dispatcher
from chalicelib.store import keys
from chalicelib.store.ledger import LedgerEntryItem, day_of
from chalicelib.store.settlement import MARKER_TTL_DAYS, SettledMarkerItem, SettlementRowItem
from chalicelib.store.transact import MAX_TRANSACTION_ITEMS, Transaction

log = logging.getLogger("sarafan.settlement")


class _Counted(Exception):
    """The entry's marker exists: it was counted by an earlier delivery."""


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


def _stage(tx: Transaction, entries: list[LedgerEntryItem], expires: int) -> None:
    """Markers for ``entries`` and one ``ADD`` update per aggregate row they change (merged: DynamoDB takes one
    operation per item in a transaction, and one path once per update)."""
    rows: dict[tuple[str, str], tuple[dict[str, Any], dict[str, int]]] = {}
    for entry in entries:
        pk, sk = keys.settled_marker(entry.program_id, entry.entry_id)
        tx.create(SettledMarkerItem(PK=pk, SK=sk, expires_at_epoch=expires), on_fail=_Counted())
        for key, fixed, adds in _row_updates(entry):
            _, sums = rows.setdefault(key, (fixed, {}))
            for name, value in adds.items():
                sums[name] = sums.get(name, 0) + value
    for (rpk, rsk), (fixed, sums) in rows.items():
        actions: list[Any] = [SettlementRowItem.entity.set(SettlementRowItem)]  # type: ignore[arg-type]
        actions += [getattr(SettlementRowItem, k).set(v) for k, v in fixed.items()]
        actions += [getattr(SettlementRowItem, k).add(v) for k, v in sums.items() if v]
        tx.update(SettlementRowItem(PK=rpk, SK=rsk), actions)


def _items_needed(entry: LedgerEntryItem) -> int:
    return 1 + len(_row_updates(entry))


def _commit(entries: list[LedgerEntryItem], expires: int) -> None:
    tx = Transaction()
    _stage(tx, entries, expires)
    tx.commit()


def count(entries: list[LedgerEntryItem]) -> int:
    """Add ``entries`` to the aggregates, each at most once ever; the number newly counted."""
    expires = int(clock.utcnow().timestamp()) + MARKER_TTL_DAYS * 86400
    counted = 0
    chunk: list[LedgerEntryItem] = []
    size = 0

    def flush() -> int:
        if not chunk:
            return 0
        try:
            _commit(chunk, expires)
            return len(chunk)
        except _Counted:
            done = 0
            for e in chunk:  # a redelivery: one entry at a time, the counted ones refuse
                try:
                    _commit([e], expires)
                    done += 1
                except _Counted:
                    pass
            return done

    seen: set[str] = set()
    for entry in entries:
        if entry.entry_id in seen:  # the same record twice in one batch
            continue
        seen.add(entry.entry_id)
        need = _items_needed(entry)  # an upper bound: rows shared inside a chunk are one update
        if size + need > MAX_TRANSACTION_ITEMS:
            counted += flush()
            chunk, size = [], 0
        chunk.append(entry)
        size += need
    counted += flush()
    return counted


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
