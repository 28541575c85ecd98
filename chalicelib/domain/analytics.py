"""Analytics figures as pure functions: counter names, period buckets, the figures' definitions.

The stream consumer (``chalicelib/analytics/consumer.py``) turns each source item into counter
increments on pre-aggregated items (per program and day, per partner and day, per channel/UTM and
day, per rule and day, per join-month cohort, leaderboard entries); the panels read those items
(a bounded number of Queries whatever the program's size) and compute the figures here.
Definitions are in ``docs/analytics.md``; they are repeated next to each function.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import date, datetime, timedelta
from typing import Any

#: Counters of a day item (coalition totals, a partner's row, a channel row).
FUNNEL = ("clicks", "signups", "leads", "first_purchases", "repeat_purchases")
DAY_COUNTERS = (*FUNNEL, "signups_referred", "first_purchases_referred", "orders", "orders_referred",
                "revenue", "revenue_referred", "refunds", "refund_amount", "reward_points", "redeemed_points",
                "notifications_sent", "notifications_failed", "notifications_skipped")
#: Final delivery statuses of an outbox message that the delivery stats count.
DELIVERY_STATUSES = ("sent", "failed", "skipped")
#: Viral cycle time histogram: upper bounds in days of each bucket (the last bucket is "more").
CYCLE_BOUNDS_DAYS = (1, 2, 3, 5, 7, 10, 14, 21, 30, 45, 60, 90, 120, 180, 365)
CYCLE_BUCKETS = len(CYCLE_BOUNDS_DAYS) + 1
#: The longest range one panel request may cover (bounded reads at the edge).
MAX_RANGE_DAYS = 366
GRANULARITIES = ("day", "week", "month")
PANELS = ("funnel", "kfactor", "cohorts", "roi", "leaderboard", "channels")
LEADERBOARD_METRICS = ("converted", "revenue")
SCORE_DIGITS = 15
_EPOCH_SPAN = 10 ** 11


class RangeError(ValueError):
    def __init__(self, message: str, details: dict[str, Any]) -> None:
        super().__init__(message)
        self.details = details


def parse_range(raw_from: str | None, raw_to: str | None, today: date) -> tuple[date, date]:
    """``from``/``to`` as dates (``YYYY-MM-DD``, inclusive). Default: the last 28 days up to today.
    At most :data:`MAX_RANGE_DAYS` days, ``from`` ≤ ``to``."""
    try:
        end = date.fromisoformat(raw_to) if raw_to else today
        start = date.fromisoformat(raw_from) if raw_from else end - timedelta(days=27)
    except ValueError as exc:
        raise RangeError("'from' and 'to' must be dates (YYYY-MM-DD)", {"from": raw_from, "to": raw_to}) from exc
    if start > end:
        raise RangeError("'from' is after 'to'", {"from": start.isoformat(), "to": end.isoformat()})
    if (end - start).days + 1 > MAX_RANGE_DAYS:
        raise RangeError(f"A range covers at most {MAX_RANGE_DAYS} days",
                         {"from": start.isoformat(), "to": end.isoformat(), "max_days": MAX_RANGE_DAYS})
    return start, end


def bucket(day: str, granularity: str) -> str:
    """The period a day belongs to: the day, the Monday of its ISO week, or ``YYYY-MM``."""
    if granularity == "day":
        return day
    d = date.fromisoformat(day)
    if granularity == "week":
        return (d - timedelta(days=d.weekday())).isoformat()
    return day[:7]


def roll_up(rows: Iterable[tuple[str, Mapping[str, int]]], granularity: str,
            names: Iterable[str] = DAY_COUNTERS) -> dict[str, dict[str, int]]:
    """Sum day rows ``(day, counters)`` into periods, in period order; every name present (0 if none)."""
    wanted = tuple(names)
    out: dict[str, dict[str, int]] = {}
    for day, counters in rows:
        period = out.setdefault(bucket(day, granularity), dict.fromkeys(wanted, 0))
        for name in wanted:
            period[name] += int(counters.get(name, 0) or 0)
    return dict(sorted(out.items()))


def periods(start: date, end: date, granularity: str) -> list[str]:
    """Every period from ``start`` to ``end`` (so a chart has a point, zero or not, for each)."""
    out: list[str] = []
    day = start
    while day <= end:
        label = bucket(day.isoformat(), granularity)
        if not out or out[-1] != label:
            out.append(label)
        day += timedelta(days=1)
    return out


def ratio(numerator: int, denominator: int) -> float | None:
    """``numerator / denominator`` rounded to 4 places; ``None`` when there is nothing to divide by."""
    return round(numerator / denominator, 4) if denominator else None


def referral_rate(first_purchases: int, first_purchases_referred: int) -> float | None:
    """Share of new customers (members' first purchases) who came referred."""
    return ratio(first_purchases_referred, first_purchases)


def kfactor(clicks: int, referred_first_purchases: int, members: int) -> dict[str, float | None]:
    """K = i × c over a period: i = invites sent per member (link clicks in the period / members at its end),
    c = conversion of an invite (referred friends' first purchases in the period / link clicks)."""
    invites_per_member = ratio(clicks, members)
    conversion = ratio(referred_first_purchases, clicks)
    k = round(invites_per_member * conversion, 4) if invites_per_member is not None and conversion is not None \
        else None
    return {"invites_per_member": invites_per_member, "invite_conversion": conversion, "k_factor": k}


def cycle_bucket(seconds: float) -> int:
    """The histogram bucket of one viral cycle (referrer's join → the friend's first purchase)."""
    days = max(seconds, 0) / 86400
    for index, bound in enumerate(CYCLE_BOUNDS_DAYS):
        if days <= bound:
            return index
    return len(CYCLE_BOUNDS_DAYS)


def cycle_median_days(histogram: list[int]) -> int | None:
    """Median viral cycle time in days, as the upper bound of the bucket holding the median cycle
    (``None`` without cycles; beyond the last bound: the last bound, reported as "more than")."""
    total = sum(histogram)
    if not total:
        return None
    middle, seen = (total + 1) // 2, 0
    for index, count in enumerate(histogram):
        seen += count
        if seen >= middle:
            return CYCLE_BOUNDS_DAYS[min(index, len(CYCLE_BOUNDS_DAYS) - 1)]
    return CYCLE_BOUNDS_DAYS[-1]


def cohort_row(month: str, referred: bool, counters: Mapping[str, int]) -> dict[str, Any]:
    """Value of one join-month cohort's customers: orders, revenue, average order, repeat rate."""
    customers = int(counters.get("customers", 0) or 0)
    orders = int(counters.get("orders", 0) or 0)
    revenue = int(counters.get("revenue", 0) or 0)
    repeaters = int(counters.get("repeaters", 0) or 0)
    return {"cohort": month, "referred": referred, "customers": customers, "orders": orders, "revenue": revenue,
            "average_order": revenue // orders if orders else None, "repeat_rate": ratio(repeaters, customers)}


def roi(referred_revenue: int, reward_points: int, point_value_minor: int) -> dict[str, Any]:
    """Reward cost (points × point value) vs referred revenue; ROI = (revenue − cost) / cost."""
    cost = reward_points * point_value_minor
    return {"referred_revenue": referred_revenue, "reward_points": reward_points, "reward_cost": cost,
            "roi": ratio(referred_revenue - cost, cost)}


def leaderboard_sort_key(score: int, reached_at: datetime, member_id: str) -> str:
    """Sort key read newest-to-oldest (descending): higher score first; on a tie whoever reached the score
    first ranks higher (inverted epoch), then the member id, so ties are stable."""
    inverted = _EPOCH_SPAN - int(reached_at.timestamp())
    return f"{max(score, 0):0{SCORE_DIGITS}d}#{inverted:011d}#{member_id}"


def periods_of(at: datetime) -> tuple[str, str]:
    """Leaderboard periods a fact counts in: its month and all time."""
    return at.strftime("%Y-%m"), "all"


_UNSAFE = re.compile(r"[^0-9A-Za-z._~@+\-]")


def dimension_value(value: Any, limit: int = 40) -> str:
    """A channel or UTM value as a bounded, key-safe label (``-`` when absent)."""
    text = _UNSAFE.sub("_", str(value or "").strip().lower())[:limit]
    return text or "-"


def utm_label(utm: Mapping[str, Any] | None) -> str:
    utm = utm or {}
    return "/".join(dimension_value(utm.get(k), 30) for k in ("source", "medium", "campaign"))


def mask_name(name: str | None) -> str:
    """``Anna Petrova`` → ``Anna P.``; one word → its first letter and ``***``."""
    parts = (name or "").split()
    if not parts:
        return "***"
    if len(parts) == 1:
        return parts[0][:1] + "***"
    return f"{parts[0]} {parts[-1][:1]}."
