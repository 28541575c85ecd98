"""Parallel invite creation for one person: one member, one code (conditional writes, no check-then-insert)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from chalicelib.store.dynamo_ports import DynamoMemberStore
from tests.support import ApiClient, Reply

PARALLEL = 12




def entity_count(kind: str) -> int:
    from chalicelib.store.db import raw_client

    return sum(1 for i in raw_client().scan(TableName="sarafan-test")["Items"] if i["entity"]["S"] == kind)


def test_parallel_invites_for_one_email_make_one_member_and_one_code(
        api: ApiClient, concurrent_requests: None, monkeypatch: pytest.MonkeyPatch) -> None:
    program = api.create_program(settings={"landing_rate_limits": {"invites_per_minute": 1000}})
    referrer = api.post("/v1/landing/invites", {"email": "olga@example.com"}, key=program["publishable_key"]).body
    attempts: list[str] = []
    original = DynamoMemberStore.create_member

    def slow_create_member(self: DynamoMemberStore, plan: Any, refs: Any) -> Any:
        # At the member store's port: widen the read → write gap so the other requests read "nobody" too.
        attempts.append(plan.member_id)
        time.sleep(0.3)
        return original(self, plan, refs)

    monkeypatch.setattr(DynamoMemberStore, "create_member", slow_create_member)
    barrier = threading.Barrier(PARALLEL)
    # Identical requests: chalice's app.current_request is shared between threads in-process.
    body = {"email": "friend@example.com", "phone": "+79123456789", "ref": referrer["code"]}

    def create(_: int) -> Reply:
        barrier.wait()
        return api.post("/v1/landing/invites", body, key=program["publishable_key"])

    with ThreadPoolExecutor(PARALLEL) as pool:
        replies = list(pool.map(create, range(PARALLEL)))
    assert [r.status for r in replies] == [200] * PARALLEL, [r.body for r in replies]
    assert len({r.body["code"] for r in replies}) == 1
    assert len(attempts) >= 2, "the requests did not overlap; the test proves nothing"
    assert entity_count("member") == 2  # the referrer and the friend
    assert entity_count("code") == 2
    assert entity_count("link") == 2
    assert entity_count("identity") == 3  # olga's e-mail, the friend's e-mail and phone
    assert entity_count("pending_invite") == 2  # the friend's e-mail and phone → olga


def test_a_lost_race_returns_the_winners_member(api: ApiClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """Deterministic version: the request reads nothing, another request creates the member, then
    this one's conditional create fails and it returns the winner's code instead of a second member."""
    program = api.create_program()
    winner = api.post("/v1/landing/invites", {"email": "anna@example.com"}, key=program["publishable_key"]).body
    real_owner = DynamoMemberStore.identity_owner
    calls = {"n": 0}

    def stale_first_read(self: DynamoMemberStore, program_id: str, refs: Any) -> str | None:
        # At the member store's port: the first read answers "nobody" as if the winner had not written yet.
        calls["n"] += 1
        return None if calls["n"] == 1 else real_owner(self, program_id, refs)

    monkeypatch.setattr(DynamoMemberStore, "identity_owner", stale_first_read)
    loser = api.post("/v1/landing/invites", {"email": "anna@example.com"}, key=program["publishable_key"])
    assert loser.status == 200, loser.body
    assert loser.body["code"] == winner["code"]
    assert entity_count("member") == 1 and entity_count("code") == 1 and entity_count("link") == 1
