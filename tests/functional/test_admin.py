"""Admin API: programs, partners, keys and secrets, through chalice.test.Client under moto."""

from __future__ import annotations

from datetime import timedelta

import pytest

from chalicelib.services import secrets
from tests.support import CLOCK, ApiClient


def test_create_program_applies_defaults_and_shows_publishable_key_once(api: ApiClient) -> None:
    created = api.create_program(name="Кофейня", currency="RUB", default_locale="ru")
    assert created["point_value_minor"] == 100
    assert created["publishable_key"].startswith("srf_pub_")
    fetched = api.get(f"/v1/programs/{created['program_id']}")
    assert fetched.status == 200
    assert "publishable_key" not in fetched.body
    assert fetched.body["name"] == "Кофейня"


def test_programs_are_listed_newest_first_with_a_cursor(api: ApiClient) -> None:
    ids = [api.create_program(name=f"P{i}")["program_id"] for i in range(3)]
    page1 = api.get("/v1/programs?limit=2")
    assert [p["program_id"] for p in page1.body["items"]] == ids[::-1][:2]
    page2 = api.get(f"/v1/programs?limit=2&cursor={page1.body['next_cursor']}")
    assert [p["program_id"] for p in page2.body["items"]] == ids[:1]


def test_a_forged_cursor_is_a_400_not_a_500(api: ApiClient) -> None:
    import base64
    import json

    forged = base64.urlsafe_b64encode(json.dumps({"PK": "PROGRAM#x", "SK": "PROGRAM"}).encode()).decode()
    for cursor in (forged, "%%%", "bm90LWpzb24"):
        reply = api.get(f"/v1/programs?cursor={cursor}")
        assert reply.status == 400, cursor
        assert reply.error_code == "invalid_cursor"


def test_partner_creation_returns_key_and_secret_once_and_stores_neither(api: ApiClient) -> None:
    program = api.create_program()
    partner = api.create_partner(program["program_id"], name="FitLab")
    assert partner["api_key"].startswith("srf_pk_")
    assert partner["webhook_secrets"]["events"].startswith("whsec_")
    listed = api.get(f"/v1/programs/{program['program_id']}/partners")
    assert [p["name"] for p in listed.body["items"]] == ["FitLab"]
    dumped = repr(listed.body) + repr(api.get(f"/v1/programs/{program['program_id']}/keys").body)
    assert partner["api_key"] not in dumped and partner["webhook_secrets"]["events"] not in dumped

    from chalicelib.store.db import raw_client

    table = raw_client().scan(TableName="sarafan-test")["Items"]  # test-only inspection of what is stored
    assert partner["api_key"] not in repr(table)
    assert partner["webhook_secrets"]["events"] not in repr(table)


def test_partner_key_works_until_revoked(api: ApiClient) -> None:
    program = api.create_program()
    partner = api.create_partner(program["program_id"])
    key = partner["api_key"]
    assert api.get("/v1/programs", key=key).status == 200
    revoked = api.post(f"/v1/programs/{program['program_id']}/keys/{partner['api_key_info']['key_id']}/revoke")
    assert revoked.status == 200 and revoked.body["revoked"] is True
    reply = api.get("/v1/programs", key=key)
    assert reply.status == 401 and reply.error_code == "invalid_api_key"


def test_partner_can_issue_a_second_key_then_revoke_the_first(api: ApiClient) -> None:
    program = api.create_program()
    partner = api.create_partner(program["program_id"])
    base = f"/v1/programs/{program['program_id']}"
    second = api.post(f"{base}/partners/{partner['partner_id']}/keys", key=partner["api_key"])
    assert second.status == 201
    first_id = partner["api_key_info"]["key_id"]
    assert api.post(f"{base}/keys/{first_id}/revoke", key=second.body["api_key"]).status == 200
    assert api.get(base, key=second.body["api_key"]).status == 200
    assert api.get(base, key=partner["api_key"]).status == 401


def test_rotated_secret_overlaps_then_expires(api: ApiClient) -> None:
    program = api.create_program()
    partner = api.create_partner(program["program_id"])
    pid, ptn = program["program_id"], partner["partner_id"]
    old = partner["webhook_secrets"]["events"]
    rotated = api.post(f"/v1/programs/{pid}/partners/{ptn}/webhook-secrets/events/rotate", key=partner["api_key"])
    assert rotated.status == 200
    new = rotated.body["secret"]
    assert new != old and rotated.body["version"] == 2

    from chalicelib.store import tenancy_repo

    stored = tenancy_repo.get_partner(pid, ptn, fresh=True).webhook_secrets
    now = CLOCK.now()
    assert set(secrets.valid_secrets(pid, ptn, stored, "events", now)) == {old, new}
    later = now + timedelta(hours=25)
    assert secrets.valid_secrets(pid, ptn, stored, "events", later) == [new]


