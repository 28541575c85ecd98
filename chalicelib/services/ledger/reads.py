"""What the ledger stage reads: keys for the pipeline's two batched reads (computed, never queried).

1. first read: the current rules version when this instance has not parsed it yet, and the
   order's ledger item for ``order.*`` events (postings, refunds so far, parked refunds);
2. second read: for every member of every candidate chain up to the rules' deepest level,
   their balance, profile (tier counts, locale), member tier (when a rule looks at it) and, when a
   monthly cap exists, this month's counter; the subject's
   recurring counters; the program's budget counter. For refunds: the order's entries and the
   balances of the members they paid.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from chalicelib.domain.events import ORDER_CANCELLED, ORDER_PAID, ORDER_REFUNDED
from chalicelib.domain.rewards import RulesDoc, month_key
from chalicelib.services import rules as rules_service
from chalicelib.store import keys
from chalicelib.store.ledger import OrderLedgerItem

if TYPE_CHECKING:
    from chalicelib.services.event_context import EventContext

Key = tuple[str, str]
REFUND_EVENTS = (ORDER_REFUNDED, ORDER_CANCELLED)


def order_hash(partner_id: str, order_id: str) -> str:
    return hashlib.sha256(f"{partner_id}|{order_id}".encode()).hexdigest()[:40]


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
        okey = order_key(ctx)
        order = first.get(okey) if okey else None
        wanted: list[Key] = []
        if isinstance(order, OrderLedgerItem) and order.paid_business_key:
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
        if rule.recurring is not None:
            wanted += [keys.recurring_counter(pid, s, rule.id) for s in subjects]
    if rules.budget_points is not None:
        wanted.append(keys.program_counters(pid))
    return wanted
