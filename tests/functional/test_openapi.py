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


def test_every_route_declares_its_success_body_and_real_error_statuses(api: ApiClient) -> None:
    document = api.get("/openapi.json", key=None).body
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            success = [code for code in responses if code < "400"]
            assert success, (method, path)
            for code in success:
                if code != "302":
                    content = responses[code].get("content")
                    assert content, f"{method.upper()} {path} {code}: no success body declared (response_schema=)"
                    assert all("schema" in media for media in content.values()), (method, path, code)
            assert {"400", "404", "422", "503"} <= set(responses), (method, path)
            if operation["security"]:
                assert {"401", "403"} <= set(responses), (method, path)
    assert "409" in document["paths"]["/v1/programs/{program_id}/members/{member_id}/redemptions"]["post"]["responses"]
    redirect = document["paths"]["/r/{code}"]["get"]["responses"]["302"]
    assert "Location" in redirect["headers"]


def test_webhook_signature_headers_and_request_examples_are_declared(api: ApiClient) -> None:
    document = api.get("/openapi.json", key=None).body
    webhook = document["paths"]["/v1/webhooks/{partner_id}/events"]["post"]
    headers = {p["name"] for p in webhook["parameters"] if p["in"] == "header" and p["required"]}
    assert headers == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    assert webhook["requestBody"]["content"]["application/json"]["example"]["type"] == "order.paid"
    for path in ("/v1/programs", "/v1/landing/invites"):
        assert "example" in document["paths"][path]["post"]["requestBody"]["content"]["application/json"]


def test_the_response_check_fails_on_an_undeclared_status_or_shape(api: ApiClient) -> None:
    import pytest

    from tests.openapi_check import check_response

    json_type = {"content-type": "application/json"}
    check_response("GET", "/health", 200, json_type, {"status": "ok", "stage": "test"})
    with pytest.raises(AssertionError, match="does not declare"):
        check_response("GET", "/health", 418, json_type, {})
    with pytest.raises(AssertionError, match="does not match"):
        check_response("GET", "/v1/programs/prg_1/members/mbr_1/balance", 200, json_type, {"available": "12"})
    with pytest.raises(AssertionError, match="does not match"):
        check_response("GET", "/v1/programs/prg_1", 404, json_type, {"message": "no error envelope"})
