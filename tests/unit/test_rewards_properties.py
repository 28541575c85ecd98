"""Property tests of the rewards engine: caps hold, integers only, clawbacks exact, deterministic."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sortedcontainers import SortedSet

from chalicelib.domain.rewards import (
    Amount,
    Ancestor,
    EngineEvent,
    Evaluation,
    ProgramCounters,
    Rule,
    RulesDoc,
    Subject,
    base_amount,
    evaluate,
    parse_rules,
    percent_points,
    reverse,
)

START = datetime(2024, 1, 1, tzinfo=UTC)
MEMBERS = ["m0", "m1", "m2", "m3", "m4"]
SETTINGS = settings(max_examples=120, deadline=None, database=None)  # no .hypothesis/ in the tree

small_cap = st.one_of(st.none(), st.integers(0, 3_000))


@st.composite
def amounts(draw: st.DrawFn, recipient: str) -> dict[str, Any]:
    kinds = ["points", "rate_bp"] + (["tiers"] if recipient == "referrer" else [])
    kind = draw(st.sampled_from(kinds))
    amount: dict[str, Any]
    if kind == "points":
        amount = {"points": draw(st.integers(1, 2_000))}
    elif kind == "rate_bp":
        amount = {"rate_bp": draw(st.integers(1, 10_000))}
    else:
        steps = sorted(draw(st.sets(st.integers(1, 20), max_size=3)))
        key = draw(st.sampled_from(["points", "rate_bp"]))
        amount = {"tiers": [{"min_converted": m, key: draw(st.integers(1, 2_000))} for m in [0, *steps]]}
    if draw(st.booleans()):
        amount["max_points"] = draw(st.integers(1, 2_000))
    if draw(st.booleans()):
        amount["min_order_amount"] = draw(st.integers(0, 50_000))
    amount["base"] = draw(st.sampled_from(["total", "subtotal", "subtotal_minus_discount", "total_minus_shipping"]))
    return amount


PARTNERS = ["p1", "p2"]
CURRENCIES = ["RUB", "JPY", "KWD"]  # exponents 2, 0 and 3: amounts are minor units whatever the currency


@st.composite
def override_amounts(draw: st.DrawFn, recipient: str) -> dict[str, Any]:
    """A partner override's amount: merged over the rule's (naming a kind replaces it)."""
    out: dict[str, Any] = {}
    kind = draw(st.sampled_from(["keep", "points", "rate_bp"]))
    if kind == "points":
        out["points"] = draw(st.integers(1, 2_000))
    elif kind == "rate_bp":
        out["rate_bp"] = draw(st.integers(1, 10_000))
    if draw(st.booleans()):
        out["max_points"] = draw(st.integers(1, 2_000))
    if draw(st.booleans()):
        out["base"] = draw(st.sampled_from(["total", "subtotal", "total_minus_shipping"]))
    return out


@st.composite
def partner_overrides(draw: st.DrawFn, recipient: str) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    for pid in draw(st.lists(st.sampled_from(PARTNERS), unique=True, min_size=1, max_size=2)):
        o: dict[str, Any] = {}
        if draw(st.integers(0, 3)) == 0:
            o["enabled"] = draw(st.booleans())
        if draw(st.integers(0, 3)) > 0:
            o["amount"] = draw(override_amounts(recipient))
        if draw(st.booleans()):
            o["funded_by"] = draw(st.sampled_from([*PARTNERS, "bank"]))
        if draw(st.booleans()):
            o["hold_days"] = draw(st.integers(0, 30))
        overrides[pid] = o
    return overrides


@st.composite
def rules_docs(draw: st.DrawFn) -> RulesDoc:
    max_depth = draw(st.integers(1, 5))
    rules = []
    for i in range(draw(st.integers(1, 6))):
        recipient = draw(st.sampled_from(["self", "friend", "referrer"]))
        order = draw(st.sampled_from(["every", "every", "first", "nth"]))
        trigger: dict[str, Any] = {"event": "order.paid", "order": order}
        if order == "nth":
            trigger["n"] = draw(st.integers(1, 4))
        if draw(st.integers(0, 3)) == 0:
            trigger["partners"] = draw(st.lists(st.sampled_from(PARTNERS), min_size=1, unique=True))
        rule: dict[str, Any] = {
            "id": f"r{i}",
            "trigger": trigger,
            "recipient": {"type": recipient},
            "amount": draw(amounts(recipient)),
        }
        if recipient == "referrer":
            rule["recipient"]["level"] = draw(st.integers(1, max_depth))
        if recipient != "self" and draw(st.booleans()):
            recurring: dict[str, Any] = {}
            if draw(st.booleans()):
                recurring["months"] = draw(st.integers(1, 24))
            if draw(st.integers(0, 3)) > 0:
                recurring["orders"] = draw(st.integers(1, 4))
            if draw(st.booleans()) or not recurring:
                recurring["max_points_per_friend"] = draw(st.integers(1, 5_000))
            rule["recurring"] = recurring
            if draw(st.integers(0, 3)) > 0:  # recurring rules are mostly about every order of the friend
                trigger["order"] = "every"
                trigger.pop("n", None)
        cap = draw(small_cap)
        if cap is not None:
            rule["caps"] = {"member_monthly_points": cap}
        if draw(st.booleans()):
            rule["hold_days"] = draw(st.integers(0, 30))
        if draw(st.booleans()):
            rule["funded_by"] = draw(st.sampled_from([*PARTNERS, "bank"]))
        if draw(st.booleans()):
            rule["partners"] = draw(partner_overrides(recipient))
        rules.append(rule)
    doc: dict[str, Any] = {
        "version": draw(st.integers(1, 50)),
        "max_depth": max_depth,
        "hold_days": draw(st.integers(0, 30)),
        "point_value_minor": draw(st.sampled_from([1, 10, 100])),
        "budget_points": draw(small_cap),
        "member_monthly_cap_points": draw(small_cap),
        "rules": rules,
    }
    currency = draw(st.sampled_from([None, *CURRENCIES]))
    if currency is not None:
        doc["currency"] = currency
    return parse_rules(doc)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[RulesDoc, EngineEvent, Subject, list[Ancestor], ProgramCounters]:
    rules = draw(rules_docs())
    at = START + timedelta(minutes=draw(st.integers(0, 60 * 24 * 800)))
    total = draw(st.integers(0, 2_000_000))
    shipping = draw(st.integers(0, total))
    event = EngineEvent(
        business_key="order:1",
        type="order.paid",
        occurred_at=at,
        partner_id=draw(st.sampled_from([None, *PARTNERS, *PARTNERS])),
        total=total,
        shipping=shipping,
        discount=draw(st.integers(0, total)),
        # Mostly the document's currency, sometimes another one (or none).
        currency=draw(st.sampled_from([rules.currency or "RUB", rules.currency or "RUB", None, *CURRENCIES])),
    )
    depth = draw(st.integers(0, 5))
    # Repeated member ids on purpose: cycles must never pay anyone twice for a level.
    ids = [draw(st.sampled_from(MEMBERS)) for _ in range(depth)]
    ancestors = [
        Ancestor(mid, level, draw(st.integers(0, 30)), draw(st.integers(0, 3_000)))
        for level, mid in enumerate(ids, start=1)
    ]
    referred = bool(ancestors) and draw(st.integers(0, 3)) > 0
    subject = Subject(
        member_id="m0",
        referrer_id=ancestors[0].member_id if referred else None,
        attributed_at=at - timedelta(days=draw(st.one_of(st.integers(0, 60), st.integers(0, 500)))) if referred
        else None,
        orders_before=draw(st.one_of(st.integers(0, 3), st.integers(0, 6))),
        month_earned_points=draw(st.integers(0, 3_000)),
        recurring_paid={r.id: draw(st.one_of(st.just(0), st.integers(0, 5_000))) for r in rules.rules if r.recurring},
    )
    counters = ProgramCounters(budget_used_points=draw(st.integers(0, 3_000)))
    return rules, event, subject, ancestors, counters


def effective_amount(rule: Rule, event: EngineEvent) -> Amount:
    """The amount a rule pays at the event's partner: the override's (merged) amount, else the rule's."""
    override = rule.partners.get(event.partner_id) if event.partner_id is not None else None
    return override.amount if override is not None and override.amount is not None else rule.amount


