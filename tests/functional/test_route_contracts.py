"""One contract per route: every declared ``auth=`` and ``request_schema=`` is what the route accepts.

For each documented operation (``api.openapi_registry.OPERATIONS``, i.e. every route the app
serves), requests that the declaration says must be refused are sent through the real app under
moto, and the route must refuse them *before* its view runs. A route whose service checks more
(or less) than it declares, or reads a body it does not declare, fails here.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from chalicelib.api.openapi_registry import OPERATIONS, Operation
from tests.support import ApiClient


def _operations() -> list[Operation]:
    import app  # noqa: F401  (declaring the routes registers them)

    return sorted({(o.method, o.path): o for o in OPERATIONS}.values(), key=lambda o: (o.path, o.method))


OPS = _operations()


@pytest.fixture
def tenants(api: ApiClient) -> dict[str, Any]:
    program = api.create_program()
    partner = api.create_partner(program["program_id"])
    other = api.create_program()
    other_partner = api.create_partner(other["program_id"])
    return {"program": program, "partner": partner, "other_partner": other_partner}


def _path(op: Operation, tenants: dict[str, Any]) -> str:
    """Path parameters: the caller's own program and partner (scope checks are not auth), else a dummy."""
    own = {"program_id": tenants["program"]["program_id"], "partner_id": tenants["partner"]["partner_id"]}
    return re.sub(r"\{([a-z_]+)\}", lambda m: own.get(m.group(1), "X1"), op.path)


def _call(api: ApiClient, op: Operation, path: str, key: str | None, body: Any = None) -> Any:
    raw = None if body is None else __import__("json").dumps(body)
    return api.call(op.method, path, key=key, raw=raw)


def test_every_served_route_is_declared() -> None:
    from app import app

    served = {(path, method) for path, entry in app.routes.items() for method in entry if method != "OPTIONS"}
    declared = {(o.path, o.method) for o in OPS}
    assert served == declared


@pytest.mark.parametrize("op", OPS, ids=lambda o: f"{o.method} {o.path}")
def test_declared_auth_is_enforced(api: ApiClient, tenants: dict[str, Any], op: Operation) -> None:
    path = _path(op, tenants)
    anonymous = _call(api, op, path, key=None)
    if op.auth in ("key", "operator", "publishable"):
        assert anonymous.status == 401 and anonymous.error_code == "missing_api_key", anonymous.body
    else:  # "none" or "signature": no API key is asked for
        assert anonymous.error_code != "missing_api_key", anonymous.body
        return
    if op.auth != "publishable":
        pub = _call(api, op, path, key=tenants["program"]["publishable_key"])
        assert pub.status == 403, (pub.status, pub.body)  # browser keys only on the landing routes
    if "{program_id}" in op.path:
        stranger = _call(api, op, path, key=tenants["other_partner"]["api_key"])
        assert stranger.status == 404, (stranger.status, stranger.body)  # another tenant's program does not exist
    partner = _call(api, op, path, key=tenants["partner"]["api_key"])
    if op.auth == "operator":
        assert partner.status == 403, (partner.status, partner.body)
    else:
        assert partner.status not in (401, 403) or partner.error_code not in ("forbidden", "invalid_api_key"), \
            (partner.status, partner.body)


@pytest.mark.parametrize("op", [o for o in OPS if o.auth != "signature"], ids=lambda o: f"{o.method} {o.path}")
def test_declared_body_is_what_the_route_reads(api: ApiClient, tenants: dict[str, Any], op: Operation) -> None:
    path = _path(op, tenants)
    key = tenants["program"]["publishable_key"] if op.auth == "publishable" else "operator"
    if op.body_mode == "validate":
        schema = op.request_schema() if callable(op.request_schema) else op.request_schema
        assert isinstance(schema, dict)
        wrong = _call(api, op, path, key=key, body=[1, 2])
        assert wrong.status == 400 and wrong.error_code == "malformed_json", wrong.body
        if schema.get("additionalProperties") is False:
            extra = _call(api, op, path, key=key, body={"undeclared_field": 1})
            assert extra.status == 422 and extra.error_code == "validation_failed", (extra.status, extra.body)
    elif op.body_mode == "none" and op.method in ("POST", "PUT", "PATCH", "DELETE"):
        # A route without a declared body never reads one: junk is ignored, never a 500.
        junk = _call(api, op, path, key=key, body={"anything": "at all"})
        assert junk.status < 500, (junk.status, junk.body)
        from chalicelib.api.http import UNDECLARED_BODY_READS

        assert (op.method, op.path) not in UNDECLARED_BODY_READS, "the route read a body it does not declare"


