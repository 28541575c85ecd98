"""Reading untrusted bodies defensively, once, at the edge.

Every body Sarafan accepts -- canonical events, admin and landing bodies, and what
platform adapters receive (JSON or form-encoded) -- goes through this module before
anything else looks at it. What comes out is plain Python data that cannot hurt the
code behind it: nothing too deep to recurse over, no number Python or DynamoDB
refuses, no string that cannot be encoded, no key that appeared twice.

API (all pure Python, no I/O; errors are domain errors carrying the JSONPath)::

    from chalicelib.domain import safe_json

    body = safe_json.loads(raw_bytes)                 # JSON object -> dict
    form = safe_json.read_form(raw_bytes)             # x-www-form-urlencoded -> dict[str, str]
    form = safe_json.read_form(raw_bytes, multi=True) # ... -> dict[str, list[str]] (repeated keys kept)
    when = safe_json.timestamp(body["created_at"], "$.created_at", now=now)   # aware UTC datetime in the window
    name = safe_json.single_line(body.get("name"), "$.name")         # str without control characters

Limits (``Limits``; the defaults are the service's, an adapter may pass its own):

=====================  ==========================================  ======================
limit                  default                                     answer
=====================  ==========================================  ======================
body bytes             256 KiB (checked by the HTTP layer)         413 payload_too_large
encoding               strict UTF-8 (no BOM games, no surrogates)  400 malformed_json
syntax                 RFC 8259 JSON; no NaN/Infinity              400 malformed_json
nesting                32 levels of objects/arrays                 400 too_deep
integers               abs(n) <= 2**53 - 1 (what JavaScript and    400 number_out_of_range
                       every JSON parser agree on); never more
                       than 20 digits are handed to ``int()``
floats                 finite, at most 40 characters               400 number_out_of_range
duplicate keys         rejected in every object                    400 duplicate_key
strings                no lone surrogates, no NUL anywhere; object  400 invalid_string
                       keys single-line (no control characters)
form fields            at most 200, keys single-line               400 malformed_form
=====================  ==========================================  ======================

Field-level meaning (money and points bounded to 10**15 minor units or less, ids /
codes / names / URLs single-line) is the job of the schema of each body: use
``SINGLE_LINE`` as a JSON Schema ``pattern`` and ``MAX_MINOR_UNITS`` as a ``maximum``.
Dates: ``timestamp`` refuses anything before ``EARLIEST`` (2000-01-01) or more than
``MAX_AHEAD`` (5 minutes) ahead of the clock; stored times therefore always have
four-digit years.

Why each rule exists: Python's ``json`` recurses per nesting level (1,000 levels is a
``RecursionError``), refuses integers over 4,300 digits with a ``ValueError``, turns
``"\\ud800"`` into a string that cannot be encoded to UTF-8 (so DynamoDB calls fail
later, far from the input), and keeps the *last* of two equal keys while other
parsers keep the first -- a signed body could then mean two different things.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import accumulate
from typing import Any, Final
from urllib.parse import parse_qsl

from chalicelib.domain.errors import BadRequest, ValidationFailed, field_error

MAX_DEPTH: Final = 32
MAX_SAFE_INTEGER: Final = 2**53 - 1
#: Upper bound for any amount of money or points, in minor units (10 trillion roubles).
MAX_MINOR_UNITS: Final = 10**15
MAX_INT_DIGITS: Final = 20
MAX_FLOAT_CHARS: Final = 40
MAX_FORM_FIELDS: Final = 200
#: No business date in Sarafan is older than this; older ones are typos or attacks.
EARLIEST: Final = datetime(2000, 1, 1, tzinfo=UTC)
#: How far ahead of the server clock an event time may be (clock skew between systems).
MAX_AHEAD: Final = timedelta(minutes=5)

#: JSON Schema ``pattern`` for ids, codes, names and URLs: no C0/C1 control characters, no line
#: or paragraph separators. The characters themselves, not ``\\uXXXX`` regex escapes, so every
#: regex engine (ECMA 262, Python, Rust: schemathesis) reads it alike. Lone surrogates never get
#: this far (:func:`loads` refuses them everywhere).
SINGLE_LINE: Final = "^[^\x00-\x1f\x7f-\x9f\u2028\u2029]*$"
_CONTROL_RE: Final = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


@dataclass(frozen=True)
class Limits:
    """What :func:`loads` accepts. Adapters may tighten or (with a reason) widen these."""

    max_depth: int = MAX_DEPTH
    max_int: int = MAX_SAFE_INTEGER
    max_form_fields: int = MAX_FORM_FIELDS


DEFAULT_LIMITS: Final = Limits()


# --------------------------------------------------------------------------- paths


_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def json_path(parts: tuple[str | int, ...]) -> str:
    """``("order", "items", 2)`` -> ``$.order.items[2]``; odd keys quoted: ``$['a b']``."""
    out = "$"
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _IDENTIFIER.match(part):
            out += f".{part}"
        else:
            out += "[" + json.dumps(_printable(part)) + "]"
    return out


def _printable(key: str) -> str:
    # A path is echoed in the error body and maybe logged: never echo surrogates or controls.
    return _CONTROL_RE.sub("\ufffd", key[:64])


def _bad(code: str, message: str, parts: tuple[str | int, ...], **extra: Any) -> BadRequest:
    path = json_path(parts)
    return BadRequest(f"{message} at {path}", code=code, details={"path": path, **extra})


# --------------------------------------------------------------------------- JSON


class _Rejected:
    """A value the parser hooks refused; the tree walk reports it with its path."""

    __slots__ = ("code", "message")

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message


class _DuplicateKeys(dict[str, Any]):
    """An object in which ``key`` appeared more than once (reported by the walk)."""

    key: str = ""


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        marked = _DuplicateKeys(result)
        for key, _ in pairs:
            if key in seen:
                marked.key = key
                break
            seen.add(key)
        return marked
    return result


def _int_hook(max_int: int) -> Callable[[str], Any]:
    def parse_int(text: str) -> Any:
        if len(text) > MAX_INT_DIGITS + 1:  # never hand a huge digit string to int()
            return _Rejected("number_out_of_range", f"integer has more than {MAX_INT_DIGITS} digits")
        value = int(text)
        if abs(value) > max_int:
            return _Rejected("number_out_of_range", f"integer is outside ±{max_int}")
        return value

    return parse_int


def _parse_float(text: str) -> Any:
    if len(text) > MAX_FLOAT_CHARS:
        return _Rejected("number_out_of_range", f"number is longer than {MAX_FLOAT_CHARS} characters")
    value = float(text)
    if not math.isfinite(value):
        return _Rejected("number_out_of_range", "number is too large")
    return value


def _parse_constant(name: str) -> Any:
    return _Rejected("malformed_json", f"{name} is not JSON")


# Strings (with their escapes) removed, then only brackets kept: enough to measure nesting.
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_DELTA = {"[": 1, "{": 1, "]": -1, "}": -1}


def _check_depth(text: str, max_depth: int) -> None:
    if text.count("[") + text.count("{") <= max_depth:
        return
    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub("", text))
    if max(accumulate(map(_DELTA.__getitem__, brackets)), default=0) > max_depth:
        raise _bad("too_deep", f"JSON nests deeper than {max_depth} levels",
                   _path_at_depth(text, max_depth), limit=max_depth)


_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{},:]')


def _path_at_depth(text: str, max_depth: int) -> tuple[str | int, ...]:
    """The path of the first container deeper than ``max_depth`` (error path only: slow is fine)."""
    stack: list[list[Any]] = []  # [kind, key-or-index, expecting_key]
    last_string: str | None = None
    for match in _TOKEN.finditer(text):
        token = match.group()
        if token in "[{":
            if len(stack) >= max_depth:
                break
            stack.append([token, 0 if token == "[" else "", token == "{"])
        elif token in "]}":
            if stack:
                stack.pop()
        elif token == ",":
            if stack:
                top = stack[-1]
                if top[0] == "[":
                    top[1] += 1
                else:
                    top[2] = True
        elif token == ":":
            if stack and stack[-1][0] == "{":
                stack[-1][1], stack[-1][2] = last_string or "", False
        else:
            try:
                last_string = json.loads(token)
            except ValueError:
                last_string = ""
    return tuple(entry[1] for entry in stack)


def _walk(root: Any) -> None:
    """Report the first rejected value, duplicate key or unsafe string, with its path."""
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(root, ())]
    while stack:
        value, parts = stack.pop()
        kind = type(value)
        if kind is str:
            _check_string(value, parts)
        elif kind is dict or kind is _DuplicateKeys:
            if kind is _DuplicateKeys:
                raise _bad("duplicate_key", "JSON object has a duplicate key", (*parts, value.key))
            for key, child in value.items():
                if _CONTROL_RE.search(key):
                    raise _bad("invalid_string", "object key contains control characters or surrogates",
                               (*parts, key))
                stack.append((child, (*parts, key)))
        elif kind is list:
            stack.extend((child, (*parts, index)) for index, child in enumerate(value))
        elif kind is _Rejected:
            raise _bad(value.code, value.message, parts)


def _check_string(value: str, parts: tuple[str | int, ...]) -> None:
    if value.isascii():
        if "\x00" in value:
            raise _bad("invalid_string", "string contains a NUL character", parts)
        return
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _bad("invalid_string", "string contains a lone surrogate (not valid Unicode)", parts) from None
    if "\x00" in value:
        raise _bad("invalid_string", "string contains a NUL character", parts)


def loads(raw: bytes | str, *, limits: Limits = DEFAULT_LIMITS, require_object: bool = True) -> Any:
    """Parse an untrusted JSON body: a ``dict`` (or any JSON value with ``require_object=False``).

    Raises ``BadRequest`` (400) whose ``code`` says which limit (module docstring) and whose
    ``details.path`` names where. An empty body is the caller's business (not JSON here).
    """
    if isinstance(raw, bytes | bytearray):
        try:
            text = bytes(raw).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadRequest("Body is not valid UTF-8", code="malformed_json",
                             details={"reason": f"invalid UTF-8 at byte {exc.start}"}) from None
    else:
        text = raw
    if text.startswith("\ufeff"):
        raise BadRequest("Body is not valid JSON", code="malformed_json", details={"reason": "byte order mark"})
    _check_depth(text, limits.max_depth)
    try:
        data = json.loads(text, object_pairs_hook=_pairs, parse_int=_int_hook(limits.max_int),
                          parse_float=_parse_float, parse_constant=_parse_constant)
    except json.JSONDecodeError as exc:
        raise BadRequest("Body is not valid JSON", code="malformed_json",
                         details={"reason": f"{exc.msg} at line {exc.lineno} column {exc.colno}"}) from None
    except (ValueError, RecursionError):  # belt and braces: the checks above should make this unreachable
        raise BadRequest("Body is not valid JSON", code="malformed_json", details={"reason": "unreadable"}) from None
    _walk(data)
    if require_object and not isinstance(data, dict):
        raise BadRequest("Body must be a JSON object", code="malformed_json", details={"path": "$"})
    return data


# --------------------------------------------------------------------------- forms


def read_form_pairs(raw: bytes | str, *, limits: Limits = DEFAULT_LIMITS) -> list[tuple[str, str]]:
    """Every ``(name, value)`` of an untrusted form body, in body order (repeats kept), checked
    like :func:`read_form`: for readers that give the names a structure themselves (the platform
    adapters' bracket notation, ``chalicelib.adapters.body``)."""
    pairs = _form_pairs(raw, limits)
    for key, value in pairs:
        if _CONTROL_RE.search(key):
            raise _bad("malformed_form", "field name contains control characters", (key,))
        _check_string(value, (key,))
    return pairs


def _form_pairs(raw: bytes | str, limits: Limits) -> list[tuple[str, str]]:
    text = raw.decode("latin-1") if isinstance(raw, bytes | bytearray) else raw
    if not text.isascii():
        # A form body is percent-encoded ASCII; raw 8-bit bytes are a client bug or a trick.
        raise BadRequest("Form body must be percent-encoded ASCII", code="malformed_form")
    try:
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text), encoding="utf-8",
                          errors="strict", max_num_fields=limits.max_form_fields)
    except UnicodeDecodeError:
        raise BadRequest("Form body is not valid UTF-8", code="malformed_form") from None
    except ValueError as exc:
        raise BadRequest("Form body is not valid", code="malformed_form", details={"reason": str(exc)}) from None
    return pairs


