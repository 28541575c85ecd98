"""Erasure and export of the fraud data linked to a member: signal pointers, review items, velocity counters,
and the export of every kind stored about a member outside her partition (docs/data-rights.md)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.functional.test_data_rights_erasure import export_all, scan_test_table
from tests.functional.test_fraud_review import NET, decide, fraud_shop, held_event, order
from tests.functional.test_ledger_support import Shop, check_invariants, utc
from tests.support import CLOCK, ApiClient


@pytest.fixture(autouse=True)
def frozen_clock(api: ApiClient) -> None:
    CLOCK.set(utc("2026-01-15T12:00:00Z"))


def entity(item: dict[str, Any]) -> str:
    return str(item.get("entity", {}).get("S"))


def signal_pointers() -> dict[str, dict[str, Any]]:
    """``kind#hash`` → the pointer item, from a Scan of the test table."""
    out = {}
    for item in scan_test_table():
        if entity(item) == "signal":
            _, _, kind, value_hash = item["PK"]["S"].split("#")
            out[f"{kind}#{value_hash}"] = item
    return out


def listed(pointer: dict[str, Any]) -> set[str]:
    return {m for m, _ in json.loads(pointer["members"]["S"])}


def signals_of(member_id: str) -> set[str]:
    """The ``kind#hash`` of every signal pointer listing the member."""
    return {k for k, p in signal_pointers().items() if member_id in listed(p)}


def assert_no_item_links(member_id: str, hashes: set[str]) -> None:
    """No item of the table names the member together with one of the signal hashes (kind-prefixed or not),
    no signal pointer lists her and none of her velocity counters is left."""
    assert hashes
    bare = {h.split("#", 1)[1] for h in hashes}
    for item in scan_test_table():
        text = json.dumps(item, ensure_ascii=False)
        if member_id in text:
            assert not [h for h in bare if h in text], (entity(item), item["PK"]["S"])
        assert not item["PK"]["S"].startswith("VEL#") or f"#ref#{member_id}" not in item["PK"]["S"], item["PK"]
    assert not [k for k, p in signal_pointers().items() if member_id in listed(p)]


def review_item(pid: str, item_id: str) -> dict[str, Any]:
    [item] = [i for i in scan_test_table() if i["PK"]["S"] == f"REVIEW#{pid}#{item_id}"]
    return item


def test_erasing_the_friend_of_an_open_review_item_unlinks_his_signals_and_the_review_still_decides(
        api: ApiClient) -> None:
    shop = fraud_shop(api)
    anna, reply = held_event(shop)  # Boris orders from Anna's IP and browser, with his own device
    pid, boris, anna_id = shop.pid, reply["member"]["member_id"], anna["member_id"]
    item_id = reply["rewards"]["review_item_id"]
    mine = signals_of(boris)
    assert {k.split("#")[0] for k in mine} == {"device", "ip", "ip_ua"}
    assert json.loads(review_item(pid, item_id)["signals"]["S"])  # his device, for a void as fraud

    erased = api.post(f"/v1/programs/{pid}/members/{boris}/erase")
    assert erased.status == 200 and erased.body["status"] == "erased", erased.body
    # Counts are items touched: each back-reference and the item it points to.
    assert erased.body["counts"]["fraud_signals"] == 6 and erased.body["counts"]["review_items"] == 2

    assert_no_item_links(boris, mine)
    pointers = signal_pointers()
    # The IP and IP+browser pointers he shared with Anna keep Anna; his device's pointer (his alone) is gone.
    assert {k.split("#")[0] for k in pointers if anna_id in listed(pointers[k])} == {"ip", "ip_ua"}
    assert not [k for k in mine if k.startswith("device#") and k in pointers]
    item = review_item(pid, item_id)
    assert json.loads(item["signals"]["S"]) == [] and json.loads(item["deny"]["S"]) == []
    assert item["business_key"]["S"].startswith("sha256:")
    assert item["status"]["S"] == "open"  # the decision is still the operator's
    # The queue still shows it, and approving pays Anna as before.
    assert [i["item_id"] for i in api.get(f"/v1/programs/{pid}/review").body["items"]] == [item_id]
    assert decide(shop, item_id, "approve", reason="checked").status == 200
    assert shop.balance(anna_id)["available"] == 500
    check_invariants(pid, anna_id)
    # A later event from Anna's network still finds her on it.
    later = shop.send(order("carl", "o-3", code=anna["code"], context=NET))
    assert later["risk"]["reasons"] == ["same_network_as_referrer"]


