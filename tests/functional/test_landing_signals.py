"""Fraud signals of landing calls (``POST /v1/landing/invites`` with ``context`` and the request's IP)
through the real routes: stored only as keyed hashes, and feeding the same checks as event signals
(self-referral by device, card or address → rejected with its reason; the referrer's network, many
friends from one IP → held for review) when the invited friend's signed event credits the invite."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.functional.test_fraud_signals import signal_items, table_dump
from tests.functional.test_ledger_support import Shop, utc
from tests.platform_support import RULES
from tests.support import CLOCK, ApiClient, Reply

ORIGIN = "https://shop.test"
INVITED_AT = "2026-01-15T10:00:00Z"
UA = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148"


@pytest.fixture(autouse=True)
def invites_at(aws_env: None) -> None:
    CLOCK.set(utc(INVITED_AT))


@pytest.fixture
def shop(api: ApiClient) -> Shop:
    return Shop(api, RULES, landing_url="https://shop.test/welcome",
                settings={"landing_rate_limits": {"invites_per_minute": 1000}})


def from_ip(monkeypatch: pytest.MonkeyPatch, ip: str) -> None:
    """The client IP API Gateway reports (``requestContext.identity.sourceIp``)."""
    from chalice.local import LambdaEventConverter

    monkeypatch.setattr(LambdaEventConverter, "LOCAL_SOURCE_IP", ip)


def invite(shop: Shop, email: str, ref: str | None = None, context: dict[str, Any] | None = None) -> Reply:
    body: dict[str, Any] = {"email": email}
    if ref:
        body["ref"] = ref
    if context is not None:
        body["context"] = context
    return shop.api.post("/v1/landing/invites", body, key=None,
                         headers={"X-Publishable-Key": shop.program["publishable_key"], "Origin": ORIGIN})


def invited(shop: Shop, email: str, ref: str | None = None, context: dict[str, Any] | None = None) -> dict[str, Any]:
    reply = invite(shop, email, ref, context)
    assert reply.status == 200, reply.body
    return reply.body  # type: ignore[no-any-return]


def first_order(shop: Shop, customer: str) -> dict[str, Any]:
    """The friend's signed first order, a while after the invite; it carries no context of its own."""
    CLOCK.set(utc("2026-01-15T12:00:00Z"))
    event = {"type": "order.paid", "occurred_at": "2026-01-15T11:30:00Z", "object": {"type": "order", "id": f"o-{customer}"},
             "customer": {"email": f"{customer}@example.com"}, "order": {"total": 100_000, "currency": "RUB"}}
    return shop.send(event)


