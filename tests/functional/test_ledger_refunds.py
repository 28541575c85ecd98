"""Refunds and cancellations: proportional cascading clawback, parked refunds, owed points, holding."""

from __future__ import annotations

import pytest

from chalicelib.store import keys
from chalicelib.store.ledger import LedgerEntryItem, OrderLedgerItem
from chalicelib.store.members import batch_get
from tests.functional.test_ledger_support import Shop, check_invariants, utc
from tests.support import CLOCK, ApiClient


@pytest.fixture(autouse=True)
def frozen_clock(api: ApiClient) -> None:
    CLOCK.set(utc("2026-01-15T12:00:00Z"))


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
    CLOCK.set(utc("2026-01-25T12:00:00Z"))
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


# --------------------------------------------------------------------------- where an order's state lives (issue #10)


def _record_key(shop: Shop, order_id: str) -> tuple[str, str]:
    from chalicelib.domain.events import order_paid_business_key
    from chalicelib.store.dynamo_ports import event_key_hash

    return keys.event(shop.pid, event_key_hash(order_paid_business_key(shop.pid, shop.partner["partner_id"],
                                                                       order_id)))


def _order_item(shop: Shop, order_id: str) -> OrderLedgerItem | None:
    item = batch_get([keys.order_ledger(shop.pid, _order_hash(shop, order_id))]).get(
        keys.order_ledger(shop.pid, _order_hash(shop, order_id)))
    return item if isinstance(item, OrderLedgerItem) else None


def test_an_order_writes_no_item_of_its_own_and_its_first_refund_starts_one_from_its_record(api: ApiClient) -> None:
    from chalicelib.store.events import EventItem

    shop, chain = uds(api)
    assert _order_item(shop, "o-1") is None  # the order's record is its state
    record = batch_get([_record_key(shop, "o-1")])[_record_key(shop, "o-1")]
    assert isinstance(record, EventItem) and len(record.order_postings()) == 4
    shop.refund("o-1", 30_000)
    state = _order_item(shop, "o-1")
    assert state is not None and state.revision == 1 and state.refunded_minor == 30_000
    assert state.paid_business_key == record.business_key and (state.total, state.currency) == (100_000, "RUB")
    assert state.buyer_id == chain[3]
    # The funding partner of each posting comes from its entry (the record's reply does not show it).
    assert {p["funding_partner_id"] for p in state.stored_postings()} == {shop.partner["partner_id"]}
    assert batch_get([_record_key(shop, "o-1")])[_record_key(shop, "o-1")].serialize() == record.serialize()
    shop.refund("o-1", 70_000, at="2026-01-17T10:00:00Z")  # continues from the item
    assert reward_pending(shop, chain) == [0, 0, 0, 0]
    for m in chain:
        check_invariants(shop.pid, m)


def test_an_order_written_by_the_previous_version_is_refunded_from_its_own_item(api: ApiClient) -> None:
    """The previous version wrote every order's item (postings uncompressed before that) and records without the
    entries' index layout: the item is what refunds read."""
    from chalicelib.store.events import EventItem

    shop, chain = uds(api)
    rkey = _record_key(shop, "o-1")
    record = batch_get([rkey])[rkey]
    assert isinstance(record, EventItem)
    postings = [{**p, "funding_partner_id": shop.partner["partner_id"]} for p in record.order_postings()]
    okey = keys.order_ledger(shop.pid, _order_hash(shop, "o-1"))
    OrderLedgerItem(PK=okey[0], SK=okey[1], program_id=shop.pid, partner_id=shop.partner["partner_id"], order_id="o-1",
                    paid_business_key=record.business_key, total=100_000, currency="RUB", postings=[],
                    legacy_postings=postings, refunded_minor=0, reversed={}, parked=[], cancelled=0, revision=1,
                    buyer_id=chain[3]).save()
    # An old record: no occurred_at, the reply uncompressed (``result``).
    EventItem(*rkey).update(actions=[EventItem.occurred_at.remove(), EventItem.reply.remove(),
                                     EventItem.result.set(record.stored_reply())])
    reply = shop.refund("o-1", 30_000)
    assert {r["level"]: r["points"] for r in reply["rewards"]["reversals"]} == {0: -15, 1: -9, 2: -6, 3: -3}
    state = _order_item(shop, "o-1")
    assert state is not None and state.revision == 2 and state.refunded_minor == 30_000
    for m in chain:
        check_invariants(shop.pid, m)


def test_a_refund_parked_by_the_previous_version_is_applied_when_the_order_arrives(api: ApiClient) -> None:
    from chalicelib.store.events import EventItem

    shop = Shop(api, "uds_3_level")
    chain = [m["member_id"] for m in shop.chain(1)]
    okey = keys.order_ledger(shop.pid, _order_hash(shop, "o-9"))
    refund = {"business_key": f"{shop.pid}|{shop.partner['partner_id']}|refund|r-old|order.refunded", "kind": "refund",
              "amount": 40_000, "currency": "RUB", "occurred_at": "2026-01-14T10:00:00.000000Z"}
    OrderLedgerItem(PK=okey[0], SK=okey[1], program_id=shop.pid, partner_id=shop.partner["partner_id"], order_id="o-9",
                    postings=[], refunded_minor=0, reversed={}, parked=[refund], cancelled=0, revision=1).save()
    order = shop.order("c1", "o-9", 100_000)
    assert {a["level"]: a["points"] for a in order["rewards"]["parked_refunds_applied"]} == {0: -20, 1: -12}
    state = _order_item(shop, "o-9")
    assert state is not None and state.revision == 2 and state.parked == [] and state.refunded_minor == 40_000
    record = batch_get([_record_key(shop, "o-9")])[_record_key(shop, "o-9")]
    assert isinstance(record, EventItem) and record.replaced_parked is None  # created as usual
    shop.refund("o-9", 60_000)
    assert reward_pending(shop, chain) == [0, 0]
    for m in chain:
        check_invariants(shop.pid, m)


