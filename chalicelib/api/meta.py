"""Service metadata: health and the OpenAPI document."""

from __future__ import annotations

from typing import Any

from chalicelib.api.http import ApiBlueprint, ApiRequest

meta = ApiBlueprint(__name__)


@meta.endpoint("/health", "GET", summary="Liveness check (no dependencies touched)", tag="Meta", auth="none")
def health(req: ApiRequest) -> Any:
    from chalicelib.config import get_settings

    return {"status": "ok", "stage": get_settings().stage}


@meta.endpoint("/openapi.json", "GET", summary="This API's OpenAPI 3 document", tag="Meta", auth="none")
def openapi_document(req: ApiRequest) -> Any:
    from chalicelib.api.openapi import build_document
    from chalicelib.config import get_settings

    return build_document(get_settings().public_base_url)
