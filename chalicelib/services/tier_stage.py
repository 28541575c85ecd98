"""The tier stage of the event pipeline: the rolling metric and promotion, in the event's transaction.

Registered after the ledger stage (``services.stages.builtin_stages``), so it sees what the event
posted (``view.outcomes["ledger"]``). For programs with ``settings.tiers`` it adds, per member whose
metric this event changes:

* points earned: every reward posted (not held for review), minus clawbacks of a refund;
* spend: the order's total for the buyer (net of refunds parked before it), minus refunds and
  cancellations later (the order's ledger item names the buyer);
* converted referrals: one for the level-1 referrer when the event converts the referral;

the amount to the bucket of the event's month and writes the member's ``TIER`` item conditioned on the
version read (a concurrent event on the same member fails its transaction and the pipeline re-reads
and decides again: no check-then-write, no missed or double promotion). When the value reaches a higher
tier's threshold the member is promoted at once: the history item and a ``tier_changed`` message are in
the same transaction. An event never demotes (``jobs.tiers`` does, at review).

Reads: only keys in the pipeline's second batched read (the ``TIER`` items of those members; for refunds
the order's item came with the first read), so the event still costs 3 round trips.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any

from chalicelib.domain import tiers as domain
from chalicelib.domain.events import ORDER_CANCELLED, ORDER_PAID, ORDER_REFUNDED
from chalicelib.services.stages import StageOutcome
from chalicelib.store import keys

if TYPE_CHECKING:
    from chalicelib.services.event_context import EventContext, StageView
    from chalicelib.store.transact import Transaction

Key = tuple[str, str]
REFUND_EVENTS = (ORDER_REFUNDED, ORDER_CANCELLED)


def _order(ctx: EventContext, items: dict[Key, Any]) -> Any:
    from chalicelib.services.ledger.reads import order_of

    return order_of(ctx, items)  # the order's item, or its order.paid record's state


class TierStage:
    name = "tiers"

    def first_read_keys(self, ctx: EventContext) -> list[Key]:
        return []  # the order's ledger item and record (refunds) are already in the ledger stage's first read

    def second_read_keys(self, ctx: EventContext, first: dict[Key, Any], chains: list[list[str]]) -> list[Key]:
        tiers = ctx.settings.tiers
        if tiers is None:
            return []
        members: dict[str, None] = {}
        if ctx.event.type in REFUND_EVENTS:
            order = _order(ctx, first)
            if order is not None:
                if tiers.metric == "points_earned":
                    members.update((p["member_id"], None) for p in order.stored_postings())
                elif tiers.metric == "spend" and order.buyer_id:
                    members[order.buyer_id] = None
        else:
            # Every member of every candidate chain (at most 1 + max_depth each): whoever this event can pay or
            # count for (the subject, a referrer it converts, an upline it rewards) is among them. Reading them all,
            # not a guess per metric, means a member's TIER item is never written unseen (a few absent keys cost
            # 0.5 RRU each); a subject enrolled by this very event has none yet.
            members.update((m, None) for chain in chains for m in chain)
        return [keys.member_tier(ctx.program_id, m) for m in members]

    def stage(self, ctx: EventContext, tx: Transaction, view: StageView) -> StageOutcome:
        tiers = ctx.settings.tiers
        if tiers is None:
            return StageOutcome()
        amounts = contributions(ctx, view)
        changes = [c for mid, amount in sorted(amounts.items()) if (c := _apply(ctx, tx, view, mid, amount))]
        _check_tiers_used(ctx, tx, view)
        return StageOutcome(reply={"tiers": {"changes": changes}} if changes else {}, audit={"changes": changes})


def _check_tiers_used(ctx: EventContext, tx: Transaction, view: StageView) -> None:
    """The tiers the rules looked at (``trigger.tiers``, multipliers) must still be those read when the event
    commits: a condition on the version of each member's ``TIER`` item this stage does not write anyway."""
    from chalicelib.services import rules as rules_service
    from chalicelib.services.ledger.reads import has_rules_for
    from chalicelib.services.outcomes import RetryEvent
    from chalicelib.store.tiers import TierStateItem

    rules = rules_service.current_rules(ctx.program, view.items)
    if (rules is None or not rules.uses_tiers or view.subject is None or ctx.event.type in REFUND_EVENTS
            or not has_rules_for(rules, ctx.event.type)):
        return
    for member_id in dict.fromkeys([view.subject.member_id, *view.ancestors[: rules.depth_needed]]):
        key = keys.member_tier(ctx.program_id, member_id)
        if tx.touches(key):
            continue
        read = view.items.get(key)
        condition = (TierStateItem.version == int(read.version or 0) if isinstance(read, TierStateItem)
                     else TierStateItem.PK.does_not_exist())
        tx.check(TierStateItem, key, condition, on_fail=RetryEvent())


Contribution = tuple[str, int]  # (the bucket's month "YYYY-MM", amount: negative for a clawback)


def _event_month(ctx: EventContext) -> str:
    return domain.month_of(min(ctx.event.occurred_at, ctx.now))


