#!/usr/bin/env python3
"""Cold start and deployment size, measured (not a test). Run: ``.venv/bin/python bench/cold_start.py``.

Cold start = ``import app`` + the first request through the Lambda handler
(``app(event, context)`` with an API Gateway proxy event), in a fresh Python
process each time (median of ``--reps``), for:

* ``GET /health`` (no AWS call), and
* ``GET /v1/programs`` with a partner key (API key lookup + program read in
  DynamoDB), against a moto server this script runs (so the child process
  imports nothing of moto, as in Lambda), and
* the first signed ``order.paid`` webhook (a referred buyer's order: signature check,
  configuration reads, the pipeline's two batched reads and its transaction).

The floor is what any Python Lambda using Chalice and boto pays: ``import boto3,
chalice`` + creating one botocore client. The webhook is compared with the floor *plus
the same work*: the floor, one ``GetItem`` of the partner record (its secret), the HMAC
check and a replay of the exact DynamoDB requests a warm container makes for such an
order (recorded here through a botocore hook; the transaction replayed without its
conditions). Targets: ratio ≤ 1.25 against the floor for the API calls, ≤ 1.15 against
floor + the same work for the first webhook; deployment zip (``infra/package.py``) ≤ 4 MB
(docs/benchmarks.md says why not 1 MB any more).

Every child runs twice, interleaved:

* from this checkout, as tests do: the compiled code cache ``infra/package.py`` ships in the bundle is
  built in the project first (``chalicelib.domain.codecache``: dataclass methods and event validators;
  ``--no-codecache`` measures without it), and the unmeasured warm-up run writes ``.pyc`` files, which
  every later child reuses;
* **Lambda-like** (``--no-bundle`` skips it): the deployment zip ``infra/package.py`` builds (stage
  ``dev``, bytecode as ``--bytecode`` says, default what it ships), unpacked into a read-only directory
  put first on ``PYTHONPATH`` with ``PYTHONDONTWRITEBYTECODE=1``: the bundle's code (the app, PynamoDB,
  Chalice's runtime, fastjsonschema, phonenumbers, segno) loads only from what the zip ships, as on
  Lambda, where ``/var/task`` is read-only; boto3/botocore, which the Lambda runtime provides
  precompiled, keep this environment's ``.pyc`` files. The floors import ``chalice`` from the bundle too
  (a Chalice app ships Chalice). It also counts, with an audit hook, the bundle's sources ``import app``
  compiles (``--bytecode none``: every module it imports from the bundle).

Each figure is printed as wall time and as the child's CPU time over the same span (on a loaded shared
machine the CPU figures move less; the verdicts use wall time).
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
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RATIO_TARGET = 1.25
WEBHOOK_RATIO_TARGET = 1.15
ZIP_TARGET = 4_000_000

_CONTEXT = """
class Context:
    function_name = "sarafan-bench"
    aws_request_id = "bench"
    memory_limit_in_mb = 512
    def get_remaining_time_in_millis(self):
        return 15000
"""

_EVENT = """
def event(path, key=None, method="GET", body=None, extra=None, resource=None, params=None):
    headers = {"Host": "bench.local", "Accept": "application/json", **(extra or {})}
    if key:
        headers["Authorization"] = "Bearer " + key
    resource = resource or path
    return {
        "resource": resource, "path": path, "httpMethod": method, "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": None, "multiValueQueryStringParameters": None,
        "pathParameters": params, "stageVariables": None, "body": body, "isBase64Encoded": False,
        "requestContext": {"resourcePath": resource, "httpMethod": method, "path": "/dev" + path, "stage": "dev",
                           "requestId": "bench", "accountId": "123456789012", "apiId": "bench",
                           "identity": {"sourceIp": "127.0.0.1"}},
    }
"""

#: Each child prints one JSON line: {"seconds": ..., "status": ...}.
CHILDREN = {
    "floor": """
