"""Membership stage of the event pipeline: enrolment, identifiers, and profile updates.

A person is one member of a program; an unknown customer becomes one (signups, leads,
and orders when auto-enrolment is on) with pointers from every identifier and a code,
all created with ``attribute_not_exists`` so a concurrent delivery cannot create twice.
"""

from __future__ import annotations

from typing import Any

from pynamodb.attributes import Attribute

from chalicelib.domain.codes import generate_code
from chalicelib.domain.ids import new_id
from chalicelib.services.event_context import ENROLLING_EVENTS, EventContext, Key
from chalicelib.services.outcomes import RetryEvent
from chalicelib.store import keys
from chalicelib.store.birthdays import moves_day, stage_birthday
from chalicelib.store.data_rights import ErasedIdentityItem
from chalicelib.store.db import Entity
from chalicelib.store.members import (
    MemberItem,
    key_str,
    new_member,
    pointer_items,
    stage_member_creation,
    unerased,
)
from chalicelib.store.transact import Transaction


def erased_identity_keys(ctx: EventContext) -> list[Key]:
    """Tombstones of erased members' identifiers (``services.erasure``), read with the pointers."""
    if ctx.event.type == "member.signup":
        return []  # a new signup enrols whoever it names, erased before or not
    return [keys.erased_identity(ctx.program_id, r.kind, r.value_hash) for r in ctx.refs]


def should_enrol(ctx: EventContext, first: dict[Key, Entity] | None = None) -> bool:
    if not ctx.refs:
        return False
    if first and any(isinstance(first.get(k), ErasedIdentityItem) for k in erased_identity_keys(ctx)):
        # The person asked to be forgotten: only their own new signup brings them back.
        return False
    if ctx.event.type in ENROLLING_EVENTS:
        return True
    return ctx.event.type == "order.paid" and ctx.settings.auto_enrol


def enrol(ctx: EventContext) -> MemberItem:
    customer = ctx.event.customer
    assert customer is not None
    referral = ctx.event.referral
    utm = referral.utm if referral else None
    acquisition: dict[str, Any] = {"channel": ctx.event.type, "partner_id": ctx.partner_id}
    if utm is not None:
        acquisition["utm"] = {k: v for k, v in vars(utm).items() if v}
    return new_member(
        ctx.program_id,
        new_id("mbr"),
        generate_code(),
        joined_at=ctx.event.occurred_at,
        joined_via={"member.signup": "signup", "order.paid": "order"}.get(ctx.event.type, "lead"),
        name=customer.name,
        locale=customer.locale or ctx.program.default_locale,
        email=customer.email,
        phone=customer.phone,
        birthday=customer.birthday.isoformat() if customer.birthday else None,
        # When Sarafan learnt it (not the event's occurred_at, which the sender chooses): the birthday guard.
        birthday_set_at=ctx.now,
        customer_ids={ctx.partner_id: customer.id} if customer.id else {},
        acquisition=acquisition,
        refs=ctx.refs,
    )


def stage_new_member(ctx: EventContext, tx: Transaction, member: MemberItem) -> None:
    # Another delivery creating the same person, or a code collision: read again.
    stage_member_creation(tx, member, ctx.refs, RetryEvent())


def add_missing_identifiers(ctx: EventContext, tx: Transaction, first: dict[Key, Entity],
                             member: MemberItem, changes: ProfileChanges) -> None:
    """An existing member seen with a new identifier (a phone, another shop's customer id) gains a pointer.
    Never an erased member's (the pipeline takes an event about one as about nobody, and guards the member it
    writes for: :meth:`ProfileChanges.guard`)."""
    if member.erased_at is not None:
        return
    customer = ctx.event.customer
    missing = [r for r in ctx.refs if r.pointer_key(ctx.program_id) not in first]
    if not missing or customer is None:
        return
    for pointer in pointer_items(member, missing):
        tx.create(pointer, on_fail=RetryEvent())
    changes.set(member, MemberItem.pointer_keys,
                list(member.pointer_keys or []) + [key_str(r.pointer_key(ctx.program_id)) for r in missing])
    if customer.id and ctx.partner_id not in (member.customer_ids or {}):
        changes.set(member, MemberItem.customer_ids, {**(member.customer_ids.as_dict() if member.customer_ids else {}), ctx.partner_id: customer.id})
    if customer.email and not member.email:
        changes.set(member, MemberItem.email, customer.email)
    if customer.phone and not member.phone:
        changes.set(member, MemberItem.phone, customer.phone)


