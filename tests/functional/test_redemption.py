"""Redemption at checkout: quote, idempotent redeem, confirm, cancel; bad input writes nothing."""

from __future__ import annotations

import pytest

from tests.functional.test_ledger_support import Shop, check_invariants, utc
from tests.support import CLOCK, ApiClient

SIGNUP_ONLY = {"hold_days": 0, "rules": [
    {"id": "welcome", "trigger": {"event": "member.signup"}, "recipient": {"type": "self"}, "amount": {"points": 1000}},
]}


@pytest.fixture(autouse=True)
def frozen_clock(api: ApiClient) -> None:
    CLOCK.set(utc("2026-01-15T12:00:00Z"))


@pytest.fixture
def shop(api: ApiClient) -> Shop:
    return Shop(api, SIGNUP_ONLY, settings={"redemption_max_share_percent": 30})


def path(shop: Shop, member_id: str, suffix: str = "") -> str:
    return f"/v1/programs/{shop.pid}/members/{member_id}/redemptions{suffix}"


def test_quote_caps_by_balance_and_by_the_programs_max_share(api: ApiClient, shop: Shop) -> None:
    member = shop.member("m")["member_id"]
    key = shop.partner["api_key"]
    quote = api.get(path(shop, member, "/quote?order_amount=100000"), key=key).body  # 1 000.00 RUB
    assert quote["max_points"] == 300 and quote["max_value_minor"] == 30_000 and quote["available"] == 1000
    assert quote["max_share_percent"] == 30 and quote["currency"] == "RUB"
    assert api.get(path(shop, member, "/quote?order_amount=10000000"), key=key).body["max_points"] == 1000
    assert api.get(path(shop, member, "/quote"), key=key).body["max_points"] == 1000


def test_redeem_confirm_and_cancel(api: ApiClient, shop: Shop) -> None:
    member = shop.member("m")["member_id"]
    created = shop.redeem(member, 400, "checkout-1", order_id="A-1", order_amount=2_000_000)
    assert created.status == 201 and created.body["status"] == "held" and created.body["value_minor"] == 40_000
    assert shop.balance(member)["available"] == 600 and shop.balance(member)["lifetime_spent"] == 400
    rid = created.body["redemption_id"]
    # A retry with the same key answers the same redemption and spends nothing more.
    again = shop.redeem(member, 400, "checkout-1", order_id="A-1", order_amount=2_000_000)
    assert again.status == 200 and again.body["redemption_id"] == rid
    assert shop.balance(member)["available"] == 600
    # The same key for a different request is refused.
    assert shop.redeem(member, 5, "checkout-1").error_code == "idempotency_key_reused"
    key = shop.partner["api_key"]
    confirmed = api.post(path(shop, member, f"/{rid}/confirm"), key=key)
    assert confirmed.status == 200 and confirmed.body["status"] == "confirmed"
    # The order was cancelled after all: the points come back (and cancelling twice is harmless).
    for _ in range(2):
        cancelled = api.post(path(shop, member, f"/{rid}/cancel"), key=key)
        assert cancelled.status == 200 and cancelled.body["status"] == "cancelled"
    bal = shop.balance(member)
    assert (bal["available"], bal["lifetime_spent"]) == (1000, 0)
    assert api.post(path(shop, member, f"/{rid}/confirm"), key=key).error_code == "redemption_cancelled"
    kinds = [e["kind"] for e in shop.ledger(member)]
    assert sorted(kinds) == ["redemption", "redemption_return", "reward"]
    check_invariants(shop.pid, member)


def test_rejections_write_nothing(api: ApiClient, shop: Shop) -> None:
    member = shop.member("m")["member_id"]
    before = shop.ledger(member)
    too_much = shop.redeem(member, 1001, "k1")
    assert too_much.status == 409 and too_much.error_code == "insufficient_points"
    assert too_much.body["error"]["details"]["available"] == 1000
    assert shop.redeem("mbr_nobody", 1, "k2").status == 404
    share = shop.redeem(member, 301, "k3", order_amount=100_000)
    assert share.status == 422 and share.body["error"]["details"]["max_points"] == 300
    assert shop.redeem(member, 0, "k4").status == 422
    no_key = api.post(path(shop, member), {"points": 1}, key=shop.partner["api_key"])
    assert no_key.status == 400 and no_key.error_code == "idempotency_key_required"
    assert shop.ledger(member) == before and shop.balance(member)["available"] == 1000
    # A key refused for lack of points can be used again once the request is valid.
    assert shop.redeem(member, 1000, "k1").status == 201


def test_other_programs_and_partners_cannot_see_redemptions(api: ApiClient, shop: Shop) -> None:
    member = shop.member("m")["member_id"]
    rid = shop.redeem(member, 10, "k").body["redemption_id"]
    other = Shop(api, None)
    assert shop.redeem(member, 10, "k", partner_key=other.partner["api_key"]).status == 404
    assert api.get(path(shop, member, f"/{rid}"), key=other.partner["api_key"]).status == 404
    second_partner = api.create_partner(shop.pid, name="Other shop")
    assert api.post(path(shop, member, f"/{rid}/cancel"), key=second_partner["api_key"]).status == 404
    assert api.get(path(shop, member, f"/{rid}")).body["status"] == "held"  # operator sees it
    assert api.get(f"/v1/programs/{shop.pid}/members/{member}/balance",
                   key=shop.program["publishable_key"]).status == 403
