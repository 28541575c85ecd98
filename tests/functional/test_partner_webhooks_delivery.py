"""Outgoing partner webhooks end to end: stream → deliveries → the sender → a real local HTTP receiver.

The receiver (``http.server`` on 127.0.0.1 in a thread) checks every request with the official
``standardwebhooks`` library. Retries move the one clock (``tests.support.CLOCK``, the ports' clock); nothing sleeps.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from standardwebhooks import Webhook

from chalicelib.domain import partner_hooks
from chalicelib.jobs import partner_webhooks as sender
from chalicelib.services import partner_webhooks as service
from chalicelib.store import partner_hooks as store
from tests.functional.test_ledger_support import Shop
from tests.functional.test_vouchers import offer, upload
from tests.notify_support import ses_sent, stream_poller
from tests.support import CLOCK, ApiClient

CONTACT = "fit-tech@example.com"


class Receiver:
    """A partner's webhook endpoint: records each request, answers ``status`` (or the next of ``script``)."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.status = 200
        self.script: list[int] = []
        self.answer = "ok"
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                receiver.requests.append({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()},
                                          "body": body})
                status = receiver.script.pop(0) if receiver.script else receiver.status
                payload = receiver.answer.encode()
                self.send_response(status)
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def of_type(self, event_type: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if json.loads(r["body"])["type"] == event_type]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.stop()


