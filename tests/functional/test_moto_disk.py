"""moto's DynamoDB with its items on disk (``infra/moto_disk.py``) answers what moto's own dict answers.

Each test drives two tables in the same moto through the same random sequence of every DynamoDB
operation the app uses: one table keeps its items in the disk store with a working set of 3 items (so
nearly everything is read back from the file), the other in moto's plain ``defaultdict``. Every answer,
every stream record, the TTL sweep, ``DescribeTable``'s count and a deep copy must be the same.
"""

from __future__ import annotations

import contextlib
import copy
import random
import sqlite3
from collections import defaultdict
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from botocore.exceptions import ClientError

from infra import moto_disk, moto_tuning

DISK, PLAIN = "disk-table", "plain-table"
ACCOUNT, REGION = "123456789012", "eu-central-1"


def _backend() -> Any:
    from moto.dynamodb.models import dynamodb_backends

    return dynamodb_backends[ACCOUNT][REGION]


@pytest.fixture
def ddb(aws_env: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    import boto3
    from moto import mock_aws

    monkeypatch.setattr(moto_disk, "HOT_ITEMS", 3)
    monkeypatch.setattr(moto_disk, "CHUNK", 2)  # walks of the file cross chunk boundaries
    with mock_aws():
        moto_tuning.apply()
        client = boto3.client("dynamodb", region_name=REGION)
        for name in (DISK, PLAIN):
            client.create_table(
                TableName=name, BillingMode="PAY_PER_REQUEST",
                KeySchema=[{"AttributeName": "PK", "KeyType": "HASH"}, {"AttributeName": "SK", "KeyType": "RANGE"}],
                AttributeDefinitions=[{"AttributeName": n, "AttributeType": "S"} for n in ("PK", "SK", "G", "GR")],
                GlobalSecondaryIndexes=[
                    {"IndexName": "ByG", "KeySchema": [{"AttributeName": "G", "KeyType": "HASH"},
                                                       {"AttributeName": "GR", "KeyType": "RANGE"}],
                     "Projection": {"ProjectionType": "ALL"}}],
                StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
            )
            client.update_time_to_live(TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": "exp"})
        tables = _backend().tables
        assert moto_disk.is_disk(tables[DISK].items)
        tables[PLAIN].items = defaultdict(dict)  # moto's own store
        assert not moto_disk.is_disk(tables[PLAIN].items)
        yield client


def _call(client: Any, operation: str, **kwargs: Any) -> Any:
    """The answer (or the error's code and cancellation reasons), without what differs by table name."""
    try:
        answer = getattr(client, operation)(**kwargs)
    except ClientError as error:
        return {"error": error.response["Error"]["Code"],
                "reasons": [r.get("Code") for r in error.response.get("CancellationReasons", [])]}
    answer.pop("ResponseMetadata", None)
    answer.pop("ConsumedCapacity", None)
    if "Responses" in answer:  # BatchGetItem: keyed by table name, in no particular order
        answer["Responses"] = {"t": sorted(map(repr, next(iter(answer["Responses"].values()), [])))}
    if "UnprocessedItems" in answer:
        answer["UnprocessedItems"] = list(answer["UnprocessedItems"].values())
    if "UnprocessedKeys" in answer:
        answer["UnprocessedKeys"] = list(answer["UnprocessedKeys"].values())
    table = answer.get("Table") or answer.get("TableDescription")
    if table:
        answer = {"ItemCount": table["ItemCount"]}
    return answer


def _key(rng: random.Random) -> dict[str, Any]:
    return {"PK": {"S": f"p{rng.randrange(5)}"}, "SK": {"S": f"s{rng.randrange(8):02d}"}}


def _attrs(rng: random.Random) -> dict[str, Any]:
    attrs: dict[str, Any] = {"n": {"N": str(rng.randrange(100))}, "doc": {"M": {"a": {"L": [{"S": "x"}, {"N": "1"}]},
                                                                              "b": {"BOOL": rng.random() < 0.5}}}}
    if rng.random() < 0.7:
        attrs["G"] = {"S": f"g{rng.randrange(3)}"}
        attrs["GR"] = {"S": f"r{rng.randrange(6)}"}
    if rng.random() < 0.3:
        attrs["exp"] = {"N": str(1000 + rng.randrange(1000))}
    if rng.random() < 0.2:
        attrs["blob"] = {"B": bytes([rng.randrange(256) for _ in range(4)])}
    return attrs


def _pages(client: Any, operation: str, **kwargs: Any) -> list[Any]:
    pages = []
    while True:
        answer = _call(client, operation, **kwargs)
        pages.append(answer)
        start = answer.get("LastEvaluatedKey")
        if not start or len(pages) > 50:
            return pages
        kwargs["ExclusiveStartKey"] = start


def _operation(rng: random.Random) -> tuple[str, Any]:
    """One random operation as ``(kind, arguments)``, the table name left out."""
    roll = rng.randrange(13)
    key = _key(rng)
    if roll == 0:
        item = {**key, **_attrs(rng)}
        extra = {"ConditionExpression": "attribute_not_exists(PK)"} if rng.random() < 0.4 else {}
        return "put_item", {"Item": item, "ReturnValues": rng.choice(["NONE", "ALL_OLD"]), **extra}
    if roll == 1:
        return "get_item", {"Key": key, **({"ProjectionExpression": "PK, n"} if rng.random() < 0.3 else {})}
    if roll == 2:
        expression = rng.choice(["SET #n = :n", "ADD #n :n", "REMOVE #n", "SET #n = :n, G = :g, GR = :g",
                                 "SET doc.b = :b"])
        values: dict[str, Any] = {}
        if ":n" in expression:
            values[":n"] = {"N": str(rng.randrange(10))}
        if ":g" in expression:
            values[":g"] = {"S": f"g{rng.randrange(3)}"}
        if ":b" in expression:
            values[":b"] = {"BOOL": True}
        names = {"#n": "n"} if "#n" in expression else {}
        kwargs: dict[str, Any] = {"Key": key, "UpdateExpression": expression,
                                  "ReturnValues": rng.choice(["NONE", "ALL_NEW", "ALL_OLD", "UPDATED_NEW"])}
        if names:
            kwargs["ExpressionAttributeNames"] = names
        if rng.random() < 0.4:
            kwargs["ConditionExpression"] = "attribute_exists(PK)"
        if values:
            kwargs["ExpressionAttributeValues"] = values
        return "update_item", kwargs
    if roll == 3:
        extra = {"ConditionExpression": "n < :x", "ExpressionAttributeValues": {":x": {"N": "50"}}} \
            if rng.random() < 0.4 else {}
        return "delete_item", {"Key": key, "ReturnValues": rng.choice(["NONE", "ALL_OLD"]), **extra}
    if roll == 4:
        writes: list[dict[str, Any]] = []
        keys = {repr(key): key}
        while len(keys) < rng.randrange(2, 5):
            other = _key(rng)
            keys[repr(other)] = other
        writes_only = rng.random() < 0.4  # puts and updates only: moto_tuning's fast transaction path
        for one in keys.values():
            kind = rng.randrange(2 if writes_only else 4)
            if kind == 0:  # with a condition half the time (moto_tuning's own path for a transaction's puts)
                put: dict[str, Any] = {"Item": {**one, **_attrs(rng)}}
                if rng.random() < 0.5:
                    put["ConditionExpression"] = "attribute_not_exists(PK)"
                writes.append({"Put": put})
            elif kind == 1:
                update: dict[str, Any] = {"Key": one, "UpdateExpression": "ADD n :one",
                                          "ExpressionAttributeValues": {":one": {"N": "1"}}}
                if rng.random() < 0.3:
                    update["ConditionExpression"] = "attribute_exists(PK)"
                writes.append({"Update": update})
            elif kind == 2:
                writes.append({"Delete": {"Key": one}})
            else:  # fails when the item is missing: the whole transaction is cancelled
                writes.append({"ConditionCheck": {"Key": one, "ConditionExpression": "attribute_exists(PK)"}})
        return "transact_write_items", writes
    if roll in (5, 6):
        kwargs = {"KeyConditionExpression": "PK = :p", "ExpressionAttributeValues": {":p": key["PK"]},
                  "Limit": rng.randrange(1, 5), "ScanIndexForward": rng.random() < 0.5}
        shape = rng.randrange(3)
        if shape == 1:
            kwargs["KeyConditionExpression"] += " AND SK BETWEEN :a AND :b"
            kwargs["ExpressionAttributeValues"].update({":a": {"S": "s02"}, ":b": {"S": "s06"}})
        elif shape == 2:
            kwargs["FilterExpression"] = "n > :m"
            kwargs["ExpressionAttributeValues"][":m"] = {"N": "30"}
        return "query", kwargs
    if roll == 7:
        kwargs = {"IndexName": "ByG", "KeyConditionExpression": "G = :g",
                  "ExpressionAttributeValues": {":g": {"S": f"g{rng.randrange(3)}"}}, "Limit": rng.randrange(1, 6),
                  "ScanIndexForward": rng.random() < 0.5}
        if rng.random() < 0.5:
            kwargs["KeyConditionExpression"] += " AND GR > :r"
            kwargs["ExpressionAttributeValues"][":r"] = {"S": "r2"}
        return "query", kwargs
    if roll == 8:
        kwargs = {"Limit": rng.randrange(1, 9)}
        if rng.random() < 0.4:
            kwargs.update(FilterExpression="attribute_exists(G)")
        return "scan", kwargs
    if roll == 9:
        wanted = {repr(k): k for k in (_key(rng) for _ in range(rng.randrange(1, 8)))}
        return "batch_get_item", list(wanted.values())
    if roll == 10:
        requests: dict[str, Any] = {}
        for _ in range(rng.randrange(1, 6)):
            one = _key(rng)
            requests[repr(one)] = ({"PutRequest": {"Item": {**one, **_attrs(rng)}}} if rng.random() < 0.6
                                   else {"DeleteRequest": {"Key": one}})
        return "batch_write_item", list(requests.values())
    if roll == 11:
        return "describe_table", {}
    return "sweep", {"now": 1000 + rng.randrange(1200)}


def _run(client: Any, table: str, kind: str, arguments: Any) -> Any:
    if kind == "transact_write_items":
        items = [{op: {**body, "TableName": table}} for entry in arguments for op, body in entry.items()]
        return _call(client, kind, TransactItems=items)
    if kind == "batch_get_item":
        return _call(client, kind, RequestItems={table: {"Keys": arguments}})
    if kind == "batch_write_item":
        return _call(client, kind, RequestItems={table: arguments})
    if kind == "describe_table":
        return _call(client, kind, TableName=table)
    if kind in ("query", "scan"):
        return _pages(client, kind, TableName=table, **copy.deepcopy(arguments))
    return _call(client, kind, TableName=table, **copy.deepcopy(arguments))


def _records(table: Any, start: int = 0) -> list[Any]:
    out = []
    for record in table.stream_shard.items[start:]:
        data = record.to_json()
        inner = data["dynamodb"]
        out.append((data["eventName"], repr(inner["Keys"]), repr(inner.get("NewImage")), repr(inner.get("OldImage")),
                    repr(data.get("userIdentity"))))
    return out


def _sweep(now: int) -> dict[str, list[Any]]:
    """Both tables swept to the end; the REMOVE records each got (the two stores walk in different orders)."""
    tables = _backend().tables
    before = {name: len(tables[name].stream_shard.items) for name in (DISK, PLAIN)}
    moto_tuning._sweep_cursors.clear()
    moto_tuning.sweep_expired(now=now, budget=10**6)
    return {name: sorted(_records(tables[name], before[name])) for name in (DISK, PLAIN)}


@pytest.mark.parametrize("seed", range(6))
def test_every_operation_answers_as_motos_own_store(ddb: Any, seed: int) -> None:
    rng = random.Random(seed)
    tables = _backend().tables
    for step in range(160):
        kind, arguments = _operation(rng)
        if kind == "sweep":
            swept = _sweep(arguments["now"])
            assert swept[DISK] == swept[PLAIN], (step, kind)
            continue
        disk, plain = _run(ddb, DISK, kind, arguments), _run(ddb, PLAIN, kind, arguments)
        assert disk == plain, (step, kind, arguments)
        assert len(tables[DISK].items.hot) <= 3 + 10  # the request's own items, then cut back to 3
    # the stream: every record of the operations (the sweeps' compared above)
    assert [r for r in _records(tables[DISK]) if "Service" not in r[4]] == \
        [r for r in _records(tables[PLAIN]) if "Service" not in r[4]]
    whole = _pages(ddb, "scan", TableName=DISK)
    assert whole == _pages(ddb, "scan", TableName=PLAIN)
    assert _call(ddb, "describe_table", TableName=DISK) == _call(ddb, "describe_table", TableName=PLAIN)
    # a deep copy (the test fixtures' table_snapshot/restore_table) is a separate store with the same items
    clone = copy.deepcopy(tables[DISK])
    copied = [i.to_json() for i in clone.all_items()]
    assert copied == [i.to_json() for i in tables[DISK].all_items()]
    assert len(copied) == sum(len(page["Items"]) for page in whole)
    ddb.put_item(TableName=DISK, Item={"PK": {"S": "new"}, "SK": {"S": "new"}})
    assert [i.to_json() for i in clone.all_items()] == copied


def test_the_store_keeps_only_the_working_set_as_objects(ddb: Any) -> None:
    """After each request at most the working set's items are objects; the rest are rows in the file."""
    for i in range(40):
        ddb.put_item(TableName=DISK, Item={"PK": {"S": "p"}, "SK": {"S": f"{i:03d}"}, "n": {"N": str(i)}})
    store = _backend().tables[DISK].items
    assert len(store.hot) == 3 and store.count_items() == 40
    # an item updated in place and then evicted is read back as updated
    ddb.update_item(TableName=DISK, Key={"PK": {"S": "p"}, "SK": {"S": "000"}}, UpdateExpression="ADD n :one",
                    ExpressionAttributeValues={":one": {"N": "5"}})
    for i in range(1, 10):
        ddb.get_item(TableName=DISK, Key={"PK": {"S": "p"}, "SK": {"S": f"{i:03d}"}})
    answer = ddb.get_item(TableName=DISK, Key={"PK": {"S": "p"}, "SK": {"S": "000"}})
    assert answer["Item"]["n"] == {"N": "5"}
    assert ddb.describe_table(TableName=DISK)["Table"]["ItemCount"] == 40


def test_a_table_without_a_range_key(ddb: Any) -> None:
    from moto.dynamodb.models.table import Table

    for name in ("kv-disk", "kv-plain"):
        ddb.create_table(TableName=name, BillingMode="PAY_PER_REQUEST",
                         KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                         AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "N"}])
    _backend().tables["kv-plain"].items = defaultdict(dict)
    rng = random.Random(3)
    for _ in range(120):
        key = {"id": {"N": rng.choice(["1", "2", "3", "10", "-4", "2.5", "100"])}}
        roll = rng.randrange(5)
        if roll == 0:
            answers = [_call(ddb, "put_item", TableName=n, Item={**key, "v": {"S": "x"}}, ReturnValues="ALL_OLD")
                       for n in ("kv-disk", "kv-plain")]
        elif roll == 1:
            answers = [_call(ddb, "update_item", TableName=n, Key=key, UpdateExpression="ADD v2 :o",
                             ExpressionAttributeValues={":o": {"N": "1"}}, ReturnValues="ALL_NEW")
                       for n in ("kv-disk", "kv-plain")]
        elif roll == 2:
            answers = [_call(ddb, "delete_item", TableName=n, Key=key, ReturnValues="ALL_OLD")
                       for n in ("kv-disk", "kv-plain")]
        elif roll == 3:
            answers = [_pages(ddb, "scan", TableName=n, Limit=2) for n in ("kv-disk", "kv-plain")]
        else:
            answers = [_call(ddb, "get_item", TableName=n, Key=key) for n in ("kv-disk", "kv-plain")]
        assert answers[0] == answers[1]
    assert isinstance(_backend().tables["kv-disk"], Table) and moto_disk.is_disk(_backend().tables["kv-disk"].items)


