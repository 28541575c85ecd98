"""Opaque identifiers: a readable type prefix plus 80 random bits in lower-case base32."""

from __future__ import annotations

import base64
import secrets


def new_id(prefix: str) -> str:
    token = base64.b32encode(secrets.token_bytes(10)).decode("ascii").lower()
    return f"{prefix}_{token}"
