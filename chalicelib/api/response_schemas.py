"""JSON Schemas of success bodies, for the OpenAPI document and the suite's response checks.

A route declares its success schema with ``response_schema=`` on ``ApiBlueprint.endpoint``;
routes declared before that argument existed are mapped in :data:`BY_ROUTE`. Schemas name
the fields clients rely on (``required``) and their types. An object that names its properties is
closed: ``tests/openapi_check.py`` (which validates every response the functional suite sees against
them) refuses a key it does not name, so a new field must be added here; a free-form map is declared
without ``properties`` (``OBJ``) or with ``additionalProperties``. ``tests/functional/test_openapi.py``
fails if a route has no success schema.
"""

from __future__ import annotations

from typing import Any

STR: dict[str, Any] = {"type": "string"}
INT: dict[str, Any] = {"type": "integer"}
BOOL: dict[str, Any] = {"type": "boolean"}
OBJ: dict[str, Any] = {"type": "object"}
TIME: dict[str, Any] = {"type": "string", "format": "date-time"}


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def obj(required: dict[str, Any], optional: dict[str, Any] | None = None) -> dict[str, Any]:
    """An object with these required properties (and these optional ones); the suite's check refuses others."""
    return {"type": "object", "required": sorted(required), "properties": {**required, **(optional or {})}}


