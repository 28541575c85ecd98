"""Landing pages: invite links, the short-link redirect and public offer info.

Everything here is reachable from the open web (a browser-safe publishable key,
or no key at all for ``/r/{code}``), so:

* **CORS** is per program: a response carries ``Access-Control-Allow-Origin`` only
  for one of the program's ``allowed_origins`` (always with ``Vary: Origin``), and a
  request whose ``Origin`` is not allowed is refused (403) before it changes anything.
  A preflight carries no key, so it cannot name the program; it is answered for any
  origin some program allows (cached), and the real request is then checked against
  the key's own program.
* **Rate limits** are per client IP per minute: one conditional ``UpdateItem`` on a
  counter item keyed by a salted HMAC of the IP (never the IP itself) that DynamoDB's
  TTL deletes afterwards. Over the limit: 429 with ``Retry-After``.
* **Invites** find or create the visitor's member record with conditional writes only
  (never check-then-insert): N parallel requests for one e-mail make one member and one
  code. A visitor's identifiers are *not* attached to an existing member (anyone can type
  anyone's e-mail into a landing page); only events signed by a partner do that.

Short links are ``{SARAFAN_PUBLIC_BASE_URL}/r/{code}``: one short domain for every
program, so a code is unique across the deployment (the ``LINK#{code}`` pointer is
created with the member's code pointer in one transaction) and the redirect finds the
program from the code alone, keeping links short.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import time
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pynamodb.exceptions import DoesNotExist, PutError

from chalicelib.config import get_settings
from chalicelib.domain import clock, urls
from chalicelib.domain.codes import format_code, generate_code, has_valid_check_symbol, normalize_code
from chalicelib.domain.errors import Forbidden, NotFound, RateLimited, ServiceUnavailable, ValidationFailed, field_error
from chalicelib.domain.identity import normalize_email, normalize_phone
from chalicelib.domain.ids import new_id
from chalicelib.domain.safe_json import SINGLE_LINE
from chalicelib.domain.share import qr_svg, resolve_locale, share_links, share_texts
from chalicelib.domain.validation import validate
from chalicelib.logs import get_logger
from chalicelib.services import secrets
from chalicelib.services.auth import Principal
from chalicelib.services.outcomes import RetryEvent
from chalicelib.store import cache, counters, keys, tenancy_repo
from chalicelib.store.db import Entity
from chalicelib.store.members import (
    CodeItem,
    IdentityItem,
    IdentityRef,
    LinkItem,
    MemberItem,
    PendingInviteItem,
    identity_refs,
    new_member,
    stage_member_creation,
)
from chalicelib.store.tenancy import PartnerItem, ProgramItem
from chalicelib.store.transact import Transaction

log = get_logger("sarafan.landing")

DEFAULT_INVITES_PER_MINUTE = 20
DEFAULT_OFFER_PER_MINUTE = 60
DEFAULT_REDIRECTS_PER_MINUTE = 120
#: Last resort for ``/r/{code}`` when neither the program nor ``SARAFAN_DEFAULT_LANDING_URL`` says where to go.
FALLBACK_LANDING_URL = "https://example.com/"
#: Pending invites outlive the attribution window by this much, so a late order still gets
#: an ``outside_window`` record instead of silence; then DynamoDB's TTL removes them.
INVITE_TTL_MARGIN = timedelta(days=7)
UTM_PARAMS = ("utm_source", "utm_medium", "utm_campaign", "utm_content", "utm_term")
MAX_ATTEMPTS = 6
_SOURCE_RE = re.compile(r"[^a-z0-9._\-]+")
#: Messengers fetch a shared link to draw its preview; those fetches are not clicks.
_PREVIEW_BOT_RE = re.compile(
    r"TelegramBot|WhatsApp|facebookexternalhit|Facebot|vkShare|Slackbot|Twitterbot|Discordbot|"
    r"LinkedInBot|Viber|SkypeUriPreview|YandexBot|Googlebot|bingbot", re.IGNORECASE)

_UTM_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {k: {"type": "string", "maxLength": 256, "pattern": SINGLE_LINE}
                   for k in ("source", "medium", "campaign", "content", "term")},
}
INVITE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "email": {"type": "string", "maxLength": 320},
        "phone": {"type": "string", "maxLength": 64},
        "name": {"type": "string", "maxLength": 120, "pattern": SINGLE_LINE},
        "locale": {"type": "string", "maxLength": 16, "pattern": SINGLE_LINE},
        "ref": {"type": "string", "maxLength": 64, "pattern": SINGLE_LINE},
        "utm": _UTM_SCHEMA,
    },
}
PREFLIGHT_ALLOW_HEADERS = "Content-Type, X-Publishable-Key, Authorization"
EXPOSE_HEADERS = "Retry-After, X-Request-Id"


# --------------------------------------------------------------------------- program, CORS


def landing_program(principal: Principal) -> ProgramItem:
    """The program a landing request acts for: the key's own (publishable or partner key)."""
    if not principal.program_id:
        raise Forbidden("Landing endpoints need the program's publishable key", code="program_key_required")
    return tenancy_repo.get_program(principal.program_id)


