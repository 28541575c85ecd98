"""Share texts and QR codes for a member's referral link.

Texts exist in Russian and English. Reward phrases come from the program's offer and
are inserted verbatim, so in Russian they must fit "Получите ___" (accusative case):
``"скидку 500 ₽"``, ``"10 % в FitLab"``. An offer value may be one string for all
locales or a ``{"ru": ..., "en": ...}`` mapping.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping
from typing import Final
from urllib.parse import quote, urlencode

from chalicelib.domain.l10n import DEFAULT_LOCALE, SUPPORTED_LOCALES, resolve_locale

MAX_REWARD_LENGTH: Final = 200
MAX_URL_LENGTH: Final = 2048

OfferValue = str | Mapping[str, str]

# (friend reward?, partner reward?) -> template. Russian: "партнёра" with ё, and a
# non-committal "Присоединяйтесь" when there is no reward to mention.
_TEMPLATES: Final[dict[str, dict[tuple[bool, bool], str]]] = {
    "en": {
        (True, True): "Get {friend} from us + {partner} from our partner: {link}",
        (True, False): "Get {friend} from us: {link}",
        (False, True): "Get {partner} from our partner: {link}",
        (False, False): "Join me here: {link}",
    },
    "ru": {
        (True, True): "Получите {friend} от нас + {partner} от нашего партнёра: {link}",
        (True, False): "Получите {friend} от нас: {link}",
        (False, True): "Получите {partner} от нашего партнёра: {link}",
        (False, False): "Присоединяйтесь по моей ссылке: {link}",
    },
}

_WS_RE: Final = re.compile(r"\s+")


def _check_link(link: str) -> str:
    link = link.strip()
    if not link.startswith(("https://", "http://")) or len(link) > MAX_URL_LENGTH or _WS_RE.search(link):
        raise ValueError("share link must be an absolute http(s) URL without spaces")
    return link


def _reward(offer: Mapping[str, OfferValue], key: str, locale: str) -> str | None:
    value = offer.get(key)
    if isinstance(value, Mapping):
        # Fall back to the other language rather than dropping the reward entirely.
        value = value.get(locale) or next((v for v in value.values() if v), None)
    if not isinstance(value, str):
        return None
    # Collapse whitespace/newlines: the text goes into one-line messenger previews.
    text = _WS_RE.sub(" ", value).strip()
    if len(text) > MAX_REWARD_LENGTH:
        raise ValueError(f"offer {key} is longer than {MAX_REWARD_LENGTH} characters")
    return text or None


def share_text(offer: Mapping[str, OfferValue], link: str, locale: str | None = DEFAULT_LOCALE) -> str:
    """One share message, e.g. ``Get 500 ₽ off from us + 10 % at FitLab from our partner: <link>``.

    ``offer`` keys: ``friend_reward`` (what the friend gets from the program owner) and
    ``partner_reward`` (what a coalition partner adds); either may be absent.
    """
    lang = resolve_locale(locale)
    friend = _reward(offer, "friend_reward", lang)
    partner = _reward(offer, "partner_reward", lang)
    template = _TEMPLATES[lang][(friend is not None, partner is not None)]
    return template.format(friend=friend, partner=partner, link=_check_link(link))


def share_texts(offer: Mapping[str, OfferValue], link: str) -> dict[str, str]:
    """``share_text`` for every supported locale: ``{"ru": ..., "en": ...}``."""
    return {lang: share_text(offer, link, lang) for lang in SUPPORTED_LOCALES}


def share_links(text: str, link: str) -> dict[str, str]:
    """Ready-made "share to" URLs for messengers popular with our users.

    Telegram and VK take the link separately (they render a preview), WhatsApp takes
    a single text that already contains the link.
    """
    link = _check_link(link)
    text_without_link = text.replace(link, "").rstrip(" :")
    return {
        "telegram": "https://t.me/share/url?" + urlencode({"url": link, "text": text_without_link}, quote_via=quote),
        "whatsapp": "https://wa.me/?" + urlencode({"text": text}, quote_via=quote),
        "vk": "https://vk.com/share.php?" + urlencode({"url": link, "title": text_without_link}, quote_via=quote),
    }


def qr_svg(url: str, *, dark: str = "#000", light: str | None = "#fff", border: int = 4) -> str:
    """QR code of ``url`` as an inline SVG string.

    No XML declaration (safe to embed in HTML or return as ``image/svg+xml``), no fixed
    width/height (only a ``viewBox``), so it scales crisply to any size with CSS.
    Error correction "M" (15 %) survives a logo sticker or a scuffed print; the quiet
    zone (``border``) of 4 modules is what scanners expect.
    """
    import segno  # imported on use: only the QR endpoint pays for it at cold start

    url = _check_link(url)
    try:
        qr = segno.make(url, error="m", micro=False, boost_error=False)
    except segno.DataOverflowError as exc:
        raise ValueError("URL is too long for a QR code") from exc
    buffer = io.BytesIO()
    qr.save(
        buffer,
        kind="svg",
        xmldecl=False,
        svgns=True,
        omitsize=True,
        nl=False,
        border=border,
        dark=dark,
        light=light,
        title="QR code",
    )
    svg = buffer.getvalue().decode("utf-8")
    # Square modules without anti-aliasing seams when scaled by browsers.
    return svg.replace("<svg ", '<svg shape-rendering="crispEdges" ', 1)
