"""Attribution stage of the event pipeline: candidates, the pure decision, and what it writes.

Candidates come from the first batched read (code, coupon and invite pointers, which carry
the referrer's ancestry); ``domain.attribution.decide`` picks one; this module stages the
profile changes, the ancestry on every pointer of the friend, the referrers' counters and
one attribution record per candidate, all in the event's transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from chalicelib.domain import attribution, clock
from chalicelib.domain.ids import new_id
from chalicelib.services.event_context import ATTRIBUTING_EVENTS, EventContext, Key
from chalicelib.services.membership_stage import ProfileChanges
from chalicelib.services.outcomes import RetryEvent
from chalicelib.store import keys
from chalicelib.store.db import Entity
from chalicelib.store.events import AttributionRecordItem
from chalicelib.store.members import (
    CodeItem,
    CouponItem,
    IdentityItem,
    IdentityRef,
    MemberItem,
    PendingInviteItem,
    key_from_str,
    referrals_index,
)
from chalicelib.store.transact import Transaction


@dataclass(frozen=True)
class CandidatePointer:
    source: attribution.Source
    member_id: str | None
    ancestors: tuple[str, ...]
    code: str | None
    touched_at: datetime | None = None
    #: An invite-time fraud check's rejecting reason (``PendingInviteItem.risk_reject``).
    rejected_at_invite: str | None = None


def candidate_pointers(ctx: EventContext, first: dict[Key, Entity]) -> list[CandidatePointer]:
    if ctx.event.type not in ATTRIBUTING_EVENTS:
        return []
    found: list[CandidatePointer] = []
    referral = ctx.event.referral
    if referral and referral.code:
        item = first.get(keys.referral_code(ctx.program_id, referral.code))
        if isinstance(item, CodeItem):
            found.append(CandidatePointer("ref_code", item.member_id, tuple(item.ancestors or ()), item.code))
        else:
            found.append(CandidatePointer("ref_code", None, (), referral.code))
    for coupon in referral.coupon_codes if referral else ():
        item = first.get(keys.coupon(ctx.program_id, coupon))
        if isinstance(item, CouponItem):
            found.append(CandidatePointer("coupon", item.member_id, tuple(item.ancestors or ()), coupon))
    for ref in ctx.refs:
        invite = first.get(ref.invite_key(ctx.program_id))
        if isinstance(invite, PendingInviteItem):
            found.append(CandidatePointer("invite_match", invite.referrer_id, tuple(invite.ancestors or ()),
                                           invite.code, invite.invited_at, invite.risk_reject))
    return found


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


def _signal_members(ctx: EventContext, items: dict[Key, Entity], subject_id: str) -> dict[str, frozenset[str]]:
    """signal kind → the other members the event's signal pointers list (read in the first batch)."""
    from chalicelib.services.risk_stage import signal_items

    return {kind: frozenset(item.seen()) - {subject_id} for kind, item in signal_items(ctx, items).items()}


def attribute(ctx: EventContext, tx: Transaction, items: dict[Key, Entity], subject: MemberItem,
               pointers: list[CandidatePointer], changes: ProfileChanges, created: bool,
               orders_before: int) -> tuple[dict[str, Any], bool]:
    friend = attribution.Friend(
        member_id=subject.member_id,
        identifiers=_identifiers(ctx.program_id, subject, ctx.refs),
        referrer_id=subject.referrer_id,
        attributed_at=subject.attributed_at,
        attribution_final=bool(subject.attribution_final) or (orders_before > 0 and not created),
        has_referees=subject.has_referees,
        signal_members=_signal_members(ctx, items, subject.member_id),
    )
    candidates = []
    for p in pointers:
        profile = items.get(keys.member(ctx.program_id, p.member_id)) if p.member_id else None
        # An erased referrer (whose code still resolves until the erasure's first step) gains no friend.
        referrer = profile if isinstance(profile, MemberItem) and profile.erased_at is None else None
        ancestors = tuple(referrer.ancestors or ()) if referrer else p.ancestors
        upline = [items.get(keys.member(ctx.program_id, a)) for a in ancestors if a != subject.member_id]
        candidates.append(attribution.Candidate(
            source=p.source,
            referrer_id=referrer.member_id if referrer else None,
            identifiers=_identifiers(ctx.program_id, referrer),
            ancestors=ancestors,
            touched_at=p.touched_at,
            code=p.code,
            upline_identifiers=tuple(_identifiers(ctx.program_id, m) for m in upline if isinstance(m, MemberItem)),
            rejected_at_invite=p.rejected_at_invite,
        ))
    settings = attribution.AttributionSettings.of(ctx.settings)
    decision = attribution.decide(friend, ctx.event.type, ctx.event.occurred_at, candidates, settings)
    previous_referrer = subject.referrer_id

    if decision.outcome == "credited":
        subject.referrer_id = decision.referrer_id
        subject.ancestors = list(decision.new_ancestors)
        subject.attributed_at = decision.attributed_at
        subject.attribution_source = decision.source
        assert decision.referrer_id is not None
        referrer_ref = _profile_ref(ctx, decision.referrer_id, items)
        changes.add(referrer_ref, MemberItem.referral_signups, 1)
        changes.guard(referrer_ref)  # her erasure starting meanwhile: retried, then she is no candidate
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
        if not created and not ctx.is_purchase:
            # A counted purchase records the finality itself (a member with a purchase is final: see the
            # friend's ``attribution_final`` above), so the profile (and its referrals-index copy) is not rewritten.
            changes.set(subject, MemberItem.attribution_final, True)
    converts = ctx.is_purchase and orders_before == 0 and subject.referrer_id is not None
    if converts:
        assert subject.referrer_id is not None
        changes.count(ctx.program_id, subject.referrer_id, "converted_referrals", 1)  # on the referrer's balance

    if decision.candidates and not created:
        changes.guard(subject)  # her attribution records are erased: none written once her erasure started
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
