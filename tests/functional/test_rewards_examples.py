"""Every example rules document, from signed events to balances (chalice.test.Client under moto)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from chalicelib.domain.rewards.examples import load_example_doc
from chalicelib.store import keys
from chalicelib.store.db import Entity
from chalicelib.store.ledger import OutboxItem, ProgramCountersItem
from chalicelib.store.members import MemberItem
from tests.functional.test_ledger_support import Shop, check_invariants, utc
from tests.support import CLOCK, ApiClient

NOW = "2026-01-15T12:00:00Z"


@pytest.fixture(autouse=True)
def frozen_clock(api: ApiClient) -> None:
    CLOCK.set(utc(NOW))


def outbox(pid: str) -> list[OutboxItem]:
    from chalicelib.store.db import raw_client

    items = raw_client().scan(TableName=Entity.Meta.table_name)["Items"]  # test-only inspection
    keys_ = [(i["PK"]["S"], i["SK"]["S"]) for i in items if i["PK"]["S"].startswith(f"OUTBOX#{pid}#")]
    return [OutboxItem.get(*k) for k in keys_]


def test_single_shop_cashback_and_bring_a_friend(api: ApiClient) -> None:
    shop = Shop(api, "single_shop")
    alice = shop.member("alice")
    bob = shop.member("bob", alice["code"])
    # 5 % of subtotal - discount = 5 % of 2 900.00 RUB = 145; first order >= 2 000.00: 500 + 300.
    reply = shop.order("bob", "o-1", 300_000, subtotal=300_000, discount=10_000)
    by_rule = {p["rule_id"]: p for p in reply["rewards"]["postings"]}
    assert by_rule["cashback"]["points"] == 145 and by_rule["cashback"]["member_id"] == bob["member_id"]
    assert by_rule["bring-a-friend"]["points"] == 500 and by_rule["bring-a-friend"]["member_id"] == alice["member_id"]
    assert by_rule["friend-welcome"]["points"] == 300
    assert all(p["status"] == "pending" and p["rule_version"] == 1 for p in by_rule.values())
    assert shop.balance(bob["member_id"])["pending"] == 445
    assert shop.balance(alice["member_id"])["pending"] == 500
    # The second order pays cashback only (the bonuses are for the first order).
    second = shop.order("bob", "o-2", 100_000)
    assert [p["rule_id"] for p in second["rewards"]["postings"]] == ["cashback"]
    # A huge order is capped at 5 000 points per order.
    big = shop.order("bob", "o-3", 20_000_000)
    assert big["rewards"]["postings"][0]["points"] == 5000
    assert big["rewards"]["skipped"][0]["reason_code"] == "cap_reward"
    # Outbox: one "earned" message per member per event, derived from the entries by the stream consumer,
    # which delivers it in the same round.
    assert outbox(shop.pid) == []  # the webhooks' transactions wrote none
    from tests.notify_support import stream_poller

    stream_poller().poll_once()
    messages = [m for m in outbox(shop.pid) if m.template == "points_earned"]  # (and alice's friend_joined)
    assert {(m.member_id, m.template) for m in messages} == {(bob["member_id"], "points_earned"),
                                                              (alice["member_id"], "points_earned")}
    # Derived and delivered by the same handler (created claimed, then sent): one message each, all out.
    assert len(messages) == 4 and all(m.status == "sent" for m in messages)
    first_bob = next(m for m in messages if m.params["business_key"].endswith("|o-1|order.paid")
                     and m.member_id == bob["member_id"])
    assert first_bob.params["points"] == 445 and first_bob.params["pending_points"] == 445
    # Holding: 14 days later everything is available.
    shop.release(utc("2026-01-30T00:00:00Z"))
    balance = shop.balance(bob["member_id"])
    assert balance["available"] == 145 + 300 + 50 + 5000 and balance["pending"] == 0
    for member in (alice, bob):
        check_invariants(shop.pid, member["member_id"])


def test_uds_three_levels_and_signup_bonus(api: ApiClient) -> None:
    shop = Shop(api, "uds_3_level")
    chain = shop.chain(3)  # c0 <- c1 <- c2 <- c3
    # Signup bonus: 100 points, available at once.
    assert shop.balance(chain[0]["member_id"])["available"] == 100
    reply = shop.order("c3", "o-1", 100_000)
    points = {(p["member_id"], p["level"]): p["points"] for p in reply["rewards"]["postings"]}
    assert points == {(chain[3]["member_id"], 0): 50, (chain[2]["member_id"], 1): 30,
                      (chain[1]["member_id"], 2): 20, (chain[0]["member_id"], 3): 10}
    entries = shop.ledger(chain[1]["member_id"])
    level2 = next(e for e in entries if e["rule_id"] == "level-2")
    assert level2["reason"].startswith("20 points for your level-2 referral")
    assert level2["status"] == "pending" and level2["available_at"] == "2026-01-22T10:00:00.000000Z"
    assert level2["funding_partner_id"] == shop.partner["partner_id"]
    for m in chain:
        check_invariants(shop.pid, m["member_id"])


def test_b2b_crm_leads_deals_tiers_and_budget(api: ApiClient) -> None:
    # A CRM program: a won deal is the customer's purchase, so it converts the referral (tiers count it).
    # Its agents bring many leads an hour: above the default velocity limit (10), which would hold the 11th.
    shop = Shop(api, "b2b_crm", settings={"deals_count_as_orders": True, "fraud": {"signups_per_referrer_hour": 100}})
    agent = shop.member("agent")

    def lead(name: str) -> dict[str, Any]:
        return shop.send({"type": "lead.created", "occurred_at": "2026-01-12T10:00:00Z",
                          "object": {"type": "lead", "id": name}, "customer": {"id": name},
                          "referral": {"code": agent["code"]}})

    def deal(name: str, total: int) -> dict[str, Any]:
        return shop.send({"type": "deal.won", "occurred_at": "2026-01-14T10:00:00Z",
                          "object": {"type": "deal", "id": f"d-{name}"}, "customer": {"id": name},
                          "order": {"total": total, "currency": "RUB"}})

    assert lead("acme")["rewards"]["postings"][0]["points"] == 200
    assert shop.balance(agent["member_id"])["available"] == 200  # hold_days 0
    # 5 % of 100 000.00 RUB at 0 converted referrals; deals below 50 000.00 pay nothing.
    assert deal("acme", 10_000_000)["rewards"]["postings"][0]["points"] == 5000
    lead("tiny")
    assert deal("tiny", 1_000_000)["rewards"]["skipped"][0]["reason_code"] == "below_min_order"
    # From 10 converted referrals the agent earns 7 %: eight more leads become customers (small deals).
    for n in range(8):
        lead(f"small-{n}")
        assert deal(f"small-{n}", 1_000_000)["rewards"]["points"] == 0
    from chalicelib.store.ledger import member_counts
    from chalicelib.store.members import batch_get

    balance = batch_get([keys.balance(shop.pid, agent["member_id"])]).get(keys.balance(shop.pid, agent["member_id"]))
    assert member_counts(MemberItem.get(*keys.member(shop.pid, agent["member_id"])), balance)[1] == 10
    lead("big")
    assert deal("big", 10_000_000)["rewards"]["postings"][0]["points"] == 7000
    budget = ProgramCountersItem.get(*keys.program_counters(shop.pid))
    assert budget.points == 200 * 11 + 5000 + 7000
    assert shop.balance(agent["member_id"])["pending"] == 12000
    check_invariants(shop.pid, agent["member_id"])


def test_recurring_share_for_twelve_months_with_per_friend_cap(api: ApiClient) -> None:
    shop = Shop(api, "recurring_10pct_12m")
    ref = shop.member("ref")
    shop.member("fr", ref["code"])
    first = shop.order("fr", "o-1", 6_000_000)
    assert first["rewards"]["postings"][0]["points"] == 6000
    second = shop.order("fr", "o-2", 6_000_000, at="2026-03-01T10:00:00Z")
    assert second["rewards"]["postings"][0]["points"] == 4000  # 10 000 per friend in total
    assert second["rewards"]["skipped"][0]["reason_code"] == "cap_recurring"
    third = shop.order("fr", "o-3", 100_000, at="2026-04-01T10:00:00Z")
    assert third["rewards"]["postings"] == []
    # A second friend has their own cap; past 12 months nothing is paid.
    shop.member("fr2", ref["code"])
    late = shop.order("fr2", "o-4", 100_000, at="2027-02-01T10:00:00Z")
    assert late["rewards"]["skipped"][0]["reason_code"] == "recurring_expired"
    assert shop.balance(ref["member_id"])["lifetime_earned"] == 10000
    check_invariants(shop.pid, ref["member_id"])


def test_coalition_partner_overrides_funding_and_custom_events(api: ApiClient) -> None:
    shop = Shop(api, None, partners=4)
    bank, cafe, fuel, pharmacy = shop.partners
    text = json.dumps(load_example_doc("coalition"))
    for name, partner in (("bank", bank), ("cafe", cafe), ("fuel", fuel), ("pharmacy", pharmacy)):
        text = text.replace(f'"{name}"', f'"{partner["partner_id"]}"')
    assert api.put(f"/v1/programs/{shop.pid}/rules", json.loads(text)).status == 200
    top = shop.member("top", partner=bank)
    mid = shop.member("mid", top["code"], partner=bank)
    shop.member("fr", mid["code"], partner=bank)
    # Members are known across partners by e-mail (a partner's customer ids are its own).
    # First order at the cafe: 5 % earn, bank-funded friend and referrer bonuses, level-2 share.
    reply = shop.order("fr", "o-1", 200_000, partner=cafe, by_email=True)
    got = {p["rule_id"]: p for p in reply["rewards"]["postings"]}
    assert got["earn"]["points"] == 100
    assert got["bank-friend-bonus"]["points"] == 300 and got["bank-referrer-bonus"]["points"] == 500
    assert got["level-2-share"]["points"] == 10 and got["level-2-share"]["member_id"] == top["member_id"]
    entries = {e["rule_id"]: e for e in shop.ledger(mid["member_id"])}
    assert entries["bank-referrer-bonus"]["funding_partner_id"] == bank["partner_id"]
    assert entries["bank-referrer-bonus"]["partner_id"] == cafe["partner_id"]
    # Fuel: 2 % capped at 300 points, available at once; pharmacy: disabled.
    fuel_reply = shop.order("fr", "o-2", 10_000_000, partner=fuel, by_email=True)
    fuel_earn = next(p for p in fuel_reply["rewards"]["postings"] if p["rule_id"] == "earn")
    assert fuel_earn["points"] == 300 and fuel_earn["status"] == "available"
    assert shop.order("fr", "o-3", 100_000, partner=pharmacy, by_email=True)["rewards"]["postings"] == []
    # Custom events are custom.<name> on the wire, custom.<name> in the rules.
    review = shop.send({"type": "custom.review.posted", "occurred_at": "2026-01-15T11:00:00Z",
                        "object": {"type": "review", "id": "rv-1"}, "customer": {"email": "fr@example.com"}}, cafe)
    assert review["rewards"]["postings"][0]["points"] == 20
    fr_id = reply["member"]["member_id"]
    assert shop.balance(fr_id)["available"] == 300 + 20
    for m in (top["member_id"], mid["member_id"], fr_id):
        check_invariants(shop.pid, m)


def test_a_program_without_rules_posts_nothing(api: ApiClient) -> None:
    shop = Shop(api, None)
    shop.member("a")
    reply = shop.order("a", "o-1", 100_000)
    assert reply["rewards"] is None
