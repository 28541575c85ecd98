"""The event pipeline: read in two batched round trips, decide in pure code, write in one transaction.

1. First read (one ``BatchGetItem``): the event's dedupe record, the pointers of
   every identifier the event carries (customer id, email, phone) and of its fraud
   signals (``risk_stage``: device, payment, shipping, IP), the referral
   code and coupons it mentions, pending invites for the customer, plus what the
   registered stages ask for. Pointers carry member ids *and ancestry*, so after this
   read every member whose state may matter is known.
2. Second read (one ``BatchGetItem``): the subject's profile, candidate referrers'
   profiles, and what the registered stages ask for (the ledger: balances, counters per chain).
3. Decide, stage by stage: membership (``membership_stage``: auto-enrolment, new
   identifiers), attribution (``attribution_stage`` → ``domain.attribution``),
   and then every registered stage (``services.stages``: the ledger → ``domain.rewards``, and
   whatever plugs in after it). The decisions are pure; each stage adds its writes to the one
   transaction.
4. Write (one ``TransactWriteItems``): the dedupe record created with
   ``attribute_not_exists``, profile changes conditioned on the revision read,
   pointers created with ``attribute_not_exists``, attribution records, ledger.

A concurrent writer makes a condition fail: if it was the dedupe record, the fact
was processed by someone else and the stored answer is returned; otherwise the
pipeline reads again and re-decides (bounded retries). Nothing is ever written
by check-then-write.
"""

from __future__ import annotations

from typing import Any

from chalicelib.domain.errors import ServiceUnavailable
from chalicelib.domain.events import CanonicalEvent, business_key
from chalicelib.domain.fingerprint import fingerprint, fingerprint_conflict
from chalicelib.logs import get_logger
from chalicelib.services import attribution_stage, membership_stage, ports, risk_stage, stages
from chalicelib.services.event_context import (
    ATTRIBUTING_EVENTS,
    EventContext,
    Key,
    StageView,
)
from chalicelib.services.outcomes import AlreadyProcessed, RetryEvent
from chalicelib.store import keys
from chalicelib.store.db import Entity
from chalicelib.store.dynamo_ports import event_key_hash
from chalicelib.store.events import EventItem, EventRefItem, lean_reply
from chalicelib.store.ledger import LedgerEntryItem, member_counts
from chalicelib.store.members import IdentityItem, MemberItem, batch_get, identity_refs
from chalicelib.store.tenancy import ProgramItem
from chalicelib.store.transact import Transaction

log = get_logger("sarafan.pipeline")

MAX_ATTEMPTS = 6


def process(program: ProgramItem, partner_id: str, event: CanonicalEvent, delivery_id: str | None = None) -> dict[str, Any]:
    bkey = business_key(program.program_id, partner_id, event)
    customer = event.customer
    refs = identity_refs(
        program.program_id,
        email=customer.email if customer else None,
        phone=customer.phone if customer else None,
        customer_id=(partner_id, customer.id) if customer and customer.id else None,
    )
    deps = ports.current()
    ctx = EventContext(
        program=program,
        partner_id=partner_id,
        event=event,
        business_key=bkey,
        event_key=keys.event(program.program_id, event_key_hash(bkey)),
        refs=tuple(refs),
        delivery_id=delivery_id,
        now=deps.clock.now(),
        signals=tuple(risk_stage.signal_refs(program.program_id, event, deps)),
        deny=tuple(risk_stage.deny_refs(program, event, deps)),
    )
    for _ in range(MAX_ATTEMPTS):
        try:
            return _attempt(ctx)
        except AlreadyProcessed:
            record = batch_get([ctx.event_key]).get(ctx.event_key)
            if isinstance(record, EventItem):
                return _duplicate_reply(ctx, record)
        except RetryEvent:
            continue
    raise ServiceUnavailable("The event could not be processed because of concurrent updates; retry it")


def _fingerprint(ctx: EventContext) -> dict[str, Any]:
    return fingerprint(ctx.event, {ref.kind: ref.value_hash for ref in ctx.refs})