def page(item: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """``{"items": [...], "next_cursor": "..." | null}``."""
    return obj({"items": {"type": "array", "items": item}, "next_cursor": nullable(STR), **extra})


PROGRAM = obj({
    "program_id": STR, "name": STR, "points_unit": STR, "point_value_minor": INT, "currency": STR,
    "default_locale": STR, "allowed_origins": {"type": "array", "items": STR}, "landing_url": nullable(STR),
    "settings": OBJ, "rules_version": INT, "created_at": TIME})
KEY_INFO = obj({"key_id": STR, "kind": {"enum": ["partner", "publishable"]}, "program_id": STR,
                "partner_id": nullable(STR), "display_prefix": STR, "revoked": BOOL, "created_at": TIME})
PROGRAM_CREATED = {"allOf": [PROGRAM, obj({"publishable_key": {"type": "string", "pattern": "^srf_pub_"},
                                           "publishable_key_info": KEY_INFO})]}
PARTNER = obj({"partner_id": STR, "program_id": STR, "name": STR, "landing_url": nullable(STR),
               "contact_email": nullable(STR),
               "webhook_sources": {"type": "object", "additionalProperties": {"type": "array", "items": obj(
                   {"version": INT, "created_at": TIME, "expires_at": nullable(TIME)})}},
               "created_at": TIME})
PARTNER_CREATED = {"allOf": [PARTNER, obj({
    "api_key": {"type": "string", "pattern": "^srf_pk_"}, "api_key_info": KEY_INFO,
    "webhook_secrets": {"type": "object", "additionalProperties": {"type": "string", "pattern": "^whsec_"}}})]}
KEY_CREATED = obj({"api_key": {"type": "string", "pattern": "^srf_pk_"}, "api_key_info": KEY_INFO})
ROTATED = obj({"source": STR, "version": INT, "secret": {"type": "string", "pattern": "^whsec_"},
               "previous_versions_valid_until": nullable(TIME)})

INVITE = obj({"code": STR, "code_display": STR, "link": STR, "locale": STR,
              "share_texts": obj({"ru": STR, "en": STR}), "share_links": OBJ, "qr_svg": STR,
              "referral_recorded": BOOL})
OFFER = obj({"code": STR, "program": obj({"name": STR, "default_locale": STR}),
             "referrer": obj({"first_name": nullable(STR)}), "offer": OBJ, "locale": STR})

TIER_CHANGE = obj({"change_id": STR, "from": nullable(STR), "to": STR, "direction": {"enum": ["up", "down"]},
                   "reason_code": STR, "reason": STR, "metric": STR, "value": INT, "threshold": INT, "at": TIME})
#: Member tiers (docs/coalition.md#tiers): where the member stands; null when the program has no tiers.
TIER_STATUS = obj({
    "tier": STR, "name": STR, "metric": {"enum": ["points_earned", "spend", "converted_referrals"]}, "value": INT,
    "period_months": INT, "since": nullable(TIME), "review_month": nullable(STR),
    "next": nullable(obj({"tier": STR, "name": STR, "threshold": INT, "remaining": INT}))},
    {"history": {"type": "array", "items": TIER_CHANGE}})
ATTRIBUTION_STATE = obj({"referrer_id": nullable(STR), "source": nullable(STR), "attributed_at": nullable(TIME),
                         "final": BOOL})
MEMBER = obj({
    "member_id": STR, "program_id": STR, "code": STR, "code_display": STR,
    "previous_codes": {"type": "array", "items": STR}, "link": STR, "first_name": nullable(STR),
    "email": nullable(STR), "phone": nullable(STR), "customer_ids": {"type": "object", "additionalProperties": STR},
    "locale": nullable(STR), "tier": nullable(STR), "tier_status": nullable(TIER_STATUS), "joined_at": TIME, "joined_via": nullable(STR),
    "referrer_id": nullable(STR), "attribution": ATTRIBUTION_STATE,
    "counts": obj({"clicks": INT, "clicks_by_utm_source": {"type": "object", "additionalProperties": INT},
                   "signups": INT, "purchasers": INT, "orders": INT})})
REFERRAL = obj({"member_id": STR, "first_name": nullable(STR), "code": STR, "joined_at": TIME,
                "joined_via": nullable(STR), "attributed_at": nullable(TIME), "attribution_source": nullable(STR),
                "purchased": BOOL})
REFERRAL_TREE = obj({"member_id": STR, "max_depth": INT, "next_cursor": nullable(STR), "items": {
    "type": "array", "items": {**REFERRAL, "required": sorted([*REFERRAL["required"], "level", "referrer_id", "referrals"]),
                               "properties": {**REFERRAL["properties"], "level": INT, "referrer_id": STR,
                                              "referrals": INT}}}})
ATTRIBUTION_RECORD = obj({"record_id": STR, "at": TIME, "member_id": nullable(STR), "referrer_id": nullable(STR),
                          "code": nullable(STR), "source": nullable(STR), "outcome": STR, "reason_code": STR,
                          "reason": nullable(STR), "event_type": nullable(STR)})

RULES_VERSION = obj({"program_id": STR, "version": INT, "current": BOOL, "created_at": TIME, "document": OBJ})
BALANCE = obj({"member_id": STR, "available": INT, "pending": INT, "owed": INT, "lifetime_earned": INT,
               "lifetime_spent": INT, "points_unit": STR, "point_value_minor": INT, "currency": STR,
               "available_value_minor": INT}, {"held": INT})
LEDGER_ENTRY = obj({"entry_id": STR, "kind": STR, "status": STR, "points": INT, "reversed_points": INT,
                    "reason": nullable(STR), "reason_code": nullable(STR), "effective_at": TIME, "created_at": TIME,
                    "available_at": nullable(TIME), "rule_id": nullable(STR), "rule_version": nullable(INT),
                    "level": nullable(INT), "funding_partner_id": nullable(STR), "partner_id": nullable(STR),
                    "business_key": nullable(STR), "created_by": nullable(STR), "redacted": BOOL,
                    "redemption_id": nullable(STR), "reverses_entry_id": nullable(STR)})
QUOTE = obj({"member_id": STR, "available": INT, "order_amount": nullable(INT), "currency": STR,
             "point_value_minor": INT, "max_share_percent": INT, "max_points": INT, "max_value_minor": INT})
REDEMPTION = obj({"redemption_id": STR, "member_id": STR, "partner_id": nullable(STR), "points": INT,
                  "value_minor": INT, "currency": STR, "order_id": nullable(STR), "order_amount": nullable(INT),
                  "status": {"enum": ["held", "confirmed", "cancelled"]}, "created_at": TIME, "updated_at": TIME})
ADJUSTMENT = obj({"adjustment_id": STR, "member_id": STR, "points": INT, "reason": STR, "partner_id": nullable(STR),
                  "entry_id": STR, "created_by": STR, "created_at": TIME})
_SETTLE_COLUMNS = ("funded", "adjusted", "redeemed", "expired")
SETTLEMENT_PARTNER = obj({"partner_id": STR, "net_points": INT, "net_value_minor": INT,
                          **{c: INT for c in _SETTLE_COLUMNS}, **{f"{c}_value_minor": INT for c in _SETTLE_COLUMNS}})
#: JSON; the same statement is ``text/csv`` with ``Accept: text/csv``.
SETTLEMENT = obj({
    "program_id": STR, "from": STR, "to": STR, "currency": STR, "point_value_minor": INT,
    "partners": {"type": "array", "items": SETTLEMENT_PARTNER},
    "pairs": {"type": "array", "items": obj({"funding_partner_id": STR, "at_partner_id": STR, "points": INT,
                                             "value_minor": INT})},
    "transfers": {"type": "array", "items": obj({"from": STR, "to": STR, "value_minor": INT})}},
    {"liability_change_points": INT, "liability_change_value_minor": INT})
EVENT_RESULT = obj({"status": {"enum": ["processed", "duplicate", "parked"]}, "business_key": STR, "type": STR},
                   {"member": nullable(obj({"member_id": STR, "code": nullable(STR), "created": BOOL})),
                    "attribution": nullable(obj({"outcome": STR}, {
                        "referrer_id": nullable(STR), "source": nullable(STR), "reason_code": nullable(STR),
                        "reason": nullable(STR), "final": BOOL, "candidates": {"type": "array", "items": obj(
                            {"source": STR}, {"code": nullable(STR), "referrer_id": nullable(STR),
                                              "accepted": BOOL, "reason_code": nullable(STR)})}})),
                    "rewards": nullable(OBJ), "tiers": obj({"changes": {"type": "array", "items": OBJ}}),
                    "reason": STR, "conflict": OBJ,
                    "risk": obj({"held": BOOL, "reasons": {"type": "array", "items": STR},
                                 "matched": {"type": "array", "items": STR}})})
HEALTH = obj({"status": {"const": "ok"}, "stage": STR})

COUPONS = obj({"member_id": STR, "coupons": {"type": "array", "items": STR}})
COUPON_PUT = {"allOf": [COUPONS, obj({"code": STR, "created": BOOL})]}
COUPON = obj({"code": STR, "member_id": STR})
COUPON_REMOVED = {"allOf": [COUPONS, obj({"code": STR, "removed": {"const": True}})]}

PREFERENCES = obj({"preferences": obj({"email": BOOL, "sms": BOOL, "push": BOOL})})
DEVICE = obj({"device": obj({"device_id": STR, "platform": {"enum": ["fcm", "apns"]}, "enabled": BOOL,
                             "updated_at": TIME})})
NOTIFICATION = obj({"message_id": STR, "template": STR, "status": STR, "attempts": INT,
                    "channels": {"type": "array", "items": obj({"channel": nullable(STR), "status": nullable(STR)}, {
                        "recipient": nullable(STR), "provider_id": nullable(STR), "error": nullable(STR)})},
                    "merged": {"type": "array"}},
                   {"locale": nullable(STR), "last_error": nullable(STR), "subject": nullable(STR),
                    "created_at": nullable(STR), "finished_at": nullable(STR)})
#: The local run's outbox (``/dev/outbox``); with ``?id=`` the message itself, as HTML.
DEV_OUTBOX = obj({"items": {"type": "array", "items": obj({"id": STR, "html_url": STR})}})
#: ``/u/{token}``: an HTML page (the unsubscribe question, or its confirmation).
HTML_PAGE = STR

_VERSIONS = obj({"versions_valid": INT, "previous_valid_until": nullable(STR)}, {"note": STR})
INTEGRATION = obj({
    "platform": STR, "program_id": STR, "partner_id": STR, "webhook_url": STR,
    "topics": {"type": "array", "items": STR}, "content_types": {"type": "array", "items": STR},
    "auth": {"enum": ["secret", "token"]}, "settings": OBJ, "revision": INT, "created_at": TIME,
    "updated_at": TIME, "api_token_set": BOOL},
    {"docs_url": nullable(STR), "secret": _VERSIONS, "token": _VERSIONS, "token_issued": BOOL})
INTEGRATION_LOG = page(obj({"entry_id": STR, "platform": STR, "code": STR, "message": STR,
                            "object_id": nullable(STR), "at": TIME}), platform=STR, partner_id=STR)
DISCONNECTED = obj({"platform": STR, "partner_id": STR, "disconnected": {"const": True}})
#: One translated event of a platform's delivery: its outcome, and when processed the canonical event's result.
PLATFORM_EVENT = obj({"status": {"enum": ["processed", "duplicate", "parked", "queued", "skipped", "rejected"]}}, {
    **{k: v for k, v in EVENT_RESULT["properties"].items() if k != "status"}, "label": nullable(STR),
    "reason": nullable(STR), "error": OBJ, "warnings": {"type": "array", "items": OBJ}})
PLATFORM_RESULT = obj({
    "status": {"enum": ["processed", "queued", "duplicate", "partial", "ignored"]}, "platform": STR,
    "delivery_id": nullable(STR), "events": {"type": "array", "items": PLATFORM_EVENT}},
    {"reason": nullable(STR), "conflict": OBJ})

ERASURE = obj({"member_id": STR, "program_id": STR, "status": STR, "requested_by": nullable(STR),
               "requested_by_key": nullable(STR), "requested_at": nullable(TIME), "confirmed_by": nullable(STR),
               "confirmed_by_key": nullable(STR), "started_at": nullable(TIME),
               "completed_at": nullable(TIME), "step": nullable(STR), "counts": OBJ})
ERASURE_REQUESTS = obj({"items": {"type": "array", "items": ERASURE}, "next_cursor": nullable(STR)})
MEMBER_EXPORT = obj({"format_version": INT, "program_id": STR, "member_id": STR, "exported_at": TIME,
                     "items": {"type": "array", "items": OBJ}, "next_cursor": nullable(STR)},
                    {"summary": obj({"profile": OBJ, "balance": nullable(OBJ), "erasure": nullable(ERASURE),
                                     "codes": {"type": "array", "items": obj({"code": STR}, {"clicks": nullable(OBJ)})},
                                     "identifiers": {"type": "array", "items": STR},
                                     "pending_invites": {"type": "array", "items": OBJ}})})
_IMPORT_COUNTS = {"rows": INT, "imported": INT, "existing_members": INT, "already_imported": INT,
                  "opening_points": INT, "bad_rows": INT}
_ROW_ERRORS = {"type": "array", "items": obj({"line": INT, "errors": {"type": "array", "items": obj(
    {"column": STR, "message": STR})}})}
IMPORT_RESULT = obj({"rows": INT, "imported": INT, "existing_members": INT, "already_imported": INT,
                     "opening_points": INT, "dry_run": BOOL, "errors": _ROW_ERRORS})
IMPORT_JOB = obj({"import_id": STR, "program_id": STR, "partner_id": nullable(STR), "include_erased": BOOL,
                  "status": {"enum": ["receiving", "completed"]}, "expected_chunks": nullable(INT), "chunks": INT,
                  **_IMPORT_COUNTS, "errors": _ROW_ERRORS, "errors_truncated": BOOL, "created_at": TIME,
                  "updated_at": TIME})
IMPORT_CHUNK = obj({"import_id": STR, "chunk": INT, "replayed": BOOL, **_IMPORT_COUNTS, "errors": _ROW_ERRORS})
#: ``text/csv``: the ledger page (header row first on the first page); ``X-Next-Cursor`` while more remains.
LEDGER_CSV = STR

_P = "/v1/programs/{program_id}"
_M = _P + "/members/{member_id}"
#: Success schemas of routes that do not pass ``response_schema=`` themselves.
BY_ROUTE: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/v1/programs"): PROGRAM_CREATED,
    ("GET", "/v1/programs"): page(PROGRAM),
    ("GET", _P): PROGRAM,
    ("PATCH", _P): PROGRAM,
    ("POST", _P + "/partners"): PARTNER_CREATED,
    ("PATCH", _P + "/partners/{partner_id}"): PARTNER,
    ("GET", _P + "/partners"): page(PARTNER),
    ("GET", _P + "/partners/{partner_id}"): PARTNER,
    ("POST", _P + "/partners/{partner_id}/webhook-secrets/{source}/rotate"): ROTATED,
    ("POST", _P + "/partners/{partner_id}/keys"): KEY_CREATED,
    ("GET", _P + "/keys"): page(KEY_INFO),
    ("POST", _P + "/keys/{key_id}/revoke"): KEY_INFO,
    ("POST", "/v1/landing/invites"): INVITE,
    ("GET", "/v1/landing/offer/{code}"): OFFER,
    ("GET", _P + "/members/lookup"): MEMBER,
    ("GET", _M): MEMBER,
    ("GET", _M + "/referrals"): page(REFERRAL),
    ("GET", _M + "/attributions"): page(ATTRIBUTION_RECORD),
    ("GET", _P + "/codes/{code}/attributions"): page(ATTRIBUTION_RECORD, code=STR, member_id=nullable(STR)),
    ("PUT", _M + "/code"): MEMBER,
    ("GET", "/health"): HEALTH,
    ("GET", "/openapi.json"): obj({"openapi": STR, "info": OBJ, "servers": {"type": "array", "items": obj({"url": STR})},
                                   "paths": OBJ, "components": OBJ}),
    ("PUT", _P + "/rules"): RULES_VERSION,
    ("GET", _P + "/rules"): RULES_VERSION,
    # A JSON Schema document (draft 2020-12): its keywords are open by nature.
    ("GET", _P + "/rules/schema"): {**obj({"$schema": STR}), "additionalProperties": True},
    ("GET", _M + "/balance"): BALANCE,
    ("GET", _M + "/ledger"): page(LEDGER_ENTRY),
    ("GET", _M + "/redemptions/quote"): QUOTE,
    ("POST", _M + "/redemptions"): REDEMPTION,
    ("GET", _M + "/redemptions/{redemption_id}"): REDEMPTION,
    ("POST", _M + "/redemptions/{redemption_id}/confirm"): REDEMPTION,
    ("POST", _M + "/redemptions/{redemption_id}/cancel"): REDEMPTION,
    ("POST", "/v1/webhooks/{partner_id}/events"): EVENT_RESULT,
    ("GET", _M + "/coupons"): COUPONS,
    ("PUT", _M + "/coupons/{code}"): COUPON_PUT,
    ("GET", _M + "/coupons/{code}"): COUPON,
    ("DELETE", _M + "/coupons/{code}"): COUPON_REMOVED,
}
#: Error statuses a web page answers as HTML to a browser (``Accept: text/html``), JSON otherwise.
ERROR_PAGES: dict[tuple[str, str], tuple[int, ...]] = {
    ("GET", "/w/{token}"): (404, 503),
    ("POST", "/w/{token}/erasure-request"): (404, 503),
}

