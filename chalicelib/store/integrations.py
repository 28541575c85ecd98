"""Platform integrations (Shopify, WooCommerce, CRMs…) of a partner, in the single table.

Secrets the platform issued are stored sealed (``services.envelope``: a KMS data key per
value); tokens we issue are stored only as SHA-256 hashes. Read through the in-process
config cache like partner records: a webhook costs at most one read for its integration.
"""

from __future__ import annotations

from pynamodb.attributes import JSONAttribute, NumberAttribute, UnicodeAttribute
from pynamodb.exceptions import DoesNotExist

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


class IntegrationLogItem(Entity, discriminator="integration_log"):
    """A permanent failure worth a partner's attention (e.g. the CRM API refused our token)."""

    program_id = UnicodeAttribute()
    partner_id = UnicodeAttribute()
    platform = UnicodeAttribute()
    code = UnicodeAttribute()
    message = UnicodeAttribute()
    object_id = UnicodeAttribute(null=True)
    at = IsoDateTimeAttribute()


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


def list_for_partner(program_id: str, partner_id: str) -> list[IntegrationItem]:
    pk, prefix = keys.integrations_prefix(program_id, partner_id)
    return [i for i in IntegrationItem.query(pk, IntegrationItem.SK.startswith(prefix), limit=50)
            if isinstance(i, IntegrationItem)]
