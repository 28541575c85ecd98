"""The rewards engine: state in → postings + counter deltas + skip reasons out. Pure.

No I/O, no clock (``event.occurred_at`` is the only "now"), no randomness, integers only.
The caller reads the subject, its upline and the counters in one batch, calls ``evaluate`` and
writes postings and ``counter_deltas`` in one transaction (conditions from ``max_before``).

Rounding: every conversion is a floor. A percentage reward is
``floor(base_minor * rate_bp / (10_000 * point_value_minor))`` points, so a member never gets a
point the program did not fund in money; a refund claws back ``floor`` of the proportional
share until the refunds reach the order total, when the exact remainder is reversed.

Caps are applied per reward in a fixed order, narrowest first, so the recorded reason names the
most specific limit that bit:
  1. ``amount.max_points``                (cap_reward)
  2. ``recurring.max_points_per_friend``  (cap_recurring)
  3. member monthly cap                   (cap_monthly: min of rule and program cap)
  4. program ``budget_points``            (cap_budget)
The result is min() of all of them whatever the order; a trimmed reward posts the remainder and
records a Skip with ``granted_points > 0``. Rules run in document order and each posting
consumes headroom before the next rule is looked at, so earlier rules win when a cap is tight.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from chalicelib.domain import l10n
from chalicelib.domain.errors import ValidationFailed, field_error
from chalicelib.domain.rewards.models import (
    Amount,
    Ancestor,
    CounterDelta,
    EngineEvent,
    Evaluation,
    PartnerOverride,
    PostedEntryLike,
    Posting,
    ProgramCounters,
    Reversal,
    Rule,
    RulesDoc,
    Skip,
    SkipCode,
    Subject,
    VoucherGrant,
)

BP_DENOMINATOR = 10_000  # rate_bp is in basis points: 10_000 bp = 100 %


# --------------------------------------------------------------------------- small helpers


def month_key(at: datetime) -> str:
    """Calendar month (UTC) a counter belongs to, e.g. ``"2025-03"``."""
    at = _utc(at)
    return f"{at.year:04d}-{at.month:02d}"


def add_months(at: datetime, months: int) -> datetime:
    """Same day-of-month ``months`` later, clamped to the month's last day (Jan 31 + 1 = Feb 28)."""
    y, m = divmod(at.month - 1 + months, 12)
    year, month = at.year + y, m + 1
    return at.replace(year=year, month=month, day=min(at.day, calendar.monthrange(year, month)[1]))


def percent_points(base_minor: int, rate_bp: int, point_value_minor: int) -> int:
    """``floor(base_minor * rate_bp / 10_000 / point_value_minor)`` with integers only.

    One division at the end so there is exactly one rounding step (floor), not two.
    """
    if base_minor <= 0:
        return 0
    return (base_minor * rate_bp) // (BP_DENOMINATOR * point_value_minor)


def base_amount(event: EngineEvent, base: str) -> int | None:
    """The order amount a rule measures, in minor units, never negative; None if the event has none.

    ``subtotal`` is goods before discount, net of shipping (derived as total - shipping when the
    event does not send it); ``total`` is what the customer paid.
    """
    total, shipping, discount = event.total, event.shipping or 0, event.discount or 0
    subtotal = event.subtotal if event.subtotal is not None else (None if total is None else total - shipping)
    value: int | None
    if base == "total":
        value = total
    elif base == "total_minus_shipping":
        value = None if total is None else total - shipping
    elif base == "subtotal":
        value = subtotal
    else:  # subtotal_minus_discount
        value = None if subtotal is None else subtotal - discount
    return None if value is None else max(value, 0)


def _utc(at: datetime) -> datetime:
    if at.tzinfo is None:
        raise ValidationFailed(
            "occurred_at must be timezone-aware",
            details={"errors": [field_error("$.occurred_at", "must be timezone-aware (UTC)")]},
        )
    return at.astimezone(UTC)


