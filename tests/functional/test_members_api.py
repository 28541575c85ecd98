"""Member API through chalice.test.Client under moto: lookup, profile, referrals, attributions, vanity codes."""

from __future__ import annotations

import json
from itertools import count
from typing import Any

import pytest

from chalicelib.store import keys
from chalicelib.store.members import CodeItem, LinkItem
from tests.support import ApiClient, Reply

_ids = count(1)
ORIGIN = "https://shop.test"


def send(api: ApiClient, partner: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
    return api.processed(partner, event)


def signup(customer: dict[str, Any], code: str | None = None, at: str = "2026-11-20T10:00:00Z") -> dict[str, Any]:
    event: dict[str, Any] = {"type": "member.signup", "occurred_at": at,
                             "object": {"type": "customer", "id": customer.get("id") or f"o{next(_ids)}"},
                             "customer": customer}
    if code:
        event["referral"] = {"code": code}
    return event


def order(customer: dict[str, Any], order_id: str, code: str | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {"type": "order.paid", "occurred_at": "2026-11-21T10:00:00Z",
                             "object": {"type": "order", "id": order_id}, "customer": customer,
                             "order": {"total": 100_000, "currency": "RUB"}}
    if code:
        event["referral"] = {"code": code}
    return event


class World:
    """A program with two partners, Olga (the ambassador) and two friends she brought."""

    def __init__(self, api: ApiClient) -> None:
        self.api = api
        self.program = api.create_program(landing_url="https://shop.test/", settings={
            "landing_rate_limits": {"invites_per_minute": 1000}})
        self.pid = self.program["program_id"]
        self.partner = api.create_partner(self.pid, name="Coffee")
        self.partner2 = api.create_partner(self.pid, name="Gym")
        olga = send(api, self.partner, signup({"id": "c-olga", "email": "olga.petrova@example.com",
                                               "phone": "+79123456789", "name": "Olga Petrova"}))
        self.olga_id, self.olga_code = olga["member"]["member_id"], olga["member"]["code"]
        send(api, self.partner2, order({"id": "g-olga", "email": "olga.petrova@example.com"}, "g-1"))
        self.friends = []
        for i in range(2):
            reply = send(api, self.partner, signup({"id": f"c-f{i}", "email": f"friend{i}@example.com",
                                                    "name": f"Friend{i} Surname"}, code=self.olga_code,
                                      at=f"2026-11-20T1{i + 1}:00:00Z"))
            self.friends.append(reply["member"]["member_id"])
        send(api, self.partner, order({"id": "c-f0"}, "o-f0"))  # friend 0 buys

    def get(self, path: str, key: str | None = "operator") -> Reply:
        return self.api.get(f"/v1/programs/{self.pid}{path}", key=key)


@pytest.fixture
def world(api: ApiClient) -> World:
    return World(api)


def test_profile_shows_counts_link_and_masks_personal_data(world: World) -> None:
    world.api.get(f"/r/{world.olga_code}?utm_source=tg", key=None)
    world.api.get(f"/r/{world.olga_code}", key=None)
    reply = world.get(f"/members/{world.olga_id}", key=world.partner["api_key"])
    assert reply.status == 200, reply.body
    body = reply.body
    assert body["code"] == world.olga_code and body["link"] == f"https://srf.test/r/{world.olga_code}"
    assert body["first_name"] == "Olga"
    assert body["email"] == "ol***@ex***.com" and body["phone"] == "+7********89"
    assert body["customer_ids"] == {world.partner["partner_id"]: "c-olga"}  # not the gym's id
    assert body["counts"] == {"clicks": 2, "clicks_by_utm_source": {"tg": 1, "-": 1}, "signups": 2,
                              "purchasers": 1, "orders": 1}
    assert body["referrer_id"] is None and body["tier"] == "base" and body["joined_via"] == "signup"
    assert "Petrova" not in json.dumps(body) and "olga.petrova" not in json.dumps(body)
    operator = world.get(f"/members/{world.olga_id}").body
    assert operator["customer_ids"] == {world.partner["partner_id"]: "c-olga", world.partner2["partner_id"]: "g-olga"}
    friend = world.get(f"/members/{world.friends[0]}").body
    assert friend["referrer_id"] == world.olga_id
    assert friend["attribution"]["source"] == "ref_code" and friend["attribution"]["final"] is True


# Normalisation of each identifier (a lower-case code, e-mail case, phone formats) is service logic:
# tests/service/test_members_query.py::test_lookup_by_each_identifier.
@pytest.mark.parametrize(("query", "who"), [
    ("code={code}", "olga"),
    ("email=Olga.Petrova@Example.com", "olga"),
    ("customer_id=c-f1", "friend1"),
])
def test_lookup(world: World, query: str, who: str) -> None:
    q = query.format(code=world.olga_code, code_lower=world.olga_code.lower())
    reply = world.get(f"/members/lookup?{q}", key=world.partner["api_key"])
    assert reply.status == 200, reply.body
    assert reply.body["member_id"] == {"olga": world.olga_id, "friend1": world.friends[1]}[who]


def test_lookup_by_customer_id_is_per_partner(world: World) -> None:
    gym = world.partner2
    assert world.get("/members/lookup?customer_id=g-olga", key=gym["api_key"]).body["member_id"] == world.olga_id
    # The coffee shop's customer ids mean nothing to the gym, and a partner cannot ask for another's.
    assert world.get("/members/lookup?customer_id=c-olga", key=gym["api_key"]).status == 404
    assert world.get(f"/members/lookup?customer_id=c-olga&partner_id={world.partner['partner_id']}",
                     key=gym["api_key"]).status == 403
    operator = world.get(f"/members/lookup?customer_id=c-olga&partner_id={world.partner['partner_id']}")
    assert operator.body["member_id"] == world.olga_id
    missing = world.get("/members/lookup?customer_id=c-olga")
    assert (missing.status, missing.body["error"]["details"]["errors"][0]["path"]) == (422, "$.query.partner_id")
    assert world.get("/members/lookup?customer_id=c-olga&partner_id=ptn_nope").status == 404


@pytest.mark.parametrize(("query", "status", "code"), [
    ("email=nope", 422, "validation_failed"),
    ("phone=123", 422, "validation_failed"),
    ("", 400, "invalid_query"),
    ("email=a@example.com&phone=%2B79123456789", 400, "invalid_query"),
    ("email=unknown@example.com", 404, "not_found"),
    ("code=ABCD2345678", 404, "not_found"),
    ("code=!!", 404, "not_found"),
])
def test_lookup_rejections(world: World, query: str, status: int, code: str) -> None:
    reply = world.get(f"/members/lookup?{query}")
    assert (reply.status, reply.error_code) == (status, code), reply.body


def test_tenancy(world: World) -> None:
    other = world.api.create_program(name="Other")
    other_partner = world.api.create_partner(other["program_id"])
    paths = [f"/members/{world.olga_id}", f"/members/{world.olga_id}/referrals",
             f"/members/{world.olga_id}/attributions", f"/codes/{world.olga_code}/attributions",
             f"/members/lookup?code={world.olga_code}"]
    for path in paths:
        assert world.get(path, key=other_partner["api_key"]).status == 404, path
        assert world.get(path, key=world.program["publishable_key"]).status == 403, path
        assert world.get(path, key=None).status == 401, path
        assert world.get(path, key=world.partner["api_key"]).status == 200, path
    # A member id of this program asked through another program's path: not found.
    assert world.api.get(f"/v1/programs/{other['program_id']}/members/{world.olga_id}").status == 404
    assert world.api.get(f"/v1/programs/prg_nope/members/{world.olga_id}").status == 404
    assert world.get("/members/mbr_nope").status == 404
    assert world.get("/members/mbr_nope/referrals").status == 404
    assert world.get("/members/mbr_nope/attributions").status == 404


def test_referrals_are_paged_newest_first(world: World) -> None:
    page1 = world.get(f"/members/{world.olga_id}/referrals?limit=1")
    assert page1.status == 200, page1.body
    page2 = world.get(f"/members/{world.olga_id}/referrals?limit=1&cursor={page1.body['next_cursor']}")
    seen = page1.body["items"] + page2.body["items"]
    assert [r["member_id"] for r in seen] == world.friends[::-1]
    assert seen[1]["purchased"] is True and seen[0]["purchased"] is False
    assert seen[0]["first_name"] == "Friend1" and "email" not in seen[0]
    if page2.body["next_cursor"]:
        assert world.get(f"/members/{world.olga_id}/referrals?cursor={page2.body['next_cursor']}").body["items"] == []
    # A cursor of someone else's list is refused.
    forged = world.get(f"/members/{world.friends[0]}/referrals?cursor={page1.body['next_cursor']}")
    assert (forged.status, forged.error_code) == (400, "invalid_cursor")
    assert world.get(f"/members/{world.olga_id}/referrals?limit=0").status == 400


def test_attribution_records_per_member_and_per_code(world: World) -> None:
    records = world.get(f"/members/{world.friends[0]}/attributions").body["items"]
    assert [(r["outcome"], r["reason_code"], r["code"], r["referrer_id"], r["event_type"]) for r in records] == [
        ("credited", "credited", world.olga_code, world.olga_id, "member.signup")]
    assert records[0]["reason"]
    by_code = world.get(f"/codes/{world.olga_code.lower()}/attributions?limit=1")
    assert by_code.status == 200
    assert by_code.body["member_id"] == world.olga_id
    page2 = world.get(f"/codes/{world.olga_code}/attributions?limit=5&cursor={by_code.body['next_cursor']}")
    items = by_code.body["items"] + page2.body["items"]
    assert sorted(r["member_id"] for r in items) == sorted(world.friends)
    assert all(r["reason_code"] == "credited" for r in items)


def test_attributions_of_an_unknown_code(world: World) -> None:
    assert world.get("/codes/ABCD2345678/attributions").status == 404
    # Once an event named it, the rejection is readable by code.
    send(world.api, world.partner, signup({"email": "lost@example.com"}, code="ZZZZ-2345"))
    reply = world.get("/codes/zzzz2345/attributions")
    assert reply.status == 200, reply.body
    assert reply.body["member_id"] is None
    assert [(r["outcome"], r["reason_code"]) for r in reply.body["items"]] == [("rejected", "unknown_code")]


# --------------------------------------------------------------------------- vanity codes


def put_code(world: World, member_id: str, code: Any, key: str | None = "operator") -> Reply:
    return world.api.put(f"/v1/programs/{world.pid}/members/{member_id}/code", {"code": code}, key=key)


def test_vanity_code_replaces_the_code_and_the_old_one_keeps_working(world: World) -> None:
    old = world.olga_code
    reply = put_code(world, world.olga_id, "olga-2026")
    assert reply.status == 200, reply.body
    assert (reply.body["code"], reply.body["previous_codes"]) == ("OLGA2026", [old])
    assert reply.body["link"] == "https://srf.test/r/OLGA2026"
    pointer = CodeItem.get(*keys.referral_code(world.pid, "OLGA2026"))
    assert (pointer.member_id, pointer.vanity, pointer.first_name) == (world.olga_id, True, "Olga")
    # Both links lead to Olga's landing; both codes still credit her.
    for code in ("OLGA2026", old):
        assert world.api.get(f"/r/{code}", key=None).headers["location"] == f"https://shop.test/?ref={code}"
    friend = send(world.api, world.partner, signup({"email": "late@example.com"}, code=old))
    assert friend["attribution"]["referrer_id"] == world.olga_id
    friend2 = send(world.api, world.partner, signup({"email": "new@example.com"}, code="OLGA-2026"))
    assert friend2["attribution"]["referrer_id"] == world.olga_id
    assert world.get("/members/lookup?code=olga2026").body["member_id"] == world.olga_id
    assert world.get(f"/members/lookup?code={old}").body["member_id"] == world.olga_id
    # Same code again: nothing to do; back to the old code: allowed, it is hers.
    assert put_code(world, world.olga_id, "OLGA2026").status == 200
    back = put_code(world, world.olga_id, old)
    assert (back.status, back.body["code"], back.body["previous_codes"]) == (200, old, ["OLGA2026"])


def test_vanity_code_taken_in_any_program_is_409(world: World) -> None:
    assert put_code(world, world.olga_id, "ANNA-2026").status == 200
    taken = put_code(world, world.friends[0], "anna2026")
    assert (taken.status, taken.error_code) == (409, "code_taken")
    # Someone else's generated code, and a code of another program (links share one domain).
    assert put_code(world, world.friends[0], world.olga_code).status == 409
    other = world.api.create_program(name="Other")
    other_member = send(world.api, world.api.create_partner(other["program_id"]),
                        signup({"email": "x@example.com"}))["member"]
    reply = world.api.put(f"/v1/programs/{other['program_id']}/members/{other_member['member_id']}/code",
                          {"code": "ANNA2026"})
    assert (reply.status, reply.error_code) == (409, "code_taken")
    assert CodeItem.get(*keys.referral_code(world.pid, "ANNA2026")).member_id == world.olga_id
    assert LinkItem.get(*keys.short_link("ANNA2026")).program_id == world.pid


# The rules of a vanity code (length, spaces, reserved words, dashes) are domain logic: tests/unit/test_codes.py
# and tests/service/test_members_query.py; here, one refused by the rules and one by the schema.
@pytest.mark.parametrize("code", ["ab", 42])
def test_invalid_vanity_code_is_422(world: World, code: Any) -> None:
    reply = put_code(world, world.olga_id, code)
    assert (reply.status, reply.error_code) == (422, "validation_failed"), reply.body
    assert reply.body["error"]["details"]["errors"][0]["path"] == "$.code"


def test_only_the_operator_sets_vanity_codes(world: World) -> None:
    assert put_code(world, world.olga_id, "OLGA2026", key=world.partner["api_key"]).status == 403
    assert put_code(world, world.olga_id, "OLGA2026", key=world.program["publishable_key"]).status == 403
    assert put_code(world, "mbr_nope", "OLGA2026").status == 404
    assert world.api.put(f"/v1/programs/prg_nope/members/{world.olga_id}/code", {"code": "OLGA2026"}).status == 404
