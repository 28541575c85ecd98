#!/usr/bin/env python3
"""Sarafan developer entry point: two commands on a machine with only Python 3.11+.

    python3 infra/dev.py run [--port 8000]   # embedded AWS (moto) + API on http://127.0.0.1:8000
    python3 infra/dev.py test [pytest args]  # ruff + mypy + pytest (parallel when it pays off)
    python3 infra/dev.py operator-key        # a new operator key and the SHA-256 to deploy
    python3 infra/dev.py package --stage prod [out]  # Lambda zip + SAM template (infra merged)
    python3 infra/dev.py deploy --stage prod          # chalice deploy of the same slim bundle
    python3 infra/dev.py import members.csv --program prg_…   # members from another system (CSV)
    python3 infra/dev.py export-ledger --program prg_… --from 2026-01-01 --to 2026-01-31

Standard library only: this file bootstraps ``.venv`` (created when missing,
re-synced when the requirements files change; their hash is kept in
``.venv/.sarafan-reqs``) and then hands over to the venv's Python. The runtime
part of ``run`` lives in ``infra/local_run.py``. Nothing under ``infra/`` is
shipped to Lambda (Chalice packages ``app.py``, ``chalicelib/`` and ``vendor/``).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
STAMP = VENV / ".sarafan-reqs"
REQUIREMENTS = ROOT / "requirements-dev.txt"
MIN_PYTHON = (3, 11)
#: Parallel pytest workers when more than one test file is selected.
DEFAULT_WORKERS = 2


def say(message: str) -> None:
    print(f"[dev] {message}", file=sys.stderr, flush=True)


def venv_python(venv: Path = VENV) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def requirement_files(start: Path = REQUIREMENTS) -> list[Path]:
    """``start`` and every file it includes with ``-r``/``-c``, in order."""
    seen: list[Path] = []
    pending = [start]
    while pending:
        path = pending.pop(0).resolve()
        if path in seen or not path.exists():
            continue
        seen.append(path)
        for line in path.read_text(encoding="utf-8").splitlines():
            match = re.match(r"^\s*(?:-r|-c|--requirement|--constraint)\s*=?\s*(\S+)", line)
            if match:
                pending.append(path.parent / match.group(1))
    return seen


def requirements_hash(start: Path = REQUIREMENTS) -> str:
    """Changes when a requirements file or the interpreter's minor version changes."""
    digest = hashlib.sha256(f"python{sys.version_info[0]}.{sys.version_info[1]}\n".encode())
    for path in requirement_files(start):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def venv_is_current(venv: Path = VENV, start: Path = REQUIREMENTS) -> bool:
    stamp = venv / ".sarafan-reqs"
    return (
        venv_python(venv).exists()
        and stamp.exists()
        and stamp.read_text(encoding="utf-8").strip() == requirements_hash(start)
    )


def ensure_venv() -> Path:
    """Create or re-sync ``.venv``; return its Python."""
    python = venv_python()
    if venv_is_current():
        return python
    if os.environ.get("SARAFAN_RECREATE_VENV") == "1" and VENV.exists():
        say("SARAFAN_RECREATE_VENV=1: removing .venv")
        shutil.rmtree(VENV)
    if not python.exists():
        if VENV.exists():
            say(".venv is broken (no interpreter): recreating it")
            shutil.rmtree(VENV)
        say(f"creating .venv with {sys.executable} (Python {sys.version.split()[0]})")
        import venv

        venv.EnvBuilder(with_pip=True, clear=False).create(VENV)
    else:
        say("requirements changed since .venv was built: syncing it")
    say(f"pip install -r {REQUIREMENTS.name} (first time: about 1 to 5 minutes on 2 cores)")
    install = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-r", str(REQUIREMENTS)]
    if subprocess.call(install, cwd=ROOT) != 0:
        say("pip install failed; fix the error above and run the command again")
        raise SystemExit(1)
    STAMP.write_text(requirements_hash() + "\n", encoding="utf-8")
    return python


# --- test ---------------------------------------------------------------------


def _selected_test_files(args: list[str]) -> list[Path]:
    """Test files named by ``args`` (paths and node ids), or the whole ``tests/`` tree."""
    paths: list[Path] = []
    for arg in args:
        if arg.startswith("-"):
            continue
        candidate = ROOT / arg.split("::", 1)[0]
        if candidate.exists():
            paths.append(candidate)
    if not paths:
        paths = [ROOT / "tests"]
    files: set[Path] = set()
    for path in paths:
        if path.is_dir():
            files.update(p for p in path.rglob("test_*.py") if ".venv" not in p.parts)
        elif path.suffix == ".py":
            files.add(path)
    return sorted(files)


