"""Balance arithmetic of the ledger as DynamoDB applies it (moto): owed points, repayment, and the
conditions that make a write based on a stale read fail instead of corrupting the balance.

Behaviour, not expression text: each case writes a balance, applies a delta staged from what was
read, and reads the result back; the stale cases change the item between the read and the write.
"""

from __future__ import annotations

import pytest

from chalicelib.services.ledger import order_hash
from chalicelib.store import keys
from chalicelib.store.ledger import BalanceDelta, BalanceItem, stable_id, stage_balance
from chalicelib.store.transact import Transaction

PID, MID = "prg_b", "mbr_b"
pytestmark = pytest.mark.usefixtures("aws")


class Stale(Exception):
    pass


def stored(available: int = 0, owed: int = 0, pending: int = 0) -> BalanceItem:
    pk, sk = keys.balance(PID, MID)
    item = BalanceItem(PK=pk, SK=sk, program_id=PID, member_id=MID, available=available, owed=owed, pending=pending)
    item.save()
    return BalanceItem.get(pk, sk, consistent_read=True)


def apply(read: BalanceItem | None, delta: BalanceDelta) -> dict[str, int]:
    tx = Transaction()
    stage_balance(tx, PID, MID, read, delta, on_fail=Stale())
    tx.commit()
    item = BalanceItem.get(*keys.balance(PID, MID), consistent_read=True)
    return {name: int(getattr(item, name) or 0) for name in ("available", "owed", "pending", "lifetime_earned")}


def test_a_credit_without_debt_adds_to_available() -> None:
    assert apply(stored(5), BalanceDelta(available=10, earned=10)) == {
        "available": 15, "owed": 0, "pending": 0, "lifetime_earned": 10}


def test_a_credit_repays_owed_points_first() -> None:
    assert apply(stored(0, owed=30), BalanceDelta(available=100))["available"] == 70
    assert BalanceItem.get(*keys.balance(PID, MID)).owed == 0
    result = apply(stored(0, owed=300), BalanceDelta(available=100))
    assert (result["available"], result["owed"]) == (0, 200)


def test_a_clawback_takes_what_is_available_and_records_the_rest_as_owed() -> None:
    result = apply(stored(40), BalanceDelta(available=-100, earned=-100))
    assert (result["available"], result["owed"], result["lifetime_earned"]) == (0, 60, -100)
    assert apply(stored(500), BalanceDelta(available=-100))["available"] == 400


def test_a_clawback_from_a_member_without_a_balance_is_owed() -> None:
    result = apply(None, BalanceDelta(available=-10))
    assert (result["available"], result["owed"]) == (0, 10)


def test_pending_moves_need_no_condition() -> None:
    read = stored(0, pending=20)
    stored(7, pending=20)  # changed since the read: a pending → available move still applies
    assert apply(read, BalanceDelta(pending=-20, available=20))["available"] == 27


@pytest.mark.parametrize(("read_as", "now", "delta"), [
    ((0, 30), (0, 0), BalanceDelta(available=100)),      # the debt was repaid concurrently
    ((40, 0), (10, 0), BalanceDelta(available=-100)),    # the balance was spent concurrently
    ((500, 0), (50, 0), BalanceDelta(available=-100)),   # not enough left for the debit any more
])
def test_a_write_based_on_a_stale_balance_fails(read_as: tuple[int, int], now: tuple[int, int],
                                                delta: BalanceDelta) -> None:
    read = stored(*read_as)
    stored(*now)
    with pytest.raises(Stale):
        apply(read, delta)
    after = BalanceItem.get(*keys.balance(PID, MID), consistent_read=True)
    assert (int(after.available), int(after.owed)) == now  # nothing changed


def test_ids_and_keys_are_deterministic() -> None:
    assert stable_id("le", "a", "b") == stable_id("le", "a", "b") != stable_id("le", "ab")
    assert order_hash("ptn_1", "A-1") == order_hash("ptn_1", "A-1") != order_hash("ptn_2", "A-1")
