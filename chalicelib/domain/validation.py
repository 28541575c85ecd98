"""JSON Schema validation with JSONPath error locations, shared by every schema in Sarafan.

fastjsonschema compiles a schema to Python once (lazily, on first use; from the code generated at
build time when ``domain.codecache`` has it) and is a 25 kB pure-Python dependency, unlike ``jsonschema`` which pulls a native
extension. It stops at the first error; for a missing or unknown property we
report every missing/unknown property of that object, which is what a client
needs to fix a request in one go.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from chalicelib.domain.errors import ValidationFailed, field_error

#: id(schema) -> (the schema itself, its validator). The schema is kept so its id cannot be reused: a
#: schema built per call (a platform's settings) was once collected, and the next dict built at the same
#: address was validated with the old one's validator (another platform's settings refused).
_by_identity: dict[int, tuple[dict[str, Any], Callable[[Any], Any]]] = {}
#: Schemas built per call, by content, so each is compiled once however often it is rebuilt.
_by_content: dict[str, Callable[[Any], Any]] = {}
_MAX_CACHED = 512
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _validator(schema: dict[str, Any]) -> Callable[[Any], Any]:
    hit = _by_identity.get(id(schema))
    if hit is not None and hit[0] is schema:
        return hit[1]
    from chalicelib.domain import codecache

    content = codecache.canonical(schema)
    fn = _by_content.get(content)
    if fn is None:
        fn = codecache.validator(schema, content=content)  # generated at build time, else compiled now
        if len(_by_content) >= _MAX_CACHED:
            _by_content.clear()
        _by_content[content] = fn
    if len(_by_identity) >= _MAX_CACHED:
        _by_identity.clear()
    _by_identity[id(schema)] = (schema, fn)
    return fn


def child_path(parent: str, key: str | int) -> str:
    """``$.a`` + ``b`` → ``$.a.b``; ``$.a`` + ``0`` → ``$.a[0]``; odd keys are quoted: ``$.a['x-y']``."""
    if isinstance(key, int):
        return f"{parent}[{key}]"
    return f"{parent}.{key}" if _IDENTIFIER.match(key) else f"{parent}[{key!r}]"


def to_jsonpath(name: str) -> str:
    """fastjsonschema's ``data.order.total`` / ``data.items[2]`` → ``$.order.total`` / ``$.items[2]``."""
    return "$" + name[len("data") :] if name.startswith("data") else "$." + name


def schema_errors(exc: Any) -> list[dict[str, str]]:
    """fastjsonschema's single ``JsonSchemaValueException`` (or ``codecache.SchemaValueError``, the same from
    cached code) → ``[{"path", "message"}]``.

    Errors about a whole object (missing / unknown properties) point at each property
    itself, which is what a client needs to find the typo.
    """
    name: str = exc.name or "data"
    path = to_jsonpath(name)
    message: str = exc.message or "is invalid"
    if message.startswith(name + " "):
        message = message[len(name) + 1 :]
    definition = exc.definition if isinstance(exc.definition, dict) else {}
    value = exc.value
    if exc.rule == "required" and isinstance(value, dict):
        missing = [k for k in definition.get("required", []) if k not in value]
        if missing:
            return [field_error(child_path(path, k), "is required") for k in missing]
    if exc.rule == "additionalProperties" and isinstance(value, dict):
        extra = sorted(set(value) - set(definition.get("properties", {})))
        if extra:
            return [field_error(child_path(path, k), "is not an allowed property") for k in extra]
    if exc.rule == "oneOf" and all("required" in o for o in definition.get("oneOf", [])):
        options = [", ".join(o["required"]) for o in definition["oneOf"]]
        return [field_error(path, "must set exactly one of: " + " | ".join(options))]
    return [field_error(path, message)]


def validate(schema: dict[str, Any], data: Any, *, message: str = "Request body is invalid") -> Any:
    """Validate ``data``; return it with schema defaults applied, or raise ValidationFailed."""
    from chalicelib.domain.codecache import schema_exceptions

    try:
        return _validator(schema)(data)
    except schema_exceptions() as exc:
        raise ValidationFailed(message, details={"errors": schema_errors(exc)}) from None
