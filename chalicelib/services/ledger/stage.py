"""The ledger stage: rewards, refunds and the points messages of one event, as a pipeline stage.

What is written (in the event's one transaction): one entry per posting (created with
``attribute_not_exists`` under a key derived from ``Posting.key``), one balance update per member,
one update per counter (conditioned on the engine's ``max_before``) and, for refunds (and an order
whose refunds arrived first), the order's ledger item (conditioned on its revision); an order's
state otherwise is its event record (``refunds``). No outbox message: the stream consumer derives
them from the entries (``outbox``). A failed cap/revision
condition re-runs the whole event from a fresh read (the pipeline's retry).

Jobs: ``reads`` (what to read), ``rewards`` (engine in, entries and counters out), ``refunds``
(orders, parked refunds, reversals), ``plan`` (entries and balances), ``outbox`` (messages).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chalicelib.domain.events import ORDER_PAID
from chalicelib.services import rules as rules_service
from chalicelib.services.ledger import reads, refunds
from chalicelib.services.ledger.plan import LedgerPlan, public
from chalicelib.services.ledger.rewards import stage_rewards
from chalicelib.services.stages import StageOutcome
from chalicelib.store.ledger import STATUS_PENDING

if TYPE_CHECKING:
    from chalicelib.services.event_context import EventContext, StageView
    from chalicelib.store.transact import Transaction

Key = tuple[str, str]


class LedgerStage:
    name = "ledger"

    def first_read_keys(self, ctx: EventContext) -> list[Key]:
        return reads.first_read_keys(ctx)

    def second_read_keys(self, ctx: EventContext, first: dict[Key, Any], chains: list[list[str]]) -> list[Key]:
        return reads.second_read_keys(ctx, first, chains)

    def stage(self, ctx: EventContext, tx: Transaction, view: StageView) -> StageOutcome:
        rules = rules_service.current_rules(ctx.program, view.items)
        if rules is None:
            return StageOutcome(reply={"rewards": None})
        if ctx.event.type in reads.REFUND_EVENTS:
            summary, reversals = refunds.stage_refund(ctx, tx, view)
            audit: dict[str, Any] = {"postings": reversals}
            if reversals:  # the refund's record carries its reversal entries' ledger-day index key
                audit["event_index"] = {"pending_at": None}
            return StageOutcome(reply={"rewards": summary}, audit=audit)
        plan = LedgerPlan(ctx, view.items, view.subject)
        risk = view.outcomes.get("risk")
        plan.hold = list(risk.audit.get("hold") or []) if risk else []
        reply: dict[str, Any] = {"points": 0, "postings": [], "skipped": []}
        postings: list[dict[str, Any]] = []
        if view.subject is not None and reads.has_rules_for(rules, ctx.event.type):
            postings = stage_rewards(ctx, tx, plan, view, rules, reply)
        applied: list[dict[str, Any]] = []
        record_condition = None
        if ctx.event.type == ORDER_PAID:
            applied, record_condition = refunds.stage_paid_order(ctx, tx, plan, postings)
        held_vouchers = reply.get("held_vouchers") or []
        if plan.hold and (postings or held_vouchers) and risk is not None:
            from chalicelib.services import review
            from chalicelib.services.ledger.review_items import stage_review_item

            reply["review_item_id"] = stage_review_item(ctx, tx, view, postings, risk.audit, held_vouchers)
            reply["held_vouchers"] = [review.public_voucher(g) for g in held_vouchers]
        indexed = [p["_entry"] for p in postings if p.get("_entry") is not None]
        pending = [e.available_at for e in indexed if e.status == STATUS_PENDING and e.available_at is not None]
        for p in postings:
            p.pop("_entry", None)
            p.pop("available_at", None)
        plan.stage(tx)
        reply["points"] = sum(p["points"] for p in postings)
        reply["postings"] = [public(p) for p in postings]
        if applied:
            reply["parked_refunds_applied"] = applied
        audit = {"postings": postings + applied}
        if indexed:  # the event record carries these entries' index keys (store.events.EventItem.index_entries)
            audit["event_index"] = {"pending_at": min(pending) if pending else None}
        if record_condition is not None:  # the record replaces refunds parked at its key (services.ledger.refunds)
            audit["record_condition"] = record_condition
        return StageOutcome(reply={"rewards": reply}, audit=audit)
