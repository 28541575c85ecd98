"""Erasure of a member's personal data (GDPR Art. 17, 152-FZ Art. 21): bounded, resumable, audited.

What goes: the profile's name, e-mail, phone, birthday (and its month-day index entry), customer ids and
push endpoints; every
identity pointer, referral code and short link of the member (the code stops resolving); pending
invites waiting for the member's identifiers; the personal fields of attribution records; and
whatever each registered :class:`ErasableKind` scrubs (notifications, device endpoints,
suppression lists... register yours, see below and docs/data-rights.md).

What stays, unchanged: ledger entries, balances, monthly/recurring/program counters, referral
counts, event dedupe records, click counters. They hold ids and amounts, no personal data, and
accounting needs them. Every identity pointer is replaced by a tombstone keeping only the salted
hash (``store.data_rights.ErasedIdentityItem``), so later events about the erased person enrol
nobody (a new ``member.signup`` does).

The work is split into steps, each a series of bounded transactions (≤ ``TX_ITEMS`` items) that
also advance the audit record (:class:`ErasureItem`: status, who, when, step, cursor, counts),
conditioned on its revision. An interrupted erasure (timeout, crash) resumes where it stopped on
the next call; a call that runs out of its item budget answers ``in_progress`` and the operator
calls again. A finished erasure answers the same record again (idempotent).

Registering a kind (e.g. in ``chalicelib/notify/erasure.py``)::

    from chalicelib.services.erasure import ErasableKind, partition_prefix_finder, register

    register(ErasableKind(
        name="device_endpoints",
        find=partition_prefix_finder("DEVICE#"),  # or any bounded Query (an index), never a Scan
        scrub=lambda tx, item: tx.delete(item),
    ))

and add the module to :data:`ERASABLE_MODULES` so it is imported before an erasure runs.
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pynamodb.expressions.update import Action

from chalicelib.domain import clock
from chalicelib.domain.errors import NotFound, ServiceUnavailable
from chalicelib.logs import get_logger
from chalicelib.services.auth import Principal
from chalicelib.store import keys, tenancy_repo
from chalicelib.store.birthdays import stage_birthday
from chalicelib.store.data_rights import (
    ERASURE_DONE,
    ERASURE_IN_PROGRESS,
    ERASURE_REQUESTED,
    ErasedIdentityItem,
    ErasureItem,
)
from chalicelib.store.db import Entity, get_or_none
from chalicelib.store.events import AttributionRecordItem
from chalicelib.store.members import MemberItem, PendingInviteItem, batch_get, key_from_str, key_str
from chalicelib.store.transact import Transaction

log = get_logger("sarafan.erasure")

#: Items per transaction (DynamoDB allows 100; smaller keeps each step short and cheap to retry).
TX_ITEMS = 25
#: Items scrubbed per API call; the rest is resumed by the next call.
DEFAULT_BUDGET = 1000
#: Modules that register erasable kinds (imported lazily, before the first erasure).
ERASABLE_MODULES: tuple[str, ...] = ("chalicelib.notify.erasure", "chalicelib.analytics.erasure")
ERASED_CODE = "-"
_MAX_STALE = 8


class _Stale(Exception):
    """The erasure record or the profile changed since read: read again."""


#: For scrubbers: an ``on_fail`` meaning "the item changed since it was found: redo the step".
ConcurrentChange = _Stale


@dataclass(frozen=True)
class ErasureTarget:
    """What a finder needs: the member, their codes and their identifiers' hashes (``kind:hash``)."""

    program_id: str
    member_id: str
    codes: tuple[str, ...]
    identities: tuple[str, ...]

    @property
    def partition(self) -> str:
        return keys.member_partition(self.program_id, self.member_id)


@dataclass
class Page:
    items: list[Entity]
    cursor: dict[str, Any] | None  # None: nothing more to find


Finder = Callable[[ErasureTarget, dict[str, Any] | None, int], Page]
Scrubber = Callable[[Transaction, Entity], None]


