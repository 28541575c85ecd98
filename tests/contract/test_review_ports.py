"""Contract of the ``ReviewStore`` port (``services.review``), on the fake and on moto: the queue, the held entries
read, and the decision as one transaction (entries, balances, signals, vouchers, the item) with its conditions.

The ``impl`` fixture is the one of ``test_ports.py`` (``fake`` / ``dynamo``).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from chalicelib.domain.clock import iso
from chalicelib.domain.offers import SHARDS
from chalicelib.domain.records import REVIEW_APPROVED, REVIEW_OPEN, REVIEW_VOIDED, StaleReview
from chalicelib.services.ports import BalanceChange, HeldEntryDecision, ReviewDecision
from chalicelib.store import keys
from chalicelib.store.db import Entity, get_or_none
from chalicelib.store.ledger import BalanceItem, LedgerEntryItem, new_entry
from chalicelib.store.offers import VoucherItem
from chalicelib.store.review import DenyItem, ReviewItem
from chalicelib.store.signals import SignalItem
from tests import ports_support as support
from tests.contract import test_ports
from tests.contract.test_ports import NOW, PID, Impl

impl = test_ports.impl  # the same fixture: fake and dynamo
LATER = NOW + timedelta(hours=2)


def _stored(impl: Impl, model: type[Entity], key: tuple[str, str]) -> Any:
    if impl.kind == "fake":
        return impl.ports.members.table.get(model, key)  # type: ignore[attr-defined]
    return get_or_none(model, key, consistent=True)


def _held(member_id: str, n: int, points: int, available_at: Any = None) -> LedgerEntryItem:
    at = NOW + timedelta(minutes=n)
    return new_entry(PID, member_id, f"le_{n:04d}", at, kind="reward", status="held", points=points,
                     reason="Order reward", reason_code="order_reward", created_at=at, partner_id="ptn_1",
                     available_at=available_at, rule_id="r1", rule_version=1, level=0)


def _grant(member_id: str = "anna", offer_id: str = "off_1") -> dict[str, Any]:
    return {"member_id": member_id, "partner_id": "ptn_1", "offer_id": offer_id, "rule_id": "r_offer",
            "rule_version": 1, "level": 0, "business_key": "order.paid|ptn_1|o-1", "reason": "Welcome coffee",
            "event_partner_id": "ptn_1", "salt": "grant-1"}


def _item(item_id: str, entries: list[LedgerEntryItem], *, minute: int = 0, partner_id: str = "ptn_1",
          vouchers: list[dict[str, Any]] | None = None, signals: list[str] | None = None,
          deny: list[str] | None = None) -> ReviewItem:
    created = NOW + timedelta(minutes=minute)
    pk, sk = keys.review_item(PID, item_id)
    g1pk, g1sk = keys.gsi1_review_open(PID, iso(created), item_id)
    g2pk, g2sk = keys.gsi2_review_open_partner(PID, partner_id, iso(created), item_id)
    return ReviewItem(
        PK=pk, SK=sk, GSI1PK=g1pk, GSI1SK=g1sk, GSI2PK=g2pk, GSI2SK=g2sk, program_id=PID, item_id=item_id,
        partner_id=partner_id, business_key=f"order.paid|{partner_id}|{item_id}", event_type="order.paid",
        member_id="anna", referrer_id="boris", reasons=[{"code": "velocity", "reason": "Many orders"}], matched=[],
        entries=[{"member_id": e.member_id, "sk": e.SK, "entry_id": e.entry_id, "points": int(e.points),
                  "available_at": iso(e.available_at) if e.available_at else None, "rule_id": e.rule_id}
                 for e in entries],
        signals=signals or [], deny=deny or [], vouchers=vouchers or [], points=sum(int(e.points) for e in entries),
        status=REVIEW_OPEN, created_at=created)


def _decision(item: ReviewItem, approve: bool, entries: list[HeldEntryDecision],
              balances: dict[str, tuple[BalanceItem | None, BalanceChange]], **fields: Any) -> ReviewDecision:
    return ReviewDecision(item=item, approve=approve, by="operator", reason=fields.pop("reason", "checked"), at=LATER,
                          entries=tuple(entries), balances=balances, **fields)


def _setup(impl: Impl) -> tuple[ReviewItem, list[LedgerEntryItem]]:
    entries = [_held("anna", 1, 100), _held("boris", 2, 50, available_at=NOW + timedelta(days=14))]
    item = _item("rev_1", entries, signals=["device#d1"], deny=["device#x1"])
    impl.seed(support.program(PID), support.partner(PID, "ptn_1"), support.member(PID, "anna"),
              support.member(PID, "boris"), *entries, item,
              support.balance(PID, "anna", held=100, lifetime_earned=100, owed=30),
              support.balance(PID, "boris", held=50, lifetime_earned=50),
              SignalItem(PK=keys.signal(PID, "device", "d1")[0], SK="SIGNAL", program_id=PID, kind="device",
                         members=[], first_seen_at=NOW, last_seen_at=NOW))
    return item, entries


def test_the_queue_is_oldest_first_per_program_and_per_partner_and_an_item_is_read_back(impl: Impl) -> None:
    impl.seed(_item("rev_a", [], minute=1), _item("rev_b", [], minute=2, partner_id="ptn_2"),
              _item("rev_c", [], minute=3))
    first = impl.ports.review.open_items(PID, None, 2, None)
    assert [i.item_id for i in first.items] == ["rev_a", "rev_b"] and first.next_cursor is not None
    rest = impl.ports.review.open_items(PID, None, 2, first.next_cursor)
    assert [i.item_id for i in rest.items] == ["rev_c"] and rest.next_cursor is None
    assert [i.item_id for i in impl.ports.review.open_items(PID, "ptn_1", 10, None).items] == ["rev_a", "rev_c"]
    assert [i.item_id for i in impl.ports.review.open_items(PID, "ptn_2", 10, None).items] == ["rev_b"]
    found = impl.ports.review.item(PID, "rev_b")
    assert found is not None and found.partner_id == "ptn_2"
    assert impl.ports.review.item(PID, "rev_nope") is None


def test_held_reads_the_entries_still_held_and_the_balances(impl: Impl) -> None:
    item, _ = _setup(impl)
    impl.seed(_held("carl", 3, 10))  # not the item's
    held, balances = impl.ports.review.held(item)
    assert [e.entry_id for e in held] == ["le_0001", "le_0002"]
    assert {m: int(b.held) for m, b in balances.items() if b is not None} == {"anna": 100, "boris": 50}
    refunded = _held("anna", 1, 100)
    refunded.status = "reversed"
    impl.seed(refunded)
    assert [e.entry_id for e in impl.ports.review.held(item)[0]] == ["le_0002"]


def test_an_approval_releases_changes_balances_and_leaves_the_queue_in_one_transaction(impl: Impl) -> None:
    item, _ = _setup(impl)
    held, balances = impl.ports.review.held(item)
    decision = _decision(item, True, [HeldEntryDecision(held[0]), HeldEntryDecision(held[1], pending=True)], {
        "anna": (balances["anna"], BalanceChange(available=100, held=-100)),
        "boris": (balances["boris"], BalanceChange(pending=50, held=-50))})
    impl.ports.review.decide(decision)
    anna, boris = impl.ports.ledger.balance(PID, "anna"), impl.ports.ledger.balance(PID, "boris")
    assert anna is not None and (anna.available, anna.owed, anna.held, anna.lifetime_earned) == (70, 0, 0, 100)
    assert boris is not None and (boris.pending, boris.held) == (50, 0)
    released = next(e for e in impl.ports.ledger.entries(PID, "anna", 10, None).items if e.entry_id == "le_0001")
    assert (released.status, released.released_at) == ("available", LATER)
    pending = next(e for e in impl.ports.ledger.entries(PID, "boris", 10, None).items if e.entry_id == "le_0002")
    assert pending.status == "pending" and pending.GSI1PK is not None
    stored = impl.ports.review.item(PID, "rev_1")
    assert stored is not None and (stored.status, stored.decided_by, stored.decided_at, stored.decision_reason) == (
        REVIEW_APPROVED, "operator", LATER, "checked")
    assert impl.ports.review.open_items(PID, None, 10, None).items == []
    with pytest.raises(StaleReview):
        impl.ports.review.decide(decision)  # decided already: nothing written twice
    anna = impl.ports.ledger.balance(PID, "anna")
    assert anna is not None and anna.available == 70


def test_a_fraud_void_reverses_marks_the_signals_and_feeds_the_deny_list(impl: Impl) -> None:
    item, _ = _setup(impl)
    held, balances = impl.ports.review.held(item)
    impl.ports.review.decide(_decision(item, False, [HeldEntryDecision(e) for e in held], {
        "anna": (balances["anna"], BalanceChange(earned=-100, held=-100)),
        "boris": (balances["boris"], BalanceChange(earned=-50, held=-50))},
        reason="farm", fraud_signals=("device#d1",), deny=("device#x1",),
        vouchers=({**_grant(), "status": "voided"},)))
    anna = impl.ports.ledger.balance(PID, "anna")
    assert anna is not None and (anna.available, anna.held, anna.lifetime_earned) == (0, 0, 0)
    ledger = {e.entry_id: e for e in impl.ports.ledger.entries(PID, "anna", 10, None).items}
    assert ledger["le_0001"].status == "reversed" and int(ledger["le_0001"].reversed_points) == 100
    reversal = next(e for e in ledger.values() if e.reverses_entry_id == "le_0001")
    assert (int(reversal.points), reversal.reason_code, reversal.reason) == (-100, "review_voided",
                                                                           "Voided in fraud review: farm")
    signal = _stored(impl, SignalItem, keys.signal(PID, "device", "d1"))
    assert signal is not None and signal.fraud_at == LATER
    assert _stored(impl, DenyItem, keys.deny_list("device", "x1")) is not None
    stored = impl.ports.review.item(PID, "rev_1")
    assert stored is not None and stored.status == REVIEW_VOIDED
    assert [v["status"] for v in stored.vouchers] == ["voided"]


def test_an_entry_changed_since_read_refuses_the_whole_decision(impl: Impl) -> None:
    item, _ = _setup(impl)
    held, balances = impl.ports.review.held(item)
    changed = _held("anna", 1, 100)
    changed.reversed_points = 40  # a partial refund meanwhile
    impl.seed(changed)
    with pytest.raises(StaleReview):
        impl.ports.review.decide(_decision(item, True, [HeldEntryDecision(e) for e in held], {
            "anna": (balances["anna"], BalanceChange(available=100, held=-100))}))
    stored = impl.ports.review.item(PID, "rev_1")
    assert stored is not None and stored.status == REVIEW_OPEN
    anna = impl.ports.ledger.balance(PID, "anna")
    assert anna is not None and (anna.available, anna.held) == (0, 100)
    boris_entry = next(e for e in impl.ports.ledger.entries(PID, "boris", 10, None).items if e.entry_id == "le_0002")
    assert boris_entry.status == "held"


def _pool(impl: Impl, codes: list[str], offer_id: str = "off_1") -> None:
    impl.ports.offers.create_offer({"program_id": PID, "partner_id": "ptn_1", "offer_id": offer_id, "name": "Coffee",
                                    "kind": "free_item", "item": "coffee", "code_source": "pool", "enabled": True,
                                    "archived": False, "alert_epoch": 0, "revision": 0, "valid_days": 30,
                                    "created_at": NOW, "updated_at": NOW})
    if codes:
        impl.ports.offers.append_codes(PID, offer_id, codes, {s: 0 for s in range(SHARDS)}, NOW)


def test_an_approval_issues_the_held_vouchers_from_the_pool_in_the_same_transaction(impl: Impl) -> None:
    entries = [_held("anna", 1, 100)]
    item = _item("rev_1", entries, vouchers=[_grant(), _grant(offer_id="off_empty")])
    impl.seed(support.program(PID), support.partner(PID, "ptn_1"), support.member(PID, "anna"), *entries, item,
              support.balance(PID, "anna", held=100, lifetime_earned=100))
    _pool(impl, ["CODE-1"])
    _pool(impl, [], offer_id="off_empty")
    held, balances = impl.ports.review.held(item)
    impl.ports.review.decide(_decision(item, True, [HeldEntryDecision(held[0])], {
        "anna": (balances["anna"], BalanceChange(available=100, held=-100))},
        vouchers=(_grant(), _grant(offer_id="off_empty"))))
    stored = impl.ports.review.item(PID, "rev_1")
    assert stored is not None
    issued, empty = stored.vouchers
    assert (issued["status"], empty["status"]) == ("issued", "pool_empty") and issued["voucher_id"].startswith("vch_")
    voucher = _stored(impl, VoucherItem, keys.voucher(PID, "anna", iso(LATER), issued["voucher_id"]))
    assert voucher is not None and (voucher.code, voucher.reason, voucher.expires_at) == (
        "CODE-1", "Welcome coffee", LATER + timedelta(days=30))
    heads = impl.ports.offers.heads(PID, "off_1")
    assert sum(int(h.next) for h in heads.values() if h is not None) == 1  # the code is taken, once
    item2 = _item("rev_2", [], vouchers=[_grant(member_id="boris")])
    impl.seed(item2, support.member(PID, "boris"))
    impl.ports.review.decide(_decision(item2, True, [], {}, vouchers=(_grant(member_id="boris"),)))
    again = impl.ports.review.item(PID, "rev_2")
    assert again is not None and [v["status"] for v in again.vouchers] == ["pool_empty"]  # the only code is gone
