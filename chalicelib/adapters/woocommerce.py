"""WooCommerce webhooks → canonical events.

Docs: https://woocommerce.com/document/webhooks/ (topics, delivery, ``X-WC-Webhook-*`` headers,
the signature) and https://woocommerce.github.io/woocommerce-rest-api-docs/#order-properties
(the payload is the REST API v3 resource: order, customer).

* Authenticity: ``X-WC-Webhook-Signature`` is base64 HMAC-SHA256 of the raw body with the
  webhook's secret. The ping WooCommerce sends when a webhook is saved is unsigned and
  form-encoded (``webhook_id=12``): it is acknowledged (200, ignored) and nothing is read.
  WooCommerce signs no timestamp: no staleness check applies.
* ``order.created`` / ``order.updated`` with status ``processing`` or ``completed`` (or those in
  ``settings.paid_statuses``) → ``order.paid``; ``refunded`` → ``order.paid`` plus the refunds;
  every entry of the order's ``refunds`` → ``order.refunded`` (its own fact, amount ``-total``);
  ``cancelled`` → ``order.cancelled``; other statuses (pending, on-hold, failed) are skipped.
  ``order.updated`` fires on every change, so the same fact arrives many times: dedupe is on the
  business fact, never on ``X-WC-Webhook-Delivery-ID`` (which collides within a second).
* ``customer.created`` → ``member.signup``.
* Ref code: an order meta entry ``sarafan_ref`` / ``_sarafan_ref`` / ``ref`` (or the keys in
  ``settings.ref_meta_keys``), else the ``ref`` parameter of WooCommerce's order attribution
  landing page (``_wc_order_attribution_session_entry``, WooCommerce 8.5+); coupon codes
  (``coupon_lines[].code``) are passed as coupon codes; UTM from ``_wc_order_attribution_utm_*``.
* Fraud signals (``context``, docs/fraud.md): ``customer_ip_address``, ``customer_user_agent`` and
  the ``shipping`` address (location fields only); WooCommerce sends no device or card fingerprint.
"""

from __future__ import annotations

import re
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

PING = re.compile(rb"^webhook_id=[0-9]{1,20}$")
DEFAULT_PAID = ("processing", "completed")
DEFAULT_REF_KEYS = ("sarafan_ref", "_sarafan_ref", "ref")


class WooCommerce:
    platform = "woocommerce"
    auth = "secret"
    content_types = ("application/json", "application/x-www-form-urlencoded")
    topics = ("order.created", "order.updated", "customer.created")
    docs_url = "https://woocommerce.com/document/webhooks/"
    settings_schema: dict[str, Any] = {
        "type": "object",
        "properties": {
            "paid_statuses": {"type": "array", "minItems": 1, "maxItems": 10,
                              "items": {"type": "string", "pattern": "^[a-z0-9_-]{1,40}$"},
                              "description": "Order statuses that mean paid (default processing, completed)"},
            "ref_meta_keys": {"type": "array", "maxItems": 10,
                              "items": {"type": "string", "minLength": 1, "maxLength": 64},
                              "description": "Order meta keys that carry the ref code"},
        },
    }

    def verify(self, inbound: Inbound, secrets: Sequence[bytes], ctx: Context) -> None:
        signature = inbound.header("x-wc-webhook-signature")
        if signature is None and PING.match(inbound.raw_body.strip()):
            return  # the creation ping: carries nothing, changes nothing (translate ignores it)
        if not b64_hmac_matches(secrets, inbound.raw_body, signature):
            raise unauthorized()

    def translate(self, inbound: Inbound, ctx: Context) -> Translation:
        delivery = inbound.header("x-wc-webhook-delivery-id")
        if inbound.header("x-wc-webhook-signature") is None:
            return Translation(ignored="webhook creation ping", delivery_id=delivery)
        topic = inbound.header("x-wc-webhook-topic")
        if topic is None:
            raise malformed("X-WC-Webhook-Topic header is missing")
        if topic not in self.topics:
            return Translation(ignored=f"topic {topic[:64]} is not used", delivery_id=delivery)
        body = as_dict(json_body(inbound.raw_body), "the body")
        if topic == "customer.created":
            return Translation(items=[_signup(body, ctx)], delivery_id=delivery)
        return Translation(items=_order(topic, body, ctx), delivery_id=delivery)


def _meta(order: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    entries = order.get("meta_data")
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, dict) and isinstance(entry.get("key"), str):
            out.setdefault(entry["key"], entry.get("value"))
    return out


def _referral(order: dict[str, Any], ctx: Context) -> dict[str, Any] | None:
    meta = _meta(order)
    referral: dict[str, Any] = {}
    for key in ctx.settings.get("ref_meta_keys") or DEFAULT_REF_KEYS:
        code = text(meta.get(key), 64)
        if code:
            referral["code"] = code
            break
    landing = meta.get("_wc_order_attribution_session_entry")
    from_url = common.referral_from_url(landing)
    if "code" not in referral and "code" in from_url:
        referral["code"] = from_url["code"]
    utm = {k: v for k in common.UTM_KEYS if (v := text(meta.get(f"_wc_order_attribution_utm_{k}")))}
    utm = utm or from_url.get("utm", {})
    if utm:
        referral["utm"] = utm
    url = common.absolute_url(landing, None)
    if url:
        referral["landing_url"] = url
    coupons: list[str] = []
    lines = order.get("coupon_lines")
    for line in lines if isinstance(lines, list) else []:
        code = text(line.get("code"), 64) if isinstance(line, dict) else None
        if code and len(coupons) < 20:
            coupons.append(code)
    if coupons:
        referral["coupon_codes"] = coupons
    return referral or None


