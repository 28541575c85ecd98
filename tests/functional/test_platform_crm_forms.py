"""Tilda, amoCRM, Bitrix24 and InSales through the real route: URL tokens / application token,
form-encoded bodies, mapping to the ledger, dedupe, and Bitrix24's crm.deal.get fetch.

Fixtures: tests/fixtures/platforms/{tilda,amocrm,bitrix24,insales} (each names its documentation).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from tests.platform_support import FakeCrm, PlatformShop, crm_queue, drain, fixture
from tests.support import CLOCK, ApiClient, Reply

RULES: dict[str, Any] = {"max_depth": 1, "hold_days": 0, "rules": [
    {"id": "lead-bonus", "trigger": {"event": "lead.created"}, "recipient": {"type": "referrer", "level": 1},
     "amount": {"points": 200}},
    {"id": "deal-commission", "trigger": {"event": "deal.won"}, "recipient": {"type": "referrer", "level": 1},
     "amount": {"rate_bp": 500}},
    {"id": "order-commission", "trigger": {"event": "order.paid"}, "recipient": {"type": "referrer", "level": 1},
     "amount": {"rate_bp": 1000}}]}
B24_TOKEN = "qd6ifu4nxm1bl8ghzsp3gq2m8ec5rkdf"


def program(api: ApiClient) -> tuple[PlatformShop, str]:
    shop = PlatformShop(api, RULES, currency="RUB")
    anna = shop.member("anna")["member_id"]
    assert shop.api.put(f"/v1/programs/{shop.pid}/members/{anna}/code", {"code": "ANNA-7K2Q"}).status == 200
    return shop, anna


def post(shop: PlatformShop, url: str, platform: str, name: str, body: str | None = None) -> Reply:
    data = fixture(platform, name)
    raw = body if body is not None else data["body"]
    raw = raw if isinstance(raw, str) else json.dumps(raw)
    return shop.deliver(url, raw.encode(), data["headers"])


# --------------------------------------------------------------------------- token URLs (Tilda)


def test_tilda_token_url_is_shown_once_and_only_its_hash_is_stored(api: ApiClient) -> None:
    from chalicelib.store import integrations

    shop, anna = program(api)
    view = shop.connected("tilda")
    url = view["webhook_url"]
    token = url.split("token=")[1]
    assert view["token_issued"] is True and len(token) >= 43
    again = shop.connected("tilda", ref_field="ref")
    assert "token=" not in again["webhook_url"] and again["token_issued"] is False
    assert token not in json.dumps(api.get(f"{shop.base}/tilda").body)
    item = integrations.get(shop.pid, shop.partner["partner_id"], "tilda", fresh=True)
    assert item is not None and token not in json.dumps(item.tokens)
    base = url.split("?")[0]
    assert post(shop, base, "tilda", "form.json").status == 401  # no token
    assert post(shop, base + "?token=" + "x" * 43, "tilda", "form.json").status == 401
    assert post(shop, url, "tilda", "test.json").body["status"] == "ignored"
    reply = post(shop, url, "tilda", "form.json")
    assert reply.status == 200, reply.body
    (event,) = reply.body["events"]
    assert event["type"] == "lead.created" and event["attribution"]["referrer_id"] == anna
    assert shop.rewards(anna) == {"lead-bonus": 200}
    assert post(shop, url, "tilda", "form.json").body["status"] == "duplicate"
    # The phone was normalised like everywhere: the lead is found by it.
    assert api.get(f"/v1/programs/{shop.pid}/members/lookup?phone=%2B79123456789").status == 200


def test_tilda_token_rotation_keeps_the_old_url_for_the_overlap(api: ApiClient) -> None:
    shop, _ = program(api)
    old = shop.connected("tilda")["webhook_url"]
    new = shop.connected("tilda", rotate_token=True)["webhook_url"]
    assert old != new
    assert post(shop, old, "tilda", "test.json").status == 200
    assert post(shop, new, "tilda", "test.json").status == 200
    CLOCK.set(CLOCK.now() + timedelta(hours=25))
    assert post(shop, old, "tilda", "test.json").status == 401
    assert post(shop, new, "tilda", "test.json").status == 200


def test_token_platforms_refuse_a_secret(api: ApiClient) -> None:
    shop, _ = program(api)
    reply = shop.connect("tilda", secret="some-secret-value")
    assert reply.status == 422 and reply.body["error"]["details"]["errors"][0]["path"] == "$.settings.secret"


# --------------------------------------------------------------------------- amoCRM


def test_amocrm_lead_then_won_status_pays_the_deal_commission(api: ApiClient) -> None:
    shop, anna = program(api)
    url = shop.connected("amocrm", subdomain="zerno")["webhook_url"]
    added = post(shop, url, "amocrm", "lead_add.json")
    assert added.status == 200, added.body
    assert added.body["events"][0]["attribution"]["referrer_id"] == anna
    other = post(shop, url, "amocrm", "lead_status_other.json")
    assert other.body["status"] == "ignored"
    won = post(shop, url, "amocrm", "lead_status_won.json")
    (event,) = won.body["events"]
    assert event["type"] == "deal.won" and event["status"] == "processed"
    # price 5000 RUB (program currency) = 500000 kopecks; 5 % = 25000 kopecks = 250 points.
    assert shop.rewards(anna) == {"lead-bonus": 200, "deal-commission": 250}
    assert post(shop, url, "amocrm", "lead_status_won.json").body["status"] == "duplicate"
    # Another account's delivery to this URL is refused; nothing written.
    foreign = fixture("amocrm", "lead_status_won.json")["body"].replace("subdomain%5D=zerno", "subdomain%5D=other")
    assert post(shop, url, "amocrm", "lead_status_won.json", body=foreign).status == 400


def test_amocrm_won_status_per_pipeline(api: ApiClient) -> None:
    shop, _ = program(api)
    url = shop.connected("amocrm", won_status_ids={"3104455": [29512008]})["webhook_url"]
    post(shop, url, "amocrm", "lead_add.json")
    assert post(shop, url, "amocrm", "lead_status_won.json").body["status"] == "ignored"  # 142 not won here
    assert post(shop, url, "amocrm", "lead_status_other.json").body["events"][0]["type"] == "deal.won"


AMO_TOKEN = "amo-long-lived-token-7f3c2a1b9e8d"


@pytest.fixture
def amo_api(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeCrm]:
    answers = fixture("amocrm", "api_v4_responses.json")["body"]
    fake = FakeCrm({"/amocrm/api/v4/leads/25399013": (200, answers["lead"]),
                    "/amocrm/api/v4/contacts/3": (200, answers["contact"])}, token=AMO_TOKEN)
    monkeypatch.setenv("SARAFAN_CRM_FAKE_BASE_URL", fake.base_url)
    yield fake
    fake.close()


def test_amocrm_won_lead_is_completed_from_api_v4(api: ApiClient, amo_api: FakeCrm,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    queue = crm_queue(monkeypatch)
    shop, anna = program(api)
    url = shop.connected("amocrm", subdomain="zerno", api_token=AMO_TOKEN)["webhook_url"]
    assert post(shop, url, "amocrm", "lead_add.json").status == 200
    won = post(shop, url, "amocrm", "lead_status_won.json")
    assert won.status == 200 and won.body["status"] == "queued", won.body
    assert amo_api.calls == []  # acknowledged before any CRM call
    (result,) = drain(queue)
    assert result["status"] == "processed" and result["type"] == "deal.won", result
    assert result["attribution"]["referrer_id"] == anna
    # The main contact (is_main), not the first one, is fetched.
    assert [c.split("?")[0] for c in amo_api.calls] == ["/amocrm/api/v4/leads/25399013", "/amocrm/api/v4/contacts/3"]
    assert amo_api.calls[0].endswith("?with=contacts")
    # The API's current price (7000 RUB), not the webhook's 5000: 5 % of 700000 kopecks = 350 points.
    assert shop.rewards(anna) == {"lead-bonus": 200, "deal-commission": 350}
    # The lead's member is now found by the main contact's e-mail and phone.
    lead_member = shop.member_id_of("amo-lead-25399013")
    by_email = api.get(f"/v1/programs/{shop.pid}/members/lookup?email=ivan@example.ru")
    by_phone = api.get(f"/v1/programs/{shop.pid}/members/lookup?phone=%2B79123456789")
    assert by_email.status == 200 and by_email.body["member_id"] == lead_member
    assert by_phone.status == 200 and by_phone.body["member_id"] == lead_member
    # A redelivery (the same lead, status and updated_at) is acknowledged as a duplicate: not queued,
    # the API is not asked again.
    again = post(shop, url, "amocrm", "lead_status_won.json")
    assert again.status == 200 and again.body["status"] == "duplicate", again.body
    assert drain(queue) == [] and len(amo_api.calls) == 2
    assert shop.rewards(anna) == {"lead-bonus": 200, "deal-commission": 350}


def test_amocrm_refused_token_is_logged_and_pays_nothing(api: ApiClient, amo_api: FakeCrm,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    queue = crm_queue(monkeypatch)
    shop, anna = program(api)
    url = shop.connected("amocrm", subdomain="zerno", api_token="amo-revoked-token-000000")["webhook_url"]
    post(shop, url, "amocrm", "lead_add.json")
    post(shop, url, "amocrm", "lead_status_won.json")
    (result,) = drain(queue)
    assert result == {"status": "failed", "code": "crm_auth_failed"}
    log = api.get(f"{shop.base}/amocrm/log", key=shop.partner["api_key"]).body
    (entry,) = log["items"]
    assert entry["object_id"] == "25399013" and "amo-revoked" not in json.dumps(log)
    assert api.get(f"{shop.base}/hubspot/log").body["items"] == []  # per platform
    assert shop.rewards(anna) == {"lead-bonus": 200}


def test_amocrm_api_token_needs_the_subdomain(api: ApiClient) -> None:
    shop, _ = program(api)
    reply = shop.connect("amocrm", api_token=AMO_TOKEN)
    assert reply.status == 422, reply.body
    assert "subdomain" in json.dumps(reply.body["error"]["details"])


def test_amocrm_api_hosts_are_the_documented_ones() -> None:
    from chalicelib.services.crm_http import PermanentFailure, resolve

    assert resolve("amocrm", "https://zerno.amocrm.ru/api/v4/leads/1") == "https://zerno.amocrm.ru/api/v4/leads/1"
    assert resolve("amocrm", "https://zerno.kommo.com/api/v4/leads/1").startswith("https://zerno.kommo.com/")
    for bad in ("https://zerno.amocrm.ru.evil.test/api/v4/leads/1", "http://zerno.amocrm.ru/api/v4/leads/1",
                "https://169.254.169.254/latest/meta-data"):
        with pytest.raises(PermanentFailure):
            resolve("amocrm", bad)


# --------------------------------------------------------------------------- Bitrix24


@pytest.fixture
def b24_shop(api: ApiClient) -> tuple[PlatformShop, str, str]:
    shop, anna = program(api)
    url = shop.connected("bitrix24", secret=B24_TOKEN, portal_domain="zerno.bitrix24.ru")["webhook_url"]
    return shop, anna, url


def test_bitrix24_application_token_vectors(b24_shop: tuple[PlatformShop, str, str]) -> None:
    shop, _, url = b24_shop
    good = fixture("bitrix24", "lead_add.json")["body"]
    assert post(shop, url, "bitrix24", "lead_add.json").status == 200
    assert post(shop, url, "bitrix24", "lead_add.json", body=good.replace(B24_TOKEN, "x" * 32)).status == 401
    assert post(shop, url, "bitrix24", "lead_add.json",
                body=good.replace("&auth%5Bapplication_token%5D=" + B24_TOKEN, "")).status == 401
    assert post(shop, url, "bitrix24", "lead_add.json",
                body=good.replace("zerno.bitrix24.ru", "other.bitrix24.ru")).status == 401
    assert post(shop, url, "bitrix24", "lead_add.json", body=good + "&event=ONCRMLEADADD").status in (400, 401)


def test_bitrix24_deal_with_fields_is_won_directly(b24_shop: tuple[PlatformShop, str, str]) -> None:
    shop, _, url = b24_shop
    reply = post(shop, url, "bitrix24", "deal_update_with_fields.json")
    (event,) = reply.body["events"]
    assert event["type"] == "deal.won" and event["status"] == "processed"
    ids_only = post(shop, url, "bitrix24", "deal_update_ids_only.json")
    assert ids_only.body["events"][0]["status"] == "skipped" and "api_token" in ids_only.body["events"][0]["reason"]


@pytest.fixture
def bitrix_crm(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeCrm]:
    api = fixture("bitrix24", "crm_rest_responses.json")["body"]
    fake = FakeCrm({"/bitrix24/rest/1/k3y/crm.deal.get.json": (200, api["deal"]),
                    "/bitrix24/rest/1/k3y/crm.contact.get.json": (200, api["contact"])})
    monkeypatch.setenv("SARAFAN_CRM_FAKE_BASE_URL", fake.base_url)
    yield fake
    fake.close()


def test_bitrix24_ids_only_deal_is_fetched_with_crm_deal_get(b24_shop: tuple[PlatformShop, str, str],
                                                             bitrix_crm: FakeCrm,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    shop, anna, url = b24_shop
    queue = crm_queue(monkeypatch)
    shop.connected("bitrix24", portal_domain="zerno.bitrix24.ru", api_token="https://zerno.bitrix24.ru/rest/1/k3y/")
    # The contact came in through a landing page invite earlier: give it a referral via a signup event.
    shop.send({"type": "member.signup", "occurred_at": "2023-11-01T10:00:00Z",
               "object": {"type": "customer", "id": "b24-contact-1207"},
               "customer": {"id": "b24-contact-1207", "email": "boris@example.ru"},
               "referral": {"code": "ANNA-7K2Q"}})
    reply = post(shop, url, "bitrix24", "deal_update_ids_only.json")
    assert reply.body["status"] == "queued"
    (result,) = drain(queue)
    assert result["status"] == "processed" and result["type"] == "deal.won", result
    assert [c.split("?")[0] for c in bitrix_crm.calls] == ["/bitrix24/rest/1/k3y/crm.deal.get.json",
                                                          "/bitrix24/rest/1/k3y/crm.contact.get.json"]
    # 5 % of 120000.00 RUB = 600000 kopecks = 6000 points.
    assert shop.rewards(anna)["deal-commission"] == 6000
    # The same event again (same ts) is acknowledged as a duplicate without asking the portal again;
    # a later update of the deal (another ts) is fetched, and the won deal still pays once.
    again = post(shop, url, "bitrix24", "deal_update_ids_only.json")
    assert again.body["status"] == "duplicate" and drain(queue) == [] and len(bitrix_crm.calls) == 2
    later = fixture("bitrix24", "deal_update_ids_only.json")["body"].replace("ts=1700000000", "ts=1700007200")
    assert post(shop, url, "bitrix24", "deal_update_ids_only.json", body=later).body["status"] == "queued"
    assert [r["status"] for r in drain(queue)] == ["duplicate"] and len(bitrix_crm.calls) == 4
    assert shop.rewards(anna)["deal-commission"] == 6000


# --------------------------------------------------------------------------- InSales


def test_insales_paid_then_returned(api: ApiClient) -> None:
    shop, anna = program(api)
    url = shop.connected("insales")["webhook_url"]
    assert post(shop, url, "insales", "order_pending.json").body["status"] == "ignored"
    paid = post(shop, url, "insales", "order_paid.json")
    (event,) = paid.body["events"]
    assert event["type"] == "order.paid" and event["attribution"]["referrer_id"] == anna
    # 1490.0 RUR = 149000 kopecks; 10 % = 14900 kopecks = 149 points.
    assert shop.rewards(anna) == {"order-commission": 149}
    assert post(shop, url, "insales", "order_paid.json").body["status"] == "duplicate"
    returned = post(shop, url, "insales", "order_returned.json")
    assert [e["type"] for e in returned.body["events"]] == ["order.paid", "order.refunded"]
    assert shop.rewards(anna) == {"order-commission": 0}
    assert post(shop, url.split("?")[0], "insales", "order_paid.json").status == 401


def test_insales_cancellation(api: ApiClient) -> None:
    shop, anna = program(api)
    url = shop.connected("insales")["webhook_url"]
    post(shop, url, "insales", "order_paid.json")
    declined = post(shop, url, "insales", "order_declined.json")
    assert declined.body["events"][0]["type"] == "order.cancelled"
    assert shop.rewards(anna) == {"order-commission": 0}


# --------------------------------------------------------------------------- token vectors (amoCRM, InSales)


@pytest.mark.parametrize(("platform", "name", "settings"), [
    ("amocrm", "lead_add.json", {"subdomain": "zerno"}),
    ("insales", "order_paid.json", {}),
])
def test_token_platforms_refuse_a_wrong_token_and_rotate_with_an_overlap(api: ApiClient, platform: str, name: str,
                                                                         settings: dict[str, Any]) -> None:
    from tests.functional.test_data_rights_erasure import scan_test_table

    shop, anna = program(api)
    old = shop.connected(platform, **settings)["webhook_url"]
    base, token = old.split("?token=")
    before = len(scan_test_table())
    for wrong in (base, f"{base}?token=", f"{base}?token={'A' * len(token)}", f"{base}?token={token[:-1]}",
                  f"{base}?token={token}x"):
        reply = post(shop, wrong, platform, name)
        assert reply.status == 401, (wrong, reply.body)
        assert reply.body["error"]["code"] == "invalid_signature"
    assert len(scan_test_table()) == before  # nothing written on a rejection
    # Rotation: a new URL; the old one keeps working for the overlap (24 h), then stops.
    new = shop.connected(platform, rotate_token=True, **settings)["webhook_url"]
    assert new != old and new.split("?token=")[0] == base
    first = post(shop, old, platform, name)
    assert first.status == 200 and first.body["status"] == "processed", first.body
    assert post(shop, new, platform, name).body["status"] == "duplicate"  # the same fact by either URL
    CLOCK.set(CLOCK.now() + timedelta(hours=23))
    assert post(shop, old, platform, name).status == 200
    CLOCK.set(CLOCK.now() + timedelta(hours=2))
    assert post(shop, old, platform, name).status == 401
    assert post(shop, new, platform, name).status == 200
    expected = {"lead-bonus": 200} if platform == "amocrm" else {"order-commission": 149}
    assert shop.rewards(anna) == expected


# --------------------------------------------------------------------------- Bitrix24 delivery vectors


def test_bitrix24_duplicates_reward_once(b24_shop: tuple[PlatformShop, str, str]) -> None:
    shop, anna, url = b24_shop
    # The contact came through Anna's referral (its signup carries her code).
    shop.send({"type": "member.signup", "occurred_at": "2023-11-01T10:00:00Z",
               "object": {"type": "customer", "id": "b24-contact-1207"},
               "customer": {"id": "b24-contact-1207"}, "referral": {"code": "ANNA-7K2Q"}})
    assert post(shop, url, "bitrix24", "deal_update_with_fields.json").body["status"] == "processed"
    # The same event redelivered, and a later update of the same won deal (another ts): one fact.
    assert post(shop, url, "bitrix24", "deal_update_with_fields.json").body["status"] == "duplicate"
    later = fixture("bitrix24", "deal_update_with_fields.json")["body"].replace("ts=1700000000", "ts=1700003600")
    assert post(shop, url, "bitrix24", "deal_update_with_fields.json", body=later).body["status"] == "duplicate"
    # A lead added twice is one lead.
    assert post(shop, url, "bitrix24", "lead_add.json").body["status"] == "processed"
    assert post(shop, url, "bitrix24", "lead_add.json").body["status"] == "duplicate"
    # 5 % of 45000.00 RUB = 225000 kopecks = 2250 points, once.
    assert shop.rewards(anna) == {"deal-commission": 2250}


def test_bitrix24_out_of_order_updates_keep_the_won_deal(b24_shop: tuple[PlatformShop, str, str]) -> None:
    shop, anna, url = b24_shop
    shop.send({"type": "member.signup", "occurred_at": "2023-11-01T10:00:00Z",
               "object": {"type": "customer", "id": "b24-contact-1207"},
               "customer": {"id": "b24-contact-1207"}, "referral": {"code": "ANNA-7K2Q"}})
    won = fixture("bitrix24", "deal_update_with_fields.json")["body"]
    # The won update arrives first; the deal's earlier updates (an earlier stage, an earlier ts) after it.
    assert post(shop, url, "bitrix24", "deal_update_with_fields.json").body["status"] == "processed"
    for stage, ts in (("PREPARATION", "1699990000"), ("NEW", "1699980000")):
        earlier = won.replace("STAGE_ID%5D=WON", f"STAGE_ID%5D={stage}").replace("ts=1700000000", f"ts={ts}")
        reply = post(shop, url, "bitrix24", "deal_update_with_fields.json", body=earlier)
        assert reply.status == 200 and reply.body["status"] == "ignored", reply.body
        assert reply.body["events"][0]["reason"] == "the deal is not in the won stage"
    created = won.replace("event=ONCRMDEALUPDATE", "event=ONCRMDEALADD").replace("STAGE_ID%5D=WON", "STAGE_ID%5D=NEW")
    assert post(shop, url, "bitrix24", "deal_update_with_fields.json", body=created).body["status"] == "ignored"
    # The won deal was rewarded once and nothing took it back.
    assert shop.rewards(anna) == {"deal-commission": 2250}


def test_bitrix24_won_deal_before_its_contact_is_known_still_pays_once_attributed(
        b24_shop: tuple[PlatformShop, str, str]) -> None:
    """Out of order the other way: the won deal arrives before the contact's referral is known; the
    deal is the contact's (b24-contact-1207) and a later signup with a code does not re-pay it."""
    shop, anna, url = b24_shop
    first = post(shop, url, "bitrix24", "deal_update_with_fields.json")
    assert first.body["events"][0]["status"] == "processed"
    assert shop.rewards(anna) == {}
    shop.send({"type": "member.signup", "occurred_at": "2023-11-20T10:00:00Z",
               "object": {"type": "customer", "id": "b24-contact-1207"},
               "customer": {"id": "b24-contact-1207"}, "referral": {"code": "ANNA-7K2Q"}})
    assert post(shop, url, "bitrix24", "deal_update_with_fields.json").body["status"] == "duplicate"
    assert shop.rewards(anna) == {}


