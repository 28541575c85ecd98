#!/usr/bin/env python3
"""``python3 infra/dev.py run``: Sarafan on this machine, in one process.

Runs inside ``.venv`` (``infra/dev.py`` creates it and execs this file):

1. AWS: moto, embedded. The app's own AWS calls go to it in-process (as in the test
   suite: no HTTP hop), and a moto server on a free loopback port (5001 unless busy;
   ``--moto-port``) serves the same state to any AWS tool. moto runs with the
   adjustments of ``infra/moto_tuning.py`` (bounded memory in a long run). If you set
   ``AWS_ENDPOINT_URL`` (or ``AWS_ENDPOINT_URL_DYNAMODB``...) the same code talks
   to that endpoint instead (DynamoDB Local, LocalStack) and no moto is started;
   ``SARAFAN_LOCAL_AWS=aws`` uses real AWS with your credentials (explicit opt-in,
   so credentials lying around in a shell never create tables by accident).
2. The table (``chalicelib.store.tables.create_table``), the SES sender identity,
   and a demo program with two partners, created through the service layer.
3. The Chalice app on http://127.0.0.1:8000 (Chalice's threaded local server; with the
   embedded moto in a child process, ``infra/local_http.py``, unless ``--http-in-main``),
   plus a thread driving the app's event sources (``@app.schedule``...; see
   ``infra/local_events.py``), as EventBridge would in AWS.

It prints the URLs and keys (and with ``--ready-file`` writes them as JSON once
the API answers). Ctrl-C or SIGTERM stops everything it started within
:data:`STOP_DEADLINE` seconds. ``--data DIR`` keeps moto's state and the keys across
restarts (``infra/local_state.py``).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
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
#: Seconds from Ctrl-C/SIGTERM to exit, under any load (the rest is cut short).
STOP_DEADLINE = 9.0
#: Listen backlog of the API socket: connections beyond the ones being served wait here.
LISTEN_BACKLOG = 1024
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
    """moto for the app (in-process, like the tests) and for AWS tools (a server on ``port``).

    ``mock_aws`` routes the app's botocore calls to moto's backends without HTTP; the
    ThreadedMotoServer serves the same backends over HTTP (``aws --endpoint-url``). It fails
    loudly (instead of hanging) if it cannot bind.
    """

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
        from moto import mock_aws

        from infra import moto_tuning

        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per AWS call
        self._mock = mock_aws()
        self._mock.start()
        moto_tuning.apply()
        self._server.start()
        if self._error is not None:
            raise RuntimeError(f"moto server could not start on {self.host}:{self.port}: {self._error}")
        self.port = self._server.get_host_and_port()[1]

    def stop(self) -> None:
        server = self._server._server
        self._server.stop()
        if server is not None:
            server.server_close()  # ThreadedMotoServer.stop() leaves the socket bound
        self._mock.stop()


#: Settings the run picks when unset; ``--data`` keeps them for the next start.
KEPT_SETTINGS = ("SARAFAN_SECRET_KEY",)


def configure_environment(mode: str, base_url: str, kept: dict[str, Any] | None = None) -> str:
    """Set what the app reads from the environment; return the operator key.

    ``kept`` is what a previous start saved in ``--data`` (``settings``, ``operator_key``):
    the same master secret (so the same webhook secrets) and operator key again.
    """
    env = os.environ
    kept = kept or {}
    for name, value in (kept.get("settings") or {}).items():
        if not env.get(name):
            env[name] = value
    if mode == "moto":
        env.pop("AWS_ENDPOINT_URL", None)  # the app reaches moto in-process
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
    # Partner webhooks may target http://127.0.0.1 and other local addresses here (never in AWS).
    env.setdefault("SARAFAN_WEBHOOK_ALLOW_ANY_TARGET", "1")
    if not env.get("SARAFAN_SECRET_KEY") and not env.get("SARAFAN_SECRET_KEY_SECRET_ID"):
        env["SARAFAN_SECRET_KEY"] = secrets.token_urlsafe(32)  # webhook secrets change every run
    operator_key = kept.get("operator_key") or "srf_op_" + secrets.token_urlsafe(32)
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


LOCAL_KMS_ALIAS = "alias/sarafan-local-integrations"


def local_kms_key(kms: Any) -> str:
    """The local run's key for platform secrets: the one a ``--data`` restart brought back (found by its
    alias), else a new one with that alias. One key across restarts, not a new key per start."""
    try:
        return str(kms.describe_key(KeyId=LOCAL_KMS_ALIAS)["KeyMetadata"]["KeyId"])
    except kms.exceptions.NotFoundException:
        key_id = str(kms.create_key(Description="sarafan local: platform secrets")["KeyMetadata"]["KeyId"])
        kms.create_alias(AliasName=LOCAL_KMS_ALIAS, TargetKeyId=key_id)
        return key_id


def prepare_integrations() -> list[str]:
    """The KMS key for platform secrets and the CRM fetch queue, unless the environment names real ones."""
    from chalicelib import aws, config

    warnings = []
    env = os.environ
    try:
        if not env.get("SARAFAN_KMS_KEY_ID"):
            env["SARAFAN_KMS_KEY_ID"] = local_kms_key(aws.client("kms"))
        if not env.get("SARAFAN_CRM_FETCH_QUEUE_URL"):
            from chalicelib.api.crm_consumer import QUEUE

            env["SARAFAN_CRM_FETCH_QUEUE_URL"] = aws.client("sqs").create_queue(QueueName=QUEUE)["QueueUrl"]
    except Exception as exc:  # DynamoDB Local has no KMS/SQS: shop and CRM integrations will not work
        warnings.append(f"integrations unavailable (KMS key / SQS queue): {type(exc).__name__}: {exc}")
    config.reset_settings()
    return warnings


class CrmFetchPoller:
    """Drives ``@on_sqs_message`` consumers locally: polls their queue, calls the Lambda handler per message."""

    def __init__(self, runner: Any, source: Any) -> None:
        self.runner, self.source = runner, source
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=f"sqs-{self.source.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=timeout)

    def _loop(self) -> None:
        from chalicelib import aws
        from chalicelib.config import get_settings

        url = get_settings().crm_fetch_queue_url
        handler = self.runner.app.handler_map[self.source.name]
        sqs = aws.client("sqs")
        while url and not self._stop.is_set():
            try:
                messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1, WaitTimeSeconds=1)
                for message in messages.get("Messages", []):
                    event = {"Records": [{"messageId": message["MessageId"], "receiptHandle": message["ReceiptHandle"],
                                          "body": message["Body"], "attributes": {}, "messageAttributes": {},
                                          "eventSource": "aws:sqs", "eventSourceARN": f"arn:aws:sqs:::{self.source.queue}",
                                          "awsRegion": get_settings().region}]}
                    try:
                        from infra.local_events import lambda_context

                        handler(event, lambda_context(self.source.name))
                        sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
                    except Exception as exc:  # left on the queue: retried after the visibility timeout
                        say(f"{self.source.name} failed: {type(exc).__name__}: {exc}")
            except Exception as exc:
                say(f"{self.source.name} poll failed: {type(exc).__name__}")
                self._stop.wait(2)


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


def seed_demo(base_url: str, saved: dict[str, Any] | None = None) -> dict[str, Any]:
    """The demo program and its partners, through the service layer (as the admin API does).

    Against a persistent store an existing demo is reused: with the keys ``--data`` saved
    when it was created (``saved``), or else (DynamoDB Local, AWS) its partners get fresh
    keys and its publishable key cannot be shown again.
    """
    from chalicelib.services import ports, programs, rules
    from chalicelib.services import secrets as webhook_secrets
    from chalicelib.services.auth import Principal

    operator, deps = Principal(kind="operator"), ports.current()
    listed = programs.list_programs(deps, operator, 100, None)["items"]
    existing = next((p for p in listed if p["name"] == DEMO_PROGRAM), None)
    if existing is None:
        origins = sorted({base_url, base_url.replace("127.0.0.1", "localhost")})
        from chalicelib.domain.validation import validate

        program = programs.create_program(deps, operator, validate(
            programs.PROGRAM_CREATE_SCHEMA, {"name": DEMO_PROGRAM, "points_unit": "баллы", "allowed_origins": origins}))
        partners = [programs.create_partner(deps, operator, program["program_id"],
                                            validate(programs.PARTNER_CREATE_SCHEMA, {"name": n}))
                    for n in DEMO_PARTNERS]
        rules.put_rules(deps, operator, program["program_id"], DEMO_RULES)
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
    if saved and saved.get("program_id") == program_id:
        return saved
    partners = []
    for partner in programs.list_partners(deps, operator, program_id)["items"]:
        key = programs.create_partner_key(deps, operator, program_id, partner["partner_id"])["api_key"]
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


class FairLock:
    """A lock handed to waiters in arrival order (``threading.Lock`` lets one thread barge ahead,
    which under a queue of senders turns into multi-second tail latencies)."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._waiters: collections.deque[threading.Lock] = collections.deque()
        self._held = False

    def acquire(self) -> None:
        with self._mutex:
            if not self._held:
                self._held = True
                return
            turn = threading.Lock()
            turn.acquire()
            self._waiters.append(turn)
        turn.acquire()  # released by the holder handing the lock over

    def release(self) -> None:
        with self._mutex:
            if self._waiters:
                self._waiters.popleft().release()  # still held: ownership passes on
            else:
                self._held = False

    def __enter__(self) -> FairLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class Dispatcher:
    """Runs one request at a time through the app, in arrival order, as one Lambda container does.

    Chalice's local server already gives each thread its own ``app.current_request``
    (``chalice.local.LocalChalice``); dispatch stays serial because the app is CPU-bound in one
    process (the GIL) and a Lambda container never runs two requests at once. Connections are
    accepted concurrently and queue here. Once :meth:`stop` is called, waiting requests are
    answered ``503`` with ``Retry-After`` at once (nothing of them was processed; a sender
    retries) and :meth:`drain` waits for the one in progress.
    """

    def __init__(self) -> None:
        self.lock = FairLock()
        self.stopping = threading.Event()
        self.handled = 0
        #: Called before each request, holding the dispatch lock (the stream back-pressure).
        self.gate: Any = None

    def handle(self, original: Any, gateway: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if self.stopping.is_set():
            return self.unavailable()
        with self.lock:
            if self.gate is not None:
                self.gate(self.stopping)
            if self.stopping.is_set():
                return self.unavailable()
            self.handled += 1
            return original(gateway, *args, **kwargs)

    @staticmethod
    def unavailable() -> dict[str, Any]:
        body = {"error": {"code": "service_unavailable", "message": "The local run is stopping; retry later.",
                          "details": {}}}
        return {"statusCode": 503, "headers": {"Content-Type": "application/json", "Retry-After": "5",
                                               "Connection": "close"},
                "multiValueHeaders": {}, "body": json.dumps(body)}

    def stop(self) -> None:
        self.stopping.set()

    def drain(self, timeout: float) -> bool:
        """Wait until the request in progress is done (True) or ``timeout`` passes (False)."""
        done = threading.Event()

        def wait() -> None:
            with self.lock:
                done.set()

        threading.Thread(target=wait, name="sarafan-drain", daemon=True).start()
        return done.wait(timeout)


DISPATCHER = Dispatcher()


def serialize_dispatch(dispatcher: Dispatcher = DISPATCHER) -> None:
    """Route every request of Chalice's local gateway through ``dispatcher`` (once per process)."""
    from chalice.local import LocalGateway

    if getattr(LocalGateway.handle_request, "_sarafan_serialized", False):
        return
    original = LocalGateway.handle_request

    def handle_request(self: Any, *args: Any, **kwargs: Any) -> Any:
        return dispatcher.handle(original, self, args, kwargs)

    handle_request._sarafan_serialized = True  # type: ignore[attr-defined]
    LocalGateway.handle_request = handle_request  # type: ignore[method-assign]


def _handler_class() -> type:
    from chalice.local import ChaliceRequestHandler

    class LocalRequestHandler(ChaliceRequestHandler):  # type: ignore[misc]
        def log_request(self, code: Any = "-", size: Any = "-") -> None:
            """No access-log line: the app logs every request itself (``sarafan.http``)."""

        def __getattr__(self, name: str) -> Any:
            # Methods Chalice local does not know (TRACE, CONNECT, PROPFIND...) get a JSON 405,
            # as API Gateway answers with a 4xx, instead of BaseHTTPServer's HTML 501.
            if name.startswith("do_"):
                return self._unsupported_method
            raise AttributeError(name)

        def _unsupported_method(self) -> None:
            self._parse_payload()  # drain the body so the connection stays usable
            body = json.dumps({"error": {"code": "method_not_allowed", "message": "Method not allowed",
                                         "details": {}}}).encode()
            self._send_http_response(405, {"Content-Type": "application/json"}, body)

    return LocalRequestHandler


def _server_class(listen_fd: int | None = None) -> type:
    from chalice.local import ThreadedHTTPServer

    class LocalHTTPServer(ThreadedHTTPServer):  # type: ignore[misc]
        #: socketserver's default backlog is 5: the sixth simultaneous sender got a reset.
        request_queue_size = LISTEN_BACKLOG
        allow_reuse_address = True
        daemon_threads = True

        def server_bind(self) -> None:
            if listen_fd is None:
                super().server_bind()
                return
            # The listening socket the main process bound (infra/local_http.py): connections wait in its
            # backlog while this process starts or restarts.
            import socket as sockets

            inherited = sockets.socket(fileno=listen_fd)
            self.socket.close()  # type: ignore[has-type]
            self.socket = inherited
            self.server_address = inherited.getsockname()
            host, port = self.server_address[:2]
            self.server_name, self.server_port = host, port

    return LocalHTTPServer


def listening_socket(host: str, port: int) -> socket.socket:
    """The API's listening socket, bound and listening (what the HTTP process serves)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(LISTEN_BACKLOG)
    except OSError:
        sock.close()
        raise
    return sock


def start_http(app: Any, host: str, port: int, listen_fd: int | None = None) -> tuple[Any, threading.Thread]:
    """Chalice's local server (``chalice local``) with a deep listen backlog and serial dispatch."""
    from chalice.deploy.validate import validate_routes
    from chalice.local import CustomLocalChalice, LocalChalice, LocalDevServer

    validate_routes(app.routes)  # what `chalice deploy` would refuse, refuse here too
    serialize_dispatch()
    if not isinstance(app, LocalChalice):  # what chalice.local.create_local_server does
        CustomLocalChalice.__bases__ = (LocalChalice, app.__class__)
        app.__class__ = CustomLocalChalice
    server = LocalDevServer(app, chalice_config(app), host, port, handler_cls=_handler_class(),
                            server_cls=_server_class(listen_fd))
    thread = threading.Thread(target=server.server.serve_forever, kwargs={"poll_interval": 0.2},
                              name="sarafan-http", daemon=True)
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


# --- notifications ----------------------------------------------------------------------------


def drive_notifications(log: Any, positions: Any = None) -> None:
    """Read the table's stream as Lambda would (infra/local_stream.py) and print one line per message.

    The stream poller is registered for ``@on_dynamodb_record``, so the EventSourceRunner starts it
    with the schedules; rendered messages stay viewable at ``GET /dev/outbox`` (local stage only).
    """
    from chalicelib.notify import sources
    from infra.local_stream import register

    register(positions=positions)
    sources.outcome_listeners.append(lambda outcome: log(outcome.line()))


#: Stream records the consumers may be behind before a request waits for them (back-pressure), and how long
#: one request waits at most. A backlog costs memory (about 1 KB a record, some twenty a webhook) and made the
#: acknowledgement rate look better than what the run sustains.
STREAM_BACKLOG_LIMIT = 3000
STREAM_BACKLOG_WAIT = 0.25


class StreamBackPressure:
    """Before a request runs: while the table stream's consumers are more than :data:`STREAM_BACKLOG_LIMIT`
    records behind, wait until they are not, at most :data:`STREAM_BACKLOG_WAIT` seconds (a short wait per
    request rather than a long one for a few: the intake slows down to what the consumers keep up with,
    without multi-second stalls, and a stuck consumer slows the API rather than stopping it). Requests
    queue meanwhile, in order."""

    def __init__(self, limit: int = STREAM_BACKLOG_LIMIT, wait: float = STREAM_BACKLOG_WAIT,
                 backlog: Any = None) -> None:
        self.limit, self.wait = limit, wait
        self.backlog = backlog  # records behind (the HTTP process asks the main one); None: infra.local_stream's
        self.waited = 0.0
        self._warned = 0.0

    def __call__(self, stopping: threading.Event) -> None:
        import time

        if self.backlog is not None:
            backlog = self.backlog
        else:
            from infra.local_stream import backlog
        if backlog() <= self.limit:
            return
        started = time.monotonic()
        while not stopping.is_set() and time.monotonic() - started < self.wait:  # a short wait, often: smooth
            if stopping.wait(0.05) or backlog() <= self.limit:
                break
        waited = time.monotonic() - started
        self.waited += waited
        if started - self._warned > 60:
            self._warned = started
            say(f"the stream consumers are over {self.limit} records behind: requests wait for them "
                f"({waited:.1f} s for this one)")


def drive_consumers(mode: str, one_process: bool, cleanup: contextlib.ExitStack,
                    on_fatal: Any) -> list[Any]:
    """The table-stream consumer: in a second process (``infra/local_consumers.py``) with the embedded moto,
    unless ``--one-process``; in this one otherwise. Returns the consumer processes (none in-process)."""
    if mode != "moto":
        drive_notifications(say)
        return []
    from infra.local_stream import POSITIONS, install_holds

    install_holds(POSITIONS)
    DISPATCHER.gate = StreamBackPressure()
    drive_notifications(say, POSITIONS)
    if one_process:
        return []
    from infra.local_consumers import register

    return register(engine_server(cleanup), on_fatal=on_fatal)


_ENGINE: list[Any] = []


def engine_server(cleanup: contextlib.ExitStack) -> Any:
    """The main process's answer to the child processes' AWS calls (``infra/local_consumers.py``), one per run."""
    if _ENGINE:
        return _ENGINE[0]
    from infra.local_consumers import EngineServer
    from infra.local_stream import POSITIONS

    server = EngineServer(POSITIONS, log=say).start()
    _ENGINE.append(server)
    cleanup.callback(_ENGINE.clear)
    cleanup.callback(server.close)
    if os.environ.get("SARAFAN_LOCAL_PROFILE"):  # the child processes' calls, by action, beside the profile
        path = Path(os.environ["SARAFAN_LOCAL_PROFILE"] + ".engine.json")
        cleanup.callback(lambda: path.write_text(json.dumps(server.stats(), indent=1), encoding="utf-8"))
    return server


def start_http_process(host: str, port: int, cleanup: contextlib.ExitStack, on_fatal: Any) -> Any:
    """The API in its own process (``infra/local_http.py``) on a socket this process binds and keeps."""
    from infra.local_http import HttpProcess

    sock = listening_socket(host, port)
    cleanup.callback(sock.close)
    process = HttpProcess(engine_server(cleanup), sock, host, port, log=say, on_fatal=on_fatal)
    process.start()
    return process


#: Schedules the local run fires more often than AWS does (real seconds): the partner webhook sender
#: runs every minute in AWS (EventBridge's shortest rate); locally a first attempt follows an event
#: within about a second (the stream poller reads every 0.2 s).
LOCAL_PERIODS = {"send_partner_webhooks": 1.0}


def faster_local_schedules(runner: Any) -> None:
    from infra.local_events import RateSchedule

    for job in runner.jobs:
        if job.name in LOCAL_PERIODS:
            job.schedule = RateSchedule(max(1, round(LOCAL_PERIODS[job.name] * runner.speedup)))


#: Seconds between two steps of the TTL sweep (``moto_tuning.sweep_expired``: a few thousand items a step).
TTL_SWEEP_EVERY = 10.0


def start_ttl_sweeper(stop: threading.Event, every: float = TTL_SWEEP_EVERY) -> threading.Thread:
    """Delete expired items (the TTL attribute, ``expires_at_epoch``) as DynamoDB does (moto never does), and
    give the heap's free pages back to the system (:func:`trim_heap`), every ``every`` seconds."""
    from infra import moto_tuning

    def loop() -> None:
        while not stop.wait(every):
            try:
                moto_tuning.sweep_expired()
            except Exception as exc:  # reported; the run goes on
                say(f"TTL sweep failed: {type(exc).__name__}: {exc}")
            trim_heap()

    thread = threading.Thread(target=loop, name="sarafan-ttl", daemon=True)
    thread.start()
    return thread


# --- profile ---------------------------------------------------------------------------------


class CpuProfile:
    """``SARAFAN_LOCAL_PROFILE=FILE``: where the run's CPU goes, written to FILE (JSON) when it stops.

    Every few milliseconds a thread reads each thread's CPU time (``/proc/self/task/TID/schedstat``) and
    charges what it used since the last look to the code that thread is in now (``sys._current_frames``):
    by thread (API request, stream consumer, schedules...), by stage (webhook intake, each stream handler,
    the stream read) and by layer (moto's engine, botocore, PynamoDB, the app, the HTTP server). A sample
    profile (a thread's CPU lands on the code it is in at the next look), Linux only, for ``bench/``.
    """

    LAYERS = (("/moto/", "moto"), ("moto_tuning", "moto"), ("/botocore/", "botocore"), ("/boto3/", "botocore"),
              ("/pynamodb/", "pynamodb"), ("/chalicelib/", "app"), ("/chalice/", "chalice"),
              ("/werkzeug/", "werkzeug"), ("socketserver", "http server"), ("http/server", "http server"))

    def __init__(self, path: Path, interval: float = 0.004) -> None:
        self.path, self.interval = path, interval
        self.cpu: collections.Counter[tuple[str, str, str]] = collections.Counter()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="sarafan-profile", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        me = threading.get_ident()
        seen: dict[int, int] = {}
        while not self._stop.wait(self.interval):
            frames = sys._current_frames()
            for thread in threading.enumerate():
                tid = thread.native_id
                if thread.ident == me or tid is None:
                    continue
                try:
                    with open(f"/proc/self/task/{tid}/schedstat", encoding="ascii") as stat:
                        used = int(stat.read().split()[0])
                except (OSError, ValueError, IndexError):
                    continue
                delta, seen[tid] = used - seen.get(tid, 0), used
                frame = frames.get(thread.ident or 0)
                if delta > 0 and frame is not None:
                    self.cpu[self.classify(thread.name, frame)] += delta

    @classmethod
    def classify(cls, thread_name: str, frame: Any) -> tuple[str, str, str]:
        stack = []
        while frame is not None:
            stack.append((frame.f_code.co_filename, frame.f_code.co_name))
            frame = frame.f_back
        stage = "other"
        for i, (path, name) in enumerate(stack):  # innermost first
            if name == "dispatch" and path.endswith("notify/dispatcher.py"):
                inner = stack[i - 1][0] if i else path
                stage = "stream handler " + inner.split("chalicelib/")[-1].removesuffix(".py")
                break
            if name == "_new_records" and path.endswith("local_stream.py"):
                stage = "stream read"
                break
            if name == "receive_event" and "chalicelib/api" in path:
                stage = "webhook intake"
                break
            if name == "_run_job" or path.endswith("local_events.py"):
                stage = "schedules"
        if stage == "other" and any(name == "deliver_items" or "notify/" in path for path, name in stack):
            stage = "stream handler notify/sources"
        layer = "python"
        if any("/moto/" in path for path, _ in stack):
            layer = "moto"
        else:
            for path, _ in stack:
                layer = next((label for key, label in cls.LAYERS if key in path), "")
                if layer:
                    break
            layer = layer or "python"
        kind = ("stream" if thread_name == "sarafan-stream" else "notify pool" if thread_name.startswith("ThreadPool")
                else "schedules" if thread_name == "sarafan-schedules" else "api request" if thread_name.startswith("Thread-")
                else thread_name)
        return kind, stage, layer

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(1)
        total = sum(self.cpu.values()) or 1
        rows = [{"thread": k, "stage": s, "layer": la, "cpu_s": round(n / 1e9, 2), "share": round(n / total, 4)}
                for (k, s, la), n in self.cpu.most_common()]
        self.path.write_text(json.dumps({"cpu_s": round(total / 1e9, 2), "rows": rows}, indent=1), encoding="utf-8")


def write_object_census(path: Path) -> None:
    """``SARAFAN_LOCAL_OBJECTS=FILE``: the live Python objects by type (count, shallow bytes) when the run stops,
    to compare two runs of different lengths (what grows is what a webhook leaves behind)."""
    import gc

    counts: collections.Counter[str] = collections.Counter()
    sizes: collections.Counter[str] = collections.Counter()
    for obj in gc.get_objects():
        name = f"{type(obj).__module__}.{type(obj).__qualname__}"
        counts[name] += 1
        sizes[name] += sys.getsizeof(obj, 0)
    rows = [{"type": name, "count": n, "bytes": sizes[name]} for name, n in counts.most_common(60)]
    path.write_text(json.dumps(rows, indent=1), encoding="utf-8")


# --- output -------------------------------------------------------------------------------


def banner(info: dict[str, Any]) -> str:
    base, op, demo = info["base_url"], info["operator_key"], info["demo"]
    aws_line = {
        "moto": f"embedded moto server at {info['aws_endpoint']} "
                + (f"(kept in {info['data_dir']})" if info.get("data_dir") else "(in-memory; gone when you stop)"),
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
        f"  dashboard      {base}/dashboard   (sign in with the operator key or a partner's api key)",
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
        f"  curl -s {base}/dev/outbox   # the notifications the local run delivered (rendered)",
    ]
    if info["aws_mode"] == "moto":
        lines.append(f"  aws --endpoint-url {info['aws_endpoint']} dynamodb scan --table-name {info['table']}"
                     "   # any AWS tool works against moto")
    if info.get("fake_crm_url"):
        lines += ["", f"Fake CRM       {info['fake_crm_url']}   (HubSpot, Bitrix24 and amoCRM API answers from "
                      "tests/fixtures/platforms; see docs/local-run.md)"]
    if info["schedules"]:
        lines += ["", "Event sources:", *(f"  {s}" for s in info["schedules"])]
    if info.get("history"):
        lines += ["", info["history"]]
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
    parser.add_argument("--data", type=Path, metavar="DIR",
                        help="keep the embedded AWS state and the keys in DIR across restarts "
                             "(default: in memory, gone when you stop)")
    parser.add_argument("--save-every", type=float, default=10.0, metavar="SECONDS",
                        help="with --data: also save what changed every SECONDS (default 10; 0 = only on stop)")
    parser.add_argument("--ready-file", type=Path, help="write URLs and keys as JSON here once the API answers")
    parser.add_argument("--no-seed", action="store_true", help="do not create the demo program")
    parser.add_argument("--no-history", action="store_true",
                        help="create the demo program without its three weeks of history (infra/demo_history.py)")
    parser.add_argument("--no-schedules", action="store_true", help="do not run @app.schedule handlers")
    parser.add_argument("--quiet", action="store_true", help="print no banner (use with --ready-file)")
    parser.add_argument("--one-process", action="store_true",
                        help="run the table-stream consumers in the run's own process, not in a second one "
                             "(infra/local_consumers.py)")
    parser.add_argument("--http-in-main", action="store_true",
                        help="serve the API from the run's own process, not from a process of its own "
                             "(infra/local_http.py; the earlier layout)")
    parser.add_argument("--fake-crm", action="store_true",
                        help="answer the CRM fetch (HubSpot, Bitrix24, amoCRM) from recorded API responses "
                             "(infra/fake_crm.py) instead of the real CRMs")
    return parser.parse_args(argv)


@contextlib.contextmanager
def stop_signals() -> Iterator[threading.Event]:
    """An event set by SIGINT/SIGTERM (restoring the previous handlers afterwards).

    The first signal starts an orderly stop with a watchdog: if it has not finished within
    :data:`STOP_DEADLINE` seconds the process exits anyway. A second signal exits at once.
    """
    stop = threading.Event()
    previous = {}

    def on_signal(signum: int, _frame: Any) -> None:
        if stop.is_set():
            os._exit(128 + signum)
        stop.set()
        arm_stop_watchdog()

    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, on_signal)
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def arm_stop_watchdog() -> None:
    """Exit the process if the stop that starts now has not finished within :data:`STOP_DEADLINE` seconds."""
    watchdog = threading.Timer(STOP_DEADLINE, _stop_took_too_long)
    watchdog.daemon = True
    watchdog.start()


