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
from tests.support import CLOCK, ApiClient

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "infra"))
import data_tools


class InProcessApi(data_tools.Api):
    """The CLI's HTTP client, answered by the app in-process instead of over a socket."""

    def __init__(self, api: ApiClient) -> None:
        super().__init__("http://in-process", api.operator_key)
        self.api = api
        self.paths: list[tuple[str, str]] = []

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, dict[str, str], bytes]:
        self.paths.append((method, path))
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
                                 out=out, progress_stream=io.StringIO()) == 0
    # 5 chunks checked (dry run); then the chunked import API: create, 5 chunks, the status.
    assert client.paths[:5] == [("POST", f"/v1/programs/{shop.pid}/imports/members")] * 5
    assert [m for m, _ in client.paths[5:]] == ["POST", "PUT", "PUT", "PUT", "PUT", "PUT", "GET"]
    assert client.paths[6][1].endswith("/chunks/1") and client.paths[10][1].endswith("/chunks/5")
    assert "(completed, 5 of 5 chunks): 23 members imported" in out.getvalue()
    assert not data_tools.state_path(path).exists()  # done: nothing left to resume
    again = io.StringIO()
    assert data_tools.run_import(client, path, shop.pid, None, check=True, dry_run=False, rows_per_chunk=7,
                                 out=again, progress_stream=io.StringIO()) == 0
    assert "0 members imported" in again.getvalue() and "23 already imported" in again.getvalue()


class Interrupted(Exception):
    pass


class DiesOnChunk(InProcessApi):
    """Stops the run at chunk ``n``: before sending it, or after the server answered (the answer lost)."""

    def __init__(self, api: ApiClient, n: int, after_answer: bool) -> None:
        super().__init__(api)
        self.n, self.after_answer = n, after_answer

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, dict[str, str], bytes]:
        dying = method == "PUT" and path.endswith(f"/chunks/{self.n}")
        if dying and not self.after_answer:
            raise Interrupted()
        reply = super().call(method, path, body)
        if dying:
            raise Interrupted()
        return reply


@pytest.mark.parametrize("after_answer", [False, True])
def test_an_interrupted_import_resumes_and_skips_the_chunks_done(api: ApiClient, tmp_path: Path,
                                                                 after_answer: bool) -> None:
    shop = Shop(api, None)
    rows = [[f"m{i}@example.com", "", str(i), ""] for i in range(1, 21)]
    path = write_csv(tmp_path / "members.csv", rows)
    with pytest.raises(Interrupted):
        data_tools.run_import(DiesOnChunk(api, 3, after_answer), path, shop.pid, None, check=False, dry_run=False,
                              rows_per_chunk=4, out=io.StringIO(), progress_stream=io.StringIO())
    assert data_tools.state_path(path).exists()
    client, out = InProcessApi(api), io.StringIO()
    assert data_tools.run_import(client, path, shop.pid, None, check=False, dry_run=False, rows_per_chunk=4,
                                 out=out, progress_stream=io.StringIO()) == 0
    sent = [p.rsplit("/", 1)[1] for m, p in client.paths if m == "PUT"]
    assert sent == ["3", "4", "5"]  # chunks 1 and 2 were answered before: skipped
    assert "resuming import imp_" in out.getvalue()
    # One import, every row counted once (a chunk whose answer was lost answers its first result again).
    assert "(completed, 5 of 5 chunks): 20 members imported" in out.getvalue()
    assert [m for m, _ in client.paths].count("POST") == 0
    assert not data_tools.state_path(path).exists()


def test_a_file_with_bad_rows_is_reported_by_line_and_nothing_is_written(api: ApiClient, tmp_path: Path) -> None:
    shop = Shop(api, None)
    rows = [[f"m{i}@example.com", "", "5", ""] for i in range(1, 12)]
    rows[6][0] = "broken"  # file line 8
    rows[9][2] = "2.5"  # file line 11
    path = write_csv(tmp_path / "members.csv", rows)
    out = io.StringIO()
    assert data_tools.run_import(InProcessApi(api), path, shop.pid, None, check=True, dry_run=False,
                                 rows_per_chunk=4, out=out, progress_stream=io.StringIO()) == 1
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("line 8: email") and lines[1].startswith("line 11: opening_balance")
    assert "nothing was imported" in lines[-1]
    assert api.get(f"/v1/programs/{shop.pid}/members/lookup?email=m1@example.com").status == 404
    skip = io.StringIO()
    assert data_tools.run_import(InProcessApi(api), path, shop.pid, None, check=False, dry_run=False,
                                 rows_per_chunk=4, out=skip, progress_stream=io.StringIO()) == 1
    assert "9 members imported" in skip.getvalue() and "2 bad rows" in skip.getvalue()
    assert [line.split(":")[0] for line in skip.getvalue().splitlines()[:2]] == ["line 8", "line 11"]


