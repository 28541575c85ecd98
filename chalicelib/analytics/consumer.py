"""Analytics stream handlers (registered with ``notify.dispatcher``; listed in ``HANDLER_MODULES``).

Sources, each counted once per source item, a batch's items together (``analytics.store.count``: the batch's
counters merged per row and its groups' "counted" markers in one transaction):

* ``click_counter`` INSERT/MODIFY: one link click (the record's new ``clicks`` value names the increment);
* ``member`` INSERT: a signup (referred when it has a referrer at join), by channel/UTM and partner (not a
  member whose creating transaction counted it, ``signup_counted``: the member import's);
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

from chalicelib.analytics.store import Figures, Increment, LeaderDelta, count, partition
from chalicelib.analytics.store import source as store_source
from chalicelib.domain import analytics as fig
from chalicelib.notify import dispatcher
from chalicelib.store import keys
from chalicelib.store.count_once import Source
from chalicelib.store.counters import ClickCounterItem
from chalicelib.store.events import EventItem
from chalicelib.store.ledger import LedgerEntryItem, OutboxItem
from chalicelib.store.members import MemberItem, batch_get

log = logging.getLogger("sarafan.analytics")

#: Clicks of one counter item counted under one marker (its set of counted click numbers stays small).
CLICK_BLOCK = 50


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


def _click(item: ClickCounterItem) -> Source[Figures] | None:
    if not item.program_id or not item.day:
        return None
    source = fig.dimension_value(item.utm_source)
    rows = [Increment(partition(item.program_id, "DAY"), item.day, {"clicks": 1})]
    if source != "-":
        rows.append(Increment(partition(item.program_id, "CHDAY"), f"{item.day}#src#{source}", {"clicks": 1}))
    clicks = int(item.clicks or 0)
    # One marker per CLICK_BLOCK clicks of a counter: a busy link's marker stays small.
    group = f"clicks|{item.PK}|{item.SK}|{clicks // CLICK_BLOCK}"
    return store_source(item.program_id, group, str(clicks), Figures(rows))


def signup_rows(program_id: str, joined_at: datetime, referred: bool, acquisition: Any) -> list[Increment]:
    """What a member's signup adds (by day, partner, channel/UTM; the members total). The member import
    counts its members with these in the rows' own transactions (``MemberItem.signup_counted``)."""
    acq = dict(acquisition) if isinstance(acquisition, dict) else {}
    utm = acq.get("utm") if isinstance(acq.get("utm"), dict) else None
    channel, utm_label = fig.dimension_value(acq.get("channel")), (fig.utm_label(utm) if utm else None)
    counters = {"signups": 1, "signups_referred": 1 if referred else 0}
    rows = day_rows(program_id, _day(joined_at), acq.get("partner_id"), counters, channel, utm_label)
    rows.append(Increment(partition(program_id, "TOTAL"), "TOTAL", {"members": 1}))
    return rows


def _joined(member: MemberItem) -> Source[Figures]:
    rows = signup_rows(member.program_id, member.joined_at, bool(member.referrer_id), member.acquisition)
    return store_source(member.program_id, f"joined|{member.member_id}", "joined", Figures(rows))


def _split_business_key(business_key: str) -> tuple[str, str, str]:
    parts = business_key.split("|")
    return parts[0], (parts[1] if len(parts) > 1 else ""), parts[-1]


@dispatcher.handles("click_counter", "member", "event", "ledger_entry", "outbox")
def on_records(records: list[dispatcher.StreamRecord]) -> set[str]:
    """A batch's records of every kind counted together: one transaction for the batch (as far as it fits),
    one marker per event (its record, ledger entries and messages), rows shared by the batch written once."""
    sources: list[Source[Figures] | None] = []
    events: list[EventItem] = []
    for record in records:
        item = _safe(record)
        if item is None:
            continue
        if isinstance(item, ClickCounterItem) and record.event_name in ("INSERT", "MODIFY"):
            sources.append(_click(item))
        elif isinstance(item, MemberItem) and record.event_name == "INSERT":
            if not item.signup_counted:  # else counted where it was created (the member import)
                sources.append(_joined(item))
        elif isinstance(item, EventItem) and item.business_key and (
                record.event_name == "INSERT" or (record.event_name == "MODIFY" and item.replaced_parked)):
            events.append(item)  # a MODIFY: the record replaced refunds parked at its key (services.ledger.refunds)
        elif isinstance(item, LedgerEntryItem) and record.event_name == "INSERT":
            sources.append(_ledger(item))
        elif isinstance(item, OutboxItem) and record.event_name == "MODIFY":
            sources.append(_outbox_finished(item))
    if events:
        sources += _events(events)
    count([s for s in sources if s is not None])
    return set()


def _events(events: list[EventItem]) -> list[Source[Figures]]:
    # One batched read of the members these facts are about (join month, referrer, channel) ...
    subjects = {(_split_business_key(e.business_key)[0], str(e.member_id)) for e in events if e.member_id}
    profiles = batch_get([keys.member(p, m) for p, m in subjects])
    # ... and of their referrers (join time for the viral cycle, code and name for the leaderboard).
    referrers = {(p, str(getattr(profiles.get(keys.member(p, m)), "referrer_id", None) or "")) for p, m in subjects}
    profiles.update(batch_get([keys.member(p, r) for p, r in referrers if r]))
    out = []
    for event in events:
        program_id = _split_business_key(event.business_key)[0]
        out.append(store_source(program_id, event.business_key, "event", _count_event(event, profiles)))
    return out


def _count_event(event: EventItem, profiles: dict[Any, Any]) -> Figures:
    program_id, partner_id, event_type = _split_business_key(event.business_key)
    at, fp = event.received_at, dict(event.fingerprint or {})
    day = _day(at)
    if event_type == "order.refunded":
        return Figures(day_rows(program_id, day, partner_id, {
            "refunds": 1, "refund_amount": int(fp.get("refund.amount") or 0)}))
    member = profiles.get(keys.member(program_id, str(event.member_id))) if event.member_id else None
    if not isinstance(member, MemberItem):
        return Figures()
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
        # An erased referrer (erasure started) is on no leaderboard again: her entries are erased. Checked on the
        # profile read here, not in the transaction: see docs/data-rights.md#while-erasing.
        if isinstance(referrer, MemberItem) and referrer.erased_at is None:
            label = {"code": referrer.code, "name": fig.mask_name(referrer.name)}
            for period in fig.periods_of(at):
                leaders.append(LeaderDelta(program_id, "revenue", period, referrer.member_id, total, at, label))
                if number == 1:
                    leaders.append(LeaderDelta(program_id, "converted", period, referrer.member_id, 1, at, label))
    return Figures(rows, leaders)


def _ledger(entry: LedgerEntryItem) -> Source[Figures] | None:
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
        return None
    # An event's entries share its marker; an entry of no event (a redemption) has its own.
    group = entry.business_key or f"entry|{entry.PK}|{entry.SK}"
    return store_source(entry.program_id, group, str(entry.entry_id), Figures(rows))


def _outbox_finished(item: OutboxItem) -> Source[Figures] | None:
    if item.status not in fig.DELIVERY_STATUSES or item.merged_into:
        return None
    day = (item.finished_at or "")[:10] or _day(item.created_at)
    rows = [Increment(partition(item.program_id, "DAY"), day, {f"notifications_{item.status}": 1})]
    group = item.business_key or f"message|{item.message_id}"
    return store_source(item.program_id, group, f"{item.message_id}|{item.status}", Figures(rows))
