"""Operator data tools over the HTTP API: member import from CSV, ledger export to CSV.

    python3 infra/dev.py import members.csv --program prg_… [--partner ptn_…]
    python3 infra/dev.py export-ledger --program prg_… --from 2026-01-01 --to 2026-01-31 [--out ledger.csv]

Both talk to a running Sarafan (``--url``, default http://127.0.0.1:8000, the local run) with the
operator key (``--key`` or ``SARAFAN_OPERATOR_KEY``; ``--ready-file`` reads both from the file
``python3 infra/dev.py run --ready-file PATH`` writes). Standard library only.

``import`` first checks the whole file (a dry run of every chunk, nothing written, and rows naming a
person an earlier row names) and stops if any row is bad, listing every bad row with its line number; ``--skip-bad-rows`` imports the good
rows anyway. It then writes through the chunked import API: ``POST …/imports`` once, then
``PUT …/imports/{id}/chunks/{n}`` for each chunk of up to 1,000 rows, in file order (a row may name
a referrer from an earlier chunk). Each row is written whole or not at all and re-running changes
nothing. The run is **resumable**: ``<file>.import-state.json`` keeps the import id and the
answered chunks until every chunk is in, so running the same command again after an interruption
continues the same import and skips the chunks already answered (a chunk whose answer was lost is
sent again: the server answers its first result; a chunk another request claimed and did not finish,
``503 import_busy``, is sent again as the server's ``Retry-After`` says, up to :data:`BUSY_WAIT_SECONDS`,
past the claim's lease). A progress bar with rate and ETA shows on a
terminal, plain progress lines otherwise; bad rows are printed with their line numbers and the exit
code is 1 when any row failed. A row naming a person whose data was erased here is a bad row unless
``--include-erased`` is given (then they are enrolled again, starting suppressed if they had complained).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import hashlib
import io
import json
import math
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

DEFAULT_URL = "http://127.0.0.1:8000"
CHUNK_ROWS = 1000
#: A chunk's CSV characters (the API takes 200,000) and its JSON body's bytes (the API takes 256 KiB).
CHUNK_CHARS = 190_000
CHUNK_BODY_BYTES = 240_000
COUNTS = ("rows", "imported", "existing_members", "already_imported", "opening_points")
STATE_VERSION = 1


#: How long in all a chunk may be busy (``import_busy``: claimed by an earlier request) before the run gives up:
#: more than the server's claim lease (``import_jobs.CLAIM_LEASE_SECONDS``, 60 s), so a claim whose request
#: stopped is taken over by the wait, not reported.
BUSY_WAIT_SECONDS = 90.0


class ApiError(Exception):
    pass


def _busy_pause(status: int, headers: Any, text: str) -> float | None:
    """Seconds to wait before sending a chunk the server says is busy (``503 import_busy``): its ``Retry-After``
    or ``details.retry_after_seconds`` (1 to 30 s; 5 s when it says neither); None for any other answer."""
    if status != 503:
        return None
    try:
        error = json.loads(text).get("error") or {}
    except (ValueError, AttributeError):
        return None
    if not isinstance(error, dict) or error.get("code") != "import_busy":
        return None
    details = error.get("details")
    if not isinstance(details, dict):
        details = {}
    said = (headers.get("Retry-After") if headers is not None else None) or details.get("retry_after_seconds")
    try:
        seconds = float(said) if said is not None else 5.0
    except (TypeError, ValueError):
        seconds = 5.0
    return min(max(seconds, 1.0), 30.0) if math.isfinite(seconds) else 5.0


class Api:
    def __init__(self, url: str, key: str) -> None:
        self.url = url.rstrip("/")
        self.key = key

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, dict[str, str], bytes]:
        data = json.dumps(body, ensure_ascii=False).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method, headers={
            "Authorization": f"Bearer {self.key}", "Content-Type": "application/json; charset=utf-8"})
        attempt, waited = 0, 0.0
        while True:
            try:
                with urllib.request.urlopen(request, timeout=300) as reply:
                    return reply.status, {k.lower(): v for k, v in reply.headers.items()}, reply.read()
            except urllib.error.HTTPError as exc:
                text = exc.read().decode("utf-8", "replace")
                pause = _busy_pause(exc.code, exc.headers, text)
                if pause is not None and waited + pause <= BUSY_WAIT_SECONDS:
                    # A chunk an earlier request claimed (one that stopped, or is still writing it): wait out
                    # the claim's lease as the server says, up to BUSY_WAIT_SECONDS in all.
                    time.sleep(pause)
                    waited += pause
                    continue
                if pause is None and exc.code in (429, 503) and attempt < 5:
                    time.sleep(0.5 * 2**attempt)
                    attempt += 1
                    continue
                raise ApiError(f"{method} {path}: HTTP {exc.code} {text}") from None
            except urllib.error.URLError as exc:
                raise ApiError(f"cannot reach {self.url}: {exc.reason}") from None

    def json(self, method: str, path: str, body: Any = None) -> Any:
        return json.loads(self.call(method, path, body)[2])


class Progress:
    """Progress with rate and ETA: a one-line bar on a terminal, otherwise a plain line every
    :attr:`LINE_EVERY` of the total (and at the end). ``skip`` counts rows done by an earlier run:
    they move the bar but not the rate."""

    LINE_EVERY = 0.1

    def __init__(self, total: int, stream: TextIO = sys.stderr, label: str = "rows") -> None:
        self.total, self.stream, self.label = total, stream, label
        self.tty = stream.isatty()
        self.started = time.monotonic()
        self.done = self.skipped = 0
        self.next_line = self.LINE_EVERY * total

    def skip(self, n: int) -> None:
        self.done += n
        self.skipped += n
        self._step_past_done()

    def _step_past_done(self) -> None:
        while self.total and self.next_line <= self.done:
            self.next_line += self.LINE_EVERY * self.total

    def rate(self) -> float:
        return (self.done - self.skipped) / max(time.monotonic() - self.started, 1e-6)

    def advance(self, n: int) -> None:
        self.done += n
        rate = self.rate()
        left = (self.total - self.done) / rate if rate > 0 else 0
        if self.tty:
            width = 30
            filled = int(width * self.done / self.total) if self.total else width
            self.stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {self.done:,}/{self.total:,} {self.label}"
                              f"  {rate:,.0f}/s  ETA {_duration(left)}   ")
            self.stream.flush()
        elif self.done >= self.next_line or self.done >= self.total:
            percent = 100 * self.done // self.total if self.total else 100
            self.stream.write(f"{self.done:,}/{self.total:,} {self.label} ({percent}%)  {rate:,.0f}/s"
                              f"  ETA {_duration(left)}\n")
            self.stream.flush()
            self._step_past_done()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def chunks(path: Path, rows_per_chunk: int = CHUNK_ROWS) -> Iterator[tuple[str, int, int]]:
    """``(csv text with the header, file line of its first row, rows)`` for each chunk, streaming the file.

    A chunk ends at ``rows_per_chunk`` rows, :data:`CHUNK_CHARS` characters of CSV or
    :data:`CHUNK_BODY_BYTES` bytes of JSON, whichever comes first, so the API never refuses it."""
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            return
        line = io.StringIO()
        writer = csv.writer(line, lineterminator="\n")

        def text_of(record: list[str]) -> str:
            line.seek(0)
            line.truncate()
            writer.writerow(record)
            return line.getvalue()

        head = text_of(header)
        parts: list[str] = []
        first_line = chars = body = 0
        start = reader.line_num + 1
        for record in reader:
            if not parts:
                parts, first_line, chars, body = [head], start, len(head), _json_bytes(head)
            text = text_of(record)
            parts.append(text)
            chars += len(text)
            body += _json_bytes(text)
            start = reader.line_num + 1
            if len(parts) - 1 >= rows_per_chunk or chars >= CHUNK_CHARS or body >= CHUNK_BODY_BYTES:
                yield "".join(parts), first_line, len(parts) - 1
                parts = []
        if parts:
            yield "".join(parts), first_line, len(parts) - 1


def _json_bytes(text: str) -> int:
    return len(json.dumps(text, ensure_ascii=False).encode()) - 2


def _file_facts(path: Path, rows_per_chunk: int) -> tuple[str, int, int]:
    """The file's SHA-256, its rows and its chunks (one streaming pass each)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    rows = number = 0
    for _text, _first, n in chunks(path, rows_per_chunk):
        rows += n
        number += 1
    return digest.hexdigest(), rows, number


