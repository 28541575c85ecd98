"""An erasure holds against everything that runs beside it or after it (GDPR Art. 17, issue #14).

From the transaction that starts an erasure (the erasure record and ``erased_at`` on the profile, one
transaction), nothing attaches personal data or a resolvable code to the member again: an event about her
is about nobody, code/coupon/device writes are refused (409 ``member_erased``), and the notification
consumer queues no message for her, however late or however often a stream record arrives.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from chalicelib.services import erasure, membership_stage
from tests.functional.test_data_rights_erasure import (  # noqa: F401  (fcm: a fixture)
    OLGA,
    fcm,
    items_of,
    leaderboard_items,
    olga_with_friends,
    scan_test_table,
    sns_endpoints,
)
from tests.functional.test_ledger_support import utc
from tests.notify_support import stream_poller
from tests.support import CLOCK, ApiClient

NEW_PHONE = "+79990001122"


@pytest.fixture(autouse=True)
def frozen_clock(api: ApiClient) -> None:
    CLOCK.set(utc("2026-01-15T12:00:00Z"))


class _Interrupted(Exception):
    pass


def _start_erasure_only(api: ApiClient, monkeypatch: pytest.MonkeyPatch, pid: str, mid: str) -> None:
    """Run the erase route until its start transaction has committed, then stop it (as a timeout would)."""
    original = erasure._advance_pointers

    def interrupted(step: Any) -> Any:
        raise _Interrupted()

    monkeypatch.setattr(erasure, "_advance_pointers", interrupted)
    try:
        with api.unchecked():  # the injected crash is the one 500 no document declares
            assert api.post(f"/v1/programs/{pid}/members/{mid}/erase").status == 500
    finally:
        monkeypatch.setattr(erasure, "_advance_pointers", original)


def _naming(member_id: str, prefixes: tuple[str, ...]) -> list[str]:
    return [i["PK"]["S"] for i in scan_test_table()
            if i["PK"]["S"].startswith(prefixes) and i.get("member_id", {}).get("S") == member_id]


def _finish_and_check_nothing_names_her(api: ApiClient, shop: Any, mid: str, balance_before: dict[str, Any]) -> None:
    reply = api.post(f"/v1/programs/{shop.pid}/members/{mid}/erase")
    assert reply.status == 200 and reply.body["status"] == "erased", reply.body
    assert _naming(mid, ("IDENT#", "CODE#", "COUPON#", "LINK#")) == []
    raw = json.dumps(scan_test_table(), ensure_ascii=False)
    assert NEW_PHONE[2:] not in raw and "new-olga@example.com" not in raw
    # A later order by the new phone is not hers: no reward, nothing written onto her profile.
    later = shop.send(shop.order_event("someone", "o-late", 10_000)
                      | {"customer": {"phone": NEW_PHONE, "email": "new-olga@example.com", "name": "Olga P"}})
    assert later["member"] is None or later["member"]["member_id"] != mid
    assert shop.balance(mid) == balance_before
    profile = api.get(f"/v1/programs/{shop.pid}/members/{mid}").body
    assert (profile["email"], profile["phone"], profile["first_name"]) == (None, None, None)


def test_an_event_arriving_while_the_erasure_runs_is_about_nobody(api: ApiClient,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    shop, olga, _ = olga_with_friends(api)
    pid, mid = shop.pid, olga["member_id"]
    balance_before = shop.balance(mid)
    _start_erasure_only(api, monkeypatch, pid, mid)
    # Her order with a new phone number, after the erasure started and before its pointers went.
    race = shop.send(shop.order_event(OLGA["id"], "o-race", 10_000) | {"customer": {"id": OLGA["id"],
                                                                                     "phone": NEW_PHONE}})
    assert race["status"] == "processed" and race["member"] is None
    assert _naming(mid, ("IDENT#",)) != []  # her old pointers are still there (the erasure resumes below)
    _finish_and_check_nothing_names_her(api, shop, mid, balance_before)


def test_an_event_read_before_the_erasure_started_and_committed_after_it_writes_nothing_about_her(
        api: ApiClient, monkeypatch: pytest.MonkeyPatch) -> None:
    shop, olga, _ = olga_with_friends(api)
    pid, mid = shop.pid, olga["member_id"]
    balance_before = shop.balance(mid)
    original = membership_stage.add_missing_identifiers
    started: list[int] = []

    def then_erasure_starts(ctx: Any, tx: Any, first: Any, member: Any, changes: Any) -> None:
        original(ctx, tx, first, member, changes)  # the event decided on the profile it read...
        if not started and member.member_id == mid:
            started.append(1)
            _start_erasure_only(api, monkeypatch, pid, mid)  # ...and the erasure starts before it commits

    monkeypatch.setattr(membership_stage, "add_missing_identifiers", then_erasure_starts)
    race = shop.send(shop.order_event(OLGA["id"], "o-race", 10_000) | {"customer": {"id": OLGA["id"],
                                                                                     "phone": NEW_PHONE}})
    assert started and race["status"] == "processed" and race["member"] is None
    assert shop.balance(mid) == balance_before
    _finish_and_check_nothing_names_her(api, shop, mid, balance_before)


def test_an_erased_member_can_be_given_no_code_coupon_or_device(api: ApiClient, fcm: str) -> None:  # noqa: F811
    shop, olga, _ = olga_with_friends(api)
    pid, mid = shop.pid, olga["member_id"]
    assert api.post(f"/v1/programs/{pid}/members/{mid}/erase").status == 200
    endpoints_before = set(sns_endpoints())
    base = f"/v1/programs/{pid}/members/{mid}"
    refused = [
        api.put(f"{base}/code", {"code": "OLGA-AGAIN"}),
        api.put(f"{base}/coupons/OLGA-700", key=shop.partner["api_key"]),
        api.post(f"{base}/devices", {"platform": "fcm", "token": "tok-after-erasure", "device_id": "d2"},
                 key=shop.partner["api_key"]),
    ]
    for reply in refused:
        assert reply.status == 409, reply.body
        assert reply.body["error"]["code"] == "member_erased"
    assert set(sns_endpoints()) == endpoints_before  # no SNS endpoint holds the new token
    assert _naming(mid, ("CODE#", "COUPON#", "LINK#")) == []
    assert api.get(f"/v1/programs/{pid}/members/lookup?code=OLGA-AGAIN").status == 404
    landing = api.get("/r/OLGA-AGAIN")
    assert landing.status == 302 and "olgaagain" not in landing.headers["location"].lower()
    friend = shop.send(shop.order_event("zed", "o-z", 50_000) | {"referral": {"code": "OLGA-AGAIN"}})
    assert (friend["attribution"] or {}).get("referrer_id") != mid
    profile = api.get(base).body
    assert profile["code"] == "-" and profile["previous_codes"] == []
    # Reads keep working, and removing what is not there is the usual 404.
    assert api.get(f"{base}/coupons", key=shop.partner["api_key"]).body["coupons"] == []
    assert api.call("DELETE", f"{base}/coupons/OLGA-700", key=shop.partner["api_key"]).status == 404


def test_a_code_or_coupon_write_read_before_the_erasure_started_commits_nothing(
        api: ApiClient, monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib.domain.errors import MemberErased
    from chalicelib.services import ports

    shop, olga, _ = olga_with_friends(api)
    pid, mid = shop.pid, olga["member_id"]
    deps = ports.current()
    read_before = deps.members.get(pid, mid, consistent=True)
    assert read_before is not None
    _start_erasure_only(api, monkeypatch, pid, mid)
    # Read before the start: the profile's condition (revision and erased_at) fails: StaleMember, the caller reads
    # again, and then the write is refused as member_erased before anything is sent.
    with pytest.raises(ports.StaleMember) as stale:
        deps.members.add_coupon(read_before, "OLGA-700")
    assert type(stale.value) is ports.StaleMember
    with pytest.raises(ports.StaleMember) as stale:
        deps.members.change_code(read_before, "OLGA-AGAIN")
    assert type(stale.value) is ports.StaleMember
    read_after = deps.members.get(pid, mid, consistent=True)
    assert read_after is not None and read_after.erased_at is not None
    for write in (lambda: deps.members.add_coupon(read_after, "OLGA-700"),
                  lambda: deps.members.change_code(read_after, "OLGA-AGAIN")):
        with pytest.raises(MemberErased) as erased:
            write()
        assert (erased.value.code, erased.value.details) == ("member_erased", {"member_id": mid})
    assert api.post(f"/v1/programs/{pid}/members/{mid}/erase").body["status"] == "erased"
    assert _naming(mid, ("CODE#", "COUPON#", "LINK#")) == []


def test_stream_records_in_flight_or_redelivered_after_the_erasure_queue_no_message_about_her(
        api: ApiClient, fcm: str) -> None:  # noqa: F811
    shop, olga, _ = olga_with_friends(api)
    pid, mid = shop.pid, olga["member_id"]
    poller = stream_poller()
    poller.drain()
    shop.order(OLGA["id"], "o-late", 50_000)  # processed just before the erasure; its stream records in flight
    assert api.post(f"/v1/programs/{pid}/members/{mid}/erase").status == 200

    def about_her() -> list[str]:
        return [f"{i['PK']['S']} {i['SK']['S']}" for i in scan_test_table()
                if i.get("entity", {}).get("S") in ("outbox", "notification_log", "notify_day", "activity")
                and mid in json.dumps(i)]

    assert about_her() == []
    poller.drain()  # the records not consumed yet
    assert about_her() == []
    stream_poller().drain()  # every record of the stream delivered again (a replayed batch)
    assert about_her() == []
    # Her friend's order still rewards her (the balance stays hers), but no message about her is queued.
    balance_before = shop.balance(mid)
    shop.order("friend-1", "o-9", 100_000)
    stream_poller().drain()
    assert about_her() == []
    assert shop.balance(mid)["lifetime_earned"] > balance_before["lifetime_earned"]
    assert leaderboard_items(mid) == []  # nor is she back on a leaderboard


def test_the_erasure_record_names_the_key_that_requested_and_confirmed_it_never_the_secret(api: ApiClient) -> None:
    import hashlib

    shop, olga, _ = olga_with_friends(api)
    pid, mid = shop.pid, olga["member_id"]
    key_id = "op_" + hashlib.sha256(api.operator_key.encode()).hexdigest()[:12]
    reply = api.post(f"/v1/programs/{pid}/members/{mid}/erase")
    assert reply.status == 200, reply.body
    body = reply.body
    assert (body["requested_by"], body["requested_by_key"]) == ("operator", key_id)
    assert (body["confirmed_by"], body["confirmed_by_key"]) == ("operator", key_id)
    [record] = [i for i in scan_test_table() if i.get("entity", {}).get("S") == "erasure" and i["member_id"]["S"] == mid]
    assert record["confirmed_by_key"]["S"] == key_id
    raw = json.dumps(scan_test_table())
    assert api.operator_key not in raw and hashlib.sha256(api.operator_key.encode()).hexdigest() not in raw
    # Asked again (idempotent): the same record, the same names.
    assert api.post(f"/v1/programs/{pid}/members/{mid}/erase").body == body


def test_a_friend_naming_her_code_while_the_erasure_runs_is_not_her_friend(api: ApiClient,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    shop, olga, _ = olga_with_friends(api)
    pid, mid = shop.pid, olga["member_id"]
    signups_before = api.get(f"/v1/programs/{pid}/members/{mid}").body["counts"]
    _start_erasure_only(api, monkeypatch, pid, mid)
    reply = shop.signup("friend-9", "OLGA-2026")  # her code still resolves until the pointers step
    assert reply["member"]["created"] is True
    assert (reply["attribution"] or {}).get("referrer_id") is None
    friend = api.get(f"/v1/programs/{pid}/members/{reply['member']['member_id']}").body
    assert friend["referrer_id"] is None
    assert api.post(f"/v1/programs/{pid}/members/{mid}/erase").body["status"] == "erased"
    assert api.get(f"/v1/programs/{pid}/members/{mid}").body["counts"] == signups_before


def test_a_landing_invite_by_her_while_the_erasure_runs_waits_and_then_makes_a_new_member(
        api: ApiClient, monkeypatch: pytest.MonkeyPatch) -> None:
    shop, olga, _ = olga_with_friends(api)
    pid, mid = shop.pid, olga["member_id"]
    headers = {"X-Publishable-Key": shop.program["publishable_key"]}
    body = {"email": OLGA["email"], "name": "Olga", "context": {"device_id": "dev-olga-2"}}
    _start_erasure_only(api, monkeypatch, pid, mid)
    waiting = api.post("/v1/landing/invites", body, key=None, headers=headers)
    assert waiting.status == 503 and waiting.body["error"]["code"] == "member_being_erased"
    assert api.post(f"/v1/programs/{pid}/members/{mid}/erase").body["status"] == "erased"
    assert [i for i in scan_test_table() if i.get("entity", {}).get("S") in ("signal", "signal_ref")
            and mid in json.dumps(i)] == []
    fresh = api.post("/v1/landing/invites", body, key=None, headers=headers)
    assert fresh.status == 200, fresh.body
    assert fresh.body["code"] not in (olga["code"], "OLGA2026", "-")
    found = api.get(f"/v1/programs/{pid}/members/lookup?email={OLGA['email']}")
    assert found.status == 200 and found.body["member_id"] != mid
