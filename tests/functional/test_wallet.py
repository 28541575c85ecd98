"""Wallet links and the wallet page: a real member's balance, code, friends and history; forged, changed and
expired links refused."""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from typing import Any

import pytest

from chalicelib.services import wallet
from tests.functional.test_analytics import RULES
from tests.functional.test_ledger_support import Shop, utc
from tests.support import CLOCK, ApiClient


@pytest.fixture
def shop(api: ApiClient) -> Shop:
    CLOCK.set(utc("2026-01-10T09:00:00Z"))
    return Shop(api, RULES, partners=1, landing_url="https://shop.test/")


def people(shop: Shop) -> tuple[dict[str, Any], dict[str, Any]]:
    from chalicelib.store import keys
    from chalicelib.store.members import MemberItem

    anna = shop.member("anna", at="2026-01-10T10:00:00Z")
    MemberItem(*keys.member(shop.pid, anna["member_id"])).update(actions=[MemberItem.name.set("Anna Petrova")])
    boris = shop.member("boris", anna["code"], at="2026-01-10T11:00:00Z")
    MemberItem(*keys.member(shop.pid, boris["member_id"])).update(actions=[MemberItem.name.set("Boris Ivanov")])
    shop.order("boris", "o-1", 200_000, at="2026-01-12T10:00:00Z")
    return anna, boris


def link(api: ApiClient, shop: Shop, member_id: str, key: str | None = "operator", **body: Any) -> Any:
    return api.post(f"/v1/programs/{shop.pid}/members/{member_id}/wallet-links", body, key=key)


def test_a_partner_issues_a_link_and_the_page_shows_the_members_wallet(api: ApiClient, shop: Shop) -> None:
    anna, boris = people(shop)
    reply = link(api, shop, anna["member_id"], key=shop.partner["api_key"])
    assert reply.status == 201, reply.body
    assert reply.body["url"].startswith("https://srf.test/w/")
    assert reply.body["expires_at"] == "2026-01-13T10:00:00Z"  # 24 h after the clock (Boris's order)
    path = reply.body["url"].removeprefix("https://srf.test")
    page = api.get(path + "?lang=en", key=None, headers={"Accept": "text/html"})
    assert page.status == 200 and page.headers["content-type"].startswith("text/html")
    body = page.body
    assert 'data-field="available">500<' in body  # Boris's first order: 500 to Anna
    assert 'data-field="pending">0<' in body and 'data-field="owed">0<' in body
    assert anna["code"][:4] in body.replace("-", "") and "/r/" in body
    assert "<li>B***: made a purchase" in body and "Boris" not in body  # the friend, masked
    assert "+500" in body and "<svg" in body and "Telegram" in body
    assert "/u/" in body  # the e-mail opt-out
    # History reasons in neutral words: the friend is "your friend", never their member id.
    assert "+500</b> Your friend&#x27;s purchase" in body and boris["member_id"] not in body
    ru = api.get(path + "?lang=ru", key=None, headers={"Accept": "text/html"}).body
    assert "Ваш кошелёк" in ru and "сделал покупку" in ru
    assert "Покупка вашего друга" in ru and boris["member_id"] not in ru


@pytest.mark.parametrize("change", ["flip", "other_member", "expired", "garbage"])
def test_a_tampered_or_expired_link_is_refused(api: ApiClient, shop: Shop, change: str) -> None:
    anna, boris = people(shop)
    token = link(api, shop, anna["member_id"]).body["url"].rsplit("/", 1)[1]
    if change == "flip":
        payload, mac = token.split(".")
        token = f"{payload}.{mac[:-1]}{'A' if mac[-1] != 'A' else 'B'}"
    elif change == "other_member":
        # Anna's MAC on a payload naming Boris (same expiry): the MAC no longer matches.
        payload, mac = token.split(".")
        data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        data[1] = boris["member_id"]
        token = base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode().rstrip("=") + "." + mac
        assert token != wallet.make_token(shop.pid, boris["member_id"], CLOCK.now() + timedelta(hours=24))
    elif change == "expired":
        CLOCK.set(CLOCK.now() + timedelta(hours=24, seconds=1))
    else:
        token = "not-a-token"
    reply = api.get(f"/w/{token}", key=None)
    assert reply.status == 404 and reply.error_code == "invalid_token"
    page = api.get(f"/w/{token}", key=None, headers={"Accept": "text/html"})
    assert "invalid or has expired" in page.body and "data-field" not in page.body


