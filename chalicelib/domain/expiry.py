"""Points expiry, FIFO (pure): what expires at a cutoff, and who funded it.

Points expire ``expiry_months`` after they became available, oldest first. Debits (redemptions,
clawbacks from available, manual debits, earlier expiries) always take the oldest available
points first, so what is left of the points that became available up to the cutoff ``C`` is::

    max(0, credits_available_by(C) - all_debits_so_far)

(a debit can only take points that existed when it happened; at any time the oldest points are
the ones before ``C``, so debits take them first while any remain). This needs no lot items: the
member's ledger says it, and the job reads it. The expiring points are the newest part of the
pre-cutoff credits, attributed to their funders (settlement's ``expired`` column).
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class Credit:
    at: datetime  # when the points became available
    points: int
    funder: str | None


def months_before(at: datetime, months: int) -> datetime:
    """The same instant ``months`` calendar months earlier (the day clamped to the month's length)."""
    index = at.year * 12 + at.month - 1 - months
    year, month = divmod(index, 12)
    day = min(at.day, calendar.monthrange(year, month + 1)[1])
    return at.replace(year=year, month=month + 1, day=day)


def split(entries: Iterable[Mapping[str, Any]]) -> tuple[list[Credit], int]:
    """(credits to available with their times, total debits from available incl. earlier expiries) of one member.

    ``entries``: ``kind``, ``status``, ``points``, ``created_at``, ``available_at``, ``released_at``,
    ``entry_id``, ``reverses_entry_id``, ``from_status``, ``funding_partner_id``, ``partner_id``. Read once,
    in any order (the job hands it the ledger page by page): only the credits are kept."""
    pending_reversed: dict[str, int] = {}
    # (position in the ledger, entry id, available since, points, funder): ties keep the ledger's order
    rewards: list[tuple[int, str, datetime, int, str | None]] = []
    credits: list[tuple[int, Credit]] = []
    debits = 0
    for position, e in enumerate(entries):
        kind, points = e["kind"], int(e["points"])
        funder = e.get("funding_partner_id") or e.get("partner_id")
        if kind == "reward":
            created, available_at, released = e["created_at"], e.get("available_at"), e.get("released_at")
            at = released or (created if available_at is None or available_at <= created else None)
            if at is not None:
                rewards.append((position, str(e["entry_id"]), at, points, funder))
        elif kind == "reversal":
            if e.get("from_status") != "pending":
                debits -= points
            elif e.get("reverses_entry_id"):  # a pending clawback comes off its reward's credit
                pending_reversed[e["reverses_entry_id"]] = pending_reversed.get(e["reverses_entry_id"], 0) - points
        elif points > 0:  # redemption returns, manual credits
            credits.append((position, Credit(e["created_at"], points, funder)))
        else:  # redemptions, manual debits, expiries
            debits -= points
    for position, entry_id, at, points, funder in rewards:
        amount = points - pending_reversed.get(entry_id, 0)
        if amount > 0:
            credits.append((position, Credit(at, amount, funder)))
    credits.sort(key=lambda pc: (pc[1].at, pc[0]))
    return [c for _, c in credits], debits


def expiring(credits: list[Credit], debits: int, cutoff: datetime) -> dict[str | None, int]:
    """Points to expire now, by funder: what is left of the credits available by ``cutoff`` after ``debits``."""
    old = [c for c in credits if c.at <= cutoff]
    left = sum(c.points for c in old) - debits
    out: dict[str | None, int] = {}
    for c in reversed(old):  # the newest pre-cutoff points are the ones left (FIFO took the oldest)
        if left <= 0:
            break
        take = min(left, c.points)
        out[c.funder] = out.get(c.funder, 0) + take
        left -= take
    return out
