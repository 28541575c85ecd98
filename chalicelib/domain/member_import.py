"""Parsing and checking a members CSV (pure: no I/O). Writing is ``services.importer``.

Columns (header row, any order, case-insensitive; only ``email``, ``phone`` or ``customer_id``
is required, at least one per row):

``email``, ``phone``, ``customer_id`` (the partner's id, needs the import's ``partner_id``),
``name``, ``locale`` (ru/en), ``birthday`` (YYYY-MM-DD), ``code`` (the member's referral code
from the old system, kept working), ``opening_balance`` (integer points, ``1490`` or ``1490.00``),
``referrer_code`` or ``referrer_customer_id`` (the referrer, imported earlier or already a
member), ``joined_at`` (ISO-8601 UTC).

Every problem is reported with the file's line number; a row with any problem is not written. A row
naming a person an earlier row of the chunk names (the same e-mail, as mailboxes compare, phone or
customer id) is a bad row too (``duplicates``): one person, one row.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from chalicelib.domain.clock import parse_iso
from chalicelib.domain.codes import normalize_code, validate_vanity_code
from chalicelib.domain.errors import DomainError, ValidationFailed
from chalicelib.domain.identity import email_match_key, normalize_email, normalize_phone

COLUMNS = ("email", "phone", "customer_id", "name", "locale", "birthday", "code", "opening_balance",
           "referrer_code", "referrer_customer_id", "joined_at")
LOCALES = ("ru", "en")
MAX_ROWS_PER_CHUNK = 1000
MAX_OPENING_BALANCE = 10**12
MAX_FIELD = 200


@dataclass
class ImportRow:
    line: int
    email: str | None = None
    phone: str | None = None
    customer_id: str | None = None
    name: str | None = None
    locale: str | None = None
    birthday: str | None = None
    code: str | None = None
    opening_balance: int = 0
    referrer_code: str | None = None
    referrer_customer_id: str | None = None
    joined_at: datetime | None = None


@dataclass
class RowError:
    line: int
    errors: list[dict[str, str]] = field(default_factory=list)

    def view(self) -> dict[str, Any]:
        return {"line": self.line, "errors": self.errors}


def parse_points(raw: str) -> int:
    """Whole points from ``"1490"`` or ``"1490.00"`` (never through a float)."""
    try:
        value = Decimal(raw.strip().replace(" ", ""))
    except InvalidOperation:
        raise ValueError("must be a whole number of points") from None
    if not value.is_finite() or value != value.to_integral_value():
        raise ValueError("must be a whole number of points")
    points = int(value)
    if not 0 <= points <= MAX_OPENING_BALANCE:
        raise ValueError(f"must be from 0 to {MAX_OPENING_BALANCE}")
    return points


def _header(names: list[str]) -> list[str]:
    header = [n.strip().lower().lstrip("\ufeff") for n in names]
    unknown = [n for n in header if n not in COLUMNS]
    missing = not any(n in header for n in ("email", "phone", "customer_id"))
    if unknown or missing or len(set(header)) != len(header):
        raise ValidationFailed("The CSV header is not usable", code="invalid_csv_header", details={"errors": [
            {"path": "$.csv[header]", "message": f"unknown columns: {', '.join(unknown)}" if unknown
             else "needs an email, phone or customer_id column" if missing else "repeats a column"}],
            "columns": list(COLUMNS)})
    return header


def parse(text: str, *, first_line: int = 2, phone_region: str = "RU",
          has_partner: bool = False) -> tuple[list[ImportRow], list[RowError]]:
    """Rows and row errors of a CSV chunk whose first line is the header.

    ``first_line`` is the file line number of the chunk's first data row, so errors name lines
    of the operator's file even when it is sent in chunks.
    """
    reader = csv.reader(io.StringIO(text))
    try:
        names = next(reader)
    except StopIteration:
        return [], []
    except csv.Error as exc:
        raise ValidationFailed("The CSV header is not readable", code="invalid_csv_header",
                               details={"errors": [{"path": "$.csv[header]", "message": str(exc)}]}) from None
    header = _header(names)
    rows: list[ImportRow] = []
    errors: list[RowError] = []
    start = reader.line_num + 1
    while True:
        line = first_line + start - 2
        try:
            values = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            errors.append(RowError(line, [{"column": "", "message": f"unreadable CSV: {exc}"}]))
            start = reader.line_num + 1
            continue
        start = reader.line_num + 1
        if not any(v.strip() for v in values):
            continue  # blank line
        if len(rows) + len(errors) >= MAX_ROWS_PER_CHUNK:
            raise ValidationFailed(f"A chunk holds at most {MAX_ROWS_PER_CHUNK} rows", code="chunk_too_large",
                                   details={"limit": MAX_ROWS_PER_CHUNK})
        row, problems = _row(line, header, values, phone_region, has_partner)
        if problems:
            errors.append(RowError(line, problems))
        else:
            rows.append(row)
    return rows, errors


def duplicates(rows: list[ImportRow]) -> tuple[list[ImportRow], list[RowError]]:
    """The rows, less those naming a person an earlier row names (by e-mail, as mailboxes compare, phone or
    customer id), which come back as bad rows naming that earlier row's line."""
    first: dict[tuple[str, str], int] = {}
    kept: list[ImportRow] = []
    errors: list[RowError] = []
    for row in rows:
        names = [(column, value) for column, value in (
            ("customer_id", row.customer_id), ("email", email_match_key(row.email) if row.email else None),
            ("phone", row.phone)) if value]
        seen = next(((column, first[(column, value)]) for column, value in names if (column, value) in first), None)
        if seen is not None:
            column, line = seen
            errors.append(RowError(row.line, [{"column": column, "message": f"duplicate of line {line} (the same "
                                                                              f"{column}): one row per person"}]))
            continue
        for name in names:
            first.setdefault(name, row.line)
        kept.append(row)
    return kept, errors


