"""A member's personal promo codes (e.g. ``ANNA-500``): registered here, matched by the pipeline.

A shop creates a personal coupon for a member in its own platform and registers it here
(partner key or operator). A coupon is unique per program (the ``COUPON#<program>#<CODE>`` pointer
is created with ``attribute_not_exists``); its pointer carries the member's ancestry like every
other pointer, so an order that names it in ``referral.coupon_codes`` is attributed to the member
after the pipeline's first read (source ``coupon``). Codes are compared case-insensitively
(``domain.codes.normalize_coupon_code``). Written through the ``MemberStore`` port only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chalicelib.domain.codes import MAX_COUPON_LENGTH, normalize_coupon_code
from chalicelib.domain.errors import NotFound, ServiceUnavailable, ValidationFailed, field_error
from chalicelib.services.auth import Principal
from chalicelib.services.ports import Ports, StaleMember

if TYPE_CHECKING:
    from chalicelib.store.members import MemberItem

MAX_ATTEMPTS = 6


def _code(raw: str) -> str:
    code = normalize_coupon_code(raw)
    if code is None:
        raise ValidationFailed("Invalid coupon code", details={"errors": [field_error(
            "$.code", f"must be 1-{MAX_COUPON_LENGTH} characters without spaces")]})
    return code


def _member(deps: Ports, principal: Principal, program_id: str, member_id: str) -> MemberItem:
    principal.require_program(program_id)
    member = deps.members.get(program_id, member_id)
    if member is None:
        raise NotFound("Member not found", code="member_not_found", details={"member_id": member_id})
    return member


def _view(deps: Ports, member: MemberItem) -> dict[str, Any]:
    return {"member_id": member.member_id, "coupons": deps.members.coupons_of(member)}


def register(deps: Ports, principal: Principal, program_id: str, member_id: str, raw_code: str) -> dict[str, Any]:
    """PUT: idempotent. ``created`` says whether this call registered it."""
    code = _code(raw_code)
    for _ in range(MAX_ATTEMPTS):
        member = _member(deps, principal, program_id, member_id)
        try:
            created = deps.members.add_coupon(member, code)
        except StaleMember:
            continue
        return {"code": code, "created": created, **_view(deps, deps.members.get(program_id, member_id) or member)}
    raise ServiceUnavailable("The coupon could not be registered because of concurrent updates; retry")


def list_coupons(deps: Ports, principal: Principal, program_id: str, member_id: str) -> dict[str, Any]:
    return _view(deps, _member(deps, principal, program_id, member_id))


def get_coupon(deps: Ports, principal: Principal, program_id: str, member_id: str, raw_code: str) -> dict[str, Any]:
    # A read: a code that could never be registered is simply not the member's (404, as the API's GETs answer).
    code = normalize_coupon_code(raw_code)
    member = _member(deps, principal, program_id, member_id)
    if code is None or code not in deps.members.coupons_of(member):
        raise NotFound("The member has no such coupon code", code="coupon_not_found",
                       details={"code": code if code is not None else raw_code[:MAX_COUPON_LENGTH]})
    return {"code": code, "member_id": member.member_id}


def remove(deps: Ports, principal: Principal, program_id: str, member_id: str, raw_code: str) -> dict[str, Any]:
    code = _code(raw_code)
    for _ in range(MAX_ATTEMPTS):
        member = _member(deps, principal, program_id, member_id)
        try:
            deps.members.remove_coupon(member, code)
        except StaleMember:
            continue
        return {"code": code, "removed": True, **_view(deps, deps.members.get(program_id, member_id) or member)}
    raise ServiceUnavailable("The coupon could not be removed because of concurrent updates; retry")
