"""Analytics stream handlers (registered with ``notify.dispatcher``; listed in ``HANDLER_MODULES``).

Sources, each counted once per source item (``analytics.store.apply``: marker + counters in one transaction):

* ``click_counter`` INSERT/MODIFY: one link click (the record's new ``clicks`` value names the increment);
* ``member`` INSERT: a signup (referred when it has a referrer at join), by channel/UTM and partner;
* ``event`` INSERT (the processed-fact record): ``lead.created`` → a lead; ``order.paid`` of a member → an
  order with its revenue, first or repeat purchase (``order_number``), referred or not, cohort by join month,
  viral cycle (referrer's join → this first purchase), leaderboard scores of the referrer;
  ``order.refunded`` → refunds;
* ``outbox`` MODIFY to a final status (sent, failed, skipped): the delivery stats;
* ``ledger_entry`` INSERT: reward points (cost) per funding partner and rule, reversals negative,
  redemptions as redeemed points.

The day of a fact is the UTC day Sarafan processed it (``received_at`` / ``created_at``). Figures are as
fresh as the stream: seconds behind the webhook in AWS.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from chalicelib.analytics.store import Increment, LeaderDelta, apply, partition
from chalicelib.domain import analytics as fig
from chalicelib.notify import dispatcher
from chalicelib.store import keys
from chalicelib.store.counters import ClickCounterItem
from chalicelib.store.events import EventItem
from chalicelib.store.ledger import LedgerEntryItem, OutboxItem
from chalicelib.store.members import MemberItem, batch_get

log = logging.getLogger("sarafan.analytics")


def _day(at: datetime) -> str:
    return at.strftime("%Y-%m-%d")


def day_rows(program_id: str, day: str, partner_id: str | None, counters: dict[str, int],
             channel: str | None = None, utm: str | None = None) -> list[Increment]:
    """The same counters on the coalition row, the partner's row and the channel/UTM rows of the day."""
    out = [Increment(partition(program_id, "DAY"), day, dict(counters))]
    if partner_id:
        out.append(Increment(partition(program_id, "PARTNERDAY"), f"{day}#{partner_id}", dict(counters)))
    if channel:
        out.append(Increment(partition(program_id, "CHDAY"), f"{day}#ch#{channel}", dict(counters)))
    if utm:
        out.append(Increment(partition(program_id, "CHDAY"), f"{day}#utm#{utm}", dict(counters)))
    return out


def _acquisition(member: MemberItem | None) -> tuple[str | None, str | None]:
    acq = dict(member.acquisition or {}) if member is not None else {}
    utm = acq.get("utm") if isinstance(acq.get("utm"), dict) else None
    return fig.dimension_value(acq.get("channel")), (fig.utm_label(utm) if utm else None)


def _safe(record: dispatcher.StreamRecord) -> Any:
    try:
        return record.item()
    except Exception:
        log.warning("unreadable record", extra={"sequence_number": record.sequence_number})
        return None


@dispatcher.handles("click_counter")
def on_click(records: list[dispatcher.StreamRecord]) -> set[str]:
    for record in records:
        if record.event_name not in ("INSERT", "MODIFY"):
            continue
        item = _safe(record)
        if not isinstance(item, ClickCounterItem) or not item.program_id or not item.day:
            continue
        source = fig.dimension_value(item.utm_source)
        rows = [Increment(partition(item.program_id, "DAY"), item.day, {"clicks": 1})]
        if source != "-":
            rows.append(Increment(partition(item.program_id, "CHDAY"), f"{item.day}#src#{source}", {"clicks": 1}))
        apply(f"{item.PK}|{item.SK}|{int(item.clicks or 0)}", rows)
    return set()


@dispatcher.handles("member")
def on_member_joined(records: list[dispatcher.StreamRecord]) -> set[str]:
    for record in records:
        if record.event_name != "INSERT":
            continue
        member = _safe(record)
        if not isinstance(member, MemberItem):
            continue
        channel, utm = _acquisition(member)
        partner = (member.acquisition or {}).get("partner_id") if isinstance(member.acquisition, dict) else None
        counters = {"signups": 1, "signups_referred": 1 if member.referrer_id else 0}
        rows = day_rows(member.program_id, _day(member.joined_at), partner, counters, channel, utm)
        rows.append(Increment(partition(member.program_id, "TOTAL"), "TOTAL", {"members": 1}))
        apply(f"{member.PK}|joined", rows)
    return set()


def _split_business_key(business_key: str) -> tuple[str, str, str]:
    parts = business_key.split("|")
    return parts[0], (parts[1] if len(parts) > 1 else ""), parts[-1]


