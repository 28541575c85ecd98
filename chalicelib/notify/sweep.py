"""Scheduled jobs of the notification capability.

* :func:`run_sweep` picks up messages still pending past a grace period (the provider was down,
  Lambda gave up on a batch, a lease expired, a held message is now due). It reads the pending
  index ``OUTBOX#PENDING#<day>`` for the last :data:`SWEEP_DAYS` days, bounded per run; never a Scan.
* :func:`run_reminders` writes sleeping-member reminders: for every program with
  ``sleeping_reminder_days`` N, the members whose last activity day is exactly N days ago
  (index ``ACTIVE#<day>``) and who have available points.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from chalicelib.domain import clock
from chalicelib.services import ports
from chalicelib.store import keys
from chalicelib.store.ledger import BalanceItem, OutboxItem, stable_id
from chalicelib.store.notify import ActivityItem

SWEEP_DAYS = 3
GRACE_SECONDS = 60
MAX_PER_RUN = 500


def due_messages(now: datetime, limit: int = MAX_PER_RUN) -> list[OutboxItem]:
    cutoff = clock.iso(now - timedelta(seconds=GRACE_SECONDS))
    found: list[OutboxItem] = []
    for back in range(SWEEP_DAYS, -1, -1):
        day = (now - timedelta(days=back)).strftime("%Y-%m-%d")
        for item in OutboxItem.gsi1.query(keys.outbox_pending_partition(day), OutboxItem.GSI1SK < cutoff,  # noqa: SIM300
                                          limit=limit - len(found)):
            if isinstance(item, OutboxItem):
                found.append(item)
        if len(found) >= limit:
            break
    return found


def run_sweep(now: datetime | None = None) -> dict[str, Any]:
    from chalicelib.notify import sources

    now = now or ports.current().clock.now()
    items = due_messages(now)
    outcomes = sources.deliver_items(items)
    summary: dict[str, int] = {}
    for outcome in outcomes:
        summary[outcome.status] = summary.get(outcome.status, 0) + 1
    return {"found": len(items), **summary}


def run_reminders(now: datetime | None = None) -> dict[str, Any]:
    from chalicelib.notify import settings as program_settings
    from chalicelib.notify import sources
    from chalicelib.store import tenancy_repo

    now = now or ports.current().clock.now()
    written = 0
    cursor = None
    while True:
        programs, cursor = tenancy_repo.list_programs(100, cursor)
        for program in programs:
            days = program_settings.of(program).sleeping_reminder_days
            if not days:
                continue
            day = (now - timedelta(days=days)).strftime("%Y-%m-%d")
            pk = keys.gsi1_activity_day(day, program.program_id, "")[0]
            sleepers = [a for a in ActivityItem.gsi1.query(pk, ActivityItem.GSI1SK.startswith(f"{program.program_id}#"))
                        if isinstance(a, ActivityItem) and a.reminded_for != a.day]
            for start in range(0, len(sleepers), 100):
                chunk = sleepers[start:start + 100]
                balances = {b.PK: b for b in BalanceItem.batch_get([keys.balance(a.program_id, a.member_id)
                                                                    for a in chunk])}
                for activity in chunk:
                    balance = balances.get(keys.member_partition(activity.program_id, activity.member_id))
                    available = int(balance.available or 0) if isinstance(balance, BalanceItem) else 0
                    if available <= 0:
                        continue
                    if sources.new_outbox(activity.program_id, activity.member_id, "sleeping_reminder",
                                          {"balance": available}, None, f"sleeping|{activity.day}",
                                          stable_id("msg", "sleeping", activity.program_id, activity.member_id,
                                                    activity.day)):
                        written += 1
                    ActivityItem(*keys.activity(activity.program_id, activity.member_id)).update(
                        actions=[ActivityItem.reminded_for.set(activity.day)])
        if not cursor:
            return {"reminders": written}
