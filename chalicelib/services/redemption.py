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
from typing import Any

from pynamodb.exceptions import DoesNotExist

from chalicelib.domain import clock
from chalicelib.domain.errors import BadRequest, Conflict, NotFound, ValidationFailed, field_error
from chalicelib.domain.validation import validate
from chalicelib.services.auth import Principal
from chalicelib.store import keys, tenancy_repo
from chalicelib.store.db import Entity
from chalicelib.store.ledger import (
    KIND_REDEMPTION,
    KIND_REDEMPTION_RETURN,
    STATUS_AVAILABLE,
    STATUS_SPENT,
    BalanceDelta,
    BalanceItem,
    RedemptionItem,
    balance_ref,
    new_entry,
    stable_id,
    stage_balance,
)
from chalicelib.store.members import MemberItem, batch_get
from chalicelib.store.tenancy import ProgramItem
from chalicelib.store.transact import Transaction

HELD, CONFIRMED, CANCELLED = "held", "confirmed", "cancelled"
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


class _Replay(Exception):
    """The redemption id already exists: this is a retry of an earlier request."""


def max_share_percent(program: ProgramItem) -> int:
    return program.program_settings.redemption_max_share_percent


def _member_and_balance(program_id: str, member_id: str) -> tuple[MemberItem, BalanceItem | None]:
    items = batch_get([keys.member(program_id, member_id), keys.balance(program_id, member_id)])
    member = items.get(keys.member(program_id, member_id))
    if not isinstance(member, MemberItem):
        raise NotFound("Member not found", details={"member_id": member_id})
    balance = items.get(keys.balance(program_id, member_id))
    return member, balance if isinstance(balance, BalanceItem) else None


def _max_points_for(program: ProgramItem, order_amount: int) -> int:
    return order_amount * max_share_percent(program) // (100 * int(program.point_value_minor))


def quote(principal: Principal, program_id: str, member_id: str, order_amount: int | None) -> dict[str, Any]:
    principal.require_program(program_id)
    program = tenancy_repo.get_program(program_id)
    _, balance = _member_and_balance(program_id, member_id)
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


def _insufficient(raw: dict[str, Any] | None) -> Exception:
    available = 0
    if raw and "available" in raw:
        available = int(raw["available"].get("N", 0))
    return Conflict("Not enough available points", code="insufficient_points", details={"available": available})


def redeem(principal: Principal, program_id: str, member_id: str, idempotency_key: str | None,
           body: Any) -> tuple[dict[str, Any], bool]:
    """Returns (redemption, created); a retried request with the same key answers the first result."""
    principal.require_program(program_id)
    if not idempotency_key or len(idempotency_key) > MAX_IDEMPOTENCY_KEY:
        raise BadRequest("Send an 'Idempotency-Key' header (1-255 characters) with every redemption",
                         code="idempotency_key_required")
    data = validate(REDEEM_SCHEMA, body)
    program = tenancy_repo.get_program(program_id)
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
    now = clock.utcnow()
    entry = new_entry(program_id, member_id, stable_id("le", redemption_id, "spend"), now, kind=KIND_REDEMPTION,
                      status=STATUS_SPENT, points=-points, reason=_spend_reason(points, data.get("order_id")),
                      reason_code="redemption", created_at=now, partner_id=principal.partner_id,
                      redemption_id=redemption_id)
    pk, sk = keys.redemption(program_id, redemption_id)
    item = RedemptionItem(PK=pk, SK=sk, program_id=program_id, redemption_id=redemption_id, member_id=member_id,
                          partner_id=principal.partner_id, points=points,
                          value_minor=points * int(program.point_value_minor), currency=program.currency,
                          order_id=data.get("order_id"), order_amount=order_amount, status=HELD,
                          request_hash=request_hash, entry_sk=entry.SK, created_at=now, updated_at=now)
    tx = Transaction()
    tx.create(item, on_fail=_Replay())
    tx.check(MemberItem, keys.member(program_id, member_id), Entity.PK.exists(),
             on_fail=NotFound("Member not found", details={"member_id": member_id}))
    tx.update(balance_ref(program_id, member_id),
              [BalanceItem.available.add(-points), BalanceItem.lifetime_spent.add(points)],
              BalanceItem.available >= points, on_fail=_insufficient)
    tx.create(entry, on_fail=_Replay())
    try:
        tx.commit()
    except _Replay:
        existing = _get(program_id, redemption_id)
        if existing is None:
            raise Conflict("The redemption is being processed; retry", code="concurrent_update") from None
        if existing.request_hash != request_hash:
            raise Conflict("This Idempotency-Key was used for a different redemption",
                           code="idempotency_key_reused") from None
        return view(existing), False
    return view(item), True


