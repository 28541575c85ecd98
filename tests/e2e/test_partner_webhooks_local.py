"""The local run delivers partner webhooks: an event's message reaches a receiver on 127.0.0.1 soon after.

``python3 infra/dev.py run`` allows http://127.0.0.1 targets and fires the sender every second, so the
first attempt follows the event within a few seconds (in AWS: within the sender's minute).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest
from standardwebhooks import Webhook

from tests.e2e.test_local_run import running, start  # noqa: F401 (fixtures)
from tests.functional.test_partner_webhooks_delivery import Receiver

pytestmark = pytest.mark.e2e


def test_a_reward_reaches_the_partner_endpoint_within_seconds(running: Any) -> None:  # noqa: F811
    receiver = Receiver()
    try:
        demo = running.info["demo"]
        pid, partner = demo["program_id"], demo["partners"][1]
        status, endpoint = running.call(
            "POST", f"/v1/programs/{pid}/partners/{partner['partner_id']}/webhook-endpoints",
            key=partner["api_key"], body={"url": receiver.url, "event_types": ["reward.posted"]})
        assert status == 201, endpoint
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        status, reply = running.webhook(partner["partner_id"], partner["webhook_secrets"]["events"], {
            "type": "order.paid", "occurred_at": now, "object": {"type": "order", "id": "fit-1001"},
            "customer": {"id": "c-1", "email": "c1@example.com"}, "order": {"total": 250_000, "currency": "RUB"}})
        assert status == 200, reply
        deadline = time.monotonic() + 30  # a bound for a loaded machine, not a speed figure
        while not receiver.requests and time.monotonic() < deadline:
            time.sleep(0.1)
        assert receiver.requests, running.output.read_text()[-3000:]
        body = Webhook(endpoint["signing_secret"]).verify(receiver.requests[0]["body"],
                                                          receiver.requests[0]["headers"])
        assert body["type"] == "reward.posted" and body["data"]["order_id"] == "fit-1001"
        assert body["data"]["member_id"] == reply["member"]["member_id"]
        # The sender records the delivery after the receiver answered: wait (bounded) for that write too.
        deliveries = (f"/v1/programs/{pid}/partners/{partner['partner_id']}/webhook-endpoints/"
                      f"{endpoint['endpoint_id']}/deliveries")
        status, log = running.call("GET", deliveries, key=partner["api_key"])
        while status == 200 and log["items"][0]["status"] == "pending" and time.monotonic() < deadline:
            time.sleep(0.1)
            status, log = running.call("GET", deliveries, key=partner["api_key"])
        assert status == 200 and log["items"][0]["status"] == "delivered", log
    finally:
        receiver.stop()
