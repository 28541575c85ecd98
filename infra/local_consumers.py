#!/usr/bin/env python3
"""The local run's table-stream consumers in a second process: the run's second CPU.

The run is Python under one GIL, and the stream consumers (notifications, analytics counters,
settlement, partner events: ``chalicelib/notify/dispatcher.py``) were most of its CPU, so by default
``python3 infra/dev.py run`` runs them in a child process (``--one-process`` keeps them in the
run's own). moto's state stays in the main process, in one place, where every request from either
process runs under ``moto_tuning.ENGINE_LOCK`` (each DynamoDB request atomic, as DynamoDB applies
it). The child has no moto: its botocore calls are carried to the main process over a Unix socket
(``multiprocessing.connection``, an authentication key, one connection per thread):

* DynamoDB's data plane and the stream reads (``moto_tuning.PLAIN_JSON_ACTIONS``,
  ``STREAM_ACTIONS``): at botocore's ``before-call``, the request (its parameters ``marshal``-ed, as
  ``moto_tuning``'s in-process hop carries them, instead of botocore's JSON) goes over and moto's JSON answer
  comes back, the same hop as the in-process ``moto_tuning.direct_dynamodb_calls`` (the main process pays
  moto's engine only: no HTTP server, no URL routing, no botocore, no JSON parsing of the request);
* every other call (SES, SNS, KMS, SQS, DynamoDB's control plane): at ``before-send``, the signed HTTP
  request goes over and moto's mock answers it as it answers the main process's own calls;
* the consumer's positions (:data:`infra.local_stream.POSITIONS`), so a restarted child, or a run
  restarted with ``--data``, goes on after the last batch finished; and the rendered notifications for
  ``GET /dev/outbox`` (``chalicelib.notify.preview``), which the API serves from the main process.

A child that dies is restarted (its batch in progress is delivered again: handlers are idempotent);
:data:`MAX_RESTARTS` restarts within :data:`RESTART_WINDOW` seconds are allowed; the next death stops the run with an error. The child
dies with the main process (``PR_SET_PDEATHSIG``, and it exits when its socket closes). On stop it
finishes its batch in progress and exits; whatever is still running past the run's stop budget is
killed.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import pickle
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from multiprocessing.connection import Client, Connection, Listener
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SOCKET_ENV, KEY_ENV, PARENT_ENV = "SARAFAN_ENGINE_SOCKET", "SARAFAN_ENGINE_KEY", "SARAFAN_ENGINE_PARENT"
#: Child deaths within :data:`RESTART_WINDOW` seconds after which the run stops (loudly) instead.
MAX_RESTARTS = 5
RESTART_WINDOW = 60.0


class EngineError(RuntimeError):
    """The main process could not answer (its traceback is in the message)."""


# --- the main process: the engine's server ----------------------------------------------------------


class EngineServer:
    """Answers the consumer process's AWS calls with the main process's moto (see the module docstring)."""

    def __init__(self, positions: Any = None, log: Callable[[str], None] = print) -> None:
        from infra.local_stream import POSITIONS

        self.positions = positions if positions is not None else POSITIONS
        self.log = log
        self.authkey = secrets.token_bytes(32)
        self._dir = tempfile.mkdtemp(prefix="sarafan-engine-")
        self.address = os.path.join(self._dir, "engine.sock")
        self._listener = Listener(self.address, "AF_UNIX", backlog=128, authkey=self.authkey)
        self._connections: set[Connection] = set()
        self._lock = threading.Lock()
        self._closed = False
        self.calls: collections.Counter[str] = collections.Counter()
        self.cpu_ns: collections.Counter[str] = collections.Counter()

    def start(self) -> EngineServer:
        threading.Thread(target=self._accept, name="sarafan-engine-accept", daemon=True).start()
        return self

    def env(self) -> dict[str, str]:
        return {SOCKET_ENV: self.address, KEY_ENV: self.authkey.hex(), PARENT_ENV: str(os.getpid())}

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            for connection in list(self._connections):
                connection.close()
        with contextlib.suppress(OSError):
            os.unlink(self.address)
        with contextlib.suppress(OSError):
            os.rmdir(self._dir)

    def _accept(self) -> None:
        while not self._closed:
            try:
                connection = self._listener.accept()
            except (OSError, EOFError) as exc:  # closed, or a peer without the key
                if self._closed:
                    return
                self.log(f"engine socket: refused a connection ({type(exc).__name__})")
                continue
            with self._lock:
                self._connections.add(connection)
            threading.Thread(target=self._serve, args=(connection,), name="sarafan-engine", daemon=True).start()

    def _serve(self, connection: Connection) -> None:
        begun: list[str] = []  # batches this connection began and has not committed (abandoned if it closes)
        try:
            while True:
                try:
                    data = connection.recv_bytes()
                except (EOFError, OSError):
                    return
                started = time.thread_time_ns()
                message: Any = None
                try:
                    message = pickle.loads(data)
                    reply: tuple[str, Any] = ("ok", self.answer(message, begun))
                except Exception:
                    reply = ("error", traceback.format_exc(limit=8))
                try:
                    encoded = pickle.dumps(reply, pickle.HIGHEST_PROTOCOL)
                except Exception:
                    encoded = pickle.dumps(("error", traceback.format_exc(limit=8)), pickle.HIGHEST_PROTOCOL)
                self._account(message, time.thread_time_ns() - started)
                try:
                    connection.send_bytes(encoded)
                except OSError:
                    return
        finally:
            for key in begun:
                self.positions.commit(key, None)
            with self._lock:
                self._connections.discard(connection)
            connection.close()

    def _account(self, message: Any, cpu_ns: int) -> None:
        """Calls and this process's CPU per call kind (the DynamoDB action for ``call``), for the profile."""
        if not isinstance(message, tuple) or not message:
            return
        kind = str(message[0])
        if kind == "call":
            kind = str(message[3].get("X-Amz-Target", "?")).rsplit(".", 1)[-1]
        elif kind == "send":
            kind = "send " + str(message[2]).split("//", 1)[-1].split(".", 1)[0]
        with self._lock:
            self.calls[kind] += 1
            self.cpu_ns[kind] += cpu_ns

    def stats(self) -> list[dict[str, Any]]:
        with self._lock:
            return [{"call": kind, "count": count, "cpu_ms": round(self.cpu_ns[kind] / 1e6, 1),
                     "cpu_ms_each": round(self.cpu_ns[kind] / 1e6 / count, 3)}
                    for kind, count in self.calls.most_common()]

    def answer(self, message: tuple[Any, ...], begun: list[str]) -> Any:
        kind = message[0]
        if kind == "call":  # (service, url, headers, body): DynamoDB data plane / stream reads
            from infra import moto_tuning

            return moto_tuning.DIRECT_DISPATCH[0](*message[1:])
        if kind == "send":  # (method, url, headers, body): any other AWS call, as moto's mock answers it
            return _mock_answer(*message[1:])
        if kind == "get":
            return self.positions.get(message[1])
        if kind == "begin":
            self.positions.begin(message[1])
            begun.append(message[1])
            return None
        if kind == "commit":
            if message[1] in begun:
                begun.remove(message[1])
            self.positions.commit(message[1], message[2])
            return None
        if kind == "preview":
            from chalicelib.notify import preview

            with preview._lock:
                preview._messages.appendleft(message[1])
            return None
        if kind == "outbox":  # the HTTP process's GET /dev/outbox
            from chalicelib.notify import preview

            return preview.messages()
        if kind == "outbox-clear":
            from chalicelib.notify import preview

            preview.clear()
            return None
        if kind == "backlog":  # the HTTP process's stream back-pressure
            from infra.local_stream import backlog

            return backlog(self.positions)
        raise ValueError(f"unknown engine message {kind!r}")