def test_a_device_voided_as_fraud_stays_marked_anonymously_after_the_erasure(api: ApiClient) -> None:
    shop = fraud_shop(api)
    _, reply = held_event(shop)
    pid, boris = shop.pid, reply["member"]["member_id"]
    item_id = reply["rewards"]["review_item_id"]
    assert decide(shop, item_id, "void", reason="farm", fraud=True).status == 200
    mine = signals_of(boris)
    [device] = [k for k in mine if k.startswith("device#")]

    assert api.post(f"/v1/programs/{pid}/members/{boris}/erase").body["status"] == "erased"

    assert_no_item_links(boris, mine)
    pointer = signal_pointers()[device]  # kept: the fraud mark, with no member and no sighting of his
    assert listed(pointer) == set() and "fraud_at" in pointer
    assert pointer["first_seen_at"] == pointer["last_seen_at"] == pointer["fraud_at"]
    item = review_item(pid, item_id)
    assert item["status"]["S"] == "voided" and json.loads(item["signals"]["S"]) == []
    # Another customer on that device is still held for review.
    other = shop.send(order("carl", "o-9", context={"device_id": "dev-boris"}))
    assert other["risk"]["reasons"] == ["signal_voided_as_fraud"]


def test_erasing_the_referrer_removes_her_velocity_counters_and_keeps_the_friends_review_item(
        api: ApiClient) -> None:
    shop = fraud_shop(api)
    anna, reply = held_event(shop)
    pid, anna_id, boris = shop.pid, anna["member_id"], reply["member"]["member_id"]
    item_id = reply["rewards"]["review_item_id"]
    assert [i for i in scan_test_table() if i["PK"]["S"].startswith(f"VEL#{pid}#ref#{anna_id}")]
    boris_signals = json.loads(review_item(pid, item_id)["signals"]["S"])
    mine = signals_of(anna_id)
    assert {k.split("#")[0] for k in mine} == {"ip", "ip_ua"}

    erased = api.post(f"/v1/programs/{pid}/members/{anna_id}/erase")
    assert erased.status == 200 and erased.body["status"] == "erased"
    assert erased.body["counts"]["referrer_velocity"] >= 1

    assert_no_item_links(anna_id, mine)
    # Boris's own signals stay on his item (his event), so a void as fraud still marks his device.
    assert json.loads(review_item(pid, item_id)["signals"]["S"]) == boris_signals
    assert {k.split("#")[0] for k in signals_of(boris)} == {"device", "ip", "ip_ua"}


