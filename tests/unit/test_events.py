from __future__ import annotations

import copy
from datetime import UTC, date, datetime
from typing import Any

import fastjsonschema
import pytest

from chalicelib.domain.errors import ValidationFailed
from chalicelib.domain.events import (
    EVENT_SCHEMAS,
    EVENT_TYPES,
    CanonicalEvent,
    business_key,
    parse_event,
    schema_key,
)
from chalicelib.domain.events import schemas as event_schemas

#: The service's clock reading these events (parse_event bounds occurred_at and birthdays by it).
NOW = datetime(2026, 12, 1, tzinfo=UTC)

# Realistic payloads, shaped like what our adapters produce from e.g. an InSales /
# Tilda order webhook and an amoCRM deal, and what a partner sends by hand.
ORDER_PAID: dict[str, Any] = {
    "type": "order.paid",
    "occurred_at": "2026-11-23T10:00:00Z",
    "object": {"type": "order", "id": "100234"},
    "customer": {
        "id": "cust_8841",
        "email": " Anna.Petrova+shop@GoogleMail.com ",
        "phone": "8 (912) 345-67-89",
        "name": "Анна Петрова",
        "locale": "ru",
        "birthday": "1991-04-17",
    },
    "order": {"total": 249000, "subtotal": 259000, "shipping": 30000, "discount": 40000, "currency": "RUB"},
    "referral": {
        "code": "abcd-efgh-jk",
        "coupon_codes": ["anna-500", "ANNA-500", " welcome10 "],
        "utm": {"source": "telegram", "medium": "referral", "campaign": "friends-nov", "content": None},
        "landing_url": "https://fitlab.example/?ref=ABCDEFGHJK&utm_source=telegram",
    },
    "data": {"platform": "insales", "items": [{"sku": "MAT-01", "qty": 1}]},
}

ORDER_REFUNDED: dict[str, Any] = {
    "type": "order.refunded",
    "occurred_at": "2026-11-25T08:30:12.250+03:00",
    "object": {"type": "refund", "id": "rf_5521"},
    "refund": {"amount": 50000, "currency": "RUB", "order_id": "100234", "reason": "item returned"},
    "customer": {"id": "cust_8841"},
}

ORDER_CANCELLED: dict[str, Any] = {
    "type": "order.cancelled",
    "occurred_at": "2026-11-23T12:00:00Z",
    "object": {"type": "order", "id": "100235"},
}

MEMBER_SIGNUP: dict[str, Any] = {
    "type": "member.signup",
    "occurred_at": "2026-11-20T09:15:00Z",
    "object": {"type": "customer", "id": "cust_8841"},
    "customer": {"id": "cust_8841", "email": "anna.petrova@gmail.com", "locale": "en"},
    "referral": {"code": "ABCDEFGHJK"},
}

LEAD_CREATED: dict[str, Any] = {
    "type": "lead.created",
    "occurred_at": "2026-11-21T14:00:00Z",
    "object": {"type": "lead", "id": "L-3007"},
    "customer": {"phone": "+7 912 345 67 89", "name": "Ivan"},
}

DEAL_WON: dict[str, Any] = {
    "type": "deal.won",
    "occurred_at": "2026-11-22T16:45:00Z",
    "object": {"type": "deal", "id": "amo-99812"},
    "customer": {"id": "contact-551", "email": "ceo@stroy-invest.ru"},
    "order": {"total": 15000000, "currency": "RUB"},
}

CUSTOM: dict[str, Any] = {
    "type": "custom.visit.checked_in",
    "occurred_at": "2026-11-22T07:00:00Z",
    "object": {"type": "visit", "id": "v-1"},
    "customer": {"id": "card-0042"},
    "data": {"club": "Moscow-Centre", "visits": 10},
}

ALL = [ORDER_PAID, ORDER_REFUNDED, ORDER_CANCELLED, MEMBER_SIGNUP, LEAD_CREATED, DEAL_WON, CUSTOM]


def errors_of(body: Any) -> list[dict[str, str]]:
    with pytest.raises(ValidationFailed) as excinfo:
        parse_event(body, now=NOW)
    errs: list[dict[str, str]] = excinfo.value.details["errors"]
    return errs


