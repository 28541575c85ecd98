"""Referral codes: generated, vanity, and the normalisation both share.

Alphabet
--------
``23456789ABCDEFGHJKMNPQRSTVWXYZ`` (30 symbols): Crockford's choice minus 0 and 1,
i.e. no 0/O, 1/I/L, and no U (avoids the most common accidental obscenities). A code
can be read aloud, copied from a screenshot or typed on a phone without guessing.

Length and entropy
------------------
A generated code is ``DEFAULT_LENGTH`` = 10 random symbols plus one check symbol
(11 characters, shown as ``XXXX-XXXX-XXX``). 30**10 ~= 5.9e14 ~= 2**49.1.
With 10 million live codes a blind guess hits *some* code with probability
1e7 / 5.9e14 ~= 1.7e-8: about 59 million guesses per hit, i.e. months of traffic
even ignoring the per-IP rate limit the redirect endpoint applies. (8 symbols would
give 6.6e11, one hit per ~66 000 guesses at 10 million members: too cheap.)

Check symbol
------------
Luhn mod N (N = 30) over the alphabet: catches every single-symbol typo and most
swaps of adjacent symbols, so the API can answer "looks mistyped" without a database
read. It is *not* a security measure (the algorithm is public).

Case and separators
-------------------
Codes are case-insensitive. ``normalize_code`` upper-cases, drops spaces, dashes and
underscores, and maps Cyrillic letters that look like Latin ones (``С`` -> ``C``):
people on a Russian keyboard layout type them without noticing. Vanity codes go
through the same normalisation, so ``anna-2024`` and ``ANNA2024`` are one code and
cannot be registered by two members.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from typing import Final, Protocol

from chalicelib.domain.errors import ValidationFailed, field_error

ALPHABET: Final = "23456789ABCDEFGHJKMNPQRSTVWXYZ"
DEFAULT_LENGTH: Final = 10
MIN_CODE_LENGTH: Final = 4
MAX_CODE_LENGTH: Final = 24
VANITY_MIN_LENGTH: Final = 4
VANITY_MAX_LENGTH: Final = 24
MAX_COUPON_LENGTH: Final = 64

_INDEX: Final = {ch: i for i, ch in enumerate(ALPHABET)}
_N: Final = len(ALPHABET)

# Cyrillic capitals (after upper-casing) that are visually identical to Latin ones.
_HOMOGLYPHS: Final = str.maketrans(
    {
        "А": "A",
        "В": "B",
        "Е": "E",
        "К": "K",
        "М": "M",
        "Н": "H",
        "О": "O",
        "Р": "P",
        "С": "C",
        "Т": "T",
        "У": "Y",
        "Х": "X",
    }
)
_SEPARATORS_RE: Final = re.compile(r"[\s\-_]+")
_NORMALISED_RE: Final = re.compile(r"^[A-Z0-9]+$")
_VANITY_RAW_RE: Final = re.compile(r"^[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*$")

# Words a vanity code may not be: routes, staff-looking names, test/placeholder values.
RESERVED_WORDS: Final = frozenset(
    {
        "ADMIN",
        "ADMINISTRATOR",
        "API",
        "APP",
        "DEMO",
        "HELP",
        "INFO",
        "LOGIN",
        "NONE",
        "NULL",
        "NIL",
        "OWNER",
        "R",
        "REFERRAL",
        "ROOT",
        "SARAFAN",
        "STAFF",
        "SUPPORT",
        "SYSTEM",
        "TEST",
        "UNDEFINED",
        "WWW",
    }
)
# Brand impersonation: no code may merely *contain* these.
RESERVED_SUBSTRINGS: Final = ("SARAFAN", "ADMIN", "SUPPORT")


class Chooser(Protocol):
    """Anything with ``choice``: the ``secrets`` module (default) or ``random.Random(seed)``."""

    def choice(self, seq: Sequence[str], /) -> str: ...


def _luhn_check_symbol(payload: str) -> str:
    total = 0
    factor = 2  # the rightmost payload symbol is doubled, as in Luhn
    for ch in reversed(payload):
        addend = factor * _INDEX[ch]
        total += addend // _N + addend % _N
        factor = 1 if factor == 2 else 2
    return ALPHABET[(_N - total % _N) % _N]


def has_valid_check_symbol(code: str) -> bool:
    """True if ``code`` (normalised) is alphabet-only and its last symbol checks out."""
    if len(code) < 2 or any(ch not in _INDEX for ch in code):
        return False
    return _luhn_check_symbol(code[:-1]) == code[-1]


def generate_code(rng: Chooser = secrets, length: int = DEFAULT_LENGTH, *, check_symbol: bool = True) -> str:
    """A new random code: ``length`` symbols (+1 check symbol by default), normalised form.

    Uniqueness is the store's job (conditional put, retry on collision); at 2**49
    collisions are rare enough that one retry is plenty.
    """
    if length < MIN_CODE_LENGTH or length + int(check_symbol) > MAX_CODE_LENGTH:
        raise ValueError(f"code length must be {MIN_CODE_LENGTH}..{MAX_CODE_LENGTH - int(check_symbol)}")
    payload = "".join(rng.choice(ALPHABET) for _ in range(length))
    return payload + _luhn_check_symbol(payload) if check_symbol else payload


def normalize_code(raw: object) -> str | None:
    """Lookup form of any referral code (generated or vanity), or ``None`` if it cannot be one.

    Upper-cases, removes spaces/dashes/underscores, maps Cyrillic look-alikes to
    Latin. ``None`` for non-strings, other characters, or a length outside 4..24;
    callers treat ``None`` as "unknown code" rather than an error, because a bad code
    must never make an otherwise valid order fail.
    """
    if not isinstance(raw, str) or len(raw) > MAX_CODE_LENGTH * 3:
        return None
    value = _SEPARATORS_RE.sub("", raw).upper().translate(_HOMOGLYPHS)
    if not (MIN_CODE_LENGTH <= len(value) <= MAX_CODE_LENGTH) or not _NORMALISED_RE.match(value):
        return None
    return value


def format_code(code: str, group: int = 4) -> str:
    """Display form: ``ABCDEFGHJKM`` -> ``ABCD-EFGH-JKM`` (dashes are ignored on input)."""
    return "-".join(code[i : i + group] for i in range(0, len(code), group))


def _vanity_error(message: str, path: str) -> ValidationFailed:
    return ValidationFailed(message, details={"errors": [field_error(path, message)]})


def validate_vanity_code(raw: object, *, path: str = "$.code") -> str:
    """Validate a member-chosen code and return its normalised (lookup) form.

    Accepts 4..24 characters of A-Z, 0-9 and single inner dashes (``ANNA-2024``);
    returns the form ``normalize_code`` produces (``ANNA2024``), which is what must be
    stored and checked for uniqueness. Reserved words are refused.
    """
    if not isinstance(raw, str):
        raise _vanity_error("must be a string", path)
    value = raw.strip()
    if not (VANITY_MIN_LENGTH <= len(value) <= VANITY_MAX_LENGTH):
        raise _vanity_error(f"must be {VANITY_MIN_LENGTH} to {VANITY_MAX_LENGTH} characters long", path)
    if not _VANITY_RAW_RE.match(value):
        raise _vanity_error("may contain only Latin letters, digits and single dashes between them", path)
    normalised = normalize_code(value)
    if normalised is None or len(normalised) < VANITY_MIN_LENGTH:
        raise _vanity_error(f"must contain at least {VANITY_MIN_LENGTH} letters or digits", path)
    parts = value.upper().split("-")
    if (
        normalised in RESERVED_WORDS
        or any(part in RESERVED_WORDS for part in parts)
        or any(word in normalised for word in RESERVED_SUBSTRINGS)
    ):
        raise _vanity_error("is reserved; choose another code", path)
    return normalised


def normalize_coupon_code(raw: object) -> str | None:
    """Lookup form of a shop coupon code: trimmed, upper-cased; ``None`` if unusable.

    Coupon codes belong to the shop platform (dashes may be significant there), so
    only case and surrounding whitespace are normalised; most platforms compare
    coupons case-insensitively.
    """
    if not isinstance(raw, str):
        return None
    value = raw.strip().upper()
    if not value or len(value) > MAX_COUPON_LENGTH or any(ch.isspace() or ord(ch) < 32 for ch in value):
        return None
    return value
