"""Member wallet links and the wallet's content (``GET /w/{token}``, docs/analytics.md#wallet).

A wallet link carries a signed, short-lived token bound to one member of one program:
``<payload>.<mac>``, the payload base64url JSON ``[program_id, member_id, expires_epoch]``, the MAC
HMAC-SHA256 with a key derived from the master secret for this purpose only (not the unsubscribe key),
truncated to 128 bits. No state: a token cannot be forged, changed or used after it expires.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import datetime, timedelta
from typing import Any

from chalicelib.domain import clock
from chalicelib.domain.errors import NotFound
from chalicelib.domain.l10n import history_reason
from chalicelib.services import ports
from chalicelib.services.auth import Principal
from chalicelib.services.ports import Ports

MAX_TOKEN_LENGTH = 400
DEFAULT_TTL_HOURS = 24
MAX_TTL_HOURS = 24 * 14
#: What notification e-mails link to: a week, so a message read a few days late still opens.
EMAIL_TTL_HOURS = 24 * 7
LINKS_SCHEMA: dict[str, Any] = {"type": "object", "additionalProperties": False, "properties": {
    "ttl_hours": {"type": "integer", "minimum": 1, "maximum": MAX_TTL_HOURS,
                  "description": f"How long the link works (default {DEFAULT_TTL_HOURS} h)"}}}


class InvalidWallet(NotFound):
    pass


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _mac(payload: str) -> str:
    from chalicelib.services.secrets import derive_key

    return _b64(hmac.new(derive_key("wallet"), payload.encode("ascii"), hashlib.sha256).digest()[:16])


def make_token(program_id: str, member_id: str, expires_at: datetime) -> str:
    payload = _b64(json.dumps([program_id, member_id, int(expires_at.timestamp())], separators=(",", ":")).encode())
    return f"{payload}.{_mac(payload)}"


def verify(token: str, now: datetime) -> tuple[str, str]:
    """``(program_id, member_id)``; anything not signed by us, changed or expired is an ``InvalidWallet``."""
    bad = InvalidWallet("This wallet link is invalid or has expired; ask the shop for a new one", code="invalid_token")
    if not token or len(token) > MAX_TOKEN_LENGTH or token.count(".") != 1:
        raise bad
    payload, mac = token.split(".")
    try:
        expected = _mac(payload)
    except UnicodeEncodeError:
        raise bad from None
    if not hmac.compare_digest(mac.encode("ascii", "replace"), expected.encode("ascii")):
        raise bad
    try:
        data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except ValueError:
        raise bad from None
    if not (isinstance(data, list) and len(data) == 3 and isinstance(data[0], str) and isinstance(data[1], str)
            and isinstance(data[2], int)):
        raise bad
    if now.timestamp() >= data[2]:
        raise bad
    return data[0], data[1]


def wallet_url(program_id: str, member_id: str, ttl_hours: int = DEFAULT_TTL_HOURS) -> tuple[str, datetime]:
    from chalicelib.config import get_settings

    expires = ports.current().clock.now().replace(microsecond=0) + timedelta(hours=ttl_hours)
    return f"{get_settings().public_base_url}/w/{make_token(program_id, member_id, expires)}", expires


def issue_link(principal: Principal, program_id: str, member_id: str, data: dict[str, Any]) -> dict[str, Any]:
    """``POST …/members/{member_id}/wallet-links``: operator or a partner of the program."""
    from chalicelib.services import members_query

    principal.require_program(program_id)
    principal.require_server_key()
    members_query.get_member(ports.current(), principal, program_id, member_id)  # 404 for an unknown member
    url, expires = wallet_url(program_id, member_id, int(data.get("ttl_hours") or DEFAULT_TTL_HOURS))
    return {"url": url, "expires_at": expires.strftime("%Y-%m-%dT%H:%M:%SZ")}


def content(token: str, limit: int = 10, deps: Ports | None = None) -> dict[str, Any]:
    """Everything the wallet page shows, read for the member the token names (the token is the credential:
    the reads run with the program's operator scope, for this one member only)."""
    from chalicelib.domain.analytics import mask_name
    from chalicelib.domain.share import qr_svg, share_links, share_texts
    from chalicelib.notify.tokens import unsubscribe_url
    from chalicelib.services import members_query, statement
    from chalicelib.services.landing.invites import display_code, public_link

    deps = deps or ports.current()
    program_id, member_id = verify(token, deps.clock.now())
    scope = Principal(kind="operator")
    try:
        program = deps.programs.get(program_id)
        member = members_query._member(deps, program_id, member_id)
    except NotFound:
        raise InvalidWallet("This wallet link is invalid or has expired; ask the shop for a new one",
                            code="invalid_token") from None
    if member.erased_at is not None:
        raise InvalidWallet("This member's data was erased", code="invalid_token")
    link = public_link(member.code)
    texts = share_texts(program.program_settings.offer, link)
    locale = member.locale if member.locale in ("ru", "en") else program.default_locale
    friends = members_query.referrals(deps, scope, program_id, member_id, 20, None)["items"]
    history = statement.ledger(deps, scope, program_id, member_id, limit, None)["items"]
    out: dict[str, Any] = {
        "program": {"name": program.name, "points_unit": program.points_unit, "currency": program.currency},
        "locale": locale if locale in ("ru", "en") else "en",
        "name": (member.name or "").split(" ")[0] or None,
        "balance": statement.balance(deps, scope, program_id, member_id),
        "code": display_code(member.code), "link": link,
        "share_text": texts.get(locale if locale in texts else "en", ""), "share_texts": texts,
        "share_links": share_links(texts.get(locale if locale in texts else "en", ""), link),
        "qr_svg": qr_svg(link),
        "friends": [{"name": mask_name(f.get("first_name")), "joined_at": f["joined_at"],
                     "status": "purchased" if f["purchased"] else "joined"} for f in friends],
        # Reasons in neutral words (the stored ledger reason names the friend's member id): see l10n.history_reason.
        "history": [_history_item(h, locale) for h in history],
        "unsubscribe_url": unsubscribe_url(program_id, member_id, "email"),
        "vouchers": _vouchers(scope, program_id, member_id),
        "tier": _tier(deps, program, member_id, locale),
        "erasure": _erasure(deps, program_id, member_id),
    }
    return out


def _erasure(deps: Ports, program_id: str, member_id: str) -> dict[str, Any] | None:
    """The member's erasure request, if any (``status``, ``requested_at``)."""
    record = deps.members.erasure_record(program_id, member_id)
    return None if record is None else {"status": record.status, "requested_at": clock.iso(record.requested_at)}


def request_erasure(token: str) -> dict[str, Any]:
    """``POST /w/{token}/erasure-request``: the member asks for their data to be erased. The token is the
    credential (as for the page); the request waits for the operator's confirmation (``services.erasure``)."""
    from chalicelib.services import erasure, members_query

    deps = ports.current()
    program_id, member_id = verify(token, deps.clock.now())
    bad = InvalidWallet("This wallet link is invalid or has expired; ask the shop for a new one", code="invalid_token")
    try:
        member = members_query._member(deps, program_id, member_id)
    except NotFound:
        raise bad from None
    if member.erased_at is not None:
        raise bad
    view = erasure.request_by_member(deps, program_id, member_id)
    locale = member.locale if member.locale in ("ru", "en") else "en"
    return {"status": view["status"], "requested_at": view["requested_at"], "locale": locale}


def _tier(deps: Ports, program: Any, member_id: str, locale: str | None) -> dict[str, Any] | None:
    """Member tier and progress to the next one (docs/coalition.md#tiers); None when the program has no tiers."""
    from chalicelib.services import tiers

    status = tiers.status(deps, program, member_id, locale, with_history=False)
    if status is None:
        return None
    nxt = status["next"]
    percent = 100 if nxt is None or not nxt["threshold"] else min(100, status["value"] * 100 // nxt["threshold"])
    from chalicelib.domain import tiers as domain

    settings = program.program_settings.tiers
    names = {lang: domain.level(settings, status["tier"]).name(lang) for lang in ("ru", "en")}
    if nxt is not None:
        nxt = {**nxt, "names": {lang: domain.level(settings, nxt["tier"]).name(lang) for lang in ("ru", "en")}}
    return {"tier": status["tier"], "name": status["name"], "names": names, "metric": status["metric"],
            "value": status["value"], "period_months": status["period_months"], "next": nxt, "percent": percent}


def _history_item(entry: dict[str, Any], locale: str) -> dict[str, Any]:
    event_type = str(entry.get("business_key") or "").rpartition("|")[2] or None
    facts = {"kind": entry["kind"], "reason_code": entry.get("reason_code"), "level": entry.get("level"),
             "event_type": event_type, "points": entry["points"],
             "reason": entry.get("reason") if entry["kind"] == "adjustment" else None}
    return {"points": entry["points"], "status": entry["status"], "at": entry["created_at"], "facts": facts,
            "reason": history_reason(locale, **facts)}


def _vouchers(scope: Principal, program_id: str, member_id: str) -> list[dict[str, Any]]:
    """The member's vouchers (partner offers issued to them), newest first."""
    from chalicelib.services import vouchers

    items = vouchers.member_vouchers(scope, program_id, member_id, 20, None)["items"]
    return [{"name": v.get("name"), "code": v.get("code"), "status": v.get("status"),
             "expires_at": v.get("expires_at")} for v in items]
