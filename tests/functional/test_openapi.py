"""The OpenAPI document covers every route the app serves."""

from __future__ import annotations

import json
from typing import Any

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
            errors = {code for code in responses if code >= "400"}
            if operation["security"]:
                assert {"401", "403"} <= errors, (method, path)
            elif "401" in errors:
                assert "signature" in operation["summary"].lower() or "webhook" in path, (method, path)
            if "requestBody" not in operation:
                assert not errors & {"413", "415"}, f"{method.upper()} {path} reads no body"
            if "{" in path and path != "/r/{code}":
                assert {"400", "404"} <= errors, (method, path)
    paths = document["paths"]
    assert "409" in paths["/v1/programs/{program_id}/members/{member_id}/redemptions"]["post"]["responses"]
    # Only what a route can answer: no conflict, body or store error on the liveness check.
    assert set(paths["/health"]["get"]["responses"]) == {"200"}
    assert set(paths["/openapi.json"]["get"]["responses"]) == {"200"}
    assert set(paths["/r/{code}"]["get"]["responses"]) == {"302", "429"}
    program = paths["/v1/programs/{program_id}"]["get"]["responses"]
    assert set(program) == {"200", "400", "401", "403", "404", "503"}
    assert "409" not in paths["/v1/programs/{program_id}/members/{member_id}/balance"]["get"]["responses"]
    assert "429" in paths["/v1/landing/invites"]["post"]["responses"]
    assert "429" not in paths["/v1/programs"]["post"]["responses"]
    assert "503" in paths["/v1/programs/{program_id}/rules"]["put"]["responses"]
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
    rules = document["paths"]["/v1/programs/{program_id}/rules"]["put"]["requestBody"]["content"]
    assert rules["application/json"]["example"]["rules"]

    # A platform's webhook: JSON or form bodies, each platform's own signature headers (and the URL token).
    platform = document["paths"]["/v1/webhooks/{partner_id}/{platform}"]["post"]
    assert set(platform["requestBody"]["content"]) == {"application/json", "application/x-www-form-urlencoded"}
    declared = {p["name"].lower() for p in platform["parameters"]}
    assert {"x-shopify-hmac-sha256", "x-wc-webhook-signature", "x-hubspot-signature-v3",
            "x-hubspot-request-timestamp", "token"} <= declared


def test_every_request_body_has_an_example_that_its_schema_accepts(api: ApiClient) -> None:
    from tests.openapi_check import _validator

    document = api.get("/openapi.json", key=None).body
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for media, content in operation.get("requestBody", {}).get("content", {}).items():
                assert "example" in content, f"{method.upper()} {path} {media}: no example"
                if media == "application/json":
                    errors = list(_validator(json.dumps(content["schema"], sort_keys=True)).iter_errors(
                        content["example"]))
                    assert not errors, (method, path, errors[0].message)


def test_analytics_rows_declare_every_day_counter() -> None:
    from chalicelib.api.analytics import COUNTERS
    from chalicelib.domain.analytics import DAY_COUNTERS

    assert set(COUNTERS) == set(DAY_COUNTERS)


def test_the_response_check_fails_on_an_undeclared_status_or_shape(api: ApiClient, monkeypatch: Any) -> None:
    import pytest

    from tests.openapi_check import check_response

    monkeypatch.delenv("SARAFAN_OPENAPI_REPORT", raising=False)  # report mode would record instead of failing

    json_type = {"content-type": "application/json"}
    check_response("GET", "/health", 200, json_type, {"status": "ok", "stage": "test"})
    with pytest.raises(AssertionError, match="does not declare"):
        check_response("GET", "/health", 418, json_type, {})
    with pytest.raises(AssertionError, match="does not match"):
        check_response("GET", "/v1/programs/prg_1/members/mbr_1/balance", 200, json_type, {"available": "12"})
    with pytest.raises(AssertionError, match="does not match"):
        check_response("GET", "/v1/programs/prg_1", 404, json_type, {"message": "no error envelope"})
    # Per route: the liveness check never conflicts, a read of a program never answers 409 or 415.
    with pytest.raises(AssertionError, match="does not declare"):
        check_response("GET", "/health", 409, json_type, {"error": {"code": "c", "message": "m", "details": {}}})
    with pytest.raises(AssertionError, match="does not declare"):
        check_response("GET", "/v1/programs/prg_1", 415, json_type, {"error": {"code": "c", "message": "m",
                                                                                 "details": {}}})
    # Closed shapes: a key the document does not name fails, at the top and nested.
    with pytest.raises(AssertionError, match="unexpected"):
        check_response("GET", "/health", 200, json_type, {"status": "ok", "stage": "test", "debug": True})
    with pytest.raises(AssertionError, match="unexpected"):
        check_response("GET", "/v1/programs/prg_1/partners", 200, json_type,
                       {"items": [], "next_cursor": None, "total": 3})
    check_response("GET", "/v1/programs/prg_1/partners", 200, json_type, {"items": [], "next_cursor": "abc"})
