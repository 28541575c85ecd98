"""Orders and refunds: the order's ledger state, refunds parked until the order arrives, reversals.

Where an order's state lives (issue #10: an order writes no item of its own until it is refunded):

* an order never refunded: its ``order.paid`` record (``store.events.EventItem.order_postings``):
  postings, amounts and buyer are all there;
* once refunded: the order's item (``ORDER#…/LEDGER``), created by the first refund from that
  record and from then on written conditioned on the revision read, so refunds of one order
  serialise (items of the previous version: written by every order);
* refunds that arrive before their order: parked on an item *at the key of the order's
  ``order.paid`` record*, so the order's transaction (which creates its record with
  ``attribute_not_exists``) cannot miss a refund parked while it ran; the order replaces that
  item with its record (conditioned on the revision read) and moves the state to the order's item.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pynamodb.expressions.condition import Condition
from pynamodb.expressions.update import Action

from chalicelib.domain import clock
from chalicelib.domain.events import ORDER_CANCELLED, ORDER_PAID
from chalicelib.domain.rewards import reverse
from chalicelib.services.ledger.plan import LedgerPlan, posting_key, public
from chalicelib.services.ledger.reads import entry_key, from_paid_record, order_id_of, order_key, paid_record_key
from chalicelib.services.outcomes import RetryEvent
from chalicelib.store.events import EventItem
from chalicelib.store.ledger import (
    KIND_REVERSAL,
    STATUS_HELD,
    STATUS_PENDING,
    STATUS_REVERSED,
    LedgerEntryItem,
    OrderLedgerItem,
    new_entry,
    stable_id,
)

if TYPE_CHECKING:
    from chalicelib.services.event_context import EventContext, StageView
    from chalicelib.store.transact import Transaction

Key = tuple[str, str]
#: posting key -> (the entry to take points from, the stored item to update with conditions or None)
Lookup = Callable[[str], tuple[LedgerEntryItem | None, LedgerEntryItem | None]]


@dataclass
class OrderState:
    #: The state to write, keyed where it is written.
    state: OrderLedgerItem
    #: The item read at that key (the revision condition), or None: the write creates it.
    read: OrderLedgerItem | None
    #: ``order.paid`` only: refunds parked before it at its record's key (the record replaces them).
    parked_at_record: OrderLedgerItem | None = None
    #: Built from the order's ``order.paid`` record (postings without funding partners yet).
    from_record: bool = False


def _copy(read: OrderLedgerItem, key: Key, revision: int) -> OrderLedgerItem:
    return OrderLedgerItem(
        PK=key[0], SK=key[1], program_id=read.program_id, partner_id=read.partner_id, order_id=read.order_id,
        paid_business_key=read.paid_business_key, total=read.total, currency=read.currency,
        postings=read.stored_postings(), refunded_minor=int(read.refunded_minor or 0),
        reversed=dict(read.reversed or {}), parked=list(read.parked or []), cancelled=int(read.cancelled or 0),
        revision=revision, buyer_id=read.buyer_id,
    )


def order_item(ctx: EventContext, items: dict[Key, Any]) -> OrderState:
    """The order's state to write and what it was read from (see the module's docstring)."""
    key, record_key = order_key(ctx), paid_record_key(ctx)
    assert key is not None and record_key is not None
    read = items.get(key)
    if isinstance(read, OrderLedgerItem):  # refunded before (or written by the previous version)
        return OrderState(_copy(read, key, int(read.revision or 0) + 1), read)
    at_record = items.get(record_key)
    if isinstance(at_record, OrderLedgerItem):  # refunds parked before the order
        if ctx.event.type == ORDER_PAID:
            return OrderState(_copy(at_record, key, 1), None, parked_at_record=at_record)
        return OrderState(_copy(at_record, record_key, int(at_record.revision or 0) + 1), at_record)
    if isinstance(at_record, EventItem) and ctx.event.type != ORDER_PAID:  # the first refund of a paid order
        state = from_paid_record(ctx, key, at_record)
        state.revision = 1
        return OrderState(state, None, from_record=True)
    order_id = order_id_of(ctx)
    assert order_id is not None
    # Nothing yet: an order's state starts on its record; a refund parks at the record's key.
    at = key if ctx.event.type == ORDER_PAID else record_key
    return OrderState(OrderLedgerItem(PK=at[0], SK=at[1], program_id=ctx.program_id, partner_id=ctx.partner_id,
                                      order_id=order_id, postings=[], refunded_minor=0, reversed={}, parked=[],
                                      cancelled=0, revision=1), None)


def write_order(tx: Transaction, order: OrderState) -> None:
    if order.read is None:
        tx.create(order.state, on_fail=RetryEvent())  # a refund parked or refunded it concurrently: re-read
    else:
        tx.put(order.state, OrderLedgerItem.revision == int(order.read.revision or 0), on_fail=RetryEvent())


#: What a refund needs of each posting of the order (the entry's key and what ``reverse`` weighs);
#: the rest (reason, status, ids derivable from these) lives in the entry itself.
_STORED = ("member_id", "sk", "points", "rule_id", "rule_version", "level", "funding_partner_id")


def _stored_posting(posting: dict[str, Any]) -> dict[str, Any]:
    return {k: posting[k] for k in _STORED if posting.get(k) is not None}


def _key_of(posting: dict[str, Any]) -> str:
    return posting.get("key") or posting_key(posting["rule_id"], int(posting["level"]), posting["member_id"])


def stage_paid_order(ctx: EventContext, tx: Transaction, plan: LedgerPlan,
                     postings: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], Condition | None]:
    """Apply refunds that arrived before the order (as reversal entries) and record the order's state where
    there were any; (the reversals, the condition the event's record is written with instead of
    ``attribute_not_exists``: it replaces the refunds parked at its key)."""
    order = order_item(ctx, plan.items)
    state = order.state
    if order.read is None and order.parked_at_record is None:
        return [], None  # the common case: the order's record is its state (EventItem.order_postings)
    event = ctx.event.order
    state.paid_business_key = ctx.business_key
    state.total = event.total if event else 0
    state.currency = event.currency if event else None
    state.postings = [_stored_posting(p) for p in postings]
    state.buyer_id = plan.subject.member_id if plan.subject is not None else None
    parked, state.parked = list(state.parked or []), []
    applied: list[dict[str, Any]] = []
    entries = {p["key"]: p["_entry"] for p in postings}
    for refund in sorted(parked, key=lambda r: r.get("occurred_at", "")):
        applied += apply_refund(plan, state, refund, lambda key: (entries.get(key), None))
    write_order(tx, order)
    replaced = order.parked_at_record
    return applied, (None if replaced is None else OrderLedgerItem.revision == int(replaced.revision or 0))


def stage_refund(ctx: EventContext, tx: Transaction, view: StageView) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(the reply's ``rewards``, the reversal postings kept on the event record)."""
    event = ctx.event
    order = order_item(ctx, view.items)
    state = order.state
    refund = {
        "business_key": ctx.business_key,
        "kind": "cancel" if event.type == ORDER_CANCELLED else "refund",
        "amount": event.refund.amount if event.refund else None,
        "currency": event.refund.currency if event.refund else None,
        "occurred_at": clock.iso(event.occurred_at),
    }
    if not state.paid_business_key:
        state.parked = [*(state.parked or []), refund]
        write_order(tx, order)
        return {"status": "parked", "reason": "The order has not been received yet; the refund will be "
                                              "applied when it arrives."}, []
    plan = LedgerPlan(ctx, view.items, view.subject)

    def stored(posting: dict[str, Any]) -> LedgerEntryItem:
        item = view.items.get(entry_key(ctx.program_id, posting))
        if not isinstance(item, LedgerEntryItem):
            raise RetryEvent()  # written by a transaction we cannot see yet
        return item

    if order.from_record:  # the order's item is created now: its postings' funding partners are the entries'
        state.postings = [_stored_posting({**p, "funding_partner_id": stored(p).funding_partner_id})
                          for p in state.postings]

    def lookup(key: str) -> tuple[LedgerEntryItem | None, LedgerEntryItem | None]:
        posting = next((p for p in state.postings if _key_of(p) == key), None)
        if posting is None:
            return None, None
        item = stored(posting)
        return item, item

    reversals = apply_refund(plan, state, refund, lookup, tx)
    write_order(tx, order)
    plan.stage(tx)
    status = "applied" if reversals else "nothing_to_reverse"
    return ({"status": status, "refunded_minor": int(state.refunded_minor), "order_total": state.total,
             "reversals": [public(r) for r in reversals]}, reversals)


