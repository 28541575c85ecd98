"""Request paths read a bounded number of items whatever the data size (items counted, never timed)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from chalicelib.store import counters, keys
from tests.support import ApiClient


class ItemsRead:
    """Items DynamoDB returned to the app (GetItem, BatchGetItem, Query, Scan), via a botocore hook."""

    def __init__(self) -> None:
        self.items = 0
        self.calls: list[str] = []

    def __call__(self, model: Any = None, parsed: Any = None, **_: Any) -> None:
        self.calls.append(model.name)
        parsed = parsed or {}
        if "Item" in parsed:
            self.items += 1
        self.items += len(parsed.get("Items", []))
        self.items += sum(len(v) for v in parsed.get("Responses", {}).values()) if isinstance(
            parsed.get("Responses"), dict) else 0


@pytest.fixture
def reads(api: ApiClient) -> Iterator[ItemsRead]:
    from chalicelib.store.db import raw_client

    counter = ItemsRead()
    raw_client().meta.events.register("after-call.dynamodb", counter)
    yield counter
    raw_client().meta.events.unregister("after-call.dynamodb", counter)


def add_day_counters(program_id: str, code: str, days: int) -> None:
    """Ten years of one source's daily click counters, written directly (setup, not the click path)."""
    from datetime import date, timedelta

    with counters.ClickCounterItem.batch_write() as batch:
        for i in range(days):
            day = (date(2016, 1, 1) + timedelta(days=i)).isoformat()
            pk, sk = keys.click_counter(program_id, code, day, "tg")
            batch.save(counters.ClickCounterItem(PK=pk, SK=sk, program_id=program_id, code=code, day=day,
                                                 utm_source="tg", clicks=3))


def test_member_profile_reads_the_same_items_with_thousands_of_click_counters(api: ApiClient,
                                                                               reads: ItemsRead) -> None:
    program = api.create_program()
    pid = program["program_id"]
    partner = api.create_partner(pid)
    member = api.processed(partner, {"type": "member.signup", "occurred_at": "2026-01-10T10:00:00Z",
                                     "object": {"type": "customer", "id": "c1"}, "customer": {"id": "c1"}})["member"]
    for source in ("tg", "tg", None):
        api.get(f"/r/{member['code']}" + (f"?utm_source={source}" if source else ""), key=None)
    path = f"/v1/programs/{pid}/members/{member['member_id']}"
    api.get(path)  # warm the configuration cache

    reads.items, reads.calls = 0, []
    before = api.get(path)
    assert before.status == 200 and before.body["counts"]["clicks"] == 3
    items_before, calls_before = reads.items, list(reads.calls)
    assert items_before >= 2 and calls_before  # the profile and the click total were read through the hook

    add_day_counters(pid, member["code"], 3650)
    reads.items, reads.calls = 0, []
    after = api.get(path)
    assert after.status == 200
    assert after.body["counts"]["clicks_by_utm_source"] == {"tg": 2, "-": 1}  # totals, not the seeded detail
    assert (reads.items, reads.calls) == (items_before, calls_before)
    assert reads.items <= 3


def test_member_profile_reads_a_bounded_number_of_items_after_the_maximum_of_code_changes(
        api: ApiClient, reads: ItemsRead) -> None:
    from chalicelib.store.dynamo_ports import MAX_CODES_PER_MEMBER

    program = api.create_program()
    pid = program["program_id"]
    partner = api.create_partner(pid)
    member = api.processed(partner, {"type": "member.signup", "occurred_at": "2026-01-10T10:00:00Z",
                                     "object": {"type": "customer", "id": "c1"}, "customer": {"id": "c1"}})["member"]
    path = f"/v1/programs/{pid}/members/{member['member_id']}"
    codes = [member["code"]]
    for n in range(1, MAX_CODES_PER_MEMBER):  # the signup's code + 9 vanity codes = the maximum
        code = f"VANITY-{n:02d}"
        reply = api.put(f"{path}/code", {"code": code})
        assert reply.status == 200, reply.body
        api.get(f"/r/{code}", key=None)  # each code has a click total
        codes.append(code.replace("-", ""))
    one_more = api.put(f"{path}/code", {"code": "VANITY-XX"})
    assert one_more.status == 409 and one_more.body["error"]["code"] == "too_many_codes", one_more.body
    assert one_more.body["error"]["details"]["limit"] == MAX_CODES_PER_MEMBER
    back = api.put(f"{path}/code", {"code": "VANITY-03"})  # an earlier code: adds none, allowed
    assert back.status == 200 and back.body["code"] == "VANITY03", back.body
    assert api.put(f"{path}/code", {"code": "VANITY-YY"}).status == 409

    api.get(path)  # warm the configuration cache
    reads.items, reads.calls = 0, []
    view = api.get(path)
    assert view.status == 200 and view.body["counts"]["clicks"] == MAX_CODES_PER_MEMBER - 1
    assert len(view.body["previous_codes"]) == MAX_CODES_PER_MEMBER - 1
    # The profile, the balance and one click total per code (9 codes were clicked): at most 12 items.
    assert reads.items <= MAX_CODES_PER_MEMBER + 2, (reads.items, reads.calls)


