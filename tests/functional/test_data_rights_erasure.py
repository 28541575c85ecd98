"""Member erasure (GDPR Art. 17 / 152-FZ) and export: every personal value gone, every amount unchanged."""

from __future__ import annotations

import json
from typing import Any

import pytest

from chalicelib.services import erasure
from chalicelib.store.db import Entity
from tests.functional.test_ledger_support import Shop, check_invariants, utc
from tests.support import CLOCK, ApiClient

OLGA = {"id": "crm-olga", "email": "olga.petrova@example.com", "phone": "+79161234567", "name": "Ольга Петрова",
        "birthday": "1990-04-17"}
#: How the values are stored (canonical forms) and how they could appear; the partner's customer id too.
OLGA_TRACES = ["olga.petrova@example.com", "+79161234567", "9161234567", "Ольга", "Петрова", "1990-04-17",
               "crm-olga"]
PHONE_TOKEN = "fcm-token-olga-phone"
#: Item kinds whose every attribute must be exactly the same after the erasure.
AMOUNTS = {"balance", "ledger_entry", "member_month", "recurring_counter", "program_counters", "click_counter", "click_total",
           "order_ledger", "redemption", "settlement_row", "settled_marker"}


@pytest.fixture(autouse=True)
def frozen_clock(api: ApiClient) -> None:
    CLOCK.set(utc("2026-01-15T12:00:00Z"))


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


