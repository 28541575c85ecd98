"""What an order's one transaction writes (issue #10: the write units of an order), by item kind.

Counted from the request through a botocore hook (never timed): the order's transaction writes its
entries without index keys (the event record indexes them), no outbox item (``points_earned`` is
derived by the stream consumer), no member profile (purchase counts are on the balance item) and no
order item (the event record is the order's state until a refund: ``services.ledger.refunds``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from tests.functional.test_cold_webhook import RULES, order, signup
from tests.support import ApiClient


@pytest.fixture
def written(api: ApiClient) -> Iterator[list[dict[str, Any]]]:
    from chalicelib.store.db import raw_client

    seen: list[dict[str, Any]] = []

    def keep(params: Any = None, model: Any = None, **_: Any) -> None:
        if model.name == "TransactWriteItems":
            seen.extend(params["TransactItems"])

    raw_client().meta.events.register("before-parameter-build.dynamodb", keep)
    yield seen
    raw_client().meta.events.unregister("before-parameter-build.dynamodb", keep)


def _kinds(ops: list[dict[str, Any]]) -> Counter[str]:
    """The ``entity`` of every item written: a put's item, or the value an update sets the attribute to."""
    out: Counter[str] = Counter()
    for op in ops:
        (kind, spec), = op.items()
        if kind == "Put":
            out[spec["Item"]["entity"]["S"]] += 1
            continue
        names = {v: k for k, v in (spec.get("ExpressionAttributeNames") or {}).items()}
        values = spec.get("ExpressionAttributeValues") or {}
        expression = spec.get("UpdateExpression", "")
        entity = "?"
        name = names.get("entity")
        if name:
            after = expression.split(f"{name} = ", 1)
            if len(after) == 2:
                entity = values[after[1].split(",")[0].split(" ")[0]]["S"]
        out[entity] += 1
    return out


def test_an_order_writes_entries_balances_and_its_record_only(
        api: ApiClient, written: list[dict[str, Any]]) -> None:
    program = api.create_program()
    partner = api.create_partner(program["program_id"])
    assert api.put(f"/v1/programs/{program['program_id']}/rules", RULES).status == 200
    referrer = api.processed(partner, signup("ann"))["member"]
    api.processed(partner, signup("bob", referrer["code"]))
    for order_id in ("o-1", "o-2"):  # the first purchase (converts the referral), then a repeat one
        written.clear()
        reply = api.processed(partner, order("bob", order_id))
        assert len(reply["rewards"]["postings"]) == 2
        # 2 entries, 2 balances (bob's also counts his purchases, ann's her converted referral), the event
        # record; the first purchase also counts the referrer's daily rewards (velocity).
        expected = Counter({"ledger_entry": 2, "balance": 2, "event": 1})
        if order_id == "o-1":
            expected["velocity"] = 1
        assert _kinds(written) == expected, written
        entries = [op["Put"]["Item"] for op in written if "Put" in op and op["Put"]["Item"]["entity"]["S"] ==
                   "ledger_entry"]
        # Indexed by the event record: no ledger-day key, no pending-release key (an entry available at once keeps
        # the expiry job's CREDITS# month key).
        assert all("GSI2PK" not in e and not e.get("GSI1PK", {}).get("S", "").startswith("PENDING#") for e in entries)
        [record] = [op["Put"]["Item"] for op in written if "Put" in op and op["Put"]["Item"]["entity"]["S"] == "event"]
        assert record["GSI2PK"]["S"].startswith("LEDGERDAY#")
        pending = any(e["status"]["S"] == "pending" for e in entries)
        assert record.get("GSI1PK", {}).get("S", "").startswith("PENDING#") == pending


