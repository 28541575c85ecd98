"""Platform adapters: a shop's or CRM's own webhook format → canonical events.

One module per platform, pure mapping (no boto3, no storage): ``verify`` checks the
platform's signature on the raw body, ``translate`` turns a verified payload into
canonical event bodies (``domain.events``) that the one pipeline processes. The
integration service (``services.integrations`` / ``services.platform_intake``) owns
settings, secrets and the HTTP contract.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from chalicelib.adapters.base import Adapter

#: Platform name in URLs → module. Imported on first use (cold start).
PLATFORMS: dict[str, str] = {
    "shopify": "chalicelib.adapters.shopify",
    "woocommerce": "chalicelib.adapters.woocommerce",
    "hubspot": "chalicelib.adapters.hubspot",
    "tilda": "chalicelib.adapters.tilda",
    "amocrm": "chalicelib.adapters.amocrm",
    "bitrix24": "chalicelib.adapters.bitrix24",
    "insales": "chalicelib.adapters.insales",
}


def get(platform: str) -> Adapter | None:
    module = PLATFORMS.get(platform)
    if module is None:
        return None
    return importlib.import_module(module).ADAPTER  # type: ignore[no-any-return]