#: Routes that touch neither DynamoDB nor the master secret: no 503 (``chalicelib.api.openapi.error_statuses``).
NOT_STORED: frozenset[tuple[str, str]] = frozenset({
    ("GET", "/health"), ("GET", "/openapi.json"), ("GET", "/dashboard"), ("GET", "/dashboard/assets/{name}"),
    ("GET", "/dev/outbox"), ("GET", "/r/{code}"),  # the short link always redirects (or 429)
})
#: Statuses the derivation would give a route that it never answers (e.g. the short link never 404s).
NOT_ANSWERED: dict[tuple[str, str], frozenset[int]] = {
    ("GET", "/r/{code}"): frozenset({400, 404, 422}),
    ("GET", "/dev/outbox"): frozenset({422}),
    ("GET", "/w/{token}"): frozenset({422}),  # an unknown `lang` falls back to the member's language
}

#: Route-specific statuses beyond the derived ones (``chalicelib.api.openapi.error_statuses``): 409 where a
#: conditional write can meet a conflict, 429 where the route is rate limited, other successes (``200``).
EXTRA_STATUSES: dict[tuple[str, str], dict[int, str]] = {
    ("POST", "/v1/landing/invites"): {429: "Too many invites from this client (per program and minute); see "
                                           "Retry-After"},
    ("GET", "/v1/landing/offer/{code}"): {429: "Too many offer reads from this client; see Retry-After"},
    ("GET", "/r/{code}"): {429: "Too many redirects from this client; see Retry-After"},
    ("GET", "/dev/outbox"): {404: "Not the local stage, or no such message"},
    ("PATCH", _P): {409: "The program changed concurrently (`concurrent_update`); retry"},
    # Conditional writes found in the stores (``on_fail=Conflict``): concurrent changes and id collisions.
    ("POST", "/v1/programs"): {409: "A generated id or key collided (`key_collision`); retry"},
    ("POST", _P + "/partners"): {409: "A generated key collided (`key_collision`); retry"},
    ("POST", _P + "/partners/{partner_id}/keys"): {409: "A generated key collided (`key_collision`); retry"},
    ("PUT", _P + "/rules"): {409: "The rules were changed concurrently (`concurrent_update`); read them and retry"},
    ("POST", _P + "/partners/{partner_id}/offers"): {409: "A generated offer id collided; retry"},
    ("PATCH", _P + "/partners/{partner_id}/offers/{offer_id}"): {
        409: "The offer changed concurrently (`concurrent_update`); read it again and retry"},
    ("POST", _P + "/partners/{partner_id}/offers/{offer_id}/codes"): {
        409: "The pool changed while the codes were written (`concurrent_upload`); retry with the codes not stored"},
    ("POST", _P + "/partners/{partner_id}/webhook-endpoints"): {409: "A generated endpoint id collided; retry"},
    ("POST", _P + "/imports"): {409: "A generated import id collided; retry"},
    ("DELETE", _P + "/partners/{partner_id}/integrations/{platform}"): {
        409: "The integration changed concurrently (`concurrent_update`); retry"},
    ("POST", _P + "/partners/{partner_id}/webhook-secrets/{source}/rotate"): {
        409: "Rotated concurrently; retry"},
    ("PUT", _M + "/code"): {409: "The code belongs to someone else (`code_taken`), the member holds the "
                                 "maximum of codes (`too_many_codes`), or the member is erased (`member_erased`)"},
    ("PUT", _M + "/coupons/{code}"): {409: "Another member holds the code (`coupon_taken`), the member has "
                                           "the maximum (`too_many_coupons`), or the member is erased "
                                           "(`member_erased`)"},
    ("POST", _M + "/devices"): {409: "The member is erased (`member_erased`): no device is registered"},
    ("POST", _M + "/redemptions"): {
        200: "The same redemption again (a retried `Idempotency-Key`)",
        409: "Not enough available points (`insufficient_points`, `details.available`) or the "
             "`Idempotency-Key` was used with another body"},
    ("POST", _M + "/redemptions/{redemption_id}/confirm"): {409: "The redemption is not held any more"},
    ("POST", _M + "/redemptions/{redemption_id}/cancel"): {409: "The redemption is not held any more"},
    ("POST", "/v1/webhooks/{partner_id}/events"): {409: "A conflicting state change (retry the delivery)"},
}


