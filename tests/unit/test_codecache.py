"""The compiled code cache (``chalicelib.domain.codecache``) changes where code comes from, never what it does.

Validators from the cache are differential-tested against ``fastjsonschema.compile`` of the same schema on
valid, mutated and arbitrary bodies (same result, or the same error: rule, path, message, value, definition);
dataclasses built from cached code are the same classes. And the cold-start import structure: ``import app``
leaves the services of the routes it does not run unimported (counted, never timed).
"""

from __future__ import annotations

import ast
import builtins
import copy
import dataclasses
import marshal
import subprocess
import sys
from pathlib import Path
from typing import Any

import fastjsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chalicelib.domain import codecache
from chalicelib.domain.events import EVENT_SCHEMAS

ROOT = Path(__file__).resolve().parents[2]

ORDER = {
    "type": "order.paid", "occurred_at": "2026-11-23T10:00:00Z", "object": {"type": "order", "id": "o-1"},
    "customer": {"id": "c-1", "email": "anna@example.com", "phone": "+79123456789", "name": "Anna", "locale": "ru",
                 "birthday": "1990-05-01"},
    "order": {"total": 250_000, "subtotal": 240_000, "shipping": 10_000, "discount": 0, "currency": "RUB"},
    "referral": {"code": "ABCD2345678", "coupon_codes": ["SPRING"], "utm": {"source": "telegram"},
                 "landing_url": "https://shop.example/x"},
    "context": {"ip": "203.0.113.5", "user_agent": "UA", "shipping_address": {"city": "Kazan"}},
    "refund": {"amount": 100, "currency": "RUB", "order_id": "o-1"},
    "data": {"k": "v"},
}
PATHS = [(), ("type",), ("occurred_at",), ("object",), ("object", "id"), ("object", "type"), ("customer",),
         ("customer", "id"), ("customer", "locale"), ("customer", "birthday"), ("order",), ("order", "total"),
         ("order", "currency"), ("referral",), ("referral", "coupon_codes"), ("referral", "utm"),
         ("referral", "landing_url"), ("context",), ("context", "shipping_address"), ("refund",),
         ("refund", "amount"), ("data",), ("extra",), ("customer", "extra")]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | st.floats(allow_nan=False)
    | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=10,
)


@st.composite
def bodies(draw: st.DrawFn) -> Any:
    if draw(st.integers(0, 9)) == 0:
        return draw(json_values)
    body = copy.deepcopy(ORDER)
    body["type"] = draw(st.sampled_from([*EVENT_SCHEMAS, "custom.x"]))
    for path in draw(st.lists(st.sampled_from(PATHS), max_size=4, unique=True)):
        if not path:
            continue
        parent: Any = body
        for part in path[:-1]:
            parent = parent.get(part) if isinstance(parent, dict) else None
        if not isinstance(parent, dict):
            continue
        if draw(st.booleans()):
            parent.pop(path[-1], None)
        else:
            parent[path[-1]] = draw(json_values)
    return body


def outcome(validate: Any, body: Any) -> tuple[Any, ...]:
    try:
        return ("ok", validate(copy.deepcopy(body)))
    except (fastjsonschema.JsonSchemaValueException, codecache.SchemaValueError) as exc:
        return ("error", exc.rule, exc.name, exc.message, repr(exc.value), exc.definition, exc.path,
                exc.rule_definition)


@pytest.fixture(scope="module")
def pairs() -> dict[str, tuple[Any, Any]]:
    """(validator from cached code, fastjsonschema.compile) for every event schema."""
    saved, recording = dict(codecache._validators), codecache._recording
    codecache._validators.clear()
    codecache._recording = True
    try:
        cached = {key: codecache.validator(schema) for key, schema in EVENT_SCHEMAS.items()}
    finally:
        codecache._recording = recording
        codecache._validators.clear()
        codecache._validators.update(saved)
    return {key: (cached[key], fastjsonschema.compile(schema)) for key, schema in EVENT_SCHEMAS.items()}