def state_path(path: Path) -> Path:
    return path.with_name(path.name + ".import-state.json")


class _State:
    """What a run keeps to resume: the import id and every answered chunk's counts and bad rows."""

    def __init__(self, path: Path, key: dict[str, Any]) -> None:
        self.path, self.key = path, key
        self.import_id: str | None = None
        self.answers: dict[int, dict[str, Any]] = {}
        self.writable = True
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return
        if isinstance(saved, dict) and saved.get("key") == key and isinstance(saved.get("import_id"), str):
            self.import_id = saved["import_id"]
            self.answers = {int(n): a for n, a in (saved.get("chunks") or {}).items()}

    def save(self) -> None:
        if not self.writable:
            return
        data = {"key": self.key, "import_id": self.import_id, "chunks": {str(n): a for n, a in self.answers.items()}}
        temporary = self.path.with_name(self.path.name + ".tmp")
        try:
            temporary.write_text(json.dumps(data), encoding="utf-8")
            os.replace(temporary, self.path)
        except OSError as exc:
            print(f"warning: cannot keep {self.path} ({exc.strerror}): an interrupted import will not resume",
                  file=sys.stderr)
            self.writable = False

    def remove(self) -> None:
        with contextlib.suppress(OSError):
            self.path.unlink()


def _print_errors(errors: list[dict[str, Any]], out: TextIO) -> None:
    for error in sorted(errors, key=lambda e: int(e["line"])):
        problems = "; ".join(f"{e['column'] or 'row'}: {e['message']}" for e in error["errors"])
        print(f"line {error['line']}: {problems}", file=out)


