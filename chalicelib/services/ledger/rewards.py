"""Rewards: the engine's inputs from what was read, its postings as entries, its counter deltas.

Counters (monthly per member, recurring per friend and rule, the program's budget) are updated
with the engine's ``max_before`` as the write condition: two concurrent events cannot both use the
last headroom; the loser's transaction fails and the pipeline re-runs it from a fresh read.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from chalicelib.domain.rewards import (
    Ancestor,
    CounterDelta,
    EngineEvent,
    Posting,
    ProgramCounters,
    RulesDoc,
    Subject,
    evaluate,
    month_key,
)
from chalicelib.services.ledger.plan import LedgerPlan, posting_key
from chalicelib.services.outcomes import RetryEvent
from chalicelib.store import keys
from chalicelib.store.ledger import (
    KIND_REWARD,
    STATUS_AVAILABLE,
    STATUS_HELD,
    STATUS_PENDING,
    MonthCounterItem,
    ProgramCountersItem,
    RecurringCounterItem,
    member_counts,
    new_entry,
    stable_id,
    stage_counter,
)
from chalicelib.store.members import MemberItem

if TYPE_CHECKING:
    from chalicelib.services.event_context import EventContext, StageView
    from chalicelib.store.transact import Transaction

Key = tuple[str, str]


def stage_rewards(ctx: EventContext, tx: Transaction, plan: LedgerPlan, view: StageView, rules: RulesDoc,
                  summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Evaluate the rules for the event, add entries to ``plan`` and counters to ``tx``; the postings.

    Offer rewards: the engine is told how many codes each granted offer's pool can give this event
    (``services.vouchers``); the vouchers it grants are issued in ``tx`` and listed in
    ``summary["vouchers"]``; an empty pool is a ``pool_empty`` skip (and its fallback points a posting).
    """
    from chalicelib.services import vouchers

    pools = {ref.offer_id: vouchers.pool_view(ctx.program_id, ref, view.items)
             for ref in vouchers.offer_refs(rules, ctx.event.type)}
    evaluation = evaluate(rules, engine_event(ctx), subject_of(ctx, view, rules), ancestors_of(ctx, view, rules),
                          counters_of(ctx, view.items, rules),
                          offers={offer_id: pool.available() for offer_id, pool in pools.items()},
                          offers_this_month=_offers_this_month(ctx, view, rules))
    postings = [post(plan, posting) for posting in evaluation.postings]
    stage_counter_deltas(ctx, tx, evaluation.counter_deltas)
    if evaluation.vouchers:
        def locale_of(member_id: str) -> str | None:
            profile = plan.profile(member_id)
            return profile.locale if profile is not None and profile.locale else None

        _stage_offer_months(ctx, tx, rules, evaluation.vouchers)
        if plan.hold:
            # Held for fraud review: a voucher is value (a code) that cannot be taken back once shown, so it is
            # not issued now; the review item keeps the grant and approval issues it (void never does).
            summary["held_vouchers"] = [vouchers.held_grant(g) for g in evaluation.vouchers]
        else:
            summary["vouchers"] = vouchers.stage_grants(tx, ctx.program, view.items, list(evaluation.vouchers),
                                                        pools, ctx.now, locale_of)
    elif any(pool.unread for pool in pools.values()) and any(
            s.reason_code == "pool_empty" for s in evaluation.skipped):
        from chalicelib.services.outcomes import RetryEvent

        raise RetryEvent()  # a cold read saw codes but not their slots: read again (the rules are cached now)
    summary["skipped"] = [
        {"rule_id": s.rule_id, "member_id": s.member_id, "reason_code": s.reason_code, "detail": s.detail,
         "requested_points": s.requested_points, "granted_points": s.granted_points}
        for s in evaluation.skipped
    ]
    return postings


def _offers_this_month(ctx: EventContext, view: StageView, rules: RulesDoc) -> dict[str, int]:
    from chalicelib.store.offers import VoucherMonthItem

    month = month_key(ctx.event.occurred_at)
    out: dict[str, int] = {}
    for rule in rules.rules:
        if rule.amount.offer is None or rule.amount.offer.per_month is None:
            continue
        for member_id in [view.subject.member_id if view.subject else "", *view.ancestors]:
            item = view.items.get(keys.voucher_month(ctx.program_id, member_id, rule.id, month))
            if isinstance(item, VoucherMonthItem):
                out[f"{rule.id}#{member_id}"] = int(item.points or 0)
    return out


def _stage_offer_months(ctx: EventContext, tx: Transaction, rules: RulesDoc, grants: Iterable[Any]) -> None:
    """One ADD per (rule, member) with a monthly limit, conditioned on the count read staying under it."""
    from chalicelib.store.offers import VoucherMonthItem

    limits = {r.id: r.amount.offer.per_month for r in rules.rules if r.amount.offer is not None}
    month = month_key(ctx.event.occurred_at)
    for grant in grants:
        limit = limits.get(grant.rule_id)
        if limit is not None:
            stage_counter(tx, VoucherMonthItem, keys.voucher_month(ctx.program_id, grant.member_id, grant.rule_id,
                                                                   month), 1, limit - 1, on_fail=RetryEvent())


def engine_event(ctx: EventContext) -> EngineEvent:
    event, order = ctx.event, ctx.event.order
    return EngineEvent(
        business_key=ctx.business_key,
        type=event.type,
        occurred_at=event.occurred_at,
        partner_id=ctx.partner_id,
        total=order.total if order else None,
        subtotal=order.subtotal if order else None,
        shipping=order.shipping if order else None,
        discount=order.discount if order else None,
        currency=order.currency if order else None,
    )


