"""Compiled code the app would otherwise generate on every cold start, built once and shipped like ``.pyc``.

Two kinds of generated code are compiled when first needed, in every new Lambda container:

* the methods ``@dataclass`` writes (``__init__``, ``__repr__``, ``__eq__``, ``__hash__``,
  ``__setattr__``, ``__delattr__``): it builds their source and ``exec``-s it when the class's module
  is imported; compiling is ~70 % of a dataclass's cost and the first webhook creates ~75 of them;
* the JSON Schema validators (``fastjsonschema`` generates a module of Python per schema, ~76 kB of
  source for ``order.paid``, then compiles it);
* the regular expressions ``chalicelib`` (and the validators) compile: ``re`` parses and compiles each
  pattern in Python (~0.7 M instructions per pattern; ~30 of them on the first webhook).

:func:`build` (:func:`main`; run by ``infra/package.py`` in the bundle and by ``bench/cold_start.py``) imports every module, generates the event validators (``_schemas``) and
writes their compiled code to ``CACHE_FILE``. :func:`install` (``chalicelib/__init__.py``, before any
module defines a dataclass) loads it and makes ``dataclasses`` look each source text up before
compiling it, and puts the patterns, built from their compiled form (``_sre.compile``, what ``re``'s
compiler calls last), into ``re``'s own cache, where ``re.compile`` finds them; :func:`validator` returns
a schema's validator from its cached code.

Nothing changes but where a code object (or a compiled pattern: equal to what ``re.compile`` builds, code
included) comes from. Dataclass code is keyed by its exact source text
(a changed class is simply compiled, as before); a validator by the schema's canonical JSON, the options
and the fastjsonschema version, and it runs the very code ``fastjsonschema.compile_to_code`` wrote for
that schema (the library's own ahead-of-time form of ``compile``), except that it raises
:class:`SchemaValueError` where it raised ``fastjsonschema.JsonSchemaValueException`` (same fields): the
generated module imports its exception classes from fastjsonschema, whose package imports every draft's code
generator, so a cold start that only runs cached validators does not import fastjsonschema at all. Catch
:func:`schema_exceptions` (both classes once fastjsonschema is imported). A missing, corrupt or foreign file
(another Python, or an older format: ``HEADER`` is checked) is ignored. The file is a build product, not in git.
"""

from __future__ import annotations

import contextlib
import json
import marshal
import re
import sys
from collections.abc import Callable
from importlib.util import MAGIC_NUMBER
from pathlib import Path
from types import CodeType
from typing import Any

CACHE_FILE = Path(__file__).resolve().parent.parent / f"__codecache__.{sys.implementation.cache_tag}.marshal"

#: The file starts with this (the bytecode magic number: another Python ignores the file; then the format).
HEADER = MAGIC_NUMBER + b"sarafan-codecache/3\n"

#: Dataclass method source text -> its compiled code.
_functions: dict[str, CodeType] = {}
#: Validator key -> (name of the validating function, marshalled code of the generated module).
_validators: dict[str, tuple[str, bytes]] = {}
#: (pattern, flags) -> the arguments ``re``'s compiler gives ``_sre.compile`` for it.
_regexes: dict[tuple[str, int], tuple[Any, ...]] = {}
_installed = False
_recording = False


