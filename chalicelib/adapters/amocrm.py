"""amoCRM (Kommo) webhooks → canonical events.

Docs: https://www.amocrm.ru/developers/content/crm_platform/webhooks-format (form-encoded
``leads[add][0][id]``, ``leads[status][0][id|status_id|pipeline_id|old_status_id|price]``,
``account[subdomain]``…; contacts as ``contacts[add][0][…]`` with ``custom_fields`` entries).

* Authenticity: amoCRM cannot sign; the webhook URL carries our random token.
* ``leads[add]`` → ``lead.created``; ``leads[status]`` into a won status → ``deal.won`` with
  ``price`` as the amount (in the program's currency: amoCRM sends none). Won statuses:
  ``settings.won_status_ids``, ``{"<pipeline id>": [status ids], "*": [...]}``; default
  ``{"*": [142]}`` (142 is amoCRM's system "won" status in every pipeline).
* In amoCRM a lead *is* the deal, so Sarafan's customer for it is the lead (``amo-lead-<id>``):
  the ref code captured at ``leads[add]`` (a custom field named ``ref`` or ``settings.ref_field``)
  attributes the won deal of the same lead. A ``contacts[add]`` / ``contacts[update]`` payload's
  e-mail and phone (``custom_fields`` with ``code`` EMAIL / PHONE) become a ``member.signup``.
* The status hook carries no contact e-mail or phone (the lead id links it). With
  ``settings.api_token`` (a long-lived token of an amoCRM integration) and ``settings.subdomain``,
  a won lead is acknowledged at once and completed asynchronously from API v4
  (https://www.amocrm.ru/developers/content/crm_platform/leads-api, ``GET /api/v4/leads/{id}?with=contacts``;
  https://www.amocrm.ru/developers/content/crm_platform/contacts-api, ``GET /api/v4/contacts/{id}``):
  the lead's current price and ref field, and the main contact's e-mail and phone
  (``custom_fields_values`` with ``field_code`` EMAIL / PHONE), so the member is identified by them too.
"""

from __future__ import annotations

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
    has_identifier,
    malformed,
    text,
)
from chalicelib.adapters.body import form_body

DEFAULT_WON = {"*": [142]}
API_DOMAINS = ("amocrm.ru", "amocrm.com", "kommo.com")
MAX_ITEMS = 50


def _entries(group: Any) -> list[dict[str, Any]]:
    if not isinstance(group, dict):
        return []
    out = [v for k, v in sorted(group.items(), key=lambda kv: (len(kv[0]), kv[0])) if isinstance(v, dict)]
    if len(out) > MAX_ITEMS:
        raise malformed(f"more than {MAX_ITEMS} entries in one group")
    return out


def _custom_fields(entity: dict[str, Any]) -> list[dict[str, Any]]:
    return _entries(entity.get("custom_fields"))


def _field_values(field: dict[str, Any]) -> list[str]:
    return [v for e in _entries(field.get("values")) if (v := text(e.get("value"), 320))]


def _ref_code(lead: dict[str, Any], ctx: Context) -> str | None:
    wanted = str(ctx.settings.get("ref_field") or "ref").lower()
    for field in _custom_fields(lead):
        if wanted in (str(field.get("name", "")).lower(), str(field.get("id", "")), str(field.get("code", "")).lower()):
            values = _field_values(field)
            if values:
                return values[0][:64]
    return None


def _won(status_id: str | None, pipeline_id: str | None, ctx: Context) -> bool:
    table = ctx.settings.get("won_status_ids") or DEFAULT_WON
    wanted = list(table.get(pipeline_id or "", [])) + list(table.get("*", []))
    return status_id is not None and status_id in {str(s) for s in wanted}


def _lead_customer(lead_id: str) -> dict[str, Any]:
    return {"id": f"amo-lead-{lead_id}"}


