"""Helpers for the platform adapter tests: fixtures from the platforms' documented payloads, signing."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tests.functional.test_ledger_support import Shop
from tests.support import ApiClient, Reply

FIXTURES = Path(__file__).parent / "fixtures" / "platforms"


def fixture(platform: str, name: str) -> dict[str, Any]:
    """``{"source", "notes", "headers", "body"}``; ``source`` is the documentation the payload follows."""
    data: dict[str, Any] = json.loads((FIXTURES / platform / name).read_text())
    assert data["source"].startswith("https://"), "every fixture names its documentation"
    return data


def b64_hmac(secret: str, message: bytes) -> str:
    return base64.b64encode(hmac.new(secret.encode(), message, hashlib.sha256).digest()).decode()


RULES: dict[str, Any] = {
    "max_depth": 3, "hold_days": 0,
    "rules": [
        {"id": "cashback", "trigger": {"event": "order.paid"}, "recipient": {"type": "self"},
         "amount": {"rate_bp": 500}},
        {"id": "friend-bonus", "trigger": {"event": "order.paid", "order": "first"}, "recipient": {"type": "friend"},
         "amount": {"points": 300}},
        {"id": "referrer-bonus", "trigger": {"event": "order.paid", "order": "first"},
         "recipient": {"type": "referrer", "level": 1}, "amount": {"points": 500}},
    ],
}


class PlatformShop(Shop):
    """A program with one partner and rules, plus a connected platform."""

    def __init__(self, api: ApiClient, rules: dict[str, Any] | None = None, **program: Any) -> None:
        super().__init__(api, rules or RULES, **program)

    @property
    def base(self) -> str:
        return f"/v1/programs/{self.pid}/partners/{self.partner['partner_id']}/integrations"

    def connect(self, platform: str, key: str | None = "operator", **settings: Any) -> Reply:
        return self.api.put(f"{self.base}/{platform}", {"settings": settings}, key=key)

    def connected(self, platform: str, **settings: Any) -> dict[str, Any]:
        reply = self.connect(platform, **settings)
        assert reply.status == 200, reply.body
        return reply.body  # type: ignore[no-any-return]

    def deliver(self, url: str, raw: bytes | str, headers: dict[str, str]) -> Reply:
        parts = urlsplit(url)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        return self.api.post(path, raw=raw, key=None, headers=headers)

    def member_id_of(self, customer_id: str) -> str:
        reply = self.api.get(f"/v1/programs/{self.pid}/members/lookup?customer_id={customer_id}"
                             f"&partner_id={self.partner['partner_id']}")
        assert reply.status == 200, reply.body
        return reply.body["member_id"]  # type: ignore[no-any-return]

    def rewards(self, member_id: str) -> dict[str, int]:
        """``{rule_id: net points}`` of the member's reward entries."""
        out: dict[str, int] = {}
        for entry in self.ledger(member_id):
            if entry["kind"] in ("reward", "reversal") and entry.get("rule_id"):
                out[entry["rule_id"]] = out.get(entry["rule_id"], 0) + int(entry["points"])
        return out


class FakeCrm:
    """A local HTTP server answering recorded CRM API responses (``{path: (status, json)}``)."""

    def __init__(self, routes: dict[str, tuple[int, Any]], token: str | None = None) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.routes = routes
        self.calls: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fake.calls.append(self.path)
                path = self.path.split("?")[0]
                if token and self.headers.get("Authorization") != f"Bearer {token}":
                    status, body = 401, {"status": "error", "message": "Authentication credentials not found"}
                else:
                    status, body = fake.routes.get(path, (404, {"status": "error", "message": "not found"}))
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.base_url = f"http://127.0.0.1:{self.server.server_port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def crm_queue(monkeypatch: Any) -> str:
    """An SQS queue for the CRM fetch in moto (the ``aws`` fixture must be active)."""
    from chalicelib import aws, config

    url: str = aws.client("sqs").create_queue(QueueName="sarafan-test-crm-fetch")["QueueUrl"]
    monkeypatch.setenv("SARAFAN_CRM_FETCH_QUEUE_URL", url)
    config.reset_settings()
    config.get_settings()
    return url


def drain(queue_url: str) -> list[dict[str, Any]]:
    """Run the consumer on every queued message, as the SQS-triggered Lambda would."""
    from chalicelib import aws
    from chalicelib.api.crm_consumer import consume

    sqs = aws.client("sqs")
    results = []
    while True:
        reply = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        messages = reply.get("Messages", [])
        if not messages:
            return results
        for message in messages:
            results.append(consume(message["Body"]))
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
