"""Orders and refunds: the order's ledger item, refunds parked until the order arrives, reversals.

The order's item (``ORDER#…/LEDGER``) keeps what the order posted and what refunds took back; it
is written conditioned on the revision read, so two refunds of one order serialise. A refund that
arrives before its order is parked on the item and applied when the order is processed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pynamodb.expressions.update import Action

from chalicelib.domain import clock
from chalicelib.domain.events import ORDER_CANCELLED
from chalicelib.domain.rewards import reverse
from chalicelib.services.ledger.plan import LedgerPlan, posting_key, public
from chalicelib.services.ledger.reads import entry_key, order_id_of, order_key
from chalicelib.services.outcomes import RetryEvent
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


def order_item(ctx: EventContext, items: dict[Key, Any]) -> tuple[OrderLedgerItem, OrderLedgerItem | None]:
    """(the order's state to write, the state read or None)."""
    key = order_key(ctx)
    assert key is not None
    read = items.get(key)
    if isinstance(read, OrderLedgerItem):
        state = OrderLedgerItem(
            PK=key[0], SK=key[1], program_id=read.program_id, partner_id=read.partner_id, order_id=read.order_id,
            paid_business_key=read.paid_business_key, total=read.total, currency=read.currency,
            postings=read.stored_postings(), refunded_minor=int(read.refunded_minor or 0),
            reversed=dict(read.reversed or {}), parked=list(read.parked or []), cancelled=int(read.cancelled or 0),
            revision=int(read.revision or 0) + 1, buyer_id=read.buyer_id,
        )
        return state, read
    order_id = order_id_of(ctx)
    assert order_id is not None
    return OrderLedgerItem(PK=key[0], SK=key[1], program_id=ctx.program_id, partner_id=ctx.partner_id,
                           order_id=order_id, postings=[], refunded_minor=0, reversed={}, parked=[], cancelled=0,
                           revision=1), None


def write_order(tx: Transaction, state: OrderLedgerItem, read: OrderLedgerItem | None) -> None:
    if read is None:
        tx.create(state, on_fail=RetryEvent())  # a refund parked it concurrently: re-read
    else:
        tx.put(state, OrderLedgerItem.revision == int(read.revision or 0), on_fail=RetryEvent())


#: What a refund needs of each posting of the order (the entry's key and what ``reverse`` weighs);
#: the rest (reason, status, ids derivable from these) lives in the entry itself.
_STORED = ("member_id", "sk", "points", "rule_id", "rule_version", "level", "funding_partner_id")


def _stored_posting(posting: dict[str, Any]) -> dict[str, Any]:
    return {k: posting[k] for k in _STORED if posting.get(k) is not None}


def _key_of(posting: dict[str, Any]) -> str:
    return posting.get("key") or posting_key(posting["rule_id"], int(posting["level"]), posting["member_id"])


def stage_paid_order(ctx: EventContext, tx: Transaction, plan: LedgerPlan,
                     postings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Record what the order posted; apply refunds that arrived before it (as reversal entries)."""
    order = ctx.event.order
    state, read = order_item(ctx, plan.items)
    state.paid_business_key = ctx.business_key
    state.total = order.total if order else 0
    state.currency = order.currency if order else None
    state.postings = [_stored_posting(p) for p in postings]
    state.buyer_id = plan.subject.member_id if plan.subject is not None else None
    parked, state.parked = list(state.parked or []), []
    applied: list[dict[str, Any]] = []
    entries = {p["key"]: p["_entry"] for p in postings}
    for refund in sorted(parked, key=lambda r: r.get("occurred_at", "")):
        applied += apply_refund(plan, state, refund, lambda key: (entries.get(key), None))
    write_order(tx, state, read)
    return applied


def stage_refund(ctx: EventContext, tx: Transaction, view: StageView) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(the reply's ``rewards``, the reversal postings kept on the event record)."""
    event = ctx.event
    state, read = order_item(ctx, view.items)
    refund = {
        "business_key": ctx.business_key,
        "kind": "cancel" if event.type == ORDER_CANCELLED else "refund",
        "amount": event.refund.amount if event.refund else None,
        "currency": event.refund.currency if event.refund else None,
        "occurred_at": clock.iso(event.occurred_at),
    }
    if not state.paid_business_key:
        state.parked = [*(state.parked or []), refund]
        write_order(tx, state, read)
        return {"status": "parked", "reason": "The order has not been received yet; the refund will be "
                                              "applied when it arrives."}, []
    plan = LedgerPlan(ctx, view.items, view.subject)

    def lookup(key: str) -> tuple[LedgerEntryItem | None, LedgerEntryItem | None]:
        posting = next((p for p in state.postings if _key_of(p) == key), None)
        if posting is None:
            return None, None
        item = view.items.get(entry_key(ctx.program_id, posting))
        if not isinstance(item, LedgerEntryItem):
            raise RetryEvent()  # written by a transaction we cannot see yet
        return item, item

    reversals = apply_refund(plan, state, refund, lookup, tx)
    write_order(tx, state, read)
    plan.stage(tx)
    status = "applied" if reversals else "nothing_to_reverse"
    return ({"status": status, "refunded_minor": int(state.refunded_minor), "order_total": state.total,
             "reversals": [public(r) for r in reversals]}, reversals)


def apply_refund(plan: LedgerPlan, state: OrderLedgerItem, refund: dict[str, Any], lookup: Lookup,
                 tx: Transaction | None = None) -> list[dict[str, Any]]:
    """Reverse ``refund`` proportionally against ``state``'s postings; mutates ``state``.

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
            reverses_entry_id=entry.entry_id, from_status=from_status,
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
