"""Landing endpoints through chalice.test.Client under moto: invites, CORS, rate limits, redirect, offer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from chalicelib.store import keys
from chalicelib.store.counters import click_counters
from chalicelib.store.members import IdentityItem, LinkItem, MemberItem, PendingInviteItem, identity_refs
from tests.support import CLOCK, ApiClient, Reply

ORIGIN = "https://shop.test"
OFFER = {"friend_reward": {"ru": "скидку 500 ₽", "en": "500 RUB off"},
         "partner_reward": {"ru": "кофе в подарок", "en": "a free coffee"}}
NOW = datetime(2026, 11, 23, 12, 0, 30, tzinfo=UTC)


@pytest.fixture(autouse=True)
def frozen(aws_env: None) -> None:
    CLOCK.set(NOW)  # rate-limit windows and click days depend on it


def program_with(api: ApiClient, **fields: Any) -> dict[str, Any]:
    settings = {"offer": OFFER, "landing_rate_limits": {"invites_per_minute": 1000, "offer_per_minute": 1000},
                **fields.pop("settings", {})}
    return api.create_program(landing_url="https://shop.test/welcome?lang=ru", settings=settings, **fields)


def invite(api: ApiClient, program: dict[str, Any], body: dict[str, Any], origin: str | None = ORIGIN,
           key: str | None = None) -> Reply:
    headers = {"X-Publishable-Key": key or program["publishable_key"]}
    if origin:
        headers["Origin"] = origin
    return api.post("/v1/landing/invites", body, key=None, headers=headers)


def member_by_email(program_id: str, email: str) -> MemberItem:
    pointer = IdentityItem.get(*identity_refs(program_id, email=email)[0].pointer_key(program_id))
    member = MemberItem.get(*keys.member(program_id, pointer.member_id))
    assert isinstance(member, MemberItem)
    return member


def table_items() -> list[dict[str, Any]]:
    from chalicelib.store.db import raw_client

    return raw_client().scan(TableName="sarafan-test")["Items"]  # type: ignore[no-any-return]


def entities(kind: str) -> list[dict[str, Any]]:
    return [i for i in table_items() if i.get("entity", {}).get("S") == kind]


# --------------------------------------------------------------------------- invites


def test_invite_returns_code_link_share_texts_and_qr(api: ApiClient) -> None:
    program = program_with(api)
    reply = invite(api, program, {"email": "Olga@Example.com", "name": "Olga Petrova", "locale": "en-GB"})
    assert reply.status == 200, reply.body
    body = reply.body
    code = body["code"]
    assert body["link"] == f"https://srf.test/r/{code}"
    assert body["code_display"].replace("-", "") == code
    assert body["share_texts"] == {
        "ru": f"Получите скидку 500 ₽ от нас + кофе в подарок от нашего партнёра: {body['link']}",
        "en": f"Get 500 RUB off from us + a free coffee from our partner: {body['link']}",
    }
    assert body["locale"] == "en"
    assert body["share_links"]["telegram"].startswith("https://t.me/share/url?")
    assert body["qr_svg"].startswith("<svg") and body["qr_svg"].endswith("</svg>")
    assert body["referral_recorded"] is False
    # Nothing personal comes back.
    assert "olga" not in repr(body).lower() and "member_id" not in body
    member = member_by_email(program["program_id"], "olga@example.com")
    assert (member.code, member.joined_via, member.name, member.locale) == (code, "invite", "Olga Petrova", "en")
    assert member.acquisition == {"channel": "landing"}
    # The short link pointer names the program, so /r/{code} needs nothing else.
    link = LinkItem.get(*keys.short_link(code))
    assert (link.program_id, link.member_id) == (program["program_id"], member.member_id)


def test_same_person_gets_the_same_code(api: ApiClient) -> None:
    program = program_with(api)
    first = invite(api, program, {"email": "ivan.petrov@gmail.com"}).body["code"]
    # Another spelling of the same Gmail mailbox, with UTM: same member, same code.
    again = invite(api, program, {"email": " Ivan.Petrov+promo@googlemail.com ", "utm": {"source": "vk"}})
    assert again.body["code"] == first
    assert len(entities("member")) == 1


def test_invite_by_phone_uses_the_program_region(api: ApiClient) -> None:
    program = program_with(api)
    reply = invite(api, program, {"phone": "8 (912) 345-67-89"})
    assert reply.status == 200, reply.body
    assert invite(api, program, {"phone": "+79123456789"}).body["code"] == reply.body["code"]


def test_a_visitor_cannot_attach_identifiers_to_someone_elses_member(api: ApiClient) -> None:
    program = program_with(api)
    pid = program["program_id"]
    code = invite(api, program, {"email": "anna@example.com"}).body["code"]
    # Someone types Anna's e-mail with their own phone: Anna's code, but the phone stays unlinked.
    assert invite(api, program, {"email": "anna@example.com", "phone": "+79123456789"}).body["code"] == code
    phone_pointer = identity_refs(pid, phone="+79123456789")[0].pointer_key(pid)
    assert not [i for i in table_items() if i["PK"]["S"] == phone_pointer[0]]
    assert member_by_email(pid, "anna@example.com").phone is None


@pytest.mark.parametrize(("body", "paths"), [
    ({"email": "not-an-email"}, ["$.email"]),
    ({"email": "a@b"}, ["$.email"]),
    ({"phone": "12"}, ["$.phone"]),
    ({"phone": "+7 000 000-00-00"}, ["$.phone"]),
    ({"name": "No Contact"}, ["$.email", "$.phone"]),
    ({}, ["$.email", "$.phone"]),
    ({"email": "a@example.com", "password": "x"}, ["$.password"]),
    ({"email": "a@example.com", "utm": {"source": 5}}, ["$.utm.source"]),
    ({"email": 42}, ["$.email"]),
])
def test_invalid_input_is_422_with_paths(api: ApiClient, body: dict[str, Any], paths: list[str]) -> None:
    program = program_with(api)
    reply = invite(api, program, body)
    assert reply.status == 422, reply.body
    assert reply.error_code == "validation_failed"
    assert [e["path"] for e in reply.body["error"]["details"]["errors"]] == paths
    # The page on an allowed origin can read the error.
    assert reply.headers["access-control-allow-origin"] == ORIGIN
    assert entities("member") == []


def test_malformed_json_is_400(api: ApiClient) -> None:
    program = program_with(api)
    reply = api.post("/v1/landing/invites", raw="{nope", key=None,
                     headers={"X-Publishable-Key": program["publishable_key"]})
    assert reply.status == 400
    assert reply.error_code == "malformed_json"


def test_keys(api: ApiClient) -> None:
    program = program_with(api)
    partner = api.create_partner(program["program_id"])
    body = {"email": "k@example.com"}
    assert api.post("/v1/landing/invites", body, key=None).status == 401
    assert api.post("/v1/landing/invites", body, key=None, headers={"X-Publishable-Key": "srf_pub_nope"}).status == 401
    # Bearer works too, and a partner's server may call it for its own program; the operator has no program.
    assert api.post("/v1/landing/invites", body, key=program["publishable_key"]).status == 200
    assert api.post("/v1/landing/invites", body, key=partner["api_key"]).status == 200
    operator = api.post("/v1/landing/invites", body)
    assert (operator.status, operator.error_code) == (403, "program_key_required")
    # The publishable key opens nothing else.
    pid = program["program_id"]
    assert api.get(f"/v1/programs/{pid}/members/lookup?email=k@example.com", key=program["publishable_key"]).status == 403


# --------------------------------------------------------------------------- referral via invite


def test_ref_records_a_pending_invite_for_the_visitor(api: ApiClient) -> None:
    program = program_with(api)
    pid = program["program_id"]
    olga_code = invite(api, program, {"email": "olga@example.com", "name": "Olga"}).body["code"]
    olga = member_by_email(pid, "olga@example.com")
    reply = invite(api, program, {"email": "friend@example.com", "phone": "+79123456789",
                                  "ref": olga_code.lower(), "utm": {"source": "tg", "campaign": "spring"}})
    assert reply.status == 200 and reply.body["referral_recorded"] is True
    friend = member_by_email(pid, "friend@example.com")
    assert friend.referrer_id is None  # credited by the pipeline at signup/order, not here
    assert friend.acquisition == {"channel": "landing", "utm": {"source": "tg", "campaign": "spring"}, "ref": olga_code}
    for ref in identity_refs(pid, email="friend@example.com", phone="+79123456789"):
        pending = PendingInviteItem.get(*ref.invite_key(pid))
        assert (pending.referrer_id, pending.code, pending.kind) == (olga.member_id, olga_code, ref.kind)
        assert pending.invited_at == NOW
        assert pending.expires_at_epoch == int((NOW + timedelta(days=30 + 7)).timestamp())


@pytest.mark.parametrize("case", ["self", "unknown", "malformed", "other_program"])
def test_ref_that_cannot_count_is_ignored_without_error(api: ApiClient, case: str) -> None:
    program = program_with(api)
    other = program_with(api, name="Other")
    own = invite(api, program, {"email": "me@example.com"}).body["code"]
    foreign = invite(api, other, {"email": "x@example.com"}).body["code"]
    ref = {"self": own, "unknown": "ABCD2345678", "malformed": "??", "other_program": foreign}[case]
    reply = invite(api, program, {"email": "me@example.com", "ref": ref})
    assert reply.status == 200 and reply.body["referral_recorded"] is False
    assert entities("pending_invite") == []


@pytest.mark.parametrize(("model", "kept"), [("first_touch", "first"), ("last_touch", "second")])
def test_a_second_referrer_respects_the_attribution_model(api: ApiClient, model: str, kept: str) -> None:
    program = program_with(api, settings={"attribution_model": model})
    pid = program["program_id"]
    codes = {who: invite(api, program, {"email": f"{who}@example.com"}).body["code"] for who in ("first", "second")}
    assert invite(api, program, {"email": "friend@example.com", "ref": codes["first"]}).body["referral_recorded"]
    again = invite(api, program, {"email": "friend@example.com", "ref": codes["second"]})
    assert again.body["referral_recorded"] is (model == "last_touch")
    pending = PendingInviteItem.get(*identity_refs(pid, email="friend@example.com")[0].invite_key(pid))
    assert pending.code == codes[kept]


def test_first_touch_invite_is_replaced_once_outside_the_window(api: ApiClient) -> None:
    program = program_with(api, settings={"attribution_window_days": 10})
    pid = program["program_id"]
    codes = {who: invite(api, program, {"email": f"{who}@example.com"}).body["code"] for who in ("first", "second")}
    invite(api, program, {"email": "friend@example.com", "ref": codes["first"]})
    CLOCK.set(NOW + timedelta(days=11))
    assert invite(api, program, {"email": "friend@example.com", "ref": codes["second"]}).body["referral_recorded"]
    pending = PendingInviteItem.get(*identity_refs(pid, email="friend@example.com")[0].invite_key(pid))
    assert pending.code == codes["second"]


# --------------------------------------------------------------------------- CORS


def test_cors_echoes_only_allowed_origins(api: ApiClient) -> None:
    program = program_with(api, allowed_origins=["https://shop.test", "https://promo.shop.test:8443"])
    ok = invite(api, program, {"email": "a@example.com"}, origin="https://promo.shop.test:8443")
    assert ok.headers["access-control-allow-origin"] == "https://promo.shop.test:8443"
    assert ok.headers["vary"] == "Origin"
    refused = invite(api, program, {"email": "b@example.com"}, origin="https://evil.test")
    assert (refused.status, refused.error_code) == (403, "origin_not_allowed")
    assert "access-control-allow-origin" not in refused.headers
    assert refused.headers["vary"] == "Origin"
    assert len(entities("member")) == 1  # the refused request changed nothing
    server = invite(api, program, {"email": "c@example.com"}, origin=None)
    assert server.status == 200 and "access-control-allow-origin" not in server.headers


def test_another_programs_origin_is_refused(api: ApiClient) -> None:
    program = program_with(api)
    other = program_with(api, name="Other", allowed_origins=["https://other.test"])
    reply = invite(api, program, {"email": "a@example.com"}, origin="https://other.test")
    assert reply.status == 403
    assert invite(api, other, {"email": "a@example.com"}, origin="https://other.test").status == 200


@pytest.mark.parametrize("path", ["/v1/landing/invites", "/v1/landing/offer/ABCD2345678"])
def test_preflight(api: ApiClient, path: str) -> None:
    program_with(api)
    allowed = api.call("OPTIONS", path, key=None, headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,x-publishable-key"})
    assert allowed.status == 204
    assert allowed.headers["access-control-allow-origin"] == ORIGIN
    assert "x-publishable-key" in allowed.headers["access-control-allow-headers"].lower()
    assert allowed.headers["vary"] == "Origin"
    refused = api.call("OPTIONS", path, key=None, headers={"Origin": "https://evil.test"})
    assert refused.status == 204
    assert "access-control-allow-origin" not in refused.headers
    assert "access-control-allow-methods" not in refused.headers


# --------------------------------------------------------------------------- rate limits


def test_invites_are_rate_limited_per_ip_per_program(api: ApiClient) -> None:
    program = program_with(api, settings={"landing_rate_limits": {"invites_per_minute": 3}})
    other = program_with(api, name="Other")
    for i in range(3):
        assert invite(api, program, {"email": f"v{i}@example.com"}).status == 200
    limited = invite(api, program, {"email": "v9@example.com"})
    assert (limited.status, limited.error_code) == (429, "rate_limited")
    assert limited.headers["retry-after"] == "30"  # the minute window ends 30 s after NOW
    assert limited.headers["access-control-allow-origin"] == ORIGIN
    assert limited.body["error"]["details"] == {"limit_per_minute": 3}
    assert invite(api, other, {"email": "v9@example.com"}).status == 200  # per program
    CLOCK.set(NOW + timedelta(seconds=30))  # next window
    assert invite(api, program, {"email": "v9@example.com"}).status == 200
    # Windows are keyed by a salted hash of the IP, expire by TTL, and store no IP.
    windows = entities("rate_window")
    assert windows and all("127.0.0.1" not in repr(w) for w in windows)
    assert all(int(w["expires_at_epoch"]["N"]) > NOW.timestamp() for w in windows)
    assert "127.0.0.1" not in repr(table_items())


def test_the_limit_is_per_client_ip(api: ApiClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """The client IP comes from where API Gateway puts it (``requestContext.identity.sourceIp``):
    the test changes the gateway's event, not our extraction of it."""
    from chalice.local import LambdaEventConverter

    program = program_with(api, settings={"landing_rate_limits": {"invites_per_minute": 1}})
    monkeypatch.setattr(LambdaEventConverter, "LOCAL_SOURCE_IP", "203.0.113.1")
    assert invite(api, program, {"email": "a@example.com"}).status == 200
    assert invite(api, program, {"email": "a@example.com"}).status == 429
    monkeypatch.setattr(LambdaEventConverter, "LOCAL_SOURCE_IP", "203.0.113.2")
    assert invite(api, program, {"email": "a@example.com"}).status == 200
    # A spoofed forwarding header does not make a new client.
    spoofed = api.post("/v1/landing/invites", {"email": "a@example.com"}, key=None, headers={
        "X-Publishable-Key": program["publishable_key"], "Origin": ORIGIN, "X-Forwarded-For": "198.51.100.7"})
    assert spoofed.status == 429


