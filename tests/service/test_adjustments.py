"""Manual adjustments (operator) on the in-memory ports: no moto, no table.

Through the API under moto: tests/functional/test_coalition_ledger.py and the tenant matrix; the fakes are
held to DynamoDB's behaviour by tests/contract/test_ports.py (owed repaid first, never below zero, replays).
"""

from __future__ import annotations

import pytest

from chalicelib.domain.errors import BadRequest, Conflict, NotFound, ValidationFailed
from chalicelib.services import adjustments, ports, statement
from chalicelib.services.auth import Principal
from chalicelib.store import fakes
from tests import ports_support as support

PID = "prg_1"
OPERATOR = Principal(kind="operator")


@pytest.fixture
def deps() -> ports.Ports:
    deps = ports.fakes(support.NOW)
    fakes.seed(deps, support.program(PID), support.partner(PID, "ptn_1"), support.member(PID, "anna"),
               support.balance(PID, "anna", available=100, lifetime_earned=100))
    return deps


def test_a_credit_and_a_debit_with_who_why_and_when(deps: ports.Ports) -> None:
    credit, created = adjustments.adjust(deps, OPERATOR, PID, "anna", "k1", {"points": 40, "reason": " Goodwill ",
                                                                            "partner_id": "ptn_1"})
    assert created and credit["reason"] == "Goodwill" and credit["partner_id"] == "ptn_1"
    assert credit["created_by"] == "operator" and credit["created_at"] == "2026-11-23T10:00:00.000000Z"
    deps.clock.advance(minutes=1)  # type: ignore[attr-defined]
    adjustments.adjust(deps, OPERATOR, PID, "anna", "k2", {"points": -140, "reason": "Duplicate order"})
    body = statement.balance(deps, OPERATOR, PID, "anna")
    assert (body["available"], body["lifetime_earned"]) == (0, 0)  # a debit takes back what was earned
    entry = statement.ledger(deps, OPERATOR, PID, "anna", 10, None)["items"][0]
    assert (entry["kind"], entry["points"], entry["reason"], entry["created_by"]) == (
        "adjustment", -140, "Duplicate order", "operator")


def test_retries_answer_the_first_result_and_a_reused_key_is_refused(deps: ports.Ports) -> None:
    first, _ = adjustments.adjust(deps, OPERATOR, PID, "anna", "k1", {"points": 5, "reason": "Goodwill"})
    deps.clock.advance(minutes=1)  # type: ignore[attr-defined]
    again, created = adjustments.adjust(deps, OPERATOR, PID, "anna", "k1", {"points": 5, "reason": "Goodwill"})
    assert not created and again == first
    with pytest.raises(Conflict) as reused:
        adjustments.adjust(deps, OPERATOR, PID, "anna", "k1", {"points": 6, "reason": "Goodwill"})
    assert reused.value.code == "idempotency_key_reused"
    assert statement.balance(deps, OPERATOR, PID, "anna")["available"] == 105


def test_rejections_write_nothing(deps: ports.Ports) -> None:
    with pytest.raises(Conflict) as short:
        adjustments.adjust(deps, OPERATOR, PID, "anna", "k1", {"points": -101, "reason": "Too much"})
    assert short.value.details == {"available": 100}
    with pytest.raises(ValidationFailed) as partner:
        adjustments.adjust(deps, OPERATOR, PID, "anna", "k2", {"points": 1, "reason": "Why", "partner_id": "ptn_x"})
    assert partner.value.code == "unknown_partner"
    with pytest.raises(NotFound):
        adjustments.adjust(deps, OPERATOR, PID, "nobody", "k3", {"points": 1, "reason": "Why"})
    with pytest.raises(BadRequest):
        adjustments.adjust(deps, OPERATOR, PID, "anna", None, {"points": 1, "reason": "Why"})
    # A partner key is refused by the route's declared ``auth="operator"`` before the service runs
    # (tests/functional/test_coalition_ledger.py: 403): the service does not check it a second time.
    assert statement.balance(deps, OPERATOR, PID, "anna")["available"] == 100
    assert statement.ledger(deps, OPERATOR, PID, "anna", 10, None)["items"] == []
