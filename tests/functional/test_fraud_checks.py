"""Every fraud reason code of attribution through the real pipeline (signed events, chalice.test.Client)."""

from __future__ import annotations

from typing import Any

import pytest

from chalicelib.store import keys
from chalicelib.store.members import MemberItem
from tests.functional.test_ledger_support import Shop
from tests.platform_support import RULES
from tests.support import ApiClient


@pytest.fixture
def shop(api: ApiClient) -> Shop:
    return Shop(api, RULES)


def signup(customer: str, code: str | None = None, context: dict[str, Any] | None = None,
           phone: str | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {"type": "member.signup", "occurred_at": "2026-01-10T10:00:00Z",
                             "object": {"type": "customer", "id": customer},
                             "customer": {"id": customer, "email": f"{customer}@example.com"}}
    if phone:
        event["customer"]["phone"] = phone
    if code:
        event["referral"] = {"code": code}
    if context:
        event["context"] = context
    return event


def order(customer: str, order_id: str, code: str | None = None, context: dict[str, Any] | None = None,
          **customer_fields: str) -> dict[str, Any]:
    event = Shop.order_event(customer, order_id, 100_000, code=code)
    event["customer"].update(customer_fields)
    if context:
        event["context"] = context
    return event


def attribution(reply: dict[str, Any]) -> tuple[str, str]:
    return reply["attribution"]["outcome"], reply["attribution"]["reason_code"]


def referrer_paid(shop: Shop, reply: dict[str, Any], referrer_id: str) -> int:
    return sum(p["points"] for p in reply["rewards"]["postings"] if p["member_id"] == referrer_id)


@pytest.mark.parametrize(("context", "reason_code"), [
    ({"device_id": "dev-1"}, "self_referral_device"),
    ({"payment_fingerprint": "pm_fp_1"}, "self_referral_payment"),
])
def test_the_friend_on_the_referrers_device_or_card_is_rejected(shop: Shop, context: dict[str, Any],
                                                                reason_code: str) -> None:
    anna = shop.send(signup("anna", context=context))["member"]
    reply = shop.send(order("boris", "o-1", code=anna["code"], context=context))
    assert attribution(reply) == ("rejected", reason_code)
    assert referrer_paid(shop, reply, anna["member_id"]) == 0
    assert reply["attribution"]["referrer_id"] is None


def test_the_same_shipping_address_spelt_differently_is_rejected(shop: Shop) -> None:
    anna = shop.send(signup("anna", context={"shipping_address": "Москва, ул. Лёнина, д. 1, кв. 5"}))["member"]
    reply = shop.send(order("boris", "o-1", code=anna["code"], context={
        "shipping_address": "москва ул ленина д 1 кв 5"}))
    assert attribution(reply) == ("rejected", "self_referral_shipping")


def test_a_device_of_the_referrers_upline_is_rejected(shop: Shop) -> None:
    root = shop.send(signup("root", context={"device_id": "dev-root"}))["member"]
    anna = shop.member("anna", root["code"])
    reply = shop.send(order("boris", "o-1", code=anna["code"], context={"device_id": "dev-root"}))
    assert attribution(reply) == ("rejected", "self_referral_upline")
    assert "device" in reply["attribution"]["reason"]


def test_an_identifier_of_the_referrers_upline_is_rejected(shop: Shop) -> None:
    root = shop.send(signup("root", phone="+79123456789"))["member"]
    anna = shop.member("anna", root["code"])
    shop.member("boris")
    reply = shop.send(order("boris", "o-1", code=anna["code"], phone="+79123456789"))
    assert attribution(reply) == ("rejected", "self_referral_upline")
    assert "phone number" in reply["attribution"]["reason"]


def test_a_friend_above_the_referrer_is_a_loop(shop: Shop) -> None:
    _root, anna = shop.chain(1)
    reply = shop.send(order("c0", "o-1", code=anna["code"]))
    assert attribution(reply) == ("rejected", "loop_in_chain")


def test_a_repeating_upline_is_rejected(shop: Shop) -> None:
    root, a1, anna = shop.chain(2)
    profile = MemberItem.get(*keys.member(shop.pid, anna["member_id"]))
    profile.update(actions=[MemberItem.ancestors.set([a1["member_id"], root["member_id"], a1["member_id"]])])
    reply = shop.send(order("boris", "o-1", code=anna["code"]))
    assert attribution(reply) == ("rejected", "loop_in_upline")


def test_sharing_only_an_ip_with_the_referrer_does_not_reject(shop: Shop) -> None:
    anna = shop.send(signup("anna", context={"ip": "203.0.113.7"}))["member"]
    reply = shop.send(order("boris", "o-1", code=anna["code"], context={"ip": "203.0.113.7"}))
    assert attribution(reply) == ("credited", "credited")


def test_the_rejection_is_recorded_with_its_reason(shop: Shop) -> None:
    anna = shop.send(signup("anna", context={"device_id": "dev-9"}))["member"]
    boris = shop.send(order("boris", "o-1", code=anna["code"], context={"device_id": "dev-9"}))["member"]
    records = shop.api.get(f"/v1/programs/{shop.pid}/members/{boris['member_id']}/attributions")
    assert records.status == 200, records.body
    assert [(r["outcome"], r["reason_code"]) for r in records.body["items"]] == [("rejected", "self_referral_device")]


GMAIL_VARIANTS = [
    ("a.nna+x@gmail.com", "anna@gmail.com"),
    ("anna@gmail.com", "A.N.N.A+promo@googlemail.com"),
    ("an.na+shop@gmail.com", "a.n.n.a+other@gmail.com"),
]


def _anna(shop: Shop, email: str, code: str | None = None) -> dict[str, Any]:
    event = signup("anna", code)
    event["customer"]["email"] = email
    return shop.send(event)["member"]  # type: ignore[no-any-return]


@pytest.mark.parametrize(("referrer_email", "friend_email"), GMAIL_VARIANTS)
def test_gmail_dots_and_plus_tags_are_one_address_for_self_referral(shop: Shop, referrer_email: str,
                                                                    friend_email: str) -> None:
    """Gmail ignores dots and ``+tags`` (and googlemail.com is gmail.com): the "friend" is the referrer.

    Boris has his own member record (his customer id); his order carries a Gmail spelling of Anna's
    address: rejected ``self_referral_email``, recorded with its reason."""
    anna = _anna(shop, referrer_email)
    boris = shop.member("boris")
    reply = shop.send(order("boris", "o-1", code=anna["code"], email=friend_email))
    assert reply["member"]["member_id"] == boris["member_id"]
    assert attribution(reply) == ("rejected", "self_referral_email")
    assert referrer_paid(shop, reply, anna["member_id"]) == 0
    records = shop.api.get(f"/v1/programs/{shop.pid}/members/{boris['member_id']}/attributions").body
    assert [(r["outcome"], r["reason_code"]) for r in records["items"]] == [("rejected", "self_referral_email")]


@pytest.mark.parametrize(("referrer_email", "friend_email"), GMAIL_VARIANTS[:1])
def test_a_new_customer_with_a_gmail_spelling_of_the_referrers_address_is_the_referrer(
        shop: Shop, referrer_email: str, friend_email: str) -> None:
    """With no record of their own, the spelling resolves to the referrer's record (the e-mail's match key
    is one identity pointer): the referrer's own code, ``self_referral_same_member``, no new member."""
    anna = _anna(shop, referrer_email)
    event = Shop.order_event("boris", "o-1", 100_000, code=anna["code"], by_email=True)
    event["customer"]["email"] = friend_email
    reply = shop.send(event)
    assert reply["member"]["member_id"] == anna["member_id"]
    assert attribution(reply) == ("rejected", "self_referral_same_member")
    assert referrer_paid(shop, reply, anna["member_id"]) == reply["rewards"]["postings"][0]["points"]  # cashback only


def test_a_gmail_spelling_of_an_upline_members_address_is_rejected(shop: Shop) -> None:
    root = _anna(shop, "a.nna+x@gmail.com")
    vera = shop.member("vera", root["code"])
    shop.member("boris")
    reply = shop.send(order("boris", "o-1", code=vera["code"], email="anna@gmail.com"))
    assert attribution(reply) == ("rejected", "self_referral_upline")
    assert "e-mail address" in reply["attribution"]["reason"]


def test_dots_in_a_non_gmail_address_are_another_person(shop: Shop) -> None:
    """Only providers that ignore dots get them ignored: a.nna@example.com is not anna@example.com."""
    event = signup("anna")
    event["customer"]["email"] = "a.nna@example.com"
    anna = shop.send(event)["member"]
    reply = shop.send(order("boris", "o-1", code=anna["code"], email="anna@example.com"))
    assert attribution(reply) == ("credited", "credited")
