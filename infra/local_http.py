#!/usr/bin/env python3
"""The local run's HTTP intake in a child process: the main process keeps moto (and the schedules) only.

With the embedded moto, ``python3 infra/dev.py run`` serves the API (Chalice's local server and the app's
request handling) from this child unless ``--http-in-main`` (the earlier layout). The main process binds
the listening socket and hands it over (so connections wait in its backlog while the child starts or
restarts, and none is refused); the child's botocore calls reach the main process's moto over the same
Unix socket as the stream consumer process's (``infra/local_consumers.py``: ``EngineServer``/
``EngineClient``), each DynamoDB request under the main process's engine lock. The stream back-pressure
asks the main process how far behind the consumers are; ``GET /dev/outbox`` reads the rendered
notifications the main process keeps.

A child that dies is restarted (the request in progress is lost: its sender sees a closed socket and
retries; the app's writes are exactly-once); :data:`infra.local_consumers.MAX_RESTARTS` restarts within
:data:`infra.local_consumers.RESTART_WINDOW` seconds are allowed, the next death stops the run with an
error. On stop (SIGTERM from the run) it stops accepting, answers queued requests 503, finishes the
request in progress and exits.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from infra.local_consumers import (  # noqa: E402
    KEY_ENV,
    PARENT_ENV,
    SOCKET_ENV,
    ConsumerProcess,
    EngineClient,
    _die_with_parent,
    install_client_hooks,
)

LISTEN_FD_ENV = "SARAFAN_HTTP_FD"


class HttpProcess(ConsumerProcess):
    """The child serving the API on the main process's listening socket; restarted if it dies."""

    def __init__(self, server: Any, sock: Any, host: str, port: int, log: Any = print, on_fatal: Any = None) -> None:
        super().__init__(server, "http", 0, "", log=log, on_fatal=on_fatal)
        self.what = "HTTP process"
        self.sock, self.host, self.port = sock, host, port

    def _spawn(self) -> None:
        import subprocess

        fd = self.sock.fileno()
        env = {**os.environ, **self.server.env(), "PYTHONUNBUFFERED": "1", LISTEN_FD_ENV: str(fd)}
        command = [sys.executable, str(Path(__file__).resolve()), "--host", self.host, "--port", str(self.port)]
        self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                                        start_new_session=True, pass_fds=(fd,))


class _RemoteOutbox:
    """``chalicelib.notify.preview``'s messages, kept by the main process (``GET /dev/outbox``)."""

    def __init__(self, client: EngineClient) -> None:
        self.client = client

    def __iter__(self) -> Any:
        return iter(self.client.call("outbox"))

    def appendleft(self, message: Any) -> None:
        self.client.call("preview", message)

    def clear(self) -> None:
        self.client.call("outbox-clear")


def child_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="the local run's HTTP process (started by the run)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    from infra.local_run import DISPATCHER, StreamBackPressure, bound_malloc_arenas, raise_gc_threshold, start_http

    bound_malloc_arenas()
    raise_gc_threshold()
    address, key = os.environ.pop(SOCKET_ENV), bytes.fromhex(os.environ.pop(KEY_ENV))
    fd = int(os.environ.pop(LISTEN_FD_ENV))
    _die_with_parent(int(os.environ.pop(PARENT_ENV, "0") or 0))
    client = EngineClient(address, key)
    install_client_hooks(client)

    from app import app
    from chalicelib.notify import preview

    preview._messages = _RemoteOutbox(client)  # type: ignore[assignment]
    DISPATCHER.gate = StreamBackPressure(backlog=lambda: client.call("backlog"))
    server, thread = start_http(app, args.host, args.port, listen_fd=fd)
    stop = threading.Event()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the run stops us (SIGTERM) in order
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    while not stop.wait(0.2):
        if not thread.is_alive():
            return 1
    DISPATCHER.stop()  # queued requests: 503 (nothing of them processed)
    server.server.shutdown()
    server.server.server_close()
    if not DISPATCHER.drain(4.0):
        print("a request was still running at the stop deadline", flush=True)
    return 0


if __name__ == "__main__":
    code = child_main(sys.argv[1:])
    sys.stdout.flush()
    os._exit(code)
