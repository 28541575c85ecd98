"""Connecting a partner's shop or CRM: settings, sealed secrets, URL tokens, the webhook URL.

``PUT …/integrations/{platform}`` stores the settings and answers the ``webhook_url`` to
register at the platform and the topics to subscribe. Secrets the platform issued
(``settings.secret``) and CRM API tokens are sealed by the ``Sealer`` port (``deps.sealer``: KMS in
production, ``services.envelope``) and never shown again;
putting a new one keeps the old one verifying for the rotation overlap. Platforms that
cannot sign get a random 256-bit token in their URL; only its SHA-256 is stored, and it is
shown once (``rotate_token: true`` issues a new one, the old one verifies for the overlap).
"""

from __future__ import annotations

import hashlib
import secrets as token_source
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from chalicelib import adapters
from chalicelib.adapters.base import Adapter
from chalicelib.config import get_settings
from chalicelib.domain.clock import iso, parse_iso
from chalicelib.domain.errors import NotFound, ValidationFailed, field_error
from chalicelib.domain.validation import validate
from chalicelib.services.auth import Principal
from chalicelib.services.ports import Ports

if TYPE_CHECKING:
    from chalicelib.store.integrations import IntegrationItem, IntegrationLogItem

_SECRET = {"type": "string", "minLength": 8, "maxLength": 512,
           "description": "The signing secret the platform issued (write-only; sealed with KMS)"}
_API_TOKEN = {"type": "string", "minLength": 8, "maxLength": 2048,
              "description": "Token for the CRM's REST API, used to fetch deal amounts and contacts (write-only)"}
#: Settings every platform understands besides its own.
COMMON_PROPERTIES: dict[str, Any] = {
    "secret": _SECRET,
    "rotate_token": {"type": "boolean", "description": "Issue a new URL token (token platforms)"},
    "api_token": _API_TOKEN,
}
_WRITE_ONLY = ("secret", "rotate_token", "api_token")


def unknown_platform() -> NotFound:
    return NotFound("Unknown platform", details={"platforms": sorted(adapters.PLATFORMS)})


def adapter_for(platform: str) -> Adapter:
    adapter = adapters.get(platform)
    if adapter is None:
        raise unknown_platform()
    return adapter


def settings_schema(adapter: Adapter) -> dict[str, Any]:
    own = adapter.settings_schema
    schema: dict[str, Any] = {
        "type": "object",
        "additionalProperties": False,
        "required": list(own.get("required", [])),
        "properties": {**COMMON_PROPERTIES, **own.get("properties", {})},
    }
    if own.get("dependencies"):  # e.g. amoCRM: an API token is useless without the account's subdomain
        schema["dependencies"] = own["dependencies"]
    return schema


def request_schema() -> dict[str, Any]:
    """For the OpenAPI document: the union of every platform's settings."""
    properties: dict[str, Any] = dict(COMMON_PROPERTIES)
    for platform in adapters.PLATFORMS:
        adapter = adapters.get(platform)
        assert adapter is not None
        properties.update(adapter.settings_schema.get("properties", {}))
    return {"type": "object", "required": ["settings"], "additionalProperties": False,
            "properties": {"settings": {"type": "object", "properties": properties}}}


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def seal_context(program_id: str, partner_id: str, platform: str, purpose: str) -> dict[str, str]:
    """KMS encryption context: a sealed value only opens for the integration it was made for."""
    return {"sarafan": "integration", "program": program_id, "partner": partner_id, "platform": platform,
            "purpose": purpose}


def webhook_url(partner_id: str, platform: str, token: str | None = None) -> str:
    base = f"{get_settings().public_base_url}/v1/webhooks/{partner_id}/{platform}"
    return f"{base}?token={token}" if token else base


def _valid(entries: list[dict[str, Any]], now: datetime) -> list[dict[str, Any]]:
    return [e for e in entries if e.get("expires_at") is None or parse_iso(e["expires_at"]) > now]


def _rotated(entries: list[dict[str, Any]], new: dict[str, Any], now: datetime) -> list[dict[str, Any]]:
    """Old valid entries expire after the overlap; the new one is current. At most 3 kept."""
    cutoff = iso(now + timedelta(hours=get_settings().secret_rotation_overlap_hours))
    kept = [{**e, "expires_at": min(e.get("expires_at") or cutoff, cutoff)} for e in _valid(entries, now)]
    return [*kept[-2:], {**new, "created_at": iso(now), "expires_at": None}]


