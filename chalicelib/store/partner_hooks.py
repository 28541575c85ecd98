"""Outgoing partner webhooks in the single table: endpoints, their count, and deliveries.

* ``webhook_endpoint`` (``PROGRAM#<program>`` / ``WEBHOOKEP#<partner>#<endpoint>``): URL, event types,
  enabled, sealed signing secrets (``services.envelope``: KMS data key per value). A partner's
  endpoints are one bounded Query of the program partition (at most ``MAX_ENDPOINTS``).
* ``webhook_endpoint_count`` (``WEBHOOKEPS#<partner>``): the bound, kept in the create/delete transaction.
* ``webhook_delivery`` (``WHLOG#<program>#<endpoint>`` / ``DELIVERY#<delivery id>``): one message to one
  endpoint, created once per source record (conditional put). While an attempt is due it carries the
  sparse GSI1 key ``WHDUE#<shard>`` / ``<next_attempt_at>#…``, which the sender queries (no Scan); a
  delivered or finally failed delivery leaves the index. Kept 30 days (TTL). A delivery about a member
  also carries GSI2 ``WHMEMBER#<program>#<member>`` / ``<delivery>#<endpoint>`` (erasure and export).
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Any

from pynamodb.attributes import BooleanAttribute, JSONAttribute, NumberAttribute, UnicodeAttribute
from pynamodb.exceptions import DoesNotExist, PutError, UpdateError
from pynamodb.expressions.condition import Condition
from pynamodb.expressions.update import Action

from chalicelib.domain.clock import iso
from chalicelib.domain.partner_hooks import CANCELLED as CANCELLED  # the statuses and the bound: defined there
from chalicelib.domain.partner_hooks import DELIVERED as DELIVERED
from chalicelib.domain.partner_hooks import FAILED as FAILED
from chalicelib.domain.partner_hooks import MAX_ENDPOINTS as MAX_ENDPOINTS
from chalicelib.domain.partner_hooks import PENDING as PENDING
from chalicelib.store import keys
from chalicelib.store.db import Entity, IsoDateTimeAttribute

#: Shards of the due index (writes spread over this many GSI1 partitions; the sender queries each).
DUE_SHARDS = 4
#: How long the delivery log keeps a delivery.
DELIVERY_RETENTION = timedelta(days=30)


class WebhookEndpointItem(Entity, discriminator="webhook_endpoint"):
    program_id = UnicodeAttribute()
    partner_id = UnicodeAttribute()
    endpoint_id = UnicodeAttribute()
    url = UnicodeAttribute()
    event_types = JSONAttribute(default=list)
    description = UnicodeAttribute(null=True)
    enabled = BooleanAttribute(default=True)
    #: ``failing`` when the sender gave up on a delivery and disabled the endpoint.
    disabled_reason = UnicodeAttribute(null=True)
    disabled_at = IsoDateTimeAttribute(null=True)
    #: The disable notice to the partner: ``{"status": sent|no_contact_email|failed, "at": iso, "delivery_id"}``.
    notice = JSONAttribute(null=True)
    #: ``[{"sealed": {...}, "created_at": iso, "expires_at": iso|None}]``, newest last.
    secrets = JSONAttribute(default=list)
    revision = NumberAttribute(default=0)
    created_at = IsoDateTimeAttribute()
    updated_at = IsoDateTimeAttribute()


class WebhookEndpointCountItem(Entity, discriminator="webhook_endpoint_count"):
    endpoints = NumberAttribute(default=0)


class WebhookDeliveryItem(Entity, discriminator="webhook_delivery"):
    program_id = UnicodeAttribute()
    partner_id = UnicodeAttribute()
    endpoint_id = UnicodeAttribute()
    delivery_id = UnicodeAttribute()
    event_type = UnicodeAttribute()
    #: What it was built from (``ledger_entry:<id>``…): one delivery per endpoint and source.
    source_id = UnicodeAttribute()
    #: The member the payload is about (indexed by GSI2 ``WHMEMBER#<program>#<member>``), if any.
    member_id = UnicodeAttribute(null=True)
    #: The exact JSON body sent (signed as is).
    body = UnicodeAttribute()
    status = UnicodeAttribute()  # pending | delivered | failed | cancelled
    attempts = NumberAttribute(default=0)
    #: A manual retry allows one more attempt than were made; ``None``: the backoff schedule's.
    max_attempts = NumberAttribute(null=True)
    next_attempt_at = IsoDateTimeAttribute(null=True)
    last_attempt_at = IsoDateTimeAttribute(null=True)
    last_status_code = NumberAttribute(null=True)
    #: ``http_status`` | ``timeout`` | ``connection_error`` | ``unsafe_target`` | ``endpoint_disabled`` | …
    last_error = UnicodeAttribute(null=True)
    #: The start of the partner's answer (at most ``RESPONSE_CHARS``).
    last_response = UnicodeAttribute(null=True)
    delivered_at = IsoDateTimeAttribute(null=True)
    created_at = IsoDateTimeAttribute()
    expires_at_epoch = NumberAttribute(null=True)


# --------------------------------------------------------------------------- endpoints


def get_endpoint(program_id: str, partner_id: str, endpoint_id: str) -> WebhookEndpointItem | None:
    try:
        item = WebhookEndpointItem.get(*keys.webhook_endpoint(program_id, partner_id, endpoint_id),
                                       consistent_read=True)
    except DoesNotExist:
        return None
    return item if isinstance(item, WebhookEndpointItem) else None


def endpoints_of(program_id: str, partner_id: str) -> list[WebhookEndpointItem]:
    """A partner's endpoints: one Query, bounded by ``MAX_ENDPOINTS``."""
    pk, prefix = keys.webhook_endpoints_prefix(program_id, partner_id)
    return [i for i in WebhookEndpointItem.query(pk, WebhookEndpointItem.SK.startswith(prefix),
                                                 limit=MAX_ENDPOINTS + 1)
            if isinstance(i, WebhookEndpointItem)]