def test_click_totals_bound_the_number_of_sources(api: ApiClient, monkeypatch: pytest.MonkeyPatch) -> None:
    program = api.create_program()
    pid = program["program_id"]
    partner = api.create_partner(pid)
    member = api.processed(partner, {"type": "member.signup", "occurred_at": "2026-01-10T10:00:00Z",
                                     "object": {"type": "customer", "id": "c1"}, "customer": {"id": "c1"}})["member"]
    monkeypatch.setattr(counters, "MAX_SOURCES", 3)
    for i in range(6):
        api.get(f"/r/{member['code']}?utm_source=s{i}", key=None)
    api.get(f"/r/{member['code']}?utm_source=s0", key=None)
    counts = api.get(f"/v1/programs/{pid}/members/{member['member_id']}").body["counts"]
    assert counts["clicks"] == 7
    assert counts["clicks_by_utm_source"] == {"s0": 2, "s1": 1, "s2": 1, counters.OTHER_SOURCE: 3}


def test_click_detail_expires_and_totals_do_not(api: ApiClient) -> None:
    program = api.create_program()
    pid = program["program_id"]
    partner = api.create_partner(pid)
    member = api.processed(partner, {"type": "member.signup", "occurred_at": "2026-01-10T10:00:00Z",
                                     "object": {"type": "customer", "id": "c1"}, "customer": {"id": "c1"}})["member"]
    api.get(f"/r/{member['code']}", key=None)
    (day,) = counters.click_counters(pid, member["code"])
    assert day.expires_at_epoch is not None
    total = counters.ClickTotalItem.get(*keys.click_total(pid, member["code"]))
    assert int(total.clicks) == 1 and getattr(total, "expires_at_epoch", None) is None


def test_event_records_have_no_ttl_dedupe_is_permanent(api: ApiClient) -> None:
    """Exactly-once dedupe is on the business key for good: no event record carries the TTL attribute."""
    from chalicelib.store.db import Entity, raw_client
    from chalicelib.store.tables import TTL_ATTRIBUTE

    ttl = raw_client().describe_time_to_live(TableName=Entity.Meta.table_name)["TimeToLiveDescription"]
    assert ttl["AttributeName"] == TTL_ATTRIBUTE  # the attribute DynamoDB deletes items by
    program = api.create_program()
    pid = program["program_id"]
    partner = api.create_partner(pid)
    assert api.put(f"/v1/programs/{pid}/rules", {"hold_days": 0, "rules": [
        {"id": "cashback", "trigger": {"event": "order.paid"}, "recipient": {"type": "self"},
         "amount": {"rate_bp": 500}}]}).status == 200
    api.processed(partner, {"type": "member.signup", "occurred_at": "2026-01-10T10:00:00Z",
                            "object": {"type": "customer", "id": "c1"}, "customer": {"id": "c1"}})
    api.processed(partner, {"type": "order.paid", "occurred_at": "2026-01-15T10:00:00Z",
                            "object": {"type": "order", "id": "o-1"}, "customer": {"id": "c1"},
                            "order": {"total": 100_000, "currency": "RUB"}})
    api.processed(partner, {"type": "order.refunded", "occurred_at": "2026-01-16T10:00:00Z",
                            "object": {"type": "refund", "id": "r-1"},
                            "refund": {"amount": 40_000, "currency": "RUB", "order_id": "o-1"}})
    api.processed(partner, {"type": "order.refunded", "occurred_at": "2026-01-16T10:00:00Z",
                            "object": {"type": "refund", "id": "r-2"},
                            "refund": {"amount": 1_000, "currency": "RUB", "order_id": "late"}})  # parked
    records = [i for i in raw_client().scan(TableName=Entity.Meta.table_name)["Items"]
               if i.get("entity", {}).get("S") == "event" and i["PK"]["S"].startswith(f"EVENT#{pid}#")]
    assert len(records) == 4, records
    assert [r for r in records if TTL_ATTRIBUTE in r] == []


