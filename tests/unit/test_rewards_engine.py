"""Rewards engine: concrete scenarios for every example document, caps, holds, refunds."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from chalicelib.domain.errors import ValidationFailed
from chalicelib.domain.rewards import (
    Ancestor,
    CounterDelta,
    EngineEvent,
    Evaluation,
    ProgramCounters,
    RulesDoc,
    Subject,
    add_months,
    base_amount,
    evaluate,
    format_money,
    format_rate,
    month_key,
    parse_rules,
    percent_points,
    reverse,
)
from chalicelib.domain.rewards.examples import load_example

AT = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)
FRIEND = "m-friend"
REF1, REF2, REF3 = "m-ref1", "m-ref2", "m-ref3"


def order(total: int = 300_000, **kw: Any) -> EngineEvent:
    fields: dict[str, Any] = {
        "business_key": "order:A-1",
        "type": "order.paid",
        "occurred_at": AT,
        "partner_id": "shop",
        "total": total,
        "currency": "RUB",
    }
    fields.update(kw)
    return EngineEvent(**fields)


def event(type_: str, **kw: Any) -> EngineEvent:
    return EngineEvent(business_key=f"{type_}:1", type=type_, occurred_at=AT, **kw)


def referred(**kw: Any) -> Subject:
    fields: dict[str, Any] = {"member_id": FRIEND, "referrer_id": REF1, "attributed_at": AT - timedelta(days=3)}
    fields.update(kw)
    return Subject(**fields)


def upline(n: int = 3, **kw: Any) -> list[Ancestor]:
    return [Ancestor(m, level, **kw) for level, m in enumerate((REF1, REF2, REF3)[:n], start=1)]


def summary(ev: Evaluation) -> list[tuple[str, str, int, int]]:
    return [(p.rule_id, p.member_id, p.level, p.points) for p in ev.postings]


def skips(ev: Evaluation) -> list[tuple[str, str, int]]:
    return [(s.rule_id, s.reason_code, s.granted_points) for s in ev.skipped]


# --------------------------------------------------------------------------- helpers


def test_percent_points_floors_with_integers_only() -> None:
    assert percent_points(13_599, 500, 100) == 6  # 679.95 kopecks -> 6.7995 points -> 6
    assert percent_points(10_000_000, 10_000, 1) == 10_000_000
    assert percent_points(0, 500, 100) == 0
    assert percent_points(-5, 500, 100) == 0


def test_base_amounts() -> None:
    ev = order(total=10_500, subtotal=10_000, shipping=500, discount=1_000)
    assert base_amount(ev, "total") == 10_500
    assert base_amount(ev, "subtotal") == 10_000
    assert base_amount(ev, "subtotal_minus_discount") == 9_000
    assert base_amount(ev, "total_minus_shipping") == 10_000
    derived = order(total=10_500, shipping=500)
    assert base_amount(derived, "subtotal") == 10_000
    assert base_amount(order(total=100, discount=500), "subtotal_minus_discount") == 0
    assert base_amount(event("deal.won"), "total") is None


def test_small_helpers() -> None:
    assert month_key(datetime(2025, 12, 31, 23, 59, tzinfo=UTC)) == "2025-12"
    assert add_months(datetime(2025, 1, 31, tzinfo=UTC), 1) == datetime(2025, 2, 28, tzinfo=UTC)
    assert add_months(datetime(2025, 11, 15, tzinfo=UTC), 14) == datetime(2027, 1, 15, tzinfo=UTC)
    assert [format_rate(x) for x in (500, 250, 125, 1, 10_000)] == ["5%", "2.5%", "1.25%", "0.01%", "100%"]
    assert format_money(12_345, "RUB") == "123.45 RUB"
    assert format_money(12_345, "JPY") == "12345 JPY"
    assert format_money(12_345, "KWD") == "12.345 KWD"


# --------------------------------------------------------------------------- single shop


def test_single_shop_first_order_of_referred_friend() -> None:
    rules = load_example("single_shop")
    ev = order(total=300_000, subtotal=280_000, shipping=20_000, discount=10_000)
    result = evaluate(rules, ev, referred(), upline(1))
    # cashback: 5% of (280000 - 10000) kopecks = 13500 kopecks = 135 points
    assert summary(result) == [
        ("cashback", FRIEND, 0, 135),
        ("bring-a-friend", REF1, 1, 500),
        ("friend-welcome", FRIEND, 0, 300),
    ]
    assert result.skipped == ()
    for p in result.postings:
        assert p.status == "pending"
        assert p.available_at == AT + timedelta(days=14)
        assert p.funding_partner_id == "shop"
        assert p.business_key == "order:A-1"
    assert [p.reason_code for p in result.postings] == ["self_reward", "referral_reward", "friend_reward"]
    assert result.postings[0].reason == (
        "135 points for your order (5% cashback): 5% of the order subtotal minus discount 2700.00 RUB."
    )
    assert (
        result.postings[1].reason
        == "500 points for your referral m-friend's first order (Bring a friend): fixed reward."
    )
    assert "as a referred member" in result.postings[2].reason
    assert result.postings[1].key == "order:A-1#bring-a-friend#1#m-ref1"
    # Counters: one delta per member; the program monthly cap (20000) gives the conditions.
    assert set(result.counter_deltas) == {
        CounterDelta("member_month", 435, member_id=FRIEND, month="2025-03", max_before=20_000 - 435),
        CounterDelta("member_month", 500, member_id=REF1, month="2025-03", max_before=20_000 - 500),
    }


def test_single_shop_below_min_order_and_not_first_order() -> None:
    rules = load_example("single_shop")
    small = evaluate(rules, order(total=150_000), referred(), upline(1))
    assert summary(small) == [("cashback", FRIEND, 0, 75)]
    assert skips(small) == [("bring-a-friend", "below_min_order", 0), ("friend-welcome", "below_min_order", 0)]

    second = evaluate(rules, order(total=300_000), referred(orders_before=1), upline(1))
    assert summary(second) == [("cashback", FRIEND, 0, 150)]
    assert {s.reason_code for s in second.skipped} == {"trigger_not_matched"}


def test_single_shop_friend_reward_needs_a_referrer() -> None:
    rules = load_example("single_shop")
    result = evaluate(rules, order(), Subject(member_id="m-solo"), [])
    assert summary(result) == [("cashback", "m-solo", 0, 150)]
    assert skips(result) == [("bring-a-friend", "no_referrer", 0), ("friend-welcome", "no_referrer", 0)]


def test_single_shop_cashback_max_points_and_monthly_cap_trim() -> None:
    rules = load_example("single_shop")
    big = evaluate(rules, order(total=20_000_000), Subject(member_id="m-1"), [])
    assert summary(big) == [("cashback", "m-1", 0, 5_000)]
    assert skips(big)[0] == ("cashback", "cap_reward", 5_000)
    assert big.postings[0].requested_points == 10_000
    assert "Reduced from 10000 by the per-reward max_points" in big.postings[0].reason

    near_cap = evaluate(rules, order(), Subject(member_id="m-1", month_earned_points=19_900), [])
    assert summary(near_cap) == [("cashback", "m-1", 0, 100)]
    assert skips(near_cap)[0] == ("cashback", "cap_monthly", 100)
    assert near_cap.counter_deltas == (
        CounterDelta("member_month", 100, member_id="m-1", month="2025-03", max_before=19_900),
    )

    at_cap = evaluate(rules, order(), Subject(member_id="m-1", month_earned_points=20_000), [])
    assert at_cap.postings == () and at_cap.counter_deltas == ()
    assert skips(at_cap)[0] == ("cashback", "cap_monthly", 0)


def test_monthly_cap_consumed_by_earlier_rules_in_the_same_event() -> None:
    rules = load_example("single_shop")
    # Friend is at 19600 of 20000: cashback 150 fits, leaving 250 for the 300-point welcome bonus.
    result = evaluate(rules, order(total=300_000), referred(month_earned_points=19_600), upline(1))
    assert summary(result) == [
        ("cashback", FRIEND, 0, 150),
        ("bring-a-friend", REF1, 1, 500),
        ("friend-welcome", FRIEND, 0, 250),
    ]
    assert skips(result) == [("friend-welcome", "cap_monthly", 250)]
    friend_delta = next(d for d in result.counter_deltas if d.member_id == FRIEND)
    assert friend_delta.points == 400
    assert friend_delta.max_before == 19_600  # stored value must not have moved since the read


# --------------------------------------------------------------------------- UDS 3 levels


def test_uds_three_levels() -> None:
    rules = load_example("uds_3_level")
    result = evaluate(rules, order(total=1_000_000), referred(), upline(3))
    assert summary(result) == [
        ("cashback", FRIEND, 0, 500),
        ("level-1", REF1, 1, 300),
        ("level-2", REF2, 2, 200),
        ("level-3", REF3, 3, 100),
    ]
    assert all(p.available_at == AT + timedelta(days=7) for p in result.postings)
    assert "your level-2 referral m-friend's order" in result.postings[2].reason
    # No monthly cap in this program: no month counter is written (nothing would read it).
    assert not rules.counts_months and result.counter_deltas == ()
    capped = dataclasses.replace(rules, member_monthly_cap_points=10_000)
    months = evaluate(capped, order(total=1_000_000), referred(), upline(3)).counter_deltas
    assert {(d.kind, d.member_id, d.points) for d in months} == {
        ("member_month", FRIEND, 500), ("member_month", REF1, 300), ("member_month", REF2, 200),
        ("member_month", REF3, 100)}


def test_uds_missing_levels_and_cycles_are_skipped() -> None:
    rules = load_example("uds_3_level")
    short = evaluate(rules, order(total=1_000_000), referred(), upline(2))
    assert [s for s in skips(short) if s[1] != "cap_reward"] == [("level-3", "no_referrer", 0)]

    cyclic = [Ancestor(REF1, 1), Ancestor(FRIEND, 2), Ancestor(REF1, 3)]
    result = evaluate(rules, order(total=1_000_000), referred(), cyclic)
    assert summary(result) == [("cashback", FRIEND, 0, 500), ("level-1", REF1, 1, 300)]
    assert skips(result) == [("level-2", "ancestry_cycle", 0), ("level-3", "ancestry_cycle", 0)]


def test_uds_signup_bonus_is_available_immediately() -> None:
    rules = load_example("uds_3_level")
    result = evaluate(rules, event("member.signup"), referred(), upline(3))
    assert summary(result) == [("signup-bonus", FRIEND, 0, 100)]
    assert result.postings[0].status == "available"
    assert result.postings[0].available_at == AT
    assert result.postings[0].funding_partner_id is None


# --------------------------------------------------------------------------- B2B CRM


def test_b2b_lead_then_tiered_deal_commission() -> None:
    rules = load_example("b2b_crm")
    lead = evaluate(rules, event("lead.created"), referred(), upline(1))
    assert summary(lead) == [("lead-bonus", REF1, 1, 200)]
    assert lead.postings[0].status == "available"
    assert CounterDelta("budget", 200, max_before=5_000_000 - 200) in lead.counter_deltas

    deal = event("deal.won", total=10_000_000, currency="RUB")  # 100 000.00 RUB
    for converted, points in ((0, 5_000), (9, 5_000), (10, 7_000), (24, 7_000), (25, 10_000)):
        result = evaluate(rules, deal, referred(), upline(1, converted_referrals=converted))
        assert summary(result) == [("deal-commission", REF1, 1, points)], converted
    tiered = evaluate(rules, deal, referred(), upline(1, converted_referrals=12))
    assert "(tier for 10+ converted referrals)" in tiered.postings[0].reason
    assert tiered.postings[0].available_at == AT + timedelta(days=30)


def test_b2b_deal_below_minimum_and_without_amount() -> None:
    rules = load_example("b2b_crm")
    small = evaluate(rules, event("deal.won", total=4_999_999), referred(), upline(1))
    assert skips(small) == [("deal-commission", "below_min_order", 0)]
    none = evaluate(rules, event("deal.won"), referred(), upline(1))
    assert skips(none) == [("deal-commission", "no_amount", 0)]


def test_b2b_budget_trims_then_stops() -> None:
    rules = load_example("b2b_crm")
    deal = event("deal.won", total=10_000_000)
    trimmed = evaluate(rules, deal, referred(), upline(1), ProgramCounters(budget_used_points=4_999_000))
    assert summary(trimmed) == [("deal-commission", REF1, 1, 1_000)]
    assert skips(trimmed) == [("deal-commission", "cap_budget", 1_000)]
    assert CounterDelta("budget", 1_000, max_before=4_999_000) in trimmed.counter_deltas
    spent = evaluate(rules, deal, referred(), upline(1), ProgramCounters(budget_used_points=5_000_000))
    assert spent.postings == ()
    assert skips(spent) == [("deal-commission", "cap_budget", 0)]


# --------------------------------------------------------------------------- recurring


def test_recurring_window_orders_and_per_friend_cap() -> None:
    rules = load_example("recurring_10pct_12m")
    attributed = datetime(2025, 1, 15, tzinfo=UTC)
    friend = referred(attributed_at=attributed, orders_before=4)
    june = order(total=100_000, occurred_at=datetime(2025, 6, 1, tzinfo=UTC))
    result = evaluate(rules, june, friend, upline(1))
    assert summary(result) == [("friend-revenue-share", REF1, 1, 100)]
    assert result.postings[0].reason_code == "recurring_reward"
    assert (
        CounterDelta("recurring", 100, member_id=FRIEND, rule_id="friend-revenue-share", max_before=10_000 - 100)
        in result.counter_deltas
    )

    last_moment = order(total=100_000, occurred_at=datetime(2026, 1, 14, 23, 59, tzinfo=UTC))
    assert summary(evaluate(rules, last_moment, friend, upline(1))) == [("friend-revenue-share", REF1, 1, 100)]
    expired = order(total=100_000, occurred_at=datetime(2026, 1, 15, tzinfo=UTC))
    assert skips(evaluate(rules, expired, friend, upline(1))) == [("friend-revenue-share", "recurring_expired", 0)]

    nearly_paid = referred(attributed_at=attributed, recurring_paid={"friend-revenue-share": 9_950})
    trimmed = evaluate(rules, june, nearly_paid, upline(1))
    assert summary(trimmed) == [("friend-revenue-share", REF1, 1, 50)]
    assert skips(trimmed) == [("friend-revenue-share", "cap_recurring", 50)]

    not_attributed = evaluate(rules, june, referred(attributed_at=None), upline(1))
    assert skips(not_attributed) == [("friend-revenue-share", "recurring_not_attributed", 0)]


def test_recurring_by_number_of_orders() -> None:
    rules = parse_rules(
        {
            "rules": [
                {
                    "id": "first-3",
                    "trigger": {"event": "order.paid"},
                    "recipient": {"type": "referrer"},
                    "amount": {"rate_bp": 1000},
                    "recurring": {"orders": 3},
                }
            ]
        }
    )
    paid = [bool(evaluate(rules, order(), referred(orders_before=n), upline(1)).postings) for n in range(5)]
    assert paid == [True, True, True, False, False]


@pytest.mark.parametrize("recurring", [{"orders": 3}, {"months": 12}, {"months": 12, "orders": 3}])
def test_uncapped_recurring_rule_writes_no_counter(recurring: dict[str, int]) -> None:
    """Without ``max_points_per_friend`` nothing reads the per-friend counter, so no delta is returned."""
    doc = {"rules": [{"id": "share", "trigger": {"event": "order.paid"}, "recipient": {"type": "referrer"},
                      "amount": {"rate_bp": 1000}, "recurring": recurring}]}
    result = evaluate(parse_rules(doc), order(), referred(), upline(1))
    assert summary(result) == [("share", REF1, 1, 300)]
    assert [d for d in result.counter_deltas if d.kind == "recurring"] == []

    capped = dict(recurring, max_points_per_friend=1_000)
    doc["rules"][0]["recurring"] = capped
    with_cap = evaluate(parse_rules(doc), order(), referred(recurring_paid={"share": 800}), upline(1))
    assert summary(with_cap) == [("share", REF1, 1, 200)]  # the cap still bites, as before
    assert [d for d in with_cap.counter_deltas if d.kind == "recurring"] == [
        CounterDelta("recurring", 200, member_id=FRIEND, rule_id="share", max_before=1_000 - 200)]


# --------------------------------------------------------------------------- coalition


def test_coalition_partner_overrides_and_funding() -> None:
    rules = load_example("coalition")
    cafe = evaluate(rules, order(total=100_000, partner_id="cafe"), referred(), upline(2))
    assert [(p.rule_id, p.member_id, p.points, p.funding_partner_id) for p in cafe.postings] == [
        ("earn", FRIEND, 50, "cafe"),  # cafe earns 5 % instead of 1 %
        ("bank-friend-bonus", FRIEND, 300, "bank"),  # the bank funds the friend's 300 points
        ("bank-referrer-bonus", REF1, 500, "bank"),
        ("level-2-share", REF2, 5, "cafe"),  # 0.5 % of 1000.00
    ]

    fuel = evaluate(rules, order(total=10_000_000, partner_id="fuel"), referred(orders_before=3), upline(2))
    earn, share = fuel.postings
    assert (earn.points, earn.status, earn.available_at) == (300, "available", AT)  # 2 % capped at 300
    assert (share.points, share.funding_partner_id) == (5, "bank")

    shop = evaluate(rules, order(total=100_000, partner_id="shop"), referred(orders_before=3), upline(2))
    assert summary(shop) == [("earn", FRIEND, 0, 10)]
    assert skips(shop) == [
        ("bank-friend-bonus", "trigger_not_matched", 0),  # not the first order
        ("bank-referrer-bonus", "trigger_not_matched", 0),
        ("level-2-share", "trigger_not_matched", 0),  # only at cafe and fuel
    ]

    pharmacy = evaluate(rules, order(total=100_000, partner_id="pharmacy"), referred(orders_before=3), upline(2))
    assert ("earn", "disabled_for_partner", 0) in skips(pharmacy)


def test_coalition_custom_event_and_currency_mismatch() -> None:
    rules = load_example("coalition")
    review = evaluate(rules, event("custom.review.posted", partner_id="cafe"), referred(), upline(2))
    assert summary(review) == [("review", FRIEND, 0, 20)]
    assert "'review.posted' event" in review.postings[0].reason

    usd = evaluate(rules, order(total=100_000, currency="USD", partner_id="cafe"), referred(orders_before=1), [])
    assert ("earn", "currency_mismatch", 0) in skips(usd)


# --------------------------------------------------------------------------- misc engine


def test_nth_order_and_zero_points() -> None:
    rules = parse_rules(
        {
            "hold_days": 0,
            "rules": [
                {
                    "id": "third",
                    "trigger": {"event": "order.paid", "order": "nth", "n": 3},
                    "recipient": {"type": "self"},
                    "amount": {"points": 77},
                },
                {
                    "id": "tiny",
                    "trigger": {"event": "order.paid"},
                    "recipient": {"type": "self"},
                    "amount": {"rate_bp": 1},
                },
            ],
        }
    )
    third = evaluate(rules, order(total=100), Subject(member_id="m", orders_before=2), [])
    assert summary(third) == [("third", "m", 0, 77)]
    assert third.postings[0].reason.startswith("77 points for your 3rd order")
    assert skips(third) == [("tiny", "zero_points", 0)]
    assert skips(evaluate(rules, order(), Subject(member_id="m", orders_before=3), []))[0] == (
        "third",
        "trigger_not_matched",
        0,
    )


def test_rule_monthly_cap_and_program_cap_take_the_minimum() -> None:
    rules = parse_rules(
        {
            "member_monthly_cap_points": 1_000,
            "rules": [
                {
                    "id": "r",
                    "trigger": {"event": "order.paid"},
                    "recipient": {"type": "self"},
                    "amount": {"points": 400},
                    "caps": {"member_monthly_points": 500},
                }
            ],
        }
    )
    result = evaluate(rules, order(), Subject(member_id="m", month_earned_points=300), [])
    assert summary(result) == [("r", "m", 0, 200)]
    assert result.counter_deltas[0].max_before == 300


def test_other_event_types_and_disabled_rules_are_silent() -> None:
    rules = parse_rules(
        {
            "rules": [
                {
                    "id": "off",
                    "enabled": False,
                    "trigger": {"event": "order.paid"},
                    "recipient": {"type": "self"},
                    "amount": {"points": 1},
                }
            ]
        }
    )
    assert evaluate(rules, order(), Subject(member_id="m"), []) == Evaluation((), (), (), "2025-03")
    assert evaluate(load_example("uds_3_level"), event("lead.created"), referred(), upline()).skipped == ()


def test_rule_version_is_stamped_and_time_is_normalised_to_utc() -> None:
    rules = parse_rules({"version": 4, "hold_days": 1, "rules": [{
        "id": "r", "trigger": {"event": "order.paid"}, "recipient": {"type": "self"}, "amount": {"points": 1}
    }]})  # fmt: skip
    # 01:00 on April 1st in Moscow is still March 31st in UTC: counters use the UTC month.
    moscow = datetime(2025, 4, 1, 1, 0, tzinfo=timezone(timedelta(hours=3)))
    result = evaluate(rules, order(occurred_at=moscow), Subject(member_id="m"), [])
    assert result.postings[0].rule_version == 4
    assert result.postings[0].available_at == datetime(2025, 4, 1, 22, 0, tzinfo=UTC)
    assert result.postings[0].available_at.tzinfo is UTC
    assert result.month == "2025-03"


def test_naive_datetime_is_rejected() -> None:
    with pytest.raises(ValidationFailed) as exc:
        evaluate(load_example("single_shop"), order(occurred_at=datetime(2025, 1, 1)), Subject(member_id="m"), [])
    assert exc.value.details["errors"][0]["path"] == "$.occurred_at"


def test_ancestors_deeper_than_max_depth_are_ignored() -> None:
    rules: RulesDoc = load_example("single_shop")  # max_depth 1
    result = evaluate(rules, order(), referred(), upline(3))
    assert {p.member_id for p in result.postings} == {FRIEND, REF1}


# --------------------------------------------------------------------------- refunds


def _uds_postings() -> Evaluation:
    return evaluate(load_example("uds_3_level"), order(total=1_000_000), referred(), upline(3))


def test_full_refund_reverses_exactly_what_was_posted_at_every_level() -> None:
    posted = _uds_postings().postings
    reversals = reverse(posted, {}, 1_000_000, 1_000_000, previously_refunded_minor=0)
    assert [(r.member_id, r.level, r.points) for r in reversals] == [
        (FRIEND, 0, 500),
        (REF1, 1, 300),
        (REF2, 2, 200),
        (REF3, 3, 100),
    ]
    assert all(r.reversed_total == r.original_points and r.reason_code == "refund_clawback" for r in reversals)
    assert "refunded in full" in reversals[0].reason


def test_partial_refunds_are_proportional_and_the_last_takes_the_remainder() -> None:
    posted = [{"member_id": "m", "points": 101, "rule_id": "cashback", "rule_version": 1, "level": 0,
               "funding_partner_id": "shop"}]  # fmt: skip
    first = reverse(posted, {}, 333, 1_000, previously_refunded_minor=0)
    assert [r.points for r in first] == [33]  # floor(101 * 333 / 1000)
    assert "33% of the order amount" in first[0].reason
    second = reverse(posted, first, 333, 1_000, previously_refunded_minor=333)
    assert [r.points for r in second] == [34]  # floor(101 * 666 / 1000) - 33 = 67 - 33
    retry = reverse(posted, first + second, 333, 1_000, previously_refunded_minor=333)
    assert retry == []  # a retried refund reverses nothing new
    last = reverse(posted, {("cashback", 0, "m"): 67}, 334, 1_000, previously_refunded_minor=666)
    assert [(r.points, r.reversed_total) for r in last] == [(34, 101)]


def test_over_refund_and_zero_total() -> None:
    posted = _uds_postings().postings
    over = reverse(posted, {}, 2_000_000, 1_000_000, previously_refunded_minor=0)
    assert sum(r.points for r in over) == sum(p.points for p in posted)
    free = reverse(posted[:1], {}, 1, 0, previously_refunded_minor=0)
    assert [r.points for r in free] == [500]
    assert reverse(posted[:1], {}, 0, 0, previously_refunded_minor=0) == []


def test_reverse_rejects_bad_amounts_and_duplicates() -> None:
    posted = _uds_postings().postings
    with pytest.raises(ValidationFailed):
        reverse(posted, {}, -1, 100, previously_refunded_minor=0)
    with pytest.raises(ValueError, match="duplicate"):
        reverse([posted[0], posted[0]], {}, 1, 100, previously_refunded_minor=0)