# --------------------------------------------------------------------------- evaluate
#
# ``evaluate`` runs each matching rule through the same named steps, in this order (the order is
# behaviour: the first step that says no names the skip reason):
#
#   _selection_skip   partner filter, partner override disabled, order number      -> skip, no recipient
#   _find_recipient   self / friend (needs a referrer) / referrer level (cycles)    -> _Recipient or skip
#   _tier_skip        ``trigger.tiers``                                             -> skip
#   _order_base       currency, order amount present, ``min_order_amount``          -> base or skip
#   _recurring_skip   attribution window by months and by orders                    -> skip
#   _grant_offer      an offer reward: a voucher, or the fallback points            -> voucher / skip
#   _requested        points before caps (fixed, rate, commission tier, multiplier) -> _Reward
#   _apply_caps       the four caps, narrowest first (trims are skips with granted > 0)
#   _consume          headroom taken for the next rule, and the writer's ``max_before`` conditions
#   _posting          the ledger entry and its reason (wording from ``domain.l10n``)
#
# The read-only inputs travel in a :class:`_RuleContext`; everything that changes as rules run
# (counters, vouchers, skips) lives in one :class:`_Running`.


@dataclass
class _Running:
    """Counter values as the evaluation goes: what was read plus what earlier rules consumed."""

    month_points: dict[str, int]
    budget_used: int
    recurring_paid: dict[str, int]
    # member_id -> tightest "max value before the write" over the postings behind its delta
    month_max_before: dict[str, int] = field(default_factory=dict)
    month_delta: dict[str, int] = field(default_factory=dict)
    recurring_delta: dict[str, int] = field(default_factory=dict)
    recurring_max_before: dict[str, int] = field(default_factory=dict)
    budget_delta: int = 0
    offers_left: dict[str, int] = field(default_factory=dict)
    offers_month: dict[str, int] = field(default_factory=dict)
    vouchers: list[VoucherGrant] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)

    def refuse(self, skip: Skip) -> Posting | None:
        """Record why a rule pays nothing; returns None (no posting) so a step reads ``return run.refuse(...)``."""
        self.skipped.append(skip)
        return None


@dataclass(frozen=True)
class _Recipient:
    member_id: str
    level: int
    converted_referrals: int
    tier: str | None = None


@dataclass(frozen=True)
class _RuleContext:
    """One rule against one event: everything the steps read, nothing they change."""

    rules: RulesDoc
    rule: Rule
    event: EngineEvent
    at: datetime  # event.occurred_at in UTC
    subject: Subject
    upline: Mapping[int, Ancestor]
    cycles: frozenset[int]
    override: PartnerOverride | None  # the rule's override for the event's partner

    @property
    def amount(self) -> Amount:
        """The amount paid at the event's partner: the override's (merged) amount, else the rule's."""
        o = self.override
        return o.amount if o is not None and o.amount is not None else self.rule.amount

    def skip(self, code: SkipCode, detail: str, member_id: str | None = None,
             requested: int = 0, granted: int = 0) -> Skip:
        return Skip(self.rule.id, member_id, code, detail, requested, granted)


@dataclass(frozen=True)
class _Reward:
    """Points before caps and how they were computed (for the reason text)."""

    requested: int
    how: l10n.HowComputed
    multiplier_bp: int | None = None  # the recipient's tier multiplier, when the rule has one


