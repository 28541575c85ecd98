"""In-memory fakes of the service ports, beside their DynamoDB implementations (``store.dynamo_ports``).

Same interfaces, same observable behaviour: ``tests/contract/`` runs one suite against both, so a
service test on ``services.ports.fakes()`` (milliseconds, no moto) means the same as one on DynamoDB.
Items are the same PynamoDB entity classes, held in dicts (no connection is ever opened).
Thread-safe, so the fakes also serve concurrency tests.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import date, datetime, timedelta
from typing import Any, TypeVar

from chalicelib.domain.clock import iso as clock_iso
from chalicelib.domain.errors import Conflict, MemberErased, NotFound
from chalicelib.domain.offers import SHARDS, code_hash
from chalicelib.domain.records import (
    ERASURE_REQUESTED,
    REDEMPTION_CANCELLED,
    REDEMPTION_CONFIRMED,
    REDEMPTION_HELD,
    REVIEW_OPEN,
    Cursor,
    NewKey,
    NewMember,
    Page,
    PendingInvite,
    StaleErasure,
    StaleMember,
    StaleReview,
)
from chalicelib.store import keys
from chalicelib.store.counters import MAX_SOURCES, OTHER_SOURCE, ClickCounterItem, ClickTotalItem
from chalicelib.store.data_rights import ErasureItem
from chalicelib.store.db import Entity
from chalicelib.store.dynamo_ports import (
    ERASED_CODE,
    IN_EXPORT_SUMMARY,
    MAX_COUPONS_PER_MEMBER,
    adjustment_insufficient,
    booked_cursor,
    code_added,
    code_change_plan,
    code_rows,
    code_taken,
    codes_from_pointer_keys,
    concurrent_update,
    concurrent_upload,
    coupons_from_pointer_keys,
    endpoint_changed,
    erasure_progress,
    erasure_request,
    erasure_started,
    event_key_hash,
    identifier_kinds,
    identity_owner_of,
    identity_pointer_parts,
    insufficient_points,
    integration_changed,
    integration_log_entry,
    invite_keys,
    invite_ref_item,
    item_data,
    key_collision,
    key_items,
    member_profile,
    new_adjustment,
    new_endpoint,
    new_integration,
    new_offer,
    new_redemption,
    next_rules_version,
    not_erased,
    offer_changed,
    partner_changed,
    partner_locator,
    partner_not_found,
    pending_invite_item,
    profile_not_scrubbed,
    program_changed,
    referral_position,
    referral_start,
    replayed,
    return_entry,
    review_entry_changes,
    review_entry_keys,
    review_item_changes,
    review_reversal,
    rules_changed,
    set_fields,
    signal_ref_writes,
    signal_writes,
    spend_entry,
    too_many_endpoints,
    without_ref,
)
from chalicelib.store.events import AttributionRecordItem, EventItem
from chalicelib.store.integrations import (
    ACK_TTL_HOURS,
    LOG_TTL_DAYS,
    CrmAckItem,
    IntegrationItem,
    IntegrationLogItem,
    ack_key,
)
from chalicelib.store.ledger import (
    AdjustmentItem,
    BalanceItem,
    LedgerEntryItem,
    OutboxItem,
    RedemptionItem,
    RulesVersionItem,
)
from chalicelib.store.members import (
    CodeItem,
    IdentityItem,
    IdentityRef,
    LinkItem,
    MemberItem,
    PendingInviteItem,
    code_item,
    identity_refs,
    key_from_str,
    key_str,
    link_item,
    pointer_items,
    referrals_index,
)
from chalicelib.store.offers import OfferItem, PoolCodeItem, PoolHeadItem
from chalicelib.store.partner_hooks import (
    MAX_ENDPOINTS,
    PENDING,
    WebhookDeliveryItem,
    WebhookEndpointCountItem,
    WebhookEndpointItem,
    due_key,
)
from chalicelib.store.review import DenyItem, ReviewItem, VelocityItem
from chalicelib.store.settlement import SettlementRowItem
from chalicelib.store.signals import SignalItem, SignalRef
from chalicelib.store.tenancy import ApiKeyItem, ApiKeyRefItem, PartnerItem, PartnerLocatorItem, ProgramItem
from chalicelib.store.tiers import TierChangeItem, TierStateItem

E = TypeVar("E", bound=Entity)
Key = tuple[str, str]


class FakeTable:
    """The single table in memory: items stored serialised (as DynamoDB holds them), read back as fresh
    entities, keys sorted as DynamoDB sorts them (by code point, which is UTF-8 byte order).

    ``query`` pages like DynamoDB: ``limit`` items, then the last item's key as the cursor (in
    attribute-value form, with the index keys for ``index="gsi1"``), ``None`` when nothing is left.
    The fake stores share one table, so a test seeds any entity with :func:`seed`."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.items: dict[Key, dict[str, Any]] = {}

    def put(self, item: Entity) -> None:
        with self.lock:
            self.items[(item.PK, item.SK)] = item.serialize()

    def delete(self, key: Key) -> None:
        with self.lock:
            self.items.pop(key, None)

    def get(self, model: type[E], key: Key) -> E | None:
        with self.lock:
            raw = self.items.get(key)
        item = Entity.from_raw_data(raw) if raw is not None else None
        return item if isinstance(item, model) else None

    def batch_get(self, wanted: Iterable[Key]) -> dict[Key, Entity]:
        with self.lock:
            found = [self.items[k] for k in dict.fromkeys(wanted) if k in self.items]
        return {(i.PK, i.SK): i for i in map(Entity.from_raw_data, found)}

    def between(self, model: type[E], partition: str, low: str, high: str) -> list[E]:
        """Every item of ``partition`` with ``low <= SK < high``, in key order (all pages of a Query)."""
        with self.lock:
            rows = sorted((r for r in self.items.values() if r["PK"]["S"] == partition
                           and low <= r["SK"]["S"] < high), key=lambda r: r["SK"]["S"])
        return [i for i in map(Entity.from_raw_data, rows) if isinstance(i, model)]

    def query(self, model: type[E], partition: str, prefix: str = "", *, index: str | None = None,
              forward: bool = True, limit: int = 100, cursor: Cursor | None = None) -> Page[E]:
        hash_name, range_name = {"gsi1": ("GSI1PK", "GSI1SK"), "gsi2": ("GSI2PK", "GSI2SK")}.get(index or "",
                                                                                             ("PK", "SK"))

        def position(raw: dict[str, Any]) -> tuple[str, str, str]:
            return (raw.get(range_name, {}).get("S", ""), raw["PK"]["S"], raw["SK"]["S"])

        with self.lock:
            rows = sorted((r for r in self.items.values()
                           if r.get(hash_name, {}).get("S") == partition
                           and r.get(range_name, {}).get("S", "").startswith(prefix)),
                          key=position, reverse=not forward)
        if cursor is not None:
            after = position(cursor)
            rows = [r for r in rows if (position(r) > after if forward else position(r) < after)]
        page, rest = rows[:limit], rows[limit:]
        names = ("PK", "SK", hash_name, range_name) if index else ("PK", "SK")
        next_cursor = {n: page[-1][n] for n in names if n in page[-1]} if page and rest else None
        items = [i for i in map(Entity.from_raw_data, page) if isinstance(i, model)]
        return Page(items, next_cursor)


def seed(ports: Any, *items: Entity) -> None:
    """Test setup: store entities as they are in the fakes' table (``ports`` built by ``ports.fakes``)."""
    table: FakeTable = ports.members.table
    for item in items:
        table.put(item)


class FakeRateLimiter:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.hits: dict[tuple[str, str], int] = {}

    def take(self, scope: str, window: str, limit: int, expires_at_epoch: int) -> bool:
        with self._lock:
            used = self.hits.get((scope, window), 0)
            if used >= limit:
                return False
            self.hits[(scope, window)] = used + 1
            return True


class FakeSecrets:
    """Deterministic keys from a fixed master secret (the real derivation, a different master)."""

    def __init__(self, master: bytes = b"fake-master-key") -> None:
        self.master = master

    def derive_key(self, purpose: str) -> bytes:
        import hashlib
        import hmac

        return hmac.new(self.master, f"sarafan-key|{purpose}".encode(), hashlib.sha256).digest()

    def webhook_secret(self, program_id: str, partner_id: str, source: str, version: int) -> str:
        import base64
        import hashlib
        import hmac

        message = f"sarafan-webhook-secret|{program_id}|{partner_id}|{source}|{version}".encode()
        return "whsec_" + base64.b64encode(hmac.new(self.master, message, hashlib.sha256).digest()).decode("ascii")