def _duplicate_reply(ctx: EventContext, record: EventItem) -> dict[str, Any]:
    """The stored answer (rebuilt: the stored reply leaves out what the record already says);
    plus a ``conflict`` block when the repeat's content differs."""
    reply = {"business_key": record.business_key, **record.full_reply(), "status": "duplicate"}
    conflict = fingerprint_conflict(record.fingerprint, _fingerprint(ctx))
    if conflict is not None:
        reply["conflict"] = conflict
        log.warning("duplicate fact with different content", extra={
            "program_id": ctx.program_id, "event_type": ctx.event.type,
            "fields": [f["field"] for f in conflict["fields"]]})
    return reply


# --------------------------------------------------------------------------- reads


def _first_read_keys(ctx: EventContext) -> list[Key]:
    wanted = [ctx.event_key]
    wanted += [r.pointer_key(ctx.program_id) for r in ctx.refs]
    wanted += membership_stage.erased_identity_keys(ctx)
    wanted += [s.pointer_key(ctx.program_id) for s in ctx.signals]  # fraud signals (risk_stage)
    referral = ctx.event.referral
    if ctx.event.type in ATTRIBUTING_EVENTS:
        if referral and referral.code:
            wanted.append(keys.referral_code(ctx.program_id, referral.code))
        for coupon in referral.coupon_codes if referral else ():
            wanted.append(keys.coupon(ctx.program_id, coupon))
        wanted += [r.invite_key(ctx.program_id) for r in ctx.refs]
    for stage in stages.registered():
        wanted += stage.first_read_keys(ctx)
    return wanted


def _subject_id(ctx: EventContext, first: dict[Key, Entity]) -> str | None:
    """The member the event is about: the strongest identifier that points somewhere wins."""
    for ref in ctx.refs:  # customer id, then email, then phone
        pointer = first.get(ref.pointer_key(ctx.program_id))
        if isinstance(pointer, IdentityItem):
            return pointer.member_id
    return None


