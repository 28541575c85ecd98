"""One clock: nothing in the service reads the time except ``chalicelib/domain/clock.py`` (static, by AST).

The checker is here, with tests of it; ``tests/unit/test_layers.py`` runs it on every module of ``chalicelib/``
and ``app.py`` (so the landing gate, which runs that file, enforces it).

Services, jobs and consumers ask the injected ``Clock`` port (``deps.clock.now()``, ``ports.current().clock.now()``);
pure domain functions take ``now`` from such a caller. Tests move that one clock (``tests.support.CLOCK``, or a
service test's ``deps.clock``). A module that reads the wall clock itself escapes both, which is what this test
catches: ``datetime.now/utcnow/today``, ``date.today``, ``time.time``/``time_ns``, ``time.gmtime()`` and the like
without an argument, ``email.utils.formatdate()`` without a time, under any import alias. ``time.monotonic`` and ``time.perf_counter`` measure durations (a
budget, a log's duration, a cache's expiry) and tell no date: allowed.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: The only module that may read the time (``SystemClock``; ``ManualClock`` following the wall clock).
ALLOWED = {Path("chalicelib/domain/clock.py")}
#: ``datetime``/``date`` class methods that read the time.
CLASS_READS = {"datetime": {"now", "utcnow", "today"}, "date": {"today"}}
#: ``time`` functions that read the time whatever their arguments.
TIME_READS = {"time", "time_ns", "clock_gettime", "clock_gettime_ns"}
#: ``time`` functions that read the time when called without the time to format or convert.
TIME_READS_WITHOUT_ARGUMENT = {"gmtime": 0, "localtime": 0, "ctime": 0, "asctime": 0, "strftime": 1}


def time_reads(source: str) -> list[str]:
    """``line: what`` for every read of the time in ``source``."""
    tree = ast.parse(source)
    classes: dict[str, str] = {}  # local name -> "datetime" | "date"
    datetime_modules: set[str] = set()
    time_modules: set[str] = set()
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "datetime":
                    datetime_modules.add(alias.asname or "datetime")
                elif alias.name == "time":
                    time_modules.add(alias.asname or "time")
        elif isinstance(node, ast.ImportFrom) and node.module == "datetime":
            for alias in node.names:
                if alias.name in CLASS_READS:
                    classes[alias.asname or alias.name] = alias.name
        elif isinstance(node, ast.ImportFrom) and node.module == "time":
            for alias in node.names:
                if alias.name in TIME_READS:
                    found.append(f"{node.lineno}: from time import {alias.name}")

    def class_of(value: ast.expr) -> str | None:
        if isinstance(value, ast.Name):
            return classes.get(value.id)
        if (isinstance(value, ast.Attribute) and isinstance(value.value, ast.Name)
                and value.value.id in datetime_modules and value.attr in CLASS_READS):
            return value.attr
        return None

    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            cls = class_of(node.value)
            if cls is not None and node.attr in CLASS_READS[cls]:
                found.append(f"{node.lineno}: {cls}.{node.attr}")
            elif node.attr == "utcnow":
                found.append(f"{node.lineno}: .utcnow")
            elif isinstance(node.value, ast.Name) and node.value.id in time_modules and node.attr in TIME_READS:
                found.append(f"{node.lineno}: time.{node.attr}")
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and isinstance(node.func.value, ast.Name) and node.func.value.id in time_modules
              and node.func.attr in TIME_READS_WITHOUT_ARGUMENT
              and len(node.args) <= TIME_READS_WITHOUT_ARGUMENT[node.func.attr]):
            found.append(f"{node.lineno}: time.{node.func.attr}() of now")
        elif (isinstance(node, ast.Call) and _name(node.func) == "formatdate" and not node.args
              and not any(k.arg == "timeval" for k in node.keywords)):
            found.append(f"{node.lineno}: email.utils.formatdate() of now")
    return sorted(set(found))


def _name(func: ast.expr) -> str | None:
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None


def reads_outside_the_clock(path: Path) -> list[str]:
    """What ``path`` (a module of the service) reads of the time, unless it is the clock module."""
    if path.resolve().relative_to(ROOT) in ALLOWED:
        return []
    return time_reads(path.read_text(encoding="utf-8"))


# The per-module check runs in tests/unit/test_layers.py (part of every landing's gate), with the layering rules.


def test_the_clock_module_is_where_the_time_is_read() -> None:
    """The allowed module does read it (so the checker below is looking at the right thing)."""
    assert time_reads((ROOT / "chalicelib/domain/clock.py").read_text(encoding="utf-8"))


@pytest.mark.parametrize("source", [
    "from datetime import datetime\nx = datetime.now()",
    "from datetime import datetime as dt\nx = dt.utcnow()",
    "from datetime import date\nx = date.today()",
    "import datetime\nx = datetime.datetime.now(datetime.UTC)",
    "import datetime as d\nx = d.date.today()",
    "from datetime import datetime\nmake = datetime.now",  # a reference (e.g. default_factory) reads it later
    "import time\nx = time.time()",
    "import time as t\nx = t.time_ns()",
    "from time import time\nx = time()",
    "import time\nx = time.strftime('%Y')",
    "import time\nx = time.gmtime()",
    "from chalicelib.domain import clock\nx = clock.utcnow()",
    "from email.utils import formatdate\nx = formatdate(usegmt=True)",
])
def test_the_checker_finds_a_read(source: str) -> None:
    assert time_reads(source)


@pytest.mark.parametrize("source", [
    "import time\nstarted = time.monotonic()\nd = time.perf_counter() - started",
    "import time\nw = time.strftime('%Y%m%d%H%M', time.gmtime(60))",
    "from datetime import UTC, datetime\nx = datetime.fromtimestamp(0, UTC)",
    "x = deps.clock.now()",
    "import time\ntime.sleep(0.01)",
    "from email.utils import formatdate\nx = formatdate(at.timestamp(), usegmt=True)",
])
def test_the_checker_allows_what_tells_no_date(source: str) -> None:
    assert not time_reads(source)
