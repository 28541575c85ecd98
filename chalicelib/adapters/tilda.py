"""Tilda form webhooks → ``lead.created``.

Docs: https://help-ru.tilda.cc/forms/webhook (Russian) / https://help.tilda.cc/forms/webhook:
Tilda posts each submitted form (``application/x-www-form-urlencoded`` by default, JSON if chosen)
with the form's fields under their variable names (``Name``, ``Email``, ``Phone`` by default), plus
``tranid`` (the submission id) and ``formid``; when a webhook is added it sends ``test=test``.

* Authenticity: Tilda cannot sign; the webhook URL carries our random token (checked before the
  body is read). The ``test=test`` ping → 200, ignored.
* Every submission → ``lead.created`` keyed by ``tranid``; e-mail and phone normalised as
  everywhere (an unusable one is dropped with a warning). The ref code comes from a hidden field
  (``ref`` by default, ``settings.ref_field`` to change) filled from the page URL's ``?ref=`` or
  the Sarafan cookie; hidden fields ``utm_source`` … ``utm_term`` are kept as UTM.
* Limitations: Tilda sends no timestamp (the time of receipt is used) and no customer id.
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
    customer_block,
    has_identifier,
    malformed,
    text,
)
from chalicelib.adapters.body import form_body, json_body

DEFAULT_FIELDS = {"email": ("Email", "email", "E-mail"), "phone": ("Phone", "phone", "tel"),
                  "name": ("Name", "name")}


def _body(inbound: Inbound) -> dict[str, Any]:
    kind = (inbound.header("content-type") or "").split(";")[0].strip().lower()
    body = json_body(inbound.raw_body) if kind == "application/json" else form_body(inbound.raw_body)
    if not isinstance(body, dict):
        raise malformed("the body must be an object of form fields")
    return body


def _field(body: dict[str, Any], names: Sequence[str], limit: int = 320) -> str | None:
    for name in names:
        value = text(body.get(name), limit)
        if value:
            return value
    return None


class Tilda:
    platform = "tilda"
    auth = "token"
    content_types = ("application/x-www-form-urlencoded", "application/json")
    topics = ("form submission (Site settings → Forms → Webhook)",)
    docs_url = "https://help-ru.tilda.cc/forms/webhook"
    settings_schema: dict[str, Any] = {
        "type": "object",
        "properties": {
            "ref_field": {"type": "string", "minLength": 1, "maxLength": 64,
                          "description": "Hidden form field with the ref code (default ref)"},
            "email_field": {"type": "string", "minLength": 1, "maxLength": 64},
            "phone_field": {"type": "string", "minLength": 1, "maxLength": 64},
            "name_field": {"type": "string", "minLength": 1, "maxLength": 64},
        },
    }

    def verify(self, inbound: Inbound, secrets: Sequence[bytes], ctx: Context) -> None:
        """Token platform: the URL token is checked by the integration service."""

    def translate(self, inbound: Inbound, ctx: Context) -> Translation:
        body = _body(inbound)
        if body.get("test") == "test" and not body.get("tranid"):
            return Translation(ignored="Tilda test request")
        tranid = text(body.get("tranid"), 128)
        if tranid is None:
            raise malformed("tranid is missing")
        label = f"form#{text(body.get('formid'), 64) or '?'}/tranid#{tranid}"
        fields = {kind: ((ctx.settings[f"{kind}_field"],) if ctx.settings.get(f"{kind}_field") else names)
                  for kind, names in DEFAULT_FIELDS.items()}
        customer = customer_block(email=_field(body, fields["email"]), phone=_field(body, fields["phone"], 64),
                                  name=_field(body, fields["name"], 200))
        if not has_identifier(customer):
            return Translation(items=[Skipped(label, "the form has no e-mail or phone")], delivery_id=tranid)
        event: dict[str, Any] = {"type": "lead.created", "occurred_at": common.timestamp(None, ctx.now),
                                 "object": {"type": "lead", "id": tranid}, "customer": customer}
        referral: dict[str, Any] = {}
        code = text(body.get(ctx.settings.get("ref_field") or "ref"), 64)
        if code:
            referral["code"] = code
        utm = {k: v for k in common.UTM_KEYS if (v := text(body.get(f"utm_{k}")))}
        if utm:
            referral["utm"] = utm
        if referral:
            event["referral"] = referral
        return Translation(items=[Mapped(event, label)], delivery_id=tranid)


ADAPTER = Tilda()