def test_rotating_an_unknown_source_is_404(api: ApiClient) -> None:
    program = api.create_program()
    partner = api.create_partner(program["program_id"])
    reply = api.post(f"/v1/programs/{program['program_id']}/partners/{partner['partner_id']}/webhook-secrets/nope/rotate")
    assert reply.status == 404


@pytest.mark.parametrize(
    ("raw", "headers", "status", "code"),
    [
        ("{bad json", None, 400, "malformed_json"),
        ("[1, 2]", None, 400, "malformed_json"),
        ("name=x", {"Content-Type": "application/x-www-form-urlencoded"}, 415, "unsupported_media_type"),
        ('{"name": "' + "x" * 300_000 + '"}', None, 413, "payload_too_large"),
    ],
)
def test_malformed_bodies_get_clear_4xx_and_write_nothing(api: ApiClient, raw: str, headers: dict | None,
                                                          status: int, code: str) -> None:
    reply = api.post("/v1/programs", raw=raw, headers=headers)
    assert reply.status == status, reply.body
    assert reply.error_code == code
    assert set(reply.body["error"]) == {"code", "message", "details"}
    assert api.get("/v1/programs").body["items"] == []


@pytest.mark.parametrize(
    ("body", "paths"),
    [
        ({}, ["$.name"]),
        ({"name": 5}, ["$.name"]),
        ({"name": "x", "currency": "rub"}, ["$.currency"]),
        ({"name": "x", "point_value_minor": 1.5}, ["$.point_value_minor"]),
        ({"name": "x", "allowed_origins": ["javascript:alert(1)"]}, ["$.allowed_origins[0]"]),
        ({"name": "x", "settings": {"attribution_window_days": 0}}, ["$.settings.attribution_window_days"]),
        ({"name": "x", "unknown": 1}, ["$.unknown"]),
    ],
)
def test_schema_violations_are_422_with_paths(api: ApiClient, body: dict, paths: list[str]) -> None:
    reply = api.post("/v1/programs", body)
    assert reply.status == 422, reply.body
    assert [e["path"] for e in reply.body["error"]["details"]["errors"]] == paths
    assert api.get("/v1/programs").body["items"] == []


def test_bad_query_parameter_is_400(api: ApiClient) -> None:
    assert api.get("/v1/programs?limit=abc").status == 400
    assert api.get("/v1/programs?limit=1000").status == 400


def test_unknown_program_is_404(api: ApiClient) -> None:
    reply = api.get("/v1/programs/prg_missing")
    assert reply.status == 404 and reply.error_code == "not_found"


def test_program_settings_can_be_changed_and_are_merged(api: ApiClient) -> None:
    program = api.create_program(settings={"attribution_window_days": 30, "auto_enrol": True})
    path = f"/v1/programs/{program['program_id']}"
    reply = api.patch(path, {"name": "Renamed", "landing_url": "https://shop.test/join",
                             "settings": {"attribution_model": "last_touch"}})
    assert reply.status == 200, reply.body
    assert reply.body["name"] == "Renamed" and reply.body["landing_url"] == "https://shop.test/join"
    assert reply.body["settings"] == {"attribution_window_days": 30, "auto_enrol": True,
                                      "attribution_model": "last_touch"}
    assert api.get(path).body == reply.body
    assert api.patch(path, {"landing_url": None}).body["landing_url"] is None


@pytest.mark.parametrize(("body", "path"), [
    ({}, "$"),
    ({"currency": "EUR"}, "$.currency"),
    ({"point_value_minor": 1}, "$.point_value_minor"),
    ({"settings": {"max_depth": 5}}, "$.settings.max_depth"),
])
def test_program_update_rejections_write_nothing(api: ApiClient, body: dict, path: str) -> None:
    program = api.create_program()
    url = f"/v1/programs/{program['program_id']}"
    before = api.get(url).body
    reply = api.patch(url, body)
    assert reply.status == 422, reply.body
    assert reply.body["error"]["details"]["errors"][0]["path"] == path
    assert api.get(url).body == before


def test_only_the_operator_updates_a_program(api: ApiClient) -> None:
    program = api.create_program()
    partner = api.create_partner(program["program_id"])
    reply = api.patch(f"/v1/programs/{program['program_id']}", {"name": "X"}, key=partner["api_key"])
    assert reply.status == 403
