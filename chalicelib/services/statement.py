"""The member statement for the partner's app: balances and the paged ledger with reasons.

Reads through the ports only (``ProgramStore``, ``LedgerStore``): tests/service/test_statement.py runs it on
the fakes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chalicelib.domain import clock
from chalicelib.domain.errors import NotFound
from chalicelib.services.auth import Principal
from chalicelib.services.ports import Cursor, Ports

if TYPE_CHECKING:
    from chalicelib.store.ledger import BalanceItem, LedgerEntryItem


def _balance_of(deps: Ports, program_id: str, member_id: str) -> BalanceItem | None:
    """The member's balance (``None`` before the first posting); 404 for an unknown member. One read."""
    member, item = deps.ledger.account(program_id, member_id)
    if member is None:
        raise NotFound("Member not found", details={"member_id": member_id})
    return item


def balance(deps: Ports, principal: Principal, program_id: str, member_id: str) -> dict[str, Any]:
    principal.require_program(program_id)
    program = deps.programs.get(program_id)
    item = _balance_of(deps, program_id, member_id)
    available = int(item.available or 0) if item else 0
    pvm = int(program.point_value_minor)
    return {
        "member_id": member_id,
        "available": available,
        "pending": int(item.pending or 0) if item else 0,
        "owed": int(item.owed or 0) if item else 0,
        "held": int(item.held or 0) if item else 0,
        "lifetime_earned": int(item.lifetime_earned or 0) if item else 0,
        "lifetime_spent": int(item.lifetime_spent or 0) if item else 0,
        "points_unit": program.points_unit,
        "point_value_minor": pvm,
        "currency": program.currency,
        "available_value_minor": available * pvm,
    }


def entry_view(e: LedgerEntryItem) -> dict[str, Any]:
    return {
        "entry_id": e.entry_id,
        "kind": e.kind,
        "status": e.status,
        "points": int(e.points),
        "reversed_points": int(e.reversed_points or 0),
        "reason": e.reason,
        "reason_code": e.reason_code,
        "effective_at": clock.iso(e.effective_at),
        "created_at": clock.iso(e.created_at),
        "available_at": clock.iso(e.available_at) if e.available_at else None,
        "rule_id": e.rule_id,
        "rule_version": None if e.rule_version is None else int(e.rule_version),
        "level": None if e.level is None else int(e.level),
        "funding_partner_id": e.funding_partner_id,
        "partner_id": e.partner_id,
        "business_key": e.business_key,
        "reverses_entry_id": e.reverses_entry_id,
        "redemption_id": e.redemption_id,
        "created_by": e.created_by,
        "redacted": False,
    }


def concerns(e: LedgerEntryItem, partner_id: str | None) -> bool:
    """Whether a caller sees the entry in full: the operator (``None``), or the partner where it happened or
    that funds it."""
    return partner_id is None or partner_id in (e.partner_id, e.funding_partner_id)


_OTHER_REASONS = {
    "reward": "Points earned at a coalition partner.",
    "reversal": "Points taken back by a coalition partner.",
    "redemption": "Points redeemed at a coalition partner.",
    "redemption_return": "Points returned by a coalition partner.",
    "adjustment": "Points adjusted by the program.",
    "expiry": "Points expired.",
}


def redacted(e: LedgerEntryItem) -> dict[str, Any]:
    """Another partner's entry as a partner sees it: what it does to the balance, nothing of that partner's
    orders, customers or rules."""
    view = entry_view(e)
    for name in ("rule_id", "rule_version", "level", "funding_partner_id", "partner_id", "business_key",
                 "reverses_entry_id", "redemption_id", "created_by"):
        view[name] = None
    view["reason"] = _OTHER_REASONS.get(str(e.kind), "Points changed at a coalition partner.")
    view["reason_code"] = "coalition_partner"
    view["redacted"] = True
    return view


def ledger(deps: Ports, principal: Principal, program_id: str, member_id: str, limit: int,
           cursor: Cursor | None) -> dict[str, Any]:
    """Newest first. ``cursor`` was checked by the view to stay inside this member's partition.

    The balance is the coalition's (one balance across partners), so every entry is listed and the
    statement adds up to it; but a partner key sees another partner's entries redacted
    (:func:`redacted`): points, kind, status and times, not the partner, order, rule or reason."""
    principal.require_program(program_id)
    _balance_of(deps, program_id, member_id)  # 404 for an unknown member
    page = deps.ledger.entries(program_id, member_id, limit, cursor)
    viewer = None if principal.is_operator else principal.partner_id
    items = [entry_view(e) if concerns(e, viewer) else redacted(e) for e in page.items]
    return {"items": items, "next_cursor": page.next_cursor}
