"""Outgoing partner webhooks: stream records → deliveries (registered with ``notify.dispatcher``).

Each event type is built from one item kind's stream records by a *builder*, registered with one line::

    @partner_event("ledger_entry")          # the item kind (the single table's ``entity``)
    def reward_posted(record, item) -> list[PartnerEvent]: ...

The registration adds the kind to the one stream dispatcher (and so to the packaged stream filter,
``dispatcher.handled_entities``); no new event source mapping. **Tiers:** ``tier.changed`` is one more
builder at the end of this module, on the tiers' ``tier_change`` items (``store.tiers.TierChangeItem``,
a stream INSERT per change): ``@partner_event("tier_change")`` returning one ``PartnerEvent`` per partner
to tell (the commented example at the end shows the shape).

For every event the handler reads the receiving partner's endpoints (one bounded Query per partner and
batch) and, for each enabled endpoint subscribed to the type, puts a ``webhook_delivery`` item with a
condition (``attribute_not_exists``) keyed by endpoint and source record: a redelivered batch, or a
second consumer, creates no second delivery. The sender job (``jobs.partner_webhooks``) sends them.

Payloads carry no personal data: ids (member, entry, voucher, offer, redemption, partner), points and
amounts, and the partner's *own* order id only for the partner where the order happened.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from chalicelib.domain import clock, partner_hooks
from chalicelib.logs import get_logger
from chalicelib.notify import dispatcher
from chalicelib.services import ports
from chalicelib.store import partner_hooks as store
from chalicelib.store.ledger import LedgerEntryItem, RedemptionItem
from chalicelib.store.offers import PoolAlertItem, VoucherItem

log = get_logger("sarafan.partner_webhooks")


@dataclass(frozen=True)
class PartnerEvent:
    """One message to one partner's endpoints."""

    event_type: str  # one of domain.partner_hooks.EVENT_TYPES
    program_id: str
    partner_id: str  # who receives it
    source_id: str  # the source record (``<kind>:<id>``): one delivery per endpoint and source
    occurred_at: datetime
    data: dict[str, Any] = field(default_factory=dict)


Builder = Callable[[dispatcher.StreamRecord, Any], list[PartnerEvent]]
BUILDERS: dict[str, list[Builder]] = {}


def partner_event(entity: str) -> Callable[[Builder], Builder]:
    """Register ``builder`` for the stream records of item kind ``entity``."""

    def register(builder: Builder) -> Builder:
        if entity not in BUILDERS:
            BUILDERS[entity] = []

            def handler(records: list[dispatcher.StreamRecord]) -> set[str]:
                return on_records(entity, records)

            handler.__name__ = f"partner_webhooks_{entity}"
            dispatcher.handles(entity)(handler)
        if builder not in BUILDERS[entity]:
            BUILDERS[entity].append(builder)
        return builder

    return register


def on_records(entity: str, records: list[dispatcher.StreamRecord]) -> set[str]:
    failed: set[str] = set()
    endpoints: dict[tuple[str, str], list[store.WebhookEndpointItem]] = {}
    for record in records:
        if record.new_image is None:
            continue
        try:
            item = record.item()
            for builder in BUILDERS.get(entity, []):
                for event in builder(record, item):
                    fan_out(event, endpoints)
        except Exception as exc:  # reported: Lambda retries the record, the conditional puts make it safe
            log.warning("partner webhook deliveries not written", extra={"entity": entity,
                                                                         "error_type": type(exc).__name__})
            failed.add(record.sequence_number)
    return failed


def fan_out(event: PartnerEvent, cache: dict[tuple[str, str], list[store.WebhookEndpointItem]]) -> int:
    """Write one delivery per subscribed, enabled endpoint of the partner; the number written."""
    if event.event_type not in partner_hooks.EVENT_TYPES:
        raise ValueError(f"unknown partner event type {event.event_type!r}")
    key = (event.program_id, event.partner_id)
    if key not in cache:
        cache[key] = store.endpoints_of(*key)
    now = ports.current().clock.now()
    written = 0
    for endpoint in cache[key]:
        if not endpoint.enabled or event.event_type not in (endpoint.event_types or []):
            continue
        delivery = store.delivery_id(event.program_id, endpoint.endpoint_id, event.source_id, event.event_type,
                                     event.occurred_at)
        body = partner_hooks.message_body(delivery, event.event_type, clock.iso(event.occurred_at), event.data)
        item = store.new_delivery(program_id=event.program_id, partner_id=event.partner_id,
                                  endpoint_id=endpoint.endpoint_id, event_type=event.event_type,
                                  source_id=event.source_id, occurred_at=event.occurred_at,
                                  body=body.decode("utf-8"), now=now, delivery=delivery,
                                  member_id=event.data.get("member_id"))
        if store.create_delivery(item):
            written += 1
    return written


