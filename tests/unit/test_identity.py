from __future__ import annotations

import re

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from chalicelib.domain.errors import ValidationFailed
from chalicelib.domain.identity import (
    customer_id_value,
    email_match_key,
    identity_hash,
    mask_email,
    mask_phone,
    normalize_email,
    normalize_phone,
)

# --------------------------------------------------------------------------- normalize_email


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  Anna.Petrova@Example.RU ", "anna.petrova@example.ru"),
        ("o'brien+shop@mail.example.com", "o'brien+shop@mail.example.com"),
        ("user@пример.рф", "user@xn--e1afmkfd.xn--p1ai"),
        ("Иван@Почта.РФ", "иван@xn--80a1acny.xn--p1ai"),
        ("x@a-b.co", "x@a-b.co"),
        ("a_b-c!#$%&*=?^`{|}~@x.io", "a_b-c!#$%&*=?^`{|}~@x.io"),
    ],
)
def test_normalize_email_canonical(raw: str, expected: str) -> None:
    assert normalize_email(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        "plainaddress",
        "@example.com",
        "user@",
        "user@localhost",
        "user@@example.com",
        "a@b@example.com",
        "user@.example.com",
        "user@example..com",
        "user@-example.com",
        "user@example-.com",
        "user@exa_mple.com",
        ".user@example.com",
        "user.@example.com",
        "us..er@example.com",
        "us er@example.com",
        '"quoted"@example.com',
        "user@[127.0.0.1]",
        "user@1.2.3.4",
        "Anna <anna@example.com>",
        "user@exa\nmple.com",
        "a" * 65 + "@example.com",
        "a@" + ("b" * 63 + ".") * 4 + "com",
        "user@ex\x00ample.com",
    ],
)
def test_normalize_email_rejects(raw: str) -> None:
    with pytest.raises(ValidationFailed) as excinfo:
        normalize_email(raw, path="$.customer.email")
    assert excinfo.value.details["errors"][0]["path"] == "$.customer.email"


def test_normalize_email_rejects_trailing_newline_inside_but_trims_outer_whitespace() -> None:
    assert normalize_email("\tuser@example.com\n") == "user@example.com"


@pytest.mark.parametrize("raw", [None, 42, ["a@b.c"]])
def test_normalize_email_rejects_non_strings(raw: object) -> None:
    with pytest.raises(ValidationFailed):
        normalize_email(raw)


def test_normalize_email_default_path() -> None:
    with pytest.raises(ValidationFailed) as excinfo:
        normalize_email("nope")
    assert excinfo.value.details == {"errors": [{"path": "$.email", "message": "is not a valid e-mail address"}]}


@given(st.from_regex(r"^[A-Za-z0-9]{1,20}(\.[A-Za-z0-9]{1,10})?@[A-Za-z0-9]{1,20}\.(ru|com|org)$", fullmatch=True))
def test_normalize_email_idempotent(raw: str) -> None:
    once = normalize_email(raw)
    assert normalize_email(once) == once
    assert once == once.lower()


# --------------------------------------------------------------------------- email_match_key


@pytest.mark.parametrize(
    ("canonical", "key"),
    [
        ("ivan.petrov+shop@gmail.com", "ivanpetrov@gmail.com"),
        ("i.v.a.n.petrov@googlemail.com", "ivanpetrov@gmail.com"),
        ("ivan-petrov+x@yandex.ru", "ivan-petrov@yandex.ru"),
        ("ivan.petrov@ya.ru", "ivan-petrov@yandex.ru"),
        ("ivan.petrov@yandex.com", "ivan-petrov@yandex.ru"),
        ("ivan-petrov@narod.ru", "ivan-petrov@yandex.ru"),
        ("ivan.petrov@yandex.kz", "ivan-petrov@yandex.ru"),
        ("anna+promo@outlook.com", "anna@outlook.com"),
        ("an.na+promo@hotmail.com", "an.na@hotmail.com"),  # dots matter at Microsoft
        ("anna+1@live.com", "anna@live.com"),
        ("anna+a@me.com", "anna@icloud.com"),
        ("anna@mac.com", "anna@icloud.com"),
        ("anna+x@bk.ru", "anna@bk.ru"),  # bk.ru is not mail.ru
        ("anna+x@mail.ru", "anna@mail.ru"),
        ("anna+x@fastmail.com", "anna@fastmail.com"),
        ("anna+x@proton.me", "anna@proton.me"),
        ("anna+x@protonmail.com", "anna@protonmail.com"),
        # Unknown domains are left alone, including "+tag" (conservative).
        ("anna+x@fitlab.ru", "anna+x@fitlab.ru"),
        ("an.na@fitlab.ru", "an.na@fitlab.ru"),
        # Degenerate "+" at the start keeps its local part rather than emptying it.
        ("+tag@gmail.com", "+tag@gmail.com"),
    ],
)
def test_email_match_key(canonical: str, key: str) -> None:
    assert email_match_key(canonical) == key