def read_form(raw: bytes | str, *, multi: bool = False, limits: Limits = DEFAULT_LIMITS) -> Any:
    """Parse an untrusted ``application/x-www-form-urlencoded`` body (strict UTF-8).

    ``multi=False`` (default): ``dict[str, str]``; a repeated field is a 400
    ``duplicate_key`` (same parser-differential reason as for JSON). ``multi=True``:
    ``dict[str, list[str]]`` in body order, for platforms that repeat fields on purpose.
    Keys must be single-line; values may hold newlines (addresses, comments) but no
    NUL. Empty values are kept (``a=&b=1`` -> ``{"a": "", "b": "1"}``).
    """
    result: dict[str, Any] = {}
    for key, value in read_form_pairs(raw, limits=limits):
        if multi:
            result.setdefault(key, []).append(value)
        elif key in result:
            raise _bad("duplicate_key", "form field appears more than once", (key,))
        else:
            result[key] = value
    return result


# --------------------------------------------------------------------------- fields


def single_line(value: Any, path: str, *, max_length: int = 256) -> str | None:
    """A trimmed single-line string (ids, codes, names), ``None`` for null/empty; 422 otherwise."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValidationFailed("Request body is invalid", details={"errors": [field_error(path, "must be a string")]})
    text = value.strip()
    if _CONTROL_RE.search(text):
        raise ValidationFailed("Request body is invalid", details={"errors": [
            field_error(path, "must not contain control characters")]})
    if len(text) > max_length:
        raise ValidationFailed("Request body is invalid", details={"errors": [
            field_error(path, f"must be at most {max_length} characters")]})
    return text or None


def has_control_characters(value: str) -> bool:
    return _CONTROL_RE.search(value) is not None


def timestamp(
    value: Any,
    path: str,
    *,
    now: datetime,
    not_before: datetime = EARLIEST,
    max_ahead: timedelta | None = MAX_AHEAD,
    naive_is_utc: bool = False,
) -> datetime:
    """An ISO-8601 / RFC 3339 time as an aware UTC ``datetime`` within the sane window.

    Not before ``not_before`` (2000-01-01) and, unless ``max_ahead`` is ``None``, not more
    than ``max_ahead`` (5 minutes) after ``now`` (the caller's clock, ``services.ports.Clock``). A time
    without an offset is refused unless ``naive_is_utc`` (some platforms send local-less
    UTC). Raises ``ValidationFailed`` (422) naming ``path``.
    """

    def fail(message: str) -> ValidationFailed:
        return ValidationFailed(f"Invalid time: {path} {message}", details={"errors": [field_error(path, message)]})

    if not isinstance(value, str) or len(value) > 40:
        raise fail("must be an RFC 3339 timestamp like 2026-11-23T10:00:00Z")
    try:
        parsed = datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        raise fail("is not a valid RFC 3339 timestamp") from None
    if parsed.tzinfo is None:
        if not naive_is_utc:
            raise fail("must carry a UTC offset (Z or +hh:mm)")
        parsed = parsed.replace(tzinfo=UTC)
    # Checked before the conversion to UTC, which overflows at the ends of the calendar.
    if parsed.year < not_before.year - 1:
        raise fail(f"must not be before {not_before.date().isoformat()}")
    if parsed.year > 9998:
        raise fail("is too far in the future")
    parsed = parsed.astimezone(UTC)
    if parsed < not_before:
        raise fail(f"must not be before {not_before.date().isoformat()}")
    if max_ahead is not None and parsed > now + max_ahead:
        raise fail(f"must not be more than {int(max_ahead.total_seconds() // 60)} minutes in the future")
    return parsed
