"""Operator administration: programs, partners, keys and webhook secrets.

Every function takes the caller's :class:`Principal` first and checks the tenant
before reading anything else. Secrets and keys are returned once, at creation.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from chalicelib.config import get_settings
from chalicelib.domain import clock, urls
from chalicelib.domain.errors import NotFound, ValidationFailed, field_error
from chalicelib.domain.ids import new_id
from chalicelib.domain.records import NewKey
from chalicelib.domain.safe_json import SINGLE_LINE
from chalicelib.domain.settings import IMMUTABLE_SETTINGS, PROGRAM_SETTINGS_SCHEMA, validate_tiers
from chalicelib.domain.urls import HTTP_URL
from chalicelib.services import secrets
from chalicelib.services.auth import PARTNER_PREFIX, PUBLISHABLE_PREFIX, Principal, hash_key, new_key
from chalicelib.services.ports import Ports

if TYPE_CHECKING:
    from chalicelib.store.tenancy import ApiKeyRefItem, PartnerItem, ProgramItem

#: Where signed webhooks come from. ``events`` is the canonical Standard Webhooks
#: intake; platform adapters add their own sources.
WEBHOOK_SOURCES = ["events"]

_ORIGIN = {"type": "string", "pattern": r"^https?://[A-Za-z0-9.\-]+(:[0-9]{1,5})?$", "maxLength": 200}
# Stored normalised (IDN host as punycode, path percent-encoded): it goes into Location headers.
_URL = {"type": "string", "pattern": HTTP_URL, "maxLength": 2000}
_NAME = {"type": "string", "minLength": 1, "maxLength": 120, "pattern": SINGLE_LINE}

PROGRAM_CREATE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name"],
    "properties": {
        "name": _NAME,
        "points_unit": {"type": "string", "minLength": 1, "maxLength": 40, "default": "points", "pattern": SINGLE_LINE},
        "point_value_minor": {"type": "integer", "minimum": 1, "maximum": 1_000_000, "default": 100},
        "currency": {"type": "string", "pattern": "^[A-Z]{3}$", "default": "RUB"},
        "default_locale": {"enum": ["ru", "en"], "default": "ru"},
        "allowed_origins": {"type": "array", "items": _ORIGIN, "maxItems": 20, "default": []},
        "landing_url": _URL,
        "settings": PROGRAM_SETTINGS_SCHEMA,
    },
}

PROGRAM_UPDATE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "minProperties": 1,
    "properties": {
        "name": PROGRAM_CREATE_SCHEMA["properties"]["name"],
        "points_unit": {"type": "string", "minLength": 1, "maxLength": 40, "pattern": SINGLE_LINE},
        "default_locale": {"enum": ["ru", "en"]},
        "allowed_origins": {"type": "array", "items": _ORIGIN, "maxItems": 20},
        "landing_url": {"anyOf": [_URL, {"type": "null"}]},
        # Keys given here replace the stored ones; keys not given are kept.
        "settings": PROGRAM_SETTINGS_SCHEMA,
    },
}

_EMAIL = {"type": "string", "maxLength": 254, "pattern": "^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$",
          "description": "Where partner alerts (a voucher pool running low) are e-mailed."}

PARTNER_CREATE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name"],
    "properties": {
        "name": _NAME,
        "landing_url": _URL,
        "contact_email": _EMAIL,
        "webhook_sources": {
            "type": "array",
            "items": {"enum": WEBHOOK_SOURCES},
            "uniqueItems": True,
            "minItems": 1,
            "default": ["events"],
        },
    },
}


PARTNER_UPDATE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "minProperties": 1,
    "properties": {"name": _NAME, "contact_email": {"anyOf": [_EMAIL, {"type": "null"}]}},
}


def program_view(item: ProgramItem) -> dict[str, Any]:
    return {
        "program_id": item.program_id,
        "name": item.name,
        "points_unit": item.points_unit,
        "point_value_minor": int(item.point_value_minor),
        "currency": item.currency,
        "default_locale": item.default_locale,
        "allowed_origins": list(item.allowed_origins or []),
        "landing_url": item.landing_url,
        "settings": item.settings or {},
        "rules_version": int(item.rules_version or 0),
        "created_at": clock.iso(item.created_at),
    }


def partner_view(item: PartnerItem) -> dict[str, Any]:
    return {
        "partner_id": item.partner_id,
        "program_id": item.program_id,
        "name": item.name,
        "landing_url": item.landing_url,
        "contact_email": item.contact_email,
        "webhook_sources": {
            source: [{k: v for k, v in ver.items()} for ver in versions]
            for source, versions in (item.webhook_secrets or {}).items()
        },
        "created_at": clock.iso(item.created_at),
    }


def key_view(ref: ApiKeyRefItem) -> dict[str, Any]:
    return {
        "key_id": ref.key_id,
        "kind": ref.kind,
        "program_id": ref.program_id,
        "partner_id": ref.partner_id,
        "display_prefix": ref.display_prefix,
        "revoked": bool(ref.revoked),
        "created_at": clock.iso(ref.created_at),
    }


def _new_key(deps: Ports, kind: str, program_id: str, partner_id: str | None) -> tuple[str, NewKey]:
    """A new key: the clear key (shown once, never stored) and what is stored of it."""
    prefix = PARTNER_PREFIX if kind == "partner" else PUBLISHABLE_PREFIX
    key = new_key(prefix)
    return key, NewKey(key_id=new_id("key"), key_hash=hash_key(key), display_prefix=key[: len(prefix) + 4],
                       kind=kind, program_id=program_id, partner_id=partner_id, created_at=deps.clock.now())


def _check_birthday_gift(deps: Ports, program_id: str, settings: Mapping[str, Any]) -> None:
    """The birthday gift names a partner of the program (``funded_by``) and an offer of that partner: a typo
    would only ever fall back or fund nobody, so it is a 422 (an offer archived later just falls back)."""
    gift = settings.get("birthday_gift")
    if not isinstance(gift, Mapping):
        return
    errors = []
    funded_by = gift.get("funded_by")
    offer = gift.get("offer") if isinstance(gift.get("offer"), Mapping) else None
    if funded_by is not None and not deps.programs.existing_partners(program_id, {funded_by}):
        errors.append(field_error("$.settings.birthday_gift.funded_by", f"'{funded_by}' is not a partner of this program"))
    if offer is not None and not deps.programs.offer_exists(program_id, offer["partner_id"], offer["offer_id"]):
        errors.append(field_error("$.settings.birthday_gift.offer.offer_id",
                                  f"'{offer['offer_id']}' is not an offer of partner '{offer['partner_id']}'"))
    if errors:
        raise ValidationFailed("The birthday gift names a partner or offer that does not exist",
                               details={"errors": errors})


def _check_settings(settings: Mapping[str, Any]) -> None:
    """What the settings schema cannot express (schema-valid input): 422 with every path."""
    errors = validate_tiers(settings.get("tiers"))
    if errors:
        raise ValidationFailed("Invalid program settings", details={"errors": errors})


def _check_tiers_in_rules(deps: Ports, program: ProgramItem, tiers: Any) -> None:
    """The current rules' ``trigger.tiers`` and ``tier_multipliers`` must still name tiers: a 422, not rules that
    silently pay nobody (change the rules first)."""
    from chalicelib.domain.settings import TierSettings
    from chalicelib.services import rules as rules_service

    current = rules_service.current_rules(program, deps=deps)
    if current is None or not current.uses_tiers:
        return
    parsed = TierSettings.from_stored(tiers)
    known = set(parsed.ids) if parsed is not None else set()
    used = sorted({t for r in current.rules for t in (*r.trigger.tiers, *r.tier_multipliers)} - known)
    if used:
        raise ValidationFailed("The current rules use member tiers these settings do not define", details={"errors": [
            field_error("$.settings.tiers", f"rules version {current.version} uses tier(s) {', '.join(used)}; "
                                            "change the rules first")]})


def create_program(deps: Ports, principal: Principal, data: Mapping[str, Any]) -> dict[str, Any]:
    """``data`` is valid against ``PROGRAM_CREATE_SCHEMA`` (defaults filled); the caller is the operator."""
    _check_settings(data.get("settings", {}))
    program_id = new_id("prg")
    _check_birthday_gift(deps, program_id, data.get("settings", {}))  # a new program has no partners: null or 422
    fields = dict(
        program_id=program_id,
        name=data["name"],
        points_unit=data["points_unit"],
        point_value_minor=data["point_value_minor"],
        currency=data["currency"],
        default_locale=data["default_locale"],
        allowed_origins=data["allowed_origins"],
        landing_url=urls.normalize_field(data.get("landing_url"), "$.landing_url"),
        settings=data.get("settings", {}),
        created_at=deps.clock.now(),
    )
    publishable_key, key = _new_key(deps, "publishable", program_id, None)
    program, ref = deps.programs.create_program(fields, key)
    return {**program_view(program), "publishable_key": publishable_key, "publishable_key_info": key_view(ref)}


def list_programs(deps: Ports, principal: Principal, limit: int, cursor: dict[str, Any] | None) -> dict[str, Any]:
    if not principal.is_operator:
        # A partner sees exactly its own program.
        program = deps.programs.get(principal.program_id or "")
        return {"items": [program_view(program)], "next_cursor": None}
    page = deps.programs.programs(limit, cursor)
    return {"items": [program_view(i) for i in page.items], "next_cursor": page.next_cursor}


def get_program(deps: Ports, principal: Principal, program_id: str) -> dict[str, Any]:
    principal.require_program(program_id)
    return program_view(deps.programs.get(program_id))


def update_program(deps: Ports, principal: Principal, program_id: str, data: Mapping[str, Any]) -> dict[str, Any]:
    """Change a program's presentation and settings. Currency and point value never change:
    every ledger entry already posted is denominated in them. ``data``: valid ``PROGRAM_UPDATE_SCHEMA``;
    the caller is the operator (the route's contract)."""
    program = deps.programs.get(program_id, fresh=True)
    current = dict(program.settings or {})
    changes = data.get("settings", {})
    _check_settings(changes)
    if "tiers" in changes:
        _check_tiers_in_rules(deps, program, changes["tiers"])
    for name, reason in IMMUTABLE_SETTINGS.items():
        fixed = getattr(program.program_settings, name)
        if changes.get(name, fixed) != fixed:
            raise ValidationFailed("This setting cannot change once the program exists",
                                   details={"errors": [field_error(f"$.settings.{name}", f"is fixed: {reason}")]})
    _check_birthday_gift(deps, program_id, changes)
    updates: dict[str, Any] = {field: data[field] for field in
                               ("name", "points_unit", "default_locale", "allowed_origins") if field in data}
    if "landing_url" in data:
        updates["landing_url"] = urls.normalize_field(data["landing_url"], "$.landing_url") or None
    if changes:
        updates["settings"] = {**current, **changes}
    return program_view(deps.programs.update_program(program, updates))


def create_partner(deps: Ports, principal: Principal, program_id: str, data: Mapping[str, Any]) -> dict[str, Any]:
    """``data``: valid ``PARTNER_CREATE_SCHEMA`` (defaults filled); the caller is the operator."""
    deps.programs.get(program_id)
    now = deps.clock.now()
    partner_id = new_id("ptn")
    webhook_secrets = {s: [{"version": 1, "created_at": clock.iso(now), "expires_at": None}] for s in data["webhook_sources"]}
    fields = dict(
        program_id=program_id,
        partner_id=partner_id,
        name=data["name"],
        landing_url=urls.normalize_field(data.get("landing_url"), "$.landing_url"),
        contact_email=data.get("contact_email"),
        webhook_secrets=webhook_secrets,
        created_at=now,
    )
    key, new = _new_key(deps, "partner", program_id, partner_id)
    # Derived before the write: without the master secret (503) nothing is written.
    shown_once = {s: deps.secrets.webhook_secret(program_id, partner_id, s, 1) for s in data["webhook_sources"]}
    partner, ref = deps.programs.create_partner(fields, new)
    return {**partner_view(partner), "api_key": key, "api_key_info": key_view(ref), "webhook_secrets": shown_once}


def list_partners(deps: Ports, principal: Principal, program_id: str, limit: int = 100,
                  cursor: dict[str, Any] | None = None) -> dict[str, Any]:
    principal.require_program(program_id)
    deps.programs.get(program_id)
    page = deps.programs.partners(program_id, limit, cursor)
    return {"items": [partner_view(p) for p in page.items], "next_cursor": page.next_cursor}


def get_partner(deps: Ports, principal: Principal, program_id: str, partner_id: str) -> dict[str, Any]:
    principal.require_program(program_id)
    return partner_view(deps.programs.partner(program_id, partner_id))


def update_partner(deps: Ports, principal: Principal, program_id: str, partner_id: str,
                   data: Mapping[str, Any]) -> dict[str, Any]:
    """The partner's name and alert address (operator, or the partner itself)."""
    principal.require_partner_scope(program_id, partner_id)
    partner = deps.programs.partner(program_id, partner_id, fresh=True)
    return partner_view(deps.programs.update_partner(partner, dict(data)))


def rotate_webhook_secret(deps: Ports, principal: Principal, program_id: str, partner_id: str,
                          source: str) -> dict[str, Any]:
    principal.require_partner_scope(program_id, partner_id)
    partner = deps.programs.partner(program_id, partner_id, fresh=True)
    if source not in (partner.webhook_secrets or {}):
        raise NotFound("This partner has no webhook secret for that source", details={"source": source})
    now = deps.clock.now()
    overlap = timedelta(hours=get_settings().secret_rotation_overlap_hours)
    updated, version = secrets.rotated(partner.webhook_secrets, source, now, overlap)
    secret = deps.secrets.webhook_secret(program_id, partner_id, source, version)  # before the write (see above)
    deps.programs.set_webhook_secrets(partner, updated)
    previous = [v for v in updated[source] if v["version"] != version]
    return {
        "source": source,
        "version": version,
        "secret": secret,
        "previous_versions_valid_until": max((v["expires_at"] for v in previous), default=None),
    }


def create_partner_key(deps: Ports, principal: Principal, program_id: str, partner_id: str) -> dict[str, Any]:
    principal.require_partner_scope(program_id, partner_id)
    principal.require_server_key()
    deps.programs.partner(program_id, partner_id)
    key, new = _new_key(deps, "partner", program_id, partner_id)
    ref = deps.programs.add_key(new)  # checks that the partner still exists when the key is written
    return {"api_key": key, "api_key_info": key_view(ref)}


def list_keys(deps: Ports, principal: Principal, program_id: str, limit: int = 100,
              cursor: dict[str, Any] | None = None) -> dict[str, Any]:
    """The route requires the operator, in the program."""
    page = deps.programs.key_refs(program_id, limit, cursor)
    return {"items": [key_view(r) for r in page.items], "next_cursor": page.next_cursor}


def revoke_key(deps: Ports, principal: Principal, program_id: str, key_id: str) -> dict[str, Any]:
    principal.require_program(program_id)
    ref = deps.programs.key_ref(program_id, key_id)
    if not principal.is_operator and (ref.partner_id is None or ref.partner_id != principal.partner_id):
        raise NotFound("API key not found", details={"key_id": key_id})
    deps.programs.revoke_key(ref)
    return key_view(ref)
