"""Operator administration (programs, partners, keys, webhook secrets) on the in-memory ports: no moto.

Through the API under moto: tests/functional/test_admin.py, the route contracts and the tenant matrix; the fakes
are held to DynamoDB's behaviour by tests/contract/test_ports.py (revisions, conditions, pages, key clashes).
"""

from __future__ import annotations

from typing import Any

import pytest

from chalicelib.domain.errors import Conflict, Forbidden, NotFound, ValidationFailed
from chalicelib.domain.validation import validate
from chalicelib.services import auth, ports, programs
from chalicelib.services.auth import Principal
from chalicelib.store import fakes
from tests import ports_support as support

OPERATOR = Principal(kind="operator")


@pytest.fixture
def deps() -> ports.Ports:
    return ports.fakes(support.NOW)


def _program(deps: ports.Ports, **body: Any) -> dict[str, Any]:
    return programs.create_program(deps, OPERATOR, validate(programs.PROGRAM_CREATE_SCHEMA, {"name": "Coffee",
                                                                                             **body}))


def _partner(deps: ports.Ports, program_id: str, **body: Any) -> dict[str, Any]:
    return programs.create_partner(deps, OPERATOR, program_id, validate(programs.PARTNER_CREATE_SCHEMA,
                                                                         {"name": "Shop", **body}))


def test_a_program_comes_with_a_publishable_key_that_authenticates_once_stored(deps: ports.Ports) -> None:
    created = _program(deps, landing_url="https://coffee.example/join", allowed_origins=["https://coffee.example"])
    assert created["created_at"] == "2026-11-23T10:00:00.000000Z" and created["rules_version"] == 0
    assert created["publishable_key"].startswith(auth.PUBLISHABLE_PREFIX)
    info = created["publishable_key_info"]
    assert (info["kind"], info["program_id"], info["revoked"]) == ("publishable", created["program_id"], False)
    assert created["publishable_key"] not in str(programs.list_keys(deps, OPERATOR, created["program_id"]))
    stored = deps.programs.api_key(auth.hash_key(created["publishable_key"]))
    assert stored is not None and stored.kind == "publishable"
    assert programs.get_program(deps, OPERATOR, created["program_id"])["allowed_origins"] == ["https://coffee.example"]


def test_programs_page_newest_first_and_a_partner_sees_only_its_own(deps: ports.Ports) -> None:
    ids = []
    for _ in range(3):
        ids.append(_program(deps)["program_id"])
        deps.clock.advance(minutes=1)  # type: ignore[attr-defined]
    first = programs.list_programs(deps, OPERATOR, 2, None)
    assert [p["program_id"] for p in first["items"]] == ids[:0:-1] and first["next_cursor"] is not None
    rest = programs.list_programs(deps, OPERATOR, 2, first["next_cursor"])
    assert [p["program_id"] for p in rest["items"]] == ids[:1] and rest["next_cursor"] is None
    partner = Principal(kind="partner", program_id=ids[1], partner_id="ptn_1")
    assert [p["program_id"] for p in programs.list_programs(deps, partner, 100, None)["items"]] == [ids[1]]
    with pytest.raises(NotFound):  # another tenant's program does not exist for the partner
        programs.get_program(deps, partner, ids[0])
    with pytest.raises(NotFound):
        programs.get_program(deps, OPERATOR, "prg_nobody")


def test_an_update_merges_settings_and_refuses_what_may_not_change(deps: ports.Ports) -> None:
    pid = _program(deps, landing_url="https://coffee.example/", settings={"max_depth": 2})["program_id"]
    updated = programs.update_program(deps, OPERATOR, pid, {"name": "Tea", "landing_url": None,
                                                            "settings": {"expiry_months": 12}})
    assert (updated["name"], updated["landing_url"]) == ("Tea", None)
    assert updated["settings"] == {"max_depth": 2, "expiry_months": 12}
    with pytest.raises(ValidationFailed) as fixed:
        programs.update_program(deps, OPERATOR, pid, {"settings": {"max_depth": 3}})
    assert fixed.value.details["errors"][0]["path"] == "$.settings.max_depth"
    with pytest.raises(ValidationFailed):  # the birthday gift names a partner the program does not have
        programs.update_program(deps, OPERATOR, pid, {"settings": {"birthday_gift": {"points": 10,
                                                                                    "funded_by": "ptn_nobody"}}})
    with pytest.raises(ValidationFailed):  # ... or an offer that does not exist
        programs.update_program(deps, OPERATOR, pid, {"settings": {"birthday_gift": {
            "offer": {"partner_id": "ptn_1", "offer_id": "off_nobody"}}}})
    assert programs.get_program(deps, OPERATOR, pid)["settings"] == {"max_depth": 2, "expiry_months": 12}
    with pytest.raises(NotFound):
        programs.update_program(deps, OPERATOR, "prg_nobody", {"name": "X"})


def test_an_update_from_a_stale_read_is_a_conflict(deps: ports.Ports) -> None:
    pid = _program(deps)["program_id"]
    stale = deps.programs.get(pid, fresh=True)
    programs.update_program(deps, OPERATOR, pid, {"name": "Tea"})
    with pytest.raises(Conflict) as raced:
        deps.programs.update_program(stale, {"name": "Late"})
    assert raced.value.code == "concurrent_update"
    assert programs.get_program(deps, OPERATOR, pid)["name"] == "Tea"