def update_birthday(ctx: EventContext, tx: Transaction, member: MemberItem, changes: ProfileChanges) -> None:
    """An event naming another birthday than the stored one sets or changes it (profile and the month-day index
    in the event's transaction). A change that moves the day restarts the birthday guard (``birthday_set_at``:
    now); a corrected year alone does not. An event without a birthday changes nothing."""
    customer = ctx.event.customer
    if customer is None or customer.birthday is None or member.erased_at is not None:
        return
    new = customer.birthday.isoformat()
    old = member.birthday
    if new == old:
        return
    set_at = ctx.now if moves_day(old, new) or member.birthday_set_at is None else member.birthday_set_at
    changes.set(member, MemberItem.birthday, new)
    changes.set(member, MemberItem.birthday_set_at, set_at)
    stage_birthday(tx, ctx.program_id, member.member_id, old, new, set_at)
    member.birthday, member.birthday_set_at = new, set_at


class ProfileChanges:
    """Collects updates per member profile and stages one conditioned update per profile.

    Every profile this event changes is updated once (DynamoDB refuses two operations on
    one item in a transaction) and only if its ``revision`` is still the one read, so two
    events racing on the same member cannot both apply decisions made from stale state.
    Counter-only changes to other members (a referrer's counts) use ADD and need no revision.
    """

    def __init__(self) -> None:
        self._members: dict[Key, MemberItem] = {}
        self._actions: dict[Key, list[Any]] = {}
        self._rewrites: set[Key] = set()
        self._guarded: set[Key] = set()
        self._counts: dict[tuple[str, str], dict[str, int]] = {}

    def guard(self, member: MemberItem) -> None:
        """The transaction commits only if ``member``'s erasure has not started meanwhile (``erased_at`` is set by
        the transaction that starts it): on the member's update if there is one, else a ``ConditionCheck``. For
        an event that writes something about the member that the erasure removes (an attribution record, a new
        friend, fraud signals naming her); every rewrite of a profile carries the condition anyway. A failed guard retries the event, which
        then finds the member erased (``services.pipeline``). An event that only posts to her balance needs no
        guard: committed after the start it is as if committed just before (the balance stays either way)."""
        self._guarded.add(self._slot(member))

    def count(self, program_id: str, member_id: str, name: str, amount: int) -> None:
        """A purchase / converted-referral count of a member, kept on the member's balance item (staged last,
        merged into the balance update a stage made, see ``store.ledger.member_counts``)."""
        slot = self._counts.setdefault((program_id, member_id), {})
        slot[name] = slot.get(name, 0) + amount

    def _slot(self, member: MemberItem) -> Key:
        key = (member.PK, member.SK)
        self._members.setdefault(key, member)
        self._actions.setdefault(key, [])
        return key

    def set(self, member: MemberItem, attribute: Attribute[Any], value: Any) -> None:
        key = self._slot(member)
        self._rewrites.add(key)
        self._actions[key].append(attribute.remove() if value is None else attribute.set(value))

    def add(self, member: MemberItem, attribute: Attribute[Any], amount: int) -> None:
        key = self._slot(member)
        self._actions[key].append(attribute.add(amount))

    def stage(self, tx: Transaction) -> None:
        from chalicelib.store.ledger import BalanceItem, balance_ref, identity_actions

        for (program_id, member_id), names in self._counts.items():
            balance = balance_ref(program_id, member_id)
            count_actions: list[Any] = [getattr(BalanceItem, n).add(v) for n, v in names.items()]
            if not tx.touches((balance.PK, balance.SK)):  # else merged into that update, which sets these
                count_actions += identity_actions(BalanceItem, program_id=program_id, member_id=member_id)
            tx.update(balance, count_actions)
        for key, actions in self._actions.items():
            member = self._members[key]
            if tx.touches(key):  # created in this transaction: its fields were set before creation
                continue
            if not actions:
                if key in self._guarded:
                    tx.check(MemberItem, key, unerased(must_exist=True), on_fail=RetryEvent())
                continue
            guarded = key in self._guarded or key in self._rewrites  # a rewrite may set personal data or pointers
            condition = unerased(must_exist=True) if guarded else Entity.PK.exists()
            if key in self._rewrites:
                revision = int(member.revision or 0)
                actions = [*actions, MemberItem.revision.set(revision + 1)]
                condition = condition & (MemberItem.revision == revision) if member.revision is not None else condition
            tx.update(member, actions, condition, on_fail=RetryEvent())
