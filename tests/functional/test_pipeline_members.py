"""Pipeline behaviour around members: enrolment, identity merging, ancestry kept in pointers."""

from __future__ import annotations

from itertools import count
from typing import Any

from chalicelib.store import keys
from chalicelib.store.ledger import member_counts
from chalicelib.store.members import CodeItem, IdentityItem, MemberItem, identity_refs
from tests.support import ApiClient

_ids = count(1)


def send(api: ApiClient, partner: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
    return api.processed(partner, event)


def signup(customer: dict[str, Any], code: str | None = None, object_id: str | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {"type": "member.signup", "occurred_at": "2026-11-20T10:00:00Z",
                             "object": {"type": "customer", "id": object_id or customer.get("id") or f"o{next(_ids)}"},
                             "customer": customer}
    if code:
        event["referral"] = {"code": code}
    return event


def order(customer: dict[str, Any], order_id: str, total: int = 100_000, code: str | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {"type": "order.paid", "occurred_at": "2026-11-21T10:00:00Z",
                             "object": {"type": "order", "id": order_id}, "customer": customer,
                             "order": {"total": total, "currency": "RUB"}}
    if code:
        event["referral"] = {"code": code}
    return event


def profile(program_id: str, member_id: str) -> MemberItem:
    item = MemberItem.get(*keys.member(program_id, member_id))
    assert isinstance(item, MemberItem)
    return item


def counts(program_id: str, member_id: str) -> tuple[int, int]:
    """(purchases, converted referrals): kept on the balance item, the profile has the older counts."""
    from chalicelib.store.members import batch_get

    balance = batch_get([keys.balance(program_id, member_id)]).get(keys.balance(program_id, member_id))
    return member_counts(profile(program_id, member_id), balance)


def test_a_new_identifier_joins_the_existing_member(api: ApiClient) -> None:
    program = api.create_program()
    pid = program["program_id"]
    partner = api.create_partner(pid)
    first = send(api, partner, signup({"id": "c-1", "email": "anna@example.com"}))
    member_id = first["member"]["member_id"]
    # The same person seen later with a phone: same member, and now findable by phone.
    again = send(api, partner, order({"email": "Anna@Example.com", "phone": "+7 912 345-67-89"}, "o-1"))
    assert again["member"] == {"member_id": member_id, "code": first["member"]["code"], "created": False}
    phone_ref = identity_refs(pid, phone="+79123456789")[0]
    pointer = IdentityItem.get(*phone_ref.pointer_key(pid))
    assert pointer.member_id == member_id
    assert counts(pid, member_id)[0] == 1


def test_orders_do_not_enrol_when_auto_enrolment_is_off(api: ApiClient) -> None:
    program = api.create_program(settings={"auto_enrol": False})
    partner = api.create_partner(program["program_id"])
    reply = send(api, partner, order({"email": "walkin@example.com"}, "o-9"))
    assert reply["member"] is None
    # Signups still enrol.
    assert send(api, partner, signup({"email": "walkin@example.com"}))["member"]["created"] is True


def test_ancestry_is_stored_on_profile_and_every_pointer(api: ApiClient) -> None:
    program = api.create_program()
    pid = program["program_id"]
    partner = api.create_partner(pid)
    grand = send(api, partner, signup({"id": "g", "email": "grand@example.com"}))["member"]
    parent = send(api, partner, signup({"id": "p", "email": "parent@example.com"}, code=grand["code"]))["member"]
    child = send(api, partner, signup({"id": "c", "email": "child@example.com", "phone": "+79001234567"},
                                      code=parent["code"]))["member"]
    expected = [parent["member_id"], grand["member_id"]]
    assert profile(pid, child["member_id"]).ancestors == expected
    for ref in identity_refs(pid, email="child@example.com", phone="+79001234567", customer_id=(partner["partner_id"], "c")):
        assert IdentityItem.get(*ref.pointer_key(pid)).ancestors == expected
    assert CodeItem.get(*keys.referral_code(pid, child["code"])).ancestors == expected
    assert profile(pid, grand["member_id"]).referral_signups == 1
    assert profile(pid, parent["member_id"]).referral_signups == 1


def test_last_touch_reattribution_moves_counts_and_pointer_ancestry(api: ApiClient) -> None:
    program = api.create_program(settings={"attribution_model": "last_touch"})
    pid = program["program_id"]
    partner = api.create_partner(pid)
    a = send(api, partner, signup({"id": "a", "email": "a@example.com"}))["member"]
    b = send(api, partner, signup({"id": "b", "email": "b@example.com"}))["member"]
    friend = send(api, partner, signup({"id": "f", "email": "f@example.com"}, code=a["code"]))["member"]
    moved = send(api, partner, order({"id": "f"}, "o-1", code=b["code"]))
    assert moved["attribution"]["outcome"] == "credited"
    assert moved["attribution"]["referrer_id"] == b["member_id"]
    assert profile(pid, a["member_id"]).referral_signups == 0
    assert profile(pid, b["member_id"]).referral_signups == 1
    assert counts(pid, b["member_id"])[1] == 1
    ref = identity_refs(pid, email="f@example.com")[0]
    assert IdentityItem.get(*ref.pointer_key(pid)).ancestors == [b["member_id"]]
    assert CodeItem.get(*keys.referral_code(pid, friend["code"])).ancestors == [b["member_id"]]
    # The first purchase made it final: a later code changes nothing.
    late = send(api, partner, order({"id": "f"}, "o-2", code=a["code"]))
    assert late["attribution"]["reason_code"] == "attribution_final"


def test_the_webhook_reply_carries_no_storage_details(api: ApiClient) -> None:
    program = api.create_program()
    partner = api.create_partner(program["program_id"])
    reply = send(api, partner, order({"email": "x@example.com"}, "o-1"))
    assert set(reply) == {"status", "business_key", "type", "member", "attribution", "rewards"}
    assert "LEDGER#" not in repr(reply)
