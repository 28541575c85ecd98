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

Reads and writes go through the ports (``deps``: ``webhooks``, ``programs``, ``sealer``, ``clock``); the sender
(``jobs.partner_webhooks``) uses :func:`signing_secrets` and the target checks here.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from chalicelib.config import get_settings
from chalicelib.domain import partner_hooks
from chalicelib.domain.clock import iso, parse_iso
from chalicelib.domain.errors import Conflict, NotFound, ValidationFailed, field_error
from chalicelib.domain.ids import new_id
from chalicelib.domain.partner_hooks import MAX_ENDPOINTS, PENDING
from chalicelib.domain.urls import MAX_URL_LENGTH
from chalicelib.domain.webhook_signature import generate_secret
from chalicelib.services import ports
from chalicelib.services.auth import Principal
from chalicelib.services.ports import Ports

if TYPE_CHECKING:
    from chalicelib.store.partner_hooks import WebhookDeliveryItem, WebhookEndpointItem

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


def _with_new_secret(deps: Ports, program_id: str, partner_id: str, endpoint_id: str,
                     secrets: list[dict[str, Any]], now: datetime) -> tuple[str, list[dict[str, Any]]]:
    """A new secret, and the endpoint's secrets with it sealed last (older valid ones expire after the overlap)."""
    secret = generate_secret()
    sealed = deps.sealer.seal(secret, seal_context(program_id, partner_id, endpoint_id))
    cutoff = iso(now + timedelta(hours=get_settings().secret_rotation_overlap_hours))
    kept = [{**e, "expires_at": min(e.get("expires_at") or cutoff, cutoff)} for e in _valid(secrets, now)]
    return secret, [*kept[-(MAX_SECRETS - 1):], {"sealed": sealed, "created_at": iso(now), "expires_at": None}]


def signing_secrets(item: WebhookEndpointItem, now: datetime, deps: Ports | None = None) -> list[str]:
    """Every secret that signs right now, newest first (one KMS Decrypt each, cached per process)."""
    sealer = (deps or ports.current()).sealer
    context = seal_context(item.program_id, item.partner_id, item.endpoint_id)
    return [sealer.open(e["sealed"], context).decode("utf-8") for e in reversed(_valid(list(item.secrets or []), now))]


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


def _endpoint(deps: Ports, program_id: str, partner_id: str, endpoint_id: str) -> WebhookEndpointItem:
    item = deps.webhooks.endpoint(program_id, partner_id, endpoint_id)
    if item is None:
        raise NotFound("Webhook endpoint not found", details={"endpoint_id": endpoint_id})
    return item


def create(deps: Ports, principal: Principal, program_id: str, partner_id: str,
           data: dict[str, Any]) -> dict[str, Any]:
    _scope(principal, program_id, partner_id)
    deps.programs.partner(program_id, partner_id)  # 404 for an unknown partner
    url = checked_url(data["url"])
    now = deps.clock.now()
    endpoint_id = new_id("whe")
    secret, secrets = _with_new_secret(deps, program_id, partner_id, endpoint_id, [], now)
    item = deps.webhooks.create_endpoint({
        "program_id": program_id, "partner_id": partner_id, "endpoint_id": endpoint_id, "url": url,
        "event_types": partner_hooks.validate_event_types(data["event_types"]), "description": data.get("description"),
        "enabled": data.get("enabled", True), "secrets": secrets, "revision": 1, "created_at": now, "updated_at": now})
    return endpoint_view(item, now, secret)


def list_endpoints(deps: Ports, principal: Principal, program_id: str, partner_id: str) -> dict[str, Any]:
    _scope(principal, program_id, partner_id)
    now = deps.clock.now()
    items = sorted(deps.webhooks.endpoints(program_id, partner_id), key=lambda i: iso(i.created_at))
    return {"items": [endpoint_view(i, now) for i in items[:MAX_ENDPOINTS]]}


def get(deps: Ports, principal: Principal, program_id: str, partner_id: str, endpoint_id: str) -> dict[str, Any]:
    _scope(principal, program_id, partner_id)
    return endpoint_view(_endpoint(deps, program_id, partner_id, endpoint_id), deps.clock.now())


def update(deps: Ports, principal: Principal, program_id: str, partner_id: str, endpoint_id: str,
           data: dict[str, Any]) -> dict[str, Any]:
    _scope(principal, program_id, partner_id)
    item = _endpoint(deps, program_id, partner_id, endpoint_id)
    changes: dict[str, Any] = {}
    if "url" in data:
        changes["url"] = checked_url(data["url"])
    if "event_types" in data:
        changes["event_types"] = partner_hooks.validate_event_types(data["event_types"])
    if "description" in data:
        changes["description"] = data["description"]
    if "enabled" in data:
        changes["enabled"] = bool(data["enabled"])
        if changes["enabled"]:  # re-enabled by the partner: the failure is forgotten
            changes.update(disabled_reason=None, disabled_at=None, notice=None)
    now = deps.clock.now()
    deps.webhooks.update_endpoint(item, changes, now)
    return endpoint_view(item, now)


def delete(deps: Ports, principal: Principal, program_id: str, partner_id: str, endpoint_id: str) -> dict[str, Any]:
    """Removes the endpoint; its pending deliveries are cancelled when the sender reaches them."""
    _scope(principal, program_id, partner_id)
    deps.webhooks.delete_endpoint(_endpoint(deps, program_id, partner_id, endpoint_id))
    return {"endpoint_id": endpoint_id, "deleted": True}


def rotate_secret(deps: Ports, principal: Principal, program_id: str, partner_id: str,
                  endpoint_id: str) -> dict[str, Any]:
    _scope(principal, program_id, partner_id)
    item = _endpoint(deps, program_id, partner_id, endpoint_id)
    now = deps.clock.now()
    secret, secrets = _with_new_secret(deps, program_id, partner_id, endpoint_id, list(item.secrets or []), now)
    deps.webhooks.update_endpoint(item, {"secrets": secrets}, now)
    return endpoint_view(item, now, secret)


# --------------------------------------------------------------------------- delivery log


def deliveries(deps: Ports, principal: Principal, program_id: str, partner_id: str, endpoint_id: str, limit: int,
               cursor: dict[str, Any] | None) -> dict[str, Any]:
    _scope(principal, program_id, partner_id)
    _endpoint(deps, program_id, partner_id, endpoint_id)  # the endpoint must be this partner's
    page = deps.webhooks.deliveries(program_id, endpoint_id, limit, cursor)
    return {"items": [delivery_view(i) for i in page.items], "next_cursor": page.next_cursor}


def retry(deps: Ports, principal: Principal, program_id: str, partner_id: str, endpoint_id: str,
          delivery: str) -> dict[str, Any]:
    """One more attempt of a delivery, now (the sender's next run); it does not restart the schedule."""
    _scope(principal, program_id, partner_id)
    endpoint = _endpoint(deps, program_id, partner_id, endpoint_id)
    item = deps.webhooks.delivery(program_id, endpoint_id, delivery)
    if item is None:
        raise NotFound("Delivery not found", details={"delivery_id": delivery})
    if not endpoint.enabled:
        raise Conflict("The endpoint is disabled; enable it first (PATCH enabled: true)", code="endpoint_disabled")
    if item.status == PENDING:
        raise Conflict("The delivery is already waiting for its next attempt", code="delivery_pending",
                       details={"next_attempt_at": iso(item.next_attempt_at) if item.next_attempt_at else None})
    if not deps.webhooks.retry_delivery(item, deps.clock.now()):
        raise Conflict("The delivery changed concurrently; read it again", code="concurrent_update")
    return delivery_view(item)
