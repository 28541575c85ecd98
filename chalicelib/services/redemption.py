"""Paying with points at a partner's checkout: quote, redeem (idempotent), confirm, cancel.

* quote: how many points may pay for an order of X: ``min(available, floor(X * max_share% /
  point_value))``; nothing is written.
* redeem: one transaction: the redemption record (created under an id derived from the
  ``Idempotency-Key``, so a retried request finds it), the member's existence check, the
  balance debit conditioned on ``available >= points`` (so concurrent redemptions can never
  overdraw) and a ``redemption`` ledger entry (status ``spent``). The redemption is ``held``.
* confirm: ``held`` → ``confirmed`` (the order went through).
* cancel: ``held``/``confirmed`` → ``cancelled``; a ``redemption_return`` entry gives the
  points back (repaying ``owed`` points first, like any credit).
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

from chalicelib.domain import clock
from chalicelib.domain.errors import BadRequest, Conflict, NotFound, ValidationFailed, field_error
from chalicelib.domain.records import REDEMPTION_CANCELLED, REDEMPTION_CONFIRMED, stable_id
from chalicelib.domain.validation import validate
from chalicelib.services import ports
from chalicelib.services.auth import Principal
from chalicelib.services.ports import Ports

if TYPE_CHECKING:
    from chalicelib.store.ledger import BalanceItem, RedemptionItem
    from chalicelib.store.members import MemberItem
    from chalicelib.store.tenancy import ProgramItem

MAX_IDEMPOTENCY_KEY = 255

REDEEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["points"],
    "properties": {
        "points": {"type": "integer", "minimum": 1, "maximum": 10**12},
        "order_amount": {"type": "integer", "minimum": 0, "maximum": 10**14,
                         "description": "Order amount in minor units; when given, the program's max share applies."},
        "order_id": {"type": "string", "minLength": 1, "maxLength": 256},
    },
}


def max_share_percent(program: ProgramItem) -> int:
    return program.program_settings.redemption_max_share_percent


def _member_and_balance(program_id: str, member_id: str,
                        deps: Ports | None = None) -> tuple[MemberItem, BalanceItem | None]:
    """The member and their balance in one read; 404 for an unknown member."""
    member, balance = (deps or ports.current()).ledger.account(program_id, member_id)
    if member is None:
        raise NotFound("Member not found", details={"member_id": member_id})
    return member, balance


def _max_points_for(program: ProgramItem, order_amount: int) -> int:
    return order_amount * max_share_percent(program) // (100 * int(program.point_value_minor))


def quote(deps: Ports, principal: Principal, program_id: str, member_id: str,
          order_amount: int | None) -> dict[str, Any]:
    principal.require_program(program_id)
    program = deps.programs.get(program_id)
    _, balance = _member_and_balance(program_id, member_id, deps)
    available = int(balance.available or 0) if balance else 0
    by_share = _max_points_for(program, order_amount) if order_amount is not None else available
    points = max(min(available, by_share), 0)
    pvm = int(program.point_value_minor)
    return {
        "member_id": member_id,
        "available": available,
        "order_amount": order_amount,
        "currency": program.currency,
        "point_value_minor": pvm,
        "max_share_percent": max_share_percent(program),
        "max_points": points,
        "max_value_minor": points * pvm,
    }


def view(item: RedemptionItem) -> dict[str, Any]:
    return {
        "redemption_id": item.redemption_id,
        "member_id": item.member_id,
        "partner_id": item.partner_id,
        "points": int(item.points),
        "value_minor": int(item.value_minor),
        "currency": item.currency,
        "order_id": item.order_id,
        "order_amount": None if item.order_amount is None else int(item.order_amount),
        "status": item.status,
        "created_at": clock.iso(item.created_at),
        "updated_at": clock.iso(item.updated_at),
    }


def redeem(deps: Ports, principal: Principal, program_id: str, member_id: str, idempotency_key: str | None,
           body: Any) -> tuple[dict[str, Any], bool]:
    """Returns (redemption, created); a retried request with the same key answers the first result."""
    principal.require_program(program_id)
    if not idempotency_key or len(idempotency_key) > MAX_IDEMPOTENCY_KEY:
        raise BadRequest("Send an 'Idempotency-Key' header (1-255 characters) with every redemption",
                         code="idempotency_key_required")
    data = validate(REDEEM_SCHEMA, body)
    program = deps.programs.get(program_id)
    points = int(data["points"])
    order_amount = data.get("order_amount")
    if order_amount is not None and points > _max_points_for(program, order_amount):
        raise ValidationFailed(
            "Points exceed the share of the order that may be paid with points",
            code="exceeds_max_share",
            details={"errors": [field_error("$.points", f"at most {_max_points_for(program, order_amount)} points "
                                                        f"may pay for this order")],
                     "max_points": _max_points_for(program, order_amount)},
        )
    request_hash = hashlib.sha256(json.dumps({**data, "member_id": member_id}, sort_keys=True).encode()).hexdigest()
    redemption_id = stable_id("rdm", program_id, member_id, principal.partner_id or "operator", idempotency_key)
    item, created = deps.ledger.redeem(
        program_id, member_id, redemption_id, partner_id=principal.partner_id, points=points,
        value_minor=points * int(program.point_value_minor), currency=program.currency, order_id=data.get("order_id"),
        order_amount=order_amount, request_hash=request_hash, reason=_spend_reason(points, data.get("order_id")),
        at=deps.clock.now())
    if not created and item.request_hash != request_hash:
        raise Conflict("This Idempotency-Key was used for a different redemption", code="idempotency_key_reused")
    return view(item), created


def _spend_reason(points: int, order_id: str | None) -> str:
    return f"{points} points paid for order {order_id}." if order_id else f"{points} points redeemed."


def _owned(deps: Ports, principal: Principal, program_id: str, member_id: str,
           redemption_id: str) -> RedemptionItem:
    principal.require_program(program_id)
    item = deps.ledger.redemption(program_id, redemption_id)
    if item is None or item.member_id != member_id or (
            not principal.is_operator and item.partner_id != principal.partner_id):
        raise NotFound("Redemption not found", details={"redemption_id": redemption_id})
    return item


def get(deps: Ports, principal: Principal, program_id: str, member_id: str, redemption_id: str) -> dict[str, Any]:
    return view(_owned(deps, principal, program_id, member_id, redemption_id))


def confirm(deps: Ports, principal: Principal, program_id: str, member_id: str, redemption_id: str) -> dict[str, Any]:
    item = _owned(deps, principal, program_id, member_id, redemption_id)
    if item.status == REDEMPTION_CONFIRMED:
        return view(item)
    if item.status == REDEMPTION_CANCELLED:
        raise Conflict("The redemption was cancelled", code="redemption_cancelled")
    deps.ledger.confirm_redemption(item, deps.clock.now())
    return view(item)


def cancel(deps: Ports, principal: Principal, program_id: str, member_id: str, redemption_id: str) -> dict[str, Any]:
    """Cancel a held or confirmed redemption (the order was cancelled): the points come back."""
    item = _owned(deps, principal, program_id, member_id, redemption_id)
    if item.status == REDEMPTION_CANCELLED:
        return view(item)
    _, balance = _member_and_balance(program_id, member_id, deps)
    points = int(item.points)
    deps.ledger.cancel_redemption(item, balance, deps.clock.now(),
                                  f"{points} points returned: the redemption was cancelled.", principal.partner_id)
    return view(item)


__all__ = ["cancel", "confirm", "get", "quote", "redeem"]