def without_customer_business_keys(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The scan minus the one known place a partner's customer id stays (docs/data-rights.md#what-stays): the
    business key of a fact whose object is the customer (``…|customer|<id>|member.signup``), on its event
    record (the dedupe key's source, and its fingerprint) and on the ledger entries it posted (kept
    byte-for-byte: accounting). Every other item is checked for it."""
    out = []
    for item in items:
        kind = item.get("entity", {}).get("S")
        if kind == "event":
            item = {k: v for k, v in item.items() if k not in ("business_key", "fingerprint")}
        if kind == "ledger_entry" and "|customer|" in item.get("business_key", {}).get("S", ""):
            item = {k: v for k, v in item.items() if k != "business_key"}
        out.append(item)
    return out


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


@pytest.fixture
def fcm(api: ApiClient, monkeypatch: pytest.MonkeyPatch) -> str:
    """The real AWS notifier on moto's SES/SNS, with an FCM platform application (push devices)."""
    from chalicelib import aws
    from chalicelib.notify import sources
    from chalicelib.notify.delivery import Delivery
    from chalicelib.notify.port import AwsNotifier
    from chalicelib.services import partner_webhooks
    from tests.notify_support import instant_delivery

    instant_delivery(monkeypatch)
    monkeypatch.setattr(partner_webhooks, "resolve", lambda host: ["93.184.216.34"])
    arn = aws.client("sns").create_platform_application(
        Name="sarafan-test-fcm", Platform="GCM", Attributes={"PlatformCredential": "key"})["PlatformApplicationArn"]
    sources.use_delivery(Delivery(AwsNotifier({"fcm": arn})))
    return str(arn)


def sns_endpoints() -> dict[str, Any]:
    from moto.sns.models import sns_backends

    from tests.notify_support import ACCOUNT, REGION

    return sns_backends[ACCOUNT][REGION].platform_endpoints  # type: ignore[no-any-return]


def items_of(entity: str, member_id: str) -> list[dict[str, Any]]:
    """Items of one kind (scanning the test table) that name the member anywhere."""
    return [i for i in scan_test_table() if i.get("entity", {}).get("S") == entity
            and member_id in json.dumps(i, ensure_ascii=False)]


def olga_everywhere(api: ApiClient) -> tuple[Shop, dict[str, Any], dict[str, Any], str]:
    """Olga with friends, plus a push device, a bounced address, a partner webhook endpoint receiving deliveries
    about her, sent notifications and pending ones. Returns the device's SNS endpoint ARN too."""
    from chalicelib.notify import feedback, sources
    from tests.notify_support import stream_poller

    shop, olga, friend = olga_with_friends(api)
    pid, mid = shop.pid, olga["member_id"]
    device = api.post(f"/v1/programs/{pid}/members/{mid}/devices",
                      {"platform": "fcm", "token": PHONE_TOKEN, "device_id": "olga-phone"})
    assert device.status == 200, device.body
    endpoint = api.post(f"/v1/programs/{pid}/partners/{shop.partner['partner_id']}/webhook-endpoints",
                        {"url": "https://hooks.shop.example/sarafan", "event_types": ["reward.posted"]})
    assert endpoint.status == 201, endpoint.body
    stream_poller().drain()  # analytics (leaderboards), deliveries (sent messages), partner webhook deliveries
    assert feedback.handle(json.dumps({
        "notificationType": "Complaint", "complaint": {"complainedRecipients": [{"emailAddress": OLGA["email"]}]},
        "mail": {"tags": {"program_id": [pid], "member_id": [mid]}}})) == {"suppressed": 1}
    # Pending messages (the stream is not drained again): one from a reward, one with her name in it.
    shop.order(OLGA["id"], "o-5", 50_000)
    assert sources.new_outbox(pid, mid, "points_available", {"points": 7, "name": OLGA["name"]}, None, "x", "m_olga")
    from chalicelib.store import keys
    from chalicelib.store.notify import NotifyStateItem

    [arn] = [d["endpoint_arn"] for d in NotifyStateItem.get(*keys.notify_state(pid, mid)).devices]
    assert sns_endpoints()[arn].token == PHONE_TOKEN
    return shop, olga, friend, arn


def test_after_erasure_no_item_holds_the_members_personal_data_and_every_amount_is_unchanged(
        api: ApiClient, fcm: str) -> None:
    from chalicelib.domain.identity import email_match_key, identity_hash
    from chalicelib.store import keys
    from chalicelib.store.notify import NotifyStateItem

    shop, olga, friend, endpoint_arn = olga_everywhere(api)
    pid, mid = shop.pid, olga["member_id"]
    # Her device, network, card and address (fraud signals), one IP shared with a friend.
    shop.send(shop.order_event(OLGA["id"], "o-ctx", 30_000) | {"context": OLGA_CONTEXT})
    shop.send(shop.order_event("friend-2", "o-f2", 10_000) | {"context": {"ip": OLGA_CONTEXT["ip"]}})
    signals_before = signal_pointers_listing(mid)
    assert {p.split("#")[2] for p in signals_before} == {"device", "ip", "ip_ua", "payment", "shipping"}
    outbox = items_of("outbox", mid)
    assert {i["status"]["S"] for i in outbox} >= {"sent", "pending"}, [i["status"] for i in outbox]
    assert items_of("webhook_delivery", mid)  # reward.posted about her, waiting for the sender
    # (the analytics consumer ran in olga_everywhere: Olga is on the leaderboards, her friend's first order)
    assert {i["PK"]["S"].rsplit("#", 2)[1] for i in leaderboard_items(mid)} == {"converted", "revenue"}
    totals_before = analytics_totals(pid)
    assert totals_before
    raw_before = json.dumps(scan_test_table(), ensure_ascii=False)
    assert all(trace in raw_before for trace in ["olga.petrova@example.com", "+79161234567", "Ольга", "1990-04-17"])
    assert any(i.get("entity", {}).get("S") == "birthday_pointer" for i in scan_test_table())
    amounts_before = amounts_snapshot()
    # The partners' settlement rows (SETTLE#) and their counted-entry markers (SETTLED#) are among the amounts.
    assert {k[0].split("#")[0] for k in amounts_before} >= {"SETTLE", "SETTLED"}
    counts_before = profile_counts(api, pid, mid)
    friend_counts_before = profile_counts(api, pid, friend["member_id"])
    invariants_before = check_invariants(pid, mid)

    reply = api.post(f"/v1/programs/{pid}/members/{mid}/erase")
    assert reply.status == 200, reply.body
    assert reply.body["status"] == "erased" and reply.body["confirmed_by"] == "operator"
    assert reply.body["completed_at"].startswith("2026-01-15T12:00:00")

    raw_after = json.dumps(scan_test_table(), ensure_ascii=False)
    for trace in OLGA_TRACES[:-1]:
        assert trace not in raw_after, trace
    assert OLGA["id"] not in json.dumps(without_customer_business_keys(scan_test_table()), ensure_ascii=False)
    assert_nothing_links_her_signals(mid, signals_before)
    # The IP pointer she shared keeps the friend; the pointers that listed only her are gone.
    assert [k.split("#")[2] for k in signal_pointers_listing(friend_2_id(api, pid))] == ["ip"]
    assert set(signal_pointers()) & set(signals_before) == {k for k in signals_before if k.split("#")[2] == "ip"}
    assert_only_ids_name_her_outside_her_partition(pid, mid)
    assert amounts_snapshot() == amounts_before
    # Her leaderboard entries (code, masked name) and her birthday's index entry are gone; the totals stay.
    assert leaderboard_items(mid) == []
    assert not any(i.get("entity", {}).get("S") == "birthday_pointer" for i in scan_test_table())
    assert analytics_totals(pid) == totals_before
    assert reply.body["counts"]["leaderboard"] == 4  # converted + revenue, this month and all time
    # The push endpoint (holding the device token) is gone from SNS; the outbox messages and the partner
    # webhook deliveries about her are gone; her notification state keeps only the suppressed hash.
    assert endpoint_arn not in sns_endpoints()
    assert items_of("outbox", mid) == [] and items_of("webhook_delivery", mid) == []
    assert reply.body["counts"]["outbox"] >= 2 and reply.body["counts"]["partner_webhook_deliveries"] >= 1
    assert reply.body["counts"]["notify_state"] == 1
    state = NotifyStateItem.get(*keys.notify_state(pid, mid))
    assert (state.devices, state.preferences) == ([], {})
    assert state.suppressed == [identity_hash(pid, "email", email_match_key(OLGA["email"]))]
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


OLGA_CONTEXT = {"device_id": "olga-phone-1", "ip": "203.0.113.7", "user_agent": "Olga's browser",
                "payment_fingerprint": "pm_olga", "shipping_address": "Moscow, Tverskaya 1"}
#: Kinds outside her partition that may still name an erased member's id (ids and amounts, no personal data):
#: accounting and dedupe records, other members' profiles and pointers (her id in their ancestry), other members'
#: attribution records (she was their referrer), the fraud review items of her friends' events.
MAY_NAME_HER_ID = {"event", "order_ledger", "redemption", "adjustment", "import_row", "member", "identity", "code",
                   "link", "coupon", "attribution", "review", "pool_slot"}


def signal_pointers() -> dict[str, dict[str, Any]]:
    """PK → fraud-signal pointer (``SIGNAL#<program>#<kind>#<keyed hash>``), scanning the test table."""
    return {i["PK"]["S"]: i for i in scan_test_table() if i.get("entity", {}).get("S") == "signal"}


def signal_pointers_listing(member_id: str) -> set[str]:
    return {pk for pk, i in signal_pointers().items() if member_id in {m for m, _ in json.loads(i["members"]["S"])}}


def friend_2_id(api: ApiClient, pid: str) -> str:
    return str(api.get(f"/v1/programs/{pid}/members/lookup?email=friend-2@example.com").body["member_id"])


def assert_nothing_links_her_signals(member_id: str, pointer_keys: set[str]) -> None:
    """Device ids, IPs, cards and addresses are personal data even as keyed hashes when linked to the member: no
    item names her together with one of her signals' hashes, no pointer lists her, no velocity counter of hers
    (``VEL#<program>#ref#<member>``) is left."""
    hashes = {pk.rsplit("#", 1)[1] for pk in pointer_keys}
    assert hashes
    for item in scan_test_table():
        text = json.dumps(item, ensure_ascii=False)
        if member_id in text:
            assert not [h for h in hashes if h in text], (item.get("entity"), item["PK"]["S"])
        assert f"#ref#{member_id}" not in item["PK"]["S"], item["PK"]["S"]
    assert signal_pointers_listing(member_id) == set()


def assert_only_ids_name_her_outside_her_partition(pid: str, member_id: str) -> None:
    own = f"MEMBER#{pid}#{member_id}"
    naming = {i.get("entity", {}).get("S") for i in scan_test_table()
              if i["PK"]["S"] != own and member_id in json.dumps(i, ensure_ascii=False)}
    assert naming <= MAY_NAME_HER_ID, naming - MAY_NAME_HER_ID


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
    raw_after = json.dumps(without_customer_business_keys(scan_test_table()), ensure_ascii=False)
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
    # Outside her partition too: her pointers, codes and links, her birthday's index entry, her events' records.
    assert kinds >= {"identity", "code", "link", "birthday_pointer", "event"}, sorted(kinds)
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
    for trace in OLGA_TRACES[:-1]:
        assert trace not in text
    # The customer id stays only in the business keys of the ledger entries its signup posted (accounting) and on
    # her events' records (business key and conflict fingerprint: docs/data-rights.md#what-stays), which the
    # export lists too.
    assert "event" in {i["item_type"] for i in items}
    assert OLGA["id"] not in json.dumps([summary, [{k: v for k, v in i.items() if k not in ("business_key", "fingerprint")}
                                                   for i in items]], ensure_ascii=False)


def test_an_export_page_makes_a_bounded_number_of_reads_when_her_entries_and_back_references_name_nothing(
        api: ApiClient) -> None:
    """Ledger entries that name no linked record (expiry here; import, birthday, tier entries alike) and
    back-references to invites that expired (kept: they lead to the visitor's ``acquisition.ref``) give the export
    sections nothing to list: a page still stops after ``READS_PER_PAGE`` section reads, with its cursor."""
    from datetime import timedelta

    from chalicelib.services import member_export
    from chalicelib.store import keys
    from chalicelib.store.db import raw_client
    from chalicelib.store.ledger import new_entry
    from chalicelib.store.members import InviteRefItem
    from tests.functional.test_bounded_reads import ItemsRead

    shop = Shop(api, "uds_3_level")
    mid = shop.member("olga")["member_id"]
    base = utc("2026-01-01T00:00:00Z")
    with Entity.batch_write() as batch:
        for n in range(240):
            batch.save(new_entry(shop.pid, mid, f"le_x{n:04d}", base + timedelta(minutes=n), kind="expiry",
                                 status="expired", points=-1, reason="expired", reason_code="expiry",
                                 created_at=base + timedelta(minutes=n)))
        for n in range(60):  # the invites expired (DynamoDB's TTL removed them), the back-references stay
            pk, sk = keys.invite_ref(shop.pid, mid, "email", f"{n:064x}")
            batch.save(InviteRefItem(PK=pk, SK=sk, program_id=shop.pid, member_id=mid, kind="email"))
    counter = ItemsRead()
    raw_client().meta.events.register("after-call.dynamodb", counter)
    per_page: list[tuple[int, int, int]] = []  # (DynamoDB calls, items read, items listed) of each request
    listed: list[dict[str, Any]] = []
    cursor = None
    try:
        while True:
            counter.items, counter.calls = 0, []
            page = api.get(f"/v1/programs/{shop.pid}/members/{mid}/export?limit=2" + (f"&cursor={cursor}" if cursor
                                                                                        else ""))
            assert page.status == 200, page.body
            per_page.append((len(counter.calls), counter.items, len(page.body["items"])))
            listed += page.body["items"]
            cursor = page.body["next_cursor"]
            assert len(per_page) < 400
            if not cursor:
                break
    finally:
        raw_client().meta.events.unregister("after-call.dynamodb", counter)
    # Each request: the summary's reads (first page) and at most three round trips per section read.
    budget = member_export.READS_PER_PAGE
    assert max(calls for calls, _, _ in per_page) <= 3 * budget + 8, per_page
    assert max(read for _, read, _ in per_page) <= 3 * 2 * budget + 20, per_page
    assert [p for p in per_page if p[2] < 2][:-1], per_page  # pages ended early by the budget, cursor given
    # and still everything, once.
    entries = [i["entry_id"] for i in listed if i["item_type"] == "ledger_entry" and i["entry_id"].startswith("le_x")]
    assert sorted(entries) == [f"le_x{n:04d}" for n in range(240)]
    assert len([i for i in listed if i["item_type"] == "invite_ref"]) == 60


def test_a_complainer_who_signs_up_again_after_the_erasure_gets_no_mail(api: ApiClient, fcm: str) -> None:
    from chalicelib.store import keys
    from chalicelib.store.notify import NotifyStateItem
    from tests.notify_support import ses_sent, stream_poller

    shop, olga, _, _ = olga_everywhere(api)
    pid, mid = shop.pid, olga["member_id"]
    assert OLGA["email"] in [m.to[0] for m in ses_sent()]  # she got mail before she complained
    assert api.post(f"/v1/programs/{pid}/members/{mid}/erase").status == 200
    stream_poller().drain()
    sent_before = len(ses_sent())
    fresh = shop.send({"type": "member.signup", "occurred_at": "2026-02-01T10:00:00Z",
                       "object": {"type": "customer", "id": "crm-olga-new"}, "customer": {**OLGA, "id": "crm-olga-new"}})
    new_id = fresh["member"]["member_id"]
    assert fresh["member"]["created"] is True and new_id != mid
    # Someone else signing up at the same time does get the welcome: mail is being sent.
    other = shop.send({"type": "member.signup", "occurred_at": "2026-02-01T10:00:00Z",
                       "object": {"type": "customer", "id": "crm-ivan"},
                       "customer": {"id": "crm-ivan", "email": "ivan@example.com"}})
    stream_poller().drain()
    sent = [m.to[0] for m in ses_sent()[sent_before:]]
    assert "ivan@example.com" in sent and OLGA["email"] not in sent, sent
    state = NotifyStateItem.get(*keys.notify_state(pid, new_id))
    assert len(state.suppressed) == 1 and not state.devices
    log = api.get(f"/v1/programs/{pid}/members/{new_id}/notifications").body["items"]
    emails = [c for e in log for c in e["channels"] if c["channel"] == "email"]
    assert emails and all(c["error"] == "suppressed" for c in emails), log
    assert other["member"]["created"] is True


def test_export_lists_the_members_outbox_messages_and_partner_webhook_deliveries(api: ApiClient, fcm: str) -> None:
    shop, olga, _, _ = olga_everywhere(api)
    pid, mid = shop.pid, olga["member_id"]
    _, items = export_all(api, pid, mid, limit=3)
    kinds = [i["item_type"] for i in items]
    assert kinds.count("outbox") >= 2 and kinds.count("webhook_delivery") >= 1
    assert "notify_state" in kinds and "notification_log" in kinds
    assert all(i["member_id"] == mid for i in items if i["item_type"] in ("outbox", "webhook_delivery"))
    _, one_page = export_all(api, pid, mid, limit=500)
    assert one_page == items


def test_an_erased_members_personal_coupon_attributes_nobody_and_is_free_again(api: ApiClient) -> None:
    shop, olga, _ = olga_with_friends(api)
    pid, mid = shop.pid, olga["member_id"]
    coupon = f"/v1/programs/{pid}/members/{mid}/coupons/OLGA-500"
    assert api.put(coupon).status == 200
    before = shop.send(shop.order_event("vera", "o-v1", 50_000) | {"referral": {"coupon_codes": ["OLGA-500"]}})
    assert before["attribution"]["referrer_id"] == mid  # the coupon worked before the erasure
    pointer = f"COUPON#{pid}#OLGA-500"
    assert any(i["PK"]["S"] == pointer for i in scan_test_table())

    assert api.post(f"/v1/programs/{pid}/members/{mid}/erase").status == 200
    balance_before = shop.balance(mid)
    later = shop.send(shop.order_event("nina", "o-n1", 50_000) | {"referral": {"coupon_codes": ["OLGA-500"]}})
    assert later["attribution"]["referrer_id"] is None, later["attribution"]
    assert shop.balance(mid) == balance_before
    assert not any(i["PK"]["S"] == pointer for i in scan_test_table())
    # The code is free again: another member may register it.
    boris = shop.send(shop.order_event("boris", "o-b1", 10_000))["member"]
    assert api.put(f"/v1/programs/{pid}/members/{boris['member_id']}/coupons/OLGA-500").status == 200
