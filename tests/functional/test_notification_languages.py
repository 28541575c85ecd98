"""Every message kind reaches moto's SES in Russian and in English, through the real path.

One scenario per language (a program whose ``default_locale`` is that language) produces every
kind from signed events, the holding job, a refund, a confirmed redemption, an offer voucher, a
tier promotion, the expiry job's warning, the birthday gift and the sleeping-member reminder; the stream is read as
Lambda would and delivered by the AWS notifier to moto's SES. The test is parametrised over
language × kind and reads, per kind, the delivery log (template, language, status, subject) and
the e-mail SES received (recipient, subject, language of the text). The scenario runs once per
language (module-scoped), so the 2 × 13 cases cost two scenarios.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.functional.test_ledger_support import Shop, utc
from tests.notify_support import SentEmail, ses_sent, stream_poller
from tests.support import CLOCK, ApiClient

TEMPLATES = Path(__file__).resolve().parents[2] / "chalicelib" / "notify" / "templates"
KINDS = sorted(p.stem for p in (TEMPLATES / "en").glob("*.txt"))
TIERS = {"metric": "points_earned", "period_months": 12, "levels": [
    {"id": "base", "threshold": 0, "names": {"ru": "Базовый", "en": "Base"}},
    {"id": "silver", "threshold": 1000, "names": {"ru": "Серебро", "en": "Silver"}}]}


def rules(cafe: str, offer_id: str) -> dict[str, Any]:
    return {"max_depth": 2, "hold_days": 7, "rules": [
        {"id": "cashback", "name": "10%", "trigger": {"event": "order.paid"}, "recipient": {"type": "self"},
         "amount": {"rate_bp": 1000}},
        {"id": "bring", "name": "Bring a friend", "trigger": {"event": "order.paid", "order": "first"},
         "recipient": {"type": "referrer", "level": 1}, "amount": {"points": 500}},
        {"id": "welcome", "name": "Welcome", "trigger": {"event": "order.paid", "order": "first"},
         "recipient": {"type": "friend"}, "amount": {"points": 300}},
        {"id": "level-2", "name": "Friend of a friend", "trigger": {"event": "order.paid", "order": "first"},
         "recipient": {"type": "referrer", "level": 2}, "amount": {"points": 100}},
        {"id": "coffee", "name": "Coffee for big shoppers", "trigger": {"event": "order.paid"},
         "recipient": {"type": "self"},
         "amount": {"min_order_amount": 500_000,
                    "offer": {"partner_id": cafe, "offer_id": offer_id}}},
    ]}


#: Who must have received each kind (customer ids of the scenario).
EXPECTED: dict[str, set[str]] = {
    "friend_joined": {"masha", "olga"}, "friend_welcome": {"vera"}, "friend_purchase_rewarded": {"olga"},
    "upline_purchase": {"masha"}, "points_pending": {"ann"}, "points_available": {"ann"},
    "points_reversed": {"ann"}, "points_spent": {"ann"}, "voucher_issued": {"zoe"}, "tier_changed": {"tim"},
    "points_expiring": {"ann"}, "sleeping_reminder": {"ann"}, "birthday_gift": {"bea"},
}


def subject_pattern(kind: str, locale: str) -> re.Pattern[str]:
    """The template file's ``Subject:`` line with every ``$value`` as a wildcard and every word that agrees
    with the amount (``[[one|few|many]]``) as one of its forms."""
    first = (TEMPLATES / locale / f"{kind}.txt").read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("Subject: ")
    pattern = ""
    for token in re.split(r"(\$\{?\w+\}?|\[\[[^\]]*\]\])", first.removeprefix("Subject: ")):
        if token.startswith("$"):
            pattern += ".+?"
        elif token.startswith("[["):
            pattern += "(?:" + "|".join(re.escape(form) for form in token[2:-2].split("|")) + ")"
        else:
            pattern += re.escape(token)
    return re.compile(pattern)


class World:
    def __init__(self, api: ApiClient, locale: str) -> None:
        from chalicelib.notify import delivery, preview, sources

        self.locale = locale
        delivery.BACKOFF_SECONDS = 0.0
        sources.MAX_PARALLEL = 1  # moto's in-process DynamoDB is not thread-safe
        sources.use_delivery(None)
        preview.clear()
        CLOCK.set(utc("2026-01-15T12:00:00Z"))
        shop = Shop(api, None, partners=2, default_locale=locale, settings={
            "tiers": TIERS, "expiry_months": 1, "notifications": {"sleeping_reminder_days": 30},
            "birthday_gift": {"points": 200}})
        self.shop = shop
        _shops, cafe = shop.partners
        offer = api.post(f"/v1/programs/{shop.pid}/partners/{cafe['partner_id']}/offers",
                         {"name": "Free coffee", "kind": "free_item", "item": "Cappuccino", "code_source": "pool",
                          "valid_days": 30})
        assert offer.status == 201, offer.body
        codes = api.post(f"/v1/programs/{shop.pid}/partners/{cafe['partner_id']}/offers/{offer.body['offer_id']}"
                         "/codes", {"codes": ["CAFE-1", "CAFE-2"]})
        assert codes.status == 200, codes.body
        reply = api.put(f"/v1/programs/{shop.pid}/rules", rules(cafe["partner_id"], offer.body["offer_id"]))
        assert reply.status == 200, reply.body
        poller = stream_poller()
        self.ids: dict[str, str] = {}
        masha = shop.member("masha")
        olga = shop.member("olga", masha["code"])  # friend_joined → Masha
        shop.member("vera", olga["code"])  # friend_joined → Olga
        ann = shop.member("ann")
        shop.send({"type": "member.signup", "occurred_at": "2026-01-15T10:00:00Z",
                   "object": {"type": "customer", "id": "bea"},
                   "customer": {"id": "bea", "email": "bea@example.com", "birthday": "1990-02-20"}})
        poller.drain()
        # Vera's first order: welcome (+ cashback, merged) to her, friend_purchase_rewarded to Olga,
        # upline_purchase to Masha. Ann's: points_pending. Zoe's: a voucher. Tim's: silver tier.
        shop.order("vera", "v-1", 300_000)
        shop.order("ann", "a-1", 100_000)
        shop.order("zoe", "z-1", 600_000)
        shop.order("tim", "t-1", 1_500_000)
        poller.drain()
        released = utc("2026-01-23T12:00:00Z")
        CLOCK.set(released)
        shop.release(released)  # points_available
        poller.drain()
        shop.refund("a-1", 50_000, at="2026-01-23T13:00:00Z")  # points_reversed
        poller.drain()
        spent = shop.redeem(ann["member_id"], 20, "k-1", order_id="A-1", order_amount=100_000)
        assert spent.status == 201, spent.body
        confirm = api.post(f"/v1/programs/{shop.pid}/members/{ann['member_id']}/redemptions/"
                           f"{spent.body['redemption_id']}/confirm", key=shop.partner["api_key"])
        assert confirm.status == 200, confirm.body  # points_spent
        poller.drain()
        from chalicelib.jobs import expiry
        from chalicelib.notify import sweep

        warn_at = utc("2026-02-16T12:00:00Z")  # Ann's points (available 01-23) expire within 14 days
        CLOCK.set(warn_at)
        assert expiry.run(warn_at)["warned"] >= 1
        poller.drain()
        from chalicelib.jobs import birthdays

        birthday = utc("2026-02-20T00:30:00Z")
        CLOCK.set(birthday)
        assert birthdays.run(birthday)["granted"] == 1  # birthday_gift → Bea
        poller.drain()
        remind_at = utc("2026-02-22T09:00:00Z")  # 30 days after Ann's last activity
        CLOCK.set(remind_at)
        assert sweep.run_reminders(remind_at)["reminders"] >= 1
        poller.drain()
        self.sent = ses_sent()
        self.logs: dict[str, list[dict[str, Any]]] = {}
        for customer in ("masha", "olga", "vera", "ann", "zoe", "tim", "bea"):
            found = api.get(f"/v1/programs/{shop.pid}/members/lookup?email={customer}@example.com")
            assert found.status == 200, found.body
            log = api.get(f"/v1/programs/{shop.pid}/members/{found.body['member_id']}/notifications?limit=50")
            assert log.status == 200, log.body
            self.logs[customer] = log.body["items"]

    def received(self, customer: str, subject: str) -> list[SentEmail]:
        return [m for m in self.sent if m.to == [f"{customer}@example.com"] and m.subject == subject]


@pytest.fixture(scope="module", params=["ru", "en"])
def world(request: pytest.FixtureRequest) -> Iterator[World]:
    from tests.conftest import fresh_api

    with fresh_api() as api:
        try:
            yield World(api, request.param)
        finally:
            CLOCK.set(None)
            from chalicelib.notify import sources

            sources.use_delivery(None)


def test_every_template_kind_is_in_the_scenario() -> None:
    assert set(KINDS) == set(EXPECTED), set(KINDS) ^ set(EXPECTED)
    assert sorted(p.stem for p in (TEMPLATES / "ru").glob("*.txt")) == KINDS


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_reaches_ses_in_the_programs_language(world: World, kind: str) -> None:
    pattern = subject_pattern(kind, world.locale)
    for customer in EXPECTED[kind]:
        entries = [e for e in world.logs[customer] if e["template"] == kind]
        assert entries, (customer, [(e["template"], e["status"], e["last_error"]) for e in world.logs[customer]])
        for entry in entries:
            assert entry["status"] == "sent" and entry["locale"] == world.locale, entry
            assert pattern.fullmatch(entry["subject"]), (entry["subject"], pattern.pattern)
            [mail] = world.received(customer, entry["subject"])
            assert mail.language == world.locale, (mail.subject, mail.text[:200])
            assert mail.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
            assert "/r/" in mail.text  # the member's referral link in the footer
    if kind == "points_pending":  # the date is written the language's way
        [pending] = [m for m in world.sent if m.to == ["ann@example.com"] and pattern.fullmatch(m.subject)]
        assert ("22.01.2026" if world.locale == "ru" else "22 Jan 2026") in pending.text
