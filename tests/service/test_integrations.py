"""Platform connections (connect, show, disconnect, the log) on the in-memory ports: no moto, no KMS.

Signing secrets and CRM API tokens are sealed by the ``Sealer`` port (the fake here; KMS through the real route under
moto: tests/functional/test_platform_*.py); the fakes are held to DynamoDB's behaviour by tests/contract/test_ports.py
(create once, replace the revision read).
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from chalicelib.adapters.base import Inbound
from chalicelib.domain.clock import iso
from chalicelib.domain.errors import Forbidden, NotFound, Unauthorized, ValidationFailed
from chalicelib.services import integrations, platform_intake, ports
from chalicelib.services.auth import Principal
from chalicelib.store import fakes, keys
from chalicelib.store.integrations import IntegrationLogItem
from chalicelib.store.tenancy import PartnerLocatorItem
from tests import ports_support as support
from tests.platform_support import b64_hmac, fixture

PID = "prg_1"
SHOP = Principal(kind="partner", program_id=PID, partner_id="ptn_1")


@pytest.fixture
def deps() -> ports.Ports:
    deps = ports.fakes(support.NOW)
    fakes.seed(deps, support.program(PID), support.partner(PID, "ptn_1"), support.partner(PID, "ptn_2"))
    return deps


def test_a_token_platform_gets_its_url_once_and_a_rotation_keeps_the_old_token_for_a_while(deps: ports.Ports) -> None:
    first = integrations.connect(deps, SHOP, PID, "ptn_1", "tilda", {"settings": {"ref_field": "ref"}})
    assert first["token_issued"] is True and "?token=" in first["webhook_url"] and first["revision"] == 1
    stored = deps.integrations.get(PID, "ptn_1", "tilda")
    token = first["webhook_url"].split("?token=")[1]
    assert stored is not None and stored.tokens[0]["sha256"] == integrations.hash_token(token)  # never the token
    shown = integrations.get(deps, SHOP, PID, "ptn_1", "tilda")
    assert "?token=" not in shown["webhook_url"] and shown["settings"] == {"ref_field": "ref"}
    again = integrations.connect(deps, SHOP, PID, "ptn_1", "tilda", {"settings": {"ref_field": "code"}})
    assert again["token_issued"] is False and again["revision"] == 2  # the token stays
    deps.clock.advance(minutes=1)  # type: ignore[attr-defined]
    rotated = integrations.connect(deps, SHOP, PID, "ptn_1", "tilda", {"settings": {"rotate_token": True}})
    assert rotated["token_issued"] is True and rotated["token"]["versions_valid"] == 2
    assert rotated["token"]["previous_valid_until"] is not None


def test_bad_settings_unknown_platforms_and_other_partners_are_refused(deps: ports.Ports) -> None:
    with pytest.raises(ValidationFailed) as missing:
        integrations.connect(deps, SHOP, PID, "ptn_1", "tilda", {})
    assert missing.value.details["errors"][0]["path"] == "$.settings"
    with pytest.raises(ValidationFailed) as secret:  # a token platform cannot sign
        integrations.connect(deps, SHOP, PID, "ptn_1", "tilda", {"settings": {"secret": "12345678"}})
    assert secret.value.details["errors"][0]["path"] == "$.settings.secret"
    with pytest.raises(NotFound):
        integrations.connect(deps, SHOP, PID, "ptn_1", "myspace", {"settings": {}})
    with pytest.raises(Forbidden):
        integrations.connect(deps, SHOP, PID, "ptn_2", "tilda", {"settings": {}})
    with pytest.raises(Forbidden):
        integrations.get(deps, Principal(kind="publishable", program_id=PID, partner_id="ptn_1"), PID, "ptn_1",
                         "tilda")
    with pytest.raises(NotFound):  # another program
        integrations.get(deps, Principal(kind="partner", program_id="prg_2", partner_id="ptn_1"), PID, "ptn_1",
                         "tilda")
    with pytest.raises(NotFound):
        integrations.connect(deps, Principal(kind="operator"), PID, "ptn_nobody", "tilda", {"settings": {}})
    assert deps.integrations.get(PID, "ptn_1", "tilda") is None


def test_a_disconnect_removes_the_connection_and_the_log_stays_readable_in_bounded_pages(deps: ports.Ports) -> None:
    integrations.connect(deps, SHOP, PID, "ptn_1", "tilda", {"settings": {}})
    for n in range(3):
        at = support.NOW + timedelta(minutes=n)
        pk, sk = keys.integration_log(PID, "ptn_1", "tilda", iso(at), f"e{n}")
        fakes.seed(deps, IntegrationLogItem(PK=pk, SK=sk, program_id=PID, partner_id="ptn_1", platform="tilda",
                                            code="invalid_event", message="no ref", at=at))
    assert integrations.disconnect(deps, SHOP, PID, "ptn_1", "tilda")["disconnected"] is True
    with pytest.raises(NotFound):
        integrations.get(deps, SHOP, PID, "ptn_1", "tilda")
    with pytest.raises(NotFound):
        integrations.disconnect(deps, SHOP, PID, "ptn_1", "tilda")
    first = integrations.log(deps, SHOP, PID, "ptn_1", "tilda", 2, None)
    assert [e["entry_id"] for e in first["items"]] == ["e2", "e1"] and first["next_cursor"] is not None
    rest = integrations.log(deps, SHOP, PID, "ptn_1", "tilda", 2, first["next_cursor"])
    assert [e["entry_id"] for e in rest["items"]] == ["e0"] and rest["next_cursor"] is None
    assert integrations.log(deps, Principal(kind="operator"), PID, "ptn_2", "tilda", 10, None)["items"] == []


def _signed_by(secret: str) -> Inbound:
    data = fixture("shopify", "orders_paid.json")
    raw = json.dumps(data["body"]).encode()
    headers = {**{k.lower(): v for k, v in data["headers"].items()}, "x-shopify-hmac-sha256": b64_hmac(secret, raw)}
    return Inbound(method="POST", url="https://sarafan.example/v1/webhooks/ptn_1/shopify", headers=headers,
                   raw_body=raw)


def _verifies(deps: ports.Ports, secret: str) -> bool:
    def recorder(program: object, partner_id: str, event: object, delivery_id: str | None = None) -> dict[str, str]:
        return {"status": "processed"}

    try:
        platform_intake.receive("ptn_1", "shopify", _signed_by(secret), None, deps, recorder)
    except Unauthorized:
        return False
    return True


def test_a_signing_secret_is_sealed_for_its_integration_and_a_new_one_keeps_the_old_verifying(
        deps: ports.Ports) -> None:
    pk, sk = keys.partner_locator("ptn_1")
    fakes.seed(deps, PartnerLocatorItem(PK=pk, SK=sk, program_id=PID, partner_id="ptn_1"))
    settings = {"shop_domain": "zerno.myshopify.com"}
    with pytest.raises(ValidationFailed) as missing:  # a signing platform needs its secret
        integrations.connect(deps, SHOP, PID, "ptn_1", "shopify", {"settings": settings})
    assert missing.value.details["errors"][0]["path"] == "$.settings.secret"
    first = integrations.connect(deps, SHOP, PID, "ptn_1", "shopify", {"settings": {**settings, "secret": "old-secret"}})
    assert first["secret"] == {"versions_valid": 1, "previous_valid_until": None} and "old-secret" not in str(first)
    stored = deps.integrations.get(PID, "ptn_1", "shopify")
    assert stored is not None and "old-secret" not in str(stored.secrets)  # only the sealed form is kept
    sealed = stored.secrets[-1]["sealed"]
    assert deps.sealer.open(sealed, integrations.seal_context(PID, "ptn_1", "shopify", "secret")) == b"old-secret"
    for other in (integrations.seal_context(PID, "ptn_2", "shopify", "secret"),
                  integrations.seal_context(PID, "ptn_1", "shopify", "api_token")):
        with pytest.raises(ValueError):  # sealed for this integration's secret only
            deps.sealer.open(sealed, other)
    assert _verifies(deps, "old-secret") and not _verifies(deps, "new-secret")

    deps.clock.advance(minutes=1)  # type: ignore[attr-defined]
    rotated = integrations.connect(deps, SHOP, PID, "ptn_1", "shopify",
                                   {"settings": {**settings, "secret": "new-secret"}})
    assert rotated["secret"]["versions_valid"] == 2 and rotated["secret"]["previous_valid_until"] is not None
    assert _verifies(deps, "new-secret") and _verifies(deps, "old-secret")  # the overlap
    deps.clock.advance(hours=24, minutes=1)  # type: ignore[attr-defined]
    assert _verifies(deps, "new-secret") and not _verifies(deps, "old-secret")
    kept = integrations.connect(deps, SHOP, PID, "ptn_1", "shopify", {"settings": settings})  # no new secret: kept
    assert kept["secret"]["versions_valid"] == 1 and _verifies(deps, "new-secret")


def test_a_crm_api_token_is_sealed_for_its_integration_and_never_shown(deps: ports.Ports) -> None:
    body = {"settings": {"subdomain": "zerno", "api_token": "amo-long-lived-token"}}
    view = integrations.connect(deps, SHOP, PID, "ptn_1", "amocrm", body)
    assert view["api_token_set"] is True and "amo-long-lived-token" not in str(view)
    stored = deps.integrations.get(PID, "ptn_1", "amocrm")
    assert stored is not None and "amo-long-lived-token" not in str(stored.api_token)
    context = integrations.seal_context(PID, "ptn_1", "amocrm", "api_token")
    assert deps.sealer.open(stored.api_token, context) == b"amo-long-lived-token"
    with pytest.raises(ValueError):
        deps.sealer.open(stored.api_token, integrations.seal_context(PID, "ptn_1", "amocrm", "secret"))
    again = integrations.connect(deps, SHOP, PID, "ptn_1", "amocrm", {"settings": {"subdomain": "zerno"}})
    assert again["api_token_set"] is True  # a PUT without the token keeps the sealed one
    assert deps.integrations.get(PID, "ptn_1", "amocrm").api_token == stored.api_token  # type: ignore[union-attr]
