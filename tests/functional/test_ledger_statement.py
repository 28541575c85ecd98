"""Member statement (balance + paged ledger) and the holding job."""

from __future__ import annotations

import base64
import json

import pytest

from chalicelib.store import keys
from chalicelib.store.ledger import LedgerEntryItem, ReleaseStateItem
from tests.functional.test_ledger_support import Shop, check_invariants, utc
from tests.support import CLOCK, ApiClient


@pytest.fixture(autouse=True)
def frozen_clock(api: ApiClient) -> None:
    CLOCK.set(utc("2026-01-15T12:00:00Z"))


def test_ledger_pages_newest_first_with_a_cursor_bound_to_the_member(api: ApiClient) -> None:
    shop = Shop(api, "uds_3_level")
    member = shop.member("a")["member_id"]
    for i in range(4):
        shop.order("a", f"o-{i}", 100_000, at=f"2026-01-1{i + 1}T10:00:00Z")
    base = f"/v1/programs/{shop.pid}/members/{member}/ledger"
    page1 = api.get(f"{base}?limit=3", key=shop.partner["api_key"]).body
    assert len(page1["items"]) == 3 and page1["next_cursor"]
    page2 = api.get(f"{base}?limit=3&cursor={page1['next_cursor']}", key=shop.partner["api_key"]).body
    assert len(page2["items"]) == 2 and page2["next_cursor"] is None
    times = [e["effective_at"] for e in page1["items"] + page2["items"]]
    assert times == sorted(times, reverse=True)
    assert page2["items"][-1]["reason_code"] == "self_reward"  # the signup bonus came first
    # A cursor from another member's partition is refused.
    other = shop.member("b")["member_id"]
    raw = json.dumps({"PK": keys.member_partition(shop.pid, other), "SK": "LEDGER#"}).encode()
    forged = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    assert api.get(f"{base}?cursor={forged}").status == 400
    assert api.get(f"/v1/programs/{shop.pid}/members/mbr_nobody/ledger").status == 404
    assert api.get(f"/v1/programs/{shop.pid}/members/mbr_nobody/balance").status == 404


def test_balance_view(api: ApiClient) -> None:
    shop = Shop(api, "uds_3_level")
    member = shop.member("a")["member_id"]
    shop.order("a", "o-1", 100_000)
    bal = shop.balance(member, key=shop.partner["api_key"])
    assert bal == {"member_id": member, "available": 100, "pending": 50, "owed": 0, "held": 0, "lifetime_earned": 150,
                   "lifetime_spent": 0, "points_unit": "points", "point_value_minor": 100, "currency": "RUB",
                   "available_value_minor": 10_000}
    other = Shop(api, None)
    assert api.get(f"/v1/programs/{shop.pid}/members/{member}/balance", key=other.partner["api_key"]).status == 404


def test_the_holding_job_releases_due_entries_once_and_keeps_a_watermark(api: ApiClient) -> None:
    shop = Shop(api, "uds_3_level")
    member = shop.member("a")["member_id"]
    shop.order("a", "o-1", 100_000, at="2026-01-14T10:00:00Z")  # available 2026-01-21 10:00
    shop.order("a", "o-2", 200_000, at="2026-01-15T10:00:00Z")  # available 2026-01-22 10:00
    assert shop.release(utc("2026-01-21T09:59:00Z"))["released"] == 0
    assert shop.release(utc("2026-01-21T10:00:00Z"))["released"] == 1
    assert shop.balance(member)["available"] == 150 and shop.balance(member)["pending"] == 100
    again = shop.release(utc("2026-01-21T11:00:00Z"))
    assert again["released"] == 0
    done = shop.release(utc("2026-01-23T00:00:00Z"))
    assert done["released"] == 1 and done["watermark"] == "2026-01-23"
    assert ReleaseStateItem.get(*keys.release_job_state()).done_through == "2026-01-23"
    bal = check_invariants(shop.pid, member)
    assert (bal["available"], bal["pending"]) == (250, 0)
    # Released entries leave the sparse index.
    assert list(LedgerEntryItem.gsi1.query("PENDING#2026-01-21")) == []


def test_a_reward_delivered_after_its_holding_period_is_still_released(api: ApiClient) -> None:
    """The job never looks back before its watermark; a late webhook must not hide behind it."""
    shop = Shop(api, "uds_3_level")  # held 7 days
    member = shop.member("a")["member_id"]
    CLOCK.set(utc("2026-01-30T12:00:00Z"))
    shop.release(utc("2026-01-30T12:00:00Z"))  # watermark moves to 2026-01-30
    # The order happened on the 10th (due on the 17th) but its webhook arrives only now: its
    # holding period is over, so the reward is available at once instead of pending in a day
    # bucket the job has already passed.
    reply = shop.order("a", "o-late", 100_000, at="2026-01-10T10:00:00Z")
    assert [p["status"] for p in reply["rewards"]["postings"]] == ["available"]
    assert (shop.balance(member)["available"], shop.balance(member)["pending"]) == (150, 0)


def test_the_release_job_is_a_scheduled_chalice_function(api: ApiClient) -> None:
    from app import app

    names = [source.name for source in app.event_sources]
    assert "release_pending_points" in names
    from chalicelib.api.jobs import release_pending_points

    result = release_pending_points.func({})  # the undecorated function EventBridge ends up calling
    assert result["released"] == 0
