"""The ledger of a program for a period, as CSV pages (accounting, reconciliation, migration).

Operator only: the ledger spans every partner and member of the program. Entries are read from
``GSI2`` (program × booking day, ``keys.gsi2_ledger_day``), day by day, in booking order
(``created_at``, the time Sarafan wrote the entry: a closed day never gains entries, unlike
``effective_at`` which a late event may back-date). The rewards an event posted are indexed there by
the event's record (one index entry per event, issue #10): its entries are read with one
``BatchGetItem`` and written together, so a page never splits an event's rows. Each page holds at
most ``limit`` rows (or one event's rows, should they be more) and reads at most
``MAX_DAYS_PER_PAGE`` empty days, so a page is bounded in reads and memory; the
signed cursor continues. Points are integers; statuses are as of the export (a pending reward
may be available by now).
"""

from __future__ import annotations

import csv
import io
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

from chalicelib.domain import clock
from chalicelib.domain.errors import BadRequest
from chalicelib.services import signed_cursor
from chalicelib.services.auth import Principal
from chalicelib.services.ports import Ports

if TYPE_CHECKING:
    from chalicelib.store.ledger import LedgerEntryItem

COLUMNS = ("entry_id", "created_at", "effective_at", "member_id", "kind", "status", "points", "reversed_points",
           "reason_code", "reason", "rule_id", "rule_version", "level", "partner_id", "funding_partner_id",
           "business_key", "reverses_entry_id", "redemption_id", "available_at", "released_at")
MAX_PERIOD_DAYS = 366
MAX_DAYS_PER_PAGE = 31
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _day(raw: str | None, name: str) -> date:
    try:
        return date.fromisoformat(raw or "")
    except ValueError:
        raise BadRequest(f"'{name}' must be a date (YYYY-MM-DD)", code="invalid_query",
                         details={"parameter": name}) from None


def period(raw_from: str | None, raw_to: str | None) -> tuple[date, date]:
    start, end = _day(raw_from, "from"), _day(raw_to, "to")
    if end < start or (end - start).days >= MAX_PERIOD_DAYS:
        raise BadRequest(f"'to' must be on or after 'from', at most {MAX_PERIOD_DAYS} days in all",
                         code="invalid_query", details={"parameter": "to"})
    return start, end


def _cell(value: Any, numeric: bool) -> str:
    if value is None:
        return ""
    if numeric:
        return str(int(value))
    text = clock.iso(value) if hasattr(value, "tzinfo") else str(value)
    # A spreadsheet would run text starting like a formula (CSV injection): quote it as text.
    return "'" + text if text.startswith(_FORMULA_START) else text


_NUMERIC = {"points", "reversed_points", "rule_version", "level"}


def row(entry: LedgerEntryItem) -> list[str]:
    return [_cell(getattr(entry, name), name in _NUMERIC) for name in COLUMNS]


def export_page(deps: Ports, principal: Principal, program_id: str, raw_from: str | None, raw_to: str | None,
                limit: int, raw_cursor: str | None) -> tuple[str, str | None]:
    """One CSV page (with the header row on the first page) and the next cursor (None: done)."""
    # The route's contract (auth="operator", api.http) has checked the key, the program and the operator.
    deps.programs.get(program_id)
    start, end = period(raw_from, raw_to)
    scope = f"ledger-export|{program_id}|{start}|{end}"
    cursor = signed_cursor.decode(scope, raw_cursor, deps.secrets)
    day = date.fromisoformat(cursor["day"]) if cursor else start
    last = cursor.get("last") if cursor else None
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    if cursor is None:
        writer.writerow(COLUMNS)
    rows = 0
    days_read = 0
    while day <= end and rows < limit and days_read < MAX_DAYS_PER_PAGE:
        page = deps.ledger.booked(program_id, day.isoformat(), limit - rows, last)
        stopped = False
        for item in page.items:
            entries = deps.ledger.entries_of(item)
            if rows and rows + len(entries) > limit:
                stopped = True  # this event's rows start the next page
                break
            for entry in entries:
                writer.writerow(row(entry))
            rows += len(entries)
            last = deps.ledger.cursor_after(item)
        if stopped:
            break  # the cursor resumes after the last item written (``last``; None: the day's start)
        last = page.next_cursor
        if not last:
            day, days_read = day + timedelta(days=1), days_read + 1
    next_cursor = None if day > end else signed_cursor.encode(scope, {"day": day.isoformat(), "last": last},
                                                              deps.secrets)
    return out.getvalue(), next_cursor
