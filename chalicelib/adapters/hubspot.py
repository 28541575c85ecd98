"""HubSpot webhooks (v3 signatures) → canonical events.

Docs: https://developers.hubspot.com/docs/api/webhooks (payload: a JSON array of up to 100
events with ``eventId``, ``subscriptionType``, ``objectId``, ``propertyName``, ``propertyValue``,
``occurredAt``…) and https://developers.hubspot.com/docs/api/webhooks/validating-requests
(``X-HubSpot-Signature-v3``).

* Authenticity: base64 HMAC-SHA256 under the app's client secret of
  ``method + URI + body + X-HubSpot-Request-Timestamp``, where the URI is the public
  ``webhook_url`` HubSpot called (not the Lambda's internal host). A timestamp older than
  5 minutes (or as far in the future) is refused.
* ``contact.creation`` → ``lead.created`` (the contact id is the customer id);
  ``deal.propertyChange`` of ``dealstage`` to ``settings.won_stage`` (default ``closedwon``) →
  ``deal.won``. Other subscriptions and stages are skipped. Every event of the array is handled
  on its own: one bad event does not lose the others.
* HubSpot sends only ids: a won deal carries neither its amount nor its contact, a new contact
  not its e-mail or ref code. With ``settings.api_token`` (a private app token with the CRM read
  scopes) they are fetched asynchronously from the CRM v3 API (deal with associated contacts,
  then the contact: ``email``, ``phone``, ``firstname``, ``lastname`` and the property named in
  ``settings.ref_property``, default ``sarafan_ref``); without it a new contact is a lead known
  only by its id and a won deal cannot be attributed (skipped, with the reason).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from chalicelib.adapters import common, money
from chalicelib.adapters.base import (
    Context,
    Fetch,
    Inbound,
    Mapped,
    Skipped,
    Translation,
    b64_hmac_matches,
    customer_block,
    malformed,
    text,
    unauthorized,
)
from chalicelib.adapters.body import json_body

MAX_AGE_MS = 5 * 60 * 1000
MAX_EVENTS = 100
API_BASE = "https://api.hubapi.com"
DEFAULT_WON_STAGE = "closedwon"
DEFAULT_REF_PROPERTY = "sarafan_ref"


class HubSpot:
    platform = "hubspot"
    auth = "secret"
    content_types = ("application/json",)
    topics = ("contact.creation", "deal.propertyChange (property: dealstage)")
    docs_url = "https://developers.hubspot.com/docs/api/webhooks"
    api_hosts = ("api.hubapi.com",)
    settings_schema: dict[str, Any] = {
        "type": "object",
        "properties": {
            "won_stage": {"type": "string", "minLength": 1, "maxLength": 100,
                          "description": "The deal stage id that means won (default closedwon)"},
            "ref_property": {"type": "string", "pattern": "^[a-z0-9_]{1,100}$",
                             "description": "Contact property holding the ref code (default sarafan_ref)"},
        },
    }

    def verify(self, inbound: Inbound, secrets: Sequence[bytes], ctx: Context) -> None:
        signature = inbound.header("x-hubspot-signature-v3")
        timestamp = inbound.header("x-hubspot-request-timestamp")
        if signature is None or timestamp is None or not timestamp.isdigit() or len(timestamp) > 16:
            raise unauthorized()
        now_ms = int(ctx.now.timestamp() * 1000)
        if abs(now_ms - int(timestamp)) > MAX_AGE_MS:
            raise unauthorized("The webhook timestamp is too old (more than 5 minutes)")
        message = inbound.method.upper().encode() + inbound.url.encode() + inbound.raw_body + timestamp.encode()
        if not b64_hmac_matches(secrets, message, signature):
            raise unauthorized()

    def translate(self, inbound: Inbound, ctx: Context) -> Translation:
        body = json_body(inbound.raw_body)
        if not isinstance(body, list):
            raise malformed("the body must be a JSON array of events")
        if len(body) > MAX_EVENTS:
            raise malformed(f"more than {MAX_EVENTS} events")
        items: list[Mapped | Skipped | Fetch] = []
        fetch = ctx.can_fetch
        for index, raw in enumerate(body):
            items.append(_event(index, raw, ctx, fetch))
        return Translation(items=items, delivery_id=None)


def _event(index: int, raw: Any, ctx: Context, fetch: bool) -> Mapped | Skipped | Fetch:
    if not isinstance(raw, dict):
        return Skipped(f"#{index}", "not an event object")
    kind = text(raw.get("subscriptionType") or raw.get("eventType"), 100) or "?"
    object_id = text(raw.get("objectId"), 64)
    platform_event_id = text(raw.get("eventId"), 64)
    event_id = platform_event_id or str(index)
    label = f"{kind}#{object_id or '?'}/event#{event_id}"
    if object_id is None:
        return Skipped(label, "the event has no objectId")
    occurred = common.timestamp(raw.get("occurredAt"), ctx.now)
    if kind == "contact.creation":
        if fetch:
            return Fetch(label, "contact", object_id, occurred, event_id, platform_event_id)
        return Mapped({"type": "lead.created", "occurred_at": occurred, "object": {"type": "lead", "id": object_id},
                       "customer": {"id": object_id}}, label)
    if kind == "deal.propertyChange" and raw.get("propertyName") == "dealstage":
        won = ctx.settings.get("won_stage") or DEFAULT_WON_STAGE
        if raw.get("propertyValue") != won:
            return Skipped(label, "the deal moved to a stage that is not the won stage")
        if fetch:
            return Fetch(label, "deal", object_id, occurred, event_id, platform_event_id)
        return Skipped(label, "a won deal carries no contact or amount; set settings.api_token to fetch them")
    return Skipped(label, f"{kind[:60]} is not used")


# --------------------------------------------------------------------------- CRM v3 API (async fetch)


def fetch_plan(fetch: Fetch, ctx: Context) -> list[tuple[str, str]]:
    """The first request of a fetch: ``[(name, url)]``."""
    ref_property = ctx.settings.get("ref_property") or DEFAULT_REF_PROPERTY
    contact_props = f"email,phone,firstname,lastname,{ref_property}"
    if fetch.object_type == "deal":
        return [("deal", f"{API_BASE}/crm/v3/objects/deals/{fetch.object_id}"
                         "?properties=amount,deal_currency_code,dealstage,closedate&associations=contacts")]
    return [("contact", f"{API_BASE}/crm/v3/objects/contacts/{fetch.object_id}?properties={contact_props}")]


def contact_url(contact_id: str, ctx: Context) -> str:
    ref_property = ctx.settings.get("ref_property") or DEFAULT_REF_PROPERTY
    return (f"{API_BASE}/crm/v3/objects/contacts/{contact_id}"
            f"?properties=email,phone,firstname,lastname,{ref_property}")


def deal_contact_id(deal: Any) -> str | None:
    associations = deal.get("associations") if isinstance(deal, dict) else None
    contacts = associations.get("contacts") if isinstance(associations, dict) else None
    results = contacts.get("results") if isinstance(contacts, dict) else None
    for result in results if isinstance(results, list) else []:
        if isinstance(result, dict) and text(result.get("id"), 64):
            return text(result.get("id"), 64)
    return None


def _contact_parts(contact: Any, ctx: Context) -> tuple[dict[str, Any], dict[str, Any] | None]:
    props = contact.get("properties") if isinstance(contact, dict) else None
    if not isinstance(props, dict):
        raise malformed("the contact has no properties")
    name = " ".join(p for p in (text(props.get("firstname")), text(props.get("lastname"))) if p) or None
    customer = customer_block(id=contact.get("id"), email=props.get("email"), phone=props.get("phone"), name=name)
    code = text(props.get(ctx.settings.get("ref_property") or DEFAULT_REF_PROPERTY), 64)
    return customer, ({"code": code} if code else None)


def fetched_event(fetch: Fetch, responses: dict[str, Any], ctx: Context) -> Mapped | Skipped:
    """The canonical event once the CRM answered (``responses``: ``{"deal": …, "contact": …}``)."""
    contact = responses.get("contact")
    if fetch.object_type == "contact":
        customer, referral = _contact_parts(contact, ctx)
        event: dict[str, Any] = {"type": "lead.created", "occurred_at": fetch.occurred_at,
                                 "object": {"type": "lead", "id": fetch.object_id}, "customer": customer}
        if referral:
            event["referral"] = referral
        return Mapped(event, fetch.label)
    deal = responses.get("deal")
    props = deal.get("properties") if isinstance(deal, dict) else None
    if not isinstance(props, dict):
        raise malformed("the deal has no properties")
    if contact is None:
        return Skipped(fetch.label, "the won deal has no associated contact")
    customer, referral = _contact_parts(contact, ctx)
    event = {"type": "deal.won", "occurred_at": common.timestamp(props.get("closedate"), None, "closedate")
             if props.get("closedate") else fetch.occurred_at,
             "object": {"type": "deal", "id": fetch.object_id}, "customer": customer}
    currency = text(props.get("deal_currency_code"), 3) or ctx.currency
    minor = money.to_minor(props.get("amount"), currency) if props.get("amount") not in (None, "") else None
    if minor is not None and minor >= 0:
        event["order"] = {"total": minor, "currency": currency.upper()}
    if referral:
        event["referral"] = referral
    return Mapped(event, fetch.label)


ADAPTER = HubSpot()
