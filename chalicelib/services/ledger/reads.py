"""What the ledger stage reads: keys for the pipeline's two batched reads (computed, never queried).

1. first read: the current rules version when this instance has not parsed it yet, and the
   order's ledger item for ``order.*`` events (postings, refunds so far, parked refunds); for
   refunds also the record of the order's ``order.paid`` (where an order's state starts: see
   ``refunds``; the pipeline reads it anyway for ``order.paid`` itself, as its dedupe record);
2. second read: for every member of every candidate chain up to the rules' deepest level,
   their balance, profile (tier counts, locale), member tier (when a rule looks at it) and, when a
   monthly cap exists, this month's counter; the subject's
   recurring counters of the rules with ``max_points_per_friend``; the program's budget counter. For refunds: the order's entries and the
   balances of the members they paid.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chalicelib.domain.events import ORDER_CANCELLED, ORDER_PAID, ORDER_REFUNDED, order_paid_business_key
from chalicelib.domain.rewards import RulesDoc, month_key
from chalicelib.services import rules as rules_service
from chalicelib.store import keys
from chalicelib.store.dynamo_ports import event_key_hash
from chalicelib.store.events import EventItem
from chalicelib.store.ledger import OrderLedgerItem, order_hash

if TYPE_CHECKING:
    from chalicelib.services.event_context import EventContext

Key = tuple[str, str]
REFUND_EVENTS = (ORDER_REFUNDED, ORDER_CANCELLED)


def order_id_of(ctx: EventContext) -> str | None:
    event = ctx.event
    if event.type == ORDER_REFUNDED and event.refund is not None:
        return event.refund.order_id
    if event.type in (ORDER_PAID, ORDER_CANCELLED):
        return event.object_id
    return None


def order_key(ctx: EventContext) -> Key | None:
    order_id = order_id_of(ctx)
    return keys.order_ledger(ctx.program_id, order_hash(ctx.partner_id, order_id)) if order_id else None


def paid_record_key(ctx: EventContext) -> Key | None:
    """The key of the order's ``order.paid`` record (the event's own for ``order.paid``)."""
    if ctx.event.type == ORDER_PAID:
        return ctx.event_key
    order_id = order_id_of(ctx)
    if not order_id:
        return None
    return keys.event(ctx.program_id, event_key_hash(order_paid_business_key(ctx.program_id, ctx.partner_id,
                                                                             order_id)))


def order_of(ctx: EventContext, items: dict[Key, Any]) -> OrderLedgerItem | None:
    """The order's ledger state as read: its ledger item, or (no refund yet) the one its ``order.paid`` record
    implies (postings without funding partners: those are the entries'), or refunds parked before it."""
    okey, pkey = order_key(ctx), paid_record_key(ctx)
    item = items.get(okey) if okey else None
    if isinstance(item, OrderLedgerItem):
        return item
    record = items.get(pkey) if pkey else None
    if isinstance(record, OrderLedgerItem):  # refunds parked before the order, at its record's key
        return record
    if isinstance(record, EventItem) and ctx.event.type in REFUND_EVENTS and okey is not None:
        return from_paid_record(ctx, okey, record)
    return None


def from_paid_record(ctx: EventContext, key: Key, record: EventItem) -> OrderLedgerItem:
    order_id = order_id_of(ctx)
    assert order_id is not None
    total, currency = record.order_amounts()
    return OrderLedgerItem(
        PK=key[0], SK=key[1], program_id=ctx.program_id, partner_id=ctx.partner_id, order_id=order_id,
        paid_business_key=record.business_key, total=total, currency=currency, postings=record.order_postings(),
        refunded_minor=0, reversed={}, parked=[], cancelled=0, revision=0, buyer_id=record.member_id)


def has_rules_for(rules: RulesDoc, event_type: str) -> bool:
    return any(r.enabled and r.trigger.event == event_type for r in rules.rules)


def entry_key(program_id: str, posting: dict[str, Any]) -> Key:
    return keys.member_partition(program_id, posting["member_id"]), posting["sk"]


def first_read_keys(ctx: EventContext) -> list[Key]:
    if not int(ctx.program.rules_version or 0):
        return []  # a program without rules has no ledger
    wanted: list[Key] = []
    if not rules_service.is_cached(ctx.program):
        key = rules_service.rules_key(ctx.program)
        if key:
            wanted.append(key)  # cold instance: the rules come with the first batch, not a GetItem
    else:
        wanted += _pool_keys(ctx, rules_service.current_rules(ctx.program))
    okey = order_key(ctx)
    if okey:
        wanted.append(okey)
    pkey = paid_record_key(ctx)
    if pkey and pkey != ctx.event_key:
        wanted.append(pkey)  # a refund: the order's record
    return wanted


def _pool_keys(ctx: EventContext, rules: RulesDoc | None) -> list[Key]:
    """Offer rewards (services.vouchers): each granted offer's item and its pool's shard heads."""
    from chalicelib.services import vouchers

    if rules is None or ctx.event.type in REFUND_EVENTS:
        return []
    return [k for ref in vouchers.offer_refs(rules, ctx.event.type) for k in vouchers.pool_keys(ctx.program_id, ref)]


def _slot_keys(ctx: EventContext, rules: RulesDoc, first: dict[Key, Any]) -> list[Key]:
    """The candidate code of every non-empty shard (heads came in the first read); on a cold instance
    the rules came in the first read, so the heads come now (and an issue re-reads: ``RetryEvent``)."""
    from chalicelib.services import vouchers

    refs = vouchers.offer_refs(rules, ctx.event.type)
    if not refs:
        return []
    key = rules_service.rules_key(ctx.program)
    if key is not None and key in first:
        return _pool_keys(ctx, rules)
    return [k for ref in refs for k in vouchers.slot_keys(ctx.program_id, ref, first)]


def second_read_keys(ctx: EventContext, first: dict[Key, Any], chains: list[list[str]]) -> list[Key]:
    rules = rules_service.current_rules(ctx.program, first)
    if rules is None:
        return []
    pid = ctx.program_id
    if ctx.event.type in REFUND_EVENTS:
        order = order_of(ctx, first)
        wanted: list[Key] = []
        if order is not None and order.paid_business_key:
            for posting in order.stored_postings():
                wanted += [entry_key(pid, posting), keys.balance(pid, posting["member_id"]),
                           keys.member(pid, posting["member_id"])]
        return wanted
    if not has_rules_for(rules, ctx.event.type):
        return []
    wanted = _slot_keys(ctx, rules, first)
    month = month_key(ctx.event.occurred_at)
    limited = [r.id for r in rules.rules if r.enabled and r.trigger.event == ctx.event.type
               and r.amount.offer is not None and r.amount.offer.per_month is not None]
    members: dict[str, None] = {}
    for chain in chains:
        for member_id in chain[: rules.depth_needed + 1]:
            members[member_id] = None
    tiered = rules.uses_tiers and ctx.settings.tiers is not None
    for member_id in members:
        wanted += [keys.balance(pid, member_id), keys.member(pid, member_id)]
        if tiered:
            wanted.append(keys.member_tier(pid, member_id))  # trigger.tiers, tier multipliers
        if rules.counts_months:
            wanted.append(keys.member_month(pid, member_id, month))
        wanted += [keys.voucher_month(pid, member_id, rule_id, month) for rule_id in limited]
    subjects = {chain[0] for chain in chains if chain}
    for rule in rules.rules:
        if rule.recurring_cap is not None:  # an uncapped recurring rule keeps no counter
            wanted += [keys.recurring_counter(pid, s, rule.id) for s in subjects]
    if rules.budget_points is not None:
        wanted.append(keys.program_counters(pid))
    return wanted
