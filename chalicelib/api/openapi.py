"""The OpenAPI 3 document, generated from the operations the blueprints declared."""

from __future__ import annotations

import re
from typing import Any

from chalicelib.api.openapi_registry import OPERATIONS, SCHEMAS

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "details"],
            "properties": {
                "code": {"type": "string", "example": "validation_failed"},
                "message": {"type": "string"},
                "details": {"type": "object", "example": {"errors": [{"path": "$.name", "message": "is required"}]}},
            },
        }
    },
}

_SECURITY: dict[str, list[dict[str, list[str]]]] = {
    "operator": [{"bearerAuth": []}],
    "key": [{"bearerAuth": []}],
    "publishable": [{"publishableKey": []}],
    "signature": [],
    "none": [],
}
#: What each error status means; an operation declares only those it can really answer (``error_statuses``).
_ERROR_TEXT = {
    "400": "Malformed request (JSON, query parameter, path parameter, cursor)",
    "404": "Not found (or not visible to this key)",
    "409": "Conflicts with the current state (e.g. a code taken, a concurrent change)",
    "413": "Body too large",
    "415": "Unsupported content type",
    "422": "Validation failed; `details.errors` lists the JSON paths",
    "429": "Rate limited; see Retry-After",
    "503": "The data store is busy (throttling or contention), or the master secret cannot be read "
           "(`master_secret_unavailable`); safe to retry",
}
_AUTH_ERRORS = {
    "operator": {"401": "Missing or invalid key", "403": "This key may not do this (operator only)"},
    "key": {"401": "Missing or invalid key", "403": "This key may not do this (e.g. a publishable key, or "
                                                   "another partner's resource)"},
    "publishable": {"401": "Missing or invalid key", "403": "This key may not be used here"},
    "signature": {"401": "Missing, forged or stale signature"},
    "none": {},
}
#: Query parameters that only page (a bad value is a 400, never a 422).
_PAGING_QUERY = {"limit", "cursor"}


def error_statuses(op: Any) -> dict[str, str]:
    """The error statuses ``op`` can answer, derived from its declaration, plus its own (``responses=``,
    ``response_schemas.EXTRA_STATUSES``); ``response_schemas.NOT_STORED`` names the routes that touch
    neither DynamoDB nor the master secret (no 503).

    400: a path parameter (bounded, single-line), a query parameter or a body can be malformed;
    401/403: by its auth kind; 404: it looks up what its path names; 413/415: it reads a body;
    422: it validates a body, a non-paging query or, for a write, what its path names;
    409 and 429 only where the route declares them (a conditional write, a rate limit).
    """
    from chalicelib.api.response_schemas import EXTRA_STATUSES, NOT_ANSWERED, NOT_STORED

    route = (op.method.upper(), op.path)
    has_path = "{" in op.path
    has_body = op.request_schema is not None
    filters = {name for name, _ in op.query_params} - _PAGING_QUERY
    errors: dict[str, str] = {}
    if has_path or op.query_params or has_body:
        errors["400"] = _ERROR_TEXT["400"]
    errors.update(_AUTH_ERRORS[op.auth])
    if has_path:
        errors["404"] = _ERROR_TEXT["404"]
    if has_body:
        errors["413"] = _ERROR_TEXT["413"]
        errors["415"] = _ERROR_TEXT["415"]
    if has_body or filters or (has_path and op.method.upper() != "GET"):
        errors["422"] = _ERROR_TEXT["422"]
    if route not in NOT_STORED:
        errors["503"] = _ERROR_TEXT["503"]
    for code in NOT_ANSWERED.get(route, ()):
        errors.pop(str(code), None)
    extra = {**EXTRA_STATUSES.get(route, {}), **op.responses}
    errors.update({str(code): text for code, text in extra.items() if code >= 400})
    return errors


_ERROR_CONTENT = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}


def _schema(value: dict[str, Any] | Any) -> dict[str, Any]:
    return value() if callable(value) else value  # type: ignore[no-any-return]


