"""Shopify webhooks → canonical events.

Docs: https://shopify.dev/docs/apps/build/webhooks (delivery, headers, HMAC verification)
and https://shopify.dev/docs/api/webhooks?reference=toml (topics and their sample payloads:
``orders/paid``, ``orders/create``, ``orders/cancelled``, ``refunds/create``, ``customers/create``).

* Authenticity: ``X-Shopify-Hmac-Sha256`` is the base64 HMAC-SHA256 of the raw body under the
  app's client secret; ``X-Shopify-Shop-Domain`` must be the configured ``shop_domain`` (one app
  secret signs for every shop that installed the app). Shopify signs no timestamp, and retries a
  failed delivery for hours with the same body, so there is no staleness check.
* ``orders/paid`` → ``order.paid``; ``orders/create`` → ``order.paid`` only when the order is
  already paid (otherwise acknowledged and skipped: ``orders/paid`` carries the whole order
  again); either way both are the same fact (order id + ``order.paid``) and reward once.
* ``orders/cancelled`` → ``order.cancelled``; ``refunds/create`` → ``order.refunded`` with the sum
  of the refund's successful ``refund`` transactions (each refund is its own fact);
  ``customers/create`` → ``member.signup``.
* Ref code: a cart/note attribute (``ref``, ``sarafan_ref``, ``referral_code``, or the names in
  ``settings.ref_attributes``), else the ``ref`` query parameter of ``landing_site``; every
  discount code is passed as a coupon code (a member's coupon attributes the order).
* Fraud signals (``context``, docs/fraud.md): ``browser_ip`` / ``client_details.browser_ip``,
  ``client_details.user_agent`` and the ``shipping_address`` (location fields only). Shopify sends
  no customer device id or card fingerprint in order webhooks (the order's ``device_id`` is the
  shop's POS register, not the buyer's): those come only with canonical events.
* Money: ``total_price`` etc. are decimal strings in the shop currency (``currency``); they become
  minor units by the currency's exponent without floats.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from chalicelib.adapters import common
from chalicelib.adapters.base import (
    Context,
    Inbound,
    Mapped,
    Skipped,
    Translation,
    as_dict,
    b64_hmac_matches,
    context_block,
    customer_block,
    has_identifier,
    malformed,
    require_text,
    text,
    unauthorized,
)
from chalicelib.adapters.body import json_body

DEFAULT_REF_ATTRIBUTES = ("ref", "sarafan_ref", "referral_code")
PAID_STATUSES = frozenset({"paid", "partially_refunded", "refunded"})


class Shopify:
    platform = "shopify"
    auth = "secret"
    content_types = ("application/json",)
    topics = ("orders/create", "orders/paid", "orders/cancelled", "refunds/create", "customers/create")
    docs_url = "https://shopify.dev/docs/apps/build/webhooks"
    settings_schema: dict[str, Any] = {
        "type": "object",
        "required": ["shop_domain"],
        "properties": {
            "shop_domain": {"type": "string", "pattern": r"^[a-z0-9][a-z0-9\-]{0,60}\.myshopify\.com$",
                            "description": "The shop's permanent domain, e.g. zerno.myshopify.com"},
            "ref_attributes": {"type": "array", "maxItems": 10,
                               "items": {"type": "string", "minLength": 1, "maxLength": 64},
                               "description": "Cart/note attribute names that carry the ref code"},
        },
    }

    def verify(self, inbound: Inbound, secrets: Sequence[bytes], ctx: Context) -> None:
        if not b64_hmac_matches(secrets, inbound.raw_body, inbound.header("x-shopify-hmac-sha256")):
            raise unauthorized()
        shop = (inbound.header("x-shopify-shop-domain") or "").lower()
        if shop != ctx.settings.get("shop_domain"):
            raise unauthorized("The webhook comes from another shop than the one connected")

    def translate(self, inbound: Inbound, ctx: Context) -> Translation:
        topic = inbound.header("x-shopify-topic")
        delivery = inbound.header("x-shopify-webhook-id") or inbound.header("x-shopify-event-id")
        if topic is None:
            raise malformed("X-Shopify-Topic header is missing")
        if topic not in self.topics:
            return Translation(ignored=f"topic {topic[:64]} is not used", delivery_id=delivery)
        body = as_dict(json_body(inbound.raw_body), "the body")
        if topic == "customers/create":
            item: Mapped | Skipped = _signup(body, ctx)
        elif topic == "refunds/create":
            item = _refund(body, ctx)
        else:
            item = _order(topic, body, ctx)
        return Translation(items=[item], delivery_id=delivery)


def _customer(order: dict[str, Any]) -> dict[str, Any]:
    raw = order.get("customer") if isinstance(order.get("customer"), dict) else {}
    assert isinstance(raw, dict)
    name = " ".join(p for p in (text(raw.get("first_name")), text(raw.get("last_name"))) if p) or None
    return customer_block(
        id=raw.get("id"),
        email=common.first_text(order.get("email"), order.get("contact_email"), raw.get("email"), limit=320),
        phone=common.first_text(order.get("phone"), raw.get("phone"), limit=64),
        name=name,
    )


def _referral(order: dict[str, Any], ctx: Context) -> dict[str, Any] | None:
    names = {n.lower() for n in ctx.settings.get("ref_attributes") or DEFAULT_REF_ATTRIBUTES}
    referral: dict[str, Any] = {}
    attributes = order.get("note_attributes")
    for attribute in attributes if isinstance(attributes, list) else []:
        if isinstance(attribute, dict) and str(attribute.get("name", "")).lower() in names:
            code = text(attribute.get("value"), 64)
            if code:
                referral["code"] = code
                break
    landing = common.referral_from_url(order.get("landing_site"))
    if "code" not in referral and "code" in landing:
        referral["code"] = landing["code"]
    if "utm" in landing:
        referral["utm"] = landing["utm"]
    coupons: list[str] = []
    codes = order.get("discount_codes")
    for discount in codes if isinstance(codes, list) else []:
        code = text(discount.get("code"), 64) if isinstance(discount, dict) else None
        if code and len(coupons) < 20:
            coupons.append(code)
    if coupons:
        referral["coupon_codes"] = coupons
    landing_url = common.absolute_url(order.get("landing_site"), ctx.settings.get("shop_domain"))
    if landing_url:
        referral["landing_url"] = landing_url
    return referral or None


def _shipping(order: dict[str, Any], currency: str) -> int | None:
    price_set = order.get("total_shipping_price_set")
    shop_money = price_set.get("shop_money") if isinstance(price_set, dict) else None
    if isinstance(shop_money, dict):
        return common.amount(shop_money.get("amount"), currency, "shipping", required=False)
    return None


def _order(topic: str, order: dict[str, Any], ctx: Context) -> Mapped | Skipped:
    order_id = require_text(order.get("id"), "order id")
    label = f"{topic}#{order_id}"
    if topic == "orders/create" and order.get("financial_status") not in PAID_STATUSES:
        return Skipped(label, "the order is not paid yet; orders/paid will count it")
    currency = common.currency_code(order.get("currency"))
    total = common.amount(order.get("total_price"), currency, "total_price")
    amounts = {
        "total": total,
        "currency": currency,
        "subtotal": common.amount(order.get("subtotal_price"), currency, "subtotal_price", required=False),
        "discount": common.amount(order.get("total_discounts"), currency, "total_discounts", required=False),
        "shipping": _shipping(order, currency),
    }
    amounts = {k: v for k, v in amounts.items() if v is not None and (not isinstance(v, int) or v >= 0)}
    if "total" not in amounts:
        raise malformed("total_price must not be negative")
    customer = _customer(order)
    if topic == "orders/cancelled":
        occurred = common.timestamp(order.get("cancelled_at"), ctx.now)
        event: dict[str, Any] = {"type": "order.cancelled", "occurred_at": occurred,
                                 "object": {"type": "order", "id": order_id}, "order": amounts}
        if customer:
            event["customer"] = customer
        return Mapped(event, label)
    if not has_identifier(customer):
        return Skipped(label, "the order has no customer, e-mail or phone to attribute it to")
    paid_at = order.get("updated_at") if topic == "orders/paid" else order.get("processed_at")
    event = {"type": "order.paid", "occurred_at": common.timestamp(paid_at or order.get("created_at"), ctx.now),
             "object": {"type": "order", "id": order_id}, "customer": customer, "order": amounts}
    referral = _referral(order, ctx)
    if referral:
        event["referral"] = referral
    signals = _context(order)
    if signals:
        event["context"] = signals
    return Mapped(event, label)


_ADDRESS_KEYS = ("address1", "address2", "city", "zip", "province_code", "province", "country_code", "country")


def _context(order: dict[str, Any]) -> dict[str, Any] | None:
    """Fraud signals: ``browser_ip`` (or ``client_details.browser_ip``), ``client_details.user_agent``,
    the shipping address's location fields (names and phone left out)."""
    details = order.get("client_details") if isinstance(order.get("client_details"), dict) else {}
    assert isinstance(details, dict)
    shipping = order.get("shipping_address")
    address = {k: shipping.get(k) for k in _ADDRESS_KEYS} if isinstance(shipping, dict) else None
    return context_block(ip=order.get("browser_ip") or details.get("browser_ip"),
                         user_agent=details.get("user_agent"), shipping_address=address)


