"""Example rules documents shipped as package data (Chalice deploys all of ``chalicelib/``).

``load_example("single_shop")`` returns a validated ``RulesDoc``; ``load_example_doc`` the raw
JSON dict (a fresh copy every call, safe to modify).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from chalicelib.domain.rewards.models import RulesDoc
from chalicelib.domain.rewards.schema import parse_rules

_DIR = Path(__file__).resolve().parent
EXAMPLES = ("single_shop", "uds_3_level", "b2b_crm", "recurring_10pct_12m", "coalition")


def load_example_doc(name: str) -> dict[str, Any]:
    if name not in EXAMPLES:
        raise KeyError(f"unknown example {name!r}; one of {', '.join(EXAMPLES)}")
    with (_DIR / f"{name}.json").open(encoding="utf-8") as fh:
        doc: dict[str, Any] = json.load(fh)
    return doc


def load_example(name: str) -> RulesDoc:
    return parse_rules(load_example_doc(name))