class AmoCRM:
    platform = "amocrm"
    auth = "token"
    content_types = ("application/x-www-form-urlencoded",)
    topics = ("leads: added", "leads: status changed", "contacts: added")
    docs_url = "https://www.amocrm.ru/developers/content/crm_platform/webhooks-format"
    settings_schema: dict[str, Any] = {
        "type": "object",
        "properties": {
            "won_status_ids": {"type": "object", "maxProperties": 50,
                               "propertyNames": {"pattern": r"^(\*|[0-9]{1,20})$"},
                               "additionalProperties": {"type": "array", "maxItems": 20,
                                                        "items": {"type": "integer", "minimum": 1}},
                               "description": "Won statuses per pipeline id ('*': any pipeline); default {'*': [142]}"},
            "ref_field": {"type": "string", "minLength": 1, "maxLength": 64,
                          "description": "Lead custom field (name, id or code) with the ref code (default ref)"},
            "subdomain": {"type": "string", "pattern": "^[a-z0-9-]{1,63}$",
                          "description": "The account's subdomain; deliveries from another account are refused"},
            "api_domain": {"enum": list(API_DOMAINS),
                           "description": "Where the account's API lives: amocrm.ru (default), amocrm.com or kommo.com"},
        },
        # The API host is <subdomain>.<api_domain>: a token alone cannot be used.
        "dependencies": {"api_token": ["subdomain"]},
    }

    def verify(self, inbound: Inbound, secrets: Sequence[bytes], ctx: Context) -> None:
        """Token platform: the URL token is checked by the integration service."""

    def translate(self, inbound: Inbound, ctx: Context) -> Translation:
        body = form_body(inbound.raw_body)
        account = body.get("account") if isinstance(body.get("account"), dict) else {}
        assert isinstance(account, dict)
        expected = ctx.settings.get("subdomain")
        if expected and account.get("subdomain") != expected:
            raise malformed("the delivery comes from another amoCRM account")
        leads = body.get("leads") if isinstance(body.get("leads"), dict) else {}
        contacts = body.get("contacts") if isinstance(body.get("contacts"), dict) else {}
        assert isinstance(leads, dict) and isinstance(contacts, dict)
        items: list[Mapped | Skipped | Fetch] = []
        for lead in _entries(leads.get("add")):
            items.append(_lead_added(lead, ctx))
        for lead in _entries(leads.get("status")):
            items.append(_status(lead, ctx))
        for contact in _entries(contacts.get("add")) + _entries(contacts.get("update")):
            items.append(_contact(contact, ctx))
        if not items:
            return Translation(ignored="no lead or contact event Sarafan uses")
        return Translation(items=items)


def _lead_added(lead: dict[str, Any], ctx: Context) -> Mapped:
    lead_id = text(lead.get("id"), 32)
    if lead_id is None:
        raise malformed("leads[add][…][id] is missing")
    event: dict[str, Any] = {"type": "lead.created",
                             "occurred_at": common.timestamp(lead.get("created_at") or lead.get("date_create"), ctx.now),
                             "object": {"type": "lead", "id": lead_id}, "customer": _lead_customer(lead_id)}
    code = _ref_code(lead, ctx)
    if code:
        event["referral"] = {"code": code}
    return Mapped(event, f"leads.add#{lead_id}")


def _status(lead: dict[str, Any], ctx: Context) -> Mapped | Skipped | Fetch:
    lead_id = text(lead.get("id"), 32)
    if lead_id is None:
        raise malformed("leads[status][…][id] is missing")
    label = f"leads.status#{lead_id}"
    if not _won(text(lead.get("status_id"), 20), text(lead.get("pipeline_id"), 20), ctx):
        return Skipped(label, "the lead moved to a status that is not won")
    occurred = common.timestamp(lead.get("updated_at") or lead.get("last_modified"), ctx.now)
    modified = text(lead.get("updated_at") or lead.get("last_modified"), 64)
    if ctx.can_fetch and ctx.settings.get("subdomain"):
        # amoCRM sends no event id; a redelivery repeats the lead, its status and its modification time.
        ack_id = f"{lead_id}:{text(lead.get('status_id'), 20)}:{modified}" if modified else None
        return Fetch(label, "deal", lead_id, occurred, lead_id, ack_id)
    event: dict[str, Any] = {"type": "deal.won", "occurred_at": occurred,
                             "object": {"type": "deal", "id": lead_id}, "customer": _lead_customer(lead_id)}
    price = common.amount(lead.get("price"), ctx.currency, "price", required=False)
    if price is not None and price >= 0:
        event["order"] = {"total": price, "currency": ctx.currency}
    code = _ref_code(lead, ctx)
    if code:
        event["referral"] = {"code": code}
    return Mapped(event, label)