def test_invite_context_and_request_ip_are_stored_only_as_keyed_hashes(shop: Shop,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    invited(shop, "loop@example.com")  # the local run's 127.0.0.1 is no signal
    assert signal_items(shop.pid) == []
    from_ip(monkeypatch, "198.51.100.7")
    invited(shop, "anna@example.com", context={"user_agent": UA, "device_id": "dev-anna-1",
                                               "shipping_address": {"city": "Kazan", "address1": "Baumana 5"}})
    pointers = signal_items(shop.pid)
    assert sorted(p["kind"]["S"] for p in pointers) == ["device", "ip", "ip_ua", "shipping"]
    dump = json.dumps(table_dump(), default=repr)
    for raw in ("198.51.100.7", "iPhone", "dev-anna-1", "Baumana", "baumana"):
        assert raw not in dump
    # A context IP wins over the request's (a shop's server calling for its visitor).
    invited(shop, "boris@example.com", context={"ip": "203.0.113.9"})
    ips = [p for p in signal_items(shop.pid) if p["kind"]["S"] == "ip"]
    assert len(ips) == 2 and all(len(json.loads(p["members"]["S"])) == 1 for p in ips)


def test_invalid_invite_context_is_a_422_naming_the_path(shop: Shop) -> None:
    for context, path in (({"ip": "300.1.2.3"}, "$.context.ip"), ({"ssn": "x"}, "$.context"),
                          ({"device_id": "a\u0007b"}, "$.context.device_id")):
        reply = invite(shop, "anna@example.com", context=context)
        assert reply.status in (400, 422), reply.body
        paths = [e["path"] for e in reply.body["error"]["details"].get("errors", [])]
        assert any(p.startswith(path) for p in paths), (context, reply.body)
    assert signal_items(shop.pid) == []


@pytest.mark.parametrize(("context", "reason_code"), [
    ({"device_id": "dev-anna-1"}, "self_referral_device"),
    ({"payment_fingerprint": "pm_fp_anna"}, "self_referral_payment"),
    ({"shipping_address": "Kazan, Baumana 5"}, "self_referral_shipping"),
])
def test_a_friend_invited_from_the_referrers_device_card_or_address_is_rejected(
        shop: Shop, context: dict[str, Any], reason_code: str) -> None:
    anna = invited(shop, "anna@example.com", context=context)  # Anna gets her own link on the landing page
    boris = invite(shop, "boris@example.com", ref=anna["code"], context=context)
    assert boris.status == 200 and boris.body["referral_recorded"] is False  # credits nobody
    reply = first_order(shop, "boris")
    assert (reply["attribution"]["outcome"], reply["attribution"]["reason_code"]) == ("rejected", reason_code)
    assert "(at the invite)" in reply["attribution"]["reason"]
    records = shop.api.get(f"/v1/programs/{shop.pid}/members/{reply['member']['member_id']}/attributions").body
    assert [(r["source"], r["reason_code"]) for r in records["items"]] == [("invite_match", reason_code)]
    anna_id = shop.api.get(f"/v1/programs/{shop.pid}/members/lookup?email=anna@example.com").body["member_id"]
    assert shop.balance(anna_id)["lifetime_earned"] == 0


def test_a_device_of_the_referrers_upline_at_the_invite_is_rejected(shop: Shop) -> None:
    root = invited(shop, "root@example.com", context={"device_id": "dev-root"})
    anna = invited(shop, "anna@example.com", ref=root["code"])
    CLOCK.set(utc("2026-01-15T10:10:00Z"))
    shop.send({"type": "member.signup", "occurred_at": "2026-01-15T10:05:00Z",
               "object": {"type": "customer", "id": "anna"}, "customer": {"email": "anna@example.com"}})
    CLOCK.set(utc("2026-01-15T10:20:00Z"))
    invited(shop, "boris@example.com", ref=anna["code"], context={"device_id": "dev-root"})
    reply = first_order(shop, "boris")
    assert reply["attribution"]["reason_code"] == "self_referral_upline"
    assert "device" in reply["attribution"]["reason"]


def test_a_friend_invited_from_the_referrers_ip_and_browser_is_held_for_review(
        shop: Shop, monkeypatch: pytest.MonkeyPatch) -> None:
    from_ip(monkeypatch, "198.51.100.20")
    anna = invited(shop, "anna@example.com", context={"user_agent": UA})
    boris = invited(shop, "boris@example.com", ref=anna["code"], context={"user_agent": UA})
    assert boris["referral_recorded"] is True
    reply = first_order(shop, "boris")
    assert reply["attribution"]["outcome"] == "credited"
    assert reply["risk"] == {"held": True, "reasons": ["same_network_as_referrer"],
                             "matched": ["at the invite: same IP address and browser as the referrer"]}
    assert {p["status"] for p in reply["rewards"]["postings"]} == {"held"}
    [item] = shop.api.get(f"/v1/programs/{shop.pid}/review").body["items"]
    assert item["reasons"][0]["code"] == "same_network_as_referrer" and "198.51" not in json.dumps(item)


def test_many_friends_of_one_referrer_invited_from_one_ip_are_held(api: ApiClient,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    shop = Shop(api, RULES, landing_url="https://shop.test/welcome",
                settings={"landing_rate_limits": {"invites_per_minute": 1000}, "fraud": {"friends_per_signal": 2}})
    anna = invited(shop, "anna@example.com")  # from the local address: no signal of Anna's
    from_ip(monkeypatch, "198.51.100.30")  # a farm's one address
    for n in range(3):
        invited(shop, f"f{n}@example.com", ref=anna["code"])
    held = [first_order(shop, f"f{n}").get("risk") for n in range(3)]
    assert held[:2] == [None, None]
    assert held[2] == {"held": True, "reasons": ["many_friends_same_signal"],
                       "matched": ["at the invite: many friends of the referrer from the same IP address"]}
