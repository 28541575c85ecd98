"""Reading webhook bodies: JSON and form-encoded, bounded.

The one place adapters parse bodies (a defensive reader shared with the canonical intake
is planned; switching is a change here only). Form bodies use PHP's bracket notation
(``leads[status][0][id]=1``), which amoCRM, Bitrix24 and Tilda send; they become nested
dicts, with numeric keys kept as string keys (``{"leads": {"status": {"0": {"id": "1"}}}}``).
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qsl

from chalicelib.adapters.base import malformed

MAX_FIELDS = 2000
MAX_DEPTH = 8
MAX_JSON_DEPTH = 32
_SEGMENT = re.compile(r"\[([^\[\]]*)\]")


def _depth_ok(value: Any, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        current, depth = stack.pop()
        if depth > limit:
            return False
        if isinstance(current, dict):
            stack.extend((v, depth + 1) for v in current.values())
        elif isinstance(current, list):
            stack.extend((v, depth + 1) for v in current)
    return True


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key[:40]!r}")
        out[key] = value
    return out


def json_body(raw: bytes) -> Any:
    """Parsed JSON; duplicate keys, huge numbers and deep nesting are malformed (400)."""
    try:
        value = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates,
                           parse_constant=lambda c: (_ for _ in ()).throw(ValueError(f"{c} is not JSON")))
    except RecursionError:
        raise malformed("JSON nested too deeply") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise malformed("body is not valid JSON", error=str(exc)[:200]) from None
    if not _depth_ok(value, MAX_JSON_DEPTH):
        raise malformed("JSON nested too deeply")
    return value


def form_body(raw: bytes) -> dict[str, Any]:
    """``application/x-www-form-urlencoded`` with bracket notation → nested dicts of strings."""
    try:
        text = raw.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=False, max_num_fields=MAX_FIELDS)
    except (UnicodeDecodeError, ValueError) as exc:
        raise malformed("body is not valid form data", error=str(exc)[:200]) from None
    out: dict[str, Any] = {}
    for name, value in pairs:
        head, _, rest = name.partition("[")
        path = [head] + (_SEGMENT.findall("[" + rest) if rest else [])
        if not head or len(path) > MAX_DEPTH:
            raise malformed("form field name is not usable", field=name[:80])
        node = out
        for i, part in enumerate(path):
            last = i == len(path) - 1
            if part == "":  # "a[]=1&a[]=2": next free index
                part = str(len(node))
            if last:
                if part in node:
                    raise malformed("form field given twice", field=name[:80])
                node[part] = value
            else:
                child = node.setdefault(part, {})
                if not isinstance(child, dict):
                    raise malformed("form field is both a value and a group", field=name[:80])
                node = child
    return out