def test_a_partner_gets_a_key_and_its_secrets_once_and_pages_within_its_program(deps: ports.Ports) -> None:
    pid, other = _program(deps)["program_id"], _program(deps)["program_id"]
    created = [_partner(deps, pid, name=f"Shop {n}") for n in range(3)]
    _partner(deps, other)
    first = created[0]
    assert first["api_key"].startswith(auth.PARTNER_PREFIX) and first["api_key_info"]["kind"] == "partner"
    assert first["webhook_secrets"] == {"events": deps.secrets.webhook_secret(pid, first["partner_id"], "events", 1)}
    assert first["webhook_sources"] == {"events": [{"version": 1, "created_at": "2026-11-23T10:00:00.000000Z",
                                                    "expires_at": None}]}
    listed: list[str] = []
    cursor = None
    for _ in range(3):
        page = programs.list_partners(deps, OPERATOR, pid, 2, cursor)
        assert len(page["items"]) <= 2
        listed += [p["partner_id"] for p in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(listed) == sorted(p["partner_id"] for p in created)  # none of the other program's
    with pytest.raises(NotFound):
        _partner(deps, "prg_nobody")
    with pytest.raises(NotFound):
        programs.get_partner(deps, OPERATOR, other, first["partner_id"])


def test_a_partner_changes_itself_but_not_another_partner(deps: ports.Ports) -> None:
    pid = _program(deps)["program_id"]
    anna, boris = _partner(deps, pid)["partner_id"], _partner(deps, pid)["partner_id"]
    itself = Principal(kind="partner", program_id=pid, partner_id=anna)
    changed = programs.update_partner(deps, itself, pid, anna, {"contact_email": "ops@shop.example"})
    assert changed["contact_email"] == "ops@shop.example"
    assert programs.update_partner(deps, itself, pid, anna, {"contact_email": None})["contact_email"] is None
    with pytest.raises(Forbidden):
        programs.update_partner(deps, itself, pid, boris, {"name": "Mine now"})
    with pytest.raises(NotFound):
        programs.update_partner(deps, Principal(kind="partner", program_id="prg_x", partner_id=anna), pid, anna,
                                {"name": "X"})
    assert programs.get_partner(deps, OPERATOR, pid, boris)["name"] == "Shop"


def test_a_rotation_adds_a_version_and_keeps_the_old_one_for_the_overlap(deps: ports.Ports) -> None:
    pid = _program(deps)["program_id"]
    ptn = _partner(deps, pid)["partner_id"]
    deps.clock.advance(hours=1)  # type: ignore[attr-defined]
    rotated = programs.rotate_webhook_secret(deps, OPERATOR, pid, ptn, "events")
    assert rotated["version"] == 2 and rotated["secret"] == deps.secrets.webhook_secret(pid, ptn, "events", 2)
    assert rotated["previous_versions_valid_until"] is not None
    versions = programs.get_partner(deps, OPERATOR, pid, ptn)["webhook_sources"]["events"]
    assert [v["version"] for v in versions] == [1, 2]
    with pytest.raises(NotFound):
        programs.rotate_webhook_secret(deps, OPERATOR, pid, ptn, "shopify")


def test_keys_are_issued_listed_in_bounded_pages_and_revoked_only_by_their_owner(deps: ports.Ports) -> None:
    pid = _program(deps)["program_id"]
    anna, boris = _partner(deps, pid)["partner_id"], _partner(deps, pid)["partner_id"]
    as_anna = Principal(kind="partner", program_id=pid, partner_id=anna)
    extra = programs.create_partner_key(deps, as_anna, pid, anna)
    with pytest.raises(Forbidden):
        programs.create_partner_key(deps, Principal(kind="publishable", program_id=pid, partner_id=anna), pid, anna)
    with pytest.raises(Forbidden):
        programs.create_partner_key(deps, as_anna, pid, boris)
    seen: list[str] = []
    cursor = None
    for _ in range(5):
        page = programs.list_keys(deps, OPERATOR, pid, 2, cursor)
        assert len(page["items"]) <= 2
        seen += [k["key_id"] for k in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 4  # publishable + two partners' + the extra one
    boris_key = next(k for k in programs.list_keys(deps, OPERATOR, pid, 100, None)["items"] if k["partner_id"] == boris)
    with pytest.raises(NotFound):  # another partner's key does not exist for anna
        programs.revoke_key(deps, as_anna, pid, boris_key["key_id"])
    revoked = programs.revoke_key(deps, as_anna, pid, extra["api_key_info"]["key_id"])
    assert revoked["revoked"] is True
    stored = deps.programs.api_key(auth.hash_key(extra["api_key"]))
    assert stored is not None and stored.revoked
    with pytest.raises(NotFound):
        programs.revoke_key(deps, OPERATOR, pid, "key_nobody")


def test_a_birthday_gift_may_name_an_existing_partner_and_offer(deps: ports.Ports) -> None:
    from chalicelib.store import keys
    from chalicelib.store.offers import OfferItem

    pid = _program(deps)["program_id"]
    ptn = _partner(deps, pid)["partner_id"]
    pk, sk = keys.offer(pid, ptn, "off_1")
    fakes.seed(deps, OfferItem(PK=pk, SK=sk, program_id=pid, partner_id=ptn, offer_id="off_1", name="Coffee",
                               kind="free_item", item="coffee", code_source="static", created_at=support.NOW,
                               updated_at=support.NOW))
    gift = {"points": 50, "funded_by": ptn, "offer": {"partner_id": ptn, "offer_id": "off_1"}}
    assert programs.update_program(deps, OPERATOR, pid, {"settings": {"birthday_gift": gift}})["settings"] == {
        "birthday_gift": gift}