def test_every_event_schema_has_code_in_the_cache_build(pairs: dict[str, tuple[Any, Any]]) -> None:
    assert set(pairs) == set(EVENT_SCHEMAS)
    for cached, compiled in pairs.values():
        assert cached is not compiled and cached.__name__ == compiled.__name__


@settings(max_examples=300, deadline=None)
@given(body=bodies())
def test_a_cached_validator_answers_exactly_as_the_compiled_one(pairs: dict[str, tuple[Any, Any]], body: Any) -> None:
    for cached, compiled in pairs.values():
        assert outcome(cached, body) == outcome(compiled, body)


def test_cached_code_raises_our_class_and_never_imports_fastjsonschema(tmp_path: Path) -> None:
    """A cold start that only runs cached validators does not import fastjsonschema (its package imports every
    draft's code generator); what the cached code raises is ``codecache.SchemaValueError``, caught as before."""
    path = tmp_path / "cache.marshal"
    subprocess.run([sys.executable, "-c", "from pathlib import Path; from chalicelib.domain import codecache; "
                    f"codecache.build(Path({str(path)!r}))"], cwd=ROOT, capture_output=True, text=True, check=True,
                   env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "AWS_DEFAULT_REGION": "us-east-1"})
    use = f"""
import sys
from pathlib import Path
from chalicelib.domain import codecache
codecache.CACHE_FILE = Path({str(path)!r}); codecache._load()
from chalicelib.domain.errors import ValidationFailed
from chalicelib.domain.events.parse import parse_event
from chalicelib.domain.events.schemas import _validator
body = {{"type": "order.paid", "occurred_at": "2026-01-15T10:00:00Z", "object": {{"type": "order", "id": "o-1"}},
        "customer": {{"id": "c-1"}}, "order": {{"total": 100, "currency": "RUB"}}}}
from datetime import datetime, timezone
now = datetime(2026, 1, 16, tzinfo=timezone.utc)
print(parse_event(body, now=now).type)
try:
    _validator("order.paid")({{**body, "order": {{"total": -1, "currency": "RUB"}}}})
except codecache.SchemaValueError as exc:
    print(type(exc).__name__, exc.rule, exc.path, exc.rule_definition)
try:
    parse_event({{**body, "order": {{"total": 100}}}}, now=now)
except ValidationFailed as exc:
    print(exc.details["errors"])
print("fastjsonschema" in sys.modules, codecache.schema_exceptions())
"""
    done = subprocess.run([sys.executable, "-c", use], cwd=ROOT, capture_output=True, text=True, check=True,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "AWS_DEFAULT_REGION": "us-east-1"})
    assert done.stdout.strip().splitlines() == [
        "order.paid",
        "SchemaValueError minimum ['data', 'order', 'total'] 0",
        "[{'path': '$.order.currency', 'message': 'is required'}]",
        "False (<class 'chalicelib.domain.codecache.SchemaValueError'>,)",
    ]


def test_cached_patterns_are_the_ones_re_compiles(tmp_path: Path) -> None:
    """Every pattern the build recorded, built from its cached compiled form, equals ``re.compile``'s (a
    ``Pattern`` compares its pattern, flags and compiled code), and ``install`` puts it where ``re`` looks."""
    import _sre
    import re

    path = tmp_path / "cache.marshal"
    subprocess.run([sys.executable, "-c", "from pathlib import Path; from chalicelib.domain import codecache; "
                    f"codecache.build(Path({str(path)!r}))"], cwd=ROOT, capture_output=True, text=True, check=True,
                   env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "AWS_DEFAULT_REGION": "us-east-1"})
    regexes = marshal.loads(path.read_bytes()[len(codecache.HEADER):])["regexes"]
    from chalicelib.domain import safe_json, urls

    assert (safe_json._TOKEN.pattern, 0) in regexes and (urls._LABEL.pattern, 0) in regexes
    assert len(regexes) > 20
    for (pattern, flags), arguments in regexes.items():
        built, compiled = _sre.compile(*arguments), re.compile(pattern, flags)
        assert built == compiled and built is not compiled
        assert (built.flags, built.groups, built.groupindex) == (compiled.flags, compiled.groups, compiled.groupindex)
    saved = dict(codecache._regexes)
    try:
        codecache._regexes.clear()
        codecache._regexes[("^sarafan-seeded-[0-9]+$", 0)] = codecache.compiled_pattern("^sarafan-seeded-[0-9]+$", 0)
        codecache._seed_regexes()
        seeded = re._cache[(str, "^sarafan-seeded-[0-9]+$", 0)]  # type: ignore[attr-defined]
        assert re.compile("^sarafan-seeded-[0-9]+$") is seeded and seeded.match("sarafan-seeded-42")
    finally:
        codecache._regexes.clear()
        codecache._regexes.update(saved)


