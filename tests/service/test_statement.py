"""The member statement (balance, paged ledger, other partners' entries redacted) on the in-memory ports.

Through the API under moto: tests/functional/test_ledger_statement.py (pages, cursor bound to the member,
404s) and tests/functional/test_coalition*.py (redaction); the fakes are held to DynamoDB's behaviour by
tests/contract/test_ports.py.
"""

from __future__ import annotations

import pytest

from chalicelib.domain.errors import NotFound
from chalicelib.services import ports, statement
from chalicelib.services.auth import Principal
from chalicelib.store import fakes, keys
from tests import ports_support as support

PID = "prg_1"
OPERATOR = Principal(kind="operator")
PARTNER = Principal(kind="partner", program_id=PID, partner_id="ptn_1")
OTHER_PARTNER = Principal(kind="partner", program_id=PID, partner_id="ptn_2")


@pytest.fixture
def deps() -> ports.Ports:
    deps = ports.fakes(support.NOW)
    fakes.seed(deps, support.program(PID, point_value_minor=50, currency="EUR"), support.member(PID, "anna"),
               support.member(PID, "boris"), support.balance(PID, "anna", available=120, pending=30, owed=5,
                                                             lifetime_earned=200, lifetime_spent=80),
               *(support.entry(PID, "anna", n, points=10 + n) for n in range(5)),
               support.entry(PID, "anna", 5, points=-40, partner_id="ptn_2", kind="redemption",
                             redemption_id="rdm_1", business_key="ptn_2|order|o-9"),
               support.program("prg_2"), support.member("prg_2", "anna"),
               support.entry("prg_2", "anna", 7))
    return deps


def test_the_balance_in_points_and_money(deps: ports.Ports) -> None:
    assert statement.balance(deps, PARTNER, PID, "anna") == {
        "member_id": "anna", "available": 120, "pending": 30, "owed": 5, "held": 0, "lifetime_earned": 200,
        "lifetime_spent": 80, "points_unit": "points", "point_value_minor": 50, "currency": "EUR",
        "available_value_minor": 6000}


def test_a_member_without_postings_has_zero_balances(deps: ports.Ports) -> None:
    body = statement.balance(deps, OPERATOR, PID, "boris")
    assert (body["available"], body["pending"], body["lifetime_earned"], body["available_value_minor"]) == (0, 0, 0, 0)
    assert statement.ledger(deps, OPERATOR, PID, "boris", 10, None) == {"items": [], "next_cursor": None}


def test_unknown_members_and_other_programs_are_404(deps: ports.Ports) -> None:
    for call in (lambda: statement.balance(deps, PARTNER, PID, "nobody"),
                 lambda: statement.ledger(deps, PARTNER, PID, "nobody", 10, None),
                 lambda: statement.balance(deps, PARTNER, "prg_2", "anna"),  # another program's key
                 lambda: statement.ledger(deps, PARTNER, "prg_2", "anna", 10, None)):
        with pytest.raises(NotFound):
            call()


def test_the_ledger_pages_newest_first_within_the_bound(deps: ports.Ports) -> None:
    first = statement.ledger(deps, OPERATOR, PID, "anna", 4, None)
    assert [e["entry_id"] for e in first["items"]] == ["le_0005", "le_0004", "le_0003", "le_0002"]
    assert first["next_cursor"]["PK"] == {"S": keys.member_partition(PID, "anna")}
    rest = statement.ledger(deps, OPERATOR, PID, "anna", 4, first["next_cursor"])
    assert [e["entry_id"] for e in rest["items"]] == ["le_0001", "le_0000"] and rest["next_cursor"] is None
    # Every entry, whoever it belongs to: the statement adds up to the coalition's balance.
    assert sum(e["points"] for e in first["items"] + rest["items"]) == 10 + 11 + 12 + 13 + 14 - 40


def test_a_partner_sees_another_partners_entries_redacted(deps: ports.Ports) -> None:
    mine = statement.ledger(deps, PARTNER, PID, "anna", 10, None)["items"]
    other = mine[0]
    assert other["entry_id"] == "le_0005" and other["redacted"] is True and other["points"] == -40
    assert (other["partner_id"], other["business_key"], other["redemption_id"]) == (None, None, None)
    assert other["reason"] == "Points redeemed at a coalition partner." and other["reason_code"] == "coalition_partner"
    assert all(not e["redacted"] and e["partner_id"] == "ptn_1" for e in mine[1:])
    theirs = statement.ledger(deps, OTHER_PARTNER, PID, "anna", 10, None)["items"]
    assert theirs[0]["redacted"] is False and theirs[0]["business_key"] == "ptn_2|order|o-9"
    assert all(e["redacted"] for e in theirs[1:])
    assert not any(e["redacted"] for e in statement.ledger(deps, OPERATOR, PID, "anna", 10, None)["items"])
