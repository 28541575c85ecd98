"""A cold container's first webhook: one configuration round trip, stored rules not re-validated.

Calls are counted through a botocore hook on the shared DynamoDB client (never timed).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support import ApiClient

RULES = {"rules": [
    {"id": "cashback", "trigger": {"event": "order.paid"}, "recipient": {"type": "self"}, "amount": {"rate_bp": 500}},
    {"id": "level-1", "trigger": {"event": "order.paid"}, "recipient": {"type": "referrer", "level": 1},
     "amount": {"rate_bp": 300}},
]}


def order(customer: str, order_id: str) -> dict[str, Any]:
    return {"type": "order.paid", "occurred_at": "2026-01-15T10:00:00Z", "object": {"type": "order", "id": order_id},
            "customer": {"id": customer}, "order": {"total": 100_000, "currency": "RUB"}}


def signup(customer: str, code: str | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {"type": "member.signup", "occurred_at": "2026-01-10T10:00:00Z",
                             "object": {"type": "customer", "id": customer}, "customer": {"id": customer}}
    if code:
        event["referral"] = {"code": code}
    return event


@pytest.fixture
def calls(api: ApiClient) -> Iterator[Counter[str]]:
    from chalicelib.store.db import raw_client

    seen: Counter[str] = Counter()

    def count(model: Any = None, **_: Any) -> None:
        seen[model.name] += 1

    raw_client().meta.events.register("before-call.dynamodb", count)
    yield seen
    raw_client().meta.events.unregister("before-call.dynamodb", count)


def cold_container() -> None:
    """What a new Lambda container has: no cached configuration, no parsed rules."""
    from chalicelib.services import rules
    from chalicelib.store import cache

    cache.clear()
    rules.reset_cache()


def test_cold_order_paid_reads_its_configuration_in_one_batch(api: ApiClient, calls: Counter[str]) -> None:
    program = api.create_program()
    partner = api.create_partner(program["program_id"])
    assert api.put(f"/v1/programs/{program['program_id']}/rules", RULES).status == 200
    referrer = api.processed(partner, signup("ann"))["member"]
    api.processed(partner, signup("bob", referrer["code"]))

    cold_container()
    calls.clear()
    reply = api.processed(partner, order("bob", "o-1"))
    assert reply["rewards"]["points"] > 0
    # locator, partner + program (one batch), the pipeline's two batches (rules folded in), the transaction
    assert calls == Counter({"GetItem": 1, "BatchGetItem": 3, "TransactWriteItems": 1})

    calls.clear()  # warm: configuration cached, the pipeline's three round trips only
    api.processed(partner, order("bob", "o-2"))
    assert calls == Counter({"BatchGetItem": 2, "TransactWriteItems": 1})


def test_stored_rules_are_not_validated_again_when_read(api: ApiClient, monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib.domain.rewards import schema

    program = api.create_program()
    partner = api.create_partner(program["program_id"])
    assert api.put(f"/v1/programs/{program['program_id']}/rules", RULES).status == 200
    api.processed(partner, signup("ann"))

    def no_validation(*_: Any, **__: Any) -> Any:
        raise AssertionError("stored rules validated again on read")

    cold_container()
    monkeypatch.setattr(schema, "parse_rules", no_validation)
    monkeypatch.setattr(schema, "_validator", no_validation)
    reply = api.processed(partner, order("ann", "o-1"))
    assert [p["rule_id"] for p in reply["rewards"]["postings"]] == ["cashback"]


def test_unknown_partner_is_404_on_a_cold_container(api: ApiClient) -> None:
    cold_container()
    reply = api.send_event({"partner_id": "prt_missing", "webhook_secrets": {"events": "whsec_" + "A" * 32}},
                           order("x", "o-1"))
    assert reply.status in (401, 404), reply.body
