"""WooCommerce through the real route: signature, ping, statuses, refunds in the order, dedupe.

Fixtures: tests/fixtures/platforms/woocommerce (the REST API docs' order 727 and customer 25;
each file names its source and what was changed).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.platform_support import PlatformShop, b64_hmac, fixture
from tests.support import ApiClient, Reply

SECRET = "wc-secret-7f3a9c2e41b8d605"


@pytest.fixture
def shop(api: ApiClient) -> PlatformShop:
    s = PlatformShop(api, currency="USD")
    s.connected("woocommerce", secret=SECRET)
    return s


def send(shop: PlatformShop, name: str, secret: str | None = SECRET, body: Any = None, raw: bytes | None = None,
         **header_overrides: str) -> Reply:
    data = fixture("woocommerce", name)
    if raw is None:
        source = body if body is not None else data["body"]
        raw = source.encode() if isinstance(source, str) else json.dumps(source).encode()
    headers = dict(data["headers"])
    if secret is not None:
        headers["X-WC-Webhook-Signature"] = b64_hmac(secret, raw)
    headers.update(header_overrides)
    return shop.deliver(f"/v1/webhooks/{shop.partner['partner_id']}/woocommerce", raw, headers)


def referrer(shop: PlatformShop) -> str:
    anna = shop.member("anna")["member_id"]
    assert shop.api.put(f"/v1/programs/{shop.pid}/members/{anna}/code", {"code": "ANNA-7K2Q"}).status == 200
    return anna  # type: ignore[no-any-return]


def friend(shop: PlatformShop) -> str:
    reply = shop.api.get(f"/v1/programs/{shop.pid}/members/lookup?email=john.doe@example.com")
    assert reply.status == 200, reply.body
    return reply.body["member_id"]  # type: ignore[no-any-return]


def test_the_unsigned_creation_ping_is_acknowledged_and_nothing_else_unsigned_is(shop: PlatformShop) -> None:
    reply = send(shop, "ping.json", secret=None)
    assert reply.status == 200 and reply.body["status"] == "ignored"
    assert send(shop, "order_created_processing.json", secret=None).status == 401
    assert send(shop, "ping.json", secret=None, raw=b"webhook_id=12&x=1").status == 401


def test_signature_vectors(shop: PlatformShop) -> None:
    data = fixture("woocommerce", "order_created_processing.json")
    raw = json.dumps(data["body"]).encode()
    headers = {**data["headers"], "X-WC-Webhook-Signature": b64_hmac(SECRET, raw)}
    url = f"/v1/webhooks/{shop.partner['partner_id']}/woocommerce"
    assert shop.deliver(url, raw.replace(b"29.35", b"92.35"), headers).status == 401
    assert send(shop, "order_created_processing.json", secret="wrong-secret-wrong").status == 401
    assert send(shop, "order_created_processing.json", **{"X-WC-Webhook-Signature": "%%%"}).status == 401
    assert shop.api.get(f"/v1/programs/{shop.pid}/members/lookup?email=john.doe@example.com").status == 404
    # Rotated: the old secret verifies during the overlap.
    shop.connected("woocommerce", secret="wc-secret-new-0000000000")
    assert send(shop, "order_created_processing.json", secret=SECRET).status == 200
    assert send(shop, "order_updated_completed.json", secret="wc-secret-new-0000000000").status == 200


def test_a_paid_order_attributes_through_the_order_attribution_landing_page(shop: PlatformShop) -> None:
    anna = referrer(shop)
    reply = send(shop, "order_created_processing.json")
    assert reply.status == 200, reply.body
    (event,) = reply.body["events"]
    assert event["status"] == "processed" and event["attribution"]["referrer_id"] == anna
    # 29.35 USD → 2935 cents; 5 % = 146 cents = 1 point.
    assert shop.rewards(friend(shop)) == {"cashback": 1, "friend-bonus": 300}
    assert shop.rewards(anna) == {"referrer-bonus": 500}


def test_every_update_of_the_paid_order_is_one_fact_even_with_colliding_delivery_ids(shop: PlatformShop) -> None:
    anna = referrer(shop)
    assert send(shop, "order_created_processing.json").body["status"] == "processed"
    # WooCommerce's delivery id is a hash of webhook id + second: two deliveries may share it.
    again = [send(shop, "order_updated_completed.json"), send(shop, "order_created_processing.json"),
             send(shop, "order_updated_completed.json", **{"X-WC-Webhook-Delivery-ID": "other"})]
    assert [r.body["status"] for r in again] == ["duplicate"] * 3
    assert shop.rewards(anna) == {"referrer-bonus": 500}


def test_on_hold_is_not_paid_and_writes_nothing(shop: PlatformShop) -> None:
    reply = send(shop, "order_updated_on_hold.json")
    assert reply.status == 200 and reply.body["status"] == "ignored"
    assert shop.api.get(f"/v1/programs/{shop.pid}/members/lookup?email=john.doe@example.com").status == 404


def test_refunds_in_the_order_each_count_once(shop: PlatformShop) -> None:
    referrer(shop)
    send(shop, "order_created_processing.json")
    partial = send(shop, "order_updated_partial_refund.json")
    statuses = {e["label"]: e["status"] for e in partial.body["events"]}
    assert statuses == {"order.updated#727": "duplicate", "order.updated#727/refund#726": "processed"}
    full = send(shop, "order_updated_refunded.json")
    statuses = {e["label"]: e["status"] for e in full.body["events"]}
    assert statuses == {"order.updated#727": "duplicate", "order.updated#727/refund#726": "duplicate",
                        "order.updated#727/refund#729": "processed"}
    refund = next(e for e in full.body["events"] if e["label"].endswith("729"))
    assert refund["rewards"]["refunded_minor"] == 2935
    assert shop.rewards(friend(shop))["cashback"] == 0


def test_a_refunded_order_seen_first_is_paid_then_refunded(shop: PlatformShop) -> None:
    referrer(shop)
    reply = send(shop, "order_updated_refunded.json")
    types = [e["type"] for e in reply.body["events"]]
    assert types == ["order.paid", "order.refunded", "order.refunded"]
    assert shop.rewards(friend(shop))["friend-bonus"] == 0  # everything was taken back


def test_cancelled_and_customer_created(shop: PlatformShop) -> None:
    anna = referrer(shop)
    send(shop, "order_created_processing.json")
    cancelled = send(shop, "order_updated_cancelled.json")
    assert cancelled.body["events"][0]["type"] == "order.cancelled"
    assert shop.rewards(anna) == {"referrer-bonus": 0}
    signup = send(shop, "customer_created.json")
    assert signup.body["events"][0]["type"] == "member.signup"


def test_malformed_and_irrelevant(shop: PlatformShop) -> None:
    assert send(shop, "order_created_processing.json", raw=b"<xml/>").status == 400
    body = dict(fixture("woocommerce", "order_created_processing.json")["body"], total=29.35)
    assert send(shop, "order_created_processing.json", body=body).status == 400
    ignored = send(shop, "order_created_processing.json", **{"X-WC-Webhook-Topic": "product.updated"})
    assert ignored.status == 200 and ignored.body["status"] == "ignored"
