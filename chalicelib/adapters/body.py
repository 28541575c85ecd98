"""Reading webhook bodies: JSON and form-encoded, through the one defensive reader.

Every platform body is parsed by ``chalicelib.domain.safe_json`` (the same reader as the
canonical intake and every API body: nesting, number, string and duplicate-key limits, each a
400 naming the JSON path); this module only adapts its limits to what platforms send and
gives form bodies their structure. Form bodies use PHP's bracket notation
(``leads[status][0][id]=1``), which amoCRM, Bitrix24 and Tilda send; they become nested
dicts, with numeric keys kept as string keys (``{"leads": {"status": {"0": {"id": "1"}}}}``).
"""

from __future__ import annotations

import re
from typing import Any, Final

from chalicelib.adapters.base import malformed
from chalicelib.domain import safe_json

#: A CRM's form webhook lists many fields per lead (amoCRM: custom fields of every lead in the batch).
MAX_FIELDS: Final = 2000
#: Bracket levels in a form field name (``leads[status][0][custom_fields][0][values][0][value]``).
MAX_DEPTH: Final = 8
MAX_JSON_DEPTH: Final = safe_json.MAX_DEPTH
#: Platforms send 64-bit integer ids (Shopify's line and shipping ids are above 2**53), so their bodies
#: may hold any signed 64-bit integer; amounts are strings or small numbers, bounded by each adapter.
MAX_PLATFORM_INT: Final = 2**63 - 1
PLATFORM_LIMITS: Final = safe_json.Limits(max_depth=MAX_JSON_DEPTH, max_int=MAX_PLATFORM_INT,
                                          max_form_fields=MAX_FIELDS)
_SEGMENT = re.compile(r"\[([^\[\]]*)\]")


def json_body(raw: bytes) -> Any:
    """Parsed JSON (any JSON value; the adapter checks it is the object it expects).

    Duplicate keys, huge numbers, deep nesting, lone surrogates and NUL are a 400 from
    ``safe_json`` (``code`` names the limit, ``details.path`` where)."""
    return safe_json.loads(raw, limits=PLATFORM_LIMITS, require_object=False)


def form_body(raw: bytes) -> dict[str, Any]:
    """``application/x-www-form-urlencoded`` with bracket notation → nested dicts of strings."""
    out: dict[str, Any] = {}
    for name, value in safe_json.read_form_pairs(raw, limits=PLATFORM_LIMITS):
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
