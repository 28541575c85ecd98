"""Points messages: one per member and event, derived from the event's ledger entries.

``points_earned`` is not written by the event's transaction: the stream consumer derives it from
the reward entries' INSERT records (``notify.sources.on_ledger_entry``, :func:`earned_messages`),
so the webhook writes no outbox item for it (issue #10: 3 write units per member paid, counting the
pending index). ``points_reversed`` (refunds, rarer) is still created in the refund's transaction
(:func:`stage_points_message`).

Either way the message id is derived from the business key, the member and the template, so a
replay of the fact or of the stream batch cannot queue a second message; the notifier renders
``template`` with ``params`` (see ``notify.kinds``) in the member's locale at delivery.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from chalicelib.domain import clock
from chalicelib.services.outcomes import AlreadyProcessed
from chalicelib.store import keys
from chalicelib.store.ledger import (
    KIND_REWARD,
    STATUS_AVAILABLE,
    STATUS_PENDING,
    LedgerEntryItem,
    OutboxItem,
    day_of,
    stable_id,
)
from chalicelib.store.members import MemberItem

if TYPE_CHECKING:
    from chalicelib.services.event_context import EventContext
    from chalicelib.store.transact import Transaction

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


def stage_points_message(ctx: EventContext, tx: Transaction, member_id: str, profile: MemberItem | None,
                         template: str, entries: list[LedgerEntryItem]) -> None:
    if sum(abs(int(e.points)) for e in entries) <= 0:
        return
    mid = message_id(ctx.business_key, member_id, template)
    now = ctx.now
    params = message_params(template, ctx.business_key, ctx.program.points_unit, entries)
    pk, sk = keys.outbox_message(ctx.program_id, mid)
    gpk, gsk = keys.gsi1_outbox_pending(day_of(now), clock.iso(now), mid)
    # Channels (and the final locale) are decided at delivery from the then-current profile
    # (chalicelib/notify): an e-mail arriving with this very event is used.
    tx.create(OutboxItem(
        PK=pk, SK=sk, GSI1PK=gpk, GSI1SK=gsk, program_id=ctx.program_id, message_id=mid,
        member_id=member_id, template=template,
        locale=(profile.locale if profile and profile.locale else ctx.program.default_locale),
        params=params, business_key=ctx.business_key, status="pending", created_at=now,
    ), on_fail=AlreadyProcessed())


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


def earned_groups(entries: Iterable[LedgerEntryItem]) -> dict[tuple[str, str, str], list[LedgerEntryItem]]:
    """New reward entries grouped per (program, member, event), in ledger order."""
    groups: dict[tuple[str, str, str], list[LedgerEntryItem]] = {}
    for entry in entries:
        if announces(entry):
            groups.setdefault((entry.program_id, entry.member_id, str(entry.business_key)), []).append(entry)
    for group in groups.values():
        group.sort(key=lambda e: (int(e.level or 0), e.SK))
    return groups
