"""The fraud review queue: held rewards, their reasons, and the reviewer's decision (docs/fraud.md).

* ``services.ledger.review_items``: the ledger stage creates one item per held event, in the event's
  transaction (id derived from the business key: a replay cannot queue it twice).
* ``queue``: open items, oldest first, one Query on a sparse index (GSI1 per program for the
  operator, GSI2 per partner for a partner key: a partner sees the items of its own events).
* ``decide``: approve (held entries become pending, or available when their holding period is
  over, and follow the normal rules) or void (each held entry is reversed with the reviewer's
  reason). One transaction, conditioned on the item still being open and every entry still
  held: of two concurrent decisions exactly one wins, the other is a 409. Repeating the decision
  that was taken answers the item again (idempotent). Who, when and why are kept on the item.
  Voiding with ``fraud: true`` marks the event's device and payment signals as fraud, so later
  events with them at any partner of the program are held (``risk_stage``).

The decision is planned here, purely, from what was read (``ports.ReviewDecision``: each held entry's fate, each
balance's change, the signals, the vouchers) and written by the ``ReviewStore`` port as that one transaction.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import TYPE_CHECKING, Any

from chalicelib.domain import clock
from chalicelib.domain.errors import Conflict, NotFound, ServiceUnavailable
from chalicelib.domain.records import REVIEW_APPROVED, REVIEW_OPEN, REVIEW_VOIDED, ReadAgain, StaleReview
from chalicelib.domain.safe_json import SINGLE_LINE
from chalicelib.services.ports import BalanceChange, HeldEntryDecision, Ports, ReviewDecision

if TYPE_CHECKING:
    from chalicelib.services.auth import Principal
    from chalicelib.store.ledger import BalanceItem, LedgerEntryItem
    from chalicelib.store.review import ReviewItem

DECISION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "reason": {"type": "string", "minLength": 1, "maxLength": 500, "pattern": SINGLE_LINE},
        "fraud": {"type": "boolean"},
    },
}
VOID_SCHEMA: dict[str, Any] = {**DECISION_SCHEMA, "required": ["reason"]}


def public_voucher(grant: dict[str, Any]) -> dict[str, Any]:
    """A held (or decided) voucher grant as replies and the queue show it: whose offer, for whom, what became of it."""
    return {"member_id": grant["member_id"], "partner_id": grant["partner_id"], "offer_id": grant["offer_id"],
            "rule_id": grant["rule_id"], "status": grant.get("status", "held"), "voucher_id": grant.get("voucher_id")}


def view(item: ReviewItem) -> dict[str, Any]:
    return {
        "item_id": item.item_id, "status": item.status, "partner_id": item.partner_id,
        "event_type": item.event_type, "business_key": item.business_key, "member_id": item.member_id,
        "referrer_id": item.referrer_id, "reasons": list(item.reasons or []), "matched": list(item.matched or []),
        "points": int(item.points or 0),
        "entries": [{k: e.get(k) for k in ("member_id", "entry_id", "points", "rule_id")} for e in item.entries or []],
        "vouchers": [public_voucher(g) for g in item.vouchers or []],
        "created_at": clock.iso(item.created_at),
        "decision": None if item.decided_at is None else {
            "by": item.decided_by, "at": clock.iso(item.decided_at), "reason": item.decision_reason},
    }


def queue(deps: Ports, principal: Principal, program_id: str, limit: int,
          cursor: dict[str, Any] | None) -> dict[str, Any]:
    principal.require_program(program_id)
    partner_id = None if principal.is_operator else principal.partner_id
    assert principal.is_operator or partner_id is not None
    page = deps.review.open_items(program_id, partner_id, limit, cursor)
    return {"items": [view(i) for i in page.items], "next_cursor": page.next_cursor}


def _item(deps: Ports, principal: Principal, program_id: str, item_id: str) -> ReviewItem:
    principal.require_program(program_id)
    found = deps.review.item(program_id, item_id)
    if found is None or (not principal.is_operator and found.partner_id != principal.partner_id):
        raise NotFound("Review item not found", details={"item_id": item_id})
    return found


def _reviewer(principal: Principal) -> str:
    return "operator" if principal.is_operator else f"partner:{principal.partner_id}/key:{principal.key_id}"


#: Reading an offer's pool again after a lost race for a code (another event took it meanwhile).
VOUCHER_ATTEMPTS = 3


def decide(deps: Ports, principal: Principal, program_id: str, item_id: str, decision: str,
           data: dict[str, Any]) -> dict[str, Any]:
    for attempt in range(VOUCHER_ATTEMPTS):
        try:
            return _decide_once(deps, principal, program_id, item_id, decision, data)
        except ReadAgain:  # only the vouchers' pool conditions raise it: read the pool again
            if attempt == VOUCHER_ATTEMPTS - 1:
                raise ServiceUnavailable("The offer's codes were contended; retry the decision") from None
    raise AssertionError("unreachable")  # pragma: no cover


def plan(item: ReviewItem, approve: bool, held: list[LedgerEntryItem], balances: dict[str, BalanceItem | None], *,
         by: str, reason: str | None, fraud: bool, at: datetime) -> ReviewDecision:
    """The decision on ``item`` from what was read (pure): approved entries become pending until their
    ``available_at`` or available now; voided ones are reversed; each member's balance moves accordingly."""
    entries = []
    changes: dict[str, dict[str, int]] = defaultdict(lambda: {"pending": 0, "available": 0, "earned": 0, "held": 0})
    for entry in held:
        net = entry.net_points
        change = changes[entry.member_id]
        pending = approve and entry.available_at is not None and entry.available_at > at
        if not approve:
            change["earned"] -= net
        elif pending:
            change["pending"] += net
        else:
            change["available"] += net
        change["held"] -= net
        entries.append(HeldEntryDecision(entry, pending=pending))
    grants = [dict(g) for g in item.vouchers or []]
    voided = not approve
    return ReviewDecision(
        item=item, approve=approve, by=by, reason=reason, at=at, entries=tuple(entries),
        balances={m: (balances.get(m), BalanceChange(**c)) for m, c in changes.items()},
        fraud_signals=tuple(item.signals or []) if voided and fraud else (),
        deny=tuple(item.deny or []) if voided and fraud else (),
        vouchers=tuple({**g, "status": "voided"} for g in grants) if voided else tuple(grants))


def _decide_once(deps: Ports, principal: Principal, program_id: str, item_id: str, decision: str,
                 data: dict[str, Any]) -> dict[str, Any]:
    wanted = REVIEW_APPROVED if decision == "approve" else REVIEW_VOIDED
    item = _item(deps, principal, program_id, item_id)
    if item.status == wanted:
        return view(item)  # the same decision again: idempotent
    if item.status != REVIEW_OPEN:
        raise Conflict(f"The review item was already {item.status}", details={"status": item.status})
    held, balances = deps.review.held(item)  # an entry refunded meanwhile is no longer held: nothing left of it
    decided = plan(item, wanted == REVIEW_APPROVED, held, balances, by=_reviewer(principal),
                   reason=data.get("reason"), fraud=bool(data.get("fraud")), at=deps.clock.now())
    try:
        deps.review.decide(decided)
    except StaleReview:
        fresh = _item(deps, principal, program_id, item_id)
        if fresh.status == wanted:
            return view(fresh)
        raise Conflict("The review item was decided concurrently", details={"status": fresh.status}) from None
    return view(_item(deps, principal, program_id, item_id))
