#!/usr/bin/env python3
"""Member import throughput against the local run (not a test).

    .venv/bin/python bench/import_members.py --rows 2000

Starts ``infra/local_run.py`` (moto server + Chalice local server, as ``dev.py run``) in a
subprocess, creates a program and a partner through the API, writes a CSV of ``--rows`` members
(email, phone, customer id, name, opening balance; every fifth row names an earlier row as its
referrer), and runs the CLI's import (``infra/data_tools.py``: the check pass, then the write
pass) over real HTTP. Prints rows/s of each pass and the time 100,000 rows would take at that
rate, then re-runs the import to time the "already imported" path. Keep ``--rows`` small on a
shared machine; the rate does not depend on the file size (each chunk is one request, each row
one transaction).
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


def start_local_run(workdir: Path) -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    ready = workdir / "ready.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SARAFAN_"))}
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen([sys.executable, str(ROOT / "infra" / "local_run.py"), "--port", str(port),
                                "--moto-port", "0", "--no-seed",
                                "--no-schedules", "--quiet", "--ready-file", str(ready)],
                               cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not ready.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the local run did not start")
        time.sleep(0.2)
    return process, json.loads(ready.read_text())


def write_rows(path: Path, rows: int, partner: str) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["email", "phone", "customer_id", "name", "opening_balance", "referrer_customer_id"])
        for i in range(rows):
            referrer = f"c-{i // 5}" if i % 5 == 4 else ""
            writer.writerow([f"member{i}@example.com", f"+7916{i:07d}", f"c-{i}", f"Member {i}", str(i % 1000),
                             referrer])


def timed_import(api: data_tools.Api, path: Path, program: str, partner: str, check: bool) -> tuple[float, str]:
    out = io.StringIO()
    started = time.perf_counter()
    code = data_tools.run_import(api, path, program, partner, check=check, dry_run=False, out=out)
    elapsed = time.perf_counter() - started
    if code != 0:
        raise SystemExit(out.getvalue())
    return elapsed, out.getvalue().strip().splitlines()[-1]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        process, info = start_local_run(workdir)
        try:
            api = data_tools.Api(info["base_url"], info["operator_key"])
            program = api.json("POST", "/v1/programs", {"name": "Bench", "allowed_origins": ["https://shop.test"]})
            pid = program["program_id"]
            partner = api.json("POST", f"/v1/programs/{pid}/partners", {"name": "Shop"})["partner_id"]
            path = workdir / "members.csv"
            write_rows(path, args.rows, partner)
            check_started = time.perf_counter()
            out = io.StringIO()
            data_tools.run_import(api, path, pid, partner, check=False, dry_run=True, out=out)
            check_s = time.perf_counter() - check_started
            write_s, summary = timed_import(api, path, pid, partner, check=False)
            rerun_s, rerun_summary = timed_import(api, path, pid, partner, check=False)
        finally:
            process.terminate()
            process.wait(timeout=30)
    rows = args.rows
    print(f"rows: {rows:,} (Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, local run = moto server)")
    for label, seconds in (("check pass (dry run)", check_s), ("import", write_s), ("re-run (already imported)", rerun_s)):
        rate = rows / seconds
        print(f"{label:28s} {seconds:7.1f} s  {rate:7.0f} rows/s  → 100,000 rows in {100_000 / rate / 60:5.1f} min")
    print(f"import:  {summary}")
    print(f"re-run:  {rerun_summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
