"""Parsing: a JSON body in, a validated, normalised :class:`CanonicalEvent` out."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from types import MappingProxyType
from typing import Any, Final

from chalicelib.domain import safe_json, urls
from chalicelib.domain.codes import normalize_code, normalize_coupon_code
from chalicelib.domain.errors import ValidationFailed, field_error
from chalicelib.domain.events.model import CanonicalEvent, Context, Customer, OrderAmounts, Referral, Refund, Utm
from chalicelib.domain.events.schemas import _NEEDS_IDENTIFIER, _validator, schema_key
from chalicelib.domain.events.types import EVENT_TYPES
from chalicelib.domain.identity import normalize_email, normalize_phone
from chalicelib.domain.validation import schema_errors

#: Birthdays before this are typos (and would not round-trip through every system).
EARLIEST_BIRTHDAY: Final = date(1900, 1, 1)


def _fail(errors: list[dict[str, str]]) -> ValidationFailed:
    summary = "; ".join(f"{e['path']} {e['message']}" for e in errors)
    return ValidationFailed(f"Invalid event: {summary}", details={"errors": errors})


def _schema_errors(exc: Any) -> list[dict[str, str]]:
    errors = schema_errors(exc)
    if exc.rule == "pattern" and errors[0]["path"] == "$.occurred_at":
        return [field_error("$.occurred_at", "must be an RFC 3339 timestamp like 2026-11-23T10:00:00Z")]
    return errors


def _parse_timestamp(value: str, path: str, now: datetime) -> datetime:
    # Not before 2000-01-01, at most safe_json.MAX_AHEAD after the server clock (documented limits).
    return safe_json.timestamp(value, path, now=now)


def _optional_str(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _parse_customer(raw: Mapping[str, Any], default_region: str, now: datetime) -> Customer:
    email = _optional_str(raw.get("email"))
    if email is not None:
        email = normalize_email(email, path="$.customer.email")
    phone = _optional_str(raw.get("phone"))
    if phone is not None:
        phone = normalize_phone(phone, default_region, path="$.customer.phone")
    birthday: date | None = None
    birthday_raw = raw.get("birthday")
    if birthday_raw:
        try:
            birthday = date.fromisoformat(birthday_raw)
        except ValueError:
            raise _fail([field_error("$.customer.birthday", "is not a valid date")]) from None
        if not EARLIEST_BIRTHDAY <= birthday <= now.date() + timedelta(days=1):
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


def _parse_context(raw: Mapping[str, Any]) -> Context | None:
    from chalicelib.domain import signals

    ip = _optional_str(raw.get("ip"))
    if ip is not None:
        ip = signals.normalize_ip(ip)
        if ip is None:
            raise _fail([field_error("$.context.ip", "is not an IPv4 or IPv6 address")])
    context = Context(
        ip=ip,
        user_agent=signals.normalize_text(raw.get("user_agent")),
        device_id=signals.normalize_text(raw.get("device_id")),
        payment_fingerprint=signals.normalize_text(raw.get("payment_fingerprint")),
        shipping_address=signals.normalize_address(raw.get("shipping_address")),
    )
    return context if any(vars(context).values()) else None


def parse_context(raw: Mapping[str, Any]) -> Context | None:
    """A ``context`` block already valid against ``schemas.CONTEXT_SCHEMA`` (events and landing invites),
    normalised; ``None`` when it carries no signal. An IP that is not one is a ``$.context.ip`` error."""
    return _parse_context(raw)


def parse_event(body: Any, *, default_region: str = "RU", now: datetime) -> CanonicalEvent:
    """Validate and normalise one canonical event.

    Raises ``ValidationFailed`` with ``details.errors[*].path`` in JSONPath
    (``$.order.total``); unknown types fail on ``$.type``. ``default_region`` resolves
    national phone formats. ``occurred_at`` must lie in ``safe_json.timestamp``'s window
    (2000-01-01 to ``now`` + 5 minutes; ``now`` is the caller's clock, which also bounds birthdays). ``body``
    should come from ``safe_json.loads`` (nesting, numbers, strings, duplicate keys).
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

    from chalicelib.domain.codecache import schema_exceptions

    try:
        _validator(key)(body)
    except schema_exceptions() as exc:
        raise _fail(_schema_errors(exc)) from None

    occurred_at = _parse_timestamp(body["occurred_at"], "$.occurred_at", now)

    customer = None
    if body.get("customer") is not None:
        customer = _parse_customer(body["customer"], default_region, now)
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
    context = _parse_context(body["context"]) if body.get("context") is not None else None

    return CanonicalEvent(
        type=event_type,
        occurred_at=occurred_at,
        object_type=body["object"]["type"],
        object_id=body["object"]["id"],
        customer=customer,
        order=order,
        refund=refund,
        referral=referral,
        context=context,
        # Deep copy + read-only view: the frozen event must not change under the caller.
        data=MappingProxyType(copy.deepcopy(body.get("data") or {})),
    )