def _stop_took_too_long() -> None:
    print(f"stopping took over {STOP_DEADLINE:g} s; exiting now", flush=True)
    os._exit(1)


def start_aws(mode: str, moto_port: int, state: Any, cleanup: contextlib.ExitStack) -> EmbeddedMoto | None:
    """The embedded moto (``moto`` mode only), loaded from ``--data`` when there is a snapshot."""
    if mode != "moto":
        if state.persistent:
            say("--data keeps the embedded moto's state; with your own endpoint or AWS it is ignored")
        return None
    port = moto_port if moto_port and port_is_free("127.0.0.1", moto_port) else 0
    moto = EmbeddedMoto("127.0.0.1", port)
    moto.start()
    cleanup.callback(moto.stop)
    state.restore()
    return moto


def start_fake_crm(host: str, cleanup: contextlib.ExitStack) -> Any:
    """The demo CRM (``infra/fake_crm.py``) on a free port; the CRM fetch is pointed at it."""
    from infra.fake_crm import FakeCrm

    fake = FakeCrm(host if host in ("127.0.0.1", "localhost") else "127.0.0.1").start()
    cleanup.callback(fake.stop)
    os.environ["SARAFAN_CRM_FAKE_BASE_URL"] = fake.base_url
    return fake


def stop_http(server: Any, thread: threading.Thread, deadline: float) -> None:
    """Stop accepting, answer queued requests 503, let the request in progress finish."""
    import time

    DISPATCHER.stop()
    server.server.shutdown()  # serve_forever returns within its poll interval
    server.server.server_close()  # new connections are refused from here on
    if not DISPATCHER.drain(max(0.1, deadline - time.monotonic())):
        say("a request was still running at the stop deadline")
    thread.join(1)


