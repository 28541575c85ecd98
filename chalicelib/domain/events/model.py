"""The canonical event model: frozen dataclasses, the same for every source."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from types import MappingProxyType
from typing import Any

from chalicelib.domain.events.types import CUSTOM_PREFIX


@dataclass(frozen=True)
class Customer:
    id: str | None = None
    email: str | None = None  # normalize_email() form
    phone: str | None = None  # E.164
    name: str | None = None
    locale: str | None = None  # "ru" | "en"
    birthday: date | None = None


@dataclass(frozen=True)
class OrderAmounts:
    total: int
    currency: str
    subtotal: int | None = None
    shipping: int | None = None
    discount: int | None = None


@dataclass(frozen=True)
class Refund:
    amount: int
    currency: str
    order_id: str
    reason: str | None = None


@dataclass(frozen=True)
class Utm:
    source: str | None = None
    medium: str | None = None
    campaign: str | None = None
    content: str | None = None
    term: str | None = None


@dataclass(frozen=True)
class Referral:
    code: str | None = None  # normalize_code() form; None if absent or not a possible code
    code_raw: str | None = None  # as sent, for support questions ("I did enter a code!")
    coupon_codes: tuple[str, ...] = ()  # normalize_coupon_code() form, duplicates dropped
    utm: Utm | None = None
    landing_url: str | None = None


@dataclass(frozen=True)
class Context:
    """Fraud signals of the event (``domain.signals``), normalised; only their salted hashes are stored."""

    ip: str | None = None  # ipaddress' compressed form
    user_agent: str | None = None  # whitespace collapsed
    device_id: str | None = None
    payment_fingerprint: str | None = None
    shipping_address: str | None = None  # domain.signals.normalize_address form


@dataclass(frozen=True)
class CanonicalEvent:
    type: str
    occurred_at: datetime  # timezone-aware, UTC
    object_type: str
    object_id: str
    customer: Customer | None = None
    order: OrderAmounts | None = None
    refund: Refund | None = None
    referral: Referral | None = None
    context: Context | None = None
    data: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def is_custom(self) -> bool:
        return self.type.startswith(CUSTOM_PREFIX)

    @property
    def custom_name(self) -> str | None:
        return self.type[len(CUSTOM_PREFIX) :] if self.is_custom else None