def _month_read(subject: Subject, ancestors: list[Ancestor]) -> dict[str, int]:
    # The engine uses the first (shallowest) value it sees for each member; mirror that.
    read = {subject.member_id: subject.month_earned_points}
    for a in sorted(ancestors, key=lambda a: a.level):
        read.setdefault(a.member_id, a.month_earned_points)
    return read


@SETTINGS
@given(scenarios())
def test_postings_never_exceed_any_cap(scenario: Any) -> None:
    rules, event, subject, ancestors, counters = scenario
    result = evaluate(rules, event, subject, ancestors, counters)
    by_id = {r.id: r for r in rules.rules}
    month = _month_read(subject, ancestors)
    budget_used = counters.budget_used_points
    recurring = dict(subject.recurring_paid)
    seen_recipients: set[tuple[str, int]] = set()

    for p in result.postings:
        rule = by_id[p.rule_id]
        assert type(p.points) is int and p.points > 0
        assert p.requested_points >= p.points
        assert p.member_id != subject.member_id or p.level == 0  # nobody earns upline on own purchase
        assert (p.rule_id, p.level) not in seen_recipients
        seen_recipients.add((p.rule_id, p.level))
        amount = effective_amount(rule, event)
        if amount.max_points is not None:
            assert p.points <= amount.max_points
        month[p.member_id] += p.points
        for cap in (rule.member_monthly_cap_points, rules.member_monthly_cap_points):
            if cap is not None:
                assert month[p.member_id] <= cap
        budget_used += p.points
        if rules.budget_points is not None:
            assert budget_used <= rules.budget_points
        if rule.recurring is not None:
            recurring[rule.id] = recurring.get(rule.id, 0) + p.points
            if rule.recurring.max_points_per_friend is not None:
                assert recurring[rule.id] <= rule.recurring.max_points_per_friend
        assert p.status == ("available" if p.available_at == event.occurred_at else "pending")

    for s in result.skipped:
        assert 0 <= s.granted_points < max(s.requested_points, 1)