#: moto's handler per endpoint URL (without the query): what ``botocore_stubber.process_request`` finds by
#: matching the URL against every mocked service's patterns, once per call (a third of an SES call's cost).
_HANDLERS: dict[str, Any] = {}


def _handler_for(clean_url: str) -> Any:
    found = _HANDLERS.get(clean_url)
    if found is None:
        import re

        import moto.backend_index as backend_index
        import moto.backends as backends
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.core.base_backend import BackendDict

        for service, pattern in backend_index.backend_url_patterns:
            if not pattern.match(clean_url):
                continue
            backend_dict = backends.get_backend(service)  # type: ignore[call-overload]
            if isinstance(backend_dict, BackendDict):
                regions = backend_dict[DEFAULT_ACCOUNT_ID]
                backend = regions["us-east-1"] if "us-east-1" in regions else regions["aws"]
            else:
                backend = backend_dict["global"]
            found = next((method for url, method in backend.urls.items() if re.compile(url).match(clean_url)), None)
            if found is not None:
                break
        if found is None:
            return None
        if len(_HANDLERS) < 256:
            _HANDLERS[clean_url] = found
    return found


def _mock_answer(method: str, url: str, headers: dict[str, str], body: bytes | None) -> tuple[int, dict[str, str], bytes]:
    """moto's answer to a signed AWS request, as ``mock_aws`` gives the main process's own calls
    (``botocore_stubber.process_request``, with the handler lookup cached per endpoint)."""
    from botocore.awsrequest import AWSPreparedRequest
    from botocore.compat import HTTPHeaders
    from moto.core.exceptions import HTTPException
    from moto.core.models import botocore_stubber
    from moto.core.request import normalize_request
    from moto.core.utils import get_equivalent_url_in_aws_domain

    http_headers = HTTPHeaders()
    for name, value in headers.items():
        http_headers[name] = value
    request = AWSPreparedRequest(method=method, url=url, headers=http_headers, body=body, stream_output=False)
    parsed_url, _ = get_equivalent_url_in_aws_domain(url)
    handler = _handler_for(f"{parsed_url.scheme}://{parsed_url.netloc}{parsed_url.path}")
    answer: Any
    if handler is None:
        answer = botocore_stubber.process_request(request)  # moto's own way, and its own "not implemented"
    else:
        normalized = normalize_request(request)
        try:
            answer = handler(normalized, normalized.raw_url, normalized.headers)
        except HTTPException as error:
            answer = (error.code, error.get_headers(), error.get_body())
    if answer is None:
        raise EngineError(f"moto does not serve {method} {url}")
    status, response_headers, response_body = answer
    if isinstance(response_body, str):
        response_body = response_body.encode("utf-8")
    return int(status), {str(k): str(v) for k, v in dict(response_headers).items()}, bytes(response_body or b"")


