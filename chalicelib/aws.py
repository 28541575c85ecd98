"""The one place that builds AWS clients.

Clients are created on first use, never at import time (cold start), and share
one botocore session. Endpoint, region and credentials come from the standard
AWS environment (``AWS_ENDPOINT_URL``, ``AWS_REGION``...), so the same code talks
to the embedded moto server, LocalStack, DynamoDB Local or real AWS.
DynamoDB is reached through PynamoDB (see ``chalicelib.store.db``), not from here.
"""

from __future__ import annotations

import threading
from typing import Any

_lock = threading.Lock()
_session: Any = None
_clients: dict[str, Any] = {}


def _botocore_session() -> Any:
    global _session
    if _session is None:
        import botocore.session  # deferred: importing botocore costs cold-start time

        _session = botocore.session.get_session()
    return _session


def client(service: str) -> Any:
    """A cached low-level client for ``service`` (``ses``, ``sns``, ``ssm``...)."""
    cached = _clients.get(service)
    if cached is not None:
        return cached
    # botocore client creation is not thread safe; the lock also stops two
    # threads paying the creation cost twice.
    with _lock:
        if service not in _clients:
            from chalicelib.config import get_settings

            _clients[service] = _botocore_session().create_client(service, region_name=get_settings().region)
        return _clients[service]


def reset_clients() -> None:
    """Drop cached clients (tests switch between emulators)."""
    global _session
    with _lock:
        _clients.clear()
        _session = None
