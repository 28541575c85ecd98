"""HubSpot through the real route: v3 signatures, event batches, and the asynchronous CRM v3 fetch.

Fixtures: tests/fixtures/platforms/hubspot (the docs' webhook batch; CRM v3 answers in the
documented shape, served by a local fake CRM).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.platform_support import FakeCrm, PlatformShop, b64_hmac, crm_queue, drain, fixture
from tests.support import CLOCK, ApiClient, Reply

SECRET = "hubspot-client-secret-6b1c0f3e"
TOKEN = "pat-eu1-0f0e0d0c-0b0a-0908-0706-050403020100"


def _now_ms() -> int:
    """HubSpot's timestamp is checked against the service's one clock, which tests move (``tests.support.CLOCK``)."""

    return int(CLOCK.now().timestamp() * 1000)


def send(shop: PlatformShop, body: Any, secret: str = SECRET, ts: int | None = None,
         raw: bytes | None = None, drop: tuple[str, ...] = ()) -> Reply:
    raw = raw if raw is not None else json.dumps(body).encode()
    ts = _now_ms() if ts is None else ts
    path = f"/v1/webhooks/{shop.partner['partner_id']}/hubspot"
    message = b"POST" + f"https://srf.test{path}".encode() + raw + str(ts).encode()
    headers = {"Content-Type": "application/json", "X-HubSpot-Signature-v3": b64_hmac(secret, message),
               "X-HubSpot-Request-Timestamp": str(ts), "X-HubSpot-Signature-Version": "v3"}
    for name in drop:
        headers.pop(name)
    return shop.deliver(path, raw, headers)


@pytest.fixture
def shop(api: ApiClient) -> PlatformShop:
    rules = {"max_depth": 1, "hold_days": 0, "rules": [
        {"id": "lead-bonus", "trigger": {"event": "lead.created"}, "recipient": {"type": "referrer", "level": 1},
         "amount": {"points": 200}},
        {"id": "deal-commission", "trigger": {"event": "deal.won"}, "recipient": {"type": "referrer", "level": 1},
         "amount": {"rate_bp": 500}}]}
    s = PlatformShop(api, rules, currency="USD")
    s.connected("hubspot", secret=SECRET)
    return s


@pytest.fixture
def crm(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeCrm]:
    api = fixture("hubspot", "crm_v3_responses.json")["body"]
    fake = FakeCrm({"/hubspot/crm/v3/objects/deals/5208191617": (200, api["deal"]),
                    "/hubspot/crm/v3/objects/contacts/201": (200, api["contact"])}, token=TOKEN)
    monkeypatch.setenv("SARAFAN_CRM_FAKE_BASE_URL", fake.base_url)
    yield fake
    fake.close()


def test_signature_vectors(shop: PlatformShop) -> None:
    body = fixture("hubspot", "contact_events.json")["body"]
    assert send(shop, body).status == 200
    assert send(shop, body, secret="wrong-secret-wrong").status == 401
    assert send(shop, body, ts=_now_ms() - 6 * 60 * 1000).status == 401  # stale
    assert send(shop, body, ts=_now_ms() + 6 * 60 * 1000).status == 401
    assert send(shop, body, drop=("X-HubSpot-Signature-v3",)).status == 401
    assert send(shop, body, drop=("X-HubSpot-Request-Timestamp",)).status == 401
    # A body changed after signing.
    raw = json.dumps(body).encode()
    ts = _now_ms()
    path = f"/v1/webhooks/{shop.partner['partner_id']}/hubspot"
    signature = b64_hmac(SECRET, b"POST" + f"https://srf.test{path}".encode() + raw + str(ts).encode())
    tampered = raw.replace(b"1246978", b"1246979")
    reply = shop.deliver(path, tampered, {"Content-Type": "application/json", "X-HubSpot-Signature-v3": signature,
                                          "X-HubSpot-Request-Timestamp": str(ts)})
    assert reply.status == 401
    # Signed for the Lambda's internal host instead of the public URL HubSpot called.
    internal = b64_hmac(SECRET, b"POST" + f"https://abc.execute-api.eu-central-1.amazonaws.com{path}".encode()
                        + raw + str(ts).encode())
    assert shop.deliver(path, raw, {"Content-Type": "application/json", "X-HubSpot-Signature-v3": internal,
                                    "X-HubSpot-Request-Timestamp": str(ts)}).status == 401
    # Rotation overlap.
    shop.connected("hubspot", secret="hubspot-client-secret-rotated")
    assert send(shop, body).status == 200
    assert send(shop, body, secret="hubspot-client-secret-rotated").status == 200


def test_each_event_of_a_batch_is_handled_on_its_own(shop: PlatformShop) -> None:
    body = fixture("hubspot", "contact_events.json")["body"]
    body = [*body, "not an event", {"subscriptionType": "contact.creation"}]
    reply = send(shop, body)
    assert reply.status == 200
    statuses = [e["status"] for e in reply.body["events"]]
    assert statuses == ["skipped", "processed", "skipped", "skipped"]
    created = reply.body["events"][1]
    assert created["type"] == "lead.created" and created["member"]["created"] is True
    assert send(shop, body).body["status"] == "duplicate"


def test_malformed_batches_are_400(shop: PlatformShop) -> None:
    assert send(shop, None, raw=b'{"not": "an array"}').status == 400
    assert send(shop, [{"objectId": 1, "subscriptionType": "contact.creation"}] * 101).status == 400


def test_a_won_deal_without_an_api_token_is_skipped_with_the_reason(shop: PlatformShop) -> None:
    reply = send(shop, fixture("hubspot", "deal_stage_events.json")["body"])
    events = reply.body["events"]
    assert [e["status"] for e in events] == ["skipped", "skipped"]
    assert "api_token" in events[0]["reason"]


def test_a_won_deal_is_fetched_from_crm_v3_and_attributed(shop: PlatformShop, crm: FakeCrm,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    queue = crm_queue(monkeypatch)
    shop.connected("hubspot", api_token=TOKEN)
    anna = shop.member("anna")["member_id"]
    assert shop.api.put(f"/v1/programs/{shop.pid}/members/{anna}/code", {"code": "ANNA-7K2Q"}).status == 200
    reply = send(shop, fixture("hubspot", "deal_stage_events.json")["body"])
    assert reply.status == 200 and reply.body["status"] == "queued"
    assert [e["status"] for e in reply.body["events"]] == ["queued", "skipped"]
    assert crm.calls == []  # acknowledged before any CRM call
    (result,) = drain(queue)
    assert result["status"] == "processed" and result["type"] == "deal.won"
    assert result["attribution"]["referrer_id"] == anna
    assert [c.split("?")[0] for c in crm.calls] == ["/hubspot/crm/v3/objects/deals/5208191617",
                                                   "/hubspot/crm/v3/objects/contacts/201"]
    # 5 % of 1500.00 USD = 7500 cents = 75 points.
    assert shop.rewards(anna) == {"deal-commission": 75}
    # The same events redelivered (HubSpot retries with the same eventId) are acknowledged 200 as
    # duplicates at once: nothing is queued and the CRM is not asked again.
    again = send(shop, fixture("hubspot", "deal_stage_events.json")["body"])
    assert again.status == 200 and again.body["status"] == "duplicate", again.body
    assert [e["status"] for e in again.body["events"]] == ["duplicate", "skipped"]
    assert drain(queue) == []
    assert len(crm.calls) == 2  # one fetch of the deal and its contact, ever
    assert shop.rewards(anna) == {"deal-commission": 75}
    # A new event about the same deal (another eventId) is queued and fetched, and still pays once.
    body = fixture("hubspot", "deal_stage_events.json")["body"]
    body[0] = {**body[0], "eventId": int(body[0]["eventId"]) + 1000, "attemptNumber": 0}
    assert send(shop, body).body["status"] == "queued"
    (later,) = drain(queue)
    assert later["status"] == "duplicate" and len(crm.calls) == 4
    assert shop.rewards(anna) == {"deal-commission": 75}


def test_acknowledgements_expire_after_the_documented_ttl(shop: PlatformShop, crm: FakeCrm,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from datetime import timedelta

    from chalicelib.store.integrations import ACK_TTL_HOURS

    queue = crm_queue(monkeypatch)
    shop.connected("hubspot", api_token=TOKEN)
    start = CLOCK.now()
    body = fixture("hubspot", "deal_stage_events.json")["body"]
    assert send(shop, body).body["status"] == "queued"
    CLOCK.set(start + timedelta(hours=ACK_TTL_HOURS - 1))
    assert send(shop, body).body["status"] == "duplicate"
    # After the TTL the marker no longer counts (even before DynamoDB's TTL sweep removes it).
    CLOCK.set(start + timedelta(hours=ACK_TTL_HOURS + 1))
    assert send(shop, body).body["status"] == "queued"
    assert len(drain(queue)) == 2


def test_a_delivery_whose_message_cannot_be_queued_is_retried_not_deduped(shop: PlatformShop, crm: FakeCrm,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib.services import crm_fetch

    queue = crm_queue(monkeypatch)
    shop.connected("hubspot", api_token=TOKEN)
    body = fixture("hubspot", "deal_stage_events.json")["body"]
    real = crm_fetch.enqueue

    def refuse(*_a: Any) -> None:
        raise RuntimeError("SQS is unavailable")

    monkeypatch.setattr(crm_fetch, "enqueue", refuse)
    with shop.api.unchecked():
        failed = send(shop, body)
    assert failed.status >= 500  # the platform retries the delivery
    monkeypatch.setattr(crm_fetch, "enqueue", real)
    assert send(shop, body).body["status"] == "queued"
    assert [r["status"] for r in drain(queue)] == ["processed"]


def test_a_refused_api_token_is_logged_for_the_partner(shop: PlatformShop, crm: FakeCrm,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    queue = crm_queue(monkeypatch)
    shop.connected("hubspot", api_token="pat-eu1-revoked-token-000000")
    send(shop, fixture("hubspot", "deal_stage_events.json")["body"])
    (result,) = drain(queue)
    assert result == {"status": "failed", "code": "crm_auth_failed"}
    log = shop.api.get(f"{shop.base}/hubspot/log", key=shop.partner["api_key"])
    assert log.status == 200, log.body
    (entry,) = log.body["items"]
    assert entry["code"] == "crm_auth_failed" and entry["object_id"] == "5208191617"
    assert entry["platform"] == "hubspot" and log.body["next_cursor"] is None
    assert "revoked" not in json.dumps(log.body)


def test_crm_calls_go_only_to_documented_hosts() -> None:
    from chalicelib.services.crm_http import PermanentFailure, resolve

    assert resolve("hubspot", "https://api.hubapi.com/crm/v3/objects/deals/1") == \
        "https://api.hubapi.com/crm/v3/objects/deals/1"
    assert resolve("bitrix24", "https://zerno.bitrix24.ru/rest/1/abc/crm.deal.get.json?id=1").startswith("https://")
    for platform, url in (("hubspot", "https://evil.example/crm"), ("hubspot", "http://api.hubapi.com/x"),
                          ("bitrix24", "https://169.254.169.254/latest"), ("amocrm", "https://zerno.amocrm.ru.evil.io/")):
        with pytest.raises(PermanentFailure):
            resolve(platform, url)


def test_the_integration_log_is_paged_newest_first_and_only_for_that_partner(shop: PlatformShop, crm: FakeCrm,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    queue = crm_queue(monkeypatch)
    shop.connected("hubspot", api_token="pat-eu1-revoked-token-000000")
    event = fixture("hubspot", "deal_stage_events.json")["body"][0]
    for n in range(3):  # three won deals, each refused by the CRM
        send(shop, [{**event, "eventId": 9000 + n, "objectId": 7000 + n}])
    assert [r["code"] for r in drain(queue)] == ["crm_auth_failed"] * 3
    url = f"{shop.base}/hubspot/log"
    first = shop.api.get(url + "?limit=2")
    assert first.status == 200 and len(first.body["items"]) == 2 and first.body["next_cursor"]
    rest = shop.api.get(url + f"?limit=2&cursor={first.body['next_cursor']}")
    ids = [e["object_id"] for e in first.body["items"] + rest.body["items"]]
    assert ids == ["7002", "7001", "7000"]  # newest first
    assert rest.body["next_cursor"] is None
    # Another partner of the program cannot read it; a cursor of another log is refused; bounds.
    other = shop.api.create_partner(shop.pid)
    assert shop.api.get(url, key=other["api_key"]).status == 403
    other_log = f"/v1/programs/{shop.pid}/partners/{other['partner_id']}/integrations/hubspot/log"
    assert shop.api.get(other_log + f"?cursor={first.body['next_cursor']}").status == 400
    assert shop.api.get(url + "?limit=0").status == 400
    assert shop.api.get(url + "?limit=101").status == 400
    assert shop.api.get(f"{shop.base}/myspace/log").status == 404
    # The log outlives the connection: that is when a partner wants to know what went wrong.
    assert shop.api.call("DELETE", f"{shop.base}/hubspot").status == 200
    assert len(shop.api.get(url).body["items"]) == 3
