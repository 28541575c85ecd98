"""The DynamoDB (PynamoDB) implementations of the service ports (``services.ports``).

Nothing here connects at import: the shared connection is opened on first use. The in-memory
fakes in ``store.fakes`` implement the same interfaces and pass the same contract tests
(``tests/contract/``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime

from pynamodb.exceptions import DoesNotExist

from chalicelib.domain import clock
from chalicelib.domain.errors import Conflict, NotFound
from chalicelib.domain.records import Cursor, Page, StaleMember
from chalicelib.store import counters, keys, tenancy_repo
from chalicelib.store.db import Entity
from chalicelib.store.events import EventItem
from chalicelib.store.ledger import BalanceItem, LedgerEntryItem, OutboxItem
from chalicelib.store.members import CouponItem, MemberItem, batch_get, key_from_str, key_str
from chalicelib.store.tenancy import PartnerItem, ProgramItem
from chalicelib.store.transact import Transaction

#: A member's personal promo codes are bounded: the profile lists them (one read finds them all).
MAX_COUPONS_PER_MEMBER = 20


class SystemClock:
    """``domain.clock``: the wall clock, unless a test froze it (``clock.freeze``)."""

    def now(self) -> datetime:
        return clock.utcnow()


class DynamoRateLimiter:
    def take(self, scope: str, window: str, limit: int, expires_at_epoch: int) -> bool:
        return counters.take(scope, window, limit, expires_at_epoch)


def coupon_prefix(program_id: str) -> str:
    return f"COUPON#{program_id}#"


def coupons_from_pointer_keys(member: MemberItem) -> list[str]:
    prefix = coupon_prefix(member.program_id)
    return [key_from_str(k)[0][len(prefix):] for k in member.pointer_keys or [] if k.startswith(prefix)]


class _Taken(Exception):
    pass


class DynamoMemberStore:
    def get(self, program_id: str, member_id: str) -> MemberItem | None:
        try:
            item = MemberItem.get(*keys.member(program_id, member_id), consistent_read=True)
        except DoesNotExist:
            return None
        return item if isinstance(item, MemberItem) else None

    def coupon_owner(self, program_id: str, code: str) -> str | None:
        try:
            item = CouponItem.get(*keys.coupon(program_id, code), consistent_read=True)
        except DoesNotExist:
            return None
        return item.member_id if isinstance(item, CouponItem) else None

    def coupons_of(self, member: MemberItem) -> list[str]:
        return coupons_from_pointer_keys(member)

    def add_coupon(self, member: MemberItem, code: str) -> bool:
        pid = member.program_id
        taken = Conflict("This coupon code belongs to another member", code="coupon_taken", details={"code": code})
        owner = self.coupon_owner(pid, code)
        if owner == member.member_id:
            return False
        if owner is not None:
            raise taken
        if len(coupons_from_pointer_keys(member)) >= MAX_COUPONS_PER_MEMBER:
            raise Conflict(f"A member has at most {MAX_COUPONS_PER_MEMBER} coupon codes", code="too_many_coupons",
                           details={"limit": MAX_COUPONS_PER_MEMBER})
        pk, sk = keys.coupon(pid, code)
        revision = int(member.revision or 0)
        tx = Transaction()
        # The pointer key goes on the profile: ancestry changes then reach the coupon's pointer too.
        tx.update(member, [MemberItem.pointer_keys.set([*(member.pointer_keys or []), key_str((pk, sk))]),
                           MemberItem.revision.set(revision + 1)],
                  Entity.PK.exists() & (MemberItem.revision == revision), on_fail=StaleMember())
        tx.create(CouponItem(PK=pk, SK=sk, program_id=pid, member_id=member.member_id, coupon=code,
                             ancestors=list(member.ancestors or [])), on_fail=_Taken())
        try:
            tx.commit()
        except _Taken:
            if self.coupon_owner(pid, code) == member.member_id:
                raise StaleMember() from None  # our own concurrent request won: re-read, then it is a no-op
            raise taken from None
        return True

    def remove_coupon(self, member: MemberItem, code: str) -> None:
        pid = member.program_id
        pk, sk = keys.coupon(pid, code)
        if key_str((pk, sk)) not in (member.pointer_keys or []):
            raise NotFound("The member has no such coupon code", code="coupon_not_found", details={"code": code})
        revision = int(member.revision or 0)
        tx = Transaction()
        tx.update(member, [MemberItem.pointer_keys.set([k for k in member.pointer_keys or []
                                                        if k != key_str((pk, sk))]),
                           MemberItem.revision.set(revision + 1)],
                  Entity.PK.exists() & (MemberItem.revision == revision), on_fail=StaleMember())
        tx.delete(CouponItem(PK=pk, SK=sk), CouponItem.member_id == member.member_id, on_fail=StaleMember())
        tx.commit()


class DynamoProgramStore:
    """``store.tenancy_repo``: one ``GetItem`` on a cold container, then the in-process config cache."""

    def get(self, program_id: str, *, fresh: bool = False) -> ProgramItem:
        return tenancy_repo.get_program(program_id, fresh=fresh)

    def partner(self, program_id: str, partner_id: str) -> PartnerItem:
        return tenancy_repo.get_partner(program_id, partner_id)


class DynamoLedgerStore:
    def balance(self, program_id: str, member_id: str) -> BalanceItem | None:
        try:
            item = BalanceItem.get(*keys.balance(program_id, member_id), consistent_read=True)
        except DoesNotExist:
            return None
        return item if isinstance(item, BalanceItem) else None

    def account(self, program_id: str, member_id: str) -> tuple[MemberItem | None, BalanceItem | None]:
        member_key, balance_key = keys.member(program_id, member_id), keys.balance(program_id, member_id)
        items = batch_get([member_key, balance_key])  # one BatchGetItem
        member, balance = items.get(member_key), items.get(balance_key)
        return (member if isinstance(member, MemberItem) else None,
                balance if isinstance(balance, BalanceItem) else None)

    def entries(self, program_id: str, member_id: str, limit: int, cursor: Cursor | None) -> Page[LedgerEntryItem]:
        pk, prefix = keys.ledger_prefix(program_id, member_id)
        result = LedgerEntryItem.query(pk, LedgerEntryItem.SK.startswith(prefix), scan_index_forward=False,
                                       limit=limit, last_evaluated_key=cursor)
        items = [e for e in result if isinstance(e, LedgerEntryItem)]
        return Page(items, result.last_evaluated_key)


def event_key_hash(business_key: str) -> str:
    """The event record's key part for a business key (the same hash the pipeline writes)."""
    return hashlib.sha256(business_key.encode("utf-8")).hexdigest()[:40]


class DynamoEventStore:
    def get(self, program_id: str, business_key: str) -> EventItem | None:
        try:
            item = EventItem.get(*keys.event(program_id, event_key_hash(business_key)), consistent_read=True)
        except DoesNotExist:
            return None
        return item if isinstance(item, EventItem) else None


class DynamoOutbox:
    def pending(self, day: str, limit: int) -> Sequence[OutboxItem]:
        gpk = keys.gsi1_outbox_pending(day, "", "")[0]
        found = []
        for item in OutboxItem.gsi1.query(gpk, limit=limit):
            if isinstance(item, OutboxItem) and item.status == "pending":
                found.append(item)
        return found[:limit]

    def mark_sent(self, message: OutboxItem, at: datetime) -> bool:
        tx = Transaction()
        tx.update(message, [OutboxItem.status.set("sent"), OutboxItem.GSI1PK.remove(), OutboxItem.GSI1SK.remove()],
                  OutboxItem.status == "pending", on_fail=_Taken())
        try:
            tx.commit()
        except _Taken:
            return False
        message.status = "sent"
        message.GSI1PK = message.GSI1SK = None
        return True
