"""Every response the suite sees must be one the OpenAPI document declares (status and shape).

``tests.support.ApiClient`` calls :func:`check_response` after every request: the route
is found by matching the path against the document's templates, the status must be
declared for that operation (each operation declares only the error statuses it can answer,
``chalicelib.api.openapi.error_statuses``), and a JSON body must validate against the declared
schema (``jsonschema``, draft 2020-12 as OpenAPI 3.1 uses). The checker closes every object schema
that names its properties (``unevaluatedProperties: false`` unless the schema says otherwise), so a
reply with a key its document does not name fails too; an object declared without ``properties``
(a free-form map such as ``settings``) stays open. CORS preflights (OPTIONS) and paths
the document does not know (probes of unknown URLs) are not operations and are skipped.

With ``SARAFAN_OPENAPI_REPORT=<file>`` a violation is appended there (one JSON line) instead of failing
the test, so one run of a test file lists all of them.

With ``SARAFAN_RECORD_RESPONSES=<file>`` every response is also appended there as one JSON
line (how the response schemas were first drafted).
"""

from __future__ import annotations

import json
import os
import re
from functools import cache, lru_cache
from typing import Any


@lru_cache(maxsize=1)
def _document() -> dict[str, Any]:
    import app  # noqa: F401  (registers every route)
    from chalicelib.api.openapi import build_document

    return build_document("https://srf.test")


@lru_cache(maxsize=1)
def _templates() -> list[tuple[re.Pattern[str], str]]:
    paths = _document()["paths"]
    compiled = [(re.compile("^" + re.sub(r"\\{\w+\\}", "[^/]+", re.escape(p)) + "$"), p) for p in paths]
    # Literal segments win over parameters (``/redemptions/quote`` before ``/redemptions/{id}``).
    return sorted(compiled, key=lambda item: (item[1].count("{"), -len(item[1])))


def route_of(method: str, url: str) -> str | None:
    path = url.split("?", 1)[0]
    for pattern, template in _templates():
        if pattern.match(path) and method.lower() in _document()["paths"][template]:
            return template
    return None


_OPEN_KEYS = ("additionalProperties", "unevaluatedProperties", "patternProperties")


def closed(schema: Any, *, branch: bool = False) -> Any:
    """``schema`` with every object that names its properties closed (``unevaluatedProperties: false``).

    The branches of an ``allOf`` are not closed themselves (each would refuse the other's keys): the
    object holding the ``allOf`` is, and ``unevaluatedProperties`` sees what every branch evaluated.
    """
    if isinstance(schema, list):
        return [closed(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "properties" and isinstance(value, dict):
            out[key] = {name: closed(sub) for name, sub in value.items()}
        elif key == "allOf" and isinstance(value, list):
            out[key] = [closed(sub, branch=True) for sub in value]
        elif key in ("items", "additionalProperties", "not", "anyOf", "oneOf", "prefixItems", "$defs"):
            out[key] = ({name: closed(sub) for name, sub in value.items()} if key == "$defs" else closed(value))
        else:
            out[key] = value
    names_keys = "properties" in schema or "allOf" in schema
    if names_keys and not branch and not any(key in schema for key in _OPEN_KEYS):
        out["unevaluatedProperties"] = False
    return out


@cache
def _validator(schema_json: str) -> Any:
    from jsonschema import Draft202012Validator
    from referencing import Registry, Resource

    document = _document()
    registry = Registry().with_resource("urn:sarafan:openapi", Resource.from_contents(
        {"$schema": "https://json-schema.org/draft/2020-12/schema", **document}))
    schema = json.loads(schema_json.replace('"#/components/', '"urn:sarafan:openapi#/components/'))
    return Draft202012Validator(schema, registry=registry)


def check_response(method: str, url: str, status: int, headers: dict[str, str], body: Any) -> None:
    report = os.environ.get("SARAFAN_OPENAPI_REPORT")
    try:
        _check(method, url, status, headers, body)
    except AssertionError as violation:
        if not report:
            raise
        with open(report, "a", encoding="utf-8") as out:
            out.write(json.dumps({"method": method.upper(), "route": route_of(method, url), "status": status,
                                  "test": os.environ.get("PYTEST_CURRENT_TEST", "").split(" ")[0],
                                  "violation": str(violation)[:1500]}, ensure_ascii=False) + "\n")


def _check(method: str, url: str, status: int, headers: dict[str, str], body: Any) -> None:
    record = os.environ.get("SARAFAN_RECORD_RESPONSES")
    template = route_of(method, url) if method.upper() != "OPTIONS" else None
    if record:
        with open(record, "a", encoding="utf-8") as out:
            out.write(json.dumps({"method": method.upper(), "route": template, "status": status, "body": body},
                                 ensure_ascii=False, default=str) + "\n")
    if template is None or (record and os.environ.get("SARAFAN_RECORD_ONLY")):
        return
    operation = _document()["paths"][template][method.lower()]
    declared = operation["responses"]
    assert str(status) in declared, (
        f"{method.upper()} {template} answered {status}, which its OpenAPI operation does not declare "
        f"(declared: {sorted(declared)}); body: {body!r}")
    content = declared[str(status)].get("content", {})
    media = headers.get("content-type", "").split(";")[0].strip()
    if not content:
        return
    if media not in content:
        raise AssertionError(f"{method.upper()} {template} {status}: content type {media!r} not declared "
                             f"({sorted(content)})")
    schema = content[media].get("schema")
    if schema is None or not media.endswith("json"):
        return
    errors = sorted(_validator(json.dumps(closed(schema), sort_keys=True)).iter_errors(body), key=lambda e: list(e.path))
    assert not errors, (
        f"{method.upper()} {template} {status}: the body does not match the declared schema: "
        + "; ".join(f"$.{'.'.join(map(str, e.absolute_path))}: {e.message[:300]}" for e in map(_deepest, errors[:5])))


def _deepest(error: Any) -> Any:
    """For an ``anyOf``/``oneOf`` failure, the branch error that went deepest (not ``is not of type 'null'``)."""
    while error.context:
        error = max(error.context, key=lambda e: (len(e.absolute_path), e.validator != "type"))
    return error
