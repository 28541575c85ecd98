"""The real ``run`` path: moto server + Chalice local server in a subprocess, over real HTTP.

Each test's steps share one server process (about a second to start) and run in
order, ending with SIGTERM; the ``--data`` test restarts it once.
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


    def webhook(self, partner_id: str, secret: str, event: dict[str, Any]) -> tuple[int, Any]:
        from chalicelib.domain.webhook_signature import sign

        raw = json.dumps(event).encode()
        msg_id, ts = f"msg_{time.monotonic_ns()}", int(time.time())
        request = urllib.request.Request(
            f"{self.info['base_url']}/v1/webhooks/{partner_id}/events", data=raw, method="POST",
            headers={"Content-Type": "application/json", "webhook-id": msg_id, "webhook-timestamp": str(ts),
                     "webhook-signature": sign(secret, msg_id, ts, raw)})
        try:
            with urllib.request.urlopen(request, timeout=10) as reply:
                return reply.status, json.loads(reply.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"null")

    def stop(self) -> str:
        """SIGTERM; the run must exit 0 well within its 10 s budget. Returns its output."""
        self.process.send_signal(signal.SIGTERM)
        assert self.process.wait(15) == 0, self.output.read_text()
        return self.output.read_text()


def _start(tmp_path: Path, name: str, *extra: str) -> Running:
    ready = tmp_path / f"{name}-ready.json"
    output = tmp_path / f"{name}-output.log"
    command = [sys.executable, str(ROOT / "infra" / "local_run.py"), "--port", str(_free_port()),
               "--moto-port", str(_free_port()), "--ready-file", str(ready), "--quiet", *extra]
    with output.open("w") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=_clean_env(), stdout=log, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while not ready.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"local run did not become ready (exit {process.poll()}):\n{output.read_text()}")
        time.sleep(0.05)
    return Running(process, json.loads(ready.read_text(encoding="utf-8")), output)


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Any]:
    started: list[Running] = []

    def run(name: str, *extra: str) -> Running:
        started.append(_start(tmp_path, name, *extra))
        return started[-1]

    yield run
    for each in started:
        if each.process.poll() is None:
            each.process.kill()
            each.process.wait(10)


@pytest.fixture
def running(start: Any) -> Running:
    """A local run with the demo program but without its seeded history (7 s of setup each start)."""
    return start("run", "--no-history")  # type: ignore[no-any-return]


def test_local_run_serves_the_seeded_demo_and_stops_cleanly(start: Any) -> None:
    running = start("run")  # with the demo's three weeks of history, as a user starts it
    info = running.info
    demo = info["demo"]
    assert info["aws_mode"] == "moto"
    assert info["history"].startswith("demo history:")  # the dashboard has three weeks to show
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


def _order(customer: str, order_id: str, total: int) -> dict[str, Any]:
    return {"type": "order.paid", "occurred_at": "2026-01-15T10:00:00Z", "object": {"type": "order", "id": order_id},
            "customer": {"id": customer, "email": f"{customer}@example.com"},
            "order": {"total": total, "currency": "RUB"}}


def test_data_dir_keeps_programs_members_balances_and_keys_across_a_restart(start: Any, tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = start("first", "--data", str(data), "--no-history")
    info, demo = first.info, first.info["demo"]
    assert info["data_dir"] == str(data.resolve())
    # A second run on the same directory is refused at once, naming the first; the first goes on.
    code, output = _start_refused(tmp_path, "--data", str(data))
    assert code != 0 and f"is in use by another local run (pid {info['pid']})" in output, output
    assert "Traceback" not in output
    op = info["operator_key"]
    shop = demo["partners"][0]
    status, paid = first.webhook(shop["partner_id"], shop["webhook_secrets"]["events"], _order("c-1", "o-1", 149_000))
    assert status == 200 and paid["status"] == "processed", paid
    member_id = paid["member"]["member_id"]
    balance_path = f"/v1/programs/{demo['program_id']}/members/{member_id}/balance"
    status, balance = first.call("GET", balance_path, key=op)
    assert status == 200 and balance["available"] == 74, balance
    # A program made through the API, with its own partner key and webhook secret.
    status, other = first.call("POST", "/v1/programs", key=op, body={"name": "Вторая"})
    assert status == 201, other
    status, partner = first.call("POST", f"/v1/programs/{other['program_id']}/partners", key=op, body={"name": "Shop"})
    assert status == 201, partner
    status, listed = first.call("GET", "/v1/programs", key=op)
    programs_before = sorted((p["program_id"], p["name"]) for p in listed["items"])
    log = first.stop()
    assert "saved" in log and (data / "aws-state.json.gz").exists()
    assert oct((data / "keys.json").stat().st_mode & 0o777) == "0o600"

    second = start("second", "--data", str(data))
    assert second.info["operator_key"] == op
    assert second.info["demo"] == demo  # same program, same keys and secrets
    status, listed = second.call("GET", "/v1/programs", key=op)
    assert status == 200 and sorted((p["program_id"], p["name"]) for p in listed["items"]) == programs_before
    assert second.call("GET", balance_path, key=op) == (200, balance)
    status, profile = second.call("GET", f"/v1/programs/{demo['program_id']}/members/{member_id}", key=op)
    assert status == 200 and profile["member_id"] == member_id, profile
    status, found = second.call("GET", f"/v1/programs/{demo['program_id']}/members/lookup?email=c-1%40example.com",
                                key=op)
    assert status == 200 and found["member_id"] == member_id, found
    # Keys issued before the restart still open their own program only.
    status, own = second.call("GET", "/v1/programs", key=partner["api_key"])
    assert status == 200 and [p["program_id"] for p in own["items"]] == [other["program_id"]]
    assert second.call("GET", "/v1/programs", key=shop["api_key"])[1]["items"][0]["program_id"] == demo["program_id"]
    # The old webhook secret still verifies, and the event already processed is recognised as such.
    status, again = second.webhook(shop["partner_id"], shop["webhook_secrets"]["events"], _order("c-1", "o-1", 149_000))
    assert status == 200 and again["status"] == "duplicate", again
    status, fresh = second.webhook(partner["partner_id"], partner["webhook_secrets"]["events"],
                                   _order("c-9", "o-9", 20_000))
    assert status == 200 and fresh["status"] == "processed", fresh
    assert "restored" in second.stop()


def _start_refused(tmp_path: Path, *extra: str) -> tuple[int, str]:
    """A run that must stop before it serves anything: its exit code and output."""
    command = [sys.executable, str(ROOT / "infra" / "local_run.py"), "--port", str(_free_port()),
               "--moto-port", "0", "--ready-file", str(tmp_path / "refused-ready.json"), "--quiet", *extra]
    done = subprocess.run(command, cwd=ROOT, env=_clean_env(), capture_output=True, text=True, timeout=STARTUP_TIMEOUT)
    assert not (tmp_path / "refused-ready.json").exists()
    return done.returncode, done.stdout + done.stderr


def _damage_truncated_snapshot(data: Path) -> Path:
    path = data / "aws-state.json.gz"
    path.write_bytes(path.read_bytes()[:200])
    return path


def _damage_journal(data: Path) -> Path:
    path = sorted(data.glob("aws-journal-*.json.gz"))[0]
    path.write_bytes(b"\x1f\x8b garbage")
    return path


def _damage_keys(data: Path) -> Path:
    (data / "keys.json").write_text("{not json")
    return data / "keys.json"


@pytest.mark.parametrize("damage", [_damage_truncated_snapshot, _damage_journal, _damage_keys],
                         ids=["snapshot cut short", "journal segment garbage", "keys not json"])
def test_a_damaged_data_dir_stops_the_run_with_a_message_and_keeps_every_file(
        aws_env: None, tmp_path: Path, damage: Any) -> None:
    """The damaged file named, what to do said, exit code 1, no traceback, nothing in the directory written."""
    import boto3
    from moto import mock_aws

    from infra import local_state, moto_tuning

    data = tmp_path / "data"
    with mock_aws():  # a directory as a run leaves it: a full snapshot, a journal segment, the keys
        moto_tuning.apply()
        state = local_state.LocalState(data, log=lambda _: None)
        state.restore()
        ddb = boto3.client("dynamodb", region_name="eu-central-1")
        ddb.create_table(TableName="t", BillingMode="PAY_PER_REQUEST",
                         KeySchema=[{"AttributeName": "PK", "KeyType": "HASH"}],
                         AttributeDefinitions=[{"AttributeName": "PK", "AttributeType": "S"}])
        for value in range(2):
            ddb.put_item(TableName="t", Item={"PK": {"S": "k"}, "n": {"N": str(value)}, "pad": {"S": "x" * 2000}})
            assert state.save("snapshot")
        state.save_keys({"operator_key": "srf_op_kept"})
    damaged = damage(data)
    before = {path.name: path.read_bytes() for path in data.iterdir()}
    code, output = _start_refused(tmp_path, "--data", str(data))
    assert code == 1, output
    assert f"{damaged.resolve()} " in output and "damaged" in output and f"move it away (mv {data.resolve()} " in output
    assert "Traceback" not in output
    after = {path.name: path.read_bytes() for path in data.iterdir() if path.name != ".lock"}
    assert after == before


def test_a_data_path_that_is_a_file_stops_the_run_with_a_message(tmp_path: Path) -> None:
    target = tmp_path / "a-file"
    target.write_text("mine")
    code, output = _start_refused(tmp_path, "--data", str(target))
    assert code == 1 and f"--data {target.resolve()}: not a directory" in output and "Traceback" not in output, output
    assert target.read_text() == "mine"


def test_without_data_every_run_starts_empty(start: Any) -> None:
    first = start("mem-first", "--no-history")
    op = first.info["operator_key"]
    assert first.call("POST", "/v1/programs", key=op, body={"name": "Временная"})[0] == 201
    first.stop()
    second = start("mem-second", "--no-history")
    status, listed = second.call("GET", "/v1/programs", key=second.info["operator_key"])
    assert status == 200 and [p["name"] for p in listed["items"]] == ["Демо-коалиция"]
    assert second.info["operator_key"] != op
    second.stop()
