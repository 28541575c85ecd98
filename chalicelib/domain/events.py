"""The canonical event format: what every platform adapter produces and partners may send.

Envelope (all types)::

    {
      "type": "order.paid",                      # see EVENT_TYPES, or "custom.<name>"
      "occurred_at": "2026-11-23T10:00:00Z",     # RFC 3339; offsets accepted, stored as UTC
      "object": {"type": "order", "id": "1001"}, # the partner's own business object
      "customer": {"id", "email", "phone", "name", "locale", "birthday"},
      "order": {"total", "subtotal", "shipping", "discount", "currency"},
      "refund": {"amount", "currency", "order_id", "reason"},   # order.refunded only
      "referral": {"code", "coupon_codes", "utm": {...}, "landing_url"},
      "data": {...}                              # free-form partner metadata
    }

Money is integer minor units (kopecks, cents) so sums are exact; currency is ISO 4217.

``object`` per type: ``member.signup`` -> ``customer``, ``lead.created`` -> ``lead``,
``deal.won`` -> ``deal``, ``order.paid``/``order.cancelled`` -> ``order``,
``order.refunded`` -> ``refund`` (each refund is its own fact: two partial refunds of
one order must both count, so the refund -- not the order -- is the object, and
``refund.order_id`` links back to the order). Custom events may use any object type.

Validation is JSON Schema (draft-07, ``EVENT_SCHEMAS``) compiled with fastjsonschema
lazily, once per type, then a few checks schemas express badly (real calendar dates,
e-mail/phone validity, "at least one customer identifier").
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import cache
from types import MappingProxyType
from typing import Any, Final

from chalicelib.domain import safe_json, urls
from chalicelib.domain.codes import normalize_code, normalize_coupon_code
from chalicelib.domain.errors import ValidationFailed, field_error
from chalicelib.domain.identity import normalize_email, normalize_phone
from chalicelib.domain.safe_json import SINGLE_LINE
from chalicelib.domain.urls import HTTP_URL
from chalicelib.domain.validation import schema_errors

MEMBER_SIGNUP: Final = "member.signup"
LEAD_CREATED: Final = "lead.created"
DEAL_WON: Final = "deal.won"
ORDER_PAID: Final = "order.paid"
ORDER_REFUNDED: Final = "order.refunded"
ORDER_CANCELLED: Final = "order.cancelled"
CUSTOM_PREFIX: Final = "custom."
CUSTOM_SCHEMA_KEY: Final = "custom.*"

EVENT_TYPES: Final = (MEMBER_SIGNUP, LEAD_CREATED, DEAL_WON, ORDER_PAID, ORDER_REFUNDED, ORDER_CANCELLED)
CUSTOM_TYPE_RE: Final = re.compile(r"^custom\.[a-z0-9_.-]{1,64}$")
SUPPORTED_LOCALES: Final = ("ru", "en")

# Which ``object.type`` each standard event is about (custom events: any).
OBJECT_TYPES: Final = {
    MEMBER_SIGNUP: "customer",
    LEAD_CREATED: "lead",
    DEAL_WON: "deal",
    ORDER_PAID: "order",
    ORDER_CANCELLED: "order",
    ORDER_REFUNDED: "refund",
}

# Upper bound on amounts: 10**14 minor units is 1 trillion roubles; anything larger is
# a unit mistake (e.g. sending kopecks of kopecks), not a sale.
MAX_AMOUNT: Final = 10**14

#: Birthdays before this are typos (and would not round-trip through every system).
EARLIEST_BIRTHDAY: Final = date(1900, 1, 1)

# --------------------------------------------------------------------------- schemas

_RFC3339 = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})$"
_ID = {"type": "string", "minLength": 1, "maxLength": 256, "pattern": SINGLE_LINE}
_AMOUNT = {"type": "integer", "minimum": 0, "maximum": MAX_AMOUNT}
_CURRENCY = {"type": "string", "pattern": "^[A-Z]{3}$"}
_OPT_STR = {"type": ["string", "null"], "maxLength": 256}
_OPT_LINE = {"type": ["string", "null"], "maxLength": 256, "pattern": SINGLE_LINE}


def _object_schema(object_type: str | None) -> dict[str, Any]:
    type_schema: dict[str, Any] = (
        {"const": object_type} if object_type else {"type": "string", "pattern": "^[a-z][a-z0-9_]{0,31}$"}
    )
    return {
        "type": "object",
        "required": ["type", "id"],
        "properties": {"type": type_schema, "id": _ID},
        "additionalProperties": False,
    }


_CUSTOMER: dict[str, Any] = {
    "type": "object",
    "properties": {
        "id": {"type": ["string", "null"], "minLength": 1, "maxLength": 256, "pattern": SINGLE_LINE},
        "email": {"type": ["string", "null"], "maxLength": 320},
        "phone": {"type": ["string", "null"], "maxLength": 64},
        "name": {"type": ["string", "null"], "maxLength": 200, "pattern": SINGLE_LINE},
        "locale": {"enum": [*SUPPORTED_LOCALES, None]},
        "birthday": {"type": ["string", "null"], "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"},
    },
    "additionalProperties": False,
}

_ORDER: dict[str, Any] = {
    "type": "object",
    "required": ["total", "currency"],
    "properties": {
        "total": _AMOUNT,
        "subtotal": _AMOUNT,
        "shipping": _AMOUNT,
        "discount": _AMOUNT,
        "currency": _CURRENCY,
    },
    "additionalProperties": False,
}

_REFUND: dict[str, Any] = {
    "type": "object",
    "required": ["amount", "currency", "order_id"],
    "properties": {
        # A zero refund changes nothing; refusing it catches "amount in wrong field" bugs.
        "amount": {"type": "integer", "minimum": 1, "maximum": MAX_AMOUNT},
        "currency": _CURRENCY,
        "order_id": _ID,
        "reason": _OPT_STR,
    },
    "additionalProperties": False,
}

_REFERRAL: dict[str, Any] = {
    "type": "object",
    "properties": {
        "code": {"type": ["string", "null"], "maxLength": 64, "pattern": SINGLE_LINE},
        "coupon_codes": {
            "type": "array",
            "maxItems": 20,
            "items": {"type": "string", "maxLength": 64, "pattern": SINGLE_LINE},
        },
        "utm": {
            "type": "object",
            "properties": {key: _OPT_LINE for key in ("source", "medium", "campaign", "content", "term")},
            "additionalProperties": False,
        },
        # Any http(s) URL without control characters; stored normalised (see domain/urls.py).
        "landing_url": {"type": ["string", "null"], "maxLength": 2048, "pattern": HTTP_URL},
    },
    "additionalProperties": False,
}

# Free-form, but bounded: it is stored with the event.
_DATA: dict[str, Any] = {"type": "object", "maxProperties": 50}


def _event_schema(
    event_type: str | None,
    *,
    requires: tuple[str, ...] = (),
    allows: tuple[str, ...] = (),
) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "type": ({"const": event_type} if event_type else {"type": "string", "pattern": CUSTOM_TYPE_RE.pattern}),
        "occurred_at": {"type": "string", "pattern": _RFC3339},
        "object": _object_schema(OBJECT_TYPES.get(event_type or "")),
        "data": _DATA,
    }
    blocks = {"customer": _CUSTOMER, "order": _ORDER, "refund": _REFUND, "referral": _REFERRAL}
    for name in (*requires, *allows):
        properties[name] = blocks[name]
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": event_type or CUSTOM_SCHEMA_KEY,
        "type": "object",
        "required": ["type", "occurred_at", "object", *requires],
        "properties": properties,
        "additionalProperties": False,
    }


EVENT_SCHEMAS: Final[dict[str, dict[str, Any]]] = {
    MEMBER_SIGNUP: _event_schema(MEMBER_SIGNUP, requires=("customer",), allows=("referral",)),
    LEAD_CREATED: _event_schema(LEAD_CREATED, requires=("customer",), allows=("referral",)),
    DEAL_WON: _event_schema(DEAL_WON, requires=("customer",), allows=("order", "referral")),
    ORDER_PAID: _event_schema(ORDER_PAID, requires=("customer", "order"), allows=("referral",)),
    ORDER_REFUNDED: _event_schema(ORDER_REFUNDED, requires=("refund",), allows=("customer",)),
    ORDER_CANCELLED: _event_schema(ORDER_CANCELLED, allows=("customer", "order")),
    CUSTOM_SCHEMA_KEY: _event_schema(None, allows=("customer", "order", "referral")),
}

# Events whose ``customer`` must carry at least one identifier (id, email or phone):
# without one there is nobody to attribute or reward.
_NEEDS_IDENTIFIER: Final = frozenset({MEMBER_SIGNUP, LEAD_CREATED, DEAL_WON, ORDER_PAID})


def schema_key(event_type: str) -> str | None:
    """Key into ``EVENT_SCHEMAS`` for a type string, ``None`` if the type is unknown."""
    if event_type in EVENT_SCHEMAS and event_type != CUSTOM_SCHEMA_KEY:
        return event_type
    if CUSTOM_TYPE_RE.match(event_type):
        return CUSTOM_SCHEMA_KEY
    return None


@cache
def _validator(key: str) -> Callable[[Any], Any]:
    # Imported and compiled on first use only: compiling all schemas at import would
    # add tens of milliseconds to every cold start, most of it for unused types.
    import fastjsonschema

    return fastjsonschema.compile(EVENT_SCHEMAS[key])  # type: ignore[no-any-return]


# --------------------------------------------------------------------------- model


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
class CanonicalEvent:
    type: str
    occurred_at: datetime  # timezone-aware, UTC
    object_type: str
    object_id: str
    customer: Customer | None = None
    order: OrderAmounts | None = None
    refund: Refund | None = None
    referral: Referral | None = None
    data: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    # Problems tolerated with parse_event(lenient_identifiers=True): [{"path","message"}].
    warnings: tuple[Mapping[str, str], ...] = ()

    @property
    def is_custom(self) -> bool:
        return self.type.startswith(CUSTOM_PREFIX)

    @property
    def custom_name(self) -> str | None:
        return self.type[len(CUSTOM_PREFIX) :] if self.is_custom else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready canonical form (normalised values; ``None`` fields omitted)."""
        out: dict[str, Any] = {
            "type": self.type,
            "occurred_at": format_timestamp(self.occurred_at),
            "object": {"type": self.object_type, "id": self.object_id},
        }
        if self.customer is not None:
            c = self.customer
            customer = {
                "id": c.id,
                "email": c.email,
                "phone": c.phone,
                "name": c.name,
                "locale": c.locale,
                "birthday": c.birthday.isoformat() if c.birthday else None,
            }
            out["customer"] = {k: v for k, v in customer.items() if v is not None}
        if self.order is not None:
            o = self.order
            order = {
                "total": o.total,
                "subtotal": o.subtotal,
                "shipping": o.shipping,
                "discount": o.discount,
                "currency": o.currency,
            }
            out["order"] = {k: v for k, v in order.items() if v is not None}
        if self.refund is not None:
            r = self.refund
            refund = {"amount": r.amount, "currency": r.currency, "order_id": r.order_id, "reason": r.reason}
            out["refund"] = {k: v for k, v in refund.items() if v is not None}
        if self.referral is not None:
            ref = self.referral
            referral: dict[str, Any] = {}
            if ref.code_raw is not None:
                referral["code"] = ref.code_raw
            if ref.coupon_codes:
                referral["coupon_codes"] = list(ref.coupon_codes)
            if ref.utm is not None:
                utm = {
                    "source": ref.utm.source,
                    "medium": ref.utm.medium,
                    "campaign": ref.utm.campaign,
                    "content": ref.utm.content,
                    "term": ref.utm.term,
                }
                referral["utm"] = {k: v for k, v in utm.items() if v is not None}
            if ref.landing_url is not None:
                referral["landing_url"] = ref.landing_url
            out["referral"] = referral
        if self.data:
            out["data"] = copy.deepcopy(dict(self.data))
        return out