@SETTINGS
@given(scenarios())
def test_counter_deltas_match_postings_and_their_conditions_hold(scenario: Any) -> None:
    rules, event, subject, ancestors, counters = scenario
    result = evaluate(rules, event, subject, ancestors, counters)
    read = _month_read(subject, ancestors)
    per_member: dict[str, int] = {}
    for p in result.postings:
        per_member[p.member_id] = per_member.get(p.member_id, 0) + p.points
    month_deltas = {d.member_id or "": d for d in result.counter_deltas if d.kind == "member_month"}
    # Months are counted only when a monthly cap exists somewhere (nothing else reads the counter).
    assert {m: d.points for m, d in month_deltas.items()} == (per_member if rules.counts_months else {})
    for mid, d in month_deltas.items():
        assert d.month == result.month
        # The state the engine was given must satisfy the condition the writer will use.
        assert d.max_before is None or read[mid] <= d.max_before
    budget = [d for d in result.counter_deltas if d.kind == "budget"]
    if rules.budget_points is None or not result.postings:
        assert budget == []
    else:
        assert budget[0].points == result.total_points
        assert budget[0].max_before is not None and counters.budget_used_points <= budget[0].max_before
    for d in result.counter_deltas:
        assert type(d.points) is int and d.points > 0
        if d.kind == "recurring":
            assert d.max_before is None or subject.recurring_paid.get(d.rule_id or "", 0) <= d.max_before