import time, json
t0, c0 = time.perf_counter(), time.process_time()
import boto3, chalice
boto3.session.Session().client("dynamodb")
print(json.dumps({"seconds": time.perf_counter() - t0, "cpu": time.process_time() - c0, "status": 0}))
""",
    "health": _CONTEXT + _EVENT + """
import time, json, sys, io
t0, c0 = time.perf_counter(), time.process_time()
from app import app
reply = app(event("/health"), Context())
seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
print(json.dumps({"seconds": seconds, "cpu": cpu, "status": reply["statusCode"]}), file=sys.__stderr__)
""",
    "dynamodb": _CONTEXT + _EVENT + """
import time, json, sys, os
t0, c0 = time.perf_counter(), time.process_time()
from app import app
reply = app(event("/v1/programs", os.environ["BENCH_PARTNER_KEY"]), Context())
seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
print(json.dumps({"seconds": seconds, "cpu": cpu, "status": reply["statusCode"]}), file=sys.__stderr__)
""",
    "webhook": _CONTEXT + _EVENT + """
import time, json, sys, os
hook = json.loads(os.environ["BENCH_WEBHOOK"])
t0, c0 = time.perf_counter(), time.process_time()
from app import app
reply = app(event(hook["path"], method="POST", body=hook["body"], extra=hook["headers"],
                  resource="/v1/webhooks/{partner_id}/events", params={"partner_id": hook["partner_id"]}), Context())
seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
ok = reply["statusCode"] == 200 and json.loads(reply["body"]).get("status") == "processed"
print(json.dumps({"seconds": seconds, "cpu": cpu, "status": 200 if ok else reply["statusCode"],
                  "body": reply["body"][:300]}), file=sys.__stderr__)
""",
    "floor_work": """
import time, json, os
hook = json.loads(os.environ["BENCH_WEBHOOK"])
calls = json.load(open(os.environ["BENCH_REPLAY"]))
t0, c0 = time.perf_counter(), time.process_time()
import base64, hashlib, hmac
import boto3, chalice
client = boto3.session.Session().client("dynamodb")
client.get_item(**hook["partner_get"])
signed = (hook["headers"]["webhook-id"] + "." + hook["headers"]["webhook-timestamp"] + "." + hook["body"]).encode()
digest = hmac.new(bytes.fromhex(hook["secret_hex"]), signed, hashlib.sha256).digest()
assert hmac.compare_digest("v1," + base64.b64encode(digest).decode(), hook["headers"]["webhook-signature"])
json.loads(hook["body"])
for name, params in calls:
    getattr(client, name)(**params)
print(json.dumps({"seconds": time.perf_counter() - t0, "cpu": time.process_time() - c0, "status": 0}))
""",
}
#: Children whose result is printed on stdout (they import no app code).
STDOUT_CHILDREN = {"floor", "floor_work"}


def run_child(name: str, env: dict[str, str], cwd: Path = ROOT) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the child) from ``import`` to the reply."""
    done = subprocess.run([sys.executable, "-c", CHILDREN[name]], cwd=cwd, env=env, capture_output=True, text=True)
    # The app logs to stdout; the app children report on stderr, the floors on stdout.
    lines = (done.stderr if name not in STDOUT_CHILDREN else done.stdout).strip().splitlines()
    try:
        result = json.loads(lines[-1])
    except (IndexError, ValueError):
        raise SystemExit(f"{name} child failed:\n{done.stdout}\n{done.stderr}") from None
    if result["status"] not in (0, 200):
        raise SystemExit(f"{name} child got HTTP {result['status']}:\n{done.stdout}\n{done.stderr}")
    return float(result["seconds"]), float(result["cpu"])


