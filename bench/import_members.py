#!/usr/bin/env python3
"""Member import throughput against the local run (not a test).

    .venv/bin/python bench/import_members.py                 # 100,000 rows (4.3-4.9 min on the 2-CPU machine, 2026-12-06)
    .venv/bin/python bench/import_members.py --rows 2000     # a quick look
    .venv/bin/python bench/import_members.py --in-process --rows 2000   # CPU per row, by part

Starts the local run as a user does (``infra/dev.py run``, with the demo program and the
schedules; when ``.venv`` is not stamped as current, which would make ``dev.py`` re-install it,
the same ``infra/local_run.py`` that ``dev.py run`` execs, with the venv's Python), creates a program
and a partner through the API, writes a CSV of ``--rows`` members (e-mail, phone, customer id,
name, opening balance; every fifth row names an earlier row as its referrer) and runs
``infra/dev.py import``'s code (``infra/data_tools.py``) over HTTP: the check pass, the import
through the chunked import API, then (after the local run's stream consumer has caught up) the
same import again, which changes nothing.

Prints per pass the wall time, rows/s, and the CPU per row of the local run's main process (moto; read
from ``/proc``: the figure the machine's load disturbs least) and of the CLI; for the import also of the
run's API and stream consumer processes, how long the stream consumer (notifications, analytics,
settlement feed, reading every written item) took to catch up afterwards and its CPU per row, and the
local run's peak memory.

``--in-process`` measures the same rows without HTTP, threads or the machine's load in the way (as
``bench/local_engine.py`` does): moto with the local run's adjustments, the chunk route through
``chalice.test.Client``, then the table's stream through the local run's poller; it prints the CPU
per row of the import requests, of the stream, and of each stream handler.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "infra"))

import data_tools  # noqa: E402
import dev  # noqa: E402


def start_local_run(workdir: Path) -> tuple[subprocess.Popen[bytes], dict[str, str], str]:
    ready = workdir / "ready.json"
    # (the engine's own settings, SARAFAN_MOTO_DISK / SARAFAN_MOTO_HOT_ITEMS, reach it; the app's do not)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AWS_", "SARAFAN_")) or k.startswith("SARAFAN_MOTO_")}
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    args = ["--port", str(port), "--moto-port", "0", "--quiet", "--ready-file", str(ready)]
    if dev.venv_is_current():
        argv, how = [sys.executable, str(ROOT / "infra" / "dev.py"), "run", *args], "infra/dev.py run"
    else:
        argv = [str(dev.venv_python()), str(ROOT / "infra" / "local_run.py"), *args]
        how = "infra/local_run.py (what dev.py run execs; .venv not stamped, so no dev.py re-install)"
    process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not ready.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the local run did not start")
        time.sleep(0.2)
    return process, json.loads(ready.read_text()), how


def cpu_seconds(pid: int) -> float:
    """User + system CPU of process ``pid`` (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_memory_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def settle(pid: int, quiet_share: float = 0.1, quiet_for: float = 3.0, limit: float = 3600.0) -> float:
    """Wait until the process uses under ``quiet_share`` of a CPU for ``quiet_for`` seconds (the
    stream consumer caught up); return the seconds waited before that quiet stretch."""
    started = time.monotonic()
    quiet_since = None
    last = cpu_seconds(pid)
    while time.monotonic() - started < limit:
        time.sleep(0.5)
        now = cpu_seconds(pid)
        busy = (now - last) / 0.5 >= quiet_share
        last = now
        if busy:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= quiet_for:
            return quiet_since - started
    return time.monotonic() - started


def write_rows(path: Path, rows: int) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["email", "phone", "customer_id", "name", "opening_balance", "referrer_customer_id"])
        for i in range(rows):
            referrer = f"c-{i // 5}" if i % 5 == 4 else ""
            writer.writerow([f"member{i}@example.com", f"+7916{i:07d}", f"c-{i}", f"Member {i}", str(i % 1000),
                             referrer])


