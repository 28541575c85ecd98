"""Invites: find or create the visitor's member record with conditional writes only (never
check-then-insert): N parallel requests for one e-mail make one member and one code. A visitor's
identifiers are *not* attached to an existing member (anyone can type anyone's e-mail into a
landing page); only events signed by a partner do that. ``ref`` (the code whose link brought the
visitor) becomes a pending invite per identifier, matched later by the event pipeline."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from chalicelib.config import get_settings
from chalicelib.domain.codes import format_code, generate_code, has_valid_check_symbol, normalize_code
from chalicelib.domain.errors import MemberErased, ServiceUnavailable, ValidationFailed, field_error
from chalicelib.domain.events.schemas import CONTEXT_SCHEMA
from chalicelib.domain.identity import normalize_email, normalize_phone
from chalicelib.domain.ids import new_id
from chalicelib.domain.records import NewMember, PendingInvite
from chalicelib.domain.safe_json import SINGLE_LINE
from chalicelib.domain.share import qr_svg, resolve_locale, share_links, share_texts
from chalicelib.logs import get_logger
from chalicelib.services import ports
from chalicelib.services.landing import signals as invite_signals
from chalicelib.services.landing.rate_limits import rate_limit

if TYPE_CHECKING:
    from chalicelib.store.members import CodeItem, IdentityRef, MemberItem
    from chalicelib.store.tenancy import ProgramItem

log = get_logger("sarafan.landing")

#: Pending invites outlive the attribution window by this much, so a late order still gets
#: an ``outside_window`` record instead of silence; then DynamoDB's TTL removes them.
INVITE_TTL_MARGIN = timedelta(days=7)
MAX_ATTEMPTS = 6

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
        # Fraud signals, as on events (docs/fraud.md): only their keyed hashes are kept.
        "context": CONTEXT_SCHEMA,
    },
}


def public_link(code: str) -> str:
    return f"{get_settings().public_base_url}/r/{code}"


def display_code(code: str) -> str:
    """Generated codes are shown grouped (``ABCD-EFGH-JKM``); vanity codes as they are."""
    return format_code(code) if len(code) == 11 and has_valid_check_symbol(code) else code


def create_invite(program: ProgramItem, data: Mapping[str, Any], source_ip: str,
                  deps: ports.Ports | None = None) -> dict[str, Any]:
    """``data``: valid ``INVITE_SCHEMA`` (the route validates it)."""
    deps = deps or ports.current()
    rate_limit(f"invite#{program.program_id}", source_ip,
               program.program_settings.landing_rate_limits.invites_per_minute, deps)
    if not data.get("email") and not data.get("phone"):
        message = "an e-mail or a phone is required"
        raise ValidationFailed("Request body is invalid", details={"errors": [
            field_error("$.email", message), field_error("$.phone", message)]})
    region = "RU" if program.default_locale == "ru" else "US"
    email = normalize_email(data["email"], path="$.email") if data.get("email") else None
    phone = normalize_phone(data["phone"], region, path="$.phone") if data.get("phone") else None
    name = " ".join((data.get("name") or "").split()) or None
    locale = resolve_locale(data.get("locale") or program.default_locale)
    refs = deps.members.identity_refs(program.program_id, email=email, phone=phone)
    utm = {k: v for k, v in (data.get("utm") or {}).items() if v}
    signal_refs = invite_signals.refs_of(program.program_id, invite_signals.context_of(data.get("context"), source_ip),
                                         deps)

    member = _find_or_create(program, refs, deps, email=email, phone=phone, name=name, locale=locale, utm=utm,
                             ref=data.get("ref"))
    pointers = invite_signals.read_pointers(program.program_id, signal_refs, deps)
    recorded = _record_invite(program, member, refs, data.get("ref"), deps, signal_refs, pointers)
    if signal_refs:
        try:
            invite_signals.record(program.program_id, signal_refs, pointers, member.member_id, deps.clock.now(), deps)
        except MemberErased:
            raise _being_erased() from None
    link = public_link(member.code)
    texts = share_texts(program.program_settings.offer, link)
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
def _being_erased() -> ServiceUnavailable:
    return ServiceUnavailable("The data behind these identifiers is being erased; retry in a moment",
                              code="member_being_erased")


def _find_or_create(program: ProgramItem, refs: Sequence[IdentityRef], deps: ports.Ports, *, email: str | None,
                    phone: str | None, name: str | None, locale: str, utm: dict[str, str], ref: str | None) -> MemberItem:
    pid = program.program_id
    ref_allowed = True
    for attempt in range(MAX_ATTEMPTS):
        owner = deps.members.identity_owner(pid, refs) if refs else None  # a consistent read
        if owner is not None:
            found = deps.members.get(pid, owner, consistent=True)
            if found is not None and found.erased_at is not None:
                # Her erasure is running (its first step deletes these pointers): once it is done, the same
                # request makes a new member, as a new signup does.
                raise _being_erased()
            if found is not None:
                return found
            time.sleep(0.01 * (attempt + 1))  # pointer without member: should not happen, read again
            continue
        acquisition: dict[str, Any] = {"channel": "landing"}
        if utm:
            acquisition["utm"] = utm
        # The link she came through: only a code that is someone's, with that referrer's back-reference written in
        # the same transaction (her erasure finds the profile by it and takes the code off, whether or not an invite
        # is recorded after: the daily cap, a refused first touch).
        referrer = _code_owner(pid, ref, deps) if ref_allowed else None
        if referrer is not None:
            acquisition["ref"] = referrer.code
        plan = NewMember(pid, new_id("mbr"), generate_code(), joined_at=deps.clock.now(), joined_via="invite",
                          name=name, locale=locale, email=email, phone=phone, acquisition=acquisition,
                          ref_member_id=referrer.member_id if referrer is not None else None)
        try:
            member = deps.members.create_member(plan, refs)
        except MemberErased:  # the referrer's erasure started: her code is nobody's, the visitor is made without it
            ref_allowed = False
            continue
        if member is None:  # created concurrently (read again) or the code is taken (draw another)
            continue
        log.info("member created from landing", extra={"program_id": pid, "member_id": member.member_id})
        return member
    raise ServiceUnavailable("The invite could not be created because of concurrent updates; retry")


def _code_owner(program_id: str, ref: str | None, deps: ports.Ports) -> CodeItem | None:
    code = normalize_code(ref) if ref else None
    return deps.members.code_pointer(program_id, code, consistent=True) if code else None


def _take_invite_slot(program_id: str, referrer_id: str, now: datetime, limit: int, deps: ports.Ports) -> bool:
    """One of the referrer's invites today (docs/fraud.md): a conditional ADD on a per-day counter
    (DynamoDB's TTL removes it); False when the cap is reached, so scripted signups through one link
    record no more pending invites that day."""
    return deps.signals.take_velocity_slot(program_id, f"ref#{referrer_id}", f"INV#D#{now.strftime('%Y%m%d')}",
                                           limit, int((now + timedelta(days=2)).timestamp()))


def _record_invite(program: ProgramItem, member: MemberItem, refs: Sequence[IdentityRef], ref: str | None,
                   deps: ports.Ports, signal_refs: list[Any] | None = None,
                   pointers: dict[str, Any] | None = None) -> bool:
    """"The visitor was brought by this referrer": a pending invite per identifier, matched by the pipeline.

    ``first_touch`` keeps an earlier invite by someone else while it is inside the window;
    ``last_touch`` replaces it. Self-invites (own link) are not recorded.
    """
    code = normalize_code(ref) if ref else None
    if not code:
        return False
    pid = program.program_id
    pointer = deps.members.code_pointer(pid, code, consistent=True)
    if pointer is None or pointer.member_id == member.member_id:
        return False
    settings = program.program_settings
    window = timedelta(days=settings.attribution_window_days)
    now = deps.clock.now()
    if not _take_invite_slot(pid, pointer.member_id, now, settings.fraud.invites_per_referrer_day, deps):
        log.info("invite cap reached", extra={"program_id": pid, "referrer_id": pointer.member_id})
        return False  # the visitor still gets their own link; the referrer is not credited for it
    risk = invite_signals.assess(program, signal_refs or [], pointers or {}, pointer.member_id,
                                 list(pointer.ancestors or []), member.member_id, now, deps)
    if risk.reject or risk.holds:
        log.info("invite signals matched", extra={"program_id": pid, "referrer_id": pointer.member_id,
                                                  "reject": risk.reject, "holds": risk.holds})
    invite = PendingInvite(referrer_id=pointer.member_id, code=pointer.code, invited_at=now,
                           ancestors=tuple(pointer.ancestors or []),
                           expires_at_epoch=int((now + window + INVITE_TTL_MARGIN).timestamp()),
                           risk_reject=risk.reject, risk_holds=tuple(risk.holds), risk_matched=tuple(risk.matched))
    first_touch_since = now - window if settings.attribution_model == "first_touch" else None
    # The visitor's profile names one of this referrer's codes (she came through her link when it was made, maybe
    # before the referrer changed her code: earlier codes' pointers still name her): the back-reference stays after
    # the invite expires, as the one written with the profile (an expiring one in its place would leave her erasure
    # without the way to the profile's ``acquisition.ref``).
    came_through = (member.acquisition or {}).get("ref")
    owner = _code_owner(pid, came_through, deps) if came_through and came_through != pointer.code else None
    keep_ref = came_through == pointer.code or (owner is not None and owner.member_id == pointer.member_id)
    recorded = False
    for ref_id in refs:
        recorded |= deps.members.put_pending_invite(pid, ref_id, invite, first_touch_since=first_touch_since,
                                                    keep_ref=keep_ref)
    # A rejected invite is kept (the pipeline records the rejection with its reason) but credits nobody.
    return recorded and risk.reject is None
