"""The points ledger in the single table: entries, balances, counters, rules versions,
redemptions, per-order state and the notification outbox.

Ledger model (see docs_ledger_section.md):

* ``LedgerEntryItem`` is append-only. ``points`` is signed (credit > 0, debit < 0) and never
  changes; corrections are new entries (``reversal``, ``redemption_return``). What does change
  is the entry's *status* (a reward goes ``pending`` → ``available``, or ``reversed`` once fully
  clawed back) and, on rewards, the ``reversed_points`` accumulator.
* ``BalanceItem`` per member: ``available``, ``pending``, ``owed``, ``lifetime_earned`` (net of
  clawbacks), ``lifetime_spent`` (net of cancelled redemptions). Invariants, kept by every
  transaction that writes entries:

      available + pending + held - owed == sum(entry.points)
      pending == sum(reward.points - reward.reversed_points for rewards still pending)
      available >= 0, pending >= 0, owed >= 0

  ``available`` never goes negative: a clawback bigger than the available balance records the
  shortfall as ``owed``, which is repaid first from points as they become available.

Entry ids are deterministic (a hash of what they record), and their sort keys use the
effective time of the fact (the event's ``occurred_at``), so a replayed write targets the same
item and its ``attribute_not_exists`` condition refuses it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pynamodb.attributes import JSONAttribute, NumberAttribute, UnicodeAttribute
from pynamodb.expressions.condition import Condition
from pynamodb.expressions.update import Action

from chalicelib.domain.clock import iso
from chalicelib.domain.records import member_counts as member_counts  # moved to the domain; old imports work
from chalicelib.domain.records import stable_id as stable_id
from chalicelib.store import keys
from chalicelib.store.db import CompressedJSONAttribute, Entity, IsoDateTimeAttribute
from chalicelib.store.transact import OnFail, Transaction

# Entry kinds and statuses.
KIND_REWARD = "reward"
KIND_REVERSAL = "reversal"
KIND_REDEMPTION = "redemption"
KIND_REDEMPTION_RETURN = "redemption_return"
KIND_ADJUSTMENT = "adjustment"  # manual, by the operator (± points, a required reason)
KIND_EXPIRY = "expiry"  # points that expired unused (negative)
STATUS_PENDING = "pending"
STATUS_AVAILABLE = "available"
STATUS_REVERSED = "reversed"
STATUS_SPENT = "spent"
#: A reward held for fraud review (docs/fraud.md): never released by the holding job; a reviewer
#: approves it (→ pending/available) or voids it (→ a reversal).
STATUS_HELD = "held"


def day_of(at: datetime) -> str:
    return iso(at)[:10]


class RulesVersionItem(Entity, discriminator="rules_version"):
    """One immutable version of a program's rules document (never rewritten)."""

    program_id = UnicodeAttribute()
    version = NumberAttribute()
    document = JSONAttribute()  # the validated document as stored, with "version" set
    created_at = IsoDateTimeAttribute()


