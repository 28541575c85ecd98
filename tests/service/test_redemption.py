"""Paying with points (quote, redeem, confirm, cancel) on the in-memory ports: no moto, no table.

Through the API under moto: tests/functional/test_redemption.py and test_ledger_concurrency.py (20 concurrent
redemptions against one balance, idempotency over HTTP); the fakes are held to DynamoDB's behaviour
by tests/contract/test_ports.py (the debit's condition, replays, owed repaid first).
"""

from __future__ import annotations

import pytest

from chalicelib.domain.errors import BadRequest, Conflict, NotFound, ValidationFailed
from chalicelib.services import ports, redemption
from chalicelib.services.auth import Principal
from chalicelib.store import fakes
from tests import ports_support as support

PID = "prg_1"
SHOP = Principal(kind="partner", program_id=PID, partner_id="ptn_1")
GYM = Principal(kind="partner", program_id=PID, partner_id="ptn_2")
OPERATOR = Principal(kind="operator")


@pytest.fixture
def deps() -> ports.Ports:
    deps = ports.fakes(support.NOW)
    fakes.seed(deps, support.program(PID, point_value_minor=100, settings={"redemption_max_share_percent": 50}),
               support.member(PID, "anna"), support.balance(PID, "anna", available=1000, lifetime_earned=1000),
               support.member(PID, "boris"))
    return deps


def _available(deps: ports.Ports, member_id: str = "anna") -> int:
    balance = deps.ledger.balance(PID, member_id)
    return int(balance.available) if balance is not None else 0


def test_a_quote_is_bounded_by_the_balance_and_the_share_of_the_order(deps: ports.Ports) -> None:
    assert redemption.quote(deps, SHOP, PID, "anna", None)["max_points"] == 1000
    # 50% of 1,000.00 RUB = 500.00 RUB = 500 points of 1 RUB
    body = redemption.quote(deps, SHOP, PID, "anna", 100_000)
    assert (body["max_points"], body["max_value_minor"], body["max_share_percent"]) == (500, 50_000, 50)
    assert redemption.quote(deps, SHOP, PID, "boris", 100_000)["max_points"] == 0
    with pytest.raises(NotFound):
        redemption.quote(deps, SHOP, PID, "nobody", None)


def test_redeem_is_idempotent_per_key_and_refuses_a_reused_key(deps: ports.Ports) -> None:
    first, created = redemption.redeem(deps, SHOP, PID, "anna", "key-1", {"points": 300, "order_id": "o-1"})
    assert created and first["status"] == "held" and first["value_minor"] == 30_000 and _available(deps) == 700
    again, created = redemption.redeem(deps, SHOP, PID, "anna", "key-1", {"points": 300, "order_id": "o-1"})
    assert not created and again == first and _available(deps) == 700
    with pytest.raises(Conflict) as reused:
        redemption.redeem(deps, SHOP, PID, "anna", "key-1", {"points": 301, "order_id": "o-1"})
    assert reused.value.code == "idempotency_key_reused"
    # The same key from another partner is another redemption.
    assert redemption.redeem(deps, GYM, PID, "anna", "key-1", {"points": 300})[1] is True
    assert _available(deps) == 400


def test_redeem_rejections(deps: ports.Ports) -> None:
    with pytest.raises(BadRequest):
        redemption.redeem(deps, SHOP, PID, "anna", None, {"points": 1})
    with pytest.raises(BadRequest):
        redemption.redeem(deps, SHOP, PID, "anna", "k" * 256, {"points": 1})
    with pytest.raises(ValidationFailed):
        redemption.redeem(deps, SHOP, PID, "anna", "k", {"points": 0})
    with pytest.raises(ValidationFailed) as share:
        redemption.redeem(deps, SHOP, PID, "anna", "k", {"points": 600, "order_amount": 100_000})
    assert share.value.code == "exceeds_max_share" and share.value.details["max_points"] == 500
    with pytest.raises(Conflict) as short:
        redemption.redeem(deps, SHOP, PID, "anna", "k", {"points": 1001})
    assert short.value.code == "insufficient_points" and short.value.details == {"available": 1000}
    with pytest.raises(NotFound):
        redemption.redeem(deps, SHOP, PID, "nobody", "k", {"points": 1})
    with pytest.raises(NotFound):
        redemption.redeem(deps, Principal(kind="partner", program_id="prg_2", partner_id="x"), PID, "anna", "k",
                          {"points": 1})
    assert _available(deps) == 1000


def test_confirm_then_cancel_returns_the_points_once(deps: ports.Ports) -> None:
    item, _ = redemption.redeem(deps, SHOP, PID, "anna", "key-1", {"points": 200})
    rid = item["redemption_id"]
    deps.clock.advance(minutes=3)  # type: ignore[attr-defined]
    confirmed = redemption.confirm(deps, SHOP, PID, "anna", rid)
    assert confirmed["status"] == "confirmed" and confirmed["updated_at"] > confirmed["created_at"]
    assert redemption.confirm(deps, SHOP, PID, "anna", rid) == confirmed  # idempotent
    cancelled = redemption.cancel(deps, SHOP, PID, "anna", rid)
    assert cancelled["status"] == "cancelled" and _available(deps) == 1000
    assert redemption.cancel(deps, SHOP, PID, "anna", rid)["status"] == "cancelled" and _available(deps) == 1000
    with pytest.raises(Conflict) as gone:
        redemption.confirm(deps, SHOP, PID, "anna", rid)
    assert gone.value.code == "redemption_cancelled"
    entries = deps.ledger.entries(PID, "anna", 10, None).items
    assert [(e.kind, int(e.points), e.reason) for e in entries] == [
        ("redemption_return", 200, "200 points returned: the redemption was cancelled."),
        ("redemption", -200, "200 points redeemed.")]


def test_a_redemption_is_seen_by_its_partner_and_the_operator_only(deps: ports.Ports) -> None:
    item, _ = redemption.redeem(deps, SHOP, PID, "anna", "key-1", {"points": 10})
    rid = item["redemption_id"]
    assert redemption.get(deps, OPERATOR, PID, "anna", rid) == item
    for principal, member_id in ((GYM, "anna"), (SHOP, "boris")):
        with pytest.raises(NotFound):
            redemption.get(deps, principal, PID, member_id, rid)
    with pytest.raises(NotFound):
        redemption.cancel(deps, GYM, PID, "anna", rid)
    with pytest.raises(NotFound):
        redemption.get(deps, SHOP, PID, "anna", "rdm_nobody")
