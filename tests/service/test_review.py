"""The fraud review queue and its decisions on the in-memory ports: the queue's scope, the pure plan (which entry
becomes what, each balance's change), idempotency, the concurrent loser's 409, the pool retry. No moto, no table.

Through the real pipeline and routes under moto (held events, every hold reason, vouchers, the deny list, two
concurrent decisions): tests/functional/test_fraud_review.py; the fakes are held to DynamoDB's behaviour by
tests/contract/test_review_ports.py.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from chalicelib.domain.clock import iso
from chalicelib.domain.errors import Conflict, NotFound, ServiceUnavailable
from chalicelib.domain.records import ReadAgain, StaleReview
from chalicelib.services import ports, review
from chalicelib.services.auth import Principal
from chalicelib.store import fakes, keys
from chalicelib.store.ledger import new_entry
from chalicelib.store.review import ReviewItem
from chalicelib.store.signals import SignalItem
from tests import ports_support as support

PID = "prg_1"
NOW = support.NOW
OPERATOR = Principal(kind="operator")
SHOP = Principal(kind="partner", program_id=PID, partner_id="ptn_1", key_id="key_1")
GYM = Principal(kind="partner", program_id=PID, partner_id="ptn_2", key_id="key_2")


def _held(member_id: str, n: int, points: int, *, days: int | None = None) -> Any:
    at = NOW - timedelta(days=20) + timedelta(minutes=n)
    return new_entry(PID, member_id, f"le_{n:04d}", at, kind="reward", status="held", points=points,
                     reason="Order reward", reason_code="order_reward", created_at=at, partner_id="ptn_1",
                     available_at=None if days is None else NOW + timedelta(days=days), rule_id="r1")


def _item(item_id: str, entries: list[Any], *, partner_id: str = "ptn_1", minute: int = 0,
          vouchers: list[dict[str, Any]] | None = None) -> ReviewItem:
    created = NOW - timedelta(hours=1) + timedelta(minutes=minute)
    pk, sk = keys.review_item(PID, item_id)
    g1pk, g1sk = keys.gsi1_review_open(PID, iso(created), item_id)
    g2pk, g2sk = keys.gsi2_review_open_partner(PID, partner_id, iso(created), item_id)
    return ReviewItem(
        PK=pk, SK=sk, GSI1PK=g1pk, GSI1SK=g1sk, GSI2PK=g2pk, GSI2SK=g2sk, program_id=PID, item_id=item_id,
        partner_id=partner_id, business_key=f"bk|{item_id}", event_type="order.paid", member_id="boris",
        referrer_id="anna", reasons=[{"code": "same_network_as_referrer", "reason": "Same network"}],
        matched=["same IP address and browser as the referrer"],
        entries=[{"member_id": e.member_id, "sk": e.SK, "entry_id": e.entry_id, "points": int(e.points),
                  "available_at": iso(e.available_at) if e.available_at else None, "rule_id": e.rule_id}
                 for e in entries],
        signals=["device#d1", "payment#p1"], deny=["device#x1"], vouchers=vouchers or [],
        points=sum(int(e.points) for e in entries), status="open", created_at=created)


@pytest.fixture
def deps() -> ports.Ports:
    deps = ports.fakes(NOW)
    entries = [_held("anna", 1, 300), _held("boris", 2, 200, days=10)]
    fakes.seed(deps, support.program(PID), support.partner(PID, "ptn_1"), support.member(PID, "anna"),
               support.member(PID, "boris"), *entries, _item("rev_1", entries),
               _item("rev_2", [], partner_id="ptn_2", minute=5),
               support.balance(PID, "anna", held=300, lifetime_earned=300),
               support.balance(PID, "boris", held=200, lifetime_earned=200),
               *[SignalItem(PK=keys.signal(PID, k, h)[0], SK="SIGNAL", program_id=PID, kind=k, members=[],
                            first_seen_at=NOW, last_seen_at=NOW) for k, h in (("device", "d1"), ("payment", "p1"))])
    return deps


def _balance(deps: ports.Ports, member_id: str) -> tuple[int, int, int, int]:
    b = deps.ledger.balance(PID, member_id)
    assert b is not None
    return int(b.available or 0), int(b.pending or 0), int(b.held or 0), int(b.lifetime_earned or 0)


def test_the_queue_is_oldest_first_and_a_partner_sees_its_own_events(deps: ports.Ports) -> None:
    listed = review.queue(deps, OPERATOR, PID, 10, None)
    assert [i["item_id"] for i in listed["items"]] == ["rev_1", "rev_2"] and listed["next_cursor"] is None
    first = listed["items"][0]
    assert first["points"] == 500 and first["matched"] == ["same IP address and browser as the referrer"]
    assert "device#d1" not in repr(first)  # signal hashes are never shown
    assert [i["item_id"] for i in review.queue(deps, SHOP, PID, 10, None)["items"]] == ["rev_1"]
    assert [i["item_id"] for i in review.queue(deps, GYM, PID, 10, None)["items"]] == ["rev_2"]
    page = review.queue(deps, OPERATOR, PID, 1, None)
    assert [i["item_id"] for i in review.queue(deps, OPERATOR, PID, 1, page["next_cursor"])["items"]] == ["rev_2"]
    with pytest.raises(NotFound):
        review.decide(deps, GYM, PID, "rev_1", "approve", {})  # another partner's event
    with pytest.raises(NotFound):
        review.queue(deps, Principal(kind="partner", program_id="prg_2", partner_id="ptn_1"), PID, 10, None)


def test_approve_releases_available_or_pending_once_and_is_idempotent(deps: ports.Ports) -> None:
    approved = review.decide(deps, SHOP, PID, "rev_1", "approve", {"reason": "known customer"})
    assert approved["status"] == "approved"
    assert approved["decision"] == {"by": "partner:ptn_1/key:key_1", "at": iso(NOW), "reason": "known customer"}
    assert _balance(deps, "anna") == (300, 0, 0, 300)  # past its holding period: available now
    assert _balance(deps, "boris") == (0, 200, 0, 200)  # still in it: pending until available_at
    assert review.decide(deps, SHOP, PID, "rev_1", "approve", {}) == approved
    assert _balance(deps, "anna") == (300, 0, 0, 300)
    with pytest.raises(Conflict) as other:
        review.decide(deps, OPERATOR, PID, "rev_1", "void", {"reason": "no"})
    assert other.value.details == {"status": "approved"}
    assert [i["item_id"] for i in review.queue(deps, OPERATOR, PID, 10, None)["items"]] == ["rev_2"]


def test_a_fraud_void_reverses_every_held_entry_and_marks_the_signals(deps: ports.Ports) -> None:
    voided = review.decide(deps, OPERATOR, PID, "rev_1", "void", {"reason": "farm", "fraud": True})
    assert voided["status"] == "voided" and voided["decision"]["reason"] == "farm"
    assert _balance(deps, "anna") == (0, 0, 0, 0) and _balance(deps, "boris") == (0, 0, 0, 0)
    reversals = [e for e in deps.ledger.entries(PID, "anna", 10, None).items if e.kind == "reversal"]
    assert [(int(e.points), e.reason) for e in reversals] == [(-300, "Voided in fraud review: farm")]
    table = deps.members.table  # type: ignore[attr-defined]
    assert all(table.get(SignalItem, keys.signal(PID, k, h)).fraud_at == NOW for k, h in (("device", "d1"),
                                                                                         ("payment", "p1")))


def test_the_plan_is_pure_and_a_refunded_entry_is_left_out(deps: ports.Ports) -> None:
    item = deps.review.item(PID, "rev_1")
    assert item is not None
    held, balances = deps.review.held(item)
    plan = review.plan(item, True, held[1:], balances, by="operator", reason=None, fraud=True, at=NOW)
    assert [(d.entry.entry_id, d.pending) for d in plan.entries] == [("le_0002", True)]
    assert plan.balances["boris"][1] == ports.BalanceChange(pending=200, held=-200)
    assert "anna" not in plan.balances and plan.fraud_signals == () and plan.deny == ()  # fraud counts on a void
    void = review.plan(item, False, held, balances, by="operator", reason="x", fraud=True, at=NOW)
    assert void.balances["anna"][1] == ports.BalanceChange(earned=-300, held=-300)
    assert void.fraud_signals == ("device#d1", "payment#p1") and void.deny == ("device#x1",)


def test_the_loser_of_a_concurrent_decision_gets_a_409_and_the_winner_stays(deps: ports.Ports,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    real = deps.review.decide

    def void_first(decision: Any) -> None:  # another reviewer voids between our read and our write
        item = deps.review.item(PID, "rev_1")
        assert item is not None
        held, balances = deps.review.held(item)
        real(review.plan(item, False, held, balances, by="operator", reason="other", fraud=False, at=NOW))
        real(decision)

    monkeypatch.setattr(deps.review, "decide", void_first)
    with pytest.raises(Conflict) as lost:
        review.decide(deps, OPERATOR, PID, "rev_1", "approve", {})
    assert lost.value.details == {"status": "voided"}
    assert _balance(deps, "anna") == (0, 0, 0, 0)


def test_the_same_decision_taken_concurrently_answers_the_item(deps: ports.Ports,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    real = deps.review.decide
    calls: list[int] = []

    def twice(decision: Any) -> None:
        real(decision)
        calls.append(1)
        if len(calls) == 1:
            raise StaleReview()  # as if another approval had won: the item reads approved

    monkeypatch.setattr(deps.review, "decide", twice)
    assert review.decide(deps, OPERATOR, PID, "rev_1", "approve", {})["status"] == "approved"


def test_a_contended_pool_is_read_again_then_a_503(deps: ports.Ports, monkeypatch: pytest.MonkeyPatch) -> None:
    real = deps.review.decide
    failures = iter([True])

    def contended_once(decision: Any) -> None:
        if next(failures, False):
            raise ReadAgain()
        real(decision)

    monkeypatch.setattr(deps.review, "decide", contended_once)
    assert review.decide(deps, OPERATOR, PID, "rev_1", "approve", {})["status"] == "approved"

    def always(decision: Any) -> None:
        raise ReadAgain()

    monkeypatch.setattr(deps.review, "decide", always)
    with pytest.raises(ServiceUnavailable):
        review.decide(deps, OPERATOR, PID, "rev_2", "approve", {})


def test_held_vouchers_are_issued_on_approval_and_voided_on_a_void(deps: ports.Ports) -> None:
    from chalicelib.domain.offers import SHARDS

    grant = {"member_id": "boris", "partner_id": "ptn_1", "offer_id": "off_1", "rule_id": "r_offer", "rule_version": 1,
             "level": 0, "business_key": "bk|rev_v", "reason": "Welcome coffee", "event_partner_id": "ptn_1",
             "salt": "s"}
    fakes.seed(deps, _item("rev_v", [], vouchers=[grant]), _item("rev_w", [], vouchers=[grant], minute=9))
    deps.offers.create_offer({"program_id": PID, "partner_id": "ptn_1", "offer_id": "off_1", "name": "Coffee",
                              "kind": "free_item", "item": "coffee", "code_source": "pool", "enabled": True,
                              "archived": False, "alert_epoch": 0, "revision": 0, "created_at": NOW,
                              "updated_at": NOW})
    deps.offers.append_codes(PID, "off_1", ["C-1"], {s: 0 for s in range(SHARDS)}, NOW)
    queued = {i["item_id"]: i for i in review.queue(deps, OPERATOR, PID, 10, None)["items"]}
    assert queued["rev_v"]["vouchers"][0]["status"] == "held"
    approved = review.decide(deps, OPERATOR, PID, "rev_v", "approve", {})
    assert approved["vouchers"][0]["status"] == "issued" and approved["vouchers"][0]["voucher_id"].startswith("vch_")
    voided = review.decide(deps, OPERATOR, PID, "rev_w", "void", {"reason": "farm"})
    assert voided["vouchers"][0] == {**review.public_voucher(grant), "status": "voided"}