# --------------------------------------------------------------------------- redirect


def redirect(api: ApiClient, path: str) -> tuple[int, str, dict[str, list[str]]]:
    reply = api.get(path, key=None)
    location = reply.headers.get("location", "")
    return reply.status, location.split("?")[0], parse_qs(urlsplit(location).query)


def test_redirect_passes_code_and_utm_and_counts_the_click(api: ApiClient) -> None:
    program = program_with(api)
    pid = program["program_id"]
    code = invite(api, program, {"email": "olga@example.com"}).body["code"]
    status, base, query = redirect(api, f"/r/{code}?utm_source=Telegram&utm_medium=social&utm_campaign=spring&x=1")
    assert (status, base) == (302, "https://shop.test/welcome")
    assert query == {"lang": ["ru"], "ref": [code], "utm_source": ["Telegram"], "utm_medium": ["social"],
                     "utm_campaign": ["spring"]}
    reply = api.get(f"/r/{code}", key=None)
    assert reply.headers["cache-control"] == "no-store"
    # Lower-case, dashes, Cyrillic look-alikes: the same code.
    display = "-".join(code[i:i + 4] for i in range(0, len(code), 4)).lower()
    assert redirect(api, f"/r/{display}?utm_source=telegram")[2]["ref"] == [code]
    counts = {(c.day, c.utm_source): int(c.clicks) for c in click_counters(pid, code)}
    assert counts == {("2026-11-23", "telegram"): 2, ("2026-11-23", "-"): 1}
    CLOCK.set(NOW + timedelta(days=1))
    redirect(api, f"/r/{code}")
    assert {(c.day, c.utm_source): int(c.clicks) for c in click_counters(pid, code)}[("2026-11-24", "-")] == 1
    assert "127.0.0.1" not in repr(table_items())


