"""A small in-process TTL cache for configuration records (programs, partners, keys).

A warm Lambda serves many requests; re-reading the same program and partner on
every webhook would add a DynamoDB round trip per request. Entries live for
``config_cache_seconds`` (default 30 s), which bounds how long a revoked key or
a changed program setting can still be seen by a warm instance (documented in docs/tenancy.md).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_lock = threading.Lock()
_entries: dict[tuple[str, str], tuple[float, Any]] = {}


def cached(namespace: str, key: str, ttl_seconds: float, load: Callable[[], T]) -> T:
    now = time.monotonic()
    hit = _entries.get((namespace, key))
    if hit is not None and hit[0] > now:
        return hit[1]  # type: ignore[no-any-return]
    value = load()
    with _lock:
        _entries[(namespace, key)] = (now + ttl_seconds, value)
    return value


def invalidate(namespace: str, key: str) -> None:
    with _lock:
        _entries.pop((namespace, key), None)


def clear() -> None:
    with _lock:
        _entries.clear()


def peek(namespace: str, key: str) -> Any:
    """The live cached value, or None (nothing is loaded)."""
    hit = _entries.get((namespace, key))
    return hit[1] if hit is not None and hit[0] > time.monotonic() else None


def put(namespace: str, key: str, ttl_seconds: float, value: Any) -> None:
    with _lock:
        _entries[(namespace, key)] = (time.monotonic() + ttl_seconds, value)
