"""Balance arithmetic of the ledger: owed points, repayment, conditions (no AWS)."""

from __future__ import annotations

from typing import Any

from chalicelib.services.ledger import order_hash
from chalicelib.store.ledger import BalanceDelta, BalanceItem, balance_actions, stable_id


def render(read: BalanceItem | None, delta: BalanceDelta) -> tuple[list[str], str | None]:
    actions, condition = balance_actions(read, delta)
    placeholders: dict[str, str] = {}
    values: dict[str, Any] = {}
    texts = [a.serialize(placeholders, values) for a in actions]
    cond_text = None if condition is None else condition.serialize(placeholders, values)
    names = {v: k for k, v in placeholders.items()}
    plain = [_plain(t, names, values) for t in texts]
    return plain, None if cond_text is None else _plain(cond_text, names, values)


def _plain(text: str, names: dict[str, str], values: dict[str, Any]) -> str:
    for placeholder, name in names.items():
        text = text.replace(placeholder, name)
    for placeholder, value in sorted(values.items(), key=lambda kv: -len(kv[0])):
        text = text.replace(placeholder, str(next(iter(value.values()))))
    return text


def balance(available: int = 0, owed: int = 0) -> BalanceItem:
    return BalanceItem(PK="p", SK="s", available=available, owed=owed)


def test_credit_without_debt_is_a_plain_add() -> None:
    actions, cond = render(balance(5), BalanceDelta(available=10, earned=10))
    assert actions == ["available 10", "lifetime_earned 10"]
    assert cond is None


def test_credit_repays_owed_points_first_conditioned_on_the_debt() -> None:
    actions, cond = render(balance(0, owed=30), BalanceDelta(available=100))
    assert actions == ["owed -30", "available 70"]
    assert cond == "owed >= 30"
    actions, cond = render(balance(0, owed=300), BalanceDelta(available=100))
    assert actions == ["owed -100"] and cond == "owed >= 100"


def test_clawback_takes_what_is_available_and_records_the_rest_as_owed() -> None:
    actions, cond = render(balance(40), BalanceDelta(available=-100, earned=-100))
    assert actions == ["available -40", "owed 60", "lifetime_earned -100"]
    assert cond == "(available >= 40 AND available = 40)"
    actions, cond = render(balance(500), BalanceDelta(available=-100))
    assert actions == ["available -100"] and cond == "available >= 100"
    actions, cond = render(None, BalanceDelta(available=-10))
    assert actions == ["owed 10"] and cond is not None and cond == "(attribute_not_exists (available) OR available = 0)"


def test_pending_moves_are_unconditional() -> None:
    actions, cond = render(balance(), BalanceDelta(pending=-20, available=20))
    assert actions == ["available 20", "pending -20"] and cond is None
    assert not BalanceDelta()


def test_ids_and_keys_are_deterministic() -> None:
    assert stable_id("le", "a", "b") == stable_id("le", "a", "b") != stable_id("le", "ab")
    assert order_hash("ptn_1", "A-1") == order_hash("ptn_1", "A-1") != order_hash("ptn_2", "A-1")