def evaluate(
    rules: RulesDoc,
    event: EngineEvent,
    subject: Subject,
    ancestors: Sequence[Ancestor],
    counters: ProgramCounters | None = None,
    offers: Mapping[str, int] | None = None,
    offers_this_month: Mapping[str, int] | None = None,
) -> Evaluation:
    """Apply every enabled rule whose trigger event equals ``event.type``, in document order.

    ``offers``: for each offer id, how many codes this event can still be given (the writer read the
    pool; a static code counts as plenty). An ``offer`` reward takes one and becomes a
    :class:`VoucherGrant`; when none is left it records ``pool_empty`` and, when the rule sets
    ``fallback_points``, posts those points instead (through every cap, like any reward).
    ``offers_this_month``: ``"<rule_id>#<member_id>"`` → vouchers of that rule the member got this
    calendar month (for ``offer.per_month``; reaching it is an ``offer_limit`` skip, no fallback).

    ``ancestors`` is the subject's upline (level 1 = direct referrer); levels deeper than
    ``rules.max_depth`` are ignored. Rules for other event types are ignored silently; rules for
    this event type that pay nothing are reported in ``skipped``.
    """
    counters = counters or ProgramCounters()
    at = _utc(event.occurred_at)
    upline, cycles = _upline(subject, ancestors, rules.max_depth)
    month_points = {subject.member_id: subject.month_earned_points}
    for a in upline.values():
        month_points[a.member_id] = a.month_earned_points
    run = _Running(month_points, counters.budget_used_points, dict(subject.recurring_paid),
                   offers_left=dict(offers or {}), offers_month=dict(offers_this_month or {}))
    postings: list[Posting] = []
    frozen_cycles = frozenset(cycles)
    for rule in rules.rules:
        if not rule.enabled or rule.trigger.event != event.type:
            continue
        override = rule.partners.get(event.partner_id) if event.partner_id is not None else None
        ctx = _RuleContext(rules, rule, event, at, subject, upline, frozen_cycles, override)
        posting = _evaluate_rule(ctx, run)
        if posting is not None:
            postings.append(posting)

    return Evaluation(
        postings=tuple(postings),
        skipped=tuple(run.skipped),
        counter_deltas=_deltas(run, subject, rules, month_key(at)),
        month=month_key(at),
        vouchers=tuple(run.vouchers),
    )


def _upline(subject: Subject, ancestors: Iterable[Ancestor], max_depth: int) -> tuple[dict[int, Ancestor], set[int]]:
    """Level -> ancestor. A member seen twice (or the subject itself) is a referral cycle: such a
    level is never paid, otherwise a member could earn from their own purchases."""
    upline: dict[int, Ancestor] = {}
    cycles: set[int] = set()
    seen = {subject.member_id}
    for a in sorted(ancestors, key=lambda a: a.level):
        if not 1 <= a.level <= max_depth or a.level in upline or a.level in cycles:
            continue
        if a.member_id in seen:
            cycles.add(a.level)
            continue
        seen.add(a.member_id)
        upline[a.level] = a
    return upline, cycles


def _evaluate_rule(ctx: _RuleContext, run: _Running) -> Posting | None:
    """One rule through the steps above; a step that says no records its Skip and the rule pays nothing."""
    recipient = _selection_skip(ctx) or _find_recipient(ctx)
    if isinstance(recipient, Skip):
        return run.refuse(recipient)
    mid = recipient.member_id
    base = _tier_skip(ctx, recipient) or _order_base(ctx, mid)
    if isinstance(base, Skip):
        return run.refuse(base)
    if refused := _recurring_skip(ctx, mid):
        return run.refuse(refused)
    if ctx.amount.offer is not None and not _grant_offer(ctx, recipient, run):
        return None
    reward = _requested(ctx, base, recipient)
    if reward.requested <= 0:
        return run.refuse(ctx.skip(
            "zero_points", f"{l10n.how_phrase(reward.how, LEDGER_LOCALE)} rounds down to 0 points", mid))
    points, trims = _apply_caps(ctx, mid, reward.requested, run)
    if points <= 0:
        return None
    _consume(ctx, mid, points, run)
    return _posting(ctx, recipient, reward, points, trims)


def _selection_skip(ctx: _RuleContext) -> Skip | None:
    """Whether the rule is for this event at all: the partner, the partner's override, the order number."""
    trigger, event = ctx.rule.trigger, ctx.event
    if trigger.partners and event.partner_id not in trigger.partners:
        return ctx.skip("trigger_not_matched", f"event at partner {event.partner_id!r}, rule is for {trigger.partners}")
    if ctx.override is not None and not ctx.override.enabled:
        return ctx.skip("disabled_for_partner", f"rule is disabled for partner {event.partner_id!r}")
    orders_before = ctx.subject.orders_before
    if event.type == "order.paid" and not trigger.order_number_matches(orders_before):
        return ctx.skip(
            "trigger_not_matched",
            f"this is order #{orders_before + 1}, rule wants order={trigger.order}"
            + (f" n={trigger.n}" if trigger.n else ""),
        )
    return None


