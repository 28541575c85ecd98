"""Issue #7, row by row: hostile input is a 4xx naming the path, and nothing stored poisons a member.

Each test sends what an attacker with a partner's signing secret, or anyone with the
program's public publishable key, could send, through the real routes (chalice.test
under moto), then reads the member back through the member API.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from itertools import count
from typing import Any
from urllib.parse import urlsplit

import pytest

from chalicelib.domain import clock
from tests.support import CLOCK, ApiClient, Reply

_ids = count(1)
DEEP = '{"a":' + "[" * 1000 + "]" * 1000 + "}"
HUGE_INT = "1" * 5000


class World:
    """One program, one partner, one member (Anna) with an order, and the member's read routes."""

    def __init__(self, api: ApiClient) -> None:
        self.api = api
        self.program = api.create_program(landing_url="https://shop.test/welcome",
                                          settings={"landing_rate_limits": {"invites_per_minute": 10000}})
        self.pid = self.program["program_id"]
        self.partner = api.create_partner(self.pid)
        rules = api.get(f"/v1/programs/{self.pid}/rules")
        if rules.status == 404:
            from chalicelib.domain.rewards.examples import load_example_doc

            assert api.put(f"/v1/programs/{self.pid}/rules", load_example_doc("single_shop")).status in (200, 201)
        self.anna = api.processed(self.partner, self.order("c-anna", "anna@example.com", "o-anna-1"))
        self.anna_id = self.member_id("c-anna")
        self.anna_code = api.get(f"/v1/programs/{self.pid}/members/{self.anna_id}").body["code"]

    def order(self, customer_id: str, email: str, order_id: str, **over: Any) -> dict[str, Any]:
        return {"type": "order.paid", "occurred_at": "2026-11-21T10:00:00Z",
                "object": {"type": "order", "id": order_id},
                "customer": {"id": customer_id, "email": email, "name": "Anna"},
                "order": {"total": 100_000, "currency": "RUB"}, **over}

    def member_id(self, customer_id: str) -> str:
        reply = self.api.get(f"/v1/programs/{self.pid}/members/lookup?customer_id={customer_id}",
                             key=self.partner["api_key"])
        assert reply.status == 200, reply.body
        return reply.body["member_id"]  # type: ignore[no-any-return]

    def signed(self, raw: str | bytes) -> Reply:
        """POST raw bytes signed with the partner's secret (whatever they contain)."""
        from chalicelib.domain.webhook_signature import sign

        body = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
        msg_id, ts = f"msg_h{next(_ids)}", int(CLOCK.now().timestamp())
        return self.api.post(f"/v1/webhooks/{self.partner['partner_id']}/events", raw=body, key=None, headers={
            "webhook-id": msg_id, "webhook-timestamp": str(ts),
            "webhook-signature": sign(self.partner["webhook_secrets"]["events"], msg_id, ts, body)})

    def invite(self, raw: str | bytes) -> Reply:
        body = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
        return self.api.post("/v1/landing/invites", raw=body, key=None,
                             headers={"X-Publishable-Key": self.program["publishable_key"], "Origin": "https://shop.test"})

    def read_routes(self, member_id: str | None = None) -> dict[str, Reply]:
        member = member_id or self.anna_id
        base = f"/v1/programs/{self.pid}"
        return {path: self.api.get(base + path) for path in (
            f"/members/{member}", f"/members/{member}/balance", f"/members/{member}/ledger",
            f"/members/{member}/referrals", f"/members/{member}/attributions",
            f"/members/lookup?code={self.anna_code}")}

    def assert_readable(self, member_id: str | None = None) -> None:
        for path, reply in self.read_routes(member_id).items():
            assert reply.status == 200, (path, reply.status, reply.body)


@pytest.fixture
def world(api: ApiClient) -> World:
    return World(api)


def assert_refused(reply: Reply, status: int, code: str, path: str | None = None) -> None:
    assert (reply.status, reply.error_code) == (status, code), reply.body
    if path is not None:
        details = reply.body["error"]["details"]
        paths = [details.get("path")] + [e["path"] for e in details.get("errors", [])]
        assert path in paths, details


def event_with(world: World, **over: Any) -> str:
    return json.dumps(world.order("c-eve", "eve@example.com", f"o-eve-{next(_ids)}", **over))


# --------------------------------------------------------------------------- row 1: nesting


