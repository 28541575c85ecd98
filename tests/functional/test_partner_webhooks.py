"""Outgoing partner webhooks, endpoint routes: registration, secrets, SSRF refusal, isolation (docs/coalition.md)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from chalicelib.services import partner_webhooks as service
from chalicelib.store import partner_hooks as store
from tests.support import ApiClient

PUBLIC_URL = "https://hooks.fitlab.example/sarafan"
DNS = {"hooks.fitlab.example": ["93.184.216.34"], "rebind.example": ["93.184.216.34", "10.0.0.7"],
       "internal.example": ["fd12:3456::1"], "metadata.example": ["169.254.169.254"]}


def fake_resolve(host: str) -> list[str]:
    if host not in DNS:
        raise OSError("nxdomain")
    return DNS[host]


@pytest.fixture(autouse=True)
def no_real_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service, "resolve", fake_resolve)


@pytest.fixture
def setup(api: ApiClient) -> dict[str, Any]:
    program = api.create_program(name="Coalition")
    pid = program["program_id"]
    return {"pid": pid, "fit": api.create_partner(pid, name="FitLab"), "bank": api.create_partner(pid, name="Bank")}


def base(s: dict[str, Any], partner: str = "fit") -> str:
    return f"/v1/programs/{s['pid']}/partners/{s[partner]['partner_id']}/webhook-endpoints"


def register(api: ApiClient, s: dict[str, Any], key: str = "operator", **fields: Any) -> dict[str, Any]:
    reply = api.post(base(s), {"url": PUBLIC_URL, "event_types": ["reward.posted", "pool.low"], **fields}, key=key)
    assert reply.status == 201, reply.body
    return reply.body  # type: ignore[no-any-return]


def test_a_partner_registers_reads_changes_rotates_and_deletes_its_endpoint(api: ApiClient,
                                                                            setup: dict[str, Any]) -> None:
    key = setup["fit"]["api_key"]
    created = register(api, setup, key=key, description="CRM")
    secret = created["signing_secret"]
    assert secret.startswith("whsec_") and created["enabled"] is True
    assert created["event_types"] == ["reward.posted", "pool.low"]
    assert created["secret"] == {"versions_valid": 1, "previous_valid_until": None}
    path = f"{base(setup)}/{created['endpoint_id']}"

    shown = api.get(path, key=key).body
    assert "signing_secret" not in shown and secret not in json.dumps(shown)
    assert [e["endpoint_id"] for e in api.get(base(setup), key=key).body["items"]] == [created["endpoint_id"]]
    # Stored sealed: the plain secret is nowhere in the item, and it opens to the one shown.
    item = store.get_endpoint(setup["pid"], setup["fit"]["partner_id"], created["endpoint_id"])
    assert item is not None and secret not in json.dumps(item.secrets)
    assert service.signing_secrets(item, item.created_at) == [secret]

    changed = api.patch(path, {"event_types": ["voucher.issued"], "enabled": False, "description": None}, key=key)
    assert changed.status == 200, changed.body
    assert changed.body["event_types"] == ["voucher.issued"] and changed.body["enabled"] is False
    assert changed.body["description"] is None

    rotated = api.post(f"{path}/rotate-secret", key=key)
    assert rotated.status == 200, rotated.body
    new = rotated.body["signing_secret"]
    assert new != secret and rotated.body["secret"]["versions_valid"] == 2
    assert rotated.body["secret"]["previous_valid_until"] is not None
    item = store.get_endpoint(setup["pid"], setup["fit"]["partner_id"], created["endpoint_id"])
    assert item is not None and service.signing_secrets(item, item.updated_at) == [new, secret]

    gone = api.call("DELETE", path, key=key)
    assert gone.status == 200 and gone.body == {"endpoint_id": created["endpoint_id"], "deleted": True}
    assert api.get(path, key=key).status == 404
    assert api.get(base(setup), key=key).body["items"] == []


def test_another_partner_never_sees_or_changes_the_endpoints(api: ApiClient, setup: dict[str, Any]) -> None:
    created = register(api, setup, key=setup["fit"]["api_key"])
    bank = setup["bank"]["api_key"]
    path = f"{base(setup)}/{created['endpoint_id']}"
    for method, url, body in [("GET", base(setup), None), ("POST", base(setup), {"url": PUBLIC_URL,
                                                                                  "event_types": ["pool.low"]}),
                              ("GET", path, None), ("PATCH", path, {"enabled": False}), ("DELETE", path, None),
                              ("POST", f"{path}/rotate-secret", None), ("GET", f"{path}/deliveries", None),
                              ("POST", f"{path}/deliveries/whd_x/retry", None)]:
        reply = api.call(method, url, json_body=body, key=bank)
        assert reply.status == 403, (method, url, reply.body)
    # The bank's own path does not reach the fitness club's endpoint either.
    assert api.get(f"{base(setup, 'bank')}/{created['endpoint_id']}", key=bank).status == 404
    assert api.get(f"{base(setup, 'bank')}/{created['endpoint_id']}/deliveries", key=bank).status == 404
    assert api.get(base(setup, "bank"), key=bank).body["items"] == []


@pytest.mark.parametrize("url", [
    "http://hooks.fitlab.example/sarafan",  # not https
    "https://127.0.0.1/hook", "https://10.1.2.3/hook", "https://169.254.169.254/latest/meta-data",
    "https://[::1]/hook", "https://rebind.example/hook", "https://internal.example/hook",
    "https://metadata.example/hook", "https://nowhere.example/hook", "https://user:pw@hooks.fitlab.example/x",
    "not a url",
])
def test_unsafe_urls_are_refused_at_registration_with_the_path(api: ApiClient, setup: dict[str, Any],
                                                               url: str) -> None:
    reply = api.post(base(setup), {"url": url, "event_types": ["pool.low"]})
    assert reply.status == 422, reply.body
    assert reply.body["error"]["code"] == "unsafe_webhook_url"
    assert [e["path"] for e in reply.body["error"]["details"]["errors"]] == ["$.url"]
    assert "10.0.0.7" not in json.dumps(reply.body)  # the resolved address is not echoed


def test_a_changed_url_is_checked_too(api: ApiClient, setup: dict[str, Any]) -> None:
    created = register(api, setup)
    reply = api.patch(f"{base(setup)}/{created['endpoint_id']}", {"url": "https://rebind.example/x"})
    assert reply.status == 422 and reply.body["error"]["details"]["errors"][0]["path"] == "$.url"


def test_the_local_setting_allows_loopback_http(api: ApiClient, setup: dict[str, Any],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib import config

    monkeypatch.setenv("SARAFAN_WEBHOOK_ALLOW_ANY_TARGET", "1")
    config.reset_settings()
    config.get_settings()  # read now: chalice.test.Client swaps in .chalice/config.json's environment
    assert register(api, setup, url="http://127.0.0.1:9/hook")["url"] == "http://127.0.0.1:9/hook"
    monkeypatch.setenv("SARAFAN_STAGE", "prod")  # never outside the local run and the tests
    config.reset_settings()
    assert not config.get_settings().webhook_allow_any_target


def test_event_types_are_validated_and_endpoints_are_bounded(api: ApiClient, setup: dict[str, Any]) -> None:
    bad = api.post(base(setup), {"url": PUBLIC_URL, "event_types": ["order.paid"]})
    assert bad.status == 422 and bad.body["error"]["details"]["errors"][0]["path"].startswith("$.event_types")
    assert api.post(base(setup), {"url": PUBLIC_URL, "event_types": []}).status == 422
    for _ in range(store.MAX_ENDPOINTS):
        register(api, setup)
    full = api.post(base(setup), {"url": PUBLIC_URL, "event_types": ["pool.low"]})
    assert full.status == 422 and full.body["error"]["code"] == "too_many_endpoints"
    first = api.get(base(setup)).body["items"][0]
    assert api.call("DELETE", f"{base(setup)}/{first['endpoint_id']}").status == 200
    register(api, setup)


@pytest.mark.parametrize("endpoint_id", ["x" * 300, "мир", "ROOT%23x", "..%2F..", "whe_" + "0" * 20])
def test_odd_ids_and_cursors_answer_4xx(api: ApiClient, setup: dict[str, Any], endpoint_id: str) -> None:
    path = f"{base(setup)}/{endpoint_id}"
    for method, url in [("GET", path), ("PATCH", path), ("DELETE", path), ("POST", f"{path}/rotate-secret"),
                        ("GET", f"{path}/deliveries?cursor=e30"), ("POST", f"{path}/deliveries/{endpoint_id}/retry")]:
        reply = api.call(method, url, json_body={"enabled": True} if method == "PATCH" else None)
        assert 400 <= reply.status < 500, (method, url, reply.body)
    created = register(api, setup)
    reply = api.get(f"{base(setup)}/{created['endpoint_id']}/deliveries?cursor=" + "A" * 200)
    assert reply.status == 400 and reply.body["error"]["code"] == "invalid_cursor"
