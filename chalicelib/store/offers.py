"""Partner offers, their code pools, issued vouchers and low-pool alerts in the single table.

Pool layout (see docs/coalition.md): an offer's codes are spread over ``SHARDS`` partitions
``POOL#<program>#<offer>#<shard>``. Each has a ``HEAD`` (``size``: positions filled, ``next``: the
next position to issue) and one ``SLOT#<position>`` item per code. A ``POOLCODE#…`` item per code
keeps codes unique within the pool. Issuing takes the slot at ``next`` of one shard: the head is
updated with ``next = :seen`` and the slot with ``attribute_not_exists(voucher_id)`` in the event's
one transaction, so a code can only ever be issued once; the loser of a race re-reads.
"""

from __future__ import annotations

from typing import Any

from pynamodb.attributes import BooleanAttribute, NumberAttribute, UnicodeAttribute

from chalicelib.domain.offers import SHARDS
from chalicelib.store import keys
from chalicelib.store.db import Entity, IsoDateTimeAttribute


class OfferItem(Entity, discriminator="offer"):
    program_id = UnicodeAttribute()
    partner_id = UnicodeAttribute()
    offer_id = UnicodeAttribute()
    name = UnicodeAttribute()
    description = UnicodeAttribute(null=True)
    kind = UnicodeAttribute()  # percent_off | fixed_discount | free_item | subscription_month
    percent = NumberAttribute(null=True)
    amount_minor = NumberAttribute(null=True)
    currency = UnicodeAttribute(null=True)
    item = UnicodeAttribute(null=True)
    subscription = UnicodeAttribute(null=True)
    code_source = UnicodeAttribute()  # static | pool
    static_code = UnicodeAttribute(null=True)
    low_pool_threshold = NumberAttribute(null=True)
    valid_days = NumberAttribute(null=True)
    enabled = BooleanAttribute(default=True)
    archived = BooleanAttribute(default=False)
    #: Counts refills that lifted the pool to the threshold or above: one alert per epoch.
    alert_epoch = NumberAttribute(default=0)
    revision = NumberAttribute(default=0)
    created_at = IsoDateTimeAttribute()
    updated_at = IsoDateTimeAttribute()

    @property
    def issuable(self) -> bool:
        return bool(self.enabled) and not self.archived


class PoolHeadItem(Entity, discriminator="pool_head"):
    program_id = UnicodeAttribute(null=True)
    offer_id = UnicodeAttribute(null=True)
    shard = NumberAttribute(null=True)
    size = NumberAttribute(default=0)
    next = NumberAttribute(default=0)

    @property
    def remaining(self) -> int:
        return max(int(self.size or 0) - int(self.next or 0), 0)


class PoolSlotItem(Entity, discriminator="pool_slot"):
    program_id = UnicodeAttribute()
    offer_id = UnicodeAttribute()
    shard = NumberAttribute()
    position = NumberAttribute()
    code = UnicodeAttribute()
    uploaded_at = IsoDateTimeAttribute()
    #: Set when issued (never unset).
    voucher_id = UnicodeAttribute(null=True)
    member_id = UnicodeAttribute(null=True)
    issued_at = IsoDateTimeAttribute(null=True)


class PoolCodeItem(Entity, discriminator="pool_code"):
    program_id = UnicodeAttribute()
    offer_id = UnicodeAttribute()
    shard = NumberAttribute()
    position = NumberAttribute()


class VoucherItem(Entity, discriminator="voucher"):
    """A voucher issued to a member (attributes: docs/data-model.md)."""

    program_id = UnicodeAttribute()
    member_id = UnicodeAttribute()
    voucher_id = UnicodeAttribute()
    offer_id = UnicodeAttribute()
    #: The partner whose offer it is (where the member uses it).
    partner_id = UnicodeAttribute()
    code = UnicodeAttribute()
    code_source = UnicodeAttribute()
    name = UnicodeAttribute()
    kind = UnicodeAttribute()
    percent = NumberAttribute(null=True)
    amount_minor = NumberAttribute(null=True)
    currency = UnicodeAttribute(null=True)
    item = UnicodeAttribute(null=True)
    subscription = UnicodeAttribute(null=True)
    status = UnicodeAttribute(default="issued")
    reason = UnicodeAttribute()
    reason_code = UnicodeAttribute()  # offer_reward | birthday_gift | tier_privilege | ...
    #: Why it was given: the event (or job run) and, for rules, the rule.
    business_key = UnicodeAttribute()
    event_partner_id = UnicodeAttribute(null=True)  # where the triggering event happened
    rule_id = UnicodeAttribute(null=True)
    rule_version = NumberAttribute(null=True)
    level = NumberAttribute(null=True)
    #: Pool codes: where the code came from.
    shard = NumberAttribute(null=True)
    position = NumberAttribute(null=True)
    issued_at = IsoDateTimeAttribute()
    expires_at = IsoDateTimeAttribute(null=True)


class VoucherMonthItem(Entity, discriminator="voucher_month"):
    """Vouchers of one rule a member got in one month (``points`` counts them: ``stage_counter``)."""

    points = NumberAttribute(default=0)


class PoolAlertItem(Entity, discriminator="pool_alert"):
    """One low-pool alert per threshold crossing; its stream INSERT sends the partner's e-mail."""

    program_id = UnicodeAttribute()
    partner_id = UnicodeAttribute()
    offer_id = UnicodeAttribute()
    epoch = NumberAttribute()
    threshold = NumberAttribute()
    remaining = NumberAttribute()
    created_at = IsoDateTimeAttribute()
    business_key = UnicodeAttribute(null=True)


def head_keys(program_id: str, offer_id: str) -> list[tuple[str, str]]:
    return [keys.pool_head(program_id, offer_id, s) for s in range(SHARDS)]


def heads_of(program_id: str, offer_id: str, items: dict[tuple[str, str], Any]) -> dict[int, PoolHeadItem | None]:
    out: dict[int, PoolHeadItem | None] = {}
    for s in range(SHARDS):
        item = items.get(keys.pool_head(program_id, offer_id, s))
        out[s] = item if isinstance(item, PoolHeadItem) else None
    return out


