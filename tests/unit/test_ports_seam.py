"""Services converted to the ports (``services.ports``) reach the store only through them (static, by AST).

A converted service may name stored record types for type hints (under ``TYPE_CHECKING``), never import
``chalicelib.store`` when it runs: its service test on ``ports.fakes()`` then covers everything it reads and
writes. Convert a service, then add it to ``CONVERTED``. ``store_importers`` is also what docs/architecture.md
counts (the services that still import the store, and why).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ROOT / "chalicelib" / "services"

CONVERTED = (
    "adjustments.py",
    "auth.py",
    "coupons.py",
    "erasure.py",
    "crm_fetch.py",
    "event_context.py",
    "intake.py",
    "landing/cors.py",
    "landing/invites.py",
    "landing/offer.py",
    "landing/rate_limits.py",
    "landing/redirect.py",
    "landing/signals.py",
    "ledger_export.py",
    "integrations.py",
    "member_export.py",
    "members_query.py",
    "offers.py",
    "partner_webhooks.py",
    "platform_intake.py",
    "programs.py",
    "review.py",
    "rules.py",
    "redemption.py",
    "settlement.py",
    "signed_cursor.py",
    "statement.py",
    "wallet.py",
)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def runtime_store_imports(path: Path) -> list[str]:
    """The ``chalicelib.store`` modules ``path`` imports when it runs (anywhere, except under TYPE_CHECKING)."""
    found: list[str] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "chalicelib.store" or node.module.startswith("chalicelib.store."):
                found.append(node.module)
        elif isinstance(node, ast.Import):
            found.extend(a.name for a in node.names if a.name.startswith("chalicelib.store"))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return found


def store_importers() -> list[str]:
    """Service modules that import the store at run time (``ports.py`` itself wires it: not counted)."""
    return sorted(str(p.relative_to(SERVICES)) for p in SERVICES.rglob("*.py")
                  if p.name != "ports.py" and runtime_store_imports(p))


@pytest.mark.parametrize("module", CONVERTED)
def test_a_converted_service_reaches_the_store_only_through_the_ports(module: str) -> None:
    assert runtime_store_imports(SERVICES / module) == [], (
        f"{module} is on the ports (tests/service/): read and write through ``deps`` (services.ports), "
        "and put the PynamoDB specifics in store/dynamo_ports.py with a fake and a contract test")


def test_the_ports_module_imports_the_store_only_where_it_wires_it() -> None:
    tree = ast.parse((SERVICES / "ports.py").read_text(encoding="utf-8"))
    top_level = [n for n in tree.body if isinstance(n, ast.ImportFrom) and (n.module or "").startswith("chalicelib.store")]
    assert top_level == []


def test_the_architecture_doc_counts_the_services_that_still_import_the_store() -> None:
    """docs/architecture.md says how many service modules still import the store (and why): keep it true."""
    doc = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    found = re.search(r"(\d+) of the (\d+) service modules", doc)
    assert found is not None
    modules = [p for p in SERVICES.rglob("*.py") if p.name not in ("ports.py", "__init__.py")]
    assert (int(found[1]), int(found[2])) == (len(store_importers()), len(modules)), store_importers()
