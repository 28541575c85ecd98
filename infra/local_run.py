#!/usr/bin/env python3
"""``python3 infra/dev.py run``: Sarafan on this machine, in one process.

Runs inside ``.venv`` (``infra/dev.py`` creates it and execs this file):

1. AWS: an embedded moto server (DynamoDB, SNS, SES...) on a free loopback port
   (5001 unless busy; ``--moto-port``), with dummy credentials. If you set
   ``AWS_ENDPOINT_URL`` (or ``AWS_ENDPOINT_URL_DYNAMODB``...) the same code talks
   to that endpoint instead (DynamoDB Local, LocalStack) and no moto is started;
   ``SARAFAN_LOCAL_AWS=aws`` uses real AWS with your credentials (explicit opt-in,
   so credentials lying around in a shell never create tables by accident).
2. The table (``chalicelib.store.tables.create_table``), the SES sender identity,
   and a demo program with two partners, created through the service layer.
3. The Chalice app on http://127.0.0.1:8000 (Chalice's threaded local server),
   plus a thread driving the app's event sources (``@app.schedule``...; see
   ``infra/local_events.py``), as EventBridge would in AWS.

It prints the URLs and keys (and with ``--ready-file`` writes them as JSON once
the API answers). Ctrl-C or SIGTERM stops everything it started.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import json
import logging
import os
import secrets
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DEMO_PROGRAM = "Демо-коалиция"
DEMO_PARTNERS = ("Кофейня Зерно", "FitLab")
DEFAULT_MOTO_PORT = 5001
DEFAULT_REGION = "eu-central-1"
DUMMY_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"}
CREDENTIAL_VARS = ("AWS_ACCESS_KEY_ID", "AWS_PROFILE", "AWS_WEB_IDENTITY_TOKEN_FILE",
                   "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")


def say(message: str = "") -> None:
    print(message, flush=True)


# --- ports -------------------------------------------------------------------------


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


# --- AWS target --------------------------------------------------------------------


def choose_aws_mode(environ: dict[str, str] | os._Environ[str]) -> str:
    """``moto`` (default), ``endpoint`` (AWS_ENDPOINT_URL* set) or ``aws`` (explicit opt-in)."""
    forced = environ.get("SARAFAN_LOCAL_AWS", "").strip().lower()
    if forced in {"moto", "aws", "endpoint"}:
        return forced
    if forced:
        raise SystemExit(f"SARAFAN_LOCAL_AWS must be moto, endpoint or aws (got {forced!r})")
    if any(name.startswith("AWS_ENDPOINT_URL") and value for name, value in environ.items()):
        return "endpoint"
    return "moto"


class EmbeddedMoto:
    """moto's ThreadedMotoServer, failing loudly (instead of hanging) if it cannot bind."""

    def __init__(self, host: str, port: int) -> None:
        from moto.server import ThreadedMotoServer

        self.host, self.port = host, port
        self._server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
        self._error: BaseException | None = None
        original_entry = self._server._server_entry

        def entry() -> None:
            try:
                original_entry()
            except BaseException as exc:  # surfaced by start()
                self._error = exc
                self._server._server_ready_event.set()

        self._server._server_entry = entry  # type: ignore[method-assign]

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per AWS call
        self._server.start()
        if self._error is not None:
            raise RuntimeError(f"moto server could not start on {self.host}:{self.port}: {self._error}")
        self.port = self._server.get_host_and_port()[1]

    def stop(self) -> None:
        server = self._server._server
        self._server.stop()
        if server is not None:
            server.server_close()  # ThreadedMotoServer.stop() leaves the socket bound


