"""Shop and CRM integrations: connecting a platform, and the platforms' webhooks."""

from __future__ import annotations

from typing import Any

from chalicelib.api import response_schemas as rs
from chalicelib.api.http import ApiBlueprint, ApiRequest, decode_cursor, encode_cursor

integrations = ApiBlueprint(__name__)
TAG = "Integrations"
_PATH = "/v1/programs/{program_id}/partners/{partner_id}/integrations/{platform}"
#: Every content type a supported platform sends (form-encoded: Tilda, amoCRM, Bitrix24, Woo's ping).
WEBHOOK_CONTENT_TYPES = ["application/json", "application/x-www-form-urlencoded"]
#: The platform's own payload (JSON, or form fields for the form-posting platforms); each adapter reads it.
PLATFORM_WEBHOOK_SCHEMA: dict[str, Any] = {
    "type": "object", "description": "The platform's own webhook payload, as it sends it (see docs/integrations.md)."}


def _schema() -> dict[str, Any]:
    from chalicelib.services import integrations as service

    return service.request_schema()


@integrations.endpoint(_PATH, "PUT", tag=TAG, auth="key", request_schema=_schema, response_schema=rs.INTEGRATION,
                       responses={409: "Changed concurrently (`concurrent_update`); retry"},
                       request_example={"settings": {"secret": "shpss_0f3c…", "shop_domain": "zerno.myshopify.com"}},
                       summary="Connect a shop or CRM (answers the webhook URL and the topics to subscribe)",
                       description="Operator or that partner. `settings.secret` is the signing secret the platform "
                                   "issued (Shopify, WooCommerce, HubSpot, Bitrix24): sealed with KMS, never shown "
                                   "again; a new one keeps the old one valid for the rotation overlap. Platforms that "
                                   "cannot sign (Tilda, amoCRM, InSales) get a URL with a token, shown once. "
                                   "See docs/integrations.md.")
def connect(req: ApiRequest, program_id: str, partner_id: str, platform: str) -> Any:
    from chalicelib.services import integrations as service

    return service.connect(req.ports, req.principal, program_id, partner_id, platform, req.body)


@integrations.endpoint(_PATH, "GET", tag=TAG, auth="key", response_schema=rs.INTEGRATION, summary="Show a platform connection (no secrets)")
def get_integration(req: ApiRequest, program_id: str, partner_id: str, platform: str) -> Any:
    from chalicelib.services import integrations as service

    return service.get(req.ports, req.principal, program_id, partner_id, platform)


@integrations.endpoint(_PATH, "DELETE", tag=TAG, auth="key", response_schema=rs.DISCONNECTED, summary="Disconnect a platform")
def disconnect(req: ApiRequest, program_id: str, partner_id: str, platform: str) -> Any:
    from chalicelib.services import integrations as service

    return service.disconnect(req.ports, req.principal, program_id, partner_id, platform)


@integrations.endpoint(
    _PATH + "/log", "GET", tag=TAG, auth="key", response_schema=rs.INTEGRATION_LOG,
    query_params=(("limit", "integer"), ("cursor", "string")),
    summary="The partner's integration log of a platform: permanent CRM fetch failures, newest first (paged)",
    description="Operator or that partner. Each entry names the failure (`crm_auth_failed`, `crm_not_found`, "
                "`crm_bad_response`, `invalid_event`…), the CRM object id and when; never a token or personal "
                "data. `limit` 1–100 (default 50); entries are kept 90 days. Unknown platform: 404.",
)
def integration_log(req: ApiRequest, program_id: str, partner_id: str, platform: str) -> Any:
    from chalicelib.services import integrations as service
    from chalicelib.store import keys

    cursor = decode_cursor(req.query("cursor"), ("PK", keys.integration_log_partition(program_id, partner_id,
                                                                                       platform)))
    page = service.log(req.ports, req.principal, program_id, partner_id, platform, req.int_query("limit", 50, 1, 100), cursor)
    return {**page, "next_cursor": encode_cursor(page["next_cursor"])}


@integrations.endpoint(
    "/v1/webhooks/{partner_id}/{platform}", "POST", tag="Webhooks", auth="signature",
    content_types=WEBHOOK_CONTENT_TYPES, request_schema=PLATFORM_WEBHOOK_SCHEMA,
    response_schema=rs.PLATFORM_RESULT,
    body="raw",  # read only after the platform's authentication, then parsed by its adapter (adapters.body)
    summary="Receive a shop's or CRM's own webhook (Shopify, WooCommerce, HubSpot, Tilda, amoCRM, Bitrix24, InSales)",
    description="Authenticated the platform's way before anything else is read: Shopify, WooCommerce and HubSpot "
                "by their HMAC signature headers; Tilda, amoCRM and InSales by the integration's token in the URL "
                "(`?token=`); Bitrix24 by the form field `auth[application_token]` (with `auth[domain]` the "
                "connected portal), compared in constant time. Each fails with 401 when it does not match; "
                "translated into canonical events processed like `/events`. Irrelevant topics answer 200 "
                '`"status": "ignored"`; repeats of a fact answer `"status": "duplicate"` (with `conflict` when '
                "the content differs). Unknown partner, platform or a platform not connected: 404.",
)
def receive_platform_webhook(req: ApiRequest, partner_id: str, platform: str) -> Any:
    from chalicelib.adapters.base import Inbound
    from chalicelib.config import get_settings
    from chalicelib.services import platform_intake

    path = f"/v1/webhooks/{partner_id}/{platform}"
    inbound = Inbound(method=req.request.method, url=get_settings().public_base_url + path,
                      headers=req.headers, raw_body=req.raw_body)
    return platform_intake.receive(partner_id, platform, inbound, req.query("token"), req.ports)
