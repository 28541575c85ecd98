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
      "context": {"ip", "user_agent", "device_id", "payment_fingerprint", "shipping_address"},  # fraud signals
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

Modules: ``types`` (names, object types, limits), ``schemas`` (JSON Schemas, compiled lazily),
``model`` (the frozen dataclasses), ``parse`` (body -> event) and ``keys`` (the business key).
Import from the package: the names below are its public surface.
"""

from chalicelib.domain.events.keys import business_key, order_paid_business_key
from chalicelib.domain.events.model import CanonicalEvent, Context, Customer, OrderAmounts, Referral, Refund, Utm
from chalicelib.domain.events.parse import parse_event
from chalicelib.domain.events.schemas import EVENT_SCHEMAS, schema_key
from chalicelib.domain.events.types import (
    CUSTOM_PREFIX,
    CUSTOM_SCHEMA_KEY,
    CUSTOM_TYPE_RE,
    DEAL_WON,
    EVENT_TYPES,
    LEAD_CREATED,
    MAX_AMOUNT,
    MEMBER_SIGNUP,
    OBJECT_TYPES,
    ORDER_CANCELLED,
    ORDER_PAID,
    ORDER_REFUNDED,
    SUPPORTED_LOCALES,
)

__all__ = [
    "CUSTOM_PREFIX", "CUSTOM_SCHEMA_KEY", "CUSTOM_TYPE_RE", "DEAL_WON", "EVENT_SCHEMAS", "EVENT_TYPES",
    "LEAD_CREATED", "MAX_AMOUNT", "MEMBER_SIGNUP", "OBJECT_TYPES", "ORDER_CANCELLED", "ORDER_PAID",
    "ORDER_REFUNDED", "SUPPORTED_LOCALES", "CanonicalEvent", "Context", "Customer", "OrderAmounts", "Referral", "Refund",
    "Utm", "business_key", "order_paid_business_key", "parse_event", "schema_key",
]
