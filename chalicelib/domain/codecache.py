"""Compiled code the app would otherwise generate on every cold start, built once and shipped like ``.pyc``.

Two kinds of generated code are compiled when first needed, in every new Lambda container:

* the methods ``@dataclass`` writes (``__init__``, ``__repr__``, ``__eq__``, ``__hash__``,
  ``__setattr__``, ``__delattr__``): it builds their source and ``exec``-s it when the class's module
  is imported; compiling is ~70 % of a dataclass's cost and the first webhook creates ~75 of them;
* the JSON Schema validators (``fastjsonschema`` generates a module of Python per schema, ~76 kB of
  source for ``order.paid``, then compiles it).

:func:`build` (:func:`main`; run by ``infra/package.py`` in the bundle and by ``bench/cold_start.py``) imports every module, generates the event validators (``_schemas``) and
writes their compiled code to ``CACHE_FILE``. :func:`install` (``chalicelib/__init__.py``, before any
module defines a dataclass) loads it and makes ``dataclasses`` look each source text up before
compiling it; :func:`validator` returns a schema's validator from its cached code.

Nothing changes but where a code object comes from. Dataclass code is keyed by its exact source text
(a changed class is simply compiled, as before); a validator by the schema's canonical JSON, the options
and the fastjsonschema version, and it runs the very code ``fastjsonschema.compile_to_code`` wrote for
that schema (the library's own ahead-of-time form of ``compile``). A missing, corrupt or foreign file
(another Python, or an older format: ``HEADER`` is checked) is ignored. The file is a build product, not in git.
"""

from __future__ import annotations

import json
import marshal
import sys
from collections.abc import Callable
from importlib.util import MAGIC_NUMBER
from pathlib import Path
from types import CodeType
from typing import Any

CACHE_FILE = Path(__file__).resolve().parent.parent / f"__codecache__.{sys.implementation.cache_tag}.marshal"

#: The file starts with this (the bytecode magic number: another Python ignores the file; then the format).
HEADER = MAGIC_NUMBER + b"sarafan-codecache/2\n"

#: Dataclass method source text -> its compiled code.
_functions: dict[str, CodeType] = {}
#: Validator key -> (name of the validating function, marshalled code of the generated module).
_validators: dict[str, tuple[str, bytes]] = {}
_installed = False
_recording = False


def _exec(source: Any, globals: Any = None, locals: Any = None) -> None:  # exec's own parameter names
    """``exec`` as ``dataclasses`` calls it, the compiled code of a known source text reused."""
    if isinstance(source, str):
        code = _functions.get(source)
        if code is None:
            code = compile(source, "<string>", "exec", dont_inherit=True)  # as exec(text) in dataclasses
            if _recording:
                _functions[source] = code
        source = code
    exec(source, globals, locals)  # the text dataclasses generated, run as dataclasses does


def _load() -> None:
    try:
        data = CACHE_FILE.read_bytes()
        if not data.startswith(HEADER):
            return
        stored = marshal.loads(data[len(HEADER):])
        functions, validators = stored["functions"], stored["validators"]
    except (OSError, EOFError, ValueError, TypeError, KeyError):
        return
    _functions.update({k: v for k, v in functions.items() if isinstance(k, str) and isinstance(v, CodeType)})
    _validators.update({k: v for k, v in validators.items() if isinstance(k, str) and isinstance(v, tuple)})


def install() -> None:
    """Load the cache and route ``dataclasses``' ``exec`` through it (once; a no-op on a Python whose
    ``dataclasses`` does not compile with a module-level ``exec`` call)."""
    global _installed
    if _installed:
        return
    _installed = True
    _load()
    import dataclasses

    creator = getattr(dataclasses, "_create_fn", None)
    if creator is not None and "exec" in creator.__code__.co_names and not hasattr(dataclasses, "exec"):
        dataclasses.exec = _exec  # type: ignore[attr-defined]  # a module global shadows the builtin


def _key(content: str, use_default: bool) -> str:
    from fastjsonschema import VERSION

    return f"{VERSION}|{int(use_default)}|{content}"


def canonical(schema: dict[str, Any]) -> str:
    """The text a schema is known by (sorted keys; non-JSON values as text)."""
    return json.dumps(schema, sort_keys=True, default=str)


def validator(schema: dict[str, Any], *, use_default: bool = True, content: str | None = None
              ) -> Callable[[Any], Any]:
    """``fastjsonschema.compile(schema, use_default=...)``, from the cached code when the cache has it."""
    import fastjsonschema

    key = _key(content if content is not None else canonical(schema), use_default)
    hit = _validators.get(key)
    if hit is not None:
        name, blob = hit
        namespace: dict[str, Any] = {}
        exec(marshal.loads(blob), namespace)  # code compile_to_code generated at build time
        return namespace[name]  # type: ignore[no-any-return]
    if not _recording:
        return fastjsonschema.compile(schema, use_default=use_default)  # type: ignore[no-any-return]
    name = fastjsonschema.compile(schema, use_default=use_default).__name__
    code = compile(fastjsonschema.compile_to_code(schema, use_default=use_default), f"<schema {name}>", "exec",
                   dont_inherit=True)
    _validators[key] = (name, marshal.dumps(code))
    return validator(schema, use_default=use_default, content=content)


def _schemas() -> list[dict[str, Any]]:
    """The schemas generated ahead of time: the canonical events' (a webhook's first request validates one).
    Request-body schemas of the other routes are compiled on first use: ~20 kB each in the bundle otherwise."""
    from chalicelib.domain.events import EVENT_SCHEMAS

    return list(EVENT_SCHEMAS.values())


def build(path: Path = CACHE_FILE) -> tuple[int, int]:
    """Import the app and every module, generate the validators, write the cache; (functions, validators)."""
    import importlib
    import pkgutil

    global _recording
    install()
    _functions.clear()  # only what this build compiles: no stale entries from an older file
    _validators.clear()
    _recording = True
    try:
        import chalicelib

        importlib.import_module("app")
        for module in pkgutil.walk_packages(chalicelib.__path__, "chalicelib."):
            importlib.import_module(module.name)
        for schema in _schemas():
            validator(schema)
    finally:
        _recording = False
    stored = {"functions": dict(sorted(_functions.items())), "validators": dict(sorted(_validators.items()))}
    path.write_bytes(HEADER + marshal.dumps(stored))
    return len(_functions), len(_validators)


def main() -> None:
    """``python -c "from chalicelib.domain import codecache; codecache.main()"`` (from the project directory)."""
    functions, validators = build()
    print(f"{functions} dataclass functions and {validators} validators compiled into {CACHE_FILE}")