def test_link_previews_are_not_clicks(api: ApiClient) -> None:
    program = program_with(api)
    code = invite(api, program, {"email": "olga@example.com"}).body["code"]
    for agent in ("TelegramBot (like TwitterBot)", "WhatsApp/2.23.20.0", "facebookexternalhit/1.1"):
        reply = api.get(f"/r/{code}", key=None, headers={"User-Agent": agent})
        assert reply.status == 302 and f"ref={code}" in reply.headers["location"]
    assert list(click_counters(program["program_id"], code)) == []
    api.get(f"/r/{code}", key=None, headers={"User-Agent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0)"})
    assert [int(c.clicks) for c in click_counters(program["program_id"], code)] == [1]


def test_redirect_to_a_partners_landing_page(api: ApiClient) -> None:
    program = program_with(api)
    partner = api.create_partner(program["program_id"], landing_url="https://fitlab.test/join")
    plain = api.create_partner(program["program_id"], name="No landing")
    other = api.create_partner(program_with(api, name="Other")["program_id"], landing_url="https://other.test/")
    code = invite(api, program, {"email": "olga@example.com"}).body["code"]
    status, base, query = redirect(api, f"/r/{code}?p={partner['partner_id']}&utm_source=qr")
    assert (status, base, query) == (302, "https://fitlab.test/join", {"ref": [code], "utm_source": ["qr"]})
    for p in (plain["partner_id"], other["partner_id"], "ptn_unknown"):
        assert redirect(api, f"/r/{code}?p={p}")[1] == "https://shop.test/welcome"