def _cpu_or_zero(pid: int) -> float:
    try:
        return cpu_seconds(pid)
    except OSError:  # (a restarted child's predecessor)
        return 0.0


class Pass:
    """A pass's wall time and CPU: the local run's main process (moto; "local run"), its API process and its
    stream consumer process (``others``: role -> pids, from the ready file), and this CLI."""

    def __init__(self, label: str, rows: int, pid: int, others: dict[str, list[int]] | None = None) -> None:
        self.label, self.rows, self.pid, self.others = label, rows, pid, others or {}

    def _others(self) -> dict[str, float]:
        return {role: sum(_cpu_or_zero(p) for p in pids) for role, pids in self.others.items()}

    def __enter__(self) -> Pass:
        self.wall, self.server, self.client = time.perf_counter(), cpu_seconds(self.pid), time.process_time()
        self.other_cpu = self._others()
        return self

    def __exit__(self, *_: object) -> None:
        self.wall = time.perf_counter() - self.wall
        self.server = cpu_seconds(self.pid) - self.server
        self.client = time.process_time() - self.client
        self.other_cpu = {role: used - self.other_cpu.get(role, 0.0) for role, used in self._others().items()}

    def line(self) -> str:
        rate = self.rows / self.wall
        others = "".join(f", {role} {used / self.rows * 1000:4.2f}" for role, used in self.other_cpu.items())
        return (f"{self.label:26s} {self.wall:8.1f} s {rate:7.0f} rows/s  100,000 rows in "
                f"{100_000 / rate / 60:5.1f} min  local run {self.server / self.rows * 1000:5.2f} ms CPU/row"
                f"{others}, CLI {self.client / self.rows * 1000:4.2f} ms CPU/row")


def run(api: data_tools.Api, path: Path, pid: str, partner: str, out: io.StringIO, chunk_rows: int,
        *, dry_run: bool = False) -> None:
    code = data_tools.run_import(api, path, pid, partner, check=False, dry_run=dry_run, out=out,
                                 rows_per_chunk=chunk_rows, progress_stream=sys.stderr)
    if code != 0:
        raise SystemExit(out.getvalue())