def test_export_ledger_writes_every_page(api: ApiClient, tmp_path: Path) -> None:
    shop = Shop(api, None)
    rows = [[f"m{i}@example.com", "", "7", ""] for i in range(1, 8)]
    data_tools.run_import(InProcessApi(api), write_csv(tmp_path / "m.csv", rows), shop.pid, None, check=False,
                          dry_run=False, out=io.StringIO(), progress_stream=io.StringIO())
    from chalicelib.domain import clock

    today = clock.iso(CLOCK.now())[:10]
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
    assert text.startswith("\r[") and "25/100 rows" in text and "/s" in text and "ETA" in text


def test_progress_is_plain_lines_every_tenth_elsewhere() -> None:
    log = io.StringIO()
    bar = data_tools.Progress(100, log)
    bar.skip(30)  # done by an earlier run: no line, not in the rate
    for _ in range(14):
        bar.advance(5)
    bar.close()
    lines = log.getvalue().splitlines()
    assert [line.split(" ")[0] for line in lines] == ["40/100", "50/100", "60/100", "70/100", "80/100", "90/100",
                                                      "100/100"]
    assert "\r" not in log.getvalue() and all("/s" in line and "ETA" in line for line in lines)


def test_chunks_stay_under_the_api_limits(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "m.csv", [[f"m{i}@example.com", "Ж" * 150, "1", ""] for i in range(3000)])
    for text, _first, _n in data_tools.chunks(path, 1000):
        assert len(text) <= data_tools.CHUNK_CHARS + 400
        assert len(json.dumps({"csv": text}, ensure_ascii=False).encode()) <= 256 * 1024


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


def test_an_erased_person_in_the_file_is_a_bad_row_unless_the_import_includes_erased_people(
        api: ApiClient, tmp_path: Path) -> None:
    shop = Shop(api, None)
    gone = shop.member("gone")  # gone@example.com
    assert api.post(f"/v1/programs/{shop.pid}/members/{gone['member_id']}/erase").status == 200
    path = write_csv(tmp_path / "members.csv", [["gone@example.com", "", "5", ""], ["new@example.com", "", "5", ""]])
    out = io.StringIO()
    assert data_tools.run_import(InProcessApi(api), path, shop.pid, None, check=True, dry_run=False,
                                 out=out, progress_stream=io.StringIO()) == 1
    assert out.getvalue().startswith("line 2: email: belongs to a person whose data was erased")
    back = io.StringIO()
    assert data_tools.run_import(InProcessApi(api), path, shop.pid, None, check=True, dry_run=False, out=back,
                                 progress_stream=io.StringIO(), include_erased=True) == 0
    assert "1 members imported" in back.getvalue() and "1 already imported" in back.getvalue()
    assert api.get(f"/v1/programs/{shop.pid}/members/lookup?email=gone@example.com").status == 200


def test_the_check_pass_finds_a_person_named_twice_across_chunks(api: ApiClient, tmp_path: Path) -> None:
    shop = Shop(api, None)
    rows = [[f"m{i}@example.com", "", "5", ""] for i in range(1, 9)]
    rows[6][0] = "M2@Example.com"  # file line 8 names line 3's member again, in another chunk
    rows[7][0] = "m6@example.com"  # line 9 names line 7's, in the same chunk (the server finds it)
    path = write_csv(tmp_path / "members.csv", rows)
    out = io.StringIO()
    assert data_tools.run_import(InProcessApi(api), path, shop.pid, None, check=True, dry_run=False,
                                 rows_per_chunk=4, out=out, progress_stream=io.StringIO()) == 1
    lines = out.getvalue().splitlines()
    assert lines[:2] == ["line 8: email: duplicate of line 3 (the same email): one row per person",
                         "line 9: email: duplicate of line 7 (the same email): one row per person"]
    assert "nothing was imported" in lines[-1]
    assert api.get(f"/v1/programs/{shop.pid}/members/lookup?email=m1@example.com").status == 404


class OverHttp:
    """``urllib.request.urlopen`` for the CLI's own :class:`data_tools.Api`, answered by the app in-process: its
    retries see the API's real statuses, headers and bodies."""

    def __init__(self, api: ApiClient) -> None:
        self.api = api
        self.sent: list[tuple[str, str]] = []

    def __call__(self, request: Any, timeout: float = 0) -> Any:
        import contextlib
        import email.message
        import urllib.error

        path = request.full_url.removeprefix("http://in-process")
        self.sent.append((request.get_method(), path))
        reply = self.api.call(request.get_method(), path, json_body=json.loads(request.data) if request.data else None)
        text = (reply.body if isinstance(reply.body, str) else json.dumps(reply.body)).encode()
        headers = email.message.Message()
        for name, value in reply.headers.items():
            headers[name] = value
        if reply.status >= 400:
            raise urllib.error.HTTPError(request.full_url, reply.status, "error", headers, io.BytesIO(text))

        class Answer(contextlib.nullcontext):  # type: ignore[type-arg]
            status = reply.status

            def __enter__(self) -> Any:
                return self

            def read(self) -> bytes:
                return text

        answer = Answer()
        answer.headers = headers  # type: ignore[attr-defined]
        return answer