def start_store() -> tuple[object, dict[str, str], dict[str, Any]]:
    """A moto server with the table and one program + partner; env for the children."""
    sys.path.insert(0, str(ROOT))
    from infra.local_run import EmbeddedMoto, configure_environment, free_port, prepare_store, seed_demo

    for name in [n for n in os.environ if n.startswith(("AWS_", "SARAFAN_"))]:
        del os.environ[name]
    moto = EmbeddedMoto("127.0.0.1", free_port())
    moto.start()
    configure_environment("moto", "http://127.0.0.1:8000")
    os.environ["AWS_ENDPOINT_URL"] = moto.endpoint  # the children reach moto over HTTP, as a Lambda would AWS
    os.environ["SARAFAN_STAGE"] = "dev"
    prepare_store()
    demo = seed_demo("http://127.0.0.1:8000")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["BENCH_PARTNER_KEY"] = demo["partners"][0]["api_key"]
    env["PYTHONPATH"] = str(ROOT)
    env["PYTHONDONTWRITEBYTECODE"] = "0"
    return moto, env, demo


class Webhooks:
    """Signed ``order.paid`` requests, one per child, by buyers referred by one member."""

    def __init__(self, demo: dict[str, Any], count: int, replay_path: Path) -> None:
        from chalice.test import Client

        from app import app
        from chalicelib.domain.webhook_signature import decode_secret, sign
        from chalicelib.store import keys

        self._sign, self._client = sign, Client(app)
        self.partner = demo["partners"][0]
        self.secret = self.partner["webhook_secrets"]["events"]
        self.secret_hex = decode_secret(self.secret).hex()
        from chalicelib.store.db import Entity

        pk, sk = keys.partner(demo["program_id"], self.partner["partner_id"])
        self.partner_get = {"TableName": Entity.Meta.table_name, "Key": {"PK": {"S": pk}, "SK": {"S": sk}}}
        self._seq = 0
        referrer = self.send(_signup("bench-referrer"))["member"]
        self.buyers = [f"bench-buyer-{i}" for i in range(count + 1)]
        for buyer in self.buyers:
            self.send(_signup(buyer, referrer["code"]))
        self._record(replay_path)

    def request(self, event: dict[str, Any]) -> dict[str, Any]:
        import time

        self._seq += 1
        body, msg_id, ts = json.dumps(event), f"msg_bench_{os.getpid()}_{self._seq}", int(time.time())
        headers = {"Content-Type": "application/json", "webhook-id": msg_id, "webhook-timestamp": str(ts),
                   "webhook-signature": self._sign(self.secret, msg_id, ts, body.encode())}
        return {"path": f"/v1/webhooks/{self.partner['partner_id']}/events", "partner_id": self.partner["partner_id"],
                "body": body, "headers": headers, "secret_hex": self.secret_hex, "partner_get": self.partner_get}

    def send(self, event: dict[str, Any]) -> dict[str, Any]:
        hook = self.request(event)
        reply = self._client.http.post(hook["path"], body=hook["body"], headers=hook["headers"])
        assert reply.status_code == 200, reply.body
        return json.loads(reply.body)  # type: ignore[no-any-return]

    def _record(self, path: Path) -> None:
        """The DynamoDB requests of a warm order.paid, for the floor to replay."""
        from chalicelib.store.db import raw_client

        recorded: list[tuple[str, dict[str, Any]]] = []

        def keep(params: Any = None, model: Any = None, **_: Any) -> None:
            # Binary attributes (compressed replies) as text of the same length: the replay sends as many bytes.
            recorded.append((_snake(model.name), json.loads(json.dumps(
                params, default=lambda o: o.decode("latin-1") if isinstance(o, bytes | bytearray) else str(o)))))

        raw_client().meta.events.register("before-parameter-build.dynamodb", keep)
        try:
            self.send(_order(self.buyers[0], "bench-recorded"))
        finally:
            raw_client().meta.events.unregister("before-parameter-build.dynamodb", keep)
        path.write_text(json.dumps([(name, _unconditional(params)) for name, params in recorded]), encoding="utf-8")

    def child_env(self, env: dict[str, str], i: int, replay: Path) -> dict[str, str]:
        hook = self.request(_order(self.buyers[1 + i % (len(self.buyers) - 1)], f"bench-{os.getpid()}-{self._seq}"))
        return {**env, "BENCH_WEBHOOK": json.dumps(hook), "BENCH_REPLAY": str(replay)}


