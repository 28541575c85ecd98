"""The local run delivers notifications through the stream, over real HTTP and the moto server.

A signed ``order.paid`` for a two-level chain (Masha ← Olga ← Vera): moto's SES then holds
the buyer's, the referrer's and the level-2 referrer's messages, the local run printed one line per
message, and ``GET /dev/outbox`` shows them rendered.
"""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any

import pytest

# The shared local-run fixtures; ``running`` starts without the demo's seeded history.
from tests.e2e.test_local_run import Running, running, start  # noqa: F401

pytestmark = pytest.mark.e2e


def send(run: Running, event: dict[str, Any]) -> Any:
    from chalicelib.domain.webhook_signature import sign

    partner = run.info["demo"]["partners"][0]
    raw = json.dumps(event)
    msg_id, ts = f"msg_{time.time_ns()}", int(time.time())
    request = urllib.request.Request(
        f"{run.info['base_url']}/v1/webhooks/{partner['partner_id']}/events", data=raw.encode(), method="POST",
        headers={"Content-Type": "application/json", "webhook-id": msg_id, "webhook-timestamp": str(ts),
                 "webhook-signature": sign(partner["webhook_secrets"]["events"], msg_id, ts, raw.encode())})
    with urllib.request.urlopen(request, timeout=10) as reply:
        return json.loads(reply.read())


def signup(run: Running, who: str, code: str | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {"type": "member.signup", "occurred_at": "2026-01-10T10:00:00Z",
                             "object": {"type": "customer", "id": who},
                             "customer": {"id": who, "email": f"{who}@example.com"}}
    if code:
        event["referral"] = {"code": code}
    return send(run, event)["member"]  # type: ignore[no-any-return]


def ses_sent_count(run: Running) -> int:
    """How many messages moto's SES accepted (what the SES API actually received)."""
    import boto3

    ses = boto3.client("ses", endpoint_url=run.info["aws_endpoint"], region_name=run.info["region"],
                       aws_access_key_id="local", aws_secret_access_key="local")
    return int(ses.get_send_quota()["SentLast24Hours"])


def test_an_order_in_a_two_level_chain_reaches_ses_through_the_stream(running: Running) -> None:  # noqa: F811
    masha = signup(running, "masha")
    olga = signup(running, "olga", masha["code"])
    signup(running, "vera", olga["code"])
    started = time.monotonic()
    send(running, {"type": "order.paid", "occurred_at": "2026-01-15T10:00:00Z",
                   "object": {"type": "order", "id": "o-1"}, "customer": {"id": "vera", "email": "vera@example.com"},
                   "order": {"total": 300_000, "currency": "RUB"}})
    from chalicelib.domain.identity import mask_email

    # Only this chain's recipients: the demo program's seeded history has welcomes of its own.
    ours = {mask_email(f"{who}@example.com") for who in ("masha", "olga", "vera")}
    subjects: dict[str, str] = {}
    # Delivery takes about a second on an idle machine (the local run polls the stream every 0.2 s);
    # speed is measured in bench/, not asserted here, so a loaded CI machine gets a generous deadline.
    while time.monotonic() - started < 60.0:
        status, body = running.call("GET", "/dev/outbox")
        assert status == 200
        subjects = {m["deliveries"][0]["recipient"]: m["subject"] for m in body["items"]
                    if m["template"] in ("friend_welcome", "friend_purchase_rewarded", "upline_purchase")
                    and m["deliveries"][0]["recipient"] in ours}
        if len(subjects) == 3:
            break
        time.sleep(0.2)
    print(f"delivered {len(subjects)} messages {time.monotonic() - started:.1f} s after the webhook")
    assert len(subjects) == 3, (subjects, [line for line in running.output.read_text(encoding="utf-8").splitlines() if "notify" in line or "stream" in line])
    assert ses_sent_count(running) >= 5  # two "friend joined", then the buyer's, referrer's and level 2's
    status, body = running.call("GET", "/dev/outbox")
    first = body["items"][0]
    with urllib.request.urlopen(running.info["base_url"] + first["html_url"], timeout=10) as reply:
        assert reply.headers["Content-Type"].startswith("text/html") and b"<html" in reply.read()
    output = running.output.read_text(encoding="utf-8")
    assert output.count(f"notify sent: upline_purchase [email→{mask_email('masha@example.com')}") == 1
    assert "masha@example.com" not in output  # recipients are masked in the lines it prints