def _chunk_1_claimed_by_a_stopped_request(api: ApiClient, monkeypatch: pytest.MonkeyPatch, shop: Shop, path: Path,
                                          rows_per_chunk: int) -> None:
    """The CLI created the import and was stopped before chunk 1; another run's request claimed chunk 1 (the
    same content) and its process stopped: the claim is left with no result."""
    from chalicelib.services import import_jobs

    with pytest.raises(Interrupted):
        data_tools.run_import(DiesOnChunk(api, 1, after_answer=False), path, shop.pid, None, check=False,
                              dry_run=False, rows_per_chunk=rows_per_chunk, out=io.StringIO(),
                              progress_stream=io.StringIO())
    import_id = json.loads(data_tools.state_path(path).read_text())["import_id"]
    text, first_line, _ = next(data_tools.chunks(path, rows_per_chunk))
    real = import_jobs.importer.import_chunk

    def stops(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the process stopped")

    with monkeypatch.context() as patched:
        patched.setattr(import_jobs.importer, "import_chunk", stops)
        patched.setattr(import_jobs, "_release", lambda *args: None)
        with pytest.raises(AssertionError, match="500"):
            api.put(f"/v1/programs/{shop.pid}/imports/{import_id}/chunks/1", {"csv": text, "first_line": first_line})
    assert import_jobs.importer.import_chunk is real


def _recorded_sleeps(monkeypatch: pytest.MonkeyPatch, advance_clock: bool) -> list[float]:
    import time
    import types

    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        if advance_clock:
            CLOCK.advance(seconds=seconds)

    monkeypatch.setattr(data_tools, "time", types.SimpleNamespace(sleep=sleep, monotonic=time.monotonic))
    return slept


def test_the_import_waits_out_the_claim_of_a_request_that_stopped(api: ApiClient, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunk 1 is busy (claimed, no result) for the rest of the claim's lease: the run waits as the API's
    Retry-After says, longer than its retries of other 503s (15.5 s), then the chunk is taken over and imported."""
    from chalicelib.services import import_jobs

    shop = Shop(api, None)
    path = write_csv(tmp_path / "members.csv", [[f"m{i}@example.com", "", str(i), ""] for i in range(1, 9)])
    _chunk_1_claimed_by_a_stopped_request(api, monkeypatch, shop, path, rows_per_chunk=4)
    slept = _recorded_sleeps(monkeypatch, advance_clock=True)
    http = OverHttp(api)
    monkeypatch.setattr(data_tools.urllib.request, "urlopen", http)
    out = io.StringIO()
    assert data_tools.run_import(data_tools.Api("http://in-process", api.operator_key), path, shop.pid, None,
                                 check=False, dry_run=False, rows_per_chunk=4, out=out,
                                 progress_stream=io.StringIO()) == 0
    assert sum(slept) >= import_jobs.CLAIM_LEASE_SECONDS > 15.5 and all(s <= 30 for s in slept)
    assert [p.rsplit("/", 1)[1] for m, p in http.sent if m == "PUT"].count("1") == len(slept) + 1
    assert "8 members imported" in out.getvalue()


def test_the_import_gives_up_on_a_chunk_busy_for_longer_than_its_bound(api: ApiClient, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    shop = Shop(api, None)
    path = write_csv(tmp_path / "members.csv", [[f"m{i}@example.com", "", str(i), ""] for i in range(1, 5)])
    _chunk_1_claimed_by_a_stopped_request(api, monkeypatch, shop, path, rows_per_chunk=4)
    slept = _recorded_sleeps(monkeypatch, advance_clock=False)  # the lease never runs out
    monkeypatch.setattr(data_tools.urllib.request, "urlopen", OverHttp(api))
    with pytest.raises(data_tools.ApiError, match="import_busy"):
        data_tools.run_import(data_tools.Api("http://in-process", api.operator_key), path, shop.pid, None,
                              check=False, dry_run=False, rows_per_chunk=4, out=io.StringIO(),
                              progress_stream=io.StringIO())
    assert 15.5 < sum(slept) <= data_tools.BUSY_WAIT_SECONDS