def test_deep_nesting_is_400_everywhere(world: World) -> None:
    api, pid = world.api, world.pid
    assert_refused(world.signed(DEEP), 400, "too_deep")
    assert_refused(world.signed(event_with(world).replace('"object"', '"data":' + DEEP + ',"object"', 1)),
                   400, "too_deep")
    assert_refused(world.invite('{"email":"a@b.test","utm":' + DEEP + "}"), 400, "too_deep")
    offer = '{"settings":{"offer":' + DEEP + "}}"
    assert_refused(api.patch(f"/v1/programs/{pid}", raw=offer), 400, "too_deep")
    assert_refused(api.put(f"/v1/programs/{pid}/rules", raw='{"rules":' + DEEP + "}"), 400, "too_deep")
    reply = world.signed('{"data":{"x":' + "[" * 40 + "]" * 40 + "}}")
    assert reply.body["error"]["details"]["path"].startswith("$.data.x[0][0]")
    world.assert_readable()


def test_nesting_at_the_limit_is_accepted(world: World) -> None:
    data = {"k": json.loads("[" * 30 + "]" * 30)}  # $ > data > k > 30 arrays = 32 levels
    reply = world.signed(event_with(world, data=data))
    assert reply.status == 200, reply.body


# --------------------------------------------------------------------------- row 2: huge integers


def test_a_5000_digit_integer_is_400(world: World) -> None:
    raw = event_with(world).replace('"total": 100000', f'"total": {HUGE_INT}')
    assert_refused(world.signed(raw), 400, "number_out_of_range", "$.order.total")
    assert_refused(world.signed('{"type":"order.paid","data":{"n":-' + HUGE_INT + "}}"), 400,
                   "number_out_of_range", "$.data.n")
    assert_refused(world.invite('{"email":"a@b.test","name":' + HUGE_INT + "}"), 400, "number_out_of_range", "$.name")
    assert_refused(world.signed(event_with(world).replace('"total": 100000', '"total": 1e400')), 400,
                   "number_out_of_range", "$.order.total")
    world.assert_readable()


def test_amounts_are_bounded_by_what_they_mean(world: World) -> None:
    raw = event_with(world).replace('"total": 100000', f'"total": {10**15 + 1}')
    assert_refused(world.signed(raw), 422, "validation_failed", "$.order.total")


# --------------------------------------------------------------------------- rows 3-4: lone surrogates


def test_a_lone_surrogate_in_an_id_is_400(world: World) -> None:
    raw = event_with(world).replace('"id": "o-eve', '"id": "\\ud800o-eve')
    assert_refused(world.signed(raw), 400, "invalid_string", "$.object.id")


def test_a_lone_surrogate_in_a_name_is_400_never_503(world: World) -> None:
    raw = event_with(world).replace('"name": "Anna"', '"name": "\\udfffAnna"')
    assert_refused(world.signed(raw), 400, "invalid_string", "$.customer.name")
    assert_refused(world.invite('{"email":"eve@example.com","name":"Eve\\ud800"}'), 400, "invalid_string", "$.name")
    # Not even escaped: the raw UTF-8 encoding of a surrogate is not valid UTF-8.
    assert_refused(world.invite(b'{"email":"eve@example.com","name":"Eve\xed\xa0\x80"}'), 400, "malformed_json")
    world.assert_readable()


def test_control_characters_in_ids_and_names_are_422(world: World) -> None:
    raw = event_with(world).replace('"name": "Anna"', '"name": "An\\u0000na"')
    assert_refused(world.signed(raw), 400, "invalid_string", "$.customer.name")  # NUL: nowhere
    raw = event_with(world).replace('"id": "c-eve"', '"id": "c-\\u001beve"')
    assert_refused(world.signed(raw), 422, "validation_failed", "$.customer.id")
    assert_refused(world.invite('{"email":"eve@example.com","name":"Eve\\u0007"}'), 422, "validation_failed", "$.name")


# --------------------------------------------------------------------------- rows 5-6: extreme dates


@pytest.mark.parametrize("when", ["0001-01-01T00:00:00Z", "0999-12-31T23:59:59Z", "1999-12-31T23:59:59Z",
                                  "9999-12-31T23:59:59-05:00", "2099-01-01T00:00:00Z"])
def test_occurred_at_outside_the_window_is_422(world: World, when: str) -> None:
    reply = world.signed(event_with(world, occurred_at=when))
    assert_refused(reply, 422, "validation_failed", "$.occurred_at")
    world.assert_readable()


def test_occurred_at_a_few_minutes_ahead_is_accepted(world: World) -> None:
    soon = CLOCK.now().replace(microsecond=0).isoformat().replace("+00:00", "Z")
    assert world.signed(event_with(world, occurred_at=soon)).status == 200


def test_birthday_outside_sane_dates_is_422(world: World) -> None:
    event = world.order("c-eve", "eve@example.com", "o-bday")
    event["customer"]["birthday"] = "0001-01-01"
    assert_refused(world.signed(json.dumps(event)), 422, "validation_failed", "$.customer.birthday")