# --------------------------------------------------------------------------- parsing


def format_timestamp(value: datetime) -> str:
    """RFC 3339 UTC with ``Z`` (microseconds only when present)."""
    value = value.astimezone(UTC)
    # isoformat pads the year to four digits; strftime("%Y") does not below 1000.
    text = value.replace(microsecond=0, tzinfo=None).isoformat()
    if value.microsecond:
        text += f".{value.microsecond:06d}".rstrip("0")
    return text + "Z"


def _fail(errors: list[dict[str, str]]) -> ValidationFailed:
    summary = "; ".join(f"{e['path']} {e['message']}" for e in errors)
    return ValidationFailed(f"Invalid event: {summary}", details={"errors": errors})


def _schema_errors(exc: Any) -> list[dict[str, str]]:
    errors = schema_errors(exc)
    if exc.rule == "pattern" and errors[0]["path"] == "$.occurred_at":
        return [field_error("$.occurred_at", "must be an RFC 3339 timestamp like 2026-11-23T10:00:00Z")]
    return errors


def _parse_timestamp(value: str, path: str, now: datetime | None) -> datetime:
    # Not before 2000-01-01, at most safe_json.MAX_AHEAD after the server clock (documented limits).
    return safe_json.timestamp(value, path, now=now)


def _optional_str(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _parse_customer(
    raw: Mapping[str, Any], default_region: str, lenient: bool, warnings: list[dict[str, str]]
) -> Customer:
    email = _optional_str(raw.get("email"))
    if email is not None:
        try:
            email = normalize_email(email, path="$.customer.email")
        except ValidationFailed as exc:
            if not lenient:
                raise
            warnings.extend(exc.details["errors"])
            email = None
    phone = _optional_str(raw.get("phone"))
    if phone is not None:
        try:
            phone = normalize_phone(phone, default_region, path="$.customer.phone")
        except ValidationFailed as exc:
            if not lenient:
                raise
            warnings.extend(exc.details["errors"])
            phone = None
    birthday: date | None = None
    birthday_raw = raw.get("birthday")
    if birthday_raw:
        try:
            birthday = date.fromisoformat(birthday_raw)
        except ValueError:
            raise _fail([field_error("$.customer.birthday", "is not a valid date")]) from None
        if not EARLIEST_BIRTHDAY <= birthday <= date.today() + timedelta(days=1):
            raise _fail([field_error("$.customer.birthday",
                                     f"must be between {EARLIEST_BIRTHDAY.isoformat()} and today")])
    return Customer(
        id=_optional_str(raw.get("id")),
        email=email,
        phone=phone,
        name=_optional_str(raw.get("name")),
        locale=raw.get("locale"),
        birthday=birthday,
    )


def _int_or_none(value: Any) -> int | None:
    # JSON Schema counts 10.0 as an integer; store a real int.
    return None if value is None else int(value)


def _parse_referral(raw: Mapping[str, Any]) -> Referral:
    code_raw = raw.get("code")
    coupons: list[str] = []
    for coupon in raw.get("coupon_codes", []):
        normalised = normalize_coupon_code(coupon)
        if normalised is not None and normalised not in coupons:
            coupons.append(normalised)
    utm_raw = raw.get("utm")
    utm = (
        Utm(**{key: _optional_str(utm_raw.get(key)) for key in ("source", "medium", "campaign", "content", "term")})
        if utm_raw
        else None
    )
    return Referral(
        # An unusable code is kept raw but not rejected: the order itself is real.
        code=normalize_code(code_raw) if code_raw else None,
        code_raw=code_raw if code_raw else None,
        coupon_codes=tuple(coupons),
        utm=utm,
        # Stored normalised (punycode host, percent-encoded path); one that cannot be is dropped.
        landing_url=urls.to_header_url(raw.get("landing_url")),
    )


def parse_event(
    body: Any, *, default_region: str = "RU", lenient_identifiers: bool = False, now: datetime | None = None
) -> CanonicalEvent:
    """Validate and normalise one canonical event.

    Raises ``ValidationFailed`` with ``details.errors[*].path`` in JSONPath
    (``$.order.total``); unknown types fail on ``$.type``. ``default_region`` resolves
    national phone formats. ``occurred_at`` must lie in ``safe_json.timestamp``'s window
    (2000-01-01 to ``now`` + 5 minutes; ``now`` defaults to ``clock.utcnow()``). ``body``
    should come from ``safe_json.loads`` (nesting, numbers, strings, duplicate keys).
    ``lenient_identifiers=True`` (for adapters relaying
    third-party data they cannot fix) drops an invalid e-mail/phone into
    ``warnings`` instead of rejecting the whole event.
    """
    if not isinstance(body, dict):
        raise _fail([field_error("$", "must be a JSON object")])
    event_type = body.get("type")
    if not isinstance(event_type, str):
        raise _fail([field_error("$.type", "is required and must be a string")])
    key = schema_key(event_type)
    if key is None:
        allowed = ", ".join(EVENT_TYPES)
        raise _fail([field_error("$.type", f"is not a known event type ({allowed} or custom.<name>)")])

    import fastjsonschema

    try:
        _validator(key)(body)
    except fastjsonschema.JsonSchemaValueException as exc:
        raise _fail(_schema_errors(exc)) from None

    warnings: list[dict[str, str]] = []
    occurred_at = _parse_timestamp(body["occurred_at"], "$.occurred_at", now)

    customer = None
    if body.get("customer") is not None:
        customer = _parse_customer(body["customer"], default_region, lenient_identifiers, warnings)
    if event_type in _NEEDS_IDENTIFIER and (customer is None or not (customer.id or customer.email or customer.phone)):
        raise _fail([field_error("$.customer", "must contain at least one of id, email, phone")])

    order = None
    if body.get("order") is not None:
        o = body["order"]
        order = OrderAmounts(
            total=int(o["total"]),
            currency=o["currency"],
            subtotal=_int_or_none(o.get("subtotal")),
            shipping=_int_or_none(o.get("shipping")),
            discount=_int_or_none(o.get("discount")),
        )
    refund = None
    if body.get("refund") is not None:
        r = body["refund"]
        refund = Refund(
            amount=int(r["amount"]),
            currency=r["currency"],
            order_id=r["order_id"],
            reason=_optional_str(r.get("reason")),
        )
    referral = _parse_referral(body["referral"]) if body.get("referral") is not None else None

    return CanonicalEvent(
        type=event_type,
        occurred_at=occurred_at,
        object_type=body["object"]["type"],
        object_id=body["object"]["id"],
        customer=customer,
        order=order,
        refund=refund,
        referral=referral,
        # Deep copy + read-only view: the frozen event must not change under the caller.
        data=MappingProxyType(copy.deepcopy(body.get("data") or {})),
        warnings=tuple(MappingProxyType(w) for w in warnings),
    )


def _key_part(value: str) -> str:
    # Escape the separator (and the escape char) so no id can forge another key.
    return value.replace("%", "%25").replace("|", "%7C")


def business_key(program_id: str, partner_id: str, event: CanonicalEvent) -> str:
    """``program|partner|object type|object id|event type``: identity of a business fact.

    Deduplicating on the delivery id (``webhook-id``) is not enough: a partner's
    retry queue, a re-sync job or two adapters may deliver the *same* payment under
    different delivery ids. Keyed on what happened (this partner's order 1001 was
    paid), the fact counts once whatever the delivery. The event type is part of the
    key because "order 1001 paid" and "order 1001 cancelled" are different facts.
    Contains partner object ids only, no personal data.
    """
    return "|".join(
        _key_part(part) for part in (program_id, partner_id, event.object_type, event.object_id, event.type)
    )