_BODY_READS = ("req.json(", "req.body", "req.form(", "req.raw_body")


@pytest.mark.parametrize("op", [o for o in OPS if o.body_mode == "none"], ids=lambda o: f"{o.method} {o.path}")
def test_a_route_without_a_declared_body_never_reads_one(op: Operation) -> None:
    """Statically: what the view reads, not just what one request happened to reach (a view may fail on
    its path parameters before the read). Declare ``request_schema=`` (and ``body="raw"`` when a domain
    parser reads it after another check) for a route that takes a body."""
    import inspect

    assert op.view is not None
    source = inspect.getsource(op.view)
    assert not [r for r in _BODY_READS if r in source], f"{op.method} {op.path} reads a body it does not declare"


def test_a_body_read_without_a_declaration_keeps_working_but_is_recorded(api: ApiClient) -> None:
    """Backwards compatible for a route someone adds without ``request_schema=``: the read works (no 500)
    and is recorded, so the contract tests above fail for it."""
    from chalice.app import Request

    from chalicelib.api.http import UNDECLARED_BODY_READS, ApiRequest

    event = {"multiValueQueryStringParameters": None, "headers": {"content-type": "application/json"},
             "pathParameters": None, "requestContext": {"httpMethod": "POST", "resourcePath": "/v1/undeclared"},
             "body": '{"a": 1}', "stageVariables": None}
    req = ApiRequest(Request(event), "key", body_mode="none")
    try:
        assert req.json() == {"a": 1}
        assert ("POST", "/v1/undeclared") in UNDECLARED_BODY_READS
    finally:
        UNDECLARED_BODY_READS.discard(("POST", "/v1/undeclared"))


@pytest.mark.parametrize("op", [o for o in OPS if o.auth == "signature"], ids=lambda o: f"{o.method} {o.path}")
def test_a_signature_route_refuses_an_unsigned_request(api: ApiClient, tenants: dict[str, Any], op: Operation) -> None:
    """``auth="signature"`` is checked by the intake (it needs the raw body and the partner's secrets), so the
    decorator cannot prove it: an unsigned request must still be refused, never processed."""
    path = _path(op, tenants).replace("/X1", "/shopify")
    unsigned = api.call(op.method, path, key=None, raw='{"type": "order.paid"}')
    # 404: no integration is set up for the platform (an unknown endpoint says nothing about secrets).
    assert unsigned.status in (401, 404), (unsigned.status, unsigned.body)
    if op.path.endswith("/events"):
        assert unsigned.error_code == "signature_missing_headers", unsigned.body


@pytest.mark.parametrize("op", [o for o in OPS if o.body_mode == "raw" and o.auth != "signature"],
                         ids=lambda o: f"{o.method} {o.path}")
def test_a_raw_body_route_refuses_a_body_of_the_wrong_shape(api: ApiClient, tenants: dict[str, Any],
                                                          op: Operation) -> None:
    """``body="raw"`` routes validate in a domain parser after another check: the declared schema's shape
    still holds (a JSON array where an object is declared is a 4xx, never a 5xx nor a success)."""
    path = _path(op, tenants)
    key = tenants["program"]["publishable_key"] if op.auth == "publishable" else "operator"
    reply = api.call(op.method, path, key=key, raw="[1, 2]", headers={"Idempotency-Key": "contract"})
    assert 400 <= reply.status < 500, (reply.status, reply.body)


@pytest.mark.parametrize("op", [o for o in OPS if o.body_mode == "validate" and o.request_example is not None],
                         ids=lambda o: f"{o.method} {o.path}")
