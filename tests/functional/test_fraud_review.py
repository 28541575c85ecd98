"""Velocity limits, held rewards and the review queue through the real pipeline and routes (docs/fraud.md)."""

from __future__ import annotations

from typing import Any

import pytest

from chalicelib.domain import clock
from tests.functional.test_ledger_support import Shop, check_invariants, parallel
from tests.platform_support import RULES
from tests.support import CLOCK, ApiClient, Reply

NET = {"ip": "198.51.100.20", "user_agent": "Mozilla/5.0 (Anna's phone)"}


def fraud_shop(api: ApiClient, partners: int = 1, **limits: int | bool) -> Shop:
    return Shop(api, RULES, partners=partners, settings={"fraud": limits})


def signup(customer: str, code: str | None = None, context: dict[str, Any] | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {"type": "member.signup", "occurred_at": "2026-01-10T10:00:00Z",
                             "object": {"type": "customer", "id": customer},
                             "customer": {"id": customer, "email": f"{customer}@example.com"}}
    if code:
        event["referral"] = {"code": code}
    if context:
        event["context"] = context
    return event


def order(customer: str, order_id: str, code: str | None = None, context: dict[str, Any] | None = None,
          total: int = 100_000) -> dict[str, Any]:
    event = Shop.order_event(customer, order_id, total, code=code)
    if context:
        event["context"] = context
    return event


def statuses(reply: dict[str, Any]) -> set[str]:
    return {p["status"] for p in reply["rewards"]["postings"]}


def queue(shop: Shop, key: str | None = "operator") -> Reply:
    return shop.api.get(f"/v1/programs/{shop.pid}/review", key=key)


def decide(shop: Shop, item_id: str, decision: str, key: str | None = "operator", **body: Any) -> Reply:
    return shop.api.post(f"/v1/programs/{shop.pid}/review/{item_id}/{decision}", body, key=key)


def held_event(shop: Shop) -> tuple[dict[str, Any], dict[str, Any]]:
    """Anna refers Boris, who orders from Anna's IP and browser: held (``same_network_as_referrer``)."""
    anna = shop.send(signup("anna", context=NET))["member"]
    reply = shop.send(order("boris", "o-1", code=anna["code"], context={**NET, "device_id": "dev-boris"}))
    assert reply["risk"]["reasons"] == ["same_network_as_referrer"], reply
    return anna, reply


# --------------------------------------------------------------------------- every hold reason


def test_signups_per_referrer_per_hour(api: ApiClient) -> None:
    shop = fraud_shop(api, signups_per_referrer_hour=2)
    anna = shop.member("anna")
    replies = [shop.send(order(f"f{i}", f"o-{i}", code=anna["code"])) for i in range(3)]
    assert [r.get("risk") is None for r in replies] == [True, True, False]
    assert replies[2]["risk"]["reasons"] == ["velocity_signups_hour"]
    assert statuses(replies[2]) == {"held"} and statuses(replies[0]) == {"available"}
    bal = shop.balance(anna["member_id"])
    assert (bal["available"], bal["held"]) == (1000, 500)
    check_invariants(shop.pid, anna["member_id"])


def test_signups_per_referrer_per_day(api: ApiClient) -> None:
    shop = fraud_shop(api, signups_per_referrer_day=1)
    anna = shop.member("anna")
    shop.send(signup("f0", anna["code"]))
    reply = shop.send(order("f1", "o-1", code=anna["code"]))
    assert reply["risk"]["reasons"] == ["velocity_signups_day"]


def test_rewards_per_referrer_per_day(api: ApiClient) -> None:
    shop = fraud_shop(api, rewards_per_referrer_day=1)
    anna = shop.member("anna")
    for i in range(2):
        shop.send(signup(f"f{i}", anna["code"]))
    assert shop.send(order("f0", "o-0")).get("risk") is None
    reply = shop.send(order("f1", "o-1"))
    assert reply["risk"]["reasons"] == ["velocity_rewards_day"] and statuses(reply) == {"held"}


def test_first_purchases_per_device_per_day(api: ApiClient) -> None:
    shop = fraud_shop(api, first_purchases_per_signal_day=1)
    assert shop.send(order("a", "o-1", context={"device_id": "dev-1"})).get("risk") is None
    reply = shop.send(order("b", "o-2", context={"device_id": "dev-1"}))
    assert reply["risk"]["reasons"] == ["velocity_first_purchases"]
    assert reply["risk"]["matched"] == ["many first purchases from the same device today"]
    assert shop.send(order("a", "o-3", context={"device_id": "dev-1"})).get("risk") is None  # not a first purchase


def test_many_friends_of_one_referrer_from_one_ip(api: ApiClient) -> None:
    shop = fraud_shop(api, friends_per_signal=1)
    anna = shop.member("anna")
    ip = {"ip": "203.0.113.9"}
    assert shop.send(order("f0", "o-0", code=anna["code"], context=ip)).get("risk") is None
    reply = shop.send(order("f1", "o-1", code=anna["code"], context=ip))
    assert reply["risk"]["reasons"] == ["many_friends_same_signal"]
    assert reply["risk"]["matched"] == ["many friends of the referrer from the same IP address"]


def test_same_ip_and_browser_as_the_referrer_is_held_not_rejected(api: ApiClient) -> None:
    shop = fraud_shop(api)
    _anna, reply = held_event(shop)
    assert reply["attribution"]["outcome"] == "credited"
    assert reply["risk"]["matched"] == ["same IP address and browser as the referrer"]
    assert statuses(reply) == {"held"}
    assert "203" not in str(reply["risk"]) and "198.51" not in str(reply["risk"])


def test_the_same_ip_and_browser_long_after_is_not_held(api: ApiClient) -> None:
    shop = fraud_shop(api, same_network_hours=1)
    CLOCK.set(clock.parse_iso("2026-01-10T10:00:00Z"))
    anna = shop.send(signup("anna", context=NET))["member"]
    CLOCK.set(clock.parse_iso("2026-01-10T12:00:00Z"))
    reply = shop.send({**order("boris", "o-1", code=anna["code"], context=NET),
                       "occurred_at": "2026-01-10T12:00:00Z"})
    assert reply.get("risk") is None


def test_a_device_voided_as_fraud_at_one_partner_is_held_at_another(api: ApiClient) -> None:
    shop = fraud_shop(api, partners=2)
    _, reply = held_event(shop)
    assert decide(shop, reply["rewards"]["review_item_id"], "void", reason="farm", fraud=True).status == 200
    other = shop.send(order("carl", "o-9", context={"device_id": "dev-boris"}), partner=shop.partners[1])
    assert other["risk"]["reasons"] == ["signal_voided_as_fraud"]
    assert other["risk"]["matched"] == ["device voided as fraud before"]


# --------------------------------------------------------------------------- the queue and decisions


def test_queue_lists_held_rewards_oldest_first_with_reasons_and_no_raw_signal(api: ApiClient) -> None:
    shop = fraud_shop(api, signups_per_referrer_hour=1)
    anna = shop.member("anna")
    for i in range(3):
        shop.send(order(f"f{i}", f"o-{i}", code=anna["code"], context={"ip": "203.0.113.50"}))
    reply = queue(shop)
    assert reply.status == 200
    items = reply.body["items"]
    assert [i["member_id"] for i in items] == [shop.api.get(
        f"/v1/programs/{shop.pid}/members/lookup?email=f{n}@example.com").body["member_id"] for n in (1, 2)]
    assert items[0]["reasons"][0]["code"] == "velocity_signups_hour" and items[0]["points"] == 850
    assert "203.0.113.50" not in str(reply.body)
    page = shop.api.get(f"/v1/programs/{shop.pid}/review?limit=1")
    assert len(page.body["items"]) == 1 and page.body["next_cursor"]
    rest = shop.api.get(f"/v1/programs/{shop.pid}/review?limit=1&cursor={page.body['next_cursor']}")
    assert rest.body["items"][0]["item_id"] == items[1]["item_id"]


def test_approve_makes_held_rewards_available_once(api: ApiClient) -> None:
    shop = fraud_shop(api)
    anna, reply = held_event(shop)
    item_id = reply["rewards"]["review_item_id"]
    before = shop.balance(anna["member_id"])
    assert (before["available"], before["held"]) == (0, 500)
    ledger = shop.ledger(anna["member_id"])
    assert [e["status"] for e in ledger] == ["held"]  # the member's statement shows it as held
    approved = decide(shop, item_id, "approve", reason="checked with the shop")
    assert approved.status == 200 and approved.body["status"] == "approved"
    assert approved.body["decision"]["by"] == "operator" and approved.body["decision"]["reason"]
    after = shop.balance(anna["member_id"])
    assert (after["available"], after["held"]) == (500, 0)
    again = decide(shop, item_id, "approve")
    assert again.status == 200 and shop.balance(anna["member_id"])["available"] == 500
    assert decide(shop, item_id, "void", reason="too late").status == 409
    assert queue(shop).body["items"] == []
    check_invariants(shop.pid, anna["member_id"])


def test_void_reverses_held_rewards_with_the_reason(api: ApiClient) -> None:
    shop = fraud_shop(api)
    anna, reply = held_event(shop)
    item_id = reply["rewards"]["review_item_id"]
    assert decide(shop, item_id, "void").status == 422  # a reason is required
    voided = decide(shop, item_id, "void", reason="same household")
    assert voided.status == 200 and voided.body["status"] == "voided"
    bal = shop.balance(anna["member_id"])
    assert (bal["available"], bal["held"], bal["lifetime_earned"]) == (0, 0, 0)
    reversal = shop.ledger(anna["member_id"])[0]
    assert reversal["kind"] == "reversal" and "same household" in reversal["reason"]
    assert decide(shop, item_id, "void", reason="same household").status == 200  # idempotent
    assert decide(shop, item_id, "approve").status == 409
    check_invariants(shop.pid, anna["member_id"])


def test_the_holding_job_never_releases_held_rewards(api: ApiClient) -> None:
    shop = fraud_shop(api)
    anna, _ = held_event(shop)
    shop.release(clock.parse_iso("2026-03-01T00:00:00Z"))
    assert shop.balance(anna["member_id"])["held"] == 500


@pytest.mark.usefixtures("concurrent_requests")
def test_concurrent_approve_and_void_exactly_one_wins(api: ApiClient) -> None:
    shop = fraud_shop(api)
    anna, reply = held_event(shop)
    item_id = reply["rewards"]["review_item_id"]
    replies = parallel([lambda: decide(shop, item_id, "approve"),
                        lambda: decide(shop, item_id, "void", reason="farm")])
    assert sorted(r.status for r in replies) == [200, 409]
    winner = next(r for r in replies if r.status == 200).body["status"]
    bal = shop.balance(anna["member_id"])
    assert bal["held"] == 0 and bal["available"] == (500 if winner == "approved" else 0)
    check_invariants(shop.pid, anna["member_id"])


def test_partners_see_and_decide_only_their_own_events(api: ApiClient) -> None:
    shop = fraud_shop(api, partners=2)
    _, reply = held_event(shop)
    item_id = reply["rewards"]["review_item_id"]
    mine, theirs = shop.partners[0]["api_key"], shop.partners[1]["api_key"]
    assert [i["item_id"] for i in queue(shop, key=mine).body["items"]] == [item_id]
    assert queue(shop, key=theirs).body["items"] == []
    assert decide(shop, item_id, "approve", key=theirs).status == 404
    stranger = Shop(api, RULES)
    assert shop.api.get(f"/v1/programs/{shop.pid}/review", key=stranger.partner["api_key"]).status == 404
    assert decide(shop, item_id, "approve", key=stranger.partner["api_key"]).status == 404
    assert queue(shop, key=None).status == 401
    assert decide(shop, item_id, "approve", key=mine).status == 200


def held_for(shop: Shop, partner: dict[str, Any], referrer: str, count: int) -> list[str]:
    """``count`` held items of ``partner``'s events (the program holds every signup after a referrer's first
    in an hour: ``signups_per_referrer_hour=1``), oldest first."""
    code = shop.member(referrer)["code"]
    shop.send(order(f"{referrer}-f0", f"{referrer}-o0", code=code), partner=partner)  # the hour's first: not held
    held = [shop.send(order(f"{referrer}-f{i}", f"{referrer}-o{i}", code=code), partner=partner)
            for i in range(1, count + 1)]
    return [r["rewards"]["review_item_id"] for r in held]


def pages(shop: Shop, key: str, limit: int = 1) -> tuple[list[list[str]], list[str]]:
    """Every page of the queue as ``key`` sees it (item ids per page) and the cursors it was given."""
    seen: list[list[str]] = []
    cursors: list[str] = []
    cursor: str | None = None
    while True:
        reply = shop.api.get(f"/v1/programs/{shop.pid}/review?limit={limit}"
                             + (f"&cursor={cursor}" if cursor else ""), key=key)
        assert reply.status == 200, reply.body
        seen.append([i["item_id"] for i in reply.body["items"]])
        cursor = reply.body["next_cursor"]
        if not cursor:
            return seen, cursors
        cursors.append(cursor)
        assert len(seen) <= 10, "the queue does not end"


def test_a_partner_pages_through_its_queue_to_the_end(api: ApiClient) -> None:
    shop = fraud_shop(api, partners=2, signups_per_referrer_hour=1)
    mine = held_for(shop, shop.partners[0], "anna", 4)
    theirs = held_for(shop, shop.partners[1], "vera", 2)
    seen, cursors = pages(shop, shop.partners[0]["api_key"])
    assert [ids for ids in seen if ids] == [[i] for i in mine]  # one per page, oldest first, none of theirs
    assert len(cursors) >= 3
    wide, _ = pages(shop, shop.partners[0]["api_key"], limit=3)
    assert [i for ids in wide for i in ids] == mine
    operator, _ = pages(shop, "operator", limit=2)
    assert sorted(i for ids in operator for i in ids) == sorted(mine + theirs)


def test_a_queue_cursor_works_only_for_the_partner_it_was_given_to(api: ApiClient) -> None:
    shop = fraud_shop(api, partners=2, signups_per_referrer_hour=1)
    held_for(shop, shop.partners[0], "anna", 3)
    held_for(shop, shop.partners[1], "vera", 3)
    mine, theirs = shop.partners[0]["api_key"], shop.partners[1]["api_key"]
    _, my_cursors = pages(shop, mine)
    _, operator_cursors = pages(shop, "operator")
    base = f"/v1/programs/{shop.pid}/review?limit=1&cursor="
    for cursor in my_cursors:
        assert shop.api.get(base + cursor, key=mine).status == 200
        stolen = shop.api.get(base + cursor, key=theirs)
        assert stolen.status == 400 and stolen.error_code == "invalid_cursor"
        assert shop.api.get(base + cursor, key="operator").error_code == "invalid_cursor"
    assert shop.api.get(base + operator_cursors[0], key=mine).error_code == "invalid_cursor"
    other = fraud_shop(api, signups_per_referrer_hour=1)
    held_for(other, other.partner, "olga", 2)
    _, foreign = pages(other, other.partner["api_key"])
    assert shop.api.get(base + foreign[0], key=mine).error_code == "invalid_cursor"


def test_the_shared_deny_list_holds_a_fraud_device_in_other_opted_in_programs_only(api: ApiClient) -> None:
    a = fraud_shop(api, shared_deny_list=True)
    _, reply = held_event(a)
    assert decide(a, reply["rewards"]["review_item_id"], "void", reason="farm", fraud=True).status == 200
    opted_in = fraud_shop(api, shared_deny_list=True)
    held = opted_in.send(order("zed", "o-1", context={"device_id": "dev-boris"}))
    assert held["risk"]["reasons"] == ["shared_deny_list"]
    assert held["risk"]["matched"] == ["device on the shared deny list"]
    outside = fraud_shop(api)
    assert outside.send(order("zed", "o-1", context={"device_id": "dev-boris"})).get("risk") is None
    # A void without fraud adds nothing.
    b = fraud_shop(api, shared_deny_list=True)
    anna = b.send(signup("anna", context=NET))["member"]
    other = b.send(order("boris", "o-1", code=anna["code"], context={**NET, "device_id": "dev-honest"}))
    assert decide(b, other["rewards"]["review_item_id"], "void", reason="duplicate order").status == 200
    assert opted_in.send(order("yan", "o-2", context={"device_id": "dev-honest"})).get("risk") is None


# --------------------------------------------------------------------------- offer vouchers of a held event


def voucher_shop(api: ApiClient) -> tuple[Shop, dict[str, Any], str]:
    """Two partners; the cafe's offer (a pool of 2 codes) rewards the referrer of a friend's first order."""
    from tests.functional.test_vouchers import offer, upload

    shop = fraud_shop(api, partners=2)
    cafe = shop.partners[1]
    coffee = offer(api, shop.pid, cafe, valid_days=30)
    upload(api, shop.pid, cafe, coffee["offer_id"], ["CAFE-1", "CAFE-2"])
    doc = {**RULES, "rules": [*RULES["rules"], {
        "id": "coffee-for-referrer", "trigger": {"event": "order.paid", "order": "first"},
        "recipient": {"type": "referrer", "level": 1},
        "amount": {"offer": {"partner_id": cafe["partner_id"], "offer_id": coffee["offer_id"]}}}]}
    assert api.put(f"/v1/programs/{shop.pid}/rules", doc).status == 200
    return shop, cafe, coffee["offer_id"]


def member_vouchers(shop: Shop, member_id: str) -> list[dict[str, Any]]:
    reply = shop.api.get(f"/v1/programs/{shop.pid}/members/{member_id}/vouchers")
    assert reply.status == 200, reply.body
    return reply.body["items"]  # type: ignore[no-any-return]


def pool(shop: Shop, cafe: dict[str, Any], offer_id: str) -> dict[str, Any]:
    reply = shop.api.get(f"/v1/programs/{shop.pid}/partners/{cafe['partner_id']}/offers/{offer_id}")
    return reply.body["pool"]  # type: ignore[no-any-return]


def voucher_messages(member_id: str) -> list[Any]:
    from chalicelib.store.ledger import OutboxItem

    return [m for m in OutboxItem.scan() if isinstance(m, OutboxItem) and m.template == "voucher_issued"
            and m.member_id == member_id]


def test_a_held_events_voucher_is_issued_only_when_the_review_approves(api: ApiClient) -> None:
    CLOCK.set(clock.parse_iso("2026-01-15T12:00:00Z"))
    shop, cafe, offer_id = voucher_shop(api)
    anna, reply = held_event(shop)
    rewards = reply["rewards"]
    assert "vouchers" not in rewards  # no code leaves the pool while the event is held
    assert rewards["held_vouchers"] == [{"member_id": anna["member_id"], "partner_id": cafe["partner_id"],
                                         "offer_id": offer_id, "rule_id": "coffee-for-referrer", "status": "held",
                                         "voucher_id": None}]
    assert member_vouchers(shop, anna["member_id"]) == [] and voucher_messages(anna["member_id"]) == []
    assert pool(shop, cafe, offer_id)["remaining"] == 2
    [item] = queue(shop).body["items"]
    assert item["vouchers"][0]["status"] == "held"
    approved = decide(shop, rewards["review_item_id"], "approve", reason="a real friend")
    assert approved.status == 200, approved.body
    [decided] = approved.body["vouchers"]
    [voucher] = member_vouchers(shop, anna["member_id"])
    assert decided["status"] == "issued" and decided["voucher_id"] == voucher["voucher_id"]
    assert voucher["code"] in {"CAFE-1", "CAFE-2"} and voucher["reason_code"] == "offer_reward"
    assert voucher["event_partner_id"] == shop.partner["partner_id"]
    assert pool(shop, cafe, offer_id)["remaining"] == 1
    assert len(voucher_messages(anna["member_id"])) == 1
    # Approving again answers the item and issues nothing more; voiding now is a conflict.
    assert decide(shop, rewards["review_item_id"], "approve").body["vouchers"] == approved.body["vouchers"]
    assert decide(shop, rewards["review_item_id"], "void", reason="late").status == 409
    assert len(member_vouchers(shop, anna["member_id"])) == 1 and pool(shop, cafe, offer_id)["remaining"] == 1


def test_a_held_events_voucher_is_never_issued_when_the_review_voids(api: ApiClient) -> None:
    CLOCK.set(clock.parse_iso("2026-01-15T12:00:00Z"))
    shop, cafe, offer_id = voucher_shop(api)
    anna, reply = held_event(shop)
    voided = decide(shop, reply["rewards"]["review_item_id"], "void", reason="farm", fraud=True)
    assert voided.status == 200, voided.body
    assert [v["status"] for v in voided.body["vouchers"]] == ["voided"]
    assert voided.body["vouchers"][0]["voucher_id"] is None
    assert member_vouchers(shop, anna["member_id"]) == [] and voucher_messages(anna["member_id"]) == []
    assert pool(shop, cafe, offer_id) == {"size": 2, "remaining": 2, "issued": 0, "low": False}
    assert decide(shop, reply["rewards"]["review_item_id"], "approve").status == 409
    assert member_vouchers(shop, anna["member_id"]) == []


def test_an_approved_voucher_whose_pool_ran_dry_meanwhile_is_recorded(api: ApiClient) -> None:
    CLOCK.set(clock.parse_iso("2026-01-15T12:00:00Z"))
    shop, cafe, offer_id = voucher_shop(api)
    anna, reply = held_event(shop)
    # Two honest referrals take both codes while the item waits.
    for n in (1, 2):
        referrer = shop.send(signup(f"r{n}"))["member"]
        shop.send(order(f"f{n}", f"of-{n}", code=referrer["code"]))
    assert pool(shop, cafe, offer_id)["remaining"] == 0
    approved = decide(shop, reply["rewards"]["review_item_id"], "approve")
    assert approved.status == 200, approved.body
    assert [v["status"] for v in approved.body["vouchers"]] == ["pool_empty"]
    assert member_vouchers(shop, anna["member_id"]) == []
    assert (shop.balance(anna["member_id"])["available"]) == 500  # the points were approved all the same
