"""Signed but arbitrary event bodies: the answer is 200, 400 or 422, never a 500.

Signatures keep generic fuzzers (schemathesis) out of the webhook route, so this
property test signs what Hypothesis makes: valid events with fields dropped,
retyped or replaced by arbitrary JSON, and arbitrary JSON documents.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import fresh_table, moto_aws

VALID = {
    "type": "order.paid",
    "occurred_at": "2026-11-23T10:00:00Z",
    "object": {"type": "order", "id": "o-1"},
    "customer": {"id": "c-1", "email": "anna@example.com", "phone": "+79123456789", "name": "Anna",
                 "locale": "ru", "birthday": "1990-05-01"},
    "order": {"total": 250_000, "subtotal": 240_000, "shipping": 10_000, "discount": 0, "currency": "RUB"},
    "referral": {"code": "ABCD2345678", "coupon_codes": ["SPRING"], "utm": {"source": "telegram"}},
}
PATHS = [("type",), ("occurred_at",), ("object",), ("object", "id"), ("object", "type"), ("customer",),
         ("customer", "email"), ("customer", "phone"), ("customer", "birthday"), ("customer", "locale"),
         ("order",), ("order", "total"), ("order", "currency"), ("referral",), ("referral", "code"),
         ("referral", "coupon_codes"), ("referral", "utm")]
TYPES = ["member.signup", "lead.created", "deal.won", "order.paid", "order.refunded", "order.cancelled",
         "custom.review.posted", "custom.", "nope"]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | st.floats(allow_nan=False)
    | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)


@st.composite
def mutated_events(draw: st.DrawFn) -> Any:
    event = copy.deepcopy(VALID)
    event["type"] = draw(st.sampled_from(TYPES))
    for path in draw(st.lists(st.sampled_from(PATHS), max_size=4, unique=True)):
        parent = event
        for part in path[:-1]:
            parent = parent.get(part) if isinstance(parent, dict) else None
        if not isinstance(parent, dict):
            continue
        if draw(st.booleans()):
            parent.pop(path[-1], None)
        else:
            parent[path[-1]] = draw(json_values)
    return event


@pytest.fixture(scope="module")
def moto_for_the_module() -> Iterator[None]:
    """One moto for the module's examples (module scope: Hypothesis's health check is about function-scoped
    fixtures, which every example would share); each example gets its own table."""
    with moto_aws():
        yield


@settings(max_examples=60, deadline=None)
@given(body=mutated_events() | json_values)
def test_signed_garbage_never_causes_a_server_error(moto_for_the_module: None, body: Any) -> None:
    # A fresh table per example: what one example stored (a member, a duplicate's record) cannot
    # decide another's answer, so a failure replays and shrinks on its own.
    with fresh_table() as api:
        program = api.create_program()
        partner = api.create_partner(program["program_id"])
        reply = api.send_event(partner, body)
        assert reply.status in (200, 400, 422), reply.body
        if reply.status >= 400:
            assert set(reply.body["error"]) == {"code", "message", "details"}
        # Whatever was stored, the member it names (if any) still reads.
        member = (reply.body or {}).get("member") if reply.status == 200 else None
        if isinstance(member, dict) and member.get("member_id"):
            path = f"/v1/programs/{program['program_id']}/members/{member['member_id']}"
            assert api.get(path).status == 200
            assert api.get(path + "/balance").status == 200