class SchemaValueError(ValueError):
    """Invalid data, as a cached validator reports it: ``fastjsonschema.JsonSchemaValueException``'s fields
    (``message``, ``value``, ``name``, ``definition``, ``rule``) and properties (``path``, ``rule_definition``)."""

    def __init__(self, message: str, value: Any = None, name: str | None = None, definition: Any = None,
                 rule: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.value = value
        self.name = name
        self.definition = definition
        self.rule = rule

    @property
    def path(self) -> list[str]:
        return [item for item in re.split(r"[\.\[\]]+", self.name or "") if item != ""]

    @property
    def rule_definition(self) -> Any:
        if not self.rule or not self.definition:
            return None
        return self.definition.get(self.rule)


class SchemaValuesError(ValueError):
    """``fastjsonschema.JsonSchemaValuesException`` (``fast_fail=False``, which Sarafan does not use)."""

    def __init__(self, errors: list[SchemaValueError]) -> None:
        self.message = "; ".join(error.message for error in errors)
        super().__init__(self.message)
        self.errors = errors


#: The import ``fastjsonschema.compile_to_code`` writes into every generated module, and what cached code runs.
_GENERATED_IMPORT = "from fastjsonschema import JsonSchemaValueException, JsonSchemaValuesException\n"
_CACHED_IMPORT = ("from chalicelib.domain.codecache import SchemaValueError as JsonSchemaValueException, "
                  "SchemaValuesError as JsonSchemaValuesException\n")


def schema_exceptions() -> tuple[type[ValueError], ...]:
    """What a :func:`validator` raises for invalid data: :class:`SchemaValueError` (cached code) and, once
    fastjsonschema is imported (a schema compiled at runtime), ``fastjsonschema.JsonSchemaValueException``.
    For ``except``: a class that was never imported cannot have been raised."""
    imported = sys.modules.get("fastjsonschema")
    exception = getattr(imported, "JsonSchemaValueException", None)
    return (SchemaValueError,) if exception is None else (SchemaValueError, exception)


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
        functions, validators, regexes = stored["functions"], stored["validators"], stored["regexes"]
    except (OSError, EOFError, ValueError, TypeError, KeyError):
        return
    _functions.update({k: v for k, v in functions.items() if isinstance(k, str) and isinstance(v, CodeType)})
    _validators.update({k: v for k, v in validators.items() if isinstance(k, str) and isinstance(v, tuple)})
    _regexes.update({k: v for k, v in regexes.items() if isinstance(k, tuple) and isinstance(v, tuple)})


def _seed_regexes() -> None:
    """Put the cached patterns into ``re``'s cache (keyed as ``re._compile`` looks them up), built by
    ``_sre.compile`` from their compiled form: ``re.compile`` then returns them without parsing. A pattern
    already there, or one this Python's ``_sre`` refuses, is left to ``re``."""
    import _sre

    cache, build = getattr(re, "_cache", None), getattr(_sre, "compile", None)
    if not isinstance(cache, dict) or build is None:
        return
    for (pattern, flags), arguments in _regexes.items():
        key = (str, pattern, flags)
        if key not in cache:
            try:
                cache[key] = build(*arguments)
            except (TypeError, ValueError, OverflowError, RuntimeError):
                continue


def compiled_pattern(pattern: str, flags: int) -> tuple[Any, ...]:
    """The arguments ``re._compiler.compile`` passes to ``_sre.compile`` for ``pattern`` (same steps)."""
    from re import _compiler, _parser  # type: ignore[attr-defined]

    parsed = _parser.parse(pattern, flags)
    code = _compiler._code(parsed, flags)
    groupindex = dict(parsed.state.groupdict)
    indexgroup: list[str | None] = [None] * parsed.state.groups
    for name, index in groupindex.items():
        indexgroup[index] = name
    # Plain ints: the compiler's opcodes are an int subclass, which marshal does not write.
    return (pattern, int(flags | parsed.state.flags), [int(c) for c in code], int(parsed.state.groups - 1),
            {str(k): int(v) for k, v in groupindex.items()}, tuple(indexgroup))


def _record_regexes() -> Callable[[], None]:
    """While building: remember every pattern ``chalicelib`` code (or a generated validator) has ``re`` compile;
    returns the function that stops recording."""
    original = re._compile  # type: ignore[attr-defined]

    def recording(pattern: Any, flags: Any) -> Any:
        value = flags.value if isinstance(flags, re.RegexFlag) else flags
        if type(pattern) is str and isinstance(value, int) and not value & re.DEBUG:
            frame = sys._getframe(1)
            while frame is not None and frame.f_globals.get("__name__") in ("re", "re._compiler"):
                frame = frame.f_back  # type: ignore[assignment]
            module = frame.f_globals.get("__name__") if frame is not None else ""
            if module is None or module == "chalicelib" or str(module).startswith("chalicelib."):
                with contextlib.suppress(Exception):  # an invalid pattern: re raises it below, as it would
                    _regexes[(pattern, value)] = compiled_pattern(pattern, value)
        return original(pattern, flags)

    re._compile = recording  # type: ignore[attr-defined]

    def stop() -> None:
        re._compile = original  # type: ignore[attr-defined]

    return stop


def install() -> None:
    """Load the cache and route ``dataclasses``' ``exec`` through it (once; a no-op on a Python whose
    ``dataclasses`` does not compile with a module-level ``exec`` call)."""
    global _installed
    if _installed:
        return
    _installed = True
    _load()
    _seed_regexes()
    import dataclasses

    creator = getattr(dataclasses, "_create_fn", None)
    if creator is not None and "exec" in creator.__code__.co_names and not hasattr(dataclasses, "exec"):
        dataclasses.exec = _exec  # type: ignore[attr-defined]  # a module global shadows the builtin


_version: list[str] = []


def _fastjsonschema_version() -> str:
    """The installed fastjsonschema's ``VERSION``, read from its ``version.py`` without importing the package."""
    if not _version:
        from importlib.util import find_spec

        spec = find_spec("fastjsonschema")
        found = None
        if spec is not None and spec.submodule_search_locations:
            try:
                text = (Path(next(iter(spec.submodule_search_locations))) / "version.py").read_text(encoding="utf-8")
                found = re.search(r"""^VERSION\s*=\s*['"]([^'"]+)['"]""", text, re.M)
            except OSError:
                found = None
        if found is None:  # an unexpected layout: ask the package itself
            from fastjsonschema import VERSION

            _version.append(VERSION)
        else:
            _version.append(found.group(1))
    return _version[0]


def _key(content: str, use_default: bool) -> str:
    return f"{_fastjsonschema_version()}|{int(use_default)}|{content}"


def canonical(schema: dict[str, Any]) -> str:
    """The text a schema is known by (sorted keys; non-JSON values as text)."""
    return json.dumps(schema, sort_keys=True, default=str)


def validator(schema: dict[str, Any], *, use_default: bool = True, content: str | None = None
              ) -> Callable[[Any], Any]:
    """``fastjsonschema.compile(schema, use_default=...)``, from the cached code when the cache has it (that
    code raises :class:`SchemaValueError`; catch :func:`schema_exceptions`)."""
    key = _key(content if content is not None else canonical(schema), use_default)
    hit = _validators.get(key)
    if hit is not None:
        name, blob = hit
        namespace: dict[str, Any] = {}
        exec(marshal.loads(blob), namespace)  # code compile_to_code generated at build time
        return namespace[name]  # type: ignore[no-any-return]
    import fastjsonschema

    compiled = fastjsonschema.compile(schema, use_default=use_default)
    if not _recording:
        return compiled  # type: ignore[no-any-return]
    generated = fastjsonschema.compile_to_code(schema, use_default=use_default)
    if generated.count(_GENERATED_IMPORT) != 1:  # another fastjsonschema: not cached, compiled at runtime
        return compiled  # type: ignore[no-any-return]
    code = compile(generated.replace(_GENERATED_IMPORT, _CACHED_IMPORT), f"<schema {compiled.__name__}>", "exec",
                   dont_inherit=True)
    _validators[key] = (compiled.__name__, marshal.dumps(code))
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
    _regexes.clear()
    _recording = True
    stop_recording_regexes = _record_regexes()
    try:
        import chalicelib

        importlib.import_module("app")
        for module in pkgutil.walk_packages(chalicelib.__path__, "chalicelib."):
            importlib.import_module(module.name)
        for schema in _schemas():
            validator(schema)
    finally:
        _recording = False
        stop_recording_regexes()
    stored = {"functions": dict(sorted(_functions.items())), "validators": dict(sorted(_validators.items())),
              "regexes": dict(sorted(_regexes.items()))}
    path.write_bytes(HEADER + marshal.dumps(stored))
    return len(_functions), len(_validators)


def main() -> None:
    """``python -c "from chalicelib.domain import codecache; codecache.main()"`` (from the project directory)."""
    functions, validators = build()
    print(f"{functions} dataclass functions, {validators} validators and {len(_regexes)} regular expressions "
          f"compiled into {CACHE_FILE}")