def _find_recipient(ctx: _RuleContext) -> _Recipient | Skip:
    """Who gets it. A "friend" reward exists only because somebody referred the subject."""
    subject, wanted = ctx.subject, ctx.rule.recipient
    if wanted.type == "self":
        return _Recipient(subject.member_id, 0, 0, subject.tier)
    if wanted.type == "friend":
        if subject.referrer_id is None:
            return ctx.skip("no_referrer", "the member was not referred", subject.member_id)
        return _Recipient(subject.member_id, 0, 0, subject.tier)
    level = wanted.level
    if level in ctx.cycles:
        return ctx.skip("ancestry_cycle", f"level {level} would pay a member already in the chain")
    ancestor = ctx.upline.get(level)
    if ancestor is None:
        return ctx.skip("no_referrer", f"the member has no level-{level} referrer")
    return _Recipient(ancestor.member_id, level, ancestor.converted_referrals, ancestor.tier)


def _tier_skip(ctx: _RuleContext, recipient: _Recipient) -> Skip | None:
    tiers = ctx.rule.trigger.tiers
    if tiers and recipient.tier not in tiers:
        return ctx.skip("tier_not_matched", f"the recipient's tier is {recipient.tier!r}, rule is for {list(tiers)}",
                        recipient.member_id)
    return None


def _order_base(ctx: _RuleContext, mid: str) -> int | Skip | None:
    """The order amount the reward measures; None when the amount does not need one."""
    amount, event, currency = ctx.amount, ctx.event, ctx.rules.currency
    if not amount.needs_order_amount:
        return None
    if currency and event.currency and event.currency != currency:
        return ctx.skip("currency_mismatch", f"event in {event.currency}, program in {currency}", mid)
    base = base_amount(event, amount.base)
    if base is None:
        return ctx.skip("no_amount", "the event carries no order amount", mid)
    if amount.min_order_amount is not None and base < amount.min_order_amount:
        return ctx.skip("below_min_order", f"{amount.base} {base} < min_order_amount {amount.min_order_amount}", mid)
    return base


def _recurring_skip(ctx: _RuleContext, mid: str) -> Skip | None:
    """A recurring reward pays only inside the attribution window (months, orders)."""
    recurring, subject, at = ctx.rule.recurring, ctx.subject, ctx.at
    if recurring is None:
        return None
    if subject.attributed_at is None or at < _utc(subject.attributed_at):
        return ctx.skip("recurring_not_attributed", "the member has no referral attribution before this order", mid)
    if recurring.months is not None and at >= add_months(_utc(subject.attributed_at), recurring.months):
        return ctx.skip("recurring_expired", f"more than {recurring.months} months since attribution", mid)
    if recurring.orders is not None and subject.orders_before >= recurring.orders:
        return ctx.skip("recurring_expired", f"only the first {recurring.orders} orders count", mid)
    return None


def _grant_offer(ctx: _RuleContext, recipient: _Recipient, run: _Running) -> bool:
    """An offer reward: take a code (a VoucherGrant) or record why not. True when the rule's
    ``fallback_points`` are to be posted instead (the pool is empty)."""
    ref, rule, mid = ctx.amount.offer, ctx.rule, recipient.member_id
    assert ref is not None
    per_member = f"{rule.id}#{mid}"
    if ref.per_month is not None and run.offers_month.get(per_member, 0) >= ref.per_month:
        run.skipped.append(ctx.skip("offer_limit", f"{ref.per_month} voucher(s) of this rule per month already given",
                                    mid))
        return False
    if run.offers_left.get(ref.offer_id, 0) > 0:
        run.offers_month[per_member] = run.offers_month.get(per_member, 0) + 1
        run.offers_left[ref.offer_id] -= 1
        run.vouchers.append(VoucherGrant(
            member_id=mid, partner_id=ref.partner_id, offer_id=ref.offer_id, rule_id=rule.id,
            rule_version=ctx.rules.version, level=recipient.level, recipient=rule.recipient.type,
            business_key=ctx.event.business_key, event_partner_id=ctx.event.partner_id,
            reason=l10n.voucher_reason(LEDGER_LOCALE, rule_name=rule.name or rule.id, offer_id=ref.offer_id,
                                       partner_id=ref.partner_id, what=_event_phrase(ctx))))
        return False
    fallback = ref.fallback_points or 0
    detail = f"no code left for offer {ref.offer_id}" + (f"; {fallback} fallback points instead" if fallback else "")
    run.skipped.append(ctx.skip("pool_empty", detail, mid, fallback, fallback))
    return bool(fallback)