class LedgerEntryItem(Entity, discriminator="ledger_entry"):
    program_id = UnicodeAttribute()
    member_id = UnicodeAttribute()
    entry_id = UnicodeAttribute()
    kind = UnicodeAttribute()  # reward | reversal | redemption | redemption_return
    status = UnicodeAttribute()  # pending | available | held | reversed | spent
    points = NumberAttribute()  # signed
    reason = UnicodeAttribute()
    reason_code = UnicodeAttribute()
    created_at = IsoDateTimeAttribute()  # when Sarafan wrote it
    effective_at = IsoDateTimeAttribute()  # when the fact happened (sort key time)
    available_at = IsoDateTimeAttribute(null=True)  # rewards: end of the holding period
    business_key = UnicodeAttribute(null=True)  # source event (order paid, refund, ...)
    rule_id = UnicodeAttribute(null=True)
    rule_version = NumberAttribute(null=True)
    level = NumberAttribute(null=True)
    funding_partner_id = UnicodeAttribute(null=True)
    partner_id = UnicodeAttribute(null=True)  # where the event happened / who redeemed
    #: Rewards only: points of this reward taken back by reversals so far.
    reversed_points = NumberAttribute(default=0)
    #: Reversals: the reward entry reversed and the bucket the points came from.
    reverses_entry_id = UnicodeAttribute(null=True)
    from_status = UnicodeAttribute(null=True)
    redemption_id = UnicodeAttribute(null=True)
    #: A manual adjustment's entry: its record (``ADJUSTMENT#…``; the member export finds it by this).
    adjustment_id = UnicodeAttribute(null=True)
    released_at = IsoDateTimeAttribute(null=True)
    #: Who wrote the entry when a person did (manual adjustments: ``operator`` or the key id).
    created_by = UnicodeAttribute(null=True)

    @property
    def net_points(self) -> int:
        return int(self.points) - int(self.reversed_points or 0)


def new_entry(program_id: str, member_id: str, entry_id: str, effective_at: datetime, *,
              indexed_by_event: bool = False, **fields: Any) -> LedgerEntryItem:
    """A new entry with its index keys. ``indexed_by_event``: a reward posted by the event pipeline, whose event
    record (written in the same transaction) carries the pending-release and ledger-day index keys for all of
    the event's rewards (``events.EventItem.index_entries``), so the entry itself carries neither: every index
    key on an entry is a second write of the whole entry (issue #10)."""
    pk, sk = keys.ledger_entry(program_id, member_id, iso(effective_at), entry_id)
    item = LedgerEntryItem(PK=pk, SK=sk, program_id=program_id, member_id=member_id, entry_id=entry_id,
                           effective_at=effective_at, **fields)
    if indexed_by_event and item.status in (STATUS_PENDING, STATUS_HELD):
        return item
    if indexed_by_event:
        if item.status == STATUS_AVAILABLE and int(item.points) > 0 and item.created_at is not None:
            item.GSI1PK, item.GSI1SK = credit_index(item, item.created_at)  # the expiry job's month bucket
        return item
    if item.status == STATUS_PENDING and item.available_at is not None:
        item.GSI1PK, item.GSI1SK = keys.gsi1_pending_release(day_of(item.available_at), iso(item.available_at),
                                                             entry_id)
    elif item.status == STATUS_AVAILABLE and int(item.points) > 0 and item.created_at is not None:
        item.GSI1PK, item.GSI1SK = credit_index(item, item.created_at)
    if item.created_at is not None:
        item.GSI2PK, item.GSI2SK = keys.gsi2_ledger_day(program_id, day_of(item.created_at), iso(item.created_at),
                                                        entry_id)
    return item


def credit_index(entry: LedgerEntryItem, available_since: datetime) -> tuple[str, str]:
    """GSI1 of an entry whose points became available at ``available_since`` (the expiry job's month buckets)."""
    return keys.gsi1_credit_month(entry.program_id, iso(available_since)[:7], iso(available_since), entry.member_id,
                                  entry.entry_id)


class BalanceItem(Entity, discriminator="balance"):
    program_id = UnicodeAttribute(null=True)
    member_id = UnicodeAttribute(null=True)
    available = NumberAttribute(default=0)
    pending = NumberAttribute(default=0)
    owed = NumberAttribute(default=0)
    #: Rewards held for fraud review (not spendable, not released by the holding job).
    held = NumberAttribute(default=0)
    lifetime_earned = NumberAttribute(default=0)
    lifetime_spent = NumberAttribute(default=0)
    #: The member's purchases and converted referrals counted here since issue #10 (the event's transaction
    #: writes the balance anyway; a profile write also rewrites its referrals-index copy). The profile keeps
    #: the counts from before and a new member's first purchase: the count is the sum (:func:`member_counts`).
    orders_count = NumberAttribute(null=True)
    converted_referrals = NumberAttribute(null=True)