class FakeProgramStore:
    def __init__(self, table: FakeTable) -> None:
        self.table = table

    def get(self, program_id: str, *, fresh: bool = False) -> ProgramItem:
        item = self.table.get(ProgramItem, keys.program(program_id))
        if item is None:
            raise NotFound("Program not found", details={"program_id": program_id})
        return item

    def partner(self, program_id: str, partner_id: str, *, fresh: bool = False) -> PartnerItem:
        item = self.table.get(PartnerItem, keys.partner(program_id, partner_id))
        if item is None:
            raise NotFound("Partner not found", details={"program_id": program_id, "partner_id": partner_id})
        return item

    def allowed_origins(self) -> frozenset[str]:
        with self.table.lock:
            rows = list(self.table.items.values())
        programs = [i for i in map(Entity.from_raw_data, rows) if isinstance(i, ProgramItem)]
        return frozenset(o for p in programs for o in p.allowed_origins or [])

    def existing_partners(self, program_id: str, partner_ids: set[str]) -> set[str]:
        return {p for p in partner_ids if self.table.get(PartnerItem, keys.partner(program_id, p)) is not None}

    def webhook_config(self, partner_id: str) -> tuple[PartnerItem, ProgramItem]:
        locator = self.table.get(PartnerLocatorItem, keys.partner_locator(partner_id))
        if locator is None:
            raise NotFound("Unknown partner", details={"partner_id": partner_id})
        return self.partner(locator.program_id, partner_id), self.get(locator.program_id)

    def api_key(self, key_hash: str) -> ApiKeyItem | None:
        return self.table.get(ApiKeyItem, keys.api_key(key_hash))

    def partner_program(self, partner_id: str) -> str:
        locator = self.table.get(PartnerLocatorItem, keys.partner_locator(partner_id))
        if locator is None:
            raise NotFound("Unknown partner", details={"partner_id": partner_id})
        return str(locator.program_id)

    def programs(self, limit: int, cursor: Cursor | None) -> Page[ProgramItem]:
        return self.table.query(ProgramItem, "PROGRAMS", "CREATED#", index="gsi1", forward=False, limit=limit,
                                cursor=cursor)

    def _put_key(self, key: NewKey) -> ApiKeyRefItem:
        """Under the table lock: both items of the key, refused as a whole on a clash."""
        item, ref = key_items(key)
        if (item.PK, item.SK) in self.table.items or (ref.PK, ref.SK) in self.table.items:
            raise key_collision()
        self.table.put(item)
        self.table.put(ref)
        return ref

    def create_program(self, fields: Mapping[str, Any], key: NewKey) -> tuple[ProgramItem, ApiKeyRefItem]:
        program = ProgramItem.new(**fields)
        with self.table.lock:
            if (program.PK, program.SK) in self.table.items:
                raise Conflict("The program exists", code="transaction_conflict")
            item, ref = key_items(key)
            if (item.PK, item.SK) in self.table.items or (ref.PK, ref.SK) in self.table.items:
                raise key_collision()
            self.table.put(program)
            self.table.put(item)
            self.table.put(ref)
        return program, ref

    def update_program(self, program: ProgramItem, changes: Mapping[str, Any]) -> ProgramItem:
        with self.table.lock:
            stored = self.table.get(ProgramItem, (program.PK, program.SK))
            if stored is None or (program.revision is not None and stored.revision != program.revision):
                raise program_changed()
            for name, value in changes.items():
                setattr(stored, name, value)
            stored.revision = int(program.revision or 0) + 1
            self.table.put(stored)
        return self.get(program.program_id, fresh=True)

    def create_partner(self, fields: Mapping[str, Any], key: NewKey) -> tuple[PartnerItem, ApiKeyRefItem]:
        partner = PartnerItem.new(**fields)
        locator = partner_locator(partner)
        with self.table.lock:
            if (partner.PK, partner.SK) in self.table.items or (locator.PK, locator.SK) in self.table.items:
                raise Conflict("The partner exists", code="transaction_conflict")
            item, ref = key_items(key)
            if (item.PK, item.SK) in self.table.items or (ref.PK, ref.SK) in self.table.items:
                raise key_collision()
            for stored in (partner, locator, item, ref):
                self.table.put(stored)
        return partner, ref

    def partners(self, program_id: str, limit: int, cursor: Cursor | None) -> Page[PartnerItem]:
        pk, prefix = keys.partners_prefix(program_id)
        return self.table.query(PartnerItem, pk, prefix, limit=limit, cursor=cursor)

    def update_partner(self, partner: PartnerItem, changes: Mapping[str, Any]) -> PartnerItem:
        with self.table.lock:
            stored = self.table.get(PartnerItem, (partner.PK, partner.SK))
            if stored is None:
                raise partner_not_found(partner)
            for name, value in changes.items():
                setattr(stored, name, value)
                setattr(partner, name, value)
            self.table.put(stored)
        return partner

    def set_webhook_secrets(self, partner: PartnerItem, webhook_secrets: dict[str, Any]) -> None:
        with self.table.lock:
            stored = self.table.get(PartnerItem, (partner.PK, partner.SK))
            if stored is None or stored.webhook_secrets != partner.webhook_secrets:
                raise partner_changed()
            stored.webhook_secrets = webhook_secrets
            self.table.put(stored)
        partner.webhook_secrets = webhook_secrets

    def add_key(self, key: NewKey) -> ApiKeyRefItem:
        with self.table.lock:
            if self.table.get(PartnerItem, keys.partner(key.program_id, key.partner_id or "")) is None:
                raise NotFound("Partner not found")
            return self._put_key(key)

    def key_refs(self, program_id: str, limit: int, cursor: Cursor | None) -> Page[ApiKeyRefItem]:
        pk, prefix = keys.api_key_refs_prefix(program_id)
        return self.table.query(ApiKeyRefItem, pk, prefix, limit=limit, cursor=cursor)

    def key_ref(self, program_id: str, key_id: str) -> ApiKeyRefItem:
        item = self.table.get(ApiKeyRefItem, keys.api_key_ref(program_id, key_id))
        if item is None:
            raise NotFound("API key not found", details={"key_id": key_id})
        return item

    def revoke_key(self, ref: ApiKeyRefItem) -> None:
        with self.table.lock:
            item = self.table.get(ApiKeyItem, keys.api_key(ref.key_hash))
            stored = self.table.get(ApiKeyRefItem, (ref.PK, ref.SK))
            if item is None or stored is None:
                raise NotFound("API key not found", details={"key_id": ref.key_id})
            item.revoked = stored.revoked = True
            self.table.put(item)
            self.table.put(stored)
        ref.revoked = True

    def offer_exists(self, program_id: str, partner_id: str, offer_id: str) -> bool:
        from chalicelib.store.offers import OfferItem

        return self.table.get(OfferItem, keys.offer(program_id, partner_id, offer_id)) is not None

    def existing_offers(self, program_id: str, offers: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        return {(p, o) for p, o in offers if self.offer_exists(program_id, p, o)}

    def rules_key(self, program_id: str, version: int) -> tuple[str, str]:
        return keys.rules_version(program_id, version)

    def rules_version(self, program_id: str, version: int,
                      items: Mapping[tuple[str, str], Any] | None = None) -> RulesVersionItem | None:
        item = (items or {}).get(keys.rules_version(program_id, version))
        if isinstance(item, RulesVersionItem):
            return item
        return self.table.get(RulesVersionItem, keys.rules_version(program_id, version))

    def put_rules(self, program: ProgramItem, document: dict[str, Any], at: datetime) -> RulesVersionItem:
        item = next_rules_version(program, document, at)
        with self.table.lock:
            stored = self.table.get(ProgramItem, (program.PK, program.SK))
            if (stored is None or (item.PK, item.SK) in self.table.items
                    or int(stored.rules_version or 0) != int(program.rules_version or 0)):
                raise rules_changed()
            stored.rules_version = item.version
            self.table.put(stored)
            self.table.put(item)
        return item


class FakeMemberStore:
    def __init__(self, table: FakeTable | None = None) -> None:
        self.table = table or FakeTable()
        self._lock = self.table.lock
        self.coupons: dict[tuple[str, str], str] = {}

    def put(self, member: MemberItem) -> None:
        """Test setup: store a member as it is."""
        self.table.put(member)

    def get(self, program_id: str, member_id: str, *, consistent: bool = True) -> MemberItem | None:
        return self.table.get(MemberItem, keys.member(program_id, member_id))

    def codes_of(self, member: MemberItem) -> list[str]:
        return codes_from_pointer_keys(member)

    def code_pointer(self, program_id: str, code: str, *, consistent: bool = False) -> CodeItem | None:
        return self.table.get(CodeItem, keys.referral_code(program_id, code))

    def identity_refs(self, program_id: str, *, email: str | None = None,
                      phone: str | None = None) -> list[IdentityRef]:
        return identity_refs(program_id, email=email, phone=phone)

    def identity_owner(self, program_id: str, refs: Sequence[IdentityRef]) -> str | None:
        return identity_owner_of(program_id, refs, self.table.batch_get(r.pointer_key(program_id) for r in refs))

    def _referrer_not_erased(self, program_id: str, member_id: str) -> bool:
        referrer = self.table.get(MemberItem, keys.member(program_id, member_id))
        return referrer is None or referrer.erased_at is None

    def create_member(self, member: NewMember, refs: Sequence[IdentityRef]) -> MemberItem | None:
        profile = member_profile(member, refs)
        referrals_index(profile)
        items = [profile, *pointer_items(profile, refs), code_item(profile), link_item(profile)]
        referrer = member.ref_member_id
        with self._lock:
            if any((i.PK, i.SK) in self.table.items for i in items):
                return None
            if referrer is not None:
                if not self._referrer_not_erased(member.program_id, referrer):
                    raise MemberErased(referrer)
                items += [invite_ref_item(member.program_id, referrer, ref, None) for ref in refs]
            for item in items:
                self.table.put(item)
        return profile

    def put_pending_invite(self, program_id: str, ref: IdentityRef, invite: PendingInvite, *,
                           first_touch_since: datetime | None = None, keep_ref: bool = False) -> bool:
        item = pending_invite_item(program_id, ref, invite)
        with self._lock:
            stored = self.table.get(PendingInviteItem, (item.PK, item.SK))
            if (first_touch_since is not None and stored is not None and stored.referrer_id != invite.referrer_id
                    and not stored.invited_at < first_touch_since):
                return False
            if not self._referrer_not_erased(program_id, invite.referrer_id):
                return False
            self.table.put(invite_ref_item(program_id, invite.referrer_id, ref,
                                           None if keep_ref else invite.expires_at_epoch))
            self.table.put(item)
        return True

    def find_by_identity(self, program_id: str, *, email: str | None = None, phone: str | None = None,
                         customer_id: tuple[str, str] | None = None) -> str | None:
        refs = identity_refs(program_id, email=email, phone=phone, customer_id=customer_id)
        pointer = self.table.get(IdentityItem, refs[0].pointer_key(program_id)) if refs else None
        return pointer.member_id if pointer is not None else None

    def referrals(self, program_id: str, member_id: str, limit: int, cursor: Cursor | None) -> Page[MemberItem]:
        return self.table.query(MemberItem, keys.gsi1_referrals_partition(program_id, member_id), index="gsi1",
                                forward=False, limit=limit, cursor=cursor)

    def referral_position(self, member: MemberItem) -> str | None:
        return referral_position(member)

    def referrals_after(self, program_id: str, member_id: str, limit: int,
                        position: str | None) -> Page[MemberItem]:
        return self.referrals(program_id, member_id, limit, referral_start(program_id, member_id, position))

    def clicks_and_balance(self, program_id: str, member_id: str,
                           codes: Sequence[str]) -> tuple[list[ClickTotalItem], BalanceItem | None]:
        found = self.table.batch_get(keys.click_total(program_id, c) for c in codes)
        return ([i for i in found.values() if isinstance(i, ClickTotalItem)],
                self.table.get(BalanceItem, keys.balance(program_id, member_id)))

    def erasure_record(self, program_id: str, member_id: str) -> ErasureItem | None:
        return self.table.get(ErasureItem, keys.erasure_record(program_id, member_id))

    def short_link(self, code: str) -> LinkItem | None:
        return self.table.get(LinkItem, keys.short_link(code))

    def count_click(self, program_id: str, code: str, day: str, utm_source: str) -> None:
        with self._lock:
            pk, sk = keys.click_counter(program_id, code, day, utm_source)
            counter = self.table.get(ClickCounterItem, (pk, sk)) or ClickCounterItem(
                PK=pk, SK=sk, program_id=program_id, code=code, day=day, utm_source=utm_source)
            counter.clicks = int(counter.clicks or 0) + 1
            self.table.put(counter)
            tpk, tsk = keys.click_total(program_id, code)
            total = self.table.get(ClickTotalItem, (tpk, tsk)) or ClickTotalItem(PK=tpk, SK=tsk, program_id=program_id,
                                                                                  code=code)
            by_source = total.by_source.as_dict() if total.by_source else {}
            if utm_source not in by_source and len(by_source) >= MAX_SOURCES:
                utm_source = OTHER_SOURCE  # the map is full: counted as another source
            by_source[utm_source] = int(by_source.get(utm_source, 0)) + 1
            total.clicks, total.by_source = int(total.clicks or 0) + 1, by_source
            self.table.put(total)

    def change_code(self, member: MemberItem, code: str) -> None:
        pid = member.program_id
        not_erased(member)
        pointer_keys, own_earlier = code_change_plan(member, code)
        code_key, link_key = keys.referral_code(pid, code), keys.short_link(code)
        with self._lock:
            stored = self._stored(member)
            pointer, link = self.table.get(CodeItem, code_key), self.table.get(LinkItem, link_key)
            if own_earlier:
                if (pointer is None or pointer.member_id != member.member_id
                        or link is None or link.member_id != member.member_id):
                    raise code_taken(code)
            elif self.table.items.get(code_key) is not None or self.table.items.get(link_key) is not None:
                raise code_taken(code)
            else:
                self.table.put(CodeItem(PK=code_key[0], SK=code_key[1], program_id=pid, member_id=member.member_id,
                                        code=code, first_name=(member.name or "").split(" ")[0] or None,
                                        vanity=True, ancestors=list(member.ancestors or [])))
                self.table.put(LinkItem(PK=link_key[0], SK=link_key[1], program_id=pid, member_id=member.member_id,
                                        code=code))
            stored.code, stored.pointer_keys = code, pointer_keys
            stored.revision = int(stored.revision or 0) + 1
            self.table.put(stored)

    def coupon_owner(self, program_id: str, code: str) -> str | None:
        with self._lock:
            return self.coupons.get((program_id, code))

    def coupons_of(self, member: MemberItem) -> list[str]:
        return coupons_from_pointer_keys(member)

    def _stored(self, member: MemberItem, *, unerased: bool = True) -> MemberItem:
        stored = self.get(member.program_id, member.member_id)
        if (stored is None or int(stored.revision or 0) != int(member.revision or 0)
                or (unerased and stored.erased_at is not None)):
            raise StaleMember()
        return stored

    def add_coupon(self, member: MemberItem, code: str) -> bool:
        pid = member.program_id
        not_erased(member)
        with self._lock:
            owner = self.coupons.get((pid, code))
            if owner == member.member_id:
                return False
            if owner is not None:
                raise Conflict("This coupon code belongs to another member", code="coupon_taken",
                               details={"code": code})
            if len(coupons_from_pointer_keys(member)) >= MAX_COUPONS_PER_MEMBER:
                raise Conflict(f"A member has at most {MAX_COUPONS_PER_MEMBER} coupon codes",
                               code="too_many_coupons", details={"limit": MAX_COUPONS_PER_MEMBER})
            stored = self._stored(member)
            stored.pointer_keys = [*(stored.pointer_keys or []), key_str(keys.coupon(pid, code))]
            stored.revision = int(stored.revision or 0) + 1
            self.table.put(stored)
            self.coupons[(pid, code)] = member.member_id
            return True

    def remove_coupon(self, member: MemberItem, code: str) -> None:
        pid = member.program_id
        key = key_str(keys.coupon(pid, code))
        with self._lock:
            if key not in (member.pointer_keys or []):
                raise NotFound("The member has no such coupon code", code="coupon_not_found", details={"code": code})
            stored = self._stored(member, unerased=False)
            if self.coupons.get((pid, code)) != member.member_id:
                raise StaleMember()
            stored.pointer_keys = [k for k in stored.pointer_keys or [] if k != key]
            stored.revision = int(stored.revision or 0) + 1
            self.table.put(stored)
            del self.coupons[(pid, code)]


class FakeLedgerStore:
    def __init__(self, table: FakeTable | None = None) -> None:
        self.table = table or FakeTable()

    def balance(self, program_id: str, member_id: str) -> BalanceItem | None:
        return self.table.get(BalanceItem, keys.balance(program_id, member_id))

    def account(self, program_id: str, member_id: str) -> tuple[MemberItem | None, BalanceItem | None]:
        return (self.table.get(MemberItem, keys.member(program_id, member_id)),
                self.table.get(BalanceItem, keys.balance(program_id, member_id)))

    def entries(self, program_id: str, member_id: str, limit: int, cursor: Cursor | None) -> Page[LedgerEntryItem]:
        pk, prefix = keys.ledger_prefix(program_id, member_id)
        return self.table.query(LedgerEntryItem, pk, prefix, forward=False, limit=limit, cursor=cursor)

    def balances(self, program_id: str, member_ids: Sequence[str]) -> dict[str, BalanceItem]:
        out = {}
        for member_id in member_ids:
            item = self.table.get(BalanceItem, keys.balance(program_id, member_id))
            if item is not None:
                out[member_id] = item
        return out


    def booked(self, program_id: str, day: str, limit: int, cursor: Cursor | None) -> Page[LedgerEntryItem | EventItem]:
        page = self.table.query(Entity, keys.gsi2_ledger_day(program_id, day, "", "")[0], index="gsi2", limit=limit,
                                cursor=cursor)
        return Page([i for i in page.items if isinstance(i, LedgerEntryItem | EventItem)], page.next_cursor)

    def entries_of(self, booked: LedgerEntryItem | EventItem) -> list[LedgerEntryItem]:
        if isinstance(booked, LedgerEntryItem):
            return [booked]
        wanted = booked.indexed_entry_keys()
        found = self.table.batch_get(wanted)
        return [e for e in (found.get(k) for k in wanted) if isinstance(e, LedgerEntryItem)]

    def cursor_after(self, booked: LedgerEntryItem | EventItem) -> Cursor:
        return booked_cursor(booked)

    def settlement_rows(self, program_id: str, start: date, end: date, limit: int) -> Iterator[SettlementRowItem]:
        pk, low = keys.settlement_row(program_id, start.isoformat(), "")
        _, high = keys.settlement_row(program_id, (end + timedelta(days=1)).isoformat(), "")
        return iter(self.table.between(SettlementRowItem, pk, low, high)[:limit])


    def redemption(self, program_id: str, redemption_id: str) -> RedemptionItem | None:
        return self.table.get(RedemptionItem, keys.redemption(program_id, redemption_id))

    def redeem(self, program_id: str, member_id: str, redemption_id: str, *, partner_id: str | None, points: int,
               value_minor: int, currency: str, order_id: str | None, order_amount: int | None, request_hash: str,
               reason: str, at: datetime) -> tuple[RedemptionItem, bool]:
        redemption = new_redemption(program_id, member_id, redemption_id, partner_id=partner_id, points=points,
                                    value_minor=value_minor, currency=currency, order_id=order_id,
                                    order_amount=order_amount, request_hash=request_hash, at=at)
        entry = spend_entry(redemption, reason)
        redemption.entry_sk = entry.SK
        with self.table.lock:
            existing = self.redemption(program_id, redemption_id)
            if existing is not None or (entry.PK, entry.SK) in self.table.items:
                return replayed(existing), False
            if self.table.get(MemberItem, keys.member(program_id, member_id)) is None:
                raise NotFound("Member not found", details={"member_id": member_id})
            balance = self.table.get(BalanceItem, keys.balance(program_id, member_id))
            if balance is None or balance.available is None or int(balance.available) < points:
                raw = {"available": {"N": str(int(balance.available))}} if balance and balance.available is not None \
                    else None
                raise insufficient_points(raw)
            balance.available = int(balance.available) - points
            balance.lifetime_spent = int(balance.lifetime_spent or 0) + points
            self.table.put(balance)
            self.table.put(redemption)
            self.table.put(entry)
        return redemption, True

    def adjust(self, program_id: str, member_id: str, adjustment_id: str, *, points: int, reason: str,
               partner_id: str | None, created_by: str, request_hash: str,
               at: datetime) -> tuple[AdjustmentItem, bool]:
        record, entry = new_adjustment(program_id, member_id, adjustment_id, points=points, reason=reason,
                                       partner_id=partner_id, created_by=created_by, request_hash=request_hash, at=at)
        with self.table.lock:
            if (record.PK, record.SK) in self.table.items or (entry.PK, entry.SK) in self.table.items:
                existing = self.table.get(AdjustmentItem, (record.PK, record.SK))
                if existing is None:
                    raise Conflict("The adjustment is being processed; retry", code="concurrent_update")
                return existing, False
            if self.table.get(MemberItem, keys.member(program_id, member_id)) is None:
                raise NotFound("Member not found", details={"member_id": member_id})
            balance = self.table.get(BalanceItem, keys.balance(program_id, member_id))
            if points > 0:
                balance = balance or BalanceItem(*keys.balance(program_id, member_id))
                repay = min(int(balance.owed or 0), points)
                balance.owed = int(balance.owed or 0) - repay
                balance.available = int(balance.available or 0) + points - repay
                balance.program_id, balance.member_id = program_id, member_id
            else:
                if balance is None or balance.available is None or int(balance.available) < -points:
                    raw = ({"available": {"N": str(int(balance.available))}}
                           if balance is not None and balance.available is not None else None)
                    raise adjustment_insufficient(raw)
                balance.available = int(balance.available) + points
            balance.lifetime_earned = int(balance.lifetime_earned or 0) + points
            self.table.put(balance)
            self.table.put(record)
            self.table.put(entry)
        return record, True

    def confirm_redemption(self, redemption: RedemptionItem, at: datetime) -> None:
        with self.table.lock:
            stored = self.redemption(redemption.program_id, redemption.redemption_id)
            if stored is None or stored.status != REDEMPTION_HELD:
                raise concurrent_update()
            stored.status, stored.updated_at = REDEMPTION_CONFIRMED, at
            self.table.put(stored)
        redemption.status, redemption.updated_at = REDEMPTION_CONFIRMED, at

    def cancel_redemption(self, redemption: RedemptionItem, balance: BalanceItem | None, at: datetime,
                          reason: str, partner_id: str | None) -> None:
        pid, mid, points = redemption.program_id, redemption.member_id, int(redemption.points)
        entry = return_entry(redemption, at, reason, partner_id)
        repay = min(int(balance.owed or 0) if balance else 0, points)
        with self.table.lock:
            stored = self.redemption(pid, redemption.redemption_id)
            current = self.table.get(BalanceItem, keys.balance(pid, mid)) or BalanceItem(
                *keys.balance(pid, mid), program_id=pid, member_id=mid)
            if (stored is None or stored.status != redemption.status or (entry.PK, entry.SK) in self.table.items
                    or int(current.owed or 0) < repay):
                raise concurrent_update()
            current.owed = int(current.owed or 0) - repay
            current.available = int(current.available or 0) + points - repay
            current.lifetime_spent = int(current.lifetime_spent or 0) - points
            current.program_id, current.member_id = pid, mid
            stored.status, stored.updated_at = REDEMPTION_CANCELLED, at
            self.table.put(current)
            self.table.put(stored)
            self.table.put(entry)
        redemption.status, redemption.updated_at = REDEMPTION_CANCELLED, at


class FakeTierStore:
    def __init__(self, table: FakeTable) -> None:
        self.table = table

    def state(self, program_id: str, member_id: str) -> TierStateItem | None:
        return self.table.get(TierStateItem, keys.member_tier(program_id, member_id))

    def history(self, program_id: str, member_id: str, limit: int) -> list[TierChangeItem]:
        pk, prefix = keys.tier_changes_prefix(program_id, member_id)
        return self.table.query(TierChangeItem, pk, prefix, forward=False, limit=limit).items


class FakeEventStore:
    def __init__(self, table: FakeTable | None = None) -> None:
        self.table = table or FakeTable()

    def put(self, record: EventItem) -> None:
        self.table.put(record)

    def get(self, program_id: str, business_key: str) -> EventItem | None:
        return self.table.get(EventItem, keys.event(program_id, event_key_hash(business_key)))

    def attributions(self, program_id: str, member_id: str, limit: int,
                     cursor: Cursor | None) -> Page[AttributionRecordItem]:
        pk, prefix = keys.attribution_records_prefix(program_id, member_id)
        return self.table.query(AttributionRecordItem, pk, prefix, forward=False, limit=limit, cursor=cursor)

    def code_attributions(self, program_id: str, code: str, limit: int,
                          cursor: Cursor | None) -> Page[AttributionRecordItem]:
        return self.table.query(AttributionRecordItem, keys.gsi1_attribution_code_partition(program_id, code),
                                index="gsi1", forward=False, limit=limit, cursor=cursor)


class FakeSignalStore:
    def __init__(self, table: FakeTable) -> None:
        self.table = table

    def pointers(self, program_id: str, refs: Sequence[SignalRef]) -> dict[str, SignalItem]:
        kinds = {ref.pointer_key(program_id): ref.kind for ref in refs}
        return {kinds[k]: i for k, i in self.table.batch_get(kinds).items() if isinstance(i, SignalItem)}

    def see(self, program_id: str, refs: Sequence[SignalRef], read: Mapping[str, SignalItem], member_id: str,
            at: datetime) -> bool:
        writes = signal_writes(program_id, refs, read, member_id, at)
        with self.table.lock:
            profile = self.table.get(MemberItem, keys.member(program_id, member_id))
            if writes and profile is not None and profile.erased_at is not None:
                raise MemberErased(member_id)
            for item, before in writes:
                stored = self.table.get(SignalItem, (item.PK, item.SK))
                if (stored is not None) if before is None else (
                        stored is None or int(stored.revision or 0) != int(before.revision or 0)):
                    return False
            for item, _ in writes:
                self.table.put(item)
            for ref_item in signal_ref_writes(program_id, refs, read, member_id, at):
                self.table.put(ref_item)
        return True

    def take_velocity_slot(self, program_id: str, scope: str, window: str, limit: int, expires_at_epoch: int) -> bool:
        pk, sk = keys.velocity(program_id, scope, window)
        with self.table.lock:
            counter = self.table.get(VelocityItem, (pk, sk)) or VelocityItem(PK=pk, SK=sk)
            if counter.hits is not None and int(counter.hits) >= limit:
                return False
            counter.hits, counter.expires_at_epoch = int(counter.hits or 0) + 1, expires_at_epoch
            self.table.put(counter)
        return True


class FakeOutbox:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.messages: dict[str, OutboxItem] = {}

    def put(self, message: OutboxItem) -> None:
        with self._lock:
            self.messages[message.message_id] = message

    def pending(self, day: str, limit: int) -> Sequence[OutboxItem]:
        bucket = keys.gsi1_outbox_pending(day, "", "")[0]
        with self._lock:
            due = [m for m in self.messages.values() if bucket == m.GSI1PK and m.status == "pending"]
        return sorted(due, key=lambda m: m.GSI1SK or "")[:limit]

    def mark_sent(self, message: OutboxItem, at: datetime) -> bool:
        with self._lock:
            stored = self.messages.get(message.message_id)
            if stored is None or stored.status != "pending":
                return False
            stored.status = "sent"
            stored.GSI1PK = stored.GSI1SK = None
        message.status = "sent"
        message.GSI1PK = message.GSI1SK = None
        return True


class FakeOfferStore:
    def __init__(self, table: FakeTable) -> None:
        self.table = table

    def offer(self, program_id: str, partner_id: str, offer_id: str) -> OfferItem | None:
        return self.table.get(OfferItem, keys.offer(program_id, partner_id, offer_id))

    def heads(self, program_id: str, offer_id: str) -> dict[int, PoolHeadItem | None]:
        return {s: self.table.get(PoolHeadItem, keys.pool_head(program_id, offer_id, s)) for s in range(SHARDS)}

    def create_offer(self, fields: Mapping[str, Any]) -> OfferItem:
        item = new_offer(fields)
        with self.table.lock:
            if (item.PK, item.SK) in self.table.items:
                raise Conflict("Offer id collision; retry", code="conflict")
            if self.table.get(PartnerItem, keys.partner(item.program_id, item.partner_id)) is None:
                raise NotFound("Partner not found", details={"partner_id": item.partner_id})
            self.table.put(item)
        return item

    def offers(self, program_id: str, partner_id: str, limit: int, cursor: Cursor | None) -> Page[OfferItem]:
        pk, prefix = keys.offers_prefix(program_id, partner_id)
        # PynamoDB's ``limit`` counts the items that pass the filter: it reads on until it has ``limit`` of them.
        found: list[OfferItem] = []
        while True:
            read = self.table.query(OfferItem, pk, prefix, limit=1, cursor=cursor)
            found += [o for o in read.items if not o.archived]
            cursor = read.next_cursor
            if cursor is None or len(found) == limit:
                return Page(found, cursor)

    def update_offer(self, offer: OfferItem, changes: Mapping[str, Any], at: datetime, *,
                     new_alert_epoch: bool = False) -> None:
        revision = int(offer.revision or 0)
        with self.table.lock:
            stored = self.table.get(OfferItem, (offer.PK, offer.SK))
            if stored is None or stored.archived or int(stored.revision or 0) != revision:
                raise offer_changed()
            for name, value in changes.items():
                setattr(stored, name, value)
            if new_alert_epoch:
                stored.alert_epoch = int(stored.alert_epoch or 0) + 1
            stored.updated_at, stored.revision = at, revision + 1
            self.table.put(stored)
        for name, value in changes.items():
            setattr(offer, name, value)
        offer.alert_epoch, offer.updated_at, offer.revision = stored.alert_epoch, at, revision + 1

    def archive_offer(self, offer: OfferItem, at: datetime) -> None:
        with self.table.lock:
            stored = self.table.get(OfferItem, (offer.PK, offer.SK)) or offer
            stored.archived, stored.enabled, stored.updated_at = True, False, at
            stored.revision = int(stored.revision or 0) + 1
            self.table.put(stored)

    def codes_present(self, program_id: str, offer_id: str,
                      codes: Sequence[str]) -> tuple[dict[int, PoolHeadItem | None], list[str]]:
        present = [c for c in dict.fromkeys(codes)
                   if self.table.get(PoolCodeItem, keys.pool_code(program_id, offer_id, code_hash(c))) is not None]
        return self.heads(program_id, offer_id), present

    def append_codes(self, program_id: str, offer_id: str, codes: Sequence[str], sizes: Mapping[int, int],
                     at: datetime) -> dict[int, int]:
        rows, after = code_rows(program_id, offer_id, codes, sizes, at)
        with self.table.lock:
            for shard in {int(slot.shard) for slot, _, _ in rows}:
                head = self.table.get(PoolHeadItem, keys.pool_head(program_id, offer_id, shard))
                if (int(head.size or 0) if head is not None else 0) != sizes.get(shard, 0):
                    raise concurrent_upload()
            for slot, code_item, code in rows:
                if (slot.PK, slot.SK) in self.table.items:
                    raise concurrent_upload()
                if (code_item.PK, code_item.SK) in self.table.items:
                    raise code_added(code)
            if len({(c.PK, c.SK) for _, c, _ in rows}) != len(rows):
                raise code_added(next(code for _, _, code in rows))
            for slot, code_item, _ in rows:
                self.table.put(slot)
                self.table.put(code_item)
            for shard in {int(slot.shard) for slot, _, _ in rows}:
                pk, sk = keys.pool_head(program_id, offer_id, shard)
                head = self.table.get(PoolHeadItem, (pk, sk)) or PoolHeadItem(PK=pk, SK=sk, next=0)
                head.program_id, head.offer_id, head.shard, head.size = program_id, offer_id, shard, after[shard]
                self.table.put(head)
        return after

    def bump_alert_epoch(self, offer: OfferItem) -> None:
        with self.table.lock:
            stored = self.table.get(OfferItem, (offer.PK, offer.SK))
            if stored is not None:
                stored.alert_epoch = int(stored.alert_epoch or 0) + 1
                self.table.put(stored)


class FakeIntegrationStore:
    def __init__(self, table: FakeTable) -> None:
        self.table = table

    def get(self, program_id: str, partner_id: str, platform: str, *, fresh: bool = False) -> IntegrationItem | None:
        return self.table.get(IntegrationItem, keys.integration(program_id, partner_id, platform))

    def save(self, fields: Mapping[str, Any], expected_revision: int | None) -> IntegrationItem:
        item = new_integration(fields)
        with self.table.lock:
            stored = self.table.get(IntegrationItem, (item.PK, item.SK))
            if (stored is not None) if expected_revision is None else (
                    stored is None or int(stored.revision or 0) != expected_revision):
                raise integration_changed()
            self.table.put(item)
        return item

    def delete(self, item: IntegrationItem) -> None:
        with self.table.lock:
            if (item.PK, item.SK) not in self.table.items:
                raise integration_changed()
            self.table.delete((item.PK, item.SK))

    def log(self, program_id: str, partner_id: str, platform: str, limit: int,
            cursor: Cursor | None) -> Page[IntegrationLogItem]:
        return self.table.query(IntegrationLogItem, keys.integration_log_partition(program_id, partner_id, platform),
                                forward=False, limit=limit, cursor=cursor)

    def add_log(self, program_id: str, partner_id: str, platform: str, entry_id: str, *, code: str, message: str,
                object_id: str | None, at: datetime) -> None:
        item = integration_log_entry(program_id, partner_id, platform, entry_id, code=code, message=message,
                                     object_id=object_id, at=at)
        item.expires_at_epoch = int((at + timedelta(days=LOG_TTL_DAYS)).timestamp())
        self.table.put(item)

    def acknowledge(self, program_id: str, partner_id: str, platform: str, event_id: str, at: datetime) -> bool:
        key = ack_key(program_id, partner_id, platform, event_id)
        with self.table.lock:
            stored = self.table.get(CrmAckItem, key)
            if stored is not None and int(stored.expires_at_epoch) >= int(at.timestamp()):
                return False
            self.table.put(CrmAckItem(*key, expires_at_epoch=int((at + timedelta(hours=ACK_TTL_HOURS)).timestamp())))
        return True

    def forget_ack(self, program_id: str, partner_id: str, platform: str, event_id: str) -> None:
        self.table.delete(ack_key(program_id, partner_id, platform, event_id))


class FakeFetchQueue:
    """Messages kept in order (``messages``); ``enabled`` as if ``SARAFAN_CRM_FETCH_QUEUE_URL`` were set.
    ``refuse`` makes :meth:`send` fail, as an unavailable queue does."""

    def __init__(self, enabled: bool = False) -> None:
        self._lock = threading.Lock()
        self.configured = enabled
        self.refuse = False
        self.messages: list[dict[str, Any]] = []

    def enabled(self) -> bool:
        return self.configured

    def send(self, message: Mapping[str, Any]) -> None:
        if not self.configured or self.refuse:
            raise RuntimeError("the CRM fetch queue is unavailable")
        with self._lock:
            self.messages.append(dict(message))

class FakeSealer:
    """Sealed values without KMS: the plaintext under a keystream and a tag bound to the context (a value
    sealed for one context opens for no other; a changed byte is refused), like ``services.envelope``."""

    def __init__(self, master: bytes = b"fake-sealing-key") -> None:
        self.master = master

    def _key(self, context: Mapping[str, str], nonce: bytes) -> bytes:
        import hashlib
        import hmac

        aad = "|".join(f"{k}={context[k]}" for k in sorted(context)).encode()
        return hmac.new(self.master, aad + nonce, hashlib.sha256).digest()

    def seal(self, plaintext: str, context: Mapping[str, str]) -> dict[str, str]:
        import base64
        import hashlib
        import hmac
        import os

        nonce = os.urandom(16)
        key = self._key(context, nonce)
        data = plaintext.encode("utf-8")
        stream = b"".join(hashlib.sha256(key + i.to_bytes(4, "big")).digest() for i in range(len(data) // 32 + 1))
        ciphertext = bytes(a ^ b for a, b in zip(data, stream, strict=False))
        tag = hmac.new(key, ciphertext, hashlib.sha256).digest()
        b64 = base64.b64encode
        return {"alg": "fake", "nonce": b64(nonce).decode(), "ciphertext": b64(ciphertext).decode(),
                "tag": b64(tag).decode()}

    def open(self, sealed: Mapping[str, str], context: Mapping[str, str]) -> bytes:
        import base64
        import hashlib
        import hmac

        if sealed.get("alg") != "fake":
            raise ValueError("unknown sealing algorithm")
        nonce, ciphertext, tag = (base64.b64decode(sealed[k]) for k in ("nonce", "ciphertext", "tag"))
        key = self._key(context, nonce)
        if not hmac.compare_digest(hmac.new(key, ciphertext, hashlib.sha256).digest(), tag):
            raise ValueError("sealed value was tampered with, or belongs to another context")
        stream = b"".join(hashlib.sha256(key + i.to_bytes(4, "big")).digest()
                          for i in range(len(ciphertext) // 32 + 1))
        return bytes(a ^ b for a, b in zip(ciphertext, stream, strict=False))


class FakeWebhookStore:
    def __init__(self, table: FakeTable) -> None:
        self.table = table

    def endpoint(self, program_id: str, partner_id: str, endpoint_id: str) -> WebhookEndpointItem | None:
        return self.table.get(WebhookEndpointItem, keys.webhook_endpoint(program_id, partner_id, endpoint_id))

    def endpoints(self, program_id: str, partner_id: str) -> list[WebhookEndpointItem]:
        pk, prefix = keys.webhook_endpoints_prefix(program_id, partner_id)
        return self.table.query(WebhookEndpointItem, pk, prefix, limit=MAX_ENDPOINTS + 1).items

    def _count(self, program_id: str, partner_id: str) -> WebhookEndpointCountItem:
        key = keys.webhook_endpoint_count(program_id, partner_id)
        return self.table.get(WebhookEndpointCountItem, key) or WebhookEndpointCountItem(PK=key[0], SK=key[1],
                                                                                         endpoints=0)

    def create_endpoint(self, fields: Mapping[str, Any]) -> WebhookEndpointItem:
        item = new_endpoint(fields)
        with self.table.lock:
            if self.table.get(PartnerItem, keys.partner(item.program_id, item.partner_id)) is None:
                raise NotFound("Partner not found", details={"partner_id": item.partner_id})
            if (item.PK, item.SK) in self.table.items:
                raise Conflict("Endpoint id collision; retry", code="conflict")
            count = self._count(item.program_id, item.partner_id)
            if int(count.endpoints or 0) >= MAX_ENDPOINTS:
                raise too_many_endpoints()
            count.endpoints = int(count.endpoints or 0) + 1
            self.table.put(count)
            self.table.put(item)
        return item

    def update_endpoint(self, endpoint: WebhookEndpointItem, changes: Mapping[str, Any], at: datetime) -> None:
        with self.table.lock:
            stored = self.table.get(WebhookEndpointItem, (endpoint.PK, endpoint.SK))
            revision = int(endpoint.revision or 0)
            if stored is None or int(stored.revision or 0) != revision:
                raise endpoint_changed()
            changes = {**changes, "updated_at": at, "revision": revision + 1}
            set_fields(stored, changes)
            self.table.put(stored)
            set_fields(endpoint, changes)

    def delete_endpoint(self, endpoint: WebhookEndpointItem) -> None:
        with self.table.lock:
            stored = self.table.get(WebhookEndpointItem, (endpoint.PK, endpoint.SK))
            if stored is None or int(stored.revision or 0) != int(endpoint.revision or 0):
                raise endpoint_changed()
            count = self._count(endpoint.program_id, endpoint.partner_id)
            if int(count.endpoints or 0) <= 0:
                raise Conflict("The request conflicts with the current state", code="conflict")
            count.endpoints = int(count.endpoints) - 1
            self.table.put(count)
            self.table.delete((endpoint.PK, endpoint.SK))

    def deliveries(self, program_id: str, endpoint_id: str, limit: int,
                   cursor: Cursor | None) -> Page[WebhookDeliveryItem]:
        return self.table.query(WebhookDeliveryItem, keys.webhook_delivery_partition(program_id, endpoint_id),
                                "DELIVERY#", forward=False, limit=limit, cursor=cursor)

    def delivery(self, program_id: str, endpoint_id: str, delivery_id: str) -> WebhookDeliveryItem | None:
        return self.table.get(WebhookDeliveryItem, keys.webhook_delivery(program_id, endpoint_id, delivery_id))

    def retry_delivery(self, delivery: WebhookDeliveryItem, at: datetime) -> bool:
        with self.table.lock:
            stored = self.table.get(WebhookDeliveryItem, (delivery.PK, delivery.SK))
            if stored is None or stored.status != delivery.status:
                return False
            gsi1pk, gsi1sk = due_key(delivery, at)
            changes = {"status": PENDING, "next_attempt_at": at, "max_attempts": int(delivery.attempts or 0) + 1,
                       "GSI1PK": gsi1pk, "GSI1SK": gsi1sk}
            set_fields(stored, changes)
            self.table.put(stored)
            set_fields(delivery, changes)
        return True


class FakeWrite:
    """One atomic write to the :class:`FakeTable`, like a DynamoDB transaction: under the table lock every
    condition is checked first (the first that fails raises its error, nothing is written), then every change."""

    def __init__(self, table: FakeTable) -> None:
        self.table = table
        self.checks: list[tuple[Callable[[], bool], Exception]] = []
        self.changes: list[Callable[[], None]] = []

    def require(self, holds: Callable[[], bool], error: Exception) -> None:
        self.checks.append((holds, error))

    def put(self, item: Entity) -> None:
        self.changes.append(lambda: self.table.put(item))

    def delete(self, key: Key) -> None:
        self.changes.append(lambda: self.table.delete(key))

    def update(self, model: type[Entity], key: Key, changes: Mapping[str, Any]) -> None:
        """Set ``changes`` on the stored item (``None`` removes), creating it when missing (as UpdateItem does)."""

        def apply() -> None:
            item = self.table.get(model, key) or model(PK=key[0], SK=key[1])
            set_fields(item, changes)
            self.table.put(item)

        self.changes.append(apply)

    def commit(self) -> None:
        with self.table.lock:
            for holds, error in self.checks:
                if not holds():
                    raise error
            for change in self.changes:
                change()


#: A fake erasable kind: ``find(table, target, cursor, limit)`` and ``scrub(write, item)``.
FakeKind = tuple[Callable[[FakeTable, Any, Cursor | None, int], Page[Entity]], Callable[[FakeWrite, Entity], None]]


def _find_own_attributions(table: FakeTable, target: Any, cursor: Cursor | None, limit: int) -> Page[Entity]:
    return table.query(Entity, target.partition, "ATTR#", limit=limit, cursor=cursor)


def _scrub_own_attribution(write: FakeWrite, item: Entity) -> None:
    from chalicelib.store.erasure_kinds import business_key_hash

    if isinstance(item, AttributionRecordItem) and item.business_key and not item.business_key.startswith("sha256:"):
        write.update(AttributionRecordItem, (item.PK, item.SK),
                     {"business_key": "sha256:" + business_key_hash(item.business_key)})


def _find_code_attributions(table: FakeTable, target: Any, cursor: Cursor | None, limit: int) -> Page[Entity]:
    index, last = int((cursor or {}).get("code_index", 0)), (cursor or {}).get("last")
    while index < len(target.codes):
        partition = keys.gsi1_attribution_code_partition(target.program_id, target.codes[index])
        page = table.query(Entity, partition, index="gsi1", limit=limit, cursor=last)
        if page.next_cursor:
            return Page(page.items, {"code_index": index, "last": page.next_cursor})
        index, last = index + 1, None
        if page.items:
            return Page(page.items, {"code_index": index, "last": None} if index < len(target.codes) else None)
    return Page([], None)


def _scrub_code_attribution(write: FakeWrite, item: Entity) -> None:
    if isinstance(item, AttributionRecordItem):
        write.update(AttributionRecordItem, (item.PK, item.SK), {"code": None, "GSI1PK": None, "GSI1SK": None})


def _find_webhook_deliveries(table: FakeTable, target: Any, cursor: Cursor | None, limit: int) -> Page[Entity]:
    partition = keys.gsi2_member_webhook_deliveries_partition(target.program_id, target.member_id)
    return table.query(Entity, partition, index="gsi2", limit=limit, cursor=cursor)


def _delete_item(write: FakeWrite, item: Entity) -> None:
    write.delete((item.PK, item.SK))


#: The built-in kinds of ``store.erasure_kinds`` and the partner webhook deliveries of ``notify.erasure`` (an
#: exported kind), in memory; the other notification and analytics kinds registered in production are covered by
#: the functional tests under moto.
FAKE_KINDS: dict[str, FakeKind] = {
    "attribution_records": (_find_own_attributions, _scrub_own_attribution),
    "code_attributions": (_find_code_attributions, _scrub_code_attribution),
    "partner_webhook_deliveries": (_find_webhook_deliveries, _delete_item),
}


class FakeDataRightsStore:
    def __init__(self, table: FakeTable, kinds: Mapping[str, FakeKind] | None = None,
                 exported: Sequence[str] = ("partner_webhook_deliveries",)) -> None:
        self.table = table
        self.fake_kinds = dict(FAKE_KINDS if kinds is None else kinds)
        self.exported_names = list(exported)

    def kinds(self) -> list[str]:
        return list(self.fake_kinds)

    def exported_kinds(self) -> list[str]:
        return [k for k in self.exported_names if k in self.fake_kinds]

    def requests(self, program_id: str, limit: int, cursor: Cursor | None) -> Page[ErasureItem]:
        page = self.table.query(ErasureItem, keys.gsi1_erasure_requests_partition(program_id), index="gsi1",
                                limit=limit, cursor=cursor)
        return Page([r for r in page.items if r.status == ERASURE_REQUESTED], page.next_cursor)

    def request(self, program_id: str, member_id: str, at: datetime) -> ErasureItem | None:
        record = erasure_request(program_id, member_id, at)
        with self.table.lock:
            if (record.PK, record.SK) in self.table.items:
                return None
            self.table.put(record)
        return record

    def start(self, member: MemberItem, requested: ErasureItem | None, actor: str, at: datetime,
              actor_key: str | None = None) -> ErasureItem:
        record = erasure_started(member, requested, actor, at, actor_key)
        with self.table.lock:
            stored = self.table.get(ErasureItem, (record.PK, record.SK))
            if (stored is not None if requested is None
                    else stored is None or int(stored.revision or 0) != int(requested.revision or 0)):
                raise StaleErasure()
            profile = self.table.get(MemberItem, (member.PK, member.SK))
            revision = int(member.revision or 0)
            if profile is None or int(profile.revision or 0) != revision:
                raise StaleErasure()
            self.table.put(record)
            profile.erased_at, profile.revision = profile.erased_at or at, revision + 1
            self.table.put(profile)
        member.erased_at, member.revision = member.erased_at or at, revision + 1
        return record

    def _advance(self, write: FakeWrite, record: ErasureItem, changes: Mapping[str, Any]) -> ErasureItem:
        key, revision = (record.PK, record.SK), int(record.revision or 0)

        def unchanged() -> bool:
            stored = self.table.get(ErasureItem, key)
            return stored is not None and int(stored.revision or 0) == revision

        write.require(unchanged, StaleErasure())
        write.update(ErasureItem, key, changes)
        write.commit()
        set_fields(record, changes)
        return record

    def erase_pointers(self, record: ErasureItem, limit: int, then: str, at: datetime) -> tuple[ErasureItem, int]:
        from chalicelib.store.data_rights import ErasedIdentityItem

        pid, mid = record.program_id, record.member_id
        remaining = list((record.cursor or {}).get("pointers") or [])
        batch, rest = remaining[:limit], remaining[limit:]
        identities = [p for p in (identity_pointer_parts(pid, text) for text in batch) if p is not None]
        found = self.table.batch_get([*(key_from_str(k) for k in batch),
                                      *(keys.pending_invite(pid, *p) for p in identities), keys.member(pid, mid)])
        profile = found.get(keys.member(pid, mid))
        code = (profile.acquisition or {}).get("ref") if isinstance(profile, MemberItem) and identities else None
        pointer = self.table.get(CodeItem, keys.referral_code(pid, code)) if code else None
        ref_owner = pointer.member_id if pointer is not None else None
        write = FakeWrite(self.table)
        removed = 0
        for text in batch:
            key = key_from_str(text)
            item = found.get(key)
            if item is not None and getattr(item, "member_id", None) == mid:
                write.require(self._owned_by(type(item), key, mid), StaleErasure())
                write.delete(key)
                removed += 1
            parts = identity_pointer_parts(pid, text)
            if parts is not None:
                kind, value_hash = parts
                tpk, tsk = keys.erased_identity(pid, kind, value_hash)
                write.put(ErasedIdentityItem(PK=tpk, SK=tsk, program_id=pid, kind=kind, erased_at=at))
                invite_key = keys.pending_invite(pid, kind, value_hash)
                invite = found.get(invite_key)
                read_referrer = invite.referrer_id if isinstance(invite, PendingInviteItem) else None
                write.require(self._invite_as_read(invite_key, read_referrer), StaleErasure())
                write.delete(invite_key)
                for referrer in sorted({r for r in (read_referrer, ref_owner) if r is not None}):
                    write.delete(keys.invite_ref(pid, referrer, kind, value_hash))
        changes = erasure_progress(record, "pointers" if rest else then, {"pointers": rest} if rest else None,
                                   {"pointers": removed}, at)
        return self._advance(write, record, changes), len(batch)

    def _invite_as_read(self, key: Key, referrer_id: str | None) -> Callable[[], bool]:
        return lambda: getattr(self.table.get(PendingInviteItem, key), "referrer_id", None) == referrer_id

    def _owned_by(self, model: type[Entity], key: Key, member_id: str) -> Callable[[], bool]:
        return lambda: getattr(self.table.get(model, key), "member_id", None) == member_id

    def erase_profile(self, record: ErasureItem, then: str, at: datetime) -> ErasureItem:
        from chalicelib.store.birthdays import pointer_key

        key = keys.member(record.program_id, record.member_id)
        member = self.table.get(MemberItem, key)
        write = FakeWrite(self.table)
        scrubbed = 0
        if member is not None and profile_not_scrubbed(member):
            revision = int(member.revision or 0)
            write.require(lambda: int(getattr(self.table.get(MemberItem, key), "revision", -1) or 0) == revision,
                          StaleErasure())
            write.update(MemberItem, key, {
                "name": None, "email": None, "phone": None, "birthday": None, "birthday_set_at": None,
                "customer_ids": {}, "push_endpoints": [], "pointer_keys": [], "code": ERASED_CODE,
                "erased_at": member.erased_at or at, "acquisition": without_ref(member.acquisition),
                "revision": revision + 1})
            birthday_key = pointer_key(record.program_id, record.member_id, member.birthday)
            if birthday_key is not None:
                write.delete(birthday_key)
            scrubbed = 1
        return self._advance(write, record, erasure_progress(record, then, None, {"profile": scrubbed}, at))

    def scrub(self, record: ErasureItem, kind: str, limit: int, then: str, at: datetime) -> tuple[ErasureItem, int]:
        from chalicelib.store.erasure_kinds import ErasureTarget

        write = FakeWrite(self.table)
        if kind not in self.fake_kinds:
            return self._advance(write, record, erasure_progress(record, then, None, {}, at)), 0
        find, scrub = self.fake_kinds[kind]
        target = ErasureTarget(record.program_id, record.member_id, tuple(record.codes or []),
                               tuple(record.identities or []))
        page = find(self.table, target, (record.cursor or {}).get("page"), limit)
        for item in page.items:
            scrub(write, item)
        step, cursor = (then, None) if page.next_cursor is None else (kind, {"page": page.next_cursor})
        return self._advance(write, record, erasure_progress(record, step, cursor, {kind: len(page.items)}, at)), len(
            page.items)

    def member_items(self, program_id: str, member_id: str, limit: int, cursor: Cursor | None) -> Page[Any]:
        page = self.table.query(Entity, keys.member_partition(program_id, member_id), limit=limit, cursor=cursor)
        return Page([i for i in page.items if i.SK not in IN_EXPORT_SUMMARY], page.next_cursor)

    def exported(self, kind: str, program_id: str, member_id: str, limit: int, cursor: Cursor | None) -> Page[Any]:
        from chalicelib.store.erasure_kinds import ErasureTarget

        find, _ = self.fake_kinds[kind]
        return find(self.table, ErasureTarget(program_id, member_id, (), ()), cursor, limit)

    def pending_invites(self, member: MemberItem) -> list[Any]:
        from chalicelib.store.members import PendingInviteItem

        return [i for i in self.table.batch_get(invite_keys(member)).values() if isinstance(i, PendingInviteItem)]

    def identifier_kinds(self, member: MemberItem) -> list[str]:
        return identifier_kinds(member)

    def item_data(self, item: Any) -> dict[str, Any]:
        return item_data(item)


class FakeReviewStore:
    """The review queue and its decision in memory; an approval issues the held vouchers from the pools in the
    table (the offer, its shard heads and free slots) as ``services.vouchers`` does, without its outbox message
    and low-pool alert (covered under moto: tests/functional/test_fraud_review.py)."""

    def __init__(self, table: FakeTable) -> None:
        self.table = table

    def open_items(self, program_id: str, partner_id: str | None, limit: int,
                   cursor: Cursor | None) -> Page[ReviewItem]:
        if partner_id is None:
            return self.table.query(ReviewItem, keys.gsi1_review_open(program_id, "", "")[0], index="gsi1",
                                    limit=limit, cursor=cursor)
        return self.table.query(ReviewItem, keys.gsi2_review_open_partner(program_id, partner_id, "", "")[0],
                                index="gsi2", limit=limit, cursor=cursor)

    def item(self, program_id: str, item_id: str) -> ReviewItem | None:
        return self.table.get(ReviewItem, keys.review_item(program_id, item_id))

    def held(self, item: ReviewItem) -> tuple[list[LedgerEntryItem], dict[str, BalanceItem | None]]:
        entries = [e for e in (self.table.get(LedgerEntryItem, k) for k in review_entry_keys(item))
                   if e is not None and e.status == "held"]
        members = sorted({e["member_id"] for e in item.entries or []})
        return entries, {m: self.table.get(BalanceItem, keys.balance(item.program_id, m)) for m in members}

    def _issue(self, write: FakeWrite, program_id: str, grant: Mapping[str, Any], taken: set[tuple[str, int]],
               at: datetime) -> dict[str, Any]:
        from chalicelib.domain.offers import SHARDS, pick_shard
        from chalicelib.domain.records import ReadAgain, stable_id
        from chalicelib.store.offers import PoolSlotItem, VoucherItem

        offer = self.table.get(OfferItem, keys.offer(program_id, grant["partner_id"], grant["offer_id"]))
        if offer is None or not offer.issuable:
            return {**grant, "status": "pool_empty"}
        member_id = grant["member_id"]
        voucher_id = stable_id("vch", grant["business_key"], grant.get("rule_id") or "", str(grant.get("level") or 0),
                               member_id, offer.offer_id)
        shard: int | None = None
        slot: PoolSlotItem | None = None
        if offer.code_source == "pool":
            slots: dict[int, PoolSlotItem] = {}
            for s in range(SHARDS):
                head = self.table.get(PoolHeadItem, keys.pool_head(program_id, offer.offer_id, s))
                if head is None or head.remaining <= 0:
                    continue
                found = self.table.get(PoolSlotItem, keys.pool_slot(program_id, offer.offer_id, s, int(head.next or 0)))
                if found is not None and found.voucher_id is None:
                    slots[s] = found
            mine = {s for (o, s) in taken if o == offer.offer_id}
            shard = pick_shard(sorted(slots), grant.get("salt") or voucher_id, mine)
            if shard is None:
                return {**grant, "status": "pool_empty"}
            slot = slots[shard]
            taken.add((offer.offer_id, shard))
            position, slot_key = int(slot.position), (slot.PK, slot.SK)
            head_key = keys.pool_head(program_id, offer.offer_id, shard)
            write.require(lambda: getattr(self.table.get(PoolSlotItem, slot_key), "voucher_id", 0) is None,
                          ReadAgain())
            write.require(lambda: int(getattr(self.table.get(PoolHeadItem, head_key), "next", -1)) == position,
                          ReadAgain())
            write.update(PoolSlotItem, slot_key, {"voucher_id": voucher_id, "member_id": member_id, "issued_at": at})
            write.update(PoolHeadItem, head_key, {"next": position + 1})
        pk, sk = keys.voucher(program_id, member_id, clock_iso(at), voucher_id)
        write.put(VoucherItem(
            PK=pk, SK=sk, program_id=program_id, member_id=member_id, voucher_id=voucher_id, offer_id=offer.offer_id,
            partner_id=offer.partner_id, code=slot.code if slot is not None else str(offer.static_code),
            code_source=offer.code_source, name=offer.name, kind=offer.kind, percent=offer.percent,
            amount_minor=offer.amount_minor, currency=offer.currency, item=offer.item, subscription=offer.subscription,
            status="issued", reason=grant["reason"], reason_code="offer_reward", business_key=grant["business_key"],
            event_partner_id=grant.get("event_partner_id"), rule_id=grant.get("rule_id"),
            rule_version=grant.get("rule_version"), level=grant.get("level"), shard=shard,
            position=None if slot is None else int(slot.position), issued_at=at,
            expires_at=at + timedelta(days=int(offer.valid_days)) if offer.valid_days else None))
        return {**grant, "status": "issued", "voucher_id": voucher_id}

    def decide(self, decision: Any) -> None:  # services.ports.ReviewDecision
        item, at, pid = decision.item, decision.at, decision.item.program_id
        write = FakeWrite(self.table)
        for held in decision.entries:
            entry = held.entry
            key, reversed_read = (entry.PK, entry.SK), int(entry.reversed_points or 0)
            write.require(self._still_held(key, reversed_read), StaleReview())
            if not decision.approve:
                reversal = review_reversal(decision, entry)
                write.require(self._absent((reversal.PK, reversal.SK)), StaleReview())
                write.put(reversal)
            write.update(LedgerEntryItem, key, review_entry_changes(decision, held))
        for member_id, (read, change) in decision.balances.items():
            self._change_balance(write, pid, member_id, read, change)
        for text in decision.fraud_signals:
            kind, _, value_hash = text.partition("#")
            signal_key = keys.signal(pid, kind, value_hash)
            write.require(self._present(signal_key), StaleReview())
            write.update(SignalItem, signal_key, {"fraud_at": at})
        for text in decision.deny:
            kind, _, value_hash = text.partition("#")
            dpk, dsk = keys.deny_list(kind, value_hash)
            write.put(DenyItem(PK=dpk, SK=dsk, kind=kind, added_at=at))
        vouchers = [dict(g) for g in decision.vouchers]
        if decision.approve and vouchers:
            taken: set[tuple[str, int]] = set()
            vouchers = [self._issue(write, pid, g, taken, at) for g in vouchers]
        item_key = (item.PK, item.SK)
        write.require(lambda: getattr(self.table.get(ReviewItem, item_key), "status", None) == REVIEW_OPEN,
                      StaleReview())
        write.update(ReviewItem, item_key, review_item_changes(decision, vouchers))
        write.commit()

    def _still_held(self, key: Key, reversed_read: int) -> Callable[[], bool]:
        def holds() -> bool:
            stored = self.table.get(LedgerEntryItem, key)
            return stored is not None and stored.status == "held" and int(stored.reversed_points or 0) == reversed_read

        return holds

    def _absent(self, key: Key) -> Callable[[], bool]:
        return lambda: key not in self.table.items

    def _present(self, key: Key) -> Callable[[], bool]:
        return lambda: key in self.table.items

    def _change_balance(self, write: FakeWrite, program_id: str, member_id: str, read: BalanceItem | None,
                        change: Any) -> None:
        key = keys.balance(program_id, member_id)
        repay = min(int(read.owed or 0) if read else 0, change.available) if change.available > 0 else 0
        write.require(lambda: int(getattr(self.table.get(BalanceItem, key), "owed", 0) or 0) >= repay, StaleReview())

        def apply() -> None:
            balance = self.table.get(BalanceItem, key) or BalanceItem(PK=key[0], SK=key[1])
            balance.program_id, balance.member_id = program_id, member_id
            balance.owed = int(balance.owed or 0) - repay
            balance.available = int(balance.available or 0) + change.available - repay
            balance.pending = int(balance.pending or 0) + change.pending
            balance.held = int(balance.held or 0) + change.held
            balance.lifetime_earned = int(balance.lifetime_earned or 0) + change.earned
            self.table.put(balance)

        write.changes.append(apply)
