"""Offer rewards through signed events and the real pipeline: vouchers issued in the event's transaction."""

from __future__ import annotations

from typing import Any

import pytest

from chalicelib.store.ledger import OutboxItem
from tests.functional.test_ledger_support import Shop, utc
from tests.support import CLOCK, ApiClient

NOW = "2026-01-15T12:00:00Z"


def offer(api: ApiClient, pid: str, partner: dict[str, Any], **fields: Any) -> dict[str, Any]:
    body = {"name": "Free coffee", "kind": "free_item", "item": "Cappuccino", "code_source": "pool", **fields}
    reply = api.post(f"/v1/programs/{pid}/partners/{partner['partner_id']}/offers", body)
    assert reply.status == 201, reply.body
    return reply.body  # type: ignore[no-any-return]


def upload(api: ApiClient, pid: str, partner: dict[str, Any], offer_id: str, codes: list[str]) -> None:
    reply = api.post(f"/v1/programs/{pid}/partners/{partner['partner_id']}/offers/{offer_id}/codes", {"codes": codes})
    assert reply.status == 200, reply.body


def rules(cafe: str, offer_id: str, **extra: Any) -> dict[str, Any]:
    return {"hold_days": 0, "rules": [
        {"id": "cashback", "trigger": {"event": "order.paid"}, "recipient": {"type": "self"},
         "amount": {"rate_bp": 100}},
        {"id": "coffee-for-shoppers", "name": "Coffee for big shoppers",
         "trigger": {"event": "order.paid"}, "recipient": {"type": "self"},
         "amount": {"min_order_amount": 500_000, "offer": {"partner_id": cafe, "offer_id": offer_id, **extra}}},
    ]}


@pytest.fixture
def coalition(api: ApiClient) -> dict[str, Any]:
    CLOCK.set(utc(NOW))
    shop = Shop(api, None, partners=2)
    clothes, cafe = shop.partners
    coffee = offer(api, shop.pid, cafe, valid_days=30)
    return {"shop": shop, "clothes": clothes, "cafe": cafe, "offer": coffee}


def put_rules(api: ApiClient, shop: Shop, doc: dict[str, Any]) -> None:
    reply = api.put(f"/v1/programs/{shop.pid}/rules", doc)
    assert reply.status == 200, reply.body


def vouchers(api: ApiClient, pid: str, member_id: str, key: str = "operator") -> list[dict[str, Any]]:
    reply = api.get(f"/v1/programs/{pid}/members/{member_id}/vouchers", key=key)
    assert reply.status == 200, reply.body
    return reply.body["items"]  # type: ignore[no-any-return]


def test_spend_at_one_partner_earns_a_coupon_at_another(api: ApiClient, coalition: dict[str, Any]) -> None:
    shop, clothes, cafe, coffee = (coalition[k] for k in ("shop", "clothes", "cafe", "offer"))
    upload(api, shop.pid, cafe, coffee["offer_id"], ["CAFE-1", "CAFE-2", "CAFE-3"])
    put_rules(api, shop, rules(cafe["partner_id"], coffee["offer_id"]))
    small = shop.order("anna", "o-1", 100_000, partner=clothes)
    assert "vouchers" not in small["rewards"]
    assert [s["reason_code"] for s in small["rewards"]["skipped"]] == ["below_min_order"]
    from chalicelib.services import rules as rules_service

    rules_service.reset_cache()  # a cold instance: the rules come with the first read, the pool with the second
    reply = shop.order("anna", "o-2", 600_000, partner=clothes)
    member_id = reply["member"]["member_id"]
    [granted] = reply["rewards"]["vouchers"]
    assert granted["partner_id"] == cafe["partner_id"] and granted["member_id"] == member_id
    assert "code" not in granted  # the shop's webhook reply never carries the cafe's code
    [voucher] = vouchers(api, shop.pid, member_id)
    assert voucher["code"] in {"CAFE-1", "CAFE-2", "CAFE-3"} and voucher["item"] == "Cappuccino"
    assert voucher["event_partner_id"] == clothes["partner_id"] and voucher["reason_code"] == "offer_reward"
    assert voucher["expires_at"].startswith("2026-02-14T12:00:00")
    pool = api.get(f"/v1/programs/{shop.pid}/partners/{cafe['partner_id']}/offers/{coffee['offer_id']}").body["pool"]
    assert pool == {"size": 3, "remaining": 2, "issued": 1, "low": False}
    # The message to the member, in the event's transaction.
    messages = [m for m in OutboxItem.scan() if isinstance(m, OutboxItem) and m.template == "voucher_issued"]
    assert [(m.member_id, m.params["code"]) for m in messages] == [(member_id, voucher["code"])]
    # A replay of the same order changes nothing.
    again = shop.send_raw(shop.order_event("anna", "o-2", 600_000), partner=clothes)
    assert again.body["status"] == "duplicate"
    assert len(vouchers(api, shop.pid, member_id)) == 1
    # Both partners see it (the cafe's offer, the shop's event); a third partner does not.
    assert len(vouchers(api, shop.pid, member_id, key=cafe["api_key"])) == 1
    assert len(vouchers(api, shop.pid, member_id, key=clothes["api_key"])) == 1
    third = api.create_partner(shop.pid, name="Third")
    assert vouchers(api, shop.pid, member_id, key=third["api_key"]) == []


