"""Rules documents (store a version, read one, the checks against the program) on the in-memory ports: no moto.

Through the API under moto: tests/functional/test_rewards_rules_api.py (and every pipeline test reads the rules);
the fakes are held to DynamoDB's behaviour by tests/contract/test_ports.py (versions never rewritten, the pointer
conditioned on the version read).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from chalicelib.domain.errors import Conflict, NotFound, ValidationFailed
from chalicelib.services import ports, rules
from chalicelib.services.auth import Principal
from chalicelib.store import fakes, keys
from chalicelib.store.offers import OfferItem
from tests import ports_support as support

PID = "prg_1"
OPERATOR = Principal(kind="operator")
RULE: dict[str, Any] = {"id": "signup", "trigger": {"event": "member.signup"}, "recipient": {"type": "self"},
                        "amount": {"points": 10}}


@pytest.fixture
def deps() -> Iterator[ports.Ports]:
    deps = ports.fakes(support.NOW)
    fakes.seed(deps, support.program(PID, settings={"max_depth": 2}), support.partner(PID, "ptn_1"),
               support.program("prg_other"), support.partner("prg_other", "ptn_x"))
    rules.reset_cache()
    yield deps
    rules.reset_cache()


def _doc(*extra: dict[str, Any]) -> dict[str, Any]:
    return {"rules": [RULE, *extra]}


def test_each_put_is_a_new_version_and_earlier_ones_stay_readable(deps: ports.Ports) -> None:
    first = rules.put_rules(deps, OPERATOR, PID, {**_doc(), "version": 99})  # the server numbers versions
    assert (first["version"], first["current"], first["created_at"]) == (1, True, "2026-11-23T10:00:00.000000Z")
    assert first["document"]["currency"] == "RUB" and first["document"]["point_value_minor"] == 100
    deps.clock.advance(minutes=1)  # type: ignore[attr-defined]
    second = rules.put_rules(deps, OPERATOR, PID, _doc())
    assert second["version"] == 2
    assert rules.get_rules(deps, OPERATOR, PID, None)["version"] == 2
    old = rules.get_rules(deps, OPERATOR, PID, 1)
    assert (old["current"], old["document"]) == (False, first["document"])
    with pytest.raises(NotFound):
        rules.get_rules(deps, OPERATOR, PID, 3)
    program = deps.programs.get(PID)
    assert rules.current_rules(program, deps=deps) is not None and rules.rules_key(program, deps) == \
        keys.rules_version(PID, 2)
    rules.reset_cache()  # a cold instance reads the version through the port
    assert rules.current_rules(program, deps=deps).version == 2  # type: ignore[union-attr]


def test_a_program_without_rules_and_another_tenants_rules(deps: ports.Ports) -> None:
    with pytest.raises(NotFound):
        rules.get_rules(deps, OPERATOR, PID, None)
    assert rules.current_rules(deps.programs.get(PID), deps=deps) is None
    assert rules.rules_key(deps.programs.get(PID), deps) is None
    rules.put_rules(deps, OPERATOR, "prg_other", _doc())
    with pytest.raises(NotFound):  # a partner of PID does not see prg_other's rules
        rules.get_rules(deps, Principal(kind="partner", program_id=PID, partner_id="ptn_1"), "prg_other", None)
    with pytest.raises(NotFound):
        rules.get_rules(deps, OPERATOR, PID, 1)  # prg_other's version 1 is not PID's
    with pytest.raises(NotFound):
        rules.put_rules(deps, OPERATOR, "prg_nobody", _doc())


def test_the_document_is_checked_against_the_program_and_nothing_is_stored_on_refusal(deps: ports.Ports) -> None:
    def refused(body: Any) -> list[str]:
        with pytest.raises(ValidationFailed) as failed:
            rules.put_rules(deps, OPERATOR, PID, body)
        return [e["path"] for e in failed.value.details["errors"]]

    assert refused([RULE]) == ["$"]
    assert refused({**_doc(), "currency": "USD"}) == ["$.currency"]
    deep = {**RULE, "id": "deep", "recipient": {"type": "referrer", "level": 3}}
    assert refused(_doc(deep)) == ["$.rules[1].recipient.level"]  # max_depth is 2
    foreign = {**RULE, "id": "foreign", "funded_by": "ptn_x"}  # another program's partner
    assert refused(_doc(foreign)) == ["$.rules[1].funded_by"]
    gift = {**RULE, "id": "gift", "amount": {"offer": {"partner_id": "ptn_1", "offer_id": "off_1"}}}
    assert refused(_doc(gift)) == ["$.rules[1].amount.offer.offer_id"]
    tiered = {**RULE, "id": "tiered", "trigger": {"event": "member.signup", "tiers": ["gold"]}}
    assert refused(_doc(tiered)) == ["$.rules[1].trigger.tiers[0]"]
    with pytest.raises(NotFound):
        rules.get_rules(deps, OPERATOR, PID, None)
    pk, sk = keys.offer(PID, "ptn_1", "off_1")
    fakes.seed(deps, OfferItem(PK=pk, SK=sk, program_id=PID, partner_id="ptn_1", offer_id="off_1", name="Coffee",
                               kind="free_item", item="coffee", code_source="static", created_at=support.NOW,
                               updated_at=support.NOW))
    assert rules.put_rules(deps, OPERATOR, PID, _doc(gift))["version"] == 1


def test_a_put_from_a_stale_read_is_a_conflict(deps: ports.Ports) -> None:
    stale = deps.programs.get(PID, fresh=True)
    rules.put_rules(deps, OPERATOR, PID, _doc())
    with pytest.raises(Conflict) as raced:
        deps.programs.put_rules(stale, _doc(), support.NOW)
    assert raced.value.code == "concurrent_update"
    assert rules.get_rules(deps, OPERATOR, PID, None)["version"] == 1