def in_process(rows: int, chunk_rows: int) -> int:
    import collections
    import logging

    sys.path.insert(0, str(ROOT))
    from tests.conftest import moto_aws

    with moto_aws():
        from app import app
        from chalicelib.notify import dispatcher
        from infra.local_stream import StreamPoller
        from tests.conftest import OPERATOR_KEY
        from tests.support import ApiClient

        logging.disable(logging.CRITICAL)
        api = ApiClient(app, OPERATOR_KEY)
        api.check_openapi = False
        pid = api.create_program(name="Import bench")["program_id"]
        partner = api.create_partner(pid)["partner_id"]
        poller = StreamPoller(app.handler_map["table_stream"], log=lambda _m: None)
        poller.drain()
        dispatcher._load()
        handler_cpu: collections.defaultdict[str, float] = collections.defaultdict(float)

        def timed(handler: object, name: str) -> object:
            def run(records: list[object]) -> object:
                started = time.process_time()
                try:
                    return handler(records)  # type: ignore[operator]
                finally:
                    handler_cpu[name] += time.process_time() - started
            return run

        for entity, handlers in dispatcher._handlers.items():
            dispatcher._handlers[entity] = [timed(h, f"{h.__module__}.{h.__name__} ({entity})")  # type: ignore[misc]
                                            for h in handlers]
        job = api.post(f"/v1/programs/{pid}/imports", {"partner_id": partner}).body
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "members.csv"
            write_rows(path, rows)
            request_cpu = stream_cpu = 0.0
            for number, (text, first_line, _n) in enumerate(data_tools.chunks(path, chunk_rows), 1):
                started = time.process_time()
                reply = api.put(f"/v1/programs/{pid}/imports/{job['import_id']}/chunks/{number}",
                                {"csv": text, "first_line": first_line})
                request_cpu += time.process_time() - started
                assert reply.status == 200 and not reply.body["errors"], reply.body
                started = time.process_time()
                poller.drain()
                stream_cpu += time.process_time() - started
    print(f"rows: {rows:,} in one process (moto with infra/moto_tuning.py, no HTTP), {chunk_rows}-row chunks")
    print(f"import requests {request_cpu / rows * 1000:6.2f} ms CPU/row")
    print(f"stream          {stream_cpu / rows * 1000:6.2f} ms CPU/row, of which handlers:")
    for name, seconds in sorted(handler_cpu.items(), key=lambda kv: -kv[1]):
        print(f"  {name:72s} {seconds / rows * 1000:5.2f}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--chunk-rows", type=int, default=data_tools.CHUNK_ROWS)
    parser.add_argument("--in-process", action="store_true", help="CPU per row by part, in this process")
    parser.add_argument("--settle-limit", type=float, default=3600.0,
                        help="seconds to wait for the stream consumer to catch up after the import")
    parser.add_argument("--no-rerun", action="store_true", help="skip the re-run of the imported file")
    args = parser.parse_args()
    rows = args.rows
    if args.in_process:
        return in_process(rows, args.chunk_rows)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        process, info, how = start_local_run(workdir)
        try:
            api = data_tools.Api(info["base_url"], info["operator_key"])
            settle(process.pid)  # the demo seed and the first schedules
            load = os.getloadavg()
            say(f"rows: {rows:,}, {args.chunk_rows}-row chunks (Python {sys.version.split()[0]}, {os.cpu_count()} "
                f"CPUs, load average {load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f} at the start; local run: {how})")
            program = api.json("POST", "/v1/programs", {"name": "Bench", "allowed_origins": ["https://shop.test"]})
            pid = program["program_id"]
            partner = api.json("POST", f"/v1/programs/{pid}/partners", {"name": "Shop"})["partner_id"]
            path = workdir / "members.csv"
            write_rows(path, rows)
            with Pass("check pass (dry run)", rows, process.pid) as check:
                run(api, path, pid, partner, io.StringIO(), args.chunk_rows, dry_run=True)
            say(check.line())
            summary = io.StringIO()
            others = {"API": [info["http_pid"]] if info.get("http_pid") else [],
                      "consumers": list(info.get("consumer_pids") or [])}
            with Pass("import", rows, process.pid, {k: v for k, v in others.items() if v}) as imported:
                run(api, path, pid, partner, summary, args.chunk_rows)
            say(imported.line())
            say(f"import:  {summary.getvalue().strip().splitlines()[-1]}")
            say(f"local run memory after the import: {peak_memory_mb(process.pid):,.0f} MB (peak)")
            stream_cpu = cpu_seconds(process.pid)
            catch_up = settle(process.pid, limit=args.settle_limit)
            stream_cpu = cpu_seconds(process.pid) - stream_cpu
            caught_up = catch_up < args.settle_limit
            say(f"stream consumer after the import: {catch_up:.1f} s more "
                f"{'to catch up' if caught_up else '(still busy: stopped waiting)'}, "
                f"{stream_cpu / rows * 1000:.2f} ms CPU/row; import + stream "
                f"{(imported.server + stream_cpu) / rows * 1000:.2f} ms CPU/row of the local run")
            if not args.no_rerun:
                rerun_summary = io.StringIO()
                with Pass("re-run (already imported)", rows, process.pid) as rerun:
                    run(api, path, pid, partner, rerun_summary, args.chunk_rows)
                say(rerun.line())
                say(f"re-run:  {rerun_summary.getvalue().strip().splitlines()[-1]}")
            say(f"local run peak memory: {peak_memory_mb(process.pid):,.0f} MB")
        finally:
            process.terminate()
            process.wait(timeout=60)
    return 0


def say(line: str) -> None:
    print(line, flush=True)


if __name__ == "__main__":
    sys.exit(main())