def test_clock_formats_every_year_with_four_digits() -> None:
    for year in (1, 999, 2026):
        at = datetime(year, 1, 1, tzinfo=UTC)
        text = clock.iso(at)
        assert text.startswith(f"{year:04d}-01-01T00:00:00"), text
        assert clock.parse_iso(text) == at
    # What older versions wrote (strftime %Y without padding) still reads back.
    assert clock.parse_iso("1-01-01T00:00:00.000000Z") == datetime(1, 1, 1, tzinfo=UTC)


def _table() -> Any:
    from chalicelib.store.db import raw_client

    return raw_client()


def _items_of(pid: str, member_id: str) -> list[dict[str, Any]]:
    from chalicelib.store import keys

    pk = keys.member(pid, member_id)[0]
    return _table().query(TableName="sarafan-test", KeyConditionExpression="PK = :pk",
                          ExpressionAttributeValues={":pk": {"S": pk}})["Items"]  # type: ignore[no-any-return]


def _corrupt(item: dict[str, Any], **attrs: dict[str, Any]) -> None:
    _table().put_item(TableName="sarafan-test", Item={**item, **attrs})


def test_a_member_with_year_one_items_stays_readable(world: World) -> None:
    """What the year-0001 event used to store (``1-01-01T…``): the member is still readable and can buy."""
    for item in _items_of(world.pid, world.anna_id):
        dates = {k: {"S": "1-01-01T00:00:00.000000Z"} for k, v in item.items()
                 if k.endswith("_at") and "S" in v}
        _corrupt(item, **dates)
    world.assert_readable()
    later = world.api.processed(world.partner, world.order("c-anna", "anna@example.com", "o-anna-2"))
    assert later["status"] == "processed", later
    refund = {"type": "order.refunded", "occurred_at": "2026-11-22T10:00:00Z",
              "object": {"type": "refund", "id": "r-anna-1"}, "customer": {"id": "c-anna"},
              "refund": {"amount": 50_000, "currency": "RUB", "order_id": "o-anna-1"}}
    assert world.api.processed(world.partner, refund)["status"] == "processed"
    world.assert_readable()


def test_undecodable_items_are_skipped_not_a_500(world: World, caplog: pytest.LogCaptureFixture) -> None:
    """Garbage an older version or a bug might have written: reads answer with what they can."""
    items = _items_of(world.pid, world.anna_id)
    kinds = {item["entity"]["S"] for item in items}
    for item in items:
        if item["entity"]["S"] == "member":
            _corrupt(item, birthday_set_at={"S": "not a date"}, acquisition={"S": "{not json"})
        else:
            _corrupt(item, created_at={"S": "garbage"}, effective_at={"N": "12"}, points={"S": "many"})
    # An item of a type this version does not know, in the member's partition.
    _table().put_item(TableName="sarafan-test", Item={**items[0], "SK": {"S": items[0]["SK"]["S"] + "~x"},
                                                        "entity": {"S": "from_the_future"}})
    world.assert_readable()
    assert "ledger_entry" in kinds or "balance" in kinds, kinds
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "unreadable" in logged or "unknown type" in logged
    assert "anna@example.com" not in caplog.text


# --------------------------------------------------------------------------- rows 7-8: URLs and headers


def test_a_landing_url_with_control_characters_is_422(api: ApiClient) -> None:
    for url in ("https://shop.test/\u0007invite", "https://shop.test/in\nvite", "https://shop.test/\x00"):
        reply = api.post("/v1/programs", {"name": "Demo", "landing_url": url})
        assert_refused(reply, 422 if "\x00" not in url else 400, "validation_failed" if "\x00" not in url
                       else "invalid_string", "$.landing_url")
    program = api.create_program()
    reply = api.patch(f"/v1/programs/{program['program_id']}", {"landing_url": "https://shop.test/a\rb"})
    assert_refused(reply, 422, "validation_failed", "$.landing_url")
    reply = api.post(f"/v1/programs/{program['program_id']}/partners", {"name": "P", "landing_url": "https://x\u0085y"})
    assert_refused(reply, 422, "validation_failed", "$.landing_url")


def _redirect(api: ApiClient, code: str, query: str = "") -> Reply:
    return api.get(f"/r/{code}{query}", key=None, headers={"User-Agent": "Mozilla/5.0"})


def test_an_idn_landing_url_is_stored_as_punycode_and_redirects(world: World) -> None:
    reply = world.api.patch(f"/v1/programs/{world.pid}", {"landing_url": "https://магазин.рф/приглашение?от=друга"})
    assert reply.status == 200, reply.body
    stored = reply.body["landing_url"]
    assert stored == ("https://xn--80aairftm.xn--p1ai/%D0%BF%D1%80%D0%B8%D0%B3%D0%BB%D0%B0%D1%88%D0%B5%D0%BD%D0%B8%D0%B5"
                      "?%D0%BE%D1%82=%D0%B4%D1%80%D1%83%D0%B3%D0%B0"), stored
    redirect = _redirect(world.api, world.anna_code, "?utm_source=телеграм")
    assert redirect.status == 302
    location = redirect.headers["location"]
    assert location.isascii() and urlsplit(location).hostname == "xn--80aairftm.xn--p1ai", location
    assert f"ref={world.anna_code}" in location


