"""The member API: find members and read their referral state (partner key or operator, own program only).

Reads only, except the operator's vanity-code change. Anything outside the caller's
program is a 404. E-mail and phone are masked; a partner sees only its own customer
ids (other partners' ids are their business data).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from chalicelib.domain import clock
from chalicelib.domain.codes import normalize_code, validate_vanity_code
from chalicelib.domain.errors import BadRequest, NotFound, ServiceUnavailable, ValidationFailed
from chalicelib.domain.identity import mask_email, mask_phone, normalize_email, normalize_phone
from chalicelib.domain.records import member_counts
from chalicelib.domain.safe_json import SINGLE_LINE
from chalicelib.services.auth import Principal
from chalicelib.services.landing.invites import display_code, public_link
from chalicelib.services.ports import Cursor, Ports, StaleMember

if TYPE_CHECKING:
    from chalicelib.store.events import AttributionRecordItem
    from chalicelib.store.members import MemberItem
    from chalicelib.store.tenancy import ProgramItem

LOOKUP_PARAMS = ("code", "email", "phone", "customer_id")
VANITY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["code"],
    "properties": {"code": {"type": "string", "maxLength": 64, "pattern": SINGLE_LINE}},
}
MAX_ATTEMPTS = 4


# --------------------------------------------------------------------------- helpers


def _program(deps: Ports, principal: Principal, program_id: str) -> ProgramItem:
    principal.require_server_key()
    principal.require_program(program_id)
    return deps.programs.get(program_id)


def _member(deps: Ports, program_id: str, member_id: str, *, consistent: bool = False) -> MemberItem:
    item = deps.members.get(program_id, member_id, consistent=consistent)
    if item is None:
        raise NotFound("Member not found", details={"member_id": member_id})
    return item


def _first_name(name: str | None) -> str | None:
    return (name or "").split(" ")[0] or None


def _clicks(deps: Ports, member: MemberItem) -> dict[str, Any]:
    """From the pre-aggregated totals: one item per code, however long the click history; the member's
    balance comes in the same ``BatchGetItem`` (purchase and converted-referral counts, ``member_counts``)."""
    total = 0
    by_source: dict[str, int] = {}
    codes = deps.members.codes_of(member)
    if member.erased_at is not None:  # the profile lost its codes; the erasure record keeps them for the counts
        record = deps.members.erasure_record(member.program_id, member.member_id)
        codes = list(record.codes or []) if record is not None else []
    totals, balance = deps.members.clicks_and_balance(member.program_id, member.member_id, codes)
    for item in totals:
        total += int(item.clicks or 0)
        for source, count in (item.by_source.as_dict() if item.by_source else {}).items():
            by_source[source] = by_source.get(source, 0) + int(count)
    orders, converted = member_counts(member, balance)
    return {"total": total, "by_utm_source": by_source, "orders": orders, "converted": converted}


def _purchased(deps: Ports, program_id: str, members: list[MemberItem]) -> dict[str, bool]:
    """Whether each listed member has purchased: their profile's count or their balance's (one read per page)."""
    balances = deps.ledger.balances(program_id, [m.member_id for m in members])
    return {m.member_id: member_counts(m, balances.get(m.member_id))[0] > 0 for m in members}


def profile_view(deps: Ports, principal: Principal, member: MemberItem) -> dict[str, Any]:
    from chalicelib.services import tiers

    program = deps.programs.get(member.program_id)
    # Member tiers (docs/coalition.md#tiers): one GetItem and one bounded Query, only when the program has tiers.
    tier_status = tiers.status(deps, program, member.member_id, member.locale)
    # A raw MapAttribute: dict(map) would iterate its keys; as_dict() is the real mapping.
    customer_ids = member.customer_ids.as_dict() if member.customer_ids else {}
    if not principal.is_operator:
        customer_ids = {k: v for k, v in customer_ids.items() if k == principal.partner_id}
    clicks = _clicks(deps, member)
    return {
        "member_id": member.member_id,
        "program_id": member.program_id,
        "code": member.code,
        "code_display": display_code(member.code),
        "previous_codes": deps.members.codes_of(member)[1:],
        "link": public_link(member.code),
        "first_name": _first_name(member.name),
        "email": mask_email(member.email) if member.email else None,
        "phone": mask_phone(member.phone) if member.phone else None,
        "customer_ids": customer_ids,
        "locale": member.locale,
        "tier": tier_status["tier"] if tier_status else member.tier,
        "tier_status": tier_status,
        "joined_at": clock.iso(member.joined_at),
        "joined_via": member.joined_via,
        "referrer_id": member.referrer_id,
        "attribution": {
            "referrer_id": member.referrer_id,
            "source": member.attribution_source,
            "attributed_at": clock.iso(member.attributed_at) if member.attributed_at else None,
            "final": bool(member.attribution_final) or clicks["orders"] > 0,  # a purchase makes it final
        },
        "counts": {
            "clicks": clicks["total"],
            "clicks_by_utm_source": clicks["by_utm_source"],
            "signups": int(member.referral_signups or 0),
            "purchasers": clicks["converted"],
            "orders": clicks["orders"],
        },
    }


def _referral_view(member: MemberItem, purchased: bool | None = None) -> dict[str, Any]:
    return {
        "member_id": member.member_id,
        "first_name": _first_name(member.name),
        "code": member.code,
        "joined_at": clock.iso(member.joined_at),
        "joined_via": member.joined_via,
        "attributed_at": clock.iso(member.attributed_at) if member.attributed_at else None,
        "attribution_source": member.attribution_source,
        "purchased": int(member.orders_count or 0) > 0 if purchased is None else purchased,
    }


def attribution_view(record: AttributionRecordItem) -> dict[str, Any]:
    return {
        "record_id": record.record_id,
        "at": clock.iso(record.at),
        "member_id": record.member_id,
        "referrer_id": record.referrer_id,
        "code": record.code,
        "source": record.source,
        "outcome": record.outcome,
        "reason_code": record.reason_code,
        "reason": record.reason,
        "event_type": record.event_type,
    }


# --------------------------------------------------------------------------- reads


def lookup(deps: Ports, principal: Principal, program_id: str, params: dict[str, str | None]) -> dict[str, Any]:
    program = _program(deps, principal, program_id)
    given = [name for name in LOOKUP_PARAMS if params.get(name)]
    if len(given) != 1:
        raise BadRequest("Give exactly one of: code, email, phone, customer_id", code="invalid_query",
                         details={"parameters": list(LOOKUP_PARAMS)})
    name, value = given[0], str(params[given[0]])
    member_id: str | None = None
    if name == "code":
        code = normalize_code(value)
        pointer = deps.members.code_pointer(program_id, code) if code else None
        member_id = pointer.member_id if pointer is not None else None
    elif name == "email":
        member_id = deps.members.find_by_identity(program_id, email=normalize_email(value, path="$.query.email"))
    elif name == "phone":
        region = "RU" if program.default_locale == "ru" else "US"
        member_id = deps.members.find_by_identity(program_id,
                                                  phone=normalize_phone(value, region, path="$.query.phone"))
    else:
        partner_id = params.get("partner_id") or principal.partner_id
        if not partner_id:
            raise ValidationFailed("partner_id is required with customer_id", details={"errors": [
                {"path": "$.query.partner_id", "message": "is required with customer_id"}]})
        principal.require_partner_scope(program_id, partner_id)
        deps.programs.partner(program_id, partner_id)
        member_id = deps.members.find_by_identity(program_id, customer_id=(partner_id, value))
    if member_id is None:
        raise NotFound("Member not found", details={"by": name})
    return profile_view(deps, principal, _member(deps, program_id, member_id))


def get_member(deps: Ports, principal: Principal, program_id: str, member_id: str) -> dict[str, Any]:
    _program(deps, principal, program_id)
    return profile_view(deps, principal, _member(deps, program_id, member_id))


def referrals(deps: Ports, principal: Principal, program_id: str, member_id: str, limit: int,
              cursor: Cursor | None) -> dict[str, Any]:
    _program(deps, principal, program_id)
    _member(deps, program_id, member_id)
    page = deps.members.referrals(program_id, member_id, limit, cursor)
    purchased = _purchased(deps, program_id, page.items)
    items = [_referral_view(m, purchased[m.member_id]) for m in page.items]
    return {"items": items, "next_cursor": page.next_cursor}


def _tree_stack(member_id: str, raw: Any) -> list[list[Any]]:
    stack = raw.get("stack") if isinstance(raw, dict) else None
    if not isinstance(stack, list) or not stack or not all(
            isinstance(f, list) and len(f) == 2 and isinstance(f[0], str) and (f[1] is None or isinstance(f[1], str))
            for f in stack) or stack[0][0] != member_id:
        raise BadRequest("Invalid cursor", code="invalid_cursor")
    return stack


def referral_tree(deps: Ports, principal: Principal, program_id: str, member_id: str, max_depth: int | None,
                  limit: int, raw_cursor: str | None) -> dict[str, Any]:
    """The member's downline up to ``max_depth`` levels (1 … the program's ``max_depth``), depth first: each
    friend, then that friend's friends (newest first on every level), ``limit`` members a page.

    Every node is the referral list's view (first name, code, dates, whether they bought; nothing more) plus
    ``level`` (1 = the member's own friends), ``referrer_id`` (the node's parent in the tree) and ``referrals``
    (how many that friend brought). Reads: one Query on the referrer's GSI1 list per member with friends of
    their own, at most ``limit + max_depth`` per page; the cursor (signed, bound to the member and depth) is
    the path from the member to where the page stopped."""
    from chalicelib.services import signed_cursor

    program = _program(deps, principal, program_id)
    _member(deps, program_id, member_id)
    cap = program.program_settings.max_depth
    depth = cap if max_depth is None else max_depth
    if not 1 <= depth <= cap:
        raise BadRequest(f"'max_depth' must be an integer from 1 to {cap} (the program's max_depth)",
                         code="invalid_query", details={"parameter": "max_depth", "maximum": cap})
    scope = f"referral-tree|{program_id}|{member_id}|{depth}"
    decoded = signed_cursor.decode(scope, raw_cursor, deps.secrets)
    stack: list[list[Any]] = [[member_id, None]] if decoded is None else _tree_stack(member_id, decoded)
    items: list[dict[str, Any]] = []
    queries = 0
    while stack and len(items) < limit and queries < limit + depth:
        parent: str = stack[-1][0]
        level = len(stack)
        page = deps.members.referrals_after(program_id, parent, limit - len(items), stack[-1][1])
        queries += 1
        descended = False
        for child in page.items:
            items.append({**_referral_view(child), "level": level, "referrer_id": parent,
                          "referrals": int(child.referral_signups or 0)})
            stack[-1] = [parent, deps.members.referral_position(child)]
            if level < depth and int(child.referral_signups or 0) > 0:
                stack.append([child.member_id, None])
                descended = True
                break
            if len(items) >= limit:
                break
        if descended or len(items) >= limit:
            continue
        if page.next_cursor is None:
            stack.pop()  # this list is exhausted
        # else: the page stopped at its last item, where ``stack[-1]`` now stands
    balances = deps.ledger.balances(program_id, [i["member_id"] for i in items])  # one read per page
    for i in items:
        balance = balances.get(i["member_id"])
        i["purchased"] = i["purchased"] or int(getattr(balance, "orders_count", None) or 0) > 0
    cursor = signed_cursor.encode(scope, {"stack": stack}, deps.secrets) if stack else None
    return {"member_id": member_id, "max_depth": depth, "items": items, "next_cursor": cursor}


def member_attributions(deps: Ports, principal: Principal, program_id: str, member_id: str, limit: int,
                        cursor: Cursor | None) -> dict[str, Any]:
    _program(deps, principal, program_id)
    _member(deps, program_id, member_id)
    page = deps.events.attributions(program_id, member_id, limit, cursor)
    return {"items": [attribution_view(r) for r in page.items], "next_cursor": page.next_cursor}


def code_attributions(deps: Ports, principal: Principal, program_id: str, raw_code: str, limit: int,
                      cursor: Cursor | None) -> dict[str, Any]:
    """Records naming a code, including ``unknown_code`` rejections of codes that belong to nobody."""
    _program(deps, principal, program_id)
    code = normalize_code(raw_code)
    if code is None:
        raise NotFound("Unknown referral code", code="code_not_found", details={"code": raw_code[:64]})
    pointer = deps.members.code_pointer(program_id, code)
    page = deps.events.code_attributions(program_id, code, limit, cursor)
    items = [attribution_view(r) for r in page.items]
    if pointer is None and not items and cursor is None:
        raise NotFound("Unknown referral code", code="code_not_found", details={"code": code})
    return {"code": code, "member_id": pointer.member_id if pointer is not None else None,
            "items": items, "next_cursor": page.next_cursor}


# --------------------------------------------------------------------------- vanity codes


def set_vanity_code(deps: Ports, principal: Principal, program_id: str, member_id: str,
                    data: Mapping[str, Any]) -> dict[str, Any]:
    """Give a member an operator-chosen code. The old code keeps working (printed QR codes, shared links).

    Reserved by conditional creates of the new code pointer and the deployment-wide link
    pointer, in one transaction with the profile update (conditioned on its revision;
    ``MemberStore.change_code``): a code another member holds, in any program, is a 409.
    """
    _program(deps, principal, program_id)  # the route requires the operator; ``data`` is valid VANITY_SCHEMA
    code = validate_vanity_code(data["code"], path="$.code")
    for _ in range(MAX_ATTEMPTS):
        member = _member(deps, program_id, member_id, consistent=True)
        if member.code == code:
            return profile_view(deps, principal, member)
        try:
            deps.members.change_code(member, code)
        except StaleMember:
            continue
        return profile_view(deps, principal, _member(deps, program_id, member_id, consistent=True))
    raise ServiceUnavailable("The member changed concurrently; retry")
