"""``/r/{code}``: where a short link sends the visitor, counting the click (not link-preview fetches)."""

from __future__ import annotations

import os
import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from chalicelib.domain import urls
from chalicelib.domain.codes import normalize_code
from chalicelib.domain.errors import NotFound
from chalicelib.logs import get_logger
from chalicelib.services import ports

log = get_logger("sarafan.landing")

#: Last resort for ``/r/{code}`` when neither the program nor ``SARAFAN_DEFAULT_LANDING_URL`` says where to go.
FALLBACK_LANDING_URL = "https://example.com/"
UTM_PARAMS = ("utm_source", "utm_medium", "utm_campaign", "utm_content", "utm_term")
_SOURCE_RE = re.compile(r"[^a-z0-9._\-]+")
#: Messengers fetch a shared link to draw its preview; those fetches are not clicks.
_PREVIEW_BOT_RE = re.compile(
    r"TelegramBot|WhatsApp|facebookexternalhit|Facebot|vkShare|Slackbot|Twitterbot|Discordbot|"
    r"LinkedInBot|Viber|SkypeUriPreview|YandexBot|Googlebot|bingbot", re.IGNORECASE)


def default_landing_url() -> str:
    return urls.to_header_url(os.environ.get("SARAFAN_DEFAULT_LANDING_URL", "").strip()) or FALLBACK_LANDING_URL


def _utm_source(value: str | None) -> str:
    cleaned = _SOURCE_RE.sub("_", (value or "").strip().lower())[:64].strip("_")
    return cleaned or "-"


def with_params(url: str, params: dict[str, str]) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in params]
    query += list(params.items())
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))


def is_preview_bot(user_agent: str | None) -> bool:
    return bool(user_agent and _PREVIEW_BOT_RE.search(user_agent))

def redirect_target(raw_code: str, query: dict[str, str], user_agent: str | None = None,
                    deps: ports.Ports | None = None) -> str:
    """Where ``/r/{code}`` sends the visitor; counts the click (not link-preview fetches).
    Never raises for a bad code."""
    deps = deps or ports.current()
    code = normalize_code(raw_code)
    if code is None:
        return default_landing_url()
    link = deps.members.short_link(code)
    if link is None:
        return default_landing_url()
    try:
        program = deps.programs.get(link.program_id)
    except NotFound:
        return default_landing_url()
    # Stored URLs are normalised on the way in; older ones are normalised here (or skipped).
    landing = urls.to_header_url(program.landing_url) or default_landing_url()
    partner_id = (query.get("p") or "").strip()
    if partner_id and len(partner_id) <= 64:
        try:
            partner = deps.programs.partner(program.program_id, partner_id)
        except NotFound:
            partner = None
        if partner is not None and urls.to_header_url(partner.landing_url):
            landing = urls.to_header_url(partner.landing_url) or landing
    utm = {k: query[k][:256] for k in UTM_PARAMS if query.get(k)}
    try:
        if not is_preview_bot(user_agent):
            deps.members.count_click(program.program_id, link.code, deps.clock.now().strftime("%Y-%m-%d"),
                                     _utm_source(utm.get("utm_source")))
    except Exception:  # a lost click must not cost the visitor the redirect
        log.exception("click not counted", extra={"program_id": program.program_id})
    return with_params(landing, {"ref": link.code, **utm})