def _origin(value: str | None) -> str | None:
    value = (value or "").strip().rstrip("/").lower()
    return value or None


def origin_allowed(program: ProgramItem, origin: str | None) -> bool:
    wanted = _origin(origin)
    return wanted is not None and wanted in {_origin(o) for o in program.allowed_origins or []}


def check_origin(program: ProgramItem, origin: str | None) -> None:
    """Requests without ``Origin`` come from servers (no CORS); a browser's must be allowed."""
    if origin is not None and not origin_allowed(program, origin):
        raise Forbidden("This origin is not allowed for the program", code="origin_not_allowed",
                        details={"origin": origin[:200]})


def cors_headers(origin: str | None, allowed: bool) -> dict[str, str]:
    headers = {"Vary": "Origin"}
    if origin and allowed:
        headers["Access-Control-Allow-Origin"] = origin
        headers["Access-Control-Expose-Headers"] = EXPOSE_HEADERS
    return headers


def _all_allowed_origins() -> frozenset[str]:
    def load() -> frozenset[str]:
        found: set[str] = set()
        cursor = None
        for _ in range(100):  # 10 000 programs; a coalition deployment has tens
            items, cursor = tenancy_repo.list_programs(100, cursor)
            found.update(o for p in items for o in (_origin(x) for x in p.allowed_origins or []) if o)
            if not cursor:
                break
        return frozenset(found)

    return cache.cached("landing", "allowed_origins", get_settings().config_cache_seconds, load)


def preflight_headers(origin: str | None, methods: str) -> dict[str, str]:
    """Answer to ``OPTIONS``: allowed only for an origin some program lists (see module docstring)."""
    wanted = _origin(origin)
    if not origin or wanted not in _all_allowed_origins():
        return {"Vary": "Origin"}
    return {
        "Vary": "Origin",
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Methods": methods,
        "Access-Control-Allow-Headers": PREFLIGHT_ALLOW_HEADERS,
        "Access-Control-Max-Age": "600",
    }


# --------------------------------------------------------------------------- rate limits


def client_fingerprint(source_ip: str) -> str:
    """Salted (HMAC with a key derived from the master secret) hash of a client IP: never the IP."""
    return hmac.new(secrets.derive_key("client-ip"), source_ip.encode("utf-8"), hashlib.sha256).hexdigest()[:32]


