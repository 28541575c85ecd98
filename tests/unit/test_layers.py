"""The structure stays layered: no module of a lower layer imports a higher one (static, by AST).

    domain (pure)  <  config, logs, aws  <  store  <  services, notify, adapters  <  jobs, api, web  <  app.py

``domain`` imports nothing outside ``domain`` (and no boto3, pynamodb or chalice). A new top-level
folder under chalicelib/ must be given a layer here, or this test fails. And one clock: no module but
``chalicelib/domain/clock.py`` reads the time (the checker: ``tests/unit/test_one_clock.py``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAYERS = {
    "domain": 0,
    "config": 1, "logs": 1, "aws": 1,
    "store": 2,
    "services": 3, "notify": 3, "adapters": 3, "analytics": 3,
    "jobs": 4, "api": 4, "web": 4,
}
FORBIDDEN_IN_DOMAIN = ("boto3", "botocore", "pynamodb", "chalice")


def _top(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "chalicelib" and len(parts) > 1 else None


def _imports(path: Path) -> list[str]:
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append(node.module)
            out += [f"{node.module}.{a.name}" for a in node.names if node.module == "chalicelib"]
    return out


MODULES = sorted((ROOT / "chalicelib").rglob("*.py"))


def _layer_of(path: Path) -> str:
    rel = path.relative_to(ROOT / "chalicelib")
    return rel.parts[0].removesuffix(".py")


def test_every_top_level_package_has_a_layer() -> None:
    tops = {_layer_of(p) for p in MODULES} - {"__init__"}
    assert tops <= set(LAYERS), f"give these a layer in tests/unit/test_layers.py: {sorted(tops - set(LAYERS))}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_imports_a_higher_layer(path: Path) -> None:
    own = _layer_of(path)
    if own == "__init__":
        return
    rank = LAYERS[own]
    for name in _imports(path):
        if own == "domain":
            assert name.split(".")[0] not in FORBIDDEN_IN_DOMAIN, f"{path.name}: the domain is pure, imports {name}"
        top = _top(name)
        if top is None:
            continue
        assert LAYERS.get(top, 99) <= rank, f"{path.relative_to(ROOT)} ({own}) imports {name} (a higher layer)"
        if own == "domain":
            assert top == "domain", f"{path.relative_to(ROOT)}: the domain imports only the domain, not {name}"


@pytest.mark.parametrize("path", [*MODULES, ROOT / "app.py"], ids=lambda p: str(p.relative_to(ROOT)))
def test_only_the_clock_module_reads_the_time(path: Path) -> None:
    from tests.unit.test_one_clock import reads_outside_the_clock

    reads = reads_outside_the_clock(path)
    assert not reads, (f"{path.relative_to(ROOT)} reads the time itself: {reads}; ask the Clock port instead "
                       "(deps.clock.now() or ports.current().clock.now(); a domain function takes now as an argument)")
