"""Mapping helpers shared by the adapters: timestamps, ref codes from URLs, money."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from chalicelib.adapters import money
from chalicelib.adapters.base import malformed

UTM_KEYS = ("source", "medium", "campaign", "content", "term")


def timestamp(value: Any, fallback: datetime | None = None, what: str = "timestamp") -> str:
    """A platform timestamp (ISO 8601 with offset, ``Z``, epoch seconds/milliseconds) as RFC 3339 UTC."""
    parsed: datetime | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        seconds = value / 1000 if value > 10**11 else value
        try:
            parsed = datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError):
            parsed = None
    elif isinstance(value, str) and value.strip():
        text = value.strip()
        if text.isdigit():
            return timestamp(int(text), fallback, what)
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace(" ", "T", 1))
        except ValueError:
            parsed = None
        if parsed is not None and parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)  # platforms' "_gmt" fields are UTC without an offset
    if parsed is None or not 2000 <= parsed.year <= 2200:
        if fallback is None:
            raise malformed(f"{what} is missing or not a timestamp")
        parsed = fallback
    return parsed.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def amount(value: Any, currency: str, what: str, *, required: bool = True) -> int | None:
    minor = money.to_minor(value, currency)
    if minor is None and required:
        raise malformed(f"{what} is not a decimal amount")
    return minor


def currency_code(value: Any, what: str = "currency") -> str:
    if not isinstance(value, str) or len(value.strip()) != 3 or not value.strip().isalpha():
        raise malformed(f"{what} is not an ISO 4217 code")
    return value.strip().upper()


def query_of(url: Any) -> dict[str, list[str]]:
    if not isinstance(url, str) or len(url) > 4096:
        return {}
    try:
        return parse_qs(urlsplit(url).query)
    except ValueError:
        return {}


def referral_from_url(url: Any, code_param: str = "ref") -> dict[str, Any]:
    """``code`` and ``utm`` from a landing URL (``/?ref=ANNA-7K2Q&utm_source=vk``)."""
    params = query_of(url)
    out: dict[str, Any] = {}
    values = params.get(code_param) or []
    code = values[0] if values else None
    if code and len(code) <= 64:
        out["code"] = code
    utm = {k: params[f"utm_{k}"][0][:256] for k in UTM_KEYS if params.get(f"utm_{k}")}
    if utm:
        out["utm"] = utm
    return out


def absolute_url(url: Any, host: str | None) -> str | None:
    """A landing URL as ``https://…`` (Shopify sends a path), if one can be made."""
    if not isinstance(url, str) or not url.strip() or len(url) > 2000:
        return None
    url = url.strip()
    if url.startswith(("http://", "https://")):
        return url if " " not in url else None
    if url.startswith("/") and host:
        return f"https://{host}{url}" if " " not in url else None
    return None


def first_text(*values: Any, limit: int = 256) -> str | None:
    from chalicelib.adapters.base import text

    for value in values:
        out = text(value, limit)
        if out is not None:
            return out
    return None
