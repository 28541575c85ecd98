"""Templates: every kind in ru and en renders, values are escaped in HTML, kinds are picked right."""

from __future__ import annotations

import pytest

from chalicelib.notify import kinds
from chalicelib.notify.render import KINDS, LOCALES, render

VALUES = {"program": "Кофейня", "points_unit": "баллы", "points": 1490, "balance": 2500, "level": 2,
          "available_at": "2026-01-22T10:00:00.000000Z", "name": "Olga"}


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_renders_in_both_languages(kind: str, locale: str) -> None:
    out = render(kind, locale, VALUES, link="https://srf.test/r/ABC", unsubscribe_url="https://srf.test/u/t")
    assert out.subject and out.short and "$" not in out.subject + out.short + out.text
    cyrillic = any("\u0400" <= c <= "\u04ff" for c in out.text.replace("Кофейня", "").replace("баллы", ""))
    assert cyrillic == (locale == "ru")
    assert "https://srf.test/r/ABC" in out.text and 'href="https://srf.test/u/t"' in out.html
    assert f'<html lang="{locale}">' in out.html


def test_a_member_name_with_markup_is_text_in_html() -> None:
    out = render("points_available", "en", {**VALUES, "name": "<script>alert(1)</script>"})
    assert "<script>" not in out.html and "&lt;script&gt;alert(1)&lt;/script&gt;" in out.html
    assert "<script>alert(1)</script>" in out.text  # plain text stays as typed


def test_numbers_and_dates_follow_the_language() -> None:
    assert "1\u00a0490" in render("points_pending", "ru", VALUES).subject
    assert "22.01.2026" in render("points_pending", "ru", VALUES).text
    assert "1,490" in render("points_pending", "en", VALUES).subject
    assert "22 Jan 2026" in render("points_pending", "en", VALUES).text


@pytest.mark.parametrize(("params", "expected"), [
    ({"levels": [0], "reason_codes": ["self_reward", "friend_reward"]}, "friend_welcome"),
    ({"levels": [2], "reason_codes": ["referral_reward"]}, "upline_purchase"),
    ({"levels": [1], "event_type": "order.paid"}, "friend_purchase_rewarded"),
    ({"levels": [1], "event_type": "member.signup"}, "friend_joined"),
    ({"levels": [0], "pending_points": 5}, "points_pending"),
    ({"levels": [0], "pending_points": 0}, "points_available"),
])
def test_kind_of_an_earned_message(params: dict[str, object], expected: str) -> None:
    assert kinds.kind_of("points_earned", params) == expected


def test_merged_parts_of_one_event_make_one_message() -> None:
    out = render("friend_welcome", "en", VALUES, extra_parts=[("points_reversed", {**VALUES, "points": 10})])
    assert out.text.count("Also from this event:") == 1 and "10 баллы" in out.text


@pytest.mark.parametrize(("unit", "points", "expected"), [
    ("баллы", 50, "50 баллов"), ("баллы", 500, "+500 баллов"), ("баллы", 21, "21 балл"), ("баллы", 3, "3 балла"),
    ("points", 12, "12 баллов"), ("Баллы", 1, "1 балл"),
])
def test_russian_point_units_agree_with_the_number(unit: str, points: int, expected: str) -> None:
    """The demo program calls its points «баллы»: «50 баллов доступны», never «50 баллы»."""
    kind = "friend_purchase_rewarded" if expected.startswith("+") else "points_available"
    out = render(kind, "ru", {**VALUES, "points_unit": unit, "points": points})
    assert expected in out.subject + out.text


def test_a_custom_unit_is_shown_as_the_program_wrote_it() -> None:
    assert "50 звёзды" in render("points_available", "ru", {**VALUES, "points_unit": "звёзды", "points": 50}).subject
    assert "1 point " in render("points_available", "en", {**VALUES, "points_unit": "points", "points": 1}).subject + " "
    assert "5 points" in render("points_available", "en", {**VALUES, "points_unit": "points", "points": 5}).subject


@pytest.mark.parametrize(("points", "counted", "verb"), [
    (1, "1 балл", "списан"), (21, "21 балл", "списан"), (2, "2 балла", "списаны"),
    (11, "11 баллов", "списаны"), (45, "45 баллов", "списаны"),
])
def test_russian_words_around_the_number_agree_with_it(points: int, counted: str, verb: str) -> None:
    out = render("points_reversed", "ru", {"points": points, "points_unit": "points", "program": "Кофе"})
    assert out.subject == f"{counted} {verb} после возврата"
    assert f"поэтому {counted} в программе «Кофе» {verb}." in out.text


@pytest.mark.parametrize(("points", "subject", "body"), [
    (1, "1 point is ready to spend", "1 point at Coffee is now available: you can pay with it."),
    (3, "3 points are ready to spend", "3 points at Coffee are now available: you can pay with them."),
])
def test_english_words_around_the_number_agree_with_it(points: int, subject: str, body: str) -> None:
    out = render("points_available", "en", {"points": points, "points_unit": "points", "program": "Coffee"})
    assert out.subject == subject
    assert body in out.text


@pytest.mark.parametrize(("kind", "locale"), [(k, loc) for k in KINDS for loc in LOCALES])
@pytest.mark.parametrize("points", [1, 2, 5])
def test_no_agreement_marker_is_left_in_any_message(kind: str, locale: str, points: int) -> None:
    out = render(kind, locale, {"points": points, "balance": points, "points_unit": "points", "program": "P"})
    for part in (out.subject, out.short, out.text, out.html):
        assert "[[" not in part and "]]" not in part


def test_agreement_markers_in_a_value_are_shown_as_written() -> None:
    out = render("points_reversed", "ru", {"points": 1, "points_unit": "points", "program": "[[a|b|c]]",
                                           "name": "[[x|y]]"})
    assert "«[[a|b|c]]» списан." in out.text and "[[x|y]]" in out.text
