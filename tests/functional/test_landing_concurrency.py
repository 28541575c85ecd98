"""Parallel invite creation for one person: one member, one code (conditional writes, no check-then-insert)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from chalicelib.services.landing import invites
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
    original = invites.new_member

    def counting_new_member(*args: Any, **kwargs: Any) -> Any:
        attempts.append(args[1])
        time.sleep(0.3)  # widen the read → write gap so the other requests read "nobody" too
        return original(*args, **kwargs)

    monkeypatch.setattr(invites, "new_member", counting_new_member)
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
    real_get = invites._consistent_get
    calls = {"n": 0}

    def stale_first_read(item_keys: list[tuple[str, str]]) -> Any:
        calls["n"] += 1
        return {} if calls["n"] == 1 else real_get(item_keys)

    monkeypatch.setattr(invites, "_consistent_get", stale_first_read)
    loser = api.post("/v1/landing/invites", {"email": "anna@example.com"}, key=program["publishable_key"])
    assert loser.status == 200, loser.body
    assert loser.body["code"] == winner["code"]
    assert entity_count("member") == 1 and entity_count("code") == 1 and entity_count("link") == 1
