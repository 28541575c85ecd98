"""Partner offers and voucher code pools: schemas, code-list parsing, shard assignment. Pure.

An offer is what a partner gives a member: ``percent_off`` (``percent``), ``fixed_discount``
(``amount_minor`` + ``currency``), ``free_item`` (``item``) or ``subscription_month``
(``subscription``), backed by one ``static`` code every member gets, or a ``pool`` of unique
codes the partner uploads (each issued at most once). See docs/coalition.md.

Code lists arrive as JSON (``{"codes": [...]}``) or CSV (one code per line, or a column named
``code``; a UTF-8 BOM and CRLF line ends are fine). :func:`parse_codes` refuses an upload with
duplicates inside it, listing them; the service refuses codes already in the pool the same way.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from collections.abc import Iterable
from typing import Any, Final

from chalicelib.domain.errors import ValidationFailed, field_error
from chalicelib.domain.safe_json import SINGLE_LINE

KINDS: Final = ("percent_off", "fixed_discount", "free_item", "subscription_month")
CODE_SOURCES: Final = ("static", "pool")
#: Codes of one pool are spread over this many partitions (``POOL#<program>#<offer>#<shard>``).
SHARDS: Final = 8
#: Codes per pool, over all uploads.
MAX_POOL_CODES: Final = 100_000
#: Codes per upload request (a bigger pool is uploaded in several requests).
MAX_CODES_PER_UPLOAD: Final = 5_000
#: How many offending codes an error lists (the count is always given).
MAX_LISTED: Final = 100
CODE_PATTERN: Final = "^[A-Za-z0-9][A-Za-z0-9_.:/+=#-]{0,63}$"
_CODE_RE: Final = re.compile(CODE_PATTERN)

_NAME = {"type": "string", "minLength": 1, "maxLength": 120, "pattern": SINGLE_LINE}
_TEXT = {"type": "string", "minLength": 1, "maxLength": 500, "pattern": SINGLE_LINE}
_THRESHOLD = {"type": ["integer", "null"], "minimum": 1, "maximum": MAX_POOL_CODES,
              "description": "Alert the partner (e-mail to its contact_email, outgoing webhook) once each time the "
                             "pool's remaining codes fall below this; null = no alert."}
_VALID_DAYS = {"type": ["integer", "null"], "minimum": 1, "maximum": 3660,
               "description": "An issued voucher expires this many days after issue; null = no expiry."}

OFFER_CREATE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name", "kind", "code_source"],
    "properties": {
        "name": _NAME,
        "description": _TEXT,
        "kind": {"enum": list(KINDS)},
        "percent": {"type": "integer", "minimum": 1, "maximum": 100, "description": "percent_off: 1..100 %."},
        "amount_minor": {"type": "integer", "minimum": 1, "maximum": 10**12,
                         "description": "fixed_discount: the discount in minor units."},
        "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
        "item": {**_NAME, "description": "free_item: what the member gets."},
        "subscription": {**_NAME, "description": "subscription_month: the subscription a month of which is given."},
        "code_source": {"enum": list(CODE_SOURCES)},
        "static_code": {"type": "string", "pattern": CODE_PATTERN},
        "low_pool_threshold": _THRESHOLD,
        "valid_days": _VALID_DAYS,
        "enabled": {"type": "boolean", "default": True},
    },
}

OFFER_UPDATE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "minProperties": 1,
    "properties": {
        "name": _NAME,
        "description": {"anyOf": [_TEXT, {"type": "null"}]},
        "low_pool_threshold": _THRESHOLD,
        "valid_days": _VALID_DAYS,
        "enabled": {"type": "boolean"},
    },
}

CODES_JSON_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["codes"],
    "properties": {
        "codes": {"type": "array", "minItems": 1, "maxItems": MAX_CODES_PER_UPLOAD,
                  "items": {"type": "string", "maxLength": 64}},
    },
    "description": f"JSON `{{\"codes\": [...]}}` or `text/csv` (one code per line or a `code` column; BOM and CRLF "
                   f"accepted). At most {MAX_CODES_PER_UPLOAD:,} codes per request and {MAX_POOL_CODES:,} per pool.",
}

_VALUE_FIELDS = {"percent_off": "percent", "fixed_discount": "amount_minor", "free_item": "item",
                 "subscription_month": "subscription"}


def offer_errors(doc: dict[str, Any]) -> list[dict[str, str]]:
    """What the schema cannot say: the kind's value field, the static code, currency only with a fixed discount."""
    errors: list[dict[str, str]] = []
    kind = doc["kind"]
    wanted = _VALUE_FIELDS[kind]
    if wanted not in doc:
        errors.append(field_error(f"$.{wanted}", f"required for kind '{kind}'"))
    for name in set(_VALUE_FIELDS.values()) - {wanted}:
        if name in doc:
            errors.append(field_error(f"$.{name}", f"only allowed for kind '{_kind_of(name)}'"))
    if kind == "fixed_discount" and "currency" not in doc:
        errors.append(field_error("$.currency", "required for kind 'fixed_discount'"))
    if kind != "fixed_discount" and "currency" in doc:
        errors.append(field_error("$.currency", "only allowed for kind 'fixed_discount'"))
    if doc["code_source"] == "static" and "static_code" not in doc:
        errors.append(field_error("$.static_code", "required when code_source is 'static'"))
    if doc["code_source"] == "pool" and "static_code" in doc:
        errors.append(field_error("$.static_code", "only allowed when code_source is 'static'"))
    if doc["code_source"] == "static" and doc.get("low_pool_threshold") is not None:
        errors.append(field_error("$.low_pool_threshold", "only allowed when code_source is 'pool'"))
    return errors