class ConsumerProcess:
    """The child process running the table-stream consumer (the ``Consumer`` protocol of
    ``infra/local_events.py``): started with the event sources, restarted if it dies, stopped with them."""

    def __init__(self, server: EngineServer, function_name: str, batch_size: int, region: str,
                 log: Callable[[str], None] = print, on_fatal: Callable[[str], None] | None = None) -> None:
        self.server, self.function_name, self.batch_size, self.region = server, function_name, batch_size, region
        self.log, self.on_fatal = log, on_fatal
        self.process: subprocess.Popen[bytes] | None = None
        self.restarts: collections.deque[float] = collections.deque()
        self._stopping = threading.Event()
        self._spawning = threading.Lock()  # stop() and a restart never interleave (see _watch)
        self._monitor: threading.Thread | None = None
        self.what = "stream consumer process"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def _spawn(self) -> None:
        env = {**os.environ, **self.server.env(), "PYTHONUNBUFFERED": "1"}
        command = [sys.executable, str(Path(__file__).resolve()), "--function", self.function_name,
                   "--batch-size", str(self.batch_size), "--region", self.region]
        # Its own session: a terminal's Ctrl-C reaches the run, which stops the child in order.
        self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, start_new_session=True)

    def start(self) -> None:
        self._spawn()
        self._monitor = threading.Thread(target=self._watch, name="sarafan-consumer-watch", daemon=True)
        self._monitor.start()

    def _watch(self) -> None:
        while not self._stopping.is_set():
            with self._spawning:
                process = self.process
            assert process is not None
            code = process.wait()
            if self._stopping.is_set():
                return
            now = time.monotonic()
            self.restarts.append(now)
            while self.restarts and now - self.restarts[0] > RESTART_WINDOW:
                self.restarts.popleft()
            if len(self.restarts) > MAX_RESTARTS:
                message = (f"the {self.what} died {len(self.restarts)} times within "
                           f"{RESTART_WINDOW:g} s (last exit {code}); stopping the run")
                self.log(message)
                if self.on_fatal:
                    self.on_fatal(message)
                return
            self.log(f"the {self.what} exited unexpectedly (exit {code}); restarting it "
                     + ("(its batch in progress is delivered again)" if self.what.startswith("stream")
                        else "(a request in progress is answered by a closed socket; its sender retries)"))
            time.sleep(0.2)
            # Under the lock stop() takes: either stop() sees (and signals) this new child, or none is started.
            with self._spawning:
                if self._stopping.is_set():
                    return
                self._spawn()

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM: the child finishes its batch in progress and exits; killed if it has not within ``timeout``."""
        with self._spawning:
            self._stopping.set()
            process = self.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(max(0.1, timeout))
        except subprocess.TimeoutExpired:
            self.log(f"the {self.what} did not stop within {timeout:.1f} s; killed")
            process.kill()
            process.wait(2)


def register(server: EngineServer, on_fatal: Callable[[str], None] | None = None) -> list[ConsumerProcess]:
    """Make :class:`infra.local_events.EventSourceRunner` run ``@on_dynamodb_record`` in a child process;
    returns the list the consumer processes are added to (for their pids)."""
    from infra.local_events import register_consumer

    made: list[ConsumerProcess] = []

    def factory(runner: Any, config: Any) -> ConsumerProcess:
        consumer = ConsumerProcess(server, config.name, config.batch_size, runner.region, log=runner.log,
                                   on_fatal=on_fatal)
        made.append(consumer)
        return consumer

    register_consumer("DynamoDBEventConfig", factory)
    return made


# --- the child process ---------------------------------------------------------------------------------


class EngineClient:
    """The child's side of the socket: one connection per thread, opened on first use."""

    def __init__(self, address: str, authkey: bytes) -> None:
        self.address, self.authkey = address, authkey
        self._local = threading.local()

    def call(self, *message: Any) -> Any:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._local.connection = Client(self.address, "AF_UNIX", authkey=self.authkey)
        connection.send_bytes(pickle.dumps(message, pickle.HIGHEST_PROTOCOL))
        kind, value = pickle.loads(connection.recv_bytes())
        if kind == "error":
            raise EngineError(f"the run's engine failed:\n{value}")
        return value