class MonthCounterItem(Entity, discriminator="member_month"):
    """Points a member earned in one calendar month (UTC), for monthly caps."""

    points = NumberAttribute(default=0)


class RecurringCounterItem(Entity, discriminator="recurring_counter"):
    """Points one recurring rule has paid for one referred member."""

    points = NumberAttribute(default=0)


class ProgramCountersItem(Entity, discriminator="program_counters"):
    points = NumberAttribute(default=0)  # budget points used so far


class OrderLedgerItem(Entity, discriminator="order_ledger"):
    """Ledger state of one partner order: its postings, refunds so far, refunds parked before it."""

    program_id = UnicodeAttribute()
    partner_id = UnicodeAttribute()
    order_id = UnicodeAttribute()
    paid_business_key = UnicodeAttribute(null=True)  # None until order.paid was processed
    total = NumberAttribute(null=True)
    currency = UnicodeAttribute(null=True)
    #: [{"member_id", "sk", "points", "rule_id", "rule_version", "level", "funding_partner_id"}]: what a refund
    #: needs; compact JSON, compressed (written with every order, read only by its refunds).
    postings = CompressedJSONAttribute(attr_name="postings_z", default=list)
    #: Items written before the postings were compressed (read only).
    legacy_postings = JSONAttribute(attr_name="postings", null=True)
    refunded_minor = NumberAttribute(default=0)
    #: {posting key: points reversed so far}
    reversed = JSONAttribute(default=dict)
    #: Refunds/cancellations that arrived before the order: [{"business_key", "amount", "kind", ...}]
    parked = JSONAttribute(default=list)
    cancelled = NumberAttribute(default=0)
    revision = NumberAttribute(default=0)
    #: The member who paid (member tiers by spend take refunds back from them); None on older items.
    buyer_id = UnicodeAttribute(null=True)

    def stored_postings(self) -> list[dict[str, Any]]:
        return list(self.postings or self.legacy_postings or [])


class RedemptionItem(Entity, discriminator="redemption"):
    program_id = UnicodeAttribute()
    redemption_id = UnicodeAttribute()
    member_id = UnicodeAttribute()
    partner_id = UnicodeAttribute(null=True)
    points = NumberAttribute()
    value_minor = NumberAttribute()
    currency = UnicodeAttribute()
    order_id = UnicodeAttribute(null=True)
    order_amount = NumberAttribute(null=True)
    status = UnicodeAttribute()  # held | confirmed | cancelled
    request_hash = UnicodeAttribute()  # the idempotent request's parameters
    entry_sk = UnicodeAttribute()
    created_at = IsoDateTimeAttribute()
    updated_at = IsoDateTimeAttribute()


class AdjustmentItem(Entity, discriminator="adjustment"):
    """A manual adjustment's idempotency and audit record (who, when, why); its entry is in the ledger."""

    program_id = UnicodeAttribute()
    adjustment_id = UnicodeAttribute()
    member_id = UnicodeAttribute()
    points = NumberAttribute()
    reason = UnicodeAttribute()
    partner_id = UnicodeAttribute(null=True)
    created_by = UnicodeAttribute()
    request_hash = UnicodeAttribute()
    entry_id = UnicodeAttribute()
    entry_sk = UnicodeAttribute()
    created_at = IsoDateTimeAttribute()