def rate_limit(scope: str, source_ip: str, per_minute: int) -> None:
    now = clock.utcnow().timestamp()
    window_start = int(now // 60) * 60
    window = time.strftime("%Y%m%d%H%M", time.gmtime(window_start))
    if not counters.take(f"{scope}#{client_fingerprint(source_ip)}", window, per_minute, window_start + 120):
        retry_after = max(1, int(window_start + 60 - now + 0.999))
        raise RateLimited("Too many requests; retry later", retry_after_seconds=retry_after,
                          details={"limit_per_minute": per_minute})


def _program_limit(program: ProgramItem, name: str, default: int) -> int:
    limits = (program.settings or {}).get("landing_rate_limits") or {}
    return int(limits.get(name) or default)


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    return int(raw) if raw.isdigit() and int(raw) > 0 else default


# --------------------------------------------------------------------------- invites


def public_link(code: str) -> str:
    return f"{get_settings().public_base_url}/r/{code}"


def display_code(code: str) -> str:
    """Generated codes are shown grouped (``ABCD-EFGH-JKM``); vanity codes as they are."""
    return format_code(code) if len(code) == 11 and has_valid_check_symbol(code) else code


def _consistent_get(item_keys: list[tuple[str, str]]) -> dict[tuple[str, str], Entity]:
    unique = list(dict.fromkeys(item_keys))
    if not unique:
        return {}
    return {(i.PK, i.SK): i for i in Entity.batch_get(unique, consistent_read=True)}


def create_invite(program: ProgramItem, body: Any, source_ip: str) -> dict[str, Any]:
    rate_limit(f"invite#{program.program_id}", source_ip,
               _program_limit(program, "invites_per_minute", DEFAULT_INVITES_PER_MINUTE))
    data = validate(INVITE_SCHEMA, body)
    if not data.get("email") and not data.get("phone"):
        message = "an e-mail or a phone is required"
        raise ValidationFailed("Request body is invalid", details={"errors": [
            field_error("$.email", message), field_error("$.phone", message)]})
    region = "RU" if program.default_locale == "ru" else "US"
    email = normalize_email(data["email"], path="$.email") if data.get("email") else None
    phone = normalize_phone(data["phone"], region, path="$.phone") if data.get("phone") else None
    name = " ".join((data.get("name") or "").split()) or None
    locale = resolve_locale(data.get("locale") or program.default_locale)
    refs = identity_refs(program.program_id, email=email, phone=phone)
    utm = {k: v for k, v in (data.get("utm") or {}).items() if v}

    member = _find_or_create(program, refs, email=email, phone=phone, name=name, locale=locale, utm=utm,
                             ref=data.get("ref"))
    recorded = _record_invite(program, member, refs, data.get("ref"))
    link = public_link(member.code)
    texts = share_texts((program.settings or {}).get("offer") or {}, link)
    return {
        "code": member.code,
        "code_display": display_code(member.code),
        "link": link,
        "locale": locale,
        "share_texts": texts,
        "share_links": share_links(texts[locale], link),
        "qr_svg": qr_svg(link),
        "referral_recorded": recorded,
    }


def _find_or_create(program: ProgramItem, refs: list[IdentityRef], *, email: str | None, phone: str | None,
                    name: str | None, locale: str, utm: dict[str, str], ref: str | None) -> MemberItem:
    pid = program.program_id
    for attempt in range(MAX_ATTEMPTS):
        pointers = _consistent_get([r.pointer_key(pid) for r in refs])
        owner = next((p.member_id for r in refs
                      if isinstance(p := pointers.get(r.pointer_key(pid)), IdentityItem)), None)
        if owner is not None:
            found = _consistent_get([keys.member(pid, owner)]).get(keys.member(pid, owner))
            if isinstance(found, MemberItem):
                return found
            time.sleep(0.01 * (attempt + 1))  # pointer without member: should not happen, read again
            continue
        acquisition: dict[str, Any] = {"channel": "landing"}
        if utm:
            acquisition["utm"] = utm
        if ref and normalize_code(ref):
            acquisition["ref"] = normalize_code(ref)
        member = new_member(pid, new_id("mbr"), generate_code(), joined_at=clock.utcnow(), joined_via="invite",
                            name=name, locale=locale, email=email, phone=phone, acquisition=acquisition, refs=refs)
        tx = Transaction()
        stage_member_creation(tx, member, refs, RetryEvent())
        try:
            tx.commit()
        except RetryEvent:
            continue
        log.info("member created from landing", extra={"program_id": pid, "member_id": member.member_id})
        return member
    raise ServiceUnavailable("The invite could not be created because of concurrent updates; retry")


def _record_invite(program: ProgramItem, member: MemberItem, refs: list[IdentityRef], ref: str | None) -> bool:
    """"The visitor was brought by this referrer": a pending invite per identifier, matched by the pipeline.

    ``first_touch`` keeps an earlier invite by someone else while it is inside the window;
    ``last_touch`` replaces it. Self-invites (own link) are not recorded.
    """
    code = normalize_code(ref) if ref else None
    if not code:
        return False
    pid = program.program_id
    pointer = _consistent_get([keys.referral_code(pid, code)]).get(keys.referral_code(pid, code))
    if not isinstance(pointer, CodeItem) or pointer.member_id == member.member_id:
        return False
    settings = program.settings or {}
    window = timedelta(days=int(settings.get("attribution_window_days", 30)))
    now = clock.utcnow()
    recorded = False
    for ref_id in refs:
        pk, sk = ref_id.invite_key(pid)
        invite = PendingInviteItem(
            PK=pk, SK=sk, program_id=pid, kind=ref_id.kind, referrer_id=pointer.member_id, code=pointer.code,
            invited_at=now, ancestors=list(pointer.ancestors or []),
            expires_at_epoch=int((now + window + INVITE_TTL_MARGIN).timestamp()),
        )
        condition = None
        if settings.get("attribution_model", "first_touch") == "first_touch":
            condition = (Entity.PK.does_not_exist() | (PendingInviteItem.referrer_id == pointer.member_id)
                         | (PendingInviteItem.invited_at < now - window))
        try:
            invite.save(condition=condition)
            recorded = True
        except PutError as exc:
            if exc.cause_response_code != "ConditionalCheckFailedException":
                raise
    return recorded


# --------------------------------------------------------------------------- redirect


def default_landing_url() -> str:
    return urls.to_header_url(os.environ.get("SARAFAN_DEFAULT_LANDING_URL", "").strip()) or FALLBACK_LANDING_URL


def redirect_rate_limit(source_ip: str) -> None:
    rate_limit("redirect", source_ip, _env_int("SARAFAN_REDIRECT_RATE_PER_MINUTE", DEFAULT_REDIRECTS_PER_MINUTE))


def _utm_source(value: str | None) -> str:
    cleaned = _SOURCE_RE.sub("_", (value or "").strip().lower())[:64].strip("_")
    return cleaned or "-"


def with_params(url: str, params: dict[str, str]) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in params]
    query += list(params.items())
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))


