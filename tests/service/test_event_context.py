"""The pipeline's event context on the in-memory ports: what every stage sees of the program and the event
(``services.event_context``). It reads and writes nothing itself: the program comes through the ``ProgramStore``
port (held to DynamoDB by tests/contract/test_ports.py), the context is built from it. No moto.

Through the real pipeline under moto (a won deal counted as an order or not): tests/functional/test_platform_*.py.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from chalicelib.domain.events.model import CanonicalEvent, Customer
from chalicelib.services import ports
from chalicelib.services.event_context import ATTRIBUTING_EVENTS, ENROLLING_EVENTS, EventContext
from chalicelib.store import fakes, keys
from tests import ports_support as support

NOW = support.NOW


@pytest.fixture
def deps() -> ports.Ports:
    deps = ports.fakes(NOW)
    fakes.seed(deps, support.program("prg_shop"),
               support.program("prg_crm", settings={"deals_count_as_orders": True, "max_depth": 5}))
    return deps


def context(deps: ports.Ports, program_id: str, event_type: str, **fields: Any) -> EventContext:
    event = CanonicalEvent(type=event_type, occurred_at=NOW, object_type="order", object_id="o-1",
                           customer=Customer(id="c-1"))
    return EventContext(program=deps.programs.get(program_id), partner_id="ptn_1", event=event,
                        business_key=f"{program_id}|{event_type}|o-1", event_key=keys.event(program_id, "h"),
                        refs=(), delivery_id=None, now=deps.clock.now(), **fields)


@pytest.mark.parametrize(("program_id", "event_type", "purchase"), [
    ("prg_shop", "order.paid", True), ("prg_crm", "order.paid", True),
    ("prg_shop", "deal.won", False), ("prg_crm", "deal.won", True),  # only where the program says so
    ("prg_crm", "member.signup", False), ("prg_crm", "lead.created", False), ("prg_crm", "custom:visit", False),
])
def test_an_event_is_one_of_the_customers_orders_as_the_program_says(deps: ports.Ports, program_id: str,
                                                                     event_type: str, purchase: bool) -> None:
    assert context(deps, program_id, event_type).is_purchase is purchase


def test_the_context_carries_the_programs_typed_settings_and_the_ports_now(deps: ports.Ports) -> None:
    crm, shop = context(deps, "prg_crm", "deal.won"), context(deps, "prg_shop", "deal.won")
    assert crm.program_id == "prg_crm" and crm.settings.max_depth == 5 and crm.settings.deals_count_as_orders
    assert shop.settings.max_depth == 3 and not shop.settings.deals_count_as_orders  # the defaults
    assert crm.now == NOW and (crm.signals, crm.deny) == ((), ())
    deps.clock.advance(hours=1)  # type: ignore[attr-defined]
    assert context(deps, "prg_crm", "deal.won").now == NOW + timedelta(hours=1)


def test_every_enrolling_event_may_attribute_and_orders_attribute_without_enrolling() -> None:
    assert ENROLLING_EVENTS < ATTRIBUTING_EVENTS
    assert set(ATTRIBUTING_EVENTS - ENROLLING_EVENTS) == {"order.paid"}
