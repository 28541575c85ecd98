"""The coupon service on the in-memory ports: no moto, no table (milliseconds).

The same behaviour through the API under moto is in tests/functional/test_coupons.py; the fakes
are held to DynamoDB's behaviour by tests/contract/test_ports.py.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from chalicelib.domain.errors import Conflict, DomainError, NotFound, ServiceUnavailable, ValidationFailed
from chalicelib.services import coupons, ports
from chalicelib.services.auth import Principal
from chalicelib.services.ports import StaleMember
from chalicelib.store.members import MemberItem, new_member

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
PID = "prg_1"
PARTNER = Principal(kind="partner", program_id=PID, partner_id="ptn_1")
OPERATOR = Principal(kind="operator")


@pytest.fixture
def deps() -> ports.Ports:
    deps = ports.fakes(NOW)
    for member_id in ("anna", "boris"):
        deps.members.put(new_member(PID, member_id, f"CODE{member_id}", joined_at=NOW,  # type: ignore[attr-defined]
                                    joined_via="api", refs=[]))
    return deps


def test_register_normalises_and_is_idempotent(deps: ports.Ports) -> None:
    first = coupons.register(deps, PARTNER, PID, "anna", "  anna-500 ")
    assert first == {"code": "ANNA-500", "created": True, "member_id": "anna", "coupons": ["ANNA-500"]}
    again = coupons.register(deps, OPERATOR, PID, "anna", "ANNA-500")
    assert again["created"] is False and again["coupons"] == ["ANNA-500"]
    assert deps.members.coupon_owner(PID, "ANNA-500") == "anna"


def test_taken_unknown_and_invalid(deps: ports.Ports) -> None:
    coupons.register(deps, PARTNER, PID, "anna", "SPRING")
    with pytest.raises(Conflict):
        coupons.register(deps, PARTNER, PID, "boris", "spring")
    with pytest.raises(NotFound):
        coupons.register(deps, PARTNER, PID, "nobody", "X")
    with pytest.raises(ValidationFailed) as bad:
        coupons.register(deps, PARTNER, PID, "anna", "two words")
    assert bad.value.details["errors"][0]["path"] == "$.code"


def test_another_programs_key_sees_nothing(deps: ports.Ports) -> None:
    stranger = Principal(kind="partner", program_id="prg_2", partner_id="ptn_9")
    with pytest.raises(NotFound):
        coupons.list_coupons(deps, stranger, PID, "anna")


def test_get_list_and_remove(deps: ports.Ports) -> None:
    coupons.register(deps, PARTNER, PID, "anna", "A1")
    coupons.register(deps, PARTNER, PID, "anna", "A2")
    assert coupons.list_coupons(deps, PARTNER, PID, "anna")["coupons"] == ["A1", "A2"]
    assert coupons.get_coupon(deps, PARTNER, PID, "anna", "a1") == {"code": "A1", "member_id": "anna"}
    with pytest.raises(NotFound):
        coupons.get_coupon(deps, PARTNER, PID, "boris", "A1")
    assert coupons.remove(deps, PARTNER, PID, "anna", "A1")["coupons"] == ["A2"]
    assert deps.members.coupon_owner(PID, "A1") is None


def test_a_concurrent_change_of_the_member_is_retried(deps: ports.Ports, monkeypatch: pytest.MonkeyPatch) -> None:
    real = deps.members.add_coupon
    calls = {"n": 0}

    def stale_once(member: MemberItem, code: str) -> bool:
        calls["n"] += 1
        if calls["n"] == 1:
            raise StaleMember()
        return real(member, code)

    monkeypatch.setattr(deps.members, "add_coupon", stale_once)
    assert coupons.register(deps, PARTNER, PID, "anna", "R1")["created"] is True
    assert calls["n"] == 2


def test_endless_contention_is_a_503_not_a_loop(deps: ports.Ports, monkeypatch: pytest.MonkeyPatch) -> None:
    def always_stale(member: MemberItem, code: str) -> bool:
        raise StaleMember()

    monkeypatch.setattr(deps.members, "add_coupon", always_stale)
    with pytest.raises(ServiceUnavailable) as busy:
        coupons.register(deps, PARTNER, PID, "anna", "R1")
    assert isinstance(busy.value, DomainError) and busy.value.status == 503