class RemotePositions:
    def __init__(self, client: EngineClient) -> None:
        self.client = client

    def get(self, key: str) -> int | None:
        return self.client.call("get", key)  # type: ignore[no-any-return]

    def begin(self, key: str) -> None:
        self.client.call("begin", key)

    def commit(self, key: str, sequence: int | None) -> None:
        self.client.call("commit", key, sequence)


def install_client_hooks(client: EngineClient) -> None:
    """Route every botocore call of this process to the main process's moto (before any client is made)."""
    from botocore.awsrequest import AWSResponse
    from botocore.handlers import BUILTIN_HANDLERS, REGISTER_LAST
    from moto.core.botocore_stubber import MockRawResponse

    from infra.moto_tuning import (
        _skip_serializer,
        direct_request_parts,
        parse_direct_answer,
        remember_resource_arn_lists,
    )

    # The data-plane parameters go over marshal-ed, not serialised by botocore and parsed back by the main
    # process (moto_tuning's own hop does the same in-process; pickle keeps the body's packed parameters).
    _skip_serializer(lambda: True)
    remember_resource_arn_lists()

    def before_call(model: Any, params: dict[str, Any], request_signer: Any = None, **_: Any) -> Any:
        parts = direct_request_parts(model, params, request_signer)
        if parts is None:
            return None
        service, url, headers, body = parts
        return parse_direct_answer(model, url, *client.call("call", service, url, headers, body))

    def before_send(request: Any, **_: Any) -> Any:
        body = request.body
        if hasattr(body, "read"):
            body = body.read()
        if isinstance(body, str):
            body = body.encode("utf-8")
        headers = {k: v.decode() if isinstance(v, bytes) else str(v) for k, v in request.headers.items()}
        status, response_headers, response_body = client.call("send", request.method, request.url, headers, body)
        return AWSResponse(request.url, status, response_headers, MockRawResponse(response_body))  # type: ignore[arg-type]

    BUILTIN_HANDLERS.append(("before-call.dynamodb", before_call, REGISTER_LAST))
    BUILTIN_HANDLERS.append(("before-call.dynamodbstreams", before_call, REGISTER_LAST))
    BUILTIN_HANDLERS.append(("before-send", before_send, REGISTER_LAST))