def test_schema_exceptions_include_fastjsonschemas_once_imported() -> None:
    assert fastjsonschema.JsonSchemaValueException in codecache.schema_exceptions()  # imported by this module
    with pytest.raises(codecache.schema_exceptions()):
        codecache.validator({"type": "object", "properties": {"n": {"type": "integer"}}})({"n": "x"})


def test_valid_and_invalid_bodies_agree(pairs: dict[str, tuple[Any, Any]]) -> None:
    cached, compiled = pairs["order.paid"]
    valid = {k: v for k, v in ORDER.items() if k != "refund"}
    assert outcome(cached, valid) == outcome(compiled, valid) == ("ok", valid)
    for broken in ({**valid, "order": {"total": -1, "currency": "RUB"}}, {**valid, "occurred_at": "yesterday"},
                   {**valid, "surprise": 1}, {k: v for k, v in valid.items() if k != "customer"}):
        assert outcome(cached, broken)[0] == "error"
        assert outcome(cached, broken) == outcome(compiled, broken)


def test_dataclass_methods_are_compiled_once_and_behave_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    assert dataclasses.exec is codecache._exec  # type: ignore[attr-defined]  # installed by chalicelib/__init__
    monkeypatch.setattr(codecache, "_functions", {})
    monkeypatch.setattr(codecache, "_recording", True)

    def make() -> Any:
        @dataclasses.dataclass(frozen=True)
        class Point:
            x: int
            y: int = 0
            tags: tuple[str, ...] = ()

        return Point

    first, second = make(), make()
    assert codecache._functions  # the generated methods' code was recorded ...
    assert first.__init__.__code__ is second.__init__.__code__  # ... and the second class reused it
    monkeypatch.setattr(dataclasses, "exec", builtins.exec)
    plain = make()  # what dataclasses builds without the cache
    for method in ("__init__", "__repr__", "__eq__", "__hash__", "__setattr__", "__delattr__"):
        cached_fn, plain_fn = getattr(second, method), getattr(plain, method)
        assert cached_fn.__annotations__ == plain_fn.__annotations__, method  # no __future__ flags leaked in
        assert cached_fn.__code__.co_flags == plain_fn.__code__.co_flags, method
    assert second.__doc__ == plain.__doc__ == "Point(x: 'int', y: 'int' = 0, tags: 'tuple[str, ...]' = ())"
    p = second(1, tags=("a",))
    assert p == second(1, 0, ("a",)) and repr(p) == "test_dataclass_methods_are_compiled_once_and_behave_the_same." \
        "<locals>.make.<locals>.Point(x=1, y=0, tags=('a',))"
    assert hash(p) == hash(second(1, 0, ("a",)))
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.x = 2  # type: ignore[misc]


@pytest.mark.parametrize("content", [b"", b"not marshal at all", b"\x00\x00\r\n" + b"x" * 20])
def test_a_missing_corrupt_or_foreign_cache_file_is_ignored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            content: bytes) -> None:
    path = tmp_path / "cache.marshal"
    if content:
        path.write_bytes(content)
    monkeypatch.setattr(codecache, "CACHE_FILE", path)
    monkeypatch.setattr(codecache, "_functions", {})
    monkeypatch.setattr(codecache, "_validators", {})
    codecache._load()
    assert codecache._functions == {} and codecache._validators == {}
    from importlib.util import MAGIC_NUMBER

    path.write_bytes(codecache.HEADER + b"\xff garbage")
    codecache._load()
    assert codecache._functions == {} and codecache._validators == {}
    path.write_bytes(MAGIC_NUMBER + marshal.dumps({"functions": {"x": compile("1", "x", "exec")}, "validators": {}}))
    codecache._load()
    assert codecache._functions == {} and codecache._validators == {}