def test_the_ttl_sweep_goes_round_a_disk_table_in_steps(ddb: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Small steps and budgets: the sweep's position in the file carries over between calls, and it deletes
    what the sweep of moto's own dict deletes."""
    monkeypatch.setattr(moto_tuning, "SWEEP_STEP", 3)
    rng = random.Random(11)
    for i in range(60):
        item = {"PK": {"S": f"p{i % 13}"}, "SK": {"S": f"s{i:02d}"}, "exp": {"N": str(rng.choice([100, 5000]))}}
        for name in (DISK, PLAIN):
            ddb.put_item(TableName=name, Item=item)
    moto_tuning._sweep_cursors.clear()
    # (one budget for both tables, the first one's pass first: moto_tuning's order, so many calls)
    removed = sum(moto_tuning.sweep_expired(now=1000, budget=5) for _ in range(400))
    assert _pages(ddb, "scan", TableName=DISK) == _pages(ddb, "scan", TableName=PLAIN)
    left = [i for page in _pages(ddb, "scan", TableName=DISK) for i in page["Items"]]
    assert left and all(i["exp"]["N"] == "5000" for i in left)
    assert removed == 2 * (60 - len(left))  # every expired item of both tables, each once
    assert sorted(_records(_backend().tables[DISK])) == sorted(_records(_backend().tables[PLAIN]))


def test_a_deleted_tables_rows_leave_the_file(ddb: Any) -> None:
    import gc

    ddb.put_item(TableName=DISK, Item={"PK": {"S": "p"}, "SK": {"S": "s"}})
    name = _backend().tables[DISK].items.name
    ddb.delete_table(TableName=DISK)
    gc.collect()
    ddb.create_table(TableName="another", BillingMode="PAY_PER_REQUEST",  # a new store drops the old ones' tables
                     KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                     AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}])
    with moto_tuning.ENGINE_LOCK:
        names = {row[0] for row in moto_disk._connection().execute("SELECT name FROM sqlite_master")}
    assert f"i{name}" not in names and f"x{name}" not in names
    assert f"i{_backend().tables['another'].items.name}" in names