def test_every_code_is_issued_once_then_the_pool_is_empty_and_falls_back(api: ApiClient,
                                                                          coalition: dict[str, Any]) -> None:
    shop, clothes, cafe, coffee = (coalition[k] for k in ("shop", "clothes", "cafe", "offer"))
    upload(api, shop.pid, cafe, coffee["offer_id"], ["A1", "A2"])
    put_rules(api, shop, rules(cafe["partner_id"], coffee["offer_id"], fallback_points=250))
    codes = []
    for i in range(3):
        reply = shop.order(f"c{i}", f"o-{i}", 600_000, partner=clothes)
        if i < 2:
            assert len(reply["rewards"]["vouchers"]) == 1
            codes += [v["code"] for v in vouchers(api, shop.pid, reply["member"]["member_id"])]
        else:
            assert "vouchers" not in reply["rewards"]
            assert [s["reason_code"] for s in reply["rewards"]["skipped"]] == ["pool_empty"]
            fallback = [p for p in reply["rewards"]["postings"] if p["rule_id"] == "coffee-for-shoppers"]
            assert [p["points"] for p in fallback] == [250]
            assert shop.balance(reply["member"]["member_id"])["available"] == 250 + 60  # fallback + 1 % cashback of 6,000.00
    assert sorted(codes) == ["A1", "A2"]


def test_an_empty_pool_without_fallback_records_why(api: ApiClient, coalition: dict[str, Any]) -> None:
    shop, clothes, cafe, coffee = (coalition[k] for k in ("shop", "clothes", "cafe", "offer"))
    put_rules(api, shop, rules(cafe["partner_id"], coffee["offer_id"]))
    reply = shop.order("c1", "o-1", 600_000, partner=clothes)
    [skip] = reply["rewards"]["skipped"]
    assert skip["reason_code"] == "pool_empty" and skip["rule_id"] == "coffee-for-shoppers"
    assert [p["rule_id"] for p in reply["rewards"]["postings"]] == ["cashback"]


def test_referrer_and_friend_both_get_the_partners_offer(api: ApiClient, coalition: dict[str, Any]) -> None:
    shop, clothes, cafe, coffee = (coalition[k] for k in ("shop", "clothes", "cafe", "offer"))
    upload(api, shop.pid, cafe, coffee["offer_id"], [f"R{i}" for i in range(10)])
    ref = {"partner_id": cafe["partner_id"], "offer_id": coffee["offer_id"]}
    put_rules(api, shop, {"hold_days": 0, "rules": [
        {"id": "bring-a-friend", "trigger": {"event": "order.paid", "order": "first"},
         "recipient": {"type": "referrer", "level": 1}, "amount": {"points": 300}},
        {"id": "referrer-coffee", "trigger": {"event": "order.paid", "order": "first"},
         "recipient": {"type": "referrer", "level": 1}, "amount": {"offer": ref}},
        {"id": "friend-coffee", "trigger": {"event": "order.paid", "order": "first"},
         "recipient": {"type": "friend"}, "amount": {"offer": ref}},
    ]})
    olga = shop.member("olga")
    masha = shop.member("masha", olga["code"])
    reply = shop.order("masha", "o-1", 100_000, partner=clothes)
    assert sorted(v["rule_id"] for v in reply["rewards"]["vouchers"]) == ["friend-coffee", "referrer-coffee"]
    olga_codes = [v["code"] for v in vouchers(api, shop.pid, olga["member_id"])]
    masha_codes = [v["code"] for v in vouchers(api, shop.pid, masha["member_id"])]
    assert len(olga_codes) == len(masha_codes) == 1 and olga_codes != masha_codes
    assert shop.balance(olga["member_id"])["available"] == 300


