"""A repeated fact with different content is answered as a duplicate naming what differs (canonical events)."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from tests.support import ApiClient


def paid(total: int, currency: str = "RUB", email: str = "olga@example.com") -> dict[str, Any]:
    return {"type": "order.paid", "occurred_at": "2026-01-15T10:00:00Z", "object": {"type": "order", "id": "o-77"},
            "customer": {"id": "c-1", "email": email}, "order": {"total": total, "currency": currency}}


@pytest.fixture
def partner(api: ApiClient) -> dict[str, Any]:
    program = api.create_program(name="Conflicts")
    return api.create_partner(program["program_id"])


def test_same_content_is_a_plain_duplicate(api: ApiClient, partner: dict[str, Any]) -> None:
    assert api.processed(partner, paid(150_000))["status"] == "processed"
    again = api.processed(partner, dict(paid(150_000), occurred_at="2026-01-16T10:00:00Z"))
    assert again["status"] == "duplicate" and "conflict" not in again


def test_another_total_is_a_reported_conflict(api: ApiClient, partner: dict[str, Any],
                                              caplog: pytest.LogCaptureFixture) -> None:
    api.processed(partner, paid(150_000))
    with caplog.at_level(logging.WARNING):
        again = api.processed(partner, paid(160_000, "USD"))
    assert again["status"] == "duplicate"
    assert again["conflict"]["fields"] == [
        {"field": "order.currency", "stored": "RUB", "received": "USD"},
        {"field": "order.total", "stored": 150_000, "received": 160_000}]
    assert any("different content" in r.getMessage() for r in caplog.records)


def test_a_different_email_is_named_without_its_value(api: ApiClient, partner: dict[str, Any],
                                                      caplog: pytest.LogCaptureFixture) -> None:
    api.processed(partner, paid(150_000))
    with caplog.at_level(logging.WARNING):
        again = api.processed(partner, paid(150_000, email="boris@example.com"))
    assert again["conflict"]["fields"] == [{"field": "customer.email"}]
    assert "boris" not in str(again) and "olga" not in str(again)
    assert not any("boris" in r.getMessage() or "boris" in str(r.__dict__) for r in caplog.records)
