"""The member API: find members and read their referral state (partner key or operator, own program only).

Reads only, except the operator's vanity-code change. Anything outside the caller's
program is a 404. E-mail and phone are masked; a partner sees only its own customer
ids (other partners' ids are their business data).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pynamodb.exceptions import DoesNotExist

from chalicelib.domain import clock
from chalicelib.domain.codes import normalize_code, validate_vanity_code
from chalicelib.domain.errors import BadRequest, Conflict, NotFound, ServiceUnavailable, ValidationFailed
from chalicelib.domain.identity import mask_email, mask_phone, normalize_email, normalize_phone
from chalicelib.domain.safe_json import SINGLE_LINE
from chalicelib.services.auth import Principal
from chalicelib.services.landing.invites import display_code, public_link
from chalicelib.store import counters, keys, tenancy_repo
from chalicelib.store.db import Entity
from chalicelib.store.events import AttributionRecordItem
from chalicelib.store.ledger import member_counts
from chalicelib.store.members import (
    CodeItem,
    IdentityItem,
    LinkItem,
    MemberItem,
    batch_get,
    identity_refs,
    key_from_str,
    key_str,
)
from chalicelib.store.tenancy import ProgramItem
from chalicelib.store.transact import Transaction

LOOKUP_PARAMS = ("code", "email", "phone", "customer_id")
VANITY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["code"],
    "properties": {"code": {"type": "string", "maxLength": 64, "pattern": SINGLE_LINE}},
}
MAX_ATTEMPTS = 4


class _Stale(Exception):
    """The member changed between read and write: read again."""


# --------------------------------------------------------------------------- helpers


def _program(principal: Principal, program_id: str) -> ProgramItem:
    principal.require_server_key()
    principal.require_program(program_id)
    return tenancy_repo.get_program(program_id)


def _get(model: type[Entity], key: tuple[str, str], *, consistent: bool = False) -> Entity | None:
    try:
        return model.get(*key, consistent_read=consistent)
    except DoesNotExist:
        return None


def _member(program_id: str, member_id: str, *, consistent: bool = False) -> MemberItem:
    item = _get(MemberItem, keys.member(program_id, member_id), consistent=consistent)
    if not isinstance(item, MemberItem):
        raise NotFound("Member not found", details={"member_id": member_id})
    return item


def _first_name(name: str | None) -> str | None:
    return (name or "").split(" ")[0] or None


def _codes_of(member: MemberItem) -> list[str]:
    """The member's current code and earlier ones (kept working after a vanity change)."""
    prefix = f"CODE#{member.program_id}#"
    old = [key_from_str(k)[0][len(prefix):] for k in member.pointer_keys or [] if k.startswith(prefix)]
    return [member.code, *[c for c in old if c != member.code]]


def _clicks(member: MemberItem) -> dict[str, Any]:
    """From the pre-aggregated totals: one item per code, however long the click history; the member's
    balance comes in the same ``BatchGetItem`` (purchase and converted-referral counts, ``member_counts``)."""
    total = 0
    by_source: dict[str, int] = {}
    codes = _codes_of(member)
    if member.erased_at is not None:  # the profile lost its codes; the erasure record keeps them for the counts
        from chalicelib.services.erasure import get_record

        record = get_record(member.program_id, member.member_id)
        codes = list(record.codes or []) if record is not None else []
    balance_key = keys.balance(member.program_id, member.member_id)
    found = batch_get([*(keys.click_total(member.program_id, c) for c in codes), balance_key])
    for item in found.values():
        if not isinstance(item, counters.ClickTotalItem):
            continue
        total += int(item.clicks or 0)
        for source, count in (item.by_source.as_dict() if item.by_source else {}).items():
            by_source[source] = by_source.get(source, 0) + int(count)
    orders, converted = member_counts(member, found.get(balance_key))
    return {"total": total, "by_utm_source": by_source, "orders": orders, "converted": converted}


def _purchased(program_id: str, members: list[MemberItem]) -> dict[str, bool]:
    """Whether each listed member has purchased: their profile's count or their balance's (one read per page)."""
    balances = batch_get([keys.balance(program_id, m.member_id) for m in members])
    return {m.member_id: member_counts(m, balances.get(keys.balance(program_id, m.member_id)))[0] > 0
            for m in members}


