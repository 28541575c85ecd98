"""Expiry job: points expire ``expiry_months`` after they became available, oldest first (FIFO).

For every program with ``settings.expiry_months`` (the program listing, one partition), the cutoff
is ``now - expiry_months``. Entries that credited available points carry a sparse GSI1 key
``CREDITS#<program>#<month they became available>`` (``store.ledger.credit_index``), so the job
queries the month buckets from its watermark up to the cutoff's month, bounded and paged, never a
Scan, and collects the members with points due. For each member it reads the member's ledger (one
partition) in pages of :data:`LEDGER_PAGE` entries (one Query request each, the next resumed from the
last key), folding each page into the credits and debits ``domain.expiry`` needs, so no more than one
page of items is held whatever the ledger's length, and computes what is left of the points available by the cutoff
after every debit (FIFO), per funder; then one transaction writes an ``expiry`` entry per funder
(ids derived from the member, the cutoff's day and the funder, created with ``attribute_not_exists``:
a second run on the same day, or two instances at once, write nothing twice) and takes the points
from ``available`` (conditioned: ``available >= points``; a concurrent redemption makes it fail and
the member is computed again next run). Months before the cutoff's month are then done (watermark
``JOBS/EXPIRY#<program>``). Expired points reduce the outstanding liability and appear in the
settlement (``expired`` column) and in the member's statement.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from pynamodb.exceptions import DoesNotExist, PutError

from chalicelib.domain import clock
from chalicelib.domain import expiry as fifo
from chalicelib.domain.errors import Conflict
from chalicelib.logs import get_logger
from chalicelib.services import ports
from chalicelib.store import keys, tenancy_repo
from chalicelib.store.db import Entity
from chalicelib.store.ledger import (
    KIND_EXPIRY,
    STATUS_AVAILABLE,
    BalanceItem,
    LedgerEntryItem,
    ReleaseStateItem,
    balance_ref,
    new_entry,
    stable_id,
)
from chalicelib.store.tenancy import ProgramItem
from chalicelib.store.transact import Transaction

log = get_logger("sarafan.expiry")
PROGRAM_PAGE = 100
#: Ledger entries per Query request when the job reads a member's ledger.
LEDGER_PAGE = 500


class _Done(Exception):
    pass


def _months(first: str, last: str) -> list[str]:
    y, m = int(first[:4]), int(first[5:7])
    out = []
    while f"{y:04d}-{m:02d}" <= last:
        out.append(f"{y:04d}-{m:02d}")
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


def _entry_fields(e: LedgerEntryItem) -> dict[str, Any]:
    return {"kind": e.kind, "status": e.status, "points": int(e.points), "created_at": e.created_at,
            "available_at": e.available_at, "released_at": e.released_at, "entry_id": e.entry_id,
            "reverses_entry_id": e.reverses_entry_id, "from_status": e.from_status,
            "funding_partner_id": e.funding_partner_id, "partner_id": e.partner_id}


def member_ledger(program_id: str, member_id: str) -> Iterator[dict[str, Any]]:
    """The member's entries, oldest first, as the fields ``domain.expiry`` reads: one Query request of at most
    :data:`LEDGER_PAGE` items per page, the next one resumed from the page's last key."""
    pk, prefix = keys.ledger_prefix(program_id, member_id)
    cursor: dict[str, Any] | None = None
    while True:
        page = LedgerEntryItem.query(pk, LedgerEntryItem.SK.startswith(prefix), consistent_read=True,
                                     limit=LEDGER_PAGE, page_size=LEDGER_PAGE, last_evaluated_key=cursor)
        yield from (_entry_fields(e) for e in page if isinstance(e, LedgerEntryItem))
        cursor = page.last_evaluated_key
        if not cursor:
            return


def due(program_id: str, member_id: str, cutoff: datetime) -> dict[str | None, int]:
    credits, debits = fifo.split(member_ledger(program_id, member_id))  # one pass over the pages
    return fifo.expiring(credits, debits, cutoff)


