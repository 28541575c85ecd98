"""Outgoing partner webhooks: the pure parts (issue #11).

* which event types a partner may subscribe to;
* the target URL check against server-side request forgery: https only, and no
  private, loopback, link-local, multicast, reserved or unspecified address after DNS
  resolution -- at registration and again at send time (a DNS answer can change);
  the local run may allow anything (a setting, never in a deployed stage);
* the retry schedule: exponential backoff, 8 attempts spread over about 27 hours,
  after which the endpoint is disabled;
* the signed message, per Standard Webhooks, through the same signing code as the
  Standard Webhooks intake (:mod:`chalicelib.domain.webhook_signature`).

No boto3, no sockets: the resolver is injected (``socket.getaddrinfo`` in the service).
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any, Final
from urllib.parse import urlsplit

from chalicelib.domain import webhook_signature
from chalicelib.domain.urls import InvalidUrl, normalize

#: Endpoints per partner (counted in the create/delete transaction).
MAX_ENDPOINTS: Final = 10
#: A delivery's statuses: waiting for an attempt, then delivered, failed for good or cancelled.
PENDING, DELIVERED, FAILED, CANCELLED = "pending", "delivered", "failed", "cancelled"

EVENT_TYPES: Final = (
    "reward.posted",
    "voucher.issued",
    "pool.low",
    "tier.changed",
    "redemption.confirmed",
)

#: Delay before attempt n+1 after attempt n failed (n = 1..7); attempt 1 is immediate.
#: 1 min, 5 min, 30 min, 2 h, 5 h, 8 h, 11 h: the last attempt is ~26.6 h after the first.
RETRY_DELAYS: Final = (
    timedelta(minutes=1),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=5),
    timedelta(hours=8),
    timedelta(hours=11),
)
MAX_ATTEMPTS: Final = len(RETRY_DELAYS) + 1

Resolver = Callable[[str], Iterable[str]]


class UnsafeTarget(ValueError):
    """A webhook URL we refuse to call; the message says why (no address echoed)."""


def validate_event_types(types: Iterable[str]) -> list[str]:
    chosen = list(dict.fromkeys(types))
    unknown = [t for t in chosen if t not in EVENT_TYPES]
    if not chosen:
        raise ValueError("at least one event type is required")
    if unknown:
        raise ValueError(f"unknown event types: {', '.join(sorted(unknown))}")
    return chosen


def _address_is_public(text: str) -> bool:
    try:
        addr = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address):
        mapped = addr.ipv4_mapped or addr.sixtofour
        if mapped is not None and not _address_is_public(str(mapped)):
            return False
    return not (
        addr.is_private
        or addr.is_loopback
        or addr.is_link_local
        or addr.is_multicast
        or addr.is_reserved
        or addr.is_unspecified
        or not addr.is_global
    )


def check_target(url: str, resolve: Resolver, *, allow_any: bool = False) -> str:
    """The normalised URL if it is safe to call; raises :class:`UnsafeTarget`.

    ``resolve`` returns every address the host resolves to; *all* must be public
    (one private answer is enough for a rebinding attack). ``allow_any`` is the
    local-run setting: http and local addresses allowed.
    """
    try:
        clean = normalize(url)
    except InvalidUrl as exc:
        raise UnsafeTarget(f"URL {exc}") from None
    parts = urlsplit(clean)
    if allow_any:
        return clean
    if parts.scheme != "https":
        raise UnsafeTarget("URL must use https")
    if parts.username or parts.password:
        raise UnsafeTarget("URL must not carry credentials")
    host = (parts.hostname or "").strip("[]")
    try:
        addresses = [host] if _is_literal(host) else list(resolve(host))
    except OSError:
        raise UnsafeTarget("URL host does not resolve") from None
    if not addresses:
        raise UnsafeTarget("URL host does not resolve")
    if not all(_address_is_public(a) for a in addresses):
        raise UnsafeTarget("URL resolves to a private, loopback, link-local or reserved address")
    return clean


def _is_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def next_attempt_at(attempts_made: int, last_attempt: datetime) -> datetime | None:
    """When to try again after ``attempts_made`` failures; ``None``: give up, disable."""
    if attempts_made < 1:
        return last_attempt
    if attempts_made >= MAX_ATTEMPTS:
        return None
    return last_attempt + RETRY_DELAYS[attempts_made - 1]


def message_body(msg_id: str, event_type: str, occurred_at: str, data: Mapping[str, Any]) -> bytes:
    """The JSON body partners receive (Standard Webhooks envelope: type, timestamp, data)."""
    doc = {"id": msg_id, "type": event_type, "timestamp": occurred_at, "data": dict(data)}
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode("utf-8")


def signed_request(secrets: str | list[str], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """Headers of one delivery: ``webhook-id``, ``webhook-timestamp``, ``webhook-signature``."""
    headers = webhook_signature.signature_headers(secrets, msg_id, timestamp, body)
    headers["content-type"] = "application/json"
    return headers
