"""Member-facing wording (domain.l10n): both languages, money as integers, the ledger's English unchanged."""

from __future__ import annotations

import pytest

from chalicelib.domain import l10n


def test_every_table_covers_every_locale_with_the_same_keys() -> None:
    for table in l10n.TABLES:
        assert set(table) == set(l10n.SUPPORTED_LOCALES)
        keys = {frozenset(entries) for entries in table.values()}
        assert len(keys) == 1, table


@pytest.mark.parametrize(("minor", "currency", "en", "ru"), [
    (12_345, "RUB", "123.45 RUB", "123,45 RUB"),
    (12_345, "JPY", "12345 JPY", "12345 JPY"),
    (12_345, "KWD", "12.345 KWD", "12,345 KWD"),
    (5, "EUR", "0.05 EUR", "0,05 EUR"),
])
def test_money_in_both_locales(minor: int, currency: str, en: str, ru: str) -> None:
    assert l10n.format_money(minor, currency, "en") == en
    assert l10n.format_money(minor, currency, "ru") == ru


def test_rates_ordinals_and_russian_plurals() -> None:
    assert [l10n.format_rate(x) for x in (500, 250, 1)] == ["5%", "2.5%", "0.01%"]
    assert l10n.format_rate(250, "ru") == "2,5 %"
    assert [l10n.ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 112)] == [
        "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "112th"]
    assert [l10n.points(n, "ru") for n in (1, 2, 5, 11, 21, 22, 112)] == [
        "1 балл", "2 балла", "5 баллов", "11 баллов", "21 балл", "22 балла", "112 баллов"]


def test_reward_reason_in_english_and_russian() -> None:
    how = l10n.HowComputed(rate_bp=500, base="subtotal_minus_discount", base_minor=80_000, currency="RUB")
    args = dict(recipient="referrer", level=2, subject_id="m1", points_granted=30, points_requested=40,
                rule_name="Upline bonus", how=how, trims=["cap_monthly"])
    en = l10n.reward_reason("en", what=l10n.event_phrase("order.paid", "en", order_position=3), **args)  # type: ignore[arg-type]
    assert en == ("30 points for your level-2 referral m1's 3rd order (Upline bonus): 5% of the order subtotal "
                  "minus discount 800.00 RUB. Reduced from 40 by the monthly cap.")
    ru = l10n.reward_reason("ru", what=l10n.event_phrase("order.paid", "ru", order_position=1), **args)  # type: ignore[arg-type]
    assert ru.startswith("30 баллов за первый заказ вашего друга 2-го уровня m1 (Upline bonus): 5 %")
    assert "800,00 RUB" in ru and "месячный лимит" in ru


def test_unknown_locale_falls_back_to_english() -> None:
    assert l10n.resolve_locale("de-DE") == "en"
    assert l10n.resolve_locale(None) == l10n.DEFAULT_LOCALE
    assert l10n.event_phrase("custom.visit", "de") == "'visit' event"
    assert l10n.reversal_reason("ru", taken=3, of_points=10, rule_id="r", share_percent=None).startswith("Списано 3")


@pytest.mark.parametrize(("facts", "en", "ru"), [
    ({"kind": "reward", "reason_code": "referral_reward", "level": 1, "event_type": "order.paid", "points": 500},
     "Your friend's purchase", "Покупка вашего друга"),
    ({"kind": "reward", "reason_code": "referral_reward", "level": 1, "event_type": "member.signup", "points": 50},
     "A friend joined", "Друг присоединился"),
    ({"kind": "reward", "reason_code": "referral_reward", "level": 2, "event_type": "order.paid", "points": 100},
     "A purchase in your network (level 2)", "Покупка в вашей сети (2-й уровень)"),
    ({"kind": "reward", "reason_code": "self_reward", "level": 0, "event_type": "order.paid", "points": 50},
     "Your purchase", "Ваша покупка"),
    ({"kind": "reward", "reason_code": "friend_reward", "level": 0, "event_type": "order.paid", "points": 300},
     "Welcome bonus", "Приветственный бонус"),
    ({"kind": "reward", "reason_code": "birthday_gift", "level": None, "event_type": None, "points": 200},
     "Birthday gift", "Подарок на день рождения"),
    ({"kind": "reversal", "reason_code": "refund", "level": 1, "event_type": "order.refunded", "points": -500},
     "Points taken back: an order was refunded", "Баллы списаны: заказ возвращён"),
    ({"kind": "redemption", "reason_code": "redemption", "level": None, "event_type": None, "points": -100},
     "Paid with points", "Оплата баллами"),
    ({"kind": "something_new", "reason_code": None, "level": None, "event_type": None, "points": -1},
     "Points debited", "Списание баллов"),
])
def test_history_reasons_name_nobody(facts: dict[str, object], en: str, ru: str) -> None:
    assert l10n.history_reason("en", **facts) == en  # type: ignore[arg-type]
    assert l10n.history_reason("ru", **facts) == ru  # type: ignore[arg-type]


def test_a_manual_adjustment_keeps_the_operators_reason_for_the_member() -> None:
    assert l10n.history_reason("ru", kind="adjustment", reason_code="manual_adjustment", level=None, event_type=None,
                               points=-150, reason="Order 100235 was credited twice") == "Order 100235 was credited twice"


def test_tier_multiplier_and_voucher_wording_in_both_locales() -> None:
    assert [l10n.multiplier_factor(bp) for bp in (15_000, 10_000, 12_550, 5_000)] == ["1.5", "1", "1.255", "0.5"]
    assert l10n.tier_multiplier_phrase("en", tier="gold", multiplier_bp=15_000) == " Tier gold: x1.5."
    assert l10n.tier_multiplier_phrase("ru", tier="gold", multiplier_bp=12_500) == " Уровень gold: x1,25."
    what = l10n.event_phrase("order.paid", "en", order_position=1)
    assert (l10n.voucher_reason("en", rule_name="Welcome", offer_id="o1", partner_id="p1", what=what)
            == "Welcome: offer o1 of partner p1 (first order)")
    ru = l10n.voucher_reason("ru", rule_name="Welcome", offer_id="o1", partner_id="p1",
                             what=l10n.event_phrase("order.paid", "ru", order_position=1))
    assert ru == "Welcome: предложение o1 партнёра p1 (за первый заказ)"
