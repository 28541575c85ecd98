"""Erasure of a member's personal data (GDPR Art. 17, 152-FZ Art. 21): bounded, resumable, audited.

What goes: the profile's name, e-mail, phone, birthday (and its month-day index entry), customer ids and
push endpoints; every
identity pointer, referral code and short link of the member (the code stops resolving); pending
invites waiting for the member's identifiers; the personal fields of attribution records; and
whatever each registered :class:`chalicelib.store.erasure_kinds.ErasableKind` scrubs (notifications, device endpoints,
suppression lists, her place on fraud-signal pointers and review items... register yours, see below and
docs/data-rights.md).

What stays, unchanged: ledger entries, balances, monthly/recurring/program counters, referral
counts, event dedupe records, click counters. They hold ids and amounts, no personal data, and
accounting needs them. Every identity pointer is replaced by a tombstone keeping only the salted
hash (``store.data_rights.ErasedIdentityItem``), so later events about the erased person enrol
nobody (a new ``member.signup`` does).

The transaction that starts an erasure also sets ``erased_at`` on the profile (conditioned on its revision): from
then on every write that would attach personal data or a code to the member is refused in its own transaction
(conditioned on ``erased_at`` not existing: events, codes, coupons, devices, outbox messages; docs/data-rights.md).

The work is split into steps, each a series of bounded transactions (≤ ``TX_ITEMS`` items) that
also advance the audit record (``ErasureItem``: status, who, when, step, cursor, counts),
conditioned on its revision. An interrupted erasure (timeout, crash) resumes where it stopped on
the next call; a call that runs out of its item budget answers ``in_progress`` and the operator
calls again. A finished erasure answers the same record again (idempotent).

This module decides the steps, their order, their sizes and the budget; each step's one transaction is the
``DataRightsStore`` port's (``deps.data_rights``, ``services.ports``). The erasable kinds are registered with
the store (``store.erasure_kinds``, which says how to register one; the modules that register kinds are
``services.ports.ERASABLE_MODULES``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from chalicelib.domain import clock
from chalicelib.domain.errors import NotFound, ServiceUnavailable
from chalicelib.domain.records import ERASURE_DONE, ERASURE_REQUESTED, StaleErasure
from chalicelib.logs import get_logger
from chalicelib.services.auth import Principal
from chalicelib.services.ports import Ports

if TYPE_CHECKING:
    from chalicelib.store.data_rights import ErasureItem

log = get_logger("sarafan.erasure")

#: Items a kind's step finds per transaction, the record included (DynamoDB allows 100; smaller keeps each step short
#: and cheap to retry). The pointers step takes ``TX_ITEMS // 2`` pointers, each with a tombstone and an invite
#: deletion (37 items with the record); ``notify_state`` marks up to 60 suppressed hashes (62): docs/data-rights.md.
TX_ITEMS = 25
#: Items scrubbed per API call; the rest is resumed by the next call.
DEFAULT_BUDGET = 1000
_MAX_STALE = 8


@dataclass(frozen=True)
class _Step:
    """One bounded step of an erasure: where it stands and how many items it may still touch."""

    deps: Ports
    record: ErasureItem
    budget: int


def _steps(deps: Ports) -> list[str]:
    return ["pointers", "profile", *deps.data_rights.kinds()]


def erasure_view(record: ErasureItem) -> dict[str, Any]:
    return {
        "member_id": record.member_id,
        "program_id": record.program_id,
        "status": record.status,
        "requested_by": record.requested_by,
        "requested_by_key": record.requested_by_key,
        "requested_at": clock.iso(record.requested_at),
        "confirmed_by": record.confirmed_by,
        "confirmed_by_key": record.confirmed_by_key,
        "started_at": clock.iso(record.started_at) if record.started_at else None,
        "completed_at": clock.iso(record.completed_at) if record.completed_at else None,
        "step": None if record.status == ERASURE_DONE else record.step,
        "counts": dict(record.counts or {}),
    }


def get_record(deps: Ports, program_id: str, member_id: str) -> ErasureItem | None:
    return deps.members.erasure_record(program_id, member_id)


def erase(deps: Ports, principal: Principal, program_id: str, member_id: str, *,
          budget: int | None = None) -> dict[str, Any]:
    """Erase (or continue erasing) one member, touching at most ``budget`` items. Returns the audit record's view."""
    budget = DEFAULT_BUDGET if budget is None else budget
    # The route's contract (auth="operator", api.http) has checked the key, the program and the operator.
    deps.programs.get(program_id)
    actor, actor_key = principal.kind, principal.key_id
    for _ in range(_MAX_STALE):
        record = get_record(deps, program_id, member_id)
        if record is not None and record.status == ERASURE_DONE:
            return erasure_view(record)
        try:
            if record is None or record.status == ERASURE_REQUESTED:
                record = _start(deps, program_id, member_id, (actor, actor_key), record)
            remaining = budget
            while record.status != ERASURE_DONE and remaining > 0:
                record, used = _advance(_Step(deps, record, remaining))
                remaining -= max(used, 1)
        except StaleErasure:
            continue
        if record.status == ERASURE_DONE:
            log.info("member erased", extra={"program_id": program_id, "counts": dict(record.counts or {})})
        return erasure_view(record)
    raise ServiceUnavailable("The erasure was interrupted by concurrent changes; call again to resume")


