"""The member API's reads and the vanity-code change on the in-memory ports: no moto, no table.

Through the API under moto (the routes, cursors, the tenant matrix): tests/functional/test_members_api.py,
test_referral_tree.py, test_tenant_isolation.py; the fakes are held to DynamoDB's behaviour by
tests/contract/test_ports.py.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from chalicelib.domain.errors import BadRequest, Conflict, Forbidden, NotFound, ServiceUnavailable, ValidationFailed
from chalicelib.services import members_query, ports
from chalicelib.services.auth import Principal
from chalicelib.services.ports import StaleMember
from chalicelib.store import fakes
from tests import ports_support as support

PID = "prg_1"
OPERATOR = Principal(kind="operator")
PARTNER = Principal(kind="partner", program_id=PID, partner_id="ptn_1")
PARTNER_2 = Principal(kind="partner", program_id=PID, partner_id="ptn_2")
TIERS = {"levels": [{"id": "base", "threshold": 0}, {"id": "silver", "threshold": 100}],
         "metric": "points_earned", "period_months": 12}


@pytest.fixture
def deps() -> ports.Ports:
    deps = ports.fakes(support.NOW)
    anna = support.member(PID, "anna", name="Anna Petrova", email="anna.petrova@example.com", phone="+79991234567",
                          customer_ids={"ptn_1": "c-1", "ptn_2": "c-2"})
    fakes.seed(deps, support.program(PID, default_locale="ru"), support.partner(PID, "ptn_1"),
               support.partner(PID, "ptn_2"), anna, support.code_pointer(PID, "CODEANNA", "anna", "Anna"),
               *support.identities(anna, email="anna.petrova@example.com", phone="+79991234567",
                                   customer_id=("ptn_1", "c-1")),
               *support.identities(anna, customer_id=("ptn_2", "c-2")),
               support.program("prg_2"), support.member("prg_2", "zed"))
    return deps


def _seed(deps: ports.Ports, *items: Any) -> None:
    fakes.seed(deps, *items)


# --------------------------------------------------------------------------- profile and lookup


def test_the_profile_masks_personal_data_and_shows_a_partner_only_its_own_customer_id(deps: ports.Ports) -> None:
    body = members_query.get_member(deps, PARTNER, PID, "anna")
    assert body["first_name"] == "Anna" and "Petrova" not in str(body)
    assert body["email"] == "an***@ex***.com"
    assert body["phone"] != "+79991234567" and body["phone"].endswith("67")
    assert body["customer_ids"] == {"ptn_1": "c-1"}
    assert members_query.get_member(deps, OPERATOR, PID, "anna")["customer_ids"] == {"ptn_1": "c-1", "ptn_2": "c-2"}
    assert body["link"].endswith("/r/CODEANNA") and body["tier_status"] is None


def test_counts_add_clicks_of_every_code_and_purchases_from_the_balance(deps: ports.Ports) -> None:
    anna = deps.members.get(PID, "anna")
    assert anna is not None
    deps.members.change_code(anna, "SUNNY")
    _seed(deps, support.click_total(PID, "CODEANNA", 5, email=3, vk=2), support.click_total(PID, "SUNNY", 2, vk=2),
          support.balance(PID, "anna", orders_count=1, converted_referrals=2))
    body = members_query.get_member(deps, OPERATOR, PID, "anna")
    assert body["code"] == "SUNNY" and body["previous_codes"] == ["CODEANNA"]
    assert body["counts"]["clicks"] == 7 and body["counts"]["clicks_by_utm_source"] == {"email": 3, "vk": 4}
    assert (body["counts"]["orders"], body["counts"]["purchasers"]) == (1, 2)
    assert body["attribution"]["final"] is True  # a purchase makes it final


def test_an_erased_members_counts_come_from_the_erasure_record(deps: ports.Ports) -> None:
    from chalicelib.store import keys
    from chalicelib.store.data_rights import ErasureItem

    gone = support.member(PID, "gone")
    gone.code, gone.erased_at = "ERASED", support.NOW
    pk, sk = keys.erasure_record(PID, "gone")
    _seed(deps, gone, ErasureItem(PK=pk, SK=sk, program_id=PID, member_id="gone", status="done",
                                  requested_by="operator", requested_at=support.NOW, codes=["OLDCODE"]),
          support.click_total(PID, "OLDCODE", 4), support.click_total(PID, "ERASED", 100))
    assert members_query.get_member(deps, OPERATOR, PID, "gone")["counts"]["clicks"] == 4


def test_the_tier_status_when_the_program_has_tiers(deps: ports.Ports) -> None:
    month = support.NOW.strftime("%Y-%m")
    _seed(deps, support.program(PID, default_locale="ru", settings={"tiers": TIERS}),
          support.tier_state(PID, "anna", "silver", **{month: 150}), support.tier_change(PID, "anna", 1))
    status = members_query.get_member(deps, OPERATOR, PID, "anna")["tier_status"]
    assert (status["tier"], status["value"], status["next"]) == ("silver", 150, None)
    assert [c["change_id"] for c in status["history"]] == ["tc_0001"]
    deps.clock.advance(days=400)  # type: ignore[attr-defined]  # the period rolled past the bucket
    assert members_query.get_member(deps, OPERATOR, PID, "anna")["tier_status"]["value"] == 0


@pytest.mark.parametrize("params", [{"code": "codeanna"}, {"email": "Anna.Petrova@Example.com"},
                                    {"phone": "8 999 123-45-67"}, {"customer_id": "c-1"}])
def test_lookup_by_each_identifier(deps: ports.Ports, params: dict[str, str]) -> None:
    assert members_query.lookup(deps, PARTNER, PID, params)["member_id"] == "anna"


def test_lookup_by_customer_id_is_per_partner(deps: ports.Ports) -> None:
    assert members_query.lookup(deps, PARTNER_2, PID, {"customer_id": "c-2"})["member_id"] == "anna"
    with pytest.raises(NotFound):
        members_query.lookup(deps, PARTNER_2, PID, {"customer_id": "c-1"})  # ptn_1's customer id
    with pytest.raises(Forbidden):
        members_query.lookup(deps, PARTNER_2, PID, {"customer_id": "c-1", "partner_id": "ptn_1"})
    assert members_query.lookup(deps, OPERATOR, PID, {"customer_id": "c-1", "partner_id": "ptn_1"})["member_id"] == "anna"
    with pytest.raises(ValidationFailed):
        members_query.lookup(deps, OPERATOR, PID, {"customer_id": "c-1"})
    with pytest.raises(NotFound):
        members_query.lookup(deps, OPERATOR, PID, {"customer_id": "c-1", "partner_id": "ptn_9"})  # no such partner


def test_lookup_rejections(deps: ports.Ports) -> None:
    with pytest.raises(BadRequest):
        members_query.lookup(deps, PARTNER, PID, {"code": "CODEANNA", "email": "a@example.com"})
    with pytest.raises(BadRequest):
        members_query.lookup(deps, PARTNER, PID, {})
    with pytest.raises(NotFound):
        members_query.lookup(deps, PARTNER, PID, {"code": "NOSUCHCODE"})
    with pytest.raises(Forbidden):
        members_query.lookup(deps, Principal(kind="publishable", program_id=PID), PID, {"code": "CODEANNA"})


def test_another_programs_key_sees_nothing(deps: ports.Ports) -> None:
    stranger = Principal(kind="partner", program_id="prg_2", partner_id="ptn_9")
    for call in (lambda: members_query.get_member(deps, stranger, PID, "anna"),
                 lambda: members_query.lookup(deps, stranger, PID, {"code": "CODEANNA"}),
                 lambda: members_query.referrals(deps, stranger, PID, "anna", 10, None),
                 lambda: members_query.member_attributions(deps, stranger, PID, "anna", 10, None),
                 lambda: members_query.get_member(deps, PARTNER, "prg_2", "zed")):
        with pytest.raises(NotFound):
            call()
    with pytest.raises(NotFound):
        members_query.get_member(deps, OPERATOR, PID, "zed")  # zed is prg_2's


# --------------------------------------------------------------------------- referrals and the tree


def test_referrals_page_newest_first_and_say_who_purchased(deps: ports.Ports) -> None:
    _seed(deps, *(support.referred(PID, f"f{n}", "anna", n, name=f"Friend{n} Surname") for n in range(5)),
          support.balance(PID, "f3", orders_count=1))
    first = members_query.referrals(deps, PARTNER, PID, "anna", 3, None)
    assert [i["member_id"] for i in first["items"]] == ["f4", "f3", "f2"]
    assert [i["purchased"] for i in first["items"]] == [False, True, False]
    assert first["items"][0]["first_name"] == "Friend4"
    rest = members_query.referrals(deps, PARTNER, PID, "anna", 3, first["next_cursor"])
    assert [i["member_id"] for i in rest["items"]] == ["f1", "f0"] and rest["next_cursor"] is None
    with pytest.raises(NotFound):
        members_query.referrals(deps, PARTNER, PID, "nobody", 3, None)


@pytest.fixture
def tree(deps: ports.Ports) -> ports.Ports:
    """anna → a1 (→ b1, b2 (→ c1)), a2; anna's program allows three levels."""
    _seed(deps, support.program(PID, settings={"max_depth": 3}),
          support.referred(PID, "a1", "anna", 1, referral_signups=2), support.referred(PID, "a2", "anna", 2),
          support.referred(PID, "b1", "a1", 3), support.referred(PID, "b2", "a1", 4, referral_signups=1),
          support.referred(PID, "c1", "b2", 5), support.balance(PID, "c1", orders_count=1))
    return deps


