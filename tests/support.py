"""Test helpers: a JSON client over ``chalice.test.Client`` and tenant factories."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from itertools import count
from typing import Any

from chalice.test import Client

from chalicelib.domain.clock import ManualClock, parse_iso


@dataclass
class Reply:
    status: int
    body: Any
    headers: dict[str, str]

    @property
    def error_code(self) -> str | None:
        return self.body.get("error", {}).get("code") if isinstance(self.body, dict) else None


_message_ids = count(1)


#: The clock of the ports the functional tests run on (``tests/conftest.py`` wires it into the production ports
#: and sets it back to the wall clock before each test): ``CLOCK.set(at)`` stops time at ``at``, ``CLOCK.advance``
#: moves it, ``CLOCK.now()`` reads it. The service tests' ``ports.fakes(now)`` hold the same kind of clock
#: (``deps.clock``). Nothing else moves the service's time (docs/architecture.md#one-clock).
CLOCK = ManualClock()


def _catch_up(event: Any) -> None:
    if not CLOCK.stopped or not isinstance(event, dict):
        return
    try:
        at = parse_iso(event["occurred_at"])
    except (KeyError, TypeError, ValueError, OverflowError):
        return
    if CLOCK.now() < at <= CLOCK.now() + timedelta(days=3660):
        CLOCK.set(at)


class ApiClient:
    def __init__(self, app: Any, operator_key: str) -> None:
        self.client = Client(app)
        self.operator_key = operator_key
        #: Check every reply against the OpenAPI document (tests/openapi_check.py).
        self.check_openapi = True

    @contextmanager
    def unchecked(self) -> Iterator[None]:
        """Replies inside are not checked against the document: only for a test that provokes what no
        route may ever answer (e.g. the 500 of an injected crash) to prove what happens next."""
        self.check_openapi = False
        try:
            yield
        finally:
            self.check_openapi = True

    def call(self, method: str, path: str, *, json_body: Any = None, key: str | None = "operator",
             headers: dict[str, str] | None = None, raw: bytes | str | None = None) -> Reply:
        all_headers = {"Content-Type": "application/json", **(headers or {})}
        if key == "operator":
            key = self.operator_key
        if key:
            all_headers["Authorization"] = f"Bearer {key}"
        body = raw if raw is not None else (json.dumps(json_body) if json_body is not None else None)
        response = getattr(self.client.http, method.lower())(path, headers=all_headers, body=body)
        text = response.body.decode("utf-8") if isinstance(response.body, bytes) else response.body
        try:
            parsed = json.loads(text) if text else None
        except ValueError:
            parsed = text
        reply = Reply(response.status_code, parsed, {k.lower(): v for k, v in response.headers.items()})
        if self.check_openapi:
            from tests.openapi_check import check_response

            check_response(method, path, reply.status, reply.headers, reply.body)
        return reply

    def get(self, path: str, **kw: Any) -> Reply:
        return self.call("GET", path, **kw)

    def post(self, path: str, json_body: Any = None, **kw: Any) -> Reply:
        return self.call("POST", path, json_body=json_body, **kw)

    def patch(self, path: str, json_body: Any = None, **kw: Any) -> Reply:
        return self.call("PATCH", path, json_body=json_body, **kw)

    def put(self, path: str, json_body: Any = None, **kw: Any) -> Reply:
        return self.call("PUT", path, json_body=json_body, **kw)

    def send_event(self, partner: dict[str, Any], event: dict[str, Any]) -> Reply:
        """POST a canonical event signed with the partner's current secret (Standard Webhooks).

        With a frozen clock, an event dated after it moves the clock to its time: an event is
        received after it happened (the service refuses ``occurred_at`` more than 5 minutes ahead).
        """
        from chalicelib.domain.webhook_signature import sign

        _catch_up(event)
        raw = json.dumps(event)
        msg_id, ts = f"msg_{next(_message_ids)}", int(CLOCK.now().timestamp())  # the service's one clock
        return self.post(f"/v1/webhooks/{partner['partner_id']}/events", raw=raw, key=None, headers={
            "webhook-id": msg_id, "webhook-timestamp": str(ts),
            "webhook-signature": sign(partner["webhook_secrets"]["events"], msg_id, ts, raw.encode())})

    def processed(self, partner: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
        """``send_event`` that must succeed; returns the reply body."""
        reply = self.send_event(partner, event)
        assert reply.status == 200, reply.body
        return reply.body  # type: ignore[no-any-return]

    # -- factories --------------------------------------------------------------

    def create_program(self, **fields: Any) -> dict[str, Any]:
        reply = self.post("/v1/programs", {"name": "Demo", "allowed_origins": ["https://shop.test"], **fields})
        assert reply.status == 201, reply.body
        return reply.body  # type: ignore[no-any-return]

    def create_partner(self, program_id: str, **fields: Any) -> dict[str, Any]:
        reply = self.post(f"/v1/programs/{program_id}/partners", {"name": "Shop", **fields})
        assert reply.status == 201, reply.body
        return reply.body  # type: ignore[no-any-return]