def _signup(customer: str, code: str | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {"type": "member.signup", "occurred_at": "2026-01-10T10:00:00Z",
                             "object": {"type": "customer", "id": customer}, "customer": {"id": customer}}
    if code:
        event["referral"] = {"code": code}
    return event


def _order(customer: str, order_id: str) -> dict[str, Any]:
    return {"type": "order.paid", "occurred_at": "2026-01-15T10:00:00Z", "object": {"type": "order", "id": order_id},
            "customer": {"id": customer}, "order": {"total": 150_000, "currency": "RUB"}}


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _unconditional(params: dict[str, Any]) -> dict[str, Any]:
    """A transaction replayable any number of times: conditions (and condition checks) dropped."""
    if "TransactItems" not in params:
        return params
    items = []
    for op in params["TransactItems"]:
        (kind, spec), = op.items()
        if kind == "ConditionCheck":
            continue
        spec = {k: v for k, v in spec.items() if k not in ("ConditionExpression", "ReturnValuesOnConditionCheckFailure")}
        used = " ".join(str(spec.get(k, "")) for k in ("UpdateExpression",))
        for field in ("ExpressionAttributeNames", "ExpressionAttributeValues"):
            if field in spec:
                kept = {k: v for k, v in spec[field].items() if re.search(re.escape(k) + r"(?![A-Za-z0-9_])", used)}
                if kept:
                    spec[field] = kept
                else:
                    del spec[field]
        items.append({kind: spec})
    return {k: v for k, v in params.items() if k != "ClientRequestToken"} | {"TransactItems": items}


def build_codecache(env: dict[str, str]) -> None:
    """What ``infra/package.py`` ships in the bundle: the compiled dataclass methods and event validators
    (``chalicelib.domain.codecache``), written next to the sources as the warm-up writes ``.pyc`` files."""
    subprocess.run([sys.executable, "-c", "from chalicelib.domain import codecache; codecache.main()"], cwd=ROOT,
                   env=env, check=True, stdout=subprocess.DEVNULL)


def count_instructions(name: str, env: dict[str, str], cwd: Path = ROOT) -> tuple[int, int]:
    """(instructions the child executes, those before the interpreter's teardown): one run under valgrind's
    callgrind (no cache simulation), a load-independent figure. The second leaves out ``Py_FinalizeEx`` (freeing
    every module and object at exit), which a Lambda container never runs for its cold start and wall time
    never measured; the first is the whole process, as this benchmark always counted it."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        done = subprocess.run(["valgrind", "--tool=callgrind", "--dump-before=Py_FinalizeEx", "--dump-line=no",
                               "--dump-instr=no", f"--callgrind-out-file={out}", sys.executable, "-c", CHILDREN[name]],
                              cwd=cwd, env={**env, "PYTHONHASHSEED": "0"}, capture_output=True, text=True)
        match = re.search(r"Collected\s*:\s*(\d+)", done.stderr)
        if match is None or done.returncode != 0:
            raise SystemExit(f"{name} under valgrind failed:\n{done.stderr[-2000:]}")
        before_exit = 0
        for dump in Path(tmp).glob("callgrind.out.*"):  # the dump taken when Py_FinalizeEx is entered
            summary = re.search(r"^summary:\s*(\d+)", dump.read_text(encoding="utf-8", errors="replace"), re.M)
            before_exit += int(summary.group(1)) if summary else 0
        total = int(match.group(1))
        return total, before_exit or total


class Bundle:
    """The deployment zip unpacked as Lambda does: a read-only directory first on ``sys.path``, no bytecode
    written (``PYTHONDONTWRITEBYTECODE``), so the bundle's code loads from what the zip ships (its ``.pyc``
    files, or its sources compiled on every start) while boto3/botocore, which the Lambda runtime provides
    precompiled, load from this environment's cached ``.pyc`` files."""

    def __init__(self, zip_path: Path, root: Path) -> None:
        self.root = root
        with zipfile.ZipFile(zip_path) as archive:
            archive.extractall(root)
        for path in [root, *root.rglob("*")]:
            path.chmod(0o555 if path.is_dir() else 0o444)

    def env(self, env: dict[str, str]) -> dict[str, str]:
        return {**env, "PYTHONPATH": str(self.root), "PYTHONDONTWRITEBYTECODE": "1"}

    def writable(self) -> None:
        for path in [self.root, *self.root.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)


