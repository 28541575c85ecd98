"""Outbox messages: one per member notified, created in the event's transaction (delivered later).

The notifier reads pending messages (``GSI1`` by day) and renders ``template`` with ``params`` in
``locale`` (see ``domain.l10n``); the message id is derived from the business key, so a replay of
the fact cannot queue a second message.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chalicelib.domain import clock
from chalicelib.services.outcomes import AlreadyProcessed
from chalicelib.store import keys
from chalicelib.store.ledger import STATUS_PENDING, LedgerEntryItem, OutboxItem, day_of, stable_id
from chalicelib.store.members import MemberItem

if TYPE_CHECKING:
    from chalicelib.services.event_context import EventContext
    from chalicelib.store.transact import Transaction

POINTS_EARNED = "points_earned"
POINTS_REVERSED = "points_reversed"


def stage_points_message(ctx: EventContext, tx: Transaction, member_id: str, profile: MemberItem | None,
                         template: str, entries: list[LedgerEntryItem]) -> None:
    points = sum(abs(int(e.points)) for e in entries)
    if points <= 0:
        return
    message_id = stable_id("msg", ctx.business_key, member_id, template)
    now = ctx.now
    pending = [e for e in entries if e.status == STATUS_PENDING]
    params: dict[str, Any] = {
        "points": points,
        "points_unit": ctx.program.points_unit,
        "event_type": ctx.event.type,
        "business_key": ctx.business_key,
        "reasons": [e.reason for e in entries],
    }
    if template == POINTS_EARNED:
        params["pending_points"] = sum(int(e.points) for e in pending)
        params["available_points"] = points - params["pending_points"]
        if pending:
            params["available_at"] = clock.iso(min(e.available_at for e in pending if e.available_at))
    pk, sk = keys.outbox_message(ctx.program_id, message_id)
    gpk, gsk = keys.gsi1_outbox_pending(day_of(now), clock.iso(now), message_id)
    tx.create(OutboxItem(
        PK=pk, SK=sk, GSI1PK=gpk, GSI1SK=gsk, program_id=ctx.program_id, message_id=message_id,
        member_id=member_id, template=template,
        locale=(profile.locale if profile and profile.locale else ctx.program.default_locale),
        params=params,
        channels={"email": bool(profile and profile.email), "sms": bool(profile and profile.phone),
                  "push": bool(profile and profile.push_endpoints)},
        status="pending", created_at=now,
    ), on_fail=AlreadyProcessed())