#: The columns naming a person, as the server compares them where a plain normalisation can (e-mail lower-cased,
#: phone digits); the server finds the rest (a gmail address's dots, a national phone format) when writing.
_PERSON_COLUMNS = ("customer_id", "email", "phone")


def _person_keys(text: str, first_line: int) -> Iterator[tuple[int, list[tuple[str, str]]]]:
    """``(file line, [(column, plain value)])`` of each row of a chunk's CSV (the server's line numbering)."""
    reader = csv.reader(io.StringIO(text))
    header = [n.strip().lower().lstrip("\ufeff") for n in next(reader, [])]
    start = reader.line_num + 1
    for record in reader:
        line, start = first_line + start - 2, reader.line_num + 1
        cells = dict(zip(header, (v.strip() for v in record), strict=False))
        names = []
        for column in _PERSON_COLUMNS:
            value = cells.get(column) or ""
            if column == "email":
                value = value.lower()
            elif column == "phone":
                value = ("+" if value.startswith("+") else "") + "".join(ch for ch in value if ch.isdigit())
            if value.strip("+"):
                names.append((column, value))
        yield line, names


def check_file(api: Api, path: Path, program: str, partner: str | None, rows_per_chunk: int, total: int,
               progress_stream: TextIO) -> tuple[int, list[dict[str, Any]]]:
    """Every chunk as a dry run (nothing written): the rows read and the bad rows. The server finds rows naming a
    person twice within a chunk; this finds them across chunks too (a row naming someone an earlier row of the
    file names), where a plain comparison can."""
    route = f"/v1/programs/{urllib.parse.quote(program)}/imports/members"
    errors: list[dict[str, Any]] = []
    rows = 0
    first: dict[tuple[str, str], int] = {}
    progress = Progress(total, progress_stream, label="rows checked")
    for text, first_line, n in chunks(path, rows_per_chunk):
        body: dict[str, Any] = {"csv": text, "first_line": first_line, "dry_run": True}
        if partner:
            body["partner_id"] = partner
        reply = api.json("POST", route, body)
        errors += reply["errors"]
        bad = {int(e["line"]) for e in reply["errors"]}
        chunk_first: dict[tuple[str, str], int] = {}
        for line, names in _person_keys(text, first_line):
            if line in bad:
                continue
            earlier = next(((name, first[name]) for name in names if name in first), None)
            if earlier is not None:
                (column, _), at = earlier
                errors.append({"line": line, "errors": [{"column": column, "message": (
                    f"duplicate of line {at} (the same {column}): one row per person")}]})
                continue
            for name in names:
                chunk_first.setdefault(name, line)
        for name, line in chunk_first.items():
            first.setdefault(name, line)
        rows += int(reply.get("rows", 0))
        progress.advance(n)
    progress.close()
    return rows, errors