_ADDRESS_KEYS = ("address_1", "address_2", "city", "postcode", "state", "country")


def _context(order: dict[str, Any]) -> dict[str, Any] | None:
    """Fraud signals: ``customer_ip_address``, ``customer_user_agent``, the ``shipping`` address's
    location fields (names, company and phone left out)."""
    shipping = order.get("shipping")
    address = {k: shipping.get(k) for k in _ADDRESS_KEYS} if isinstance(shipping, dict) else None
    return context_block(ip=order.get("customer_ip_address"), user_agent=order.get("customer_user_agent"),
                         shipping_address=address)


def _customer(order: dict[str, Any]) -> dict[str, Any]:
    billing = order.get("billing") if isinstance(order.get("billing"), dict) else {}
    assert isinstance(billing, dict)
    customer_id = order.get("customer_id")
    name = " ".join(p for p in (text(billing.get("first_name")), text(billing.get("last_name"))) if p) or None
    return customer_block(id=customer_id if customer_id not in (0, "0", None) else None,
                          email=billing.get("email"), phone=billing.get("phone"), name=name)


def _order(topic: str, order: dict[str, Any], ctx: Context) -> list[Mapped | Skipped]:
    order_id = require_text(order.get("id"), "order id")
    status = text(order.get("status"), 40) or ""
    label = f"{topic}#{order_id}"
    currency = common.currency_code(order.get("currency"))
    total = common.amount(order.get("total"), currency, "total")
    assert total is not None
    if total < 0:
        raise malformed("total must not be negative")
    amounts: dict[str, Any] = {"total": total, "currency": currency}
    for field, name in (("shipping", "shipping_total"), ("discount", "discount_total")):
        value = common.amount(order.get(name), currency, name, required=False)
        if value is not None and value >= 0:
            amounts[field] = value
    customer = _customer(order)
    modified = common.timestamp(order.get("date_modified_gmt"), ctx.now)
    paid_statuses = tuple(ctx.settings.get("paid_statuses") or DEFAULT_PAID)
    items: list[Mapped | Skipped] = []
    if status == "cancelled":
        event: dict[str, Any] = {"type": "order.cancelled", "occurred_at": modified,
                                 "object": {"type": "order", "id": order_id}, "order": amounts}
        if customer:
            event["customer"] = customer
        return [Mapped(event, label)]
    if status in paid_statuses or (status == "refunded" and order.get("date_paid_gmt")):
        if has_identifier(customer):
            paid: dict[str, Any] = {"type": "order.paid",
                                    "occurred_at": common.timestamp(order.get("date_paid_gmt"), None, "date_paid_gmt")
                                    if order.get("date_paid_gmt") else modified,
                                    "object": {"type": "order", "id": order_id}, "customer": customer,
                                    "order": amounts}
            referral = _referral(order, ctx)
            if referral:
                paid["referral"] = referral
            signals = _context(order)
            if signals:
                paid["context"] = signals
            items.append(Mapped(paid, label))
        else:
            items.append(Skipped(label, "the order has no customer, e-mail or phone to attribute it to"))
    elif status != "refunded":
        return [Skipped(label, f"status {status[:40]!r} is not paid")]
    refunds = order.get("refunds")
    for refund in refunds if isinstance(refunds, list) else []:
        if not isinstance(refund, dict):
            raise malformed("refunds entries must be objects")
        refund_id = require_text(refund.get("id"), "refund id")
        value = common.amount(refund.get("total"), currency, "refund total")
        assert value is not None
        if value == 0:
            continue
        block: dict[str, Any] = {"amount": abs(value), "currency": currency, "order_id": order_id}
        reason = text(refund.get("reason"))
        if reason:
            block["reason"] = reason
        items.append(Mapped({"type": "order.refunded", "occurred_at": modified,
                             "object": {"type": "refund", "id": refund_id}, "refund": block},
                            f"{topic}#{order_id}/refund#{refund_id}"))
    return items


def _signup(customer: dict[str, Any], ctx: Context) -> Mapped | Skipped:
    customer_id = require_text(customer.get("id"), "customer id")
    label = f"customer.created#{customer_id}"
    billing = customer.get("billing") if isinstance(customer.get("billing"), dict) else {}
    assert isinstance(billing, dict)
    name = " ".join(p for p in (text(customer.get("first_name")), text(customer.get("last_name"))) if p) or None
    block = customer_block(id=customer_id, email=customer.get("email"), phone=billing.get("phone"), name=name)
    return Mapped({"type": "member.signup", "occurred_at": common.timestamp(customer.get("date_created_gmt"), ctx.now),
                   "object": {"type": "customer", "id": customer_id}, "customer": block}, label)


ADAPTER = WooCommerce()
