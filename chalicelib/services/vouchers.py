"""Issuing vouchers from partner offers inside a transaction, and a member's vouchers.

The pipeline (the ledger stage) and jobs (birthday gifts, tier privileges) issue through one
function, :func:`issue_voucher_in`. Reading first: an offer's item and its 8 pool heads, then the
slot at each non-empty head's ``next`` (:func:`pool_keys` / :func:`slot_keys`, or
:func:`read_pool` for a job: two ``BatchGetItem``). What :func:`issue_voucher_in` adds to the
caller's transaction for a pool offer:

* the slot at ``next`` of one shard: ``SET voucher_id, member_id, issued_at`` with
  ``attribute_not_exists(voucher_id)``;
* that shard's head: ``SET next = :n + 1`` with ``next = :n`` (the counter the pool's
  ``remaining`` is computed from);
* the voucher item (``entity = "voucher"``, created with ``attribute_not_exists``);
* one ``voucher_issued`` outbox message for the member;
* when the pool is left below the offer's ``low_pool_threshold``: the ``pool_alert`` item of the
  current crossing (an upsert: its stream INSERT, once per crossing, sends the partner's e-mail).

A lost race (another transaction took the slot) fails the condition and raises ``RetryEvent``
(the pipeline reads again and decides again): a code is issued at most once, never by
check-then-write. A static-code offer writes only the voucher and the message.

A job (birthday gifts) calls it like this::

    pool = vouchers.read_pool(program_id, partner_id, offer_id)
    tx = Transaction()
    voucher = vouchers.issue_voucher_in(tx, pool, program=program, member_id=member_id,
                                        business_key=f"birthday|{member_id}|{year}", now=now,
                                        reason="Birthday gift", reason_code="birthday_gift",
                                        locale=profile.locale)
    if voucher is None: ...  # pool empty or offer disabled: record why, fall back
    tx.commit()  # on RetryEvent: read the pool again and retry
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from chalicelib.domain import clock
from chalicelib.domain.offers import SHARDS, is_low, pick_shard
from chalicelib.domain.rewards import OfferRef, RulesDoc, VoucherGrant
from chalicelib.services.auth import Principal
from chalicelib.services.outcomes import AlreadyProcessed, RetryEvent
from chalicelib.store import keys
from chalicelib.store.ledger import OutboxItem, day_of, stable_id
from chalicelib.store.members import batch_get
from chalicelib.store.offers import OfferItem, PoolAlertItem, PoolHeadItem, PoolSlotItem, VoucherItem, head_keys

if TYPE_CHECKING:
    from chalicelib.store.tenancy import ProgramItem
    from chalicelib.store.transact import Transaction

Key = tuple[str, str]
#: A static code is never exhausted.
STATIC_AVAILABLE = 1_000_000


@dataclass
class PoolView:
    """What was read of one offer's pool, and what this transaction has taken from it so far."""

    program_id: str
    ref: OfferRef
    offer: OfferItem | None
    heads: dict[int, PoolHeadItem | None]
    #: shard → the free slot at its head's ``next`` (only shards whose slot was read).
    slots: dict[int, PoolSlotItem] = field(default_factory=dict)
    #: Shards with codes whose slot was not read (a cold read: the caller must read again).
    unread: set[int] = field(default_factory=set)
    taken: set[int] = field(default_factory=set)
    alerted: bool = False

    @property
    def issuable(self) -> bool:
        return self.offer is not None and self.offer.issuable

    def available(self) -> int:
        if not self.issuable:
            return 0
        assert self.offer is not None
        if self.offer.code_source == "static":
            return STATIC_AVAILABLE
        return len([s for s in self.slots if s not in self.taken])

    def remaining(self) -> int:
        return sum(h.remaining for h in self.heads.values() if h is not None) - len(self.taken)


# --------------------------------------------------------------------------- reads


def pool_keys(program_id: str, ref: OfferRef) -> list[Key]:
    return [keys.offer(program_id, ref.partner_id, ref.offer_id), *head_keys(program_id, ref.offer_id)]


def slot_keys(program_id: str, ref: OfferRef, items: dict[Key, Any]) -> list[Key]:
    """The slot at ``next`` of every shard with codes left (one candidate code per shard)."""
    out = []
    for shard in range(SHARDS):
        head = items.get(keys.pool_head(program_id, ref.offer_id, shard))
        if isinstance(head, PoolHeadItem) and head.remaining > 0:
            out.append(keys.pool_slot(program_id, ref.offer_id, shard, int(head.next or 0)))
    return out


