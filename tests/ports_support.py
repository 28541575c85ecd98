"""Builders of stored records for the contract tests (fake and moto) and the service tests (fakes)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from chalicelib.store import keys
from chalicelib.store.ledger import BalanceItem, LedgerEntryItem, new_entry
from chalicelib.store.members import MemberItem, new_member
from chalicelib.store.tenancy import PartnerItem, ProgramItem

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def program(program_id: str, **fields: Any) -> ProgramItem:
    values: dict[str, Any] = {"name": "Coffee", "points_unit": "points", "point_value_minor": 100,
                              "currency": "RUB", "default_locale": "en", "allowed_origins": [], "created_at": NOW}
    return ProgramItem.new(program_id=program_id, **{**values, **fields})


def partner(program_id: str, partner_id: str, **fields: Any) -> PartnerItem:
    return PartnerItem.new(program_id=program_id, partner_id=partner_id, **{"name": "Shop", "created_at": NOW,
                                                                             **fields})


def member(program_id: str, member_id: str, **fields: Any) -> MemberItem:
    return new_member(program_id, member_id, f"CODE{member_id.upper().replace('_', '')}", joined_at=NOW,
                      joined_via="api", refs=[], **fields)


def balance(program_id: str, member_id: str, **amounts: int) -> BalanceItem:
    pk, sk = keys.balance(program_id, member_id)
    return BalanceItem(PK=pk, SK=sk, program_id=program_id, member_id=member_id, **amounts)


def entry(program_id: str, member_id: str, n: int, *, points: int = 10, partner_id: str | None = "ptn_1",
          kind: str = "reward", **fields: Any) -> LedgerEntryItem:
    """The ``n``-th entry (``n`` minutes after NOW), available."""
    at = NOW + timedelta(minutes=n)
    return new_entry(program_id, member_id, f"le_{n:04d}", at, kind=kind, status="available", points=points,
                     reason=f"entry {n}", reason_code="order_reward", created_at=at, partner_id=partner_id, **fields)
