"""A shop's or CRM's webhook (``services.platform_intake``) and the CRM fetch (``services.crm_fetch``) on the
in-memory ports: no moto, no SQS, no pipeline (a recorder stands for ``pipeline.process``).

Signing secrets and CRM tokens are sealed by the fake ``Sealer`` (no KMS); the CRM's answers are the documented
examples (``get_json`` stubbed). Through the real route, KMS and SQS under moto: tests/functional/test_platform_*.py.
The fakes are held to DynamoDB's and SQS's behaviour by tests/contract/test_platform_ports.py and test_webhook_ports.py.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from chalicelib.adapters.base import Inbound
from chalicelib.domain.errors import NotFound, Unauthorized
from chalicelib.services import crm_fetch, platform_intake, ports
from chalicelib.services.crm_http import PermanentFailure
from chalicelib.services.integrations import hash_token, seal_context
from chalicelib.store import fakes, keys
from chalicelib.store.dynamo_ports import new_integration
from chalicelib.store.integrations import ACK_TTL_HOURS
from chalicelib.store.tenancy import PartnerLocatorItem
from tests import ports_support as support
from tests.platform_support import b64_hmac, fixture

PID, SHOP = "prg_1", "ptn_1"
TOKEN = "t" * 43
SECRET = "shpss_signing_secret_0123456789"


class Recorder:
    """Stands for ``pipeline.process``: remembers each event and answers ``processed``."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any, str | None]] = []

    def __call__(self, program: Any, partner_id: str, event: Any, delivery_id: str | None = None) -> dict[str, Any]:
        self.events.append((partner_id, event, delivery_id))
        return {"status": "processed", "type": event.type}


@pytest.fixture
def deps() -> ports.Ports:
    deps = ports.fakes(support.NOW)
    pk, sk = keys.partner_locator(SHOP)
    fakes.seed(deps, support.program(PID, currency="RUB", default_locale="ru"), support.partner(PID, SHOP),
               PartnerLocatorItem(PK=pk, SK=sk, program_id=PID, partner_id=SHOP))
    tokens = [{"sha256": hash_token(TOKEN), "created_at": "2026-11-01T00:00:00Z", "expires_at": None}]
    secrets = [{"sealed": deps.sealer.seal(SECRET, seal_context(PID, SHOP, "shopify", "secret")),
                "created_at": "2026-11-01T00:00:00Z", "expires_at": None}]
    for platform, settings in (("tilda", {}), ("amocrm", {"subdomain": "zerno"}),
                               ("shopify", {"shop_domain": "zerno.myshopify.com"})):
        fakes.seed(deps, new_integration({"program_id": PID, "partner_id": SHOP, "platform": platform,
                                          "settings": settings, "secrets": secrets if platform == "shopify" else [],
                                          "tokens": tokens if platform != "shopify" else [],
                                          "api_token": _api_token(deps, "amo-token") if platform == "amocrm" else None,
                                          "revision": 1, "created_at": support.NOW, "updated_at": support.NOW}))
    return deps


def _api_token(deps: ports.Ports, token: str) -> dict[str, str]:
    return deps.sealer.seal(token, seal_context(PID, SHOP, "amocrm", "api_token"))


def _inbound(platform: str, name: str) -> Inbound:
    data = fixture(platform, name)
    return Inbound(method="POST", url=f"https://sarafan.example/v1/webhooks/{SHOP}/{platform}",
                   headers={k.lower(): v for k, v in data["headers"].items()}, raw_body=data["body"].encode())


def test_a_token_platforms_form_becomes_one_canonical_event(deps: ports.Ports) -> None:
    process = Recorder()
    reply = platform_intake.receive(SHOP, "tilda", _inbound("tilda", "form.json"), TOKEN, deps, process)
    assert reply["status"] == "processed" and [e["type"] for e in reply["events"]] == ["lead.created"]
    ((partner_id, event, _),) = process.events
    assert partner_id == SHOP and event.referral.code == "ANNA7K2Q"
    assert event.customer.phone == "+79123456789"  # normalised like every identifier


