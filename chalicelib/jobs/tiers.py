"""Tier review job: demotion happens only here, once old months have left the rolling period.

A member above the lowest tier carries the sparse GSI1 key ``TIERREVIEW#<program>#<month>``: the month in
which, with nothing new earned, the metric falls below the tier's threshold (``domain.tiers.review_month``;
a clawback brings it to the current month). For every program with ``settings.tiers`` (the program listing,
one partition) the job queries the month partitions from its watermark (``JOBS/TIERS#<program>``) up to the
current month, in pages of ``PAGE`` (bounded Queries, never a Scan). For each member found it reads the tier
item (consistent GetItem: the index may lag), computes the value over the period ending this month and writes,
in one transaction conditioned on the version read: the new tier (down to what the value reaches, or up if a
promotion was missed), the next review month, and for a change a history item and a ``tier_changed`` message
(ids derived from the member and the version reviewed: a second run, or two at once, change nothing twice).

Resumable: a reviewed member leaves the due partitions (its review month moves ahead), so a run stopped after
``MAX_MEMBERS`` or by the Lambda timeout continues where it was on the next run; the watermark moves to the
current month only when every earlier month was drained. A member changed concurrently by an event (version
moved) is left for the next run.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pynamodb.exceptions import DoesNotExist, PutError

from chalicelib.domain import tiers as domain
from chalicelib.logs import get_logger
from chalicelib.services import ports
from chalicelib.store import keys, tenancy_repo
from chalicelib.store.ledger import ReleaseStateItem
from chalicelib.store.tenancy import ProgramItem
from chalicelib.store.tiers import TierStateItem, stage_state
from chalicelib.store.transact import Transaction

log = get_logger("sarafan.tiers")
PROGRAM_PAGE = 100
PAGE = 100
#: Members reviewed per run at most (the rest wait for the next run: resumable).
MAX_MEMBERS = 5_000


class _Concurrent(Exception):
    pass


def _months(first: str, last: str) -> list[str]:
    out, month = [], first
    while month <= last:
        out.append(month)
        month = domain.shift_month(month, 1)
    return out


def review_member(program: ProgramItem, member_id: str, now: datetime) -> str:
    """``"demoted"``, ``"promoted"``, ``"kept"`` (review month moved ahead), ``"not_due"`` or ``"concurrent"``."""
    from chalicelib.services import tiers as service

    tiers = program.program_settings.tiers
    assert tiers is not None
    try:
        state = TierStateItem.get(*keys.member_tier(program.program_id, member_id), consistent_read=True)
    except DoesNotExist:
        return "not_due"
    now_month = domain.month_of(now)
    if not isinstance(state, TierStateItem) or not state.review_month or state.review_month > now_month:
        return "not_due"  # the index lagged behind a newer state
    buckets = domain.prune(state.buckets_for(tiers.metric), now_month, tiers.period_months)
    value = domain.value(buckets, now_month, tiers.period_months)
    target = domain.reviewed(tiers, state.tier, value)
    tier = target.id if target else state.tier
    review = domain.review_month(tiers, tier, buckets, now_month)
    tx = Transaction()
    stage_state(tx, program.program_id, member_id, state, tier=tier, metric=tiers.metric, buckets=buckets,
                tier_since=now if target else state.tier_since, review=review, now=now, on_fail=_Concurrent())
    if target is not None:
        from chalicelib.store.members import MemberItem

        try:
            profile = MemberItem.get(*keys.member(program.program_id, member_id))  # only for a change
        except DoesNotExist:
            profile = None
        service.stage_change(tx, program, member_id, from_tier=state.tier, to=target, reason_code="review",
                             metric_value=value, at=now, cause=f"review|{int(state.version or 0)}",
                             business_key=None, locale=None, on_fail=_Concurrent(),
                             partner_ids=service.known_at(profile) if profile is not None else [])
    try:
        tx.commit()
    except _Concurrent:
        return "concurrent"
    if target is None:
        return "kept"
    return "promoted" if domain.rank(tiers, target.id) > domain.rank(tiers, state.tier) else "demoted"


def _state(program_id: str) -> ReleaseStateItem | None:
    try:
        item = ReleaseStateItem.get(*keys.tier_job_state(program_id), consistent_read=True)
    except DoesNotExist:
        return None
    return item if isinstance(item, ReleaseStateItem) else None


def run_program(program: ProgramItem, now: datetime, budget: int = MAX_MEMBERS) -> dict[str, int]:
    totals = {"members": 0, "demoted": 0, "promoted": 0, "kept": 0, "concurrent": 0, "more": 0}
    if program.program_settings.tiers is None:
        return totals
    now_month = domain.month_of(now)
    state = _state(program.program_id)
    first = state.done_through if state else domain.month_of(program.created_at)
    drained = True
    for month in _months(first, now_month):
        partition = keys.gsi1_tier_review_partition(program.program_id, month)
        cursor: dict[str, Any] | None = None
        while True:
            if totals["members"] >= budget:
                totals["more"] = 1
                drained = False
                break
            page = TierStateItem.gsi1.query(partition, limit=min(PAGE, budget - totals["members"]),
                                            last_evaluated_key=cursor)
            members = [item.member_id for item in page if isinstance(item, TierStateItem)]
            for member_id in members:
                outcome = review_member(program, member_id, now)
                totals["members"] += 1
                if outcome in totals:
                    totals[outcome] += 1
                if outcome == "concurrent":
                    drained = False
            cursor = page.last_evaluated_key
            if not cursor:
                break
        if not drained:
            break
    if drained and (not state or state.done_through < now_month):
        pk, sk = keys.tier_job_state(program.program_id)
        try:
            ReleaseStateItem(PK=pk, SK=sk, done_through=now_month).save()
        except PutError:
            log.warning("tier review watermark not saved", extra={"program_id": program.program_id})
    return totals


def run(now: datetime | None = None) -> dict[str, Any]:
    now = now or ports.current().clock.now()
    totals = {"programs": 0, "members": 0, "demoted": 0, "promoted": 0, "kept": 0, "concurrent": 0, "more": 0}
    budget = MAX_MEMBERS
    cursor = None
    while budget > 0:
        programs, cursor = tenancy_repo.list_programs(PROGRAM_PAGE, cursor)
        for program in programs:
            if program.program_settings.tiers is None or budget <= 0:
                continue
            result = run_program(program, now, budget)
            budget -= result["members"]
            totals["programs"] += 1
            for name in result:
                totals[name] += result[name]
        if not cursor:
            break
    log.info("tier review run", extra=totals)
    return totals