@pytest.fixture
def local_targets(api: ApiClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """The local run's setting: http and loopback targets allowed (the receiver is on 127.0.0.1)."""
    from chalicelib import config

    monkeypatch.setenv("SARAFAN_WEBHOOK_ALLOW_ANY_TARGET", "1")
    config.reset_settings()
    config.get_settings()


def real_now() -> datetime:
    """Now, to the second: the receiver's ``standardwebhooks`` checks timestamps against the wall clock."""
    return datetime.now(UTC).replace(microsecond=0)


def at(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def register(api: ApiClient, pid: str, partner: dict[str, Any], url: str, types: list[str]) -> dict[str, Any]:
    reply = api.post(f"/v1/programs/{pid}/partners/{partner['partner_id']}/webhook-endpoints",
                     {"url": url, "event_types": types}, key=partner["api_key"])
    assert reply.status == 201, reply.body
    return reply.body  # type: ignore[no-any-return]


def deliveries(api: ApiClient, pid: str, partner: dict[str, Any], endpoint: dict[str, Any]) -> list[dict[str, Any]]:
    reply = api.get(f"/v1/programs/{pid}/partners/{partner['partner_id']}/webhook-endpoints/"
                    f"{endpoint['endpoint_id']}/deliveries?limit=100", key=partner["api_key"])
    assert reply.status == 200, reply.body
    return reply.body["items"]  # type: ignore[no-any-return]


def verified(request: dict[str, Any], secret: str) -> dict[str, Any]:
    """The body, after the official library checked the signature (and the timestamp against the wall clock)."""
    return Webhook(secret).verify(request["body"], request["headers"])  # type: ignore[no-any-return]


def signed_with(request: dict[str, Any], secret: str) -> bool:
    """The library's own signature for these headers is among those sent (for a moved clock's timestamps)."""
    headers = request["headers"]
    stamp = datetime.fromtimestamp(int(headers["webhook-timestamp"]), UTC)
    expected = Webhook(secret).sign(headers["webhook-id"], stamp, request["body"].decode())
    return expected in headers["webhook-signature"].split(" ")


RULES: dict[str, Any] = {"hold_days": 0, "rules": [
    {"id": "cashback", "trigger": {"event": "order.paid"}, "recipient": {"type": "self"}, "amount": {"rate_bp": 500}},
]}


def coffee_rules(cafe: str, offer_id: str) -> dict[str, Any]:
    return {"hold_days": 0, "rules": [
        RULES["rules"][0],
        {"id": "coffee", "trigger": {"event": "order.paid"}, "recipient": {"type": "self"},
         "amount": {"offer": {"partner_id": cafe, "offer_id": offer_id}}}]}


def test_events_reach_the_partners_signed_once_each(api: ApiClient, receiver: Receiver, local_targets: None) -> None:
    now = real_now()
    CLOCK.set(now - timedelta(minutes=2))
    shop = Shop(api, None, partners=2)
    fit, cafe = shop.partners
    coffee = offer(api, shop.pid, cafe, low_pool_threshold=2)
    upload(api, shop.pid, cafe, coffee["offer_id"], ["C1", "C2", "C3"])
    assert api.put(f"/v1/programs/{shop.pid}/rules", coffee_rules(cafe["partner_id"], coffee["offer_id"])).status == 200
    fit_hook = register(api, shop.pid, fit, receiver.url + "/fit", ["reward.posted", "redemption.confirmed"])
    cafe_hook = register(api, shop.pid, cafe, receiver.url + "/cafe", ["voucher.issued", "pool.low", "reward.posted"])

    batches: list[dict[str, Any]] = []
    from app import app

    def recording(event: dict[str, Any], context: Any) -> Any:
        batches.append(event)
        return app.handler_map["table_stream"](event, context)

    from infra.local_stream import StreamPoller

    poller = StreamPoller(recording, log=lambda _m: None)
    reply = shop.order("olga", "o-1001", 200_000, at=at(now - timedelta(minutes=2)), partner=fit)
    member_id = reply["member"]["member_id"]
    shop.order("olga", "o-1002", 100_000, at=at(now - timedelta(minutes=1)), partner=fit)
    CLOCK.set(now)
    poller.drain()
    result = sender.run()
    assert result.get("delivered") == len(receiver.requests) and not result.get("retry"), result

    fit_requests = [r for r in receiver.requests if r["path"] == "/hook/fit"]
    cafe_requests = [r for r in receiver.requests if r["path"] == "/hook/cafe"]
    rewards = sorted((verified(r, fit_hook["signing_secret"]) for r in fit_requests), key=lambda b: b["timestamp"])
    assert [(b["type"], b["data"]["points"], b["data"]["order_id"]) for b in rewards] == [
        ("reward.posted", 100, "o-1001"), ("reward.posted", 50, "o-1002")]
    assert rewards[0]["data"]["member_id"] == member_id and rewards[0]["data"]["funding_partner_id"] == fit["partner_id"]
    cafe_bodies = [verified(r, cafe_hook["signing_secret"]) for r in cafe_requests]
    assert sorted(b["type"] for b in cafe_bodies) == ["pool.low", "voucher.issued", "voucher.issued"]
    [low] = [b for b in cafe_bodies if b["type"] == "pool.low"]
    assert low["data"] == {"offer_id": coffee["offer_id"], "remaining": 1, "threshold": 2, "epoch": low["data"]["epoch"]}
    vouchers = [b["data"] for b in cafe_bodies if b["type"] == "voucher.issued"]
    assert {v["code"] for v in vouchers} <= {"C1", "C2", "C3"} and all(v["member_id"] == member_id for v in vouchers)
    # The headers of Standard Webhooks; the id is the delivery's, the body names it too.
    first = fit_requests[0]
    assert json.loads(first["body"])["id"] == first["headers"]["webhook-id"]
    assert first["headers"]["content-type"] == "application/json"
    # No personal data: no e-mail, no customer id of the shop's customer.
    everything = b" ".join(r["body"] for r in receiver.requests).decode()
    assert "@example.com" not in everything and "olga" not in everything

    # The delivery log shows them delivered at the first attempt.
    logged = deliveries(api, shop.pid, fit, fit_hook)
    assert [(d["status"], d["attempts"], d["last_status_code"]) for d in logged] == [("delivered", 1, 200)] * 2
    assert logged[0]["payload"]["data"]["order_id"] == "o-1002"  # newest first

    # A redelivered stream batch creates no second delivery, and the sender sends nothing more.
    sent = len(receiver.requests)
    for batch in batches:
        app.handler_map["table_stream"](batch, None)
    assert sender.run() == {"due": 0}
    assert len(receiver.requests) == sent and len(deliveries(api, shop.pid, fit, fit_hook)) == 2

    # Points spent at the fitness club and confirmed: redemption.confirmed with its own order id.
    spent = shop.redeem(member_id, 100, "redeem-1", partner_key=fit["api_key"], order_id="o-2001")
    assert spent.status == 201, spent.body
    rid = spent.body["redemption_id"]
    confirmed = api.post(f"/v1/programs/{shop.pid}/members/{member_id}/redemptions/{rid}/confirm", key=fit["api_key"])
    assert confirmed.status == 200, confirmed.body
    poller.drain()
    sender.run()
    [redemption] = [verified(r, fit_hook["signing_secret"]) for r in receiver.of_type("redemption.confirmed")]
    assert redemption["data"]["redemption_id"] == rid and redemption["data"]["points"] == 100
    assert redemption["data"]["order_id"] == "o-2001"


def test_failures_retry_on_the_schedule_then_disable_the_endpoint_and_tell_the_partner(
        api: ApiClient, receiver: Receiver, local_targets: None) -> None:
    from chalicelib.notify import sources

    sources.use_delivery(None)
    start = real_now()
    CLOCK.set(start)
    shop = Shop(api, RULES)
    fit = shop.partner
    assert api.patch(f"/v1/programs/{shop.pid}/partners/{fit['partner_id']}", {"contact_email": CONTACT}).status == 200
    hook = register(api, shop.pid, fit, receiver.url, ["reward.posted"])
    receiver.status, receiver.answer = 500, "x" * 3000
    shop.order("masha", "o-1", 100_000, at=at(start))
    poller = stream_poller()
    poller.drain()

    times = []
    for _ in range(partner_hooks.MAX_ATTEMPTS):
        [item] = store.log_page(shop.pid, hook["endpoint_id"], 10, None)[0]
        assert item.status == "pending" and item.next_attempt_at is not None
        CLOCK.set(max(item.next_attempt_at, CLOCK.now()))
        times.append(CLOCK.now())
        assert sender.run().get("due") == 1
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps == list(partner_hooks.RETRY_DELAYS)
    assert times[-1] - times[0] >= timedelta(hours=24)
    assert len(receiver.requests) == partner_hooks.MAX_ATTEMPTS
    assert len({r["headers"]["webhook-id"] for r in receiver.requests}) == 1  # the same message id every time
    assert all(signed_with(r, hook["signing_secret"]) for r in receiver.requests)

    [logged] = deliveries(api, shop.pid, fit, hook)
    assert logged["status"] == "failed" and logged["attempts"] == 8 and logged["last_status_code"] == 500
    assert logged["last_error"] == "http_status" and logged["last_response"] == "x" * 512
    assert logged["next_attempt_at"] is None
    shown = api.get(f"/v1/programs/{shop.pid}/partners/{fit['partner_id']}/webhook-endpoints/{hook['endpoint_id']}")
    assert shown.body["enabled"] is False and shown.body["disabled_reason"] == "failing"
    assert shown.body["notice"]["status"] == "sent" and shown.body["notice"]["delivery_id"] == logged["delivery_id"]
    [mail] = [m for m in ses_sent() if m.to == [CONTACT]]
    assert "disabled" in mail.subject and receiver.url in mail.text and "HTTP 500" in mail.text
    assert sender.run() == {"due": 0}  # nothing left to try

    # Disabled: new events make no deliveries. Enabled again and retried by hand: delivered.
    shop.order("masha", "o-2", 100_000, at=at(CLOCK.now()))
    poller.drain()
    assert len(deliveries(api, shop.pid, fit, hook)) == 1
    base = f"/v1/programs/{shop.pid}/partners/{fit['partner_id']}/webhook-endpoints/{hook['endpoint_id']}"
    retry = f"{base}/deliveries/{logged['delivery_id']}/retry"
    assert api.post(retry, key=fit["api_key"]).error_code == "endpoint_disabled"
    enabled = api.patch(base, {"enabled": True}, key=fit["api_key"])
    assert enabled.body["enabled"] is True and enabled.body["disabled_reason"] is None
    receiver.status = 204
    again = api.post(retry, key=fit["api_key"])
    assert again.status == 202 and again.body["status"] == "pending", again.body
    assert api.post(retry, key=fit["api_key"]).error_code == "delivery_pending"
    assert sender.run().get("delivered") == 1
    [logged] = deliveries(api, shop.pid, fit, hook)
    assert logged["status"] == "delivered" and logged["attempts"] == 9 and logged["last_status_code"] == 204


def test_a_failed_manual_retry_is_one_attempt_and_disables_nothing(api: ApiClient, receiver: Receiver,
                                                                   local_targets: None) -> None:
    CLOCK.set(real_now())
    shop = Shop(api, RULES)
    fit = shop.partner
    hook = register(api, shop.pid, fit, receiver.url, ["reward.posted"])
    shop.order("masha", "o-1", 100_000, at=at(CLOCK.now()))
    stream_poller().drain()
    sender.run()
    [logged] = deliveries(api, shop.pid, fit, hook)
    receiver.status = 503
    base = f"/v1/programs/{shop.pid}/partners/{fit['partner_id']}/webhook-endpoints/{hook['endpoint_id']}"
    assert api.post(f"{base}/deliveries/{logged['delivery_id']}/retry").status == 202
    assert sender.run().get("failed") == 1
    [logged] = deliveries(api, shop.pid, fit, hook)
    assert logged["status"] == "failed" and logged["attempts"] == 2 and logged["last_status_code"] == 503
    assert api.get(base).body["enabled"] is True


def test_during_a_rotation_both_secrets_sign(api: ApiClient, receiver: Receiver, local_targets: None) -> None:
    CLOCK.set(real_now())
    shop = Shop(api, RULES)
    fit = shop.partner
    hook = register(api, shop.pid, fit, receiver.url, ["reward.posted"])
    base = f"/v1/programs/{shop.pid}/partners/{fit['partner_id']}/webhook-endpoints/{hook['endpoint_id']}"
    new = api.post(f"{base}/rotate-secret", key=fit["api_key"]).body["signing_secret"]
    shop.order("masha", "o-1", 100_000, at=at(CLOCK.now()))
    stream_poller().drain()
    sender.run()
    [request] = receiver.requests
    assert len(request["headers"]["webhook-signature"].split(" ")) == 2
    assert verified(request, new)["type"] == "reward.posted"
    assert verified(request, hook["signing_secret"])["type"] == "reward.posted"


def test_the_target_is_checked_again_at_send_time(api: ApiClient, monkeypatch: pytest.MonkeyPatch) -> None:
    dns = {"hooks.fitlab.example": ["93.184.216.34"]}
    monkeypatch.setattr(service, "resolve", lambda host: dns[host])
    sent: list[str] = []

    def transport(url: str, *args: Any) -> sender.Answer:
        sent.append(url)
        return sender.Answer(200, None)

    monkeypatch.setattr(sender, "transport", transport)
    CLOCK.set(real_now())
    shop = Shop(api, RULES)
    fit = shop.partner
    hook = register(api, shop.pid, fit, "https://hooks.fitlab.example/in", ["reward.posted"])
    dns["hooks.fitlab.example"] = ["10.0.0.7"]  # the name now points inside
    shop.order("masha", "o-1", 100_000, at=at(CLOCK.now()))
    stream_poller().drain()
    assert sender.run().get("retry") == 1
    assert sent == []  # no request at all
    [logged] = deliveries(api, shop.pid, fit, hook)
    assert logged["last_error"] == "unsafe_target" and logged["last_status_code"] is None
    dns["hooks.fitlab.example"] = ["93.184.216.34"]  # fixed: the next attempt goes out, to the checked address
    CLOCK.set(CLOCK.now() + partner_hooks.RETRY_DELAYS[0])
    assert sender.run().get("delivered") == 1 and sent == ["https://hooks.fitlab.example/in"]


def test_deleted_endpoints_and_unreachable_ones(api: ApiClient, receiver: Receiver, local_targets: None) -> None:
    CLOCK.set(real_now())
    shop = Shop(api, RULES)
    fit = shop.partner
    gone = register(api, shop.pid, fit, receiver.url, ["reward.posted"])
    closed = register(api, shop.pid, fit, "http://127.0.0.1:9/nothing-listens", ["reward.posted"])
    shop.order("masha", "o-1", 100_000, at=at(CLOCK.now()))
    stream_poller().drain()
    path = f"/v1/programs/{shop.pid}/partners/{fit['partner_id']}/webhook-endpoints/{gone['endpoint_id']}"
    assert api.call("DELETE", path).status == 200
    result = sender.run()
    assert result.get("cancelled") == 1 and result.get("retry") == 1, result
    assert receiver.requests == []
    [item] = store.log_page(shop.pid, gone["endpoint_id"], 10, None)[0]
    assert item.status == "cancelled" and item.last_error == "endpoint_deleted"
    [logged] = deliveries(api, shop.pid, fit, closed)
    assert logged["status"] == "pending" and logged["last_error"] == "connection_error"


def test_the_sender_only_makes_calls_its_policy_grants(api: ApiClient, receiver: Receiver, local_targets: None,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """By observation, through an attempt, a give-up, the disable and the notice: .chalice/policy-*-webhooks.json."""
    from chalicelib import aws
    from chalicelib.notify import sources
    from chalicelib.store.db import raw_client
    from tests.unit.test_notify_infra import policy_actions

    sources.use_delivery(None)
    monkeypatch.setattr(partner_hooks, "MAX_ATTEMPTS", 1)  # give up at once
    CLOCK.set(real_now())
    shop = Shop(api, RULES)
    fit = shop.partner
    assert api.patch(f"/v1/programs/{shop.pid}/partners/{fit['partner_id']}", {"contact_email": CONTACT}).status == 200
    register(api, shop.pid, fit, receiver.url, ["reward.posted"])
    receiver.status = 500
    shop.order("masha", "o-1", 100_000, at=at(CLOCK.now()))
    stream_poller().drain()
    seen: set[str] = set()
    raw_client().meta.events.register("before-call.dynamodb", lambda model, **_: seen.add(f"dynamodb:{model.name}"))
    for name in ("ses", "kms"):
        aws.client(name).meta.events.register(f"before-call.{name}",
                                              lambda model, _s=name, **_: seen.add(f"{_s}:{model.name}"))
    from chalicelib.services import envelope
    from chalicelib.store import cache

    envelope.reset_cache()
    cache.clear()
    assert sender.run().get("failed") == 1
    assert {"kms:Decrypt", "ses:SendRawEmail", "dynamodb:Query", "dynamodb:UpdateItem"} <= seen
    for stage in ("dev", "prod"):
        granted = policy_actions(f"policy-{stage}-webhooks.json")
        assert seen <= granted, seen - granted


def test_a_receiver_dripping_its_answer_is_cut_off(api: ApiClient, local_targets: None,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Each read is quick, the whole answer is not: the watchdog ends it (a 200 that never finishes is a timeout)."""
    stop = threading.Event()

    class Drip(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length") or 0))
            self.send_response(200)
            self.send_header("content-length", "40")
            self.end_headers()
            for _ in range(40):  # one byte every 50 ms: 2 s in all, or until the test ends
                if stop.wait(0.05):
                    return
                self.wfile.write(b"x")
                self.wfile.flush()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Drip)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    monkeypatch.setattr(sender, "TOTAL_SECONDS", 0.3)
    try:
        CLOCK.set(real_now())
        shop = Shop(api, RULES)
        hook = register(api, shop.pid, shop.partner, f"http://127.0.0.1:{server.server_address[1]}/drip",
                        ["reward.posted"])
        shop.order("masha", "o-1", 100_000, at=at(CLOCK.now()))
        stream_poller().drain()
        assert sender.run().get("retry") == 1
        [logged] = deliveries(api, shop.pid, shop.partner, hook)
        assert logged["status"] == "pending" and logged["last_error"] == "timeout"
    finally:
        stop.set()
        server.shutdown()
        server.server_close()
