"""The event pipeline: read in two batched round trips, decide in pure code, write in one transaction.

1. First read (one ``BatchGetItem``): the event's dedupe record, the pointers of
   every identifier the event carries (customer id, email, phone), the referral
   code and coupons it mentions, pending invites for the customer, plus what the
   ledger stage asks for. Pointers carry member ids *and ancestry*, so after this
   read every member whose state may matter is known.
2. Second read (one ``BatchGetItem``): the subject's profile, candidate referrers'
   profiles, and the ledger stage's state for every chain (balances, counters).
3. Decide: membership (auto-enrolment), attribution (``domain.attribution``) and
   rewards (``ledger_stage`` → ``domain.rewards``), all pure.
4. Write (one ``TransactWriteItems``): the dedupe record created with
   ``attribute_not_exists``, profile changes conditioned on the revision read,
   pointers created with ``attribute_not_exists``, attribution records, ledger.

A concurrent writer makes a condition fail: if it was the dedupe record, the fact
was processed by someone else and the stored answer is returned; otherwise the
pipeline reads again and re-decides (bounded retries). Nothing is ever written
by check-then-write.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pynamodb.attributes import Attribute

from chalicelib.domain import attribution, clock
from chalicelib.domain.codes import generate_code
from chalicelib.domain.errors import ServiceUnavailable
from chalicelib.domain.events import CanonicalEvent, business_key
from chalicelib.domain.ids import new_id
from chalicelib.logs import get_logger
from chalicelib.services import ledger_stage
from chalicelib.services.outcomes import AlreadyProcessed, RetryEvent
from chalicelib.store import keys
from chalicelib.store.db import Entity
from chalicelib.store.events import AttributionRecordItem, EventItem
from chalicelib.store.members import (
    CodeItem,
    CouponItem,
    IdentityItem,
    IdentityRef,
    MemberItem,
    PendingInviteItem,
    batch_get,
    code_item,
    identity_refs,
    key_from_str,
    key_str,
    link_item,
    new_member,
    pointer_items,
    referrals_index,
)
from chalicelib.store.tenancy import ProgramItem
from chalicelib.store.transact import Transaction

log = get_logger("sarafan.pipeline")

Key = tuple[str, str]
#: Events that may link a friend to a referrer.
ATTRIBUTING_EVENTS = frozenset({"member.signup", "lead.created", "deal.won", "order.paid"})
#: Events that make the customer a member when unknown (orders only with auto-enrolment on).
ENROLLING_EVENTS = frozenset({"member.signup", "lead.created", "deal.won"})
PURCHASE_EVENTS = attribution.FINALISING_EVENTS
MAX_ATTEMPTS = 6


@dataclass(frozen=True)
class EventContext:
    program: ProgramItem
    partner_id: str
    event: CanonicalEvent
    business_key: str
    event_key: Key
    refs: tuple[IdentityRef, ...]
    delivery_id: str | None
    now: datetime

    @property
    def program_id(self) -> str:
        return self.program.program_id

    def setting(self, name: str, default: Any) -> Any:
        return (self.program.settings or {}).get(name, default)


@dataclass
class StageView:
    """What the ledger stage sees after membership and attribution were decided."""

    items: dict[Key, Entity]
    subject: MemberItem | None
    #: The subject's ancestry after this event's attribution (nearest first).
    ancestors: list[str]
    attributed_at: datetime | None
    #: The subject's paid orders before this event.
    orders_before: int
    #: Whether this event is the subject's first purchase as a referred member.
    converts_referral: bool
    attribution: dict[str, Any] = field(default_factory=dict)


def process(program: ProgramItem, partner_id: str, event: CanonicalEvent, delivery_id: str | None = None) -> dict[str, Any]:
    bkey = business_key(program.program_id, partner_id, event)
    customer = event.customer
    refs = identity_refs(
        program.program_id,
        email=customer.email if customer else None,
        phone=customer.phone if customer else None,
        customer_id=(partner_id, customer.id) if customer and customer.id else None,
    )
    ctx = EventContext(
        program=program,
        partner_id=partner_id,
        event=event,
        business_key=bkey,
        event_key=keys.event(program.program_id, _hash(bkey)),
        refs=tuple(refs),
        delivery_id=delivery_id,
        now=clock.utcnow(),
    )
    for _ in range(MAX_ATTEMPTS):
        try:
            return _attempt(ctx)
        except AlreadyProcessed:
            record = batch_get([ctx.event_key]).get(ctx.event_key)
            if isinstance(record, EventItem):
                return _duplicate_reply(record)
        except RetryEvent:
            continue
    raise ServiceUnavailable("The event could not be processed because of concurrent updates; retry it")


def _hash(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:40]


def _duplicate_reply(record: EventItem) -> dict[str, Any]:
    return {**(record.result or {}), "status": "duplicate"}


# --------------------------------------------------------------------------- reads


def _first_read_keys(ctx: EventContext) -> list[Key]:
    wanted = [ctx.event_key]
    wanted += [r.pointer_key(ctx.program_id) for r in ctx.refs]
    referral = ctx.event.referral
    if ctx.event.type in ATTRIBUTING_EVENTS:
        if referral and referral.code:
            wanted.append(keys.referral_code(ctx.program_id, referral.code))
        for coupon in referral.coupon_codes if referral else ():
            wanted.append(keys.coupon(ctx.program_id, coupon))
        wanted += [r.invite_key(ctx.program_id) for r in ctx.refs]
    return wanted + ledger_stage.first_read_keys(ctx)


def _subject_id(ctx: EventContext, first: dict[Key, Entity]) -> str | None:
    """The member the event is about: the strongest identifier that points somewhere wins."""
    for ref in ctx.refs:  # customer id, then email, then phone
        pointer = first.get(ref.pointer_key(ctx.program_id))
        if isinstance(pointer, IdentityItem):
            return pointer.member_id
    return None


@dataclass(frozen=True)
class _CandidatePointer:
    source: attribution.Source
    member_id: str | None
    ancestors: tuple[str, ...]
    code: str | None
    touched_at: datetime | None = None


def _candidate_pointers(ctx: EventContext, first: dict[Key, Entity]) -> list[_CandidatePointer]:
    if ctx.event.type not in ATTRIBUTING_EVENTS:
        return []
    found: list[_CandidatePointer] = []
    referral = ctx.event.referral
    if referral and referral.code:
        item = first.get(keys.referral_code(ctx.program_id, referral.code))
        if isinstance(item, CodeItem):
            found.append(_CandidatePointer("ref_code", item.member_id, tuple(item.ancestors or ()), item.code))
        else:
            found.append(_CandidatePointer("ref_code", None, (), referral.code))
    for coupon in referral.coupon_codes if referral else ():
        item = first.get(keys.coupon(ctx.program_id, coupon))
        if isinstance(item, CouponItem):
            found.append(_CandidatePointer("coupon", item.member_id, tuple(item.ancestors or ()), coupon))
    for ref in ctx.refs:
        invite = first.get(ref.invite_key(ctx.program_id))
        if isinstance(invite, PendingInviteItem):
            found.append(_CandidatePointer("invite_match", invite.referrer_id, tuple(invite.ancestors or ()),
                                           invite.code, invite.invited_at))
    return found


def _chains(subject_id: str | None, first: dict[Key, Entity], ctx: EventContext,
            candidates: list[_CandidatePointer]) -> list[list[str]]:
    """Every ancestry the subject may end up with: the current one, or one per candidate referrer."""
    current: tuple[str, ...] = ()
    for ref in ctx.refs:
        pointer = first.get(ref.pointer_key(ctx.program_id))
        if isinstance(pointer, IdentityItem) and pointer.member_id == subject_id:
            current = tuple(pointer.ancestors or ())
            break
    head = [subject_id] if subject_id else []
    chains = [head + list(current)]
    for c in candidates:
        if c.member_id:
            chains.append([*head, c.member_id, *c.ancestors])
    return chains


# --------------------------------------------------------------------------- decide + write


def _attempt(ctx: EventContext) -> dict[str, Any]:
    first = batch_get(_first_read_keys(ctx))  # round trip 1
    record = first.get(ctx.event_key)
    if isinstance(record, EventItem):
        return _duplicate_reply(record)

    subject_id = _subject_id(ctx, first)
    candidates = _candidate_pointers(ctx, first)
    chains = _chains(subject_id, first, ctx, candidates)
    profile_keys = [keys.member(ctx.program_id, m) for m in {subject_id, *(c.member_id for c in candidates)} if m]
    second = batch_get(profile_keys + ledger_stage.second_read_keys(ctx, first, chains))  # round trip 2
    items = {**first, **second}

    tx = Transaction()
    subject_item = items.get(keys.member(ctx.program_id, subject_id)) if subject_id else None
    if subject_id and not isinstance(subject_item, MemberItem):
        raise RetryEvent()  # pointer seen before its member: a concurrent creation is in flight
    subject = subject_item if isinstance(subject_item, MemberItem) else None
    changes = _ProfileChanges()
    created = False
    if subject is None and _should_enrol(ctx):
        subject = _enrol(ctx)
        created = True
    elif subject is not None:
        _add_missing_identifiers(ctx, tx, first, subject, changes)

    orders_before = int(subject.orders_count or 0) if subject else 0
    decision_reply: dict[str, Any] = {}
    converts = False
    if subject is not None and ctx.event.type in ATTRIBUTING_EVENTS:
        decision_reply, converts = _attribute(ctx, tx, items, subject, candidates, changes, created, orders_before)
    if subject is not None and ctx.event.type in PURCHASE_EVENTS:
        changes.add(subject, MemberItem.orders_count, 1)
        subject.orders_count = orders_before + 1

    view = StageView(
        items=items,
        subject=subject,
        ancestors=list(subject.ancestors or []) if subject else [],
        attributed_at=subject.attributed_at if subject else None,
        orders_before=orders_before,
        converts_referral=converts,
        attribution=decision_reply,
    )
    rewards = ledger_stage.stage(ctx, tx, view)
    # The entries themselves are kept on the event record (audit), not sent back to the partner.
    ledger_postings = rewards.pop("ledger_postings", [])

    if created and subject is not None:
        _stage_new_member(ctx, tx, subject)
    changes.stage(tx)
    reply = {
        "status": "processed",
        "business_key": ctx.business_key,
        "type": ctx.event.type,
        "member": {"member_id": subject.member_id, "code": subject.code, "created": created} if subject else None,
        "attribution": decision_reply or None,
        **rewards,
    }
    tx.create(_event_record(ctx, subject, reply, ledger_postings), on_fail=AlreadyProcessed())
    tx.commit()  # round trip 3
    log.info("event processed", extra={"event_type": ctx.event.type, "program_id": ctx.program_id,
                                       "created_member": created, "attribution": decision_reply.get("outcome")})
    return reply


def _should_enrol(ctx: EventContext) -> bool:
    if not ctx.refs:
        return False
    if ctx.event.type in ENROLLING_EVENTS:
        return True
    return ctx.event.type == "order.paid" and bool(ctx.setting("auto_enrol", True))


def _enrol(ctx: EventContext) -> MemberItem:
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
        customer_ids={ctx.partner_id: customer.id} if customer.id else {},
        acquisition=acquisition,
        refs=ctx.refs,
    )


def _stage_new_member(ctx: EventContext, tx: Transaction, member: MemberItem) -> None:
    referrals_index(member)
    # Another delivery creating the same person, or a code collision: read again.
    tx.create(member, on_fail=RetryEvent())
    for pointer in pointer_items(member, ctx.refs):
        tx.create(pointer, on_fail=RetryEvent())
    tx.create(code_item(member), on_fail=RetryEvent())
    tx.create(link_item(member), on_fail=RetryEvent())  # /r/{code}; also makes the code unique deployment-wide


def _add_missing_identifiers(ctx: EventContext, tx: Transaction, first: dict[Key, Entity],
                             member: MemberItem, changes: _ProfileChanges) -> None:
    """An existing member seen with a new identifier (a phone, another shop's customer id) gains a pointer."""
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


def _identifiers(program_id: str, member: MemberItem | None, refs: tuple[IdentityRef, ...] = ()) -> attribution.Identifiers:
    """Identifier hashes of a member (from its pointer keys) plus any the event carries."""
    by_kind: dict[str, set[str]] = {"email": set(), "phone": set(), "customer_id": set()}
    for ref in refs:
        by_kind[ref.kind].add(ref.value_hash)
    for text in (member.pointer_keys or []) if member else []:
        pk = key_from_str(text)[0]  # IDENT#<program>#<kind>#<hash>
        parts = pk.split("#")
        if len(parts) == 4 and parts[2] in by_kind:
            by_kind[parts[2]].add(parts[3])
    return attribution.Identifiers(
        email_keys=frozenset(by_kind["email"]),
        phones=frozenset(by_kind["phone"]),
        customer_ids=frozenset(by_kind["customer_id"]),
    )


def _attribute(ctx: EventContext, tx: Transaction, items: dict[Key, Entity], subject: MemberItem,
               pointers: list[_CandidatePointer], changes: _ProfileChanges, created: bool,
               orders_before: int) -> tuple[dict[str, Any], bool]:
    friend = attribution.Friend(
        member_id=subject.member_id,
        identifiers=_identifiers(ctx.program_id, subject, ctx.refs),
        referrer_id=subject.referrer_id,
        attributed_at=subject.attributed_at,
        attribution_final=bool(subject.attribution_final) or (orders_before > 0 and not created),
        has_referees=subject.has_referees,
    )
    candidates = []
    for p in pointers:
        profile = items.get(keys.member(ctx.program_id, p.member_id)) if p.member_id else None
        referrer = profile if isinstance(profile, MemberItem) else None
        candidates.append(attribution.Candidate(
            source=p.source,
            referrer_id=referrer.member_id if referrer else None,
            identifiers=_identifiers(ctx.program_id, referrer),
            ancestors=tuple(referrer.ancestors or ()) if referrer else p.ancestors,
            touched_at=p.touched_at,
            code=p.code,
        ))
    settings = attribution.ProgramSettings(
        window_days=int(ctx.setting("attribution_window_days", 30)),
        model=ctx.setting("attribution_model", "first_touch"),
        max_depth=int(ctx.setting("max_depth", 3)),
    )
    decision = attribution.decide(friend, ctx.event.type, ctx.event.occurred_at, candidates, settings)
    previous_referrer = subject.referrer_id

    if decision.outcome == "credited":
        subject.referrer_id = decision.referrer_id
        subject.ancestors = list(decision.new_ancestors)
        subject.attributed_at = decision.attributed_at
        subject.attribution_source = decision.source
        assert decision.referrer_id is not None
        changes.add(_profile_ref(ctx, decision.referrer_id, items), MemberItem.referral_signups, 1)
        if previous_referrer and previous_referrer != decision.referrer_id:
            changes.add(_profile_ref(ctx, previous_referrer, items), MemberItem.referral_signups, -1)
        if not created:
            referrals_index(subject)
            changes.set(subject, MemberItem.referrer_id, subject.referrer_id)
            changes.set(subject, MemberItem.ancestors, subject.ancestors)
            changes.set(subject, MemberItem.attributed_at, subject.attributed_at)
            changes.set(subject, MemberItem.attribution_source, subject.attribution_source)
            changes.set(subject, MemberItem.GSI1PK, subject.GSI1PK)
            changes.set(subject, MemberItem.GSI1SK, subject.GSI1SK)
            _update_pointer_ancestry(ctx, tx, subject)
    becomes_final = decision.final and not subject.attribution_final
    if becomes_final:
        subject.attribution_final = True
        if not created:
            changes.set(subject, MemberItem.attribution_final, True)
    converts = ctx.event.type in PURCHASE_EVENTS and orders_before == 0 and subject.referrer_id is not None
    if converts:
        assert subject.referrer_id is not None
        changes.add(_profile_ref(ctx, subject.referrer_id, items), MemberItem.converted_referrals, 1)

    for result in decision.candidates:
        _stage_attribution_record(ctx, tx, subject, result)
    reply = {
        "outcome": decision.outcome,
        "referrer_id": subject.referrer_id,
        "source": decision.source,
        "reason_code": decision.reason_code,
        "reason": decision.reason,
        "final": bool(subject.attribution_final),
        "candidates": [
            {"source": r.source, "code": r.code, "referrer_id": r.referrer_id, "accepted": r.accepted,
             "reason_code": r.reason_code}
            for r in decision.candidates
        ],
    }
    return reply, converts


def _profile_ref(ctx: EventContext, member_id: str, items: dict[Key, Entity]) -> MemberItem:
    existing = items.get(keys.member(ctx.program_id, member_id))
    if isinstance(existing, MemberItem):
        return existing
    pk, sk = keys.member(ctx.program_id, member_id)
    return MemberItem(PK=pk, SK=sk)


def _update_pointer_ancestry(ctx: EventContext, tx: Transaction, member: MemberItem) -> None:
    """Pointers carry ancestry (see module docstring): keep every one of them in step with the profile."""
    for text in member.pointer_keys or []:
        pk, sk = key_from_str(text)
        if not tx.touches((pk, sk)):
            tx.update(IdentityItem(PK=pk, SK=sk), [IdentityItem.ancestors.set(list(member.ancestors))],
                      Entity.PK.exists(), on_fail=RetryEvent())
    pk, sk = keys.referral_code(ctx.program_id, member.code)
    tx.update(CodeItem(PK=pk, SK=sk), [CodeItem.ancestors.set(list(member.ancestors))], Entity.PK.exists(),
              on_fail=RetryEvent())


def _stage_attribution_record(ctx: EventContext, tx: Transaction, subject: MemberItem,
                              result: attribution.CandidateResult) -> None:
    record_id = new_id("att")
    at = clock.iso(ctx.now)
    pk, sk = keys.attribution_record(ctx.program_id, subject.member_id, at, record_id)
    item = AttributionRecordItem(
        PK=pk, SK=sk, program_id=ctx.program_id, record_id=record_id, member_id=subject.member_id,
        referrer_id=result.referrer_id, code=result.code, source=result.source,
        outcome="credited" if result.accepted else "rejected", reason_code=result.reason_code, reason=result.reason,
        event_type=ctx.event.type, business_key=ctx.business_key, at=ctx.now,
    )
    if result.code:
        item.GSI1PK, item.GSI1SK = keys.gsi1_attribution_by_code(ctx.program_id, result.code, at, record_id)
    tx.put(item)


def _event_record(ctx: EventContext, subject: MemberItem | None, reply: dict[str, Any],
                  ledger_postings: list[dict[str, Any]]) -> EventItem:
    pk, sk = ctx.event_key
    event = ctx.event
    return EventItem(
        PK=pk, SK=sk, program_id=ctx.program_id, partner_id=ctx.partner_id, business_key=ctx.business_key,
        type=event.type, object_type=event.object_type, object_id=event.object_id, occurred_at=event.occurred_at,
        received_at=ctx.now, delivery_id=ctx.delivery_id, member_id=subject.member_id if subject else None,
        result=reply, postings=ledger_postings,
    )


class _ProfileChanges:
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
        for key, actions in self._actions.items():
            if not actions:
                continue
            member = self._members[key]
            if tx.touches(key):  # created in this transaction: its fields were set before creation
                continue
            condition = Entity.PK.exists()
            if key in self._rewrites:
                revision = int(member.revision or 0)
                actions = [*actions, MemberItem.revision.set(revision + 1)]
                condition = condition & (MemberItem.revision == revision) if member.revision is not None else condition
            tx.update(member, actions, condition, on_fail=RetryEvent())