def paths_of(body: Any) -> list[str]:
    return [e["path"] for e in errors_of(body)]


def with_changes(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    body = copy.deepcopy(base)
    for dotted, value in changes.items():
        node = body
        parts = dotted.split("__")
        for part in parts[:-1]:
            node = node[part]
        if value is _DELETE:
            del node[parts[-1]]
        else:
            node[parts[-1]] = value
    return body


_DELETE = object()


# --------------------------------------------------------------------------- schemas


def test_schemas_exist_for_every_type_and_are_valid_draft07() -> None:
    assert set(EVENT_SCHEMAS) == {*EVENT_TYPES, "custom.*"}
    for schema in EVENT_SCHEMAS.values():
        assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
        assert schema["additionalProperties"] is False
        fastjsonschema.compile(schema)


@pytest.mark.parametrize("body", ALL, ids=lambda b: b["type"])
def test_realistic_payloads_validate_against_raw_schema(body: dict[str, Any]) -> None:
    key = schema_key(body["type"])
    assert key is not None
    fastjsonschema.compile(EVENT_SCHEMAS[key])(body)


def test_validators_are_compiled_lazily_and_cached() -> None:
    event_schemas._validator.cache_clear()
    assert event_schemas._validator.cache_info().currsize == 0
    parse_event(ORDER_PAID, now=NOW)
    parse_event(ORDER_PAID, now=NOW)
    info = event_schemas._validator.cache_info()
    assert info.currsize == 1 and info.hits == 1


# --------------------------------------------------------------------------- happy paths


def test_parse_order_paid_normalises() -> None:
    event = parse_event(ORDER_PAID, now=NOW)
    assert isinstance(event, CanonicalEvent)
    assert event.type == "order.paid"
    assert event.occurred_at == datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
    assert (event.object_type, event.object_id) == ("order", "100234")
    assert event.customer is not None
    assert event.customer.email == "anna.petrova+shop@googlemail.com"
    assert event.customer.phone == "+79123456789"
    assert event.customer.birthday == date(1991, 4, 17)
    assert event.customer.name == "Анна Петрова"
    assert event.order is not None
    assert (event.order.total, event.order.currency, event.order.discount) == (249000, "RUB", 40000)
    assert event.referral is not None
    assert event.referral.code == "ABCDEFGHJK"
    assert event.referral.code_raw == "abcd-efgh-jk"
    assert event.referral.coupon_codes == ("ANNA-500", "WELCOME10")
    assert event.referral.utm is not None and event.referral.utm.source == "telegram"
    assert event.referral.utm.content is None
    assert event.data["items"][0]["sku"] == "MAT-01"
    assert not event.is_custom and event.custom_name is None


def test_event_is_frozen_and_detached_from_input() -> None:
    body = copy.deepcopy(ORDER_PAID)
    event = parse_event(body, now=NOW)
    body["data"]["platform"] = "changed"
    assert event.data["platform"] == "insales"
    with pytest.raises(AttributeError):
        event.type = "order.refunded"  # type: ignore[misc]
    with pytest.raises(TypeError):
        event.data["platform"] = "x"  # type: ignore[index]


def test_parse_refund_with_offset_timestamp_is_stored_in_utc() -> None:
    event = parse_event(ORDER_REFUNDED, now=NOW)
    assert event.occurred_at == datetime(2026, 11, 25, 5, 30, 12, 250000, tzinfo=UTC)
    assert event.refund is not None
    assert (event.refund.amount, event.refund.order_id) == (50000, "100234")
    assert event.object_type == "refund"


@pytest.mark.parametrize("body", ALL, ids=lambda b: b["type"])
def test_every_example_parses_without_changing_the_body(body: dict[str, Any]) -> None:
    before = copy.deepcopy(body)
    event = parse_event(body, now=NOW)
    assert (event.type, event.object_type, event.object_id) == (body["type"], body["object"]["type"],
                                                                 body["object"]["id"])
    assert parse_event(body, now=NOW) == event and body == before


def test_custom_event() -> None:
    event = parse_event(CUSTOM, now=NOW)
    assert event.is_custom and event.custom_name == "visit.checked_in"
    assert event.data == {"club": "Moscow-Centre", "visits": 10}


def test_integral_float_amount_becomes_int() -> None:
    event = parse_event(with_changes(ORDER_PAID, order__total=249000.0), now=NOW)
    assert event.order is not None and type(event.order.total) is int


def test_nulls_in_optional_customer_fields_are_absent() -> None:
    event = parse_event(with_changes(ORDER_PAID, customer__phone=None, customer__birthday=None, customer__locale=None), now=NOW)
    assert event.customer is not None
    assert event.customer.phone is None and event.customer.birthday is None


def test_unusable_referral_code_does_not_reject_the_order() -> None:
    event = parse_event(with_changes(ORDER_PAID, referral__code="промо!"), now=NOW)
    assert event.referral is not None
    assert event.referral.code is None and event.referral.code_raw == "промо!"


def test_default_region_for_phones() -> None:
    body = with_changes(LEAD_CREATED, customer__phone="(201) 555-0123")
    with pytest.raises(ValidationFailed):
        parse_event(body, now=NOW)
    event = parse_event(body, default_region="US", now=NOW)
    assert event.customer is not None and event.customer.phone == "+12015550123"


# --------------------------------------------------------------------------- rejections


@pytest.mark.parametrize("body", [None, [], "order.paid", 42])
def test_non_object_body(body: Any) -> None:
    assert paths_of(body) == ["$"]


@pytest.mark.parametrize(
    "event_type", ["order.shipped", "ORDER.PAID", "custom.", "custom.Bad Name", "custom." + "x" * 65]
)
def test_unknown_type(event_type: str) -> None:
    assert paths_of(with_changes(ORDER_PAID, type=event_type)) == ["$.type"]


def test_missing_type() -> None:
    assert paths_of(with_changes(ORDER_PAID, type=_DELETE)) == ["$.type"]
    assert paths_of(with_changes(ORDER_PAID, type=5)) == ["$.type"]


@pytest.mark.parametrize(
    ("change", "path"),
    [
        ({"order__total": _DELETE}, "$.order.total"),
        ({"order__currency": _DELETE}, "$.order.currency"),
        ({"order": _DELETE}, "$.order"),
        ({"customer": _DELETE}, "$.customer"),
        ({"object": _DELETE}, "$.object"),
        ({"object__id": _DELETE}, "$.object.id"),
        ({"occurred_at": _DELETE}, "$.occurred_at"),
    ],
)
def test_missing_required_property_points_at_property(change: dict[str, Any], path: str) -> None:
    assert paths_of(with_changes(ORDER_PAID, **change)) == [path]


def test_several_missing_properties_each_reported() -> None:
    body = with_changes(ORDER_PAID, order={})
    assert paths_of(body) == ["$.order.total", "$.order.currency"]


@pytest.mark.parametrize(
    ("change", "path"),
    [
        ({"order__total": -1}, "$.order.total"),
        ({"order__total": 10.5}, "$.order.total"),
        ({"order__total": "2490"}, "$.order.total"),
        ({"order__total": True}, "$.order.total"),
        ({"order__total": 10**15}, "$.order.total"),
        ({"order__discount": -100}, "$.order.discount"),
        ({"order__currency": "rub"}, "$.order.currency"),
        ({"order__currency": "RUBL"}, "$.order.currency"),
        ({"occurred_at": "2026-11-23 10:00:00"}, "$.occurred_at"),
        ({"occurred_at": "2026-11-23T10:00:00"}, "$.occurred_at"),
        ({"occurred_at": "2026-13-45T10:00:00Z"}, "$.occurred_at"),
        ({"occurred_at": 1764000000}, "$.occurred_at"),
        ({"object__type": "deal"}, "$.object.type"),
        ({"object__id": ""}, "$.object.id"),
        ({"customer__locale": "de"}, "$.customer.locale"),
        ({"customer__birthday": "17.04.1991"}, "$.customer.birthday"),
        ({"customer__birthday": "1991-02-30"}, "$.customer.birthday"),
        ({"customer__email": "anna@"}, "$.customer.email"),
        ({"customer__phone": "12345"}, "$.customer.phone"),
        ({"referral__coupon_codes": ["ok", 5]}, "$.referral.coupon_codes[1]"),
        ({"referral__landing_url": "javascript:alert(1)"}, "$.referral.landing_url"),
        ({"data": "not an object"}, "$.data"),
    ],
)
def test_invalid_values_point_at_field(change: dict[str, Any], path: str) -> None:
    assert paths_of(with_changes(ORDER_PAID, **change)) == [path]


def test_timestamp_error_message_is_helpful() -> None:
    [error] = errors_of(with_changes(ORDER_PAID, occurred_at="yesterday"))
    assert "RFC 3339" in error["message"]


def test_unknown_properties_rejected_with_their_path() -> None:
    assert paths_of(with_changes(ORDER_PAID, total=1)) == ["$.total"]
    assert paths_of(with_changes(ORDER_PAID, order__vat=1)) == ["$.order.vat"]
    assert paths_of(with_changes(ORDER_PAID, referral__utm__utm_id="x")) == ["$.referral.utm.utm_id"]


def test_block_not_allowed_for_type_rejected() -> None:
    assert paths_of(with_changes(ORDER_PAID, refund=ORDER_REFUNDED["refund"])) == ["$.refund"]
    assert paths_of(with_changes(MEMBER_SIGNUP, order={"total": 1, "currency": "RUB"})) == ["$.order"]


def test_odd_property_names_are_quoted_in_path() -> None:
    body = with_changes(ORDER_PAID)
    body["customer"]["first-name"] = "Anna"
    assert paths_of(body) == ["$.customer['first-name']"]


def test_customer_needs_an_identifier() -> None:
    body = with_changes(LEAD_CREATED, customer={"name": "Ivan"})
    assert paths_of(body) == ["$.customer"]
    body = with_changes(ORDER_PAID, customer={"email": None, "phone": "  "})
    assert paths_of(body) == ["$.customer"]


def test_refund_rules() -> None:
    assert paths_of(with_changes(ORDER_REFUNDED, refund__amount=0)) == ["$.refund.amount"]
    assert paths_of(with_changes(ORDER_REFUNDED, refund__order_id=_DELETE)) == ["$.refund.order_id"]
    assert paths_of(with_changes(ORDER_REFUNDED, object__type="order")) == ["$.object.type"]
    assert paths_of(with_changes(ORDER_REFUNDED, refund=_DELETE)) == ["$.refund"]


def test_error_message_summarises_paths() -> None:
    with pytest.raises(ValidationFailed) as excinfo:
        parse_event(with_changes(ORDER_PAID, order__total=-1), now=NOW)
    assert "$.order.total" in excinfo.value.message
    assert excinfo.value.status == 422


# --------------------------------------------------------------------------- business key


def test_business_key_shape() -> None:
    event = parse_event(ORDER_PAID, now=NOW)
    assert business_key("prog_1", "fitlab", event) == "prog_1|fitlab|order|100234|order.paid"


def test_business_key_same_fact_same_key_regardless_of_delivery_details() -> None:
    a = parse_event(ORDER_PAID, now=NOW)
    b = parse_event(with_changes(ORDER_PAID, occurred_at="2026-11-23T10:00:05Z", data={"retry": 2}), now=NOW)
    assert business_key("p", "s", a) == business_key("p", "s", b)


def test_business_key_distinguishes_facts() -> None:
    paid = parse_event(ORDER_PAID, now=NOW)
    cancelled = parse_event(with_changes(ORDER_CANCELLED, object__id="100234"), now=NOW)
    refund_1 = parse_event(ORDER_REFUNDED, now=NOW)
    refund_2 = parse_event(with_changes(ORDER_REFUNDED, object__id="rf_5522"), now=NOW)
    keys = {business_key("p", "s", e) for e in (paid, cancelled, refund_1, refund_2)}
    assert len(keys) == 4
    assert business_key("p", "s", paid) != business_key("p", "other", paid)


def test_business_key_cannot_be_forged_with_separator() -> None:
    a = parse_event(with_changes(CUSTOM, object__id="1|custom.x"), now=NOW)
    b = parse_event(with_changes(CUSTOM, object__id="1"), now=NOW)
    assert "|" not in business_key("p", "s", a).split("|")[3]
    assert business_key("p|s", "x", b) != business_key("p", "s|x", b)
