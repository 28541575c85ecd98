"""Personal coupon codes through the API under moto: register, list, remove, and attribution by coupon."""

from __future__ import annotations

from typing import Any

from chalicelib.store import keys
from chalicelib.store.members import CouponItem, MemberItem
from tests.support import ApiClient


def signup(customer_id: str, email: str, code: str | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {"type": "member.signup", "occurred_at": "2026-11-20T10:00:00Z",
                             "object": {"type": "customer", "id": customer_id},
                             "customer": {"id": customer_id, "email": email}}
    if code:
        event["referral"] = {"code": code}
    return event


def order(customer_id: str, order_id: str, coupons: list[str]) -> dict[str, Any]:
    return {"type": "order.paid", "occurred_at": "2026-11-21T10:00:00Z", "object": {"type": "order", "id": order_id},
            "customer": {"id": customer_id}, "order": {"total": 100_000, "currency": "RUB"},
            "referral": {"coupon_codes": coupons}}


def setup(api: ApiClient) -> tuple[str, dict[str, Any], dict[str, Any]]:
    program = api.create_program()
    pid = program["program_id"]
    partner = api.create_partner(pid)
    anna = api.processed(partner, signup("anna", "anna@example.com"))["member"]
    return pid, partner, anna


def coupon_path(pid: str, member_id: str, code: str = "") -> str:
    return f"/v1/programs/{pid}/members/{member_id}/coupons" + (f"/{code}" if code else "")


def test_an_order_with_a_registered_coupon_is_attributed_to_its_member(api: ApiClient) -> None:
    pid, partner, anna = setup(api)
    put = api.put(coupon_path(pid, anna["member_id"], "anna-500"), key=partner["api_key"])
    assert put.status == 200, put.body
    assert put.body == {"code": "ANNA-500", "created": True, "member_id": anna["member_id"], "coupons": ["ANNA-500"]}
    # Idempotent, and the code is normalised (case, whitespace) the way orders are.
    again = api.put(coupon_path(pid, anna["member_id"], "ANNA-500"), key=partner["api_key"])
    assert again.status == 200 and again.body["created"] is False and again.body["coupons"] == ["ANNA-500"]

    reply = api.processed(partner, order("friend-1", "o-1", ["anna-500"]))
    assert reply["attribution"]["outcome"] == "credited"
    assert reply["attribution"]["source"] == "coupon"
    assert reply["attribution"]["referrer_id"] == anna["member_id"]
    friend = MemberItem.get(*keys.member(pid, reply["member"]["member_id"]))
    assert friend.referrer_id == anna["member_id"]


def test_coupons_are_unique_per_program_listed_and_removable(api: ApiClient) -> None:
    pid, partner, anna = setup(api)
    boris = api.processed(partner, signup("boris", "boris@example.com"))["member"]
    assert api.put(coupon_path(pid, anna["member_id"], "SPRING"), key=partner["api_key"]).status == 200
    taken = api.put(coupon_path(pid, boris["member_id"], "spring"), key=partner["api_key"])
    assert taken.status == 409 and taken.error_code == "coupon_taken"
    assert api.get(coupon_path(pid, anna["member_id"]), key=partner["api_key"]).body == {
        "member_id": anna["member_id"], "coupons": ["SPRING"]}
    assert api.get(coupon_path(pid, anna["member_id"], "spring"), key=partner["api_key"]).status == 200
    assert api.get(coupon_path(pid, boris["member_id"], "SPRING"), key=partner["api_key"]).status == 404

    removed = api.call("DELETE", coupon_path(pid, anna["member_id"], "SPRING"), key=partner["api_key"])
    assert removed.status == 200 and removed.body["coupons"] == []
    assert api.call("DELETE", coupon_path(pid, anna["member_id"], "SPRING"), key=partner["api_key"]).status == 404
    # Free again: another member may register it, and orders naming it now point to them.
    assert api.put(coupon_path(pid, boris["member_id"], "SPRING"), key=partner["api_key"]).status == 200
    reply = api.processed(partner, order("friend-2", "o-2", ["SPRING"]))
    assert reply["attribution"]["referrer_id"] == boris["member_id"]


def test_an_unknown_coupon_attributes_nothing(api: ApiClient) -> None:
    _, partner, _ = setup(api)
    reply = api.processed(partner, order("friend-3", "o-3", ["NOBODY"]))
    assert reply["attribution"]["outcome"] != "credited"
    assert reply["attribution"]["referrer_id"] is None


def test_the_coupon_pointer_follows_its_members_ancestry(api: ApiClient) -> None:
    pid, partner, olga = setup(api)
    anna = api.processed(partner, signup("anna2", "anna2@example.com"))["member"]
    assert api.put(coupon_path(pid, anna["member_id"], "ANNA-1"), key=partner["api_key"]).status == 200
    # Anna is attributed to Olga later: her coupon's pointer carries the new ancestry.
    api.processed(partner, {**signup("anna2", "anna2@example.com", code=olga["code"]),
                            "object": {"type": "customer", "id": "anna2-again"}})
    pointer = CouponItem.get(*keys.coupon(pid, "ANNA-1"))
    assert pointer.ancestors == [olga["member_id"]]
    # A friend brought by Anna's coupon has Olga at level 2.
    friend = api.processed(partner, order("friend-4", "o-4", ["ANNA-1"]))["member"]
    assert MemberItem.get(*keys.member(pid, friend["member_id"])).ancestors == [anna["member_id"], olga["member_id"]]


def test_who_may_manage_coupons(api: ApiClient) -> None:
    pid, _, anna = setup(api)
    other = api.create_program()
    other_partner = api.create_partner(other["program_id"])
    # Another tenant's key: the program does not exist for it.
    assert api.put(coupon_path(pid, anna["member_id"], "X1"), key=other_partner["api_key"]).status == 404
    # Publishable keys live in browsers: refused.
    assert api.put(coupon_path(pid, anna["member_id"], "X1"), key=other["publishable_key"]).status in (403, 404)
    assert api.put(coupon_path(pid, anna["member_id"], "X1")).status == 200  # operator
    assert api.put(coupon_path(pid, "mbr_nobody", "X2")).status == 404
    bad = api.put(coupon_path(pid, anna["member_id"], "x" * 65))
    assert bad.status == 422
    # Reading a code that could never be registered: not the member's (a read answers 404, as every GET does).
    never = api.get(coupon_path(pid, anna["member_id"], "x" * 65))
    assert never.status == 404 and never.error_code == "coupon_not_found"


def test_how_several_coupons_and_a_referral_code_are_matched(api: ApiClient) -> None:
    """As docs/attribution.md#coupon-codes says: unregistered codes are ignored, the first registered
    coupon listed wins, a referral code beats any coupon."""
    pid, partner, anna = setup(api)
    boris = api.processed(partner, signup("boris", "boris@example.com"))["member"]
    olga = api.processed(partner, signup("olga", "olga@example.com"))["member"]
    for member, code in ((anna, "ANNA-500"), (boris, "BORIS-500")):
        assert api.put(coupon_path(pid, member["member_id"], code), key=partner["api_key"]).status == 200
    reply = api.processed(partner, order("friend-5", "o-5", ["SUMMER10", "boris-500", "ANNA-500"]))
    attribution = reply["attribution"]
    assert attribution["outcome"] == "credited" and attribution["referrer_id"] == boris["member_id"]
    reasons = {(c["source"], c["referrer_id"]): c["reason_code"] for c in attribution["candidates"]}
    assert reasons == {("coupon", boris["member_id"]): "credited", ("coupon", anna["member_id"]): "lower_priority"}
    # A referral code in the same event wins over the coupon.
    event = order("friend-6", "o-6", ["ANNA-500"])
    event["referral"]["code"] = olga["code"]
    won = api.processed(partner, event)["attribution"]
    assert won["source"] == "ref_code" and won["referrer_id"] == olga["member_id"]
