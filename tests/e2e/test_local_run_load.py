"""The local run under many senders: no connection reset at 50 at once, and an orderly stop under load.

Correctness only, no timing: requests may queue (each waits as long as the machine needs, up to a generous
client timeout), but none may be reset or fail; a SIGTERM while senders are sending must end in the run's
own orderly stop (exit 0), not in its watchdog (which exits 1 once ``STOP_DEADLINE`` seconds have passed).
Throughput and latency are measured by ``bench/local_run.py``, not here.
"""

from __future__ import annotations

import json
import signal
import threading
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from tests.e2e.test_local_run import Running, start  # noqa: F401 -- the fixture that starts a local run

pytestmark = pytest.mark.e2e

SENDERS = 50
CLIENT_TIMEOUT = 300.0  # a client that waits as long as a loaded CI machine needs: no speed is tested


def _order(n: int) -> dict[str, Any]:
    return {"type": "order.paid", "occurred_at": "2026-01-15T10:00:00Z",
            "object": {"type": "order", "id": f"load-{n}"},
            "customer": {"id": f"load-c{n % 25}", "email": f"load-c{n % 25}@example.com"},
            "order": {"total": 10_000, "currency": "RUB"}}


def _send(running: Running, n: int) -> int | str:
    """The HTTP status, or the name of the connection error the sender saw."""
    from chalicelib.domain.webhook_signature import sign

    shop = running.info["demo"]["partners"][0]
    raw = json.dumps(_order(n)).encode()
    msg_id, ts = f"msg_load{n}_{time.monotonic_ns()}", int(time.time())
    request = urllib.request.Request(
        f"{running.info['base_url']}/v1/webhooks/{shop['partner_id']}/events", data=raw, method="POST",
        headers={"Content-Type": "application/json", "webhook-id": msg_id, "webhook-timestamp": str(ts),
                 "webhook-signature": sign(shop["webhook_secrets"]["events"], msg_id, ts, raw)})
    try:
        with urllib.request.urlopen(request, timeout=CLIENT_TIMEOUT) as reply:
            reply.read()
            return int(reply.status)
    except urllib.error.HTTPError as err:
        return int(err.code)
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        return type(reason).__name__


def test_fifty_senders_at_once_are_all_answered_and_none_is_reset(start: Any) -> None:  # noqa: F811
    running = start("load", "--no-history")
    start = threading.Barrier(SENDERS)
    results: dict[int, int | str] = {}

    def sender(n: int) -> None:
        start.wait()
        results[n] = _send(running, n)

    threads = [threading.Thread(target=sender, args=(n,)) for n in range(SENDERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(CLIENT_TIMEOUT + 30)
    assert sorted(results) == list(range(SENDERS))
    assert [n for n, status in results.items() if status != 200] == [], results
    # Every order was processed once: a customer's balance holds exactly its two orders' 5 % cashback
    # (100.00 RUB each: 5 points each, as the demo rules pay).
    demo, op = running.info["demo"], running.info["operator_key"]
    status, found = running.call("GET", f"/v1/programs/{demo['program_id']}/members/lookup?customer_id=load-c0",
                                 key=demo["partners"][0]["api_key"])
    assert status == 200, found
    status, balance = running.call("GET", f"/v1/programs/{demo['program_id']}/members/{found['member_id']}/balance",
                                   key=op)
    assert status == 200 and balance["lifetime_earned"] == 2 * 5, balance
    running.stop()


def test_sigterm_while_senders_send_ends_in_an_orderly_stop(start: Any) -> None:  # noqa: F811
    running = start("load", "--no-history")
    results: list[int | str] = []
    lock = threading.Lock()
    stop_sending = threading.Event()
    counter = iter(range(10**6))

    def sender() -> None:
        while not stop_sending.is_set():
            with lock:
                n = next(counter)
            outcome = _send(running, n)
            with lock:
                results.append(outcome)
            if outcome not in (200,):
                return  # the run is stopping: its answer (503, or a closed socket) ends this sender

    threads = [threading.Thread(target=sender) for _ in range(20)]
    for thread in threads:
        thread.start()
    while sum(1 for r in results if r == 200) < 40:  # load is on: 40 orders acknowledged
        assert all(r == 200 for r in results), results
        time.sleep(0.05)
    running.process.send_signal(signal.SIGTERM)
    # Exit 0 is the orderly path; the watchdog would have exited 1 after STOP_DEADLINE seconds.
    code = running.process.wait(120)
    stop_sending.set()
    for thread in threads:
        thread.join(CLIENT_TIMEOUT + 30)
    log = running.output.read_text()
    assert code == 0, log
    assert "stopped" in log and "Traceback" not in log and "exiting now" not in log
    # Before the stop every answer was 200; after it a sender sees 503 (queued, not processed: safe to retry)
    # or a closed socket, never a half-answered request that was processed.
    assert set(results) <= {200, 503, "ConnectionRefusedError", "ConnectionResetError", "RemoteDisconnected",
                            "BrokenPipeError"}, set(results)
