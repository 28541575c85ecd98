"""Pure parts of partner offers: code lists, shards, the engine's offer reward (docs/coalition.md)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from chalicelib.domain.errors import ValidationFailed
from chalicelib.domain.offers import SHARDS, codes_from_csv, is_low, parse_codes, pick_shard, shard_of
from chalicelib.domain.rewards import EngineEvent, Subject, evaluate, parse_rules

AT = datetime(2026, 1, 15, 10, 0, tzinfo=UTC)


def test_csv_with_bom_crlf_header_and_blank_lines() -> None:
    assert codes_from_csv("\ufeffcode\r\nA1\r\n\r\n B2 \r\n") == ["A1", "B2"]
    assert codes_from_csv("x,code\r\n1,C1\r\n2,C2\r\n") == ["C1", "C2"]
    assert codes_from_csv("A1\rA2\r") == ["A1", "A2"]
    assert codes_from_csv("") == []


def test_duplicates_are_listed_once_each() -> None:
    with pytest.raises(ValidationFailed) as err:
        parse_codes(["A", "B", "A", "A", "C", "B"])
    assert err.value.code == "duplicate_codes"
    assert err.value.details == {"duplicates": ["A", "B"], "count": 2}


def test_malformed_and_empty_uploads() -> None:
    with pytest.raises(ValidationFailed) as err:
        parse_codes(["ok", "white space", "x" * 65])
    assert [e["path"] for e in err.value.details["errors"]] == ["$.codes[1]", "$.codes[2]"]
    with pytest.raises(ValidationFailed):
        parse_codes([])


def test_shards_spread_and_pick() -> None:
    counts = [0] * SHARDS
    for i in range(8000):
        counts[shard_of(f"CODE-{i}")] += 1
    assert min(counts) > 800
    assert pick_shard([1, 3], "x", taken=[1, 3]) is None
    assert pick_shard([1, 3], "x", taken=[1]) == 3
    assert is_low(5, 4) and not is_low(5, 5) and not is_low(None, 0)


def _doc(fallback: int | None = None, **amount: object) -> object:
    offer = {"partner_id": "cafe", "offer_id": "off_1", **({"fallback_points": fallback} if fallback else {})}
    return parse_rules({"hold_days": 0, "rules": [
        {"id": "coffee", "trigger": {"event": "order.paid", "partners": ["shop"]}, "recipient": {"type": "self"},
         "amount": {"offer": offer, **amount}},
        {"id": "friend-coffee", "trigger": {"event": "order.paid"}, "recipient": {"type": "friend"},
         "amount": {"offer": offer}}]})


def _event(partner: str = "shop", total: int = 600_000) -> EngineEvent:
    return EngineEvent(business_key="order:shop:1", type="order.paid", occurred_at=AT, partner_id=partner,
                       total=total, currency="RUB")


def test_offer_reward_grants_while_codes_last() -> None:
    doc = _doc(min_order_amount=500_000)
    subject = Subject(member_id="m1", referrer_id="m0")
    both = evaluate(doc, _event(), subject, [], offers={"off_1": 2})  # type: ignore[arg-type]
    assert [(v.rule_id, v.member_id, v.offer_id) for v in both.vouchers] == [
        ("coffee", "m1", "off_1"), ("friend-coffee", "m1", "off_1")]
    assert both.postings == ()
    one = evaluate(doc, _event(), subject, [], offers={"off_1": 1})  # type: ignore[arg-type]
    assert [v.rule_id for v in one.vouchers] == ["coffee"]
    assert [(s.rule_id, s.reason_code) for s in one.skipped] == [("friend-coffee", "pool_empty")]
    small = evaluate(doc, _event(total=100_000), subject, [], offers={"off_1": 5})  # type: ignore[arg-type]
    assert [v.rule_id for v in small.vouchers] == ["friend-coffee"]
    assert [s.reason_code for s in small.skipped] == ["below_min_order"]
    elsewhere = evaluate(doc, _event(partner="bank"), subject, [], offers={"off_1": 5})  # type: ignore[arg-type]
    assert [s.reason_code for s in elsewhere.skipped] == ["trigger_not_matched"]


def test_empty_pool_falls_back_to_points_through_the_caps() -> None:
    doc = _doc(fallback=300, max_points=200)
    result = evaluate(doc, _event(), Subject(member_id="m1"), [], offers={})  # type: ignore[arg-type]
    [posting] = result.postings
    assert (posting.rule_id, posting.points, posting.reason_code) == ("coffee", 200, "offer_fallback")
    assert [s.reason_code for s in result.skipped] == ["pool_empty", "cap_reward", "no_referrer"]


def test_max_points_without_fallback_is_refused() -> None:
    with pytest.raises(ValidationFailed):
        _doc(max_points=10)


def test_per_month_limit_counts_grants_of_this_event_too() -> None:
    doc = parse_rules({"rules": [
        {"id": "monthly", "trigger": {"event": "order.paid"}, "recipient": {"type": "self"},
         "amount": {"offer": {"partner_id": "cafe", "offer_id": "off_1", "per_month": 2}}}]})
    used = evaluate(doc, _event(), Subject(member_id="m1"), [], offers={"off_1": 5},
                    offers_this_month={"monthly#m1": 2})
    assert used.vouchers == () and [s.reason_code for s in used.skipped] == ["offer_limit"]
    fresh = evaluate(doc, _event(), Subject(member_id="m1"), [], offers={"off_1": 5},
                     offers_this_month={"monthly#m1": 1})
    assert len(fresh.vouchers) == 1