def test_a_resumed_erasure_scrubs_signals_in_bounded_steps(api: ApiClient, monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib.services import erasure

    shop = fraud_shop(api)
    olga = shop.member("olga")["member_id"]
    for i in range(30):  # 30 devices, 30 IPs: 60 signal pointers listing her (and 60 back-references)
        shop.send(order("olga", f"o-{i}", context={"device_id": f"dev-{i}", "ip": f"203.0.113.{i + 1}"}))
    mine = signals_of(olga)
    assert len(mine) == 60
    monkeypatch.setattr(erasure, "DEFAULT_BUDGET", 20)
    calls, status = 0, "in_progress"
    while status != "erased":
        calls += 1
        reply = api.post(f"/v1/programs/{shop.pid}/members/{olga}/erase")
        assert reply.status in (200, 202), reply.body
        status = reply.body["status"]
        assert calls < 50
    assert calls >= 3
    assert reply.body["counts"]["fraud_signals"] == 120  # 60 back-references and their 60 pointers
    assert_no_item_links(olga, mine)


def test_erasing_a_referrer_deletes_the_invites_through_her_link(api: ApiClient) -> None:
    shop = Shop(api, "uds_3_level", landing_url="https://shop.test/welcome",
                settings={"landing_rate_limits": {"invites_per_minute": 1000, "offer_per_minute": 1000}})
    pid = shop.pid
    olga = shop.member("olga")
    vanity = api.put(f"/v1/programs/{pid}/members/{olga['member_id']}/code", {"code": "OLGA-PETROVA"})
    assert vanity.status == 200, vanity.body
    landing = api.post("/v1/landing/invites", {"email": "zoe@example.com", "phone": "+79990001122",
                                               "ref": "OLGA-PETROVA"},
                       key=None, headers={"X-Publishable-Key": shop.program["publishable_key"],
                                          "Origin": "https://shop.test"})
    assert landing.status in (200, 201) and landing.body["referral_recorded"], landing.body

    def invites_naming_her() -> list[dict[str, Any]]:
        return [i for i in scan_test_table() if entity(i) == "pending_invite"
                and i["referrer_id"]["S"] == olga["member_id"]]

    assert len(invites_naming_her()) == 2  # one per identifier the friend left (the code holds her name)
    _, items = export_all(api, pid, olga["member_id"], limit=500)
    assert [i["code"] for i in items if i["item_type"] == "invite_by_member"] == ["OLGAPETROVA"] * 2  # canonical

    erased = api.post(f"/v1/programs/{pid}/members/{olga['member_id']}/erase")
    # 2 back-references, 2 invites and the visitor's profile, which named her code (the link she came through)
    assert erased.status == 200 and erased.body["counts"]["referred_invites"] == 5
    assert invites_naming_her() == []
    # Her vanity code (her name) is left only where the docs say: click counters (by code, amounts) and the
    # erasure record (the codes a resumed erasure needs).
    assert not [i for i in scan_test_table() if "OLGAPETROVA" in json.dumps(i)
                and not i["PK"]["S"].startswith(f"CLICKS#{pid}#") and i["SK"]["S"] != "ERASURE"]
    # The friend signs up: referred by nobody (her referrer was erased).
    zoe = shop.send({"type": "member.signup", "occurred_at": "2026-01-12T10:00:00Z",
                     "object": {"type": "customer", "id": "zoe"}, "customer": {"id": "zoe", "email": "zoe@example.com"}})
    profile = api.get(f"/v1/programs/{pid}/members/{zoe['member']['member_id']}").body
    assert profile.get("referrer_id") is None, profile


def _landing(api: ApiClient, shop: Shop, email: str, ref: str) -> Any:
    reply = api.post("/v1/landing/invites", {"email": email, "ref": ref}, key=None,
                     headers={"X-Publishable-Key": shop.program["publishable_key"], "Origin": "https://shop.test"})
    assert reply.status in (200, 201), reply.body
    return reply


def test_erasing_a_referrer_takes_her_code_off_a_visitor_whose_invite_the_daily_cap_refused(api: ApiClient) -> None:
    shop = Shop(api, "uds_3_level", landing_url="https://shop.test/welcome",
                settings={"landing_rate_limits": {"invites_per_minute": 1000, "offer_per_minute": 1000},
                          "fraud": {"invites_per_referrer_day": 1}})
    pid = shop.pid
    olga = shop.member("olga")
    assert api.put(f"/v1/programs/{pid}/members/{olga['member_id']}/code", {"code": "OLGA-PETROVA"}).status == 200
    assert _landing(api, shop, "zoe@example.com", "OLGA-PETROVA").body["referral_recorded"] is True
    # The cap is reached: no invite for Yan, but his new profile names the link he came through.
    assert _landing(api, shop, "yan@example.com", "OLGA-PETROVA").body["referral_recorded"] is False
    visitors = [i for i in scan_test_table() if entity(i) == "member" and i["member_id"]["S"] != olga["member_id"]]
    assert [json.loads(v["acquisition"]["S"]).get("ref") for v in visitors] == ["OLGAPETROVA"] * 2
    erased = api.post(f"/v1/programs/{pid}/members/{olga['member_id']}/erase")
    assert erased.status == 200, erased.body
    assert not [(i["PK"]["S"], i["SK"]["S"]) for i in scan_test_table() if "OLGAPETROVA" in json.dumps(i)
                and not i["PK"]["S"].startswith(f"CLICKS#{pid}#") and i["SK"]["S"] != "ERASURE"]


def test_a_visitor_through_the_link_of_a_referrer_being_erased_joins_without_her_code(
        api: ApiClient, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.functional.test_data_rights_erasure_guards import _start_erasure_only

    shop = Shop(api, "uds_3_level", landing_url="https://shop.test/welcome",
                settings={"landing_rate_limits": {"invites_per_minute": 1000, "offer_per_minute": 1000}})
    olga = shop.member("olga")
    _start_erasure_only(api, monkeypatch, shop.pid, olga["member_id"])  # her code pointer is still there
    assert _landing(api, shop, "zoe@example.com", olga["code"]).body["referral_recorded"] is False
    [zoe] = [i for i in scan_test_table() if entity(i) == "member" and i["member_id"]["S"] != olga["member_id"]]
    assert json.loads(zoe["acquisition"]["S"]) == {"channel": "landing"}
    assert not [i for i in scan_test_table() if entity(i) in ("invite_ref", "pending_invite")]


def test_erasing_an_invitee_deletes_the_referrers_back_references_to_her_identifier(api: ApiClient) -> None:
    shop = Shop(api, "uds_3_level", landing_url="https://shop.test/welcome",
                settings={"landing_rate_limits": {"invites_per_minute": 1000, "offer_per_minute": 1000}})
    pid = shop.pid
    olga = shop.member("olga")
    assert _landing(api, shop, "zoe@example.com", olga["code"]).body["referral_recorded"] is True
    [ref] = [i for i in scan_test_table() if entity(i) == "invite_ref"]
    assert "expires_at_epoch" not in ref  # Zoe's profile names Olga's code: kept after the invite expires
    [zoe] = [i["member_id"]["S"] for i in scan_test_table() if entity(i) == "member"
             and i["member_id"]["S"] != olga["member_id"]]
    assert api.post(f"/v1/programs/{pid}/members/{zoe}/erase").status == 200
    assert [i for i in scan_test_table() if entity(i) in ("invite_ref", "pending_invite")] == []
    [profile] = [i for i in scan_test_table() if entity(i) == "member" and i["member_id"]["S"] == zoe]
    assert json.loads(profile["acquisition"]["S"]) == {"channel": "landing"}  # Olga's code is hers, not Zoe's


def test_a_visitor_back_through_the_referrers_new_code_keeps_her_permanent_back_reference(api: ApiClient) -> None:
    """Zoe joined through Olga's first code; Olga changed her code and Zoe came back through the new one: the
    back-reference stays without a TTL (her profile still names the first code), so Olga's erasure, after the
    invite expired (DynamoDB's TTL), still finds Zoe's profile and takes the code off it."""
    from chalicelib.store.db import Entity

    shop = Shop(api, "uds_3_level", landing_url="https://shop.test/welcome",
                settings={"landing_rate_limits": {"invites_per_minute": 1000, "offer_per_minute": 1000},
                          "attribution_model": "last_touch"})
    pid = shop.pid
    olga = shop.member("olga")
    first = olga["code"]
    assert _landing(api, shop, "zoe@example.com", first).body["referral_recorded"] is True
    assert api.put(f"/v1/programs/{pid}/members/{olga['member_id']}/code", {"code": "OLGA-NEW"}).status == 200
    assert _landing(api, shop, "zoe@example.com", "OLGA-NEW").body["referral_recorded"] is True
    [ref] = [i for i in scan_test_table() if entity(i) == "invite_ref"]
    assert "expires_at_epoch" not in ref, ref
    for invite in [i for i in scan_test_table() if entity(i) == "pending_invite"]:  # the invite expired
        Entity._get_connection().connection.client.delete_item(TableName=Entity.Meta.table_name,
                                                               Key={"PK": invite["PK"], "SK": invite["SK"]})
    assert api.post(f"/v1/programs/{pid}/members/{olga['member_id']}/erase").status == 200
    [zoe] = [i for i in scan_test_table() if entity(i) == "member" and i["member_id"]["S"] != olga["member_id"]]
    assert json.loads(zoe["acquisition"]["S"]) == {"channel": "landing"}, zoe["acquisition"]


def test_an_invite_to_an_existing_member_expires_with_its_back_reference(api: ApiClient) -> None:
    shop = Shop(api, "uds_3_level", landing_url="https://shop.test/welcome",
                settings={"landing_rate_limits": {"invites_per_minute": 1000, "offer_per_minute": 1000},
                          "attribution_model": "last_touch"})
    olga, anna = shop.member("olga"), shop.member("anna")
    _landing(api, shop, "zoe@example.com", olga["code"])  # Zoe joins through Olga's link
    assert _landing(api, shop, "zoe@example.com", anna["code"]).body["referral_recorded"] is True  # then Anna's
    refs = {i["PK"]["S"].rsplit("#", 1)[1]: i for i in scan_test_table() if entity(i) == "invite_ref"}
    [invite] = [i for i in scan_test_table() if entity(i) == "pending_invite"]
    assert "expires_at_epoch" not in refs[olga["member_id"]]  # her profile names Olga's code
    assert refs[anna["member_id"]]["expires_at_epoch"] == invite["expires_at_epoch"]  # DynamoDB's TTL, as the invite


# --------------------------------------------------------------------------- the export lists every kind


def test_the_export_lists_every_kind_stored_about_the_member(api: ApiClient) -> None:
    shop = fraud_shop(api)
    pid = shop.pid
    imported = api.post(f"/v1/programs/{pid}/imports/members",
                        {"csv": "email,name,opening_balance\nanna@example.com,Anna,1000\n"})
    assert imported.status == 200 and imported.body["imported"] == 1, imported.body
    anna, reply = held_event(shop)  # her signup (with signals) matches the imported member
    anna_id, boris = anna["member_id"], reply["member"]["member_id"]
    assert api.put(f"/v1/programs/{pid}/members/{anna_id}/coupons/ANNA-500").status == 200
    adjusted = api.post(f"/v1/programs/{pid}/members/{anna_id}/adjustments", {"points": 100, "reason": "gift"},
                        headers={"Idempotency-Key": "adj-1"})
    assert adjusted.status in (200, 201), adjusted.body
    redeemed = shop.redeem(anna_id, 100, "checkout-1", order_id="A-1", order_amount=2_000_000)
    assert redeemed.status in (200, 201), redeemed.body
    shop.send(order("anna", "o-a", context=NET))
    shop.refund("o-a", 10_000)  # the order's ledger record (ORDER#…) is created by its first refund
    # A cancelled redemption: its spend and return entries both name it, an hour apart, another entry between.
    CLOCK.set(utc("2026-01-15T13:00:00Z"))
    cancelled = shop.redeem(anna_id, 50, "checkout-2")
    assert cancelled.status in (200, 201), cancelled.body
    CLOCK.set(utc("2026-01-15T13:30:00Z"))
    between = api.post(f"/v1/programs/{pid}/members/{anna_id}/adjustments", {"points": 10, "reason": "sorry"},
                       headers={"Idempotency-Key": "adj-2"})
    assert between.status in (200, 201), between.body
    CLOCK.set(utc("2026-01-15T14:00:00Z"))
    cancel = api.post(f"/v1/programs/{pid}/members/{anna_id}/redemptions/{cancelled.body['redemption_id']}/cancel",
                      key=shop.partner["api_key"])
    assert cancel.status == 200, cancel.body

    _, items = export_all(api, pid, anna_id, limit=500)
    kinds = {i["item_type"] for i in items}
    assert kinds >= {"ledger_entry", "event", "redemption", "adjustment", "order_ledger", "import_row", "signal",
                     "review", "coupon", "identity", "code", "link", "velocity"}, sorted(kinds)
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for item in items:
        by_kind.setdefault(item["item_type"], []).append(item)
    ptn = shop.partner["partner_id"]
    events = {e["business_key"]: e for e in by_kind["event"]}
    # Her signup (which paid her nothing: found by its back-reference), her order (by her entry's business key),
    # Boris's order, which held her reward (when and which fact only: his reply and fingerprint are his).
    assert set(events) >= {f"{pid}|{ptn}|customer|anna|member.signup", f"{pid}|{ptn}|order|o-a|order.paid",
                           f"{pid}|{ptn}|order|o-1|order.paid"}, sorted(events)
    assert "reply" in events[f"{pid}|{ptn}|customer|anna|member.signup"]
    assert "reply" not in events[f"{pid}|{ptn}|order|o-1|order.paid"]
    [own_order] = by_kind["order_ledger"]
    assert own_order["order_id"] == "o-a" and own_order["buyer_id"] == anna_id
    assert [c["coupon"] for c in by_kind["coupon"]] == ["ANNA-500"]
    assert {s["kind"] for s in by_kind["signal"]} == {"ip", "ip_ua"}
    # Other members' data is not hers: no other member on a signal, no friend's signals on the review item.
    for s in by_kind["signal"]:
        assert [m for m, _ in s["members"]] == [anna_id] and s["value_hash"]
    [review] = by_kind["review"]
    assert review["referrer_id"] == anna_id and review["signals"] == [] and review["deny"] == []
    assert boris not in json.dumps(by_kind["signal"])
    # The same content whatever the page size: every record once (the cancelled redemption too).
    assert sorted(r["redemption_id"] for r in by_kind["redemption"]) == sorted(
        [redeemed.body["redemption_id"], cancelled.body["redemption_id"]])
    assert len({e["business_key"] for e in by_kind["event"]}) == len(by_kind["event"])
    for limit in (1, 2, 3, 5):
        _, paged = export_all(api, pid, anna_id, limit=limit)
        assert paged == items, limit
    # Boris's export: his device, his review item with its signals, his event.
    _, his = export_all(api, pid, boris, limit=7)
    his_kinds = {i["item_type"] for i in his}
    assert his_kinds >= {"event", "signal", "review"}, sorted(his_kinds)
    [his_review] = [i for i in his if i["item_type"] == "review"]
    assert his_review["signals"]


def walk_export(api: ApiClient, pid: str, mid: str, limit: int) -> tuple[list[dict[str, Any]], list[str]]:
    """Every item of the member's export at ``limit`` and every cursor its pages gave."""
    items: list[dict[str, Any]] = []
    cursors: list[str] = []
    query = f"limit={limit}"
    for _ in range(2_000):
        page = api.get(f"/v1/programs/{pid}/members/{mid}/export?{query}")
        assert page.status == 200, page.body
        items += page.body["items"]
        if not page.body["next_cursor"]:
            return items, cursors
        cursors.append(page.body["next_cursor"])
        query = f"limit={limit}&cursor={page.body['next_cursor']}"
    raise AssertionError("the export did not end")


def test_the_export_cursor_stays_short_when_many_orders_share_one_time(api: ApiClient,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A backfill with date-only times: 30 orders of hers at one ``occurred_at`` (her reward entries all at that
    ledger time, two rewards each) and 6 of them refunded at one other time. The cursor does not grow with them (it once carried
    every record the entries of the page's last ledger time named, and outgrew the query string), and the export
    lists every event once, the same at every page size, also when the page ends inside that time
    (``GROUP_READ`` 1: the next page leaves out the events her entries on earlier pages named)."""
    from chalicelib.api.http import MAX_QUERY_CHARS
    from chalicelib.store import member_links

    rules = {"max_depth": 3, "hold_days": 0, "rules": [  # two rewards of hers per order: two entries name its event
        {"id": "cashback", "trigger": {"event": "order.paid"}, "recipient": {"type": "self"}, "amount": {"rate_bp": 500}},
        {"id": "extra", "trigger": {"event": "order.paid"}, "recipient": {"type": "self"}, "amount": {"rate_bp": 100}},
    ]}
    shop = Shop(api, rules)
    anna = shop.member("anna")
    for i in range(30):
        shop.send(order("anna", f"bf-{i}"))
    for i in range(6):
        shop.refund(f"bf-{i}", 10_000, refund_id=f"bf-r-{i}")
    reference, _ = walk_export(api, shop.pid, anna["member_id"], limit=500)
    events = [i["business_key"] for i in reference if i["item_type"] == "event"]
    ptn = shop.partner["partner_id"]
    assert {f"{shop.pid}|{ptn}|order|bf-{i}|order.paid" for i in range(30)} <= set(events)
    assert {f"{shop.pid}|{ptn}|refund|bf-r-{i}|order.refunded" for i in range(6)} <= set(events), events
    assert len(events) == len(set(events))
    assert len([i for i in reference if i["item_type"] == "order_ledger"]) == 6
    for group_read in (member_links.GROUP_READ, 1):
        monkeypatch.setattr(member_links, "GROUP_READ", group_read)
        for limit in (1, 2, 3):
            items, cursors = walk_export(api, shop.pid, anna["member_id"], limit=limit)
            assert items == reference, (group_read, limit)
            longest = max(len(c) for c in cursors)
            assert longest <= 400 < MAX_QUERY_CHARS, (group_read, limit, longest)


def test_the_export_lists_the_pool_slot_of_a_code_issued_to_her(api: ApiClient) -> None:
    from tests.functional.test_vouchers import offer, put_rules, rules, upload

    shop = Shop(api, None, partners=2)
    clothes, cafe = shop.partners
    coffee = offer(api, shop.pid, cafe, valid_days=30)
    upload(api, shop.pid, cafe, coffee["offer_id"], ["CAFE-1"])
    put_rules(api, shop, rules(cafe["partner_id"], coffee["offer_id"]))
    member_id = shop.order("anna", "o-1", 600_000, partner=clothes)["member"]["member_id"]
    _, items = export_all(api, shop.pid, member_id, limit=3)
    [slot] = [i for i in items if i["item_type"] == "pool_slot"]
    assert (slot["code"], slot["member_id"]) == ("CAFE-1", member_id)
    [voucher] = [i for i in items if i["item_type"] == "voucher"]
    assert voucher["code"] == "CAFE-1"