def _requested(ctx: _RuleContext, base: int | None, recipient: _Recipient) -> _Reward:
    """Points before caps: fixed, a rate of ``base``, the recipient's commission tier; then the
    recipient's member-tier multiplier."""
    amount = ctx.amount
    points, rate_bp, tier_min = amount.points, amount.rate_bp, None
    how: l10n.HowComputed
    if amount.offer is not None:
        requested, how = int(amount.offer.fallback_points or 0), l10n.HowComputed()
    else:
        if amount.tiers:
            # Highest tier whose threshold the recipient reached; tiers start at 0 (schema check).
            tier = [t for t in amount.tiers if t.min_converted <= recipient.converted_referrals][-1]
            points, rate_bp, tier_min = tier.points, tier.rate_bp, tier.min_converted
        if points is not None:
            requested, how = points, l10n.HowComputed(tier_min_converted=tier_min)
        else:
            assert rate_bp is not None and base is not None  # schema guarantees one kind; _order_base checked base
            requested = percent_points(base, rate_bp, ctx.rules.point_value_minor)
            how = l10n.HowComputed(rate_bp=rate_bp, base=amount.base, base_minor=base, currency=ctx.event.currency,
                                   tier_min_converted=tier_min)
    multipliers = ctx.rule.tier_multipliers
    multiplier = multipliers.get(recipient.tier or "") if multipliers else None
    if multiplier is not None:
        requested = tier_multiply(requested, multiplier)
    return _Reward(requested, how, multiplier)


def _apply_caps(ctx: _RuleContext, mid: str, requested: int, run: _Running) -> tuple[int, list[str]]:
    """Trim ``requested`` by each cap in turn, narrowest first; each trim is recorded as a Skip.
    Returns the points left (0: nothing to post) and the codes of the caps that trimmed."""
    points = requested
    trims: list[str] = []
    for code, remaining in _headroom(ctx, mid, run):
        if remaining is None or points <= remaining:
            continue
        granted = max(remaining, 0)
        what = l10n.cap_name(code, LEDGER_LOCALE)
        run.skipped.append(ctx.skip(code, f"{what}: {points} -> {granted}", mid, points, granted))
        points = granted
        trims.append(code)
        if granted == 0:
            break
    return points, trims


def _headroom(ctx: _RuleContext, mid: str, run: _Running) -> tuple[tuple[SkipCode, int | None], ...]:
    """What each cap still allows (None: no such cap), in the order caps are applied."""
    rule, rules, amount = ctx.rule, ctx.rules, ctx.amount
    month_cap = _month_cap(ctx)
    recurring_max = rule.recurring_cap
    return (
        ("cap_reward", amount.max_points),
        ("cap_recurring", None if recurring_max is None else recurring_max - run.recurring_paid.get(rule.id, 0)),
        ("cap_monthly", None if month_cap is None else month_cap - run.month_points[mid]),
        ("cap_budget", None if rules.budget_points is None else rules.budget_points - run.budget_used),
    )


def _month_cap(ctx: _RuleContext) -> int | None:
    return _min_cap(ctx.rule.member_monthly_cap_points, ctx.rules.member_monthly_cap_points)