#: glibc malloc arenas the run may use (its default is eight per CPU: each of the API's threads per
#: connection got one, and memory freed in one arena is not reused by the others, so the heap kept growing).
MALLOC_ARENAS = 2


def bound_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """``mallopt(M_ARENA_MAX, arenas)`` before the run starts its threads (glibc only; True if applied)."""
    try:
        import ctypes

        return bool(ctypes.CDLL(None).mallopt(-8, arenas))  # M_ARENA_MAX
    except (OSError, AttributeError):
        return False


def trim_heap() -> None:
    """Give the heap's free pages back to the system (``malloc_trim``; glibc only)."""
    try:
        import ctypes

        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


#: The cyclic garbage collector's first-generation threshold in the run's processes (Python's default is 700
#: allocations). A member-import chunk hands moto transactions of ~90 items whose parameters (~5,000 objects)
#: live through the request, with the items and stream records it builds: at 700 the collector ran several
#: times per transaction and rescanned them each time, about 40 % of moto's CPU per imported row (the import's
#: transactions replayed in one process: 1.39 ms CPU per row at 700, 0.92 at 10,000, 0.94 at 100,000, 0.88 with
#: no collection at all). The older generations keep their defaults; cyclic garbage still goes, a little later.
GC_THRESHOLD = 50_000


