"""Outbound calls to CRMs' REST APIs (the asynchronous fetch): short timeouts, bounded retries, allowed hosts only.

Standard library only (``urllib``): the Lambda runtime has it, and these are a handful of GET/POST
calls with a bearer token. A call goes only to a host the platform documents (``api.hubapi.com``,
the partner's ``*.amocrm.ru`` / ``*.kommo.com`` / ``*.bitrix24.*`` portal); tests and the local demo
point every platform at a fake CRM with ``SARAFAN_CRM_FAKE_BASE_URL`` (refused in ``prod``).
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

TIMEOUT_SECONDS = 3.0
ATTEMPTS = 3
BACKOFF_SECONDS = 0.2
MAX_RESPONSE_BYTES = 512 * 1024

ALLOWED_HOSTS: dict[str, re.Pattern[str]] = {
    "hubspot": re.compile(r"^api\.hubapi\.com$"),
    "amocrm": re.compile(r"^[a-z0-9-]{1,63}\.(amocrm\.(ru|com)|kommo\.com)$"),
    "bitrix24": re.compile(r"^[a-z0-9][a-z0-9-]{0,62}\.bitrix24\.(ru|com|by|kz|ua|de|eu|es|fr|it|pl|br|in|cn|jp|tr)$"),
}


class PermanentFailure(Exception):
    """The CRM refused for good (bad token, unknown object): retrying will not help."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class TransientFailure(Exception):
    """Timeouts, 429 and 5xx after the retries: the message is retried by the queue (then the DLQ)."""


@dataclass(frozen=True)
class Target:
    platform: str
    url: str
    headers: dict[str, str]


def _fake_base() -> str | None:
    base = os.environ.get("SARAFAN_CRM_FAKE_BASE_URL") or None
    if base and os.environ.get("SARAFAN_STAGE") == "prod":
        raise PermanentFailure("fake_crm_in_prod", "SARAFAN_CRM_FAKE_BASE_URL is not allowed in prod")
    return base.rstrip("/") if base else None


def resolve(platform: str, url: str) -> str:
    """The URL to call: on an allowed host, or rewritten onto the fake CRM in tests/demo."""
    parts = urlsplit(url)
    fake = _fake_base()
    if fake:
        return fake + "/" + platform + parts.path + (f"?{parts.query}" if parts.query else "")
    host = (parts.hostname or "").lower()
    pattern = ALLOWED_HOSTS.get(platform)
    if parts.scheme != "https" or pattern is None or not pattern.match(host) or parts.port not in (None, 443):
        raise PermanentFailure("host_not_allowed", f"{host or 'the host'} is not a documented {platform} API host")
    return urlunsplit(parts)


def get_json(target: Target, *, method: str = "GET", body: Any = None) -> Any:
    url = resolve(target.platform, target.url)
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Accept": "application/json", **target.headers}
    if data is not None:
        headers["Content-Type"] = "application/json"
    last: Exception | None = None
    for attempt in range(ATTEMPTS):
        if attempt:
            time.sleep(BACKOFF_SECONDS * (2 ** (attempt - 1)))
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
                raw = response.read(MAX_RESPONSE_BYTES + 1)
            if len(raw) > MAX_RESPONSE_BYTES:
                raise PermanentFailure("response_too_large", "the CRM answered more than 512 KB")
            return json.loads(raw.decode("utf-8")) if raw.strip() else None
        except urllib.error.HTTPError as exc:
            if exc.code in (401, 403):
                raise PermanentFailure("crm_auth_failed", f"the CRM refused the API token (HTTP {exc.code})") from None
            if exc.code == 404:
                raise PermanentFailure("crm_not_found", "the CRM does not know the object (HTTP 404)") from None
            if exc.code == 429 or exc.code >= 500:
                last = exc
                continue
            raise PermanentFailure("crm_error", f"the CRM answered HTTP {exc.code}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            last = exc
            continue
        except (UnicodeDecodeError, ValueError):
            raise PermanentFailure("crm_bad_response", "the CRM answered something that is not JSON") from None
    raise TransientFailure(f"the CRM did not answer after {ATTEMPTS} attempts: {type(last).__name__}")