def expire_member(program_id: str, member_id: str, cutoff: datetime, now: datetime) -> int:
    """Post what is due for one member; the points expired (0 if nothing, or if it was already posted)."""
    amounts = {f: p for f, p in due(program_id, member_id, cutoff).items() if p > 0}
    total = sum(amounts.values())
    if not total:
        return 0
    tx = Transaction()
    for funder, points in sorted(amounts.items(), key=lambda kv: kv[0] or ""):
        entry_id = stable_id("le", program_id, member_id, "expiry", clock.iso(cutoff)[:10], funder or "")
        tx.create(new_entry(program_id, member_id, entry_id, now, kind=KIND_EXPIRY, status=STATUS_AVAILABLE,
                            points=-points, reason=f"{points} points expired (available since before "
                                                   f"{clock.iso(cutoff)[:10]}, unused).",
                            reason_code="points_expired", created_at=now, funding_partner_id=funder,
                            reversed_points=0), on_fail=_Done())
    tx.update(balance_ref(program_id, member_id), [BalanceItem.available.add(-total)],
              BalanceItem.available >= total, on_fail=Conflict("balance changed", code="concurrent_update"))
    try:
        tx.commit()
    except (_Done, Conflict):
        return 0
    return total


def _members_with_credits(program_id: str, first_month: str, cutoff: datetime) -> set[str]:
    """Members with points that became available from ``first_month`` up to ``cutoff``: bounded Queries on the
    month buckets (GSI1 ``CREDITS#<program>#<month>``), never a Scan."""
    members: set[str] = set()
    bound = f"{clock.iso(cutoff)}#~"
    for month in _months(first_month, clock.iso(cutoff)[:7]):
        partition = keys.gsi1_credit_month_partition(program_id, month)
        for e in LedgerEntryItem.gsi1.query(partition, Entity.GSI1SK <= bound):  # noqa: SIM300
            if isinstance(e, LedgerEntryItem):
                members.add(e.member_id)
    return members


def warn_member(program: ProgramItem, member_id: str, warn_cutoff: datetime, expires_on: datetime) -> int:
    """A ``points_expiring`` message (ru/en by the member's locale at delivery) for points that will expire by
    ``expires_on``; created once per member and month of the points due (deterministic id), 1 when written."""
    points = sum(p for p in due(program.program_id, member_id, warn_cutoff).values() if p > 0)
    if points <= 0:
        return 0
    day, month = clock.iso(expires_on)[:10], clock.iso(warn_cutoff)[:7]
    from chalicelib.notify import sources

    created = sources.new_outbox(program.program_id, member_id, "points_expiring",
                                 {"points": points, "expires_on": day}, None, f"expiring|{member_id}|{month}",
                                 stable_id("msg", "expiring", program.program_id, member_id, month))
    return 1 if created else 0


def _state(program_id: str) -> ReleaseStateItem | None:
    try:
        item = ReleaseStateItem.get(*keys.expiry_job_state(program_id), consistent_read=True)
    except DoesNotExist:
        return None
    return item if isinstance(item, ReleaseStateItem) else None


def run_program(program: ProgramItem, now: datetime) -> dict[str, int]:
    settings = program.program_settings
    months = settings.expiry_months
    if not months:
        return {"members": 0, "points": 0, "warned": 0}
    cutoff = fifo.months_before(now, months)
    state = _state(program.program_id)
    first = state.done_through if state else clock.iso(program.created_at)[:7]
    members = _members_with_credits(program.program_id, first, cutoff)
    expired = sum(expire_member(program.program_id, m, cutoff, now) for m in sorted(members))
    # The warning: what will expire within expiry_warning_days if nothing is spent (once per member and month).
    warn_on = now + timedelta(days=settings.expiry_warning_days)
    warn_cutoff = fifo.months_before(warn_on, months)
    warned = sum(warn_member(program, m, warn_cutoff, warn_on)
                 for m in sorted(_members_with_credits(program.program_id, first, warn_cutoff)))
    done = clock.iso(cutoff)[:7]  # months before it are fully due and posted; its own month may gain more
    if not state or state.done_through < done:
        pk, sk = keys.expiry_job_state(program.program_id)
        try:
            ReleaseStateItem(PK=pk, SK=sk, done_through=done).save()
        except PutError:
            log.warning("expiry watermark not saved", extra={"program_id": program.program_id})
    return {"members": len(members), "points": expired, "warned": warned}


def run(now: datetime | None = None) -> dict[str, Any]:
    now = now or ports.current().clock.now()
    totals = {"programs": 0, "members": 0, "points": 0, "warned": 0}
    cursor = None
    while True:
        programs, cursor = tenancy_repo.list_programs(PROGRAM_PAGE, cursor)
        for program in programs:
            if program.program_settings.expiry_months:
                result = run_program(program, now)
                totals["programs"] += 1
                totals["members"] += result["members"]
                totals["points"] += result["points"]
                totals["warned"] += result["warned"]
        if not cursor:
            break
    log.info("expiry run", extra=totals)
    return totals
