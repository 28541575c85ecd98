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
_ERRORS = {
    "400": "Malformed request",
    "401": "Missing or invalid credentials",
    "403": "This key may not do this (e.g. a partner key on an operator route, a publishable key elsewhere)",
    "404": "Not found (or not visible to this key)",
    "409": "Conflicts with the current state (e.g. a code taken, a concurrent change)",
    "413": "Body too large",
    "415": "Unsupported content type",
    "422": "Validation failed; `details.errors` lists the JSON paths",
    "429": "Rate limited; see Retry-After",
    "503": "The data store is busy (throttling or contention); safe to retry",
}


def event_schemas() -> dict[str, dict[str, Any]]:
    """The canonical event types as named components (``Event.order.paid``...)."""
    from chalicelib.domain.events import CUSTOM_SCHEMA_KEY, EVENT_SCHEMAS

    return {
        "Event." + ("custom" if key == CUSTOM_SCHEMA_KEY else key): schema for key, schema in EVENT_SCHEMAS.items()
    }


def build_document(base_url: str) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        params = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in re.findall(r"{(\w+)}", op.path)
        ]
        params += [{"name": name, "in": "query", "required": False, "schema": {"type": kind}}
                   for name, kind in op.query_params]
        operation: dict[str, Any] = {
            "summary": op.summary,
            "tags": [op.tag],
            "operationId": f"{op.method.lower()}_{re.sub(r'[^a-z0-9]+', '_', op.path.lower()).strip('_')}",
            "parameters": params,
            "security": _SECURITY[op.auth],
            "responses": {
                str(op.success_status): {"description": "Success"},
                **{code: {"description": text, "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/Error"}}}} for code, text in _ERRORS.items()},
            },
        }
        if op.description:
            operation["description"] = op.description
        if op.request_schema is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {op.request_content_type: {"schema": op.request_schema() if callable(op.request_schema) else op.request_schema}},
            }
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