@dataclass(frozen=True)
class ErasableKind:
    """An item kind holding personal data: how to find a member's items (bounded) and scrub one.

    ``find(target, cursor, limit)`` returns at most ``limit`` items and a cursor (``None`` when
    done); it must be a Query by key prefix or an index, never a Scan. ``scrub(tx, item)`` stages
    at most one operation on ``item`` (delete it, or remove its personal attributes) and must be
    idempotent: a resumed erasure may scrub an item twice. The member export lists everything in
    the member's partition; a kind whose items live elsewhere sets ``export=True`` so the export
    lists them through ``find`` too.
    """

    name: str
    find: Finder
    scrub: Scrubber
    export: bool = False


_REGISTRY: dict[str, ErasableKind] = {}
_loaded = False


def register(kind: ErasableKind) -> ErasableKind:
    """Add a kind (idempotent by name; a later registration replaces an earlier one)."""
    _REGISTRY[kind.name] = kind
    return kind


def registered() -> list[ErasableKind]:
    global _loaded
    if not _loaded:
        for module in ERASABLE_MODULES:
            importlib.import_module(module)
        _loaded = True
    return list(_REGISTRY.values())


def partition_prefix_finder(sk_prefix: str, model: type[Entity] = Entity) -> Finder:
    """A finder for items under the member's partition whose sort key starts with ``sk_prefix``."""

    def find(target: ErasureTarget, cursor: dict[str, Any] | None, limit: int) -> Page:
        result = model.query(target.partition, Entity.SK.startswith(sk_prefix), limit=limit,
                             last_evaluated_key=cursor, consistent_read=True)
        items = list(result)
        return Page(items, result.last_evaluated_key)

    return find


# --------------------------------------------------------------------------- built-in kinds


def _hash(text: str) -> str:
    # The same digest as the event dedupe key (services.pipeline._hash): still links to the event record.
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:40]


def _scrub_own_attribution(tx: Transaction, item: Entity) -> None:
    """The member's own attribution records (as the friend): the business key names the partner's
    customer record, so only its hash is kept; reasons are fixed texts and stay."""
    if isinstance(item, AttributionRecordItem) and item.business_key and not item.business_key.startswith("sha256:"):
        tx.update(item, [AttributionRecordItem.business_key.set("sha256:" + _hash(item.business_key))],
                  Entity.PK.exists())


def _find_code_attributions(target: ErasureTarget, cursor: dict[str, Any] | None, limit: int) -> Page:
    """Records (in other members' partitions) naming one of the member's codes, code by code."""
    index = int((cursor or {}).get("code_index", 0))
    last = (cursor or {}).get("last")
    while index < len(target.codes):
        partition = keys.gsi1_attribution_code_partition(target.program_id, target.codes[index])
        result = AttributionRecordItem.gsi1.query(partition, limit=limit, last_evaluated_key=last)
        items = list(result)
        if result.last_evaluated_key:
            return Page(items, {"code_index": index, "last": result.last_evaluated_key})
        index, last = index + 1, None
        if items:
            return Page(items, {"code_index": index, "last": None} if index < len(target.codes) else None)
    return Page([], None)


def _scrub_code_attribution(tx: Transaction, item: Entity) -> None:
    """Take the erased code off the record and off the code's listing (the code may be issued again)."""
    if isinstance(item, AttributionRecordItem):
        tx.update(item, [AttributionRecordItem.code.remove(), AttributionRecordItem.GSI1PK.remove(),
                         AttributionRecordItem.GSI1SK.remove()], Entity.PK.exists())


register(ErasableKind("attribution_records", partition_prefix_finder("ATTR#"), _scrub_own_attribution))
# Other members' records (the friends'), naming this member's code: not part of the member's export.
register(ErasableKind("code_attributions", _find_code_attributions, _scrub_code_attribution))


# --------------------------------------------------------------------------- the erasure


