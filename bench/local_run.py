#!/usr/bin/env python3
"""A trial run against ``python3 infra/dev.py run``, as a shop would do it (not a test).

Run: ``.venv/bin/python bench/local_run.py`` (defaults: 20,000 webhooks; use ``--webhooks 2000
--customers 200`` on a shared machine). It starts ``python3 infra/dev.py run`` the way a user
does (or uses a running one: ``--attach READY_FILE`` of ``run --ready-file``), creates its own
program with the demo's rules and a partner through the API, and sends signed ``order.paid``
webhooks (Standard Webhooks, a new connection each, as a shop's sender does) from
``--concurrency`` threads:

1. every customer's first order, level by level: customers who were not referred first, then
   the ones referred by them, and so on down ``--depth`` levels, each first order carrying its
   referrer's code (``--referred`` of the customers are referred);
2. the remaining orders, shuffled, for random customers.

It prints the throughput, ack latency (p50/p95/p99), the run's resident memory every 1,000
webhooks, connections dropped (reset, refused, timed out; each is retried, so balances still
add up) and then reads every member's balance back and compares it with what the rules say.
Figures and machine notes: ``docs/local-run.md``.
"""

from __future__ import annotations

import argparse
import collections
import http.client
import json
import math
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from chalicelib.domain.webhook_signature import sign  # noqa: E402
from infra.local_run import DEMO_RULES  # noqa: E402

DROPPED = (ConnectionError, http.client.HTTPException, socket.timeout, TimeoutError, OSError)


@dataclass
class Customer:
    index: int
    level: int = 0  # 0: not referred; n: n hops below a chain's root
    referrer: Customer | None = None
    orders: list[int] = field(default_factory=list)  # totals in minor units, first one first
    member_id: str | None = None
    code: str | None = None

    @property
    def external_id(self) -> str:
        return f"bench-{self.index:06d}"


def plan(customers: int, webhooks: int, referred_share: float, depth: int, seed: int) -> list[Customer]:
    rng = random.Random(seed)
    people = [Customer(i) for i in range(customers)]
    referred = round(customers * referred_share)
    chains = math.ceil(referred / depth) if referred else 0
    roots = people[:chains]
    below = iter(people[chains:chains + referred])
    for root in roots:
        parent = root
        for level in range(1, depth + 1):
            child = next(below, None)
            if child is None:
                break
            child.level, child.referrer = level, parent
            parent = child

    def total() -> int:
        return 12_000_000 if rng.random() < 0.01 else rng.randrange(10_000, 300_000)  # some orders hit the cap

    for person in people:
        person.orders.append(total())
    for _ in range(max(0, webhooks - customers)):
        rng.choice(people).orders.append(total())
    return people


def order_event(person: Customer, number: int) -> dict[str, Any]:
    """The customer's ``number``-th signed ``order.paid`` (the first one carries the referral code)."""
    event: dict[str, Any] = {
        "type": "order.paid", "occurred_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "object": {"type": "order", "id": f"{person.external_id}-o{number}"},
        "customer": {"id": person.external_id, "email": f"{person.external_id}@example.com"},
        "order": {"total": person.orders[number], "currency": "RUB"},
    }
    if number == 0 and person.referrer is not None:
        event["referral"] = {"code": person.referrer.code}
    return event


def expected_balances(people: list[Customer], point_value_minor: int) -> dict[str, int]:
    """What the demo rules (``infra/local_run.DEMO_RULES``) pay, available at once (no holding)."""
    rules = {r["id"]: r for r in DEMO_RULES["rules"]}
    cashback = rules["cashback"]["amount"]
    balance = {p.external_id: 0 for p in people}
    for person in people:
        for total in person.orders:
            points = total * cashback["rate_bp"] // (10_000 * point_value_minor)
            balance[person.external_id] += min(points, cashback["max_points"])
        if person.referrer is not None:
            balance[person.external_id] += rules["friend-welcome"]["amount"]["points"]
            balance[person.referrer.external_id] += rules["bring-a-friend"]["amount"]["points"]
            if person.referrer.referrer is not None and DEMO_RULES["max_depth"] >= 2:
                balance[person.referrer.referrer.external_id] += rules["level-2"]["amount"]["points"]
    return balance


