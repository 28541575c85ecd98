"""Notifications end to end under moto: signed events → outbox → the stream handler → SES/SNS."""

from __future__ import annotations

from typing import Any

import pytest

from chalicelib.domain import clock
from chalicelib.store import keys
from chalicelib.store.members import MemberItem
from tests.functional.test_ledger_support import Shop, utc
from tests.notify_support import ses_sent, sms_sent, stream_poller
from tests.support import ApiClient

NOW = "2026-01-15T12:00:00Z"
RULES: dict[str, Any] = {
    "max_depth": 2,
    "hold_days": 0,
    "rules": [
        {"id": "cashback", "name": "5% cashback", "trigger": {"event": "order.paid"},
         "recipient": {"type": "self"}, "amount": {"rate_bp": 500, "max_points": 5000}},
        {"id": "bring-a-friend", "name": "Bring a friend", "trigger": {"event": "order.paid", "order": "first"},
         "recipient": {"type": "referrer", "level": 1}, "amount": {"points": 500}},
        {"id": "friend-welcome", "name": "Welcome bonus", "trigger": {"event": "order.paid", "order": "first"},
         "recipient": {"type": "friend"}, "amount": {"points": 300}},
        {"id": "level-2", "name": "Friend of a friend", "trigger": {"event": "order.paid", "order": "first"},
         "recipient": {"type": "referrer", "level": 2}, "amount": {"points": 100}},
    ],
}


@pytest.fixture(autouse=True)
def no_backoff(api: ApiClient, monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib.notify import delivery, preview, sources

    monkeypatch.setattr(delivery, "BACKOFF_SECONDS", 0.0)
    sources.use_delivery(None)
    preview.clear()
    clock.freeze(utc(NOW))


def set_locale(pid: str, member_id: str, locale: str, name: str | None = None) -> None:
    actions = [MemberItem.locale.set(locale)]
    if name is not None:
        actions.append(MemberItem.name.set(name))
    MemberItem(*keys.member(pid, member_id)).update(actions=actions)


def chain(shop: Shop) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    masha = shop.member("masha")
    olga = shop.member("olga", masha["code"])
    vera = shop.member("vera", olga["code"])
    return masha, olga, vera


def by_recipient() -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for sent in ses_sent():
        out.setdefault(sent.to[0], []).append(sent)
    return out


def test_two_level_chain_order_notifies_buyer_referrer_and_level_two_in_their_languages(api: ApiClient) -> None:
    shop = Shop(api, RULES, default_locale="ru")
    masha, olga, vera = chain(shop)
    set_locale(shop.pid, masha["member_id"], "en", "Masha Ivanova")
    poller = stream_poller()
    poller.drain()
    joined = by_recipient()
    # Signups through a link: the referrer hears "friend joined" (Masha in English, Olga in Russian).
    assert [m.subject for m in joined["masha@example.com"]] == ["Your friend joined Test program"] or \
        joined["masha@example.com"][0].subject.startswith("Your friend joined")
    assert joined["olga@example.com"][0].subject.startswith("Ваш друг присоединился")
    before = len(ses_sent())
    shop.order("vera", "o-1", 300_000)
    poller.drain()
    new = ses_sent()[before:]
    got = {m.to[0]: m for m in new}
    assert set(got) == {"vera@example.com", "olga@example.com", "masha@example.com"}
    # Vera: cashback + welcome bonus from one event = one message (friend's welcome leads).
    assert got["vera@example.com"].subject == "Добро пожаловать: +450 баллов" or "Добро пожаловать" in got["vera@example.com"].subject
    assert got["olga@example.com"].subject.startswith("Ваш друг сделал покупку: +500")
    assert got["masha@example.com"].subject == "Your friend's friend bought: +100 points"
    assert got["masha@example.com"].language == "en" and got["olga@example.com"].language == "ru"
    assert "Masha" in got["masha@example.com"].text
    # RFC 8058 headers and the referral link in the footer.
    mail = got["masha@example.com"]
    assert mail.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert mail.headers["List-Unsubscribe"].startswith("<https://srf.test/u/")
    assert "https://srf.test/r/" in mail.text and "https://srf.test/r/" in mail.html
    # Delivering the same batch again sends nothing new.
    poller2 = stream_poller()
    poller2.drain()
    assert len(ses_sent()) == before + 3