def _steps() -> list[str]:
    return ["pointers", "profile", *[k.name for k in registered()]]


def erasure_view(record: ErasureItem) -> dict[str, Any]:
    return {
        "member_id": record.member_id,
        "program_id": record.program_id,
        "status": record.status,
        "requested_by": record.requested_by,
        "requested_at": clock.iso(record.requested_at),
        "confirmed_by": record.confirmed_by,
        "started_at": clock.iso(record.started_at) if record.started_at else None,
        "completed_at": clock.iso(record.completed_at) if record.completed_at else None,
        "step": None if record.status == ERASURE_DONE else record.step,
        "counts": dict(record.counts or {}),
    }


def get_record(program_id: str, member_id: str) -> ErasureItem | None:
    item = get_or_none(ErasureItem, keys.erasure_record(program_id, member_id), consistent=True)
    return item if isinstance(item, ErasureItem) else None


def erase(principal: Principal, program_id: str, member_id: str, *, budget: int | None = None) -> dict[str, Any]:
    """Erase (or continue erasing) one member, touching at most ``budget`` items. Returns the audit record's view."""
    budget = DEFAULT_BUDGET if budget is None else budget
    # The route's contract (auth="operator", api.http) has checked the key, the program and the operator.
    tenancy_repo.get_program(program_id)
    actor = principal.kind
    for _ in range(_MAX_STALE):
        record = get_record(program_id, member_id)
        if record is not None and record.status == ERASURE_DONE:
            return erasure_view(record)
        try:
            if record is None or record.status == ERASURE_REQUESTED:
                record = _start(program_id, member_id, actor, record)
            remaining = budget
            while record.status != ERASURE_DONE and remaining > 0:
                record, used = _advance(record, remaining)
                remaining -= max(used, 1)
        except _Stale:
            continue
        if record.status == ERASURE_DONE:
            log.info("member erased", extra={"program_id": program_id, "counts": dict(record.counts or {})})
        return erasure_view(record)
    raise ServiceUnavailable("The erasure was interrupted by concurrent changes; call again to resume")


# --------------------------------------------------------------------------- requests by the member


def request_by_member(program_id: str, member_id: str) -> dict[str, Any]:
    """Record the member's own erasure request (the wallet page; the caller checked the wallet token): an
    :class:`ErasureItem` with ``status: requested``, ``requested_by: member``, on the operator's queue
    (sparse GSI1 ``ERASUREQ#<program>``) until the operator confirms it with :func:`erase`. Idempotent: a
    second request, or one for a member already being erased, answers the existing record."""
    member = get_or_none(MemberItem, keys.member(program_id, member_id), consistent=True)
    if not isinstance(member, MemberItem):
        raise NotFound("Member not found", details={"member_id": member_id})
    existing = get_record(program_id, member_id)
    if existing is not None:
        return erasure_view(existing)
    now = clock.utcnow()
    pk, sk = keys.erasure_record(program_id, member_id)
    gpk, gsk = keys.gsi1_erasure_request(program_id, clock.iso(now), member_id)
    record = ErasureItem(PK=pk, SK=sk, GSI1PK=gpk, GSI1SK=gsk, program_id=program_id, member_id=member_id,
                         status=ERASURE_REQUESTED, requested_by="member", requested_at=now, counts={}, revision=0)
    tx = Transaction()
    tx.create(record, on_fail=_Stale())
    try:
        tx.commit()
    except _Stale:  # a concurrent request or erasure got there first
        again = get_record(program_id, member_id)
        if again is None:
            raise ServiceUnavailable("The request conflicted with another; try again") from None
        return erasure_view(again)
    log.info("erasure requested by the member", extra={"program_id": program_id})
    return erasure_view(record)


