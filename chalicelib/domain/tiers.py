"""Member tiers (pure): the rolling metric in monthly buckets, the tier it reaches, when to review it.

A member's metric (points earned, spend in minor units, or converted referrals, one per program:
``settings.tiers.metric``) is kept as a small map of calendar-month buckets ``{"2026-03": 1200, ...}``
(UTC months). The rolling period of ``period_months`` is the current month and the ``period_months - 1``
before it, so the map never holds more than ``period_months`` buckets (older ones are dropped on every
write) and the value is a sum over at most 36 numbers, never a read of the ledger.

* Promotion: at once, when an event lifts the value to a higher tier's threshold (``promoted``).
* Demotion: only at review (``reviewed``), when old months have left the window. ``review_month`` says
  when that can first happen if nothing new is earned: the member is indexed under that month, and the
  review job reads only the months that are due.

No I/O, no clock: ``now`` is passed in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from chalicelib.domain.settings import TierLevel, TierSettings


def month_of(at: datetime) -> str:
    return f"{at.year:04d}-{at.month:02d}"


def shift_month(month: str, delta: int) -> str:
    y, m = divmod(int(month[:4]) * 12 + int(month[5:7]) - 1 + delta, 12)
    return f"{y:04d}-{m + 1:02d}"


def window(month: str, period_months: int) -> tuple[str, ...]:
    """The months of the rolling period that ends with ``month`` (oldest first)."""
    return tuple(shift_month(month, -i) for i in range(period_months - 1, -1, -1))


def prune(buckets: Mapping[str, int], month: str, period_months: int) -> dict[str, int]:
    """Only the buckets inside the window ending with ``month`` (and nothing zero)."""
    first = shift_month(month, -(period_months - 1))
    return {m: int(v) for m, v in buckets.items() if first <= m <= month and int(v) != 0}


def value(buckets: Mapping[str, int], month: str, period_months: int) -> int:
    """The metric over the window ending with ``month``; never below 0 (clawbacks cannot make it negative)."""
    return max(0, sum(int(v) for m, v in prune(buckets, month, period_months).items()))


def add(buckets: Mapping[str, int], month: str, amount: int, now_month: str, period_months: int) -> dict[str, int]:
    """``amount`` (may be negative: a clawback) added to ``month``'s bucket, pruned to the window of ``now_month``.

    A contribution to a month already outside the window (a back-dated event) changes nothing.
    """
    out = prune(buckets, now_month, period_months)
    if amount and month in window(now_month, period_months):
        out[month] = out.get(month, 0) + amount
        if out[month] == 0:
            del out[month]
    return out


def take(buckets: Mapping[str, int], month: str, amount: int, now_month: str, period_months: int) -> dict[str, int]:
    """A clawback of ``amount`` (> 0) counted from ``month``'s bucket first, then from the newest other months, never
    below zero: a refund takes back at most what was counted. A ``month`` already outside the window takes nothing
    (those points or that spend no longer count)."""
    out = prune(buckets, now_month, period_months)
    if amount <= 0 or month not in window(now_month, period_months):
        return out
    left = amount
    for m in [month, *sorted((m for m in out if m != month), reverse=True)]:
        have = out.get(m, 0)
        if left <= 0:
            break
        if have <= 0:
            continue
        used = min(have, left)
        left -= used
        if have == used:
            del out[m]
        else:
            out[m] = have - used
    return out


def rank(tiers: TierSettings, tier_id: str | None) -> int:
    """Position of a tier (0 = lowest); an unknown id (tiers redefined since) counts as the lowest."""
    return tiers.ids.index(tier_id) if tier_id in tiers.ids else 0


def level(tiers: TierSettings, tier_id: str | None) -> TierLevel:
    return tiers.levels[rank(tiers, tier_id)]


def reached(tiers: TierSettings, metric_value: int) -> TierLevel:
    """The highest tier whose threshold ``metric_value`` reaches (the lowest has threshold 0)."""
    return [lv for lv in tiers.levels if lv.threshold <= metric_value][-1]


def promoted(tiers: TierSettings, current: str | None, metric_value: int) -> TierLevel | None:
    """The tier an event moves the member up to, or None: an event never moves a member down."""
    target = reached(tiers, metric_value)
    return target if rank(tiers, target.id) > rank(tiers, current) else None


def reviewed(tiers: TierSettings, current: str | None, metric_value: int) -> TierLevel | None:
    """The tier a review moves the member to (down, or up if a promotion was missed), or None to stay."""
    target = reached(tiers, metric_value)
    return target if target.id != level(tiers, current).id or current not in tiers.ids else None


def review_month(tiers: TierSettings, tier_id: str | None, buckets: Mapping[str, int], now_month: str) -> str | None:
    """The first month from ``now_month`` on in which, with nothing new earned, the value falls below the
    tier's threshold (the member's review is due then); None for the lowest tier (nothing to lose)."""
    threshold = level(tiers, tier_id).threshold
    if threshold <= 0:
        return None
    for ahead in range(tiers.period_months + 1):
        month = shift_month(now_month, ahead)
        if value(buckets, month, tiers.period_months) < threshold:
            return month
    return shift_month(now_month, tiers.period_months)  # unreachable: the window is empty by then


@dataclass(frozen=True)
class Progress:
    tier: str
    metric: str
    value: int
    period_months: int
    next_tier: str | None
    next_threshold: int | None

    @property
    def remaining(self) -> int | None:
        return None if self.next_threshold is None else max(0, self.next_threshold - self.value)


def progress(tiers: TierSettings, tier_id: str | None, buckets: Mapping[str, int], now_month: str) -> Progress:
    """Where a member stands: the current tier, the metric over the period, and what the next tier needs."""
    current = level(tiers, tier_id)
    above = tiers.levels[rank(tiers, current.id) + 1:]
    nxt = above[0] if above else None
    return Progress(tier=current.id, metric=tiers.metric, value=value(buckets, now_month, tiers.period_months),
                    period_months=tiers.period_months, next_tier=nxt.id if nxt else None,
                    next_threshold=nxt.threshold if nxt else None)