def test_bitrix24_rotated_application_token_verifies_both_for_the_overlap(
        b24_shop: tuple[PlatformShop, str, str]) -> None:
    shop, _, url = b24_shop
    rotated = "n3wt0k3nforb1tr1x24appl1cat10n00"
    view = shop.connected("bitrix24", secret=rotated, portal_domain="zerno.bitrix24.ru")
    assert view["secret"]["versions_valid"] == 2 and view["secret"]["previous_valid_until"]
    assert rotated not in json.dumps(view) and B24_TOKEN not in json.dumps(view)
    old_body = fixture("bitrix24", "lead_add.json")["body"]
    new_body = old_body.replace(B24_TOKEN, rotated)
    assert post(shop, url, "bitrix24", "lead_add.json", body=old_body).status == 200
    assert post(shop, url, "bitrix24", "lead_add.json", body=new_body).body["status"] == "duplicate"
    CLOCK.set(CLOCK.now() + timedelta(hours=25))
    reply = post(shop, url, "bitrix24", "lead_add.json", body=old_body)
    assert reply.status == 401 and reply.body["error"]["code"] == "invalid_signature"
    assert post(shop, url, "bitrix24", "lead_add.json", body=new_body).status == 200


# --------------------------------------------------------------------------- the local run's fake CRM


