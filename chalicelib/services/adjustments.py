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
from typing import TYPE_CHECKING, Any

from chalicelib.domain import clock
from chalicelib.domain.errors import BadRequest, Conflict, ValidationFailed, field_error
from chalicelib.domain.records import stable_id
from chalicelib.services.auth import Principal
from chalicelib.services.ports import Ports

if TYPE_CHECKING:
    from chalicelib.store.ledger import AdjustmentItem

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


def adjust(deps: Ports, principal: Principal, program_id: str, member_id: str, idempotency_key: str | None,
           data: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """(the adjustment, created); the route declared ``auth="operator"`` and validated ``data`` against
    ``ADJUSTMENT_SCHEMA`` before this runs (one contract per route: not checked again here)."""
    if not idempotency_key or len(idempotency_key) > MAX_IDEMPOTENCY_KEY:
        raise BadRequest("Send an 'Idempotency-Key' header (1-255 characters) with every adjustment",
                         code="idempotency_key_required")
    deps.programs.get(program_id)
    points, reason = int(data["points"]), str(data["reason"]).strip()
    partner_id = data.get("partner_id")
    if partner_id is not None and not deps.programs.existing_partners(program_id, {partner_id}):
        raise ValidationFailed("Unknown partner", code="unknown_partner",
                               details={"errors": [field_error("$.partner_id", "not a partner of this program")]})
    request_hash = hashlib.sha256(json.dumps({"member_id": member_id, "points": points, "reason": reason,
                                              "partner_id": partner_id}, sort_keys=True).encode()).hexdigest()
    adjustment_id = stable_id("adj", program_id, member_id, idempotency_key)
    actor = principal.kind if principal.is_operator else (principal.key_id or principal.kind)
    record, created = deps.ledger.adjust(program_id, member_id, adjustment_id, points=points, reason=reason,
                                         partner_id=partner_id, created_by=actor, request_hash=request_hash,
                                         at=deps.clock.now())
    if not created and record.request_hash != request_hash:
        raise Conflict("This Idempotency-Key was used for a different adjustment", code="idempotency_key_reused")
    return view(record), created


__all__ = ["ADJUSTMENT_SCHEMA", "adjust"]
