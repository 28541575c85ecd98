"""The pure engine with member tiers: ``trigger.tiers`` and ``tier_multipliers`` (schema, skips, integer maths)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chalicelib.domain.errors import ValidationFailed
from chalicelib.domain.rewards import Ancestor, EngineEvent, Subject, evaluate, parse_rules, percent_points
from chalicelib.domain.rewards.engine import tier_multiply

AT = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def order(total: int = 100_000) -> EngineEvent:
    return EngineEvent(business_key="order:1", type="order.paid", occurred_at=AT, partner_id="shop", total=total,
                       currency="RUB")


def doc(*rules: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {"hold_days": 0, "rules": list(rules), **top}


CASHBACK = {"id": "cashback", "trigger": {"event": "order.paid"}, "recipient": {"type": "self"},
            "amount": {"rate_bp": 500}, "tier_multipliers": {"silver": 12_500, "gold": 15_000}}
GOLD_ONLY = {"id": "gold-bonus", "trigger": {"event": "order.paid", "tiers": ["gold"]}, "recipient": {"type": "self"},
             "amount": {"points": 100}}
REFERRER_GOLD = {"id": "ref-gold", "trigger": {"event": "order.paid", "tiers": ["gold"]},
                 "recipient": {"type": "referrer", "level": 1}, "amount": {"points": 50}}


def test_trigger_tiers_applies_only_to_recipients_in_the_listed_tiers() -> None:
    rules = parse_rules(doc(GOLD_ONLY, REFERRER_GOLD))
    gold = evaluate(rules, order(), Subject("m1", referrer_id="r1", tier="gold"), [Ancestor("r1", 1, tier="base")])
    assert [(p.rule_id, p.member_id, p.points) for p in gold.postings] == [("gold-bonus", "m1", 100)]
    [skip] = gold.skipped
    assert (skip.rule_id, skip.member_id, skip.reason_code) == ("ref-gold", "r1", "tier_not_matched")
    base = evaluate(rules, order(), Subject("m1", referrer_id="r1", tier="base"), [Ancestor("r1", 1, tier="gold")])
    assert [(p.rule_id, p.member_id) for p in base.postings] == [("ref-gold", "r1")]
    no_tiers = evaluate(rules, order(), Subject("m1", tier=None), [])
    assert no_tiers.postings == () and {s.reason_code for s in no_tiers.skipped} == {"tier_not_matched", "no_referrer"}


def test_multipliers_floor_once_and_name_the_tier() -> None:
    rules = parse_rules(doc(CASHBACK))
    assert [p.points for p in evaluate(rules, order(100_000), Subject("m1", tier="base"), []).postings] == [50]
    silver = evaluate(rules, order(100_100), Subject("m1", tier="silver"), []).postings[0]
    assert silver.points == 50 * 12_500 // 10_000 == 62 and "Tier silver: x1.25." in silver.reason
    gold = evaluate(rules, order(100_000), Subject("m1", tier="gold"), []).postings[0]
    assert gold.points == 75 and gold.reason.endswith("Tier gold: x1.5.")


def test_multiplied_points_still_go_through_the_caps() -> None:
    capped = dict(CASHBACK, amount={"rate_bp": 500, "max_points": 60})
    posting = evaluate(parse_rules(doc(capped)), order(100_000), Subject("m1", tier="gold"), [])
    assert posting.postings[0].points == 60 and posting.skipped[0].reason_code == "cap_reward"
    assert posting.skipped[0].requested_points == 75


@pytest.mark.parametrize("rule, path", [
    ({**GOLD_ONLY, "trigger": {"event": "order.paid", "tiers": []}}, "$.rules[0].trigger.tiers"),
    ({**GOLD_ONLY, "trigger": {"event": "order.paid", "tiers": ["gold", "gold"]}}, "$.rules[0].trigger.tiers"),
    ({**GOLD_ONLY, "trigger": {"event": "order.paid", "tiers": ["Gold!"]}}, "$.rules[0].trigger.tiers[0]"),
    ({**CASHBACK, "tier_multipliers": {"gold": 0}}, "$.rules[0].tier_multipliers.gold"),
    ({**CASHBACK, "tier_multipliers": {"gold": 1.5}}, "$.rules[0].tier_multipliers.gold"),
    ({**CASHBACK, "tier_multipliers": {"gold": 100_001}}, "$.rules[0].tier_multipliers.gold"),
])
def test_schema_refuses_bad_tier_fields(rule: dict[str, Any], path: str) -> None:
    with pytest.raises(ValidationFailed) as err:
        parse_rules(doc(rule))
    assert err.value.details["errors"][0]["path"] == path, err.value.details


def test_uses_tiers() -> None:
    assert parse_rules(doc(CASHBACK)).uses_tiers and parse_rules(doc(GOLD_ONLY)).uses_tiers
    assert not parse_rules(doc({**GOLD_ONLY, "trigger": {"event": "order.paid"}})).uses_tiers


@given(total=st.integers(min_value=0, max_value=10**9), rate=st.integers(min_value=1, max_value=10_000),
       bp=st.integers(min_value=1, max_value=100_000), tier=st.sampled_from(["base", "silver", "gold"]))
def test_property_a_multiplier_is_one_integer_floor_of_the_unmultiplied_reward(total: int, rate: int, bp: int,
                                                                             tier: str) -> None:
    rule = {"id": "r", "trigger": {"event": "order.paid"}, "recipient": {"type": "self"},
            "amount": {"rate_bp": rate}, "tier_multipliers": {"gold": bp}}
    result = evaluate(parse_rules(doc(rule)), order(total), Subject("m1", tier=tier), [])
    plain = percent_points(total, rate, 100)
    expected = tier_multiply(plain, bp) if tier == "gold" else plain
    assert isinstance(expected, int) and expected == plain * bp // 10_000 if tier == "gold" else True
    assert sum(p.points for p in result.postings) == expected
    if expected == 0:
        assert [s.reason_code for s in result.skipped] == ["zero_points"]


@given(listed=st.lists(st.sampled_from(["base", "silver", "gold"]), min_size=1, max_size=3, unique=True),
       tier=st.sampled_from(["base", "silver", "gold", None]), recipient=st.sampled_from(["self", "referrer"]))
def test_property_trigger_tiers_pays_exactly_the_listed_tiers(listed: list[str], tier: str | None,
                                                             recipient: str) -> None:
    rule: dict[str, Any] = {"id": "r", "trigger": {"event": "order.paid", "tiers": listed},
                            "recipient": {"type": recipient, **({"level": 1} if recipient == "referrer" else {})},
                            "amount": {"points": 10}}
    subject_tier, ancestor_tier = (tier, "gold") if recipient == "self" else ("gold", tier)
    result = evaluate(parse_rules(doc(rule)), order(), Subject("m1", referrer_id="r1", tier=subject_tier),
                      [Ancestor("r1", 1, tier=ancestor_tier)])
    paid = [p.member_id for p in result.postings]
    if tier in listed:
        assert paid == (["m1"] if recipient == "self" else ["r1"])
    else:
        assert paid == [] and [s.reason_code for s in result.skipped] == ["tier_not_matched"]
