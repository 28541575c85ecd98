"""The ledger CSV export, the settlement statement and the landing offer on the in-memory ports.

Through the API under moto: tests/functional/test_data_rights_ledger_export.py (every entry once, event
records' rewards, forged cursors), tests/functional/test_settlement_properties.py and the coalition
tests, tests/functional/test_landing.py; the fakes are held to DynamoDB's behaviour by
tests/contract/test_ports.py.
"""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest

from chalicelib.domain.errors import BadRequest, NotFound, RateLimited
from chalicelib.services import ledger_export, ports, settlement
from chalicelib.services.auth import Principal
from chalicelib.services.landing import offer
from chalicelib.store import fakes
from tests import ports_support as support

PID = "prg_1"
OPERATOR = Principal(kind="operator")
DAY = support.NOW.date()


@pytest.fixture
def deps() -> ports.Ports:
    deps = ports.fakes(support.NOW)
    fakes.seed(deps, support.program(PID, point_value_minor=50), support.program("prg_2"))
    return deps


def _export(deps: ports.Ports, raw_from: str, raw_to: str, limit: int) -> tuple[list[dict[str, str]], int]:
    text, cursor, pages = "", None, 0
    while True:
        page, cursor = ledger_export.export_page(deps, OPERATOR, PID, raw_from, raw_to, limit, cursor)
        text, pages = text + page, pages + 1
        if cursor is None:
            return list(csv.DictReader(io.StringIO(text))), pages
        assert pages < 100


def test_the_export_lists_every_entry_of_the_period_once_in_booking_order(deps: ports.Ports) -> None:
    minutes_per_day = 60 * 24
    fakes.seed(deps, *(support.entry(PID, f"m{n % 3}", n * 200) for n in range(12)),  # over two days
               support.entry(PID, "m0", 3 * minutes_per_day),  # after the period
               support.entry("prg_2", "m0", 5))  # another program
    for limit in (1, 4, 50):
        rows, pages = _export(deps, DAY.isoformat(), (DAY + timedelta(days=1)).isoformat(), limit)
        assert [r["entry_id"] for r in rows] == [f"le_{n * 200:04d}" for n in range(12)]
        assert pages >= 12 // limit
    first, _ = ledger_export.export_page(deps, OPERATOR, PID, DAY.isoformat(), DAY.isoformat(), 2, None)
    assert first.splitlines()[0] == ",".join(ledger_export.COLUMNS) and len(first.splitlines()) == 3


def test_a_page_reads_a_bounded_number_of_empty_days(deps: ports.Ports) -> None:
    far = DAY + timedelta(days=300)
    fakes.seed(deps, support.entry(PID, "m0", 300 * 24 * 60))
    _, cursor = ledger_export.export_page(deps, OPERATOR, PID, DAY.isoformat(), far.isoformat(), 10, None)
    assert cursor is not None  # 31 empty days read, then a cursor
    rows, pages = _export(deps, DAY.isoformat(), far.isoformat(), 10)
    assert [r["entry_id"] for r in rows] == ["le_432000"] and pages == 300 // ledger_export.MAX_DAYS_PER_PAGE + 1


def test_a_cell_that_looks_like_a_formula_is_quoted(deps: ports.Ports) -> None:
    entry = support.entry(PID, "m0", 1)
    entry.reason = "=HYPERLINK(\"http://x\")"
    fakes.seed(deps, entry)
    rows, _ = _export(deps, DAY.isoformat(), DAY.isoformat(), 10)
    assert rows[0]["reason"].startswith("'=") and rows[0]["points"] == "10"


