"""Fraud signals: normalisation, hashing, the context block of events and adapters (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from chalicelib.adapters.base import context_block
from chalicelib.domain import signals
from chalicelib.domain.errors import ValidationFailed
from chalicelib.domain.events import parse_event

#: The service's clock reading these events (parse_event bounds occurred_at and birthdays by it).
NOW = datetime(2026, 12, 1, tzinfo=UTC)

ORDER = {"type": "order.paid", "occurred_at": "2026-01-15T10:00:00Z", "object": {"type": "order", "id": "1"},
         "customer": {"id": "c1"}, "order": {"total": 100, "currency": "RUB"}}


def test_ip_forms_compare_equal() -> None:
    assert signals.normalize_ip(" 203.0.113.7 ") == "203.0.113.7"
    assert signals.normalize_ip("::ffff:203.0.113.7") == "203.0.113.7"
    assert signals.normalize_ip("2001:DB8:0:0::1") == "2001:db8::1"
    assert signals.normalize_ip("not-an-ip") is None


def test_addresses_compare_equal_whatever_the_spelling() -> None:
    as_text = signals.normalize_address("Россия, Москва, ул. Лёнина 1, кв. 5")
    assert as_text == signals.normalize_address("россия москва ул ленина 1 кв 5")
    as_object = signals.normalize_address({"city": "Moscow", "address1": "Lenina 1", "first_name": "Anna",
                                           "country": "RU"})
    assert as_object == signals.normalize_address({"country": "ru", "address1": "LENINA 1,", "city": "moscow",
                                                   "first_name": "Boris"})
    assert signals.normalize_address({"first_name": "Anna"}) is None


def test_signal_values_and_hashes() -> None:
    event = parse_event({**ORDER, "context": {"ip": "203.0.113.7", "user_agent": "UA  1", "device_id": "d1",
                                              "payment_fingerprint": "pm_1", "shipping_address": "Lenina 1"}}, now=NOW)
    kinds = [k for k, _ in signals.signal_values(event.context)]
    assert kinds == ["device", "payment", "shipping", "ip_ua", "ip"]
    a = signals.signal_hash(b"k", "prg_1", "device", "d1")
    assert a != signals.signal_hash(b"k", "prg_2", "device", "d1")  # scoped to the program
    assert a != signals.signal_hash(b"other", "prg_1", "device", "d1")  # keyed
    assert "d1" not in a and len(a) == 64


def test_context_is_optional_and_empty_context_is_none() -> None:
    assert parse_event(ORDER, now=NOW).context is None
    assert parse_event({**ORDER, "context": {"ip": None, "device_id": " "}}, now=NOW).context is None


@pytest.mark.parametrize("context, path", [
    ({"ip": "999.1.1.1"}, "$.context.ip"),
    ({"user_agent": "x" * 513}, "$.context.user_agent"),
    ({"device_id": "a\nb"}, "$.context.device_id"),
    ({"colour": "red"}, "$.context"),
    ({"shipping_address": {f"k{i}": "v" for i in range(21)}}, "$.context.shipping_address"),
])
def test_context_limits_at_the_edge(context: dict[str, object], path: str) -> None:
    with pytest.raises(ValidationFailed) as info:
        parse_event({**ORDER, "context": context}, now=NOW)
    assert info.value.details["errors"][0]["path"].startswith(path)


def test_adapter_context_block_is_tolerant() -> None:
    assert context_block(ip="garbage", user_agent="", shipping_address={"city": ""}) is None
    block = context_block(ip="203.0.113.7", user_agent="Mozilla/5.0", shipping_address={"city": "Moscow"})
    assert block == {"ip": "203.0.113.7", "user_agent": "Mozilla/5.0", "shipping_address": {"city": "Moscow"}}
    parse_event({**ORDER, "context": block}, now=NOW)


def test_platform_fields_map_to_context() -> None:
    from chalicelib.adapters import shopify, woocommerce
    from tests.platform_support import fixture

    order = fixture("shopify", "orders_paid.json")["body"]
    assert shopify._context(order) is None  # the sample sends null browser_ip and client_details
    order = {**order, "browser_ip": "216.191.105.146",
             "client_details": {"browser_ip": "216.191.105.146", "user_agent": "Mozilla/5.0 (X11)"},
             "shipping_address": {"first_name": "Steve", "address1": "123 Shipping Street", "city": "Shippington",
                                  "zip": "40003", "country_code": "US", "phone": "555-555-5555"}}
    context = shopify._context(order)
    assert context == {"ip": "216.191.105.146", "user_agent": "Mozilla/5.0 (X11)", "shipping_address": {
        "address1": "123 Shipping Street", "city": "Shippington", "zip": "40003", "country_code": "US"}}
    woo = fixture("woocommerce", "order_updated_completed.json")["body"]
    assert woocommerce._context(woo) == {"shipping_address": {
        "address_1": "969 Market", "city": "San Francisco", "state": "CA", "postcode": "94103", "country": "US"}}
    woo = {**woo, "customer_ip_address": "::1", "customer_user_agent": "WordPress/6.4"}
    assert woocommerce._context(woo)["ip"] == "::1"  # type: ignore[index]
    assert woocommerce._context(woo)["user_agent"] == "WordPress/6.4"  # type: ignore[index]