def test_the_tree_is_depth_first_newest_first(tree: ports.Ports) -> None:
    body = members_query.referral_tree(tree, PARTNER, PID, "anna", None, 50, None)
    assert [(i["member_id"], i["level"], i["referrer_id"]) for i in body["items"]] == [
        ("a2", 1, "anna"), ("a1", 1, "anna"), ("b2", 2, "a1"), ("c1", 3, "b2"), ("b1", 2, "a1")]
    assert body["max_depth"] == 3 and body["next_cursor"] is None
    assert [i["purchased"] for i in body["items"]] == [False, False, False, True, False]
    shallow = members_query.referral_tree(tree, PARTNER, PID, "anna", 1, 50, None)
    assert [i["member_id"] for i in shallow["items"]] == ["a2", "a1"]


@pytest.mark.parametrize("limit", [1, 2, 3])
def test_tree_pages_cover_it_once(tree: ports.Ports, limit: int) -> None:
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        body = members_query.referral_tree(tree, PARTNER, PID, "anna", None, limit, cursor)
        assert len(body["items"]) <= limit
        seen += [i["member_id"] for i in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == ["a2", "a1", "b2", "c1", "b1"]


def test_tree_depths_and_cursors_are_checked(tree: ports.Ports) -> None:
    with pytest.raises(BadRequest):
        members_query.referral_tree(tree, PARTNER, PID, "anna", 4, 10, None)  # above the program's max_depth
    first = members_query.referral_tree(tree, PARTNER, PID, "anna", None, 1, None)
    with pytest.raises(BadRequest):  # a cursor is bound to the member and the depth
        members_query.referral_tree(tree, PARTNER, PID, "anna", 2, 1, first["next_cursor"])
    with pytest.raises(BadRequest):
        members_query.referral_tree(tree, PARTNER, PID, "a1", None, 1, first["next_cursor"])


# --------------------------------------------------------------------------- attribution records


def test_attribution_records_per_member_and_per_code(deps: ports.Ports) -> None:
    _seed(deps, *(support.attribution(PID, "f1", n) for n in range(3)),
          support.attribution(PID, "f2", 4, code="GHOST", outcome="rejected"))
    mine = members_query.member_attributions(deps, PARTNER, PID, "anna", 10, None)
    assert mine == {"items": [], "next_cursor": None}
    _seed(deps, support.member(PID, "f1"))
    first = members_query.member_attributions(deps, PARTNER, PID, "f1", 2, None)
    assert [r["record_id"] for r in first["items"]] == ["ar_0002", "ar_0001"] and first["next_cursor"]
    by_code = members_query.code_attributions(deps, PARTNER, PID, "codeanna", 10, None)
    assert by_code["member_id"] == "anna" and len(by_code["items"]) == 3
    ghost = members_query.code_attributions(deps, PARTNER, PID, "ghost", 10, None)
    assert ghost["member_id"] is None and ghost["items"][0]["outcome"] == "rejected"
    with pytest.raises(NotFound):
        members_query.code_attributions(deps, PARTNER, PID, "NOBODYSCODE", 10, None)
    with pytest.raises(NotFound):
        members_query.code_attributions(deps, PARTNER, PID, "not a code!", 10, None)


# --------------------------------------------------------------------------- vanity codes


def test_a_vanity_code_replaces_the_code_and_is_idempotent(deps: ports.Ports) -> None:
    body = members_query.set_vanity_code(deps, OPERATOR, PID, "anna", {"code": "anna-2024"})
    assert body["code"] == "ANNA2024" and body["previous_codes"] == ["CODEANNA"]  # case and dashes do not count
    assert members_query.lookup(deps, OPERATOR, PID, {"code": "codeanna"})["member_id"] == "anna"
    again = members_query.set_vanity_code(deps, OPERATOR, PID, "anna", {"code": "ANNA-2024"})
    assert again == body


def test_a_vanity_code_someone_holds_is_409_and_bad_ones_422(deps: ports.Ports) -> None:
    _seed(deps, support.member(PID, "boris"))
    members_query.set_vanity_code(deps, OPERATOR, PID, "anna", {"code": "SUNNY-DAY"})
    with pytest.raises(Conflict) as taken:
        members_query.set_vanity_code(deps, OPERATOR, PID, "boris", {"code": "sunny-day"})
    assert taken.value.code == "code_taken"
    for bad in ("x", "a" * 30, "has space", "admin", "my-admin-code", "x--y"):
        with pytest.raises(ValidationFailed) as invalid:
            members_query.set_vanity_code(deps, OPERATOR, PID, "boris", {"code": bad})
        assert invalid.value.details["errors"][0]["path"] == "$.code"
    with pytest.raises(NotFound):
        members_query.set_vanity_code(deps, OPERATOR, PID, "nobody", {"code": "FRESH-CODE"})


def test_a_concurrent_change_is_retried_and_endless_contention_is_a_503(deps: ports.Ports,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    real = deps.members.change_code
    calls = {"n": 0}

    def stale_once(member: Any, code: str) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise StaleMember()
        real(member, code)

    monkeypatch.setattr(deps.members, "change_code", stale_once)
    assert members_query.set_vanity_code(deps, OPERATOR, PID, "anna", {"code": "RETRY-ME"})["code"] == "RETRYME"
    assert calls["n"] == 2

    def always_stale(member: Any, code: str) -> None:
        raise StaleMember()

    monkeypatch.setattr(deps.members, "change_code", always_stale)
    with pytest.raises(ServiceUnavailable):
        members_query.set_vanity_code(deps, OPERATOR, PID, "anna", {"code": "NEVER-MINE"})


def test_times_come_from_the_records(deps: ports.Ports) -> None:
    _seed(deps, support.referred(PID, "f0", "anna", 0))
    item = members_query.referrals(deps, PARTNER, PID, "anna", 1, None)["items"][0]
    assert item["joined_at"] == (support.NOW + timedelta(minutes=0)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