def configure_environment(mode: str, base_url: str, moto_endpoint: str | None) -> str:
    """Set what the app reads from the environment; return a fresh operator key."""
    env = os.environ
    if mode == "moto":
        assert moto_endpoint is not None
        env["AWS_ENDPOINT_URL"] = moto_endpoint
        for name in (*CREDENTIAL_VARS, "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
            env.pop(name, None)
        env.update(DUMMY_CREDENTIALS)
    elif mode == "endpoint" and not any(env.get(name) for name in CREDENTIAL_VARS):
        env.update(DUMMY_CREDENTIALS)  # DynamoDB Local / LocalStack accept any credentials
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or DEFAULT_REGION
    env["AWS_REGION"] = env["AWS_DEFAULT_REGION"] = region
    env.setdefault("SARAFAN_STAGE", "local")
    env.setdefault("SARAFAN_TABLE", "sarafan-local")
    env.setdefault("SARAFAN_PUBLIC_BASE_URL", base_url)
    env.setdefault("SARAFAN_SES_SENDER", "no-reply@sarafan.local")
    if not env.get("SARAFAN_SECRET_KEY") and not env.get("SARAFAN_SECRET_KEY_PARAMETER"):
        env["SARAFAN_SECRET_KEY"] = secrets.token_urlsafe(32)  # webhook secrets change every run
    operator_key = "srf_op_" + secrets.token_urlsafe(32)
    digest = hashlib.sha256(operator_key.encode()).hexdigest()
    existing = [h for h in env.get("SARAFAN_OPERATOR_KEY_SHA256", "").split(",") if h.strip()]
    env["SARAFAN_OPERATOR_KEY_SHA256"] = ",".join([*existing, digest])
    _reset_app_caches()
    return operator_key


def _reset_app_caches() -> None:
    from chalicelib import aws, config
    from chalicelib.store import db

    config.reset_settings()
    aws.reset_clients()
    db.reset()


def prepare_store() -> list[str]:
    """Create the table and verify the SES sender; return warnings (never fatal)."""
    from chalicelib import aws
    from chalicelib.config import get_settings
    from chalicelib.store.tables import create_table

    create_table()
    warnings = []
    try:
        aws.client("ses").verify_email_identity(EmailAddress=get_settings().ses_sender)
    except Exception as exc:  # DynamoDB Local has no SES; email sending will fail, the API still runs
        warnings.append(f"SES sender {get_settings().ses_sender} not verified: {type(exc).__name__}: {exc}")
    return warnings


# --- demo data ------------------------------------------------------------------------


#: The demo's rules: cashback, a double-sided "bring a friend" reward and a second level.
#: No holding period, so a demo order shows available points at once.
DEMO_RULES: dict[str, Any] = {
    "max_depth": 2,
    "hold_days": 0,
    "rules": [
        {"id": "cashback", "name": "5% cashback", "trigger": {"event": "order.paid"},
         "recipient": {"type": "self"}, "amount": {"rate_bp": 500, "max_points": 5000}},
        {"id": "bring-a-friend", "name": "Bring a friend", "trigger": {"event": "order.paid", "order": "first"},
         "recipient": {"type": "referrer", "level": 1}, "amount": {"points": 500}},
        {"id": "friend-welcome", "name": "Welcome bonus", "trigger": {"event": "order.paid", "order": "first"},
         "recipient": {"type": "friend"}, "amount": {"points": 300}},
        {"id": "level-2", "name": "Friend of a friend", "trigger": {"event": "order.paid", "order": "first"},
         "recipient": {"type": "referrer", "level": 2}, "amount": {"points": 100}},
    ],
}


def seed_demo(base_url: str) -> dict[str, Any]:
    """The demo program and its partners, through the service layer (as the admin API does).

    Against a persistent store (DynamoDB Local, AWS) an existing demo is reused and
    its partners get fresh keys; its publishable key cannot be shown again.
    """
    from chalicelib.services import programs, rules
    from chalicelib.services import secrets as webhook_secrets
    from chalicelib.services.auth import Principal

    operator = Principal(kind="operator")
    listed = programs.list_programs(operator, 100, None)["items"]
    existing = next((p for p in listed if p["name"] == DEMO_PROGRAM), None)
    if existing is None:
        origins = sorted({base_url, base_url.replace("127.0.0.1", "localhost")})
        program = programs.create_program(
            operator, {"name": DEMO_PROGRAM, "points_unit": "баллы", "allowed_origins": origins}
        )
        partners = [programs.create_partner(operator, program["program_id"], {"name": n}) for n in DEMO_PARTNERS]
        rules.put_rules(operator, program["program_id"], DEMO_RULES)
        return {
            "program_id": program["program_id"],
            "name": program["name"],
            "publishable_key": program["publishable_key"],
            "partners": [
                {"partner_id": p["partner_id"], "name": p["name"], "api_key": p["api_key"],
                 "webhook_secrets": p["webhook_secrets"]}
                for p in partners
            ],
        }
    program_id = existing["program_id"]
    partners = []
    for partner in programs.list_partners(operator, program_id)["items"]:
        key = programs.create_partner_key(operator, program_id, partner["partner_id"])["api_key"]
        current = {
            source: webhook_secrets.derive_secret(program_id, partner["partner_id"], source,
                                                  max(v["version"] for v in versions))
            for source, versions in partner["webhook_sources"].items() if versions
        }
        partners.append({"partner_id": partner["partner_id"], "name": partner["name"], "api_key": key,
                         "webhook_secrets": current})
    return {"program_id": program_id, "name": existing["name"], "publishable_key": None, "partners": partners}


# --- HTTP ------------------------------------------------------------------------------


def chalice_config(app: Any) -> Any:
    from chalice.config import Config

    config_file = ROOT / ".chalice" / "config.json"
    from_disk = json.loads(config_file.read_text(encoding="utf-8")) if config_file.exists() else {}
    return Config.create(chalice_stage="dev", app_name="sarafan", project_dir=str(ROOT),
                         config_from_disk=from_disk, chalice_app=app)


_dispatch_lock = threading.Lock()


def serialize_dispatch() -> None:
    """Run one request at a time through the app, as one Lambda container does.

    Chalice keeps ``app.current_request`` in a single attribute shared by all threads,
    so two requests handled at once by the threaded local server could read each
    other's request. Connections are still accepted concurrently; only dispatch is serial.
    """
    from chalice.local import LocalGateway

    if getattr(LocalGateway.handle_request, "_sarafan_serialized", False):
        return
    original = LocalGateway.handle_request

    def handle_request(self: Any, *args: Any, **kwargs: Any) -> Any:
        with _dispatch_lock:
            return original(self, *args, **kwargs)

    handle_request._sarafan_serialized = True  # type: ignore[attr-defined]
    LocalGateway.handle_request = handle_request  # type: ignore[method-assign]


def _handler_class() -> Any:
    """Chalice's request handler, answering methods it does not know (TRACE, CONNECT, PROPFIND...)
    with a JSON 405 as API Gateway answers with a 4xx, instead of BaseHTTPServer's HTML 501."""
    from chalice.local import ChaliceRequestHandler

    class Handler(ChaliceRequestHandler):  # type: ignore[misc]
        def __getattr__(self, name: str) -> Any:
            if name.startswith("do_"):
                return self._unsupported_method
            raise AttributeError(name)

        def _unsupported_method(self) -> None:
            self._parse_payload()  # drain the body so the connection stays usable
            body = json.dumps({"error": {"code": "method_not_allowed", "message": "Method not allowed",
                                         "details": {}}}).encode()
            self._send_http_response(405, {"Content-Type": "application/json"}, body)

    return Handler


def start_http(app: Any, host: str, port: int) -> tuple[Any, threading.Thread]:
    from chalice.deploy.validate import validate_routes
    from chalice.local import create_local_server

    validate_routes(app.routes)  # what `chalice deploy` would refuse, refuse here too
    serialize_dispatch()
    server = create_local_server(app, chalice_config(app), host, port)
    server.server.RequestHandlerClass = functools.partial(  # type: ignore[assignment]
        _handler_class(), app_object=app, config=chalice_config(app))
    thread = threading.Thread(target=server.server.serve_forever, name="sarafan-http", daemon=True)
    thread.start()
    return server, thread


def wait_until_healthy(base_url: str, timeout: float = 10.0) -> None:
    import time
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{base_url}/health", timeout=2) as reply:
                if reply.status == 200:
                    return
        except OSError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.05)


