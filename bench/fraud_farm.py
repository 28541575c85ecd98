#!/usr/bin/env python3
"""The webhook path under a scripted farm, against the same path without one (not a test).

Run: ``.venv/bin/python bench/fraud_farm.py [--size 1000]``.

Two programs with the same rules (a friend and a referrer bonus on the first order, 14 days'
holding) in one moto, in process, through ``chalice.test.Client``:

* **control**: ``size`` friends, each referred by their own referrer, each from their own IP;
* **farm**: ``size`` scripted friends through one referrer's link from 3 IPs with one user agent
  (what tests/functional/test_fraud_farm.py sends), so the velocity limits hold every reward.

For the friends' first ``order.paid`` it prints the ack latency (p50/p95, the app's own time with
moto's subtracted, and the wall time), DynamoDB round trips and write units per order, and the
farm/control ratios; then whether the farm credited anything available. The checks add keyed-hash
pointers to the first batched read and bounded counters to the event's transaction, so the ratio
should stay near 1. Figures are printed, never asserted (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.round_trips import ENV  # noqa: E402

# The farm the test sends, with its rules (14 days' holding: the usual defence next to the checks).
from tests.functional.test_fraud_farm import FARM_RULES as RULES  # noqa: E402
from tests.functional.test_fraud_farm import IPS as FARM_IPS  # noqa: E402
from tests.functional.test_fraud_farm import SCRIPT_UA  # noqa: E402

AT = "2026-01-15T09:30:00Z"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def signup(customer: str, code: str | None = None, context: dict[str, str] | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {"type": "member.signup", "occurred_at": AT, "object": {"type": "customer", "id": customer},
                             "customer": {"id": customer, "email": f"{customer}@example.com"}}
    if code:
        event["referral"] = {"code": code}
    if context:
        event["context"] = context
    return event


def order(customer: str, order_id: str, context: dict[str, str]) -> dict[str, Any]:
    return {"type": "order.paid", "occurred_at": AT, "object": {"type": "order", "id": order_id},
            "customer": {"id": customer}, "order": {"total": 100_000, "currency": "RUB"}, "context": context}


def run_case(bench: Any, name: str, size: int, farm: bool) -> dict[str, Any]:
    program = bench.call("POST", "/v1/programs", {"name": name})
    pid = program["program_id"]
    partner = bench.call("POST", f"/v1/programs/{pid}/partners", {"name": "Shop"})
    bench.call("PUT", f"/v1/programs/{pid}/rules", RULES)
    referrers: list[dict[str, Any]] = []
    contexts: list[dict[str, str]] = []
    for i in range(size):
        if farm:
            if not referrers:
                referrers.append(bench.send(partner, signup("anna"))["member"])
            contexts.append({"ip": FARM_IPS[i % 3], "user_agent": SCRIPT_UA})
            code = referrers[0]["code"]
        else:
            referrer = bench.send(partner, signup(f"ref{i}"))["member"]
            referrers.append(referrer)
            contexts.append({"ip": f"198.51.{i // 250}.{i % 250 + 1}", "user_agent": f"Mozilla/5.0 ({i})"})
            code = referrer["code"]
        bench.send(partner, signup(f"friend{i}", code, contexts[i]))
    wall: list[float] = []
    app: list[float] = []
    trips: list[int] = []
    wru: list[float] = []
    available = 0
    for i in range(size):
        reply, usage = bench.measured(lambda i=i: bench.send(partner, order(f"friend{i}", f"o-{i}", contexts[i])))
        wall.append(usage.seconds)
        app.append(usage.app_seconds)
        trips.append(usage.round_trips)
        wru.append(usage.wru)
        available += sum(p["points"] for p in reply["rewards"]["postings"] if p["status"] == "available")
    held = bench.call("GET", f"/v1/programs/{pid}/members/{referrers[0]['member_id']}/balance")
    return {"wall": wall, "app": app, "trips": trips, "wru": wru, "available": available, "referrer": held}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1_000, help="friends per case (the farm test's 1,000)")
    args = parser.parse_args(argv)
    os.environ.update(ENV)
    from moto import mock_aws

    from chalicelib.domain import clock
    from tests.conftest import reset_process_state
    from tests.support import CLOCK

    reset_process_state()  # the production ports on the tests' clock (tests.support.CLOCK)
    CLOCK.set(clock.parse_iso("2026-01-15T09:35:00Z"))
    with mock_aws():
        from bench.round_trips import Bench, provision

        provision()
        bench = Bench()
        control = run_case(bench, "Control", args.size, farm=False)
        farm = run_case(bench, "Farm", args.size, farm=True)
    print(f"friends' first order.paid, {args.size} per case (moto in process; the machine's load shifts wall times,"
          " compare the ratios)")
    print(f"{'case':10} {'p50 app ms':>11} {'p95 app ms':>11} {'p95 wall ms':>12} {'round trips':>12} {'WRU':>6}")
    for name, case in (("control", control), ("farm", farm)):
        print(f"{name:10} {percentile(case['app'], .5) * 1000:11.1f} {percentile(case['app'], .95) * 1000:11.1f} "
              f"{percentile(case['wall'], .95) * 1000:12.1f} {statistics.mean(case['trips']):12.2f} "
              f"{statistics.mean(case['wru']):6.1f}")
    ratio_app = percentile(farm["app"], .95) / percentile(control["app"], .95)
    ratio_wall = percentile(farm["wall"], .95) / percentile(control["wall"], .95)
    print(f"p95 farm/control: app {ratio_app:.2f}x, wall {ratio_wall:.2f}x; round trips "
          f"{max(farm['trips'])} max (control {max(control['trips'])})")
    balance = farm["referrer"]
    print(f"farm: points credited available {farm['available']}; referrer available {balance['available']}, "
          f"pending {balance['pending']}, held {balance['held']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
