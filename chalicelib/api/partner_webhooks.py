"""Outgoing partner webhooks: endpoints, secret rotation, the delivery log (docs/coalition.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chalicelib.api import response_schemas as rs
from chalicelib.api.http import ApiBlueprint, ApiRequest, decode_cursor, encode_cursor, lazy_module, respond
from chalicelib.domain.partner_hooks import EVENT_TYPES
from chalicelib.store import keys

if TYPE_CHECKING:
    from chalicelib.services import partner_webhooks as service
else:  # Imported when one of these routes first runs (cold start: bench/cold_start.py).
    service = lazy_module("chalicelib.services.partner_webhooks")

partner_webhooks_api = ApiBlueprint(__name__)
TAG = "Partner webhooks"
BASE = "/v1/programs/{program_id}/partners/{partner_id}/webhook-endpoints"
ONE = BASE + "/{endpoint_id}"
SCOPE = "Operator key, or the key of the partner that owns the endpoints (another partner: 403)."

_SECRET_STATE = rs.obj({"versions_valid": rs.INT, "previous_valid_until": rs.nullable(rs.STR)})
ENDPOINT = rs.obj({
    "endpoint_id": rs.STR, "program_id": rs.STR, "partner_id": rs.STR, "url": rs.STR,
    "event_types": {"type": "array", "items": {"enum": list(EVENT_TYPES)}}, "description": rs.nullable(rs.STR),
    "enabled": rs.BOOL, "disabled_reason": rs.nullable(rs.STR), "disabled_at": rs.nullable(rs.TIME),
    "notice": rs.nullable(rs.OBJ), "secret": _SECRET_STATE, "revision": rs.INT, "created_at": rs.TIME,
    "updated_at": rs.TIME,
})
WITH_SECRET = {"allOf": [ENDPOINT, rs.obj({"signing_secret": {"type": "string", "pattern": "^whsec_"}})]}
ENDPOINTS = rs.obj({"items": {"type": "array", "items": ENDPOINT}})
DELETED = rs.obj({"endpoint_id": rs.STR, "deleted": {"const": True}})
DELIVERY = rs.obj({
    "delivery_id": rs.STR, "endpoint_id": rs.STR, "event_type": {"enum": list(EVENT_TYPES)},
    "status": {"enum": ["pending", "delivered", "failed", "cancelled"]}, "attempts": rs.INT,
    "next_attempt_at": rs.nullable(rs.TIME), "last_attempt_at": rs.nullable(rs.TIME),
    "last_status_code": rs.nullable(rs.INT), "last_error": rs.nullable(rs.STR), "last_response": rs.nullable(rs.STR),
    "delivered_at": rs.nullable(rs.TIME), "created_at": rs.TIME, "payload": rs.nullable(rs.OBJ),
})
_CONFLICT = {409: "Changed concurrently (`concurrent_update`); read it again and retry"}


@partner_webhooks_api.endpoint(
    BASE, "POST", tag=TAG, success_status=201, request_schema=lambda: service.CREATE_SCHEMA, response_schema=WITH_SECRET,
    summary="Register a webhook endpoint (answers its signing secret, shown once)",
    description="`url`: https, and every address its host resolves to must be public (no private, loopback, "
                "link-local or reserved address), else a 422 `unsafe_webhook_url` at `$.url`. `event_types`: any of "
                + ", ".join(f"`{t}`" for t in EVENT_TYPES) + ". The answer's `signing_secret` (`whsec_…`) signs "
                "every message (Standard Webhooks); it is stored sealed with KMS and never shown again. At most "
                "10 endpoints per partner (422 `too_many_endpoints`). " + SCOPE,
    request_example={"url": "https://hooks.fitlab.example/sarafan", "event_types": ["reward.posted", "pool.low"]})
def create_endpoint(req: ApiRequest, program_id: str, partner_id: str) -> Any:
    return respond(service.create(req.ports, req.principal, program_id, partner_id, req.body), 201)


@partner_webhooks_api.endpoint(BASE, "GET", tag=TAG, response_schema=ENDPOINTS,
                               summary="A partner's webhook endpoints (at most 10; no secrets)", description=SCOPE)
def list_endpoints(req: ApiRequest, program_id: str, partner_id: str) -> Any:
    return service.list_endpoints(req.ports, req.principal, program_id, partner_id)


@partner_webhooks_api.endpoint(ONE, "GET", tag=TAG, response_schema=ENDPOINT,
                               summary="A webhook endpoint (no secret)", description=SCOPE)
def get_endpoint(req: ApiRequest, program_id: str, partner_id: str, endpoint_id: str) -> Any:
    return service.get(req.ports, req.principal, program_id, partner_id, endpoint_id)


@partner_webhooks_api.endpoint(
    ONE, "PATCH", tag=TAG, request_schema=lambda: service.UPDATE_SCHEMA, response_schema=ENDPOINT, responses=_CONFLICT,
    summary="Change a webhook endpoint's URL, event types, description, or enable/disable it",
    description="A new `url` is checked like at registration. `enabled: true` re-enables an endpoint the "
                "sender disabled after failing deliveries (`disabled_reason: failing`). " + SCOPE)
def update_endpoint(req: ApiRequest, program_id: str, partner_id: str, endpoint_id: str) -> Any:
    return service.update(req.ports, req.principal, program_id, partner_id, endpoint_id, req.body)


@partner_webhooks_api.endpoint(ONE, "DELETE", tag=TAG, response_schema=DELETED, responses=_CONFLICT,
                               summary="Remove a webhook endpoint (its pending deliveries are cancelled)",
                               description=SCOPE)
def delete_endpoint(req: ApiRequest, program_id: str, partner_id: str, endpoint_id: str) -> Any:
    return service.delete(req.ports, req.principal, program_id, partner_id, endpoint_id)


@partner_webhooks_api.endpoint(
    ONE + "/rotate-secret", "POST", tag=TAG, response_schema=WITH_SECRET, responses=_CONFLICT,
    summary="Issue a new signing secret (shown once); the old one keeps signing during the overlap",
    description="Messages carry one signature per valid secret (`webhook-signature: v1,<new> v1,<old>`) until the "
                "old secret expires (`secret.previous_valid_until`, 24 h by default), so the receiver can switch "
                "whenever it likes. " + SCOPE)
def rotate_secret(req: ApiRequest, program_id: str, partner_id: str, endpoint_id: str) -> Any:
    return service.rotate_secret(req.ports, req.principal, program_id, partner_id, endpoint_id)


@partner_webhooks_api.endpoint(
    ONE + "/deliveries", "GET", tag=TAG, query_params=(("limit", "integer"), ("cursor", "string")),
    response_schema=rs.page(DELIVERY),
    summary="An endpoint's delivery log, newest first (paged; kept 30 days)",
    description="Each message with its status (`pending`, `delivered`, `failed`, `cancelled`), attempts, next "
                "attempt, last HTTP status and the start of the last answer (512 characters). " + SCOPE)
def list_deliveries(req: ApiRequest, program_id: str, partner_id: str, endpoint_id: str) -> Any:
    cursor = decode_cursor(req.query("cursor"), ("PK", keys.webhook_delivery_partition(program_id, endpoint_id)))
    result = service.deliveries(req.ports, req.principal, program_id, partner_id, endpoint_id,
                                req.int_query("limit", 50, 1, 100), cursor)
    return {**result, "next_cursor": encode_cursor(result["next_cursor"])}


@partner_webhooks_api.endpoint(
    ONE + "/deliveries/{delivery_id}/retry", "POST", tag=TAG, success_status=202, response_schema=DELIVERY,
    responses={409: "The endpoint is disabled (`endpoint_disabled`), the delivery is still pending "
                    "(`delivery_pending`) or changed concurrently (`concurrent_update`)"},
    summary="Send a delivery once more, soon (one attempt; it does not restart the retry schedule)",
    description=SCOPE)
def retry_delivery(req: ApiRequest, program_id: str, partner_id: str, endpoint_id: str, delivery_id: str) -> Any:
    return respond(service.retry(req.ports, req.principal, program_id, partner_id, endpoint_id, delivery_id), 202)
