"""store.db.batch_get_raw, the one raw BatchGetItem loop (count_once's markers, analytics' leaderboard scores):
100 keys a request, unprocessed keys asked again after a growing backoff, and a clear error when DynamoDB keeps
throttling."""

from __future__ import annotations

from typing import Any

import pytest

from chalicelib.store import db


class ThrottlingClient:
    """Answers BatchGetItem from a dict; leaves the last key of a request unprocessed ``throttle`` times."""

    def __init__(self, items: dict[tuple[str, str], dict[str, Any]], throttle: int = 0) -> None:
        self.items, self.throttle, self.requests = items, throttle, []  # type: ignore[var-annotated]

    def batch_get_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
        (table, request), = RequestItems.items()
        self.requests.append(request)
        assert len(request["Keys"]) <= 100 and request["ConsistentRead"] is True
        keys = list(request["Keys"])
        unprocessed = []
        if self.throttle:
            self.throttle -= 1
            unprocessed = [keys.pop()]
        found = [self.items[(k["PK"]["S"], k["SK"]["S"])] for k in keys if (k["PK"]["S"], k["SK"]["S"]) in self.items]
        reply: dict[str, Any] = {"Responses": {table: found}}
        if unprocessed:
            reply["UnprocessedKeys"] = {table: {"Keys": unprocessed, "ConsistentRead": True}}
        return reply


def _item(pk: str, sk: str, **more: Any) -> dict[str, Any]:
    return {"PK": {"S": pk}, "SK": {"S": sk}, **more}


def test_every_key_is_read_in_requests_of_100_and_missing_ones_are_absent() -> None:
    wanted = [(f"P{i}", "S") for i in range(250)]
    client = ThrottlingClient({k: _item(*k) for k in wanted[::2]})
    got = db.batch_get_raw(wanted + wanted[:3], client=client, table="t", sleep=lambda _s: pytest.fail("no wait"))
    assert sorted(i["PK"]["S"] for i in got) == sorted(pk for pk, _ in wanted[::2])
    assert [len(r["Keys"]) for r in client.requests] == [100, 100, 50]  # repeated keys asked once


def test_unprocessed_keys_are_asked_again_after_a_growing_backoff() -> None:
    wanted = [("A", "S"), ("B", "S")]
    client = ThrottlingClient({k: _item(*k, score={"N": "3"}) for k in wanted}, throttle=3)
    waits: list[float] = []
    got = db.batch_get_raw(wanted, projection="PK, SK, score", client=client, table="t", sleep=waits.append)
    assert sorted(i["PK"]["S"] for i in got) == ["A", "B"]
    assert len(waits) == 3 and all(0 <= w <= db.BATCH_GET_BACKOFF * 2 ** n for n, w in enumerate(waits))
    assert all(r["ProjectionExpression"] == "PK, SK, score" for r in client.requests)


def test_keys_still_unprocessed_after_every_attempt_fail_the_read() -> None:
    client = ThrottlingClient({("A", "S"): _item("A", "S")}, throttle=10_000)
    waits: list[float] = []
    with pytest.raises(db.UnprocessedKeysError):
        db.batch_get_raw([("A", "S")], client=client, table="t", sleep=waits.append)
    assert len(client.requests) == db.BATCH_GET_ATTEMPTS and len(waits) == db.BATCH_GET_ATTEMPTS - 1