class _ForwardedOutbox(collections.deque):  # type: ignore[type-arg]
    """``chalicelib.notify.preview``'s messages, sent to the main process (which serves ``/dev/outbox``)."""

    def __init__(self, client: EngineClient) -> None:
        super().__init__(maxlen=1)
        self.client = client

    def appendleft(self, message: Any) -> None:
        with contextlib.suppress(Exception):  # a preview is a convenience; delivery already happened
            self.client.call("preview", message)


def _die_with_parent(parent: int) -> None:
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # the parent died before prctl
        os._exit(1)


def child_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="the local run's stream consumer process (started by the run)")
    parser.add_argument("--function", default="table_stream")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--region", default="eu-central-1")
    args = parser.parse_args(argv)
    from infra.local_run import bound_malloc_arenas, raise_gc_threshold

    bound_malloc_arenas()
    raise_gc_threshold()
    address, key = os.environ.pop(SOCKET_ENV), bytes.fromhex(os.environ.pop(KEY_ENV))
    _die_with_parent(int(os.environ.pop(PARENT_ENV, "0") or 0))
    client = EngineClient(address, key)
    install_client_hooks(client)

    from app import app
    from chalicelib.notify import preview, sources
    from infra.local_stream import StreamPoller

    preview._messages = _ForwardedOutbox(client)  # type: ignore[assignment]
    sources.outcome_listeners.append(lambda outcome: print(outcome.line(), flush=True))
    poller = StreamPoller(app.handler_map[args.function], region=args.region, batch_size=args.batch_size,
                          function_name=args.function, positions=RemotePositions(client),
                          log=lambda line: print(line, flush=True))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the run stops us (SIGTERM) in order
    signal.signal(signal.SIGTERM, lambda *_: poller._stop.set())
    while not poller._stop.wait(0.2):
        try:
            poller.poll_once()
        except EngineError as exc:
            if "EOFError" in str(exc) or poller._stop.is_set():
                break
            print(f"stream poller error: {exc}", flush=True)
        except (EOFError, ConnectionError, OSError):
            return 1  # the main process is gone
        except Exception:
            print(f"stream poller error:\n{traceback.format_exc()}", flush=True)
    return 0


if __name__ == "__main__":
    code = child_main(sys.argv[1:])
    sys.stdout.flush()
    os._exit(code)  # no interpreter teardown (the notification pools' joins): the run is waiting
