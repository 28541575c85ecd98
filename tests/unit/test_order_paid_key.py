"""A refund finds its order's ``order.paid`` record by the business key it derives (services.ledger.reads)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from chalicelib.domain.events import business_key, order_paid_business_key, parse_event

#: The service's clock reading these events (parse_event bounds occurred_at and birthdays by it).
NOW = datetime(2026, 12, 1, tzinfo=UTC)


@pytest.mark.parametrize("order_id", ["1001", "a|b", "50%off", "ORD-é"])
def test_the_derived_key_is_the_order_paid_events_own(order_id: str) -> None:
    event = parse_event({"type": "order.paid", "occurred_at": "2026-01-15T10:00:00Z",
                         "object": {"type": "order", "id": order_id}, "customer": {"id": "c1"},
                         "order": {"total": 100_000, "currency": "RUB"}}, now=NOW)
    assert order_paid_business_key("prg_1", "ptn|x", order_id) == business_key("prg_1", "ptn|x", event)