def test_the_build_writes_a_cache_a_new_process_uses(tmp_path: Path) -> None:
    """Built in a fresh process (as infra/package.py does), loaded by another: its validator is the cached one."""
    path = tmp_path / "cache.marshal"
    build = ("from pathlib import Path; from chalicelib.domain import codecache; "
             f"print(codecache.build(Path({str(path)!r})))")
    done = subprocess.run([sys.executable, "-c", build], cwd=ROOT, capture_output=True, text=True, check=True,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "AWS_DEFAULT_REGION": "us-east-1"})
    functions, validators = ast.literal_eval(done.stdout.strip().splitlines()[-1])
    assert functions > 100 and validators == len(EVENT_SCHEMAS)
    use = ("from pathlib import Path; from chalicelib.domain import codecache; "
           f"codecache.CACHE_FILE = Path({str(path)!r}); codecache._load(); "
           "from chalicelib.domain.events.schemas import _validator; v = _validator('order.paid'); "
           "print(v.__code__.co_filename)")
    done = subprocess.run([sys.executable, "-c", use], cwd=ROOT, capture_output=True, text=True, check=True,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "AWS_DEFAULT_REGION": "us-east-1"})
    assert done.stdout.strip() == "<schema validate>"  # from the cache, not compiled (fastjsonschema: "<string>")


#: Modules only some routes need: ``import app`` must not import them (a cold start serves one route).
LAZY = ["chalicelib.services.pipeline", "chalicelib.services.programs", "chalicelib.services.erasure",
        "chalicelib.services.importer", "chalicelib.services.import_jobs", "chalicelib.services.ledger_export",
        "chalicelib.services.member_export", "chalicelib.services.coupons", "chalicelib.services.members_query",
        "chalicelib.notify.members", "chalicelib.services.offers", "chalicelib.services.review",
        "chalicelib.services.partner_webhooks", "chalicelib.services.wallet", "chalicelib.analytics.panels",
        "chalicelib.services.landing.invites", "chalicelib.domain.rewards", "fastjsonschema"]


def test_import_app_leaves_other_routes_services_unimported() -> None:
    code = f"import sys, app; print([m for m in {LAZY!r} if m in sys.modules])"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)})
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_analytics_routes_are_the_panels() -> None:
    from chalicelib.analytics.panels import PANELS
    from chalicelib.api.analytics import SCHEMAS

    assert set(SCHEMAS) == set(PANELS)


def test_import_app_and_the_first_request_freeze_what_they_built_and_leave_the_collector_as_it_was() -> None:
    """``app.py`` pauses the garbage collector while it imports and freezes what the imports built; the first
    HTTP request runs under a raised threshold and freezes too (``http_middleware``); then the collector runs as
    before (enabled, default thresholds), and later requests freeze nothing."""
    code = """
import gc
before = gc.get_threshold()
from chalice.test import Client
import app
from chalicelib.api import http
after_import = (gc.isenabled(), gc.get_freeze_count())
seen = []
real = http._serve
def spy(event, get_response):
    seen.append(gc.get_threshold()[0])
    return real(event, get_response)
http._serve = spy
with Client(app.app) as client:
    first = client.http.get("/health").status_code
    after_first = (gc.isenabled(), gc.get_freeze_count(), gc.get_threshold() == before)
    second = client.http.get("/health").status_code
print(after_import[0], after_import[1] > 10_000, first, after_first[0], after_first[1] > after_import[1],
      after_first[2], second, seen == [http.FIRST_REQUEST_GC_THRESHOLD, before[0]],
      gc.get_freeze_count() <= after_first[1])  # freed objects leave it; nothing new is frozen
"""
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)})
    assert done.stdout.strip().splitlines()[-1] == "True True 200 True True True 200 True True"