def _spend_reason(points: int, order_id: str | None) -> str:
    return f"{points} points paid for order {order_id}." if order_id else f"{points} points redeemed."


def _get(program_id: str, redemption_id: str) -> RedemptionItem | None:
    try:
        item = RedemptionItem.get(*keys.redemption(program_id, redemption_id))
    except DoesNotExist:
        return None
    return item if isinstance(item, RedemptionItem) else None


def _owned(principal: Principal, program_id: str, member_id: str, redemption_id: str) -> RedemptionItem:
    principal.require_program(program_id)
    item = _get(program_id, redemption_id)
    if item is None or item.member_id != member_id or (
            not principal.is_operator and item.partner_id != principal.partner_id):
        raise NotFound("Redemption not found", details={"redemption_id": redemption_id})
    return item


def get(principal: Principal, program_id: str, member_id: str, redemption_id: str) -> dict[str, Any]:
    return view(_owned(principal, program_id, member_id, redemption_id))


def confirm(principal: Principal, program_id: str, member_id: str, redemption_id: str) -> dict[str, Any]:
    item = _owned(principal, program_id, member_id, redemption_id)
    if item.status == CONFIRMED:
        return view(item)
    if item.status == CANCELLED:
        raise Conflict("The redemption was cancelled", code="redemption_cancelled")
    now = clock.utcnow()
    tx = Transaction()
    tx.update(item, [RedemptionItem.status.set(CONFIRMED), RedemptionItem.updated_at.set(now)],
              RedemptionItem.status == HELD,
              on_fail=Conflict("The redemption changed concurrently; read it again", code="concurrent_update"))
    tx.commit()
    item.status, item.updated_at = CONFIRMED, now
    return view(item)


def cancel(principal: Principal, program_id: str, member_id: str, redemption_id: str) -> dict[str, Any]:
    """Cancel a held or confirmed redemption (the order was cancelled): the points come back."""
    item = _owned(principal, program_id, member_id, redemption_id)
    if item.status == CANCELLED:
        return view(item)
    _, balance = _member_and_balance(program_id, member_id)
    now = clock.utcnow()
    points = int(item.points)
    changed = Conflict("The redemption changed concurrently; read it again", code="concurrent_update")
    tx = Transaction()
    tx.update(item, [RedemptionItem.status.set(CANCELLED), RedemptionItem.updated_at.set(now)],
              RedemptionItem.status == item.status, on_fail=changed)
    tx.create(new_entry(program_id, member_id, stable_id("le", redemption_id, "return"), now,
                        kind=KIND_REDEMPTION_RETURN, status=STATUS_AVAILABLE, points=points,
                        reason=f"{points} points returned: the redemption was cancelled.",
                        reason_code="redemption_cancelled", created_at=now, partner_id=principal.partner_id,
                        redemption_id=redemption_id), on_fail=changed)
    stage_balance(tx, program_id, member_id, balance, BalanceDelta(available=points, spent=-points), on_fail=changed)
    tx.commit()
    item.status, item.updated_at = CANCELLED, now
    return view(item)


__all__ = ["cancel", "confirm", "get", "quote", "redeem"]
