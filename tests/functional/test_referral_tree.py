"""A member's referral tree (issue #12): levels up to max_depth, depth first, paged; the referral list's view only."""

from __future__ import annotations

from typing import Any

import pytest

from tests.functional.test_ledger_support import Shop, utc
from tests.support import CLOCK, ApiClient

#: customer -> referrer customer, in joining order (a new hour each).
TREE = [("anna", None), ("boris", "anna"), ("clara", "anna"), ("dima", "boris"), ("eva", "boris"),
        ("fedor", "dima"), ("gleb", "fedor"), ("hana", "clara")]


@pytest.fixture
def shop(api: ApiClient) -> tuple[Shop, dict[str, dict[str, Any]]]:
    CLOCK.set(utc("2026-01-10T00:00:00Z"))
    shop = Shop(api, None)
    people: dict[str, dict[str, Any]] = {}
    for hour, (name, referrer) in enumerate(TREE):
        people[name] = shop.member(name, people[referrer]["code"] if referrer else None,
                                   at=f"2026-01-10T{hour + 1:02d}:00:00Z")
    return shop, people


def tree(api: ApiClient, shop: Shop, member_id: str, key: str = "operator", **query: Any) -> Any:
    params = "&".join(f"{k}={v}" for k, v in query.items())
    return api.get(f"/v1/programs/{shop.pid}/members/{member_id}/referral-tree?{params}", key=key)


def walk(api: ApiClient, shop: Shop, member_id: str, **query: Any) -> list[dict[str, Any]]:
    items, cursor = [], None
    for _ in range(50):
        reply = tree(api, shop, member_id, **query, **({"cursor": cursor} if cursor else {}))
        assert reply.status == 200, reply.body
        items += reply.body["items"]
        cursor = reply.body["next_cursor"]
        if not cursor:
            return items
    raise AssertionError("the cursor never ended")


def test_the_tree_is_depth_first_newest_first_up_to_the_programs_depth(
        api: ApiClient, shop: tuple[Shop, dict[str, dict[str, Any]]]) -> None:
    s, people = shop
    names = {p["member_id"]: n for n, p in people.items()}
    reply = tree(api, s, people["anna"]["member_id"])
    assert reply.status == 200 and reply.body["max_depth"] == 3 and reply.body["next_cursor"] is None
    got = [(names[i["member_id"]], i["level"], names[i["referrer_id"]]) for i in reply.body["items"]]
    # Gleb is Anna's level 4: beyond the program's max_depth (3).
    assert got == [("clara", 1, "anna"), ("hana", 2, "clara"), ("boris", 1, "anna"), ("eva", 2, "boris"),
                   ("dima", 2, "boris"), ("fedor", 3, "dima")]
    fedor = next(i for i in reply.body["items"] if names[i["member_id"]] == "fedor")
    assert fedor["referrals"] == 1 and fedor["first_name"] is None and fedor["purchased"] is False
    # Only what the one-level list shows, plus the tree's own fields: no e-mail, phone or customer id.
    one_level = api.get(f"/v1/programs/{s.pid}/members/{people['anna']['member_id']}/referrals").body["items"]
    assert set(reply.body["items"][0]) == set(one_level[0]) | {"level", "referrer_id", "referrals"}
    assert "@example.com" not in str(reply.body)
    # Level 1 only is the one-level list; a partner key of the program reads it too.
    first = tree(api, s, people["anna"]["member_id"], key=s.partner["api_key"], max_depth=1).body["items"]
    assert [i["member_id"] for i in first] == [i["member_id"] for i in one_level]
    # A deeper member's tree starts at their own friends.
    assert [names[i["member_id"]] for i in tree(api, s, people["dima"]["member_id"]).body["items"]] == ["fedor", "gleb"]


# Other page sizes (1 and 3) are service logic: tests/service/test_members_query.py::test_tree_pages_cover_it_once.
@pytest.mark.parametrize("limit", [2])
def test_pages_cover_the_tree_once(api: ApiClient, shop: tuple[Shop, dict[str, dict[str, Any]]], limit: int) -> None:
    s, people = shop
    full = tree(api, s, people["anna"]["member_id"]).body["items"]
    paged = walk(api, s, people["anna"]["member_id"], limit=limit)
    assert [i["member_id"] for i in paged] == [i["member_id"] for i in full]


def test_bad_depths_and_cursors_are_400(api: ApiClient, shop: tuple[Shop, dict[str, dict[str, Any]]]) -> None:
    s, people = shop
    anna, boris = people["anna"]["member_id"], people["boris"]["member_id"]
    for depth in (0, 4, 6, "x"):
        reply = tree(api, s, anna, max_depth=depth)
        assert reply.status == 400 and reply.body["error"]["code"] == "invalid_query", (depth, reply.body)
    cursor = tree(api, s, anna, limit=2).body["next_cursor"]
    assert cursor
    assert tree(api, s, boris, limit=2, cursor=cursor).status == 400  # bound to the member
    assert tree(api, s, anna, limit=2, max_depth=2, cursor=cursor).status == 400  # and to the depth
    assert tree(api, s, anna, limit=2, cursor=cursor[:-3] + "abc").status == 400
    assert tree(api, s, "mbr_nobody").status == 404
