"""The real ``run`` path: moto server + Chalice local server in a subprocess, over real HTTP.

One test on purpose: the steps share one server process (about a second to
start) and must run in order on one xdist worker, ending with SIGTERM.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT = 120.0  # a readiness wait, not a speed check: shared CI machines can be slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_is_free(port: int) -> bool:
    """Nobody listens, and a restarted server (SO_REUSEADDR, as servers do) can bind it."""
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            return False
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _clean_env() -> dict[str, str]:
    """The environment of a newcomer: no AWS endpoint/credentials, no Sarafan settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SARAFAN_"))}
    env["PYTHONUNBUFFERED"] = "1"
    env["SARAFAN_LOCAL_SCHEDULE_SPEEDUP"] = "1200"  # rate(10 minutes) → every 0.5 s
    env["AWS_CONFIG_FILE"] = env["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
    return env


class Running:
    def __init__(self, process: subprocess.Popen[str], info: dict[str, Any], output: Path) -> None:
        self.process, self.info, self.output = process, info, output

    def call(self, method: str, path: str, key: str | None = None, body: Any = None) -> tuple[int, Any]:
        headers = {"Content-Type": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.info["base_url"] + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=10) as reply:
                return reply.status, json.loads(reply.read() or b"null")
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"null")


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Running]:
    ready = tmp_path / "ready.json"
    output = tmp_path / "output.log"
    command = [sys.executable, str(ROOT / "infra" / "local_run.py"), "--port", str(_free_port()),
               "--moto-port", str(_free_port()), "--ready-file", str(ready), "--quiet"]
    with output.open("w") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=_clean_env(), stdout=log, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not ready.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"local run did not become ready (exit {process.poll()}):\n{output.read_text()}")
            time.sleep(0.05)
        yield Running(process, json.loads(ready.read_text(encoding="utf-8")), output)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def test_local_run_serves_the_seeded_demo_and_stops_cleanly(running: Running) -> None:
    info = running.info
    demo = info["demo"]
    assert info["aws_mode"] == "moto"
    assert info["operator_key"].startswith("srf_op_")
    assert demo["publishable_key"].startswith("srf_pub_")
    assert [p["name"] for p in demo["partners"]] == ["Кофейня Зерно", "FitLab"]
    assert all(p["webhook_secrets"]["events"].startswith("whsec_") for p in demo["partners"])

    assert running.call("GET", "/health") == (200, {"status": "ok", "stage": "local"})

    status, listing = running.call("GET", "/v1/programs", key=info["operator_key"])
    assert status == 200
    assert [(p["program_id"], p["name"]) for p in listing["items"]] == [(demo["program_id"], "Демо-коалиция")]

    # Another program exists; a partner key still sees exactly its own one.
    status, other = running.call("POST", "/v1/programs", key=info["operator_key"], body={"name": "Другая"})
    assert status == 201, other
    partner_key = demo["partners"][0]["api_key"]
    status, own = running.call("GET", "/v1/programs", key=partner_key)
    assert status == 200
    assert [p["program_id"] for p in own["items"]] == [demo["program_id"]]
    assert running.call("GET", f"/v1/programs/{other['program_id']}", key=partner_key)[0] == 404
    assert running.call("GET", "/v1/programs", key="srf_op_not-the-key")[0] == 401

    status, document = running.call("GET", "/openapi.json")
    assert status == 200
    assert document["openapi"].startswith("3.")
    assert "/v1/programs" in document["paths"]

    # Every @app.schedule handler is driven locally, and the ones that fired did not fail.
    from app import app

    scheduled = sorted(source.name for source in app.event_sources if hasattr(source, "schedule_expression"))
    assert sorted(line.split(":", 1)[0] for line in info["schedules"] if not line.startswith("skipped")) == scheduled

    running.process.send_signal(signal.SIGTERM)
    assert running.process.wait(15) == 0, running.output.read_text()
    log = running.output.read_text()
    assert "stopped" in log
    assert "Traceback" not in log
    assert not [line for line in log.splitlines() if line.startswith("schedule ") and " failed:" in line]
    assert _port_is_free(info["moto_port"])
    assert _port_is_free(int(info["base_url"].rsplit(":", 1)[1]))
