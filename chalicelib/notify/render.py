"""Rendering notifications from the template files in ``chalicelib/notify/templates/``.

One file per kind and language, ``templates/<ru|en>/<kind>.txt``::

    Subject: +$points $points_unit on their way      <- e-mail subject, push title
    Short: +$points $points_unit at $program ...     <- SMS and push body

    Hello $name,                                      <- e-mail body (plain text; paragraphs
    ...                                                  become <p> in templates/layout.html)

Placeholders are ``string.Template`` ``$names`` (standard library: no template engine to
import at cold start; bench/cold_start.py prints what Jinja2 would cost). Every value is
escaped with ``html.escape`` before it goes into HTML, and the template text itself is
escaped too, so a member called ``<script>`` is shown as text. A placeholder a template
does not know stays as it is (``safe_substitute``) instead of failing a delivery.

Words that must agree with the amount are written ``[[one|other]]`` (en) or ``[[one|few|many]]``
(ru): ``$points $points_unit [[списан|списаны|списаны]]`` renders «1 балл списан», «2 балла
списаны», «5 баллов списаны».
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from string import Template
from typing import Any

TEMPLATES = Path(__file__).resolve().parent / "templates"
LOCALES = ("ru", "en")
KINDS = (
    "points_pending", "points_available", "points_reversed", "points_spent", "friend_joined",
    "friend_purchase_rewarded", "upline_purchase", "friend_welcome", "sleeping_reminder", "voucher_issued",
    "points_expiring", "tier_changed", "birthday_gift",
)
_MONTHS_EN = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


class TemplateMissing(Exception):
    pass


@dataclass(frozen=True)
class Rendered:
    kind: str
    locale: str
    subject: str
    short: str
    text: str
    html: str


@dataclass(frozen=True)
class _Source:
    subject: str
    short: str
    body: str


@lru_cache(maxsize=64)
def _source(locale: str, kind: str) -> _Source:
    path = TEMPLATES / locale / f"{kind}.txt"
    if kind not in KINDS or locale not in LOCALES or not path.is_file():
        raise TemplateMissing(f"no template {locale}/{kind}")
    head, _, body = path.read_text(encoding="utf-8").partition("\n\n")
    fields = {}
    for line in head.splitlines():
        name, _, value = line.partition(":")
        fields[name.strip().lower()] = value.strip()
    return _Source(fields.get("subject", ""), fields.get("short", ""), body.strip())


@lru_cache(maxsize=1)
def _layout() -> Template:
    return Template((TEMPLATES / "layout.html").read_text(encoding="utf-8"))


@lru_cache(maxsize=1)
def strings() -> dict[str, dict[str, str]]:
    data: dict[str, dict[str, str]] = json.loads((TEMPLATES / "strings.json").read_text(encoding="utf-8"))
    return data


def format_number(value: int, locale: str) -> str:
    text = f"{int(value):,}"
    return text.replace(",", "\u00a0") if locale == "ru" else text


def format_date(value: str | datetime | None, locale: str) -> str:
    if not value:
        return ""
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if locale == "ru":
        return moment.strftime("%d.%m.%Y")
    return f"{moment.day} {_MONTHS_EN[moment.month - 1]} {moment.year}"


#: ``[[one|other]]`` (en) or ``[[one|few|many]]`` (ru) in a template: the word that agrees with the
#: message's amount (``$points``, else ``$balance``): «1 балл списан», «2 балла списаны», "1 point is".
_AGREEING = re.compile(r"\[\[([^\[\]|]*(?:\|[^\[\]|]*){1,2})\]\]")
#: The amount the agreeing words follow, kept beside the text values (not a placeholder any template uses).
_COUNT = "_count"


def _agree(forms: list[str], n: int | None) -> str:
    from chalicelib.domain.l10n import plural_ru

    if n is None:
        return forms[-1]
    if len(forms) == 3:
        return plural_ru(n, *forms)
    return forms[0] if abs(n) == 1 else forms[-1]


def _fill(template: str, values: dict[str, str]) -> str:
    if "[[" in template:
        # In the template's own text, before the values go in: a member or program named "[[a|b]]" stays as written.
        raw = values.get(_COUNT)
        n = int(raw) if raw is not None and raw.lstrip("-").isdigit() else None
        template = _AGREEING.sub(lambda match: _agree(match.group(1).split("|"), n), template)
    return Template(template).safe_substitute(values)


def _paragraphs_html(text: str) -> str:
    return "\n".join(f"<p>{html.escape(p).replace(chr(10), '<br>')}</p>" for p in text.split("\n\n") if p.strip())


def render(kind: str, locale: str, values: dict[str, Any], *, extra_parts: Sequence[tuple[str, dict[str, Any]]] = (),
           link: str = "", unsubscribe_url: str = "", offer: str = "", wallet_url: str = "") -> Rendered:
    """Render ``kind`` in ``locale`` (falls back to ``en`` for an unknown locale).

    ``extra_parts`` are other messages of the same event for the same member, appended as
    paragraphs (several outbox messages from one event become one e-mail).
    """
    locale = locale if locale in LOCALES else "en"
    source = _source(locale, kind)
    words = strings()[locale]
    text_values = _text_values(values, locale)
    text_values.setdefault("name", words["friend"])
    if kind == "voucher_issued":
        for name in ("offer_name", "code", "value", "valid_until"):
            text_values.setdefault(name, "—")
    if kind == "points_expiring":
        text_values["expires_on"] = format_date(values.get("expires_on"), locale) or "—"
    if kind == "birthday_gift":
        # Points and/or a voucher: each line only when the gift has it.
        text_values["points_line"] = _fill(words["birthday_points_line"], text_values) if values.get("points") else ""
        text_values["voucher_line"] = _fill(words["birthday_voucher_line"], text_values) if values.get("code") else ""
        text_values["gift_short"] = " · ".join(
            part for part in (_fill(words["birthday_points_short"], text_values) if values.get("points") else "",
                              _fill(words["birthday_voucher_short"], text_values) if values.get("code") else "")
            if part)
    if kind == "tier_changed":
        for name in ("to_name", "from_name"):
            names = values.get(f"{name}s")
            localised = names.get(locale) if isinstance(names, dict) else None
            text_values[name] = str(localised or text_values.get(name) or "—")
        text_values["change_line"] = _fill(words["tier_down" if values.get("direction") == "down" else "tier_up"],
                                           text_values)
    if kind == "friend_joined":
        text_values["points_line"] = _fill(words["friend_points_line"], text_values) if values.get("points") else ""
    subject = _fill(source.subject, text_values)
    short = _fill(source.short, text_values)
    body = _fill(source.body, text_values)
    for extra_kind, extra_values in extra_parts:
        extra = _source(locale, extra_kind)
        extra_text = _text_values(extra_values, locale)
        extra_text.setdefault("name", text_values["name"])
        body += f"\n\n{words['merged_more']} {_fill(extra.short, extra_text)}"
    footer = f"{words['footer_invite']} {link}" if link else ""
    text = body + (f"\n\n--\n{footer}" if footer else "") + (f"\n{offer}" if offer else "")
    if wallet_url:
        text += f"\n{words['footer_wallet']}: {wallet_url}"
    if unsubscribe_url:
        text += f"\n{words['footer_unsubscribe']}: {unsubscribe_url}"
    wallet_html = (f'<a href="{html.escape(wallet_url, quote=True)}">{html.escape(words["footer_wallet"])}</a> · '
                   if wallet_url else "")
    page = _layout().safe_substitute(
        lang=locale, subject=html.escape(subject), program=html.escape(text_values.get("program", "")),
        body=_paragraphs_html(body), footer_invite=html.escape(words["footer_invite"]),
        link=html.escape(link, quote=True), offer_html=(f"<br>{html.escape(offer)}" if offer else ""),
        unsubscribe_url=html.escape(unsubscribe_url, quote=True),
        footer_unsubscribe=html.escape(words["footer_unsubscribe"]), wallet_html=wallet_html,
    )
    return Rendered(kind=kind, locale=locale, subject=subject, short=short, text=text, html=page)


#: Unit labels that are forms of "балл": a program that calls its points «баллы» gets them declined too.
_RU_POINT_FORMS = frozenset({"points", "балл", "балла", "баллов", "баллы"})


def _unit(unit: str, n: int, locale: str) -> str:
    """The program's points unit, agreeing with ``n``: the default "points" and any form of «балл» are
    declined in Russian (1 балл, 2 балла, 5 баллов); in English the default is "1 point", "2 points".
    Any other label (e.g. «звёзды», "miles") is shown as the program wrote it."""
    from chalicelib.domain.l10n import plural_ru

    if locale == "ru" and unit.strip().lower() in _RU_POINT_FORMS:
        return plural_ru(n, "балл", "балла", "баллов")
    if locale != "ru" and unit == "points" and abs(n) == 1:
        return "point"
    return unit


def _text_values(values: dict[str, Any], locale: str) -> dict[str, str]:
    out: dict[str, str] = {}
    amount = values.get("points") if values.get("points") else values.get("balance")
    if isinstance(values.get("points_unit"), str) and isinstance(amount, int):
        values = {**values, "points_unit": _unit(values["points_unit"], amount, locale)}
    if isinstance(amount, int):
        out[_COUNT] = str(amount)
    for name, value in values.items():
        if value is None:
            continue
        if name in ("points", "balance") and isinstance(value, int):
            out[name] = format_number(value, locale)
        elif name == "available_at":
            out[name] = format_date(value, locale)
        else:
            out[name] = str(value)
    return out