@pytest.mark.parametrize("code", ["ABCD2345678", "no", "%D0%AF%D0%AF%D0%AF%D0%AF", "A" * 60])
def test_unknown_code_goes_to_the_default_landing(api: ApiClient, monkeypatch: pytest.MonkeyPatch, code: str) -> None:
    monkeypatch.setenv("SARAFAN_DEFAULT_LANDING_URL", "https://sarafan.test/")
    reply = api.get(f"/r/{code}?utm_source=x", key=None)
    assert reply.status == 302
    assert reply.headers["location"] == "https://sarafan.test/"
    assert entities("click_counter") == []


def test_program_without_landing_url_uses_the_default(api: ApiClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SARAFAN_DEFAULT_LANDING_URL", "https://sarafan.test/start")
    program = api.create_program(settings={"landing_rate_limits": {"invites_per_minute": 100}})
    code = invite(api, program, {"email": "a@example.com"}).body["code"]
    assert redirect(api, f"/r/{code}")[1:] == ("https://sarafan.test/start", {"ref": [code]})


def test_redirect_survives_a_store_failure(api: ApiClient, monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib.store import counters

    program = program_with(api)
    code = invite(api, program, {"email": "a@example.com"}).body["code"]

    def broken(*args: Any) -> None:
        raise RuntimeError("store down")

    monkeypatch.setattr(counters, "count_click", broken)
    assert redirect(api, f"/r/{code}")[:2] == (302, "https://shop.test/welcome")
    monkeypatch.setattr(LinkItem, "get", broken)
    monkeypatch.setenv("SARAFAN_DEFAULT_LANDING_URL", "https://sarafan.test/")
    assert redirect(api, f"/r/{code}")[:2] == (302, "https://sarafan.test/")


def test_redirects_are_rate_limited_per_ip(api: ApiClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SARAFAN_REDIRECT_RATE_PER_MINUTE", "2")
    assert api.get("/r/ABCD2345678", key=None).status == 302
    assert api.get("/r/ABCD2345679", key=None).status == 302
    limited = api.get("/r/ABCD234567A", key=None)
    assert (limited.status, limited.error_code) == (429, "rate_limited")
    assert limited.headers["retry-after"] == "30"


# --------------------------------------------------------------------------- offer


def test_offer_shows_the_first_name_only(api: ApiClient) -> None:
    program = program_with(api)
    code = invite(api, program, {"email": "olga@example.com", "name": "  Olga   Petrova "}).body["code"]
    reply = api.get(f"/v1/landing/offer/{code.lower()}", key=None,
                    headers={"X-Publishable-Key": program["publishable_key"], "Origin": ORIGIN})
    assert reply.status == 200, reply.body
    assert reply.body == {"code": code, "program": {"name": "Demo", "default_locale": "ru"},
                          "referrer": {"first_name": "Olga"}, "offer": OFFER, "locale": "ru"}
    assert reply.headers["access-control-allow-origin"] == ORIGIN


def test_offer_for_unknown_or_foreign_code_is_404(api: ApiClient) -> None:
    program = program_with(api)
    other = program_with(api, name="Other")
    foreign = invite(api, other, {"email": "x@example.com"}).body["code"]
    for code in ("ABCD2345678", foreign, "!!"):
        reply = api.get(f"/v1/landing/offer/{code}", key=None, headers={
            "X-Publishable-Key": program["publishable_key"], "Origin": ORIGIN})
        assert (reply.status, reply.error_code) == (404, "code_not_found"), code
        assert reply.headers["access-control-allow-origin"] == ORIGIN


def test_offer_is_rate_limited(api: ApiClient) -> None:
    program = program_with(api, settings={"landing_rate_limits": {"offer_per_minute": 2}})
    headers = {"X-Publishable-Key": program["publishable_key"]}
    statuses = [api.get("/v1/landing/offer/ABCD2345678", key=None, headers=headers).status for _ in range(3)]
    assert statuses == [404, 404, 429]
