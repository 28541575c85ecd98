"""JSON Schemas of the canonical events (draft-07), compiled lazily once per type (ahead of time: ``domain.codecache``)."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any, Final

from chalicelib.domain.events.types import (
    CUSTOM_SCHEMA_KEY,
    CUSTOM_TYPE_RE,
    DEAL_WON,
    LEAD_CREATED,
    MAX_AMOUNT,
    MEMBER_SIGNUP,
    OBJECT_TYPES,
    ORDER_CANCELLED,
    ORDER_PAID,
    ORDER_REFUNDED,
    SUPPORTED_LOCALES,
)
from chalicelib.domain.safe_json import SINGLE_LINE
from chalicelib.domain.urls import HTTP_URL

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

# Fraud signals (docs/fraud.md): only their salted hashes are stored, never the values.
_SIGNAL_TEXT = {"type": ["string", "null"], "maxLength": 256, "pattern": SINGLE_LINE}
_CONTEXT: dict[str, Any] = {
    "type": "object",
    "properties": {
        "ip": {"type": ["string", "null"], "maxLength": 64, "pattern": SINGLE_LINE},
        "user_agent": {"type": ["string", "null"], "maxLength": 512, "pattern": SINGLE_LINE},
        "device_id": _SIGNAL_TEXT,
        "payment_fingerprint": _SIGNAL_TEXT,
        "shipping_address": {"anyOf": [
            {"type": "null"},
            {"type": "string", "maxLength": 512},
            {"type": "object", "maxProperties": 20,
             "additionalProperties": {"type": ["string", "null"], "maxLength": 256, "pattern": SINGLE_LINE}},
        ]},
    },
    "additionalProperties": False,
}

#: The ``context`` block (fraud signals), shared by events and landing invites (``POST /v1/landing/invites``).
CONTEXT_SCHEMA: Final[dict[str, Any]] = _CONTEXT

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
    blocks = {"customer": _CUSTOMER, "order": _ORDER, "refund": _REFUND, "referral": _REFERRAL,
              "context": _CONTEXT}
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
    MEMBER_SIGNUP: _event_schema(MEMBER_SIGNUP, requires=("customer",), allows=("referral", "context")),
    LEAD_CREATED: _event_schema(LEAD_CREATED, requires=("customer",), allows=("referral", "context")),
    DEAL_WON: _event_schema(DEAL_WON, requires=("customer",), allows=("order", "referral", "context")),
    ORDER_PAID: _event_schema(ORDER_PAID, requires=("customer", "order"), allows=("referral", "context")),
    ORDER_REFUNDED: _event_schema(ORDER_REFUNDED, requires=("refund",), allows=("customer",)),
    ORDER_CANCELLED: _event_schema(ORDER_CANCELLED, allows=("customer", "order")),
    CUSTOM_SCHEMA_KEY: _event_schema(None, allows=("customer", "order", "referral", "context")),
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
    # Built on first use only, one type at a time: from the code generated at package time
    # (domain.codecache), else compiled now (tens of milliseconds per type).
    from chalicelib.domain import codecache

    return codecache.validator(EVENT_SCHEMAS[key])

