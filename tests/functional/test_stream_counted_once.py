"""The stream consumers that add to aggregates (analytics, settlement feed) count every record once, however
Lambda cuts and repeats the batches: the records of a small history delivered in overlapping pieces, in full
again and one at a time (the last ones first) leave exactly the figures one clean delivery leaves."""

from __future__ import annotations

from typing import Any

import pytest

from chalicelib.notify import dispatcher, sources
from tests.functional.test_ledger_support import Shop, utc
from tests.notify_support import stream_poller
from tests.support import CLOCK, ApiClient

RULES: dict[str, Any] = {
    "max_depth": 3, "hold_days": 0,
    "rules": [
        {"id": "cashback", "trigger": {"event": "order.paid"}, "recipient": {"type": "self"},
         "amount": {"rate_bp": 500}},
        {"id": "bring-a-friend", "trigger": {"event": "order.paid", "order": "first"},
         "recipient": {"type": "referrer", "level": 1}, "amount": {"points": 500}},
        {"id": "friend-welcome", "trigger": {"event": "order.paid", "order": "first"},
         "recipient": {"type": "friend"}, "amount": {"points": 300}},
        {"id": "level-2", "trigger": {"event": "order.paid", "order": "first"},
         "recipient": {"type": "referrer", "level": 2}, "amount": {"points": 100}},
    ],
}
#: The aggregates (analytics counters and leaderboard, settlement rows); not their "counted" markers.
FIGURES = ("AGG#", "SETTLE#")
MARKERS = ("AGG#SEEN#", "SETTLED#")


@pytest.fixture(autouse=True)
def _quiet(api: ApiClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sources, "MAX_PARALLEL", 1)
    CLOCK.set(utc("2026-01-12T09:00:00Z"))


def _items() -> list[dict[str, Any]]:
    from chalicelib import aws
    from chalicelib.config import get_settings

    return aws.client("dynamodb").scan(TableName=get_settings().table_name)["Items"]  # type: ignore[no-any-return]


def figures() -> dict[tuple[str, str], dict[str, Any]]:
    return {(i["PK"]["S"], i["SK"]["S"]): i for i in _items()
            if i["PK"]["S"].startswith(FIGURES) and not i["PK"]["S"].startswith(MARKERS)}


def forget_counting() -> None:
    """Every aggregate and marker deleted: the table as if no consumer had counted anything."""
    from chalicelib import aws
    from chalicelib.config import get_settings

    client, table = aws.client("dynamodb"), get_settings().table_name
    for item in _items():
        if item["PK"]["S"].startswith(FIGURES + MARKERS):
            client.delete_item(TableName=table, Key={"PK": item["PK"], "SK": item["SK"]})


def stream_records() -> list[dict[str, Any]]:
    """Every record of the table's stream so far, shaped as Lambda delivers them."""
    from infra.local_stream import lambda_record

    poller = stream_poller()
    raw = poller._new_records()
    assert poller._arn is not None
    return [lambda_record(r, poller._arn, poller.region) for r in raw]


def history(api: ApiClient) -> None:
    """Anna → Boris → Carl → Dora (referral chain); first orders of all four, a repeat order, a partial refund,
    3 clicks on Anna's link: event records, ledger entries of several rules and levels, members, clicks."""
    shop = Shop(api, RULES, partners=2, landing_url="https://shop.test/")
    p0, p1 = shop.partners
    people = shop.chain(3, prefix="m")
    for _ in range(3):
        assert api.get(f"/r/{people[0]['code']}?utm_source=telegram", key=None).status == 302
    for n, (person, partner) in enumerate(zip(people, [p0, p1, p0, p1], strict=True)):
        shop.order(f"m{n}", f"o-{n}", 100_000 * (n + 1), at="2026-01-11T10:00:00Z", partner=partner)
        assert person["member_id"]
    shop.order("m3", "o-4", 50_000, at="2026-01-11T12:00:00Z", partner=p0)
    shop.refund("o-3", 20_000, at="2026-01-11T13:00:00Z", partner=p1)


def test_split_overlapping_and_repeated_batches_count_every_record_once(api: ApiClient) -> None:
    history(api)
    records = stream_records()
    n = len(records)
    assert n > 30
    # Deliveries as Lambda may make them: pieces cut anywhere and overlapping (a retry from a failed record,
    # a batch split in two), the whole stream again, the last records one at a time in reverse.
    dispatcher.dispatch(records[: n // 3])
    dispatcher.dispatch(records[n // 4: 2 * n // 3])
    dispatcher.dispatch(records[n // 2:])
    dispatcher.dispatch(records)
    for record in reversed(records[-8:]):
        dispatcher.dispatch([record])
    delivered_badly = figures()
    assert any(k[0].endswith("#DAY") for k in delivered_badly) and any(k[0].startswith("SETTLE#")
                                                                       for k in delivered_badly)
    forget_counting()
    dispatcher.dispatch(records)  # one clean delivery of the same records
    assert figures() == delivered_badly


def test_a_batch_of_many_events_is_counted_once_across_transactions(api: ApiClient,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch too big for one transaction is counted in several; redelivered, nothing is added twice."""
    from chalicelib.store import count_once

    history(api)
    records = stream_records()
    monkeypatch.setattr(count_once, "MAX_ITEMS", 12)  # many chunks, a group's sources cut across two
    dispatcher.dispatch(records)
    chunked = figures()
    dispatcher.dispatch(records)
    assert figures() == chunked
    monkeypatch.setattr(count_once, "MAX_ITEMS", 100)
    forget_counting()
    dispatcher.dispatch(records)
    assert figures() == chunked