class OutboxItem(Entity, discriminator="outbox"):
    """A notification to send, written in the same transaction as the ledger change it announces."""

    program_id = UnicodeAttribute()
    message_id = UnicodeAttribute()
    member_id = UnicodeAttribute()
    template = UnicodeAttribute()  # points_earned | points_reversed
    locale = UnicodeAttribute()
    #: The message's values (``params``): compact JSON compressed with ``store.db.ZDICT_1``, which holds the
    #: engine's reason phrases the values repeat (about 575 -> 270 bytes for a ``points_earned``). That keeps a
    #: message under 1 KB: every started KB is a write unit of each write (two in the creating transaction) and
    #: of each index copy (GSI1 pending, GSI2 erasure), docs/cost.md.
    params_z = CompressedJSONAttribute(attr_name="params_z", null=True)
    #: Messages written before the values were compressed (read only: ``params`` falls back to it).
    legacy_params = JSONAttribute(attr_name="params", null=True)
    #: Legacy: channels are decided at delivery from the current profile (chalicelib/notify), not here.
    channels = JSONAttribute(null=True)
    #: pending → sending (leased) → sent | failed; ``held`` waits for quiet hours / the daily cap.
    status = UnicodeAttribute(default="pending")
    created_at = IsoDateTimeAttribute()
    #: The event that caused it (messages of one member from one event are sent as one).
    business_key = UnicodeAttribute(null=True)
    # Delivery state, written by chalicelib/notify/delivery.py only.
    attempts = NumberAttribute(null=True)
    lease_until = UnicodeAttribute(null=True)  # ISO time; a lease past it may be taken over
    lease_token = UnicodeAttribute(null=True)
    not_before = UnicodeAttribute(null=True)  # held until (ISO)
    last_error = UnicodeAttribute(null=True)
    kind = UnicodeAttribute(null=True)  # the template actually rendered (see notify/kinds.py)
    deliveries = JSONAttribute(null=True)  # [{"channel", "status", "recipient" (masked), "provider_id", "error"}]
    finished_at = UnicodeAttribute(null=True)
    merged_into = UnicodeAttribute(null=True)  # sent as part of another message of the same event
    #: Set when the message is finished (sent or failed): DynamoDB's TTL removes it after
    #: :data:`OUTBOX_RETENTION_DAYS` (the notification log item keeps what was sent, see docs/cost.md).
    expires_at_epoch = NumberAttribute(null=True)

    def __init__(self, hash_key: Any = None, range_key: Any = None, _user_instantiated: bool = True,
                 **attributes: Any) -> None:
        """A new message carries its member's index key (GSI2 ``OUTBOXM#<program>#<member>``), whoever creates it:
        the erasure and the export find a member's messages with a Query (``notify.erasure``). Items read back
        (``_user_instantiated=False``) and key-only references are left as they are. ``params=`` is stored
        compressed (``params_z``)."""
        params = attributes.pop("params", None)
        super().__init__(hash_key, range_key, _user_instantiated=_user_instantiated, **attributes)
        if params is not None:
            self.params = params
        created_at = attributes.get("created_at")
        if (_user_instantiated and "GSI2PK" not in attributes and isinstance(created_at, datetime)
                and attributes.get("program_id") and attributes.get("member_id") and attributes.get("message_id")):
            self.GSI2PK, self.GSI2SK = keys.gsi2_member_outbox(attributes["program_id"], attributes["member_id"],
                                                               iso(created_at), attributes["message_id"])

    @property
    def params(self) -> dict[str, Any]:
        """The message's values (compressed, or as a message written before that stored them)."""
        if self.params_z is not None:
            return self.params_z  # type: ignore[no-any-return]
        return self.legacy_params or {}

    @params.setter
    def params(self, value: dict[str, Any]) -> None:
        self.params_z, self.legacy_params = value, None


#: How long a finished outbox message (its rendered parameters and delivery state) is kept.
OUTBOX_RETENTION_DAYS = 30


class ReleaseStateItem(Entity, discriminator="release_state"):
    """Watermark of the holding job: every bucket before ``done_through`` is drained."""

    done_through = UnicodeAttribute()  # YYYY-MM-DD


# --------------------------------------------------------------------------- balance changes


