"""Route documentation collected as routes are declared (see ``ApiBlueprint.endpoint``).

Keeping the description next to the route means a route cannot exist without an
OpenAPI entry; a test checks ``app.routes`` against the generated document.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Operation:
    path: str
    method: str
    summary: str
    tag: str
    auth: str  # "operator" | "key" | "publishable" | "signature" | "none"
    #: The schema, or a function returning it (so a blueprint need not import a heavy module at cold start).
    request_schema: dict[str, Any] | Callable[[], dict[str, Any]] | None = None
    request_content_type: str = "application/json"
    success_status: int = 200
    description: str = ""
    query_params: tuple[tuple[str, str], ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)
    #: "validate" (the decorator validates the body against ``request_schema``), "raw" or "none".
    body_mode: str = "none"
    #: The view function (for the route contract test, which reads what the view reads); not documented.
    view: Callable[..., Any] | None = field(default=None, compare=False, repr=False)
    #: JSON Schema of the success body (or a function returning it); ``None`` = no body (e.g. a 302).
    response_schema: dict[str, Any] | Callable[[], dict[str, Any]] | None = None
    #: Route-specific error statuses beyond the common ones, with what they mean (e.g. ``{409: "Code taken"}``).
    responses: dict[int, str] = field(default_factory=dict)
    #: An example request body (shown in the document).
    request_example: Any = None
    #: Required request headers, ``(name, description)`` (e.g. the webhook signature headers).
    headers: tuple[tuple[str, str], ...] = ()
    #: Every media type the request body may have (``request_content_type`` is the first).
    request_content_types: tuple[str, ...] = ("application/json",)
    #: Media types of the success body (JSON ones get ``response_schema``, text ones a string).
    response_content_types: tuple[str, ...] = ("application/json",)


OPERATIONS: list[Operation] = []
#: Extra named schemas (``components.schemas``), e.g. the canonical event types.
SCHEMAS: dict[str, dict[str, Any]] = {}


def register(op: Operation) -> None:
    OPERATIONS.append(op)
