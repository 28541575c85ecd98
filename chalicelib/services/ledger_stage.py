"""Rewards and ledger stage of the event pipeline (see ``services.pipeline``).

The pipeline calls these three functions; this module owns everything about
points: which extra items to read, and which ledger entries, balance changes,
counters and outbox messages to add to the event's one transaction.

Contract:
* ``first_read_keys(ctx)``: extra keys for the first batched read (e.g. the
  original order's event record when ``ctx.event`` is a refund).
* ``second_read_keys(ctx, first, chains)``: extra keys for the second batched read,
  knowing every member whose state may matter: ``chains`` lists candidate
  ``[subject, level-1, level-2, ...]`` member-id chains.
* ``stage(ctx, tx, view)``: add items to ``tx`` and return a JSON-able summary for
  the webhook reply (stored in the event record, so duplicates get it too).

What is read (never more than the pipeline's two ``BatchGetItem`` calls, whatever the chain
depth or the number of referrals a referrer has, because keys are computed, not queried):

1. first read: the current rules version when this instance has not parsed it yet, and the
   order's ledger item for ``order.*`` events (postings, refunds so far, parked refunds);
2. second read: for every member of every candidate chain up to the rules' deepest level,
   their balance, this month's counter and profile (tier counts, locale); the subject's
   recurring counters; the program's budget counter. For refunds: the order's entries and the
   balances of the members they paid.

What is written (in the event's one transaction): one entry per posting (created with
``attribute_not_exists`` under a key derived from ``Posting.key``), one balance update per
member (ADD, conditioned where a debit could overdraw or owed points are repaid), one update
per counter (conditioned on the engine's ``max_before``), the order's ledger item (conditioned
on its revision) and one outbox message per member notified. A failed cap/revision condition
re-runs the whole event from a fresh read (the pipeline's retry).

Custom events are ``custom.<name>`` on the wire and ``custom:<name>`` in rules documents; the
stage maps one to the other.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from typing import TYPE_CHECKING, Any

from pynamodb.expressions.update import Action

from chalicelib.domain import clock
from chalicelib.domain.events import ORDER_CANCELLED, ORDER_PAID, ORDER_REFUNDED
from chalicelib.domain.rewards import (
    Ancestor,
    EngineEvent,
    Posting,
    ProgramCounters,
    RulesDoc,
    Subject,
    evaluate,
    month_key,
    reverse,
)
from chalicelib.services import rules as rules_service
from chalicelib.services.outcomes import AlreadyProcessed, RetryEvent
from chalicelib.store import keys
from chalicelib.store.ledger import (
    KIND_REVERSAL,
    KIND_REWARD,
    STATUS_AVAILABLE,
    STATUS_PENDING,
    STATUS_REVERSED,
    BalanceDelta,
    BalanceItem,
    LedgerEntryItem,
    MonthCounterItem,
    OrderLedgerItem,
    OutboxItem,
    ProgramCountersItem,
    RecurringCounterItem,
    day_of,
    new_entry,
    stable_id,
    stage_balance,
    stage_counter,
)
from chalicelib.store.members import MemberItem

if TYPE_CHECKING:
    from chalicelib.services.event_context import EventContext, StageView
    from chalicelib.store.transact import Transaction

Key = tuple[str, str]
REFUND_EVENTS = (ORDER_REFUNDED, ORDER_CANCELLED)


# --------------------------------------------------------------------------- helpers


def order_hash(partner_id: str, order_id: str) -> str:
    return hashlib.sha256(f"{partner_id}|{order_id}".encode()).hexdigest()[:40]


def order_id_of(ctx: EventContext) -> str | None:
    event = ctx.event
    if event.type == ORDER_REFUNDED and event.refund is not None:
        return event.refund.order_id
    if event.type in (ORDER_PAID, ORDER_CANCELLED):
        return event.object_id
    return None


def _order_key(ctx: EventContext) -> Key | None:
    order_id = order_id_of(ctx)
    return keys.order_ledger(ctx.program_id, order_hash(ctx.partner_id, order_id)) if order_id else None


def _has_rules_for(rules: RulesDoc, event_type: str) -> bool:
    wanted = event_type
    return any(r.enabled and r.trigger.event == wanted for r in rules.rules)


def _entry_key(program_id: str, posting: dict[str, Any]) -> Key:
    return keys.member_partition(program_id, posting["member_id"]), posting["sk"]


def _posting_key(rule_id: str, level: int, member_id: str) -> str:
    return f"{rule_id}#{level}#{member_id}"


# --------------------------------------------------------------------------- reads


def first_read_keys(ctx: EventContext) -> list[Key]:
    if not int(ctx.program.rules_version or 0):
        return []  # a program without rules has no ledger
    wanted: list[Key] = []
    if not rules_service.is_cached(ctx.program):
        key = rules_service.rules_key(ctx.program)
        if key:
            wanted.append(key)  # cold instance: the rules come with the first batch, not a GetItem
    order_key = _order_key(ctx)
    if order_key:
        wanted.append(order_key)
    return wanted


def second_read_keys(ctx: EventContext, first: dict[Key, Any], chains: list[list[str]]) -> list[Key]:
    rules = rules_service.current_rules(ctx.program, first)
    if rules is None:
        return []
    pid = ctx.program_id
    if ctx.event.type in REFUND_EVENTS:
        order_key = _order_key(ctx)
        order = first.get(order_key) if order_key else None
        wanted: list[Key] = []
        if isinstance(order, OrderLedgerItem) and order.paid_business_key:
            for posting in order.postings or []:
                wanted += [_entry_key(pid, posting), keys.balance(pid, posting["member_id"]),
                           keys.member(pid, posting["member_id"])]
        return wanted
    if not _has_rules_for(rules, ctx.event.type):
        return []
    month = month_key(ctx.event.occurred_at)
    members: dict[str, None] = {}
    for chain in chains:
        for member_id in chain[: rules.depth_needed + 1]:
            members[member_id] = None
    wanted = []
    for member_id in members:
        wanted += [keys.balance(pid, member_id), keys.member_month(pid, member_id, month), keys.member(pid, member_id)]
    subjects = {chain[0] for chain in chains if chain}
    for rule in rules.rules:
        if rule.recurring is not None:
            wanted += [keys.recurring_counter(pid, s, rule.id) for s in subjects]
    if rules.budget_points is not None:
        wanted.append(keys.program_counters(pid))
    return wanted


# --------------------------------------------------------------------------- stage


class _Plan:
    """Everything one event adds to the transaction, collected per item before staging."""

    def __init__(self, ctx: EventContext, items: dict[Key, Any], subject: MemberItem | None) -> None:
        self.ctx = ctx
        self.items = items
        self.subject = subject
        self.deltas: dict[str, BalanceDelta] = defaultdict(BalanceDelta)
        self.earned: dict[str, list[LedgerEntryItem]] = defaultdict(list)
        self.reversed: dict[str, list[LedgerEntryItem]] = defaultdict(list)
        self.new_entries: list[LedgerEntryItem] = []

    def profile(self, member_id: str) -> MemberItem | None:
        if self.subject is not None and self.subject.member_id == member_id:
            return self.subject
        item = self.items.get(keys.member(self.ctx.program_id, member_id))
        return item if isinstance(item, MemberItem) else None

    def balance(self, member_id: str) -> BalanceItem | None:
        item = self.items.get(keys.balance(self.ctx.program_id, member_id))
        return item if isinstance(item, BalanceItem) else None

    def stage(self, tx: Transaction) -> None:
        for entry in self.new_entries:
            # Deterministic key: a replay of this fact targets the same item and is refused.
            tx.create(entry, on_fail=AlreadyProcessed())
        for member_id, delta in self.deltas.items():
            stage_balance(tx, self.ctx.program_id, member_id, self.balance(member_id), delta, on_fail=RetryEvent())
        for member_id, entries in self.earned.items():
            self._outbox(tx, member_id, "points_earned", entries)
        for member_id, entries in self.reversed.items():
            self._outbox(tx, member_id, "points_reversed", entries)

    def _outbox(self, tx: Transaction, member_id: str, template: str, entries: list[LedgerEntryItem]) -> None:
        ctx = self.ctx
        points = sum(abs(int(e.points)) for e in entries)
        if points <= 0:
            return
        profile = self.profile(member_id)
        message_id = stable_id("msg", ctx.business_key, member_id, template)
        now = ctx.now
        pending = [e for e in entries if e.status == STATUS_PENDING]
        params: dict[str, Any] = {
            "points": points,
            "points_unit": ctx.program.points_unit,
            "event_type": ctx.event.type,
            "business_key": ctx.business_key,
            "reasons": [e.reason for e in entries],
            # What chalicelib/notify/kinds.py needs to pick the template (welcome, upline level...).
            "levels": sorted({int(e.level or 0) for e in entries}),
            "reason_codes": sorted({str(e.reason_code) for e in entries if e.reason_code}),
        }
        if template == "points_earned":
            params["pending_points"] = sum(int(e.points) for e in pending)
            params["available_points"] = points - params["pending_points"]
            if pending:
                params["available_at"] = clock.iso(min(e.available_at for e in pending if e.available_at))
        pk, sk = keys.outbox_message(ctx.program_id, message_id)
        gpk, gsk = keys.gsi1_outbox_pending(day_of(now), clock.iso(now), message_id)
        # Channels and the final locale are decided at delivery from the then-current profile
        # (chalicelib/notify): an e-mail arriving with this very event is used.
        tx.create(OutboxItem(
            PK=pk, SK=sk, GSI1PK=gpk, GSI1SK=gsk, program_id=ctx.program_id, message_id=message_id,
            member_id=member_id, template=template,
            locale=(profile.locale if profile and profile.locale else ctx.program.default_locale),
            params=params, business_key=ctx.business_key, status="pending", created_at=now,
        ), on_fail=AlreadyProcessed())


def stage(ctx: EventContext, tx: Transaction, view: StageView) -> dict[str, Any]:
    rules = rules_service.current_rules(ctx.program, view.items)
    if rules is None:
        return {"rewards": None}
    if ctx.event.type in REFUND_EVENTS:
        return _stage_refund(ctx, tx, view, rules)
    plan = _Plan(ctx, view.items, view.subject)
    summary: dict[str, Any] = {"points": 0, "postings": [], "skipped": []}
    postings: list[dict[str, Any]] = []
    if view.subject is not None and _has_rules_for(rules, ctx.event.type):
        evaluation = evaluate(rules, _engine_event(ctx), _subject(ctx, view, rules), _ancestors(ctx, view, rules),
                              _counters(ctx, view.items, rules))
        for posting in evaluation.postings:
            postings.append(_post(plan, posting))
        _stage_counter_deltas(ctx, tx, evaluation.counter_deltas)
        summary["skipped"] = [
            {"rule_id": s.rule_id, "member_id": s.member_id, "reason_code": s.reason_code, "detail": s.detail,
             "requested_points": s.requested_points, "granted_points": s.granted_points}
            for s in evaluation.skipped
        ]
    reversals: list[dict[str, Any]] = []
    if ctx.event.type == ORDER_PAID:
        reversals = _stage_paid_order(ctx, tx, plan, postings)
    for p in postings:
        p.pop("_entry", None)
    plan.stage(tx)
    summary["points"] = sum(p["points"] for p in postings)
    summary["postings"] = [_public(p) for p in postings]
    if reversals:
        summary["parked_refunds_applied"] = reversals
    return {"rewards": summary, "ledger_postings": postings + reversals}


def _public(posting: dict[str, Any]) -> dict[str, Any]:
    return {k: posting[k] for k in ("entry_id", "member_id", "points", "status", "rule_id", "rule_version", "level",
                                    "reason") if k in posting}


def _engine_event(ctx: EventContext) -> EngineEvent:
    event, order = ctx.event, ctx.event.order
    return EngineEvent(
        business_key=ctx.business_key,
        type=event.type,
        occurred_at=event.occurred_at,
        partner_id=ctx.partner_id,
        total=order.total if order else None,
        subtotal=order.subtotal if order else None,
        shipping=order.shipping if order else None,
        discount=order.discount if order else None,
        currency=order.currency if order else None,
    )


def _month_points(ctx: EventContext, items: dict[Key, Any], member_id: str) -> int:
    item = items.get(keys.member_month(ctx.program_id, member_id, month_key(ctx.event.occurred_at)))
    return int(item.points or 0) if isinstance(item, MonthCounterItem) else 0


def _subject(ctx: EventContext, view: StageView, rules: RulesDoc) -> Subject:
    subject = view.subject
    assert subject is not None
    recurring: dict[str, int] = {}
    for rule in rules.rules:
        if rule.recurring is not None:
            item = view.items.get(keys.recurring_counter(ctx.program_id, subject.member_id, rule.id))
            if isinstance(item, RecurringCounterItem):
                recurring[rule.id] = int(item.points or 0)
    return Subject(
        member_id=subject.member_id,
        referrer_id=subject.referrer_id,
        attributed_at=view.attributed_at,
        orders_before=view.orders_before,
        month_earned_points=_month_points(ctx, view.items, subject.member_id),
        recurring_paid=recurring,
    )


def _ancestors(ctx: EventContext, view: StageView, rules: RulesDoc) -> list[Ancestor]:
    out = []
    for level, member_id in enumerate(view.ancestors[: rules.depth_needed], start=1):
        profile = view.items.get(keys.member(ctx.program_id, member_id))
        converted = int(profile.converted_referrals or 0) if isinstance(profile, MemberItem) else 0
        out.append(Ancestor(member_id=member_id, level=level, converted_referrals=converted,
                            month_earned_points=_month_points(ctx, view.items, member_id)))
    return out


def _counters(ctx: EventContext, items: dict[Key, Any], rules: RulesDoc) -> ProgramCounters:
    if rules.budget_points is None:
        return ProgramCounters()
    item = items.get(keys.program_counters(ctx.program_id))
    return ProgramCounters(budget_used_points=int(item.points or 0) if isinstance(item, ProgramCountersItem) else 0)


def _stage_counter_deltas(ctx: EventContext, tx: Transaction, deltas: Any) -> None:
    pid = ctx.program_id
    for d in deltas:
        if d.kind == "member_month":
            stage_counter(tx, MonthCounterItem, keys.member_month(pid, d.member_id, d.month), d.points,
                          d.max_before, on_fail=RetryEvent())
        elif d.kind == "budget":
            stage_counter(tx, ProgramCountersItem, keys.program_counters(pid), d.points, d.max_before,
                          on_fail=RetryEvent())
        else:
            stage_counter(tx, RecurringCounterItem, keys.recurring_counter(pid, d.member_id, d.rule_id), d.points,
                          d.max_before, on_fail=RetryEvent())


def _post(plan: _Plan, posting: Posting) -> dict[str, Any]:
    ctx = plan.ctx
    # A back-dated event whose holding period is already over is available at once.
    available = posting.status == STATUS_AVAILABLE or posting.available_at <= ctx.now
    status = STATUS_AVAILABLE if available else STATUS_PENDING
    entry = new_entry(
        ctx.program_id, posting.member_id, stable_id("le", posting.key), ctx.event.occurred_at,
        kind=KIND_REWARD, status=status, points=posting.points, reason=posting.reason,
        reason_code=posting.reason_code, created_at=ctx.now, available_at=posting.available_at,
        business_key=posting.business_key, rule_id=posting.rule_id, rule_version=posting.rule_version,
        level=posting.level, funding_partner_id=posting.funding_partner_id, partner_id=posting.partner_id,
        reversed_points=0,
    )
    plan.new_entries.append(entry)
    plan.earned[posting.member_id].append(entry)
    delta = plan.deltas[posting.member_id]
    delta.earned += posting.points
    if available:
        delta.available += posting.points
    else:
        delta.pending += posting.points
    return {
        "key": _posting_key(posting.rule_id, posting.level, posting.member_id),
        "entry_id": entry.entry_id, "sk": entry.SK, "member_id": posting.member_id, "points": posting.points,
        "status": status, "rule_id": posting.rule_id, "rule_version": posting.rule_version, "level": posting.level,
        "funding_partner_id": posting.funding_partner_id, "reason": posting.reason, "_entry": entry,
    }


# --------------------------------------------------------------------------- orders and refunds


def _order_item(ctx: EventContext, items: dict[Key, Any]) -> tuple[OrderLedgerItem, OrderLedgerItem | None]:
    """(the order's state to write, the state read or None)."""
    key = _order_key(ctx)
    assert key is not None
    read = items.get(key)
    if isinstance(read, OrderLedgerItem):
        state = OrderLedgerItem(
            PK=key[0], SK=key[1], program_id=read.program_id, partner_id=read.partner_id, order_id=read.order_id,
            paid_business_key=read.paid_business_key, total=read.total, currency=read.currency,
            postings=list(read.postings or []), refunded_minor=int(read.refunded_minor or 0),
            reversed=dict(read.reversed or {}), parked=list(read.parked or []), cancelled=int(read.cancelled or 0),
            revision=int(read.revision or 0) + 1,
        )
        return state, read
    order_id = order_id_of(ctx)
    assert order_id is not None
    return OrderLedgerItem(PK=key[0], SK=key[1], program_id=ctx.program_id, partner_id=ctx.partner_id,
                           order_id=order_id, postings=[], refunded_minor=0, reversed={}, parked=[], cancelled=0,
                           revision=1), None


def _write_order(tx: Transaction, state: OrderLedgerItem, read: OrderLedgerItem | None) -> None:
    if read is None:
        tx.create(state, on_fail=RetryEvent())  # a refund parked it concurrently: re-read
    else:
        tx.put(state, OrderLedgerItem.revision == int(read.revision or 0), on_fail=RetryEvent())


def _stage_paid_order(ctx: EventContext, tx: Transaction, plan: _Plan, postings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Record what the order posted; apply refunds that arrived before it (as reversal entries)."""
    order = ctx.event.order
    state, read = _order_item(ctx, plan.items)
    state.paid_business_key = ctx.business_key
    state.total = order.total if order else 0
    state.currency = order.currency if order else None
    state.postings = [{k: v for k, v in p.items() if k not in ("_entry", "reason", "status")} for p in postings]
    parked, state.parked = list(state.parked or []), []
    applied: list[dict[str, Any]] = []
    entries = {p["key"]: p["_entry"] for p in postings}
    for refund in sorted(parked, key=lambda r: r.get("occurred_at", "")):
        applied += _apply_refund(plan, state, refund, lambda key: (entries.get(key), None))
    _write_order(tx, state, read)
    return applied


def _stage_refund(ctx: EventContext, tx: Transaction, view: StageView, rules: RulesDoc) -> dict[str, Any]:
    event = ctx.event
    state, read = _order_item(ctx, view.items)
    refund = {
        "business_key": ctx.business_key,
        "kind": "cancel" if event.type == ORDER_CANCELLED else "refund",
        "amount": event.refund.amount if event.refund else None,
        "currency": event.refund.currency if event.refund else None,
        "occurred_at": clock.iso(event.occurred_at),
    }
    if not state.paid_business_key:
        state.parked = [*(state.parked or []), refund]
        _write_order(tx, state, read)
        return {"rewards": {"status": "parked", "reason": "The order has not been received yet; the refund will be "
                                                          "applied when it arrives."}}
    plan = _Plan(ctx, view.items, view.subject)

    def lookup(key: str) -> tuple[LedgerEntryItem | None, LedgerEntryItem | None]:
        posting = next((p for p in state.postings if p["key"] == key), None)
        if posting is None:
            return None, None
        item = view.items.get(_entry_key(ctx.program_id, posting))
        if not isinstance(item, LedgerEntryItem):
            raise RetryEvent()  # written by a transaction we cannot see yet
        return item, item

    reversals = _apply_refund(plan, state, refund, lookup, tx)
    _write_order(tx, state, read)
    plan.stage(tx)
    status = "applied" if reversals else "nothing_to_reverse"
    return {"rewards": {"status": status, "refunded_minor": int(state.refunded_minor), "order_total": state.total,
                        "reversals": [_public(r) for r in reversals]},
            "ledger_postings": reversals}


def _apply_refund(plan: _Plan, state: OrderLedgerItem, refund: dict[str, Any], lookup: Any,
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
        key = _posting_key(r.rule_id, r.level, r.member_id)
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
        plan.reversed[r.member_id].append(reversal)
        delta = plan.deltas[r.member_id]
        delta.earned -= r.points
        if from_status == STATUS_PENDING:
            delta.pending -= r.points
        else:
            delta.available -= r.points
        state.reversed = {**(state.reversed or {}), key: r.reversed_total}
        out.append({"key": key, "entry_id": reversal.entry_id, "sk": reversal.SK, "member_id": r.member_id,
                    "points": -r.points, "status": STATUS_REVERSED, "rule_id": r.rule_id,
                    "rule_version": r.rule_version, "level": r.level, "funding_partner_id": r.funding_partner_id,
                    "reason": r.reason, "reverses_entry_id": entry.entry_id})
    return out