def connect(deps: Ports, principal: Principal, program_id: str, partner_id: str, platform: str,
            body: dict[str, Any]) -> dict[str, Any]:
    principal.require_partner_scope(program_id, partner_id)
    principal.require_server_key()
    adapter = adapter_for(platform)
    deps.programs.partner(program_id, partner_id)
    raw = body.get("settings")
    if not isinstance(raw, dict):
        raise ValidationFailed("Settings are invalid", details={"errors": [field_error("$.settings", "is required")]})
    try:
        data = validate(settings_schema(adapter), raw, message="Settings are invalid")
    except ValidationFailed as exc:  # paths relative to the request body
        errors = [{**e, "path": "$.settings" + e["path"][1:]} for e in exc.details.get("errors", [])]
        raise ValidationFailed("Settings are invalid", details={"errors": errors}) from None

    now = deps.clock.now()
    existing = deps.integrations.get(program_id, partner_id, platform, fresh=True)
    secrets_list = list(existing.secrets or []) if existing else []
    tokens = list(existing.tokens or []) if existing else []
    api_token = existing.api_token if existing else None
    if adapter.auth == "secret":
        if data.get("secret"):
            sealed = deps.sealer.seal(data["secret"], seal_context(program_id, partner_id, platform, "secret"))
            secrets_list = _rotated(secrets_list, {"sealed": sealed}, now)
        elif not _valid(secrets_list, now):
            raise ValidationFailed("Settings are invalid", details={"errors": [
                field_error("$.settings.secret", f"is required: {platform} signs its webhooks with it")]})
    elif data.get("secret"):
        raise ValidationFailed("Settings are invalid", details={"errors": [
            field_error("$.settings.secret", f"is not used: {platform} cannot sign, its URL carries a token")]})
    issued: str | None = None
    if adapter.auth == "token" and (not _valid(tokens, now) or data.get("rotate_token")):
        issued = token_source.token_urlsafe(32)  # 256 bits
        tokens = _rotated(tokens, {"sha256": hash_token(issued)}, now)
    if data.get("api_token"):
        api_token = deps.sealer.seal(data["api_token"], seal_context(program_id, partner_id, platform, "api_token"))

    settings = {k: v for k, v in data.items() if k not in _WRITE_ONLY}
    item = deps.integrations.save(dict(
        program_id=program_id, partner_id=partner_id, platform=platform, settings=settings,
        secrets=secrets_list, tokens=tokens, api_token=api_token,
        revision=(int(existing.revision or 0) + 1) if existing else 1,
        created_at=existing.created_at if existing else now, updated_at=now,
    ), int(existing.revision or 0) if existing else None)
    view = integration_view(item, adapter, now)
    if issued:
        view["webhook_url"] = webhook_url(partner_id, platform, issued)
        view["token_issued"] = True
    return view


def integration_view(item: IntegrationItem, adapter: Adapter, now: datetime) -> dict[str, Any]:
    valid_secrets = _valid(list(item.secrets or []), now)
    valid_tokens = _valid(list(item.tokens or []), now)
    view: dict[str, Any] = {
        "platform": item.platform,
        "program_id": item.program_id,
        "partner_id": item.partner_id,
        "webhook_url": webhook_url(item.partner_id, item.platform),
        "topics": list(adapter.topics),
        "content_types": list(adapter.content_types),
        "auth": adapter.auth,
        "settings": dict(item.settings or {}),
        "revision": int(item.revision or 0),
        "created_at": iso(item.created_at),
        "updated_at": iso(item.updated_at),
        "docs_url": adapter.docs_url,
    }
    if adapter.auth == "secret":
        view["secret"] = {"versions_valid": len(valid_secrets),
                          "previous_valid_until": max((e["expires_at"] for e in valid_secrets if e.get("expires_at")),
                                                      default=None)}
    else:
        view["token_issued"] = False
        view["token"] = {"versions_valid": len(valid_tokens),
                         "previous_valid_until": max((e["expires_at"] for e in valid_tokens if e.get("expires_at")),
                                                     default=None),
                         "note": "The token is shown only when issued; PUT with rotate_token to get a new one"}
    view["api_token_set"] = item.api_token is not None
    return view


def get(deps: Ports, principal: Principal, program_id: str, partner_id: str, platform: str) -> dict[str, Any]:
    principal.require_partner_scope(program_id, partner_id)
    principal.require_server_key()
    adapter = adapter_for(platform)
    deps.programs.partner(program_id, partner_id)
    item = deps.integrations.get(program_id, partner_id, platform, fresh=True)
    if item is None:
        raise NotFound("This platform is not connected", details={"platform": platform})
    return integration_view(item, adapter, deps.clock.now())


def disconnect(deps: Ports, principal: Principal, program_id: str, partner_id: str, platform: str) -> dict[str, Any]:
    principal.require_partner_scope(program_id, partner_id)
    principal.require_server_key()
    adapter_for(platform)
    deps.programs.partner(program_id, partner_id)
    item = deps.integrations.get(program_id, partner_id, platform, fresh=True)
    if item is None:
        raise NotFound("This platform is not connected", details={"platform": platform})
    deps.integrations.delete(item)
    return {"platform": platform, "partner_id": partner_id, "disconnected": True}


def log_entry_view(item: IntegrationLogItem) -> dict[str, Any]:
    return {"entry_id": item.SK.rsplit("#", 1)[-1], "platform": item.platform, "code": item.code,
            "message": item.message, "object_id": item.object_id, "at": iso(item.at)}


def log(deps: Ports, principal: Principal, program_id: str, partner_id: str, platform: str, limit: int,
        cursor: dict[str, Any] | None) -> dict[str, Any]:
    """The partner's integration log of one platform, newest first (paged; entries kept
    ``store.integrations.LOG_TTL_DAYS`` days). Readable after a disconnect: that is when it is wanted."""
    principal.require_partner_scope(program_id, partner_id)
    principal.require_server_key()
    adapter_for(platform)
    deps.programs.partner(program_id, partner_id)
    page = deps.integrations.log(program_id, partner_id, platform, limit, cursor)
    return {"platform": platform, "partner_id": partner_id, "items": [log_entry_view(i) for i in page.items],
            "next_cursor": page.next_cursor}
