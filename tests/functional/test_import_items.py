"""The member import's bulk path (``store.import_items``) writes what the PynamoDB models write.

Each row is staged twice, through the raw operations and through the models (``importer.RAW_ROWS``), with the
same ids, codes and clock; the operations DynamoDB would receive (items, conditions, update expressions, in the
order sent) must be equal. Then an import through the API with either path leaves the same table.
"""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from chalicelib.domain.member_import import ImportRow
from chalicelib.services import importer
from chalicelib.store import tenancy_repo
from tests.functional.test_ledger_support import Shop
from tests.support import CLOCK, ApiClient

NOW = datetime(2026, 3, 4, 5, 6, 7, 890123, tzinfo=UTC)

ROWS = [
    ImportRow(line=2, email="anna@example.com", phone="+79161112233", customer_id="c-1", name="Анна Петрова",
              code="ANNA2020", opening_balance=1490),
    ImportRow(line=3, email="boris@example.com", customer_id="c-2", opening_balance=0, referrer_code="ANNA2020"),
    ImportRow(line=4, phone="+79162223344", name="Carl", opening_balance=7, referrer_customer_id="c-2",
              locale="en", joined_at=datetime(2020, 1, 2, 3, 4, 5, tzinfo=UTC)),
    ImportRow(line=5, customer_id="c-4", name=" ", opening_balance=5, referrer_customer_id="c-2"),
    ImportRow(line=6, email="dora@example.com", opening_balance=3, referrer_code="ANNA2020"),
]


def _rows(partner_id: str | None) -> list[ImportRow]:
    """Without a partner, customer ids name nobody: those rows' referrers cannot be found."""
    return [r for r in ROWS if partner_id or not r.referrer_customer_id]


def _staged(program_id: str, partner_id: str | None, raw: bool, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    ids, codes = itertools.count(1), itertools.count(1)
    monkeypatch.setattr(importer, "new_id", lambda prefix: f"{prefix}_{next(ids):016d}")
    monkeypatch.setattr(importer, "generate_code", lambda: f"GEN{next(codes):08d}")
    monkeypatch.setattr(importer, "RAW_ROWS", raw)
    program = tenancy_repo.get_program(program_id)
    chunk = importer._Chunk(program, partner_id, importer.ChunkResult())
    chunk.now = NOW
    out = []
    for row in _rows(partner_id):
        staged = chunk.stage_row(row)
        chunk.remember(staged)
        out.append(staged.tx.wire_operations())
    return out


@pytest.mark.parametrize("with_partner", [True, False])
def test_the_raw_operations_are_what_the_models_write(api: ApiClient, monkeypatch: pytest.MonkeyPatch,
                                                      with_partner: bool) -> None:
    shop = Shop(api, "uds_3_level")
    partner = shop.partner["partner_id"] if with_partner else None
    raw = _staged(shop.pid, partner, True, monkeypatch)
    models = _staged(shop.pid, partner, False, monkeypatch)
    assert len(raw) == len(_rows(partner)) >= 3
    for row, ours, theirs in zip(_rows(partner), raw, models, strict=True):
        assert ours == theirs, f"line {row.line}"
    # The raw path was taken (no model object staged) and every kind of item is there.
    assert sum(len(ops) for ops in raw[0]) == (9 if with_partner else 8)


def test_an_import_writes_the_same_table_either_way(api: ApiClient, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.functional.test_data_rights_erasure import scan_test_table

    csv = ("email,phone,customer_id,name,birthday,code,opening_balance,referrer_code,referrer_customer_id\n"
           "anna@example.com,+79161112233,c-1,Анна,,ANNA-{n},1490.00,,\n"
           "boris@example.com,,c-2,Борис,1990-05-06,,300,ANNA-{n},\n"
           ",+79162223344,c-3,,,,0,,c-2\n")
    tables = []
    for raw, start in ((True, 1), (False, 1001)):  # codes are unique deployment-wide (short links)
        ids, codes = itertools.count(start), itertools.count(start)
        monkeypatch.setattr(importer, "new_id", lambda prefix, ids=ids: f"{prefix}_{next(ids):016d}")
        monkeypatch.setattr(importer, "generate_code", lambda codes=codes: f"GEN{next(codes):08d}")
        monkeypatch.setattr(importer, "RAW_ROWS", raw)
        shop = Shop(api, None)
        before = {json.dumps(i, sort_keys=True) for i in scan_test_table()}
        reply = api.post(f"/v1/programs/{shop.pid}/imports/members",
                         {"csv": csv.format(n=start), "partner_id": shop.partner["partner_id"]})
        assert reply.status == 200 and reply.body["imported"] == 3, reply.body["errors"]
        written = [json.loads(i) for i in {json.dumps(i, sort_keys=True) for i in scan_test_table()} - before]
        text = json.dumps(sorted(written, key=lambda i: json.dumps(i, sort_keys=True)), sort_keys=True)
        for name, value in ((shop.pid, "PRG"), (shop.partner["partner_id"], "PTN")):
            text = text.replace(name, value)
        tables.append(text)
    # Identity hashes are salted by program id, ids and times differ: compare the shapes item by item.
    ours, theirs = json.loads(tables[0]), json.loads(tables[1])
    assert len(ours) == len(theirs) >= 24
    assert sorted(sorted(i) for i in ours) == sorted(sorted(i) for i in theirs)


def test_imported_members_are_counted_once_by_the_import_itself(api: ApiClient) -> None:
    """The import's transactions add the signups (by the members' join day, channel ``import``, the members
    total); the stream's analytics consumer skips those members (``signup_counted``), however often the stream
    is read; a re-run of the file adds nothing; a member who joins otherwise is still counted by the stream."""
    from chalicelib.analytics.store import get, partition
    from tests.notify_support import stream_poller

    shop = Shop(api, None)
    pid, partner = shop.pid, shop.partner["partner_id"]
    csv = ("email,customer_id,name,opening_balance,referrer_customer_id\n"
           + "".join(f"m{i}@example.com,c-{i},M {i},{i},{'c-0' if i % 3 == 2 else ''}\n" for i in range(40)))
    stream_poller().drain()

    def figures() -> tuple[Any, ...]:
        day = get(partition(pid, "DAY"), "2026-01-15") or {}
        channel = get(partition(pid, "CHDAY"), "2026-01-15#ch#import") or {}
        total = get(partition(pid, "TOTAL"), "TOTAL") or {}
        return day.get("signups"), day.get("signups_referred"), channel.get("signups"), total.get("members")

    from tests.functional.test_ledger_support import utc
    CLOCK.set(utc("2026-01-15T12:00:00Z"))
    before = figures()
    reply = api.post(f"/v1/programs/{pid}/imports/members", {"csv": csv, "partner_id": partner})
    assert reply.status == 200 and reply.body["imported"] == 40, reply.body
    counted = figures()
    assert counted[:3] == (40, 13, 40) and counted[3] == (before[3] or 0) + 40  # before the stream is read
    stream_poller().drain()
    stream_poller().drain()  # a second consumer from the start of the stream: every record again
    assert figures() == counted
    again = api.post(f"/v1/programs/{pid}/imports/members", {"csv": csv, "partner_id": partner}).body
    assert again["already_imported"] == 40
    stream_poller().drain()
    assert figures() == counted
    shop.member("zoe", at="2026-01-15T13:00:00Z")  # a signup through the API: the stream counts it
    stream_poller().drain()
    assert figures()[0] == 41
