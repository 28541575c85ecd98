"""A member's leaderboard entries, registered with the erasure service (they carry the member's code and
masked name).

Entries live in ``AGG#<program>#LEADER#<converted|revenue>#<yyyy-mm|all>`` / ``MEMBER#<member>`` (one per
metric and period the member scored in). They are found without a Scan: their keys are known from the
member's join month up to the current month (a member scores only after joining), read in batches of
``PERIODS_PER_PAGE`` periods; the entries found are deleted. The analytics totals (day, partner, channel,
rule and cohort rows) hold no member and stay exactly as they were.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from chalicelib.analytics.store import LeaderboardItem, leader_partition
from chalicelib.services import ports
from chalicelib.store import keys
from chalicelib.store.db import Entity
from chalicelib.store.erasure_kinds import ErasableKind, ErasureTarget, Page, register
from chalicelib.store.members import MemberItem, batch_get

METRICS = ("converted", "revenue")


def _months(first: datetime, last: datetime) -> list[str]:
    y, m = first.year, first.month
    out = []
    while (y, m) <= (last.year, last.month):
        out.append(f"{y:04d}-{m:02d}")
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


def _periods(target: ErasureTarget) -> list[str]:
    try:
        member = MemberItem.get(*keys.member(target.program_id, target.member_id), consistent_read=True)
        joined = member.joined_at if isinstance(member, MemberItem) else None
    except MemberItem.DoesNotExist:
        joined = None
    now = ports.current().clock.now()
    return ["all", *_months(joined or now, now)]


def find_leaderboard(target: ErasureTarget, cursor: dict[str, Any] | None, limit: int) -> Page:
    periods = _periods(target)
    start = int((cursor or {}).get("period", 0))
    step = max(limit // len(METRICS), 1)
    chunk = periods[start:start + step]
    wanted = [(leader_partition(target.program_id, metric, period), f"MEMBER#{target.member_id}")
              for period in chunk for metric in METRICS]
    found = batch_get(wanted)
    items: list[Entity] = [found[k] for k in wanted if isinstance(found.get(k), LeaderboardItem)]
    following = start + step
    return Page(items, {"period": following} if following < len(periods) else None)


register(ErasableKind(name="leaderboard", find=find_leaderboard, scrub=lambda tx, item: tx.delete(item), export=True))
