"""Outgoing partner webhooks: endpoint registration, signing secrets, the delivery log (docs/coalition.md).

Every function takes the caller's :class:`Principal` and checks the scope first: the operator, or the
partner that owns the endpoints (another partner of the program: 403; another program: 404). The
tenant always comes from the key.

* The target URL is checked when it is registered or changed (``domain.partner_hooks.check_target``:
  https only, every address the host resolves to public) and again by the sender before each attempt.
  ``settings.webhook_allow_any_target`` (local run and tests only) allows http and local addresses.
* Each endpoint has its own ``whsec_`` signing secret, generated here and shown once (on create and on
  ``rotate-secret``); it is stored sealed with KMS (``services.envelope``, like platform secrets). After a
  rotation the old secret keeps signing next to the new one (two signatures in ``webhook-signature``)
  for ``secret_rotation_overlap_hours``.
* At most ``MAX_ENDPOINTS`` per partner, counted in the create/delete transaction.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

from chalicelib.config import get_settings
from chalicelib.domain import clock, partner_hooks
from chalicelib.domain.clock import iso, parse_iso
from chalicelib.domain.errors import Conflict, NotFound, ValidationFailed, field_error
from chalicelib.domain.ids import new_id
from chalicelib.domain.urls import MAX_URL_LENGTH
from chalicelib.domain.webhook_signature import generate_secret
from chalicelib.services import envelope
from chalicelib.services.auth import Principal
from chalicelib.store import keys, tenancy_repo
from chalicelib.store import partner_hooks as store
from chalicelib.store.partner_hooks import (
    MAX_ENDPOINTS,
    PENDING,
    WebhookDeliveryItem,
    WebhookEndpointCountItem,
    WebhookEndpointItem,
)
from chalicelib.store.tenancy import PartnerItem
from chalicelib.store.transact import Transaction

_URL = {"type": "string", "minLength": 1, "maxLength": MAX_URL_LENGTH,
        "description": "Where we POST the events (https; checked after DNS resolution)"}
_TYPES = {"type": "array", "minItems": 1, "maxItems": len(partner_hooks.EVENT_TYPES), "uniqueItems": True,
          "items": {"enum": list(partner_hooks.EVENT_TYPES)}}
_DESCRIPTION = {"type": "string", "maxLength": 200}
CREATE_SCHEMA: dict[str, Any] = {
    "type": "object", "additionalProperties": False, "required": ["url", "event_types"],
    "properties": {"url": _URL, "event_types": _TYPES, "enabled": {"type": "boolean"}, "description": _DESCRIPTION},
}
UPDATE_SCHEMA: dict[str, Any] = {
    "type": "object", "additionalProperties": False, "minProperties": 1,
    "properties": {"url": _URL, "event_types": _TYPES, "enabled": {"type": "boolean"},
                   "description": {"anyOf": [_DESCRIPTION, {"type": "null"}]}},
}
#: Secrets kept per endpoint (the current one and up to two still in their overlap).
MAX_SECRETS = 3

Resolver = Callable[[str], Iterable[str]]


def system_resolve(host: str) -> list[str]:
    """Every address ``host`` resolves to (A and AAAA)."""
    return sorted({str(info[4][0]) for info in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)})


#: The DNS resolver used by the target checks (tests replace it: no real DNS in the suite).
resolve: Resolver = system_resolve


def allow_any_target() -> bool:
    return get_settings().webhook_allow_any_target


def checked_url(url: str, path: str = "$.url") -> str:
    """The normalised URL, or a 422 naming ``path`` (never the resolved address)."""
    try:
        return partner_hooks.check_target(url, resolve, allow_any=allow_any_target())
    except partner_hooks.UnsafeTarget as exc:
        raise ValidationFailed("The webhook URL is not allowed",
                               code="unsafe_webhook_url", details={"errors": [field_error(path, str(exc))]}) from None


# --------------------------------------------------------------------------- secrets


def seal_context(program_id: str, partner_id: str, endpoint_id: str) -> dict[str, str]:
    """KMS encryption context: a sealed secret opens only for the endpoint it was made for."""
    return {"sarafan": "partner_webhook", "program": program_id, "partner": partner_id, "endpoint": endpoint_id,
            "purpose": "signing"}


def _valid(entries: list[dict[str, Any]], now: datetime) -> list[dict[str, Any]]:
    return [e for e in entries if e.get("expires_at") is None or parse_iso(e["expires_at"]) > now]


def _with_new_secret(item: WebhookEndpointItem, now: datetime) -> str:
    """Generate a secret, seal it and put it on ``item`` (older valid ones expire after the overlap)."""
    secret = generate_secret()
    sealed = envelope.seal(secret, seal_context(item.program_id, item.partner_id, item.endpoint_id))
    cutoff = iso(now + timedelta(hours=get_settings().secret_rotation_overlap_hours))
    kept = [{**e, "expires_at": min(e.get("expires_at") or cutoff, cutoff)} for e in _valid(list(item.secrets or []),
                                                                                             now)]
    item.secrets = [*kept[-(MAX_SECRETS - 1):], {"sealed": sealed, "created_at": iso(now), "expires_at": None}]
    return secret


def signing_secrets(item: WebhookEndpointItem, now: datetime) -> list[str]:
    """Every secret that signs right now, newest first (one KMS Decrypt each, cached per process)."""
    context = seal_context(item.program_id, item.partner_id, item.endpoint_id)
    return [envelope.open_sealed(e["sealed"], context).decode("utf-8")
            for e in reversed(_valid(list(item.secrets or []), now))]


# --------------------------------------------------------------------------- views


def endpoint_view(item: WebhookEndpointItem, now: datetime, secret: str | None = None) -> dict[str, Any]:
    valid = _valid(list(item.secrets or []), now)
    view: dict[str, Any] = {
        "endpoint_id": item.endpoint_id, "program_id": item.program_id, "partner_id": item.partner_id,
        "url": item.url, "event_types": list(item.event_types or []), "description": item.description,
        "enabled": bool(item.enabled), "disabled_reason": item.disabled_reason,
        "disabled_at": iso(item.disabled_at) if item.disabled_at else None, "notice": item.notice,
        "secret": {"versions_valid": len(valid),
                   "previous_valid_until": max((e["expires_at"] for e in valid if e.get("expires_at")), default=None)},
        "revision": int(item.revision or 0), "created_at": iso(item.created_at), "updated_at": iso(item.updated_at),
    }
    if secret is not None:
        view["signing_secret"] = secret
    return view


RESPONSE_CHARS = 512


def delivery_view(item: WebhookDeliveryItem) -> dict[str, Any]:
    import json

    try:
        payload = json.loads(item.body)
    except ValueError:
        payload = None
    return {
        "delivery_id": item.delivery_id, "endpoint_id": item.endpoint_id, "event_type": item.event_type,
        "status": item.status, "attempts": int(item.attempts or 0),
        "next_attempt_at": iso(item.next_attempt_at) if item.next_attempt_at and item.status == PENDING else None,
        "last_attempt_at": iso(item.last_attempt_at) if item.last_attempt_at else None,
        "last_status_code": int(item.last_status_code) if item.last_status_code is not None else None,
        "last_error": item.last_error, "last_response": item.last_response,
        "delivered_at": iso(item.delivered_at) if item.delivered_at else None,
        "created_at": iso(item.created_at), "payload": payload,
    }


# --------------------------------------------------------------------------- endpoints


def _scope(principal: Principal, program_id: str, partner_id: str) -> None:
    principal.require_partner_scope(program_id, partner_id)
    principal.require_server_key()


def _endpoint(program_id: str, partner_id: str, endpoint_id: str) -> WebhookEndpointItem:
    item = store.get_endpoint(program_id, partner_id, endpoint_id)
    if item is None:
        raise NotFound("Webhook endpoint not found", details={"endpoint_id": endpoint_id})
    return item


def _concurrent() -> Conflict:
    return Conflict("The webhook endpoint changed concurrently; read it again and retry", code="concurrent_update")


def create(principal: Principal, program_id: str, partner_id: str, data: dict[str, Any]) -> dict[str, Any]:
    _scope(principal, program_id, partner_id)
    tenancy_repo.get_partner(program_id, partner_id)  # 404 for an unknown partner
    url = checked_url(data["url"])
    now = clock.utcnow()
    endpoint_id = new_id("whe")
    pk, sk = keys.webhook_endpoint(program_id, partner_id, endpoint_id)
    item = WebhookEndpointItem(
        PK=pk, SK=sk, program_id=program_id, partner_id=partner_id, endpoint_id=endpoint_id, url=url,
        event_types=partner_hooks.validate_event_types(data["event_types"]), description=data.get("description"),
        enabled=data.get("enabled", True), secrets=[], revision=1, created_at=now, updated_at=now)
    secret = _with_new_secret(item, now)
    count = store.count_ref(program_id, partner_id)
    tx = Transaction()
    tx.create(item, on_fail=Conflict("Endpoint id collision; retry", code="conflict"))
    tx.update(count, [WebhookEndpointCountItem.endpoints.add(1)],
              WebhookEndpointCountItem.endpoints.does_not_exist() | (WebhookEndpointCountItem.endpoints < MAX_ENDPOINTS),
              on_fail=ValidationFailed(f"A partner has at most {MAX_ENDPOINTS} webhook endpoints",
                                       code="too_many_endpoints", details={"limit": MAX_ENDPOINTS}))
    tx.check(PartnerItem, keys.partner(program_id, partner_id), PartnerItem.PK.exists(),
             on_fail=NotFound("Partner not found", details={"partner_id": partner_id}))
    tx.commit()
    return endpoint_view(item, now, secret)


def list_endpoints(principal: Principal, program_id: str, partner_id: str) -> dict[str, Any]:
    _scope(principal, program_id, partner_id)
    now = clock.utcnow()
    items = sorted(store.endpoints_of(program_id, partner_id), key=lambda i: iso(i.created_at))
    return {"items": [endpoint_view(i, now) for i in items[:MAX_ENDPOINTS]]}


def get(principal: Principal, program_id: str, partner_id: str, endpoint_id: str) -> dict[str, Any]:
    _scope(principal, program_id, partner_id)
    return endpoint_view(_endpoint(program_id, partner_id, endpoint_id), clock.utcnow())


def update(principal: Principal, program_id: str, partner_id: str, endpoint_id: str,
           data: dict[str, Any]) -> dict[str, Any]:
    _scope(principal, program_id, partner_id)
    item = _endpoint(program_id, partner_id, endpoint_id)
    E = WebhookEndpointItem
    actions: list[Any] = []
    if "url" in data:
        item.url = checked_url(data["url"])
        actions.append(E.url.set(item.url))
    if "event_types" in data:
        item.event_types = partner_hooks.validate_event_types(data["event_types"])
        actions.append(E.event_types.set(item.event_types))
    if "description" in data:
        item.description = data["description"]
        actions.append(E.description.remove() if data["description"] is None else E.description.set(data["description"]))
    if "enabled" in data:
        item.enabled = bool(data["enabled"])
        actions.append(E.enabled.set(item.enabled))
        if item.enabled:  # re-enabled by the partner: the failure is forgotten
            item.disabled_reason, item.disabled_at, item.notice = None, None, None
            actions += [E.disabled_reason.remove(), E.disabled_at.remove(), E.notice.remove()]
    now = clock.utcnow()
    revision = int(item.revision or 0)
    item.updated_at, item.revision = now, revision + 1
    actions += [E.updated_at.set(now), E.revision.set(revision + 1)]
    tx = Transaction()
    tx.update(item, actions, E.revision == revision, on_fail=_concurrent())
    tx.commit()
    return endpoint_view(item, now)


def delete(principal: Principal, program_id: str, partner_id: str, endpoint_id: str) -> dict[str, Any]:
    """Removes the endpoint; its pending deliveries are cancelled when the sender reaches them."""
    _scope(principal, program_id, partner_id)
    item = _endpoint(program_id, partner_id, endpoint_id)
    tx = Transaction()
    tx.delete(item, WebhookEndpointItem.revision == int(item.revision or 0), on_fail=_concurrent())
    tx.update(store.count_ref(program_id, partner_id), [WebhookEndpointCountItem.endpoints.add(-1)],
              WebhookEndpointCountItem.endpoints > 0)
    tx.commit()
    return {"endpoint_id": endpoint_id, "deleted": True}


def rotate_secret(principal: Principal, program_id: str, partner_id: str, endpoint_id: str) -> dict[str, Any]:
    _scope(principal, program_id, partner_id)
    item = _endpoint(program_id, partner_id, endpoint_id)
    now = clock.utcnow()
    secret = _with_new_secret(item, now)
    revision = int(item.revision or 0)
    item.updated_at, item.revision = now, revision + 1
    E = WebhookEndpointItem
    tx = Transaction()
    tx.update(item, [E.secrets.set(item.secrets), E.updated_at.set(now), E.revision.set(revision + 1)],
              E.revision == revision, on_fail=_concurrent())
    tx.commit()
    return endpoint_view(item, now, secret)


# --------------------------------------------------------------------------- delivery log


def deliveries(principal: Principal, program_id: str, partner_id: str, endpoint_id: str, limit: int,
               cursor: dict[str, Any] | None) -> dict[str, Any]:
    _scope(principal, program_id, partner_id)
    _endpoint(program_id, partner_id, endpoint_id)  # the endpoint must be this partner's
    items, last = store.log_page(program_id, endpoint_id, limit, cursor)
    return {"items": [delivery_view(i) for i in items], "next_cursor": last}


def retry(principal: Principal, program_id: str, partner_id: str, endpoint_id: str,
          delivery: str) -> dict[str, Any]:
    """One more attempt of a delivery, now (the sender's next run); it does not restart the schedule."""
    _scope(principal, program_id, partner_id)
    endpoint = _endpoint(program_id, partner_id, endpoint_id)
    item = store.get_delivery(program_id, endpoint_id, delivery)
    if item is None:
        raise NotFound("Delivery not found", details={"delivery_id": delivery})
    if not endpoint.enabled:
        raise Conflict("The endpoint is disabled; enable it first (PATCH enabled: true)", code="endpoint_disabled")
    if item.status == PENDING:
        raise Conflict("The delivery is already waiting for its next attempt", code="delivery_pending",
                       details={"next_attempt_at": iso(item.next_attempt_at) if item.next_attempt_at else None})
    now = clock.utcnow()
    D = WebhookDeliveryItem
    status = item.status
    item.status, item.next_attempt_at, item.max_attempts = PENDING, now, int(item.attempts or 0) + 1
    item.GSI1PK, item.GSI1SK = store.due_key(item, now)
    ok = store.conditional_update(item, [D.status.set(PENDING), D.next_attempt_at.set(now),
                                         D.max_attempts.set(item.max_attempts), D.GSI1PK.set(item.GSI1PK),
                                         D.GSI1SK.set(item.GSI1SK)], D.status == status)
    if not ok:
        raise Conflict("The delivery changed concurrently; read it again", code="concurrent_update")
    return delivery_view(item)
