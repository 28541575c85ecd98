"""Platform integrations (Shopify, WooCommerce, CRMs…) of a partner, in the single table.

Secrets the platform issued are stored sealed (``services.envelope``: a KMS data key per
value); tokens we issue are stored only as SHA-256 hashes. Read through the in-process
config cache like partner records: a webhook costs at most one read for its integration.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Any

from pynamodb.attributes import JSONAttribute, NumberAttribute, UnicodeAttribute
from pynamodb.exceptions import DoesNotExist, PutError

from chalicelib.config import get_settings
from chalicelib.domain.errors import Conflict
from chalicelib.store import cache, keys
from chalicelib.store.db import Entity, IsoDateTimeAttribute
from chalicelib.store.transact import Transaction


class IntegrationItem(Entity, discriminator="integration"):
    program_id = UnicodeAttribute()
    partner_id = UnicodeAttribute()
    platform = UnicodeAttribute()
    #: Non-secret settings (``shop_domain``, ``won_stage``…), validated by the adapter's schema.
    settings = JSONAttribute(default=dict)
    #: ``[{"sealed": {...}, "created_at": iso, "expires_at": iso|None}]``: platform-issued signing secrets.
    secrets = JSONAttribute(default=list)
    #: ``[{"sha256": hex, "created_at": iso, "expires_at": iso|None}]``: our URL tokens, hashed.
    tokens = JSONAttribute(default=list)
    #: Sealed API token for the CRM's REST API (asynchronous fetch), if given.
    api_token = JSONAttribute(null=True)
    revision = NumberAttribute(default=0)
    created_at = IsoDateTimeAttribute()
    updated_at = IsoDateTimeAttribute()


#: How long a partner's integration log keeps an entry (DynamoDB TTL).
LOG_TTL_DAYS = 90
#: How long an acknowledged CRM event id is remembered: a redelivery within it is not fetched again.
#: HubSpot retries a failed delivery up to 10 times over 24 hours; a week covers every platform's retries.
ACK_TTL_HOURS = 7 * 24


class IntegrationLogItem(Entity, discriminator="integration_log"):
    """A permanent failure worth a partner's attention (e.g. the CRM API refused our token)."""

    program_id = UnicodeAttribute()
    partner_id = UnicodeAttribute()
    platform = UnicodeAttribute()
    code = UnicodeAttribute()
    message = UnicodeAttribute()
    object_id = UnicodeAttribute(null=True)
    at = IsoDateTimeAttribute()
    expires_at_epoch = NumberAttribute(null=True)


class CrmAckItem(Entity, discriminator="crm_ack"):
    """A CRM event (by the platform's event id) acknowledged and queued for the asynchronous fetch."""

    expires_at_epoch = NumberAttribute()


def _cache_key(program_id: str, partner_id: str, platform: str) -> str:
    return f"{program_id}/{partner_id}/{platform}"


def get(program_id: str, partner_id: str, platform: str, *, fresh: bool = False) -> IntegrationItem | None:
    cache_key = _cache_key(program_id, partner_id, platform)

    def load() -> IntegrationItem | None:
        try:
            item = IntegrationItem.get(*keys.integration(program_id, partner_id, platform))
        except DoesNotExist:
            return None
        return item if isinstance(item, IntegrationItem) else None

    if fresh:
        cache.invalidate("integration", cache_key)
    item = cache.cached("integration", cache_key, get_settings().config_cache_seconds, load)
    if item is None:
        cache.invalidate("integration", cache_key)
    return item


def save(item: IntegrationItem, expected_revision: int | None) -> None:
    """Create (``expected_revision is None``) or replace the revision read; a concurrent change is a 409."""
    tx = Transaction()
    clash = Conflict("The integration changed concurrently; retry", code="concurrent_update")
    if expected_revision is None:
        tx.create(item, on_fail=clash)
    else:
        tx.put(item, IntegrationItem.revision == expected_revision, on_fail=clash)
    tx.commit()
    cache.invalidate("integration", _cache_key(item.program_id, item.partner_id, item.platform))


def delete(item: IntegrationItem) -> None:
    tx = Transaction()
    tx.delete(item, Entity.PK.exists(), on_fail=Conflict("The integration changed concurrently; retry",
                                                          code="concurrent_update"))
    tx.commit()
    cache.invalidate("integration", _cache_key(item.program_id, item.partner_id, item.platform))


def add_log_entry(item: IntegrationLogItem, now: datetime) -> None:
    item.expires_at_epoch = int((now + timedelta(days=LOG_TTL_DAYS)).timestamp())
    item.save()


def log_page(program_id: str, partner_id: str, platform: str, limit: int,
             cursor: dict[str, Any] | None) -> tuple[list[IntegrationLogItem], dict[str, Any] | None]:
    """One page of the log, newest first: one ``Query`` of at most ``limit`` items."""
    pk = keys.integration_log_partition(program_id, partner_id, platform)
    result = IntegrationLogItem.query(pk, scan_index_forward=False, limit=limit, last_evaluated_key=cursor)
    items = [i for i in result if isinstance(i, IntegrationLogItem)]
    return items, result.last_evaluated_key


def ack_key(program_id: str, partner_id: str, platform: str, event_id: str) -> tuple[str, str]:
    digest = hashlib.sha256(event_id.encode("utf-8")).hexdigest()[:32]  # bounded key, whatever the platform sends
    return keys.crm_ack(program_id, partner_id, platform, digest)


def acknowledge(program_id: str, partner_id: str, platform: str, event_id: str, now: datetime) -> bool:
    """Remember a CRM event id for :data:`ACK_TTL_HOURS`: one conditional ``PutItem``.

    ``False`` when it was acknowledged before and has not expired (a redelivery). An expired
    marker DynamoDB's TTL has not removed yet does not count.
    """
    item = CrmAckItem(*ack_key(program_id, partner_id, platform, event_id),
                      expires_at_epoch=int((now + timedelta(hours=ACK_TTL_HOURS)).timestamp()))
    try:
        item.save(condition=CrmAckItem.PK.does_not_exist() | (CrmAckItem.expires_at_epoch < int(now.timestamp())))
    except PutError as exc:
        if exc.cause_response_code == "ConditionalCheckFailedException":
            return False
        raise
    return True


def forget_ack(program_id: str, partner_id: str, platform: str, event_id: str) -> None:
    """Undo :func:`acknowledge` when the event could not be queued (the platform's retry must get through)."""
    CrmAckItem(*ack_key(program_id, partner_id, platform, event_id)).delete()