def profile_view(principal: Principal, member: MemberItem) -> dict[str, Any]:
    from chalicelib.services import tiers

    program = tenancy_repo.get_program(member.program_id)
    # Member tiers (docs/coalition.md#tiers): one GetItem and one bounded Query, only when the program has tiers.
    tier_status = tiers.status(program, member.member_id, member.locale)
    # A raw MapAttribute: dict(map) would iterate its keys; as_dict() is the real mapping.
    customer_ids = member.customer_ids.as_dict() if member.customer_ids else {}
    if not principal.is_operator:
        customer_ids = {k: v for k, v in customer_ids.items() if k == principal.partner_id}
    clicks = _clicks(member)
    return {
        "member_id": member.member_id,
        "program_id": member.program_id,
        "code": member.code,
        "code_display": display_code(member.code),
        "previous_codes": _codes_of(member)[1:],
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


def lookup(principal: Principal, program_id: str, params: dict[str, str | None]) -> dict[str, Any]:
    program = _program(principal, program_id)
    given = [name for name in LOOKUP_PARAMS if params.get(name)]
    if len(given) != 1:
        raise BadRequest("Give exactly one of: code, email, phone, customer_id", code="invalid_query",
                         details={"parameters": list(LOOKUP_PARAMS)})
    name, value = given[0], str(params[given[0]])
    member_id: str | None = None
    if name == "code":
        code = normalize_code(value)
        pointer = _get(CodeItem, keys.referral_code(program_id, code)) if code else None
        member_id = pointer.member_id if isinstance(pointer, CodeItem) else None
    else:
        if name == "email":
            refs = identity_refs(program_id, email=normalize_email(value, path="$.query.email"))
        elif name == "phone":
            region = "RU" if program.default_locale == "ru" else "US"
            refs = identity_refs(program_id, phone=normalize_phone(value, region, path="$.query.phone"))
        else:
            partner_id = params.get("partner_id") or principal.partner_id
            if not partner_id:
                raise ValidationFailed("partner_id is required with customer_id", details={"errors": [
                    {"path": "$.query.partner_id", "message": "is required with customer_id"}]})
            principal.require_partner_scope(program_id, partner_id)
            tenancy_repo.get_partner(program_id, partner_id)
            refs = identity_refs(program_id, customer_id=(partner_id, value))
        pointer = _get(IdentityItem, refs[0].pointer_key(program_id))
        member_id = pointer.member_id if isinstance(pointer, IdentityItem) else None
    if member_id is None:
        raise NotFound("Member not found", details={"by": name})
    return profile_view(principal, _member(program_id, member_id))


def get_member(principal: Principal, program_id: str, member_id: str) -> dict[str, Any]:
    _program(principal, program_id)
    return profile_view(principal, _member(program_id, member_id))


def referrals(principal: Principal, program_id: str, member_id: str, limit: int,
              cursor: dict[str, Any] | None) -> dict[str, Any]:
    _program(principal, program_id)
    _member(program_id, member_id)
    partition = keys.gsi1_referrals_partition(program_id, member_id)
    result = MemberItem.gsi1.query(partition, limit=limit, last_evaluated_key=cursor, scan_index_forward=False)
    members = [m for m in result if isinstance(m, MemberItem)]
    purchased = _purchased(program_id, members)
    items = [_referral_view(m, purchased[m.member_id]) for m in members]
    return {"items": items, "next_cursor": result.last_evaluated_key}


def _tree_position(gsi1sk: str | None) -> str | None:
    """A referral list position, compact (for the cursor): ``<joined_at>#<member>`` from ``JOINED#<joined_at>#<member>``."""
    return gsi1sk.removeprefix("JOINED#") if gsi1sk else None


def _tree_start(program_id: str, parent: str, position: str | None) -> dict[str, Any] | None:
    """The Query's exclusive start key just after ``position`` in ``parent``'s referral list (GSI1)."""
    if position is None:
        return None
    child = position.rpartition("#")[2]
    pk, sk = keys.member(program_id, child)
    gpk, gsk = keys.gsi1_referrals_of(program_id, parent, position.rpartition("#")[0], child)
    return {"PK": {"S": pk}, "SK": {"S": sk}, "GSI1PK": {"S": gpk}, "GSI1SK": {"S": gsk}}


def _tree_stack(member_id: str, raw: Any) -> list[list[Any]]:
    stack = raw.get("stack") if isinstance(raw, dict) else None
    if not isinstance(stack, list) or not stack or not all(
            isinstance(f, list) and len(f) == 2 and isinstance(f[0], str) and (f[1] is None or isinstance(f[1], str))
            for f in stack) or stack[0][0] != member_id:
        raise BadRequest("Invalid cursor", code="invalid_cursor")
    return stack


def referral_tree(principal: Principal, program_id: str, member_id: str, max_depth: int | None, limit: int,
                  raw_cursor: str | None) -> dict[str, Any]:
    """The member's downline up to ``max_depth`` levels (1 … the program's ``max_depth``), depth first: each
    friend, then that friend's friends (newest first on every level), ``limit`` members a page.

    Every node is the referral list's view (first name, code, dates, whether they bought; nothing more) plus
    ``level`` (1 = the member's own friends), ``referrer_id`` (the node's parent in the tree) and ``referrals``
    (how many that friend brought). Reads: one Query on the referrer's GSI1 list per member with friends of
    their own, at most ``limit + max_depth`` per page; the cursor (signed, bound to the member and depth) is
    the path from the member to where the page stopped."""
    from chalicelib.services import signed_cursor

    program = _program(principal, program_id)
    _member(program_id, member_id)
    cap = program.program_settings.max_depth
    depth = cap if max_depth is None else max_depth
    if not 1 <= depth <= cap:
        raise BadRequest(f"'max_depth' must be an integer from 1 to {cap} (the program's max_depth)",
                         code="invalid_query", details={"parameter": "max_depth", "maximum": cap})
    scope = f"referral-tree|{program_id}|{member_id}|{depth}"
    decoded = signed_cursor.decode(scope, raw_cursor)
    stack: list[list[Any]] = [[member_id, None]] if decoded is None else _tree_stack(member_id, decoded)
    items: list[dict[str, Any]] = []
    queries = 0
    while stack and len(items) < limit and queries < limit + depth:
        parent: str = stack[-1][0]
        level = len(stack)
        result = MemberItem.gsi1.query(keys.gsi1_referrals_partition(program_id, parent), limit=limit - len(items),
                                       last_evaluated_key=_tree_start(program_id, parent, stack[-1][1]),
                                       scan_index_forward=False)
        queries += 1
        descended = False
        for child in result:
            if not isinstance(child, MemberItem):
                continue
            items.append({**_referral_view(child), "level": level, "referrer_id": parent,
                          "referrals": int(child.referral_signups or 0)})
            stack[-1] = [parent, _tree_position(child.GSI1SK)]
            if level < depth and int(child.referral_signups or 0) > 0:
                stack.append([child.member_id, None])
                descended = True
                break
            if len(items) >= limit:
                break
        if descended or len(items) >= limit:
            continue
        if result.last_evaluated_key is None:
            stack.pop()  # this list is exhausted
        else:
            stack[-1] = [parent, _tree_position((result.last_evaluated_key.get("GSI1SK") or {}).get("S"))]
    balances = batch_get([keys.balance(program_id, i["member_id"]) for i in items])  # one read per page
    for i in items:
        balance = balances.get(keys.balance(program_id, i["member_id"]))
        i["purchased"] = i["purchased"] or int(getattr(balance, "orders_count", None) or 0) > 0
    cursor = signed_cursor.encode(scope, {"stack": stack}) if stack else None
    return {"member_id": member_id, "max_depth": depth, "items": items, "next_cursor": cursor}


def member_attributions(principal: Principal, program_id: str, member_id: str, limit: int,
                        cursor: dict[str, Any] | None) -> dict[str, Any]:
    _program(principal, program_id)
    _member(program_id, member_id)
    pk, prefix = keys.attribution_records_prefix(program_id, member_id)
    result = AttributionRecordItem.query(pk, AttributionRecordItem.SK.startswith(prefix), limit=limit,
                                         last_evaluated_key=cursor, scan_index_forward=False)
    items = [attribution_view(r) for r in result if isinstance(r, AttributionRecordItem)]
    return {"items": items, "next_cursor": result.last_evaluated_key}


def code_attributions(principal: Principal, program_id: str, raw_code: str, limit: int,
                      cursor: dict[str, Any] | None) -> dict[str, Any]:
    """Records naming a code, including ``unknown_code`` rejections of codes that belong to nobody."""
    _program(principal, program_id)
    code = normalize_code(raw_code)
    if code is None:
        raise NotFound("Unknown referral code", code="code_not_found", details={"code": raw_code[:64]})
    pointer = _get(CodeItem, keys.referral_code(program_id, code))
    partition = keys.gsi1_attribution_code_partition(program_id, code)
    result = AttributionRecordItem.gsi1.query(partition, limit=limit, last_evaluated_key=cursor,
                                              scan_index_forward=False)
    items = [attribution_view(r) for r in result if isinstance(r, AttributionRecordItem)]
    if not isinstance(pointer, CodeItem) and not items and cursor is None:
        raise NotFound("Unknown referral code", code="code_not_found", details={"code": code})
    return {"code": code, "member_id": pointer.member_id if isinstance(pointer, CodeItem) else None,
            "items": items, "next_cursor": result.last_evaluated_key}


# --------------------------------------------------------------------------- vanity codes


def set_vanity_code(principal: Principal, program_id: str, member_id: str, data: Mapping[str, Any]) -> dict[str, Any]:
    """Give a member an operator-chosen code. The old code keeps working (printed QR codes, shared links).

    Reserved by conditional creates of the new code pointer and the deployment-wide link
    pointer, in one transaction with the profile update (conditioned on its revision):
    a code another member holds, in any program, is a 409.
    """
    _program(principal, program_id)  # the route requires the operator; ``data`` is valid VANITY_SCHEMA
    code = validate_vanity_code(data["code"], path="$.code")
    for _ in range(MAX_ATTEMPTS):
        member = _member(program_id, member_id, consistent=True)
        if member.code == code:
            return profile_view(principal, member)
        try:
            _change_code(member, code)
        except _Stale:
            continue
        return profile_view(principal, _member(program_id, member_id, consistent=True))
    raise ServiceUnavailable("The member changed concurrently; retry")


def _change_code(member: MemberItem, code: str) -> None:
    pid = member.program_id
    taken = Conflict("This code is already taken", code="code_taken", details={"code": code})
    new_code_key = keys.referral_code(pid, code)
    old_code_key = keys.referral_code(pid, member.code)
    own_earlier = key_str(new_code_key) in (member.pointer_keys or [])
    # Earlier codes stay in pointer_keys, so ancestry updates by the pipeline reach their pointers too.
    pointer_keys = [k for k in member.pointer_keys or [] if k != key_str(new_code_key)]
    if key_str(old_code_key) not in pointer_keys:
        pointer_keys.append(key_str(old_code_key))
    revision = int(member.revision or 0)
    tx = Transaction()
    tx.update(member, [MemberItem.code.set(code), MemberItem.pointer_keys.set(pointer_keys),
                       MemberItem.revision.set(revision + 1)],
              Entity.PK.exists() & (MemberItem.revision == revision), on_fail=_Stale())
    if own_earlier:
        # Switching back to one of the member's own earlier codes: its pointers still name the member.
        tx.check(CodeItem, new_code_key, CodeItem.member_id == member.member_id, on_fail=taken)
        tx.check(LinkItem, keys.short_link(code), LinkItem.member_id == member.member_id, on_fail=taken)
    else:
        tx.create(CodeItem(PK=new_code_key[0], SK=new_code_key[1], program_id=pid, member_id=member.member_id,
                           code=code, first_name=_first_name(member.name), vanity=True,
                           ancestors=list(member.ancestors or [])), on_fail=taken)
        link_pk, link_sk = keys.short_link(code)
        tx.create(LinkItem(PK=link_pk, SK=link_sk, program_id=pid, member_id=member.member_id, code=code),
                  on_fail=taken)
    tx.commit()