def test_a_refund_writes_reversals_entries_balances_its_record_and_the_order_item_but_no_message(
        api: ApiClient, written: list[dict[str, Any]]) -> None:
    program = api.create_program()
    partner = api.create_partner(program["program_id"])
    assert api.put(f"/v1/programs/{program['program_id']}/rules", RULES).status == 200
    referrer = api.processed(partner, signup("ann"))["member"]
    api.processed(partner, signup("bob", referrer["code"]))
    api.processed(partner, order("bob", "o-1"))
    for n in (1, 2):  # the first refund creates the order's item from its record, the second updates it
        written.clear()
        refund = {"type": "order.refunded", "occurred_at": "2026-01-16T10:00:00Z",
                  "object": {"type": "refund", "id": f"r-{n}"}, "refund": {"amount": 40_000, "currency": "RUB", "order_id": "o-1"}}
        reply = api.processed(partner, refund)
        assert len(reply["rewards"]["reversals"]) == 2
        # 2 reversal entries, 2 updates of the rewards reversed ("?": an update that sets no kind), 2 balances,
        # the refund's record and the order's item; points_reversed is derived from the reversal entries by the
        # stream consumer: no outbox item.
        assert _kinds(written) == Counter({"ledger_entry": 2, "?": 2, "balance": 2, "event": 1, "order_ledger": 1}), \
            written
        puts = [op["Put"]["Item"] for op in written if "Put" in op]
        # The reversals carry no index key: the refund's record carries their ledger-day key.
        assert all("GSI2PK" not in i and "GSI1PK" not in i for i in puts if i["entity"]["S"] == "ledger_entry")
        [record] = [i for i in puts if i["entity"]["S"] == "event"]
        assert record["GSI2PK"]["S"].startswith("LEDGERDAY#") and "GSI1PK" not in record


def _recurring(cap: int | None) -> dict[str, Any]:
    recurring: dict[str, int] = {"months": 12, "orders": 5}
    if cap is not None:
        recurring["max_points_per_friend"] = cap
    return {"rules": [{"id": "share", "trigger": {"event": "order.paid"}, "recipient": {"type": "referrer"},
                       "amount": {"rate_bp": 1000}, "recurring": recurring}], "hold_days": 0}


def test_a_recurring_rule_counts_per_friend_only_when_it_has_a_cap(
        api: ApiClient, written: list[dict[str, Any]]) -> None:
    """No ``max_points_per_friend``: the per-friend counter is neither read nor written (nothing reads it).

    A cap added by a later rules version counts from then on: the counter starts at that version's
    first order, and the points paid before it are not counted.
    """
    from chalicelib.store.db import raw_client

    read: list[str] = []

    def keep_reads(params: Any = None, model: Any = None, **_: Any) -> None:
        if model.name == "BatchGetItem":
            read.extend(k["SK"]["S"] for table in params["RequestItems"].values() for k in table["Keys"])

    raw_client().meta.events.register("before-parameter-build.dynamodb", keep_reads)
    try:
        program = api.create_program()
        pid = program["program_id"]
        partner = api.create_partner(pid)
        assert api.put(f"/v1/programs/{pid}/rules", _recurring(None)).status == 200
        referrer = api.processed(partner, signup("ann"))["member"]
        api.processed(partner, signup("bob", referrer["code"]))
        for order_id in ("o-1", "o-2"):
            written.clear()
            read.clear()
            reply = api.processed(partner, order("bob", order_id))
            assert [p["points"] for p in reply["rewards"]["postings"]] == [100]
            assert "recurring_counter" not in _kinds(written), written
            assert not [k for k in read if k.startswith("RECUR#")], read

        assert api.put(f"/v1/programs/{pid}/rules", _recurring(150)).status == 200
        paid = []
        for order_id in ("o-3", "o-4"):  # counted from the capped version on: 100, then 50 of 100 (cap 150)
            written.clear()
            read.clear()
            reply = api.processed(partner, order("bob", order_id))
            paid.append([p["points"] for p in reply["rewards"]["postings"]])
            assert _kinds(written)["recurring_counter"] == 1, written
            assert [k for k in read if k.startswith("RECUR#")] == ["RECUR#share"], read
        assert paid == [[100], [50]]
    finally:
        raw_client().meta.events.unregister("before-parameter-build.dynamodb", keep_reads)