def test_a_documented_example_is_accepted_by_the_schema_and_the_service(api: ApiClient, tenants: dict[str, Any],
                                                                        op: Operation) -> None:
    """The other direction: what the schema accepts, the service does not refuse as invalid input. (A
    semantic refusal with its own code, e.g. ``unknown_partner`` for a dummy id, is not a schema mismatch.)"""
    from chalicelib.domain.validation import validate

    schema = op.request_schema() if callable(op.request_schema) else op.request_schema
    assert isinstance(schema, dict)
    validate(schema, op.request_example)
    key = tenants["program"]["publishable_key"] if op.auth == "publishable" else "operator"
    reply = api.call(op.method, _path(op, tenants), key=key, raw=__import__("json").dumps(op.request_example),
                     headers={"Idempotency-Key": "contract"})
    assert reply.status < 500 and reply.error_code not in ("validation_failed", "malformed_json"), \
        (reply.status, reply.body)


_PROBE_SCHEMA = {"type": "object", "additionalProperties": False, "required": ["points"],
                 "properties": {"points": {"type": "integer", "minimum": 1}}}


@pytest.fixture
def probe(api: ApiClient) -> Any:
    """A route declared with the real decorator, whose view records every call: proves that auth and the
    body are refused *before* the view runs, that every refusal goes through the one error mapper, and that
    a ``finish`` hook (landing CORS) sees errors too."""
    from chalice import Chalice

    from chalicelib.api import openapi_registry
    from chalicelib.api.http import ApiBlueprint, ApiRequest, http_middleware

    calls: list[Any] = []
    finished: list[int] = []
    blueprint = ApiBlueprint(__name__)
    registered = list(openapi_registry.OPERATIONS)

    def finish(req: ApiRequest, response: Any) -> None:
        finished.append(response.status_code)

    try:
        @blueprint.endpoint("/v1/programs/{program_id}/contract-probe", "POST", summary="probe", tag="Probe",
                            auth="operator", request_schema=_PROBE_SCHEMA, finish=finish)
        def view(req: ApiRequest, program_id: str) -> Any:
            calls.append(req.body)
            return {"ok": True}
    finally:  # the probe is not part of the documented API
        openapi_registry.OPERATIONS[:] = registered
    toy = Chalice(app_name="probe")
    toy.register_middleware(http_middleware, "http")
    toy.register_blueprint(blueprint)
    client = ApiClient(toy, api.operator_key)
    client.check_openapi = False
    return client, calls, finished


def test_the_decorator_refuses_before_the_view_runs(probe: Any, tenants: dict[str, Any]) -> None:
    client, calls, finished = probe
    own = f"/v1/programs/{tenants['program']['program_id']}/contract-probe"
    refused = {
        "anonymous": client.call("POST", own, key=None, json_body={"points": 1}),
        "publishable": client.call("POST", own, key=tenants["program"]["publishable_key"], json_body={"points": 1}),
        "partner": client.call("POST", own, key=tenants["partner"]["api_key"], json_body={"points": 1}),
        "stranger": client.call("POST", own, key=tenants["other_partner"]["api_key"], json_body={"points": 1}),
        "not an object": client.call("POST", own, raw="[1]"),
        "not JSON": client.call("POST", own, raw="{"),
        "missing field": client.call("POST", own, json_body={}),
        "wrong type": client.call("POST", own, json_body={"points": "1"}),
        "out of range": client.call("POST", own, json_body={"points": 0}),
        "undeclared field": client.call("POST", own, json_body={"points": 1, "extra": True}),
    }
    assert {name: r.status for name, r in refused.items()} == {
        "anonymous": 401, "publishable": 403, "partner": 403, "stranger": 404, "not an object": 400,
        "not JSON": 400, "missing field": 422, "wrong type": 422, "out of range": 422, "undeclared field": 422}
    assert all(set(r.body) == {"error"} and {"code", "message", "details"} <= set(r.body["error"])
               for r in refused.values()), refused  # the one envelope, from the one mapper
    assert calls == []
    assert finished == [r.status for r in refused.values()]  # the finish hook ran on every refusal
    ok = client.call("POST", own, json_body={"points": 5})
    assert ok.status == 200 and calls == [{"points": 5}] and finished[-1] == 200
