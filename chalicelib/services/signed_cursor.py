"""Opaque paging cursors signed with a key derived from the master secret.

For reads that walk several partitions or sections (member export, ledger CSV export) a cursor
holds more than one DynamoDB key. Signing it means a crafted cursor can neither point into
another tenant's data nor make DynamoDB reject a query (a 5xx caused by client input): anything
not signed by us is a 400 ``invalid_cursor``. Cursors are bound to a ``scope`` (the route and its
tenant/member), so one read's cursor is refused by another.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from typing import TYPE_CHECKING, Any

from chalicelib.domain.errors import BadRequest

if TYPE_CHECKING:
    from chalicelib.services.ports import Secrets


def _key(secrets: Secrets | None) -> bytes:
    if secrets is not None:  # the ``Secrets`` port (a service on ``ports``)
        return secrets.derive_key("paging-cursor")
    from chalicelib.services.secrets import derive_key

    return derive_key("paging-cursor")


def _mac(scope: str, payload: bytes, secrets: Secrets | None) -> str:
    return hmac.new(_key(secrets), scope.encode() + b"\x00" + payload, hashlib.sha256).hexdigest()[:32]


def encode(scope: str, data: dict[str, Any] | None, secrets: Secrets | None = None) -> str | None:
    if data is None:
        return None
    payload = base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode().rstrip("=")
    return f"{payload}.{_mac(scope, payload.encode(), secrets)}"


def decode(scope: str, raw: str | None, secrets: Secrets | None = None) -> dict[str, Any] | None:
    if not raw:
        return None
    payload, _, mac = raw.partition(".")
    if not mac or not hmac.compare_digest(mac, _mac(scope, payload.encode(), secrets)):
        raise BadRequest("Invalid cursor", code="invalid_cursor")
    try:
        data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (binascii.Error, ValueError):
        raise BadRequest("Invalid cursor", code="invalid_cursor") from None
    if not isinstance(data, dict):
        raise BadRequest("Invalid cursor", code="invalid_cursor")
    return data
