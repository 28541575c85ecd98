"""The OpenAPI document covers every route the app serves."""

from __future__ import annotations

from app import app
from tests.support import ApiClient


def test_every_route_is_documented(api: ApiClient) -> None:
    reply = api.get("/openapi.json", key=None)
    assert reply.status == 200
    document = reply.body
    assert document["openapi"].startswith("3.")
    documented = {(path, method.upper()) for path, ops in document["paths"].items() for method in ops}
    served = {(path, method) for path, methods in app.routes.items() for method in methods if method != "OPTIONS"}
    assert served, "the app serves no routes?"
    assert served - documented == set(), "routes missing from /openapi.json"
    assert documented - served == set(), "documented routes the app does not serve"


def test_operations_have_unique_ids_and_error_schema(api: ApiClient) -> None:
    document = api.get("/openapi.json", key=None).body
    ids = [op["operationId"] for ops in document["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids))
    assert "Error" in document["components"]["schemas"]


def test_canonical_event_schemas_are_published(api: ApiClient) -> None:
    document = api.get("/openapi.json", key=None).body
    schemas = document["components"]["schemas"]
    for name in ("member.signup", "lead.created", "deal.won", "order.paid", "order.refunded", "order.cancelled", "custom"):
        assert f"Event.{name}" in schemas
    body = document["paths"]["/v1/webhooks/{partner_id}/events"]["post"]["requestBody"]
    refs = [s["$ref"] for s in body["content"]["application/json"]["schema"]["oneOf"]]
    assert all(ref.removeprefix("#/components/schemas/") in schemas for ref in refs)
