"""Ledger CSV export per program and period: every entry once, in pages, nothing else."""

from __future__ import annotations

import csv
import io

import pytest

from chalicelib.services.ledger_export import COLUMNS
from tests.functional.test_ledger_support import Shop, utc
from tests.support import CLOCK, ApiClient


@pytest.fixture(autouse=True)
def frozen_clock(api: ApiClient) -> None:
    CLOCK.set(utc("2026-01-15T12:00:00Z"))


def export(api: ApiClient, pid: str, query: str, limit: int) -> tuple[list[dict[str, str]], int]:
    text, cursor, pages = "", None, 0
    while True:
        url = f"/v1/programs/{pid}/ledger/export?{query}&limit={limit}" + (f"&cursor={cursor}" if cursor else "")
        reply = api.get(url)
        assert reply.status == 200, reply.body
        assert reply.headers["content-type"].startswith("text/csv")
        text += reply.body if isinstance(reply.body, str) else str(reply.body)
        pages += 1
        cursor = reply.headers.get("x-next-cursor")
        if not cursor:
            return list(csv.DictReader(io.StringIO(text))), pages
        assert pages < 50


def test_the_export_lists_every_entry_of_the_period_once(api: ApiClient) -> None:
    shop = Shop(api, "uds_3_level")
    root = shop.member("a")
    friend = shop.member("b", root["code"])
    CLOCK.set(utc("2026-01-16T09:00:00Z"))
    shop.order("b", "o-1", 100_000)
    CLOCK.set(utc("2026-01-18T09:00:00Z"))
    shop.refund("o-1", 40_000, at="2026-01-17T20:00:00Z")  # its reversals are indexed by the refund's record
    CLOCK.set(utc("2026-01-20T09:00:00Z"))
    shop.order("a", "o-2", 50_000)
    other = Shop(api, "uds_3_level")
    other.member("z")
    entries = {e["entry_id"]: e for m in (root["member_id"], friend["member_id"]) for e in shop.ledger(m)}
    rows, pages = export(api, shop.pid, "from=2026-01-15&to=2026-01-20", limit=2)
    assert pages > 2
    assert list(rows[0].keys()) == list(COLUMNS)
    ids = [r["entry_id"] for r in rows]
    assert len(ids) == len(set(ids))
    assert len([r for r in rows if r["kind"] == "reversal"]) == 2
    assert set(ids) == set(entries)
    assert sum(int(r["points"]) for r in rows) == sum(int(e["points"]) for e in entries.values())
    assert [r["created_at"] for r in rows] == sorted(r["created_at"] for r in rows)
    assert all(int(r["points"]) != 0 for r in rows)
    one_page, _ = export(api, shop.pid, "from=2026-01-15&to=2026-01-20", limit=5000)
    assert one_page == rows
    # The period bounds by booking day; another program's entries never appear.
    late, _ = export(api, shop.pid, "from=2026-01-17&to=2026-01-31", limit=100)
    assert {r["created_at"][:10] for r in late} == {"2026-01-18", "2026-01-20"}
    other_ids = {e["entry_id"] for e in other.ledger(other.member("y")["member_id"])}
    assert not other_ids & set(ids)


def test_bad_queries_and_forged_cursors(api: ApiClient) -> None:
    shop = Shop(api, None)
    base = f"/v1/programs/{shop.pid}/ledger/export"
    assert api.get(f"{base}?from=2026-01-10&to=2026-01-01").status == 400
    assert api.get(f"{base}?from=2025-01-01&to=2026-06-01").status == 400
    assert api.get(f"{base}?from=yesterday&to=2026-01-01").status == 400
    assert api.get(f"{base}?from=2026-01-01&to=2026-01-02&cursor=abc.def").status == 400
    assert api.get(f"{base}?from=2026-01-01&to=2026-01-02", key=shop.partner["api_key"]).status == 403
    # An empty long period is paged in bounded steps, not read in one go.
    reply = api.get(f"{base}?from=2026-01-01&to=2026-12-31")
    assert reply.status == 200 and reply.body.strip() == ",".join(COLUMNS)
    assert reply.headers.get("x-next-cursor")
