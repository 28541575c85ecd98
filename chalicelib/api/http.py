"""HTTP plumbing shared by every blueprint: input extraction, auth, and the one
place where domain errors become HTTP responses.

A view is ``def view(req: ApiRequest, **path_params)``: it extracts its input
from ``req``, calls one service and returns a dict (200) or :func:`respond`.

One contract per route: what ``ApiBlueprint.endpoint`` declares is what runs. Before the view,
``auth=`` is enforced (``key``/``operator``/``publishable``: the caller's key is checked, a
``{program_id}`` in the path must be the caller's program, ``operator`` needs the operator key)
and a ``request_schema=`` is validated (``req.body`` is the validated JSON; ``body="raw"`` for the
few routes whose body a domain parser reads after another check, e.g. the webhook signature). A
route that declares no schema cannot read a body. ``tests/functional/test_route_contracts.py``
checks every route against its declaration.
"""

from __future__ import annotations

import base64
import binascii
import gc
import json
import re
import time
import uuid
from collections.abc import Callable
from functools import cached_property, wraps
from typing import Any
from urllib.parse import quote

from chalice import Blueprint, Response
from chalice.app import Request

from chalicelib.api.openapi_registry import Operation, register
from chalicelib.domain import safe_json
from chalicelib.domain.errors import (
    BadRequest,
    DomainError,
    PayloadTooLarge,
    RateLimited,
    ServiceUnavailable,
    UnsupportedMediaType,
)
from chalicelib.domain.validation import validate
from chalicelib.logs import get_logger, request_id_var
from chalicelib.services import ports
from chalicelib.services.auth import Principal, authenticate
from chalicelib.services.ports import Ports

MAX_BODY_BYTES = 256 * 1024
#: Longest query parameter value and path parameter accepted (longer: 400, never a store error).
MAX_QUERY_CHARS = 1024
MAX_PATH_PARAM_CHARS = 256
JSON_HEADERS = {"Content-Type": "application/json"}
log = get_logger("sarafan.http")


def respond(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    text = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate stored by an older version: escape it, never a 500
        text = json.dumps(body, separators=(",", ":"))
    return Response(
        body=text,
        status_code=status,
        headers={**JSON_HEADERS, **(headers or {})},
    )


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details if details is not None else {}}}


def error_response(err: DomainError) -> Response:
    headers = {}
    if isinstance(err, RateLimited | ServiceUnavailable) and err.retry_after_seconds is not None:
        headers["Retry-After"] = str(err.retry_after_seconds)
    return respond(error_body(err.code, err.message, err.details), err.status, headers)


#: ``(method, route)`` of every route that read a body it does not declare (``request_schema=``): a
#: programming error, kept working for compatibility but logged, and failed by the route contract test.
UNDECLARED_BODY_READS: set[tuple[str, str]] = set()


def _undeclared_read(req: ApiRequest) -> None:
    route = (str(req.request.method), str(req.request.path))  # the route template, e.g. /v1/programs/{program_id}
    if route not in UNDECLARED_BODY_READS:
        log.warning("route read a body it does not declare", extra={"method": route[0], "route": route[1]})
    UNDECLARED_BODY_READS.add(route)