def count_ref(program_id: str, partner_id: str) -> WebhookEndpointCountItem:
    pk, sk = keys.webhook_endpoint_count(program_id, partner_id)
    return WebhookEndpointCountItem(PK=pk, SK=sk)


def conditional_update(item: Entity, actions: list[Action], condition: Condition | None) -> bool:
    """One UpdateItem; ``False`` when its condition failed (someone else got there first)."""
    try:
        item.update(actions=actions, condition=condition)
    except UpdateError as exc:
        if getattr(exc, "cause_response_code", None) == "ConditionalCheckFailedException":
            return False
        raise
    return True


# --------------------------------------------------------------------------- deliveries


def delivery_id(program_id: str, endpoint_id: str, source_id: str, event_type: str, occurred_at: datetime) -> str:
    """Stable per endpoint and source record (a redelivered stream batch finds the same id); sorts by time."""
    digest = hashlib.sha256(f"{program_id}|{endpoint_id}|{source_id}|{event_type}".encode()).hexdigest()[:20]
    return f"whd_{occurred_at.strftime('%Y%m%d%H%M%S')}{digest}"


def shard_of(delivery: str) -> int:
    return int(hashlib.sha256(delivery.encode()).hexdigest()[:8], 16) % DUE_SHARDS


def due_key(item: WebhookDeliveryItem, at: datetime) -> tuple[str, str]:
    return keys.gsi1_webhook_due(shard_of(item.delivery_id), iso(at), item.program_id, item.endpoint_id,
                                 item.delivery_id)


def new_delivery(*, program_id: str, partner_id: str, endpoint_id: str, event_type: str, source_id: str,
                 occurred_at: datetime, body: str, now: datetime, delivery: str,
                 member_id: str | None = None) -> WebhookDeliveryItem:
    pk, sk = keys.webhook_delivery(program_id, endpoint_id, delivery)
    item = WebhookDeliveryItem(
        PK=pk, SK=sk, program_id=program_id, partner_id=partner_id, endpoint_id=endpoint_id, delivery_id=delivery,
        event_type=event_type, source_id=source_id, body=body, status=PENDING, attempts=0, next_attempt_at=now,
        created_at=now, expires_at_epoch=int((now + DELIVERY_RETENTION).timestamp()), member_id=member_id)
    item.GSI1PK, item.GSI1SK = due_key(item, now)
    if member_id:  # the payload names the member: the erasure and the export find it by this index (GSI2)
        item.GSI2PK, item.GSI2SK = keys.gsi2_member_webhook_delivery(program_id, member_id, delivery, endpoint_id)
    return item


def create_delivery(item: WebhookDeliveryItem) -> bool:
    """Conditional put: ``False`` when this delivery already exists (a redelivered source record), or when it names
    a member whose erasure has started (checked in the same transaction: ``members.create_unless_erased``)."""
    if item.member_id:
        from chalicelib.store.members import create_unless_erased

        return create_unless_erased(item, item.program_id, item.member_id) == "created"
    try:
        item.save(condition=Entity.PK.does_not_exist())
    except PutError as exc:
        if getattr(exc, "cause_response_code", None) == "ConditionalCheckFailedException":
            return False
        raise
    return True


def get_delivery(program_id: str, endpoint_id: str, delivery: str) -> WebhookDeliveryItem | None:
    try:
        item = WebhookDeliveryItem.get(*keys.webhook_delivery(program_id, endpoint_id, delivery),
                                       consistent_read=True)
    except DoesNotExist:
        return None
    return item if isinstance(item, WebhookDeliveryItem) else None


def due(shard: int, now: datetime, limit: int) -> list[WebhookDeliveryItem]:
    """Deliveries of one shard whose next attempt is due (GSI1 Query, oldest first, bounded)."""
    bound = f"{iso(now)}#~"
    return [i for i in WebhookDeliveryItem.gsi1.query(keys.gsi1_webhook_due_partition(shard),
                                                      Entity.GSI1SK <= bound, limit=limit)  # noqa: SIM300
            if isinstance(i, WebhookDeliveryItem)]


def log_page(program_id: str, endpoint_id: str, limit: int, cursor: dict[str, Any] | None) -> tuple[
        list[WebhookDeliveryItem], dict[str, Any] | None]:
    """An endpoint's deliveries, newest first (one bounded Query)."""
    result = WebhookDeliveryItem.query(keys.webhook_delivery_partition(program_id, endpoint_id),
                                       WebhookDeliveryItem.SK.startswith("DELIVERY#"), scan_index_forward=False,
                                       limit=limit, last_evaluated_key=cursor)
    items = [i for i in result if isinstance(i, WebhookDeliveryItem)]
    return items, result.last_evaluated_key
