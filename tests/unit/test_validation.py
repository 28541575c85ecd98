"""The schema validator cache: a schema built per call is never validated with another's validator."""

from __future__ import annotations

from typing import Any

import pytest

from chalicelib.domain.errors import ValidationFailed
from chalicelib.domain.validation import validate


def _settings_schema(platform: str) -> dict[str, Any]:
    """Built anew on each call, like a platform's settings schema (services/integrations.py)."""
    field = {"shopify": "shop_domain", "woocommerce": "store_url"}[platform]
    return {"type": "object", "additionalProperties": False, "properties": {field: {"type": "string"}}}


def test_schemas_built_per_call_are_validated_by_their_own_content() -> None:
    # CPython reuses a freed dict's address for the next one: keyed by id() alone, the second
    # platform's schema was once checked with the first one's compiled validator.
    for _ in range(200):
        validate(_settings_schema("shopify"), {"shop_domain": "a.myshopify.com"})
        validate(_settings_schema("woocommerce"), {"store_url": "https://shop.example"})
        with pytest.raises(ValidationFailed):
            validate(_settings_schema("woocommerce"), {"shop_domain": "a.myshopify.com"})