class ApiRequest:
    """What a view may read from the request. Parsing is lazy and errors are domain errors."""

    def __init__(self, request: Request, auth: str = "key", body_mode: str = "raw") -> None:
        self._request = request
        self._auth = auth
        self._body_mode = body_mode
        #: The body validated against the route's ``request_schema`` (``body="validate"`` routes).
        self.body: Any = None
        #: Per-request state a blueprint's response hook may use (e.g. the landing page's program).
        self.context: dict[str, Any] = {}

    @cached_property
    def headers(self) -> dict[str, str]:
        return {k.lower(): v for k, v in (self._request.headers or {}).items()}

    @cached_property
    def principal(self) -> Principal:
        principal = authenticate(self.headers, self.ports)
        if principal.kind == "publishable" and self._auth != "publishable":
            # Publishable keys are embedded in web pages: only the landing endpoints accept them.
            principal.require_server_key()
        return principal

    @property
    def raw_body(self) -> bytes:
        body = self._request.raw_body or b""
        if isinstance(body, str):
            body = body.encode("utf-8")
        if len(body) > MAX_BODY_BYTES:
            raise PayloadTooLarge(f"Request body exceeds {MAX_BODY_BYTES} bytes", details={"limit": MAX_BODY_BYTES})
        return body

    def json(self) -> Any:
        """The JSON body (must be an object); empty body means ``{}``.

        Read once through :func:`chalicelib.domain.safe_json.loads`: nesting, number,
        string and duplicate-key limits are answered here with a 400 naming the path.
        A route that declares no ``request_schema`` should not read a body: the read still works
        (so an undeclared route keeps working) but is recorded in :data:`UNDECLARED_BODY_READS`,
        which ``tests/functional/test_route_contracts.py`` requires to stay empty.
        """
        if self._body_mode == "none":
            _undeclared_read(self)
        return self._json

    @cached_property
    def _json(self) -> Any:
        raw = self.raw_body
        content_type = self.headers.get("content-type", "application/json").split(";")[0].strip().lower()
        if raw and content_type != "application/json":
            raise UnsupportedMediaType("Send the body as application/json",
                                       details={"content_type": content_type[:100]})
        if not raw.strip():
            return {}
        return safe_json.loads(raw)

    def form(self, *, multi: bool = False) -> Any:
        """An ``application/x-www-form-urlencoded`` body through :func:`safe_json.read_form`."""
        if self._body_mode == "none":
            _undeclared_read(self)
        return safe_json.read_form(self.raw_body, multi=multi)

    def query(self, name: str, default: str | None = None) -> str | None:
        """A query parameter: at most ``MAX_QUERY_CHARS`` characters, no control characters (else 400)."""
        params: dict[str, Any] = dict(self._request.query_params or {})
        value = params.get(name)
        if value is None:
            return default
        text = str(value)
        if len(text) > MAX_QUERY_CHARS or safe_json.has_control_characters(text):
            raise BadRequest(f"Query parameter '{name}' is too long or contains control characters",
                             code="invalid_query", details={"parameter": name, "max_length": MAX_QUERY_CHARS})
        return text

    def int_query(self, name: str, default: int, minimum: int, maximum: int) -> int:
        raw = self.query(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            value = minimum - 1
        if not minimum <= value <= maximum:
            raise BadRequest(f"'{name}' must be an integer from {minimum} to {maximum}", code="invalid_query",
                             details={"parameter": name})
        return value

    @property
    def source_ip(self) -> str:
        context: dict[str, Any] = dict(self._request.context or {})
        identity = context.get("identity") or {}
        return str(identity.get("sourceIp") or "0.0.0.0")

    @property
    def request(self) -> Request:
        return self._request

    @property
    def ports(self) -> Ports:
        """The ports the app was wired with (``app.py``); services take them as an argument."""
        return ports.current()


class _LazyModule:
    """Stands for a module until an attribute is first read, then imports it (see :func:`lazy_module`)."""

    def __init__(self, name: str) -> None:
        self._lazy_name = name
        self._lazy_module: Any = None

    def __getattr__(self, attribute: str) -> Any:
        module = self._lazy_module
        if module is None:
            import importlib

            module = self._lazy_module = importlib.import_module(self._lazy_name)
        return getattr(module, attribute)  # read through every time: a patched attribute is seen

    def __repr__(self) -> str:
        return f"<lazy module {self._lazy_name!r}>"


def lazy_module(name: str) -> Any:
    """The module ``name``, imported when one of its attributes is first read.

    A cold start serves one route, but ``app.py`` declares them all: a blueprint whose services only its
    views call imports them this way, under an ``if TYPE_CHECKING:`` import of the same name so type checks
    see the module itself. What the declaration needs (a ``request_schema``) is passed as a function
    (``request_schema=lambda: service.SCHEMA``). ``bench/cold_start.py`` measures the first webhook.
    """
    return _LazyModule(name)


def encode_cursor(last_key: dict[str, Any] | None) -> str | None:
    if not last_key:
        return None
    flat = {k: (v.get("S") if isinstance(v, dict) else v) for k, v in last_key.items()}
    return base64.urlsafe_b64encode(json.dumps(flat, separators=(",", ":")).encode()).decode().rstrip("=")


#: The key attributes of a page's last item, by the partition attribute its query reads: a table query's
#: cursor carries the table keys, an index query's the table keys and the index's (store/db.py).
_CURSOR_KEYS = {
    "PK": frozenset({"PK", "SK"}),
    "GSI1PK": frozenset({"PK", "SK", "GSI1PK", "GSI1SK"}),
    "GSI2PK": frozenset({"PK", "SK", "GSI2PK", "GSI2SK"}),
}


def decode_cursor(raw: str | None, partition: tuple[str, str]) -> dict[str, Any] | None:
    """Decode a paging cursor, refusing one that points outside ``partition`` (``(attribute, value)``).

    ``attribute`` names the table (``PK``) or the index (``GSI1PK``, ``GSI2PK``) the query reads; the cursor
    must carry exactly that query's key attributes. Without the check a crafted cursor could page through
    another tenant's partition, or make DynamoDB reject the query (a 500 caused by client input).
    """
    if not raw:
        return None
    try:
        data = safe_json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except (binascii.Error, ValueError, BadRequest):
        data = None
    attribute, value = partition
    if (
        not isinstance(data, dict)
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items())
        or data.get(attribute) != value
        or set(data) != _CURSOR_KEYS[attribute]
    ):
        raise BadRequest("Invalid cursor", code="invalid_cursor")
    return {k: {"S": v} for k, v in data.items()}


