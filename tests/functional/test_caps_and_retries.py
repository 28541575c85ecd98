"""Caps under concurrency (the counters' ``max_before`` conditions) and the pipeline's retry path (503).

Parallel deliveries through chalice.test.Client; moto serialises each request like DynamoDB
(``concurrent_requests``), so the only races are in our read → decide → conditional write.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from chalicelib.services import stages
from chalicelib.services.outcomes import RetryEvent
from chalicelib.services.stages import StageOutcome
from tests.functional.test_ledger_support import Shop, check_invariants, parallel, utc
from tests.support import CLOCK, ApiClient

ORDER_1000 = {"id": "per-order", "trigger": {"event": "order.paid", "order": "every"}, "recipient": {"type": "self"},
              "amount": {"points": 1000}}


@pytest.fixture(autouse=True)
def frozen_clock(api: ApiClient) -> None:
    CLOCK.set(utc("2026-01-15T12:00:00Z"))


@pytest.mark.usefixtures("concurrent_requests")
def test_parallel_orders_never_spend_more_than_the_program_budget(api: ApiClient) -> None:
    shop = Shop(api, {"hold_days": 0, "budget_points": 2500, "rules": [ORDER_1000]})
    members = [shop.member(f"b{i}")["member_id"] for i in range(5)]
    replies = parallel([lambda i=i: shop.send_raw(shop.order_event(f"b{i}", f"o-{i}", 50_000)) for i in range(5)])
    assert all(r.status == 200 for r in replies), [r.body for r in replies]
    granted = sorted(r.body["rewards"]["points"] for r in replies)
    assert sum(granted) == 2500 and granted == [0, 0, 500, 1000, 1000]
    reasons = Counter(s["reason_code"] for r in replies for s in r.body["rewards"]["skipped"])
    assert reasons["cap_budget"] == 3  # one trimmed to 500, two refused
    assert sum(check_invariants(shop.pid, m)["available"] for m in members) == 2500


@pytest.mark.usefixtures("concurrent_requests")
def test_parallel_orders_of_one_member_respect_the_monthly_cap(api: ApiClient) -> None:
    shop = Shop(api, {"hold_days": 0, "member_monthly_cap_points": 1500, "rules": [ORDER_1000]})
    member = shop.member("m")["member_id"]
    replies = parallel([lambda i=i: shop.send_raw(shop.order_event("m", f"o-{i}", 50_000)) for i in range(4)])
    assert all(r.status == 200 for r in replies), [r.body for r in replies]
    assert sorted(r.body["rewards"]["points"] for r in replies) == [0, 0, 500, 1000]
    assert check_invariants(shop.pid, member)["available"] == 1500
    # The counter holds exactly what was granted: a later order this month gets nothing.
    assert shop.order("m", "o-late", 50_000)["rewards"]["points"] == 0


class _Contended:
    """A stage that plugs in through the registry and loses ``fails`` races before it succeeds."""

    name = "contended"

    def __init__(self, fails: int) -> None:
        self.fails = fails
        self.attempts = 0

    def first_read_keys(self, ctx: Any) -> list[tuple[str, str]]:
        return []

    def second_read_keys(self, ctx: Any, first: dict[Any, Any], chains: list[list[str]]) -> list[tuple[str, str]]:
        return []

    def stage(self, ctx: Any, tx: Any, view: Any) -> StageOutcome:
        self.attempts += 1
        if self.attempts <= self.fails:
            raise RetryEvent()  # as a failed condition on a concurrently changed item would
        return StageOutcome(reply={"contended": {"attempts": self.attempts, "ledger_ran": "ledger" in view.outcomes}})


@pytest.fixture
def contended() -> Any:
    registered: list[str] = []

    def plug(fails: int) -> _Contended:
        stage = _Contended(fails)
        stages.register(stage)
        registered.append(stage.name)
        return stage

    yield plug
    for name in registered:
        stages.unregister(name)


def test_a_lost_race_is_retried_from_a_fresh_read(api: ApiClient, contended: Any) -> None:
    shop = Shop(api, {"hold_days": 0, "rules": [ORDER_1000]})
    member = shop.member("m")["member_id"]
    stage = contended(fails=2)
    with api.unchecked():  # the test's own stage adds a reply key the API does not publish
        reply = shop.order("m", "o-1", 50_000)
    assert reply["status"] == "processed" and reply["contended"] == {"attempts": 3, "ledger_ran": True}
    assert reply["rewards"]["points"] == 1000
    assert check_invariants(shop.pid, member)["available"] == 1000  # the lost attempts wrote nothing
    assert stage.attempts == 3


def test_endless_contention_is_a_503_and_writes_nothing(api: ApiClient, contended: Any) -> None:
    shop = Shop(api, {"hold_days": 0, "rules": [ORDER_1000]})
    member = shop.member("m")["member_id"]
    contended(fails=10**6)
    event = shop.order_event("m", "o-1", 50_000)
    busy = shop.send_raw(event)
    assert busy.status == 503 and busy.error_code == "service_unavailable", busy.body
    assert "retry" in busy.body["error"]["message"]
    assert check_invariants(shop.pid, member)["available"] == 0
    stages.unregister("contended")
    # The partner's retry of the same delivery is processed normally: nothing of it was recorded.
    again = shop.send_raw(event)
    assert again.status == 200 and again.body["status"] == "processed" and again.body["rewards"]["points"] == 1000


class _Interleaved:
    """A stage that, on the first attempt only, lets a whole competing event go through between this
    event's reads and its commit: the exact interleaving the counters' ``max_before`` conditions exist for,
    made deterministic (the parallel tests above race, but may happen not to overlap)."""

    name = "interleaved"

    def __init__(self, competitor: Any) -> None:
        self.competitor = competitor
        self.attempts = 0  # of the outer event
        self.competitor_reply: Any = None
        self._in_competitor = False

    def first_read_keys(self, ctx: Any) -> list[tuple[str, str]]:
        return []

    def second_read_keys(self, ctx: Any, first: dict[Any, Any], chains: list[list[str]]) -> list[tuple[str, str]]:
        return []

    def stage(self, ctx: Any, tx: Any, view: Any) -> StageOutcome:
        if self._in_competitor:  # the competing event's own pass through this stage
            return StageOutcome()
        self.attempts += 1
        if self.competitor_reply is None:
            self._in_competitor = True
            try:
                self.competitor_reply = self.competitor()
            finally:
                self._in_competitor = False
        return StageOutcome()


REFERRER_RECURRING = {"id": "recurring", "trigger": {"event": "order.paid", "order": "every"},
                      "recipient": {"type": "referrer", "level": 1}, "amount": {"points": 1000},
                      "recurring": {"max_points_per_friend": 1500}}


@pytest.mark.parametrize(("doc", "cap"), [
    ({"budget_points": 1500, "rules": [ORDER_1000]}, "cap_budget"),
    ({"member_monthly_cap_points": 1500, "rules": [ORDER_1000]}, "cap_monthly"),
    ({"rules": [REFERRER_RECURRING]}, "cap_recurring"),
], ids=["budget", "monthly", "recurring per friend"])
def test_a_counter_changed_between_read_and_commit_fails_the_condition_and_is_re_decided(
        api: ApiClient, doc: dict[str, Any], cap: str) -> None:
    shop = Shop(api, {"hold_days": 0, **doc})
    referrer = shop.member("olga")
    shop.member("m", referrer["code"])
    payee = referrer["member_id"] if cap == "cap_recurring" else shop.member("m")["member_id"]
    stage = _Interleaved(lambda: shop.send_raw(shop.order_event("m", "o-competitor", 50_000)))
    stages.register(stage)
    try:
        reply = shop.send_raw(shop.order_event("m", "o-1", 50_000))
    finally:
        stages.unregister(stage.name)
    competitor = stage.competitor_reply
    assert competitor.status == 200 and competitor.body["rewards"]["points"] == 1000, competitor.body
    assert reply.status == 200, reply.body
    # The first decision (1000, read before the competitor wrote) failed its condition; the retry read 1000
    # already granted and trimmed to the 500 left.
    assert stage.attempts == 2
    assert reply.body["rewards"]["points"] == 500, reply.body
    assert [s["reason_code"] for s in reply.body["rewards"]["skipped"]] == [cap]
    assert check_invariants(shop.pid, payee)["available"] == 1500