# --------------------------------------------------------------------------- the event types


def _iso(value: datetime | None) -> str | None:
    return clock.iso(value) if value is not None else None


def _order_id(business_key: str | None, partner_id: str) -> str | None:
    """The partner's own order id from a business key ``program|partner|order|<id>|<event>``, else None."""
    if not business_key:
        return None
    parts = business_key.split("|")
    if len(parts) != 5 or parts[1] != partner_id or parts[2] != "order":
        return None
    return parts[3].replace("%7C", "|").replace("%25", "%")


@partner_event("ledger_entry")
def reward_posted(record: dispatcher.StreamRecord, item: Any) -> list[PartnerEvent]:
    """``reward.posted``: a reward credited to a member, for the partner where it was earned and its funder."""
    if record.event_name != "INSERT" or not isinstance(item, LedgerEntryItem):
        return []
    if item.kind != "reward" or int(item.points) <= 0:
        return []
    out = []
    for partner in sorted({p for p in (item.partner_id, item.funding_partner_id) if p}):
        data: dict[str, Any] = {
            "entry_id": item.entry_id, "member_id": item.member_id, "points": int(item.points),
            "status": item.status, "available_at": _iso(item.available_at), "rule_id": item.rule_id,
            "partner_id": item.partner_id, "funding_partner_id": item.funding_partner_id,
            "reason_code": item.reason_code,
        }
        order = _order_id(item.business_key, partner)
        if order is not None:
            data["order_id"] = order
        out.append(PartnerEvent("reward.posted", item.program_id, partner, f"ledger_entry:{item.entry_id}",
                                item.created_at, data))
    return out


@partner_event("voucher")
def voucher_issued(record: dispatcher.StreamRecord, item: Any) -> list[PartnerEvent]:
    """``voucher.issued``: a code of the partner's offer given to a member."""
    if record.event_name != "INSERT" or not isinstance(item, VoucherItem):
        return []
    data = {"voucher_id": item.voucher_id, "member_id": item.member_id, "offer_id": item.offer_id,
            "code": item.code, "issued_at": clock.iso(item.issued_at), "expires_at": _iso(item.expires_at),
            "reason_code": item.reason_code, "rule_id": item.rule_id, "event_partner_id": item.event_partner_id}
    return [PartnerEvent("voucher.issued", item.program_id, item.partner_id, f"voucher:{item.voucher_id}",
                         item.issued_at, data)]


@partner_event("pool_alert")
def pool_low(record: dispatcher.StreamRecord, item: Any) -> list[PartnerEvent]:
    """``pool.low``: the partner's code pool fell below its threshold (once per crossing, like the e-mail)."""
    if record.event_name != "INSERT" or not isinstance(item, PoolAlertItem):
        return []
    data = {"offer_id": item.offer_id, "remaining": int(item.remaining), "threshold": int(item.threshold),
            "epoch": int(item.epoch)}
    return [PartnerEvent("pool.low", item.program_id, item.partner_id,
                         f"pool_alert:{item.offer_id}:{int(item.epoch)}", item.created_at, data)]


@partner_event("redemption")
def redemption_confirmed(record: dispatcher.StreamRecord, item: Any) -> list[PartnerEvent]:
    """``redemption.confirmed``: points spent at the partner, confirmed (the order went through)."""
    if record.event_name not in ("INSERT", "MODIFY") or not isinstance(item, RedemptionItem):
        return []
    if item.status != "confirmed" or not item.partner_id:
        return []
    data = {"redemption_id": item.redemption_id, "member_id": item.member_id, "points": int(item.points),
            "value_minor": int(item.value_minor), "currency": item.currency, "order_id": item.order_id,
            "order_amount": int(item.order_amount) if item.order_amount is not None else None}
    return [PartnerEvent("redemption.confirmed", item.program_id, item.partner_id,
                         f"redemption:{item.redemption_id}:confirmed", item.updated_at, data)]


@partner_event("tier_change")
def tier_changed(record: dispatcher.StreamRecord, item: Any) -> list[PartnerEvent]:
    """``tier.changed``: a member's tier changed (promotion by an event, or the periodic review), told to every
    partner the member is known at (``TierChangeItem.partner_ids``: their customer ids, the event's partner)."""
    from chalicelib.store.tiers import TierChangeItem

    if record.event_name != "INSERT" or not isinstance(item, TierChangeItem):
        return []
    data = {"member_id": item.member_id, "from_tier": item.from_tier, "to_tier": item.to_tier,
            "direction": item.direction, "reason_code": item.reason_code, "metric": item.metric,
            "value": int(item.value), "threshold": int(item.threshold), "at": clock.iso(item.at)}
    return [PartnerEvent("tier.changed", item.program_id, partner_id, f"tier_change:{item.change_id}", item.at, data)
            for partner_id in item.partner_ids or []]
