"""Request paths read a bounded number of items whatever the data size (items counted, never timed)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from chalicelib.store import counters, keys
from tests.support import ApiClient


class ItemsRead:
    """Items DynamoDB returned to the app (GetItem, BatchGetItem, Query, Scan), via a botocore hook."""

    def __init__(self) -> None:
        self.items = 0
        self.calls: list[str] = []

    def __call__(self, model: Any = None, parsed: Any = None, **_: Any) -> None:
        self.calls.append(model.name)
        parsed = parsed or {}
        if "Item" in parsed:
            self.items += 1
        self.items += len(parsed.get("Items", []))
        self.items += sum(len(v) for v in parsed.get("Responses", {}).values()) if isinstance(
            parsed.get("Responses"), dict) else 0


@pytest.fixture
def reads(api: ApiClient) -> Iterator[ItemsRead]:
    from chalicelib.store.db import raw_client

    counter = ItemsRead()
    raw_client().meta.events.register("after-call.dynamodb", counter)
    yield counter
    raw_client().meta.events.unregister("after-call.dynamodb", counter)


def add_day_counters(program_id: str, code: str, days: int) -> None:
    """Ten years of one source's daily click counters, written directly (setup, not the click path)."""
    from datetime import date, timedelta

    with counters.ClickCounterItem.batch_write() as batch:
        for i in range(days):
            day = (date(2016, 1, 1) + timedelta(days=i)).isoformat()
            pk, sk = keys.click_counter(program_id, code, day, "tg")
            batch.save(counters.ClickCounterItem(PK=pk, SK=sk, program_id=program_id, code=code, day=day,
                                                 utm_source="tg", clicks=3))


def test_member_profile_reads_the_same_items_with_thousands_of_click_counters(api: ApiClient,
                                                                               reads: ItemsRead) -> None:
    program = api.create_program()
    pid = program["program_id"]
    partner = api.create_partner(pid)
    member = api.processed(partner, {"type": "member.signup", "occurred_at": "2026-01-10T10:00:00Z",
                                     "object": {"type": "customer", "id": "c1"}, "customer": {"id": "c1"}})["member"]
    for source in ("tg", "tg", None):
        api.get(f"/r/{member['code']}" + (f"?utm_source={source}" if source else ""), key=None)
    path = f"/v1/programs/{pid}/members/{member['member_id']}"
    api.get(path)  # warm the configuration cache

    reads.items, reads.calls = 0, []
    before = api.get(path)
    assert before.status == 200 and before.body["counts"]["clicks"] == 3
    items_before, calls_before = reads.items, list(reads.calls)
    assert items_before >= 2 and calls_before  # the profile and the click total were read through the hook

    add_day_counters(pid, member["code"], 3650)
    reads.items, reads.calls = 0, []
    after = api.get(path)
    assert after.status == 200
    assert after.body["counts"]["clicks_by_utm_source"] == {"tg": 2, "-": 1}  # totals, not the seeded detail
    assert (reads.items, reads.calls) == (items_before, calls_before)
    assert reads.items <= 3


def test_click_totals_bound_the_number_of_sources(api: ApiClient, monkeypatch: pytest.MonkeyPatch) -> None:
    program = api.create_program()
    pid = program["program_id"]
    partner = api.create_partner(pid)
    member = api.processed(partner, {"type": "member.signup", "occurred_at": "2026-01-10T10:00:00Z",
                                     "object": {"type": "customer", "id": "c1"}, "customer": {"id": "c1"}})["member"]
    monkeypatch.setattr(counters, "MAX_SOURCES", 3)
    for i in range(6):
        api.get(f"/r/{member['code']}?utm_source=s{i}", key=None)
    api.get(f"/r/{member['code']}?utm_source=s0", key=None)
    counts = api.get(f"/v1/programs/{pid}/members/{member['member_id']}").body["counts"]
    assert counts["clicks"] == 7
    assert counts["clicks_by_utm_source"] == {"s0": 2, "s1": 1, "s2": 1, counters.OTHER_SOURCE: 3}


def test_click_detail_expires_and_totals_do_not(api: ApiClient) -> None:
    program = api.create_program()
    pid = program["program_id"]
    partner = api.create_partner(pid)
    member = api.processed(partner, {"type": "member.signup", "occurred_at": "2026-01-10T10:00:00Z",
                                     "object": {"type": "customer", "id": "c1"}, "customer": {"id": "c1"}})["member"]
    api.get(f"/r/{member['code']}", key=None)
    (day,) = counters.click_counters(pid, member["code"])
    assert day.expires_at_epoch is not None
    total = counters.ClickTotalItem.get(*keys.click_total(pid, member["code"]))
    assert int(total.clicks) == 1 and getattr(total, "expires_at_epoch", None) is None
