"""Dashboard cost: DynamoDB round trips per analytics panel for a program with 100,000 members.

Generated counters (the shape the stream consumer writes: a year of day rows for the coalition, 10 partners,
36 channel/UTM/click-source rows a day, 6 rules × 10 partners a day, 13 join-month cohorts, and one leaderboard
entry per member), written straight into moto's table; then each panel is computed for a 366-day range with
a ``before-call.dynamodb`` hook counting the calls. Figures printed (docs/benchmarks.md), never asserted.

    .venv/bin/python bench/analytics.py [--members 100000]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.round_trips import ENV

PARTNERS = 10
RULES = 6
CHANNELS = [("ch", f"channel{i}") for i in range(6)] + [("utm", f"src{i}/referral/camp{i % 4}") for i in range(20)] + \
           [("src", f"src{i}") for i in range(10)]


def _n(v: int) -> dict[str, str]:
    return {"N": str(v)}


def generate(client: Any, table: str, program_id: str, partners: list[str], members: int, end: date) -> int:
    from chalicelib.analytics.store import gsi1_leaderboard, leader_partition, partition
    from chalicelib.domain import analytics as fig

    items: list[dict[str, Any]] = []
    counters = {name: _n(7) for name in fig.DAY_COUNTERS}
    for back in range(366):
        day = (end - timedelta(days=back)).isoformat()
        items.append({"PK": {"S": partition(program_id, "DAY")}, "SK": {"S": day}, **counters,
                      **{f"cycle_{i}": _n(1) for i in range(fig.CYCLE_BUCKETS)}})
        for p in partners:
            items.append({"PK": {"S": partition(program_id, "PARTNERDAY")}, "SK": {"S": f"{day}#{p}"}, **counters})
            for r in range(RULES):
                items.append({"PK": {"S": partition(program_id, "RULEDAY")}, "SK": {"S": f"{day}#rule-{r}#{p}"},
                              "reward_points": _n(500), "rewards": _n(1)})
        for dim, value in CHANNELS:
            items.append({"PK": {"S": partition(program_id, "CHDAY")}, "SK": {"S": f"{day}#{dim}#{value}"}, **counters})
    for m in range(13):
        month = (end.replace(day=1) - timedelta(days=31 * m)).strftime("%Y-%m")
        for kind in ("referred", "other"):
            items.append({"PK": {"S": partition(program_id, "COHORT")}, "SK": {"S": f"{month}#{kind}"},
                          "customers": _n(members // 26), "orders": _n(members // 10), "revenue": _n(10**9),
                          "repeaters": _n(members // 80)})
    items.append({"PK": {"S": partition(program_id, "TOTAL")}, "SK": {"S": "TOTAL"}, "members": _n(members)})
    period = end.strftime("%Y-%m")
    reached = datetime(end.year, end.month, 1, tzinfo=UTC)
    for m in range(members):
        member = f"mbr_{m:08d}"
        score = (m * 7919) % 50
        items.append({"PK": {"S": leader_partition(program_id, "converted", period)}, "SK": {"S": f"MEMBER#{member}"},
                      "GSI1PK": {"S": gsi1_leaderboard(program_id, "converted", period)},
                      "GSI1SK": {"S": fig.leaderboard_sort_key(score, reached, member)}, "score": _n(score),
                      "member_id": {"S": member}, "code": {"S": f"CODE{m}"}, "masked_name": {"S": "A***"}})
    for start in range(0, len(items), 25):
        chunk = [{"PutRequest": {"Item": {**i, "entity": {"S": "agg"}}}} for i in items[start:start + 25]]
        client.batch_write_item(RequestItems={table: chunk})
    return len(items)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=100_000)
    args = parser.parse_args(argv)
    os.environ.update(ENV)
    from moto import mock_aws

    with mock_aws():
        from chalicelib.store.tables import create_table
        from infra import moto_tuning

        moto_tuning.apply()
        create_table()
        from chalicelib.analytics import panels
        from chalicelib.domain.validation import validate
        from chalicelib.services import ports, programs
        from chalicelib.services.auth import Principal
        from chalicelib.store.db import shared_connection

        operator = Principal(kind="operator")
        program = programs.create_program(ports.current(), operator, validate(programs.PROGRAM_CREATE_SCHEMA, {"name": "Bench"}))
        pid = program["program_id"]
        partners = [programs.create_partner(ports.current(), operator, pid, validate(programs.PARTNER_CREATE_SCHEMA,
                                                                    {"name": f"P{i}"}))["partner_id"]
                    for i in range(PARTNERS)]
        conn = shared_connection()
        client, table = conn.connection.client, conn.table_name
        end = date.today()
        started = time.monotonic()
        written = generate(client, table, pid, partners, args.members, end)
        print(f"generated {written:,} aggregate items for {args.members:,} members in {time.monotonic() - started:.0f} s")
        calls: Counter[str] = Counter()
        client.meta.events.register("before-call.dynamodb", lambda model, **_: calls.update([model.name]))
        query = {"from": (end - timedelta(days=365)).isoformat(), "to": end.isoformat(), "granularity": "day",
                 "partner_id": None}
        print(f"{'panel':<12} {'round trips':>11}  calls")
        for name, panel in panels.PANELS.items():
            calls.clear()
            q = dict(query)
            if name == "leaderboard":
                q = {"metric": "converted", "period": end.strftime("%Y-%m"), "limit": "20"}
            result = panel(operator, pid, q)
            rows = len(result.get("series") or result.get("rows") or result.get("partners") or [])
            print(f"{name:<12} {sum(calls.values()):>11}  {dict(calls)}  ({rows} rows)")
        calls.clear()
        panels.funnel(operator, pid, {**query, "partner_id": partners[3]})
        print(f"{'funnel+partner':<12} {sum(calls.values()):>3}  {dict(calls)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
