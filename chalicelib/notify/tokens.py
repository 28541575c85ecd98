"""Signed one-click unsubscribe tokens (RFC 8058): no login, no state, cannot be forged.

``<payload>.<mac>``: the payload is base64url JSON ``[program_id, member_id, channel]``; the MAC is
HMAC-SHA256 with a key derived from the master secret for this purpose only, truncated to 128 bits.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

MAX_TOKEN_LENGTH = 400


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _mac(payload: str) -> str:
    from chalicelib.services.secrets import derive_key

    return _b64(hmac.new(derive_key("unsubscribe"), payload.encode("ascii"), hashlib.sha256).digest()[:16])


def make(program_id: str, member_id: str, channel: str) -> str:
    payload = _b64(json.dumps([program_id, member_id, channel], separators=(",", ":")).encode("utf-8"))
    return f"{payload}.{_mac(payload)}"


def verify(token: str) -> tuple[str, str, str] | None:
    """``(program_id, member_id, channel)`` or ``None`` for anything not signed by us."""
    if not token or len(token) > MAX_TOKEN_LENGTH or token.count(".") != 1:
        return None
    payload, mac = token.split(".")
    try:
        expected = _mac(payload)
    except UnicodeEncodeError:
        return None
    if not hmac.compare_digest(mac.encode("ascii", "replace"), expected.encode("ascii")):
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except ValueError:
        return None
    if not (isinstance(data, list) and len(data) == 3 and all(isinstance(x, str) for x in data)):
        return None
    return data[0], data[1], data[2]


def unsubscribe_url(program_id: str, member_id: str, channel: str) -> str:
    from chalicelib.config import get_settings

    return f"{get_settings().public_base_url}/u/{make(program_id, member_id, channel)}"
