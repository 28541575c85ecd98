"""InSales order webhooks → canonical events.

Docs: https://api.insales.ru/#webhook (webhooks ``orders/create`` and ``orders/update`` with the
order resource as JSON: ``id``, ``number``, ``financial_status``, ``fulfillment_status``,
``total_price``, ``currency_code``, ``client``, ``fields_values``, ``first_source_url``…) and
https://api.insales.ru/#order.

* Authenticity: InSales does not sign webhooks; the webhook URL carries our random token.
* ``financial_status: paid`` → ``order.paid``; ``fulfillment_status: declined`` (cancelled) →
  ``order.cancelled``; ``fulfillment_status: returned`` → ``order.refunded`` of the whole order
  (InSales keeps no separate refund objects in the webhook). Anything else is skipped.
* Customer: ``client.id``, ``client.email``, ``client.phone``. Ref code: an order field
  (``fields_values``) named ``ref`` (``settings.ref_field``), else ``?ref=`` of the order's
  ``first_source_url`` / ``source_url``; ``discount_code`` is passed as a coupon code. ``currency_code`` ``RUR`` is RUB.
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
    customer_block,
    has_identifier,
    malformed,
    require_text,
    text,
)
from chalicelib.adapters.body import json_body

_CURRENCY_ALIASES = {"RUR": "RUB"}


class InSales:
    platform = "insales"
    auth = "token"
    content_types = ("application/json",)
    topics = ("orders/create", "orders/update")
    docs_url = "https://api.insales.ru/#webhook"
    settings_schema: dict[str, Any] = {
        "type": "object",
        "properties": {
            "ref_field": {"type": "string", "minLength": 1, "maxLength": 64,
                          "description": "Order field (fields_values name) with the ref code (default ref)"},
        },
    }

    def verify(self, inbound: Inbound, secrets: Sequence[bytes], ctx: Context) -> None:
        """Token platform: the URL token is checked by the integration service."""

    def translate(self, inbound: Inbound, ctx: Context) -> Translation:
        body = json_body(inbound.raw_body)
        order = as_dict(body.get("order") if isinstance(body, dict) and isinstance(body.get("order"), dict) else body,
                        "the body")
        order_id = require_text(order.get("id"), "order id")
        currency = common.currency_code(_CURRENCY_ALIASES.get(str(order.get("currency_code", "")).upper(),
                                                              order.get("currency_code") or ctx.currency))
        total = common.amount(order.get("total_price"), currency, "total_price")
        assert total is not None
        if total < 0:
            raise malformed("total_price must not be negative")
        client = order.get("client") if isinstance(order.get("client"), dict) else {}
        assert isinstance(client, dict)
        name = " ".join(p for p in (text(client.get("name")), text(client.get("surname"))) if p) or None
        customer = customer_block(id=client.get("id"), email=client.get("email"), phone=client.get("phone"),
                                  name=name)
        updated = common.timestamp(order.get("updated_at"), ctx.now)
        label = f"order#{order_id}"
        amounts = {"total": total, "currency": currency}
        items: list[Mapped | Skipped] = []
        fulfillment = text(order.get("fulfillment_status"), 40)
        if fulfillment == "declined":
            event: dict[str, Any] = {"type": "order.cancelled", "occurred_at": updated,
                                     "object": {"type": "order", "id": order_id}, "order": amounts}
            if customer:
                event["customer"] = customer
            return Translation(items=[Mapped(event, label)], delivery_id=label)
        if order.get("financial_status") == "paid":
            if has_identifier(customer):
                paid: dict[str, Any] = {"type": "order.paid",
                                        "occurred_at": common.timestamp(order.get("paid_at") or order.get("updated_at"),
                                                                        ctx.now),
                                        "object": {"type": "order", "id": order_id}, "customer": customer,
                                        "order": amounts}
                referral = _referral(order, ctx)
                if referral:
                    paid["referral"] = referral
                items.append(Mapped(paid, label))
            else:
                items.append(Skipped(label, "the order has no client e-mail, phone or id"))
        if fulfillment == "returned" and total > 0:
            items.append(Mapped({"type": "order.refunded", "occurred_at": updated,
                                 "object": {"type": "refund", "id": f"{order_id}-returned"},
                                 "refund": {"amount": total, "currency": currency, "order_id": order_id,
                                            "reason": "returned"}}, f"{label}/returned"))
        if not items:
            items.append(Skipped(label, "the order is not paid, cancelled or returned"))
        return Translation(items=items, delivery_id=label)


def _referral(order: dict[str, Any], ctx: Context) -> dict[str, Any] | None:
    wanted = str(ctx.settings.get("ref_field") or "ref").lower()
    referral: dict[str, Any] = {}
    values = order.get("fields_values")
    for field in values if isinstance(values, list) else []:
        if isinstance(field, dict) and str(field.get("name", "")).lower() == wanted:
            code = text(field.get("value"), 64)
            if code:
                referral["code"] = code
                break
    for url_field in ("first_source_url", "source_url"):
        found = common.referral_from_url(order.get(url_field))
        if "code" not in referral and "code" in found:
            referral["code"] = found["code"]
        if "utm" not in referral and "utm" in found:
            referral["utm"] = found["utm"]
    coupon = text(order.get("discount_code"), 64)
    if coupon:
        referral["coupon_codes"] = [coupon]
    return referral or None


ADAPTER = InSales()
