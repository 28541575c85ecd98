"""Pure helpers of the platform adapters: money strings, bounded form/JSON reading, fingerprints."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chalicelib.adapters import common
from chalicelib.adapters.body import form_body, json_body
from chalicelib.adapters.money import exponent, to_minor
from chalicelib.domain.errors import BadRequest
from chalicelib.domain.events import parse_event
from chalicelib.domain.fingerprint import fingerprint, fingerprint_conflict

#: The service's clock reading these events (parse_event bounds occurred_at and birthdays by it).
NOW = datetime(2026, 12, 1, tzinfo=UTC)


@pytest.mark.parametrize(("amount", "currency", "expected"), [
    ("1490.00", "RUB", 149000), ("1490", "JPY", 1490), ("12.345", "KWD", 12345), ("0.1", "USD", 10),
    ("-10.00", "USD", -1000), ("19.995", "EUR", 2000), (1490, "RUB", 149000), ("1490,50", "RUB", 149050),
    ("1.5", "JPY", 2), ("0.0005", "KWD", 1),
])
def test_money_strings_to_minor_units(amount: object, currency: str, expected: int) -> None:
    assert to_minor(amount, currency) == expected


@pytest.mark.parametrize("amount", [1490.0, True, None, "", "1e3", "12.34.5", "NaN", "١٢", "1" * 20, [], {}])
def test_not_money(amount: object) -> None:
    assert to_minor(amount, "RUB") is None


def test_exponents() -> None:
    assert (exponent("JPY"), exponent("KWD"), exponent("RUB"), exponent("usd")) == (0, 3, 2, 2)


@given(st.integers(min_value=0, max_value=10**12), st.sampled_from(["RUB", "JPY", "KWD"]))
def test_decimal_strings_round_trip_exactly(minor: int, currency: str) -> None:
    e = exponent(currency)
    text = str(minor) if e == 0 else f"{minor // 10**e}.{minor % 10**e:0{e}d}"
    assert to_minor(text, currency) == minor


def test_form_body_brackets_and_limits() -> None:
    body = form_body(b"leads%5Bstatus%5D%5B0%5D%5Bid%5D=1&leads%5Bstatus%5D%5B0%5D%5Bprice%5D=5000&a%5B%5D=x&a%5B%5D=y")
    assert body == {"leads": {"status": {"0": {"id": "1", "price": "5000"}}}, "a": {"0": "x", "1": "y"}}
    for bad in (b"a=1&a=2", b"a=1&a[b]=2", b"[x]=1", b"a" + b"[b]" * 10 + b"=1", b"\xff=1"):
        with pytest.raises(BadRequest):
            form_body(bad)


def test_form_body_goes_through_the_defensive_reader() -> None:
    """The same reader (``domain.safe_json``) as every other body: its codes, the adapters' limits."""
    cases = {
        b"name=a%00b": "invalid_string",                 # NUL in a value
        b"name=%ED%A0%80": "malformed_form",             # a UTF-8-encoded lone surrogate
        "name=Анна".encode(): "malformed_form",          # raw 8-bit bytes: not percent-encoded
        b"na%0Ame=1": "malformed_form",                  # a control character in a field name
        b"&".join(b"f%d=1" % i for i in range(2001)): "malformed_form",  # over the 2000 fields
    }
    for raw, code in cases.items():
        with pytest.raises(BadRequest) as refused:
            form_body(raw)
        assert refused.value.code == code, raw[:40]
    assert form_body(b"&".join(b"f%d=1" % i for i in range(2000)))["f1999"] == "1"
    assert form_body(b"name=%D0%90%D0%BD%D0%BD%D0%B0") == {"name": "Анна"}


def test_json_body_refuses_duplicates_depth_and_constants() -> None:
    assert json_body(b'{"a": [1, {"b": "c"}]}') == {"a": [1, {"b": "c"}]}
    for bad in (b'{"a": 1, "a": 2}', b"[" * 40 + b"]" * 40, b'{"a": NaN}', b"\xff", b"{"):
        with pytest.raises(BadRequest):
            json_body(bad)


def test_timestamps() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert common.timestamp("2021-12-31T19:00:00-05:00") == "2022-01-01T00:00:00Z"
    assert common.timestamp("2017-03-22T19:28:08") == "2017-03-22T19:28:08Z"  # WooCommerce *_gmt
    assert common.timestamp(1462216307945) == "2016-05-02T19:11:47Z"  # HubSpot milliseconds
    assert common.timestamp("1413554372") == "2014-10-17T13:59:32Z"  # amoCRM seconds
    assert common.timestamp("garbage", now) == "2026-01-01T00:00:00Z"
    with pytest.raises(BadRequest):
        common.timestamp(None)


def test_referral_from_a_landing_url() -> None:
    assert common.referral_from_url("/?ref=ANNA-7K2Q&utm_source=vk") == {"code": "ANNA-7K2Q", "utm": {"source": "vk"}}
    assert common.referral_from_url(None) == {}
    assert common.absolute_url("/?ref=A", "zerno.myshopify.com") == "https://zerno.myshopify.com/?ref=A"


def _paid(total: int, email: str = "a@example.com") -> object:
    return parse_event({"type": "order.paid", "occurred_at": "2026-01-01T00:00:00Z",
                        "object": {"type": "order", "id": "1"}, "customer": {"id": "c", "email": email},
                        "order": {"total": total, "currency": "RUB"}}, now=NOW)


def test_fingerprint_conflicts_name_fields_and_hide_personal_values() -> None:
    a = fingerprint(_paid(100), {"email": "h1"})  # type: ignore[arg-type]
    assert fingerprint_conflict(a, fingerprint(_paid(100), {"email": "h1"})) is None  # type: ignore[arg-type]
    conflict = fingerprint_conflict(a, fingerprint(_paid(200), {"email": "h2"}))  # type: ignore[arg-type]
    assert conflict is not None
    assert conflict["fields"] == [{"field": "customer.email"},
                                  {"field": "order.total", "stored": 100, "received": 200}]
    assert fingerprint_conflict(None, a) is None  # records from before fingerprints existed
