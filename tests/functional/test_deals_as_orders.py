"""A won CRM deal is not a shop order unless the program says so (``settings.deals_count_as_orders``).

The program from the issue: a lead bonus, a deal commission, a revenue share on the friend's
first 2 orders and a first-order bonus. With the default, the friend's won deal leaves the first
real order "first" and the revenue share's order cap untouched.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.functional.test_ledger_support import Shop
from tests.support import ApiClient

RULES: dict[str, Any] = {
    "max_depth": 1, "hold_days": 0,
    "rules": [
        {"id": "lead-bonus", "trigger": {"event": "lead.created"}, "recipient": {"type": "referrer", "level": 1},
         "amount": {"points": 200}},
        {"id": "deal-commission", "trigger": {"event": "deal.won"}, "recipient": {"type": "referrer", "level": 1},
         "amount": {"rate_bp": 500}},
        {"id": "revenue-share", "trigger": {"event": "order.paid"}, "recipient": {"type": "referrer", "level": 1},
         "amount": {"rate_bp": 1000}, "recurring": {"orders": 2}},
        {"id": "first-order-bonus", "trigger": {"event": "order.paid", "order": "first"},
         "recipient": {"type": "referrer", "level": 1}, "amount": {"points": 300}},
    ],
}


def run(api: ApiClient, **settings: Any) -> tuple[Shop, dict[str, int]]:
    shop = Shop(api, RULES, settings=settings)
    anna = shop.member("anna")
    shop.send({"type": "lead.created", "occurred_at": "2026-01-10T11:00:00Z", "object": {"type": "lead", "id": "l1"},
               "customer": {"id": "boris", "email": "boris@example.com"}, "referral": {"code": anna["code"]}})
    shop.send({"type": "deal.won", "occurred_at": "2026-01-11T10:00:00Z", "object": {"type": "deal", "id": "d1"},
               "customer": {"id": "boris"}, "order": {"total": 1_000_000, "currency": "RUB"}})
    shop.order("boris", "o1", 100_000, at="2026-01-12T10:00:00Z")
    shop.order("boris", "o2", 100_000, at="2026-01-13T10:00:00Z")
    totals: dict[str, int] = {}
    for entry in shop.ledger(anna["member_id"]):
        if entry["kind"] == "reward":
            totals[entry["rule_id"]] = totals.get(entry["rule_id"], 0) + int(entry["points"])
    return shop, totals


def test_by_default_a_won_deal_is_not_an_order(api: ApiClient) -> None:
    _, totals = run(api)
    # deal: 5 % of 10,000 RUB = 500 points; both real orders get the 10 % share (100 each); order o1 is first.
    assert totals == {"lead-bonus": 200, "deal-commission": 500, "revenue-share": 200, "first-order-bonus": 300}


def test_a_program_may_count_won_deals_as_orders(api: ApiClient) -> None:
    _, totals = run(api, deals_count_as_orders=True)
    # The deal is order #1: o1 is the second order (no first-order bonus), o2 the third (past the 2-order cap).
    assert totals == {"lead-bonus": 200, "deal-commission": 500, "revenue-share": 100}


@pytest.mark.parametrize("value", ["yes", 1])
def test_the_setting_is_a_boolean(api: ApiClient, value: Any) -> None:
    reply = api.post("/v1/programs", {"name": "X", "settings": {"deals_count_as_orders": value}})
    assert reply.status == 422
