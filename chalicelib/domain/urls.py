"""URLs as Sarafan stores and sends them: absolute http(s), ASCII only, normalised.

A landing URL ends up in a ``Location`` header, which must be ASCII (a raw
``https://магазин.рф/…`` there makes servers drop the connection). So URLs are
normalised when they come in -- the host to IDNA punycode (``xn--80aj2abdcii.xn--p1ai``),
the path, query and fragment percent-encoded as UTF-8, existing ``%xx`` escapes kept --
and, because an older version may have stored a raw one, again when they go out
(:func:`to_header_url`).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Final
from urllib.parse import quote, urlsplit, urlunsplit

from chalicelib.domain.errors import ValidationFailed, field_error

MAX_URL_LENGTH: Final = 2048
#: JSON Schema ``pattern`` for an http(s) URL without whitespace or control characters.
HTTP_URL: Final = "^[Hh][Tt][Tt][Pp][Ss]?://[^\x00-\x20\x7f-\x9f\u2028\u2029]+$"

_BAD_CHARS: Final = re.compile("[\x00-\x20\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_LABEL: Final = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
# RFC 3986 characters kept as they are (``%`` too, so existing escapes survive).
_PATH_SAFE: Final = "/%:@!$&'()*+,;=-._~"
_QUERY_SAFE: Final = _PATH_SAFE + "?"


class InvalidUrl(ValueError):
    pass


def _host_to_ascii(host: str) -> str:
    host = host.rstrip(".").lower()
    if not host:
        raise InvalidUrl("has no host")
    if ":" in host:  # an IPv6 literal (urlsplit drops its brackets)
        try:
            return f"[{ipaddress.IPv6Address(host).compressed}]"
        except ValueError:
            raise InvalidUrl("has an invalid host") from None
    try:
        # Python's "idna" codec (IDNA 2003) is stdlib: fine for real shop domains.
        ascii_host = host.encode("idna").decode("ascii")
    except UnicodeError:
        raise InvalidUrl("has an invalid host") from None
    if len(ascii_host) > 253 or not all(_LABEL.match(label) for label in ascii_host.split(".")):
        raise InvalidUrl("has an invalid host")
    return ascii_host


def normalize(value: str) -> str:
    """The stored form of an absolute http(s) URL; raises :class:`InvalidUrl` with a reason."""
    text = value.strip()
    if _BAD_CHARS.search(text):
        raise InvalidUrl("must not contain spaces or control characters")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise InvalidUrl("is not a valid URL") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise InvalidUrl("must start with http:// or https://")
    if parts.username is not None or parts.password is not None:
        raise InvalidUrl("must not contain a user name or password")
    host = _host_to_ascii(parts.hostname or "")
    netloc = host if port is None else f"{host}:{port}"
    result = urlunsplit((
        scheme,
        netloc,
        quote(parts.path, safe=_PATH_SAFE),
        quote(parts.query, safe=_QUERY_SAFE),
        quote(parts.fragment, safe=_QUERY_SAFE),
    ))
    if len(result) > MAX_URL_LENGTH:
        raise InvalidUrl(f"is longer than {MAX_URL_LENGTH} characters once encoded")
    return result


def normalize_field(value: str | None, path: str) -> str | None:
    """:func:`normalize` for a request field: ``None`` stays ``None``, problems are a 422 naming ``path``."""
    if value is None:
        return None
    try:
        return normalize(value)
    except InvalidUrl as exc:
        raise ValidationFailed("Request body is invalid", details={"errors": [field_error(path, str(exc))]}) from None


def to_header_url(value: str | None) -> str | None:
    """A URL safe for a ``Location`` header, or ``None`` if it cannot be made one (never raises)."""
    if not value:
        return None
    try:
        return normalize(value)
    except InvalidUrl:
        return None
