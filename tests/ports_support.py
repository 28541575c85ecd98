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


def referred(program_id: str, member_id: str, referrer_id: str, n: int, *, referral_signups: int = 0,
             **fields: Any) -> MemberItem:
    """A member ``referrer_id`` brought, joined ``n`` minutes after NOW (their place in the referral list)."""
    from chalicelib.domain.clock import iso

    at = NOW + timedelta(minutes=n)
    item = new_member(program_id, member_id, f"CODE{member_id.upper().replace('_', '')}", joined_at=at,
                      joined_via="link", refs=[], **fields)
    item.referrer_id, item.referral_signups = referrer_id, referral_signups
    item.GSI1PK, item.GSI1SK = keys.gsi1_referrals_of(program_id, referrer_id, iso(at), member_id)
    return item


def code_pointer(program_id: str, code: str, member_id: str, first_name: str | None = None) -> Any:
    from chalicelib.store.members import CodeItem

    pk, sk = keys.referral_code(program_id, code)
    return CodeItem(PK=pk, SK=sk, program_id=program_id, member_id=member_id, code=code, first_name=first_name)


def identities(profile: MemberItem, **identifiers: Any) -> list[Any]:
    """The identity pointers of ``profile`` (``email=``, ``phone=``, ``customer_id=(partner, id)``)."""
    from chalicelib.store.members import identity_refs, pointer_items

    return list(pointer_items(profile, identity_refs(profile.program_id, **identifiers)))


def attribution(program_id: str, member_id: str, n: int, *, code: str | None = "CODEANNA",
                outcome: str = "credited") -> Any:
    from chalicelib.domain.clock import iso
    from chalicelib.store.events import AttributionRecordItem

    at = NOW + timedelta(minutes=n)
    record_id = f"ar_{n:04d}"
    pk, sk = keys.attribution_record(program_id, member_id, iso(at), record_id)
    item = AttributionRecordItem(PK=pk, SK=sk, program_id=program_id, record_id=record_id, member_id=member_id,
                                 referrer_id="anna", code=code, source="ref_code", outcome=outcome,
                                 reason_code="first_touch" if outcome == "credited" else "unknown_code",
                                 reason="why", event_type="member.signup", business_key=f"bk{n}", at=at)
    if code is not None:
        item.GSI1PK, item.GSI1SK = keys.gsi1_attribution_by_code(program_id, code, iso(at), record_id)
    return item


def click_total(program_id: str, code: str, clicks: int, **by_source: int) -> Any:
    from chalicelib.store.counters import ClickTotalItem

    pk, sk = keys.click_total(program_id, code)
    return ClickTotalItem(PK=pk, SK=sk, program_id=program_id, code=code, clicks=clicks, by_source=by_source or None)


def tier_state(program_id: str, member_id: str, tier: str, metric: str = "points_earned",
               **buckets: int) -> Any:
    from chalicelib.store.tiers import TierStateItem

    pk, sk = keys.member_tier(program_id, member_id)
    return TierStateItem(PK=pk, SK=sk, program_id=program_id, member_id=member_id, tier=tier, metric=metric,
                         buckets=dict(buckets), version=1, tier_since=NOW)


def tier_change(program_id: str, member_id: str, n: int, to_tier: str = "silver") -> Any:
    from chalicelib.store.tiers import new_change

    return new_change(program_id, member_id, f"tc_{n:04d}", from_tier=None, to_tier=to_tier, direction="up",
                      reason_code="promotion", reason="Promoted", metric="points_earned", value=100 + n,
                      threshold=100, at=NOW + timedelta(minutes=n), business_key=None)


def settlement_row(program_id: str, day: str, partner_id: str, at_partner_id: str | None = None,
                   **columns: int) -> Any:
    from chalicelib.store.settlement import SettlementRowItem

    row = f"PAIR#{partner_id}#{at_partner_id}" if at_partner_id else f"PARTNER#{partner_id}"
    pk, sk = keys.settlement_row(program_id, day, row)
    return SettlementRowItem(PK=pk, SK=sk, program_id=program_id, day=day, partner_id=partner_id,
                             at_partner_id=at_partner_id, **columns)
