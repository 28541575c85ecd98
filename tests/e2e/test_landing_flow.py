"""The landing flow over real HTTP on the local run (moto server + Chalice local server).

Olga gets an invite link from a landing page; her friend follows it, the shop's landing
page keeps ``ref``, the shop sends a signed ``member.signup`` with that code and then
``order.paid``: the friend ends attributed to Olga with the reason recorded.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from chalicelib.domain.webhook_signature import sign
from infra.local_run import DEMO_RULES
from tests.e2e.test_local_run import Running, running, start  # noqa: F401  (the local-run fixtures)

pytestmark = pytest.mark.e2e
ORIGIN = "https://shop.test"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def http(base_url: str, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
         raw: bytes | None = None) -> tuple[int, dict[str, str], Any]:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(base_url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json", **(headers or {})})
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(request, timeout=10) as reply:
            status, reply_headers, payload = reply.status, dict(reply.headers), reply.read()
    except urllib.error.HTTPError as err:
        status, reply_headers, payload = err.code, dict(err.headers), err.read()
    lowered = {k.lower(): v for k, v in reply_headers.items()}
    try:
        parsed = json.loads(payload) if payload else None
    except ValueError:
        parsed = payload.decode("utf-8", "replace")
    return status, lowered, parsed


def test_landing_flow_ends_with_the_friend_attributed(running: Running) -> None:  # noqa: F811
    base, operator = running.info["base_url"], {"Authorization": f"Bearer {running.info['operator_key']}"}

    status, _, program = http(base, "POST", "/v1/programs", headers=operator, body={
        "name": "Landing e2e", "landing_url": "https://shop.test/welcome", "allowed_origins": [ORIGIN],
        "settings": {"offer": {"friend_reward": {"ru": "скидку 500 ₽", "en": "500 RUB off"}}}})
    assert status == 201, program
    pid, pub = program["program_id"], program["publishable_key"]
    status, _, partner = http(base, "POST", f"/v1/programs/{pid}/partners", headers=operator, body={"name": "Shop"})
    assert status == 201, partner
    status, _, rules = http(base, "PUT", f"/v1/programs/{pid}/rules", headers=operator, body=DEMO_RULES)
    assert status == 200, rules

    # 1. Olga asks the landing page for her link (browser: preflight, then the call).
    status, preflight, _ = http(base, "OPTIONS", "/v1/landing/invites", headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,x-publishable-key"})
    assert status in (200, 204) and preflight.get("access-control-allow-origin") == ORIGIN
    status, headers, olga = http(base, "POST", "/v1/landing/invites", headers={
        "X-Publishable-Key": pub, "Origin": ORIGIN}, body={"email": "olga@example.com", "name": "Olga Petrova"})
    assert status == 200, olga
    assert headers["access-control-allow-origin"] == ORIGIN
    code = olga["code"]
    assert olga["link"].endswith(f"/r/{code}") and olga["qr_svg"].startswith("<svg")
    assert "500 RUB off" in olga["share_texts"]["en"]

    # 2. The friend follows the link: 302 to the shop with ref and UTM, click counted.
    status, headers, _ = http(base, "GET", f"/r/{code}?utm_source=telegram&utm_campaign=spring")
    assert status == 302
    location = urlsplit(headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == "https://shop.test/welcome"
    query = parse_qs(location.query)
    assert query == {"ref": [code], "utm_source": ["telegram"], "utm_campaign": ["spring"]}
    ref = query["ref"][0]

    # The landing page shows "Olga invites you".
    status, _, offer = http(base, "GET", f"/v1/landing/offer/{ref}", headers={"X-Publishable-Key": pub})
    assert (status, offer["referrer"]) == (200, {"first_name": "Olga"})

    # 3. The shop reports the signup with the code it kept from the URL, then the order.
    def send(event: dict[str, Any]) -> dict[str, Any]:
        raw = json.dumps(event).encode()
        msg_id, ts = f"msg_{event['object']['id']}", int(time.time())
        signature = sign(partner["webhook_secrets"]["events"], msg_id, ts, raw)
        status, _, reply = http(base, "POST", f"/v1/webhooks/{partner['partner_id']}/events", raw=raw, headers={
            "webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": signature})
        assert status == 200, reply
        return reply  # type: ignore[no-any-return]

    customer = {"id": "cust-42", "email": "friend@example.com", "name": "Ivan"}
    signed_up = send({"type": "member.signup", "occurred_at": _now(), "object": {"type": "customer", "id": "cust-42"},
                      "customer": customer, "referral": {"code": ref, "utm": {"source": "telegram"}}})
    assert signed_up["attribution"]["outcome"] == "credited"
    paid = send({"type": "order.paid", "occurred_at": _now(), "object": {"type": "order", "id": "order-1"},
                 "customer": {"id": "cust-42"}, "order": {"total": 250_000, "currency": "RUB"}})
    friend_id = paid["member"]["member_id"]
    assert friend_id == signed_up["member"]["member_id"]

    # 4. The member API shows the friend attributed to Olga, with the reason, and Olga's counts.
    key = {"Authorization": f"Bearer {partner['api_key']}"}
    status, _, friend = http(base, "GET", f"/v1/programs/{pid}/members/{friend_id}", headers=key)
    assert status == 200, friend
    status, _, olga_profile = http(base, "GET", f"/v1/programs/{pid}/members/lookup?code={code}", headers=key)
    assert status == 200, olga_profile
    assert friend["referrer_id"] == olga_profile["member_id"]
    assert friend["attribution"]["source"] == "ref_code" and friend["attribution"]["final"] is True
    assert olga_profile["counts"]["clicks"] == 1
    assert (olga_profile["counts"]["signups"], olga_profile["counts"]["purchasers"]) == (1, 1)
    status, _, records = http(base, "GET", f"/v1/programs/{pid}/members/{friend_id}/attributions", headers=key)
    assert status == 200
    assert [(r["outcome"], r["reason_code"], r["code"]) for r in records["items"]] == [("credited", "credited", code)]
    status, _, by_code = http(base, "GET", f"/v1/programs/{pid}/codes/{code}/attributions", headers=key)
    assert [r["member_id"] for r in by_code["items"]] == [friend_id]

    # 5. The rules paid both sides at once (no holding period in these rules): Olga 500,
    #    Ivan 300 welcome + 5 % cashback of 2 500 ₽ = 125.
    status, _, olga_balance = http(base, "GET", f"/v1/programs/{pid}/members/{olga_profile['member_id']}/balance",
                                   headers=key)
    assert status == 200, olga_balance
    assert (olga_balance["available"], olga_balance["pending"]) == (500, 0)
    status, _, ivan_balance = http(base, "GET", f"/v1/programs/{pid}/members/{friend_id}/balance", headers=key)
    assert (ivan_balance["available"], ivan_balance["pending"]) == (425, 0)

    # An unknown code still lands somewhere, never on an error page.
    status, headers, _ = http(base, "GET", "/r/NOPE-NOPE-NOP")
    assert status == 302 and headers["location"].startswith("http")


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
