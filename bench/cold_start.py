#!/usr/bin/env python3
"""Cold start and deployment size, measured (not a test). Run: ``.venv/bin/python bench/cold_start.py``.

Cold start = ``import app`` + the first request through the Lambda handler
(``app(event, context)`` with an API Gateway proxy event), in a fresh Python
process each time (median of ``--reps``), for:

* ``GET /health`` (no AWS call), and
* ``GET /v1/programs`` with a partner key (API key lookup + program read in
  DynamoDB), against a moto server this script runs (so the child process
  imports nothing of moto, as in Lambda).

The floor is what any Python Lambda using Chalice and boto pays: ``import boto3,
chalice`` + creating one botocore client. Targets: ratio ≤ 1.25 against the floor;
deployment zip (``chalice package``) ≤ 1 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RATIO_TARGET = 1.25
ZIP_TARGET = 1_000_000

_CONTEXT = """
class Context:
    function_name = "sarafan-bench"
    aws_request_id = "bench"
    memory_limit_in_mb = 512
    def get_remaining_time_in_millis(self):
        return 15000
"""

_EVENT = """
def event(path, key=None):
    headers = {"Host": "bench.local", "Accept": "application/json"}
    if key:
        headers["Authorization"] = "Bearer " + key
    return {
        "resource": path, "path": path, "httpMethod": "GET", "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": None, "multiValueQueryStringParameters": None,
        "pathParameters": None, "stageVariables": None, "body": None, "isBase64Encoded": False,
        "requestContext": {"resourcePath": path, "httpMethod": "GET", "path": "/dev" + path, "stage": "dev",
                           "requestId": "bench", "accountId": "123456789012", "apiId": "bench",
                           "identity": {"sourceIp": "127.0.0.1"}},
    }
"""

#: Each child prints one JSON line: {"seconds": ..., "status": ...}.
CHILDREN = {
    "floor": """
import time, json
t0 = time.perf_counter()
import boto3, chalice
boto3.session.Session().client("dynamodb")
print(json.dumps({"seconds": time.perf_counter() - t0, "status": 0}))
""",
    "health": _CONTEXT + _EVENT + """
import time, json, sys, io
t0 = time.perf_counter()
from app import app
reply = app(event("/health"), Context())
seconds = time.perf_counter() - t0
print(json.dumps({"seconds": seconds, "status": reply["statusCode"]}), file=sys.__stderr__)
""",
    "dynamodb": _CONTEXT + _EVENT + """
import time, json, sys, os
t0 = time.perf_counter()
from app import app
reply = app(event("/v1/programs", os.environ["BENCH_PARTNER_KEY"]), Context())
seconds = time.perf_counter() - t0
print(json.dumps({"seconds": seconds, "status": reply["statusCode"]}), file=sys.__stderr__)
""",
}


def run_child(name: str, env: dict[str, str]) -> float:
    done = subprocess.run([sys.executable, "-c", CHILDREN[name]], cwd=ROOT, env=env, capture_output=True, text=True)
    # The app logs to stdout; the app children report on stderr, the floor on stdout.
    lines = (done.stderr if name != "floor" else done.stdout).strip().splitlines()
    try:
        result = json.loads(lines[-1])
    except (IndexError, ValueError):
        raise SystemExit(f"{name} child failed:\n{done.stdout}\n{done.stderr}") from None
    if result["status"] not in (0, 200):
        raise SystemExit(f"{name} child got HTTP {result['status']}:\n{done.stdout}\n{done.stderr}")
    return float(result["seconds"])


def start_store() -> tuple[object, dict[str, str]]:
    """A moto server with the table and one program + partner; env for the children."""
    sys.path.insert(0, str(ROOT))
    from infra.local_run import EmbeddedMoto, configure_environment, free_port, prepare_store, seed_demo

    for name in [n for n in os.environ if n.startswith(("AWS_", "SARAFAN_"))]:
        del os.environ[name]
    moto = EmbeddedMoto("127.0.0.1", free_port())
    moto.start()
    configure_environment("moto", "http://127.0.0.1:8000", moto.endpoint)
    os.environ["SARAFAN_STAGE"] = "dev"
    prepare_store()
    demo = seed_demo("http://127.0.0.1:8000")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["BENCH_PARTNER_KEY"] = demo["partners"][0]["api_key"]
    env["PYTHONPATH"] = str(ROOT)
    env["PYTHONDONTWRITEBYTECODE"] = "0"
    return moto, env


def measure(reps: int) -> dict[str, list[float]]:
    moto, env = start_store()
    try:
        for name in CHILDREN:  # warm the OS file cache and .pyc files once, unmeasured
            run_child(name, env)
        samples: dict[str, list[float]] = {name: [] for name in CHILDREN}
        for _ in range(reps):  # interleaved, so drift hits every variant alike
            for name in CHILDREN:
                samples[name].append(run_child(name, env))
        return samples
    finally:
        moto.stop()  # type: ignore[attr-defined]


def import_profile(top: int = 12) -> tuple[float, list[tuple[str, float]]]:
    """Total ``import app`` time and its self time summed by top-level package (``-X importtime``)."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", "import app"], cwd=ROOT,
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    per_package: dict[str, float] = {}
    total = 0.0
    for line in done.stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if not match:
            continue
        package = match.group(4).split(".")[0]
        per_package[package] = per_package.get(package, 0.0) + int(match.group(1)) / 1e6
        if package == "app" and len(match.group(3)) == 1:
            total = int(match.group(2)) / 1e6
    return total, sorted(per_package.items(), key=lambda kv: -kv[1])[:top]