def _header(name: str, text: str) -> dict[str, Any]:
    return {"name": name, "in": "header", "required": False, "schema": STR, "description": text}


#: Parameters a route reads beyond its declaration's path, query and required headers (OpenAPI objects).
#: A platform's webhook is authenticated its own way: each platform sends its own headers (not required
#: of the others), or the URL carries the integration's token (Tilda, amoCRM, InSales); Bitrix24's
#: application token is a field of the form body (``auth[application_token]``).
EXTRA_PARAMETERS: dict[tuple[str, str], list[dict[str, Any]]] = {
    ("POST", "/v1/webhooks/{partner_id}/{platform}"): [
        {"name": "token", "in": "query", "required": False, "schema": STR,
         "description": "The integration's URL token (Tilda, amoCRM, InSales: platforms that cannot sign)"},
        _header("X-Shopify-Hmac-Sha256", "Shopify: base64 HMAC-SHA256 of the raw body under the app's secret"),
        _header("X-Shopify-Shop-Domain", "Shopify: must be the connected `shop_domain`"),
        _header("X-Shopify-Topic", "Shopify: the webhook topic (required of Shopify)"),
        _header("X-Shopify-Webhook-Id", "Shopify: the delivery id"),
        _header("X-WC-Webhook-Signature", "WooCommerce: base64 HMAC-SHA256 of the raw body under the secret"),
        _header("X-WC-Webhook-Topic", "WooCommerce: the webhook topic (required of WooCommerce)"),
        _header("X-WC-Webhook-Delivery-ID", "WooCommerce: the delivery id"),
        _header("X-HubSpot-Signature-v3", "HubSpot: base64 HMAC-SHA256 (v3) of method, URI, body and timestamp"),
        _header("X-HubSpot-Request-Timestamp", "HubSpot: the signed request time; older than 5 minutes: 401"),
    ],
}

