"""CORS per program, and the program a landing request acts for.

A response carries ``Access-Control-Allow-Origin`` only for one of the program's
``allowed_origins`` (always with ``Vary: Origin``), and a request whose ``Origin`` is not allowed
is refused (403) before it changes anything. A preflight carries no key, so it cannot name the
program; it is answered for any origin some program allows (cached), and the real request is then
checked against the key's own program.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from chalicelib.domain.errors import Forbidden
from chalicelib.services import ports
from chalicelib.services.auth import Principal

if TYPE_CHECKING:
    from chalicelib.store.tenancy import ProgramItem

PREFLIGHT_ALLOW_HEADERS = "Content-Type, X-Publishable-Key, Authorization"
EXPOSE_HEADERS = "Retry-After, X-Request-Id"


def landing_program(principal: Principal, deps: ports.Ports | None = None) -> ProgramItem:
    """The program a landing request acts for: the key's own (publishable or partner key)."""
    if not principal.program_id:
        raise Forbidden("Landing endpoints need the program's publishable key", code="program_key_required")
    return (deps or ports.current()).programs.get(principal.program_id)


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


def preflight_headers(origin: str | None, methods: str, deps: ports.Ports | None = None) -> dict[str, str]:
    """Answer to ``OPTIONS``: allowed only for an origin some program lists (see module docstring)."""
    wanted = _origin(origin)
    if not origin or wanted not in {_origin(o) for o in (deps or ports.current()).programs.allowed_origins()}:
        return {"Vary": "Origin"}
    return {
        "Vary": "Origin",
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Methods": methods,
        "Access-Control-Allow-Headers": PREFLIGHT_ALLOW_HEADERS,
        "Access-Control-Max-Age": "600",
    }
