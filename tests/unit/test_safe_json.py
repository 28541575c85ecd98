"""The edge reader (domain/safe_json.py) and URL normalisation (domain/urls.py), as pure functions."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chalicelib.domain import safe_json, urls
from chalicelib.domain.errors import BadRequest, DomainError, ValidationFailed


def refused(raw: bytes | str, **kw: Any) -> BadRequest:
    with pytest.raises(BadRequest) as caught:
        safe_json.loads(raw, **kw)
    return caught.value


@pytest.mark.parametrize(("raw", "code", "path"), [
    (b'{"a":' + b"[" * 1000 + b"]" * 1000 + b"}", "too_deep", "$.a" + "[0]" * 31),
    (b'{"a":{"b":' + b"[" * 40 + b"]" * 40 + b"}}", "too_deep", "$.a.b" + "[0]" * 30),
    (b'{"n":' + b"9" * 5000 + b"}", "number_out_of_range", "$.n"),
    (b'{"n":[1,2,-' + b"9" * 21 + b"]}", "number_out_of_range", "$.n[2]"),
    (b'{"n":9007199254740992}', "number_out_of_range", "$.n"),
    (b'{"n":1e400}', "number_out_of_range", "$.n"),
    (b'{"n":NaN}', "malformed_json", "$.n"),
    (b'{"n":-Infinity}', "malformed_json", "$.n"),
    (b'{"s":"\\ud800"}', "invalid_string", "$.s"),
    (b'{"s":["ok","x\\udfff"]}', "invalid_string", "$.s[1]"),
    (b'{"s":"a\\u0000b"}', "invalid_string", "$.s"),
    (b'{"k\\u0001":1}', "invalid_string", None),
    (b'{"total":100,"total":99999999}', "duplicate_key", "$.total"),
    (b'{"o":{"a":1,"b":2,"a":3}}', "duplicate_key", "$.o.a"),
    (b'{"x y":{"z":1,"z":1}}', "duplicate_key", '$["x y"].z'),
])
def test_each_limit_is_a_400_naming_the_path(raw: bytes, code: str, path: str | None) -> None:
    err = refused(raw)
    assert err.code == code, err.details
    if path is not None:
        assert err.details["path"] == path


@pytest.mark.parametrize("raw", [b"\xff", b'{"a":"\xed\xa0\x80"}', b'{"a":"\xc0\xaf"}', "\ufeff{}".encode()])
def test_invalid_utf8_is_malformed_json(raw: bytes) -> None:
    assert refused(raw).code == "malformed_json"


def test_what_is_accepted_comes_back_unchanged() -> None:
    doc = {"a": [1, -2, 2**53 - 1, 0.5, True, None, "привет", "tab\tnew\nline"], "b": {"c": {"d": []}}}
    assert safe_json.loads(json.dumps(doc).encode()) == doc
    deep: Any = 1
    for _ in range(31):
        deep = [deep]
    assert safe_json.loads(json.dumps({"x": deep})) == {"x": deep}  # exactly 32 levels
    assert safe_json.loads(b"[1]", require_object=False) == [1]
    assert refused(b"[1]").code == "malformed_json"
    assert safe_json.loads('{"s":"' + "[" * 40 + '"}') == {"s": "[" * 40}  # brackets inside strings
    assert safe_json.loads(b'{"n":1}', limits=safe_json.Limits(max_int=2**63)) == {"n": 1}


json_text = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=5), c, max_size=4), max_leaves=30)


@settings(max_examples=200, deadline=None)
@given(value=json_text, nest=st.integers(0, 60))
def test_any_json_is_either_read_or_a_bad_request(value: Any, nest: int) -> None:
    raw = "[" * nest + json.dumps(value) + "]" * nest
    try:
        result = safe_json.loads(raw, require_object=False)
    except BadRequest as err:
        assert err.code in {"too_deep", "number_out_of_range", "malformed_json", "invalid_string"}
    else:
        assert json.dumps(result)  # plain, encodable data
        assert nest <= safe_json.MAX_DEPTH  # a scalar at depth 32 is allowed: 32 levels are the limit


def test_forms() -> None:
    assert safe_json.read_form(b"a=1&b=%D0%B0&c=") == {"a": "1", "b": "а", "c": ""}
    assert safe_json.read_form(b"a=1&a=2", multi=True) == {"a": ["1", "2"]}
    assert safe_json.read_form(b"") == {}
    for raw, code in ((b"a=1&a=2", "duplicate_key"), (b"a=%FF", "malformed_form"), (b"a=\xd0\xb0", "malformed_form"),
                      (b"a%01=1", "malformed_form"), (b"a=%00", "invalid_string"), (b"&".join([b"a=1"] * 300),
                                                                                       "malformed_form")):
        with pytest.raises(BadRequest) as caught:
            safe_json.read_form(raw)
        assert caught.value.code == code, raw


NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("text", ["0001-01-01T00:00:00Z", "1999-12-31T23:59:59Z", "9999-12-31T23:59:59-05:00",
                                  "2026-11-23T12:06:00Z", "2026-11-23", "2026-11-23T12:00:00", "nope", "x" * 100])
def test_timestamps_outside_the_window_are_422(text: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        safe_json.timestamp(text, "$.at", now=NOW)
    assert caught.value.details["errors"][0]["path"] == "$.at"


def test_timestamps_inside_the_window() -> None:
    assert safe_json.timestamp("2026-11-23T12:04:00Z", "$.at", now=NOW) == NOW + timedelta(minutes=4)
    assert safe_json.timestamp("2000-01-01T03:00:00+03:00", "$.at", now=NOW) == datetime(2000, 1, 1, tzinfo=UTC)
    assert safe_json.timestamp("2026-11-23T12:00:00", "$.at", now=NOW, naive_is_utc=True) == NOW
    assert safe_json.timestamp("2030-01-01T00:00:00Z", "$.at", now=NOW, max_ahead=None).year == 2030


def test_single_line() -> None:
    assert safe_json.single_line("  Anna  ", "$.name") == "Anna"
    assert safe_json.single_line(None, "$.name") is None and safe_json.single_line(" ", "$.name") is None
    for bad in ("a\nb", "a\u2028b", "a\x85b", 5):
        with pytest.raises(ValidationFailed):
            safe_json.single_line(bad, "$.name")


@pytest.mark.parametrize(("url", "stored"), [
    ("https://магазин.рф/приглашение", "https://xn--80aairftm.xn--p1ai/%D0%BF%D1%80%D0%B8%D0%B3%D0%BB%D0%B0%D1%88%D0%B5%D0%BD%D0%B8%D0%B5"),
    ("HTTPS://Shop.Test:8443/a b?q=ä#x y".replace(" b", "%20b").replace("x y", "x%20y"),
     "https://shop.test:8443/a%20b?q=%C3%A4#x%20y"),
    ("https://shop.test/welcome?lang=ru", "https://shop.test/welcome?lang=ru"),
    ("https://shop.test", "https://shop.test"),
    ("http://[::1]:8000/x", "http://[::1]:8000/x"),
])
def test_urls_are_normalised(url: str, stored: str) -> None:
    assert urls.normalize(url) == stored
    assert urls.normalize(stored) == stored  # idempotent
    assert stored.isascii()


@pytest.mark.parametrize("url", ["javascript:alert(1)", "https://", "https://a b/", "https://shop.test/\x07",
                                 "https://user:pw@shop.test/", "https://shop.test:99999/", "ftp://shop.test/",
                                 "https://-bad-.test/", "https://" + "a" * 300 + ".test/"])
def test_bad_urls_are_refused(url: str) -> None:
    with pytest.raises(urls.InvalidUrl):
        urls.normalize(url)
    assert urls.to_header_url(url) is None
    with pytest.raises(DomainError):
        urls.normalize_field(url, "$.landing_url")