#: Counts, in one child, what ``import app`` + the first webhook compiled from the bundle's sources.
COMPILED = """
import sys, os
root = os.path.realpath(sys.argv[1]) + os.sep
compiled = []
def audit(event, args):
    if event == "compile" and isinstance(args[1], str) and os.path.isabs(args[1]) and os.path.realpath(args[1]).startswith(root):
        compiled.append(args[1])
sys.addaudithook(audit)
import app
loaded = [m for m in list(sys.modules.values()) if os.path.realpath(getattr(m, "__file__", None) or "/").startswith(root)]
print(len(compiled), len(loaded))
"""


def compiled_at_start(bundle: Bundle, env: dict[str, str]) -> tuple[int, int]:
    """(bundle modules compiled from source by ``import app``, bundle modules imported): counts, not times."""
    done = subprocess.run([sys.executable, "-c", COMPILED, str(bundle.root)], cwd=bundle.root, env=bundle.env(env),
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"import app from the bundle failed:\n{done.stderr[-2000:]}")
    compiled, loaded = done.stdout.split()[-2:]
    return int(compiled), int(loaded)


Samples = dict[str, list[tuple[float, float]]]


def measure(reps: int, codecache: bool = True, instructions: bool = False, bundle_zip: Path | None = None
            ) -> dict[str, tuple[Samples, dict[str, tuple[int, int]], tuple[int, int] | None]]:
    """Per variant (``"tree"``: this checkout with its cached ``.pyc``; ``"bundle"``: ``bundle_zip``
    unpacked as Lambda runs it): the samples, the instruction counts, and the compile counts."""
    moto, env, demo = start_store()
    bundle = None
    try:
        with tempfile.TemporaryDirectory() as tmp:
            replay = Path(tmp) / "replay.json"
            hooks = Webhooks(demo, 2 * reps + 2, replay)
            if codecache:
                build_codecache(env)
            else:
                from chalicelib.domain.codecache import CACHE_FILE

                CACHE_FILE.unlink(missing_ok=True)
            variants: dict[str, tuple[dict[str, str], Path]] = {"tree": (env, ROOT)}
            if bundle_zip is not None:
                bundle = Bundle(bundle_zip, Path(tmp) / "task")
                variants["bundle"] = (bundle.env(env), bundle.root)
            for name in CHILDREN:  # warm the OS file cache and the tree's .pyc files once, unmeasured
                for child_env, cwd in variants.values():
                    run_child(name, hooks.child_env(child_env, 0, replay), cwd)
            samples: dict[str, Samples] = {v: {name: [] for name in CHILDREN} for v in variants}
            for i in range(reps):  # interleaved, so drift hits every variant alike
                for name in CHILDREN:
                    for variant, (child_env, cwd) in variants.items():
                        samples[variant][name].append(run_child(name, hooks.child_env(child_env, i + 1, replay), cwd))
            out: dict[str, tuple[Samples, dict[str, tuple[int, int]], tuple[int, int] | None]] = {}
            for variant, (child_env, cwd) in variants.items():
                counts = {name: count_instructions(name, hooks.child_env(child_env, reps + 1 + n, replay), cwd)
                          for n, name in enumerate(CHILDREN)} if instructions else {}
                out[variant] = (samples[variant], counts,
                                compiled_at_start(bundle, env) if bundle and variant == "bundle" else None)
            if bundle:
                bundle.writable()
            return out
    finally:
        if bundle and bundle.root.exists():
            bundle.writable()
        moto.stop()  # type: ignore[attr-defined]


