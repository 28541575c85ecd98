"""Per client IP per minute: one conditional ``UpdateItem`` on a counter item keyed by a salted HMAC
of the IP (never the IP itself) that DynamoDB's TTL deletes afterwards. Over the limit: 429 with
``Retry-After``."""

from __future__ import annotations

import hashlib
import hmac
import os
import time

from chalicelib.domain.errors import RateLimited
from chalicelib.services import ports

DEFAULT_REDIRECTS_PER_MINUTE = 120


def client_fingerprint(source_ip: str, deps: ports.Ports | None = None) -> str:
    """Salted (HMAC with a key derived from the master secret) hash of a client IP: never the IP."""
    key = (deps or ports.current()).secrets.derive_key("client-ip")
    return hmac.new(key, source_ip.encode("utf-8"), hashlib.sha256).hexdigest()[:32]


def rate_limit(scope: str, source_ip: str, per_minute: int, deps: ports.Ports | None = None) -> None:
    deps = deps or ports.current()
    now = deps.clock.now().timestamp()
    window_start = int(now // 60) * 60
    window = time.strftime("%Y%m%d%H%M", time.gmtime(window_start))
    fingerprint = client_fingerprint(source_ip, deps)
    if not deps.rate_limiter.take(f"{scope}#{fingerprint}", window, per_minute, window_start + 120):
        retry_after = max(1, int(window_start + 60 - now + 0.999))
        raise RateLimited("Too many requests; retry later", retry_after_seconds=retry_after,
                          details={"limit_per_minute": per_minute})


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    return int(raw) if raw.isdigit() and int(raw) > 0 else default


def redirect_rate_limit(source_ip: str) -> None:
    rate_limit("redirect", source_ip, env_int("SARAFAN_REDIRECT_RATE_PER_MINUTE", DEFAULT_REDIRECTS_PER_MINUTE))
