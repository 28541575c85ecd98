"""Settlement statements of a coalition program for a period (JSON or CSV), from the aggregates.

``GET /v1/programs/{program_id}/settlement?from=YYYY-MM-DD&to=YYYY-MM-DD`` (booking days, UTC,
inclusive, at most 366): one paged Query over the day rows that ``services.settlement_feed`` keeps
(never a read of every entry), bounded: a period with more than :data:`MAX_STATEMENT_ROWS` rows (a row
per partner and per funding pair with activity on a day) is refused with 400 ``invalid_query`` after
reading ``MAX_STATEMENT_ROWS + 1`` rows, and the caller asks for shorter periods. The operator sees every partner; a partner key sees its own row,
the pairs it is part of and the transfers it pays or receives. See ``domain.settlement`` for the
columns, the net and who owes whom, and docs/coalition.md#settlement-statements.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from chalicelib.domain import settlement
from chalicelib.domain.errors import BadRequest
from chalicelib.services.auth import Principal
from chalicelib.services.ledger_export import period
from chalicelib.services.ports import Ports

#: The most aggregate rows one statement reads: a year (366 days) of 10 partners and 44 funding pairs active every
#: day is 19,764 rows (260-330 bytes each: about 6 MB, 1,500 read units strongly consistent). More is refused (400).
MAX_STATEMENT_ROWS = 20_000

CSV_COLUMNS = ("section", "partner_id", "counterparty_id", "funded", "adjusted", "redeemed", "expired", "net_points",
               "value_minor")


def totals(deps: Ports, program_id: str, raw_from: str | None,
           raw_to: str | None) -> tuple[settlement.Totals, str, str]:
    start, end = period(raw_from, raw_to)
    result = settlement.Totals()
    for n, row in enumerate(deps.ledger.settlement_rows(program_id, start, end, MAX_STATEMENT_ROWS + 1), 1):
        if n > MAX_STATEMENT_ROWS:
            raise BadRequest(f"the period holds more than {MAX_STATEMENT_ROWS:,} settlement rows: ask for shorter "
                             "periods and add them up", code="invalid_query",
                             details={"parameter": "to", "limit": MAX_STATEMENT_ROWS})
        if row.at_partner_id is not None:
            result.add_pair(str(row.partner_id), str(row.at_partner_id), int(row.points or 0))
        elif row.partner_id is not None:
            result.add_row(str(row.partner_id), {c: getattr(row, c) for c in settlement.COLUMNS})
    return result, start.isoformat(), end.isoformat()


def statement(deps: Ports, principal: Principal, program_id: str, raw_from: str | None,
              raw_to: str | None) -> dict[str, Any]:
    principal.require_program(program_id)
    program = deps.programs.get(program_id)
    pvm = int(program.point_value_minor)
    sums, start, end = totals(deps, program_id, raw_from, raw_to)
    viewer = None if principal.is_operator else principal.partner_id
    partners: list[dict[str, Any]] = []
    for pid, row in sorted(sums.partners.items()):
        net = settlement.net_points(row)
        partners.append({
            "partner_id": pid, **{c: row[c] for c in settlement.COLUMNS},
            **{f"{c}_value_minor": row[c] * pvm for c in settlement.COLUMNS},
            "net_points": net, "net_value_minor": net * pvm,
        })
    pairs = [{"funding_partner_id": f, "at_partner_id": at, "points": pts, "value_minor": pts * pvm}
             for (f, at), pts in sorted(sums.pairs.items()) if pts]
    transfers = settlement.transfers({p["partner_id"]: p["net_value_minor"] for p in partners})
    liability = sum(settlement.net_points(row) for row in sums.partners.values())
    if viewer is not None:
        partners = [p for p in partners if p["partner_id"] == viewer]
        pairs = [p for p in pairs if viewer in (p["funding_partner_id"], p["at_partner_id"])]
        transfers = [t for t in transfers if viewer in (t["from"], t["to"])]
    body: dict[str, Any] = {
        "program_id": program_id, "from": start, "to": end, "currency": program.currency,
        "point_value_minor": pvm, "partners": partners, "pairs": pairs, "transfers": transfers,
    }
    if viewer is None:
        body["liability_change_points"] = liability
        body["liability_change_value_minor"] = liability * pvm
    return body


def as_csv(body: dict[str, Any]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for p in body["partners"]:
        writer.writerow(["partner", p["partner_id"], "", p["funded"], p["adjusted"], p["redeemed"], p["expired"],
                         p["net_points"], p["net_value_minor"]])
    for p in body["pairs"]:
        writer.writerow(["pair", p["funding_partner_id"], p["at_partner_id"], p["points"], "", "", "", "",
                         p["value_minor"]])
    for t in body["transfers"]:
        writer.writerow(["transfer", t["from"], t["to"], "", "", "", "", "", t["value_minor"]])
    if "liability_change_points" in body:
        writer.writerow(["liability_change", "", "", "", "", "", "", body["liability_change_points"],
                         body["liability_change_value_minor"]])
    return out.getvalue()