def test_refunds_parked_at_the_orders_record_key_are_replaced_by_its_record(api: ApiClient) -> None:
    from chalicelib.store.events import EventItem

    shop = Shop(api, "uds_3_level")
    chain = [m["member_id"] for m in shop.chain(1)]
    shop.refund("o-9", 10_000)
    shop.refund("o-9", 30_000)  # the second one updates the parked item (its revision)
    parked = batch_get([_record_key(shop, "o-9")])[_record_key(shop, "o-9")]
    assert isinstance(parked, OrderLedgerItem) and len(parked.parked) == 2 and parked.revision == 2
    assert _order_item(shop, "o-9") is None
    order = shop.order("c1", "o-9", 100_000)
    assert sum(a["points"] for a in order["rewards"]["parked_refunds_applied"]) == -32
    record = batch_get([_record_key(shop, "o-9")])[_record_key(shop, "o-9")]
    assert isinstance(record, EventItem) and record.replaced_parked == 1
    state = _order_item(shop, "o-9")
    assert state is not None and state.refunded_minor == 40_000 and state.parked == []
    assert shop.send(shop.order_event("c1", "o-9", 100_000))["status"] == "duplicate"
    assert reward_pending(shop, chain) == [18, 30]
    for m in chain:
        check_invariants(shop.pid, m)


def _before_commit(monkeypatch: pytest.MonkeyPatch, event_type: str, run: object) -> None:
    """Run ``run()`` once, just before the first transaction that creates a record of ``event_type`` commits."""
    from chalicelib.store.events import EventItem
    from chalicelib.store.transact import Transaction

    original = Transaction.commit
    done: list[bool] = []

    def commit(self: Transaction, **kw: object) -> None:
        if not done and any(isinstance(op.args[0], EventItem) and op.args[0].business_key.endswith(f"|{event_type}")
                            for op in self.ops if op.kind == "save"):
            done.append(True)
            run()  # type: ignore[operator]
        original(self, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(Transaction, "commit", commit)


def test_a_refund_parked_while_its_order_commits_is_applied_by_the_order(
        api: ApiClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """The order read no parked refund; one parks before its transaction commits: the order's record cannot be
    created over it, so the order re-reads and applies it."""
    shop = Shop(api, "uds_3_level")
    chain = [m["member_id"] for m in shop.chain(1)]
    parked: list[dict[str, object]] = []
    _before_commit(monkeypatch, "order.paid", lambda: parked.append(shop.refund("o-9", 40_000)))
    order = shop.order("c1", "o-9", 100_000)
    assert parked[0]["rewards"]["status"] == "parked"  # type: ignore[index]
    assert {a["level"]: a["points"] for a in order["rewards"]["parked_refunds_applied"]} == {0: -20, 1: -12}
    assert reward_pending(shop, chain) == [18, 30]
    for m in chain:
        check_invariants(shop.pid, m)


def test_an_order_committed_while_its_refund_parks_makes_the_refund_apply_instead(
        api: ApiClient, monkeypatch: pytest.MonkeyPatch) -> None:
    shop = Shop(api, "uds_3_level")
    chain = [m["member_id"] for m in shop.chain(1)]
    paid: list[dict[str, object]] = []
    _before_commit(monkeypatch, "order.refunded", lambda: paid.append(shop.order("c1", "o-9", 100_000)))
    refund = shop.refund("o-9", 40_000)
    assert "parked_refunds_applied" not in paid[0]["rewards"]  # type: ignore[operator,index]
    assert refund["rewards"]["status"] == "applied"
    assert reward_pending(shop, chain) == [18, 30]
    for m in chain:
        check_invariants(shop.pid, m)


def test_an_order_whose_refund_came_first_is_counted_once_by_analytics(api: ApiClient) -> None:
    """Its record replaced the parked refunds (the stream shows a MODIFY): counted on it, once, and not again when
    the holding job moves the record."""
    from chalicelib.notify import sources
    from tests.notify_support import stream_poller

    sources.MAX_PARALLEL = 1  # moto's in-process DynamoDB is not thread-safe
    shop = Shop(api, "uds_3_level")
    shop.chain(1)
    shop.refund("o-9", 40_000)
    shop.order("c1", "o-9", 100_000)
    shop.order("c1", "o-10", 50_000)
    poller = stream_poller()
    poller.drain()
    shop.release(utc("2026-02-01T00:00:00Z"))  # moves (here: unindexes) both records
    poller.drain()
    reply = api.get(f"/v1/programs/{shop.pid}/analytics/funnel?from=2026-01-01&to=2026-01-31&granularity=month")
    assert reply.status == 200, reply.body
    [row] = reply.body["series"]
    assert (row["orders"], row["revenue"]) == (2, 150_000)