def _kind_of(field: str) -> str:
    return next(k for k, v in _VALUE_FIELDS.items() if v == field)


def check_offer(doc: dict[str, Any]) -> None:
    errors = offer_errors(doc)
    if errors:
        raise ValidationFailed(f"Offer is invalid: {errors[0]['path']} {errors[0]['message']}",
                               details={"errors": errors})


# --------------------------------------------------------------------------- code lists


def codes_from_csv(text: str) -> list[str]:
    """One code per row (first column), or the column named ``code`` when the first row names it.

    A UTF-8 BOM, CRLF or CR line ends, blank lines and surrounding spaces are tolerated.
    """
    text = text.removeprefix("\ufeff")
    rows = [row for row in csv.reader(io.StringIO(text, newline="")) if any(cell.strip() for cell in row)]
    if not rows:
        return []
    header = [cell.strip().lower() for cell in rows[0]]
    column = 0
    if "code" in header:
        column = header.index("code")
        rows = rows[1:]
    return [row[column].strip() if column < len(row) else "" for row in rows]


def parse_codes(codes: Iterable[str]) -> list[str]:
    """Validate an upload: every code well-formed, none twice, at most ``MAX_CODES_PER_UPLOAD``.

    Codes are case-sensitive as given (a partner's platform decides what is equal); surrounding
    spaces are stripped. Raises ``ValidationFailed`` listing the offending codes.
    """
    out: list[str] = []
    seen: set[str] = set()
    duplicates: dict[str, None] = {}
    invalid: list[dict[str, str]] = []
    for i, raw in enumerate(codes):
        code = raw.strip()
        if not _CODE_RE.match(code):
            if len(invalid) < MAX_LISTED:
                invalid.append(field_error(f"$.codes[{i}]", f"must match {CODE_PATTERN}"))
            continue
        if code in seen:
            duplicates[code] = None
            continue
        seen.add(code)
        out.append(code)
    if invalid:
        raise ValidationFailed(f"{len(invalid)} code(s) are malformed", code="invalid_codes",
                               details={"errors": invalid})
    if duplicates:
        listed = list(duplicates)[:MAX_LISTED]
        raise ValidationFailed(f"{len(duplicates)} code(s) appear more than once in the upload",
                               code="duplicate_codes",
                               details={"duplicates": listed, "count": len(duplicates)})
    if not out:
        raise ValidationFailed("The upload contains no codes", code="invalid_codes",
                               details={"errors": [field_error("$.codes", "must contain at least one code")]})
    if len(out) > MAX_CODES_PER_UPLOAD:
        raise ValidationFailed(f"At most {MAX_CODES_PER_UPLOAD} codes per upload; upload a big pool in parts",
                               code="too_many_codes", details={"limit": MAX_CODES_PER_UPLOAD, "count": len(out)})
    return out


def code_hash(code: str) -> str:
    return hashlib.sha256(code.encode("utf-8")).hexdigest()[:40]


def shard_of(code: str) -> int:
    """The pool partition a code lives in: spread evenly by its hash."""
    return int(code_hash(code)[:8], 16) % SHARDS


def pick_shard(candidates: list[int], salt: str, taken: Iterable[int] = ()) -> int | None:
    """A shard for one issue: among the non-empty ``candidates`` not ``taken`` by this event, the one
    ``salt`` (the event's business key and recipient) hashes to, so concurrent events spread out."""
    free = [s for s in candidates if s not in set(taken)]
    if not free:
        return None
    return free[int(hashlib.sha256(salt.encode("utf-8")).hexdigest()[:8], 16) % len(free)]


def is_low(threshold: int | None, remaining: int) -> bool:
    """Whether a pool with ``remaining`` codes is below its alert threshold (``None``: never)."""
    return threshold is not None and remaining < threshold
