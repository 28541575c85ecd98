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


@dataclass(frozen=True)
class _Recipient:
    member_id: str
    level: int
    converted_referrals: int
    tier: str | None = None


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
    skipped: list[Skip] = []

    for rule in rules.rules:
        if not rule.enabled or rule.trigger.event != event.type:
            continue
        outcome = _evaluate_rule(rules, rule, event, at, subject, upline, cycles, run, skipped)
        if outcome is not None:
            postings.append(outcome)

    return Evaluation(
        postings=tuple(postings),
        skipped=tuple(skipped),
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


def _evaluate_rule(
    rules: RulesDoc,
    rule: Rule,
    event: EngineEvent,
    at: datetime,
    subject: Subject,
    upline: Mapping[int, Ancestor],
    cycles: set[int],
    run: _Running,
    skipped: list[Skip],
) -> Posting | None:
    def skip(code: SkipCode, detail: str, member_id: str | None = None) -> Posting | None:
        """Record why the rule pays nothing; returns None so callers can ``return skip(...)``."""
        skipped.append(Skip(rule.id, member_id, code, detail))
        return None

    trigger = rule.trigger
    if trigger.partners and event.partner_id not in trigger.partners:
        return skip("trigger_not_matched", f"event at partner {event.partner_id!r}, rule is for {trigger.partners}")
    override = rule.partners.get(event.partner_id) if event.partner_id is not None else None
    if override is not None and not override.enabled:
        return skip("disabled_for_partner", f"rule is disabled for partner {event.partner_id!r}")
    if event.type == "order.paid" and not trigger.order_number_matches(subject.orders_before):
        return skip(
            "trigger_not_matched",
            f"this is order #{subject.orders_before + 1}, rule wants order={trigger.order}"
            + (f" n={trigger.n}" if trigger.n else ""),
        )

    # Who gets it. A "friend" reward exists only because somebody referred the subject.
    recipient: _Recipient
    if rule.recipient.type == "self":
        recipient = _Recipient(subject.member_id, 0, 0, subject.tier)
    elif rule.recipient.type == "friend":
        if subject.referrer_id is None:
            return skip("no_referrer", "the member was not referred", subject.member_id)
        recipient = _Recipient(subject.member_id, 0, 0, subject.tier)
    else:
        level = rule.recipient.level
        if level in cycles:
            return skip("ancestry_cycle", f"level {level} would pay a member already in the chain")
        ancestor = upline.get(level)
        if ancestor is None:
            return skip("no_referrer", f"the member has no level-{level} referrer")
        recipient = _Recipient(ancestor.member_id, level, ancestor.converted_referrals, ancestor.tier)
    mid = recipient.member_id
    if trigger.tiers and recipient.tier not in trigger.tiers:
        return skip("tier_not_matched", f"the recipient's tier is {recipient.tier!r}, rule is for {list(trigger.tiers)}",
                    mid)

    amount = override.amount if override is not None and override.amount is not None else rule.amount
    base: int | None = None
    if amount.needs_order_amount:
        if rules.currency and event.currency and event.currency != rules.currency:
            return skip("currency_mismatch", f"event in {event.currency}, program in {rules.currency}", mid)
        base = base_amount(event, amount.base)
        if base is None:
            return skip("no_amount", "the event carries no order amount", mid)
        if amount.min_order_amount is not None and base < amount.min_order_amount:
            return skip("below_min_order", f"{amount.base} {base} < min_order_amount {amount.min_order_amount}", mid)

    recurring = rule.recurring
    if recurring is not None:
        if subject.attributed_at is None or at < _utc(subject.attributed_at):
            return skip("recurring_not_attributed", "the member has no referral attribution before this order", mid)
        if recurring.months is not None and at >= add_months(_utc(subject.attributed_at), recurring.months):
            return skip("recurring_expired", f"more than {recurring.months} months since attribution", mid)
        if recurring.orders is not None and subject.orders_before >= recurring.orders:
            return skip("recurring_expired", f"only the first {recurring.orders} orders count", mid)

    reason_code: str | None = None
    if amount.offer is not None:
        ref = amount.offer
        month_key_ = f"{rule.id}#{mid}"
        if ref.per_month is not None and run.offers_month.get(month_key_, 0) >= ref.per_month:
            return skip("offer_limit", f"{ref.per_month} voucher(s) of this rule per month already given", mid)
        if run.offers_left.get(ref.offer_id, 0) > 0:
            run.offers_month[month_key_] = run.offers_month.get(month_key_, 0) + 1
            run.offers_left[ref.offer_id] -= 1
            run.vouchers.append(VoucherGrant(
                member_id=mid, partner_id=ref.partner_id, offer_id=ref.offer_id, rule_id=rule.id,
                rule_version=rules.version, level=recipient.level, recipient=rule.recipient.type,
                business_key=event.business_key, event_partner_id=event.partner_id,
                reason=f"{rule.name or rule.id}: offer {ref.offer_id} of partner {ref.partner_id} "
                       f"({_event_phrase(rule, event, subject)})"))
            return None
        detail = f"no code left for offer {ref.offer_id}" + (
            f"; {ref.fallback_points} fallback points instead" if ref.fallback_points else "")
        skipped.append(Skip(rule.id, mid, "pool_empty", detail, ref.fallback_points or 0, ref.fallback_points or 0))
        if not ref.fallback_points:
            return None
        reason_code = "offer_fallback"

    requested, how = _points(amount, base, recipient.converted_referrals, rules.point_value_minor, event.currency)
    multiplier = rule.tier_multipliers.get(recipient.tier or "") if rule.tier_multipliers else None
    if multiplier is not None:
        requested = tier_multiply(requested, multiplier)
    if requested <= 0:
        return skip("zero_points", f"{l10n.how_phrase(how, LEDGER_LOCALE)} rounds down to 0 points", mid)

    points = requested
    trims: list[str] = []

    def cap(code: SkipCode, remaining: int | None) -> bool:
        """Trim ``points`` to ``remaining``; False when nothing is left to post."""
        nonlocal points
        if remaining is None or points <= remaining:
            return True
        granted = max(remaining, 0)
        what = l10n.cap_name(code, LEDGER_LOCALE)
        skipped.append(Skip(rule.id, mid, code, f"{what}: {points} -> {granted}", points, granted))
        points = granted
        trims.append(code)
        return granted > 0

    month_cap = _min_cap(rule.member_monthly_cap_points, rules.member_monthly_cap_points)
    recurring_max = recurring.max_points_per_friend if recurring is not None else None
    paid = run.recurring_paid.get(rule.id, 0)
    if not (
        cap("cap_reward", amount.max_points)
        and cap("cap_recurring", None if recurring_max is None else recurring_max - paid)
        and cap("cap_monthly", None if month_cap is None else month_cap - run.month_points[mid])
        and cap("cap_budget", None if rules.budget_points is None else rules.budget_points - run.budget_used)
    ):
        return None

    # Consume headroom now so the next rule sees it, and remember the write conditions.
    if month_cap is not None:
        run.month_max_before[mid] = min(
            run.month_max_before.get(mid, month_cap), month_cap - run.month_delta.get(mid, 0) - points
        )
    run.month_points[mid] += points
    run.month_delta[mid] = run.month_delta.get(mid, 0) + points
    if rules.budget_points is not None:
        run.budget_used += points
        run.budget_delta += points
    if recurring is not None:
        run.recurring_paid[rule.id] = paid + points
        run.recurring_delta[rule.id] = run.recurring_delta.get(rule.id, 0) + points
        if recurring_max is not None:
            run.recurring_max_before[rule.id] = recurring_max - run.recurring_delta[rule.id]

    hold = _first_set(override.hold_days if override else None, rule.hold_days, rules.hold_days)
    funder = _first_set(override.funded_by if override else None, rule.funded_by, event.partner_id)
    kind = rule.recipient.type
    return Posting(
        member_id=mid,
        points=points,
        rule_id=rule.id,
        rule_version=rules.version,
        level=recipient.level,
        recipient=kind,
        funding_partner_id=funder,
        reason=l10n.reward_reason(
            LEDGER_LOCALE, recipient=kind, what=_event_phrase(rule, event, subject), level=recipient.level,
            subject_id=subject.member_id, points_granted=points, points_requested=requested,
            rule_name=rule.name or rule.id, how=how, trims=trims)
        + ("" if multiplier is None else f" Tier {recipient.tier}: x{_bp_factor(multiplier)}."),
        reason_code=reason_code or (
            "recurring_reward" if recurring is not None
            else {"self": "self_reward", "friend": "friend_reward", "referrer": "referral_reward"}[kind]),
        available_at=at + timedelta(days=hold),
        status="available" if hold == 0 else "pending",
        business_key=event.business_key,
        partner_id=event.partner_id,
        requested_points=requested,
    )


def _points(
    amount: Amount, base: int | None, converted: int, point_value_minor: int, currency: str | None
) -> tuple[int, l10n.HowComputed]:
    """Points before caps, and how they were computed (for the reason text)."""
    points, rate_bp, tier_min = amount.points, amount.rate_bp, None
    if amount.offer is not None:
        return int(amount.offer.fallback_points or 0), l10n.HowComputed()
    if amount.tiers:
        # Highest tier whose threshold the recipient reached; tiers start at 0 (schema check).
        tier = [t for t in amount.tiers if t.min_converted <= converted][-1]
        points, rate_bp = tier.points, tier.rate_bp
        tier_min = tier.min_converted
    if points is not None:
        return points, l10n.HowComputed(tier_min_converted=tier_min)
    assert rate_bp is not None and base is not None  # schema guarantees one kind; caller checked base
    return (
        percent_points(base, rate_bp, point_value_minor),
        l10n.HowComputed(rate_bp=rate_bp, base=amount.base, base_minor=base, currency=currency,
                         tier_min_converted=tier_min),
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


def _bp_factor(bp: int) -> str:
    """15000 -> "1.5", 10000 -> "1", 12550 -> "1.255" (no floats)."""
    whole, frac = divmod(bp, BP_DENOMINATOR)
    return f"{whole}.{frac:04d}".rstrip("0").rstrip(".")


def _min_cap(*caps: int | None) -> int | None:
    set_caps = [c for c in caps if c is not None]
    return min(set_caps) if set_caps else None


def _first_set(*values: Any) -> Any:
    return next((v for v in values if v is not None), None)


# --------------------------------------------------------------------------- wording (see domain.l10n)

#: The ledger's stored language; notifications render the same phrases in the member's locale.
LEDGER_LOCALE = "en"
format_rate = l10n.format_rate
format_money = l10n.format_money


def _event_phrase(rule: Rule, event: EngineEvent, subject: Subject) -> str:
    # Name the order's position only when the rule cares about it.
    position = None if rule.trigger.order == "every" else subject.orders_before + 1
    return l10n.event_phrase(event.type, LEDGER_LOCALE, order_position=position)


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