def _consume(ctx: _RuleContext, mid: str, points: int, run: _Running) -> None:
    """Take the headroom now so the next rule sees it, and remember the writer's conditions."""
    rule, rules = ctx.rule, ctx.rules
    month_cap = _month_cap(ctx)
    if month_cap is not None:
        run.month_max_before[mid] = min(
            run.month_max_before.get(mid, month_cap), month_cap - run.month_delta.get(mid, 0) - points
        )
    run.month_points[mid] += points
    run.month_delta[mid] = run.month_delta.get(mid, 0) + points
    if rules.budget_points is not None:
        run.budget_used += points
        run.budget_delta += points
    recurring_max = rule.recurring_cap
    if recurring_max is not None:
        # Only a capped recurring rule counts what it paid per friend: without the cap nothing reads
        # the counter (cap_recurring is None), so it is neither read nor written.
        run.recurring_paid[rule.id] = run.recurring_paid.get(rule.id, 0) + points
        run.recurring_delta[rule.id] = run.recurring_delta.get(rule.id, 0) + points
        run.recurring_max_before[rule.id] = recurring_max - run.recurring_delta[rule.id]


_REASON_CODES: dict[str, str] = {"self": "self_reward", "friend": "friend_reward", "referrer": "referral_reward"}


def _posting(ctx: _RuleContext, recipient: _Recipient, reward: _Reward, points: int, trims: list[str]) -> Posting:
    rule, rules, event, override = ctx.rule, ctx.rules, ctx.event, ctx.override
    hold = _first_set(override.hold_days if override else None, rule.hold_days, rules.hold_days)
    funder = _first_set(override.funded_by if override else None, rule.funded_by, event.partner_id)
    kind = rule.recipient.type
    reason = l10n.reward_reason(
        LEDGER_LOCALE, recipient=kind, what=_event_phrase(ctx), level=recipient.level,
        subject_id=ctx.subject.member_id, points_granted=points, points_requested=reward.requested,
        rule_name=rule.name or rule.id, how=reward.how, trims=trims)
    if reward.multiplier_bp is not None:
        reason += l10n.tier_multiplier_phrase(LEDGER_LOCALE, tier=recipient.tier, multiplier_bp=reward.multiplier_bp)
    if ctx.amount.offer is not None:
        reason_code = "offer_fallback"
    elif rule.recurring is not None:
        reason_code = "recurring_reward"
    else:
        reason_code = _REASON_CODES[kind]
    return Posting(
        member_id=recipient.member_id,
        points=points,
        rule_id=rule.id,
        rule_version=rules.version,
        level=recipient.level,
        recipient=kind,
        funding_partner_id=funder,
        reason=reason,
        reason_code=reason_code,
        available_at=ctx.at + timedelta(days=hold),
        status="available" if hold == 0 else "pending",
        business_key=event.business_key,
        partner_id=event.partner_id,
        requested_points=reward.requested,
    )


def _deltas(run: _Running, subject: Subject, rules: RulesDoc, month: str) -> tuple[CounterDelta, ...]:
    out = [
        CounterDelta("member_month", pts, member_id=mid, month=month, max_before=run.month_max_before.get(mid))
        for mid, pts in run.month_delta.items()
        if rules.counts_months  # no monthly cap anywhere: nothing would ever read the counter
    ]
    if run.budget_delta:
        # Only programs with a budget write the (hot, shared) budget item.
        assert rules.budget_points is not None
        out.append(CounterDelta("budget", run.budget_delta, max_before=rules.budget_points - run.budget_delta))
    out.extend(
        CounterDelta(
            "recurring", pts, member_id=subject.member_id, rule_id=rid, max_before=run.recurring_max_before.get(rid)
        )
        for rid, pts in run.recurring_delta.items()
    )
    return tuple(out)


def tier_multiply(points: int, multiplier_bp: int) -> int:
    """A tier multiplier in basis points (15000 = x1.5), one floor: ``points * bp // 10000``, integers only."""
    return points * multiplier_bp // BP_DENOMINATOR


def _min_cap(*caps: int | None) -> int | None:
    set_caps = [c for c in caps if c is not None]
    return min(set_caps) if set_caps else None


def _first_set(*values: Any) -> Any:
    return next((v for v in values if v is not None), None)


# --------------------------------------------------------------------------- wording (see domain.l10n)

#: The ledger's stored language; notifications render the same phrases in the member's locale.
LEDGER_LOCALE = "en"