def pool_view(program_id: str, ref: OfferRef, items: dict[Key, Any]) -> PoolView:
    offer = items.get(keys.offer(program_id, ref.partner_id, ref.offer_id))
    heads: dict[int, PoolHeadItem | None] = {}
    slots: dict[int, PoolSlotItem] = {}
    unread: set[int] = set()
    for shard in range(SHARDS):
        head = items.get(keys.pool_head(program_id, ref.offer_id, shard))
        heads[shard] = head if isinstance(head, PoolHeadItem) else None
        if not isinstance(head, PoolHeadItem) or head.remaining <= 0:
            continue
        slot = items.get(keys.pool_slot(program_id, ref.offer_id, shard, int(head.next or 0)))
        if isinstance(slot, PoolSlotItem):
            if slot.voucher_id is None:
                slots[shard] = slot
        else:
            unread.add(shard)
    return PoolView(program_id, ref, offer if isinstance(offer, OfferItem) else None, heads, slots, unread)


def read_pool(program_id: str, partner_id: str, offer_id: str) -> PoolView:
    """For jobs: the offer, its heads, then the candidate slots (two ``BatchGetItem``)."""
    ref = OfferRef(partner_id=partner_id, offer_id=offer_id)
    items = batch_get(pool_keys(program_id, ref))
    items.update(batch_get(slot_keys(program_id, ref, items)))
    return pool_view(program_id, ref, items)


def offer_refs(rules: RulesDoc, event_type: str) -> list[OfferRef]:
    """Offers the rules may grant for this event type (each once)."""
    seen: dict[tuple[str, str], OfferRef] = {}
    for rule in rules.rules:
        if not rule.enabled or rule.trigger.event != event_type:
            continue
        amounts = [rule.amount, *(o.amount for o in rule.partners.values() if o.amount is not None)]
        for amount in amounts:
            if amount.offer is not None:
                seen.setdefault((amount.offer.partner_id, amount.offer.offer_id), amount.offer)
    return list(seen.values())


# --------------------------------------------------------------------------- writes


def issue_voucher_in(tx: Transaction, pool: PoolView, *, program: ProgramItem, member_id: str, business_key: str,
                     now: datetime, reason: str, reason_code: str, locale: str | None = None,
                     rule_id: str | None = None, rule_version: int | None = None, level: int | None = None,
                     event_partner_id: str | None = None, salt: str | None = None,
                     announce: bool = True) -> VoucherItem | None:
    """Add the issue of one voucher of ``pool``'s offer to ``member_id`` to ``tx``; ``None`` when the
    offer is disabled/archived or no code is left (the caller records ``pool_empty`` and falls back).

    ``business_key`` names why (the event, or e.g. ``birthday|<member>|<year>``): the voucher id is
    derived from it, the member and the rule, so a replay targets the same voucher. Raises
    ``RetryEvent`` when the pool was read in a way that does not show a candidate code (read again).
    ``announce=False`` leaves out the ``voucher_issued`` message (a caller whose own message names the voucher,
    e.g. the birthday job's ``birthday_gift``).
    """
    offer = pool.offer
    if offer is None or not pool.issuable:
        return None
    pid = program.program_id
    voucher_id = stable_id("vch", business_key, rule_id or "", str(level or 0), member_id, offer.offer_id)
    shard: int | None = None
    slot: PoolSlotItem | None = None
    if offer.code_source == "pool":
        shard = pick_shard(sorted(pool.slots), salt or voucher_id, pool.taken)
        if shard is None:
            if pool.unread - pool.taken:
                raise RetryEvent()  # codes exist but their slots were not read (a cold read)
            return None
        slot = pool.slots[shard]
        head = pool.heads[shard]
        assert head is not None
        position = int(head.next or 0)
        S, H = PoolSlotItem, PoolHeadItem
        tx.update(slot, [S.voucher_id.set(voucher_id), S.member_id.set(member_id), S.issued_at.set(now)],
                  S.voucher_id.does_not_exist(), on_fail=RetryEvent())
        tx.update(head, [H.next.set(position + 1)], H.next == position, on_fail=RetryEvent())
        pool.taken.add(shard)
    code = slot.code if slot is not None else str(offer.static_code)
    pk, sk = keys.voucher(pid, member_id, clock.iso(now), voucher_id)
    voucher = VoucherItem(
        PK=pk, SK=sk, program_id=pid, member_id=member_id, voucher_id=voucher_id, offer_id=offer.offer_id,
        partner_id=offer.partner_id, code=code, code_source=offer.code_source, name=offer.name, kind=offer.kind,
        percent=offer.percent, amount_minor=offer.amount_minor, currency=offer.currency, item=offer.item,
        subscription=offer.subscription, status="issued", reason=reason, reason_code=reason_code,
        business_key=business_key, event_partner_id=event_partner_id, rule_id=rule_id, rule_version=rule_version,
        level=level, shard=shard, position=None if slot is None else int(slot.position), issued_at=now,
        expires_at=now + timedelta(days=int(offer.valid_days)) if offer.valid_days else None,
    )
    tx.create(voucher, on_fail=AlreadyProcessed())
    if announce:
        _stage_message(tx, program, voucher, locale, now)
    if offer.code_source == "pool":
        _stage_alert(tx, pool, offer, business_key, now)
    return voucher