@dispatcher.handles("event")
def on_event(records: list[dispatcher.StreamRecord]) -> set[str]:
    events: list[EventItem] = []
    for record in records:
        if record.event_name in ("INSERT", "MODIFY"):
            item = _safe(record)
            # A MODIFY only when the record replaced refunds parked at its key (its first write as a record).
            if (isinstance(item, EventItem) and item.business_key
                    and (record.event_name == "INSERT" or item.replaced_parked)):
                events.append(item)
    if not events:
        return set()
    # One batched read of the members these facts are about (join month, referrer, channel) ...
    subjects = {(_split_business_key(e.business_key)[0], str(e.member_id)) for e in events if e.member_id}
    profiles = batch_get([keys.member(p, m) for p, m in subjects])
    # ... and of their referrers (join time for the viral cycle, code and name for the leaderboard).
    referrers = {(p, str(getattr(profiles.get(keys.member(p, m)), "referrer_id", None) or "")) for p, m in subjects}
    profiles.update(batch_get([keys.member(p, r) for p, r in referrers if r]))
    for event in events:
        _count_event(event, profiles)
    return set()


def _count_event(event: EventItem, profiles: dict[Any, Any]) -> None:
    program_id, partner_id, event_type = _split_business_key(event.business_key)
    at, fp = event.received_at, dict(event.fingerprint or {})
    day = _day(at)
    if event_type == "order.refunded":
        apply(f"{event.PK}", day_rows(program_id, day, partner_id, {
            "refunds": 1, "refund_amount": int(fp.get("refund.amount") or 0)}))
        return
    member = profiles.get(keys.member(program_id, str(event.member_id))) if event.member_id else None
    if not isinstance(member, MemberItem):
        return
    channel, utm = _acquisition(member)
    referred = bool(member.referrer_id)
    rows: list[Increment] = []
    leaders: list[LeaderDelta] = []
    if event_type == "lead.created":
        rows = day_rows(program_id, day, partner_id, {"leads": 1}, channel, utm)
    elif event_type in ("order.paid", "deal.won") and event.order_number:
        number, total = int(event.order_number), int(fp.get("order.total") or 0)
        counters = {"orders": 1, "revenue": total, "orders_referred": int(referred),
                    "revenue_referred": total if referred else 0,
                    "first_purchases": int(number == 1), "repeat_purchases": int(number > 1),
                    "first_purchases_referred": int(number == 1 and referred)}
        referrer = profiles.get(keys.member(program_id, str(member.referrer_id))) if referred else None
        if number == 1 and isinstance(referrer, MemberItem):
            counters[f"cycle_{fig.cycle_bucket((at - referrer.joined_at).total_seconds())}"] = 1
        rows = day_rows(program_id, day, partner_id, counters, channel, utm)
        cohort = f"{_day(member.joined_at)[:7]}#{'referred' if referred else 'other'}"
        rows.append(Increment(partition(program_id, "COHORT"), cohort, {
            "customers": int(number == 1), "repeaters": int(number == 2), "orders": 1, "revenue": total}))
        if isinstance(referrer, MemberItem):
            label = {"code": referrer.code, "name": fig.mask_name(referrer.name)}
            for period in fig.periods_of(at):
                leaders.append(LeaderDelta(program_id, "revenue", period, referrer.member_id, total, at, label))
                if number == 1:
                    leaders.append(LeaderDelta(program_id, "converted", period, referrer.member_id, 1, at, label))
    if rows or leaders:
        apply(f"{event.PK}", rows, leaders)


@dispatcher.handles("ledger_entry")
def on_ledger(records: list[dispatcher.StreamRecord]) -> set[str]:
    for record in records:
        if record.event_name != "INSERT":
            continue
        entry = _safe(record)
        if not isinstance(entry, LedgerEntryItem):
            continue
        points, day = int(entry.points or 0), _day(entry.created_at)
        if entry.kind in ("reward", "reversal") and (entry.kind == "reward" or entry.reverses_entry_id):
            funding = entry.funding_partner_id or entry.partner_id
            rows = day_rows(entry.program_id, day, funding, {"reward_points": points})
            rows.append(Increment(partition(entry.program_id, "RULEDAY"),
                                  f"{day}#{entry.rule_id or '-'}#{funding or '-'}",
                                  {"reward_points": points, "rewards": 1 if entry.kind == "reward" else 0}))
        elif entry.kind in ("redemption", "redemption_return"):
            rows = day_rows(entry.program_id, day, entry.partner_id, {"redeemed_points": -points})
        else:
            continue
        apply(f"{entry.PK}|{entry.SK}", rows)
    return set()


@dispatcher.handles("outbox")
def on_outbox_finished(records: list[dispatcher.StreamRecord]) -> set[str]:
    for record in records:
        if record.event_name != "MODIFY":
            continue
        item = _safe(record)
        if not isinstance(item, OutboxItem) or item.status not in fig.DELIVERY_STATUSES or item.merged_into:
            continue
        day = (item.finished_at or "")[:10] or _day(item.created_at)
        apply(f"{item.PK}|{item.status}", [Increment(partition(item.program_id, "DAY"), day,
                                                      {f"notifications_{item.status}": 1})])
    return set()