def _chains(subject_id: str | None, first: dict[Key, Entity], ctx: EventContext,
            candidates: list[attribution_stage.CandidatePointer]) -> list[list[str]]:
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
        return _duplicate_reply(ctx, record)

    subject_id = _subject_id(ctx, first)
    candidates = attribution_stage.candidate_pointers(ctx, first)
    chains = _chains(subject_id, first, ctx, candidates)
    # Candidates' uplines too: the self-referral checks compare the friend with every member above the referrer.
    wanted_profiles = {subject_id, *(c.member_id for c in candidates), *(a for c in candidates for a in c.ancestors)}
    profile_keys = [keys.member(ctx.program_id, m) for m in wanted_profiles if m]
    if subject_id:
        profile_keys.append(keys.balance(ctx.program_id, subject_id))  # the purchase count (member_counts)
    stage_keys = [k for stage in stages.registered() for k in stage.second_read_keys(ctx, first, chains)]
    second = batch_get(profile_keys + stage_keys)  # round trip 2
    items = {**first, **second}

    tx = Transaction()
    subject_item = items.get(keys.member(ctx.program_id, subject_id)) if subject_id else None
    if subject_id and not isinstance(subject_item, MemberItem):
        raise RetryEvent()  # pointer seen before its member: a concurrent creation is in flight
    subject = subject_item if isinstance(subject_item, MemberItem) else None
    # A member whose erasure has started is nobody: the event enrols no one (her identifiers' pointers are still
    # there until the erasure's first step deletes them) and writes nothing about her, as once she is erased.
    erased = subject is not None and subject.erased_at is not None
    if erased:
        subject = None
    changes = membership_stage.ProfileChanges()
    created = False
    if subject is None and not erased and membership_stage.should_enrol(ctx, first):
        subject = membership_stage.enrol(ctx)
        created = True
    elif subject is not None:
        membership_stage.add_missing_identifiers(ctx, tx, first, subject, changes)
        membership_stage.update_birthday(ctx, tx, subject, changes)

    orders_before = member_counts(subject, items.get(keys.balance(ctx.program_id, subject.member_id)))[0] \
        if subject else 0
    decision_reply: dict[str, Any] = {}
    converts = False
    if subject is not None and ctx.event.type in ATTRIBUTING_EVENTS:
        decision_reply, converts = attribution_stage.attribute(
            ctx, tx, items, subject, candidates, changes, created, orders_before)
    if subject is not None and ctx.is_purchase:
        if created:  # the new profile is written anyway: it carries its first purchase
            subject.orders_count = 1
        else:  # on the balance item, which the transaction writes anyway (no profile + referrals-index write)
            changes.count(ctx.program_id, subject.member_id, "orders_count", 1)

    view = StageView(
        items=items,
        subject=subject,
        ancestors=list(subject.ancestors or []) if subject else [],
        attributed_at=subject.attributed_at if subject else None,
        orders_before=orders_before,
        converts_referral=converts,
        attribution=decision_reply,
    )
    stage_replies: dict[str, Any] = {}
    for stage in stages.registered():
        outcome = stage.stage(ctx, tx, view)
        view.outcomes[stage.name] = outcome
        stage_replies.update(outcome.reply)

    if created and subject is not None:
        membership_stage.stage_new_member(ctx, tx, subject)
    elif subject is not None and ctx.signals:
        changes.guard(subject)  # the fraud signals record her (risk_stage): not once her erasure has started
    changes.stage(tx)
    reply = {
        "status": "processed",
        "business_key": ctx.business_key,
        "type": ctx.event.type,
        "member": {"member_id": subject.member_id, "code": subject.code, "created": created} if subject else None,
        "attribution": decision_reply or None,
        **stage_replies,
    }
    order_number = orders_before + 1 if subject is not None and ctx.is_purchase else None
    record = _event_record(ctx, subject, reply, order_number)
    index = next((o.audit["event_index"] for o in view.outcomes.values() if "event_index" in o.audit), None)
    if index is not None:  # the event's reward entries are indexed by the record (see store.ledger.new_entry)
        record.occurred_at = ctx.event.occurred_at
        record.index_entries(ctx.program_id, ctx.now, index["pending_at"])
    # Created with ``attribute_not_exists``; or, when a stage read an item at its key that it replaces (refunds
    # parked before their order: services.ledger.refunds), put on the condition that it is still the one read.
    replaces = next((o.audit["record_condition"] for o in view.outcomes.values() if "record_condition" in o.audit),
                    None)
    if replaces is None:
        tx.create(record, on_fail=AlreadyProcessed())
    else:
        record.replaced_parked = 1  # the stream sees a MODIFY: analytics counts the fact on it once
        tx.put(record, replaces, on_fail=AlreadyProcessed())
    _stage_event_ref(ctx, tx, subject)
    tx.commit()  # round trip 3
    log.info("event processed", extra={"event_type": ctx.event.type, "program_id": ctx.program_id,
                                       "created_member": created, "attribution": decision_reply.get("outcome")})
    return reply


def _stage_event_ref(ctx: EventContext, tx: Transaction, subject: MemberItem | None) -> None:
    """The subject's back-reference to the record (``store.events.EventRefItem``, for the member export), unless
    the transaction writes a ledger entry of hers, which names the record by its business key (one small item
    more, only for an event that pays her nothing)."""
    if subject is None:
        return
    partition = keys.member_partition(ctx.program_id, subject.member_id)
    if any(isinstance(i, LedgerEntryItem) and (i.PK, i.business_key) == (partition, ctx.business_key)
           for i in tx.saved()):
        return
    pk, sk = keys.event_ref(ctx.program_id, subject.member_id, ctx.event_key[0].rsplit("#", 1)[1])
    tx.put(EventRefItem(PK=pk, SK=sk, program_id=ctx.program_id, member_id=subject.member_id, received_at=ctx.now))


def _event_record(ctx: EventContext, subject: MemberItem | None, reply: dict[str, Any],
                  order_number: int | None = None) -> EventItem:
    """Only what dedupe and the duplicate reply need (the business key names program, partner,
    object and type; the postings are in the ledger entries)."""
    pk, sk = ctx.event_key
    return EventItem(
        PK=pk, SK=sk, business_key=ctx.business_key, received_at=ctx.now, delivery_id=ctx.delivery_id,
        member_id=subject.member_id if subject else None,
        reply=lean_reply(ctx.business_key, {k: v for k, v in reply.items() if k not in ("status", "business_key")}),
        fingerprint=_fingerprint(ctx),
        order_number=order_number,  # the member's n-th purchase: analytics tells first from repeat purchases
    )