def _kv_pair(client: Any, base: str, key_type: str = "S", **extra: Any) -> tuple[str, str]:
    """Two tables keyed by ``id`` (of ``key_type``): ``<base>-disk`` on the disk store, ``<base>-plain`` moto's dict."""
    names = (f"{base}-disk", f"{base}-plain")
    definitions = [{"AttributeName": "id", "AttributeType": key_type}, *extra.pop("definitions", [])]
    for name in names:
        client.create_table(TableName=name, BillingMode="PAY_PER_REQUEST",
                            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                            AttributeDefinitions=definitions, **extra)
    _backend().tables[names[1]].items = defaultdict(dict)
    assert moto_disk.is_disk(_backend().tables[names[0]].items)
    return names


def test_the_file_is_gone_from_disk_once_opened(ddb: Any) -> None:
    """The store's file is unlinked as soon as it is open (the local run ends with ``os._exit``, a killed process
    runs no cleanup): no ``sarafan-moto-*`` path of this process is left, and the store still works."""
    import os
    import tempfile

    fds = "/proc/self/fd"
    if not os.path.isdir(fds):
        pytest.skip("needs /proc/self/fd")
    for i in range(30):  # past the working set of 3: most reads come back from the file
        ddb.put_item(TableName=DISK, Item={"PK": {"S": "p"}, "SK": {"S": f"{i:03d}"}, "v": {"S": "x" * 3000}})
    answers = [ddb.get_item(TableName=DISK, Key={"PK": {"S": "p"}, "SK": {"S": f"{i:03d}"}})["Item"]["SK"]["S"]
               for i in range(30)]
    assert answers == [f"{i:03d}" for i in range(30)]
    targets = []
    for fd in os.listdir(fds):
        with contextlib.suppress(OSError):
            targets.append(os.readlink(os.path.join(fds, fd)))
    ours = [t for t in targets if "sarafan-moto-" in t]
    assert ours and all(t.endswith("(deleted)") for t in ours), ours  # open, but no longer on disk
    for target in ours:
        directory = os.path.dirname(target)
        assert directory.startswith(tempfile.gettempdir()) and not os.path.exists(directory)


