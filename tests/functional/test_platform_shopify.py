"""Shopify through the real route: connecting, HMAC vectors, mapping to the ledger, dedupe, order.

Fixtures: tests/fixtures/platforms/shopify (Shopify's documented sample payloads; each file
names its source and what was changed for the scenario).
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from tests.platform_support import PlatformShop, b64_hmac, fixture
from tests.support import CLOCK, ApiClient, Reply

SECRET = "shpss_0123456789abcdef0123456789abcdef"
SHOP = "zerno.myshopify.com"


@pytest.fixture
def shop(api: ApiClient) -> PlatformShop:
    s = PlatformShop(api, currency="USD")
    s.connected("shopify", secret=SECRET, shop_domain=SHOP)
    return s


def send(shop: PlatformShop, name: str, secret: str = SECRET, body: Any = None, raw: bytes | None = None,
         drop: tuple[str, ...] = (), **header_overrides: str) -> Reply:
    data = fixture("shopify", name)
    payload = raw if raw is not None else json.dumps(body if body is not None else data["body"]).encode()
    headers = {**data["headers"], "X-Shopify-Hmac-Sha256": b64_hmac(secret, payload), **header_overrides}
    for name_ in drop:
        headers.pop(name_, None)
    return shop.deliver(f"/v1/webhooks/{shop.partner['partner_id']}/shopify", payload, headers)


def referrer(shop: PlatformShop, code: str = "ANNA-7K2Q") -> str:
    anna = shop.member("anna")["member_id"]
    reply = shop.api.put(f"/v1/programs/{shop.pid}/members/{anna}/code", {"code": code})
    assert reply.status == 200, reply.body
    return anna  # type: ignore[no-any-return]


FRIEND = "115310627314723954"  # the sample order's customer id


# --------------------------------------------------------------------------- connecting


def test_connect_answers_the_webhook_url_and_topics_and_never_shows_the_secret(api: ApiClient) -> None:
    shop = PlatformShop(api, currency="USD")
    view = shop.connected("shopify", secret=SECRET, shop_domain=SHOP)
    pid = shop.partner["partner_id"]
    assert view["webhook_url"] == f"https://srf.test/v1/webhooks/{pid}/shopify"
    assert "orders/paid" in view["topics"] and "refunds/create" in view["topics"]
    assert view["settings"] == {"shop_domain": SHOP}
    assert SECRET not in json.dumps(view)
    got = api.get(f"{shop.base}/shopify")
    assert got.status == 200 and SECRET not in json.dumps(got.body) and got.body["secret"]["versions_valid"] == 1
    # The partner itself may connect; another partner of the program may not.
    assert shop.connect("shopify", key=shop.partner["api_key"], shop_domain=SHOP).status == 200
    other = api.create_partner(shop.pid, name="Other")
    assert shop.connect("shopify", key=other["api_key"], shop_domain=SHOP).status == 403


def test_connect_refuses_bad_settings_with_the_path(api: ApiClient) -> None:
    shop = PlatformShop(api, currency="USD")
    reply = shop.connect("shopify", secret=SECRET, shop_domain="zerno.example.com")
    assert reply.status == 422 and reply.body["error"]["details"]["errors"][0]["path"] == "$.settings.shop_domain"
    reply = shop.connect("shopify", shop_domain=SHOP)  # first connection without the secret
    assert reply.status == 422 and reply.body["error"]["details"]["errors"][0]["path"] == "$.settings.secret"
    reply = shop.connect("shopify", secret=SECRET, shop_domain=SHOP, colour="red")
    assert reply.status == 422 and reply.body["error"]["details"]["errors"][0]["path"] == "$.settings.colour"
    assert shop.connect("magento", secret=SECRET).status == 404
    assert api.get(f"{shop.base}/shopify").status == 404  # nothing was stored


def test_disconnect_makes_the_webhook_a_404(shop: PlatformShop) -> None:
    assert shop.api.call("DELETE", f"{shop.base}/shopify").status == 200
    assert send(shop, "orders_paid.json").status == 404
    assert shop.api.get(f"{shop.base}/shopify").status == 404


# --------------------------------------------------------------------------- authenticity


def test_signature_vectors(shop: PlatformShop) -> None:
    data = fixture("shopify", "orders_paid.json")
    raw = json.dumps(data["body"]).encode()
    tampered = raw.replace(b'"398.00"', b'"3980.00"', 1)
    headers = {**data["headers"], "X-Shopify-Hmac-Sha256": b64_hmac(SECRET, raw)}
    url = f"/v1/webhooks/{shop.partner['partner_id']}/shopify"
    assert shop.deliver(url, tampered, headers).status == 401
    assert send(shop, "orders_paid.json", secret="shpss_wrong-secret-wrong-secret").status == 401
    assert send(shop, "orders_paid.json", drop=("X-Shopify-Hmac-Sha256",)).status == 401
    assert send(shop, "orders_paid.json", **{"X-Shopify-Hmac-Sha256": "not base64!"}).status == 401
    # Signed by the app secret, but for another shop that installed the same app.
    assert send(shop, "orders_paid.json", **{"X-Shopify-Shop-Domain": "other.myshopify.com"}).status == 401
    assert send(shop, "orders_paid.json", drop=("X-Shopify-Shop-Domain",)).status == 401
    # Nothing was written by any rejection.
    assert shop.api.get(f"/v1/programs/{shop.pid}/members/lookup?customer_id={FRIEND}"
                        f"&partner_id={shop.partner['partner_id']}").status == 404
    # A signed delivery without a topic is malformed.
    assert send(shop, "orders_paid.json", drop=("X-Shopify-Topic",)).status == 400


def test_unknown_partner_platform_or_not_connected_are_the_same_404(shop: PlatformShop, api: ApiClient) -> None:
    data = fixture("shopify", "orders_paid.json")
    raw = json.dumps(data["body"]).encode()
    headers = {**data["headers"], "X-Shopify-Hmac-Sha256": b64_hmac(SECRET, raw)}
    unconnected = api.create_partner(shop.pid, name="No shop")
    replies = [shop.deliver(f"/v1/webhooks/{pid}/{platform}", raw, headers) for pid, platform in (
        ("ptn_nobody", "shopify"), (shop.partner["partner_id"], "magento"), (unconnected["partner_id"], "shopify"))]
    assert {r.status for r in replies} == {404}
    assert len({json.dumps(r.body) for r in replies}) == 1


def test_a_rotated_secret_keeps_the_old_one_valid_for_the_overlap(shop: PlatformShop) -> None:
    new = "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"
    view = shop.connected("shopify", secret=new, shop_domain=SHOP)
    assert view["secret"]["versions_valid"] == 2 and view["secret"]["previous_valid_until"]
    referrer(shop)
    assert send(shop, "orders_paid.json", secret=SECRET).status == 200  # old, in the overlap
    assert send(shop, "customers_create.json", secret=new).status == 200
    CLOCK.set(CLOCK.now() + timedelta(hours=25))
    assert send(shop, "refunds_create.json", secret=SECRET).status == 401  # old, overlap over
    assert send(shop, "refunds_create.json", secret=new).status == 200


# --------------------------------------------------------------------------- mapping to the ledger


def test_orders_paid_with_a_ref_code_credits_the_referrer_and_pays_the_rules(shop: PlatformShop) -> None:
    anna = referrer(shop)
    reply = send(shop, "orders_paid.json")
    assert reply.status == 200, reply.body
    (event,) = reply.body["events"]
    assert reply.body["status"] == "processed" and event["type"] == "order.paid"
    assert event["label"] == "orders/paid#820982911946154508"
    assert event["attribution"]["outcome"] == "credited" and event["attribution"]["referrer_id"] == anna
    friend = shop.member_id_of(FRIEND)
    # 398.00 USD = 39800 cents; 5 % cashback = 1990 cents = 19 points at 100 cents a point.
    assert shop.rewards(friend) == {"cashback": 19, "friend-bonus": 300}
    assert shop.rewards(anna) == {"referrer-bonus": 500}


def test_a_discount_code_that_is_a_members_coupon_attributes_the_order(shop: PlatformShop) -> None:
    from chalicelib.store import keys
    from chalicelib.store.members import CouponItem

    anna = referrer(shop, "ANNA-0001")
    pk, sk = keys.coupon(shop.pid, "ANNA10")
    CouponItem(PK=pk, SK=sk, program_id=shop.pid, member_id=anna, ancestors=[], coupon="ANNA10").save()
    reply = send(shop, "orders_paid_coupon.json")
    (event,) = reply.body["events"]
    assert event["attribution"]["outcome"] == "credited" and event["attribution"]["source"] == "coupon"
    assert shop.rewards(anna) == {"referrer-bonus": 500}


def test_orders_create_then_paid_then_redelivered_rewards_once(shop: PlatformShop) -> None:
    anna = referrer(shop)
    first = send(shop, "orders_create_paid.json")
    assert first.body["status"] == "processed"
    again = [send(shop, "orders_paid.json"), send(shop, "orders_paid.json", **{"X-Shopify-Webhook-Id": "other"}),
             send(shop, "orders_create_paid.json")]
    assert [r.body["status"] for r in again] == ["duplicate"] * 3
    assert not any("conflict" in r.body for r in again)
    assert shop.rewards(anna) == {"referrer-bonus": 500}
    assert shop.rewards(shop.member_id_of(FRIEND)) == {"cashback": 19, "friend-bonus": 300}


def test_an_unpaid_orders_create_is_acknowledged_and_writes_nothing(shop: PlatformShop) -> None:
    referrer(shop)
    reply = send(shop, "orders_create_pending.json")
    assert reply.status == 200 and reply.body["status"] == "ignored"
    assert reply.body["events"][0]["status"] == "skipped"
    assert shop.api.get(f"/v1/programs/{shop.pid}/members/lookup?customer_id={FRIEND}"
                        f"&partner_id={shop.partner['partner_id']}").status == 404
    assert send(shop, "orders_paid.json").body["status"] == "processed"


def test_the_same_order_paid_again_with_another_total_is_a_reported_conflict(shop: PlatformShop) -> None:
    referrer(shop)
    send(shop, "orders_paid.json")
    body = dict(fixture("shopify", "orders_paid.json")["body"], total_price="420.00")
    reply = send(shop, "orders_paid.json", body=body)
    assert reply.status == 200 and reply.body["status"] == "duplicate"
    fields = reply.body["conflict"]["fields"]
    assert fields == [{"field": "order.total", "stored": 39800, "received": 42000}]


def test_refunds_create_reverses_proportionally_and_two_partial_refunds_both_count(shop: PlatformShop) -> None:
    referrer(shop)
    send(shop, "orders_paid.json")
    friend = shop.member_id_of(FRIEND)
    first = send(shop, "refunds_create.json")  # 199.00 of 398.00
    (event,) = first.body["events"]
    assert event["type"] == "order.refunded" and event["rewards"]["refunded_minor"] == 19900
    second = send(shop, "refunds_create_partial.json")  # 50.00 more
    assert second.body["events"][0]["rewards"]["refunded_minor"] == 24900
    assert send(shop, "refunds_create.json").body["status"] == "duplicate"
    assert shop.rewards(friend)["cashback"] < 19


def test_a_refund_before_its_order_is_parked_and_a_paid_redelivery_after_it_is_a_duplicate(shop: PlatformShop) -> None:
    referrer(shop)
    parked = send(shop, "refunds_create.json")
    assert parked.body["events"][0]["rewards"]["status"] == "parked"
    paid = send(shop, "orders_paid.json")
    assert paid.body["events"][0]["rewards"]["parked_refunds_applied"]
    assert send(shop, "orders_paid.json").body["status"] == "duplicate"


def test_orders_cancelled_reverses_the_order(shop: PlatformShop) -> None:
    anna = referrer(shop)
    send(shop, "orders_paid.json")
    reply = send(shop, "orders_cancelled.json")
    assert reply.body["events"][0]["type"] == "order.cancelled"
    assert shop.rewards(anna) == {"referrer-bonus": 0}


def test_customers_create_is_a_signup_and_other_topics_are_ignored(shop: PlatformShop) -> None:
    reply = send(shop, "customers_create.json")
    assert reply.body["events"][0]["type"] == "member.signup"
    assert reply.body["events"][0]["member"]["created"] is True
    ignored = send(shop, "products_update.json")
    assert ignored.status == 200 and ignored.body["status"] == "ignored"


def test_malformed_payloads_are_400(shop: PlatformShop) -> None:
    assert send(shop, "orders_paid.json", raw=b"{not json").status == 400
    assert send(shop, "orders_paid.json", raw=b"[1, 2]").status == 400
    assert send(shop, "orders_paid.json", raw=b'{"id": 1, "id": 2}').status == 400
    body = dict(fixture("shopify", "orders_paid.json")["body"], total_price=398.0)  # a float, not a string
    assert send(shop, "orders_paid.json", body=body).status == 400
    body = dict(fixture("shopify", "orders_paid.json")["body"], currency="dollars")
    assert send(shop, "orders_paid.json", body=body).status == 400


@pytest.mark.parametrize(("currency", "total", "refund", "minor", "refunded"), [
    ("JPY", "1490", "298", 1490, 298),          # no decimals: 1490 yen is 1490 minor units
    ("KWD", "12.345", "2.469", 12345, 2469),    # three decimals: 12.345 dinars are 12345 fils
])
def test_money_in_zero_and_three_decimal_currencies_reaches_the_ledger(api: ApiClient, currency: str, total: str,
                                                                       refund: str, minor: int,
                                                                       refunded: int) -> None:
    """The sample order in a currency whose exponent is not 2, through the route to the ledger: the
    5 % cashback is computed from the integer minor units (1 point = 1 minor unit here)."""
    shop = PlatformShop(api, currency=currency, point_value_minor=1)
    shop.connected("shopify", secret=SECRET, shop_domain=SHOP)
    anna = referrer(shop)
    body = dict(fixture("shopify", "orders_paid.json")["body"], currency=currency, total_price=total,
                subtotal_price=total)
    reply = send(shop, "orders_paid.json", body=body)
    assert reply.status == 200 and reply.body["events"][0]["status"] == "processed", reply.body
    friend = shop.member_id_of(FRIEND)
    cashback = minor * 500 // 10_000  # JPY: 74 points; KWD: 617 (never through a float of "12.345")
    assert shop.rewards(friend) == {"cashback": cashback, "friend-bonus": 300}
    assert shop.rewards(anna) == {"referrer-bonus": 500}
    # A partial refund of a fifth, in the same currency, takes back a fifth of the cashback (floor).
    data = fixture("shopify", "refunds_create_partial.json")["body"]
    transactions = [{**t, "amount": refund, "currency": currency} for t in data["transactions"]]
    back = send(shop, "refunds_create_partial.json", body={**data, "transactions": transactions})
    assert back.status == 200, back.body
    assert back.body["events"][0]["rewards"]["refunded_minor"] == refunded
    kept = cashback - cashback * refunded // minor
    assert shop.rewards(friend)["cashback"] == kept


# --------------------------------------------------------------------------- hostile bodies


def _item_count() -> int:
    from tests.functional.test_data_rights_erasure import scan_test_table

    return len(scan_test_table())


@pytest.mark.parametrize(("raw", "code", "path"), [
    (b'{"id": ' + b"[" * 1000 + b"]" * 1000 + b"}", "too_deep", None),
    (b'{"id": 820982911946154508, "total_price": ' + b"9" * 5000 + b"}", "number_out_of_range", "$.total_price"),
    (b'{"id": 820982911946154508, "customer": {"first_name": "\\ud800"}}', "invalid_string",
     "$.customer.first_name"),
    (b'{"id": 820982911946154508, "total_price": "1.00", "total_price": "99999.00"}', "duplicate_key",
     "$.total_price"),
    (b'{"id": 820982911946154508, "note": "a\\u0000b"}', "invalid_string", "$.note"),
])
def test_a_hostile_signed_platform_body_is_a_400_naming_the_limit_and_writes_nothing(
        shop: PlatformShop, raw: bytes, code: str, path: str | None) -> None:
    """A correctly signed Shopify delivery (the sender has the secret) with a hostile body: read by the
    one defensive reader (``domain.safe_json`` via ``adapters.body``), refused before any write."""
    before = _item_count()
    reply = send(shop, "orders_paid.json", raw=raw)
    assert reply.status == 400, reply.body
    assert reply.error_code == code, reply.body
    if path is not None:
        assert reply.body["error"]["details"]["path"] == path, reply.body
    assert _item_count() == before
    # The program still works: the real sample order is processed after the hostile ones.
    assert send(shop, "orders_paid.json").status == 200