class Api:
    def __init__(self, base_url: str, timeout: float = 60.0) -> None:
        host, port = base_url.removeprefix("http://").split(":")
        self.host, self.port, self.timeout = host, int(port), timeout
        self.lock = threading.Lock()
        self.latencies: list[float] = []
        self.dropped = 0
        self.rejected = 0  # 503 (the run stopping, transient contention): retried like a drop
        self.errors: list[str] = []

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None,
                record: bool = False, attempts: int = 6) -> tuple[int, Any]:
        for attempt in range(attempts):
            started = time.perf_counter()
            connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                connection.request(method, path, body=body, headers=headers or {})
                reply = connection.getresponse()
                data = reply.read()
                status = reply.status
            except DROPPED as exc:
                with self.lock:
                    self.dropped += 1
                    if len(self.errors) < 5:
                        self.errors.append(f"{method} {path}: {type(exc).__name__}: {exc}")
                time.sleep(0.2 * (attempt + 1))
                continue
            finally:
                connection.close()
            if status == 503 and attempt + 1 < attempts:
                with self.lock:
                    self.rejected += 1
                time.sleep(0.2 * (attempt + 1))
                continue
            if record:
                with self.lock:
                    self.latencies.append(time.perf_counter() - started)
            return status, json.loads(data) if data else None
        raise RuntimeError(f"{method} {path}: no answer after {attempts} attempts")

    def call(self, method: str, path: str, key: str, body: Any = None) -> Any:
        status, reply = self.request(method, path, json.dumps(body).encode() if body is not None else None,
                                     {"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
        if status >= 300:
            raise RuntimeError(f"{method} {path}: {status} {reply}")
        return reply


def process_tree(pid: int) -> list[int]:
    """The run's process and its descendants (the stream consumer process, ``infra/local_consumers.py``)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children", encoding="ascii") as children:
                    todo += [int(child) for child in children.read().split()]
        except OSError:
            continue
    return found


def _rss_one(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def rss_mb(pid: int) -> float:
    """Resident memory of the run: its process and the consumer process together."""
    return sum(_rss_one(p) for p in process_tree(pid))


def rss_parts(pid: int) -> str:
    tree = process_tree(pid)
    return (" + ".join(f"{_rss_one(p):.0f}" for p in tree)
            + (f" MB ({' + '.join(role(p) for p in tree)} process)" if len(tree) > 1 else " MB"))


def _cpu_one(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def role(pid: int) -> str:
    """Which of the run's processes: ``main``, ``HTTP`` (``infra/local_http.py``) or ``consumer``."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            command = cmdline.read()
    except OSError:
        return "gone"
    return "HTTP" if b"local_http.py" in command else "consumer" if b"local_consumers.py" in command else "main"


def cpu_by_role(pid: int) -> dict[str, float]:
    found: dict[str, float] = {}
    for each in process_tree(pid):
        found[role(each)] = found.get(role(each), 0.0) + _cpu_one(each)
    return found


def cpu_seconds(pid: int, tree: bool = True) -> float:
    """User + system CPU time the run has used (``/proc/PID/stat``): its process, and with ``tree`` the
    consumer process too (a restarted one's predecessor is not counted)."""
    return sum(_cpu_one(p) for p in (process_tree(pid) if tree else [pid]))


def settle(pid: int, idle_share: float = 0.25, quiet_seconds: int = 3, timeout: float = 1200.0) -> tuple[float, float]:
    """Wait until the run is idle (the stream consumers have caught up with the webhooks): its CPU use below
    ``idle_share`` of a core for ``quiet_seconds`` seconds running. Returns (seconds waited, CPU-seconds used)."""
    started, cpu_started = time.monotonic(), cpu_seconds(pid)
    quiet, last = 0, cpu_started
    while quiet < quiet_seconds and time.monotonic() - started < timeout:
        time.sleep(1.0)
        now = cpu_seconds(pid)
        quiet = quiet + 1 if now - last < idle_share else 0
        last = now
    return max(0.0, time.monotonic() - started - quiet), last - cpu_started


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


class Progress:
    def __init__(self, pid: int, total: int, every: int = 1000) -> None:
        self.pid, self.total, self.every = pid, total, every
        self.sent = 0
        self.started = time.monotonic()
        self.lock = threading.Lock()
        self.rss: list[tuple[int, float]] = [(0, rss_mb(pid))]
        print(f"{'webhooks':>9} {'elapsed s':>9} {'webhooks/s':>10} {'RSS MB':>8}", flush=True)
        print(f"{0:>9} {0:>9.1f} {'':>10} {self.rss[0][1]:>8.0f}", flush=True)

    def tick(self) -> None:
        with self.lock:
            self.sent += 1
            if self.sent % self.every == 0 or self.sent == self.total:
                elapsed = time.monotonic() - self.started
                memory = rss_mb(self.pid)
                self.rss.append((self.sent, memory))
                print(f"{self.sent:>9} {elapsed:>9.1f} {self.sent / elapsed:>10.1f} {memory:>8.0f}", flush=True)


def run_all(jobs: Iterable[Callable[[], None]], concurrency: int) -> None:
    with ThreadPoolExecutor(concurrency) as pool:
        for future in [pool.submit(job) for job in jobs]:
            future.result()


def start_local_run(port: int, log: Path, extra: list[str]) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    ready = Path(tempfile.mkdtemp(prefix="sarafan-bench-")) / "ready.json"
    command = [sys.executable, str(ROOT / "infra" / "dev.py"), "run", "--port", str(port), "--moto-port", "0",
               "--ready-file", str(ready), "--quiet", *extra]
    print("starting:", " ".join(command[1:]), f"(output in {log})", flush=True)
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while not ready.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the local run did not start (exit {process.poll()}); see {log}")
        time.sleep(0.1)
    return process, json.loads(ready.read_text(encoding="utf-8"))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--webhooks", type=int, default=20_000)
    parser.add_argument("--customers", type=int, default=2_000)
    parser.add_argument("--referred", type=float, default=0.25, help="share of customers referred (default 0.25)")
    parser.add_argument("--depth", type=int, default=3, help="referral chain depth (default 3)")
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--port", type=int, default=0, help="API port for the started run (default: a free one)")
    parser.add_argument("--attach", type=Path, metavar="READY_FILE", help="use a running `run --ready-file` instead")
    parser.add_argument("--sigterm-after", type=int, default=0, metavar="N",
                        help="stop test: SIGTERM the started run once N webhooks were acknowledged, senders still "
                             "sending, and print how long it took to exit (no balance check)")
    parser.add_argument("--run-args", default="", help="extra arguments for `infra/dev.py run` (e.g. '--data DIR')")
    args = parser.parse_args(argv)
    if args.customers > args.webhooks:
        parser.error("--customers must not exceed --webhooks (every customer orders at least once)")

    process = None
    if args.attach:
        info = json.loads(args.attach.read_text(encoding="utf-8"))
    else:
        port = args.port
        if not port:
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                port = probe.getsockname()[1]
        process, info = start_local_run(port, Path(tempfile.gettempdir()) / f"sarafan-bench-run-{os.getpid()}.log",
                                        args.run_args.split())
    if args.sigterm_after and process is not None:
        return stop_under_load(args, info, process)
    try:
        return trial(args, info)
    finally:
        if process is not None:
            started = time.monotonic()
            process.send_signal(signal.SIGTERM)
            try:
                code = process.wait(30)
                print(f"local run stopped on SIGTERM in {time.monotonic() - started:.1f} s (exit {code})")
            except subprocess.TimeoutExpired:
                process.kill()
                print("local run did not stop within 30 s of SIGTERM; killed")


def stop_under_load(args: argparse.Namespace, info: dict[str, Any], process: subprocess.Popen[bytes]) -> int:
    """SIGTERM while ``--concurrency`` senders keep sending; how long the run takes to exit, and its exit code."""
    api = Api(info["base_url"], timeout=15)
    operator = info["operator_key"]
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    program = api.call("POST", "/v1/programs", operator, {"name": f"Stop {uuid.uuid4().hex[:8]}"})
    partner = api.call("POST", f"/v1/programs/{program['program_id']}/partners", operator, {"name": "Stop shop"})
    api.call("PUT", f"/v1/programs/{program['program_id']}/rules", operator, DEMO_RULES)
    secret, path = partner["webhook_secrets"]["events"], f"/v1/webhooks/{partner['partner_id']}/events"
    people = plan(args.customers, args.webhooks, args.referred, args.depth, args.seed)
    acked, answers = [0], collections.Counter[str]()
    lock, stopping = threading.Lock(), threading.Event()
    result: dict[str, Any] = {}

    def stop() -> None:
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        try:
            result["code"] = process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            result["code"] = "killed after 30 s"
        result["seconds"] = time.monotonic() - started

    def send(person: Customer) -> None:
        if stopping.is_set() and "seconds" in result:
            return
        body = json.dumps(order_event(person, 0)).encode()
        msg_id, timestamp = f"msg_{uuid.uuid4().hex}", int(time.time())
        try:
            status, _ = api.request("POST", path, body, {
                "Content-Type": "application/json", "webhook-id": msg_id, "webhook-timestamp": str(timestamp),
                "webhook-signature": sign(secret, msg_id, timestamp, body)}, attempts=1)
            outcome = str(status)
        except RuntimeError:
            outcome = "no answer"
        with lock:
            answers[outcome] += 1
            acked[0] += outcome == "200"
            if acked[0] >= args.sigterm_after and not stopping.is_set():
                stopping.set()
                threading.Thread(target=stop, daemon=True).start()

    run_all([lambda p=p: send(p) for p in people], args.concurrency)
    while "seconds" not in result:
        time.sleep(0.1)
    print(f"SIGTERM after {args.sigterm_after} acknowledged webhooks with {args.concurrency} senders sending: "
          f"exited in {result['seconds']:.1f} s (exit {result['code']}); answers {dict(answers)}")
    print(f"load average after:  {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0 if result["code"] == 0 and result["seconds"] < 10 else 1


def trial(args: argparse.Namespace, info: dict[str, Any]) -> int:
    pid, operator = int(info["pid"]), info["operator_key"]
    api = Api(info["base_url"])
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    program = api.call("POST", "/v1/programs", operator, {"name": f"Bench {uuid.uuid4().hex[:8]}"})
    program_id = program["program_id"]
    partner = api.call("POST", f"/v1/programs/{program_id}/partners", operator, {"name": "Bench shop"})
    api.call("PUT", f"/v1/programs/{program_id}/rules", operator, DEMO_RULES)
    secret = partner["webhook_secrets"]["events"]
    path = f"/v1/webhooks/{partner['partner_id']}/events"

    people = plan(args.customers, args.webhooks, args.referred, args.depth, args.seed)
    total = sum(len(p.orders) for p in people)
    print(f"program {program_id}: {len(people)} customers, {sum(p.referrer is not None for p in people)} referred "
          f"(chains of {args.depth}), {total} order.paid webhooks, {args.concurrency} concurrent senders")
    progress = Progress(pid, total)
    failures: list[str] = []

    def send(person: Customer, number: int) -> None:
        body = json.dumps(order_event(person, number)).encode()
        msg_id, timestamp = f"msg_{uuid.uuid4().hex}", int(time.time())
        status, reply = api.request("POST", path, body, {
            "Content-Type": "application/json", "webhook-id": msg_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(secret, msg_id, timestamp, body)}, record=True)
        if status != 200:
            failures.append(f"{person.external_id} order {number}: {status} {reply}")
        elif number == 0:
            person.member_id, person.code = reply["member"]["member_id"], reply["member"]["code"]
        progress.tick()

    started, cpu_started = time.monotonic(), cpu_seconds(pid)
    roles_started = cpu_by_role(pid)
    for level in range(args.depth + 1):  # first orders, referrers before the friends they bring
        run_all([lambda p=p: send(p, 0) for p in people if p.level == level], args.concurrency)
    rest = [(p, n) for p in people for n in range(1, len(p.orders))]
    random.Random(args.seed + 1).shuffle(rest)
    run_all([lambda p=p, n=n: send(p, n) for p, n in rest], args.concurrency)
    elapsed, cpu = time.monotonic() - started, cpu_seconds(pid) - cpu_started
    settled, settle_cpu = settle(pid)
    rss_settled, rss_split = rss_mb(pid), rss_parts(pid)
    roles = {name: used - roles_started.get(name, 0.0) for name, used in cpu_by_role(pid).items()}

    point_value = int(program.get("point_value_minor", 100))
    expected = expected_balances(people, point_value)
    mismatches: list[str] = []

    def check(person: Customer) -> None:
        if person.member_id is None:
            mismatches.append(f"{person.external_id}: no member")
            return
        body = api.call("GET", f"/v1/programs/{program_id}/members/{person.member_id}/balance", operator)
        if body["available"] != expected[person.external_id] or body.get("pending", 0) != 0:
            mismatches.append(f"{person.external_id}: available {body['available']} pending {body.get('pending')} "
                              f"expected {expected[person.external_id]}")

    run_all([lambda p=p: check(p) for p in people], args.concurrency)

    lat = api.latencies
    warm = [m for n, m in progress.rss if n >= min(2000, total // 2)]
    print()
    print(f"webhooks sent        {total} in {elapsed:.1f} s")
    print(f"throughput           {total / elapsed:.1f} webhooks/s")
    print(f"run's CPU time       {cpu / total * 1000:.1f} ms per webhook (all threads) until the last ack")
    whole = cpu + settle_cpu
    print(f"stream caught up     {settled:.1f} s after the last ack ({settle_cpu:.1f} CPU-s more): "
          f"{whole / total * 1000:.1f} ms of CPU per webhook in all, so about {total / whole:.0f} webhooks/s "
          f"sustained if the run had one CPU to itself; {total / (elapsed + settled):.1f} webhooks/s end to end here")
    if len(roles) > 1:  # a restarted child's predecessor is not counted
        print("per process          " + ", ".join(f"{name} {used / total * 1000:.1f} ms" for name, used in roles.items())
              + f" of CPU per webhook: about {total / max(roles.values()):.0f} webhooks/s sustained with a CPU for each")
    print(f"ack latency          p50 {percentile(lat, .5) * 1000:.0f} ms, p95 {percentile(lat, .95) * 1000:.0f} ms, "
          f"p99 {percentile(lat, .99) * 1000:.0f} ms, max {max(lat) * 1000:.0f} ms")
    print(f"resident memory      {progress.rss[0][1]:.0f} MB at start, {progress.rss[-1][1]:.0f} MB at the last ack"
          + (f", {min(warm):.0f}-{max(warm):.0f} MB after warm-up" if warm else "")
          + f", {rss_settled:.0f} MB once the stream caught up ({rss_split})")
    print(f"dropped connections  {api.dropped}" + (f" (e.g. {api.errors[0]})" if api.errors else ""))
    print(f"503 answers retried  {api.rejected}")
    print(f"failed webhooks      {len(failures)}" + (f" (e.g. {failures[0]})" if failures else ""))
    print(f"balances exact       {'yes' if not mismatches else 'NO'}: {len(people) - len(mismatches)} of "
          f"{len(people)} members" + (f" (e.g. {mismatches[0]})" if mismatches else ""))
    print(f"load average after:  {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0 if not mismatches and not failures else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
