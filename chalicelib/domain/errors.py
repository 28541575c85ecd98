"""Domain errors: raised anywhere below the HTTP layer, mapped to HTTP in one place.

Every error carries a stable machine-readable ``code``, a human ``message`` and
``details`` (JSON-serialisable). ``chalicelib.api.http`` turns them into
``{"error": {"code", "message", "details"}}`` with the status below.
Nothing here imports boto3, pynamodb or chalice.
"""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, details: Any = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details if details is not None else {}
        if code is not None:
            self.code = code


class BadRequest(DomainError):
    """Malformed request: bad JSON, wrong content type, unreadable body."""

    status = 400
    code = "bad_request"


class ValidationFailed(DomainError):
    """Well-formed but semantically invalid input (schema violation, bad email...).

    ``details`` should be ``{"errors": [{"path": "$.a.b", "message": "..."}]}``.
    """

    status = 422
    code = "validation_failed"


class Unauthorized(DomainError):
    """Missing/bad credentials or a forged/stale webhook signature."""

    status = 401
    code = "unauthorized"


class Forbidden(DomainError):
    status = 403
    code = "forbidden"


class NotFound(DomainError):
    status = 404
    code = "not_found"


class Conflict(DomainError):
    status = 409
    code = "conflict"


class PayloadTooLarge(DomainError):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(DomainError):
    status = 415
    code = "unsupported_media_type"


class RateLimited(DomainError):
    status = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after_seconds: int, details: Any = None) -> None:
        super().__init__(message, details=details)
        self.retry_after_seconds = retry_after_seconds


class ServiceUnavailable(DomainError):
    """A dependency (DynamoDB throttling, transaction contention) failed transiently; ``retry_after_seconds``:
    when to try again, if known (the ``Retry-After`` header)."""

    status = 503
    code = "service_unavailable"

    def __init__(self, message: str, *, details: Any = None, code: str | None = None,
                 retry_after_seconds: int | None = None) -> None:
        super().__init__(message, details=details, code=code)
        self.retry_after_seconds = retry_after_seconds


def field_error(path: str, message: str) -> dict[str, str]:
    """One entry of ``details.errors``; ``path`` is a JSONPath like ``$.customer.email``."""
    return {"path": path, "message": message}


class MemberErased(Conflict):
    """A write that would attach personal data or a resolvable code to a member whose erasure has started
    (``erased_at`` on the profile, set by the transaction that starts the erasure: ``services.erasure``)."""

    code = "member_erased"

    def __init__(self, member_id: str) -> None:
        super().__init__("The member's personal data was erased; nothing can be attached to them again",
                         details={"member_id": member_id})
