"""The short-link redirect (and its click counting) and API-key authentication on the in-memory ports.

Through the API under moto: tests/functional/test_landing.py (``/r/{code}``), the key matrix of
tests/functional/test_tenant_isolation.py and test_route_contracts.py; the fakes are held to DynamoDB's
behaviour by tests/contract/test_ports.py.
"""

from __future__ import annotations

import pytest

from chalicelib.domain.errors import Unauthorized
from chalicelib.services import auth, ports
from chalicelib.services.landing import redirect
from chalicelib.store import fakes, keys
from chalicelib.store.members import LinkItem
from chalicelib.store.tenancy import ApiKeyItem
from tests import ports_support as support

PID = "prg_1"


@pytest.fixture
def deps() -> ports.Ports:
    deps = ports.fakes(support.NOW)
    pk, sk = keys.short_link("ANNA1")
    fakes.seed(deps, support.program(PID, landing_url="https://coffee.example/join"),
               support.partner(PID, "ptn_1", landing_url="https://shop.example/"), support.partner(PID, "ptn_2"),
               LinkItem(PK=pk, SK=sk, program_id=PID, member_id="anna", code="ANNA1"))
    return deps


def _clicks(deps: ports.Ports) -> dict[str, int]:
    totals, _ = deps.members.clicks_and_balance(PID, "anna", ["ANNA1"])
    return totals[0].by_source.as_dict() if totals else {}


def test_a_link_goes_to_the_programs_landing_with_the_code_and_utm(deps: ports.Ports) -> None:
    target = redirect.redirect_target("anna1", {"utm_source": "VK Group", "utm_medium": "post", "x": "y"}, None, deps)
    assert target == "https://coffee.example/join?ref=ANNA1&utm_source=VK+Group&utm_medium=post"
    assert _clicks(deps) == {"vk_group": 1}


def test_a_partners_landing_wins_when_it_has_one(deps: ports.Ports) -> None:
    assert redirect.redirect_target("ANNA1", {"p": "ptn_1"}, None, deps).startswith("https://shop.example/?ref=ANNA1")
    assert redirect.redirect_target("ANNA1", {"p": "ptn_2"}, None, deps).startswith("https://coffee.example/join?")
    assert redirect.redirect_target("ANNA1", {"p": "ptn_nobody"}, None, deps).startswith("https://coffee.example/")
    assert _clicks(deps) == {"-": 3}


def test_previews_are_not_clicks_and_unknown_codes_go_to_the_default(deps: ports.Ports) -> None:
    redirect.redirect_target("ANNA1", {}, "TelegramBot (like TwitterBot)", deps)
    assert _clicks(deps) == {}
    for code in ("NOBODY", "!!", ""):
        assert redirect.redirect_target(code, {}, None, deps) == redirect.default_landing_url()


def test_a_lost_click_does_not_cost_the_redirect(deps: ports.Ports, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_: object) -> None:
        raise RuntimeError("throttled")

    monkeypatch.setattr(deps.members, "count_click", broken)
    assert redirect.redirect_target("ANNA1", {}, None, deps).startswith("https://coffee.example/join?ref=ANNA1")


def _key(deps: ports.Ports, raw: str, kind: str, revoked: bool = False) -> None:
    pk, sk = keys.api_key(auth.hash_key(raw))
    fakes.seed(deps, ApiKeyItem(PK=pk, SK=sk, key_id=f"key_{kind}", kind=kind, program_id=PID,
                                partner_id="ptn_1" if kind == "partner" else None, revoked=revoked, created_at=support.NOW))


def test_keys_name_their_program_and_partner_and_revoked_or_unknown_ones_are_401(deps: ports.Ports) -> None:
    partner_key, pub_key, old_key = auth.PARTNER_PREFIX + "a" * 43, auth.PUBLISHABLE_PREFIX + "b" * 43, \
        auth.PARTNER_PREFIX + "c" * 43
    _key(deps, partner_key, "partner")
    _key(deps, pub_key, "publishable")
    _key(deps, old_key, "partner", revoked=True)
    principal = auth.authenticate({"authorization": f"Bearer {partner_key}"}, deps)
    assert (principal.kind, principal.program_id, principal.partner_id) == ("partner", PID, "ptn_1")
    assert auth.authenticate({"x-publishable-key": pub_key}, deps).kind == "publishable"
    for headers in ({"authorization": f"Bearer {old_key}"}, {"x-api-key": auth.PARTNER_PREFIX + "z" * 43},
                    {"x-api-key": "no-prefix"}, {}):
        with pytest.raises(Unauthorized):
            auth.authenticate(headers, deps)


def test_cors_follows_the_programs_allowed_origins(deps: ports.Ports) -> None:
    from chalicelib.domain.errors import Forbidden
    from chalicelib.services.auth import Principal
    from chalicelib.services.landing import cors

    fakes.seed(deps, support.program(PID, allowed_origins=["https://Coffee.example/"]))
    program = cors.landing_program(Principal(kind="publishable", program_id=PID), deps)
    cors.check_origin(program, "https://coffee.example")  # case and a trailing slash do not count
    cors.check_origin(program, None)  # a server, not a browser
    with pytest.raises(Forbidden):
        cors.check_origin(program, "https://evil.example")
    with pytest.raises(Forbidden):
        cors.landing_program(Principal(kind="operator"), deps)  # no program to act for
    allowed = cors.preflight_headers("https://coffee.example", "POST", deps)
    assert allowed["Access-Control-Allow-Origin"] == "https://coffee.example"
    assert cors.preflight_headers("https://evil.example", "POST", deps) == {"Vary": "Origin"}
    assert cors.preflight_headers(None, "POST", deps) == {"Vary": "Origin"}
