"""A fake CRM for the local run's demo: ``python3 infra/dev.py run --fake-crm``.

The asynchronous CRM fetch (``chalicelib.services.crm_fetch``) asks HubSpot, Bitrix24 and amoCRM
for what their webhooks leave out. With ``SARAFAN_CRM_FAKE_BASE_URL`` pointing here, every such
call (``crm_http.resolve`` rewrites ``https://<host>/<path>`` to ``<fake>/<platform>/<path>``) is
answered from the recorded API responses in ``tests/fixtures/platforms`` — the platforms'
documented answers, each fixture naming its documentation — with the requested id put in:

* HubSpot CRM v3: ``/hubspot/crm/v3/objects/deals/{id}`` and ``…/contacts/{id}``
  (``crm_v3_responses.json``: a 1500.00 USD won deal whose contact carries ``sarafan_ref``);
* Bitrix24 REST: ``/bitrix24/…/crm.deal.get.json?id=`` and ``crm.contact.get.json?id=``
  (``crm_rest_responses.json``: a 120000.00 RUB won deal of contact 1207);
* amoCRM API v4: ``/amocrm/api/v4/leads/{id}`` and ``/amocrm/api/v4/contacts/{id}``
  (``api_v4_responses.json``: a 7000 lead in status 142 whose main contact has an e-mail and phone).

Any token is accepted except one containing ``revoked``, which gets the platform's 401 (to see
the integration log fill). Anything else is a 404. Local only: the app refuses the fake in ``prod``.
"""

from __future__ import annotations

import copy
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "platforms"


def _recorded(platform: str, name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / platform / name).read_text(encoding="utf-8"))
    return data["body"]  # type: ignore[no-any-return]


def _hubspot(kind: str, object_id: str) -> dict[str, Any]:
    body = copy.deepcopy(_recorded("hubspot", "crm_v3_responses.json")[kind])
    body["id"] = object_id
    body.setdefault("properties", {})["hs_object_id"] = object_id
    return body  # type: ignore[no-any-return]


def _bitrix24(kind: str, object_id: str) -> dict[str, Any]:
    body = copy.deepcopy(_recorded("bitrix24", "crm_rest_responses.json")[kind])
    body["result"]["ID"] = object_id
    return body  # type: ignore[no-any-return]


def _amocrm(kind: str, object_id: str) -> dict[str, Any]:
    body = copy.deepcopy(_recorded("amocrm", "api_v4_responses.json")[kind])
    body["id"] = int(object_id) if object_id.isdigit() else object_id
    return body  # type: ignore[no-any-return]


ROUTES: list[tuple[re.Pattern[str], Any]] = [
    (re.compile(r"^/hubspot/crm/v3/objects/deals/([0-9A-Za-z_-]{1,64})$"), lambda m, q: _hubspot("deal", m[1])),
    (re.compile(r"^/hubspot/crm/v3/objects/contacts/([0-9A-Za-z_-]{1,64})$"),
     lambda m, q: _hubspot("contact", m[1])),
    (re.compile(r"^/bitrix24/.*crm\.deal\.get\.json$"), lambda m, q: _bitrix24("deal", q)),
    (re.compile(r"^/bitrix24/.*crm\.contact\.get\.json$"), lambda m, q: _bitrix24("contact", q)),
    (re.compile(r"^/amocrm/api/v4/leads/([0-9]{1,20})$"), lambda m, q: _amocrm("lead", m[1])),
    (re.compile(r"^/amocrm/api/v4/contacts/([0-9]{1,20})$"), lambda m, q: _amocrm("contact", m[1])),
]


def answer(path: str, authorization: str | None) -> tuple[int, Any]:
    """``(status, JSON body)`` for one GET (``path`` with its query string)."""
    parts = urlsplit(path)
    if authorization and "revoked" in authorization:
        return 401, {"status": "error", "message": "Authentication credentials not found"}
    object_id = (parse_qs(parts.query).get("id") or [""])[0]
    for pattern, build in ROUTES:
        match = pattern.match(parts.path)
        if match is None:
            continue
        if parts.path.startswith("/bitrix24/"):
            if "revoked" in parts.path:  # Bitrix24's token is in the inbound webhook URL
                return 401, {"error": "invalid_token", "error_description": "Unable to authorize user"}
            if not object_id.isdigit():
                return 400, {"error": "", "error_description": "ID is not defined or invalid."}
        return 200, build(match, object_id)
    return 404, {"status": "error", "message": "not found"}


class FakeCrm:
    """The server on a loopback port (``0``: a free one); ``calls`` lists the paths asked."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.calls: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fake.calls.append(self.path)
                status, body = answer(self.path, self.headers.get("Authorization"))
                raw = json.dumps(body, ensure_ascii=False).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, name="fake-crm", daemon=True)
        self.base_url = f"http://{host}:{self.server.server_port}"

    def start(self) -> FakeCrm:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