def _fill_disk() -> Any:
    """The file system is full from here on (sqlite's page limit at the file's size); call the result to undo."""
    with moto_tuning.ENGINE_LOCK:
        conn = moto_disk._connection()
        conn.execute("CREATE TABLE filler (data BLOB)")  # the free pages earlier tests' dropped tables left
        while conn.execute("PRAGMA freelist_count").fetchone()[0]:
            conn.execute("INSERT INTO filler VALUES (zeroblob(4000))")
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count={pages}")

    def undo() -> None:
        with moto_tuning.ENGINE_LOCK:
            conn.execute("PRAGMA max_page_count=1073741823")
            conn.execute("DROP TABLE filler")

    return undo


def test_a_failed_write_through_is_not_lost(ddb: Any) -> None:
    """The disk full at a request's end: the request fails, and the write is kept (touched, in the working set)
    until the file takes it: read back after eviction it is the new value, as moto's own dict answers."""
    names = _kv_pair(ddb, "full")
    for name in names:
        for key in ("a", "b"):
            ddb.put_item(TableName=name, Item={"id": {"S": key}, "v": {"S": "old"}})
    update = {"Key": {"id": {"S": "a"}}, "UpdateExpression": "SET v = :v",
              "ExpressionAttributeValues": {":v": {"S": "new" + "x" * 60000}}}
    undo = _fill_disk()
    try:
        with pytest.raises(sqlite3.OperationalError):
            ddb.update_item(TableName=names[0], **update)
        with pytest.raises(sqlite3.OperationalError):  # still full: the write is tried again, and fails again
            ddb.get_item(TableName=names[0], Key={"id": {"S": "b"}})
    finally:
        undo()
    ddb.update_item(TableName=names[1], **update)
    for name in names:  # later requests: "a" is evicted from the working set of 3
        for key in "cdef":
            ddb.put_item(TableName=name, Item={"id": {"S": key}, "v": {"S": "y"}})
            ddb.get_item(TableName=name, Key={"id": {"S": key}})
    store = _backend().tables[names[0]].items
    assert ("a", "") not in store.hot and not store.touched
    disk, plain = (ddb.get_item(TableName=n, Key={"id": {"S": "a"}})["Item"] for n in names)
    assert disk == plain and disk["v"]["S"].startswith("newx")
    assert _pages(ddb, "scan", TableName=names[0]) == _pages(ddb, "scan", TableName=names[1])


