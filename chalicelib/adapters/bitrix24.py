"""Bitrix24 outgoing webhooks / event handlers → canonical events.

Docs: https://apidocs.bitrix24.com/api-reference/events/index.html (the event POST: form-encoded
``event=ONCRMDEALUPDATE``, ``data[FIELDS][ID]``, ``ts``, ``auth[domain]``, ``auth[member_id]``,
``auth[application_token]``…) and https://apidocs.bitrix24.com/api-reference/crm/deals/crm-deal-get.html.

* Authenticity: ``auth[application_token]`` must equal the application token Bitrix24 showed
  when the outgoing webhook was created (``settings.secret``, sealed with KMS), compared in constant
  time; ``auth[domain]`` must be ``settings.portal_domain``. The token sits in the body, so the
  form is parsed (bounded) to find it, and nothing else is read before it matches.
* ``ONCRMLEADADD`` → ``lead.created`` (customer ``b24-lead-<id>``); ``ONCRMDEALUPDATE`` /
  ``ONCRMDEALADD`` whose ``STAGE_ID`` is ``settings.won_stage`` (default ``WON``) → ``deal.won``
  with ``OPPORTUNITY`` / ``CURRENCY_ID`` as the amount and ``CONTACT_ID`` as the customer
  (``b24-contact-<id>``), **when the payload carries them** (business-process robots can send
  fields). Bitrix24's standard events send only ``data[FIELDS][ID]``: the stage, amount and
  contact are then fetched with ``crm.deal.get`` / ``crm.contact.get`` through the portal's inbound
  webhook URL (``settings.api_token`` = that URL) in the asynchronous step; without it such an
  event is skipped with the reason.
* Bitrix24's ``ts`` is not signed by anything, so no staleness check is made on it.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from typing import Any

from chalicelib.adapters import common
from chalicelib.adapters.base import (
    Context,
    Fetch,
    Inbound,
    Mapped,
    Skipped,
    Translation,
    customer_block,
    malformed,
    text,
    unauthorized,
)
from chalicelib.adapters.body import form_body

DEFAULT_WON_STAGE = "WON"
LEAD_EVENTS = ("ONCRMLEADADD",)
DEAL_EVENTS = ("ONCRMDEALUPDATE", "ONCRMDEALADD")


def _auth(body: dict[str, Any]) -> dict[str, Any]:
    auth = body.get("auth")
    return auth if isinstance(auth, dict) else {}


class Bitrix24:
    platform = "bitrix24"
    auth = "secret"
    content_types = ("application/x-www-form-urlencoded",)
    topics = ("ONCRMLEADADD", "ONCRMDEALUPDATE", "ONCRMDEALADD")
    docs_url = "https://apidocs.bitrix24.com/api-reference/events/index.html"
    settings_schema: dict[str, Any] = {
        "type": "object",
        "required": ["portal_domain"],
        "properties": {
            "portal_domain": {"type": "string", "pattern": r"^[a-z0-9][a-z0-9.\-]{1,200}$",
                              "description": "The portal, e.g. zerno.bitrix24.ru"},
            "won_stage": {"type": "string", "minLength": 1, "maxLength": 64,
                          "description": "Deal STAGE_ID that means won (default WON; C<n>:WON in pipeline n)"},
        },
    }

    def verify(self, inbound: Inbound, secrets: Sequence[bytes], ctx: Context) -> None:
        body = form_body(inbound.raw_body)
        auth = _auth(body)
        presented = str(auth.get("application_token") or "").encode()
        ok = False
        for secret in secrets:
            ok |= hmac.compare_digest(presented, secret)
        if not presented or not ok:
            raise unauthorized("The application token is missing or invalid")
        if str(auth.get("domain") or "").lower() != ctx.settings.get("portal_domain"):
            raise unauthorized("The event comes from another portal than the one connected")

    def translate(self, inbound: Inbound, ctx: Context) -> Translation:
        body = form_body(inbound.raw_body)
        event = text(body.get("event"), 64)
        if event is None:
            raise malformed("event is missing")
        event = event.upper()
        if event not in LEAD_EVENTS + DEAL_EVENTS:
            return Translation(ignored=f"event {event} is not used")
        data = body.get("data") if isinstance(body.get("data"), dict) else {}
        assert isinstance(data, dict)
        fields = data.get("FIELDS") if isinstance(data.get("FIELDS"), dict) else {}
        assert isinstance(fields, dict)
        object_id = text(fields.get("ID"), 32)
        if object_id is None:
            raise malformed("data[FIELDS][ID] is missing")
        occurred = common.timestamp(body.get("ts"), ctx.now)
        label = f"{event}#{object_id}"
        delivery = f"{event}:{object_id}:{text(body.get('ts'), 20) or ''}"
        if event in LEAD_EVENTS:
            lead: dict[str, Any] = {"type": "lead.created", "occurred_at": occurred,
                                    "object": {"type": "lead", "id": object_id},
                                    "customer": customer_block(id=f"b24-lead-{object_id}")}
            return Translation(items=[Mapped(lead, label)], delivery_id=delivery)
        # Bitrix24 sends no event id; a redelivery repeats the event, the id and ``ts`` (a later change
        # of the same deal has another ``ts``).
        ack_id = delivery if text(body.get("ts"), 20) else None
        return Translation(items=[_deal(object_id, fields, occurred, label, ctx, ack_id)], delivery_id=delivery)


def _deal(deal_id: str, fields: dict[str, Any], occurred: str, label: str, ctx: Context,
          ack_id: str | None = None) -> Mapped | Skipped | Fetch:
    stage = text(fields.get("STAGE_ID"), 64)
    contact_id = text(fields.get("CONTACT_ID"), 32)
    if stage is None or contact_id is None:
        if ctx.can_fetch:
            return Fetch(label, "deal", deal_id, occurred, deal_id, ack_id)
        return Skipped(label, "the event carries only the deal id; set settings.api_token (the portal's inbound "
                              "webhook URL) to fetch the stage, amount and contact")
    return deal_event(deal_id, fields, occurred, label, ctx)


def deal_event(deal_id: str, fields: dict[str, Any], occurred: str, label: str, ctx: Context,
               contact: dict[str, Any] | None = None) -> Mapped | Skipped:
    """``deal.won`` from a deal's fields (from the event or ``crm.deal.get``), if its stage is won."""
    won = ctx.settings.get("won_stage") or DEFAULT_WON_STAGE
    if text(fields.get("STAGE_ID"), 64) != won:
        return Skipped(label, "the deal is not in the won stage")
    contact_id = text(fields.get("CONTACT_ID"), 32)
    if contact_id is None:
        return Skipped(label, "the won deal has no contact")
    email = phone = name = None
    if contact:
        raw_emails, raw_phones = contact.get("EMAIL"), contact.get("PHONE")
        emails: list[Any] = raw_emails if isinstance(raw_emails, list) else []
        phones: list[Any] = raw_phones if isinstance(raw_phones, list) else []
        email = next((text(e.get("VALUE"), 320) for e in emails if isinstance(e, dict)), None)
        phone = next((text(p.get("VALUE"), 64) for p in phones if isinstance(p, dict)), None)
        name = " ".join(p for p in (text(contact.get("NAME")), text(contact.get("LAST_NAME"))) if p) or None
    event: dict[str, Any] = {"type": "deal.won", "occurred_at": occurred, "object": {"type": "deal", "id": deal_id},
                             "customer": customer_block(id=f"b24-contact-{contact_id}", email=email, phone=phone,
                                                        name=name)}
    currency = text(fields.get("CURRENCY_ID"), 3)
    currency = currency.upper() if currency else ctx.currency
    amount = common.amount(fields.get("OPPORTUNITY"), currency, "OPPORTUNITY", required=False)
    if amount is not None and amount >= 0:
        event["order"] = {"total": amount, "currency": currency}
    return Mapped(event, label)


ADAPTER = Bitrix24()