def _stage_alert(tx: Transaction, pool: PoolView, offer: OfferItem, business_key: str, now: datetime) -> None:
    threshold = None if offer.low_pool_threshold is None else int(offer.low_pool_threshold)
    remaining = max(pool.remaining(), 0)
    if pool.alerted or not is_low(threshold, remaining):
        return
    assert threshold is not None
    epoch = int(offer.alert_epoch or 0)
    pk, sk = keys.pool_alert(pool.program_id, offer.offer_id, epoch)
    A = PoolAlertItem
    # An upsert, not a create: a second issue below the threshold must not fail the event. Only the first
    # one creates the item (its stream INSERT alerts the partner); later ones change nothing but `seen`.
    tx.update(A(PK=pk, SK=sk), [
        A.entity.set(PoolAlertItem),  # type: ignore[arg-type]
        A.program_id.set(A.program_id | pool.program_id), A.partner_id.set(A.partner_id | offer.partner_id),
        A.offer_id.set(A.offer_id | offer.offer_id), A.epoch.set(A.epoch | epoch),
        A.threshold.set(A.threshold | threshold), A.remaining.set(A.remaining | remaining),
        A.created_at.set(A.created_at | now), A.business_key.set(A.business_key | business_key),
    ])
    pool.alerted = True


def _stage_message(tx: Transaction, program: ProgramItem, voucher: VoucherItem, locale: str | None,
                   now: datetime) -> None:
    from chalicelib.services.offers import value_of

    message_id = stable_id("msg", "voucher", voucher.voucher_id)
    pk, sk = keys.outbox_message(program.program_id, message_id)
    gpk, gsk = keys.gsi1_outbox_pending(day_of(now), clock.iso(now), message_id)
    params = {"voucher_id": voucher.voucher_id, "offer_id": voucher.offer_id, "partner_id": voucher.partner_id,
              "offer_name": voucher.name, "offer_kind": voucher.kind, "code": voucher.code,
              "expires_at": clock.iso(voucher.expires_at) if voucher.expires_at else None, **value_of(voucher)}
    tx.create(OutboxItem(
        PK=pk, SK=sk, GSI1PK=gpk, GSI1SK=gsk, program_id=program.program_id, message_id=message_id,
        member_id=voucher.member_id, template="voucher_issued", locale=locale or program.default_locale,
        params=params, business_key=voucher.business_key, status="pending", created_at=now,
    ), on_fail=AlreadyProcessed())


def stage_grants(tx: Transaction, program: ProgramItem, items: dict[Key, Any], grants: list[VoucherGrant],
                 pools: dict[str, PoolView], now: datetime, profile_locale: Any) -> list[dict[str, Any]]:
    """The ledger stage's part: issue every grant the engine made (it only grants what ``pools`` offer)."""
    out = []
    for grant in grants:
        pool = pools[grant.offer_id]
        voucher = issue_voucher_in(
            tx, pool, program=program, member_id=grant.member_id, business_key=grant.business_key, now=now,
            reason=grant.reason, reason_code="offer_reward", locale=profile_locale(grant.member_id),
            rule_id=grant.rule_id, rule_version=grant.rule_version, level=grant.level,
            event_partner_id=grant.event_partner_id, salt=grant.key)
        if voucher is None:  # the engine saw a code the writer cannot take: read again
            raise RetryEvent()
        out.append({"voucher_id": voucher.voucher_id, "member_id": voucher.member_id, "offer_id": voucher.offer_id,
                    "partner_id": voucher.partner_id, "rule_id": grant.rule_id, "level": grant.level})
    return out


