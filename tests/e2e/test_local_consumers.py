"""The local run's stream consumers in their own process, and stream records kept across a ``--data`` restart.

Real ``run`` processes over real HTTP (``tests/e2e/test_local_run.py``'s fixtures). Waits are readiness
waits with generous deadlines (a loaded CI machine), never speed checks.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from chalicelib.domain.identity import mask_email
from tests.e2e.test_local_run import Running, _order, start  # noqa: F401

pytestmark = pytest.mark.e2e

DEADLINE = 90.0


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/children", encoding="ascii") as children:
                found += [int(child) for child in children.read().split()]
        except FileNotFoundError:  # a thread that ended meanwhile
            continue
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _sent_lines(run: Running, who: str) -> list[str]:
    marker = f"notify sent: points_available [email→{mask_email(f'{who}@example.com')}"
    return [line for line in run.output.read_text(encoding="utf-8").splitlines() if line.startswith(marker)]


def _wait_for(condition: Any, run: Running, what: str) -> None:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > DEADLINE or run.process.poll() is not None:
            pytest.fail(f"{what} did not happen:\n{run.output.read_text(encoding='utf-8')[-4000:]}")
        time.sleep(0.2)


def test_the_consumers_run_in_a_second_process_that_is_restarted_when_it_dies(start: Any) -> None:  # noqa: F811
    run = start("split", "--no-history")
    run_pid = run.process.pid
    [child] = run.info["consumer_pids"]
    assert child != run_pid and child in _children(run_pid)
    shop = run.info["demo"]["partners"][0]

    before = set(_children(run_pid))  # the consumer process and the HTTP one (infra/local_http.py)
    os.kill(child, signal.SIGKILL)
    _wait_for(lambda: any(p not in before and _alive(p) for p in _children(run_pid)), run, "a new consumer process")
    assert "the stream consumer process exited unexpectedly" in run.output.read_text(encoding="utf-8")

    # The new process consumes: the order's notification is delivered, and /dev/outbox (served by the
    # run's main process) shows it.
    status, paid = run.webhook(shop["partner_id"], shop["webhook_secrets"]["events"], _order("k-1", "k-o1", 149_000))
    assert status == 200 and paid["status"] == "processed", paid
    _wait_for(lambda: _sent_lines(run, "k-1"), run, "the order's notification")
    status, outbox = run.call("GET", "/dev/outbox")
    assert status == 200 and any(m["member_id"] == paid["member"]["member_id"] for m in outbox["items"]), outbox

    children = [p for p in _children(run_pid) if _alive(p)]
    log = run.stop()
    assert "Traceback" not in log
    assert not [p for p in children if _alive(p)]  # the consumer process stopped with the run


def test_the_api_runs_in_its_own_process_that_is_restarted_when_it_dies(start: Any) -> None:  # noqa: F811
    run = start("http", "--no-history")
    run_pid, http = run.process.pid, run.info["http_pid"]
    assert http not in (None, run_pid) and http in _children(run_pid)
    shop = run.info["demo"]["partners"][0]
    status, paid = run.webhook(shop["partner_id"], shop["webhook_secrets"]["events"], _order("h-1", "h-o1", 99_000))
    assert status == 200 and paid["status"] == "processed", paid

    before = set(_children(run_pid))
    os.kill(http, signal.SIGKILL)
    _wait_for(lambda: any(p not in before and _alive(p) for p in _children(run_pid)), run, "a new HTTP process")
    assert "the HTTP process exited unexpectedly" in run.output.read_text(encoding="utf-8")

    # The listening socket stayed with the run: requests wait in its backlog for the new process (a request
    # times out at 10 s here, so a loaded machine's slow start is retried rather than failed).
    def healthy() -> bool:
        try:
            return run.call("GET", "/health")[0] == 200
        except OSError:
            return False

    _wait_for(healthy, run, "the new HTTP process answering")
    # The next order is processed once, and the rendered notification of the first one is at /dev/outbox.
    status, again = run.webhook(shop["partner_id"], shop["webhook_secrets"]["events"], _order("h-1", "h-o2", 50_000))
    assert status == 200 and again["status"] == "processed", again
    status, repeat = run.webhook(shop["partner_id"], shop["webhook_secrets"]["events"], _order("h-1", "h-o1", 99_000))
    assert status == 200 and repeat["status"] == "duplicate", repeat
    _wait_for(lambda: _sent_lines(run, "h-1"), run, "the order's notification")
    status, outbox = run.call("GET", "/dev/outbox")
    assert status == 200 and any(m["member_id"] == paid["member"]["member_id"] for m in outbox["items"]), outbox

    children = [p for p in _children(run_pid) if _alive(p)]
    log = run.stop()
    assert "Traceback" not in log
    assert not [p for p in children if _alive(p)]


def test_the_http_in_main_layout_still_serves(start: Any) -> None:  # noqa: F811
    run = start("inmain", "--no-history", "--http-in-main")
    assert run.info["http_pid"] is None
    shop = run.info["demo"]["partners"][0]
    status, paid = run.webhook(shop["partner_id"], shop["webhook_secrets"]["events"], _order("m-1", "m-o1", 99_000))
    assert status == 200 and paid["status"] == "processed", paid
    log = run.stop()
    assert "Traceback" not in log


def test_stream_records_not_consumed_at_a_stop_are_delivered_once_after_the_restart(start: Any,  # noqa: F811
                                                                                    tmp_path: Path) -> None:
    data = tmp_path / "data"
    # No event sources: the order's stream records stay unconsumed until the run stops.
    first = start("unconsumed", "--data", str(data), "--no-history", "--no-schedules")
    shop = first.info["demo"]["partners"][0]
    secret = shop["webhook_secrets"]["events"]
    status, paid = first.webhook(shop["partner_id"], secret, _order("s-1", "s-o1", 149_000))
    assert status == 200 and paid["status"] == "processed", paid
    log = first.stop()
    assert not _sent_lines(first, "s-1")
    kept = _unconsumed(log, "stopped: saved")
    assert kept > 0, log

    # The next start delivers them: one notification for the order.
    second = start("delivers", "--data", str(data))
    assert _unconsumed(second.output.read_text(encoding="utf-8"), "restored") == kept
    _wait_for(lambda: _sent_lines(second, "s-1"), second, "the saved order's notification")
    log = second.stop()
    assert len(_sent_lines(second, "s-1")) == 1
    kept = _unconsumed(log, "stopped: saved")  # the consumers' own later records, if any were left

    # Once: what the consumer finished stays finished (tests/functional/test_local_state.py checks the records
    # one by one); a second order's notification comes out after the restart.
    third = start("once", "--data", str(data))
    assert _unconsumed(third.output.read_text(encoding="utf-8"), "restored") == kept
    status, again = third.webhook(shop["partner_id"], secret, _order("s-1", "s-o2", 20_000))
    assert status == 200 and again["status"] == "processed", again
    _wait_for(lambda: _sent_lines(third, "s-1"), third, "the second order's notification")
    third.stop()
    assert len(_sent_lines(third, "s-1")) == 1


def _unconsumed(log: str, prefix: str) -> int:
    """The stream records a snapshot line (``stopped: saved …``, ``restored …``) says were not consumed yet."""
    line = [line for line in log.splitlines() if line.startswith(prefix)][-1]
    return int(line.split(" stream record(s) not consumed yet")[0].rsplit(" ", 1)[-1])
