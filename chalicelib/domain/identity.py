"""Identifiers of a person: e-mail, phone, partner customer id.

Three layers, each with its own job:

* ``normalize_email`` / ``normalize_phone``: the canonical value we store and send
  (what the person typed, cleaned up). Invalid input raises ``ValidationFailed``.
* ``email_match_key``: a *matching* key that maps different spellings of the same
  mailbox together (``Ivan.Petrov+shop@googlemail.com`` == ``ivanpetrov@gmail.com``);
  used for self-referral checks and invite matching, never for sending mail.
* ``identity_hash``: what goes into DynamoDB keys and logs, so raw e-mails and
  phones never appear there.

Everything is pure and offline (no DNS/MX lookups: they are slow, flaky in Lambda and
say nothing about who owns the mailbox).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from typing import Final

from chalicelib.domain.errors import ValidationFailed, field_error

MAX_EMAIL_LENGTH: Final = 254  # RFC 5321 forward-path limit minus the angle brackets
MAX_LOCAL_LENGTH: Final = 64
MAX_PHONE_INPUT_LENGTH: Final = 64

# RFC 5322 "atext" plus dots (dot-atom). Quoted local parts ("a b"@x) and IP literals
# are legal but never typed by real customers and make matching ambiguous: refused.
_LOCAL_ASCII_RE = re.compile(r"^[a-z0-9!#$%&'*+/=?^_`{|}~.-]+$")
_LABEL_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")

IDENTITY_KINDS: Final = frozenset({"email", "phone", "customer_id"})
_HASH_VERSION: Final = "sarafan-identity-v1"


def _invalid(path: str, message: str) -> ValidationFailed:
    return ValidationFailed(message, details={"errors": [field_error(path, message)]})


# --------------------------------------------------------------------------- e-mail


def _local_part_ok(local: str) -> bool:
    if not local or len(local) > MAX_LOCAL_LENGTH:
        return False
    if local.startswith(".") or local.endswith(".") or ".." in local:
        return False
    if local.isascii():
        return bool(_LOCAL_ASCII_RE.match(local))
    # Internationalised local parts (RFC 6531, e.g. Cyrillic addresses on mail.ru) are
    # real; allow letters/digits of any script plus the ASCII atext specials.
    return all(
        (ch.isascii() and _LOCAL_ASCII_RE.match(ch)) or (not ch.isascii() and (ch.isalnum() or ch in "_-"))
        for ch in local
    )


def _domain_to_ascii(domain: str) -> str | None:
    try:
        # Python's "idna" codec is IDNA 2003 (nameprep); fine for real-world domains
        # and stdlib-only, which matters for the Lambda zip.
        ascii_domain = domain.encode("idna").decode("ascii")
    except UnicodeError:
        return None
    ascii_domain = ascii_domain.lower()
    labels = ascii_domain.split(".")
    if len(labels) < 2 or len(ascii_domain) > 253:
        return None
    if not all(_LABEL_RE.match(label) for label in labels):
        return None
    if labels[-1].isdigit():  # "user@1.2.3.4" style: not a mail domain we accept
        return None
    return ascii_domain


def normalize_email(raw: object, *, path: str = "$.email") -> str:
    """Canonical e-mail: trimmed, lower-cased, IDN domain as punycode.

    Lower-casing the local part is technically lossy (RFC 5321 lets it be
    case-sensitive) but no real provider does that, and duplicates by case are a
    much bigger problem than that theory.
    """
    if not isinstance(raw, str):
        raise _invalid(path, "must be a string")
    value = raw.strip().lower()
    if not value:
        raise _invalid(path, "must not be empty")
    if len(value) > MAX_EMAIL_LENGTH * 2 or any(ch.isspace() or ord(ch) < 32 for ch in value):
        raise _invalid(path, "is not a valid e-mail address")
    local, sep, domain = value.rpartition("@")
    if not sep or "@" in local or not _local_part_ok(local):
        raise _invalid(path, "is not a valid e-mail address")
    ascii_domain = _domain_to_ascii(domain)
    if ascii_domain is None:
        raise _invalid(path, "has an invalid domain")
    result = f"{local}@{ascii_domain}"
    if len(result.encode("utf-8")) > MAX_EMAIL_LENGTH:
        raise _invalid(path, f"is longer than {MAX_EMAIL_LENGTH} characters")
    return result


_GMAIL_DOMAINS: Final = frozenset({"gmail.com", "googlemail.com"})
# Yandex treats every one of these as the same mailbox, and "-" and "." in the login
# as the same character.
_YANDEX_DOMAINS: Final = frozenset(
    {"yandex.ru", "yandex.com", "yandex.by", "yandex.kz", "yandex.ua", "ya.ru", "narod.ru"}
)
# Apple never re-issued a name across these: whoever owns name@me.com / @mac.com also
# owns name@icloud.com (the other way round the extra domains simply do not exist).
_APPLE_DOMAINS: Final = frozenset({"icloud.com", "me.com", "mac.com"})
# Providers that support "+tag" sub-addressing but where the domains are *separate*
# mailboxes (ivan@bk.ru is not ivan@mail.ru, ivan@hotmail.com is not ivan@outlook.com).
_PLUS_TAG_DOMAINS: Final = frozenset(
    {
        # Microsoft
        "outlook.com",
        "hotmail.com",
        "live.com",
        "msn.com",
        "outlook.ru",
        "hotmail.co.uk",
        "live.ru",
        # Mail.ru group
        "mail.ru",
        "inbox.ru",
        "list.ru",
        "bk.ru",
        "internet.ru",
        # Fastmail
        "fastmail.com",
        "fastmail.fm",
        # Proton
        "protonmail.com",
        "protonmail.ch",
        "proton.me",
        "pm.me",
    }
)
KNOWN_PROVIDER_DOMAINS: Final = _GMAIL_DOMAINS | _YANDEX_DOMAINS | _APPLE_DOMAINS | _PLUS_TAG_DOMAINS


def _strip_tag(local: str) -> str:
    base = local.split("+", 1)[0]
    # "+only" would otherwise collapse to an empty login; keep it as typed.
    return base or local


def email_match_key(canonical: str) -> str:
    """Key under which different spellings of one mailbox compare equal.

    Expects ``normalize_email`` output. Rules:

    * gmail.com / googlemail.com: dots ignored, ``+tag`` removed, domain gmail.com;
    * Yandex (yandex.ru/.com/.by/.kz/.ua, ya.ru, narod.ru): one mailbox, ``+tag``
      removed, ``.`` and ``-`` equivalent in the login, domain yandex.ru;
    * icloud.com / me.com / mac.com: one mailbox, ``+tag`` removed, domain icloud.com;
    * Outlook/Hotmail/Live, Mail.ru family, Fastmail, Proton: ``+tag`` removed only.
    * Unknown domains: returned unchanged, ``+tag`` is NOT stripped. Many mail servers
      treat ``+`` as an ordinary character, so ``a+b@corp.ru`` may be a different person
      from ``a@corp.ru``; a false merge would wrongly block a genuine referral as
      "self-referral", which costs more trust than the rare tag trick it would catch.
    """
    local, _, domain = canonical.rpartition("@")
    if domain in _GMAIL_DOMAINS:
        return f"{_strip_tag(local).replace('.', '')}@gmail.com"
    if domain in _YANDEX_DOMAINS:
        return f"{_strip_tag(local).replace('.', '-')}@yandex.ru"
    if domain in _APPLE_DOMAINS:
        return f"{_strip_tag(local)}@icloud.com"
    if domain in _PLUS_TAG_DOMAINS:
        return f"{_strip_tag(local)}@{domain}"
    return canonical


# --------------------------------------------------------------------------- phone


def normalize_phone(raw: object, default_region: str = "RU", *, path: str = "$.phone") -> str:
    """E.164 (``+79123456789``) for a *valid* number; ``ValidationFailed`` otherwise.

    ``default_region`` resolves national formats (``8 912 345-67-89`` in RU). Numbers
    already starting with ``+`` ignore it, so the function is idempotent.
    """
    if not isinstance(raw, str):
        raise _invalid(path, "must be a string")
    value = raw.strip()
    if not value:
        raise _invalid(path, "must not be empty")
    if len(value) > MAX_PHONE_INPUT_LENGTH:
        raise _invalid(path, "is not a valid phone number")
    # Imported on use: phonenumbers costs ~20 ms of cold start that the redirect and
    # read-only endpoints never need.
    import phonenumbers

    try:
        number = phonenumbers.parse(value, default_region)
    except phonenumbers.NumberParseException as exc:
        raise _invalid(path, "is not a valid phone number") from exc
    # is_valid_number (not is_possible_number): only numbers in allocated ranges, so
    # typos rarely produce a "valid" stranger's number.
    if not phonenumbers.is_valid_number(number):
        raise _invalid(path, "is not a valid phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


# --------------------------------------------------------------------------- hashing


def customer_id_value(partner_id: str, customer_id: str) -> str:
    """The ``value`` for ``identity_hash(kind="customer_id")``.

    Customer ids are only unique within one partner's system: customer "42" at the
    gym is not customer "42" at the coffee shop.
    """
    return f"{partner_id}/{customer_id}"


def identity_hash(program_id: str, kind: str, value: str, *, key: bytes | None = None) -> str:
    """Hex SHA-256 of an identifier, scoped to a program; safe for keys and logs.

    ``value`` should be a match key (``email_match_key``), an E.164 phone or
    ``customer_id_value(...)``. Program scoping stops cross-program correlation from
    key values alone. With ``key`` (a deployment-wide secret pepper held outside the
    table) it is HMAC-SHA256, which also defeats dictionary attacks on a leaked table
    (e-mails and phones are low-entropy); pick one mode per deployment and never
    change it, since every stored key depends on it.
    """
    if kind not in IDENTITY_KINDS:
        raise ValueError(f"unknown identity kind {kind!r}")
    # JSON array encoding is unambiguous whatever characters the parts contain.
    message = json.dumps([_HASH_VERSION, program_id, kind, value], ensure_ascii=False).encode("utf-8")
    if key is not None:
        return hmac.new(key, message, hashlib.sha256).hexdigest()
    return hashlib.sha256(message).hexdigest()


# --------------------------------------------------------------------------- masking


def _mask_word(word: str) -> str:
    # Never reveal the length; long words keep one more character for recognisability.
    if not word:
        return "***"
    keep = 2 if len(word) >= 6 else 1
    return word[:keep] + "***"


def mask_email(value: str) -> str:
    """``ivan.petrov@gmail.com`` -> ``iv***@gmail.com``; never raises (used in logs).

    Well-known provider domains are kept (they identify nobody); other domains are
    masked too, because ``ivan@ivanpetrov.ru`` gives the person away.
    """
    local, sep, domain = value.strip().rpartition("@")
    if not sep:
        return _mask_word(value.strip())
    domain = domain.lower()
    if domain in KNOWN_PROVIDER_DOMAINS:
        shown_domain = domain
    else:
        name, dot, tld = domain.rpartition(".")
        shown_domain = f"{_mask_word(name)}{dot}{tld}" if dot else _mask_word(domain)
    return f"{_mask_word(local)}@{shown_domain}"


def mask_phone(value: str) -> str:
    """``+79123456789`` -> ``+7*******89``; never raises (used in logs)."""
    digits = "".join(ch for ch in value if ch.isdigit())
    if len(digits) < 4:
        return "***"
    import phonenumbers

    country_len = 1
    try:
        number = phonenumbers.parse(value if value.strip().startswith("+") else "+" + digits, None)
        country_len = len(str(number.country_code))
    except phonenumbers.NumberParseException:
        pass
    country = digits[:country_len]
    hidden = len(digits) - country_len - 2
    return f"+{country}{'*' * max(hidden, 1)}{digits[-2:]}"