def test_one_stores_failed_write_through_does_not_stop_the_others(ddb: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = _kv_pair(ddb, "one")[0], _kv_pair(ddb, "two")[0]
    stores = [_backend().tables[name].items for name in (first, second)]
    real = moto_disk.DiskItems._write

    def failing(self: Any, *args: Any) -> None:
        if self is stores[0]:
            raise sqlite3.OperationalError("database or disk is full")
        real(self, *args)

    monkeypatch.setattr(moto_disk.DiskItems, "_write", failing)
    with pytest.raises(sqlite3.OperationalError):
        ddb.transact_write_items(TransactItems=[{"Put": {"TableName": name, "Item": {"id": {"S": "k"}}}}
                                                for name in (first, second)])
    assert list(moto_disk._touched_stores.values()) == [stores[0]] and stores[0].touched
    assert not stores[1].touched and stores[1].count_items() == 1
    monkeypatch.setattr(moto_disk.DiskItems, "_write", real)
    assert stores[0].count_items() == 1 and not stores[0].touched
    for name in (first, second):
        assert ddb.get_item(TableName=name, Key={"id": {"S": "k"}})["Item"] == {"id": {"S": "k"}}


NUMBERS = ["-12345678901234567891", "-12345678901234567890", "10000000000000000.5", "9999999999999999.9", "1", "2",
           "0", "-0.1", "-0.11", "0.1", "0.11", "1E-130", "-1E-130", "9.99E+125", "-9.99E+125", "12345678901234567890123456789012345678",
           "12345678901234567890123456789012345677", "-7.5", "100"]


def test_number_keys_keep_motos_exact_order(ddb: Any) -> None:
    """Numbers that collide as floats (beyond 17 digits) are in moto's ``Decimal`` order: paged scans of a
    numeric hash key, and queries of a numeric range key, return every item in the same order."""
    rng = random.Random(5)
    numbers = NUMBERS + [str(rng.randrange(-10**30, 10**30)) + rng.choice(["", ".5", "E-3", "E7"]) for _ in range(20)]
    names = _kv_pair(ddb, "num", "N")
    for name in names:
        for number in numbers:
            ddb.put_item(TableName=name, Item={"id": {"N": number}})
    for limit in (1, 2, 7):
        disk, plain = (_pages(ddb, "scan", TableName=n, Limit=limit) for n in names)
        assert disk == plain
        assert sum(len(page["Items"]) for page in disk) == len(set(map(Decimal, numbers)))
    ranged = ("rng-disk", "rng-plain")
    for name in ranged:
        ddb.create_table(TableName=name, BillingMode="PAY_PER_REQUEST",
                         KeySchema=[{"AttributeName": "PK", "KeyType": "HASH"}, {"AttributeName": "SK", "KeyType": "RANGE"}],
                         AttributeDefinitions=[{"AttributeName": "PK", "AttributeType": "S"},
                                               {"AttributeName": "SK", "AttributeType": "N"}])
        for number in numbers:
            ddb.put_item(TableName=name, Item={"PK": {"S": "p"}, "SK": {"N": number}})
    _backend().tables[ranged[1]].items = defaultdict(dict)
    for name in ranged:
        for number in numbers:
            ddb.put_item(TableName=name, Item={"PK": {"S": "p"}, "SK": {"N": number}})
    for forward in (True, False):
        disk, plain = (_pages(ddb, "query", TableName=n, KeyConditionExpression="PK = :p", Limit=3,
                              ExpressionAttributeValues={":p": {"S": "p"}}, ScanIndexForward=forward) for n in ranged)
        assert disk == plain
        assert [i["SK"]["N"] for page in disk for i in page["Items"]] == \
            sorted({Decimal(n): n for n in reversed(numbers)}.values(), key=Decimal, reverse=not forward)


def test_a_gsi_on_a_number_finds_every_spelling_of_it(ddb: Any) -> None:
    """``1``, ``1.0`` and ``1E0`` are one number to moto: the attribute index finds all three, whichever
    the query says (and the ones written after the index was built); so does ``moto_tuning``'s index in
    memory, which a table with a stream on moto's dict uses (``SARAFAN_MOTO_DISK=0``)."""
    names = _kv_pair(ddb, "gsi", definitions=[{"AttributeName": "g", "AttributeType": "N"}],
                     StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
                     GlobalSecondaryIndexes=[{"IndexName": "ByG", "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}],
                                              "Projection": {"ProjectionType": "ALL"}}])

    def query(name: str, value: str) -> list[str]:
        answer = ddb.query(TableName=name, IndexName="ByG", KeyConditionExpression="g = :g",
                           ExpressionAttributeValues={":g": {"N": value}})
        return sorted(i["id"]["S"] for i in answer["Items"])

    for name in names:
        for key, value in (("a", "1.0"), ("b", "1"), ("c", "1E0"), ("d", "2"), ("e", "10")):
            ddb.put_item(TableName=name, Item={"id": {"S": key}, "g": {"N": value}})
    for value in ("1", "1.0", "1E0", "0.1E1", "2", "10", "1E1"):
        assert query(names[0], value) == query(names[1], value), value
    assert query(names[0], "1") == ["a", "b", "c"]
    for name in names:  # kept at the write-through once the index exists
        ddb.put_item(TableName=name, Item={"id": {"S": "f"}, "g": {"N": "100E-2"}})
        ddb.put_item(TableName=name, Item={"id": {"S": "a"}, "g": {"N": "2.00"}})
    for value in ("1", "2"):
        assert query(names[0], value) == query(names[1], value), value
    assert query(names[0], "1") == ["b", "c", "f"]
    assert _backend().tables[names[1]].__dict__.get("_sarafan_index")  # the plain table used moto_tuning's index


def test_a_key_of_another_type_finds_nothing(ddb: Any) -> None:
    """``{"S": "1"}`` is not the number 1: moto's dict finds no item under it, so neither does the store
    (a get answers nothing, a delete deletes nothing), in a table with or without a range key."""
    names = _kv_pair(ddb, "tm", "N")
    for name in names:
        ddb.put_item(TableName=name, Item={"id": {"N": "1"}, "v": {"S": "x"}})
    for operation, kwargs in (("get_item", {}), ("delete_item", {"ReturnValues": "ALL_OLD"}), ("get_item", {})):
        disk, plain = (_call(ddb, operation, TableName=n, Key={"id": {"S": "1"}}, **kwargs) for n in names)
        assert disk == plain == {}, operation
    assert _pages(ddb, "scan", TableName=names[0]) == _pages(ddb, "scan", TableName=names[1])
    assert _call(ddb, "get_item", TableName=names[0], Key={"id": {"N": "1.0"}})["Item"]["v"] == {"S": "x"}
    key = {"PK": {"S": "p"}, "SK": {"S": "s"}}
    for name in (DISK, PLAIN):
        ddb.put_item(TableName=name, Item={**key, "v": {"S": "x"}})
    for wrong in ({"PK": {"B": b"p"}, "SK": {"S": "s"}}, {"PK": {"S": "p"}, "SK": {"B": b"s"}}):
        for operation, kwargs in (("get_item", {}), ("delete_item", {"ReturnValues": "ALL_OLD"})):
            disk, plain = (_call(ddb, operation, TableName=n, Key=wrong, **kwargs) for n in (DISK, PLAIN))
            assert disk == plain, (operation, wrong)
    assert _pages(ddb, "scan", TableName=DISK) == _pages(ddb, "scan", TableName=PLAIN)


# --- a real file-system limit: the disk full, then room again ----------------------------------------------


@contextlib.contextmanager
def _own_store_file(directory: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The stores created in this block keep their rows in a new file in ``directory`` (closed at the end)."""
    import tempfile

    fresh: dict[str, Any] = {}
    with monkeypatch.context() as patch:
        patch.setattr(tempfile, "tempdir", directory)
        patch.setattr(moto_disk, "_db", fresh)
        patch.setattr(moto_disk, "_touched_stores", {})  # (a store left failing stays there: not for later tests)
        try:
            yield
        finally:
            if "conn" in fresh:
                fresh["conn"].close()


def _file_size_limit(tmp_path: Any) -> Iterator[tuple[Any, Any]]:
    """``RLIMIT_FSIZE`` (no root needed): a write past the limit fails (``EFBIG``) as a write to a full disk does
    (``ENOSPC``), after whatever part of it fitted."""
    import resource
    import signal

    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the error instead of the signal's kill

    def fill() -> None:
        conn = moto_disk._connection()
        size = conn.execute("PRAGMA page_count").fetchone()[0] * conn.execute("PRAGMA page_size").fetchone()[0]
        resource.setrlimit(resource.RLIMIT_FSIZE, (size + 600_000, hard))

    def free() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))

    try:
        yield fill, free
    finally:
        free()
        signal.signal(signal.SIGXFSZ, previous)


def _small_tmpfs(tmp_path: Any) -> Iterator[tuple[Any, Any]]:
    """A tmpfs of 8 MB (root only), filled by a file up to the last 600 KB: a real ``ENOSPC``."""
    import os
    import subprocess
    import sys

    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root on Linux (the file size limit covers the same case)")
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], capture_output=True, text=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    filler = mount / "filler"

    def fill() -> None:
        room = os.statvfs(mount)
        filler.write_bytes(b"\0" * (room.f_bavail * room.f_frsize - 600_000))

    def free() -> None:
        filler.unlink(missing_ok=True)

    try:
        yield fill, free
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


@pytest.fixture(params=["file size limit", "small tmpfs"])
def full_disk(request: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, Any]]:
    """(fill, free): the store's file system without room from ``fill()`` until ``free()``."""
    limits = {"file size limit": _file_size_limit, "small tmpfs": _small_tmpfs}
    generator = limits[request.param](tmp_path)
    fill, free = next(generator)
    directory = str(tmp_path / "small") if request.param == "small tmpfs" else str(tmp_path)
    with _own_store_file(directory, monkeypatch):
        yield fill, free
    with contextlib.suppress(StopIteration):
        next(generator)


def test_a_real_disk_full_and_room_again_loses_no_write_and_leaves_the_file_sound(
        aws_env: None, full_disk: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """Writes while the file system is full fail (sqlite's error) and are kept in memory; once there is room the
    next requests write them through: every item reads back as last written, Scan finds each once, and sqlite's
    integrity check passes. (With ``journal_mode=OFF`` a statement cut short by the full disk could not be
    rolled back: from then on every request failed with ``database disk image is malformed``.)"""
    import boto3
    from moto import mock_aws

    fill, free = full_disk
    monkeypatch.setattr(moto_disk, "HOT_ITEMS", 10)  # most items are read back from the file
    rng = random.Random(7)
    with mock_aws():
        moto_tuning.apply()
        ddb = boto3.client("dynamodb", region_name=REGION)
        ddb.create_table(TableName="full", BillingMode="PAY_PER_REQUEST",
                         KeySchema=[{"AttributeName": "PK", "KeyType": "HASH"}, {"AttributeName": "SK", "KeyType": "RANGE"}],
                         AttributeDefinitions=[{"AttributeName": "PK", "AttributeType": "S"},
                                               {"AttributeName": "SK", "AttributeType": "S"}])
        expected: dict[tuple[str, str], str] = {}
        failed = {"full": 0, "room again": 0}
        phase = "full"
        fill()
        try:
            for i in range(1000):
                if i == 500:
                    assert failed["full"], "the file system never filled up"
                    free()
                    phase = "room again"
                key = (f"p{rng.randrange(40)}", f"s{rng.randrange(30)}")
                value = rng.randbytes(rng.randrange(200, 1500)).hex()
                try:
                    ddb.put_item(TableName="full", Item={"PK": {"S": key[0]}, "SK": {"S": key[1]}, "v": {"S": value}})
                except sqlite3.Error:
                    failed[phase] += 1
                expected[key] = value  # applied in moto either way: the file takes it at a later request's end
        finally:
            free()
        assert failed["room again"] == 0, failed
        for (pk, sk), value in expected.items():
            item = ddb.get_item(TableName="full", Key={"PK": {"S": pk}, "SK": {"S": sk}})["Item"]
            assert item["v"]["S"] == value
        scanned: list[tuple[str, str]] = []
        page: dict[str, Any] = {"LastEvaluatedKey": None}
        while "LastEvaluatedKey" in page:
            start = {"ExclusiveStartKey": page["LastEvaluatedKey"]} if page["LastEvaluatedKey"] else {}
            page = ddb.scan(TableName="full", **start)
            scanned += [(i["PK"]["S"], i["SK"]["S"]) for i in page["Items"]]
        assert sorted(scanned) == sorted(expected)
        with moto_tuning.ENGINE_LOCK:
            assert moto_disk._connection().execute("PRAGMA integrity_check").fetchall() == [("ok",)]


def test_an_attribute_index_the_full_disk_cut_short_is_built_again_whole(ddb: Any) -> None:
    """The first GSI query of an attribute builds its index in the file a chunk at a time; if the disk fills up
    half way the query fails, and the next one builds it again from nothing: no item found twice."""
    for name in (DISK, PLAIN):
        for i in range(400):
            ddb.put_item(TableName=name, Item={"PK": {"S": f"p{i % 7}"}, "SK": {"S": f"{i:04d}"},
                                                "G": {"S": f"g{i % 2}"}, "GR": {"S": f"{i:04d}"}})
    query = {"IndexName": "ByG", "KeyConditionExpression": "G = :g", "ExpressionAttributeValues": {":g": {"S": "g1"}}}
    undo = _fill_disk()
    try:
        with pytest.raises(sqlite3.OperationalError):
            ddb.query(TableName=DISK, **query)
    finally:
        undo()
    disk, plain = (_pages(ddb, "query", TableName=name, **query) for name in (DISK, PLAIN))
    assert [p["Items"] for p in disk] == [p["Items"] for p in plain]
    assert sum(p["Count"] for p in disk) == 200
