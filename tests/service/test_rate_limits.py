"""Landing rate limits on the in-memory ports: windows follow the one clock; no IP is ever a key."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from chalicelib.domain.clock import ManualClock
from chalicelib.domain.errors import RateLimited
from chalicelib.services import ports
from chalicelib.services.landing.rate_limits import client_fingerprint, rate_limit
from chalicelib.store.fakes import FakeRateLimiter

NOW = datetime(2026, 11, 23, 10, 0, 15, tzinfo=UTC)


def test_the_limit_holds_per_window_and_resets_with_the_clock() -> None:
    deps = ports.fakes(NOW)
    for _ in range(3):
        rate_limit("invite#p1", "203.0.113.1", 3, deps)
    with pytest.raises(RateLimited) as limited:
        rate_limit("invite#p1", "203.0.113.1", 3, deps)
    assert limited.value.retry_after_seconds == 45  # the window ends at 10:01:00
    rate_limit("invite#p1", "203.0.113.2", 3, deps)  # another client
    rate_limit("offer#p1", "203.0.113.1", 3, deps)  # another scope
    assert isinstance(deps.clock, ManualClock)
    deps.clock.advance(seconds=45)
    rate_limit("invite#p1", "203.0.113.1", 3, deps)  # next window


def test_windows_are_keyed_by_a_salted_hash_never_the_ip() -> None:
    deps = ports.fakes(NOW)
    rate_limit("redirect", "198.51.100.23", 10, deps)
    assert isinstance(deps.rate_limiter, FakeRateLimiter)
    (scope, window), = deps.rate_limiter.hits
    assert "198.51.100.23" not in scope and scope == f"redirect#{client_fingerprint('198.51.100.23', deps)}"
    assert window == "202611231000"
    other = ports.fakes(NOW)
    other.secrets.master = b"another deployment"  # type: ignore[attr-defined]
    assert client_fingerprint("198.51.100.23", other) != client_fingerprint("198.51.100.23", deps)