@dataclass
class BalanceDelta:
    """Net change to one member's balance in one transaction (DynamoDB allows one op per item)."""

    pending: int = 0
    available: int = 0  # signed: credits > 0, debits < 0 (owed handling is applied on staging)
    earned: int = 0
    spent: int = 0
    held: int = 0

    def __bool__(self) -> bool:
        return bool(self.pending or self.available or self.earned or self.spent or self.held)


def balance_actions(read: BalanceItem | None, delta: BalanceDelta) -> tuple[list[Action], Condition | None]:
    """Update actions and condition applying ``delta`` to a balance read as ``read``.

    * A net credit repays ``owed`` first (conditioned on the owed amount still being there).
    * A net debit takes what ``available`` holds (conditioned: ``available`` never goes below 0)
      and records the rest as ``owed`` (only clawbacks debit beyond the balance; redemptions use
      :func:`stage_spend` which refuses instead).
    """
    actions: list[Action] = []
    conditions: list[Condition] = []
    available = int(read.available or 0) if read else 0
    owed = int(read.owed or 0) if read else 0
    if delta.available > 0:
        repay = min(owed, delta.available)
        if repay:
            actions.append(BalanceItem.owed.add(-repay))
            conditions.append(BalanceItem.owed >= repay)
        if delta.available - repay:
            actions.append(BalanceItem.available.add(delta.available - repay))
    elif delta.available < 0:
        debit = -delta.available
        take = min(debit, max(available, 0))
        short = debit - take
        if take:
            actions.append(BalanceItem.available.add(-take))
            conditions.append(BalanceItem.available >= take)
        if short:
            actions.append(BalanceItem.owed.add(short))
            # The shortfall was computed from the balance read: it must still be that balance.
            conditions.append(BalanceItem.available == available if read is not None and read.available is not None
                              else BalanceItem.available.does_not_exist() | (BalanceItem.available == 0))
    if delta.pending:
        actions.append(BalanceItem.pending.add(delta.pending))
    if delta.held:
        actions.append(BalanceItem.held.add(delta.held))
    if delta.earned:
        actions.append(BalanceItem.lifetime_earned.add(delta.earned))
    if delta.spent:
        actions.append(BalanceItem.lifetime_spent.add(delta.spent))
    condition: Condition | None = None
    for c in conditions:
        condition = c if condition is None else condition & c
    return actions, condition


def balance_ref(program_id: str, member_id: str) -> BalanceItem:
    pk, sk = keys.balance(program_id, member_id)
    return BalanceItem(PK=pk, SK=sk)


def identity_actions(model: type[Entity], **fields: Any) -> list[Action]:
    """Set the discriminator (and fixed fields) on an item that an update may create."""
    actions: list[Action] = [model.entity.set(model)]  # type: ignore[attr-defined]
    for name, value in fields.items():
        actions.append(getattr(model, name).set(value))
    return actions


def stage_balance(tx: Transaction, program_id: str, member_id: str, read: BalanceItem | None,
                  delta: BalanceDelta, on_fail: OnFail) -> None:
    if not delta:
        return
    actions, condition = balance_actions(read, delta)
    actions += identity_actions(BalanceItem, program_id=program_id, member_id=member_id)
    tx.update(balance_ref(program_id, member_id), actions, condition, on_fail=on_fail)


def stage_counter(tx: Transaction, model: type[Entity], key: tuple[str, str], points: int,
                  max_before: int | None, on_fail: OnFail) -> None:
    """ADD to a counter item; with ``max_before``, only while the stored value is at most that."""
    attr = model.points  # type: ignore[attr-defined]
    condition = None if max_before is None else (attr.does_not_exist() | (attr <= max_before))
    tx.update(model(PK=key[0], SK=key[1]), [attr.add(points), *identity_actions(model)], condition, on_fail=on_fail)


def order_hash(partner_id: str, order_id: str) -> str:
    """The order ledger's key hash (``keys.order_ledger``) of a partner's order."""
    return hashlib.sha256(f"{partner_id}|{order_id}".encode()).hexdigest()[:40]
