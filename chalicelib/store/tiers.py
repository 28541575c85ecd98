"""Member tiers in the single table (docs/coalition.md#tiers).

* ``TierStateItem`` (``MEMBER#<program>#<member>`` / ``TIER``): the member's tier, a ``version`` that every
  write checks and raises by one (promotion inside an event's transaction, review by the job: never
  check-then-write), the rolling metric's monthly buckets (at most ``period_months`` of them) and, for a
  member above the lowest tier, the sparse GSI1 key ``TIERREVIEW#<program>#<month>`` of the month the
  review is due.
* ``TierChangeItem`` (``TIERCHANGE#<at>#<id>`` in the member's partition): the history, one per change.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pynamodb.attributes import JSONAttribute, ListAttribute, NumberAttribute, UnicodeAttribute

from chalicelib.domain import clock
from chalicelib.store import keys
from chalicelib.store.db import Entity, IsoDateTimeAttribute
from chalicelib.store.transact import OnFail, Transaction


class TierStateItem(Entity, discriminator="tier_state"):
    program_id = UnicodeAttribute()
    member_id = UnicodeAttribute()
    tier = UnicodeAttribute()
    #: The metric the buckets measure; buckets of another metric (settings changed) are not counted.
    metric = UnicodeAttribute()
    #: ``{"YYYY-MM": amount}`` of the rolling period only.
    buckets = JSONAttribute(default=dict)
    version = NumberAttribute(default=0)
    tier_since = IsoDateTimeAttribute(null=True)
    updated_at = IsoDateTimeAttribute(null=True)
    #: The month the review is due (also in GSI1PK), None for the lowest tier.
    review_month = UnicodeAttribute(null=True)

    def buckets_for(self, metric: str) -> dict[str, int]:
        if self.metric != metric or not isinstance(self.buckets, Mapping):
            return {}
        return {str(k): int(v) for k, v in self.buckets.items() if isinstance(v, int | float)}


class TierChangeItem(Entity, discriminator="tier_change"):
    program_id = UnicodeAttribute()
    member_id = UnicodeAttribute()
    change_id = UnicodeAttribute()
    from_tier = UnicodeAttribute(null=True)
    to_tier = UnicodeAttribute()
    direction = UnicodeAttribute()  # "up" | "down"
    #: ``promotion`` (an event lifted the metric), ``review`` (the periodic re-evaluation).
    reason_code = UnicodeAttribute()
    reason = UnicodeAttribute()
    metric = UnicodeAttribute()
    value = NumberAttribute()
    threshold = NumberAttribute()
    business_key = UnicodeAttribute(null=True)
    at = IsoDateTimeAttribute()
    #: Partners the member is known at (their customer ids; the event's partner): who may be told (``tier.changed``).
    partner_ids: ListAttribute[str] = ListAttribute(of=UnicodeAttribute, default=list)  # type: ignore[arg-type]


def read_key(state: TierStateItem | None) -> int:
    return int(state.version or 0) if state is not None else 0


def stage_state(tx: Transaction, program_id: str, member_id: str, read: TierStateItem | None, *, tier: str,
                metric: str, buckets: Mapping[str, int], tier_since: datetime | None, review: str | None,
                now: datetime, on_fail: OnFail) -> TierStateItem:
    """Write the member's tier state, conditioned on the version read (absent: ``attribute_not_exists``)."""
    pk, sk = keys.member_tier(program_id, member_id)
    item = TierStateItem(PK=pk, SK=sk, program_id=program_id, member_id=member_id, tier=tier, metric=metric,
                         buckets=dict(buckets), version=read_key(read) + 1, tier_since=tier_since, updated_at=now,
                         review_month=review)
    if review is not None:
        item.GSI1PK, item.GSI1SK = keys.gsi1_tier_review(program_id, review, member_id)
    if read is None:
        tx.create(item, on_fail=on_fail)
    else:
        tx.put(item, TierStateItem.version == read_key(read), on_fail=on_fail)
    return item


def new_change(program_id: str, member_id: str, change_id: str, *, from_tier: str | None, to_tier: str,
               direction: str, reason_code: str, reason: str, metric: str, value: int, threshold: int, at: datetime,
               business_key: str | None, partner_ids: list[str] | None = None) -> TierChangeItem:
    pk, sk = keys.tier_change(program_id, member_id, clock.iso(at), change_id)
    return TierChangeItem(PK=pk, SK=sk, program_id=program_id, member_id=member_id, change_id=change_id,
                          from_tier=from_tier, to_tier=to_tier, direction=direction, reason_code=reason_code,
                          reason=reason, metric=metric, value=value, threshold=threshold, business_key=business_key,
                          at=at, partner_ids=sorted(set(partner_ids or ())))


def change_view(item: TierChangeItem) -> dict[str, Any]:
    return {"change_id": item.change_id, "from": item.from_tier, "to": item.to_tier, "direction": item.direction,
            "reason_code": item.reason_code, "reason": item.reason, "metric": item.metric, "value": int(item.value),
            "threshold": int(item.threshold), "at": clock.iso(item.at)}
