"""Scripted farms (docs/fraud.md): the landing invite cap, and scripted signups + first orders through
one referrer's link from 3 IPs.

The default suite sends a farm of 100 friends, over every velocity limit the farm meets (10 signups
an hour, 30 a day, 20 referral rewards a day, 3 friends per IP) several times, so it asserts the same
behaviour as the fraud issue's acceptance size of 1,000, which costs ten times the CPU (27 s measured;
docs/tests.md). ``SARAFAN_FARM_SIZE=1000`` runs that size; ``bench/fraud_farm.py`` sends the 1,000-friend
farm too, against a control program, and prints what it credited."""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

from chalicelib.domain import clock
from tests.functional.test_ledger_support import Shop, check_invariants
from tests.support import CLOCK, ApiClient

FARM_SIZE = int(os.environ.get("SARAFAN_FARM_SIZE", "100"))
IPS = ("203.0.113.1", "203.0.113.2", "203.0.113.3")
SCRIPT_UA = "python-requests/2.31"
#: The usual defence next to the checks: a holding period on rewards (docs/fraud.md).
FARM_RULES: dict[str, Any] = {
    "max_depth": 3, "hold_days": 14,
    "rules": [
        {"id": "friend-bonus", "trigger": {"event": "order.paid", "order": "first"}, "recipient": {"type": "friend"},
         "amount": {"points": 300}},
        {"id": "referrer-bonus", "trigger": {"event": "order.paid", "order": "first"},
         "recipient": {"type": "referrer", "level": 1}, "amount": {"points": 500}},
    ],
}


def invite(api: ApiClient, program: dict[str, Any], email: str, ref: str) -> dict[str, Any]:
    reply = api.post("/v1/landing/invites", {"email": email, "ref": ref}, key=None,
                     headers={"X-Publishable-Key": program["publishable_key"], "Origin": "https://shop.test"})
    assert reply.status == 200, reply.body
    return reply.body  # type: ignore[no-any-return]


def test_invites_per_referrer_per_day_are_capped(api: ApiClient) -> None:
    shop = Shop(api, FARM_RULES, settings={"fraud": {"invites_per_referrer_day": 2},
                                           "landing_rate_limits": {"invites_per_minute": 1000}})
    anna = shop.member("anna")
    recorded = [invite(api, shop.program, f"friend{i}@example.com", anna["code"])["referral_recorded"]
                for i in range(3)]
    assert recorded == [True, True, False]
    # The third visitor still got their own link, but their order credits nobody.
    reply = shop.send(Shop.order_event("friend2", "o-3", 100_000, by_email=True))
    assert reply["attribution"]["reason_code"] == "no_candidate"


def test_a_farm_of_scripted_friends_on_three_ips_credits_nothing_available(api: ApiClient) -> None:
    shop = Shop(api, FARM_RULES)
    CLOCK.set(clock.parse_iso("2026-01-15T09:00:00Z"))
    anna = shop.member("anna", at="2026-01-15T09:00:00Z")
    before = shop.balance(anna["member_id"])
    at = "2026-01-15T09:30:00Z"
    for i in range(FARM_SIZE):
        context = {"ip": IPS[i % 3], "user_agent": SCRIPT_UA}
        shop.send({"type": "member.signup", "occurred_at": at, "object": {"type": "customer", "id": f"bot{i}"},
                   "customer": {"id": f"bot{i}", "email": f"bot{i}@example.com"},
                   "referral": {"code": anna["code"]}, "context": context})
    outcomes: Counter[str] = Counter()
    for i in range(FARM_SIZE):
        context = {"ip": IPS[i % 3], "user_agent": SCRIPT_UA}
        reply = shop.send({**Shop.order_event(f"bot{i}", f"farm-{i}", 100_000, at=at), "context": context})
        statuses = {p["status"] for p in reply["rewards"]["postings"]}
        assert "available" not in statuses
        outcomes["held" if reply.get("risk") else "not held"] += 1
    after = shop.balance(anna["member_id"])
    assert after["available"] == before["available"] == 0 and after["pending"] == 0
    assert after["held"] == 500 * FARM_SIZE  # every referral reward is waiting for a reviewer
    assert outcomes == {"held": FARM_SIZE}
    check_invariants(shop.pid, anna["member_id"])
    assert shop.api.get(f"/v1/programs/{shop.pid}/review?limit=5").body["items"][0]["reasons"]