def _rules_example() -> Any:
    from chalicelib.domain.rewards.examples import load_example_doc

    return load_example_doc("uds_3_level")


#: Example request bodies of the main requests (a function: built when the document is) (shown in the document).
REQUEST_EXAMPLES: dict[tuple[str, str], Any] = {
    ("POST", "/v1/programs"): {
        "name": "Кофейня Зерно", "currency": "RUB", "point_value_minor": 100, "default_locale": "ru",
        "allowed_origins": ["https://zerno.example"], "landing_url": "https://zerno.example/invite"},
    ("POST", _P + "/partners"): {"name": "FitLab", "landing_url": "https://fitlab.example/friends"},
    ("POST", "/v1/webhooks/{partner_id}/events"): {
        "type": "order.paid", "occurred_at": "2026-11-23T10:00:00Z", "object": {"type": "order", "id": "100234"},
        "customer": {"id": "cust_8841", "email": "anna.petrova@example.com"},
        "order": {"total": 249000, "currency": "RUB"}, "referral": {"code": "T838WMF5F44"}},
    ("POST", "/v1/landing/invites"): {"email": "olga@example.com", "name": "Olga", "locale": "ru",
                                      "ref": "T838-WMF5-F44", "utm": {"source": "telegram"}},
    ("POST", _M + "/redemptions"): {"points": 300, "order_id": "100235", "order_amount": 100000},
    ("PATCH", _P): {"name": "Кофейня Зерно и друзья", "allowed_origins": ["https://zerno.example"],
                    "settings": {"attribution_window_days": 30, "attribution_model": "last_touch"}},
    ("PATCH", _P + "/partners/{partner_id}"): {"name": "FitLab Moscow", "contact_email": "partners@fitlab.example"},
    ("PUT", _M + "/code"): {"code": "OLGA2026"},
    ("POST", _M + "/devices"): {"platform": "fcm", "token": "fcm_dGhpcyBpcyBhIHRva2Vu", "device_id": "pixel-8"},
    ("PATCH", _P + "/partners/{partner_id}/offers/{offer_id}"): {"low_pool_threshold": 50, "valid_days": 30},
    ("PATCH", _P + "/partners/{partner_id}/webhook-endpoints/{endpoint_id}"): {
        "event_types": ["reward.posted", "voucher.issued"], "enabled": True},
    ("POST", _P + "/review/{item_id}/approve"): {"reason": "Checked the receipt with the shop"},
    ("POST", _P + "/review/{item_id}/void"): {"reason": "Self-referral: same card as the referrer", "fraud": True},
    ("POST", _M + "/wallet-links"): {"ttl_hours": 48},
    #: The main configuration request: a whole rules document (one of the shipped examples, docs/rules.md).
    ("PUT", _P + "/rules"): _rules_example,
}
#: Examples of a request body by media type, where a route takes more than one (JSON and form fields).
REQUEST_EXAMPLES_BY_MEDIA: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/v1/webhooks/{partner_id}/{platform}"): {
        "application/json": {"id": 820982911946154508, "order_number": 1001, "financial_status": "paid",
                             "total_price": "2490.00", "currency": "RUB", "email": "anna.petrova@example.com",
                             "customer": {"id": 115310627314723954}, "discount_codes": [{"code": "T838WMF5F44"}]},
        "application/x-www-form-urlencoded": {"Name": "Olga", "Email": "olga@example.com", "Phone": "+79161234567",
                                              "ref": "T838WMF5F44", "tranid": "1234567:8910", "formid": "form1"},
    },
    ("POST", _P + "/partners/{partner_id}/offers/{offer_id}/codes"): {"text/csv": "code\r\nCAFE-0001\r\nCAFE-0002\r\n"},
    ("POST", "/u/{token}"): {"application/x-www-form-urlencoded": {"List-Unsubscribe": "One-Click"},
                             "application/json": {"List-Unsubscribe": "One-Click"}},
}