def template_engine_cost(reps: int = 5) -> list[tuple[str, float]]:
    """Import (+ first render) cost of the notification templates vs. a template engine we did not adopt."""
    snippets = {
        "chalicelib.notify.render (string.Template)":
            "from chalicelib.notify.render import render; render('points_pending', 'ru', {'points': 5})",
        "jinja2 (not adopted)": "import jinja2; jinja2.Environment(autoescape=True).from_string('{{ x }}').render(x=1)",
    }
    out = []
    for label, code in snippets.items():
        timing = f"import time; t0 = time.perf_counter(); {code}; print(time.perf_counter() - t0)"
        runs = []
        for _ in range(reps):
            done = subprocess.run([sys.executable, "-c", timing], cwd=ROOT, capture_output=True, text=True,
                                  env={**os.environ, "PYTHONPATH": str(ROOT)})
            if done.returncode != 0:
                break
            runs.append(float(done.stdout.strip().splitlines()[-1]))
        if runs:
            out.append((label, statistics.median(runs)))
    return out


def _zip_facts(out: Path) -> tuple[int, list[tuple[str, int]], list[str], bool]:
    path = out / "deployment.zip"
    with zipfile.ZipFile(path) as archive:
        infos = archive.infolist()
    largest = sorted(((i.filename, i.compress_size) for i in infos), key=lambda kv: -kv[1])[:8]
    unexpected = sorted({i.filename.split("/")[0] for i in infos
                         if i.filename.split("/")[0] in {"infra", "bench", "tests", ".chalice", ".venv", "build"}})
    template = next(out.glob("sam.*")).read_text(encoding="utf-8")
    merged = "SarafanTable" in template and "APIHandler" in template
    return path.stat().st_size, largest, unexpected, merged


def package_zips() -> dict[str, tuple[int, list[tuple[str, int]], list[str], bool]]:
    """The slim bundle ``infra/dev.py package`` builds, and plain ``chalice package`` for comparison."""
    sys.path.insert(0, str(ROOT))
    from infra import package

    facts = {}
    with tempfile.TemporaryDirectory() as tmp:
        slim, plain = Path(tmp) / "slim", Path(tmp) / "plain"
        if package.package("dev", slim) != 0:
            raise SystemExit("infra/package.py failed")
        facts["slim (python3 infra/dev.py package)"] = _zip_facts(slim)
        if package.chalice(ROOT, "package", "--stage", "dev", str(plain)) == 0:
            facts["plain chalice package"] = _zip_facts(plain)
    return facts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=9, help="fresh processes per variant (default 9)")
    parser.add_argument("--skip-zip", action="store_true", help="do not run chalice package")
    args = parser.parse_args()

    samples = measure(args.reps)
    floor = statistics.median(samples["floor"])
    print(f"cold start, median of {args.reps} fresh processes (Python {sys.version.split()[0]}):")
    print(f"  floor  import boto3, chalice + 1 botocore client   {floor * 1000:7.1f} ms")
    ok = True
    for name, label in (("health", "import app + GET /health"), ("dynamodb", "import app + GET /v1/programs (DynamoDB)")):
        median = statistics.median(samples[name])
        ratio = median / floor
        ok &= ratio <= RATIO_TARGET
        verdict = "ok" if ratio <= RATIO_TARGET else f"MISSES ≤ {RATIO_TARGET}"
        print(f"  {label:<47} {median * 1000:7.1f} ms   ratio {ratio:.2f}  ({verdict})")
    total, packages = import_profile()
    print(f"\nimport app: {total * 1000:.1f} ms (-X importtime, one run); self time by top-level package:")
    for name, seconds in packages:
        print(f"  {name:<28} {seconds * 1000:7.1f} ms")

    print("\nnotification templates, import + first render (median of 5 fresh processes):")
    for label, seconds in template_engine_cost():
        print(f"  {label:<47} {seconds * 1000:7.1f} ms")

    if not args.skip_zip:
        for label, (size, largest, unexpected, merged) in package_zips().items():
            slim = label.startswith("slim")
            verdict = "ok" if size <= ZIP_TARGET else f"over {ZIP_TARGET:,}"
            print(f"\n{label}: deployment.zip {size:,} bytes ({verdict}); infra/resources.yaml merged: {merged}")
            for name, compressed in largest:
                print(f"  {compressed:>9,}  {name}")
            if unexpected:
                print(f"  UNEXPECTED in the zip: {unexpected}")
            if slim:
                ok &= size <= ZIP_TARGET and not unexpected and merged
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