def apply_refund(plan: LedgerPlan, state: OrderLedgerItem, refund: dict[str, Any], lookup: Lookup,
                 tx: Transaction | None = None) -> list[dict[str, Any]]:
    """Reverse ``refund`` proportionally against ``state``'s postings; mutates ``state``.

    With ``tx`` (the refund's own event), the reversal entries carry no ledger-day index key: the refund's
    record indexes them (``EventItem.indexed_entry_keys``); reversals of a parked refund, applied by the
    order's event, index themselves.

    ``lookup(posting key)`` returns ``(entry, stored)``: the entry to take points from and, when it
    already exists in the table, the stored item to update with conditions in ``tx``; an entry
    created by this same transaction (a parked refund applied on order arrival) is changed in place.
    """
    ctx = plan.ctx
    total = int(state.total or 0)
    previously = int(state.refunded_minor or 0)
    if refund.get("currency") and state.currency and refund["currency"] != state.currency:
        return []  # a refund in another currency cannot be compared with the order: ignored (documented)
    amount = int(refund["amount"] or 0) if refund["kind"] == "refund" else max(total - previously, 0)
    if refund["kind"] == "cancel":
        state.cancelled = 1
    already: dict[tuple[str, int, str], int] = {}
    for key, points in (state.reversed or {}).items():
        rule_id, level, member_id = key.rsplit("#", 2)
        already[(rule_id, int(level), member_id)] = int(points)
    # reverse() takes back everything of a zero-total order on any non-zero refund; a cancellation is one.
    to_reverse = amount if total > 0 or refund["kind"] == "refund" else 1
    reversals = reverse(state.postings, already, to_reverse, total, previously_refunded_minor=previously)
    state.refunded_minor = previously + amount
    out: list[dict[str, Any]] = []
    effective = clock.parse_iso(refund["occurred_at"]) if refund.get("occurred_at") else ctx.now
    for r in reversals:
        key = posting_key(r.rule_id, r.level, r.member_id)
        entry, stored = lookup(key)
        if entry is None:
            continue
        from_status = entry.status
        reversed_before = int(entry.reversed_points or 0)
        fully = reversed_before + r.points >= int(entry.points)
        if stored is not None and tx is not None:
            E = LedgerEntryItem
            actions: list[Action] = [E.reversed_points.add(r.points)]
            if fully:
                actions += [E.status.set(STATUS_REVERSED), E.GSI1PK.remove(), E.GSI1SK.remove()]
            condition = (E.status == from_status) & (
                (E.reversed_points == reversed_before) if reversed_before else
                (E.reversed_points.does_not_exist() | (E.reversed_points == 0)))
            tx.update(stored, actions, condition, on_fail=RetryEvent())
        else:
            entry.reversed_points = reversed_before + r.points
            if fully:
                entry.status = STATUS_REVERSED
                entry.GSI1PK = entry.GSI1SK = None
        reversal = new_entry(
            ctx.program_id, r.member_id, stable_id("le", refund["business_key"], key), effective,
            kind=KIND_REVERSAL, status=STATUS_REVERSED, points=-r.points, reason=r.reason, reason_code=r.reason_code,
            created_at=ctx.now, business_key=refund["business_key"], rule_id=r.rule_id, rule_version=r.rule_version,
            level=r.level, funding_partner_id=r.funding_partner_id, partner_id=ctx.partner_id,
            reverses_entry_id=entry.entry_id, from_status=from_status, indexed_by_event=tx is not None,
        )
        plan.new_entries.append(reversal)
        delta = plan.deltas[r.member_id]
        delta.earned -= r.points
        if from_status == STATUS_PENDING:
            delta.pending -= r.points
        elif from_status == STATUS_HELD:
            delta.held -= r.points
        else:
            delta.available -= r.points
        state.reversed = {**(state.reversed or {}), key: r.reversed_total}
        out.append({"key": key, "entry_id": reversal.entry_id, "sk": reversal.SK, "member_id": r.member_id,
                    "points": -r.points, "status": STATUS_REVERSED, "rule_id": r.rule_id,
                    "rule_version": r.rule_version, "level": r.level, "funding_partner_id": r.funding_partner_id,
                    "reason": r.reason, "reverses_entry_id": entry.entry_id, "from_status": from_status})
    return out