def check_path_params(params: dict[str, Any]) -> None:
    """Path parameters are ids and codes: bounded and single-line, else a 400 naming the parameter."""
    for name, value in params.items():
        if isinstance(value, str) and (len(value) > MAX_PATH_PARAM_CHARS or safe_json.has_control_characters(value)):
            raise BadRequest(f"Path parameter '{name}' is too long or contains control characters",
                             code="invalid_path", details={"parameter": name, "max_length": MAX_PATH_PARAM_CHARS})


def _enforce(req: ApiRequest, op: Operation, params: dict[str, Any]) -> None:
    """The route's declared contract, before the view runs: auth first, then the body."""
    if op.auth in ("key", "operator", "publishable"):
        principal = req.principal  # 401 without a valid key; 403 for a publishable key off the landing routes
        if "program_id" in params:
            principal.require_program(params["program_id"])  # another tenant's program does not exist (404)
        if op.auth == "operator":
            principal.require_operator()
    if op.request_schema is not None and op.body_mode == "validate":
        schema = op.request_schema() if callable(op.request_schema) else op.request_schema
        req.body = validate(schema, req.json())


def _handle_errors(view: Callable[..., Any], op: Operation,
                   finish: Callable[[ApiRequest, Response], None] | None = None,
                   check_path: bool = True) -> Callable[..., Any]:
    @wraps(view)
    def handler(req: ApiRequest, **params: Any) -> Response:
        response = _run(req, params)
        if finish is not None:
            finish(req, response)  # e.g. landing CORS headers, on successes and errors alike
        return response

    def _run(req: ApiRequest, params: dict[str, Any]) -> Response:
        try:
            if check_path:
                check_path_params(params)
            _enforce(req, op, params)
            result = view(req, **params)
        except DomainError as err:
            return error_response(err)
        except Exception as exc:  # the one place an unexpected failure becomes a 500
            from pynamodb.exceptions import PynamoDBException

            if isinstance(exc, PynamoDBException):
                from chalicelib.store.transact import map_store_error

                mapped = map_store_error(exc)
                if isinstance(mapped, DomainError):
                    return error_response(mapped)
            log.exception("unhandled error", extra={"error_type": type(exc).__name__})
            return respond(error_body("internal_error", "An internal error occurred",
                                      {"request_id": request_id_var.get()}), 500)
        return result if isinstance(result, Response) else respond(result)

    return handler


