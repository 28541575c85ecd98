"""Settlement between the partners of a coalition program: pure arithmetic (no I/O).

Every ledger entry is attributed to exactly one partner (``attribute``):

* earning side (``reward``, ``reversal``, ``adjustment``, ``expiry``): the partner that funds the
  points (``funding_partner_id``; else the partner where the event happened; else the program);
* spending side (``redemption``, ``redemption_return``): the partner where the points were spent.

Columns per partner (points): ``funded`` (rewards minus their clawbacks), ``adjusted`` (manual
adjustments funded by it), ``redeemed`` (spent at it minus returned), ``expired`` (its funded points
that expired). ``net_points = funded + adjusted - redeemed - expired`` is the partner's
contribution to the program's outstanding points liability, so the nets of all partners sum to the
liability's change over the period (every entry's points count exactly once). Value columns are
``points * point_value_minor``: integers in minor units, exact (the point value is an integer
number of minor units, so no rounding happens there).

Who owes whom (``transfers``): a partner with a positive net issued more points than it took in
and owes that value; one with a negative net accepted more than it issued and is owed. The program
is the clearing house: debtors pay creditors (see ``transfers`` for the order), and whatever is not
matched is settled with the program (the outstanding liability). Every amount is an integer in
minor units; transfers from a partner add up to its net value exactly.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

#: The program itself (operator-funded adjustments, operator redemptions), as a settlement party.
PROGRAM = "program"
COLUMNS = ("funded", "adjusted", "redeemed", "expired")
EARN_KINDS = {"reward": "funded", "reversal": "funded", "adjustment": "adjusted", "expiry": "expired"}
SPEND_KINDS = {"redemption": "redeemed", "redemption_return": "redeemed"}


@dataclass(frozen=True)
class Attribution:
    partner: str
    column: str
    points: int  # the column's (sign-adjusted) points: redeemed and expired are counted positive
    #: (funder, partner where the event happened) for earning entries, else None
    pair: tuple[str, str] | None


def attribute(kind: str, points: int, partner_id: str | None, funding_partner_id: str | None) -> Attribution | None:
    """Which partner and column an entry counts for; ``None`` for an unknown kind (never in settlement)."""
    if kind in EARN_KINDS:
        funder = funding_partner_id or partner_id or PROGRAM
        column = EARN_KINDS[kind]
        at = partner_id or funder
        return Attribution(funder, column, -points if column == "expired" else points,
                           (funder, at) if column == "funded" else None)
    if kind in SPEND_KINDS:
        return Attribution(partner_id or PROGRAM, SPEND_KINDS[kind], -points, None)
    return None


def net_points(row: Mapping[str, int]) -> int:
    return (int(row.get("funded", 0)) + int(row.get("adjusted", 0)) - int(row.get("redeemed", 0))
            - int(row.get("expired", 0)))


@dataclass
class Totals:
    """Aggregates over a period: per partner (columns) and per (funder, at) pair (funded points)."""

    partners: dict[str, dict[str, int]] = field(default_factory=dict)
    pairs: dict[tuple[str, str], int] = field(default_factory=dict)

    def add(self, a: Attribution) -> None:
        row = self.partners.setdefault(a.partner, dict.fromkeys(COLUMNS, 0))
        row[a.column] += a.points
        if a.pair is not None:
            self.pairs[a.pair] = self.pairs.get(a.pair, 0) + a.points

    def add_row(self, partner: str, values: Mapping[str, Any]) -> None:
        row = self.partners.setdefault(partner, dict.fromkeys(COLUMNS, 0))
        for c in COLUMNS:
            row[c] += int(values.get(c) or 0)

    def add_pair(self, funder: str, at: str, points: int) -> None:
        self.pairs[(funder, at)] = self.pairs.get((funder, at), 0) + int(points)


def recompute(entries: Iterable[Mapping[str, Any]]) -> Totals:
    """Totals straight from ledger entries (``kind``, ``points``, ``partner_id``, ``funding_partner_id``)."""
    totals = Totals()
    for e in entries:
        a = attribute(str(e["kind"]), int(e["points"]), e.get("partner_id"), e.get("funding_partner_id"))
        if a is not None:
            totals.add(a)
    return totals


def transfers(net_values: Mapping[str, int]) -> list[dict[str, Any]]:
    """Who pays whom (minor units): each debtor (net > 0), in partner-id order, pays the creditors (net < 0) in
    partner-id order until its debt is covered (the fewest transfers, exact sums); what no partner's credit
    matches stays with the program (``PROGRAM``): a debt not matched is the outstanding liability, owed to the
    program; a credit not matched is paid by the program out of earlier funding."""
    debts = sorted((p, v) for p, v in net_values.items() if v > 0 and p != PROGRAM)
    creditors = [p for p, v in sorted(net_values.items()) if v < 0 and p != PROGRAM]
    left = [-int(net_values[p]) for p in creditors]
    out: list[dict[str, Any]] = []
    i = 0
    for debtor, debt in debts:
        while debt and i < len(creditors):
            amount = min(debt, left[i])
            out.append({"from": debtor, "to": creditors[i], "value_minor": amount})
            debt -= amount
            left[i] -= amount
            if not left[i]:
                i += 1
        if debt:
            out.append({"from": debtor, "to": PROGRAM, "value_minor": debt})
    for creditor, rest in zip(creditors[i:], left[i:], strict=True):
        if rest:
            out.append({"from": PROGRAM, "to": creditor, "value_minor": rest})
    return out