def test_links_are_for_known_members_of_the_callers_program(api: ApiClient, shop: Shop) -> None:
    anna, _ = people(shop)
    assert link(api, shop, "mbr_nobody").status == 404
    other = api.create_partner(api.create_program(name="Other")["program_id"])
    assert link(api, shop, anna["member_id"], key=other["api_key"]).status == 404
    assert link(api, shop, anna["member_id"], ttl_hours=0).status == 422
    assert link(api, shop, anna["member_id"], ttl_hours=24 * 15).status == 422
    assert link(api, shop, anna["member_id"], ttl_hours=2).body["expires_at"] == "2026-01-12T12:00:00Z"


def test_notification_emails_link_to_the_members_wallet(api: ApiClient, shop: Shop,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib.notify import sources
    from tests.notify_support import ses_sent, stream_poller

    monkeypatch.setattr(sources, "MAX_PARALLEL", 1)
    people(shop)
    stream_poller().drain()
    mails = [m for m in ses_sent() if m.to == ["anna@example.com"]]
    assert mails, "Anna was told about her friend"
    import re

    url = re.findall(r"https://srf\.test/w/[^\s\"<]+", mails[-1].text)[0]
    assert url in mails[-1].html
    page = api.get(url.removeprefix("https://srf.test"), key=None, headers={"Accept": "text/html"})
    assert page.status == 200 and 'data-field="available">500<' in page.body


def test_the_member_requests_erasure_from_the_wallet_and_the_operator_confirms(api: ApiClient, shop: Shop) -> None:
    anna, boris = people(shop)
    path = link(api, shop, anna["member_id"]).body["url"].removeprefix("https://srf.test")
    token = path.rsplit("/", 1)[1]
    page = api.get(path + "?lang=en", key=None, headers={"Accept": "text/html"}).body
    assert f'<form method="post" action="{token}/erasure-request?lang=en">' in page
    assert "Request erasure of my data" in page
    # The form's POST (a browser: no body, form content type) records the request and says so.
    done = api.call("POST", f"/w/{token}/erasure-request?lang=ru", key=None, raw="",
                    headers={"Accept": "text/html", "Content-Type": "application/x-www-form-urlencoded"})
    assert done.status == 200 and "Запрос принят" in done.body and f"../{token}?lang=ru" in done.body
    again = api.post(f"/w/{token}/erasure-request", None, key=None)  # an API client: JSON; idempotent
    assert again.status == 200 and again.body["status"] == "requested"
    page = api.get(path + "?lang=en", key=None, headers={"Accept": "text/html"}).body
    assert "You asked for your data to be erased on 2026-01-12" in page and "<form" not in page
    # The operator's queue lists it (a partner may not see it); confirming runs the existing erasure.
    queue = api.get(f"/v1/programs/{shop.pid}/erasure-requests")
    assert queue.status == 200, queue.body
    [request] = queue.body["items"]
    assert (request["member_id"], request["status"], request["requested_by"]) == (anna["member_id"], "requested",
                                                                                 "member")
    assert api.get(f"/v1/programs/{shop.pid}/erasure-requests", key=shop.partner["api_key"]).status == 403
    erased = api.post(f"/v1/programs/{shop.pid}/members/{anna['member_id']}/erase")
    assert erased.status == 200 and erased.body["status"] == "erased", erased.body
    assert (erased.body["requested_by"], erased.body["confirmed_by"]) == ("member", "operator")
    assert api.get(f"/v1/programs/{shop.pid}/erasure-requests").body["items"] == []
    # The wallet of an erased member is gone; a request for another member needs that member's own link.
    assert api.get(path, key=None).status == 404
    assert api.post(f"/w/{token}/erasure-request", None, key=None).status == 404
    assert api.post(f"/w/{token[:-2]}xx/erasure-request", None, key=None).status == 404
    assert api.get(f"/v1/programs/{shop.pid}/members/{boris['member_id']}").status == 200