def _entry_month(view: StageView, entry_id: str | None, default: str) -> str:
    """The month of the reward a clawback reverses (its entry came with the refund's second read)."""
    from chalicelib.store.ledger import LedgerEntryItem

    for item in view.items.values():
        if isinstance(item, LedgerEntryItem) and item.entry_id == entry_id and item.effective_at is not None:
            return domain.month_of(item.effective_at)
    return default  # a refund parked before its order: the reward is this event's own


def contributions(ctx: EventContext, view: StageView) -> dict[str, list[Contribution]]:
    """What this event adds to each member's metric, by bucket month (negative amounts are clawbacks)."""
    tiers = ctx.settings.tiers
    assert tiers is not None
    out: dict[str, list[Contribution]] = defaultdict(list)
    event = ctx.event
    month = _event_month(ctx)
    if tiers.metric == "points_earned":
        ledger = view.outcomes.get("ledger")
        for p in (ledger.audit.get("postings") or []) if ledger else []:
            if p.get("status") == "held" or p.get("from_status") == "held":
                continue  # held for fraud review: not earned (yet)
            points = int(p["points"])
            at = month if points > 0 else _entry_month(view, p.get("reverses_entry_id"), month)
            out[str(p["member_id"])].append((at, points))
    elif tiers.metric == "spend":
        order = _order(ctx, view.items)
        currency_ok = event.order is None or event.order.currency in (None, ctx.program.currency)
        if event.type == ORDER_PAID and view.subject is not None and event.order is not None and currency_ok:
            total = int(event.order.total or 0)
            parked = list(order.parked or []) if order is not None else []
            if any(r.get("kind") == "cancel" for r in parked):
                total = 0
            else:
                total -= min(total, sum(int(r.get("amount") or 0) for r in parked))
            out[view.subject.member_id].append((month, total))
        elif event.type in REFUND_EVENTS and order is not None and order.paid_business_key and order.buyer_id:
            left = max(int(order.total or 0) - int(order.refunded_minor or 0), 0)
            if event.type == ORDER_CANCELLED:
                taken = 0 if int(order.cancelled or 0) else left
            else:
                same_currency = event.refund is None or event.refund.currency in (None, order.currency)
                taken = min(int(event.refund.amount or 0), left) if event.refund and same_currency else 0
            out[order.buyer_id].append((month, -taken))  # the order's month is not kept: newest buckets first
    elif view.converts_referral and view.ancestors:
        out[view.ancestors[0]].append((month, 1))
    return {m: [c for c in cs if c[1]] for m, cs in out.items() if any(c[1] for c in cs)}


def _apply(ctx: EventContext, tx: Transaction, view: StageView, member_id: str,
           amounts: list[Contribution]) -> dict[str, Any] | None:
    from chalicelib.services import tiers as service
    from chalicelib.services.outcomes import AlreadyProcessed, RetryEvent
    from chalicelib.store.members import MemberItem
    from chalicelib.store.tiers import TierStateItem, stage_state

    tiers = ctx.settings.tiers
    assert tiers is not None
    read = view.items.get(keys.member_tier(ctx.program_id, member_id))
    state = read if isinstance(read, TierStateItem) else None
    now_month = domain.month_of(ctx.now)
    before = state.buckets_for(tiers.metric) if state else {}
    buckets = domain.prune(before, now_month, tiers.period_months)
    for month, amount in amounts:
        buckets = (domain.add(buckets, month, amount, now_month, tiers.period_months) if amount > 0
                   else domain.take(buckets, month, -amount, now_month, tiers.period_months))
    if state is None and not buckets:
        return None  # nothing counted (a back-dated event outside the period, a clawback of nothing counted)
    current = state.tier if state else tiers.levels[0].id
    value = domain.value(buckets, now_month, tiers.period_months)
    up = domain.promoted(tiers, current, value)
    tier = up.id if up else current
    since = ctx.now if up or state is None else state.tier_since
    review = domain.review_month(tiers, tier, buckets, now_month)
    if any(amount < 0 for _, amount in amounts) and review is not None:
        review = min(review, now_month)  # a clawback: review soon (never demoted here)
    stage_state(tx, ctx.program_id, member_id, state, tier=tier, metric=tiers.metric, buckets=buckets,
                tier_since=since, review=review, now=ctx.now, on_fail=RetryEvent())
    if up is None:
        return None
    profile = view.items.get(keys.member(ctx.program_id, member_id))
    if view.subject is not None and view.subject.member_id == member_id:
        profile = view.subject
    locale = profile.locale if isinstance(profile, MemberItem) and profile.locale else None
    partners = service.known_at(profile) if isinstance(profile, MemberItem) else []
    if member_id == (view.subject.member_id if view.subject else None):
        partners.append(ctx.partner_id)  # the buyer is identified where the event happened
    change = service.stage_change(tx, ctx.program, member_id, from_tier=current, to=up, reason_code="promotion",
                                  metric_value=value, at=ctx.now, cause=f"event|{ctx.business_key}",
                                  business_key=ctx.business_key, locale=locale, on_fail=AlreadyProcessed(),
                                  partner_ids=partners)
    return {"member_id": member_id, **{k: change[k] for k in ("from", "to", "direction", "value", "threshold")}}