def test_partner_and_key_lists_page(api: ApiClient) -> None:
    program = api.create_program()
    pid = program["program_id"]
    made = {api.create_partner(pid, name=f"Shop {i}")["partner_id"] for i in range(5)}
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        reply = api.get(f"/v1/programs/{pid}/partners?limit=2" + (f"&cursor={cursor}" if cursor else ""))
        assert reply.status == 200, reply.body
        assert len(reply.body["items"]) <= 2
        seen += [p["partner_id"] for p in reply.body["items"]]
        pages += 1
        cursor = reply.body["next_cursor"]
        if not cursor:
            break
    assert set(seen) == made and len(seen) == 5 and pages >= 3
    keys_page = api.get(f"/v1/programs/{pid}/keys?limit=1")
    assert keys_page.status == 200 and len(keys_page.body["items"]) == 1 and keys_page.body["next_cursor"]
    other = api.create_program()
    foreign = api.get(f"/v1/programs/{other['program_id']}/partners?cursor={keys_page.body['next_cursor']}")
    assert foreign.status == 400 and foreign.error_code == "invalid_cursor"


def test_rules_naming_partners_read_only_those_partners(api: ApiClient, reads: ItemsRead) -> None:
    program = api.create_program()
    pid = program["program_id"]
    partners = [api.create_partner(pid, name=f"Shop {i}") for i in range(4)]
    doc = {"rules": [{"id": "cashback", "trigger": {"event": "order.paid", "partners": [partners[0]["partner_id"]]},
                      "recipient": {"type": "self"}, "amount": {"rate_bp": 500}}]}
    reads.items, reads.calls = 0, []
    assert api.put(f"/v1/programs/{pid}/rules", doc).status == 200
    assert "Query" not in reads.calls
    bad = {"rules": [{**doc["rules"][0], "trigger": {"event": "order.paid", "partners": ["ptn_nobody"]}}]}
    reply = api.put(f"/v1/programs/{pid}/rules", bad)
    assert reply.status == 422 and "ptn_nobody" in reply.body["error"]["details"]["errors"][0]["message"]


def test_settlement_statement_reads_at_most_its_maximum_of_rows(api: ApiClient, reads: ItemsRead,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A statement reads the period's aggregate rows up to ``MAX_STATEMENT_ROWS``; a period holding more is a 400
    after ``MAX_STATEMENT_ROWS + 1`` rows read, whatever the number of rows stored (items counted, not timed)."""
    from datetime import date, timedelta

    from chalicelib.services import settlement
    from chalicelib.store.settlement import SettlementRowItem

    monkeypatch.setattr(settlement, "MAX_STATEMENT_ROWS", 30)
    program = api.create_program()
    pid = program["program_id"]
    with SettlementRowItem.batch_write() as batch:  # 40 days of 3 partners, 1 pair: 160 rows (setup, not the feed)
        for i in range(40):
            day = (date(2026, 1, 1) + timedelta(days=i)).isoformat()
            for row, partner, at in (("PARTNER#ptn_a", "ptn_a", None), ("PARTNER#ptn_b", "ptn_b", None),
                                     ("PARTNER#ptn_c", "ptn_c", None), ("PAIR#ptn_a#ptn_b", "ptn_a", "ptn_b")):
                pk, sk = keys.settlement_row(pid, day, row)
                batch.save(SettlementRowItem(PK=pk, SK=sk, program_id=pid, day=day, partner_id=partner,
                                             at_partner_id=at, funded=0 if at else 10, points=5 if at else 0))
    path = f"/v1/programs/{pid}/settlement"
    api.get(f"{path}?from=2026-01-01&to=2026-01-01")  # warm the configuration cache

    reads.items, reads.calls = 0, []
    week = api.get(f"{path}?from=2026-01-01&to=2026-01-07")  # 28 rows: under the maximum
    assert week.status == 200, week.body
    assert [(p["partner_id"], p["funded"]) for p in week.body["partners"]] == [
        ("ptn_a", 70), ("ptn_b", 70), ("ptn_c", 70)]
    assert [p["points"] for p in week.body["pairs"]] == [35]
    assert reads.calls.count("Query") == 1 and reads.items <= 28 + 1  # the rows, and the program (cached)

    for period in ("from=2026-01-01&to=2026-01-08", "from=2026-01-01&to=2026-02-09"):  # 32 and 160 rows
        reads.items, reads.calls = 0, []
        refused = api.get(f"{path}?{period}")
        assert refused.status == 400, refused.body
        assert refused.body["error"]["code"] == "invalid_query"
        assert refused.body["error"]["details"] == {"parameter": "to", "limit": 30}
        assert reads.items <= 30 + 1 + 1, reads.calls  # the maximum + 1 rows (+ the program), never all 160
