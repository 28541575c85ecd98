"""Property: no import chunk causes a 5xx, whatever the rows say and whatever the named member's profile holds.

The world: a program with a partner and a member who signed up (e-mail, customer id), then changed her code and
holds a coupon, so her profile's ``pointer_keys`` mix identity, code and coupon keys; each example adds odd keys
to that list and sends rows built from her identifiers, other people's and arbitrary text. The answer is 200
(bad rows reported) or a 4xx with its error.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import fresh_table, moto_aws, restore_table, table_snapshot
from tests.functional.test_ledger_support import Shop, utc
from tests.support import CLOCK, ApiClient


class World:
    def __init__(self, api: ApiClient) -> None:
        CLOCK.set(utc("2026-01-15T12:00:00Z"))
        self.api = api
        self.shop = Shop(api, None)
        self.member = self.shop.member("fz")  # fz@example.com, the partner's customer fz
        path = f"/v1/programs/{self.shop.pid}/members/{self.member['member_id']}"
        assert api.put(f"{path}/code", {"code": "VANITY-FZ"}).status == 200
        assert api.put(f"{path}/coupons/fz-500", key=self.shop.partner["api_key"]).status == 200
        self.snapshot = table_snapshot()


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    """Module scope: one moto for the examples (Hypothesis refuses function-scoped fixtures shared by examples);
    each example restores the table."""
    with moto_aws(), fresh_table() as api:
        yield World(api)


def odd_pointer_keys(pid: str) -> st.SearchStrategy[list[str]]:
    shaped = st.sampled_from([
        f"CODE#{pid}#OTHER-1|CODE", f"COUPON#{pid}#x-1|COUPON", f"IDENT#{pid}#email|IDENT", f"IDENT#{pid}#|IDENT",
        f"IDENT#{pid}#email#|IDENT", f"IDENT#{pid}##|IDENT", "IDENT#prg_other#email#abc|IDENT", "", "|", "#",
        f"IDENT#{pid}#phone#deadbeef", f"INVITE#{pid}#email#abc|INVITE"])
    return st.lists(shaped | st.text(max_size=30), max_size=4)


CELLS = st.sampled_from(["", "fz@example.com", "FZ@Example.com", "fz", "+79161110010", "other@example.com",
                         "VANITY-FZ", "0", "100", "-5", "1.5", "not an email", '"', "a,b", "\u0000"]) | st.text(max_size=12)
COLUMNS = ["email", "phone", "customer_id", "code", "opening_balance", "referrer_code", "referrer_customer_id",
           "name", "birthday"]


def csv_cell(text: str) -> str:
    return '"' + text.replace('"', '""') + '"' if any(c in text for c in ',"\n\r') else text


@settings(max_examples=30, deadline=None, derandomize=True)
@given(data=st.data())
def test_no_import_chunk_causes_a_5xx(world: World, data: st.DataObject) -> None:
    from chalicelib.store import keys
    from chalicelib.store.members import MemberItem

    restore_table(world.snapshot)
    pid = world.shop.pid
    profile = MemberItem.get(*keys.member(pid, world.member["member_id"]))
    extra = data.draw(odd_pointer_keys(pid))
    if extra:
        profile.update(actions=[MemberItem.pointer_keys.set([*(profile.pointer_keys or []), *extra])])
    columns = data.draw(st.lists(st.sampled_from(COLUMNS), min_size=1, max_size=5, unique=True))
    rows = data.draw(st.lists(st.lists(CELLS, min_size=len(columns), max_size=len(columns)), min_size=1, max_size=4))
    text = ",".join(columns) + "\n" + "".join(",".join(csv_cell(c) for c in row) + "\n" for row in rows)
    body: dict[str, Any] = {"csv": text, "partner_id": world.shop.partner["partner_id"],
                            "include_erased": data.draw(st.booleans())}
    reply = world.api.post(f"/v1/programs/{pid}/imports/members", body)
    assert reply.status == 200 or 400 <= reply.status < 500, (reply.status, reply.body, text, extra)
    if reply.status != 200:
        assert set(reply.body["error"]) >= {"code", "message", "details"}
