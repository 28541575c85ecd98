"""What every platform adapter is made of (see ``chalicelib.adapters``)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from chalicelib.domain.errors import BadRequest, Unauthorized


@dataclass(frozen=True)
class Inbound:
    """One webhook delivery as received: nothing in it is trusted until ``verify`` passed."""

    method: str
    #: The public URL the platform called (HubSpot signs it), without the query string.
    url: str
    headers: Mapping[str, str]  # lower-case names
    raw_body: bytes

    def header(self, name: str) -> str | None:
        value = self.headers.get(name.lower())
        return value.strip() if isinstance(value, str) and value.strip() else None


@dataclass(frozen=True)
class Mapped:
    """One canonical event body (validated later by ``domain.events.parse_event``)."""

    body: dict[str, Any]
    #: What the platform calls it, for the reply and logs (topic and object id; no personal data).
    label: str


@dataclass(frozen=True)
class Skipped:
    """A part of the delivery that maps to nothing (an unpaid order, a stage that is not "won")."""

    label: str
    reason: str


@dataclass(frozen=True)
class Fetch:
    """A CRM event that carries only ids: what is missing is fetched from the CRM's API asynchronously."""

    label: str
    object_type: str  # "deal" | "contact" | "lead"
    object_id: str
    occurred_at: str
    #: The platform's id of the event (HubSpot ``eventId``), logged with the fetch.
    event_id: str
    #: What a redelivery of this very event repeats (HubSpot's ``eventId``; Bitrix24's event, id and
    #: ``ts``; amoCRM's lead, status and modification time), or ``None`` when the payload has nothing
    #: of the kind. The acknowledgement dedupes on it, so a redelivery is not fetched again.
    ack_id: str | None = None


@dataclass(frozen=True)
class Translation:
    items: Sequence[Mapped | Skipped | Fetch] = field(default_factory=list)
    #: Set when the whole delivery is irrelevant (a topic we do not use, a ping): answered 200.
    ignored: str | None = None
    #: The platform's id of this delivery/event (logged and stored with the event record).
    delivery_id: str | None = None


@dataclass(frozen=True)
class Context:
    """What an adapter may know besides the payload."""

    settings: Mapping[str, Any]
    #: The program's currency (platforms that send amounts without one).
    currency: str
    now: datetime
    #: Whether the partner gave an API token, so ids-only CRM events can be completed asynchronously.
    can_fetch: bool = False


class Adapter(Protocol):
    platform: str
    #: "secret": the platform signs with a secret it issued (stored KMS-encrypted);
    #: "token": the platform cannot sign, the webhook URL carries our random token.
    auth: str
    #: Content types the route must accept for this platform.
    content_types: tuple[str, ...]
    #: Topics/events to subscribe to, shown when connecting.
    topics: tuple[str, ...]
    #: JSON Schema of the platform's settings (besides the common ``secret``).
    settings_schema: dict[str, Any]
    #: Documentation of the webhook format this adapter follows.
    docs_url: str

    def verify(self, inbound: Inbound, secrets: Sequence[bytes], ctx: Context) -> None:
        """Raise ``Unauthorized`` unless one of ``secrets`` authenticates the delivery. Reads nothing else."""

    def translate(self, inbound: Inbound, ctx: Context) -> Translation:
        """Canonical events of a verified delivery; ``BadRequest`` if it is malformed."""


# --------------------------------------------------------------------------- helpers


def b64_hmac_matches(secrets: Sequence[bytes], message: bytes, signature: str | None) -> bool:
    """Whether base64 ``signature`` is HMAC-SHA256 of ``message`` under one of ``secrets`` (constant time)."""
    if not signature:
        return False
    try:
        presented = base64.b64decode(signature.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        return False
    ok = False
    for secret in secrets:  # every secret is tried: timing does not tell which one matched
        expected = hmac.new(secret, message, hashlib.sha256).digest()
        ok |= hmac.compare_digest(expected, presented)
    return ok


def unauthorized(message: str = "Webhook signature is missing or invalid") -> Unauthorized:
    return Unauthorized(message, code="invalid_signature")


def malformed(reason: str, **details: Any) -> BadRequest:
    return BadRequest(f"Malformed payload: {reason}", code="malformed_payload", details={"reason": reason, **details})


def text(value: Any, limit: int = 256) -> str | None:
    """A scalar as a trimmed string (ids arrive as numbers or strings), ``None`` if empty or too long."""
    if value is None or isinstance(value, bool | dict | list):
        return None
    out = str(value).strip()
    return out if out and len(out) <= limit else None


def require_text(value: Any, what: str, limit: int = 256) -> str:
    out = text(value, limit)
    if out is None:
        raise malformed(f"{what} is missing or not a string/number")
    return out


def as_dict(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise malformed(f"{what} must be an object")
    return value


def customer_block(*, id: Any = None, email: Any = None, phone: Any = None, name: Any = None) -> dict[str, Any]:
    """The canonical ``customer`` block; bad e-mails/phones are tolerated later (lenient parsing)."""
    block = {"id": text(id), "email": text(email, 320), "phone": text(phone, 64), "name": text(name, 200)}
    return {k: v for k, v in block.items() if v is not None}


def has_identifier(customer: Mapping[str, Any]) -> bool:
    return any(customer.get(k) for k in ("id", "email", "phone"))


def context_block(*, ip: Any = None, user_agent: Any = None, device_id: Any = None,
                  payment_fingerprint: Any = None, shipping_address: Any = None) -> dict[str, Any] | None:
    """The canonical ``context`` block (fraud signals) from what a platform sends, or ``None``.

    Tolerant like ``customer_block``: an IP that is not one, an over-long value or an address
    without usable fields is left out (the order itself is real), never a rejection.
    """
    from chalicelib.domain.signals import normalize_ip

    ip_text = text(ip, 64)
    address: Any = None
    if isinstance(shipping_address, dict):
        fields: dict[str, str] = {}
        for name, raw in shipping_address.items():
            value = text(raw)
            if isinstance(name, str) and value and "\n" not in value and len(fields) < 20:
                fields[name[:64]] = value
        address = fields or None
    else:
        address = text(shipping_address, 512)
    single = {"user_agent": text(user_agent, 512), "device_id": text(device_id), "payment_fingerprint":
              text(payment_fingerprint)}
    block: dict[str, Any] = {"ip": normalize_ip(ip_text) if ip_text else None,
                             **{k: v for k, v in single.items() if v and "\n" not in v and "\r" not in v},
                             "shipping_address": address}
    block = {k: v for k, v in block.items() if v}
    return block or None