def _marker_expression(args: list[str]) -> str | None:
    for i, arg in enumerate(args):
        if arg == "-m" and i + 1 < len(args):
            return args[i + 1].strip()
        if arg.startswith("-m") and len(arg) > 2 and arg[2] != "-":
            return arg[2:].lstrip("=").strip()
    return None


def use_xdist(args: list[str], cpu_count: int | None = None) -> bool:
    """Parallelise only when it pays off: several files, not e2e-only, not interactive."""
    cpus = cpu_count if cpu_count is not None else (os.cpu_count() or 1)
    if cpus < 2:
        return False
    if any(a in {"-n", "--numprocesses", "--pdb", "--trace", "--collect-only", "--co", "-p"} for a in args):
        return False
    if any(a.startswith(("-n", "--numprocesses=", "--dist")) for a in args):
        return False
    if _marker_expression(args) == "e2e":
        return False
    files = _selected_test_files(args)
    e2e = ROOT / "tests" / "e2e"
    if files and all(e2e in f.parents for f in files):
        return False
    return len(files) > 1


def cmd_test(args: list[str]) -> int:
    python = str(ensure_venv())
    say("ruff check .")
    lint = subprocess.call([python, "-m", "ruff", "check", "."], cwd=ROOT)
    say("mypy chalicelib app.py infra")
    types = subprocess.call([python, "-m", "mypy", "chalicelib", "app.py", "infra"], cwd=ROOT)
    pytest_args = list(args)
    if use_xdist(pytest_args):
        workers = os.environ.get("SARAFAN_TEST_WORKERS") or str(DEFAULT_WORKERS)
        # worksteal: a worker out of tests takes half of the other's queue, so both end together
        # (tests/conftest.py starts the long tests first; docs/tests.md).
        pytest_args = ["-n", workers, "--dist", "worksteal", *pytest_args]
    say("pytest " + " ".join(pytest_args))
    tests = subprocess.call([python, "-m", "pytest", *pytest_args], cwd=ROOT)
    if lint or types or tests:
        say(f"FAILED (ruff exit {lint}, mypy exit {types}, pytest exit {tests})")
        return tests or lint or types
    say("all checks passed")
    return 0


# --- run ----------------------------------------------------------------------


def cmd_run(args: list[str]) -> int:
    python = str(ensure_venv())
    argv = [python, str(ROOT / "infra" / "local_run.py"), *args]
    if os.name == "nt":  # no real exec on Windows: run as a child and pass the exit code on
        return subprocess.call(argv, cwd=ROOT)
    os.chdir(ROOT)
    os.execv(python, argv)
    return 0  # not reached


def _in_venv(script: str, args: list[str], cwd: Path = ROOT) -> int:
    python = str(ensure_venv())
    return subprocess.call([python, str(ROOT / "infra" / script), *args], cwd=cwd)


def cmd_package(args: list[str]) -> int:
    return _in_venv("package.py", ["package", *args])


def cmd_deploy(args: list[str]) -> int:
    return _in_venv("package.py", ["deploy", *args])


def cmd_import(args: list[str]) -> int:
    return _in_venv("data_tools.py", ["import", *args], cwd=Path.cwd())  # file paths are the caller's


def cmd_export_ledger(args: list[str]) -> int:
    return _in_venv("data_tools.py", ["export-ledger", *args], cwd=Path.cwd())


def cmd_operator_key(_: list[str]) -> int:
    import secrets

    key = "srf_op_" + secrets.token_urlsafe(32)
    print(f"operator key (keep it secret; give it to the operator): {key}")
    print(f"SARAFAN_OPERATOR_KEY_SHA256 (put this in .chalice/config.json): {hashlib.sha256(key.encode()).hexdigest()}")
    return 0


COMMANDS = {"run": cmd_run, "test": cmd_test, "operator-key": cmd_operator_key, "package": cmd_package,
            "deploy": cmd_deploy, "import": cmd_import, "export-ledger": cmd_export_ledger}


def main(argv: list[str]) -> int:
    if sys.version_info < MIN_PYTHON:
        say(f"Python {MIN_PYTHON[0]}.{MIN_PYTHON[1]}+ is needed (this is {sys.version.split()[0]})")
        return 2
    if not argv or argv[0] not in COMMANDS:
        print(__doc__.strip().split("\n\n")[1], file=sys.stderr)
        return 2
    return COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