def test_static_code_offer(api: ApiClient, coalition: dict[str, Any]) -> None:
    shop, clothes, cafe = (coalition[k] for k in ("shop", "clothes", "cafe"))
    gym = api.post(f"/v1/programs/{shop.pid}/partners/{cafe['partner_id']}/offers",
                   {"name": "10% at the gym", "kind": "percent_off", "percent": 10, "code_source": "static",
                    "static_code": "FIT10"}).body
    put_rules(api, shop, {"hold_days": 0, "rules": [
        {"id": "gym", "trigger": {"event": "order.paid"}, "recipient": {"type": "self"},
         "amount": {"offer": {"partner_id": cafe["partner_id"], "offer_id": gym["offer_id"]}}}]})
    for i in range(2):
        reply = shop.order("c1", f"o-{i}", 100_000, partner=clothes)
    got = vouchers(api, shop.pid, reply["member"]["member_id"])
    assert [(v["code"], v["percent"]) for v in got] == [("FIT10", 10), ("FIT10", 10)]


def test_a_disabled_offer_is_not_issued(api: ApiClient, coalition: dict[str, Any]) -> None:
    shop, clothes, cafe, coffee = (coalition[k] for k in ("shop", "clothes", "cafe", "offer"))
    upload(api, shop.pid, cafe, coffee["offer_id"], ["D1"])
    put_rules(api, shop, rules(cafe["partner_id"], coffee["offer_id"], fallback_points=10))
    path = f"/v1/programs/{shop.pid}/partners/{cafe['partner_id']}/offers/{coffee['offer_id']}"
    assert api.patch(path, {"enabled": False}).status == 200
    reply = shop.order("c1", "o-1", 600_000, partner=clothes)
    assert "vouchers" not in reply["rewards"]
    assert [s["reason_code"] for s in reply["rewards"]["skipped"]] == ["pool_empty"]


def test_an_offer_once_a_month_per_member(api: ApiClient, coalition: dict[str, Any]) -> None:
    """A privilege like "the partner's catalogue offer once a month" (with the tier condition of the tiers
    section): ``offer.per_month`` counts per member, rule and calendar month, in the event's transaction."""
    shop, clothes, cafe, coffee = (coalition[k] for k in ("shop", "clothes", "cafe", "offer"))
    upload(api, shop.pid, cafe, coffee["offer_id"], [f"M{i}" for i in range(10)])
    put_rules(api, shop, {"hold_days": 0, "rules": [
        {"id": "monthly-coffee", "trigger": {"event": "order.paid"}, "recipient": {"type": "self"},
         "amount": {"offer": {"partner_id": cafe["partner_id"], "offer_id": coffee["offer_id"], "per_month": 1}}}]})
    first = shop.order("c1", "o-1", 100_000, partner=clothes, at="2026-01-15T10:00:00Z")
    second = shop.order("c1", "o-2", 100_000, partner=clothes, at="2026-01-15T11:00:00Z")
    assert len(first["rewards"]["vouchers"]) == 1
    assert "vouchers" not in second["rewards"]
    assert [s["reason_code"] for s in second["rewards"]["skipped"]] == ["offer_limit"]
    later = shop.order("c1", "o-3", 100_000, partner=clothes, at="2026-02-02T10:00:00Z")
    assert len(later["rewards"]["vouchers"]) == 1
    assert len(vouchers(api, shop.pid, first["member"]["member_id"])) == 2


def test_rules_naming_an_unknown_offer_are_refused(api: ApiClient, coalition: dict[str, Any]) -> None:
    shop, cafe, clothes, coffee = (coalition[k] for k in ("shop", "cafe", "clothes", "offer"))
    wrong_partner = rules(clothes["partner_id"], coffee["offer_id"])  # the offer is the cafe's
    reply = api.put(f"/v1/programs/{shop.pid}/rules", wrong_partner)
    assert reply.status == 422, reply.body
    assert [e["path"] for e in reply.body["error"]["details"]["errors"]] == ["$.rules[1].amount.offer.offer_id"]
    assert api.put(f"/v1/programs/{shop.pid}/rules", rules(cafe["partner_id"], "off_nope")).status == 422