def _month_points(ctx: EventContext, items: dict[Key, Any], member_id: str) -> int:
    item = items.get(keys.member_month(ctx.program_id, member_id, month_key(ctx.event.occurred_at)))
    return int(item.points or 0) if isinstance(item, MonthCounterItem) else 0


def subject_of(ctx: EventContext, view: StageView, rules: RulesDoc) -> Subject:
    subject = view.subject
    assert subject is not None
    recurring: dict[str, int] = {}
    for rule in rules.rules:
        if rule.recurring_cap is not None:
            item = view.items.get(keys.recurring_counter(ctx.program_id, subject.member_id, rule.id))
            if isinstance(item, RecurringCounterItem):
                recurring[rule.id] = int(item.points or 0)
    return Subject(
        tier=member_tier(ctx, view.items, subject.member_id, rules),
        member_id=subject.member_id,
        referrer_id=subject.referrer_id,
        attributed_at=view.attributed_at,
        orders_before=view.orders_before,
        month_earned_points=_month_points(ctx, view.items, subject.member_id),
        recurring_paid=recurring,
    )


def ancestors_of(ctx: EventContext, view: StageView, rules: RulesDoc) -> list[Ancestor]:
    out = []
    for level, member_id in enumerate(view.ancestors[: rules.depth_needed], start=1):
        profile = view.items.get(keys.member(ctx.program_id, member_id))
        balance = view.items.get(keys.balance(ctx.program_id, member_id))
        converted = member_counts(profile if isinstance(profile, MemberItem) else None, balance)[1]
        out.append(Ancestor(member_id=member_id, level=level, converted_referrals=converted,
                            month_earned_points=_month_points(ctx, view.items, member_id),
                            tier=member_tier(ctx, view.items, member_id, rules)))
    return out


def member_tier(ctx: EventContext, items: dict[Key, Any], member_id: str, rules: RulesDoc) -> str | None:
    """The member's tier before this event (the lowest when none is recorded); None without tiers or tier rules."""
    from chalicelib.domain import tiers as tier_domain
    from chalicelib.store.tiers import TierStateItem

    tiers = ctx.settings.tiers
    if tiers is None or not rules.uses_tiers:
        return None
    state = items.get(keys.member_tier(ctx.program_id, member_id))
    return tier_domain.level(tiers, state.tier if isinstance(state, TierStateItem) else None).id


def counters_of(ctx: EventContext, items: dict[Key, Any], rules: RulesDoc) -> ProgramCounters:
    if rules.budget_points is None:
        return ProgramCounters()
    item = items.get(keys.program_counters(ctx.program_id))
    return ProgramCounters(budget_used_points=int(item.points or 0) if isinstance(item, ProgramCountersItem) else 0)


def stage_counter_deltas(ctx: EventContext, tx: Transaction, deltas: Iterable[CounterDelta]) -> None:
    pid = ctx.program_id
    for d in deltas:
        if d.kind == "member_month":
            assert d.member_id is not None and d.month is not None
            stage_counter(tx, MonthCounterItem, keys.member_month(pid, d.member_id, d.month), d.points,
                          d.max_before, on_fail=RetryEvent())
        elif d.kind == "budget":
            stage_counter(tx, ProgramCountersItem, keys.program_counters(pid), d.points, d.max_before,
                          on_fail=RetryEvent())
        else:
            assert d.member_id is not None and d.rule_id is not None
            stage_counter(tx, RecurringCounterItem, keys.recurring_counter(pid, d.member_id, d.rule_id), d.points,
                          d.max_before, on_fail=RetryEvent())


def post(plan: LedgerPlan, posting: Posting) -> dict[str, Any]:
    ctx = plan.ctx
    # A back-dated event whose holding period is already over is available at once.
    available = posting.status == STATUS_AVAILABLE or posting.available_at <= ctx.now
    status = STATUS_AVAILABLE if available else STATUS_PENDING
    if plan.hold:  # held for fraud review (risk stage): neither spendable nor released by the holding job
        available, status = False, STATUS_HELD
    entry = new_entry(
        ctx.program_id, posting.member_id, stable_id("le", posting.key), ctx.event.occurred_at,
        kind=KIND_REWARD, status=status, points=posting.points, reason=posting.reason,
        reason_code=posting.reason_code, created_at=ctx.now, available_at=posting.available_at,
        business_key=posting.business_key, rule_id=posting.rule_id, rule_version=posting.rule_version,
        level=posting.level, funding_partner_id=posting.funding_partner_id, partner_id=posting.partner_id,
        reversed_points=0, indexed_by_event=True,
    )
    plan.new_entries.append(entry)
    delta = plan.deltas[posting.member_id]
    delta.earned += posting.points
    if status == STATUS_HELD:
        delta.held += posting.points  # no message: the member hears about it when a reviewer approves
    else:
        plan.earned[posting.member_id].append(entry)
        if available:
            delta.available += posting.points
        else:
            delta.pending += posting.points
    return {
        "key": posting_key(posting.rule_id, posting.level, posting.member_id),
        "entry_id": entry.entry_id, "sk": entry.SK, "member_id": posting.member_id, "points": posting.points,
        "status": status, "rule_id": posting.rule_id, "rule_version": posting.rule_version, "level": posting.level,
        "funding_partner_id": posting.funding_partner_id, "reason": posting.reason, "_entry": entry,
        "available_at": posting.available_at,
    }
