"""Refunds and cancellations: proportional cascading clawback, parked refunds, owed points, holding."""

from __future__ import annotations

import pytest

from chalicelib.domain import clock
from chalicelib.store import keys
from chalicelib.store.ledger import LedgerEntryItem, OrderLedgerItem
from chalicelib.store.members import batch_get
from tests.functional.test_ledger_support import Shop, check_invariants, utc
from tests.support import ApiClient


@pytest.fixture(autouse=True)
def frozen_clock(api: ApiClient) -> None:
    clock.freeze(utc("2026-01-15T12:00:00Z"))


def uds(api: ApiClient) -> tuple[Shop, list[str]]:
    shop = Shop(api, "uds_3_level")
    chain = [m["member_id"] for m in shop.chain(3)]
    shop.order("c3", "o-1", 100_000)  # 50 / 30 / 20 / 10 pending
    return shop, chain


def reward_pending(shop: Shop, chain: list[str]) -> list[int]:
    return [shop.balance(m)["pending"] for m in chain]


def test_partial_refunds_claw_back_every_level_proportionally(api: ApiClient) -> None:
    shop, chain = uds(api)
    reply = shop.refund("o-1", 30_000)
    assert {r["level"]: r["points"] for r in reply["rewards"]["reversals"]} == {0: -15, 1: -9, 2: -6, 3: -3}
    assert reward_pending(shop, chain) == [10 - 3, 20 - 6, 30 - 9, 50 - 15]
    # The rest of the order: exactly what was posted is reversed in total.
    reply = shop.refund("o-1", 70_000, at="2026-01-17T10:00:00Z")
    assert reply["rewards"]["refunded_minor"] == 100_000
    assert reward_pending(shop, chain) == [0, 0, 0, 0]
    leaf = shop.ledger(chain[3])
    cashback = next(e for e in leaf if e["kind"] == "reward" and e["rule_id"] == "cashback")
    assert cashback["reversed_points"] == 50 and cashback["status"] == "reversed"
    assert [e["points"] for e in leaf if e["kind"] == "reversal"] == [-35, -15]  # newest first
    assert "taken back" in leaf[0]["reason"]
    # Nothing is left to release.
    assert shop.release(utc("2026-02-01T00:00:00Z"))["released"] == 0
    for m in chain:
        assert check_invariants(shop.pid, m)["available"] == 100  # the signup bonus only


def test_a_refund_delivered_three_times_is_reversed_once(api: ApiClient) -> None:
    shop, chain = uds(api)
    event = shop.refund_event("o-1", 50_000, refund_id="rf-1")
    replies = [shop.send(event) for _ in range(3)]
    assert replies[0]["status"] == "processed"
    assert [r["status"] for r in replies[1:]] == ["duplicate", "duplicate"]
    assert reward_pending(shop, chain) == [5, 10, 15, 25]
    assert len([e for e in shop.ledger(chain[3]) if e["kind"] == "reversal"]) == 1


def test_a_refund_before_its_order_is_parked_and_applied_on_arrival(api: ApiClient) -> None:
    shop = Shop(api, "uds_3_level")
    chain = [m["member_id"] for m in shop.chain(1)]
    parked = shop.refund("o-9", 40_000)
    assert parked["rewards"]["status"] == "parked"
    order = shop.order("c1", "o-9", 100_000)
    applied = order["rewards"]["parked_refunds_applied"]
    assert {a["level"]: a["points"] for a in applied} == {0: -20, 1: -12}
    assert reward_pending(shop, chain) == [18, 30]
    state = OrderLedgerItem.get(*keys.order_ledger(shop.pid, _order_hash(shop, "o-9")))
    assert state.refunded_minor == 40_000 and state.parked == []
    # A later refund continues from the parked one.
    shop.refund("o-9", 60_000)
    assert reward_pending(shop, chain) == [0, 0]
    for m in chain:
        check_invariants(shop.pid, m)


def test_a_cancellation_reverses_the_rest_and_a_parked_one_everything(api: ApiClient) -> None:
    shop, chain = uds(api)
    shop.refund("o-1", 20_000)
    reply = shop.cancel_order("o-1")
    assert reply["rewards"]["refunded_minor"] == 100_000
    assert reward_pending(shop, chain) == [0, 0, 0, 0]
    shop.cancel_order("o-2")  # before the order
    paid = shop.order("c3", "o-2", 100_000)
    assert sum(a["points"] for a in paid["rewards"]["parked_refunds_applied"]) == -110
    assert reward_pending(shop, chain) == [0, 0, 0, 0]
    for m in chain:
        check_invariants(shop.pid, m)


def test_clawback_of_spent_points_is_owed_and_repaid_from_new_points(api: ApiClient) -> None:
    shop = Shop(api, "uds_3_level")
    buyer = shop.member("b")["member_id"]  # 100 signup points, available
    shop.order("b", "o-1", 400_000)  # 200 pending
    shop.release(utc("2026-01-25T00:00:00Z"))
    assert shop.balance(buyer)["available"] == 300
    assert shop.redeem(buyer, 280, "spend-1").status == 201
    shop.refund("o-1", 400_000)  # takes back 200: 20 available, 180 owed
    bal = shop.balance(buyer)
    assert (bal["available"], bal["owed"], bal["lifetime_earned"]) == (0, 180, 100)
    assert shop.redeem(buyer, 1, "spend-2").status == 409
    # New points repay the debt first when they become available.
    clock.freeze(utc("2026-01-25T12:00:00Z"))
    shop.order("b", "o-2", 600_000, at="2026-01-25T10:00:00Z")  # 300 pending
    assert shop.balance(buyer)["owed"] == 180
    shop.release(utc("2026-02-02T00:00:00Z"))
    bal = shop.balance(buyer)
    assert (bal["available"], bal["owed"]) == (120, 0)
    check_invariants(shop.pid, buyer)


def test_refund_of_an_available_reward_takes_available_points(api: ApiClient) -> None:
    shop, chain = uds(api)
    shop.release(utc("2026-01-23T00:00:00Z"))
    assert shop.balance(chain[3])["available"] == 150
    shop.refund("o-1", 100_000)
    assert shop.balance(chain[3])["available"] == 100
    entry = next(e for e in shop.ledger(chain[3]) if e["kind"] == "reversal")
    stored = [i for i in batch_get([(keys.member_partition(shop.pid, chain[3]),
                                     f"LEDGER#{entry['effective_at']}#{entry['entry_id']}")]).values()]
    assert isinstance(stored[0], LedgerEntryItem) and stored[0].from_status == "available"
    for m in chain:
        check_invariants(shop.pid, m)


def test_a_refund_in_another_currency_is_ignored(api: ApiClient) -> None:
    shop, chain = uds(api)
    event = shop.refund_event("o-1", 50_000)
    event["refund"]["currency"] = "USD"
    reply = shop.send(event)
    assert reply["rewards"]["status"] == "nothing_to_reverse"
    assert reward_pending(shop, chain) == [10, 20, 30, 50]


def _order_hash(shop: Shop, order_id: str) -> str:
    from chalicelib.services.ledger import order_hash

    return order_hash(shop.partner["partner_id"], order_id)