# --- output -------------------------------------------------------------------------------


def banner(info: dict[str, Any]) -> str:
    base, op, demo = info["base_url"], info["operator_key"], info["demo"]
    aws_line = {
        "moto": f"embedded moto server at {info['aws_endpoint']} (in-memory; gone when you stop)",
        "endpoint": f"your endpoint {info['aws_endpoint']} (AWS_ENDPOINT_URL)",
        "aws": f"real AWS, region {info['region']} (SARAFAN_LOCAL_AWS=aws)",
    }[info["aws_mode"]]
    lines = [
        "",
        "Sarafan is running",
        f"  API            {base}",
        f"  AWS            {aws_line}",
        f"  table          {info['table']}",
        f"  operator key   {op}",
        "",
        f"Demo program «{demo['name']}»  {demo['program_id']}",
        f"  publishable key  {demo['publishable_key'] or '(issued when the demo was first created)'}",
    ]
    for partner in demo["partners"]:
        lines.append(f"  partner «{partner['name']}»  {partner['partner_id']}")
        lines.append(f"    api key          {partner['api_key']}")
        for source, secret in partner["webhook_secrets"].items():
            lines.append(f"    webhook secret   {source}: {secret}")
    first = demo["partners"][0] if demo["partners"] else None
    lines += [
        "",
        "Try:",
        f"  curl -s {base}/health",
        f"  curl -s -H 'Authorization: Bearer {op}' {base}/v1/programs",
    ]
    if first:
        lines.append(f"  curl -s -H 'Authorization: Bearer {first['api_key']}' {base}/v1/programs   # its own program only")
    lines += [
        f"  curl -s -X POST -H 'Authorization: Bearer {op}' -H 'Content-Type: application/json' \\",
        f"       -d '{{\"name\": \"My program\"}}' {base}/v1/programs",
        f"  curl -s {base}/openapi.json",
    ]
    if info["aws_mode"] == "moto":
        lines.append(f"  aws --endpoint-url {info['aws_endpoint']} dynamodb scan --table-name {info['table']}"
                     "   # any AWS tool works against moto")
    if info["schedules"]:
        lines += ["", "Event sources:", *(f"  {s}" for s in info["schedules"])]
    for warning in info["warnings"]:
        lines.append(f"warning: {warning}")
    lines += ["", "Ctrl-C stops everything.", ""]
    return "\n".join(lines)