def test_a_ping_is_ignored_without_running_anything(deps: ports.Ports) -> None:
    process = Recorder()
    reply = platform_intake.receive(SHOP, "tilda", _inbound("tilda", "test.json"), TOKEN, deps, process)
    assert reply["status"] == "ignored" and process.events == []


def test_a_missing_or_wrong_token_is_refused_before_anything_is_read(deps: ports.Ports) -> None:
    process = Recorder()
    for token in (None, "", "x" * 43):
        with pytest.raises(Unauthorized):
            platform_intake.receive(SHOP, "tilda", _inbound("tilda", "form.json"), token, deps, process)
    assert process.events == []


def test_unknown_partners_platforms_and_connections_look_alike(deps: ports.Ports) -> None:
    for partner_id, platform in (("ptn_nobody", "tilda"), (SHOP, "myspace"), (SHOP, "insales")):
        with pytest.raises(NotFound) as refused:
            platform_intake.receive(partner_id, platform, _inbound("tilda", "form.json"), TOKEN, deps, Recorder())
        assert refused.value.message == "Unknown webhook endpoint"


def test_an_expired_token_is_refused_at_the_one_clock(deps: ports.Ports) -> None:
    item = deps.integrations.get(PID, SHOP, "tilda")
    assert item is not None
    item.tokens = [{**item.tokens[0], "expires_at": "2026-11-23T10:30:00Z"}]
    fakes.seed(deps, item)
    assert platform_intake.receive(SHOP, "tilda", _inbound("tilda", "test.json"), TOKEN, deps)["status"] == "ignored"
    deps.clock.advance(minutes=31)  # type: ignore[attr-defined]
    with pytest.raises(Unauthorized):
        platform_intake.receive(SHOP, "tilda", _inbound("tilda", "test.json"), TOKEN, deps)


def _signed(name: str, secret: str = SECRET) -> Inbound:
    data = fixture("shopify", name)
    raw = json.dumps(data["body"]).encode()
    headers = {**{k.lower(): v for k, v in data["headers"].items()}, "x-shopify-hmac-sha256": b64_hmac(secret, raw)}
    return Inbound(method="POST", url=f"https://sarafan.example/v1/webhooks/{SHOP}/shopify", headers=headers,
                   raw_body=raw)


def test_a_signed_platforms_delivery_is_verified_with_the_sealed_secret(deps: ports.Ports) -> None:
    process = Recorder()
    reply = platform_intake.receive(SHOP, "shopify", _signed("orders_paid.json"), None, deps, process)
    assert [e["type"] for e in reply["events"]] == ["order.paid"] and len(process.events) == 1
    assert process.events[0][2] == "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043"  # the platform's delivery id
    with pytest.raises(Unauthorized):
        platform_intake.receive(SHOP, "shopify", _signed("orders_paid.json", "another-secret"), None, deps, process)
    assert len(process.events) == 1


def test_an_ids_only_crm_event_is_queued_once_and_a_redelivery_is_a_duplicate(deps: ports.Ports) -> None:
    deps.crm_queue.configured = True  # type: ignore[attr-defined]
    process = Recorder()
    won = _inbound("amocrm", "lead_status_won.json")
    reply = platform_intake.receive(SHOP, "amocrm", won, TOKEN, deps, process)
    assert reply["status"] == "queued" and process.events == []
    (message,) = deps.crm_queue.messages  # type: ignore[attr-defined]
    assert (message["platform"], message["object_type"], message["object_id"]) == ("amocrm", "deal", "25399013")
    assert platform_intake.receive(SHOP, "amocrm", won, TOKEN, deps, process)["status"] == "duplicate"
    assert len(deps.crm_queue.messages) == 1  # type: ignore[attr-defined]
    deps.clock.advance(hours=ACK_TTL_HOURS + 1)  # type: ignore[attr-defined]
    assert platform_intake.receive(SHOP, "amocrm", won, TOKEN, deps, process)["status"] == "queued"


