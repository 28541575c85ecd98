"""Who is calling: API keys → a :class:`Principal` that carries the tenant.

Keys are random 256-bit tokens with a readable kind prefix. Only their SHA-256
is stored (a fast hash is right here: the keys are high-entropy, not passwords),
so a table dump cannot be replayed. The tenant (program, partner) always comes
from the key record, never from the request body.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING

from chalicelib.domain.errors import Forbidden, NotFound, Unauthorized

if TYPE_CHECKING:
    from chalicelib.services.ports import Ports

OPERATOR_PREFIX = "srf_op_"
PARTNER_PREFIX = "srf_pk_"
PUBLISHABLE_PREFIX = "srf_pub_"


@dataclass(frozen=True)
class Principal:
    kind: str  # "operator" | "partner" | "publishable"
    program_id: str | None = None
    partner_id: str | None = None
    key_id: str | None = None  # a partner key's ``key_id``; an operator key's :func:`operator_key_id`

    @property
    def is_operator(self) -> bool:
        return self.kind == "operator"

    def require_program(self, program_id: str) -> None:
        """Anything outside the caller's program does not exist for them (404, not 403: no probing)."""
        if not self.is_operator and self.program_id != program_id:
            raise NotFound("Program not found", details={"program_id": program_id})

    def require_operator(self) -> None:
        if not self.is_operator:
            raise Forbidden("This action needs the operator key")

    def require_partner_scope(self, program_id: str, partner_id: str) -> None:
        """Operator, or the partner itself (a partner may not act for another partner of its program)."""
        self.require_program(program_id)
        if not self.is_operator and self.partner_id != partner_id:
            raise Forbidden("A partner key may only act for its own partner")

    def require_server_key(self) -> None:
        """Publishable keys live in browsers: they may only call the public landing endpoints."""
        if self.kind == "publishable":
            raise Forbidden("A publishable key cannot call this endpoint")


def new_key(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def operator_key_id(digest: str) -> str:
    """An operator key's id for audit records: ``op_`` and the first 12 hex digits of its SHA-256, the start of
    its entry in ``SARAFAN_OPERATOR_KEY_SHA256`` (names which configured key; the key cannot be derived from it)."""
    return "op_" + digest[:12]


def key_from_headers(headers: dict[str, str]) -> str | None:
    auth = headers.get("authorization") or ""
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip() or None
    # Landing pages send their browser-safe key as ``X-Publishable-Key``.
    return (headers.get("x-api-key") or headers.get("x-publishable-key") or "").strip() or None


def authenticate(headers: dict[str, str], deps: Ports | None = None) -> Principal:
    key = key_from_headers(headers)
    if not key:
        raise Unauthorized("Missing API key: send 'Authorization: Bearer <key>'", code="missing_api_key")
    digest = hash_key(key)
    if key.startswith(OPERATOR_PREFIX):
        from chalicelib.config import get_settings

        if any(hmac.compare_digest(digest, h) for h in get_settings().operator_key_hashes):
            return Principal(kind="operator", key_id=operator_key_id(digest))
        raise Unauthorized("Invalid API key", code="invalid_api_key")
    if not key.startswith((PARTNER_PREFIX, PUBLISHABLE_PREFIX)):
        raise Unauthorized("Invalid API key", code="invalid_api_key")
    from chalicelib.services import ports

    record = (deps or ports.current()).programs.api_key(digest)
    if record is None or record.revoked:
        raise Unauthorized("Invalid API key", code="invalid_api_key")
    return Principal(kind=record.kind, program_id=record.program_id, partner_id=record.partner_id, key_id=record.key_id)
