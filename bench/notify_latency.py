#!/usr/bin/env python3
"""How long after a webhook's answer its notifications are delivered in the local run (not a test).

Run: ``.venv/bin/python bench/notify_latency.py [--orders 20]`` (or ``--attach READY_FILE`` of a
running ``python3 infra/dev.py run --ready-file``). It signs up, per order, a chain Masha ← Olga ←
friend (a chain each, so no member reaches the daily cap), then sends each friend's ``order.paid`` to the demo partner one at a
time and polls ``GET /dev/outbox`` every 20 ms until the upline's message about that order has
been delivered (through moto's DynamoDB stream, the one dispatcher and moto's SES). It prints the
latency from the webhook's answer to delivery (p50 / p95 / max; the polling adds up to 20 ms) and
how many orders were delivered within the 5 s the notifications issue asks for.
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from local_run import percentile, start_local_run  # noqa: E402

POLL_SECONDS = 0.02
TARGET_SECONDS = 5.0


def send(info: dict[str, Any], event: dict[str, Any]) -> Any:
    from chalicelib.domain.webhook_signature import sign

    partner = info["demo"]["partners"][0]
    raw = json.dumps(event).encode()
    msg_id, ts = f"msg_{time.time_ns()}", int(time.time())
    request = urllib.request.Request(
        f"{info['base_url']}/v1/webhooks/{partner['partner_id']}/events", data=raw, method="POST",
        headers={"Content-Type": "application/json", "webhook-id": msg_id, "webhook-timestamp": str(ts),
                 "webhook-signature": sign(partner["webhook_secrets"]["events"], msg_id, ts, raw)})
    with urllib.request.urlopen(request, timeout=30) as reply:
        return json.loads(reply.read())


def signup(info: dict[str, Any], who: str, code: str | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {"type": "member.signup", "occurred_at": "2026-01-10T10:00:00Z",
                             "object": {"type": "customer", "id": who},
                             "customer": {"id": who, "email": f"{who}@example.com"}}
    if code:
        event["referral"] = {"code": code}
    return send(info, event)["member"]  # type: ignore[no-any-return]


def delivered(info: dict[str, Any], template: str) -> int:
    with urllib.request.urlopen(f"{info['base_url']}/dev/outbox", timeout=30) as reply:
        items = json.loads(reply.read())["items"]
    return sum(1 for m in items if m.get("template") == template)


def trial(info: dict[str, Any], orders: int) -> int:
    tag = f"lat{time.time_ns() % 10**8}"
    friends = [f"{tag}-friend{i}" for i in range(orders)]
    for i, friend in enumerate(friends):  # a chain per order: one member's daily cap (10) would hold the rest
        masha = signup(info, f"{tag}-masha{i}")
        olga = signup(info, f"{tag}-olga{i}", masha["code"])
        signup(info, friend, olga["code"])
    time.sleep(2.0)  # let the "friend joined" messages go out first
    seen = delivered(info, "upline_purchase")
    latencies: list[float] = []
    for i, friend in enumerate(friends):
        send(info, {"type": "order.paid", "occurred_at": "2026-01-15T10:00:00Z",
                    "object": {"type": "order", "id": f"{friend}-o1"},
                    "customer": {"id": friend, "email": f"{friend}@example.com"},
                    "order": {"total": 300_000, "currency": "RUB"}})
        acked = time.monotonic()
        while delivered(info, "upline_purchase") <= seen:
            if time.monotonic() - acked > 60:
                print(f"order {i}: not delivered within 60 s")
                return 1
            time.sleep(POLL_SECONDS)
        latencies.append(time.monotonic() - acked)
        seen += 1
    within = sum(1 for s in latencies if s <= TARGET_SECONDS)
    print(f"orders                      {orders} (each: buyer, referrer and level-2 messages)")
    print(f"ack → upline message sent   p50 {percentile(latencies, .5) * 1000:.0f} ms, "
          f"p95 {percentile(latencies, .95) * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms")
    print(f"within {TARGET_SECONDS:.0f} s                  {within}/{orders} ({within / orders:.0%})")
    return 0 if within == orders else 1


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=20)
    parser.add_argument("--attach", type=Path, metavar="READY_FILE", help="use a running `run --ready-file` instead")
    args = parser.parse_args(argv)
    process = None
    if args.attach:
        info = json.loads(args.attach.read_text(encoding="utf-8"))
    else:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        process, info = start_local_run(port, Path(tempfile.gettempdir()) / "sarafan-notify-latency.log", [])
    try:
        return trial(info, args.orders)
    finally:
        if process is not None:
            process.send_signal(signal.SIGTERM)
            process.wait(30)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