def test_a_raw_stored_landing_url_still_redirects_with_an_ascii_location(world: World) -> None:
    """An older version stored URLs as given: the redirect encodes them, or falls back, never an empty reply."""
    from chalicelib.store import cache, keys

    for url, host in (("https://магазин.рф/invite", "xn--80aairftm.xn--p1ai"), ("https://shop.test/\x07", None)):
        _table().update_item(TableName="sarafan-test", Key={k: {"S": v} for k, v in zip(
            ("PK", "SK"), keys.program(world.pid), strict=True)},
            UpdateExpression="SET landing_url = :u", ExpressionAttributeValues={":u": {"S": url}})
        cache.clear()
        reply = _redirect(world.api, world.anna_code)
        assert reply.status == 302, reply
        location = reply.headers["location"]
        assert location and location.isascii() and all(32 < ord(c) < 127 for c in location), location
        if host:
            assert urlsplit(location).hostname == host


def test_every_header_written_is_ascii(world: World) -> None:
    reply = world.api.get(f"/v1/programs/{world.pid}/members/{world.anna_id}")
    replies = [reply, _redirect(world.api, world.anna_code, "?utm_source=%E2%80%8Ftest&p=%0d%0aX-Evil:1"),
               world.invite('{"email":"eve@example.com"}')]
    for r in replies:
        for name, value in r.headers.items():
            assert name.isascii() and value.isascii() and "\r" not in value and "\n" not in value, (name, value)


# --------------------------------------------------------------------------- row 9: duplicate keys


def test_duplicate_keys_are_400_and_nothing_is_written(world: World) -> None:
    raw = event_with(world).replace('"total": 100000', '"total": 100, "total": 99999999')
    assert_refused(world.signed(raw), 400, "duplicate_key", "$.order.total")
    assert world.api.get(f"/v1/programs/{world.pid}/members/lookup?customer_id=c-eve",
                         key=world.partner["api_key"]).status == 404
    assert_refused(world.invite('{"email":"a@b.test","email":"c@d.test"}'), 400, "duplicate_key", "$.email")
    assert_refused(world.api.patch(f"/v1/programs/{world.pid}", raw='{"name":"A","name":"B"}'), 400,
                   "duplicate_key", "$.name")


# --------------------------------------------------------------------------- query strings and paths


def test_query_and_path_parameters_are_bounded(world: World) -> None:
    base = f"/v1/programs/{world.pid}"
    assert_refused(world.api.get(f"{base}/members/lookup?customer_id={'x' * 5000}", key=world.partner["api_key"]),
                   400, "invalid_query")
    assert_refused(world.api.get(f"{base}/members/lookup?customer_id=a%00b", key=world.partner["api_key"]),
                   400, "invalid_query")
    assert_refused(world.api.get(f"{base}/members/{'m' * 3000}"), 400, "invalid_path")
    assert_refused(world.api.get(f"{base}/members/a\x01b/ledger"), 400, "invalid_path")
    assert _redirect(world.api, "x" * 3000).status == 302


# --------------------------------------------------------------------------- store validation errors


def test_store_validation_errors_are_4xx_never_503() -> None:
    from botocore.exceptions import ClientError
    from pynamodb.exceptions import CancellationReason, PutError, TransactWriteError, VerboseClientError

    from chalicelib.domain.errors import BadRequest, ServiceUnavailable
    from chalicelib.store.transact import map_store_error

    def error(code: str, reasons: list[CancellationReason | None] | None = None) -> Any:
        response = {"Error": {"Code": code, "Message": "x"}}
        if reasons is None:
            return PutError("failed", cause=ClientError(response, "PutItem"))  # type: ignore[arg-type]
        return TransactWriteError("failed", cause=VerboseClientError(response, "TransactWriteItems",
                                                                     cancellation_reasons=reasons))

    assert isinstance(map_store_error(error("ValidationException")), BadRequest)
    mapped = map_store_error(error("TransactionCanceledException", [None, CancellationReason("ValidationError")]))
    assert isinstance(mapped, BadRequest) and mapped.status == 400
    assert isinstance(map_store_error(error("ProvisionedThroughputExceededException")), ServiceUnavailable)
    assert isinstance(map_store_error(error("TransactionCanceledException",
                                            [CancellationReason("TransactionConflict")])), ServiceUnavailable)
    assert not isinstance(map_store_error(error("AccessDeniedException")), BadRequest | ServiceUnavailable)