def _event_phrase(ctx: _RuleContext) -> str:
    # Name the order's position only when the rule cares about it.
    position = None if ctx.rule.trigger.order == "every" else ctx.subject.orders_before + 1
    return l10n.event_phrase(ctx.event.type, LEDGER_LOCALE, order_position=position)


# --------------------------------------------------------------------------- refunds


def reverse(
    original_postings: Sequence[PostedEntryLike],
    already_reversed: Mapping[tuple[str, int, str], int] | Iterable[Any],
    refunded_minor: int,
    order_total_minor: int,
    *,
    previously_refunded_minor: int,
) -> list[Reversal]:
    """Proportional clawback of an order's postings, at every level, for one refund.

    ``refunded_minor`` is THIS refund; ``previously_refunded_minor`` is the sum of earlier refunds
    of the same order (the caller keeps it on the order). ``already_reversed`` is what earlier
    reversals took back, either ``{(rule_id, level, member_id): points}`` or an iterable of
    Reversal-like entries (attributes or mapping keys member_id, rule_id, level, points).

    Policy: after refunds totalling R of order total T, a posting of P points must have had
    ``floor(P * min(R, T) / T)`` points reversed. Each call reverses the difference to what is
    already reversed. Because the target is computed from the cumulative refund, any split into
    partial refunds ends at the same place, never exceeds P, and the refund that reaches T
    reverses exactly the remainder (floor(P * T / T) = P). A zero-total order is reversed in full
    on any refund. Rewards not tied to the order (signup, leads) are simply not passed in.
    Counters (monthly caps, budget, recurring) are *not* given back: see the docs.
    """
    for name, value in (
        ("refunded_minor", refunded_minor),
        ("order_total_minor", order_total_minor),
        ("previously_refunded_minor", previously_refunded_minor),
    ):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValidationFailed(
                f"{name} must be a non-negative integer",
                details={"errors": [field_error(f"$.{name}", "must be a non-negative integer")]},
            )
    done = _reversed_so_far(already_reversed)
    cumulative = min(previously_refunded_minor + refunded_minor, order_total_minor)
    full = order_total_minor == 0 or cumulative == order_total_minor
    if order_total_minor == 0 and refunded_minor == 0:
        return []  # nothing refunded, nothing to take back

    seen: set[tuple[str, int, str]] = set()
    out: list[Reversal] = []
    for entry in original_postings:
        member_id, points = str(_get(entry, "member_id")), int(_get(entry, "points"))
        rule_id, level = str(_get(entry, "rule_id")), int(_get(entry, "level"))
        key = (rule_id, level, member_id)
        if key in seen:
            raise ValueError(f"duplicate posting {key}: one event pays a (rule, level, member) once")
        seen.add(key)
        target = points if full else points * cumulative // order_total_minor
        now = min(target, points) - done.get(key, 0)
        if now <= 0:
            continue  # already reversed at least this much (e.g. a retried refund)
        out.append(
            Reversal(
                member_id=member_id,
                points=now,
                rule_id=rule_id,
                rule_version=int(_get(entry, "rule_version")),
                level=level,
                funding_partner_id=_get(entry, "funding_partner_id"),
                original_points=points,
                reversed_total=done.get(key, 0) + now,
                reason=l10n.reversal_reason(LEDGER_LOCALE, taken=now, of_points=points, rule_id=rule_id,
                                            share_percent=None if full else cumulative * 100 // order_total_minor),
            )
        )
    return out


def _get(entry: Any, name: str) -> Any:
    # Stored postings leave out what is None (e.g. no funding partner): a missing key is None.
    return entry.get(name) if isinstance(entry, Mapping) else getattr(entry, name)


def _reversed_so_far(already: Mapping[tuple[str, int, str], int] | Iterable[Any]) -> dict[tuple[str, int, str], int]:
    if isinstance(already, Mapping):
        return {(str(k[0]), int(k[1]), str(k[2])): int(v) for k, v in already.items()}
    done: dict[tuple[str, int, str], int] = {}
    for r in already:
        key = (str(_get(r, "rule_id")), int(_get(r, "level")), str(_get(r, "member_id")))
        done[key] = done.get(key, 0) + int(_get(r, "points"))
    return done
