"""The master secret comes from Secrets Manager, once per container; without it: 503, and /r/ still redirects."""

from __future__ import annotations

from typing import Any

import pytest

SECRET_ID = "sarafan/test/master-key"


@pytest.fixture
def secrets_manager(api: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The deployed configuration: no SARAFAN_SECRET_KEY, the secret's id instead."""
    from chalicelib import aws, config
    from chalicelib.services import secrets

    monkeypatch.delenv("SARAFAN_SECRET_KEY")
    monkeypatch.setenv("SARAFAN_SECRET_KEY_SECRET_ID", SECRET_ID)
    config.reset_settings()
    config.get_settings()  # read now: chalice.test.Client puts .chalice/config.json's env in place per request
    secrets.reset_master_key()
    return aws.client("secretsmanager")


def test_a_missing_secret_is_a_503_with_a_clear_code_and_nothing_is_written(api: Any, secrets_manager: Any) -> None:
    program = api.create_program()  # needs no secret
    reply = api.post(f"/v1/programs/{program['program_id']}/partners", {"name": "Shop"})
    assert reply.status == 503
    assert reply.error_code == "master_secret_unavailable"
    assert reply.body["error"]["details"] == {"reason": "ResourceNotFoundException"}
    assert api.get(f"/v1/programs/{program['program_id']}/partners").body["items"] == []


def test_a_missing_secret_never_breaks_the_short_link(api: Any, secrets_manager: Any) -> None:
    reply = api.get("/r/ABCDEFGHJKM", key=None)
    assert reply.status == 302
    assert reply.headers["location"].startswith("https://example.com/")


def test_the_secret_is_read_once_per_container_and_a_later_fix_is_picked_up(api: Any, secrets_manager: Any) -> None:
    program = api.create_program()
    assert api.post(f"/v1/programs/{program['program_id']}/partners", {"name": "Shop"}).status == 503
    secrets_manager.create_secret(Name=SECRET_ID, SecretString="s" * 64)  # the operator fixes it
    calls: list[str] = []
    secrets_manager.meta.events.register("before-call.secrets-manager", lambda model, **_: calls.append(model.name))
    partner = api.create_partner(program["program_id"])
    assert api.processed(partner, {
        "type": "member.signup", "occurred_at": "2026-11-20T09:15:00Z",
        "object": {"type": "customer", "id": "c1"}, "customer": {"id": "c1"}})["status"] == "processed"
    api.create_partner(program["program_id"])
    assert calls == ["GetSecretValue"]


def test_a_too_short_secret_is_refused(api: Any, secrets_manager: Any) -> None:
    secrets_manager.create_secret(Name=SECRET_ID, SecretString="short")
    program = api.create_program()
    reply = api.post(f"/v1/programs/{program['program_id']}/partners", {"name": "Shop"})
    assert (reply.status, reply.error_code) == (503, "master_secret_unavailable")


def test_a_rotation_without_the_secret_changes_nothing(api: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib import config
    from chalicelib.services import secrets

    program = api.create_program()
    partner = api.create_partner(program["program_id"])
    monkeypatch.delenv("SARAFAN_SECRET_KEY")
    monkeypatch.setenv("SARAFAN_SECRET_KEY_SECRET_ID", SECRET_ID)
    config.reset_settings()
    config.get_settings()  # read now: chalice.test.Client puts .chalice/config.json's env in place per request
    secrets.reset_master_key()
    path = f"/v1/programs/{program['program_id']}/partners/{partner['partner_id']}"
    before = api.get(path).body
    assert api.post(f"{path}/webhook-secrets/events/rotate").status == 503
    assert api.get(path).body == before
