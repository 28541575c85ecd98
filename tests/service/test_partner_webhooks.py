"""Partner webhook endpoints and their delivery log on the in-memory ports: no moto, no table, no KMS.

Through the API under moto (KMS-sealed secrets, the sender): tests/functional/test_partner_webhooks.py,
test_partner_webhooks_delivery.py and tests/e2e/test_partner_webhooks_local.py; the fakes are held to DynamoDB's
behaviour by tests/contract/test_webhook_ports.py (the endpoint bound, revisions, the retry's condition).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from chalicelib.domain.clock import ManualClock
from chalicelib.domain.errors import Conflict, Forbidden, NotFound, ValidationFailed
from chalicelib.domain.partner_hooks import MAX_ENDPOINTS
from chalicelib.services import partner_webhooks as service
from chalicelib.services import ports
from chalicelib.services.auth import Principal
from chalicelib.store import fakes
from chalicelib.store.partner_hooks import FAILED, PENDING, new_delivery
from tests import ports_support as support

PID = "prg_1"
FIT = Principal(kind="partner", program_id=PID, partner_id="ptn_fit", key_id="key_fit")
BANK = Principal(kind="partner", program_id=PID, partner_id="ptn_bank", key_id="key_bank")
OPERATOR = Principal(kind="operator")
URL = "https://hooks.fitlab.example/sarafan"


@pytest.fixture(autouse=True)
def public_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    dns = {"hooks.fitlab.example": ["93.184.216.34"], "internal.example": ["10.0.0.7"]}
    monkeypatch.setattr(service, "resolve", lambda host: dns[host])


@pytest.fixture
def deps() -> ports.Ports:
    deps = ports.fakes(support.NOW)
    fakes.seed(deps, support.program(PID), support.partner(PID, "ptn_fit"), support.partner(PID, "ptn_bank"))
    return deps


def _create(deps: ports.Ports, principal: Principal = FIT, **fields: Any) -> dict[str, Any]:
    return service.create(deps, principal, PID, "ptn_fit", {"url": URL, "event_types": ["reward.posted"], **fields})


def _clock(deps: ports.Ports) -> ManualClock:
    assert isinstance(deps.clock, ManualClock)
    return deps.clock


def test_an_endpoint_is_registered_with_a_sealed_secret_shown_once(deps: ports.Ports) -> None:
    created = _create(deps, description="CRM")
    secret = created["signing_secret"]
    assert secret.startswith("whsec_") and created["revision"] == 1 and created["enabled"] is True
    assert created["secret"] == {"versions_valid": 1, "previous_valid_until": None}
    shown = service.get(deps, FIT, PID, "ptn_fit", created["endpoint_id"])
    assert "signing_secret" not in shown and shown["description"] == "CRM"
    item = deps.webhooks.endpoint(PID, "ptn_fit", created["endpoint_id"])
    assert item is not None and secret not in repr(item.secrets)
    assert service.signing_secrets(item, support.NOW, deps) == [secret]
    listed = service.list_endpoints(deps, OPERATOR, PID, "ptn_fit")["items"]
    assert [e["endpoint_id"] for e in listed] == [created["endpoint_id"]]


def test_scope_unsafe_urls_unknown_partners_and_the_bound(deps: ports.Ports) -> None:
    with pytest.raises(Forbidden):
        _create(deps, principal=BANK)  # another partner of the program
    with pytest.raises(NotFound):
        _create(deps, principal=Principal(kind="partner", program_id="prg_2", partner_id="ptn_fit"))
    with pytest.raises(ValidationFailed) as unsafe:
        _create(deps, url="https://internal.example/x")
    assert unsafe.value.code == "unsafe_webhook_url"
    with pytest.raises(NotFound):
        service.create(deps, OPERATOR, PID, "ptn_nobody", {"url": URL, "event_types": ["pool.low"]})
    for _ in range(MAX_ENDPOINTS):
        _create(deps)
    with pytest.raises(ValidationFailed) as full:
        _create(deps)
    assert full.value.code == "too_many_endpoints"
    assert len(service.list_endpoints(deps, FIT, PID, "ptn_fit")["items"]) == MAX_ENDPOINTS


def test_an_update_changes_fields_and_reenabling_forgets_the_failure(deps: ports.Ports) -> None:
    endpoint_id = _create(deps, description="CRM")["endpoint_id"]
    item = deps.webhooks.endpoint(PID, "ptn_fit", endpoint_id)
    assert item is not None
    deps.webhooks.update_endpoint(item, {"enabled": False, "disabled_reason": "failing",
                                         "disabled_at": support.NOW, "notice": {"status": "sent"}}, support.NOW)
    _clock(deps).advance(hours=1)
    changed = service.update(deps, FIT, PID, "ptn_fit", endpoint_id,
                             {"event_types": ["voucher.issued", "pool.low"], "description": None, "enabled": True})
    assert changed["event_types"] == ["voucher.issued", "pool.low"] and changed["description"] is None
    assert (changed["enabled"], changed["disabled_reason"], changed["disabled_at"], changed["notice"]) == (
        True, None, None, None)
    assert changed["revision"] == 3 and changed["updated_at"] == "2026-11-23T11:00:00.000000Z"
    assert service.get(deps, OPERATOR, PID, "ptn_fit", endpoint_id) == changed
    with pytest.raises(ValidationFailed):
        service.update(deps, FIT, PID, "ptn_fit", endpoint_id, {"url": "https://internal.example/y"})
    with pytest.raises(NotFound):
        service.update(deps, FIT, PID, "ptn_fit", "whe_nobody", {"enabled": False})


def test_a_rotation_keeps_the_old_secret_signing_for_the_overlap(deps: ports.Ports) -> None:
    created = _create(deps)
    endpoint_id, first = created["endpoint_id"], created["signing_secret"]
    _clock(deps).advance(hours=2)
    rotated = service.rotate_secret(deps, FIT, PID, "ptn_fit", endpoint_id)
    second = rotated["signing_secret"]
    assert second != first and rotated["secret"]["versions_valid"] == 2
    assert rotated["secret"]["previous_valid_until"] == "2026-11-24T12:00:00.000000Z"  # 24 h after the rotation
    item = deps.webhooks.endpoint(PID, "ptn_fit", endpoint_id)
    assert item is not None
    assert service.signing_secrets(item, _clock(deps).now(), deps) == [second, first]
    assert service.signing_secrets(item, _clock(deps).now() + timedelta(hours=25), deps) == [second]
    for _ in range(3):  # at most three secrets are kept
        service.rotate_secret(deps, FIT, PID, "ptn_fit", endpoint_id)
    item = deps.webhooks.endpoint(PID, "ptn_fit", endpoint_id)
    assert item is not None and len(item.secrets) == service.MAX_SECRETS


def test_a_stale_write_is_a_conflict_and_a_deletion_frees_the_slot(deps: ports.Ports) -> None:
    endpoint_id = _create(deps)["endpoint_id"]
    stale = deps.webhooks.endpoint(PID, "ptn_fit", endpoint_id)
    assert stale is not None
    service.update(deps, FIT, PID, "ptn_fit", endpoint_id, {"enabled": False})
    with pytest.raises(Conflict) as changed:
        deps.webhooks.update_endpoint(stale, {"enabled": True}, support.NOW)
    assert changed.value.code == "concurrent_update"
    assert service.delete(deps, FIT, PID, "ptn_fit", endpoint_id) == {"endpoint_id": endpoint_id, "deleted": True}
    with pytest.raises(NotFound):
        service.get(deps, FIT, PID, "ptn_fit", endpoint_id)
    for _ in range(MAX_ENDPOINTS):
        _create(deps)


def _delivery(n: int, endpoint_id: str, status: str) -> Any:
    at = support.NOW + timedelta(minutes=n)
    item = new_delivery(program_id=PID, partner_id="ptn_fit", endpoint_id=endpoint_id, event_type="reward.posted",
                        source_id=f"ledger_entry:{n}", occurred_at=at, body=f'{{"points": {n}}}', now=at,
                        delivery=f"whd_{n:04d}")
    item.status, item.attempts = status, 8
    return item


def test_the_delivery_log_pages_and_a_retry_is_one_more_attempt(deps: ports.Ports) -> None:
    endpoint_id = _create(deps)["endpoint_id"]
    fakes.seed(deps, _delivery(1, endpoint_id, FAILED), _delivery(2, endpoint_id, PENDING))
    page = service.deliveries(deps, FIT, PID, "ptn_fit", endpoint_id, 1, None)
    assert [d["delivery_id"] for d in page["items"]] == ["whd_0002"] and page["next_cursor"] is not None
    rest = service.deliveries(deps, FIT, PID, "ptn_fit", endpoint_id, 1, page["next_cursor"])
    assert [(d["delivery_id"], d["payload"]) for d in rest["items"]] == [("whd_0001", {"points": 1})]
    with pytest.raises(Conflict) as pending:
        service.retry(deps, FIT, PID, "ptn_fit", endpoint_id, "whd_0002")
    assert pending.value.code == "delivery_pending"
    _clock(deps).advance(days=1)
    retried = service.retry(deps, FIT, PID, "ptn_fit", endpoint_id, "whd_0001")
    assert retried["status"] == PENDING and retried["next_attempt_at"] == "2026-11-24T10:00:00.000000Z"
    stored = deps.webhooks.delivery(PID, endpoint_id, "whd_0001")
    assert stored is not None and stored.max_attempts == 9
    with pytest.raises(NotFound):
        service.retry(deps, FIT, PID, "ptn_fit", endpoint_id, "whd_nobody")
    with pytest.raises(NotFound):
        service.deliveries(deps, BANK, PID, "ptn_bank", endpoint_id, 10, None)  # not the bank's endpoint
    service.update(deps, FIT, PID, "ptn_fit", endpoint_id, {"enabled": False})
    fakes.seed(deps, _delivery(3, endpoint_id, FAILED))
    with pytest.raises(Conflict) as disabled:
        service.retry(deps, FIT, PID, "ptn_fit", endpoint_id, "whd_0003")
    assert disabled.value.code == "endpoint_disabled"