def test_without_a_queue_the_crm_event_is_mapped_from_the_webhook_alone(deps: ports.Ports) -> None:
    process = Recorder()
    reply = platform_intake.receive(SHOP, "amocrm", _inbound("amocrm", "lead_status_won.json"), TOKEN, deps, process)
    assert [e["type"] for e in reply["events"]] == ["deal.won"] and len(process.events) == 1
    assert deps.crm_queue.messages == []  # type: ignore[attr-defined]


def test_a_message_the_queue_refuses_fails_the_delivery_and_is_not_deduped(deps: ports.Ports) -> None:
    deps.crm_queue.configured = deps.crm_queue.refuse = True  # type: ignore[attr-defined]
    won = _inbound("amocrm", "lead_status_won.json")
    with pytest.raises(RuntimeError):
        platform_intake.receive(SHOP, "amocrm", won, TOKEN, deps, Recorder())
    deps.crm_queue.refuse = False  # type: ignore[attr-defined]
    assert platform_intake.receive(SHOP, "amocrm", won, TOKEN, deps, Recorder())["status"] == "queued"


# --------------------------------------------------------------------------- the queue's consumer


def _queued(deps: ports.Ports) -> dict[str, Any]:
    deps.crm_queue.configured = True  # type: ignore[attr-defined]
    platform_intake.receive(SHOP, "amocrm", _inbound("amocrm", "lead_status_won.json"), TOKEN, deps, Recorder())
    (message,) = deps.crm_queue.messages  # type: ignore[attr-defined]
    return json.loads(json.dumps(message))  # as SQS hands it over


@pytest.fixture
def amo_api(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The CRM's answers (the documented examples; 401 for another token); returns the URLs asked."""
    answers = fixture("amocrm", "api_v4_responses.json")["body"]
    asked: list[str] = []

    def get_json(target: Any) -> Any:
        asked.append(target.url)
        if target.headers.get("Authorization") != "Bearer amo-token":
            raise PermanentFailure("crm_auth_failed", "401 from the CRM")
        return answers["lead"] if "/leads/" in target.url else answers["contact"]

    monkeypatch.setattr(crm_fetch, "get_json", get_json)
    return asked


def test_the_consumer_completes_the_event_from_the_crm_and_runs_it(deps: ports.Ports, amo_api: list[str]) -> None:
    process = Recorder()
    result = crm_fetch.handle(_queued(deps), deps, process)
    assert result == {"status": "processed", "type": "deal.won"}
    ((_, event, delivery_id),) = process.events
    assert event.order.total == 700000 and event.customer.email == "ivan@example.ru"  # the API's price, main contact
    assert delivery_id is not None and delivery_id.startswith("crm-fetch:")
    assert [u.split("/api/v4/")[1].split("?")[0] for u in amo_api] == ["leads/25399013", "contacts/3"]


def test_a_refused_token_is_logged_for_the_partner_and_dropped(deps: ports.Ports, amo_api: list[str]) -> None:
    message = _queued(deps)
    item = deps.integrations.get(PID, SHOP, "amocrm")
    assert item is not None
    item.api_token = _api_token(deps, "revoked")
    fakes.seed(deps, item)
    deps.clock.advance(minutes=5)  # type: ignore[attr-defined]
    assert crm_fetch.handle(message, deps, Recorder()) == {"status": "failed", "code": "crm_auth_failed"}
    (entry,) = deps.integrations.log(PID, SHOP, "amocrm", 10, None).items
    assert (entry.code, entry.object_id, entry.at) == ("crm_auth_failed", "25399013",
                                                       support.NOW + timedelta(minutes=5))
    assert "revoked" not in entry.message  # never the token


def test_a_message_for_a_gone_integration_is_dropped(deps: ports.Ports, amo_api: list[str]) -> None:
    message = _queued(deps)
    item = deps.integrations.get(PID, SHOP, "amocrm")
    assert item is not None
    deps.integrations.delete(item)
    process = Recorder()
    assert crm_fetch.handle(message, deps, process) == {"status": "dropped"}
    assert process.events == [] and amo_api == []