def _row(line: int, header: list[str], values: list[str], region: str,
         has_partner: bool) -> tuple[ImportRow, list[dict[str, str]]]:
    row = ImportRow(line)
    problems: list[dict[str, str]] = []

    def fail(column: str, message: str) -> None:
        problems.append({"column": column, "message": message})

    if len(values) != len(header):
        fail("", f"has {len(values)} fields, the header has {len(header)}")
        return row, problems
    cells = {name: value.strip() for name, value in zip(header, values, strict=True)}
    for name, value in cells.items():
        if len(value) > MAX_FIELD:
            fail(name, f"is longer than {MAX_FIELD} characters")
    if problems:
        return row, problems
    checks: dict[str, Any] = {
        "email": lambda v: normalize_email(v),
        "phone": lambda v: normalize_phone(v, region),
        "customer_id": lambda v: v,
        "name": lambda v: v,
        "locale": _locale,
        "birthday": lambda v: date.fromisoformat(v).isoformat(),
        "code": lambda v: validate_vanity_code(v),
        "opening_balance": parse_points,
        "referrer_code": _code,
        "referrer_customer_id": lambda v: v,
        "joined_at": parse_iso,
    }
    for name, value in cells.items():
        if not value:
            continue
        try:
            setattr(row, name, checks[name](value))
        except DomainError as exc:
            errors = exc.details.get("errors") if isinstance(exc.details, dict) else None
            fail(name, errors[0]["message"] if errors else exc.message)
        except ValueError as exc:
            fail(name, str(exc) or "is not valid")
    if not (row.email or row.phone or row.customer_id) and not problems:
        fail("", "needs an email, phone or customer_id")
    if (row.customer_id or row.referrer_customer_id) and not has_partner:
        fail("customer_id" if row.customer_id else "referrer_customer_id",
             "customer ids belong to a partner: give the import a partner_id")
    if row.referrer_code and row.referrer_customer_id:
        fail("referrer_code", "give referrer_code or referrer_customer_id, not both")
    return row, problems


def _locale(value: str) -> str:
    if value.lower() not in LOCALES:
        raise ValueError(f"must be one of {', '.join(LOCALES)}")
    return value.lower()


def _code(value: str) -> str:
    code = normalize_code(value)
    if code is None:
        raise ValueError("is not a referral code")
    return code