def pending_requests(program_id: str, limit: int, cursor: dict[str, Any] | None) -> dict[str, Any]:
    """Members' erasure requests the operator has not confirmed yet, oldest first (one Query per page)."""
    tenancy_repo.get_program(program_id)
    result = ErasureItem.gsi1.query(keys.gsi1_erasure_requests_partition(program_id), limit=limit,
                                    last_evaluated_key=cursor)
    items = [erasure_view(r) for r in result if isinstance(r, ErasureItem) and r.status == ERASURE_REQUESTED]
    return {"items": items, "next_cursor": result.last_evaluated_key}


def _start(program_id: str, member_id: str, actor: str, requested: ErasureItem | None) -> ErasureItem:
    member = get_or_none(MemberItem, keys.member(program_id, member_id), consistent=True)
    if not isinstance(member, MemberItem):
        raise NotFound("Member not found", details={"member_id": member_id})
    pointer_keys = list(member.pointer_keys or [])
    codes = [member.code]
    code_prefix = f"CODE#{program_id}#"
    codes += [key_from_str(k)[0][len(code_prefix):] for k in pointer_keys if k.startswith(code_prefix)]
    codes = list(dict.fromkeys(c for c in codes if c and c != ERASED_CODE))
    ident_prefix = f"IDENT#{program_id}#"
    identities = []
    for text in pointer_keys:
        pk = key_from_str(text)[0]
        if pk.startswith(ident_prefix):
            kind, _, value_hash = pk[len(ident_prefix):].rpartition("#")
            identities.append(f"{kind}:{value_hash}")
    now = clock.utcnow()
    pk, sk = keys.erasure_record(program_id, member_id)
    record = ErasureItem(
        PK=pk, SK=sk, program_id=program_id, member_id=member_id, status=ERASURE_IN_PROGRESS,
        requested_by=requested.requested_by if requested else actor,
        requested_at=requested.requested_at if requested else now,
        confirmed_by=actor, started_at=now, step="pointers", cursor={"pointers": _pointer_keys(program_id, member,
                                                                                                codes)},
        codes=codes, identities=identities, counts={}, revision=(int(requested.revision or 0) + 1) if requested else 0,
    )
    condition = (ErasureItem.revision == int(requested.revision or 0)) if requested else Entity.PK.does_not_exist()
    tx = Transaction()
    tx.put(record, condition, on_fail=_Stale())
    tx.commit()
    return record


def _pointer_keys(program_id: str, member: MemberItem, codes: list[str]) -> list[str]:
    wanted = list(member.pointer_keys or [])
    for code in codes:
        wanted += [key_str(keys.referral_code(program_id, code)), key_str(keys.short_link(code))]
    return list(dict.fromkeys(wanted))


def _target(record: ErasureItem) -> ErasureTarget:
    return ErasureTarget(record.program_id, record.member_id, tuple(record.codes or []),
                         tuple(record.identities or []))


def _save_progress(tx: Transaction, record: ErasureItem, step: str, cursor: dict[str, Any] | None,
                   counted: dict[str, int]) -> ErasureItem:
    """Stage the record's advance (conditioned on its revision) and return the record as it will be."""
    counts = dict(record.counts or {})
    for name, n in counted.items():
        if n:
            counts[name] = int(counts.get(name, 0)) + n
    revision = int(record.revision or 0)
    done = step == "done"
    actions: list[Action] = [ErasureItem.step.set(step), ErasureItem.counts.set(counts),
                             ErasureItem.revision.set(revision + 1)]
    actions.append(ErasureItem.cursor.set(cursor) if cursor is not None else ErasureItem.cursor.remove())
    now = clock.utcnow()
    if done:
        actions += [ErasureItem.status.set(ERASURE_DONE), ErasureItem.completed_at.set(now)]
    tx.update(record, actions, ErasureItem.revision == revision, on_fail=_Stale())
    record.step, record.counts, record.revision, record.cursor = step, counts, revision + 1, cursor
    if done:
        record.status, record.completed_at = ERASURE_DONE, now
    return record


def _next_step(step: str) -> str:
    steps = _steps()
    index = steps.index(step) if step in steps else len(steps) - 1
    return steps[index + 1] if index + 1 < len(steps) else "done"


