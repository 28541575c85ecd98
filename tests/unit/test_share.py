from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from urllib.parse import parse_qs, urlsplit

import pytest

from chalicelib.domain.share import qr_svg, resolve_locale, share_links, share_text, share_texts

LINK = "https://sarafan.example/r/ABCDEFGHJKM"
OFFER = {"friend_reward": "500 ₽ off", "partner_reward": "10 % at FitLab"}
OFFER_BILINGUAL = {
    "friend_reward": {"ru": "скидку 500 ₽", "en": "500 ₽ off"},
    "partner_reward": {"ru": "10 % в FitLab", "en": "10 % at FitLab"},
}


def test_english_example_from_the_spec() -> None:
    assert share_text(OFFER, LINK, "en") == f"Get 500 ₽ off from us + 10 % at FitLab from our partner: {LINK}"


def test_russian_text() -> None:
    assert share_text(OFFER_BILINGUAL, LINK, "ru") == (
        f"Получите скидку 500 ₽ от нас + 10 % в FitLab от нашего партнёра: {LINK}"
    )


@pytest.mark.parametrize(
    ("offer", "locale", "expected"),
    [
        ({"friend_reward": "скидку 500 ₽"}, "ru", f"Получите скидку 500 ₽ от нас: {LINK}"),
        ({"partner_reward": "10 % в FitLab"}, "ru", f"Получите 10 % в FitLab от нашего партнёра: {LINK}"),
        ({}, "ru", f"Присоединяйтесь по моей ссылке: {LINK}"),
        ({"friend_reward": "500 ₽ off"}, "en", f"Get 500 ₽ off from us: {LINK}"),
        ({"partner_reward": "10 % at FitLab"}, "en", f"Get 10 % at FitLab from our partner: {LINK}"),
        ({"friend_reward": "  ", "partner_reward": None}, "en", f"Join me here: {LINK}"),
    ],
)
def test_partial_offers(offer: dict[str, str], locale: str, expected: str) -> None:
    assert share_text(offer, LINK, locale) == expected


def test_missing_translation_falls_back_to_other_language() -> None:
    offer = {"friend_reward": {"en": "500 ₽ off"}}
    assert share_text(offer, LINK, "ru") == f"Получите 500 ₽ off от нас: {LINK}"


def test_whitespace_in_rewards_is_collapsed() -> None:
    offer = {"friend_reward": " 500 ₽\n off "}
    assert share_text(offer, LINK, "en") == f"Get 500 ₽ off from us: {LINK}"


def test_share_texts_all_locales() -> None:
    texts = share_texts(OFFER_BILINGUAL, LINK)
    assert set(texts) == {"ru", "en"}
    assert texts["en"].startswith("Get 500 ₽ off")
    assert "партнёра" in texts["ru"]


@pytest.mark.parametrize(
    ("locale", "expected"),
    [
        ("ru", "ru"),
        ("ru-RU", "ru"),
        ("ru_RU", "ru"),
        ("EN", "en"),
        ("en-GB", "en"),
        ("de", "en"),
        (None, "ru"),
        ("", "ru"),
    ],
)
def test_resolve_locale(locale: str | None, expected: str) -> None:
    assert resolve_locale(locale) == expected


@pytest.mark.parametrize("link", ["", "sarafan.example/r/X", "javascript:alert(1)", "https://x.example/a b"])
def test_bad_links_refused(link: str) -> None:
    with pytest.raises(ValueError):
        share_text(OFFER, link, "en")


def test_overlong_reward_refused() -> None:
    with pytest.raises(ValueError):
        share_text({"friend_reward": "x" * 201}, LINK, "en")


def test_share_links() -> None:
    text = share_text(OFFER_BILINGUAL, LINK, "ru")
    links = share_links(text, LINK)
    tg = parse_qs(urlsplit(links["telegram"]).query)
    assert tg["url"] == [LINK]
    assert tg["text"] == ["Получите скидку 500 ₽ от нас + 10 % в FitLab от нашего партнёра"]
    assert parse_qs(urlsplit(links["whatsapp"]).query)["text"] == [text]
    assert parse_qs(urlsplit(links["vk"]).query)["url"] == [LINK]
    assert all(" " not in url for url in links.values())


def test_qr_svg_is_embeddable_and_scalable() -> None:
    svg = qr_svg(LINK)
    assert svg.startswith("<svg ")
    assert "<?xml" not in svg
    root = ET.fromstring(svg)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert "width" not in root.attrib and "height" not in root.attrib
    assert re.fullmatch(r"0 0 (\d+) \1", root.attrib["viewBox"])
    assert root.attrib["shape-rendering"] == "crispEdges"


def test_qr_svg_encodes_the_url() -> None:
    import segno

    # Same input, same symbol: compare against segno's own matrix for the URL.
    expected = segno.make(LINK, error="m", micro=False, boost_error=False)
    size = expected.symbol_size(border=4)[0]
    assert f'viewBox="0 0 {size} {size}"' in qr_svg(LINK)


def test_qr_svg_rejects_non_urls_and_overflow() -> None:
    with pytest.raises(ValueError):
        qr_svg("not a url")
    with pytest.raises(ValueError):
        qr_svg("https://x.example/" + "a" * 2100)
