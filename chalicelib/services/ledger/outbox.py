"""Points messages: one per member and event, derived from the event's ledger entries.

Neither ``points_earned`` nor ``points_reversed`` is written by the event's transaction: the stream
consumer derives them from the INSERT records of the reward entries (:func:`earned_groups`) and of a
refund's reversal entries (:func:`reversed_groups`), see ``notify.sources.on_ledger_entry``. So the
webhook writes no outbox item (issue #10: 3 write units per member paid or clawed back, counting the
pending index).

The message id is derived from the business key, the member and the template (as the transaction
used to write it), so a replay of the fact or of the stream batch cannot queue a second message; the
notifier renders ``template`` with ``params`` (see ``notify.kinds``) in the member's locale at delivery.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from chalicelib.domain import clock
from chalicelib.domain.events import ORDER_CANCELLED, ORDER_REFUNDED
from chalicelib.store.ledger import (
    KIND_REVERSAL,
    KIND_REWARD,
    STATUS_AVAILABLE,
    STATUS_PENDING,
    LedgerEntryItem,
    stable_id,
)

POINTS_EARNED = "points_earned"
POINTS_REVERSED = "points_reversed"


def message_id(business_key: str, member_id: str, template: str, *entry_ids: str) -> str:
    """The message of a member's entries of one event (``entry_ids`` only for a follow-up message)."""
    return stable_id("msg", business_key, member_id, template, *entry_ids)


def message_params(template: str, business_key: str, points_unit: str | None,
                   entries: list[LedgerEntryItem]) -> dict[str, Any]:
    points = sum(abs(int(e.points)) for e in entries)
    pending = [e for e in entries if e.status == STATUS_PENDING]
    params: dict[str, Any] = {
        "points": points,
        "points_unit": points_unit,
        "event_type": business_key.rsplit("|", 1)[-1],
        "business_key": business_key,
        "reasons": [e.reason for e in entries],
        # What chalicelib/notify/kinds.py needs to pick the template (welcome, upline level...).
        "levels": sorted({int(e.level or 0) for e in entries}),
        "reason_codes": sorted({str(e.reason_code) for e in entries if e.reason_code}),
    }
    if template == POINTS_EARNED:
        params["pending_points"] = sum(int(e.points) for e in pending)
        params["available_points"] = points - params["pending_points"]
        if pending:
            params["available_at"] = clock.iso(min(e.available_at for e in pending if e.available_at))
    return params


#: Business keys of rewards a job announces with its own message (the birthday job's ``birthday_gift``).
SELF_ANNOUNCED_PREFIXES = ("birthday|",)


def announces(entry: LedgerEntryItem) -> bool:
    """A reward of the rules engine (an event's posting: it names its rules version) the member hears about at
    once (``points_earned``): not held for review. Rewards of jobs that write their own message (the birthday
    job...) are not announced twice."""
    return (entry.kind == KIND_REWARD and entry.rule_version is not None
            and entry.status in (STATUS_PENDING, STATUS_AVAILABLE)
            and bool(entry.business_key) and int(entry.points or 0) > 0 and entry.released_at is None
            and not str(entry.business_key).startswith(SELF_ANNOUNCED_PREFIXES))


def _groups(entries: Iterable[LedgerEntryItem],
            announced: Callable[[LedgerEntryItem], bool]) -> dict[tuple[str, str, str], list[LedgerEntryItem]]:
    """The ``announced`` entries grouped per (program, member, business key), in ledger order."""
    groups: dict[tuple[str, str, str], list[LedgerEntryItem]] = {}
    for entry in entries:
        if announced(entry):
            groups.setdefault((entry.program_id, entry.member_id, str(entry.business_key)), []).append(entry)
    for group in groups.values():
        group.sort(key=lambda e: (int(e.level or 0), e.SK))
    return groups


def earned_groups(entries: Iterable[LedgerEntryItem]) -> dict[tuple[str, str, str], list[LedgerEntryItem]]:
    """New reward entries grouped per (program, member, event), in ledger order."""
    return _groups(entries, announces)


#: The facts whose reversal entries the member hears about (``points_reversed``); a fraud review's voids
#: (``services.review``) reverse points the member was never told about and send nothing.
REFUND_SUFFIXES = (f"|{ORDER_REFUNDED}", f"|{ORDER_CANCELLED}")


def announces_reversal(entry: LedgerEntryItem) -> bool:
    """A refund's (or cancellation's) clawback of a reward: ``points_reversed`` to the member it takes from."""
    return (entry.kind == KIND_REVERSAL and bool(entry.business_key) and int(entry.points or 0) < 0
            and str(entry.business_key).endswith(REFUND_SUFFIXES))


def reversed_groups(entries: Iterable[LedgerEntryItem]) -> dict[tuple[str, str, str], list[LedgerEntryItem]]:
    """New reversal entries of refunds grouped per (program, member, refund), in ledger order."""
    return _groups(entries, announces_reversal)