def write_ready_file(path: Path, info: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(info, ensure_ascii=False, indent=2), encoding="utf-8")
    tmp.replace(path)


# --- main -----------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python3 infra/dev.py run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="interface for the API (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="API port (default 8000)")
    parser.add_argument("--moto-port", type=int, default=int(os.environ.get("SARAFAN_MOTO_PORT", DEFAULT_MOTO_PORT)),
                        help="embedded moto port (default 5001, or a free one if taken; 0 = any free port)")
    parser.add_argument("--ready-file", type=Path, help="write URLs and keys as JSON here once the API answers")
    parser.add_argument("--no-seed", action="store_true", help="do not create the demo program")
    parser.add_argument("--no-schedules", action="store_true", help="do not run @app.schedule handlers")
    parser.add_argument("--quiet", action="store_true", help="print no banner (use with --ready-file)")
    return parser.parse_args(argv)


@contextlib.contextmanager
def stop_signals() -> Iterator[threading.Event]:
    """An event set by SIGINT/SIGTERM (restoring the previous handlers afterwards)."""
    stop = threading.Event()
    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, lambda *_: stop.set())
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    mode = choose_aws_mode(os.environ)
    base_url = f"http://{args.host}:{args.port}"
    with stop_signals() as stop, contextlib.ExitStack() as cleanup:
        moto = None
        if mode == "moto":
            port = args.moto_port if args.moto_port and port_is_free("127.0.0.1", args.moto_port) else 0
            moto = EmbeddedMoto("127.0.0.1", port)
            moto.start()
            cleanup.callback(moto.stop)
        operator_key = configure_environment(mode, base_url, moto.endpoint if moto else None)
        warnings = prepare_store()
        demo = None if args.no_seed else seed_demo(base_url)

        from app import app
        from chalicelib.config import get_settings
        from infra.local_events import EventSourceRunner

        try:
            server, _thread = start_http(app, args.host, args.port)
        except OSError as exc:
            say(f"cannot listen on {args.host}:{args.port} ({exc.strerror}); pick another with --port")
            return 1
        cleanup.callback(server.server.server_close)
        cleanup.callback(server.shutdown)

        speedup = float(os.environ.get("SARAFAN_LOCAL_SCHEDULE_SPEEDUP", "1") or 1)
        runner = EventSourceRunner(app, region=get_settings().region, speedup=speedup, log=say)
        if not args.no_schedules:
            runner.start()
            cleanup.callback(runner.stop)
        wait_until_healthy(base_url)

        info = {
            "pid": os.getpid(),
            "base_url": base_url,
            "openapi_url": f"{base_url}/openapi.json",
            "operator_key": operator_key,
            "aws_mode": mode,
            "aws_endpoint": moto.endpoint if moto else os.environ.get("AWS_ENDPOINT_URL"),
            "moto_port": moto.port if moto else None,
            "region": get_settings().region,
            "table": get_settings().table_name,
            "demo": demo,
            "schedules": [] if args.no_schedules else runner.describe(),
            "warnings": warnings,
        }
        if args.ready_file:
            write_ready_file(args.ready_file, info)
            cleanup.callback(lambda: args.ready_file.unlink(missing_ok=True))
        if not args.quiet:
            say(banner(info) if demo else f"Sarafan is running on {base_url}; operator key {operator_key}")
        while not stop.wait(0.5):
            if not _thread.is_alive():
                say("HTTP server stopped unexpectedly")
                return 1
        say("stopping…")
    say("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
