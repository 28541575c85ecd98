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
