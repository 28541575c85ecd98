"""Fraud signals through the real pipeline: stored only as salted hashes, one pointer per signal."""

from __future__ import annotations

import json
from typing import Any

import pytest

from chalicelib.store.db import Entity, raw_client
from tests.functional.test_ledger_support import Shop
from tests.platform_support import RULES
from tests.support import ApiClient

CONTEXT = {"ip": "203.0.113.7", "user_agent": "Mozilla/5.0 (Farm)", "device_id": "dev-AAA-111",
           "payment_fingerprint": "pm_card_4242_fp", "shipping_address": {"city": "Moscow", "address1": "Lenina 1"}}


def table_dump() -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for page in raw_client().get_paginator("scan").paginate(TableName=Entity.Meta.table_name):  # test-only
        items += page["Items"]
    return items


def signal_items(pid: str) -> list[dict[str, Any]]:
    return [i for i in table_dump() if i.get("entity", {}).get("S") == "signal" and i["program_id"]["S"] == pid]


def test_order_with_context_stores_hashed_signal_pointers_and_no_raw_value(api: ApiClient) -> None:
    shop = Shop(api, RULES)
    event = {**shop.order_event("anna", "o-1", 100_000), "context": CONTEXT}
    reply = shop.send(event)
    assert reply["status"] == "processed"
    pointers = signal_items(shop.pid)
    assert sorted(p["kind"]["S"] for p in pointers) == ["device", "ip", "ip_ua", "payment", "shipping"]
    member = reply["member"]["member_id"]
    assert all(json.loads(p["members"]["S"])[0][0] == member for p in pointers)
    dump = json.dumps(table_dump(), default=repr)
    for raw in ("203.0.113.7", "Farm", "dev-AAA-111", "pm_card_4242", "Lenina", "lenina"):
        assert raw not in dump
    # A second member on the same device joins the pointer; a repeat within the hour writes nothing new.
    shop.send({**shop.order_event("boris", "o-2", 100_000), "context": {"device_id": "dev-AAA-111"}})
    shop.send({**shop.order_event("boris", "o-3", 100_000), "context": {"device_id": "dev-AAA-111"}})
    device = next(p for p in signal_items(shop.pid) if p["kind"]["S"] == "device")
    assert len(json.loads(device["members"]["S"])) == 2 and device["revision"]["N"] == "2"


def test_invalid_context_is_a_422_and_nothing_is_written(api: ApiClient) -> None:
    shop = Shop(api, RULES)
    reply = shop.send_raw({**shop.order_event("anna", "o-1", 100_000), "context": {"ip": "300.1.2.3"}})
    assert reply.status == 422 and reply.body["error"]["details"]["errors"][0]["path"] == "$.context.ip"
    assert not signal_items(shop.pid)


def test_shopify_order_signals_reach_the_pointers(api: ApiClient) -> None:
    from tests.functional.test_platform_shopify import SECRET, SHOP, send
    from tests.platform_support import PlatformShop, fixture

    shop = PlatformShop(api, currency="USD")
    shop.connected("shopify", secret=SECRET, shop_domain=SHOP)
    body = {**fixture("shopify", "orders_paid.json")["body"], "browser_ip": "216.191.105.146",
            "client_details": {"user_agent": "Mozilla/5.0 (X11)"},
            "shipping_address": {"address1": "123 Shipping Street", "city": "Shippington", "country_code": "US"}}
    reply = send(shop, "orders_paid.json", body=body)
    assert reply.status == 200, reply.body
    assert sorted(p["kind"]["S"] for p in signal_items(shop.pid)) == ["ip", "ip_ua", "shipping"]


WOO_UA = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 "
          "Safari/537.36")


@pytest.mark.parametrize(("referrer_context", "outcome", "reason"), [
    # Anna signed up from the IP and browser WooCommerce recorded for John's checkout: held for review.
    ({"ip": "198.51.100.23", "user_agent": WOO_UA}, "credited", "same_network_as_referrer"),
    # Anna ships to John's address (spelt as another platform sends it): John is Anna, rejected.
    ({"shipping_address": {"address1": "969 MARKET", "city": "san francisco", "province_code": "CA", "zip": "94103",
                           "country_code": "US"}}, "rejected", "self_referral_shipping"),
])
def test_woocommerce_order_signals_reach_the_fraud_checks(api: ApiClient, referrer_context: dict[str, Any],
                                                          outcome: str, reason: str) -> None:
    """``customer_ip_address`` and ``customer_user_agent`` of a WooCommerce order (the docs' order 727 with
    the two fields filled) and its ``shipping`` address become the event's signals and decide attribution."""
    from tests.functional.test_platform_woocommerce import SECRET, send
    from tests.platform_support import PlatformShop

    shop = PlatformShop(api, currency="USD")
    shop.connected("woocommerce", secret=SECRET)
    signup = {"type": "member.signup", "occurred_at": "2026-01-10T10:00:00Z", "object": {"type": "customer", "id": "anna"},
              "customer": {"id": "anna", "email": "anna@example.com"}, "context": referrer_context}
    anna = shop.send(signup)["member"]["member_id"]
    assert api.put(f"/v1/programs/{shop.pid}/members/{anna}/code", {"code": "ANNA-7K2Q"}).status == 200
    reply = send(shop, "order_created_processing_signals.json")  # its landing page carries ?ref=ANNA-7K2Q
    assert reply.status == 200, reply.body
    (event,) = reply.body["events"]
    assert event["status"] == "processed", event
    assert sorted(p["kind"]["S"] for p in signal_items(shop.pid) if json.loads(p["members"]["S"])[-1][0] != anna) == [
        "ip", "ip_ua", "shipping"]
    bal = shop.balance(anna)
    if outcome == "rejected":
        assert (event["attribution"]["outcome"], event["attribution"]["reason_code"]) == (outcome, reason)
        assert (bal["available"], bal["held"]) == (0, 0)
    else:
        assert event["attribution"]["referrer_id"] == anna
        assert event["risk"] == {"held": True, "reasons": [reason],
                                 "matched": ["same IP address and browser as the referrer"]}, event
        assert (bal["available"], bal["held"]) == (0, 500)  # the referrer bonus waits for review
    dump = json.dumps(table_dump(), default=repr)
    assert "198.51.100.23" not in dump and "Chrome/120" not in dump and "969 Market" not in dump