def held_grant(grant: VoucherGrant) -> dict[str, Any]:
    """A grant of a held event, as the review item keeps it (JSON) until a reviewer decides."""
    return {"member_id": grant.member_id, "partner_id": grant.partner_id, "offer_id": grant.offer_id,
            "rule_id": grant.rule_id, "rule_version": grant.rule_version, "level": grant.level,
            "business_key": grant.business_key, "reason": grant.reason, "event_partner_id": grant.event_partner_id,
            "salt": grant.key}


def issue_held_grant(tx: Transaction, pool: PoolView, program: ProgramItem, grant: dict[str, Any],
                     now: datetime) -> VoucherItem | None:
    """Issue a grant kept by a review item (approval): the same voucher id the event would have issued."""
    return issue_voucher_in(
        tx, pool, program=program, member_id=grant["member_id"], business_key=grant["business_key"], now=now,
        reason=grant["reason"], reason_code="offer_reward", rule_id=grant["rule_id"],
        rule_version=grant.get("rule_version"), level=grant.get("level"),
        event_partner_id=grant.get("event_partner_id"), salt=grant.get("salt"))


def stage_held_grants(tx: Transaction, program_id: str, grants: Sequence[Mapping[str, Any]],
                      now: datetime) -> list[dict[str, Any]]:
    """A review approval's part (``store.dynamo_ports.DynamoReviewStore``): issue the grants a review item kept,
    from each pool as it is now (``issued`` with the voucher id, or ``pool_empty``). Raises ``RetryEvent`` when a
    pool was read in a way that shows no candidate code, or at commit when another issue took the code."""
    from chalicelib.store import tenancy_repo

    program = tenancy_repo.get_program(program_id)
    pools: dict[tuple[str, str], PoolView] = {}
    out = []
    for grant in grants:
        ref = (grant["partner_id"], grant["offer_id"])
        if ref not in pools:
            pools[ref] = read_pool(program_id, *ref)
        voucher = issue_held_grant(tx, pools[ref], program, dict(grant), now)
        out.append({**grant, "status": "issued", "voucher_id": voucher.voucher_id} if voucher is not None
                   else {**grant, "status": "pool_empty"})
    return out


# --------------------------------------------------------------------------- statement


def voucher_view(v: VoucherItem) -> dict[str, Any]:
    from chalicelib.services.offers import value_of

    return {
        "voucher_id": v.voucher_id, "member_id": v.member_id, "offer_id": v.offer_id, "partner_id": v.partner_id,
        "name": v.name, "kind": v.kind, "code": v.code, "status": v.status, "reason": v.reason,
        "reason_code": v.reason_code, "rule_id": v.rule_id, "event_partner_id": v.event_partner_id,
        "issued_at": clock.iso(v.issued_at), "expires_at": clock.iso(v.expires_at) if v.expires_at else None,
        **value_of(v),
    }


def member_vouchers(principal: Principal, program_id: str, member_id: str, limit: int,
                    cursor: dict[str, Any] | None) -> dict[str, Any]:
    """Newest first. A partner key sees the vouchers of its own offers and those its events earned;
    the operator sees all."""
    from chalicelib.services.redemption import _member_and_balance

    principal.require_program(program_id)
    _member_and_balance(program_id, member_id)  # 404 for an unknown member
    pk, prefix = keys.vouchers_prefix(program_id, member_id)
    result = VoucherItem.query(pk, VoucherItem.SK.startswith(prefix), scan_index_forward=False, limit=limit,
                               last_evaluated_key=cursor)
    items = [voucher_view(v) for v in result if isinstance(v, VoucherItem)
             and (principal.is_operator or principal.partner_id in (v.partner_id, v.event_partner_id))]
    return {"items": items, "next_cursor": result.last_evaluated_key}
