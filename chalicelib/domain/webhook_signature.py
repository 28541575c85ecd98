"""Standard Webhooks (https://www.standardwebhooks.com) signing and verification.

Partners sign every event they send us, and we sign every webhook we send them,
with the same scheme, so one implementation serves both directions:

* headers ``webhook-id`` (unique message id), ``webhook-timestamp`` (integer Unix
  seconds) and ``webhook-signature`` (space-separated list of ``v1,<base64>``);
* signed content is ``{webhook-id}.{webhook-timestamp}.{raw body}`` (the raw bytes,
  *before* any JSON parsing, so re-serialisation can never break a signature);
* ``v1`` is HMAC-SHA256 keyed with the secret, secrets look like ``whsec_<base64>``.

Why not the ``standardwebhooks`` package: it is not shipped to Lambda (zip size,
cold start) and it reads the wall clock itself. This module is stdlib only and takes
``now`` as an argument; tests check it against the official library both ways.

Secret rotation: ``verify`` accepts several currently valid secrets, so a partner can
switch to a new secret while the old one is still accepted. The sender may also put
several signatures in one header (one per secret); any single match is enough.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets as _secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from chalicelib.domain.errors import Unauthorized

HEADER_ID = "webhook-id"
HEADER_TIMESTAMP = "webhook-timestamp"
HEADER_SIGNATURE = "webhook-signature"

SECRET_PREFIX = "whsec_"
SIGNATURE_VERSION = "v1"
DEFAULT_TOLERANCE_SECONDS = 300
DEFAULT_SECRET_BYTES = 32
MIN_SECRET_BYTES = 24

# Bounds on attacker-controlled header sizes: verification cost must stay tiny even
# for garbage requests, and the id ends up in idempotency keys downstream.
MAX_ID_LENGTH = 256
MAX_SIGNATURE_HEADER_LENGTH = 4096
MAX_SIGNATURES = 16

CODE_MISSING_HEADERS = "signature_missing_headers"
CODE_STALE_TIMESTAMP = "signature_stale_timestamp"
CODE_INVALID = "signature_invalid"

# Unix seconds as digits only: the spec sends integers; rejecting "1e9", "-5", " 12"
# keeps the signed string identical to what was checked against the clock.
_TIMESTAMP_RE = re.compile(r"^[0-9]{1,12}$")
# Printable ASCII without spaces: ids are echoed into logs and keys.
_ID_RE = re.compile(r"^[\x21-\x7e]+$")


@dataclass(frozen=True)
class VerifiedWebhook:
    """What a successful verification proves.

    ``secret_index`` is the position of the matching secret in the list given to
    ``verify``; seeing only index 0 for a while tells ops the old secret can go.
    """

    msg_id: str
    timestamp: int
    secret_index: int


def generate_secret(nbytes: int = DEFAULT_SECRET_BYTES) -> str:
    """A new random ``whsec_...`` secret (32 random bytes by default, never fewer than 24)."""
    if nbytes < MIN_SECRET_BYTES:
        raise ValueError(f"webhook secrets need at least {MIN_SECRET_BYTES} random bytes")
    return SECRET_PREFIX + base64.b64encode(_secrets.token_bytes(nbytes)).decode("ascii")


def decode_secret(secret: str | bytes) -> bytes:
    """Key bytes of a ``whsec_<base64>`` secret (the prefix is optional, as in the spec).

    Raises ``ValueError``: a bad secret is our configuration error, not the caller's.
    """
    if isinstance(secret, bytes):
        key = secret
    else:
        encoded = secret[len(SECRET_PREFIX) :] if secret.startswith(SECRET_PREFIX) else secret
        try:
            # Tolerate missing padding like the reference implementation does.
            key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError("webhook secret is not valid base64") from exc
    if not key:
        raise ValueError("webhook secret may not be empty")
    return key


def _signed_content(msg_id: str, timestamp: int, body: bytes | str) -> bytes:
    raw = body.encode("utf-8") if isinstance(body, str) else body
    return f"{msg_id}.{timestamp}.".encode() + raw


def _digest(key: bytes, msg_id: str, timestamp: int, body: bytes | str) -> bytes:
    return hmac.new(key, _signed_content(msg_id, timestamp, body), hashlib.sha256).digest()


def sign(secret: str | bytes, msg_id: str, timestamp: int, body: bytes | str) -> str:
    """The ``webhook-signature`` value (``v1,<base64>``) for one secret."""
    digest = _digest(decode_secret(secret), msg_id, int(timestamp), body)
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode('ascii')}"


def signature_headers(
    secrets: str | bytes | Sequence[str | bytes], msg_id: str, timestamp: int, body: bytes | str
) -> dict[str, str]:
    """All three headers for an outgoing webhook, one signature per secret.

    Signing with both old and new secret during a rotation lets the receiver switch
    whenever it likes.
    """
    secret_list = [secrets] if isinstance(secrets, (str, bytes)) else list(secrets)
    if not secret_list:
        raise ValueError("at least one webhook secret is required")
    return {
        HEADER_ID: msg_id,
        HEADER_TIMESTAMP: str(int(timestamp)),
        HEADER_SIGNATURE: " ".join(sign(s, msg_id, timestamp, body) for s in secret_list),
    }


def _header(headers: Mapping[str, str], name: str) -> str | None:
    # HTTP header names are case-insensitive; API Gateway / Chalice may pass any case.
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def _parse_signatures(header: str) -> list[bytes]:
    """Decoded ``v1`` signatures; malformed or other-version entries are skipped.

    Skipping (rather than failing) matters: a header may legitimately carry ``v1a``
    (asymmetric) entries or a signature for a secret we do not know next to a good one.
    """
    found: list[bytes] = []
    for entry in header.split(" ")[:MAX_SIGNATURES]:
        version, sep, encoded = entry.partition(",")
        if not sep or version != SIGNATURE_VERSION:
            continue
        try:
            found.append(base64.b64decode(encoded, validate=True))
        except (binascii.Error, ValueError):
            continue
    return found


def _check_headers(headers: Mapping[str, str], now: float, tolerance_seconds: int) -> tuple[str, int, str]:
    """(msg_id, timestamp, signature header) once presence, format and freshness pass."""
    msg_id = _header(headers, HEADER_ID)
    timestamp_raw = _header(headers, HEADER_TIMESTAMP)
    signature_raw = _header(headers, HEADER_SIGNATURE)
    missing = [
        name
        for name, value in (
            (HEADER_ID, msg_id),
            (HEADER_TIMESTAMP, timestamp_raw),
            (HEADER_SIGNATURE, signature_raw),
        )
        if not value
    ]
    if missing:
        raise Unauthorized(
            "Missing webhook signature headers: " + ", ".join(missing),
            code=CODE_MISSING_HEADERS,
            details={"missing": missing},
        )
    assert msg_id is not None and timestamp_raw is not None and signature_raw is not None

    if len(msg_id) > MAX_ID_LENGTH or not _ID_RE.match(msg_id):
        raise Unauthorized("webhook-id is malformed", code=CODE_INVALID)
    timestamp_raw = timestamp_raw.strip()
    if not _TIMESTAMP_RE.match(timestamp_raw):
        raise Unauthorized("webhook-timestamp must be integer Unix seconds", code=CODE_INVALID)
    timestamp = int(timestamp_raw)

    # The timestamp is inside the signed content, so checking it bounds replays of a
    # captured request to the tolerance window (the id dedup covers the rest).
    if timestamp < now - tolerance_seconds:
        raise Unauthorized(
            "webhook-timestamp is too old; check the sender's clock",
            code=CODE_STALE_TIMESTAMP,
            details={"tolerance_seconds": tolerance_seconds},
        )
    if timestamp > now + tolerance_seconds:
        raise Unauthorized(
            "webhook-timestamp is in the future; check the sender's clock",
            code=CODE_STALE_TIMESTAMP,
            details={"tolerance_seconds": tolerance_seconds},
        )
    return msg_id, timestamp, signature_raw


def check_headers(
    headers: Mapping[str, str], *, now: float, tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS
) -> None:
    """The checks that need no secret (headers present and well-formed, timestamp fresh).

    Run before anything is read, so a stale or unsigned request costs no database read.
    ``verify`` repeats them; they are cheap. Raises like ``verify``.
    """
    _check_headers(headers, now, tolerance_seconds)


def verify(
    secrets: str | bytes | Sequence[str | bytes],
    headers: Mapping[str, str],
    body: bytes | str,
    *,
    now: float,
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
) -> VerifiedWebhook:
    """Check a Standard Webhooks signature over the raw ``body``.

    ``secrets``: every currently valid secret (rotation overlap), newest first.
    ``now``: Unix seconds from the caller's clock (the service's ``Clock`` port; tests pass a fixed value).
    Raises ``Unauthorized`` with code ``signature_missing_headers``,
    ``signature_stale_timestamp`` or ``signature_invalid``; ``ValueError`` if
    ``secrets`` is empty or malformed (our configuration, not the caller's fault).
    """
    secret_list = [secrets] if isinstance(secrets, (str, bytes)) else list(secrets)
    if not secret_list:
        raise ValueError("at least one webhook secret is required")
    keys = [decode_secret(s) for s in secret_list]
    msg_id, timestamp, signature_raw = _check_headers(headers, now, tolerance_seconds)

    if len(signature_raw) <= MAX_SIGNATURE_HEADER_LENGTH:
        candidates = _parse_signatures(signature_raw)
        if candidates:
            for index, key in enumerate(keys):
                expected = _digest(key, msg_id, timestamp, body)
                # compare_digest: timing must not reveal how many bytes matched.
                if any(hmac.compare_digest(expected, given) for given in candidates):
                    return VerifiedWebhook(msg_id=msg_id, timestamp=timestamp, secret_index=index)
    raise Unauthorized("No matching webhook signature", code=CODE_INVALID)