def run_import(api: Api, path: Path, program: str, partner: str | None, *, check: bool, dry_run: bool,
               rows_per_chunk: int = CHUNK_ROWS, out: TextIO = sys.stdout, progress_stream: TextIO = sys.stderr,
               state_file: Path | None = None, include_erased: bool = False) -> int:
    """Check (unless ``check`` is false), then import ``path`` through the chunked import API; 0 when
    every row was imported or already there, 1 when any row was bad."""
    digest, total, expected = _file_facts(path, rows_per_chunk)
    if check or dry_run:
        rows, errors = check_file(api, path, program, partner, rows_per_chunk, total, progress_stream)
        _print_errors(errors, out)
        if dry_run:
            print(f"{rows:,} rows checked, {len(errors):,} bad", file=out)
            return 1 if errors else 0
        if errors:
            print(f"{len(errors):,} bad rows; nothing was imported (fix them, or pass --skip-bad-rows)", file=out)
            return 1
    if total == 0:
        print("the file has no rows", file=out)
        return 0
    base = f"/v1/programs/{urllib.parse.quote(program)}/imports"
    state = _State(state_file or state_path(path), {"version": STATE_VERSION, "url": api.url, "program": program,
                                                   "partner": partner, "sha256": digest,
                                                   "rows_per_chunk": rows_per_chunk,
                                                   **({"include_erased": True} if include_erased else {})})
    if state.import_id is not None:
        try:
            api.json("GET", f"{base}/{urllib.parse.quote(state.import_id)}")
            print(f"resuming import {state.import_id}: {len(state.answers)} of {expected} chunks already in",
                  file=out)
        except ApiError:
            state.import_id, state.answers = None, {}
    if state.import_id is None:
        body: dict[str, Any] = {"expected_chunks": expected}
        if include_erased:
            body["include_erased"] = True
        if partner:
            body["partner_id"] = partner
        state.import_id = str(api.json("POST", base, body)["import_id"])
        state.save()
    job = f"{base}/{urllib.parse.quote(state.import_id)}"
    progress = Progress(total, progress_stream)
    for number, (text, first_line, n) in enumerate(chunks(path, rows_per_chunk), 1):
        if number in state.answers:
            progress.skip(n)
            continue
        reply = api.json("PUT", f"{job}/chunks/{number}", {"csv": text, "first_line": first_line})
        state.answers[number] = {**{name: int(reply.get(name, 0)) for name in COUNTS}, "errors": reply["errors"]}
        state.save()
        progress.advance(n)
    progress.close()
    status = api.json("GET", job)
    errors = [e for answer in state.answers.values() for e in answer["errors"]]
    summary = {name: sum(int(a.get(name, 0)) for a in state.answers.values()) for name in COUNTS}
    _print_errors(errors, out)
    print(f"import {state.import_id} ({status['status']}, {status['chunks']} of {expected} chunks): "
          f"{summary['imported']:,} members imported, {summary['existing_members']:,} existing members "
          f"credited, {summary['already_imported']:,} already imported, {summary['opening_points']:,} "
          f"opening points, {len(errors):,} bad rows", file=out)
    state.remove()  # every chunk is in: running the command again starts a new import (which changes nothing)
    return 1 if errors else 0


def run_export(api: Api, program: str, start: str, end: str, out: TextIO, limit: int = 5000) -> int:
    cursor: str | None = None
    while True:
        query = {"from": start, "to": end, "limit": str(limit)}
        if cursor:
            query["cursor"] = cursor
        path = f"/v1/programs/{urllib.parse.quote(program)}/ledger/export?{urllib.parse.urlencode(query)}"
        _, headers, body = api.call("GET", path)
        out.write(body.decode("utf-8"))
        cursor = headers.get("x-next-cursor")
        if not cursor:
            return 0


def _api(args: argparse.Namespace) -> Api:
    url, key = args.url, args.key or os.environ.get("SARAFAN_OPERATOR_KEY")
    if args.ready_file:
        facts = json.loads(Path(args.ready_file).read_text(encoding="utf-8"))
        url, key = url or facts["base_url"], key or facts["operator_key"]
    if not key:
        raise SystemExit("give the operator key: --key, SARAFAN_OPERATOR_KEY or --ready-file")
    return Api(url or DEFAULT_URL, key)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--program", required=True)
    parser.add_argument("--url", help=f"the API (default {DEFAULT_URL})")
    parser.add_argument("--key", help="the operator key (default: $SARAFAN_OPERATOR_KEY)")
    parser.add_argument("--ready-file", help="read the URL and key from `dev.py run --ready-file` output")


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("import", "export-ledger"):
        print(__doc__, file=sys.stderr)
        return 2
    command, rest = argv[0], argv[1:]
    parser = argparse.ArgumentParser(prog=f"dev.py {command}")
    _common(parser)
    try:
        if command == "import":
            parser.add_argument("file", type=Path)
            parser.add_argument("--partner", help="the partner whose customer ids the file holds")
            parser.add_argument("--skip-bad-rows", action="store_true", help="import the good rows of a file with bad ones")
            parser.add_argument("--dry-run", action="store_true", help="check every row, write nothing")
            parser.add_argument("--include-erased", action="store_true",
                                help="enrol again people whose data was erased here (default: such rows are bad rows)")
            parser.add_argument("--chunk-rows", type=int, default=CHUNK_ROWS, help="rows per chunk (1-1000)")
            parser.add_argument("--state", type=Path, help="where to keep the state that resumes an interrupted "
                                                           "import (default: <file>.import-state.json)")
            args = parser.parse_args(rest)
            return run_import(_api(args), args.file, args.program, args.partner, check=not args.skip_bad_rows,
                              dry_run=args.dry_run, rows_per_chunk=max(1, min(args.chunk_rows, 1000)),
                              state_file=args.state, include_erased=args.include_erased)
        parser.add_argument("--from", dest="start", required=True)
        parser.add_argument("--to", dest="end", required=True)
        parser.add_argument("--out", type=Path, help="write here instead of stdout")
        args = parser.parse_args(rest)
        if args.out:
            with args.out.open("w", encoding="utf-8", newline="") as handle:
                return run_export(_api(args), args.program, args.start, args.end, handle)
        return run_export(_api(args), args.program, args.start, args.end, sys.stdout)
    except ApiError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