def import_profile(top: int = 12, path: Path = ROOT) -> tuple[float, list[tuple[str, float]]]:
    """Total ``import app`` time and its self time summed by top-level package (``-X importtime``)."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", "import app"], cwd=path, capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(path), "PYTHONDONTWRITEBYTECODE": "1"})
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


def build_package(out: Path, bytecode: str) -> Path:
    """The slim bundle ``python3 infra/dev.py package`` builds (stage dev), with ``bytecode`` as it ships it."""
    sys.path.insert(0, str(ROOT))
    from infra import package

    settings = {"SARAFAN_OPERATOR_KEY_SHA256": "0" * 64, "SARAFAN_DEFAULT_LANDING_URL": "https://bench.example/"}
    if package.package("dev", out, overrides=settings, build=out.parent / "build", bytecode=bytecode) != 0:
        raise SystemExit("infra/package.py failed")
    return out


def package_zips(slim: Path) -> dict[str, tuple[int, list[tuple[str, int]], list[str], bool]]:
    """The slim bundle, and plain ``chalice package`` for comparison."""
    from infra import package

    facts = {"slim (python3 infra/dev.py package)": _zip_facts(slim)}
    plain = slim.parent / "plain"
    if package.chalice(ROOT, "package", "--stage", "dev", str(plain)) == 0:
        facts["plain chalice package"] = _zip_facts(plain)
    return facts


def report(title: str, samples: Samples, counts: dict[str, tuple[int, int]], compiled: tuple[int, int] | None
           ) -> bool:
    """Print one variant's table; whether it meets the targets."""
    wall = {name: statistics.median(v[0] for v in runs) for name, runs in samples.items()}
    cpu = {name: statistics.median(v[1] for v in runs) for name, runs in samples.items()}
    floor = wall["floor"]
    print(f"\n{title}")
    print(f"  {'':<47} {'wall':>9}  {'ratio':>5}   {'CPU':>9}  {'ratio':>5}")
    print(f"  {'floor  import boto3, chalice + 1 botocore client':<47} {floor * 1000:7.1f} ms  {1:5.2f}   "
          f"{cpu['floor'] * 1000:7.1f} ms  {1:5.2f}")
    ok = True
    for name, label in (("health", "import app + GET /health"), ("dynamodb", "import app + GET /v1/programs (DynamoDB)")):
        ratio = wall[name] / floor
        ok &= ratio <= RATIO_TARGET
        verdict = "ok" if ratio <= RATIO_TARGET else f"MISSES ≤ {RATIO_TARGET}"
        print(f"  {label:<47} {wall[name] * 1000:7.1f} ms  {ratio:5.2f}   {cpu[name] * 1000:7.1f} ms  "
              f"{cpu[name] / cpu['floor']:5.2f}  ({verdict})")
    work, hook = wall["floor_work"], wall["webhook"]
    print(f"  {'floor + same work':<47} {work * 1000:7.1f} ms  {1:5.2f}   {cpu['floor_work'] * 1000:7.1f} ms  {1:5.2f}"
          "   (GetItem partner, HMAC, the warm order's calls replayed)")
    ratio, cpu_ratio = hook / work, cpu["webhook"] / cpu["floor_work"]
    ok &= ratio <= WEBHOOK_RATIO_TARGET
    verdict = "ok" if ratio <= WEBHOOK_RATIO_TARGET else f"MISSES ≤ {WEBHOOK_RATIO_TARGET}"
    print(f"  {'import app + first signed order.paid webhook':<47} {hook * 1000:7.1f} ms  {ratio:5.2f}   "
          f"{cpu['webhook'] * 1000:7.1f} ms  {cpu_ratio:5.2f}  (first-webhook ratio against floor + same work: "
          f"{verdict})")
    print(f"  the app's own cost on top of that work: {(hook - work) * 1000:+.1f} ms wall, "
          f"{(cpu['webhook'] - cpu['floor_work']) * 1000:+.1f} ms CPU")
    if compiled is not None:
        print(f"  bundle modules compiled from source by `import app`: {compiled[0]} of {compiled[1]} imported "
              "from the bundle (audit-hook count)")
    if counts:
        print("  instructions executed, one run each under valgrind (the same on a loaded machine); whole process, and"
              " without the interpreter's teardown at exit (Py_FinalizeEx: no Lambda cold start runs it):")
        for name, base in (("floor", "floor"), ("health", "floor"), ("dynamodb", "floor"), ("floor_work", "floor_work"),
                           ("webhook", "floor_work")):
            (whole, live), (base_whole, base_live) = counts[name], counts[base]
            print(f"    {name:<11} {whole / 1e6:9.1f} M   ratio {whole / base_whole:.2f} against {base:<10}   "
                  f"without teardown {live / 1e6:9.1f} M   ratio {live / base_live:.2f}")
    return ok


