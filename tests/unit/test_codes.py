from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chalicelib.domain.codes import (
    ALPHABET,
    DEFAULT_LENGTH,
    format_code,
    generate_code,
    has_valid_check_symbol,
    normalize_code,
    normalize_coupon_code,
    validate_vanity_code,
)
from chalicelib.domain.errors import ValidationFailed


def test_alphabet_has_no_ambiguous_characters() -> None:
    assert len(set(ALPHABET)) == len(ALPHABET) == 30
    for ambiguous in "0O1ILU":
        assert ambiguous not in ALPHABET
    assert ALPHABET.upper() == ALPHABET


def test_default_entropy_is_enough() -> None:
    # At 10 million live codes a blind guess must succeed less than once in 10**7 tries.
    bits = DEFAULT_LENGTH * math.log2(len(ALPHABET))
    assert bits > 48
    assert 10**7 / len(ALPHABET) ** DEFAULT_LENGTH < 1e-7


def test_generate_code_shape() -> None:
    code = generate_code()
    assert len(code) == DEFAULT_LENGTH + 1
    assert set(code) <= set(ALPHABET)
    assert has_valid_check_symbol(code)
    assert generate_code() != generate_code()


def test_generate_code_deterministic_with_seeded_rng() -> None:
    assert generate_code(random.Random(7)) == generate_code(random.Random(7))
    assert len(generate_code(random.Random(7), length=6, check_symbol=False)) == 6


@pytest.mark.parametrize("length", [0, 3, 24, 100])
def test_generate_code_rejects_bad_length(length: int) -> None:
    with pytest.raises(ValueError):
        generate_code(length=length)


@given(st.integers(min_value=0, max_value=2**32))
def test_generate_then_normalize_round_trip(seed: int) -> None:
    code = generate_code(random.Random(seed))
    assert normalize_code(code) == code
    assert normalize_code(code.lower()) == code
    assert normalize_code(format_code(code)) == code
    assert normalize_code(" " + format_code(code, 3).lower() + " ") == code


@given(st.integers(min_value=0, max_value=2**32), st.data())
def test_check_symbol_catches_every_single_substitution(seed: int, data: st.DataObject) -> None:
    code = generate_code(random.Random(seed))
    position = data.draw(st.integers(min_value=0, max_value=len(code) - 1))
    replacement = data.draw(st.sampled_from([ch for ch in ALPHABET if ch != code[position]]))
    typo = code[:position] + replacement + code[position + 1 :]
    assert not has_valid_check_symbol(typo)


def test_check_symbol_catches_most_adjacent_swaps() -> None:
    rng = random.Random(1)
    caught = total = 0
    for _ in range(500):
        code = generate_code(rng)
        for i in range(len(code) - 1):
            if code[i] == code[i + 1]:
                continue
            swapped = code[:i] + code[i + 1] + code[i] + code[i + 2 :]
            total += 1
            caught += not has_valid_check_symbol(swapped)
    assert caught / total > 0.95


def test_has_valid_check_symbol_rejects_foreign_characters() -> None:
    assert not has_valid_check_symbol("ABC0")
    assert not has_valid_check_symbol("A")
    assert not has_valid_check_symbol("")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("abcd-efgh-jk", "ABCDEFGHJK"),
        ("  anna 2024 ", "ANNA2024"),
        ("anna_2024", "ANNA2024"),
        ("АННА2024", "AHHA2024"),  # Cyrillic look-alikes typed on a Russian layout
        ("сАТ7", "CAT7"),
        ("SUMMER-SALE", "SUMMERSALE"),
        ("B00K", "B00K"),  # vanity codes may use 0/O; only generated codes avoid them
    ],
)
def test_normalize_code(raw: str, expected: str) -> None:
    assert normalize_code(raw) == expected


@pytest.mark.parametrize(
    "raw", [None, 1234, "", "abc", "a" * 25, "ANNA!", "ANNA/2024", "ЖУК1", "anna.2024", "x" * 1000]
)
def test_normalize_code_invalid_is_none(raw: object) -> None:
    assert normalize_code(raw) is None


def test_format_code() -> None:
    assert format_code("ABCDEFGHJKM") == "ABCD-EFGH-JKM"
    assert format_code("ABCD") == "ABCD"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("anna", "ANNA"),
        ("Anna-2024", "ANNA2024"),
        ("FIT-LAB-10", "FITLAB10"),
        ("  coffee  ", "COFFEE"),
        ("a" * 24, "A" * 24),
    ],
)
def test_validate_vanity_code_ok(raw: str, expected: str) -> None:
    assert validate_vanity_code(raw) == expected
    assert normalize_code(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "abc",
        "a" * 25,
        "an na",
        "anna_2024",
        "-anna",
        "anna-",
        "an--na",
        "anna!",
        "анна",
        "A-B-C",
        "admin",
        "Admin-1",
        "API",
        "test",
        "sarafan",
        "my-sarafan-code",
        "null",
        "WWW",
        "help",
        "support",
        "SUPPORTME",
        "r-2024",
    ],
)
def test_validate_vanity_code_rejects(raw: str) -> None:
    with pytest.raises(ValidationFailed) as excinfo:
        validate_vanity_code(raw, path="$.vanity_code")
    assert excinfo.value.details["errors"][0]["path"] == "$.vanity_code"


def test_validate_vanity_code_rejects_non_string() -> None:
    with pytest.raises(ValidationFailed):
        validate_vanity_code(None)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(" summer-10 ", "SUMMER-10"), ("anna2024", "ANNA2024"), ("", None), ("a b", None), (None, None), ("x" * 65, None)],
)
def test_normalize_coupon_code(raw: object, expected: str | None) -> None:
    assert normalize_coupon_code(raw) == expected