#: Features the strategy must reach with a *posting* (or a skip of that kind) in the run below.
FEATURES = ("override amount", "override funded_by / hold_days", "trigger.partners", "funded_by", "nth order",
            "recurring by orders", "JPY/KWD document", "disabled_for_partner", "currency_mismatch",
            "recurring_expired")


def _without_project_constants(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hypothesis mixes literals from every *loaded* project module into what it draws (about 5 % of
    draws), so a derandomized run generated different scenarios depending on which other test files
    the worker had imported (``nth order: 0`` next to test_openapi.py, fine alone). For the run that
    asserts what the strategy reaches, draw from the strategy alone."""
    from hypothesis.internal.conjecture import providers

    if not hasattr(providers, "_get_local_constants"):  # a Hypothesis without the feature: nothing to pin
        return
    empty = type(providers._local_constants)(integers=SortedSet(), floats=SortedSet(key=providers.float_to_int),
                                             bytes=SortedSet(), strings=SortedSet())
    providers.CONSTANTS_CACHE.cache.clear()
    monkeypatch.setattr(providers, "_get_local_constants", lambda: empty)
    monkeypatch.setattr(providers, "CONSTANTS_CACHE", type(providers.CONSTANTS_CACHE)(1024))


def test_partners_funding_order_selection_recurring_orders_and_currency(monkeypatch: pytest.MonkeyPatch) -> None:
    """The coalition and selection features decide *whether* a rule pays and *who funds it*:
    trigger.partners, a partner override (disabled, its amount, funded_by, hold_days), the rule's
    funded_by, nth/first orders, recurring by orders, and the document currency.

    Derandomized, so the run is the same every time, and it must reach every one of ``FEATURES``:
    the property is only as good as what the strategy generates."""
    from collections import Counter

    _without_project_constants(monkeypatch)
    seen: Counter[str] = Counter()
    check = settings(max_examples=250, deadline=None, database=None, derandomize=True)(
        given(scenarios())(lambda scenario: _check_selection(scenario, seen)))
    check()
    assert {k: seen[k] for k in FEATURES if not seen[k]} == {}, dict(seen)


def _check_selection(scenario: Any, seen: Any) -> None:
    rules, event, subject, ancestors, counters = scenario
    result = evaluate(rules, event, subject, ancestors, counters)
    posted = {p.rule_id: p for p in result.postings}
    skipped: dict[str, set[str]] = {}
    for s in result.skipped:
        skipped.setdefault(s.rule_id, set()).add(s.reason_code)
    for rule in rules.rules:
        override = rule.partners.get(event.partner_id) if event.partner_id is not None else None
        amount = effective_amount(rule, event)
        # Every rule for the event type is accounted for: it posted, or says why not.
        assert rule.id in posted or rule.id in skipped, rule.id
        at_partner = not rule.trigger.partners or event.partner_id in rule.trigger.partners
        enabled_here = override is None or override.enabled
        order_matches = rule.trigger.order_number_matches(subject.orders_before)
        within_orders = (rule.recurring is None or rule.recurring.orders is None
                         or subject.orders_before < rule.recurring.orders)
        other_currency = (amount.needs_order_amount and rules.currency is not None and event.currency is not None
                          and event.currency != rules.currency)
        if not (at_partner and enabled_here and order_matches and within_orders) or other_currency:
            assert rule.id not in posted, rule.id
        if rule.trigger.order == "nth" and rule.id in posted:
            assert subject.orders_before + 1 == rule.trigger.n
        if at_partner and enabled_here and order_matches and other_currency:
            # Said so, unless the rule had nobody to pay in the first place.
            assert skipped[rule.id] & {"currency_mismatch", "no_referrer", "ancestry_cycle"}, skipped[rule.id]
        for code in skipped.get(rule.id, ()):
            seen[code] += 1
        p = posted.get(rule.id)
        if p is None:
            continue
        seen["override amount"] += override is not None and override.amount is not None
        seen["override funded_by / hold_days"] += override is not None and (
            override.funded_by is not None or override.hold_days is not None)
        seen["trigger.partners"] += bool(rule.trigger.partners)
        seen["funded_by"] += rule.funded_by is not None
        seen["nth order"] += rule.trigger.order == "nth"
        seen["recurring by orders"] += rule.recurring is not None and rule.recurring.orders is not None
        seen["JPY/KWD document"] += rules.currency in ("JPY", "KWD")
        funder = next((f for f in (override.funded_by if override else None, rule.funded_by, event.partner_id)
                       if f is not None), None)
        assert p.funding_partner_id == funder
        hold = next(h for h in (override.hold_days if override else None, rule.hold_days, rules.hold_days)
                    if h is not None)
        assert p.available_at == event.occurred_at + timedelta(days=hold)
        assert p.partner_id == event.partner_id
        if not amount.tiers and not rule.tier_multipliers:
            if amount.points is not None:
                assert p.requested_points == amount.points
            else:
                assert amount.rate_bp is not None
                base = base_amount(event, amount.base)
                assert base is not None
                assert p.requested_points == percent_points(base, amount.rate_bp, rules.point_value_minor)


@SETTINGS
@given(scenarios())
def test_evaluation_is_deterministic(scenario: Any) -> None:
    first: Evaluation = evaluate(*scenario)
    assert evaluate(*scenario) == first
    assert [p.reason for p in evaluate(*scenario).postings] == [p.reason for p in first.postings]


@st.composite
def refund_plans(draw: st.DrawFn) -> tuple[list[dict[str, Any]], int, list[int]]:
    postings = [
        {
            "member_id": f"m{i}",
            "points": draw(st.integers(1, 100_000)),
            "rule_id": "r",
            "rule_version": 1,
            "level": i,
            "funding_partner_id": None,
        }
        for i in range(draw(st.integers(1, 5)))
    ]
    total = draw(st.integers(0, 10_000_000))
    refunds = draw(st.lists(st.integers(0, max(total, 1)), min_size=1, max_size=8))
    return postings, total, refunds


@SETTINGS
@given(refund_plans(), st.booleans())
def test_refunds_never_reverse_more_than_posted_and_full_refund_is_exact(plan: Any, settle: bool) -> None:
    postings, total, refunds = plan
    if settle:  # top the plan up so the refunds reach the order total exactly
        refunds = [*refunds, max(total - sum(refunds), 0)]
    done: list[Any] = []
    refunded = 0
    for amount in refunds:
        done += reverse(postings, done, amount, total, previously_refunded_minor=refunded)
        refunded += amount
        for p in postings:
            taken = sum(r.points for r in done if r.member_id == p["member_id"])
            assert 0 <= taken <= p["points"]
            if total and refunded < total:
                assert taken == p["points"] * refunded // total  # proportional, floored
    assert all(type(r.points) is int and r.points > 0 for r in done)
    if refunded >= total and (total > 0 or refunded > 0):
        for p in postings:
            assert sum(r.points for r in done if r.member_id == p["member_id"]) == p["points"]


@SETTINGS
@given(refund_plans())
def test_the_split_of_refunds_does_not_change_the_outcome(plan: Any) -> None:
    postings, total, refunds = plan
    done: list[Any] = []
    refunded = 0
    for amount in refunds:
        done += reverse(postings, done, amount, total, previously_refunded_minor=refunded)
        refunded += amount
    at_once = reverse(postings, {}, refunded, total, previously_refunded_minor=0)
    assert {r.member_id: r.points for r in at_once} == {
        p["member_id"]: sum(r.points for r in done if r.member_id == p["member_id"])
        for p in postings
        if any(r.member_id == p["member_id"] for r in done)
    }

