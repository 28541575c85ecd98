"""Every route of the OpenAPI document under hostile input: never a 5xx, and the members stay readable.

Hypothesis picks an operation from the document the service serves, fills its path
with the fixed world's real ids (or hostile ones), and sends a hostile body -- deep
nesting, huge integers, lone surrogates, control characters, invalid UTF-8, extreme
dates, wrong types, 256 KiB strings, duplicate keys -- derived from a valid body of that
route, authenticated the way the route wants (operator or partner key, publishable key,
or a Standard Webhooks signature with the partner's real secret, so the body is what is
tested). After each example, every read route of two fixed members answers 200.

Bounded for the default suite; ``SARAFAN_HOSTILE_EXAMPLES=500`` runs a longer profile.
A route added to the document without a seed body below is still fuzzed (from ``{}``).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chalicelib.domain.rewards.examples import load_example_doc
from tests.conftest import fresh_table, moto_aws, restore_table, table_snapshot
from tests.functional.test_hostile_input import World
from tests.support import CLOCK, ApiClient, Reply

EXAMPLES = int(os.environ.get("SARAFAN_HOSTILE_EXAMPLES", "30"))
BODY_LIMIT = 256 * 1024

EVENT = {"type": "order.paid", "occurred_at": "2026-11-21T10:00:00Z", "object": {"type": "order", "id": "o-fz"},
         "customer": {"id": "c-fz", "email": "fz@example.com", "name": "Fuzz", "birthday": "1990-01-01"},
         "order": {"total": 1000, "currency": "RUB"},
         "referral": {"code": "ABCD2345678", "utm": {"source": "x"}, "landing_url": "https://shop.test/"}}
SEEDS: dict[tuple[str, str], Any] = {
    ("POST", "/v1/webhooks/{partner_id}/events"): EVENT,
    ("POST", "/v1/programs"): {"name": "Fuzz", "landing_url": "https://shop.test/", "allowed_origins": [
        "https://shop.test"], "settings": {"offer": {"friend_reward": {"ru": "x"}}}},
    ("PATCH", "/v1/programs/{program_id}"): {"name": "Fuzz", "landing_url": "https://shop.test/x",
                                             "settings": {"offer": {"friend_reward": {"en": "x"}},
                                                          "attribution_window_days": 30}},
    ("POST", "/v1/programs/{program_id}/partners"): {"name": "Fuzz", "landing_url": "https://shop.test/p"},
    ("PUT", "/v1/programs/{program_id}/rules"): load_example_doc("single_shop"),
    ("POST", "/v1/landing/invites"): {"email": "fz@example.com", "name": "Fuzz", "ref": "ABCD2345678",
                                      "utm": {"source": "tg"}},
    ("PUT", "/v1/programs/{program_id}/members/{member_id}/code"): {"code": "FUZZ-2026"},
    ("POST", "/v1/programs/{program_id}/members/{member_id}/redemptions"): {"points": 1, "order_amount": 100_000},
    ("POST", "/v1/programs/{program_id}/partners/{partner_id}/webhook-endpoints"): {
        "url": "https://93.184.216.34/hook", "event_types": ["reward.posted"], "description": "fuzz"},
    ("PATCH", "/v1/programs/{program_id}/partners/{partner_id}/webhook-endpoints/{endpoint_id}"): {
        "url": "https://93.184.216.34/other", "enabled": False},
}

_LONG = "x" * (BODY_LIMIT - 200)
HOSTILE_LEAVES: list[str] = [  # JSON *text*, spliced in as is
    "1" * 5000, "-" + "9" * 30, str(2**53), "1e400", "-1e400", "NaN", "Infinity", "1." + "0" * 100, "0.1",
    '"\\ud800"', '"ok\\udfff"', '"\\u0000"', '"a\\u0007b"', '"a\\nb"', '"\\u202e\\u2028"', '"\\u0085"',
    '"0001-01-01T00:00:00Z"', '"0999-12-31T23:59:59Z"', '"9999-12-31T23:59:59-05:00"', '"2000-01-01T00:00:00+14:00"',
    '"2026-13-45T25:61:61Z"', '"1-01-01T00:00:00.000000Z"', '"0001-01-01"', '"https://магазин.рф/путь"',
    '"https://shop.test/\\u0007"', '"javascript:alert(1)"', "true", "null", "[]", "{}", '[1,"a",null]',
    '{"a":{"b":{"c":1}}}', "-0", '""', '"' + _LONG + '"', '"' + "я" * 40_000 + '"',
]
INVALID_UTF8 = [b"\xff", b"\xed\xa0\x80", b"\xc0\xaf", b"\xe2\x82", b"\xf4\x90\x80\x80"]


def _seed(method: str, path: str) -> Any:
    seed = SEEDS.get((method, path), {})
    return json.loads(json.dumps(seed))


def _leaf_paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    paths = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            paths += _leaf_paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            paths += _leaf_paths(child, (*prefix, index))
    return paths


_MARK = "\u0001HOSTILE\u0001"


def _splice(seed: Any, path: tuple[Any, ...], leaf: str) -> str:
    """``seed`` as JSON text with the value at ``path`` replaced by the raw JSON text ``leaf``."""
    if not path:
        return leaf
    doc = json.loads(json.dumps(seed))
    parent = doc
    for part in path[:-1]:
        parent = parent[part]
    parent[path[-1]] = _MARK
    return json.dumps(doc, ensure_ascii=False).replace(json.dumps(_MARK), leaf, 1)


@st.composite
def hostile_bodies(draw: st.DrawFn, method: str, path: str) -> bytes:
    seed = _seed(method, path)
    kind = draw(st.sampled_from(["leaf", "leaf", "leaf", "deep", "utf8", "duplicate", "json", "huge", "empty"]))
    if kind == "empty":
        return b""
    if kind == "json":
        value = draw(st.recursive(
            st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=20),
            lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3), max_leaves=10))
        return json.dumps(value).encode()
    paths = _leaf_paths(seed)
    where = draw(st.sampled_from(paths))
    if kind == "leaf":
        text = _splice(seed, where, draw(st.sampled_from(HOSTILE_LEAVES)))
    elif kind == "deep":
        depth = draw(st.sampled_from([33, 100, 1000, 20_000]))
        text = _splice(seed, where, '{"a":' * depth + "1" + "}" * depth if draw(st.booleans())
                       else "[" * depth + "]" * depth)
    elif kind == "huge":  # right at and over the size limit
        filler = BODY_LIMIT - len(json.dumps(seed)) - draw(st.sampled_from([40, 0, -10]))
        text = _splice(seed, where, '"' + "a" * max(filler, 1) + '"')
    elif kind == "duplicate":
        text = json.dumps(seed, ensure_ascii=False)
        if isinstance(seed, dict) and seed:
            key = draw(st.sampled_from(sorted(seed)))
            text = "{" + json.dumps(key) + ":" + draw(st.sampled_from(HOSTILE_LEAVES[:12])) + "," + text[1:]
    else:  # invalid UTF-8 inside a string
        text = _splice(seed, where, '"x"').replace('"x"', '"x\u0000MARK"', 1)
        return text.encode().replace(b"\x00MARK", draw(st.sampled_from(INVALID_UTF8)), 1)
    return text.encode("utf-8", "surrogatepass")


HOSTILE_IDS = ["x" * 300, "x" * 3000, "мир", "a\x01b", "..%2F..", "%00", "'\"", "mbr_" + "0" * 20, " ", "ROOT#x"]


class Fuzz:
    def __init__(self, api: ApiClient) -> None:
        from app import app as chalice_app  # noqa: F401 -- registers every operation
        from chalicelib.api.openapi import build_document
        from chalicelib.api.openapi_registry import OPERATIONS

        self.api = api
        self.world = World(api)
        # A second member, referred by the first: referrals and attributions have content.
        bob = {**self.world.order("c-bob", "bob@example.com", "o-bob-1"),
               "referral": {"code": self.world.anna_code}}
        api.processed(self.world.partner, bob)
        self.bob_id = self.world.member_id("c-bob")
        self.document = build_document("https://srf.test")
        auth = {(op.method.upper(), op.path): op.auth for op in OPERATIONS}
        self.operations = sorted(
            (method.upper(), path, auth.get((method.upper(), path), "key"))
            for path, item in self.document["paths"].items() for method in item
            if method.upper() in {"GET", "POST", "PUT", "PATCH", "DELETE"}
        )

    def path_value(self, name: str, hostile: str | None) -> str:
        if hostile is not None:
            # As an HTTP client sends it: a raw "#" would start a fragment and never reach the server.
            return hostile.replace("#", "%23")
        w = self.world
        return {"program_id": w.pid, "member_id": self.bob_id, "partner_id": w.partner["partner_id"],
                "code": w.anna_code, "source": "events"}.get(name, "nope_" + name)

    def send(self, method: str, path: str, auth: str, body: bytes, hostile_id: str | None,
             query: str, key_choice: str) -> Reply:
        import re

        url = re.sub(r"{(\w+)}", lambda m: self.path_value(m.group(1), hostile_id), path) + query
        headers: dict[str, str] = {"Idempotency-Key": "fuzz-1"}
        key: str | None = None
        if auth in ("operator", "key"):
            key = "operator" if key_choice == "operator" or auth == "operator" else self.world.partner["api_key"]
        elif auth == "publishable":
            headers.update({"X-Publishable-Key": self.world.program["publishable_key"], "Origin": "https://shop.test"})
        elif auth == "signature":
            from chalicelib.domain.webhook_signature import sign

            msg_id, ts = f"msg_fz{time.monotonic_ns()}", int(CLOCK.now().timestamp())
            headers.update({"webhook-id": msg_id, "webhook-timestamp": str(ts),
                            "webhook-signature": sign(self.world.partner["webhook_secrets"]["events"], msg_id, ts,
                                                      body)})
        return self.api.call(method, url, key=key, headers=headers, raw=body if method != "GET" else None)

    def assert_members_readable(self) -> None:
        for member in (self.world.anna_id, self.bob_id):
            self.world.assert_readable(member)


QUERIES = ["", "?limit=1", "?limit=" + "9" * 5000, "?limit=-1", "?cursor=" + "A" * 2000, "?cursor=e30",
           "?email=%00", "?code=" + "Z" * 3000, "?version=" + "1" * 500, "?order_amount=1e400", "?locale=%E2%80%AE",
           "?customer_id=a%0Ab", "?p=" + "p" * 300 + "&utm_source=%F0%9F%92%A9"]


@pytest.fixture(scope="module")
def world_for_the_module() -> Iterator[tuple[Fuzz, Any]]:
    """One moto and one world for the module's examples (module scope: Hypothesis's health check is about
    function-scoped fixtures, which every example would share), and a copy of the world's table that each
    example starts from."""
    with moto_aws(), fresh_table() as api:
        fuzz = Fuzz(api)
        yield fuzz, table_snapshot()


@settings(max_examples=EXAMPLES, deadline=None)
@given(data=st.data())
def test_hostile_input_on_every_route_never_a_5xx_and_members_stay_readable(
        world_for_the_module: tuple[Fuzz, Any], data: st.DataObject) -> None:
    # Every example starts from the same world: what one example stored cannot decide another's answer,
    # so a failure replays and shrinks on its own.
    fuzz, snapshot = world_for_the_module
    restore_table(snapshot)
    _one_hostile_request(fuzz, data)


def _one_hostile_request(fuzz: Fuzz, data: st.DataObject) -> None:
    method, path, auth = data.draw(st.sampled_from(fuzz.operations), label="operation")
    body = data.draw(hostile_bodies(method, path), label="body")
    hostile_id = data.draw(st.none() | st.none() | st.sampled_from(HOSTILE_IDS), label="path id")
    query = data.draw(st.sampled_from(QUERIES), label="query")
    key_choice = data.draw(st.sampled_from(["operator", "partner"]), label="key")
    reply = fuzz.send(method, path, auth, body, hostile_id, query, key_choice)
    assert reply.status < 500, (method, path, reply.status, reply.body)
    if reply.status >= 400 and path != "/r/{code}":
        assert isinstance(reply.body, dict) and set(reply.body["error"]) == {"code", "message", "details"}, reply.body
    for name, value in reply.headers.items():
        assert value.isascii() and "\n" not in value and "\r" not in value, (name, value)
    fuzz.assert_members_readable()


def test_every_operation_of_the_document_is_fuzzed(api: ApiClient) -> None:
    """The fuzz draws from the served document; seeds name only routes that exist in it."""
    fuzz = Fuzz(api)
    served = {(m, p) for m, p, _ in fuzz.operations}
    assert len(served) >= 30, served
    assert set(SEEDS) <= served, set(SEEDS) - served
    assert any(auth == "signature" for *_, auth in fuzz.operations)
    assert any(auth == "publishable" for *_, auth in fuzz.operations)