def test_bad_periods_cursors_and_programs(deps: ports.Ports) -> None:
    for raw_from, raw_to in (("2026-11-23", "2026-11-22"), ("2025-01-01", "2026-11-23"), ("yesterday", "2026-11-23")):
        with pytest.raises(BadRequest):
            ledger_export.export_page(deps, OPERATOR, PID, raw_from, raw_to, 10, None)
    far = (DAY + timedelta(days=100)).isoformat()
    _, cursor = ledger_export.export_page(deps, OPERATOR, PID, DAY.isoformat(), far, 10, None)
    with pytest.raises(BadRequest):  # bound to the program and the period
        ledger_export.export_page(deps, OPERATOR, PID, DAY.isoformat(), (DAY + timedelta(days=99)).isoformat(), 10,
                                  cursor)
    with pytest.raises(BadRequest):
        ledger_export.export_page(deps, OPERATOR, PID, DAY.isoformat(), far, 10, "forged.cursor")
    with pytest.raises(NotFound):
        ledger_export.export_page(deps, OPERATOR, "prg_nobody", DAY.isoformat(), far, 10, None)


# --------------------------------------------------------------------------- settlement


@pytest.fixture
def booked(deps: ports.Ports) -> ports.Ports:
    fakes.seed(deps, support.settlement_row(PID, "2026-11-01", "ptn_1", funded=100, adjusted=0, redeemed=0, expired=0),
               support.settlement_row(PID, "2026-11-02", "ptn_2", funded=0, adjusted=0, redeemed=60, expired=0),
               support.settlement_row(PID, "2026-11-02", "ptn_1", "ptn_2", points=60),
               support.settlement_row(PID, "2026-12-01", "ptn_1", funded=999))  # after the period
    return deps


def test_the_operator_sees_every_partner_the_pairs_and_the_liability(booked: ports.Ports) -> None:
    body = settlement.statement(booked, OPERATOR, PID, "2026-11-01", "2026-11-30")
    assert [p["partner_id"] for p in body["partners"]] == ["ptn_1", "ptn_2"]
    assert body["partners"][0]["funded"] == 100 and body["partners"][0]["funded_value_minor"] == 5000
    assert body["pairs"] == [{"funding_partner_id": "ptn_1", "at_partner_id": "ptn_2", "points": 60,
                              "value_minor": 3000}]
    assert "liability_change_points" in body and body["point_value_minor"] == 50
    assert settlement.as_csv(body).splitlines()[0] == ",".join(settlement.CSV_COLUMNS)


def test_a_partner_sees_its_own_row_and_its_pairs(booked: ports.Ports) -> None:
    partner = Principal(kind="partner", program_id=PID, partner_id="ptn_2")
    body = settlement.statement(booked, partner, PID, "2026-11-01", "2026-11-30")
    assert [p["partner_id"] for p in body["partners"]] == ["ptn_2"] and len(body["pairs"]) == 1
    assert "liability_change_points" not in body
    assert all("ptn_2" in (t["from"], t["to"]) for t in body["transfers"])
    stranger = Principal(kind="partner", program_id="prg_2", partner_id="ptn_9")
    with pytest.raises(NotFound):
        settlement.statement(booked, stranger, PID, "2026-11-01", "2026-11-30")


# --------------------------------------------------------------------------- landing offer


def test_the_landing_offer_names_the_referrer_and_is_rate_limited(deps: ports.Ports) -> None:
    fakes.seed(deps, support.code_pointer(PID, "CODEANNA", "anna", "Anna"))
    program = deps.programs.get(PID)
    body = offer.offer(program, "codeanna", "203.0.113.7", "en", deps)
    assert body["referrer"] == {"first_name": "Anna"} and body["code"] == "CODEANNA" and body["locale"] == "en"
    with pytest.raises(NotFound):
        offer.offer(program, "NOSUCHCODE", "203.0.113.7", None, deps)
    with pytest.raises(NotFound):
        offer.offer(deps.programs.get("prg_2"), "CODEANNA", "203.0.113.7", None, deps)  # another program's code
    limit = program.program_settings.landing_rate_limits.offer_per_minute
    with pytest.raises(RateLimited):
        for _ in range(limit):
            offer.offer(program, "CODEANNA", "203.0.113.7", None, deps)
