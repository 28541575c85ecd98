"""The DynamoDB (PynamoDB) implementations of the service ports (``services.ports``).

Nothing here connects at import: the shared connection is opened on first use. The in-memory
fakes in ``store.fakes`` implement the same interfaces and pass the same contract tests
(``tests/contract/``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import date, datetime
from typing import Any, TypeVar

from chalicelib.config import get_settings
from chalicelib.domain import clock
from chalicelib.domain.errors import Conflict, MemberErased, NotFound, ValidationFailed
from chalicelib.domain.records import (
    REDEMPTION_CANCELLED,
    REDEMPTION_CONFIRMED,
    REDEMPTION_HELD,
    Cursor,
    NewKey,
    NewMember,
    Page,
    PendingInvite,
    StaleMember,
)
from chalicelib.store import cache, counters, keys, settlement, tenancy_repo
from chalicelib.store.counters import ClickTotalItem
from chalicelib.store.data_rights import ErasureItem
from chalicelib.store.db import Entity, get_or_none
from chalicelib.store.events import AttributionRecordItem, EventItem
from chalicelib.store.ledger import (
    KIND_ADJUSTMENT,
    KIND_REDEMPTION,
    KIND_REDEMPTION_RETURN,
    STATUS_AVAILABLE,
    STATUS_SPENT,
    AdjustmentItem,
    BalanceDelta,
    BalanceItem,
    LedgerEntryItem,
    OutboxItem,
    RedemptionItem,
    RulesVersionItem,
    balance_ref,
    new_entry,
    stable_id,
    stage_balance,
)
from chalicelib.store.members import (
    ERASED_CODE,
    CodeItem,
    CouponItem,
    IdentityItem,
    IdentityRef,
    LinkItem,
    MemberItem,
    PendingInviteItem,
    batch_get,
    check_unerased,
    identity_pointer_parts,
    identity_refs,
    key_from_str,
    key_str,
    new_member,
    unerased,
)
from chalicelib.store.settlement import SettlementRowItem
from chalicelib.store.tenancy import ApiKeyItem, ApiKeyRefItem, PartnerItem, PartnerLocatorItem, ProgramItem
from chalicelib.store.tiers import TierChangeItem, TierStateItem
from chalicelib.store.transact import Transaction

E = TypeVar("E", bound=Entity)

#: A member's personal promo codes are bounded: the profile lists them (one read finds them all).
MAX_COUPONS_PER_MEMBER = 20
#: Codes a member holds (the current one and the earlier ones, which keep working): a profile view reads one
#: click total per code, and the profile lists them all (docs/members-api.md#vanity-codes).
MAX_CODES_PER_MEMBER = 10


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


class _Refused(Exception):
    """A pending invite's condition failed (an earlier referrer's kept, or the referrer's erasure started)."""


def codes_from_pointer_keys(member: MemberItem) -> list[str]:
    prefix = f"CODE#{member.program_id}#"
    old = [key_from_str(k)[0][len(prefix):] for k in member.pointer_keys or [] if k.startswith(prefix)]
    return [member.code, *[c for c in old if c != member.code]]


def referral_position(member: MemberItem) -> str | None:
    """``<joined_at>#<member>`` from the referral list's sort key ``JOINED#<joined_at>#<member>``."""
    return member.GSI1SK.removeprefix("JOINED#") if member.GSI1SK else None


def referral_start(program_id: str, parent: str, position: str | None) -> dict[str, Any] | None:
    """The exclusive start key just after ``position`` in ``parent``'s referral list (GSI1)."""
    if position is None:
        return None
    joined_at, _, child = position.rpartition("#")
    pk, sk = keys.member(program_id, child)
    gpk, gsk = keys.gsi1_referrals_of(program_id, parent, joined_at, child)
    return {"PK": {"S": pk}, "SK": {"S": sk}, "GSI1PK": {"S": gpk}, "GSI1SK": {"S": gsk}}


def code_change_plan(member: MemberItem, code: str) -> tuple[list[str], bool]:
    """The profile's pointer keys after a change to ``code`` (earlier codes stay, so ancestry updates by
    the pipeline reach their pointers too) and whether ``code`` is one of the member's own earlier codes."""
    new_code_key, old_code_key = keys.referral_code(member.program_id, code), keys.referral_code(member.program_id,
                                                                                               member.code)
    own_earlier = key_str(new_code_key) in (member.pointer_keys or [])
    pointer_keys = [k for k in member.pointer_keys or [] if k != key_str(new_code_key)]
    if key_str(old_code_key) not in pointer_keys:
        pointer_keys.append(key_str(old_code_key))
    if not own_earlier and code != member.code and len(codes_from_pointer_keys(member)) >= MAX_CODES_PER_MEMBER:
        raise Conflict(f"A member has at most {MAX_CODES_PER_MEMBER} codes (the current one and earlier ones)",
                       code="too_many_codes", details={"limit": MAX_CODES_PER_MEMBER})
    return pointer_keys, own_earlier


def not_erased(member: MemberItem) -> Any:
    """The condition every write attaching personal data or a code to a profile carries: its erasure has not
    started (the erasure's start transaction sets ``erased_at``). Raises at once for a profile read erased."""
    if member.erased_at is not None:
        raise MemberErased(member.member_id)
    return unerased(must_exist=True)


def code_taken(code: str) -> Conflict:
    return Conflict("This code is already taken", code="code_taken", details={"code": code})


def identity_owner_of(program_id: str, refs: Sequence[IdentityRef], found: Mapping[tuple[str, str], Any]) -> str | None:
    """The member of the first of ``refs`` with a pointer among the ``found`` items."""
    for ref in refs:
        pointer = found.get(ref.pointer_key(program_id))
        if isinstance(pointer, IdentityItem):
            return str(pointer.member_id)
    return None


def member_profile(member: NewMember, refs: Sequence[IdentityRef]) -> MemberItem:
    return new_member(member.program_id, member.member_id, member.code, joined_at=member.joined_at,
                      joined_via=member.joined_via, name=member.name, locale=member.locale, email=member.email,
                      phone=member.phone, acquisition=dict(member.acquisition), refs=refs)


def invite_ref_item(program_id: str, referrer_id: str, ref: IdentityRef, expires_at_epoch: int | None) -> Any:
    """The referrer's back-reference to a visitor's identifier (``members.InviteRefItem``)."""
    from chalicelib.store.members import InviteRefItem

    pk, sk = keys.invite_ref(program_id, referrer_id, ref.kind, ref.value_hash)
    return InviteRefItem(PK=pk, SK=sk, program_id=program_id, member_id=referrer_id, kind=ref.kind,
                         expires_at_epoch=expires_at_epoch)


def without_ref(acquisition: Any) -> dict[str, Any]:
    """A profile's ``acquisition`` without the referrer's code (``ref``): what the erasure of either leaves."""
    return {k: v for k, v in dict(acquisition or {}).items() if k != "ref"}


def pending_invite_item(program_id: str, ref: IdentityRef, invite: PendingInvite) -> PendingInviteItem:
    pk, sk = ref.invite_key(program_id)
    return PendingInviteItem(PK=pk, SK=sk, program_id=program_id, kind=ref.kind, referrer_id=invite.referrer_id,
                             code=invite.code, invited_at=invite.invited_at, ancestors=list(invite.ancestors),
                             expires_at_epoch=invite.expires_at_epoch, risk_reject=invite.risk_reject,
                             risk_holds=list(invite.risk_holds), risk_matched=list(invite.risk_matched))