def raise_gc_threshold(threshold: int = GC_THRESHOLD) -> None:
    """The collector's first-generation threshold at :data:`GC_THRESHOLD` (each of the run's processes)."""
    import gc

    gc.set_threshold(threshold, *gc.get_threshold()[1:])


def main(argv: list[str]) -> int:
    import time

    from infra.local_state import LocalState

    bound_malloc_arenas()
    raise_gc_threshold()
    args = parse_args(argv)
    mode = choose_aws_mode(os.environ)
    base_url = f"http://{args.host}:{args.port}"
    state = LocalState(args.data if mode == "moto" else None, log=say)
    fatal: list[str] = []
    with stop_signals() as stop, contextlib.ExitStack() as cleanup:
        state.lock()  # one run per --data directory, for this process's life (a second one stops here)
        kept = state.load_keys()  # a damaged directory stops the start here or in restore, before any write
        moto = start_aws(mode, args.moto_port, state, cleanup)
        # Registered after moto's stop, so it runs before it: the last snapshot on the way out.
        cleanup.callback(last_snapshot, state, fatal)
        operator_key = configure_environment(mode, base_url, kept)
        fake_crm = start_fake_crm(args.host, cleanup) if args.fake_crm else None
        warnings = prepare_store() + prepare_integrations()
        demo = None if args.no_seed else seed_demo(base_url, kept.get("demo"))
        history_note = ""
        if demo and demo.get("publishable_key") and not kept.get("demo") and not args.no_history:
            from infra.demo_history import seed_history

            started = time.monotonic()
            made = seed_history(demo)
            history_note = (f"demo history: {made['members']} members, {made['events']} events, {made['clicks']} "
                            f"clicks, {made['refunds']} refunds, {made['redemptions']} redemptions over 3 weeks "
                            f"({time.monotonic() - started:.1f} s)")
        state.save_keys({"operator_key": operator_key, "demo": demo,
                         "settings": {name: os.environ[name] for name in KEPT_SETTINGS if os.environ.get(name)}})

        from app import app
        from chalicelib.config import get_settings
        from infra.local_events import EventSourceRunner, register_consumer

        register_consumer("SQSEventConfig", CrmFetchPoller)

        def on_fatal(message: str) -> None:
            fatal.append(message)
            stop.set()
            arm_stop_watchdog()  # the same stop budget as a signal's

        consumer_processes = drive_consumers(mode, args.one_process, cleanup, on_fatal)
        speedup = float(os.environ.get("SARAFAN_LOCAL_SCHEDULE_SPEEDUP", "1") or 1)
        runner = EventSourceRunner(app, region=get_settings().region, speedup=speedup, log=say)
        faster_local_schedules(runner)
        http_process: Any = None
        server: Any = None
        thread: threading.Thread | None = None
        try:
            if mode == "moto" and not args.http_in_main:
                http_process = start_http_process(args.host, args.port, cleanup, on_fatal)
            else:
                server, thread = start_http(app, args.host, args.port)
        except OSError as exc:
            say(f"cannot listen on {args.host}:{args.port} ({exc.strerror}); pick another with --port")
            return 1
        if not args.no_schedules:
            runner.start()
        state.start_autosave(args.save_every)
        if mode == "moto":
            start_ttl_sweeper(stop)
        if os.environ.get("SARAFAN_LOCAL_OBJECTS"):
            cleanup.callback(write_object_census, Path(os.environ["SARAFAN_LOCAL_OBJECTS"]))
        if os.environ.get("SARAFAN_LOCAL_PROFILE"):
            profile = CpuProfile(Path(os.environ["SARAFAN_LOCAL_PROFILE"]))
            profile.start()
            cleanup.callback(profile.stop)
        stopped_at: list[float] = []

        def shutdown() -> None:
            """In order: the API (nothing new gets in), the event sources, autosave; then the
            snapshot and moto (registered before, so they run after this)."""
            deadline = (stopped_at[0] if stopped_at else time.monotonic()) + STOP_DEADLINE
            if http_process is not None:
                http_process.sock.close()  # the child's copy stays open until it stops accepting
                http_process.stop(max(0.1, deadline - 4 - time.monotonic()))
            else:
                assert thread is not None
                stop_http(server, thread, deadline - 4)
            runner.stop(max(0.1, min(3.0, deadline - 4 - time.monotonic())))
            state.stop_autosave()

        cleanup.callback(shutdown)
        wait_until_healthy(base_url, 10.0 if http_process is None else 30.0)  # a child imports the app first

        info = {
            "pid": os.getpid(),
            "base_url": base_url,
            "openapi_url": f"{base_url}/openapi.json",
            "operator_key": operator_key,
            "aws_mode": mode,
            "aws_endpoint": moto.endpoint if moto else os.environ.get("AWS_ENDPOINT_URL"),
            "moto_port": moto.port if moto else None,
            "data_dir": str(state.directory) if state.persistent else None,
            "region": get_settings().region,
            "table": get_settings().table_name,
            "demo": demo,
            "schedules": [] if args.no_schedules else runner.describe(),
            "warnings": warnings,
            "history": history_note,
            "fake_crm_url": fake_crm.base_url if fake_crm else None,
            "consumer_pids": [c.pid for c in consumer_processes],
            "http_pid": http_process.pid if http_process is not None else None,
        }
        if args.ready_file:
            write_ready_file(args.ready_file, info)
            cleanup.callback(lambda: args.ready_file.unlink(missing_ok=True))
        if not args.quiet:
            say(banner(info) if demo else f"Sarafan is running on {base_url}; operator key {operator_key}")
        while not stop.wait(0.5):
            if thread is not None and not thread.is_alive():
                say("HTTP server stopped unexpectedly")
                return 1
        stopped_at.append(time.monotonic())
        say("stopping…")
    say("stopped")
    return 1 if fatal else 0


def last_snapshot(state: Any, fatal: list[str]) -> None:
    """The snapshot on the way out; if it cannot be written (the disk full), say what is lost and exit non-zero."""
    try:
        state.save("stopped")
    except Exception as exc:
        fatal.append(f"the last snapshot failed: {exc}")
        say(f"the last snapshot could not be written ({type(exc).__name__}: {exc}): {state.directory} keeps the "
            "state of the last snapshot that was written, and what changed after it is lost")


def exit_now(code: int) -> None:
    """Exit once everything is stopped and saved, without the interpreter's teardown: with a long run's
    heap (millions of objects) and the notification thread pools joined at exit, that teardown alone took
    seconds under load, past the stop budget; there is nothing left for it to do."""
    import logging

    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    exit_now(main(sys.argv[1:]))