# --------------------------------------------------------------------------- requests by the member


def request_by_member(deps: Ports, program_id: str, member_id: str) -> dict[str, Any]:
    """Record the member's own erasure request (the wallet page; the caller checked the wallet token): an
    erasure record with ``status: requested``, ``requested_by: member``, on the operator's queue
    (sparse GSI1 ``ERASUREQ#<program>``) until the operator confirms it with :func:`erase`. Idempotent: a
    second request, or one for a member already being erased, answers the existing record."""
    if deps.members.get(program_id, member_id, consistent=True) is None:
        raise NotFound("Member not found", details={"member_id": member_id})
    existing = get_record(deps, program_id, member_id)
    if existing is not None:
        return erasure_view(existing)
    record = deps.data_rights.request(program_id, member_id, deps.clock.now())
    if record is None:  # a concurrent request or erasure got there first
        again = get_record(deps, program_id, member_id)
        if again is None:
            raise ServiceUnavailable("The request conflicted with another; try again")
        return erasure_view(again)
    log.info("erasure requested by the member", extra={"program_id": program_id})
    return erasure_view(record)


def pending_requests(deps: Ports, program_id: str, limit: int, cursor: dict[str, Any] | None) -> dict[str, Any]:
    """Members' erasure requests the operator has not confirmed yet, oldest first (one Query per page)."""
    deps.programs.get(program_id)
    page = deps.data_rights.requests(program_id, limit, cursor)
    return {"items": [erasure_view(r) for r in page.items], "next_cursor": page.next_cursor}


def _start(deps: Ports, program_id: str, member_id: str, actor: tuple[str, str | None],
           requested: ErasureItem | None) -> ErasureItem:
    """The record in progress and ``erased_at`` on the profile, in one transaction (``DataRightsStore.start``):
    from then on nothing attaches personal data or a code to the member (see the module's docstring)."""
    member = deps.members.get(program_id, member_id, consistent=True)
    if member is None:
        raise NotFound("Member not found", details={"member_id": member_id})
    return deps.data_rights.start(member, requested, actor[0], deps.clock.now(), actor[1])


def _next_step(deps: Ports, step: str) -> str:
    steps = _steps(deps)
    index = steps.index(step) if step in steps else len(steps) - 1
    return steps[index + 1] if index + 1 < len(steps) else "done"


def _advance(step: _Step) -> tuple[ErasureItem, int]:
    """One bounded transaction of the current step. Returns the advanced record and items touched."""
    name = step.record.step
    if name == "pointers":
        return _advance_pointers(step)
    if name == "profile":
        return _advance_profile(step)
    deps, record = step.deps, step.record
    return deps.data_rights.scrub(record, name, min(TX_ITEMS - 1, step.budget), _next_step(deps, name),
                                  deps.clock.now())


def _advance_pointers(step: _Step) -> tuple[ErasureItem, int]:
    """Delete a batch of the member's pointers (codes, links, identifiers); tombstone identifiers."""
    deps = step.deps
    return deps.data_rights.erase_pointers(step.record, TX_ITEMS // 2, _next_step(deps, "pointers"), deps.clock.now())


def _advance_profile(step: _Step) -> tuple[ErasureItem, int]:
    deps = step.deps
    return deps.data_rights.erase_profile(step.record, _next_step(deps, "profile"), deps.clock.now()), 1
