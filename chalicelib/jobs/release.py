"""Holding job: pending rewards become available when their holding period ends.

Pending reward entries carry a sparse GSI1 key ``PENDING#<day of available_at>`` (removed when
they are released or fully reversed), so the job queries day buckets, never scans. The rewards an
event posts are indexed by the event's record instead (one index entry per event, not per reward:
see ``store.ledger.new_entry``); the job reads their entries from the record's keys. A
watermark item records the first day that may still hold pending entries; past days are
drained and skipped next time, and a run after an outage catches up from the watermark.

Each entry is released in its own small transaction: the entry (``pending`` → ``available``,
conditioned on still being pending with the same ``reversed_points`` as read) and the member's
balance (pending → available, repaying owed points first). A concurrent refund makes the
condition fail; the entry is read again and released with what is left. Running the job
twice, or two instances at once, releases every entry once.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pynamodb.exceptions import DoesNotExist, PutError, UpdateError
from pynamodb.expressions.update import Action

from chalicelib.domain import clock
from chalicelib.domain.errors import Conflict
from chalicelib.logs import get_logger
from chalicelib.services import ports
from chalicelib.store import keys
from chalicelib.store.db import Entity
from chalicelib.store.events import EventItem
from chalicelib.store.ledger import (
    STATUS_AVAILABLE,
    STATUS_PENDING,
    STATUS_REVERSED,
    BalanceDelta,
    BalanceItem,
    LedgerEntryItem,
    ReleaseStateItem,
    credit_index,
    day_of,
)
from chalicelib.store.ledger import stage_balance as _stage_balance
from chalicelib.store.members import batch_get
from chalicelib.store.transact import Transaction

log = get_logger("sarafan.release")
#: Where a first run (no watermark yet) starts looking.
FIRST_RUN_LOOKBACK_DAYS = 31
ATTEMPTS = 4


class _Changed(Exception):
    pass


def run(now: datetime | None = None) -> dict[str, Any]:
    now = now or ports.current().clock.now()
    today = day_of(now)
    state = _state()
    start = state.done_through if state else day_of(now - timedelta(days=FIRST_RUN_LOOKBACK_DAYS))
    released = reversed_ = left = 0
    watermark = start
    day = start
    drained = True
    while day <= today:
        r, v, remaining = _release_day(day, now)
        released, reversed_, left = released + r, reversed_ + v, left + remaining
        drained = drained and remaining == 0
        nxt = day_of(clock.parse_iso(day + "T00:00:00Z") + timedelta(days=1))
        if drained and day < today:
            watermark = nxt
        day = nxt
    if watermark != start:
        pk, sk = keys.release_job_state()
        # Two overlapping runs must not move the watermark backwards: only ever advance it.
        try:
            ReleaseStateItem(PK=pk, SK=sk, done_through=watermark).save(
                condition=Entity.PK.does_not_exist() | (ReleaseStateItem.done_through < watermark))
        except PutError as exc:
            if exc.cause_response_code != "ConditionalCheckFailedException":
                raise
    result = {"released": released, "fully_reversed": reversed_, "left_pending": left, "watermark": watermark}
    log.info("pending points released", extra={"released": released, "fully_reversed": reversed_,
                                                "left_pending": left})
    return result


def _state() -> ReleaseStateItem | None:
    try:
        item = ReleaseStateItem.get(*keys.release_job_state())
    except DoesNotExist:
        return None
    return item if isinstance(item, ReleaseStateItem) else None


def _release_day(day: str, now: datetime) -> tuple[int, int, int]:
    """Release every due entry of one bucket; returns (released, fully reversed, failed).

    A bucket holds pending entries (indexed by themselves) and event records, which index the pending rewards
    of their event (``EventItem.index_entries``): those are read in one ``BatchGetItem`` per record, the due
    ones released like the others, and the record moves to the bucket of its next pending entry (or leaves
    the index when none is left)."""
    bucket = keys.gsi1_pending_release(day, "", "")[0]
    due: list[LedgerEntryItem] = []
    events: list[EventItem] = []
    for item in Entity.gsi1.query(bucket, Entity.GSI1SK < f"{clock.iso(now)}#~"):  # noqa: SIM300
        if isinstance(item, LedgerEntryItem):
            due.append(item)
        elif isinstance(item, EventItem):
            events.append(item)
    later: dict[int, list[datetime]] = {}
    for n, record in enumerate(events):
        later[n] = []
        for entry in batch_get(record.indexed_entry_keys()).values():
            if not isinstance(entry, LedgerEntryItem) or entry.status != STATUS_PENDING or entry.GSI1PK:
                continue  # released, reversed, held, or indexed by itself (review approval)
            if entry.available_at is not None and entry.available_at > now:
                later[n].append(entry.available_at)
            else:
                due.append(entry)
    released = reversed_ = failed = 0
    balances = _balances(due)
    for entry in due:
        for _ in range(ATTEMPTS):
            try:
                outcome = _release(entry, balances.get((entry.program_id, entry.member_id)), now)
                released += outcome == STATUS_AVAILABLE
                reversed_ += outcome == STATUS_REVERSED
                break
            except _Changed:
                fresh = _reread(entry)
                if fresh is None or fresh.status != STATUS_PENDING:
                    break  # somebody else released or reversed it
                entry = fresh
                balances.update(_balances([entry]))
        else:
            failed += 1
    for n, record in enumerate(events):
        _move_event(record, min(later[n]) if later[n] else None)
    return released, reversed_, failed


def _move_event(record: EventItem, next_at: datetime | None) -> None:
    """The record to the bucket of its next pending entry, or out of the pending index."""
    E = EventItem
    actions: list[Action]
    if next_at is None:
        actions = [E.GSI1PK.remove(), E.GSI1SK.remove()]
    else:
        gpk, gsk = keys.gsi1_pending_release(day_of(next_at), clock.iso(next_at), record.GSI1SK.rsplit("#", 1)[-1])
        actions = [E.GSI1PK.set(gpk), E.GSI1SK.set(gsk)]
    if record.replaced_parked:
        actions.append(E.replaced_parked.remove())  # the analytics consumer counted its first write
    try:
        EventItem(record.PK, record.SK).update(actions=actions, condition=E.GSI1SK == record.GSI1SK)
    except UpdateError as exc:
        if exc.cause_response_code != "ConditionalCheckFailedException":
            raise  # else another run moved it already


def _balances(entries: list[LedgerEntryItem]) -> dict[tuple[str, str], BalanceItem]:
    wanted = {keys.balance(e.program_id, e.member_id): (e.program_id, e.member_id) for e in entries}
    out: dict[tuple[str, str], BalanceItem] = {}
    for chunk_start in range(0, len(wanted), 100):
        chunk = list(wanted)[chunk_start: chunk_start + 100]
        for key, item in batch_get(chunk).items():
            if isinstance(item, BalanceItem):
                out[wanted[key]] = item
    return out


def _reread(entry: LedgerEntryItem) -> LedgerEntryItem | None:
    try:
        item = LedgerEntryItem.get(entry.PK, entry.SK, consistent_read=True)
    except DoesNotExist:
        return None
    return item if isinstance(item, LedgerEntryItem) else None


def _release(entry: LedgerEntryItem, balance: BalanceItem | None, now: datetime) -> str:
    net = entry.net_points
    status = STATUS_AVAILABLE if net > 0 else STATUS_REVERSED
    read_reversed = int(entry.reversed_points or 0)
    same_reversed = (LedgerEntryItem.reversed_points == read_reversed) if read_reversed else (
        LedgerEntryItem.reversed_points.does_not_exist() | (LedgerEntryItem.reversed_points == 0))
    tx = Transaction()
    # Released points join the expiry job's month bucket (GSI1 CREDITS#…); fully reversed ones leave the index.
    gpk, gsk = credit_index(entry, now)
    index = ([LedgerEntryItem.GSI1PK.set(gpk), LedgerEntryItem.GSI1SK.set(gsk)] if net > 0
             else [LedgerEntryItem.GSI1PK.remove(), LedgerEntryItem.GSI1SK.remove()])
    tx.update(entry, [LedgerEntryItem.status.set(status), LedgerEntryItem.released_at.set(now), *index],
              (LedgerEntryItem.status == STATUS_PENDING) & same_reversed, on_fail=_Changed())
    if net > 0:
        _stage_balance(tx, entry.program_id, entry.member_id, balance, BalanceDelta(pending=-net, available=net),
                       on_fail=_Changed())
    try:
        tx.commit()
    except Conflict:
        raise _Changed() from None
    return status
