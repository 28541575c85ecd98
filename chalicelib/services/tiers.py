"""Member tiers: writing a change (state, history, message) and reading where a member stands.

Used by the pipeline's tier stage (promotion inside the event's transaction, ``services.tier_stage``)
and by the review job (``jobs.tiers``: demotion); the reads (:func:`status`) go through the ports. A change is three writes in the caller's one
transaction: the tier state conditioned on the version read, a ``TierChangeItem`` (history) created
with ``attribute_not_exists`` under an id derived from why it happened, and a ``tier_changed`` outbox
message (ru/en by the member's locale at delivery, like every message).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from chalicelib.domain import clock
from chalicelib.domain import tiers as domain
from chalicelib.domain.settings import TierLevel, TierSettings
from chalicelib.services.ports import Ports
from chalicelib.store import keys
from chalicelib.store.ledger import OutboxItem, day_of, stable_id
from chalicelib.store.tenancy import ProgramItem
from chalicelib.store.tiers import change_view, new_change
from chalicelib.store.transact import OnFail, Transaction

TEMPLATE = "tier_changed"
HISTORY_LIMIT = 10


def reason_text(direction: str, reason_code: str, tiers: TierSettings, to: TierLevel, metric_value: int) -> str:
    what = {"points_earned": "points earned", "spend": "spend (minor units)",
            "converted_referrals": "converted referrals"}[tiers.metric]
    period = f"the last {tiers.period_months} month(s)"
    if direction == "up":
        return f"Promoted to {to.id}: {metric_value} {what} over {period} (threshold {to.threshold})."
    return f"Moved to {to.id} at the periodic review: {metric_value} {what} over {period}."


def stage_change(tx: Transaction, program: ProgramItem, member_id: str, *, from_tier: str | None, to: TierLevel,
                 reason_code: str, metric_value: int, at: datetime, cause: str, business_key: str | None,
                 locale: str | None, on_fail: OnFail, partner_ids: list[str] | None = None) -> dict[str, Any]:
    """The history item and the message of one change (the caller writes the state); its public view.

    ``cause`` makes the change's id: the same cause (a replayed event, a second review run of the same
    state version) cannot record or announce the change twice."""
    tiers = program.program_settings.tiers
    assert tiers is not None
    direction = "up" if domain.rank(tiers, to.id) > domain.rank(tiers, from_tier) else "down"
    change_id = stable_id("tc", program.program_id, member_id, cause)
    change = new_change(program.program_id, member_id, change_id, from_tier=from_tier, to_tier=to.id,
                        direction=direction, reason_code=reason_code,
                        reason=reason_text(direction, reason_code, tiers, to, metric_value), metric=tiers.metric,
                        value=metric_value, threshold=to.threshold, at=at, business_key=business_key,
                        partner_ids=partner_ids)
    tx.create(change, on_fail=on_fail)
    loc = locale or program.default_locale
    before = domain.level(tiers, from_tier) if from_tier is not None else None
    params = {"from_tier": from_tier, "to_tier": to.id, "direction": direction, "reason_code": reason_code,
              "to_name": to.name(loc), "from_name": before.name(loc) if before else "",
              # The names in both languages: the message's language is decided at delivery (the member's then).
              "to_names": {lang: to.name(lang) for lang in ("ru", "en")},
              "from_names": {lang: before.name(lang) for lang in ("ru", "en")} if before else {},
              "metric": tiers.metric, "value": metric_value, "threshold": to.threshold,
              "points_unit": program.points_unit}
    message_id = stable_id("msg", "tier_changed", program.program_id, member_id, cause)
    pk, sk = keys.outbox_message(program.program_id, message_id)
    gpk, gsk = keys.gsi1_outbox_pending(day_of(at), clock.iso(at), message_id)
    tx.create(OutboxItem(PK=pk, SK=sk, GSI1PK=gpk, GSI1SK=gsk, program_id=program.program_id, message_id=message_id,
                         member_id=member_id, template=TEMPLATE, locale=loc, params=params,
                         business_key=business_key or f"tier|{member_id}|{cause}", status="pending", created_at=at),
              on_fail=on_fail)
    return change_view(change)


# --------------------------------------------------------------------------- reads


def known_at(profile: Any) -> list[str]:
    """The partners a member is identified at (their customer ids): who may hear of the member's tier."""
    ids: Any = getattr(profile, "customer_ids", None)
    if ids is None:
        return []
    mapping = ids.as_dict() if hasattr(ids, "as_dict") else (dict(ids) if isinstance(ids, dict) else {})
    return sorted(str(k) for k in mapping)


def status(deps: Ports, program: ProgramItem, member_id: str, locale: str | None = None, *,
           with_history: bool = True) -> dict[str, Any] | None:
    """Where a member stands: tier, metric value over the period, the next tier's threshold; None without tiers.

    Reads through the ``TierStore`` port: one ``GetItem`` and, with the history, one bounded ``Query``."""
    tiers = program.program_settings.tiers
    if tiers is None:
        return None
    state = deps.tiers.state(program.program_id, member_id)
    buckets = state.buckets_for(tiers.metric) if state else {}
    now_month = domain.month_of(deps.clock.now())
    p = domain.progress(tiers, state.tier if state else None, buckets, now_month)
    loc = locale or program.default_locale
    out: dict[str, Any] = {
        "tier": p.tier, "name": domain.level(tiers, p.tier).name(loc), "metric": p.metric, "value": p.value,
        "period_months": p.period_months,
        "since": clock.iso(state.tier_since) if state and state.tier_since else None,
        "next": None if p.next_tier is None else {
            "tier": p.next_tier, "name": domain.level(tiers, p.next_tier).name(loc), "threshold": p.next_threshold,
            "remaining": p.remaining},
        "review_month": state.review_month if state else None,
    }
    if with_history:
        out["history"] = [change_view(c) for c in deps.tiers.history(program.program_id, member_id, HISTORY_LIMIT)]
    return out
