"""Webhook signing secrets, derived instead of stored.

A partner's secret for a source is ``HMAC-SHA256(master_key, program|partner|source|version)``
encoded as a Standard Webhooks ``whsec_`` secret. The table stores only version
numbers and their validity, so a leaked table dump reveals no secret; rotating
bumps the version. The master key comes from ``SARAFAN_SECRET_KEY`` or, in
production, the Secrets Manager secret named by ``SARAFAN_SECRET_KEY_SECRET_ID``
(created by the stack; read once per container, lazily). When it cannot be read,
:class:`MasterSecretUnavailable` (503 ``master_secret_unavailable``) is raised and
the next request tries again.
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
from chalicelib.domain.errors import ServiceUnavailable
from chalicelib.logs import get_logger

log = get_logger("sarafan.secrets")
_lock = threading.Lock()
_master: bytes | None = None


class MasterSecretUnavailable(ServiceUnavailable):
    """The master secret is not configured or cannot be read (a deployment problem, not the caller's)."""

    code = "master_secret_unavailable"


def _secret_string(reply: dict[str, Any]) -> str:
    return str(reply.get("SecretString") or "")


def _read_master_key() -> str:
    from chalicelib.config import get_settings

    settings = get_settings()
    if settings.secret_key:
        return settings.secret_key
    if not settings.secret_key_secret_id:
        raise MasterSecretUnavailable(
            "The master secret is not configured: set SARAFAN_SECRET_KEY_SECRET_ID (or SARAFAN_SECRET_KEY locally).")
    from botocore.exceptions import BotoCoreError, ClientError

    from chalicelib import aws

    try:
        value = _secret_string(aws.client("secretsmanager").get_secret_value(SecretId=settings.secret_key_secret_id))
    except ClientError as err:
        code = err.response.get("Error", {}).get("Code", "ClientError")
        log.error("master secret unreadable", extra={"secret_id": settings.secret_key_secret_id, "aws_error": code})
        raise MasterSecretUnavailable("The master secret cannot be read; the operator must check the deployment.",
                                      details={"reason": code}) from err
    except BotoCoreError as err:
        log.error("master secret unreadable", extra={"secret_id": settings.secret_key_secret_id,
                                                     "aws_error": type(err).__name__})
        raise MasterSecretUnavailable("The master secret cannot be read; try again later.") from err
    if len(value) < 32:
        log.error("master secret too short", extra={"secret_id": settings.secret_key_secret_id})
        raise MasterSecretUnavailable("The master secret is shorter than 32 characters; the operator must replace it.")
    return value


def _master_key() -> bytes:
    global _master
    if _master is None:
        with _lock:
            if _master is None:
                _master = _read_master_key().encode("utf-8")
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


class MasterKeySecrets:
    """The ``Secrets`` port over the deployment's master key (``services.ports``)."""

    def derive_key(self, purpose: str) -> bytes:
        return derive_key(purpose)

    def webhook_secret(self, program_id: str, partner_id: str, source: str, version: int) -> str:
        return derive_secret(program_id, partner_id, source, version)
