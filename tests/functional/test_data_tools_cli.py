"""The operator CLI (infra/data_tools.py) end to end through the API: chunked import and ledger export."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.functional.test_ledger_support import Shop
from tests.support import ApiClient

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "infra"))
import data_tools


class InProcessApi(data_tools.Api):
    """The CLI's HTTP client, answered by the app in-process instead of over a socket."""

    def __init__(self, api: ApiClient) -> None:
        super().__init__("http://in-process", api.operator_key)
        self.api = api
        self.requests = 0

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, dict[str, str], bytes]:
        self.requests += 1
        reply = self.api.call(method, path, json_body=body)
        if reply.status >= 400:
            raise data_tools.ApiError(f"HTTP {reply.status} {reply.body}")
        text = reply.body if isinstance(reply.body, str) else json.dumps(reply.body)
        return reply.status, reply.headers, text.encode()


def write_csv(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([["email", "name", "opening_balance", "referrer_code"], *rows])
    return path


def test_import_in_chunks_then_rerun_changes_nothing(api: ApiClient, tmp_path: Path) -> None:
    shop = Shop(api, None)
    rows = [[f"m{i}@example.com", f"Member {i}", str(i * 10), ""] for i in range(1, 24)]
    path = write_csv(tmp_path / "members.csv", rows)
    client, out = InProcessApi(api), io.StringIO()
    assert data_tools.run_import(client, path, shop.pid, None, check=True, dry_run=False, rows_per_chunk=5,
                                 out=out) == 0
    assert client.requests == 10  # 5 chunks checked, then 5 written
    assert "23 members imported" in out.getvalue()
    again = io.StringIO()
    assert data_tools.run_import(client, path, shop.pid, None, check=True, dry_run=False, rows_per_chunk=7,
                                 out=again) == 0
    assert "0 members imported" in again.getvalue() and "23 already imported" in again.getvalue()


def test_a_file_with_bad_rows_is_reported_by_line_and_nothing_is_written(api: ApiClient, tmp_path: Path) -> None:
    shop = Shop(api, None)
    rows = [[f"m{i}@example.com", "", "5", ""] for i in range(1, 12)]
    rows[6][0] = "broken"  # file line 8
    rows[9][2] = "2.5"  # file line 11
    path = write_csv(tmp_path / "members.csv", rows)
    out = io.StringIO()
    assert data_tools.run_import(InProcessApi(api), path, shop.pid, None, check=True, dry_run=False,
                                 rows_per_chunk=4, out=out) == 1
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("line 8: email") and lines[1].startswith("line 11: opening_balance")
    assert "nothing was imported" in lines[-1]
    assert api.get(f"/v1/programs/{shop.pid}/members/lookup?email=m1@example.com").status == 404
    skip = io.StringIO()
    assert data_tools.run_import(InProcessApi(api), path, shop.pid, None, check=False, dry_run=False,
                                 rows_per_chunk=4, out=skip) == 1
    assert "9 members imported" in skip.getvalue()


def test_export_ledger_writes_every_page(api: ApiClient, tmp_path: Path) -> None:
    shop = Shop(api, None)
    rows = [[f"m{i}@example.com", "", "7", ""] for i in range(1, 8)]
    data_tools.run_import(InProcessApi(api), write_csv(tmp_path / "m.csv", rows), shop.pid, None, check=False,
                          dry_run=False, out=io.StringIO())
    from chalicelib.domain import clock

    today = clock.iso(clock.utcnow())[:10]
    out = io.StringIO()
    assert data_tools.run_export(InProcessApi(api), shop.pid, today, today, out, limit=3) == 0
    exported = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert len(exported) == 7 and {r["kind"] for r in exported} == {"import"}


def test_progress_bar_shows_rate_and_eta_on_a_terminal() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen = Terminal()
    bar = data_tools.Progress(100, screen)
    bar.advance(25)
    bar.close()
    text = screen.getvalue()
    assert "25/100 rows" in text and "/s" in text and "ETA" in text
    quiet = io.StringIO()
    data_tools.Progress(100, quiet).advance(5)
    assert quiet.getvalue() == ""


@pytest.mark.parametrize("rows", [0, 1, 1000])
def test_chunks_cover_the_file_with_line_numbers(tmp_path: Path, rows: int) -> None:
    path = write_csv(tmp_path / "m.csv", [[f"m{i}@example.com", "a\nb" if i == 3 else "", "1", ""]
                                          for i in range(rows)])
    seen = 0
    for text, first_line, n in data_tools.chunks(path, 300):
        assert text.startswith("email,name,opening_balance,referrer_code\n")
        assert first_line == 2 + seen + (1 if seen > 3 else 0)  # row 3 spans two lines
        seen += n
    assert seen == rows