def _contact(contact: dict[str, Any], ctx: Context) -> Mapped | Skipped:
    contact_id = text(contact.get("id"), 32)
    if contact_id is None:
        raise malformed("contacts[…][id] is missing")
    label = f"contacts#{contact_id}"
    found: dict[str, str] = {}
    for field in _custom_fields(contact):
        code = str(field.get("code", "")).upper()
        values = _field_values(field)
        if code in ("EMAIL", "PHONE") and values:
            found.setdefault(code.lower(), values[0])
    customer = customer_block(id=f"amo-contact-{contact_id}", email=found.get("email"), phone=found.get("phone"),
                              name=contact.get("name"))
    if not has_identifier(customer):
        return Skipped(label, "the contact has no identifier")
    return Mapped({"type": "member.signup",
                   "occurred_at": common.timestamp(contact.get("created_at") or contact.get("date_create"), ctx.now),
                   "object": {"type": "customer", "id": f"amo-contact-{contact_id}"}, "customer": customer}, label)


def _api_base(ctx: Context) -> str:
    domain = ctx.settings.get("api_domain") or API_DOMAINS[0]
    return f"https://{ctx.settings['subdomain']}.{domain}/api/v4"


def lead_url(lead_id: str, ctx: Context) -> str:
    return f"{_api_base(ctx)}/leads/{lead_id}?with=contacts"


def contact_url(contact_id: str, ctx: Context) -> str:
    return f"{_api_base(ctx)}/contacts/{contact_id}"


def _embedded_contacts(lead: Any) -> list[dict[str, Any]]:
    embedded = lead.get("_embedded") if isinstance(lead, dict) else None
    contacts = embedded.get("contacts") if isinstance(embedded, dict) else None
    return [c for c in contacts[:MAX_ITEMS] if isinstance(c, dict)] if isinstance(contacts, list) else []


def main_contact_id(lead: Any) -> str | None:
    """The lead's main contact (``is_main``), else its first one; ``None`` when it has none."""
    contacts = _embedded_contacts(lead)
    chosen = next((c for c in contacts if c.get("is_main") is True), contacts[0] if contacts else None)
    return text(chosen.get("id"), 32) if chosen else None


def _v4_fields(entity: Any) -> list[dict[str, Any]]:
    fields = entity.get("custom_fields_values") if isinstance(entity, dict) else None
    return [f for f in fields[:200] if isinstance(f, dict)] if isinstance(fields, list) else []


def _v4_values(field: dict[str, Any]) -> list[str]:
    values = field.get("values")
    if not isinstance(values, list):
        return []
    return [v for e in values[:20] if isinstance(e, dict) and (v := text(e.get("value"), 320))]


def _v4_ref_code(lead: dict[str, Any], ctx: Context) -> str | None:
    wanted = str(ctx.settings.get("ref_field") or "ref").lower()
    for field in _v4_fields(lead):
        names = (str(field.get("field_name", "")).lower(), str(field.get("field_id", "")),
                 str(field.get("field_code") or "").lower())
        if wanted in names and (values := _v4_values(field)):
            return values[0][:64]
    return None


def fetched_event(fetch: Fetch, lead: Any, contact: Any, ctx: Context) -> Mapped:
    """The won deal once API v4 answered: the lead's price and ref, the main contact's e-mail and phone."""
    if not isinstance(lead, dict) or text(lead.get("id"), 32) != fetch.object_id:
        raise malformed("the amoCRM API answered with another or no lead")
    customer: dict[str, Any] = _lead_customer(fetch.object_id)
    if isinstance(contact, dict):
        found: dict[str, str] = {}
        for field in _v4_fields(contact):
            code = str(field.get("field_code") or "").upper()
            values = _v4_values(field)
            if code in ("EMAIL", "PHONE") and values:
                found.setdefault(code.lower(), values[0])
        customer = customer_block(id=customer["id"], email=found.get("email"), phone=found.get("phone"),
                                  name=contact.get("name"))
    event: dict[str, Any] = {"type": "deal.won", "occurred_at": fetch.occurred_at,
                             "object": {"type": "deal", "id": fetch.object_id}, "customer": customer}
    price = common.amount(lead.get("price"), ctx.currency, "price", required=False)
    if price is not None and price >= 0:
        event["order"] = {"total": price, "currency": ctx.currency}
    ref = _v4_ref_code(lead, ctx)
    if ref:
        event["referral"] = {"code": ref}
    return Mapped(event, fetch.label)


ADAPTER = AmoCRM()