def is_preview_bot(user_agent: str | None) -> bool:
    return bool(user_agent and _PREVIEW_BOT_RE.search(user_agent))


def redirect_target(raw_code: str, query: dict[str, str], user_agent: str | None = None) -> str:
    """Where ``/r/{code}`` sends the visitor; counts the click (not link-preview fetches).
    Never raises for a bad code."""
    code = normalize_code(raw_code)
    if code is None:
        return default_landing_url()
    try:
        link = LinkItem.get(*keys.short_link(code))
    except DoesNotExist:
        return default_landing_url()
    if not isinstance(link, LinkItem):
        return default_landing_url()
    try:
        program = tenancy_repo.get_program(link.program_id)
    except NotFound:
        return default_landing_url()
    # Stored URLs are normalised on the way in; older ones are normalised here (or skipped).
    landing = urls.to_header_url(program.landing_url) or default_landing_url()
    partner_id = (query.get("p") or "").strip()
    if partner_id and len(partner_id) <= 64:
        try:
            partner = tenancy_repo.get_partner(program.program_id, partner_id)
        except NotFound:
            partner = None
        if isinstance(partner, PartnerItem) and urls.to_header_url(partner.landing_url):
            landing = urls.to_header_url(partner.landing_url) or landing
    utm = {k: query[k][:256] for k in UTM_PARAMS if query.get(k)}
    try:
        if not is_preview_bot(user_agent):
            counters.count_click(program.program_id, link.code, clock.utcnow().strftime("%Y-%m-%d"),
                                 _utm_source(utm.get("utm_source")))
    except Exception:  # a lost click must not cost the visitor the redirect
        log.exception("click not counted", extra={"program_id": program.program_id})
    return with_params(landing, {"ref": link.code, **utm})


# --------------------------------------------------------------------------- offer


def offer(program: ProgramItem, raw_code: str, source_ip: str, locale: str | None = None) -> dict[str, Any]:
    rate_limit(f"offer#{program.program_id}", source_ip,
               _program_limit(program, "offer_per_minute", DEFAULT_OFFER_PER_MINUTE))
    code = normalize_code(raw_code)
    pointer = None
    if code is not None:
        try:
            pointer = CodeItem.get(*keys.referral_code(program.program_id, code))
        except DoesNotExist:
            pointer = None
    if not isinstance(pointer, CodeItem):
        raise NotFound("Unknown referral code", code="code_not_found", details={"code": (raw_code or "")[:64]})
    return {
        "code": pointer.code,
        "program": {"name": program.name, "default_locale": program.default_locale},
        "referrer": {"first_name": pointer.first_name},
        "offer": (program.settings or {}).get("offer") or {},
        "locale": resolve_locale(locale or program.default_locale),
    }