def test_the_local_runs_fake_crm_completes_all_three_crms(api: ApiClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """``python3 infra/dev.py run --fake-crm`` (infra/fake_crm.py) answers the CRM fetch from the
    recorded responses, for whichever id the event names; a revoked token gets the CRM's 401."""
    from infra.fake_crm import FakeCrm
    from infra.local_run import parse_args

    assert parse_args(["--fake-crm"]).fake_crm is True and parse_args([]).fake_crm is False
    fake = FakeCrm().start()
    try:
        monkeypatch.setenv("SARAFAN_CRM_FAKE_BASE_URL", fake.base_url)
        queue = crm_queue(monkeypatch)
        shop, anna = program(api)
        # Bitrix24: an ids-only update of deal 4242 (not the recorded 3377: the fake puts the id in).
        url = shop.connected("bitrix24", secret=B24_TOKEN, portal_domain="zerno.bitrix24.ru",
                             api_token="https://zerno.bitrix24.ru/rest/1/demo/")["webhook_url"]
        shop.send({"type": "member.signup", "occurred_at": "2023-11-01T10:00:00Z",
                   "object": {"type": "customer", "id": "b24-contact-1207"},
                   "customer": {"id": "b24-contact-1207"}, "referral": {"code": "ANNA-7K2Q"}})
        body = fixture("bitrix24", "deal_update_ids_only.json")["body"].replace("ID%5D=3377", "ID%5D=4242")
        assert post(shop, url, "bitrix24", "deal_update_ids_only.json", body=body).body["status"] == "queued"
        # amoCRM: the won lead, completed from API v4 (price 7000 RUB, the main contact's e-mail).
        amo = shop.connected("amocrm", subdomain="zerno", api_token="amo-demo-token-0000")["webhook_url"]
        assert post(shop, amo, "amocrm", "lead_add.json").status == 200
        assert post(shop, amo, "amocrm", "lead_status_won.json").body["status"] == "queued"
        results = drain(queue)
        assert [(r["status"], r["type"]) for r in results] == [("processed", "deal.won")] * 2, results
        # 5 % of 120000.00 RUB (Bitrix24) = 6000 points; of 7000 RUB (amoCRM) = 350; the amo lead's bonus 200.
        assert shop.rewards(anna) == {"deal-commission": 6350, "lead-bonus": 200}
        assert any("/crm.deal.get.json?id=4242" in c for c in fake.calls)
        # HubSpot (and any platform): the id asked is the id answered; a revoked token is the CRM's 401.
        from infra.fake_crm import answer

        assert answer("/hubspot/crm/v3/objects/deals/1", "Bearer pat-revoked-0000")[0] == 401
        assert answer("/hubspot/crm/v3/objects/deals/77", "Bearer pat-ok")[1]["id"] == "77"
        assert answer("/hubspot/crm/v3/objects/tickets/1", "Bearer pat-ok")[0] == 404
    finally:
        fake.stop()
