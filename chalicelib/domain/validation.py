"""JSON Schema validation with JSONPath error locations.

fastjsonschema compiles a schema to Python once (lazily, on first use) and is a
25 kB pure-Python dependency, unlike ``jsonschema`` which pulls a native
extension. It stops at the first error; for a missing property it names all the
properties missing at that level, which is what a client needs to fix a request.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from chalicelib.domain.errors import ValidationFailed, field_error

_compiled: dict[int, Callable[[Any], Any]] = {}
_REQUIRED = re.compile(r"must contain \[(.*)\] properties")


def _validator(schema: dict[str, Any]) -> Callable[[Any], Any]:
    # Keyed by identity: schemas are module-level constants that live forever.
    key = id(schema)
    fn = _compiled.get(key)
    if fn is None:
        import fastjsonschema  # deferred: only routes with bodies pay for it

        fn = fastjsonschema.compile(schema)
        _compiled[key] = fn
    return fn


def to_jsonpath(name: str) -> str:
    """``data.order.total`` / ``data.items[2]`` → ``$.order.total`` / ``$.items[2]``."""
    return "$" + name[len("data") :] if name.startswith("data") else "$." + name


def validate(schema: dict[str, Any], data: Any, *, message: str = "Request body is invalid") -> Any:
    """Validate ``data``; return it with schema defaults applied, or raise ValidationFailed."""
    from fastjsonschema import JsonSchemaValueException

    try:
        return _validator(schema)(data)
    except JsonSchemaValueException as exc:
        path = to_jsonpath(exc.name or "data")
        missing = _REQUIRED.search(exc.message or "")
        if missing:
            names = [n.strip().strip("'\"") for n in missing.group(1).split(",") if n.strip()]
            errors = [field_error(f"{path}.{n}", "is required") for n in names]
        else:
            detail = (exc.message or "is invalid").removeprefix(exc.name or "").strip()
            errors = [field_error(path, detail)]
        raise ValidationFailed(message, details={"errors": errors}) from None
