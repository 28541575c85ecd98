"""Webhook signing secrets, derived instead of stored.

A partner's secret for a source is ``HMAC-SHA256(master_key, program|partner|source|version)``
encoded as a Standard Webhooks ``whsec_`` secret. The table stores only version
numbers and their validity, so a leaked table dump reveals no secret; rotating
bumps the version. The master key comes from ``SARAFAN_SECRET_KEY`` or, in
production, an SSM SecureString named by ``SARAFAN_SECRET_KEY_PARAMETER``
(read once per container, lazily).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from chalicelib.domain.clock import iso, parse_iso

_lock = threading.Lock()
_master: bytes | None = None


def _master_key() -> bytes:
    global _master
    if _master is None:
        with _lock:
            if _master is None:
                from chalicelib.config import get_settings

                settings = get_settings()
                if settings.secret_key:
                    raw = settings.secret_key
                elif settings.secret_key_parameter:
                    from chalicelib import aws

                    reply = aws.client("ssm").get_parameter(Name=settings.secret_key_parameter, WithDecryption=True)
                    raw = reply["Parameter"]["Value"]
                else:
                    raise RuntimeError("Set SARAFAN_SECRET_KEY or SARAFAN_SECRET_KEY_PARAMETER")
                _master = raw.encode("utf-8")
    return _master


def reset_master_key() -> None:
    global _master
    with _lock:
        _master = None


def derive_secret(program_id: str, partner_id: str, source: str, version: int) -> str:
    message = f"sarafan-webhook-secret|{program_id}|{partner_id}|{source}|{version}".encode()
    digest = hmac.new(_master_key(), message, hashlib.sha256).digest()
    return "whsec_" + base64.b64encode(digest).decode("ascii")


@dataclass(frozen=True)
class SecretVersion:
    version: int
    created_at: str
    expires_at: str | None

    def valid_at(self, now: datetime) -> bool:
        return self.expires_at is None or parse_iso(self.expires_at) > now


def versions(webhook_secrets: dict[str, Any], source: str) -> list[SecretVersion]:
    return [SecretVersion(**v) for v in webhook_secrets.get(source, [])]


def derive_key(purpose: str) -> bytes:
    """A 32-byte key for one purpose (e.g. salting hashed client IPs), derived from the master key."""
    return hmac.new(_master_key(), f"sarafan-key|{purpose}".encode(), hashlib.sha256).digest()


def valid_secrets(program_id: str, partner_id: str, webhook_secrets: dict[str, Any], source: str, now: datetime) -> list[str]:
    """Secrets that verify right now: the current one plus any old one still in its overlap period."""
    return [
        derive_secret(program_id, partner_id, source, v.version)
        for v in versions(webhook_secrets, source)
        if v.valid_at(now)
    ]


def rotated(webhook_secrets: dict[str, Any], source: str, now: datetime, overlap: timedelta) -> tuple[dict[str, Any], int]:
    """A new secrets map with a new version for ``source``; older valid versions expire after ``overlap``."""
    current = versions(webhook_secrets, source)
    new_version = max((v.version for v in current), default=0) + 1
    cutoff = iso(now + overlap)
    kept = [
        {"version": v.version, "created_at": v.created_at, "expires_at": min(v.expires_at or cutoff, cutoff)}
        for v in current
        if v.valid_at(now)
    ]
    kept.append({"version": new_version, "created_at": iso(now), "expires_at": None})
    return {**webhook_secrets, source: kept}, new_version