def main() -> int:
    sys.path.insert(0, str(ROOT))
    from infra.package import BYTECODE, BYTECODE_MODES

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=9, help="fresh processes per variant (default 9)")
    parser.add_argument("--skip-zip", action="store_true", help="do not run plain chalice package for comparison")
    parser.add_argument("--no-bundle", action="store_true",
                        help="measure this checkout only, not the unpacked deployment zip (Lambda-like)")
    parser.add_argument("--bytecode", choices=BYTECODE_MODES, default=BYTECODE,
                        help=f"how the measured zip ships bytecode (infra/package.py; default {BYTECODE})")
    parser.add_argument("--instructions", action="store_true",
                        help="also count each child's instructions once under valgrind (load-independent)")
    parser.add_argument("--no-codecache", action="store_true",
                        help="measure the checkout without chalicelib.domain.codecache's compiled code (deletes the built file)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        slim = None if args.no_bundle and args.skip_zip else build_package(Path(tmp) / "slim", args.bytecode)
        bundle_zip = None if args.no_bundle or slim is None else slim / "deployment.zip"
        results = measure(args.reps, codecache=not args.no_codecache, instructions=args.instructions,
                          bundle_zip=bundle_zip)
        load = os.getloadavg()[0]
        print(f"cold start, median of {args.reps} fresh processes (Python {sys.version.split()[0]}, load average "
              f"{load:.1f} on {os.cpu_count()} CPUs; CPU = the child's process time over the same span: it leaves out"
              " waiting for the DynamoDB server and for a loaded machine's other processes; the verdicts use wall time)")
        ok = report("this checkout, its cached .pyc files (codecache "
                    f"{'off' if args.no_codecache else 'built'}):", *results["tree"])
        if "bundle" in results:
            size = bundle_zip.stat().st_size if bundle_zip else 0
            ok &= report(f"Lambda-like: the deployment zip ({size:,} bytes, bytecode {args.bytecode!r}) unpacked "
                         "read-only, no .pyc written; boto3/botocore precompiled as the runtime ships them:",
                         *results["bundle"])

        profiles = [("checkout", ROOT)] + ([("bundle", Path(tmp) / "profile")] if bundle_zip else [])
        for label, path in profiles:
            unpacked = Bundle(bundle_zip, path) if label == "bundle" and bundle_zip else None
            total, packages = import_profile(path=path)
            print(f"\nimport app from the {label}: {total * 1000:.1f} ms (-X importtime, one run); "
                  "self time by top-level package:")
            for name, seconds in packages:
                print(f"  {name:<28} {seconds * 1000:7.1f} ms")
            if unpacked:
                unpacked.writable()

        print("\nnotification templates, import + first render (median of 5 fresh processes):")
        for label, seconds in template_engine_cost():
            print(f"  {label:<47} {seconds * 1000:7.1f} ms")

        if slim is not None and not args.skip_zip:
            for label, (size, largest, unexpected, merged) in package_zips(slim).items():
                is_slim = label.startswith("slim")
                verdict = "ok" if size <= ZIP_TARGET else f"over {ZIP_TARGET:,}"
                print(f"\n{label}: deployment.zip {size:,} bytes ({verdict}); infra/resources.yaml merged: {merged}")
                for name, compressed in largest:
                    print(f"  {compressed:>9,}  {name}")
                if unexpected:
                    print(f"  UNEXPECTED in the zip: {unexpected}")
                if is_slim:
                    ok &= size <= ZIP_TARGET and not unexpected and merged
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
