"""Operator data tools over the HTTP API: member import from CSV, ledger export to CSV.

    python3 infra/dev.py import members.csv --program prg_… [--partner ptn_…]
    python3 infra/dev.py export-ledger --program prg_… --from 2026-01-01 --to 2026-01-31 [--out ledger.csv]

Both talk to a running Sarafan (``--url``, default http://127.0.0.1:8000, the local run) with the
operator key (``--key`` or ``SARAFAN_OPERATOR_KEY``; ``--ready-file`` reads both from the file
``python3 infra/dev.py run --ready-file PATH`` writes). Standard library only.

``import`` first checks the whole file (a dry run, nothing written) and stops if any row is bad,
listing every bad row with its line number; ``--skip-bad-rows`` imports the good rows anyway.
It then sends the file in chunks (each row is written whole or not at all, and re-running the
import changes nothing), showing a progress bar with rate and ETA on a terminal.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
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
CHUNK_ROWS = 500
CHUNK_BYTES = 200 * 1024  # the API takes bodies up to 256 KiB


class ApiError(Exception):
    pass


class Api:
    def __init__(self, url: str, key: str) -> None:
        self.url = url.rstrip("/")
        self.key = key

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, dict[str, str], bytes]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method, headers={
            "Authorization": f"Bearer {self.key}", "Content-Type": "application/json"})
        for attempt in range(6):
            try:
                with urllib.request.urlopen(request, timeout=120) as reply:
                    return reply.status, {k.lower(): v for k, v in reply.headers.items()}, reply.read()
            except urllib.error.HTTPError as exc:
                text = exc.read().decode("utf-8", "replace")
                if exc.code in (429, 503) and attempt < 5:
                    time.sleep(0.5 * 2**attempt)
                    continue
                raise ApiError(f"{method} {path}: HTTP {exc.code} {text}") from None
            except urllib.error.URLError as exc:
                raise ApiError(f"cannot reach {self.url}: {exc.reason}") from None
        raise ApiError(f"{method} {path}: still busy after retries")

    def json(self, method: str, path: str, body: Any = None) -> Any:
        return json.loads(self.call(method, path, body)[2])


class Progress:
    """A one-line progress bar with rate and ETA on a terminal (nothing otherwise)."""

    def __init__(self, total: int, stream: TextIO = sys.stderr, label: str = "rows") -> None:
        self.total, self.stream, self.label = total, stream, label
        self.enabled = stream.isatty()
        self.started = time.monotonic()
        self.done = 0

    def advance(self, n: int) -> None:
        self.done += n
        if not self.enabled:
            return
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate = self.done / elapsed
        left = (self.total - self.done) / rate if rate > 0 else 0
        width = 30
        filled = int(width * self.done / self.total) if self.total else width
        self.stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {self.done:,}/{self.total:,} {self.label}"
                          f"  {rate:,.0f}/s  ETA {_duration(left)}   ")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def chunks(path: Path, rows_per_chunk: int = CHUNK_ROWS) -> Iterator[tuple[str, int, int]]:
    """``(csv text with the header, file line of its first row, rows)`` for each chunk, streaming the file."""
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            return
        buffer, writer = io.StringIO(), None
        first_line, rows, size = 0, 0, 0
        start = reader.line_num + 1
        for record in reader:
            if writer is None:
                buffer = io.StringIO()
                writer = csv.writer(buffer, lineterminator="\n")
                writer.writerow(header)
                first_line, rows = start, 0
            before = buffer.tell()
            writer.writerow(record)
            size += buffer.tell() - before
            rows += 1
            start = reader.line_num + 1
            if rows >= rows_per_chunk or size >= CHUNK_BYTES:
                yield buffer.getvalue(), first_line, rows
                writer, size = None, 0
        if writer is not None:
            yield buffer.getvalue(), first_line, rows


def count_rows(path: Path) -> int:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        return max(sum(1 for _ in csv.reader(handle)) - 1, 0)


def run_import(api: Api, path: Path, program: str, partner: str | None, *, check: bool, dry_run: bool,
               rows_per_chunk: int = CHUNK_ROWS, out: TextIO = sys.stdout) -> int:
    total = count_rows(path)
    route = f"/v1/programs/{urllib.parse.quote(program)}/imports/members"
    passes = [True] if dry_run else ([True, False] if check else [False])
    summary: dict[str, int] = {}
    for dry in passes:
        errors: list[dict[str, Any]] = []
        summary = {"rows": 0, "imported": 0, "existing_members": 0, "already_imported": 0, "opening_points": 0}
        progress = Progress(total, label="rows checked" if dry else "rows")
        for text, first_line, rows in chunks(path, rows_per_chunk):
            body: dict[str, Any] = {"csv": text, "first_line": first_line, "dry_run": dry}
            if partner:
                body["partner_id"] = partner
            reply = api.json("POST", route, body)
            errors += reply["errors"]
            for name in summary:
                summary[name] += int(reply.get(name, 0))
            progress.advance(rows)
        progress.close()
        for error in errors:
            problems = "; ".join(f"{e['column'] or 'row'}: {e['message']}" for e in error["errors"])
            print(f"line {error['line']}: {problems}", file=out)
        if dry and errors and len(passes) > 1:
            print(f"{len(errors)} bad rows; nothing was imported (fix them, or pass --skip-bad-rows)", file=out)
            return 1
        if not dry:
            print(f"{summary['imported']:,} members imported, {summary['existing_members']:,} existing members "
                  f"credited, {summary['already_imported']:,} already imported, {summary['opening_points']:,} "
                  f"opening points, {len(errors):,} bad rows", file=out)
            return 1 if errors else 0
    print(f"{summary['rows']:,} rows checked, {len(errors):,} bad", file=out)
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
            parser.add_argument("--chunk-rows", type=int, default=CHUNK_ROWS)
            args = parser.parse_args(rest)
            return run_import(_api(args), args.file, args.program, args.partner, check=not args.skip_bad_rows,
                              dry_run=args.dry_run, rows_per_chunk=max(1, min(args.chunk_rows, 1000)))
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