def _refund(refund: dict[str, Any], ctx: Context) -> Mapped | Skipped:
    refund_id = require_text(refund.get("id"), "refund id")
    order_id = require_text(refund.get("order_id"), "order_id")
    label = f"refunds/create#{refund_id}"
    total = 0
    currency: str | None = None
    transactions = refund.get("transactions")
    for tx in transactions if isinstance(transactions, list) else []:
        if not isinstance(tx, dict) or tx.get("kind") != "refund" or tx.get("status") != "success":
            continue
        tx_currency = common.currency_code(tx.get("currency"), "transaction currency")
        if currency is not None and tx_currency != currency:
            raise malformed("refund transactions in more than one currency")
        currency = tx_currency
        value = common.amount(tx.get("amount"), tx_currency, "transaction amount")
        assert value is not None
        total += abs(value)
    if currency is None or total <= 0:
        return Skipped(label, "the refund returned no money (no successful refund transaction)")
    refund_block: dict[str, Any] = {"amount": total, "currency": currency, "order_id": order_id}
    note = text(refund.get("note"), 256)
    if note:
        refund_block["reason"] = note
    event = {"type": "order.refunded",
             "occurred_at": common.timestamp(refund.get("processed_at") or refund.get("created_at"), ctx.now,
                                             "processed_at"),
             "object": {"type": "refund", "id": refund_id},
             "refund": refund_block}
    return Mapped(event, label)


def _signup(customer: dict[str, Any], ctx: Context) -> Mapped | Skipped:
    customer_id = require_text(customer.get("id"), "customer id")
    label = f"customers/create#{customer_id}"
    name = " ".join(p for p in (text(customer.get("first_name")), text(customer.get("last_name"))) if p) or None
    block = customer_block(id=customer_id, email=customer.get("email"), phone=customer.get("phone"), name=name)
    event = {"type": "member.signup", "occurred_at": common.timestamp(customer.get("created_at"), ctx.now),
             "object": {"type": "customer", "id": customer_id}, "customer": block}
    return Mapped(event, label)


ADAPTER = Shopify()