class ApiBlueprint(Blueprint):
    """A Chalice blueprint whose routes are documented and error-mapped by construction."""

    def endpoint(
        self,
        path: str,
        method: str,
        *,
        summary: str,
        tag: str,
        auth: str = "key",
        request_schema: dict[str, Any] | Callable[[], dict[str, Any]] | None = None,
        body: str | None = None,
        content_types: list[str] | None = None,
        success_status: int = 200,
        description: str = "",
        query_params: tuple[tuple[str, str], ...] = (),
        cors: Any = None,
        finish: Callable[[ApiRequest, Response], None] | None = None,
        strict_path: bool = True,
        response_schema: dict[str, Any] | Callable[[], dict[str, Any]] | None = None,
        responses: dict[int, str] | None = None,
        request_example: Any = None,
        headers: tuple[tuple[str, str], ...] = (),
        response_content_types: tuple[str, ...] = ("application/json",),
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Declare a route and its contract (all keyword arguments but ``summary`` and ``tag`` optional).

        ``auth``: ``"key"`` (default: a partner or operator key; a ``{program_id}`` in the path must be the
        caller's), ``"operator"``, ``"publishable"``, ``"signature"`` or ``"none"``; enforced before the view.
        ``body``: ``"validate"`` (default with a ``request_schema``: ``req.body`` is the validated JSON),
        ``"raw"`` (documented; a domain parser reads it after another check) or ``"none"`` (default without a
        schema: the view should not read a body; a read still works but fails the route contract test).
        ``finish(req, response)`` runs on every response of the route, errors included.
        ``strict_path=False`` lets a view take odd path parameters itself (``/r/{code}`` redirects).
        ``response_schema``: the JSON Schema of the success body (or a function returning it); without it
        the document falls back to ``api.response_schemas.BY_ROUTE``, and a route with neither still works
        (``tests/functional/test_openapi.py`` lists it). ``responses`` adds route-specific statuses
        (``{202: "…", 409: "…"}``) to those derived from the declaration (``api.openapi.error_statuses``: a
        route declares only the errors it can answer); ``request_example`` and ``headers``
        (required request headers, ``(name, description)``) go into the document; ``response_content_types``
        names the success body's media types when it is not (only) JSON (``text/csv``, ``text/html``); every one of
        ``content_types`` is documented as a request body media type. The functional suite
        fails on any status or body the document does not declare (``tests/openapi_check.py``)."""
        body_mode = body or ("validate" if request_schema is not None else "none")
        if body_mode not in ("validate", "raw", "none") or (body_mode != "none") != (request_schema is not None):
            raise ValueError(f"{method} {path}: body={body_mode!r} does not match its request_schema")

        def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
            op = Operation(path, method, summary, tag, auth, request_schema,
                           (content_types or ["application/json"])[0], success_status, description, query_params,
                           body_mode=body_mode, view=view, response_schema=response_schema,
                           responses=dict(responses or {}), request_example=request_example, headers=headers,
                           response_content_types=response_content_types,
                           request_content_types=tuple(content_types or ["application/json"]))
            register(op)
            handler = _handle_errors(view, op, finish, strict_path)

            @wraps(view)
            def route_view(**params: Any) -> Response:
                return handler(ApiRequest(self.current_request, auth, body_mode), **params)

            options: dict[str, Any] = {"methods": [method]}
            if content_types:
                options["content_types"] = content_types
            elif body_mode == "none":
                # A route that reads no body does not care what a client calls it: Chalice would answer
                # 415 to a GET sent with, say, ``Content-Type: text/plain``, a status no such route declares.
                options["content_types"] = ["*/*"]
            if cors is not None:
                options["cors"] = cors
            self.route(path, **options)(route_view)
            return view

        return decorator


#: Until the container's first HTTP request is served (see :func:`http_middleware`).
_first_request = True
#: Objects the first request may allocate before the garbage collector runs (its first-generation threshold,
#: 700 by default). The first ``order.paid`` webhook allocates about 40,000 (the DynamoDB client and its
#: service model, the route's modules): no collection; a heavier first request is still collected.
FIRST_REQUEST_GC_THRESHOLD = 100_000


def http_middleware(event: Request, get_response: Callable[[Request], Response]) -> Response:
    """Request id, access log, and Chalice's own error bodies rewritten to our error format.

    A container's first request runs with the garbage collector's threshold raised to
    :data:`FIRST_REQUEST_GC_THRESHOLD`, and what exists after it is frozen (``gc.freeze``: never scanned
    again) before the threshold is restored, as ``app.py`` does for the imports: that request imports its
    route's modules and builds the DynamoDB client and its service model, kept for the container's life, and
    collections while it ran only re-scanned them (~20 M instructions of the first webhook). What it leaves
    as cyclic garbage stays frozen: ~40 KB for the first webhook, at most what fits under the threshold.
    """
    global _first_request
    if not _first_request:
        return _serve(event, get_response)
    _first_request = False
    thresholds = gc.get_threshold()
    gc.set_threshold(FIRST_REQUEST_GC_THRESHOLD, *thresholds[1:])
    try:
        return _serve(event, get_response)
    finally:
        gc.freeze()
        gc.set_threshold(*thresholds)


def _serve(event: Request, get_response: Callable[[Request], Response]) -> Response:
    context = event.context or {}
    request_id = str(context.get("requestId") or uuid.uuid4())
    token = request_id_var.set(request_id)
    started = time.perf_counter()
    try:
        response = get_response(event)
        response = _normalise_framework_error(response)
        response.headers["X-Request-Id"] = request_id
        _ascii_headers(response)
        log.info(
            "request",
            extra={
                "method": event.method,
                "route": context.get("resourcePath"),
                "status": response.status_code,
                "duration_ms": round((time.perf_counter() - started) * 1000, 1),
            },
        )
        return response
    finally:
        request_id_var.reset(token)


_HEADER_SAFE = re.compile(r"^[\x20-\x7e]*$")


def _ascii_headers(response: Response) -> None:
    """Every header value written is printable ASCII: anything else is percent-encoded (and logged),
    so no stored or echoed value can split a header or make the server drop the connection."""
    for name, value in list(response.headers.items()):
        values = value if isinstance(value, list) else [value]
        if all(isinstance(v, str) and _HEADER_SAFE.match(v) for v in values):
            continue
        log.warning("non-ASCII header value encoded", extra={"header": name})
        fixed = [quote(str(v), safe="".join(chr(c) for c in range(0x21, 0x7F))) for v in values]
        response.headers[name] = fixed if isinstance(value, list) else fixed[0]


_FRAMEWORK_CODES = {400: "bad_request", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
                    413: "payload_too_large", 415: "unsupported_media_type"}


def _normalise_framework_error(response: Response) -> Response:
    """Chalice answers some requests itself (unsupported content type, bad JSON) as ``{"Code", "Message"}``."""
    body = response.body
    if response.status_code < 400 or not isinstance(body, dict) or "Code" not in body:
        return response
    code = _FRAMEWORK_CODES.get(response.status_code, "internal_error" if response.status_code >= 500 else "bad_request")
    message = str(body.get("Message") or code)
    if response.status_code >= 500:
        message = "An internal error occurred"
    return respond(error_body(code, message), response.status_code)
