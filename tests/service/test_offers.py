"""Partners' offers and code pools (create, page, update, archive, upload) on the in-memory ports: no moto.

Through the API under moto: tests/functional/test_offers.py, test_vouchers.py and the tenant matrix; the fakes are
held to DynamoDB's behaviour by tests/contract/test_ports.py (revisions, the archived filter, per-shard heads).
"""

from __future__ import annotations

from typing import Any

import pytest

from chalicelib.domain.errors import Conflict, Forbidden, NotFound, ValidationFailed
from chalicelib.domain.offers import OFFER_CREATE_SCHEMA
from chalicelib.domain.validation import validate
from chalicelib.services import offers, ports
from chalicelib.services.auth import Principal
from chalicelib.store import fakes
from tests import ports_support as support

PID = "prg_1"
OPERATOR = Principal(kind="operator")
CAFE = Principal(kind="partner", program_id=PID, partner_id="ptn_cafe")


@pytest.fixture
def deps() -> ports.Ports:
    deps = ports.fakes(support.NOW)
    fakes.seed(deps, support.program(PID), support.partner(PID, "ptn_cafe"), support.partner(PID, "ptn_gym"),
               support.program("prg_2"), support.partner("prg_2", "ptn_x"))
    return deps


def _create(deps: ports.Ports, principal: Principal = CAFE, partner_id: str = "ptn_cafe", **body: Any) -> dict[str, Any]:
    data = validate(OFFER_CREATE_SCHEMA, {"name": "Coffee", "kind": "free_item", "item": "coffee",
                                          "code_source": "pool", **body})
    return offers.create_offer(deps, principal, PID, partner_id, data)


def test_an_offer_is_created_read_and_listed_in_bounded_pages_without_archived_ones(deps: ports.Ports) -> None:
    created = [_create(deps, name=f"Coffee {n}") for n in range(4)]
    assert created[0]["pool"] == {"size": 0, "remaining": 0, "issued": 0, "low": False}
    assert created[0]["created_at"] == "2026-11-23T10:00:00.000000Z"
    static = _create(deps, code_source="static", static_code="FREE1")
    assert static["static_code"] == "FREE1" and "pool" not in static
    offers.archive_offer(deps, CAFE, PID, "ptn_cafe", created[1]["offer_id"])
    seen: list[str] = []
    cursor = None
    for _ in range(5):
        page = offers.list_offers(deps, CAFE, PID, "ptn_cafe", 2, cursor)
        assert len(page["items"]) <= 2
        seen += [o["offer_id"] for o in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(o["offer_id"] for o in [*created, static] if o is not created[1])
    with pytest.raises(NotFound):  # archived: gone for the partner
        offers.get_offer(deps, CAFE, PID, "ptn_cafe", created[1]["offer_id"])
    with pytest.raises(NotFound):
        _create(deps, OPERATOR, "ptn_nobody")


def test_partners_cannot_see_or_change_each_others_offers(deps: ports.Ports) -> None:
    offer_id = _create(deps)["offer_id"]
    gym = Principal(kind="partner", program_id=PID, partner_id="ptn_gym")
    with pytest.raises(Forbidden):
        offers.get_offer(deps, gym, PID, "ptn_cafe", offer_id)
    with pytest.raises(Forbidden):
        offers.update_offer(deps, gym, PID, "ptn_cafe", offer_id, {"name": "Mine"})
    with pytest.raises(NotFound):  # under its own partner id the offer does not exist
        offers.get_offer(deps, gym, PID, "ptn_gym", offer_id)
    with pytest.raises(NotFound):  # another program
        offers.get_offer(deps, Principal(kind="partner", program_id="prg_2", partner_id="ptn_x"), PID, "ptn_cafe",
                         offer_id)
    assert offers.list_offers(deps, gym, PID, "ptn_gym", 10, None)["items"] == []
    assert offers.get_offer(deps, OPERATOR, PID, "ptn_cafe", offer_id)["name"] == "Coffee"


def test_an_update_changes_the_fields_and_a_stale_one_is_a_conflict(deps: ports.Ports) -> None:
    offer_id = _create(deps, description="Any size")["offer_id"]
    stale = deps.offers.offer(PID, "ptn_cafe", offer_id)
    deps.clock.advance(minutes=5)  # type: ignore[attr-defined]
    updated = offers.update_offer(deps, CAFE, PID, "ptn_cafe", offer_id,
                                  {"name": "Tea", "description": None, "low_pool_threshold": 3, "enabled": False})
    assert (updated["name"], updated["description"], updated["low_pool_threshold"], updated["enabled"]) == (
        "Tea", None, 3, False)
    assert updated["updated_at"] == "2026-11-23T10:05:00.000000Z"
    assert int(deps.offers.offer(PID, "ptn_cafe", offer_id).alert_epoch) == 1  # type: ignore[union-attr]
    with pytest.raises(Conflict):
        deps.offers.update_offer(stale, {"name": "Late"}, deps.clock.now())  # type: ignore[arg-type]
    static = _create(deps, code_source="static", static_code="FREE1")["offer_id"]
    with pytest.raises(ValidationFailed):
        offers.update_offer(deps, CAFE, PID, "ptn_cafe", static, {"low_pool_threshold": 3})


def test_codes_are_uploaded_once_bounded_and_a_refill_starts_a_new_alert(deps: ports.Ports,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    offer_id = _create(deps, low_pool_threshold=5)["offer_id"]
    reply = offers.upload_codes(deps, CAFE, PID, "ptn_cafe", offer_id, [f"C{i}" for i in range(3)])
    assert reply == {"offer_id": offer_id, "accepted": 3, "pool": {"size": 3, "remaining": 3}}
    assert int(deps.offers.offer(PID, "ptn_cafe", offer_id).alert_epoch) == 0  # type: ignore[union-attr]
    big = offers.upload_codes(deps, CAFE, PID, "ptn_cafe", offer_id, [f"D{i}" for i in range(95)])  # 3 writes
    assert big["pool"] == {"size": 98, "remaining": 98}
    assert int(deps.offers.offer(PID, "ptn_cafe", offer_id).alert_epoch) == 1  # type: ignore[union-attr]
    assert offers.get_offer(deps, CAFE, PID, "ptn_cafe", offer_id)["pool"]["size"] == 98
    with pytest.raises(ValidationFailed) as again:
        offers.upload_codes(deps, CAFE, PID, "ptn_cafe", offer_id, ["C1", "NEW1"])
    assert again.value.code == "codes_already_present" and again.value.details == {"codes": ["C1"], "count": 1}
    monkeypatch.setattr(offers, "MAX_POOL_CODES", 100)
    with pytest.raises(ValidationFailed) as full:
        offers.upload_codes(deps, CAFE, PID, "ptn_cafe", offer_id, ["E1", "E2", "E3"])
    assert full.value.code == "pool_full"
    static = _create(deps, code_source="static", static_code="FREE1")["offer_id"]
    with pytest.raises(ValidationFailed) as not_pool:
        offers.upload_codes(deps, CAFE, PID, "ptn_cafe", static, ["A"])
    assert not_pool.value.code == "not_a_pool_offer"
    assert offers.get_offer(deps, CAFE, PID, "ptn_cafe", offer_id)["pool"]["size"] == 98