class DynamoMemberStore:
    def get(self, program_id: str, member_id: str, *, consistent: bool = True) -> MemberItem | None:
        return get_or_none(MemberItem, keys.member(program_id, member_id), consistent=consistent)

    def codes_of(self, member: MemberItem) -> list[str]:
        return codes_from_pointer_keys(member)

    def code_pointer(self, program_id: str, code: str, *, consistent: bool = False) -> CodeItem | None:
        return get_or_none(CodeItem, keys.referral_code(program_id, code), consistent=consistent)

    def identity_refs(self, program_id: str, *, email: str | None = None,
                      phone: str | None = None) -> list[IdentityRef]:
        return identity_refs(program_id, email=email, phone=phone)

    def identity_owner(self, program_id: str, refs: Sequence[IdentityRef]) -> str | None:
        wanted = list(dict.fromkeys(r.pointer_key(program_id) for r in refs))
        found = {(i.PK, i.SK): i for i in Entity.batch_get(wanted, consistent_read=True)} if wanted else {}
        return identity_owner_of(program_id, refs, found)

    def create_member(self, member: NewMember, refs: Sequence[IdentityRef]) -> MemberItem | None:
        from chalicelib.store.members import stage_member_creation

        profile = member_profile(member, refs)
        tx = Transaction()
        stage_member_creation(tx, profile, refs, _Taken())
        referrer = member.ref_member_id
        if referrer is not None:  # her code on the profile (acquisition.ref): her back-references, same transaction
            for ref in refs:
                tx.put(invite_ref_item(member.program_id, referrer, ref, None))
            check_unerased(tx, member.program_id, referrer, MemberErased(referrer))
        try:
            tx.commit()
        except _Taken:
            return None
        return profile

    def put_pending_invite(self, program_id: str, ref: IdentityRef, invite: PendingInvite, *,
                           first_touch_since: datetime | None = None, keep_ref: bool = False) -> bool:
        item = pending_invite_item(program_id, ref, invite)
        condition = None
        if first_touch_since is not None:
            condition = (Entity.PK.does_not_exist() | (PendingInviteItem.referrer_id == invite.referrer_id)
                         | (PendingInviteItem.invited_at < first_touch_since))
        # One transaction: the invite, the referrer's back-reference (no invite naming her is ever without one, and
        # none without its invite or a profile naming her code) and her erasure not started.
        tx = Transaction()
        tx.put(item, condition, on_fail=_Refused())
        tx.put(invite_ref_item(program_id, invite.referrer_id, ref, None if keep_ref else invite.expires_at_epoch))
        check_unerased(tx, program_id, invite.referrer_id, _Refused())
        try:
            tx.commit()
        except _Refused:
            return False
        return True

    def find_by_identity(self, program_id: str, *, email: str | None = None, phone: str | None = None,
                         customer_id: tuple[str, str] | None = None) -> str | None:
        refs = identity_refs(program_id, email=email, phone=phone, customer_id=customer_id)
        pointer = get_or_none(IdentityItem, refs[0].pointer_key(program_id)) if refs else None
        return pointer.member_id if pointer is not None else None

    def referrals(self, program_id: str, member_id: str, limit: int, cursor: Cursor | None) -> Page[MemberItem]:
        result = MemberItem.gsi1.query(keys.gsi1_referrals_partition(program_id, member_id), limit=limit,
                                       last_evaluated_key=cursor, scan_index_forward=False)
        items = [m for m in result if isinstance(m, MemberItem)]
        return Page(items, result.last_evaluated_key)

    def referral_position(self, member: MemberItem) -> str | None:
        return referral_position(member)

    def referrals_after(self, program_id: str, member_id: str, limit: int,
                        position: str | None) -> Page[MemberItem]:
        return self.referrals(program_id, member_id, limit, referral_start(program_id, member_id, position))

    def clicks_and_balance(self, program_id: str, member_id: str,
                           codes: Sequence[str]) -> tuple[list[ClickTotalItem], BalanceItem | None]:
        balance_key = keys.balance(program_id, member_id)
        found = batch_get([*(keys.click_total(program_id, c) for c in codes), balance_key])
        balance = found.get(balance_key)
        return ([i for i in found.values() if isinstance(i, ClickTotalItem)],
                balance if isinstance(balance, BalanceItem) else None)

    def erasure_record(self, program_id: str, member_id: str) -> ErasureItem | None:
        return get_or_none(ErasureItem, keys.erasure_record(program_id, member_id), consistent=True)

    def short_link(self, code: str) -> LinkItem | None:
        return get_or_none(LinkItem, keys.short_link(code))

    def count_click(self, program_id: str, code: str, day: str, utm_source: str) -> None:
        counters.count_click(program_id, code, day, utm_source)

    def change_code(self, member: MemberItem, code: str) -> None:
        pid = member.program_id
        unerased = not_erased(member)
        taken = code_taken(code)
        pointer_keys, own_earlier = code_change_plan(member, code)
        new_code_key = keys.referral_code(pid, code)
        revision = int(member.revision or 0)
        tx = Transaction()
        tx.update(member, [MemberItem.code.set(code), MemberItem.pointer_keys.set(pointer_keys),
                           MemberItem.revision.set(revision + 1)],
                  unerased & (MemberItem.revision == revision), on_fail=StaleMember())
        if own_earlier:
            # Switching back to one of the member's own earlier codes: its pointers still name the member.
            tx.check(CodeItem, new_code_key, CodeItem.member_id == member.member_id, on_fail=taken)
            tx.check(LinkItem, keys.short_link(code), LinkItem.member_id == member.member_id, on_fail=taken)
        else:
            tx.create(CodeItem(PK=new_code_key[0], SK=new_code_key[1], program_id=pid, member_id=member.member_id,
                               code=code, first_name=(member.name or "").split(" ")[0] or None, vanity=True,
                               ancestors=list(member.ancestors or [])), on_fail=taken)
            link_pk, link_sk = keys.short_link(code)
            tx.create(LinkItem(PK=link_pk, SK=link_sk, program_id=pid, member_id=member.member_id, code=code),
                      on_fail=taken)
        tx.commit()

    def coupon_owner(self, program_id: str, code: str) -> str | None:
        item = get_or_none(CouponItem, keys.coupon(program_id, code), consistent=True)
        return item.member_id if item is not None else None

    def coupons_of(self, member: MemberItem) -> list[str]:
        return coupons_from_pointer_keys(member)

    def add_coupon(self, member: MemberItem, code: str) -> bool:
        pid = member.program_id
        unerased = not_erased(member)
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
                  unerased & (MemberItem.revision == revision), on_fail=StaleMember())
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

    def partner(self, program_id: str, partner_id: str, *, fresh: bool = False) -> PartnerItem:
        return tenancy_repo.get_partner(program_id, partner_id, fresh=fresh)

    def allowed_origins(self) -> frozenset[str]:
        def load() -> frozenset[str]:
            found: set[str] = set()
            cursor = None
            for _ in range(100):  # 10 000 programs; a coalition deployment has tens
                items, cursor = tenancy_repo.list_programs(100, cursor)
                found.update(o for p in items for o in p.allowed_origins or [])
                if not cursor:
                    break
            return frozenset(found)

        return cache.cached("landing", "allowed_origins", get_settings().config_cache_seconds, load)

    def existing_partners(self, program_id: str, partner_ids: set[str]) -> set[str]:
        return tenancy_repo.existing_partners(program_id, partner_ids)

    def webhook_config(self, partner_id: str) -> tuple[PartnerItem, ProgramItem]:
        return tenancy_repo.webhook_config(partner_id)

    def api_key(self, key_hash: str) -> ApiKeyItem | None:
        return tenancy_repo.find_api_key(key_hash)

    def partner_program(self, partner_id: str) -> str:
        return tenancy_repo.locate_partner(partner_id)

    def programs(self, limit: int, cursor: Cursor | None) -> Page[ProgramItem]:
        items, next_cursor = tenancy_repo.list_programs(limit, cursor)
        return Page(items, next_cursor)

    def create_program(self, fields: Mapping[str, Any], key: NewKey) -> tuple[ProgramItem, ApiKeyRefItem]:
        program = ProgramItem.new(**fields)
        tx = Transaction()
        tx.create(program)
        ref = stage_key(tx, key)
        tx.commit()
        return program, ref

    def update_program(self, program: ProgramItem, changes: Mapping[str, Any]) -> ProgramItem:
        actions = [getattr(ProgramItem, name).remove() if value is None else getattr(ProgramItem, name).set(value)
                   for name, value in changes.items()]
        revision = int(program.revision or 0)
        tx = Transaction()
        tx.update(program, [*actions, ProgramItem.revision.set(revision + 1)],
                  Entity.PK.exists() & (ProgramItem.revision == revision) if program.revision is not None
                  else Entity.PK.exists(), on_fail=program_changed())
        tx.commit()
        cache.invalidate("program", program.program_id)
        return tenancy_repo.get_program(program.program_id, fresh=True)

    def create_partner(self, fields: Mapping[str, Any], key: NewKey) -> tuple[PartnerItem, ApiKeyRefItem]:
        partner = PartnerItem.new(**fields)
        tx = Transaction()
        tenancy_repo.stage_partner(tx, partner)
        ref = stage_key(tx, key)
        tx.commit()
        return partner, ref

    def partners(self, program_id: str, limit: int, cursor: Cursor | None) -> Page[PartnerItem]:
        items, next_cursor = tenancy_repo.list_partners(program_id, limit, cursor)
        return Page(items, next_cursor)

    def update_partner(self, partner: PartnerItem, changes: Mapping[str, Any]) -> PartnerItem:
        actions = [getattr(PartnerItem, name).remove() if value is None else getattr(PartnerItem, name).set(value)
                   for name, value in changes.items()]
        tx = Transaction()
        tx.update(partner, actions, PartnerItem.PK.exists(), on_fail=partner_not_found(partner))
        tx.commit()
        cache.invalidate("partner", f"{partner.program_id}/{partner.partner_id}")
        for name, value in changes.items():
            setattr(partner, name, value)
        return partner

    def set_webhook_secrets(self, partner: PartnerItem, webhook_secrets: dict[str, Any]) -> None:
        tx = Transaction()
        # Optimistic concurrency: two rotations at once must not both succeed from the same state.
        tx.update(partner, [PartnerItem.webhook_secrets.set(webhook_secrets)],
                  PartnerItem.webhook_secrets == partner.webhook_secrets, on_fail=partner_changed())
        tx.commit()
        cache.invalidate("partner", f"{partner.program_id}/{partner.partner_id}")
        partner.webhook_secrets = webhook_secrets

    def add_key(self, key: NewKey) -> ApiKeyRefItem:
        tx = Transaction()
        # The partner must still exist when the key is written, not just when it was read.
        tx.check(PartnerItem, keys.partner(key.program_id, key.partner_id or ""), Entity.PK.exists(),
                 NotFound("Partner not found"))
        ref = stage_key(tx, key)
        tx.commit()
        return ref

    def key_refs(self, program_id: str, limit: int, cursor: Cursor | None) -> Page[ApiKeyRefItem]:
        items, next_cursor = tenancy_repo.list_key_refs(program_id, limit, cursor)
        return Page(items, next_cursor)

    def key_ref(self, program_id: str, key_id: str) -> ApiKeyRefItem:
        return tenancy_repo.get_key_ref(program_id, key_id)

    def revoke_key(self, ref: ApiKeyRefItem) -> None:
        tenancy_repo.revoke_key(ref)
        ref.revoked = True

    def offer_exists(self, program_id: str, partner_id: str, offer_id: str) -> bool:
        return (partner_id, offer_id) in self.existing_offers(program_id, [(partner_id, offer_id)])

    def existing_offers(self, program_id: str, offers: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        from chalicelib.store.offers import OfferItem

        if not offers:
            return set()
        found = batch_get([keys.offer(program_id, p, o) for p, o in offers])
        return {(p, o) for p, o in offers if isinstance(found.get(keys.offer(program_id, p, o)), OfferItem)}

    def rules_key(self, program_id: str, version: int) -> tuple[str, str]:
        return keys.rules_version(program_id, version)

    def rules_version(self, program_id: str, version: int,
                      items: Mapping[tuple[str, str], Any] | None = None) -> RulesVersionItem | None:
        item = (items or {}).get(keys.rules_version(program_id, version))
        if isinstance(item, RulesVersionItem):
            return item
        return get_or_none(RulesVersionItem, keys.rules_version(program_id, version))

    def put_rules(self, program: ProgramItem, document: dict[str, Any], at: datetime) -> RulesVersionItem:
        item = next_rules_version(program, document, at)
        old = int(program.rules_version or 0)
        concurrent = rules_changed()
        tx = Transaction()
        tx.create(item, on_fail=concurrent)
        same = ProgramItem.rules_version == old
        if old == 0:
            same = same | ProgramItem.rules_version.does_not_exist()
        tx.update(program, [ProgramItem.rules_version.set(item.version)], Entity.PK.exists() & same,
                  on_fail=concurrent)
        tx.commit()
        cache.invalidate("program", program.program_id)
        return item


def next_rules_version(program: ProgramItem, document: dict[str, Any], at: datetime) -> RulesVersionItem:
    version = int(program.rules_version or 0) + 1
    pk, sk = keys.rules_version(program.program_id, version)
    return RulesVersionItem(PK=pk, SK=sk, program_id=program.program_id, version=version,
                            document={**document, "version": version}, created_at=at)


def rules_changed() -> Conflict:
    return Conflict("The rules were changed concurrently; read them and retry", code="concurrent_update")


def key_items(key: NewKey) -> tuple[ApiKeyItem, ApiKeyRefItem]:
    common: dict[str, Any] = {"key_id": key.key_id, "kind": key.kind, "program_id": key.program_id,
                              "partner_id": key.partner_id, "created_at": key.created_at}
    item = ApiKeyItem(*keys.api_key(key.key_hash), **common)
    ref = ApiKeyRefItem(*keys.api_key_ref(key.program_id, key.key_id), key_hash=key.key_hash,
                        display_prefix=key.display_prefix, **common)
    return item, ref


def stage_key(tx: Transaction, key: NewKey) -> ApiKeyRefItem:
    item, ref = key_items(key)
    tenancy_repo.add_key(tx, item, ref)
    return ref


def key_collision() -> Conflict:
    return Conflict("API key collision; retry", code="key_collision")


def program_changed() -> Conflict:
    return Conflict("The program changed concurrently; retry", code="concurrent_update")


def partner_changed() -> NotFound:
    return NotFound("Partner changed concurrently; retry", code="concurrent_update")


def partner_not_found(partner: PartnerItem) -> NotFound:
    return NotFound("Partner not found", details={"program_id": partner.program_id, "partner_id": partner.partner_id})


def partner_locator(partner: PartnerItem) -> PartnerLocatorItem:
    pk, sk = keys.partner_locator(partner.partner_id)
    return PartnerLocatorItem(PK=pk, SK=sk, program_id=partner.program_id, partner_id=partner.partner_id)


class DynamoLedgerStore:
    def balance(self, program_id: str, member_id: str) -> BalanceItem | None:
        return get_or_none(BalanceItem, keys.balance(program_id, member_id), consistent=True)

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

    def balances(self, program_id: str, member_ids: Sequence[str]) -> dict[str, BalanceItem]:
        wanted = {keys.balance(program_id, m): m for m in member_ids}
        found = batch_get(wanted)
        return {wanted[k]: i for k, i in found.items() if isinstance(i, BalanceItem) and k in wanted}

    def booked(self, program_id: str, day: str, limit: int, cursor: Cursor | None) -> Page[LedgerEntryItem | EventItem]:
        result = Entity.gsi2.query(keys.gsi2_ledger_day(program_id, day, "", "")[0], limit=limit,
                                   last_evaluated_key=cursor)
        items: list[LedgerEntryItem | EventItem] = [i for i in result if isinstance(i, LedgerEntryItem | EventItem)]
        return Page(items, result.last_evaluated_key or None)

    def entries_of(self, booked: LedgerEntryItem | EventItem) -> list[LedgerEntryItem]:
        if isinstance(booked, LedgerEntryItem):
            return [booked]
        wanted = booked.indexed_entry_keys()
        found = batch_get(wanted)
        return [e for e in (found.get(k) for k in wanted) if isinstance(e, LedgerEntryItem)]

    def cursor_after(self, booked: LedgerEntryItem | EventItem) -> Cursor:
        return booked_cursor(booked)

    def settlement_rows(self, program_id: str, start: date, end: date, limit: int) -> Iterator[SettlementRowItem]:
        return settlement.rows(program_id, start, end, limit)

    def redemption(self, program_id: str, redemption_id: str) -> RedemptionItem | None:
        return get_or_none(RedemptionItem, keys.redemption(program_id, redemption_id))

    def redeem(self, program_id: str, member_id: str, redemption_id: str, *, partner_id: str | None, points: int,
               value_minor: int, currency: str, order_id: str | None, order_amount: int | None, request_hash: str,
               reason: str, at: datetime) -> tuple[RedemptionItem, bool]:
        redemption = new_redemption(program_id, member_id, redemption_id, partner_id=partner_id, points=points,
                                    value_minor=value_minor, currency=currency, order_id=order_id,
                                    order_amount=order_amount, request_hash=request_hash, at=at)
        entry = spend_entry(redemption, reason)
        redemption.entry_sk = entry.SK
        tx = Transaction()
        tx.create(redemption, on_fail=_Taken())
        tx.check(MemberItem, keys.member(program_id, member_id), Entity.PK.exists(),
                 on_fail=NotFound("Member not found", details={"member_id": member_id}))
        tx.update(balance_ref(program_id, member_id),
                  [BalanceItem.available.add(-points), BalanceItem.lifetime_spent.add(points)],
                  BalanceItem.available >= points, on_fail=insufficient_points)
        tx.create(entry, on_fail=_Taken())
        try:
            tx.commit()
        except _Taken:
            return replayed(self.redemption(program_id, redemption_id)), False
        return redemption, True

    def adjust(self, program_id: str, member_id: str, adjustment_id: str, *, points: int, reason: str,
               partner_id: str | None, created_by: str, request_hash: str,
               at: datetime) -> tuple[AdjustmentItem, bool]:
        record, entry = new_adjustment(program_id, member_id, adjustment_id, points=points, reason=reason,
                                       partner_id=partner_id, created_by=created_by, request_hash=request_hash, at=at)
        tx = Transaction()
        tx.create(record, on_fail=_Taken())
        tx.check(MemberItem, keys.member(program_id, member_id), Entity.PK.exists(),
                 on_fail=NotFound("Member not found", details={"member_id": member_id}))
        tx.create(entry, on_fail=_Taken())
        if points > 0:
            read = get_or_none(BalanceItem, keys.balance(program_id, member_id), consistent=True)
            stage_balance(tx, program_id, member_id, read, BalanceDelta(available=points, earned=points),
                          on_fail=balance_changed())
        else:
            tx.update(balance_ref(program_id, member_id),
                      [BalanceItem.available.add(points), BalanceItem.lifetime_earned.add(points)],
                      BalanceItem.available >= -points, on_fail=adjustment_insufficient)
        try:
            tx.commit()
        except _Taken:
            existing = get_or_none(AdjustmentItem, keys.adjustment(program_id, adjustment_id), consistent=True)
            if existing is None:
                raise Conflict("The adjustment is being processed; retry", code="concurrent_update") from None
            return existing, False
        return record, True

    def confirm_redemption(self, redemption: RedemptionItem, at: datetime) -> None:
        tx = Transaction()
        tx.update(redemption, [RedemptionItem.status.set(REDEMPTION_CONFIRMED), RedemptionItem.updated_at.set(at)],
                  RedemptionItem.status == REDEMPTION_HELD, on_fail=concurrent_update())
        tx.commit()
        redemption.status, redemption.updated_at = REDEMPTION_CONFIRMED, at

    def cancel_redemption(self, redemption: RedemptionItem, balance: BalanceItem | None, at: datetime,
                          reason: str, partner_id: str | None) -> None:
        pid, mid, points = redemption.program_id, redemption.member_id, int(redemption.points)
        changed = concurrent_update()
        tx = Transaction()
        tx.update(redemption, [RedemptionItem.status.set(REDEMPTION_CANCELLED), RedemptionItem.updated_at.set(at)],
                  RedemptionItem.status == redemption.status, on_fail=changed)
        tx.create(return_entry(redemption, at, reason, partner_id), on_fail=changed)
        stage_balance(tx, pid, mid, balance, BalanceDelta(available=points, spent=-points), on_fail=changed)
        tx.commit()
        redemption.status, redemption.updated_at = REDEMPTION_CANCELLED, at


def concurrent_update() -> Conflict:
    return Conflict("The redemption changed concurrently; read it again", code="concurrent_update")


def _insufficient(message: str, raw: dict[str, Any] | None) -> Exception:
    """The failed balance condition's item (``ReturnValuesOnConditionCheckFailure``) says what is available."""
    available = int(raw["available"].get("N", 0)) if raw and "available" in raw else 0
    return Conflict(message, code="insufficient_points", details={"available": available})


def insufficient_points(raw: dict[str, Any] | None) -> Exception:
    return _insufficient("Not enough available points", raw)


def new_adjustment(program_id: str, member_id: str, adjustment_id: str, *, points: int, reason: str,
                   partner_id: str | None, created_by: str, request_hash: str,
                   at: datetime) -> tuple[AdjustmentItem, LedgerEntryItem]:
    entry = new_entry(program_id, member_id, stable_id("le", adjustment_id), at, kind=KIND_ADJUSTMENT,
                      status=STATUS_AVAILABLE, points=points, reason=reason, reason_code="manual_adjustment",
                      created_at=at, funding_partner_id=partner_id, partner_id=partner_id, created_by=created_by,
                      reversed_points=0, adjustment_id=adjustment_id)
    pk, sk = keys.adjustment(program_id, adjustment_id)
    record = AdjustmentItem(PK=pk, SK=sk, program_id=program_id, adjustment_id=adjustment_id, member_id=member_id,
                            points=points, reason=reason, partner_id=partner_id, created_by=created_by,
                            request_hash=request_hash, entry_id=entry.entry_id, entry_sk=entry.SK, created_at=at)
    return record, entry


def balance_changed() -> Conflict:
    return Conflict("The balance changed concurrently; retry", code="concurrent_update")


def adjustment_insufficient(raw: dict[str, Any] | None) -> Exception:
    return _insufficient("The adjustment would take the available balance below zero", raw)


def new_redemption(program_id: str, member_id: str, redemption_id: str, *, partner_id: str | None, points: int,
                   value_minor: int, currency: str, order_id: str | None, order_amount: int | None,
                   request_hash: str, at: datetime) -> RedemptionItem:
    pk, sk = keys.redemption(program_id, redemption_id)
    return RedemptionItem(PK=pk, SK=sk, program_id=program_id, redemption_id=redemption_id, member_id=member_id,
                          partner_id=partner_id, points=points, value_minor=value_minor, currency=currency,
                          order_id=order_id, order_amount=order_amount, status=REDEMPTION_HELD,
                          request_hash=request_hash, entry_sk="", created_at=at, updated_at=at)


def replayed(existing: RedemptionItem | None) -> RedemptionItem:
    if existing is None:  # the first request's transaction has not landed yet
        raise Conflict("The redemption is being processed; retry", code="concurrent_update")
    return existing


def spend_entry(redemption: RedemptionItem, reason: str) -> LedgerEntryItem:
    return new_entry(redemption.program_id, redemption.member_id, stable_id("le", redemption.redemption_id, "spend"),
                     redemption.created_at, kind=KIND_REDEMPTION, status=STATUS_SPENT, points=-int(redemption.points),
                     reason=reason, reason_code="redemption", created_at=redemption.created_at,
                     partner_id=redemption.partner_id, redemption_id=redemption.redemption_id)


def return_entry(redemption: RedemptionItem, at: datetime, reason: str, partner_id: str | None) -> LedgerEntryItem:
    return new_entry(redemption.program_id, redemption.member_id, stable_id("le", redemption.redemption_id, "return"),
                     at, kind=KIND_REDEMPTION_RETURN, status=STATUS_AVAILABLE, points=int(redemption.points),
                     reason=reason, reason_code="redemption_cancelled", created_at=at, partner_id=partner_id,
                     redemption_id=redemption.redemption_id)


def booked_cursor(booked: Entity) -> Cursor:
    """The exclusive start key of a ledger-day (GSI2) query resuming after ``booked``."""
    return {name: {"S": getattr(booked, name)} for name in ("PK", "SK", "GSI2PK", "GSI2SK")}


class DynamoTierStore:
    def state(self, program_id: str, member_id: str) -> TierStateItem | None:
        return get_or_none(TierStateItem, keys.member_tier(program_id, member_id))

    def history(self, program_id: str, member_id: str, limit: int) -> list[TierChangeItem]:
        pk, prefix = keys.tier_changes_prefix(program_id, member_id)
        result = TierChangeItem.query(pk, TierChangeItem.SK.startswith(prefix), limit=limit,
                                      scan_index_forward=False)
        return [c for c in result if isinstance(c, TierChangeItem)]


def event_key_hash(business_key: str) -> str:
    """The event record's key part for a business key (the same hash the pipeline writes)."""
    return hashlib.sha256(business_key.encode("utf-8")).hexdigest()[:40]


class DynamoEventStore:
    def get(self, program_id: str, business_key: str) -> EventItem | None:
        return get_or_none(EventItem, keys.event(program_id, event_key_hash(business_key)), consistent=True)

    def attributions(self, program_id: str, member_id: str, limit: int,
                     cursor: Cursor | None) -> Page[AttributionRecordItem]:
        pk, prefix = keys.attribution_records_prefix(program_id, member_id)
        result = AttributionRecordItem.query(pk, AttributionRecordItem.SK.startswith(prefix), limit=limit,
                                             last_evaluated_key=cursor, scan_index_forward=False)
        return Page([r for r in result if isinstance(r, AttributionRecordItem)], result.last_evaluated_key)

    def code_attributions(self, program_id: str, code: str, limit: int,
                          cursor: Cursor | None) -> Page[AttributionRecordItem]:
        result = AttributionRecordItem.gsi1.query(keys.gsi1_attribution_code_partition(program_id, code),
                                                  limit=limit, last_evaluated_key=cursor, scan_index_forward=False)
        return Page([r for r in result if isinstance(r, AttributionRecordItem)], result.last_evaluated_key)


class _SignalChanged(Exception):
    pass


def signal_writes(program_id: str, refs: Sequence[Any], read: Mapping[str, Any], member_id: str,
                  at: datetime) -> list[tuple[Any, Any]]:
    """``(next pointer, the one read or None)`` for each signal whose pointer needs writing (``store.signals``)."""
    from chalicelib.store.signals import next_pointer, updated_members

    writes = []
    for ref in refs:
        before = read.get(ref.kind)
        members = updated_members(before, member_id, at)
        if members is not None:
            writes.append((next_pointer(ref.pointer_key(program_id), program_id, ref.kind, members, before, at),
                           before))
    return writes


def signal_ref_writes(program_id: str, refs: Sequence[Any], read: Mapping[str, Any], member_id: str,
                      at: datetime) -> list[Any]:
    """The member's back-references (``store.signals.SignalRefItem``) to the pointers she is new on."""
    from chalicelib.store.signals import new_on_pointer, signal_ref, updated_members

    return [signal_ref(program_id, member_id, ref.kind, ref.value_hash, at) for ref in refs
            if updated_members(read.get(ref.kind), member_id, at) is not None
            and new_on_pointer(read.get(ref.kind), member_id)]


class DynamoSignalStore:
    def pointers(self, program_id: str, refs: Sequence[Any]) -> dict[str, Any]:
        from chalicelib.store.signals import SignalItem

        wanted = {ref.pointer_key(program_id): ref.kind for ref in refs}
        if not wanted:
            return {}
        return {wanted[(i.PK, i.SK)]: i for i in Entity.batch_get(list(wanted), consistent_read=True)
                if isinstance(i, SignalItem) and (i.PK, i.SK) in wanted}

    def see(self, program_id: str, refs: Sequence[Any], read: Mapping[str, Any], member_id: str,
            at: datetime) -> bool:
        from chalicelib.store.signals import SignalItem

        tx = Transaction()
        for item, before in signal_writes(program_id, refs, read, member_id, at):
            if before is None:
                tx.create(item, on_fail=_SignalChanged())
            else:
                tx.put(item, SignalItem.revision == int(before.revision or 0), on_fail=_SignalChanged())
        for ref_item in signal_ref_writes(program_id, refs, read, member_id, at):
            tx.put(ref_item)
        if len(tx):  # never a member whose erasure has started (docs/data-rights.md#while-erasing)
            check_unerased(tx, program_id, member_id, MemberErased(member_id))
        try:
            tx.commit()
        except _SignalChanged:
            return False
        return True

    def take_velocity_slot(self, program_id: str, scope: str, window: str, limit: int, expires_at_epoch: int) -> bool:
        from chalicelib.store.review import take_velocity_slot

        return take_velocity_slot(*keys.velocity(program_id, scope, window), limit, expires_at_epoch)


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


def concurrent_upload() -> Conflict:
    return Conflict("The pool changed while the codes were written; retry the upload with the codes not yet "
                    "stored", code="concurrent_upload")


def code_added(code: str) -> Exception:
    from chalicelib.domain.errors import ValidationFailed

    return ValidationFailed("A code was added to this pool concurrently", code="codes_already_present",
                            details={"codes": [code]})


def offer_changed() -> Conflict:
    return Conflict("The offer changed concurrently; read it again and retry", code="concurrent_update")


def new_offer(fields: Mapping[str, Any]) -> Any:
    from chalicelib.store.offers import OfferItem

    pk, sk = keys.offer(fields["program_id"], fields["partner_id"], fields["offer_id"])
    return OfferItem(PK=pk, SK=sk, **fields)


def code_rows(program_id: str, offer_id: str, codes: Sequence[str], sizes: Mapping[int, int],
              at: datetime) -> tuple[list[Any], dict[int, int]]:
    """The slot and code items of ``codes`` appended after ``sizes`` (by shard), and the shards' new sizes."""
    from chalicelib.domain.offers import code_hash, shard_of
    from chalicelib.store.offers import PoolCodeItem, PoolSlotItem

    rows: list[Any] = []
    after = dict(sizes)
    for code in codes:
        shard = shard_of(code)
        position = after.get(shard, 0)
        after[shard] = position + 1
        pk, sk = keys.pool_slot(program_id, offer_id, shard, position)
        cpk, csk = keys.pool_code(program_id, offer_id, code_hash(code))
        rows.append((PoolSlotItem(PK=pk, SK=sk, program_id=program_id, offer_id=offer_id, shard=shard,
                                  position=position, code=code, uploaded_at=at),
                     PoolCodeItem(PK=cpk, SK=csk, program_id=program_id, offer_id=offer_id, shard=shard,
                                  position=position), code))
    return rows, after


class DynamoOfferStore:
    def offer(self, program_id: str, partner_id: str, offer_id: str) -> Any:
        from chalicelib.store.offers import OfferItem

        key = keys.offer(program_id, partner_id, offer_id)
        item = batch_get([key]).get(key)
        return item if isinstance(item, OfferItem) else None

    def heads(self, program_id: str, offer_id: str) -> Any:
        from chalicelib.store.offers import head_keys, heads_of

        return heads_of(program_id, offer_id, batch_get(head_keys(program_id, offer_id)))

    def create_offer(self, fields: Mapping[str, Any]) -> Any:
        item = new_offer(fields)
        tx = Transaction()
        tx.create(item, on_fail=Conflict("Offer id collision; retry", code="conflict"))
        tx.check(PartnerItem, keys.partner(item.program_id, item.partner_id), PartnerItem.PK.exists(),
                 on_fail=NotFound("Partner not found", details={"partner_id": item.partner_id}))
        tx.commit()
        return item

    def offers(self, program_id: str, partner_id: str, limit: int, cursor: Cursor | None) -> Page[Any]:
        from chalicelib.store.offers import OfferItem

        pk, prefix = keys.offers_prefix(program_id, partner_id)
        result = OfferItem.query(pk, OfferItem.SK.startswith(prefix), limit=limit, last_evaluated_key=cursor,
                                 filter_condition=OfferItem.archived == False)  # noqa: E712 (a DynamoDB condition)
        items = [i for i in result if isinstance(i, OfferItem)]
        return Page(items, result.last_evaluated_key)

    def update_offer(self, offer: Any, changes: Mapping[str, Any], at: datetime, *,
                     new_alert_epoch: bool = False) -> None:
        from chalicelib.store.offers import OfferItem as O

        actions: list[Any] = [getattr(O, n).remove() if v is None else getattr(O, n).set(v) for n, v in changes.items()]
        if new_alert_epoch:
            actions.append(O.alert_epoch.add(1))
        revision = int(offer.revision or 0)
        actions += [O.updated_at.set(at), O.revision.set(revision + 1)]
        tx = Transaction()
        tx.update(offer, actions, (O.revision == revision) & (O.archived == False),  # noqa: E712
                  on_fail=offer_changed())
        tx.commit()
        for name, value in changes.items():
            setattr(offer, name, value)
        if new_alert_epoch:
            offer.alert_epoch = int(offer.alert_epoch or 0) + 1
        offer.updated_at, offer.revision = at, revision + 1

    def archive_offer(self, offer: Any, at: datetime) -> None:
        from chalicelib.store.offers import OfferItem as O

        offer.update(actions=[O.archived.set(True), O.enabled.set(False), O.updated_at.set(at), O.revision.add(1)])

    def codes_present(self, program_id: str, offer_id: str, codes: Sequence[str]) -> tuple[Any, list[str]]:
        from chalicelib.domain.offers import code_hash
        from chalicelib.store.offers import PoolCodeItem, head_keys, heads_of

        code_keys = {code: keys.pool_code(program_id, offer_id, code_hash(code)) for code in codes}
        read = batch_get([*head_keys(program_id, offer_id), *code_keys.values()])
        present = [code for code, key in code_keys.items() if isinstance(read.get(key), PoolCodeItem)]
        return heads_of(program_id, offer_id, read), present

    def append_codes(self, program_id: str, offer_id: str, codes: Sequence[str], sizes: Mapping[int, int],
                     at: datetime) -> dict[int, int]:
        from chalicelib.store.offers import PoolHeadItem as H

        rows, after = code_rows(program_id, offer_id, codes, sizes, at)
        tx = Transaction()
        for slot, code_item, code in rows:
            tx.create(slot, on_fail=concurrent_upload())
            tx.create(code_item, on_fail=code_added(code))
        for shard in sorted({slot.shard for slot, _, _ in rows}):
            first = sizes.get(int(shard), 0)
            hpk, hsk = keys.pool_head(program_id, offer_id, int(shard))
            condition = (H.size.does_not_exist() | (H.size == 0)) if first == 0 else (H.size == first)
            tx.update(H(PK=hpk, SK=hsk), [H.entity.set(H), H.program_id.set(program_id),  # type: ignore[arg-type]
                                          H.offer_id.set(offer_id), H.shard.set(int(shard)),
                                          H.size.set(after[int(shard)]), H.next.set(H.next | 0)],
                      condition, on_fail=concurrent_upload())
        tx.commit()
        return after

    def bump_alert_epoch(self, offer: Any) -> None:
        from chalicelib.store.offers import OfferItem as O

        offer.update(actions=[O.alert_epoch.add(1)])


def new_integration(fields: Mapping[str, Any]) -> Any:
    from chalicelib.store.integrations import IntegrationItem

    pk, sk = keys.integration(fields["program_id"], fields["partner_id"], fields["platform"])
    return IntegrationItem(PK=pk, SK=sk, **fields)


def integration_changed() -> Conflict:
    return Conflict("The integration changed concurrently; retry", code="concurrent_update")


class DynamoIntegrationStore:
    """``store.integrations``: one ``GetItem`` on a cold container, then the config cache."""

    def get(self, program_id: str, partner_id: str, platform: str, *, fresh: bool = False) -> Any:
        from chalicelib.store import integrations

        return integrations.get(program_id, partner_id, platform, fresh=fresh)

    def save(self, fields: Mapping[str, Any], expected_revision: int | None) -> Any:
        from chalicelib.store import integrations

        item = new_integration(fields)
        integrations.save(item, expected_revision)
        return item

    def delete(self, item: Any) -> None:
        from chalicelib.store import integrations

        integrations.delete(item)

    def log(self, program_id: str, partner_id: str, platform: str, limit: int, cursor: Cursor | None) -> Page[Any]:
        from chalicelib.store import integrations

        items, last = integrations.log_page(program_id, partner_id, platform, limit, cursor)
        return Page(items, last)

    def add_log(self, program_id: str, partner_id: str, platform: str, entry_id: str, *, code: str, message: str,
                object_id: str | None, at: datetime) -> None:
        from chalicelib.store import integrations

        integrations.add_log_entry(integration_log_entry(program_id, partner_id, platform, entry_id, code=code,
                                                         message=message, object_id=object_id, at=at), at)

    def acknowledge(self, program_id: str, partner_id: str, platform: str, event_id: str, at: datetime) -> bool:
        from chalicelib.store import integrations

        return integrations.acknowledge(program_id, partner_id, platform, event_id, at)

    def forget_ack(self, program_id: str, partner_id: str, platform: str, event_id: str) -> None:
        from chalicelib.store import integrations

        integrations.forget_ack(program_id, partner_id, platform, event_id)


def integration_log_entry(program_id: str, partner_id: str, platform: str, entry_id: str, *, code: str, message: str,
                          object_id: str | None, at: datetime) -> Any:
    from chalicelib.domain.clock import iso
    from chalicelib.store.integrations import IntegrationLogItem

    pk, sk = keys.integration_log(program_id, partner_id, platform, iso(at), entry_id)
    return IntegrationLogItem(PK=pk, SK=sk, program_id=program_id, partner_id=partner_id, platform=platform,
                              code=code, message=message[:500], object_id=object_id, at=at)

# --------------------------------------------------------------------------- partner webhooks (services.partner_webhooks)


def too_many_endpoints() -> ValidationFailed:
    from chalicelib.store.partner_hooks import MAX_ENDPOINTS

    return ValidationFailed(f"A partner has at most {MAX_ENDPOINTS} webhook endpoints", code="too_many_endpoints",
                            details={"limit": MAX_ENDPOINTS})


def endpoint_changed() -> Conflict:
    return Conflict("The webhook endpoint changed concurrently; read it again and retry", code="concurrent_update")


def new_endpoint(fields: Mapping[str, Any]) -> Any:
    from chalicelib.store.partner_hooks import WebhookEndpointItem

    pk, sk = keys.webhook_endpoint(fields["program_id"], fields["partner_id"], fields["endpoint_id"])
    return WebhookEndpointItem(PK=pk, SK=sk, **fields)


def update_actions(model: type[Entity], changes: Mapping[str, Any]) -> list[Any]:
    """``changes`` as update actions (``None`` removes the attribute)."""
    return [getattr(model, name).remove() if value is None else getattr(model, name).set(value)
            for name, value in changes.items()]


def set_fields(item: Entity, changes: Mapping[str, Any]) -> None:
    """``changes`` applied to ``item`` in place (once written: a refused write leaves the caller's copy as read)."""
    for name, value in changes.items():
        setattr(item, name, value)


class DynamoWebhookStore:
    def endpoint(self, program_id: str, partner_id: str, endpoint_id: str) -> Any:
        from chalicelib.store import partner_hooks

        return partner_hooks.get_endpoint(program_id, partner_id, endpoint_id)

    def endpoints(self, program_id: str, partner_id: str) -> list[Any]:
        from chalicelib.store import partner_hooks

        return partner_hooks.endpoints_of(program_id, partner_id)

    def create_endpoint(self, fields: Mapping[str, Any]) -> Any:
        from chalicelib.store.partner_hooks import MAX_ENDPOINTS, WebhookEndpointCountItem, count_ref

        item = new_endpoint(fields)
        pid, partner_id = item.program_id, item.partner_id
        C = WebhookEndpointCountItem
        tx = Transaction()
        tx.create(item, on_fail=Conflict("Endpoint id collision; retry", code="conflict"))
        tx.update(count_ref(pid, partner_id), [C.endpoints.add(1)],
                  C.endpoints.does_not_exist() | (C.endpoints < MAX_ENDPOINTS), on_fail=too_many_endpoints())
        tx.check(PartnerItem, keys.partner(pid, partner_id), PartnerItem.PK.exists(),
                 on_fail=NotFound("Partner not found", details={"partner_id": partner_id}))
        tx.commit()
        return item

    def update_endpoint(self, endpoint: Any, changes: Mapping[str, Any], at: datetime) -> None:
        from chalicelib.store.partner_hooks import WebhookEndpointItem as E

        revision = int(endpoint.revision or 0)
        changes = {**changes, "updated_at": at, "revision": revision + 1}
        tx = Transaction()
        tx.update(type(endpoint)(PK=endpoint.PK, SK=endpoint.SK), update_actions(E, changes), E.revision == revision,
                  on_fail=endpoint_changed())
        tx.commit()
        set_fields(endpoint, changes)

    def delete_endpoint(self, endpoint: Any) -> None:
        from chalicelib.store.partner_hooks import WebhookEndpointCountItem as C
        from chalicelib.store.partner_hooks import WebhookEndpointItem as E
        from chalicelib.store.partner_hooks import count_ref

        tx = Transaction()
        tx.delete(endpoint, E.revision == int(endpoint.revision or 0), on_fail=endpoint_changed())
        tx.update(count_ref(endpoint.program_id, endpoint.partner_id), [C.endpoints.add(-1)], C.endpoints > 0)
        tx.commit()

    def deliveries(self, program_id: str, endpoint_id: str, limit: int, cursor: Cursor | None) -> Page[Any]:
        from chalicelib.store import partner_hooks

        items, last = partner_hooks.log_page(program_id, endpoint_id, limit, cursor)
        return Page(list(items), last)

    def delivery(self, program_id: str, endpoint_id: str, delivery_id: str) -> Any:
        from chalicelib.store import partner_hooks

        return partner_hooks.get_delivery(program_id, endpoint_id, delivery_id)

    def retry_delivery(self, delivery: Any, at: datetime) -> bool:
        from chalicelib.store import partner_hooks
        from chalicelib.store.partner_hooks import PENDING
        from chalicelib.store.partner_hooks import WebhookDeliveryItem as D

        status = delivery.status
        gsi1pk, gsi1sk = partner_hooks.due_key(delivery, at)
        changes = {"status": PENDING, "next_attempt_at": at, "max_attempts": int(delivery.attempts or 0) + 1,
                   "GSI1PK": gsi1pk, "GSI1SK": gsi1sk}
        if not partner_hooks.conditional_update(type(delivery)(PK=delivery.PK, SK=delivery.SK),
                                                update_actions(D, changes), D.status == status):
            return False
        set_fields(delivery, changes)
        return True


# --------------------------------------------------------------------------- data rights (services.erasure, member_export)

#: Items of the member's partition the export shows in its summary instead.
IN_EXPORT_SUMMARY = frozenset({"PROFILE", "BALANCE", "ERASURE"})
_KEY_ATTRIBUTES = frozenset({"PK", "SK", "GSI1PK", "GSI1SK", "GSI2PK", "GSI2SK", "entity"})


def erasure_request(program_id: str, member_id: str, at: datetime) -> ErasureItem:
    from chalicelib.domain.records import ERASURE_REQUESTED

    pk, sk = keys.erasure_record(program_id, member_id)
    gpk, gsk = keys.gsi1_erasure_request(program_id, clock.iso(at), member_id)
    return ErasureItem(PK=pk, SK=sk, GSI1PK=gpk, GSI1SK=gsk, program_id=program_id, member_id=member_id,
                       status=ERASURE_REQUESTED, requested_by="member", requested_at=at, counts={}, revision=0)


def erasure_started(member: MemberItem, requested: ErasureItem | None, actor: str, at: datetime,
                    actor_key: str | None = None) -> ErasureItem:
    """The record in progress: the member's codes and identifier hashes (what later steps need once the profile is
    scrubbed) and the pointers to delete (every pointer of the profile, each code's pointer and short link), and
    who asked and confirmed (the key kind and the key's id, never the key)."""
    from chalicelib.domain.records import ERASURE_IN_PROGRESS

    program_id, member_id = member.program_id, member.member_id
    pointer_keys = list(member.pointer_keys or [])
    code_prefix = f"CODE#{program_id}#"
    codes = [member.code, *(key_from_str(k)[0][len(code_prefix):] for k in pointer_keys if k.startswith(code_prefix))]
    codes = list(dict.fromkeys(c for c in codes if c and c != ERASED_CODE))
    ident_prefix = f"IDENT#{program_id}#"
    identities = []
    for text in pointer_keys:
        pk = key_from_str(text)[0]
        if pk.startswith(ident_prefix):
            kind, _, value_hash = pk[len(ident_prefix):].rpartition("#")
            identities.append(f"{kind}:{value_hash}")
    wanted = list(pointer_keys)
    for code in codes:
        wanted += [key_str(keys.referral_code(program_id, code)), key_str(keys.short_link(code))]
    pk, sk = keys.erasure_record(program_id, member_id)
    return ErasureItem(
        PK=pk, SK=sk, program_id=program_id, member_id=member_id, status=ERASURE_IN_PROGRESS,
        requested_by=requested.requested_by if requested else actor,
        requested_by_key=requested.requested_by_key if requested else actor_key,
        requested_at=requested.requested_at if requested else at, confirmed_by=actor, confirmed_by_key=actor_key,
        started_at=at,
        step="pointers", cursor={"pointers": list(dict.fromkeys(wanted))}, codes=codes, identities=identities,
        counts={}, revision=(int(requested.revision or 0) + 1) if requested else 0)


def profile_not_scrubbed(member: MemberItem) -> bool:
    """The profile step has not run on ``member`` yet (``erased_at`` alone is set when the erasure starts)."""
    return member.erased_at is None or member.code != ERASED_CODE


def erasure_progress(record: ErasureItem, step: str, cursor: dict[str, Any] | None, counted: Mapping[str, int],
                     at: datetime) -> dict[str, Any]:
    """The record's attributes after a step's transaction (``step`` "done": erased)."""
    from chalicelib.domain.records import ERASURE_DONE

    counts = dict(record.counts or {})
    for name, n in counted.items():
        if n:
            counts[name] = int(counts.get(name, 0)) + n
    changes: dict[str, Any] = {"step": step, "counts": counts, "revision": int(record.revision or 0) + 1,
                               "cursor": cursor}
    if step == "done":
        changes.update(status=ERASURE_DONE, completed_at=at)
    return changes


def identifier_kinds(member: MemberItem) -> list[str]:
    kinds = []
    for text in member.pointer_keys or []:
        parts = key_from_str(text)[0].split("#")
        if parts[0] == "IDENT" and len(parts) >= 4:
            kinds.append(parts[2])
    return kinds


def invite_keys(member: MemberItem) -> list[tuple[str, str]]:
    wanted = []
    for text in member.pointer_keys or []:
        parts = key_from_str(text)[0].split("#")
        if parts[0] == "IDENT" and len(parts) >= 4:
            wanted.append(keys.pending_invite(member.program_id, parts[2], parts[-1]))
    return wanted


def _plain(value: Any) -> Any:
    from chalicelib.store.db import plain_binary

    if isinstance(value, datetime):
        return clock.iso(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | set | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, bytes | bytearray):
        return plain_binary(bytes(value))  # e.g. an event record's compressed reply
    return value


def item_data(item: Entity) -> dict[str, Any]:
    """An item's attributes as plain JSON (no table keys), with its ``item_type``; a compressed binary (an event
    record's reply, an order ledger's postings) as its decoded text."""
    from pynamodb._util import attr_value_to_simple_dict

    from chalicelib.store.db import plain_binary

    raw = {k: plain_binary(bytes(v["B"])) if "B" in v else attr_value_to_simple_dict(v, force=True)
           for k, v in item.serialize(null_check=False).items()}
    data = {k: _plain(v) for k, v in raw.items() if k not in _KEY_ATTRIBUTES}
    return {"item_type": raw.get("entity"), **data}


class DynamoDataRightsStore:
    def __init__(self, kind_modules: Sequence[str] = ()) -> None:
        self.kind_modules = tuple(kind_modules)

    def _kinds(self) -> dict[str, Any]:
        from chalicelib.store import erasure_kinds

        return {k.name: k for k in erasure_kinds.registered(self.kind_modules)}

    def kinds(self) -> list[str]:
        return [name for name, kind in self._kinds().items() if kind.erase]

    def exported_kinds(self) -> list[str]:
        return [name for name, kind in self._kinds().items() if kind.export]

    def requests(self, program_id: str, limit: int, cursor: Cursor | None) -> Page[ErasureItem]:
        from chalicelib.domain.records import ERASURE_REQUESTED

        result = ErasureItem.gsi1.query(keys.gsi1_erasure_requests_partition(program_id), limit=limit,
                                        last_evaluated_key=cursor)
        items = [r for r in result if isinstance(r, ErasureItem) and r.status == ERASURE_REQUESTED]
        return Page(items, result.last_evaluated_key)

    def request(self, program_id: str, member_id: str, at: datetime) -> ErasureItem | None:
        from chalicelib.domain.records import StaleErasure

        record = erasure_request(program_id, member_id, at)
        tx = Transaction()
        tx.create(record, on_fail=StaleErasure())
        try:
            tx.commit()
        except StaleErasure:  # a concurrent request or erasure got there first
            return None
        return record

    def start(self, member: MemberItem, requested: ErasureItem | None, actor: str, at: datetime,
              actor_key: str | None = None) -> ErasureItem:
        from chalicelib.domain.records import StaleErasure

        record = erasure_started(member, requested, actor, at, actor_key)
        condition = (ErasureItem.revision == int(requested.revision or 0)) if requested else Entity.PK.does_not_exist()
        tx = Transaction()
        tx.put(record, condition, on_fail=StaleErasure())
        # The profile is marked in the same transaction, conditioned on the revision read: the record's pointer
        # list is exactly the profile's, and from now on every write that would attach personal data or a code
        # to the member (conditioned on ``erased_at`` not existing) fails, events included.
        revision = int(member.revision or 0)
        M = MemberItem
        tx.update(member, [M.erased_at.set(member.erased_at or at), M.revision.set(revision + 1)],
                  Entity.PK.exists() & (M.revision == revision), on_fail=StaleErasure())
        tx.commit()
        member.erased_at, member.revision = member.erased_at or at, revision + 1
        return record

    @staticmethod
    def _advance(tx: Transaction, record: ErasureItem, changes: Mapping[str, Any]) -> ErasureItem:
        from chalicelib.domain.records import StaleErasure

        R = ErasureItem
        revision = int(record.revision or 0)
        tx.update(R(PK=record.PK, SK=record.SK), update_actions(R, changes), R.revision == revision,
                  on_fail=StaleErasure())
        tx.commit()
        set_fields(record, changes)
        return record

    def erase_pointers(self, record: ErasureItem, limit: int, then: str, at: datetime) -> tuple[ErasureItem, int]:
        from chalicelib.domain.records import StaleErasure
        from chalicelib.store.data_rights import ErasedIdentityItem
        from chalicelib.store.members import InviteRefItem, PendingInviteItem

        pid, mid = record.program_id, record.member_id
        remaining = list((record.cursor or {}).get("pointers") or [])
        batch, rest = remaining[:limit], remaining[limit:]
        identities = [p for p in (identity_pointer_parts(pid, text) for text in batch) if p is not None]
        found = batch_get([*(key_from_str(k) for k in batch), *(keys.pending_invite(pid, *p) for p in identities),
                           keys.member(pid, mid)])
        ref_owner = self._ref_owner(pid, found.get(keys.member(pid, mid))) if identities else None
        tx = Transaction()
        removed = 0
        for text in batch:
            item = found.get(key_from_str(text))
            if item is not None and getattr(item, "member_id", None) == mid:
                tx.delete(item, type(item).member_id == mid, on_fail=StaleErasure())  # type: ignore[attr-defined]
                removed += 1
            parts = identity_pointer_parts(pid, text)
            if parts is not None:
                kind, value_hash = parts
                tpk, tsk = keys.erased_identity(pid, kind, value_hash)
                tx.put(ErasedIdentityItem(PK=tpk, SK=tsk, program_id=pid, kind=kind, erased_at=at))
                # A friend's invite waiting for this identifier names the person: it goes too, with the referrer's
                # back-reference (keyed by this identifier's hash), and the one of the referrer whose code the
                # profile names (acquisition.ref; the profile step takes the code off).
                ipk, isk = keys.pending_invite(pid, kind, value_hash)
                invite = found.get((ipk, isk))
                referrers = {ref_owner} - {None}
                if isinstance(invite, PendingInviteItem):
                    referrers.add(invite.referrer_id)
                    tx.delete(invite, PendingInviteItem.referrer_id == invite.referrer_id, on_fail=StaleErasure())
                else:
                    tx.delete(PendingInviteItem(PK=ipk, SK=isk), Entity.PK.does_not_exist(), on_fail=StaleErasure())
                for referrer in sorted(r for r in referrers if r is not None):
                    rpk, rsk = keys.invite_ref(pid, referrer, kind, value_hash)
                    tx.delete(InviteRefItem(PK=rpk, SK=rsk))
        changes = erasure_progress(record, "pointers" if rest else then, {"pointers": rest} if rest else None,
                                   {"pointers": removed}, at)
        return self._advance(tx, record, changes), len(batch)

    @staticmethod
    def _ref_owner(program_id: str, profile: Entity | None) -> str | None:
        """The member whose code the profile names as the link it came through (``acquisition.ref``), if any."""
        code = (profile.acquisition or {}).get("ref") if isinstance(profile, MemberItem) else None
        pointer = get_or_none(CodeItem, keys.referral_code(program_id, code), consistent=True) if code else None
        return pointer.member_id if pointer is not None else None

    def erase_profile(self, record: ErasureItem, then: str, at: datetime) -> ErasureItem:
        from chalicelib.domain.records import StaleErasure
        from chalicelib.store.birthdays import stage_birthday

        member = get_or_none(MemberItem, keys.member(record.program_id, record.member_id), consistent=True)
        tx = Transaction()
        scrubbed = 0
        if member is not None and profile_not_scrubbed(member):
            revision = int(member.revision or 0)
            M = MemberItem
            tx.update(member, [
                M.name.remove(), M.email.remove(), M.phone.remove(), M.birthday.remove(), M.birthday_set_at.remove(),
                M.customer_ids.set({}), M.push_endpoints.set([]), M.pointer_keys.set([]), M.code.set(ERASED_CODE),
                M.erased_at.set(member.erased_at or at), M.revision.set(revision + 1),
                M.acquisition.set(without_ref(member.acquisition)),
            ], M.revision == revision, on_fail=StaleErasure())
            # The birthday's month-day index entry (its key holds the month and day) goes with the birthday.
            stage_birthday(tx, record.program_id, record.member_id, member.birthday, None, at)
            scrubbed = 1
        return self._advance(tx, record, erasure_progress(record, then, None, {"profile": scrubbed}, at))

    def scrub(self, record: ErasureItem, kind: str, limit: int, then: str, at: datetime) -> tuple[ErasureItem, int]:
        from chalicelib.store.erasure_kinds import ErasureTarget

        found = self._kinds().get(kind)
        tx = Transaction()
        if found is None:  # a kind no longer registered: skip it
            return self._advance(tx, record, erasure_progress(record, then, None, {}, at)), 0
        target = ErasureTarget(record.program_id, record.member_id, tuple(record.codes or []),
                               tuple(record.identities or []))
        page = found.find(target, (record.cursor or {}).get("page"), limit)
        for item in page.items:
            if found.scrub_member is not None:
                found.scrub_member(tx, item, target)
            else:
                found.scrub(tx, item)
        step, cursor = (then, None) if page.cursor is None else (kind, {"page": page.cursor})
        return self._advance(tx, record, erasure_progress(record, step, cursor, {kind: len(page.items)}, at)), len(
            page.items)

    def member_items(self, program_id: str, member_id: str, limit: int, cursor: Cursor | None) -> Page[Any]:
        result = Entity.query(keys.member_partition(program_id, member_id), limit=limit, last_evaluated_key=cursor)
        items = [i for i in result if i.SK not in IN_EXPORT_SUMMARY]
        return Page(items, result.last_evaluated_key)

    def exported(self, kind: str, program_id: str, member_id: str, limit: int, cursor: Cursor | None) -> Page[Any]:
        from chalicelib.store.erasure_kinds import ErasureTarget

        found = self._kinds()[kind]
        target = ErasureTarget(program_id, member_id, (), ())
        page = found.find(target, cursor, limit)
        if found.export_view is None:
            return Page(list(page.items), page.cursor)
        views = [found.export_view(item, target) for item in page.items]
        return Page([v for v in views if v is not None], page.cursor)

    def pending_invites(self, member: MemberItem) -> list[Any]:
        from chalicelib.store.members import PendingInviteItem

        return [i for i in batch_get(invite_keys(member)).values() if isinstance(i, PendingInviteItem)]

    def identifier_kinds(self, member: MemberItem) -> list[str]:
        return identifier_kinds(member)

    def item_data(self, item: Any) -> dict[str, Any]:
        return dict(item) if isinstance(item, dict) else item_data(item)  # a dict: a kind's export view


# --------------------------------------------------------------------------- fraud review (services.review)

#: How the review store issues the vouchers an approval releases, inside the decision's transaction (production:
#: ``services.vouchers.stage_held_grants``, wired in ``services.ports.production``): (tx, program, grants, now).
VoucherIssuer = Callable[[Transaction, str, Sequence[Mapping[str, Any]], datetime], list[dict[str, Any]]]


def review_entry_keys(item: Any) -> list[tuple[str, str]]:
    return [(keys.member_partition(item.program_id, e["member_id"]), e["sk"]) for e in item.entries or []]


def review_reversal(decision: Any, entry: LedgerEntryItem) -> LedgerEntryItem:
    """The reversal entry a void writes for one held entry (its id derived from the item and the entry)."""
    from chalicelib.store.ledger import KIND_REVERSAL, STATUS_HELD, STATUS_REVERSED

    item, at = decision.item, decision.at
    return new_entry(
        item.program_id, entry.member_id, stable_id("le", "review-void", item.item_id, entry.entry_id), at,
        kind=KIND_REVERSAL, status=STATUS_REVERSED, points=-entry.net_points,
        reason=f"Voided in fraud review: {decision.reason}", reason_code="review_voided", created_at=at,
        business_key=item.business_key, rule_id=entry.rule_id, rule_version=entry.rule_version, level=entry.level,
        funding_partner_id=entry.funding_partner_id, partner_id=item.partner_id, reverses_entry_id=entry.entry_id,
        from_status=STATUS_HELD)


def review_entry_changes(decision: Any, held: Any) -> dict[str, Any]:
    """A held entry's attributes after the decision (approved: pending with its release index, or available with
    the expiry job's month bucket; voided: reversed)."""
    from chalicelib.store.ledger import STATUS_AVAILABLE, STATUS_PENDING, STATUS_REVERSED

    entry, at = held.entry, decision.at
    if not decision.approve:
        return {"status": STATUS_REVERSED, "reversed_points": int(entry.points)}
    if held.pending:
        assert entry.available_at is not None
        gpk, gsk = keys.gsi1_pending_release(ledger_day(entry.available_at), clock.iso(entry.available_at),
                                             entry.entry_id)
        return {"status": STATUS_PENDING, "GSI1PK": gpk, "GSI1SK": gsk}
    gpk, gsk = credit_index(entry, at)
    return {"status": STATUS_AVAILABLE, "released_at": at, "GSI1PK": gpk, "GSI1SK": gsk}


def review_item_changes(decision: Any, vouchers: list[dict[str, Any]]) -> dict[str, Any]:
    from chalicelib.domain.records import REVIEW_APPROVED, REVIEW_VOIDED

    changes: dict[str, Any] = {"status": REVIEW_APPROVED if decision.approve else REVIEW_VOIDED,
                               "decided_at": decision.at, "decided_by": decision.by,
                               "decision_reason": decision.reason or None,
                               "GSI1PK": None, "GSI1SK": None, "GSI2PK": None, "GSI2SK": None}
    if vouchers:
        changes["vouchers"] = vouchers
    return changes


def ledger_day(at: datetime) -> str:
    from chalicelib.store.ledger import day_of

    return day_of(at)


def credit_index(entry: LedgerEntryItem, at: datetime) -> tuple[str, str]:
    from chalicelib.store.ledger import credit_index as index

    return index(entry, at)


class DynamoReviewStore:
    def __init__(self, issue_vouchers: VoucherIssuer) -> None:
        self.issue_vouchers = issue_vouchers

    def open_items(self, program_id: str, partner_id: str | None, limit: int, cursor: Cursor | None) -> Page[Any]:
        from chalicelib.store.review import ReviewItem

        if partner_id is None:
            result = ReviewItem.gsi1.query(keys.gsi1_review_open(program_id, "", "")[0], limit=limit,
                                           last_evaluated_key=cursor)
        else:
            result = ReviewItem.gsi2.query(keys.gsi2_review_open_partner(program_id, partner_id, "", "")[0],
                                           limit=limit, last_evaluated_key=cursor)
        return Page([i for i in result if isinstance(i, ReviewItem)], result.last_evaluated_key)

    def item(self, program_id: str, item_id: str) -> Any:
        from chalicelib.store.review import ReviewItem

        # Consistent: read right after a decision (the answer, or the re-read after a lost race) it must show it.
        return get_or_none(ReviewItem, keys.review_item(program_id, item_id), consistent=True)

    def held(self, item: Any) -> tuple[list[LedgerEntryItem], dict[str, BalanceItem | None]]:
        from chalicelib.store.ledger import STATUS_HELD

        entry_keys = review_entry_keys(item)
        members = sorted({e["member_id"] for e in item.entries or []})
        read = batch_get([*entry_keys, *(keys.balance(item.program_id, m) for m in members)])
        entries = [e for e in (read.get(k) for k in entry_keys) if isinstance(e, LedgerEntryItem)
                   and e.status == STATUS_HELD]
        balances = {m: b if isinstance(b := read.get(keys.balance(item.program_id, m)), BalanceItem) else None
                    for m in members}
        return entries, balances

    def decide(self, decision: Any) -> None:
        from chalicelib.domain.records import REVIEW_OPEN, StaleReview
        from chalicelib.store.ledger import STATUS_HELD, BalanceDelta
        from chalicelib.store.review import DenyItem, ReviewItem
        from chalicelib.store.signals import SignalItem

        item, at, pid = decision.item, decision.at, decision.item.program_id
        tx = Transaction()
        E = LedgerEntryItem
        for held in decision.entries:
            entry = held.entry
            if not decision.approve:
                tx.create(review_reversal(decision, entry), on_fail=StaleReview())
            condition = (E.status == STATUS_HELD) & (E.reversed_points == int(entry.reversed_points or 0))
            tx.update(E(PK=entry.PK, SK=entry.SK), update_actions(E, review_entry_changes(decision, held)), condition,
                      on_fail=StaleReview())
        for member_id, (read, change) in decision.balances.items():
            stage_balance(tx, pid, member_id, read, BalanceDelta(pending=change.pending, available=change.available,
                                                                 earned=change.earned, held=change.held),
                          on_fail=StaleReview())
        for text in decision.fraud_signals:
            kind, _, value_hash = text.partition("#")
            spk, ssk = keys.signal(pid, kind, value_hash)
            tx.update(SignalItem(PK=spk, SK=ssk), [SignalItem.fraud_at.set(at)], Entity.PK.exists(),
                      on_fail=StaleReview())
        for text in decision.deny:  # the program feeds the deployment's shared deny list
            kind, _, value_hash = text.partition("#")
            dpk, dsk = keys.deny_list(kind, value_hash)
            tx.put(DenyItem(PK=dpk, SK=dsk, kind=kind, added_at=at))
        vouchers = [dict(g) for g in decision.vouchers]
        if decision.approve and vouchers:
            vouchers = self.issue_vouchers(tx, pid, vouchers, at)
        R = ReviewItem
        tx.update(R(PK=item.PK, SK=item.SK), update_actions(R, review_item_changes(decision, vouchers)),
                  R.status == REVIEW_OPEN, on_fail=StaleReview())
        tx.commit()
