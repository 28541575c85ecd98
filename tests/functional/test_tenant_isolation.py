"""Every admin route × every kind of caller.

Callers: the operator key, a partner key of the program, a partner key of
another program, no key, and a bad key. A key never reaches another program's
data (404, so ids cannot be probed); a partner key cannot do operator work (403).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.support import ApiClient

OK, CREATED = 200, 201

# (method, path template, body, expected status per caller)
# callers: operator, own partner, other program's partner, no key, bad key
ROUTES: list[tuple[str, str, dict[str, Any] | None, tuple[int, int, int, int, int]]] = [
    ("GET", "/v1/programs", None, (OK, OK, OK, 401, 401)),
    ("POST", "/v1/programs", {"name": "X"}, (CREATED, 403, 403, 401, 401)),
    ("GET", "/v1/programs/{program}", None, (OK, OK, 404, 401, 401)),
    ("PATCH", "/v1/programs/{program}", {"name": "Z"}, (OK, 403, 404, 401, 401)),
    ("GET", "/v1/programs/{program}/partners", None, (OK, OK, 404, 401, 401)),
    ("POST", "/v1/programs/{program}/partners", {"name": "Y"}, (CREATED, 403, 404, 401, 401)),
    ("GET", "/v1/programs/{program}/partners/{partner}", None, (OK, OK, 404, 401, 401)),
    ("POST", "/v1/programs/{program}/partners/{partner}/webhook-secrets/events/rotate", None, (OK, OK, 404, 401, 401)),
    ("POST", "/v1/programs/{program}/partners/{partner}/keys", None, (CREATED, CREATED, 404, 401, 401)),
    ("GET", "/v1/programs/{program}/keys", None, (OK, 403, 404, 401, 401)),
    ("POST", "/v1/programs/{program}/keys/{key}/revoke", None, (OK, OK, 404, 401, 401)),
    # Data rights: operator only (docs/data-rights.md); another program's key learns nothing (404).
    ("POST", "/v1/programs/{program}/members/{member}/erase", None, (OK, 403, 404, 401, 401)),
    ("GET", "/v1/programs/{program}/members/{member}/export", None, (OK, 403, 404, 401, 401)),
    ("GET", "/v1/programs/{program}/erasure-requests", None, (OK, 403, 404, 401, 401)),
    ("POST", "/v1/programs/{program}/imports/members", {"csv": "email\nb@example.com\n"}, (OK, 403, 404, 401, 401)),
    ("GET", "/v1/programs/{program}/ledger/export?from=2026-01-01&to=2026-01-02", None, (OK, 403, 404, 401, 401)),
    # Partner offers (docs/coalition.md): the operator or the partner itself; another partner of the same
    # program gets 403 (tests/functional/test_offers.py), another program's 404.
    ("PATCH", "/v1/programs/{program}/partners/{partner}", {"contact_email": "ops@example.com"},
     (OK, OK, 404, 401, 401)),
    ("GET", "/v1/programs/{program}/partners/{partner}/offers", None, (OK, OK, 404, 401, 401)),
    ("POST", "/v1/programs/{program}/partners/{partner}/offers",
     {"name": "Tea", "kind": "free_item", "item": "Tea", "code_source": "static", "static_code": "TEA"},
     (CREATED, CREATED, 404, 401, 401)),
    ("GET", "/v1/programs/{program}/members/{member}/vouchers", None, (OK, OK, 404, 401, 401)),
    # The referral tree reads like the one-level referral list: the operator and the program's partners.
    ("GET", "/v1/programs/{program}/members/{member}/referral-tree", None, (OK, OK, 404, 401, 401)),
    # Coalition (docs/coalition.md): a partner sees its own settlement rows; adjustments are the operator's.
    ("GET", "/v1/programs/{program}/settlement?from=2026-01-01&to=2026-01-02", None, (OK, OK, 404, 401, 401)),
    ("POST", "/v1/programs/{program}/members/{member}/adjustments", {"points": 5, "reason": "isolation"},
     (CREATED, 403, 404, 401, 401)),
    # A partner's integration log (docs/integrations.md): the operator or that partner.
    ("GET", "/v1/programs/{program}/partners/{partner}/integrations/hubspot/log", None, (OK, OK, 404, 401, 401)),
    # Fraud review: the operator and the program's partners (their own items, tests/functional/test_fraud_review.py).
    ("GET", "/v1/programs/{program}/review", None, (OK, OK, 404, 401, 401)),
    ("POST", "/v1/programs/{program}/review/rev_unknown/approve", {}, (404, 404, 404, 401, 401)),
    # Outgoing partner webhooks (docs/coalition.md): the operator or the partner itself; another partner of the
    # same program gets 403 (tests/functional/test_partner_webhooks.py), another program's 404.
    ("POST", "/v1/programs/{program}/partners/{partner}/webhook-endpoints",
     {"url": "https://93.184.216.34/hook", "event_types": ["pool.low"]}, (CREATED, CREATED, 404, 401, 401)),
    ("GET", "/v1/programs/{program}/partners/{partner}/webhook-endpoints", None, (OK, OK, 404, 401, 401)),
    ("GET", "/v1/programs/{program}/partners/{partner}/webhook-endpoints/whe_unknown", None,
     (404, 404, 404, 401, 401)),
    ("GET", "/v1/programs/{program}/partners/{partner}/webhook-endpoints/whe_unknown/deliveries", None,
     (404, 404, 404, 401, 401)),
    # Analytics: operator and partner keys (a partner sees its own rows; docs/analytics.md).
    *[("GET", f"/v1/programs/{{program}}/analytics/{panel}", None, (OK, OK, 404, 401, 401))
      for panel in ("funnel", "kfactor", "cohorts", "roi", "leaderboard", "channels")],
]
CALLERS = ["operator", "own_partner", "other_partner", "no_key", "bad_key"]


@pytest.mark.parametrize(("method", "template", "body", "expected"), ROUTES, ids=[f"{r[0]} {r[1]}" for r in ROUTES])
@pytest.mark.parametrize("caller", CALLERS)
def test_isolation(api: ApiClient, method: str, template: str, body: dict | None, expected: tuple, caller: str) -> None:
    program = api.create_program(name="A")
    partner = api.create_partner(program["program_id"])
    other_program = api.create_program(name="B")
    other_partner = api.create_partner(other_program["program_id"])
    # A spare key of the partner, so revoking it leaves the caller's own key intact.
    spare = api.post(f"/v1/programs/{program['program_id']}/partners/{partner['partner_id']}/keys").body
    keys = {
        "operator": "operator",
        "own_partner": partner["api_key"],
        "other_partner": other_partner["api_key"],
        "no_key": None,
        "bad_key": "srf_pk_not-a-real-key",
    }
    member = ""
    if "{member}" in template:
        member = api.processed(partner, {"type": "member.signup", "occurred_at": "2026-11-23T10:00:00Z",
                                         "object": {"type": "customer", "id": "c-1"},
                                         "customer": {"id": "c-1", "email": "a@example.com"}})["member"]["member_id"]
    path = template.format(program=program["program_id"], partner=partner["partner_id"],
                           key=spare["api_key_info"]["key_id"], member=member)
    reply = api.call(method, path, json_body=body, key=keys[caller], headers={"Idempotency-Key": "isolation-1"})
    want = expected[CALLERS.index(caller)]
    assert reply.status == want, (caller, reply.body)
    if want >= 400:
        assert set(reply.body["error"]) == {"code", "message", "details"}
    if caller == "other_partner" and method == "GET" and template == "/v1/programs":
        assert [p["program_id"] for p in reply.body["items"]] == [other_program["program_id"]]


def test_publishable_key_cannot_administer(api: ApiClient) -> None:
    program = api.create_program()
    partner = api.create_partner(program["program_id"])
    pub = program["publishable_key"]
    assert api.post(f"/v1/programs/{program['program_id']}/partners/{partner['partner_id']}/keys", key=pub).status in (403, 404)
    assert api.get(f"/v1/programs/{program['program_id']}/keys", key=pub).status == 403
    assert api.get("/v1/programs", key=pub).status == 403
    assert api.get(f"/v1/programs/{program['program_id']}", key=pub).status == 403


def test_every_program_route_hides_the_program_from_other_tenants(api: ApiClient) -> None:
    """Beyond the admin matrix: every route under /v1/programs/{program_id}, whatever it does,
    answers 404 to another program's partner key, 401 without a key and 403 to a publishable key."""
    from app import app

    program = api.create_program(name="A")
    pid = program["program_id"]
    partner = api.create_partner(pid)
    member = api.processed(partner, {"type": "member.signup", "occurred_at": "2026-11-23T10:00:00Z",
                                     "object": {"type": "customer", "id": "c-1"},
                                     "customer": {"id": "c-1", "email": "a@example.com"}})["member"]
    stranger = api.create_partner(api.create_program(name="B")["program_id"])
    values = {"program_id": pid, "partner_id": partner["partner_id"], "member_id": member["member_id"],
              "code": member["code"], "key_id": partner["api_key_info"]["key_id"], "source": "events",
              "redemption_id": "rdm_x", "platform": "shopify", "item_id": "rev_x", "offer_id": "off_x",
              "endpoint_id": "whe_x", "delivery_id": "whd_x", "import_id": "imp_x", "chunk": "1"}
    checked = 0
    for path, methods in app.routes.items():
        if not path.startswith("/v1/programs/{program_id}"):
            continue
        url = path.format(**values) + "?email=a@example.com&order_amount=100"
        for method in methods:
            if method == "OPTIONS":
                continue
            body = {} if method in ("POST", "PUT") else None
            headers = {"Idempotency-Key": "k-1"}
            other = api.call(method, url, json_body=body, key=stranger["api_key"], headers=headers)
            assert other.status == 404, (method, path, other.body)
            assert api.call(method, url, json_body=body, key=None, headers=headers).status == 401, (method, path)
            published = api.call(method, url, json_body=body, key=program["publishable_key"], headers=headers)
            assert published.status == 403, (method, path, published.body)
            checked += 1
    assert checked >= 20
