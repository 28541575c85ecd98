"""Property tests of the rewards engine: caps hold, integers only, clawbacks exact, deterministic."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from chalicelib.domain.rewards import (
    Ancestor,
    EngineEvent,
    Evaluation,
    ProgramCounters,
    RulesDoc,
    Subject,
    evaluate,
    parse_rules,
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


@st.composite
def rules_docs(draw: st.DrawFn) -> RulesDoc:
    max_depth = draw(st.integers(1, 5))
    rules = []
    for i in range(draw(st.integers(1, 6))):
        recipient = draw(st.sampled_from(["self", "friend", "referrer"]))
        rule: dict[str, Any] = {
            "id": f"r{i}",
            "trigger": {"event": "order.paid", "order": draw(st.sampled_from(["every", "first"]))},
            "recipient": {"type": recipient},
            "amount": draw(amounts(recipient)),
        }
        if recipient == "referrer":
            rule["recipient"]["level"] = draw(st.integers(1, max_depth))
        if recipient != "self" and draw(st.booleans()):
            rule["recurring"] = {
                "months": draw(st.integers(1, 24)),
                "max_points_per_friend": draw(st.integers(1, 5_000)),
            }
        cap = draw(small_cap)
        if cap is not None:
            rule["caps"] = {"member_monthly_points": cap}
        rule["hold_days"] = draw(st.integers(0, 30))
        rules.append(rule)
    doc = {
        "version": draw(st.integers(1, 50)),
        "max_depth": max_depth,
        "point_value_minor": draw(st.sampled_from([1, 10, 100])),
        "budget_points": draw(small_cap),
        "member_monthly_cap_points": draw(small_cap),
        "rules": rules,
    }
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
        partner_id=draw(st.sampled_from([None, "p1", "p2"])),
        total=total,
        shipping=shipping,
        discount=draw(st.integers(0, total)),
        currency="RUB",
    )
    depth = draw(st.integers(0, 5))
    # Repeated member ids on purpose: cycles must never pay anyone twice for a level.
    ids = [draw(st.sampled_from(MEMBERS)) for _ in range(depth)]
    ancestors = [
        Ancestor(mid, level, draw(st.integers(0, 30)), draw(st.integers(0, 3_000)))
        for level, mid in enumerate(ids, start=1)
    ]
    referred = bool(ancestors) and draw(st.booleans())
    subject = Subject(
        member_id="m0",
        referrer_id=ancestors[0].member_id if referred else None,
        attributed_at=at - timedelta(days=draw(st.integers(0, 500))) if referred else None,
        orders_before=draw(st.integers(0, 3)),
        month_earned_points=draw(st.integers(0, 3_000)),
        recurring_paid={r.id: draw(st.integers(0, 5_000)) for r in rules.rules if r.recurring},
    )
    counters = ProgramCounters(budget_used_points=draw(st.integers(0, 3_000)))
    return rules, event, subject, ancestors, counters


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
        if rule.amount.max_points is not None and not rule.partners:
            assert p.points <= rule.amount.max_points
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