def _advance(record: ErasureItem, budget: int) -> tuple[ErasureItem, int]:
    """One bounded transaction of the current step. Returns the advanced record and items touched."""
    step = record.step
    if step == "pointers":
        return _advance_pointers(record)
    if step == "profile":
        return _advance_profile(record)
    kinds = {k.name: k for k in registered()}
    kind = kinds.get(step)
    if kind is None:  # a kind no longer registered: skip it
        tx = Transaction()
        return _save_progress(tx, record, _next_step(step), None, {}), 0
    page = kind.find(_target(record), (record.cursor or {}).get("page"), min(TX_ITEMS - 1, budget))
    tx = Transaction()
    for item in page.items:
        kind.scrub(tx, item)
    if page.cursor is None:
        record = _save_progress(tx, record, _next_step(step), None, {step: len(page.items)})
    else:
        record = _save_progress(tx, record, step, {"page": page.cursor}, {step: len(page.items)})
    tx.commit()
    return record, len(page.items)


def _advance_pointers(record: ErasureItem) -> tuple[ErasureItem, int]:
    """Delete a batch of the member's pointers (codes, links, identifiers); tombstone identifiers."""
    pid, mid = record.program_id, record.member_id
    remaining = list((record.cursor or {}).get("pointers") or [])
    batch, rest = remaining[: TX_ITEMS // 2], remaining[TX_ITEMS // 2:]
    found = batch_get([key_from_str(k) for k in batch])
    tx = Transaction()
    removed = 0
    now = clock.utcnow()
    ident_prefix = f"IDENT#{pid}#"
    for text in batch:
        key = key_from_str(text)
        item = found.get(key)
        owner = getattr(item, "member_id", None)
        if item is not None and owner == mid:
            model = type(item)
            tx.delete(item, model.member_id == mid, on_fail=_Stale())  # type: ignore[attr-defined]
            removed += 1
        if key[0].startswith(ident_prefix):
            kind, _, value_hash = key[0][len(ident_prefix):].rpartition("#")
            tpk, tsk = keys.erased_identity(pid, kind, value_hash)
            tx.put(ErasedIdentityItem(PK=tpk, SK=tsk, program_id=pid, kind=kind, erased_at=now))
            # A friend's invite waiting for this identifier names the person: it goes too.
            ipk, isk = keys.pending_invite(pid, kind, value_hash)
            tx.delete(PendingInviteItem(PK=ipk, SK=isk))
    cursor = {"pointers": rest} if rest else None
    record = _save_progress(tx, record, "pointers" if rest else "profile", cursor, {"pointers": removed})
    tx.commit()
    return record, len(batch)


def _advance_profile(record: ErasureItem) -> tuple[ErasureItem, int]:
    member = get_or_none(MemberItem, keys.member(record.program_id, record.member_id), consistent=True)
    tx = Transaction()
    scrubbed = 0
    if isinstance(member, MemberItem) and member.erased_at is None:
        revision = int(member.revision or 0)
        tx.update(member, [
            MemberItem.name.remove(), MemberItem.email.remove(), MemberItem.phone.remove(),
            MemberItem.birthday.remove(), MemberItem.birthday_set_at.remove(),
            MemberItem.customer_ids.set({}), MemberItem.push_endpoints.set([]), MemberItem.pointer_keys.set([]),
            MemberItem.code.set(ERASED_CODE), MemberItem.erased_at.set(clock.utcnow()),
            MemberItem.revision.set(revision + 1),
        ], MemberItem.revision == revision, on_fail=_Stale())
        # The birthday's month-day index entry (its key holds the month and day) goes with the birthday.
        stage_birthday(tx, record.program_id, record.member_id, member.birthday, None, clock.utcnow())
        scrubbed = 1
    record = _save_progress(tx, record, _next_step("profile"), None, {"profile": scrubbed})
    tx.commit()
    return record, 1

