"""Member erasure (GDPR Art. 17 / 152-FZ) and export: every personal value gone, every amount unchanged."""

from __future__ import annotations

import json
from typing import Any

import pytest

from chalicelib.domain import clock
from chalicelib.services import erasure
from chalicelib.store.db import Entity
from tests.functional.test_ledger_support import Shop, check_invariants, utc
from tests.support import ApiClient

OLGA = {"id": "crm-olga", "email": "olga.petrova@example.com", "phone": "+79161234567", "name": "Ольга Петрова",
        "birthday": "1990-04-17"}
#: How the values are stored (canonical forms) and how they could appear.
OLGA_TRACES = ["olga.petrova@example.com", "+79161234567", "9161234567", "Ольга", "Петрова", "1990-04-17"]
#: Item kinds whose every attribute must be exactly the same after the erasure.
AMOUNTS = {"balance", "ledger_entry", "member_month", "recurring_counter", "program_counters", "click_counter", "click_total",
           "order_ledger", "redemption"}


@pytest.fixture(autouse=True)
def frozen_clock(api: ApiClient) -> None:
    clock.freeze(utc("2026-01-15T12:00:00Z"))


def scan_test_table() -> list[dict[str, Any]]:
    """Every item of the *test* table as raw DynamoDB JSON (a Scan: allowed in tests only)."""
    client = Entity._get_connection().connection.client
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"TableName": Entity.Meta.table_name}
    while True:
        page = client.scan(**kwargs)
        # Compressed binaries (an event's reply, an order's postings) decoded, so the scan sees their text.
        items += [_readable(i) for i in page["Items"]]
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _readable(value: Any) -> Any:
    from chalicelib.store.db import plain_binary

    if isinstance(value, dict):
        return {k: (plain_binary(bytes(v)) if k == "B" else _readable(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_readable(v) for v in value]
    return value


def amounts_snapshot() -> dict[tuple[str, str], dict[str, Any]]:
    return {(i["PK"]["S"], i["SK"]["S"]): i for i in scan_test_table() if i.get("entity", {}).get("S") in AMOUNTS}


def leaderboard_items(member_id: str) -> list[dict[str, Any]]:
    return [i for i in scan_test_table() if i.get("entity", {}).get("S") == "leaderboard"
            and i["SK"]["S"] == f"MEMBER#{member_id}"]


def analytics_totals(program_id: str) -> dict[tuple[str, str], Any]:
    """Every analytics row of the program but the leaderboard (day, partner, channel, rule, cohort, total)."""
    return {(i["PK"]["S"], i["SK"]["S"]): i for i in scan_test_table()
            if i["PK"]["S"].startswith(f"AGG#{program_id}#") and i.get("entity", {}).get("S") != "leaderboard"}


def profile_counts(api: ApiClient, pid: str, member_id: str) -> dict[str, Any]:
    reply = api.get(f"/v1/programs/{pid}/members/{member_id}")
    assert reply.status == 200, reply.body
    return reply.body["counts"]  # type: ignore[no-any-return]


def olga_with_friends(api: ApiClient) -> tuple[Shop, dict[str, Any], dict[str, Any]]:
    shop = Shop(api, "uds_3_level")
    olga = shop.send({"type": "member.signup", "occurred_at": "2026-01-10T10:00:00Z",
                      "object": {"type": "customer", "id": OLGA["id"]}, "customer": OLGA})["member"]
    vanity = api.put(f"/v1/programs/{shop.pid}/members/{olga['member_id']}/code", {"code": "OLGA-2026"})
    assert vanity.status == 200, vanity.body
    friend = shop.member("friend-1", olga["code"])  # referred through the old code
    shop.member("friend-2", "OLGA-2026")
    shop.order("friend-1", "o-1", 200_000)
    shop.order(OLGA["id"], "o-2", 100_000)
    assert api.get(f"/r/{olga['code']}").status == 302
    return shop, olga, friend


def test_after_erasure_no_item_holds_the_members_personal_data_and_every_amount_is_unchanged(api: ApiClient) -> None:
    from tests.notify_support import stream_poller

    shop, olga, friend = olga_with_friends(api)
    pid, mid = shop.pid, olga["member_id"]
    stream_poller().drain()  # the analytics consumer: Olga is on the leaderboards (her friend's first order)
    assert {i["PK"]["S"].rsplit("#", 2)[1] for i in leaderboard_items(mid)} == {"converted", "revenue"}
    totals_before = analytics_totals(pid)
    assert totals_before
    raw_before = json.dumps(scan_test_table(), ensure_ascii=False)
    assert all(trace in raw_before for trace in ["olga.petrova@example.com", "+79161234567", "Ольга", "1990-04-17"])
    assert any(i.get("entity", {}).get("S") == "birthday_pointer" for i in scan_test_table())
    amounts_before = amounts_snapshot()
    counts_before = profile_counts(api, pid, mid)
    friend_counts_before = profile_counts(api, pid, friend["member_id"])
    invariants_before = check_invariants(pid, mid)

    reply = api.post(f"/v1/programs/{pid}/members/{mid}/erase")
    assert reply.status == 200, reply.body
    assert reply.body["status"] == "erased" and reply.body["confirmed_by"] == "operator"
    assert reply.body["completed_at"].startswith("2026-01-15T12:00:00")

    raw_after = json.dumps(scan_test_table(), ensure_ascii=False)
    for trace in OLGA_TRACES:
        assert trace not in raw_after, trace
    assert amounts_snapshot() == amounts_before
    # Her leaderboard entries (code, masked name) and her birthday's index entry are gone; the totals stay.
    assert leaderboard_items(mid) == []
    assert not any(i.get("entity", {}).get("S") == "birthday_pointer" for i in scan_test_table())
    assert analytics_totals(pid) == totals_before
    assert reply.body["counts"]["leaderboard"] == 4  # converted + revenue, this month and all time
    assert check_invariants(pid, mid) == invariants_before
    assert profile_counts(api, pid, mid) == counts_before
    assert profile_counts(api, pid, friend["member_id"]) == friend_counts_before
    # The codes stop resolving, old and vanity alike.
    for code in (olga["code"], "OLGA-2026"):
        assert api.get(f"/v1/programs/{pid}/members/lookup?code={code}").status == 404
        landing = api.get(f"/r/{code}")
        assert landing.status == 302 and code.lower() not in landing.headers["location"].lower()
    assert api.get(f"/v1/programs/{pid}/members/lookup?email={OLGA['email']}").status == 404
    # The audit record says who and when, and nothing personal (checked by the scan above).
    again = api.post(f"/v1/programs/{pid}/members/{mid}/erase")
    assert again.status == 200 and again.body == reply.body


def test_events_about_an_erased_member_enrol_nobody_until_a_new_signup(api: ApiClient) -> None:
    shop, olga, _ = olga_with_friends(api)
    pid, mid = shop.pid, olga["member_id"]
    assert api.post(f"/v1/programs/{pid}/members/{mid}/erase").status == 200
    balance_before = shop.balance(mid)
    # A late order by the erased person (auto-enrolment is on): no member, no reward, no personal data stored.
    later = shop.order(OLGA["id"], "o-3", 50_000)
    assert later["member"] is None
    by_email = shop.send(shop.order_event("x", "o-4", 50_000) | {"customer": {"email": OLGA["email"]}})
    assert by_email["member"] is None
    assert OLGA["email"] not in json.dumps(scan_test_table(), ensure_ascii=False)
    assert shop.balance(mid) == balance_before
    # The same signup delivered again is a duplicate of the processed fact: still nobody.
    assert shop.send({"type": "member.signup", "occurred_at": "2026-01-10T10:00:00Z",
                      "object": {"type": "customer", "id": OLGA["id"]}, "customer": OLGA})["status"] == "duplicate"
    # A new signup is a new member.
    fresh = shop.send({"type": "member.signup", "occurred_at": "2026-02-01T10:00:00Z",
                       "object": {"type": "customer", "id": "crm-olga-2"}, "customer": {**OLGA, "id": "crm-olga-2"}})
    assert fresh["member"]["created"] is True and fresh["member"]["member_id"] != mid


def test_an_interrupted_erasure_resumes_where_it_stopped(api: ApiClient, monkeypatch: pytest.MonkeyPatch) -> None:
    shop, olga, _ = olga_with_friends(api)
    pid, mid = shop.pid, olga["member_id"]
    monkeypatch.setattr(erasure, "TX_ITEMS", 4)
    monkeypatch.setattr(erasure, "DEFAULT_BUDGET", 3)
    calls = 0
    status = "in_progress"
    while status != "erased":
        calls += 1
        reply = api.post(f"/v1/programs/{pid}/members/{mid}/erase")
        assert reply.status in (200, 202), reply.body
        status = reply.body["status"]
        assert (reply.status == 202) == (status == "in_progress")
        assert calls < 50
    assert calls > 2
    # A crash mid-step: the transaction that failed wrote nothing, the next call redoes it.
    raw_after = json.dumps(scan_test_table(), ensure_ascii=False)
    for trace in OLGA_TRACES:
        assert trace not in raw_after, trace
    assert reply.body["counts"]["profile"] == 1 and reply.body["counts"]["pointers"] >= 5


def test_a_crash_inside_a_step_leaves_the_erasure_resumable(api: ApiClient, monkeypatch: pytest.MonkeyPatch) -> None:
    shop, olga, _ = olga_with_friends(api)
    pid, mid = shop.pid, olga["member_id"]
    original = erasure._advance_profile
    monkeypatch.setattr(erasure, "_advance_profile", lambda record: (_ for _ in ()).throw(RuntimeError("crash")))
    with api.unchecked():  # the injected crash is the one 500 no document declares
        assert api.post(f"/v1/programs/{pid}/members/{mid}/erase").status == 500
    monkeypatch.setattr(erasure, "_advance_profile", original)
    reply = api.post(f"/v1/programs/{pid}/members/{mid}/erase")
    assert reply.status == 200 and reply.body["status"] == "erased"
    assert OLGA["name"] not in json.dumps(scan_test_table(), ensure_ascii=False)


def test_erasure_and_export_need_the_operator(api: ApiClient) -> None:
    shop, olga, _ = olga_with_friends(api)
    base = f"/v1/programs/{shop.pid}/members/{olga['member_id']}"
    assert api.post(f"{base}/erase", key=shop.partner["api_key"]).status == 403
    assert api.get(f"{base}/export", key=shop.partner["api_key"]).status == 403
    assert api.post(f"/v1/programs/{shop.pid}/members/mbr_nobody/erase").status == 404
    assert api.get(f"/v1/programs/{shop.pid}/members/mbr_nobody/export").status == 404


def export_all(api: ApiClient, pid: str, mid: str, limit: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    first = api.get(f"/v1/programs/{pid}/members/{mid}/export?limit={limit}")
    assert first.status == 200, first.body
    items = list(first.body["items"])
    cursor = first.body["next_cursor"]
    pages = 1
    while cursor:
        page = api.get(f"/v1/programs/{pid}/members/{mid}/export?limit={limit}&cursor={cursor}")
        assert page.status == 200, page.body
        assert "summary" not in page.body
        items += page.body["items"]
        cursor = page.body["next_cursor"]
        pages += 1
        assert pages < 100
    return first.body["summary"], items


def test_export_holds_everything_stored_about_the_member(api: ApiClient) -> None:
    shop, olga, _ = olga_with_friends(api)
    pid, mid = shop.pid, olga["member_id"]
    summary, items = export_all(api, pid, mid, limit=2)
    profile = summary["profile"]
    assert (profile["email"], profile["phone"], profile["name"], profile["birthday"]) == (
        OLGA["email"], OLGA["phone"], OLGA["name"], OLGA["birthday"])
    assert profile["customer_ids"] == {shop.partner["partner_id"]: OLGA["id"]}
    assert summary["balance"]["available"] == shop.balance(mid)["available"]
    assert {c["code"] for c in summary["codes"]} == {olga["code"], "OLGA2026"}
    assert sum(code["clicks"]["clicks"] for code in summary["codes"] if code["clicks"]) == 1
    kinds = {i["item_type"] for i in items}
    assert "ledger_entry" in kinds  # (month counters exist only when the rules set a monthly cap)
    ledger = [i for i in items if i["item_type"] == "ledger_entry"]
    assert sorted(e["entry_id"] for e in ledger) == sorted(e["entry_id"] for e in shop.ledger(mid))
    # Same content whatever the page size; a tampered cursor is a 400.
    _, one_page = export_all(api, pid, mid, limit=500)
    assert one_page == items
    first = api.get(f"/v1/programs/{pid}/members/{mid}/export?limit=1").body
    assert api.get(f"/v1/programs/{pid}/members/{mid}/export?cursor={first['next_cursor']}x").status == 400
    other = shop.member("friend-3")["member_id"]
    assert api.get(f"/v1/programs/{pid}/members/{other}/export?cursor={first['next_cursor']}").status == 400
    # After the erasure the export still answers, with nothing personal in it.
    assert api.post(f"/v1/programs/{pid}/members/{mid}/erase").status == 200
    summary, items = export_all(api, pid, mid, limit=50)
    assert summary["erasure"]["status"] == "erased"
    text = json.dumps([summary, items], ensure_ascii=False)
    for trace in OLGA_TRACES:
        assert trace not in text
