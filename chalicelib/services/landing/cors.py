"""CORS per program, and the program a landing request acts for.

A response carries ``Access-Control-Allow-Origin`` only for one of the program's
``allowed_origins`` (always with ``Vary: Origin``), and a request whose ``Origin`` is not allowed
is refused (403) before it changes anything. A preflight carries no key, so it cannot name the
program; it is answered for any origin some program allows (cached), and the real request is then
checked against the key's own program.
"""

from __future__ import annotations

from chalicelib.config import get_settings
from chalicelib.domain.errors import Forbidden
from chalicelib.services.auth import Principal
from chalicelib.store import cache, tenancy_repo
from chalicelib.store.tenancy import ProgramItem

PREFLIGHT_ALLOW_HEADERS = "Content-Type, X-Publishable-Key, Authorization"
EXPOSE_HEADERS = "Retry-After, X-Request-Id"


def landing_program(principal: Principal) -> ProgramItem:
    """The program a landing request acts for: the key's own (publishable or partner key)."""
    if not principal.program_id:
        raise Forbidden("Landing endpoints need the program's publishable key", code="program_key_required")
    return tenancy_repo.get_program(principal.program_id)


def _origin(value: str | None) -> str | None:
    value = (value or "").strip().rstrip("/").lower()
    return value or None


def origin_allowed(program: ProgramItem, origin: str | None) -> bool:
    wanted = _origin(origin)
    return wanted is not None and wanted in {_origin(o) for o in program.allowed_origins or []}


def check_origin(program: ProgramItem, origin: str | None) -> None:
    """Requests without ``Origin`` come from servers (no CORS); a browser's must be allowed."""
    if origin is not None and not origin_allowed(program, origin):
        raise Forbidden("This origin is not allowed for the program", code="origin_not_allowed",
                        details={"origin": origin[:200]})


def cors_headers(origin: str | None, allowed: bool) -> dict[str, str]:
    headers = {"Vary": "Origin"}
    if origin and allowed:
        headers["Access-Control-Allow-Origin"] = origin
        headers["Access-Control-Expose-Headers"] = EXPOSE_HEADERS
    return headers


def _all_allowed_origins() -> frozenset[str]:
    def load() -> frozenset[str]:
        found: set[str] = set()
        cursor = None
        for _ in range(100):  # 10 000 programs; a coalition deployment has tens
            items, cursor = tenancy_repo.list_programs(100, cursor)
            found.update(o for p in items for o in (_origin(x) for x in p.allowed_origins or []) if o)
            if not cursor:
                break
        return frozenset(found)

    return cache.cached("landing", "allowed_origins", get_settings().config_cache_seconds, load)


def preflight_headers(origin: str | None, methods: str) -> dict[str, str]:
    """Answer to ``OPTIONS``: allowed only for an origin some program lists (see module docstring)."""
    wanted = _origin(origin)
    if not origin or wanted not in _all_allowed_origins():
        return {"Vary": "Origin"}
    return {
        "Vary": "Origin",
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Methods": methods,
        "Access-Control-Allow-Headers": PREFLIGHT_ALLOW_HEADERS,
        "Access-Control-Max-Age": "600",
    }
