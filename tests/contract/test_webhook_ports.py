"""Contracts of the ``Sealer`` and ``WebhookStore`` ports (``services.partner_webhooks``), on the fake and on moto.

The ``impl`` fixture is the one of ``test_ports.py`` (``fake`` / ``dynamo``).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest

from chalicelib.domain.errors import Conflict, NotFound, ValidationFailed
from chalicelib.domain.partner_hooks import MAX_ENDPOINTS
from chalicelib.store.partner_hooks import DELIVERED, FAILED, PENDING, new_delivery
from tests import ports_support as support
from tests.contract import test_ports
from tests.contract.test_ports import NOW, PID, Impl

impl = test_ports.impl  # the same fixture: fake and dynamo

CONTEXT = {"sarafan": "partner_webhook", "program": PID, "partner": "ptn_1", "endpoint": "whe_1"}


def test_a_sealed_value_opens_only_in_its_context_and_untampered(impl: Impl) -> None:
    sealed = impl.ports.sealer.seal("whsec_secret", CONTEXT)
    assert "whsec_secret" not in repr(sealed)
    assert impl.ports.sealer.open(sealed, CONTEXT) == b"whsec_secret"
    with pytest.raises(ValueError):
        impl.ports.sealer.open(sealed, {**CONTEXT, "endpoint": "whe_2"})
    tampered = {**sealed, "tag": sealed["tag"][:-4] + ("AAA=" if not sealed["tag"].endswith("AAA=") else "BBB=")}
    with pytest.raises(ValueError):
        impl.ports.sealer.open(tampered, CONTEXT)


def _fields(endpoint_id: str, partner_id: str = "ptn_1", minute: int = 0, **fields: Any) -> dict[str, Any]:
    at = NOW + timedelta(minutes=minute)
    return {"program_id": PID, "partner_id": partner_id, "endpoint_id": endpoint_id, "url": "https://hooks.example/x",
            "event_types": ["reward.posted"], "description": None, "enabled": True, "secrets": [], "revision": 1,
            "created_at": at, "updated_at": at, **fields}


def test_an_endpoint_needs_its_partner_and_is_read_back(impl: Impl) -> None:
    with pytest.raises(NotFound):
        impl.ports.webhooks.create_endpoint(_fields("whe_1"))
    impl.seed(support.partner(PID, "ptn_1"), support.partner(PID, "ptn_2"))
    created = impl.ports.webhooks.create_endpoint(_fields("whe_1", description="main"))
    assert created.endpoint_id == "whe_1"
    found = impl.ports.webhooks.endpoint(PID, "ptn_1", "whe_1")
    assert found is not None and (found.url, found.description, found.revision) == ("https://hooks.example/x", "main",
                                                                                     1)
    assert impl.ports.webhooks.endpoint(PID, "ptn_2", "whe_1") is None  # another partner's view: none
    with pytest.raises(Conflict):
        impl.ports.webhooks.create_endpoint(_fields("whe_1"))  # the id exists
    assert [e.endpoint_id for e in impl.ports.webhooks.endpoints(PID, "ptn_1")] == ["whe_1"]
    assert impl.ports.webhooks.endpoints(PID, "ptn_2") == []


def test_a_partner_has_a_bounded_number_of_endpoints_and_a_deletion_frees_one(impl: Impl) -> None:
    impl.seed(support.partner(PID, "ptn_1"))
    for n in range(MAX_ENDPOINTS):
        impl.ports.webhooks.create_endpoint(_fields(f"whe_{n:02d}", minute=n))
    with pytest.raises(ValidationFailed) as full:
        impl.ports.webhooks.create_endpoint(_fields("whe_more"))
    assert full.value.code == "too_many_endpoints"
    assert len(impl.ports.webhooks.endpoints(PID, "ptn_1")) == MAX_ENDPOINTS
    first = impl.ports.webhooks.endpoint(PID, "ptn_1", "whe_00")
    assert first is not None
    impl.ports.webhooks.delete_endpoint(first)
    assert impl.ports.webhooks.endpoint(PID, "ptn_1", "whe_00") is None
    with pytest.raises(Conflict):
        impl.ports.webhooks.delete_endpoint(first)  # already gone
    impl.ports.webhooks.create_endpoint(_fields("whe_more"))


def test_concurrent_creations_never_pass_the_bound(impl: Impl) -> None:
    impl.seed(support.partner(PID, "ptn_1"))
    for n in range(MAX_ENDPOINTS - 2):
        impl.ports.webhooks.create_endpoint(_fields(f"whe_{n:02d}"))

    def attempt(n: int) -> str:
        try:
            impl.ports.webhooks.create_endpoint(_fields(f"whe_c{n}"))
            return "created"
        except ValidationFailed:
            return "full"

    with ThreadPoolExecutor(max_workers=4) as pool:
        outcomes = list(pool.map(attempt, range(4)))
    assert sorted(outcomes) == ["created", "created", "full", "full"]
    assert len(impl.ports.webhooks.endpoints(PID, "ptn_1")) == MAX_ENDPOINTS


def test_an_update_sets_removes_and_refuses_a_stale_revision(impl: Impl) -> None:
    impl.seed(support.partner(PID, "ptn_1"))
    impl.ports.webhooks.create_endpoint(_fields("whe_1", description="old", disabled_reason="failing"))
    read = impl.ports.webhooks.endpoint(PID, "ptn_1", "whe_1")
    stale = impl.ports.webhooks.endpoint(PID, "ptn_1", "whe_1")
    assert read is not None and stale is not None
    later = NOW + timedelta(hours=1)
    impl.ports.webhooks.update_endpoint(read, {"url": "https://hooks.example/y", "description": None,
                                               "disabled_reason": None, "enabled": True}, later)
    assert (read.revision, read.updated_at, read.url, read.description) == (2, later, "https://hooks.example/y", None)
    stored = impl.ports.webhooks.endpoint(PID, "ptn_1", "whe_1")
    assert stored is not None
    assert (stored.url, stored.description, stored.disabled_reason, stored.revision, stored.updated_at) == (
        "https://hooks.example/y", None, None, 2, later)
    with pytest.raises(Conflict) as changed:
        impl.ports.webhooks.update_endpoint(stale, {"url": "https://hooks.example/z"}, later)
    assert changed.value.code == "concurrent_update"
    with pytest.raises(Conflict):
        impl.ports.webhooks.delete_endpoint(stale)  # the revision read is not the stored one
    stored = impl.ports.webhooks.endpoint(PID, "ptn_1", "whe_1")
    assert stored is not None and stored.url == "https://hooks.example/y"


def _delivery(n: int, status: str = DELIVERED, endpoint_id: str = "whe_1") -> Any:
    at = NOW + timedelta(minutes=n)
    item = new_delivery(program_id=PID, partner_id="ptn_1", endpoint_id=endpoint_id, event_type="reward.posted",
                        source_id=f"ledger_entry:{n}", occurred_at=at, body=f'{{"n": {n}}}', now=at,
                        delivery=f"whd_{n:04d}")
    item.status, item.attempts = status, 3
    return item


def test_the_delivery_log_pages_newest_first_within_its_endpoint(impl: Impl) -> None:
    impl.seed(*[_delivery(n) for n in range(5)], _delivery(9, endpoint_id="whe_2"))
    first = impl.ports.webhooks.deliveries(PID, "whe_1", 3, None)
    assert [d.delivery_id for d in first.items] == ["whd_0004", "whd_0003", "whd_0002"]
    assert first.next_cursor is not None
    rest = impl.ports.webhooks.deliveries(PID, "whe_1", 3, first.next_cursor)
    assert [d.delivery_id for d in rest.items] == ["whd_0001", "whd_0000"] and rest.next_cursor is None
    found = impl.ports.webhooks.delivery(PID, "whe_1", "whd_0002")
    assert found is not None and found.body == '{"n": 2}'
    assert impl.ports.webhooks.delivery(PID, "whe_2", "whd_0002") is None


def test_a_retry_makes_a_finished_delivery_due_once_from_the_status_read(impl: Impl) -> None:
    impl.seed(_delivery(1, status=FAILED))
    read = impl.ports.webhooks.delivery(PID, "whe_1", "whd_0001")
    stale = impl.ports.webhooks.delivery(PID, "whe_1", "whd_0001")
    assert read is not None and stale is not None
    later = NOW + timedelta(days=1)
    assert impl.ports.webhooks.retry_delivery(read, later) is True
    assert (read.status, read.next_attempt_at, read.max_attempts) == (PENDING, later, 4)
    stored = impl.ports.webhooks.delivery(PID, "whe_1", "whd_0001")
    assert stored is not None and (stored.status, stored.next_attempt_at, stored.max_attempts) == (PENDING, later, 4)
    assert stored.GSI1PK and stored.GSI1SK.startswith(later.isoformat().replace("+00:00", "Z")[:19])
    assert impl.ports.webhooks.retry_delivery(stale, later) is False  # it is pending now, not failed
    assert stale.status == FAILED
