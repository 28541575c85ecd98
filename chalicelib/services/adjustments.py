"""Manual adjustments by the operator: ± points with a required reason, idempotent, audited.

One transaction: the adjustment record (created under an id derived from the member and the
``Idempotency-Key``, so a retried request finds it and answers the first result), the member's
existence check, the ``adjustment`` ledger entry (``created_by``, ``reason``, ``created_at``: who,
why, when) and the balance change. A credit repays ``owed`` points first, like any credit. A
debit carries the condition ``available >= points``: an adjustment never drives ``available``
below zero (409 ``insufficient_points`` with ``details.available``; nothing is written).

The funding partner (``partner_id``, optional) is who pays for a credit or gets the value of a
debit in settlement (``services.settlement``); without it the program (operator) does.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pynamodb.exceptions import DoesNotExist

from chalicelib.domain import clock
from chalicelib.domain.errors import BadRequest, Conflict, NotFound, ValidationFailed, field_error
from chalicelib.services.auth import Principal
from chalicelib.store import keys, tenancy_repo
from chalicelib.store.db import Entity
from chalicelib.store.ledger import (
    KIND_ADJUSTMENT,
    STATUS_AVAILABLE,
    AdjustmentItem,
    BalanceDelta,
    BalanceItem,
    balance_ref,
    new_entry,
    stable_id,
    stage_balance,
)
from chalicelib.store.members import MemberItem
from chalicelib.store.transact import Transaction

MAX_IDEMPOTENCY_KEY = 255
MAX_POINTS = 10**9

ADJUSTMENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["points", "reason"],
    "properties": {
        "points": {"type": "integer", "minimum": -MAX_POINTS, "maximum": MAX_POINTS, "not": {"const": 0},
                   "description": "Signed points: a credit (> 0) or a debit (< 0); never 0."},
        "reason": {"type": "string", "minLength": 3, "maxLength": 500, "pattern": "\\S",
                   "description": "Why (shown in the member's statement and kept for audit)."},
        "partner_id": {"type": "string", "minLength": 1, "maxLength": 64,
                       "description": "The partner that funds a credit (or gets a debit's value) in settlement; "
                                      "default: the program."},
    },
}


class _Replay(Exception):
    """The adjustment id already exists: a retry of an earlier request."""


def _insufficient(raw: dict[str, Any] | None) -> Exception:
    available = int(raw["available"].get("N", 0)) if raw and "available" in raw else 0
    return Conflict("The adjustment would take the available balance below zero", code="insufficient_points",
                    details={"available": available})


def view(item: AdjustmentItem) -> dict[str, Any]:
    return {
        "adjustment_id": item.adjustment_id,
        "member_id": item.member_id,
        "points": int(item.points),
        "reason": item.reason,
        "partner_id": item.partner_id,
        "entry_id": item.entry_id,
        "created_by": item.created_by,
        "created_at": clock.iso(item.created_at),
    }


def _get(program_id: str, adjustment_id: str) -> AdjustmentItem | None:
    try:
        item = AdjustmentItem.get(*keys.adjustment(program_id, adjustment_id), consistent_read=True)
    except DoesNotExist:
        return None
    return item if isinstance(item, AdjustmentItem) else None


def adjust(principal: Principal, program_id: str, member_id: str, idempotency_key: str | None,
           data: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """(the adjustment, created); ``data`` was validated against ``ADJUSTMENT_SCHEMA`` by the route."""
    principal.require_operator()
    if not idempotency_key or len(idempotency_key) > MAX_IDEMPOTENCY_KEY:
        raise BadRequest("Send an 'Idempotency-Key' header (1-255 characters) with every adjustment",
                         code="idempotency_key_required")
    tenancy_repo.get_program(program_id)
    points, reason = int(data["points"]), str(data["reason"]).strip()
    partner_id = data.get("partner_id")
    if partner_id is not None and not tenancy_repo.existing_partners(program_id, {partner_id}):
        raise ValidationFailed("Unknown partner", code="unknown_partner",
                               details={"errors": [field_error("$.partner_id", "not a partner of this program")]})
    request_hash = hashlib.sha256(json.dumps({"member_id": member_id, "points": points, "reason": reason,
                                              "partner_id": partner_id}, sort_keys=True).encode()).hexdigest()
    adjustment_id = stable_id("adj", program_id, member_id, idempotency_key)
    actor = principal.key_id or principal.kind
    now = clock.utcnow()
    entry = new_entry(program_id, member_id, stable_id("le", adjustment_id), now, kind=KIND_ADJUSTMENT,
                      status=STATUS_AVAILABLE, points=points, reason=reason, reason_code="manual_adjustment",
                      created_at=now, funding_partner_id=partner_id, partner_id=partner_id, created_by=actor,
                      reversed_points=0)
    pk, sk = keys.adjustment(program_id, adjustment_id)
    record = AdjustmentItem(PK=pk, SK=sk, program_id=program_id, adjustment_id=adjustment_id, member_id=member_id,
                            points=points, reason=reason, partner_id=partner_id, created_by=actor,
                            request_hash=request_hash, entry_id=entry.entry_id, entry_sk=entry.SK, created_at=now)
    tx = Transaction()
    tx.create(record, on_fail=_Replay())
    tx.check(MemberItem, keys.member(program_id, member_id), Entity.PK.exists(),
             on_fail=NotFound("Member not found", details={"member_id": member_id}))
    tx.create(entry, on_fail=_Replay())
    if points > 0:
        try:
            read: BalanceItem | None = BalanceItem.get(*keys.balance(program_id, member_id), consistent_read=True)
        except DoesNotExist:
            read = None
        changed = Conflict("The balance changed concurrently; retry", code="concurrent_update")
        stage_balance(tx, program_id, member_id, read, BalanceDelta(available=points, earned=points), on_fail=changed)
    else:
        tx.update(balance_ref(program_id, member_id),
                  [BalanceItem.available.add(points), BalanceItem.lifetime_earned.add(points)],
                  BalanceItem.available >= -points, on_fail=_insufficient)
    try:
        tx.commit()
    except _Replay:
        existing = _get(program_id, adjustment_id)
        if existing is None:
            raise Conflict("The adjustment is being processed; retry", code="concurrent_update") from None
        if existing.request_hash != request_hash:
            raise Conflict("This Idempotency-Key was used for a different adjustment",
                           code="idempotency_key_reused") from None
        return view(existing), False
    return view(record), True


__all__ = ["ADJUSTMENT_SCHEMA", "adjust"]
