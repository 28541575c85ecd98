"""Canonical event intake through the real route: signatures, input errors, dedupe, attribution reasons.

Every attribution reason code the pipeline can produce is reached here through signed
events (and, for invites, the landing endpoint), and read back through the member API.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from itertools import count
from typing import Any

import pytest

from chalicelib.domain.webhook_signature import sign
from tests.support import CLOCK, ApiClient, Reply

_ids = count(1)


# --------------------------------------------------------------------------- helpers


def headers_for(secrets: list[str], raw: str | bytes, msg_id: str | None = None, ts: int | None = None) -> dict[str, str]:
    body = raw.encode() if isinstance(raw, str) else raw
    msg_id = msg_id or f"msg_w{next(_ids)}"
    ts = int(CLOCK.now().timestamp()) if ts is None else ts
    return {"webhook-id": msg_id, "webhook-timestamp": str(ts),
            "webhook-signature": " ".join(sign(s, msg_id, ts, body) for s in secrets)}


def post(api: ApiClient, partner_id: str, raw: str | bytes, headers: dict[str, str]) -> Reply:
    return api.post(f"/v1/webhooks/{partner_id}/events", raw=raw, key=None, headers=headers)


def send(api: ApiClient, partner: dict[str, Any], event: dict[str, Any], secret: str | None = None) -> Reply:
    raw = json.dumps(event)
    return post(api, partner["partner_id"], raw, headers_for([secret or partner["webhook_secrets"]["events"]], raw))


def processed(api: ApiClient, partner: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
    reply = send(api, partner, event)
    assert reply.status == 200, reply.body
    return reply.body  # type: ignore[no-any-return]


def signup(customer: dict[str, Any], code: str | None = None, at: str = "2026-11-20T10:00:00Z",
           object_id: str | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {"type": "member.signup", "occurred_at": at,
                             "object": {"type": "customer", "id": object_id or f"s{next(_ids)}"},
                             "customer": customer}
    if code:
        event["referral"] = {"code": code}
    return event


def order(customer: dict[str, Any], code: str | None = None, at: str = "2026-11-21T10:00:00Z") -> dict[str, Any]:
    event: dict[str, Any] = {"type": "order.paid", "occurred_at": at,
                             "object": {"type": "order", "id": f"o{next(_ids)}"}, "customer": customer,
                             "order": {"total": 150_000, "currency": "RUB"}}
    if code:
        event["referral"] = {"code": code}
    return event


@pytest.fixture
def shop(api: ApiClient) -> tuple[dict[str, Any], dict[str, Any]]:
    program = api.create_program(landing_url="https://shop.test/",
                                 settings={"landing_rate_limits": {"invites_per_minute": 1000}})
    return program, api.create_partner(program["program_id"])




# --------------------------------------------------------------------------- signatures


def test_a_valid_signature_is_processed(api: ApiClient, shop: tuple) -> None:
    _, partner = shop
    body = processed(api, partner, signup({"email": "anna@example.com"}))
    assert body["status"] == "processed" and body["member"]["created"] is True


def test_several_signatures_one_valid(api: ApiClient, shop: tuple) -> None:
    _, partner = shop
    raw = json.dumps(signup({"email": "anna@example.com"}))
    wrong = "whsec_" + base64.b64encode(b"x" * 32).decode()
    headers = headers_for([wrong, partner["webhook_secrets"]["events"], wrong], raw)
    assert post(api, partner["partner_id"], raw, headers).status == 200


def test_tampered_body_is_refused(api: ApiClient, shop: tuple) -> None:
    _, partner = shop
    raw = json.dumps(order({"email": "anna@example.com"}))
    headers = headers_for([partner["webhook_secrets"]["events"]], raw)
    reply = post(api, partner["partner_id"], raw.replace("150000", "950000"), headers)
    assert (reply.status, reply.error_code) == (401, "signature_invalid")


def test_wrong_secret_is_refused(api: ApiClient, shop: tuple) -> None:
    program, partner = shop
    other = api.create_partner(program["program_id"], name="Other")
    reply = send(api, partner, signup({"email": "anna@example.com"}), secret=other["webhook_secrets"]["events"])
    assert (reply.status, reply.error_code) == (401, "signature_invalid")


@pytest.mark.parametrize("offset", [-301, 301, -86_400])
def test_stale_timestamp_is_refused(api: ApiClient, shop: tuple, offset: int) -> None:
    _, partner = shop
    raw = json.dumps(signup({"email": "anna@example.com"}))
    headers = headers_for([partner["webhook_secrets"]["events"]], raw, ts=int(CLOCK.now().timestamp()) + offset)
    reply = post(api, partner["partner_id"], raw, headers)
    assert (reply.status, reply.error_code) == (401, "signature_stale_timestamp")


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature", "all"])
def test_missing_headers_are_refused(api: ApiClient, shop: tuple, missing: str) -> None:
    _, partner = shop
    raw = json.dumps(signup({"email": "anna@example.com"}))
    headers = headers_for([partner["webhook_secrets"]["events"]], raw)
    headers = {} if missing == "all" else {k: v for k, v in headers.items() if k != missing}
    reply = post(api, partner["partner_id"], raw, headers)
    assert (reply.status, reply.error_code) == (401, "signature_missing_headers")


def test_rotated_secret_during_and_after_the_overlap(api: ApiClient, shop: tuple) -> None:
    program, partner = shop
    old = partner["webhook_secrets"]["events"]
    rotated = api.post(f"/v1/programs/{program['program_id']}/partners/{partner['partner_id']}"
                       "/webhook-secrets/events/rotate")
    assert rotated.status == 200, rotated.body
    new = rotated.body["secret"]
    # During the overlap both verify.
    assert send(api, partner, signup({"email": "a1@example.com"}), secret=old).status == 200
    assert send(api, partner, signup({"email": "a2@example.com"}), secret=new).status == 200
    # After it only the new one (the overlap is 24 h; the signed timestamp stays fresh).
    CLOCK.set(CLOCK.now() + timedelta(hours=25))
    refused = send(api, partner, signup({"email": "a3@example.com"}), secret=old)
    assert (refused.status, refused.error_code) == (401, "signature_invalid")
    assert send(api, partner, signup({"email": "a4@example.com"}), secret=new).status == 200


# --------------------------------------------------------------------------- input errors


def test_malformed_body_is_400(api: ApiClient, shop: tuple) -> None:
    _, partner = shop
    for raw in ("{not json", b"\xff\xfe", "[1, 2"):
        reply = post(api, partner["partner_id"], raw, headers_for([partner["webhook_secrets"]["events"]], raw))
        assert (reply.status, reply.error_code) == (400, "malformed_json"), raw


@pytest.mark.parametrize(("event", "paths"), [
    ({"type": "order.paid", "occurred_at": "2026-11-21T10:00:00Z", "object": {"type": "order", "id": "1"},
      "customer": {"email": "a@example.com"}}, ["$.order"]),
    ({"type": "order.paid", "occurred_at": "yesterday", "object": {"type": "order", "id": "1"},
      "customer": {"email": "a@example.com"}, "order": {"total": 1, "currency": "RUB"}}, ["$.occurred_at"]),
    ({"type": "member.signup", "occurred_at": "2026-11-21T10:00:00Z", "object": {"type": "customer", "id": "1"},
      "customer": {"email": "a@example.com", "nick": "x"}}, ["$.customer.nick"]),
    ({"type": "nope", "occurred_at": "2026-11-21T10:00:00Z", "object": {"type": "x", "id": "1"}}, ["$.type"]),
])
def test_schema_violation_is_422_with_paths(api: ApiClient, shop: tuple, event: dict, paths: list[str]) -> None:
    _, partner = shop
    reply = send(api, partner, event)
    assert (reply.status, reply.error_code) == (422, "validation_failed"), reply.body
    assert [e["path"] for e in reply.body["error"]["details"]["errors"]] == paths


@pytest.mark.parametrize(("customer", "path"), [
    ({"email": "not-an-email"}, "$.customer.email"),
    ({"email": "a@b"}, "$.customer.email"),
    ({"phone": "12345"}, "$.customer.phone"),
    ({"id": "c1", "phone": "+7 000 000 00 00"}, "$.customer.phone"),
])
def test_invalid_email_or_phone_is_422(api: ApiClient, shop: tuple, customer: dict, path: str) -> None:
    _, partner = shop
    reply = send(api, partner, signup(customer))
    assert (reply.status, reply.error_code) == (422, "validation_failed"), reply.body
    assert path in [e["path"] for e in reply.body["error"]["details"]["errors"]]


def test_unknown_partner_is_404(api: ApiClient, shop: tuple) -> None:
    _, partner = shop
    raw = json.dumps(signup({"email": "a@example.com"}))
    reply = post(api, "ptn_unknown", raw, headers_for([partner["webhook_secrets"]["events"]], raw))
    assert reply.status == 404


# --------------------------------------------------------------------------- dedupe under concurrency


def test_the_same_event_five_times_in_parallel_is_processed_once(api: ApiClient, shop: tuple,
                                                                concurrent_requests: None) -> None:
    program, partner = shop
    olga = processed(api, partner, signup({"email": "olga@example.com"}))["member"]
    raw = json.dumps(order({"id": "c-77", "email": "friend@example.com"}, code=olga["code"]))
    headers = headers_for([partner["webhook_secrets"]["events"]], raw)  # one delivery, retried 5 times
    barrier = threading.Barrier(5)

    def deliver(_: int) -> Reply:
        barrier.wait()
        return post(api, partner["partner_id"], raw, headers)

    with ThreadPoolExecutor(5) as pool:
        replies = list(pool.map(deliver, range(5)))
    assert [r.status for r in replies] == [200] * 5, [r.body for r in replies]
    statuses = sorted(r.body["status"] for r in replies)
    assert statuses == ["duplicate"] * 4 + ["processed"]
    assert len({r.body["member"]["member_id"] for r in replies}) == 1
    pid = program["program_id"]
    profile = api.get(f"/v1/programs/{pid}/members/{olga['member_id']}").body
    assert profile["counts"]["signups"] == 1 and profile["counts"]["purchasers"] == 1
    friend = replies[0].body["member"]["member_id"]
    assert len(api.get(f"/v1/programs/{pid}/members/{friend}/attributions").body["items"]) == 1
    from chalicelib.store.db import raw_client

    items = raw_client().scan(TableName="sarafan-test")["Items"]
    assert sum(1 for i in items if i["entity"]["S"] == "event") == 2  # olga's signup + this order
    assert sum(1 for i in items if i["entity"]["S"] == "member") == 2


# --------------------------------------------------------------------------- attribution reasons


class Reasons:
    """Olga (the referrer) with every identifier, plus helpers to read records back."""

    def __init__(self, api: ApiClient, model: str = "first_touch") -> None:
        self.api = api
        self.program = api.create_program(landing_url="https://shop.test/", settings={
            "attribution_model": model, "attribution_window_days": 30,
            "landing_rate_limits": {"invites_per_minute": 1000}})
        self.pid = self.program["program_id"]
        self.partner = api.create_partner(self.pid)
        olga = self.event(signup({"id": "c-olga", "email": "olga@example.com", "phone": "+79123456789"}))
        self.olga_id, self.olga = olga["member"]["member_id"], olga["member"]["code"]
        boris = self.event(signup({"id": "c-boris", "email": "boris@example.com"}))
        self.boris_id, self.boris = boris["member"]["member_id"], boris["member"]["code"]

    def event(self, event: dict[str, Any]) -> dict[str, Any]:
        return processed(self.api, self.partner, event)

    def records(self, member_id: str) -> list[tuple[str, str, str | None]]:
        reply = self.api.get(f"/v1/programs/{self.pid}/members/{member_id}/attributions")
        assert reply.status == 200, reply.body
        return [(r["outcome"], r["reason_code"], r["source"]) for r in reply.body["items"]]


@pytest.fixture
def reasons(api: ApiClient) -> Reasons:
    return Reasons(api)


def test_credited(reasons: Reasons) -> None:
    reply = reasons.event(signup({"email": "friend@example.com"}, code=reasons.olga))
    assert reply["attribution"]["outcome"] == "credited"
    assert reply["attribution"]["referrer_id"] == reasons.olga_id
    assert reasons.records(reply["member"]["member_id"]) == [("credited", "credited", "ref_code")]


def test_self_referral_same_member(reasons: Reasons) -> None:
    reply = reasons.event(signup({"id": "c-olga"}, code=reasons.olga))
    assert reply["attribution"]["reason_code"] == "self_referral_same_member"
    assert reasons.records(reasons.olga_id) == [("rejected", "self_referral_same_member", "ref_code")]


@pytest.mark.parametrize(("shared", "reason"), [
    ({"email": "OLGA@example.com"}, "self_referral_email"),
    ({"phone": "8 912 345 67 89"}, "self_referral_phone"),
])
def test_self_referral_by_shared_identifier(reasons: Reasons, shared: dict[str, str], reason: str) -> None:
    # A second account (its own customer id) that gives away Olga's e-mail or phone.
    second = reasons.event(signup({"id": "c-second"}))["member"]["member_id"]
    reply = reasons.event(signup({"id": "c-second", **shared}, code=reasons.olga))
    assert reply["member"]["member_id"] == second
    assert reply["attribution"]["reason_code"] == reason
    assert reasons.records(second) == [("rejected", reason, "ref_code")]


def test_self_referral_by_customer_id(reasons: Reasons) -> None:
    """A customer id names exactly one member and is the strongest identifier, so an event carrying
    the referrer's own customer id is about the referrer: the pipeline reports it as the same member
    (``self_referral_customer_id`` is the pure rule's answer when the two records differ; see unit tests)."""
    reply = reasons.event(order({"id": "c-olga", "email": "olga.other@example.com"}, code=reasons.olga))
    assert reply["member"]["member_id"] == reasons.olga_id
    assert reply["attribution"]["reason_code"] == "self_referral_same_member"


def test_loop_in_chain(reasons: Reasons) -> None:
    friend = reasons.event(signup({"id": "c-f", "email": "f@example.com"}, code=reasons.olga))["member"]
    # Olga now arrives through her own referee's code: crediting would make a cycle.
    reply = reasons.event(signup({"id": "c-olga"}, code=friend["code"], object_id="olga-again"))
    assert reply["attribution"]["reason_code"] == "loop_in_chain"
    assert reasons.records(reasons.olga_id) == [("rejected", "loop_in_chain", "ref_code")]


def test_outside_window_for_an_old_pending_invite(reasons: Reasons) -> None:
    CLOCK.set(datetime(2026, 10, 1, 12, 0, tzinfo=UTC))
    invite = reasons.api.post("/v1/landing/invites", {"email": "late@example.com", "ref": reasons.olga}, key=None,
                              headers={"X-Publishable-Key": reasons.program["publishable_key"]})
    assert invite.body["referral_recorded"] is True
    CLOCK.set(None)
    reply = reasons.event(signup({"email": "late@example.com"}, at="2026-11-20T10:00:00Z"))
    assert reply["attribution"]["reason_code"] == "outside_window"
    assert reasons.records(reply["member"]["member_id"]) == [("rejected", "outside_window", "invite_match")]


def test_pending_invite_inside_the_window_is_credited(reasons: Reasons) -> None:
    invite = reasons.api.post("/v1/landing/invites", {"email": "soon@example.com", "ref": reasons.olga}, key=None,
                              headers={"X-Publishable-Key": reasons.program["publishable_key"]})
    assert invite.body["referral_recorded"] is True
    now = (CLOCK.now() + timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    reply = reasons.event(signup({"email": "soon@example.com"}, at=now))
    assert (reply["attribution"]["outcome"], reply["attribution"]["source"]) == ("credited", "invite_match")
    assert reasons.records(reply["member"]["member_id"]) == [("credited", "credited", "invite_match")]


def test_already_attributed(reasons: Reasons) -> None:
    friend = reasons.event(signup({"id": "c-f", "email": "f@example.com"}, code=reasons.olga))["member"]
    reply = reasons.event(signup({"id": "c-f"}, code=reasons.boris, object_id="again"))
    assert reply["attribution"]["reason_code"] == "already_attributed"
    assert reply["attribution"]["referrer_id"] == reasons.olga_id
    assert reasons.records(friend["member_id"])[0] == ("rejected", "already_attributed", "ref_code")


def test_attribution_final_after_the_first_purchase(reasons: Reasons) -> None:
    buyer = reasons.event(order({"id": "c-b", "email": "buyer@example.com"}))["member"]  # no referrer
    reply = reasons.event(order({"id": "c-b"}, code=reasons.olga))
    assert reply["attribution"]["reason_code"] == "attribution_final"
    assert reasons.records(buyer["member_id"])[0] == ("rejected", "attribution_final", "ref_code")


def test_unknown_code(reasons: Reasons) -> None:
    reply = reasons.event(signup({"email": "u@example.com"}, code="NOPE-2345"))
    assert reply["attribution"]["reason_code"] == "unknown_code"
    assert reasons.records(reply["member"]["member_id"]) == [("rejected", "unknown_code", "ref_code")]
    by_code = reasons.api.get(f"/v1/programs/{reasons.pid}/codes/NOPE2345/attributions").body
    assert [r["reason_code"] for r in by_code["items"]] == ["unknown_code"]


def test_has_referees_under_last_touch(api: ApiClient) -> None:
    world = Reasons(api, model="last_touch")
    friend = world.event(signup({"id": "c-f", "email": "f@example.com"}, code=world.olga))["member"]
    world.event(signup({"id": "c-g", "email": "g@example.com"}, code=friend["code"]))  # the friend refers G
    reply = world.event(signup({"id": "c-f"}, code=world.boris, object_id="again"))
    assert reply["attribution"]["reason_code"] == "has_referees"
    assert reply["attribution"]["referrer_id"] == world.olga_id
    assert world.records(friend["member_id"])[0] == ("rejected", "has_referees", "ref_code")


def test_last_touch_without_referees_moves_the_friend(api: ApiClient) -> None:
    world = Reasons(api, model="last_touch")
    friend = world.event(signup({"id": "c-f", "email": "f@example.com"}, code=world.olga))["member"]
    reply = world.event(signup({"id": "c-f"}, code=world.boris, object_id="again"))
    assert (reply["attribution"]["outcome"], reply["attribution"]["referrer_id"]) == ("credited", world.boris_id)
    assert [r[1] for r in world.records(friend["member_id"])] == ["credited", "credited"]


@pytest.fixture(autouse=True)
def _release_clock() -> Iterator[None]:
    yield
    CLOCK.set(None)