def _responses(op: Any) -> dict[str, Any]:
    from chalicelib.api.response_schemas import BY_ROUTE, ERROR_PAGES, EXTRA_STATUSES

    route = (op.method.upper(), op.path)
    schema = op.response_schema if op.response_schema is not None else BY_ROUTE.get(route)
    content: dict[str, Any] | None = None
    if schema is not None:
        content = {media: {"schema": _schema(schema) if media.endswith("json") else {"type": "string"}}
                   for media in op.response_content_types}
    success: dict[str, Any] = {"description": "Success", **({"content": content} if content else {})}
    if op.success_status in (301, 302, 303, 307):
        success["headers"] = {"Location": {"schema": {"type": "string"}, "description": "Where to go"}}
    extra = {**EXTRA_STATUSES.get(route, {}), **op.responses}
    errors = error_statuses(op)
    also_success = {str(k): {"description": v, **({"content": content} if content else {})}
                    for k, v in extra.items() if k < 400}
    pages = ERROR_PAGES.get(route, ())
    return {str(op.success_status): success, **also_success,
            **{code: {"description": text, "content": {**_ERROR_CONTENT, **(
                {"text/html": {"schema": {"type": "string"}}} if int(code) in pages else {})}}
               for code, text in sorted(errors.items())}}


def event_schemas() -> dict[str, dict[str, Any]]:
    """The canonical event types as named components (``Event.order.paid``...)."""
    from chalicelib.domain.events import CUSTOM_SCHEMA_KEY, EVENT_SCHEMAS

    return {
        "Event." + ("custom" if key == CUSTOM_SCHEMA_KEY else key): schema for key, schema in EVENT_SCHEMAS.items()
    }


def build_document(base_url: str) -> dict[str, Any]:
    from chalicelib.api.response_schemas import EXTRA_PARAMETERS, REQUEST_EXAMPLES, REQUEST_EXAMPLES_BY_MEDIA

    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        params = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in re.findall(r"{(\w+)}", op.path)
        ]
        params += [{"name": name, "in": "query", "required": False, "schema": {"type": kind}}
                   for name, kind in op.query_params]
        params += [{"name": name, "in": "header", "required": True, "schema": {"type": "string"},
                    "description": text} for name, text in op.headers]
        params += EXTRA_PARAMETERS.get((op.method.upper(), op.path), [])
        operation: dict[str, Any] = {
            "summary": op.summary,
            "tags": [op.tag],
            "operationId": f"{op.method.lower()}_{re.sub(r'[^a-z0-9]+', '_', op.path.lower()).strip('_')}",
            "parameters": params,
            "security": _SECURITY[op.auth],
            "responses": _responses(op),
        }
        if op.description:
            operation["description"] = op.description
        if op.request_schema is not None:
            schema = _schema(op.request_schema)
            route = (op.method.upper(), op.path)
            example = op.request_example if op.request_example is not None else REQUEST_EXAMPLES.get(route)
            by_media = REQUEST_EXAMPLES_BY_MEDIA.get(route, {})
            content: dict[str, Any] = {}
            for media in op.request_content_types or (op.request_content_type,):
                text = not (media.endswith("json") or media == "application/x-www-form-urlencoded")
                content[media] = {"schema": {"type": "string"} if text else schema}
                if media in by_media:
                    content[media]["example"] = by_media[media]
                elif example is not None and media.endswith("json"):
                    content[media]["example"] = example() if callable(example) else example
            operation["requestBody"] = {"required": True, "content": content}
        operation.update(op.extra)
        paths.setdefault(op.path, {})[op.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Sarafan",
            "version": "0.1.0",
            "description": "Serverless referral and coalition loyalty service. Errors are "
                           '`{"error": {"code", "message", "details"}}`; amounts are integers in minor units.',
        },
        "servers": [{"url": base_url}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer",
                               "description": "Operator key (srf_op_…) or partner key (srf_pk_…)"},
                "publishableKey": {"type": "apiKey", "in": "header", "name": "X-Publishable-Key",
                                   "description": "Browser-safe program key (srf_pub_…)"},
            },
            "schemas": {"Error": ERROR_SCHEMA, **event_schemas(), **SCHEMAS},
        },
    }