def test_gmail_and_yandex_spellings_collapse() -> None:
    gmail = {"Ivan.Petrov+shop@googlemail.com", "ivanpetrov@gmail.com", "I.VANPETROV@GMAIL.COM"}
    assert len({email_match_key(normalize_email(e)) for e in gmail}) == 1
    yandex = {"ivan.petrov@ya.ru", "ivan-petrov+x@yandex.by", "Ivan-Petrov@yandex.ua"}
    assert len({email_match_key(normalize_email(e)) for e in yandex}) == 1


def test_distinct_mailboxes_do_not_collapse() -> None:
    different = {"anna@mail.ru", "anna@bk.ru", "anna@hotmail.com", "anna@outlook.com", "anna@gmail.com"}
    assert len({email_match_key(e) for e in different}) == len(different)


# --------------------------------------------------------------------------- phones


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("8 912 345-67-89", "RU", "+79123456789"),
        ("+7 (912) 345-67-89", "RU", "+79123456789"),
        ("9123456789", "RU", "+79123456789"),
        ("+79123456789", "US", "+79123456789"),
        ("+7 727 258 4444", "RU", "+77272584444"),  # Kazakhstan shares +7
        ("+44 20 7946 0958", "RU", "+442079460958"),
        ("(201) 555-0123", "US", "+12015550123"),
    ],
)
def test_normalize_phone(raw: str, region: str, expected: str) -> None:
    assert normalize_phone(raw, region) == expected


@pytest.mark.parametrize(
    "raw",
    ["", "   ", "hello", "123", "+7 000 000-00-00", "8 912 345-67", "+999 123456789", "1" * 80, "+7912345678901234"],
)
def test_normalize_phone_rejects(raw: str) -> None:
    with pytest.raises(ValidationFailed) as excinfo:
        normalize_phone(raw, path="$.customer.phone")
    assert excinfo.value.details["errors"][0]["path"] == "$.customer.phone"


def test_normalize_phone_rejects_non_string() -> None:
    with pytest.raises(ValidationFailed):
        normalize_phone(79123456789)


@given(st.from_regex(r"^(\+7|8)?9[0-9]{9}$", fullmatch=True), st.sampled_from(["RU", "KZ", "US", "DE"]))
def test_normalize_phone_idempotent(raw: str, region: str) -> None:
    try:
        once = normalize_phone(raw, region)
    except ValidationFailed:
        assume(False)
        return
    assert re.fullmatch(r"\+[1-9][0-9]{6,14}", once)
    assert normalize_phone(once, region) == once
    assert normalize_phone(once, "US") == once


# --------------------------------------------------------------------------- hashing


def test_identity_hash_is_hex_sha256_and_scoped() -> None:
    h = identity_hash("prog_1", "email", "anna@gmail.com")
    assert re.fullmatch(r"[0-9a-f]{64}", h)
    assert "anna" not in h
    assert h == identity_hash("prog_1", "email", "anna@gmail.com")
    assert h != identity_hash("prog_2", "email", "anna@gmail.com")
    assert h != identity_hash("prog_1", "phone", "anna@gmail.com")


def test_identity_hash_unambiguous_with_separators_in_parts() -> None:
    assert identity_hash("a|b", "email", "c") != identity_hash("a", "email", "b|c")


def test_identity_hash_keyed_mode() -> None:
    plain = identity_hash("p", "phone", "+79123456789")
    keyed = identity_hash("p", "phone", "+79123456789", key=b"pepper-1")
    assert keyed != plain
    assert keyed != identity_hash("p", "phone", "+79123456789", key=b"pepper-2")


def test_identity_hash_rejects_unknown_kind() -> None:
    with pytest.raises(ValueError):
        identity_hash("p", "passport", "x")


def test_customer_id_value_scopes_by_partner() -> None:
    a = identity_hash("p", "customer_id", customer_id_value("gym", "42"))
    b = identity_hash("p", "customer_id", customer_id_value("coffee", "42"))
    assert a != b


# --------------------------------------------------------------------------- masking


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        ("ivan.petrov@gmail.com", "iv***@gmail.com"),
        ("ann@yandex.ru", "a***@yandex.ru"),
        ("a@mail.ru", "a***@mail.ru"),
        ("ivan@ivanpetrov.ru", "i***@iv***.ru"),
        ("not-an-email", "no***"),
        ("", "***"),
    ],
)
def test_mask_email(value: str, masked: str) -> None:
    assert mask_email(value) == masked


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        ("+79123456789", "+7********89"),
        ("+442079460958", "+44********58"),
        ("+12015550123", "+1********23"),
        ("12", "***"),
        ("", "***"),
        ("garbage", "***"),
    ],
)
def test_mask_phone(value: str, masked: str) -> None:
    assert mask_phone(value) == masked


def test_masks_do_not_leak_the_middle() -> None:
    assert "234567" not in mask_phone("+79123456789")
    assert "petrov" not in mask_email("ivan.petrov@gmail.com")
