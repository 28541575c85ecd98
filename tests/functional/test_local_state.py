"""``run --data``: snapshots and their journal bring moto's DynamoDB and KMS back exactly (``infra/local_state.py``)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from infra import local_state, moto_disk, moto_tuning

TABLE = "state-test"


def _items() -> list[str]:
    from moto.dynamodb.models import dynamodb_backends

    table = dynamodb_backends["123456789012"]["eu-central-1"].tables[TABLE]
    return sorted(json.dumps(item.to_json(), sort_keys=True, default=local_state._binary_as_base64)
                  for item in table.all_items())


def _reset_moto() -> None:
    from moto.dynamodb.models import dynamodb_backends
    from moto.kms.models import kms_backends

    dynamodb_backends["123456789012"]["eu-central-1"].reset()
    kms_backends["123456789012"]["eu-central-1"].reset()


def test_full_snapshot_then_journal_restore_every_item_and_kms_key(aws_env: None, tmp_path: Path) -> None:
    import boto3
    from moto import mock_aws

    with mock_aws():
        moto_tuning.apply()
        state = local_state.LocalState(tmp_path / "data", log=lambda _: None)
        assert state.restore() is None  # nothing saved yet
        ddb = boto3.client("dynamodb", region_name="eu-central-1")
        kms = boto3.client("kms", region_name="eu-central-1")
        ddb.create_table(TableName=TABLE, BillingMode="PAY_PER_REQUEST",
                         KeySchema=[{"AttributeName": "PK", "KeyType": "HASH"},
                                    {"AttributeName": "SK", "KeyType": "RANGE"}],
                         AttributeDefinitions=[{"AttributeName": "PK", "AttributeType": "S"},
                                               {"AttributeName": "SK", "AttributeType": "S"}])
        for i in range(20):
            ddb.put_item(TableName=TABLE, Item={"PK": {"S": f"p{i % 4}"}, "SK": {"S": str(i)}, "n": {"N": str(i)},
                                                "m": {"M": {"l": {"L": [{"S": "x"}, {"N": "1"}]}}}})
        key_id = kms.create_key(Description="local secrets")["KeyMetadata"]["KeyId"]
        kms.create_alias(AliasName="alias/sarafan-local", TargetKeyId=key_id)
        sealed = kms.encrypt(KeyId=key_id, Plaintext=b"platform secret")["CiphertextBlob"]
        assert state.save("first")
        assert not state.save("again")  # nothing changed

        # Changes after the full snapshot go to journal segments.
        ddb.update_item(TableName=TABLE, Key={"PK": {"S": "p0"}, "SK": {"S": "0"}}, UpdateExpression="ADD n :one",
                        ExpressionAttributeValues={":one": {"N": "1"}})
        ddb.delete_item(TableName=TABLE, Key={"PK": {"S": "p1"}, "SK": {"S": "1"}})
        assert state.save("second")
        ddb.transact_write_items(TransactItems=[{"Put": {"TableName": TABLE, "Item": {"PK": {"S": "tx"},
                                                                                        "SK": {"S": "1"}}}}])
        with pytest.raises(ClientError):  # cancelled: leaves nothing to save but its rollback
            ddb.transact_write_items(TransactItems=[
                {"Put": {"TableName": TABLE, "Item": {"PK": {"S": "ghost"}, "SK": {"S": "1"}}}},
                {"Delete": {"TableName": TABLE, "Key": {"PK": {"S": "p2"}, "SK": {"S": "2"}},
                            "ConditionExpression": "attribute_not_exists(PK)"}}])
        assert state.save("third")
        assert len(list((tmp_path / "data").glob(local_state.JOURNAL_GLOB))) == 2
        expected = _items()

        _reset_moto()
        restored = local_state.LocalState(tmp_path / "data", log=lambda _: None).restore()
        assert restored is not None and restored["journal"] == 2 and restored["kms_keys"] == 1
        assert _items() == expected
        assert any(json.loads(i)["Attributes"]["PK"] == {"S": "tx"} for i in expected)
        assert not any(json.loads(i)["Attributes"]["PK"] == {"S": "ghost"} for i in expected)
        assert kms.decrypt(CiphertextBlob=sealed)["Plaintext"] == b"platform secret"
        assert [a["TargetKeyId"] for a in kms.list_aliases()["Aliases"]
                if a["AliasName"] == "alias/sarafan-local"] == [key_id]


def test_a_full_snapshot_is_written_and_read_one_item_a_line_and_the_earlier_format_still_loads(
        aws_env: None, tmp_path: Path) -> None:
    """With the items on disk (``infra/moto_disk.py``) a full snapshot is a head line and then one line per
    item, from a copy of the store taken while moto is paused; a snapshot of the earlier one-document
    format is still read."""
    import gzip

    import boto3
    from moto import mock_aws

    with mock_aws():
        moto_tuning.apply()
        ddb = boto3.client("dynamodb", region_name="eu-central-1")
        ddb.create_table(TableName=TABLE, BillingMode="PAY_PER_REQUEST",
                         KeySchema=[{"AttributeName": "PK", "KeyType": "HASH"},
                                    {"AttributeName": "SK", "KeyType": "RANGE"}],
                         AttributeDefinitions=[{"AttributeName": "PK", "AttributeType": "S"},
                                               {"AttributeName": "SK", "AttributeType": "S"}])
        for i in range(30):
            ddb.put_item(TableName=TABLE, Item={"PK": {"S": f"p{i % 4}"}, "SK": {"S": str(i)}, "b": {"B": b"\x00\xff"},
                                                "s": {"SS": ["a", "b"]}, "m": {"M": {"l": {"L": [{"NULL": True}]}}}})
        before = _items()
        state = local_state.LocalState(tmp_path / "data", log=lambda _: None)
        assert state.save("first")
        with gzip.open(tmp_path / "data" / local_state.AWS_FILE, "rt", encoding="utf-8") as src:
            lines = src.read().splitlines()
        assert json.loads(lines[0])["format"] == local_state.FULL_FORMAT and len(lines) == 1 + 30
        old = tmp_path / "old.json.gz"
        old.write_bytes(gzip.compress(json.dumps({"format": 1, "dynamodb": local_state.dump_dynamodb(), "kms": []},
                                                 default=local_state._binary_as_base64).encode()))
        for path in (tmp_path / "data" / local_state.AWS_FILE, old):
            _reset_moto()
            _head, count = local_state._load_full(path)
            assert count == 30 and _items() == before


def test_keys_file_is_private_and_without_data_nothing_is_written(tmp_path: Path) -> None:
    state = local_state.LocalState(tmp_path / "data", log=lambda _: None)
    state.save_keys({"operator_key": "srf_op_x", "settings": {"SARAFAN_SECRET_KEY": "s"}})
    path = tmp_path / "data" / local_state.KEYS_FILE
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert state.load_keys()["operator_key"] == "srf_op_x"
    memory: Any = local_state.LocalState(None)
    memory.save_keys({"operator_key": "srf_op_y"})
    assert memory.load_keys() == {} and not memory.save()


def test_the_local_run_keeps_one_kms_key_across_data_restarts(aws_env: None, tmp_path: Path) -> None:
    """Secrets sealed before a ``--data`` restart are sealed with the key the run uses after it."""
    import boto3
    from moto import mock_aws

    from infra.local_run import LOCAL_KMS_ALIAS, local_kms_key

    with mock_aws():
        moto_tuning.apply()
        kms = boto3.client("kms", region_name="eu-central-1")
        first = local_kms_key(kms)
        assert local_kms_key(kms) == first  # a second start in the same emulator: the same key
        state = local_state.LocalState(tmp_path / "data", log=lambda _: None)
        assert state.save("before restart")
        _reset_moto()
        assert local_state.LocalState(tmp_path / "data", log=lambda _: None).restore() is not None
        assert local_kms_key(kms) == first
        assert [k["KeyId"] for k in kms.list_keys()["Keys"]] == [first]
        assert LOCAL_KMS_ALIAS in [a["AliasName"] for a in kms.list_aliases()["Aliases"]]


def test_stream_records_not_consumed_and_the_positions_survive_a_restart_and_are_delivered_once(
        aws_env: None, tmp_path: Path) -> None:
    """A consumer that finished some batches before the stop gets exactly the rest after the restart, in order,
    then the new records: each record delivered once across the restart."""
    import boto3
    from moto import mock_aws

    from infra.local_stream import POSITIONS, StreamPoller, install_holds, streams_client

    delivered: list[str] = []

    def handler(event: dict[str, Any], _context: Any) -> dict[str, Any]:
        delivered.extend(r["dynamodb"]["NewImage"]["SK"]["S"] for r in event["Records"])
        return {"batchItemFailures": []}

    def put(ddb: Any, sks: range) -> None:
        for i in sks:
            ddb.put_item(TableName=TABLE, Item={"PK": {"S": "p"}, "SK": {"S": f"{i:04d}"}})

    POSITIONS.clear()
    try:
        with mock_aws():
            moto_tuning.apply()
            install_holds(POSITIONS)
            state = local_state.LocalState(tmp_path / "data", log=lambda _: None)
            state.restore()
            ddb = boto3.client("dynamodb", region_name="eu-central-1")
            ddb.create_table(TableName=TABLE, BillingMode="PAY_PER_REQUEST",
                             KeySchema=[{"AttributeName": "PK", "KeyType": "HASH"},
                                        {"AttributeName": "SK", "KeyType": "RANGE"}],
                             AttributeDefinitions=[{"AttributeName": "PK", "AttributeType": "S"},
                                                   {"AttributeName": "SK", "AttributeType": "S"}],
                             StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"})
            put(ddb, range(0, 1200))
            poller = StreamPoller(handler, batch_size=100, positions=POSITIONS, log=lambda _: None)
            poller._client = streams_client()
            poller._arn = ddb.describe_table(TableName=TABLE)["Table"]["LatestStreamArn"]
            records = poller._new_records()[:700]  # read 1,000, deliver seven batches, then stop
            for start in range(0, 700, 100):
                poller.deliver(records[start:start + 100])
            put(ddb, range(1200, 1300))
            assert state.save("stopped")  # 1,200 - 700 + 100 records not consumed yet
            assert delivered == [f"{i:04d}" for i in range(700)]

        POSITIONS.clear()
        delivered.clear()
        with mock_aws():
            moto_tuning.apply()
            restored = local_state.LocalState(tmp_path / "data", log=lambda _: None).restore()
            assert restored is not None and restored["stream_records"] == 600
            ddb = boto3.client("dynamodb", region_name="eu-central-1")
            put(ddb, range(1300, 1310))  # new writes go on after the restored records
            poller = StreamPoller(handler, batch_size=100, positions=POSITIONS, log=lambda _: None)
            poller._client = streams_client()
            poller._arn = ddb.describe_table(TableName=TABLE)["Table"]["LatestStreamArn"]
            poller.drain()
            assert delivered == [f"{i:04d}" for i in range(700, 1310)]
    finally:
        POSITIONS.clear()


# --- the data directory's integrity: crashes, failed saves, two runs, damage ---------------------------------


class _Crash(BaseException):
    """The process dying at this point (nothing after it runs)."""


@pytest.fixture
def table(aws_env: None) -> Iterator[Any]:
    """moto with the local run's engine and a hash-key table ``state-test``; yields a DynamoDB client."""
    import boto3
    from moto import mock_aws

    with mock_aws():
        moto_tuning.apply()
        local_state.CHANGES.install()  # (restore() does it; a test that does not restore still notes changes)
        local_state.CHANGES.discard()
        ddb = boto3.client("dynamodb", region_name="eu-central-1")
        _create(ddb, TABLE)
        yield ddb


def _create(ddb: Any, name: str) -> None:
    ddb.create_table(TableName=name, BillingMode="PAY_PER_REQUEST",
                     KeySchema=[{"AttributeName": "PK", "KeyType": "HASH"}],
                     AttributeDefinitions=[{"AttributeName": "PK", "AttributeType": "S"}])


def _put(ddb: Any, key: str, value: int, name: str = TABLE) -> None:
    ddb.put_item(TableName=name, Item={"PK": {"S": key}, "n": {"N": str(value)}})


def _values(ddb: Any, name: str = TABLE) -> dict[str, int]:
    return {item["PK"]["S"]: int(item["n"]["N"]) for item in ddb.scan(TableName=name)["Items"]}


def _restart(directory: Path) -> tuple[local_state.LocalState, dict[str, int] | None]:
    """A new process's start on ``directory``: moto empty, then the snapshot and its journal loaded."""
    _reset_moto()
    state = local_state.LocalState(directory, log=lambda _: None)
    return state, state.restore()


def _segments(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.glob(local_state.JOURNAL_GLOB))


def test_a_crash_after_a_full_snapshot_is_in_place_leaves_no_older_journal_to_roll_it_back(
        table: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A full snapshot replaces the file first and drops the journal after; a crash between the two leaves
    the older segments behind. They belong to the snapshot before: the next start ignores them and deletes
    them, and later segments (numbered from 1 again) are not mixed up with them."""
    data = tmp_path / "data"
    state = local_state.LocalState(data, log=lambda _: None)
    state.restore()
    _put(table, "a", 0)
    _put(table, "b", 0)
    assert state.save("full")
    for value in (1, 2):  # two journal segments
        _put(table, "a", value)
        assert state.save("journal")
    assert len(_segments(data)) == 2
    _put(table, "a", 3)
    _put(table, "b", 3)
    real_unlink = os.unlink

    def crash_on_journal(path: Any, *args: Any, **kwargs: Any) -> None:
        name = Path(path).name
        if name.startswith("aws-journal-") and not name.endswith(".tmp"):
            raise _Crash
        real_unlink(path, *args, **kwargs)

    with monkeypatch.context() as patch, pytest.raises(_Crash):
        patch.setattr(os, "unlink", crash_on_journal)  # (Path.unlink calls it)
        patch.setattr(os, "remove", crash_on_journal)
        state.save("full again", full=True)
    assert len(_segments(data)) == 2  # the crash left them

    state, restored = _restart(data)
    assert restored is not None and restored["journal"] == 0
    assert _values(table) == {"a": 3, "b": 3}
    assert _segments(data) == []  # the older snapshot's segments are gone
    _put(table, "b", 4)
    assert state.save("journal after the restart")
    _put(table, "b", 5)
    assert state.save("journal after the restart")
    state, restored = _restart(data)
    assert restored is not None and restored["journal"] == 2
    assert _values(table) == {"a": 3, "b": 5}


def test_a_crash_while_a_full_snapshot_is_written_keeps_the_previous_snapshot_and_journal(
        table: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "data"
    state = local_state.LocalState(data, log=lambda _: None)
    _put(table, "a", 0)
    assert state.save("full")
    _put(table, "a", 1)
    assert state.save("journal")
    _put(table, "a", 2)
    real_replace = os.replace

    def crash_on_snapshot(source: Any, target: Any) -> None:
        if Path(target).name == local_state.AWS_FILE:
            raise _Crash
        real_replace(source, target)

    with monkeypatch.context() as patch, pytest.raises(_Crash):
        patch.setattr(os, "replace", crash_on_snapshot)
        state.save("full again", full=True)
    _state, restored = _restart(data)
    assert restored is not None and restored["journal"] == 1
    assert _values(table) == {"a": 1}  # the last snapshot that was whole: the half-written one is ignored
    assert not list(data.glob("*.tmp"))  # and its temporary file removed


@pytest.mark.parametrize("kind", ["journal", "full", "new table"])
def test_a_failed_save_keeps_its_changes_for_the_next_one(
        table: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    """The disk full (or the directory not writable) at a save: the save fails, and what changed is written by
    the next save that succeeds, even with nothing changed in between."""
    import errno

    data = tmp_path / "data"
    state = local_state.LocalState(data, log=lambda _: None)
    _put(table, "a", 0)
    _put(table, "b", 0)
    assert state.save("full")
    _put(table, "a", 1)
    if kind == "new table":  # a full snapshot is due
        _create(table, "second")
        _put(table, "x", 7, name="second")
    def disk_full(source: Any, target: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(os, "replace", disk_full)
        with pytest.raises(OSError):
            state.save("the disk full", full=kind == "full")
        with pytest.raises(OSError):
            state.save("still full")
    assert state.save("room again")  # nothing changed since the failures: still written
    _put(table, "b", 1)
    assert state.save("later")
    assert not list(data.glob("*.tmp"))
    _state, restored = _restart(data)
    assert restored is not None
    assert _values(table) == {"a": 1, "b": 1}
    if kind == "new table":
        assert _values(table, "second") == {"x": 7}


def test_a_new_table_and_its_items_survive_a_save_that_fails_copying_the_tables(
        table: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The disk full while a full snapshot copies the tables (the disk store's copy doubles its file in the
    temporary directory): the table created since the last snapshot, and every item changed, are still written
    by the next save, as a full snapshot, and the directory loads (before the fix the next save wrote a journal
    segment naming a table the snapshot did not have: the start failed with ``KeyError: 'second'``)."""
    import errno

    data = tmp_path / "data"
    state = local_state.LocalState(data, log=lambda _: None)
    state.restore()
    _put(table, "a", 0)
    assert state.save("full")
    _put(table, "a", 1)
    _create(table, "second")
    _put(table, "x", 7, name="second")

    def disk_full() -> Any:
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(local_state, "freeze_dynamodb", disk_full)
        with pytest.raises(OSError):
            state.save("the disk full while copying")
    _put(table, "x", 8, name="second")
    assert state.save("room again")
    assert _segments(data) == []  # a full snapshot: the new table is in it
    _state, restored = _restart(data)
    assert restored is not None and restored["tables"] == 2
    assert _values(table) == {"a": 1} and _values(table, "second") == {"x": 8}


class _NoSpaceLeft:
    """A file whose writes fail as on a full disk (everything else is the real file's)."""

    def __init__(self, real: Any) -> None:
        self._real = real

    def __enter__(self) -> _NoSpaceLeft:
        return self

    def __exit__(self, *_exc: Any) -> None:
        self._real.close()

    def write(self, _data: bytes) -> int:
        import errno

        raise OSError(errno.ENOSPC, "No space left on device")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def _fail_once(patch: pytest.MonkeyPatch, target: Any, name: str, error: BaseException,
               when: Callable[..., bool] = lambda *_args, **_kwargs: True, after: bool = False) -> list[int]:
    """``target.name`` raising ``error`` at its first call that ``when`` accepts (``after``: once the real one
    has run), the real one otherwise; returns a list that counts the failures."""
    real = getattr(target, name)
    failed: list[int] = []

    def failing(*args: Any, **kwargs: Any) -> Any:
        if failed or not when(*args, **kwargs):
            return real(*args, **kwargs)
        failed.append(1)
        if after:
            real(*args, **kwargs)
        raise error

    patch.setattr(target, name, failing)
    return failed


def _eio() -> OSError:
    import errno

    return OSError(errno.EIO, "Input/output error")


def _nospc() -> OSError:
    import errno

    return OSError(errno.ENOSPC, "No space left on device")


def _segment_file(*args: Any, **_kwargs: Any) -> bool:
    name = Path(args[0]).name
    return name.startswith("aws-journal-") and not name.endswith(".tmp")


def _write_fails(patch: pytest.MonkeyPatch) -> list[int]:
    """The first file the save opens to write takes no data (the disk full)."""
    real = os.fdopen
    failed: list[int] = []

    def fdopen(*args: Any, **kwargs: Any) -> Any:
        opened = real(*args, **kwargs)
        if failed:
            return opened
        failed.append(1)
        return _NoSpaceLeft(opened)

    patch.setattr(os, "fdopen", fdopen)
    return failed


def _fail_copying(patch: pytest.MonkeyPatch, kind: str) -> list[int]:
    """The copy of the items in the pause: a journal's changed items, or a full snapshot's copy of the tables
    (the disk store's copy in SQL: the disk full, as sqlite says it, at the second table)."""
    import sqlite3

    if kind == "journal":
        return _fail_once(patch, local_state, "dump_changes", MemoryError())
    failed: list[int] = []
    for target, name in ((moto_disk.DiskItems, "__deepcopy__"), (local_state, "_item_rows")):
        real = getattr(target, name)
        calls: list[int] = []

        def failing(*args: Any, _real: Any = real, _calls: list[int] = calls) -> Any:
            _calls.append(1)
            if len(_calls) == 2 and not failed:  # the second table, the first one's copy made
                failed.append(1)
                raise sqlite3.OperationalError("database or disk is full")
            return _real(*args)

        patch.setattr(target, name, failing)
    return failed


#: Each step of a save, from taking the changes to dropping the journal: (make it fail once, the kinds of save
#: that have it).
SAVE_STEPS: dict[str, tuple[Callable[[pytest.MonkeyPatch, str], list[int]], tuple[str, ...]]] = {
    "take": (lambda patch, _kind: _fail_once(patch, local_state._Changes, "take", KeyboardInterrupt(), after=True),
             ("journal", "new table", "full")),
    "kms keys": (lambda patch, _kind: _fail_once(patch, local_state, "dump_kms", RuntimeError("kms")),
                 ("journal", "new table", "full")),
    "stream records": (lambda patch, _kind: _fail_once(patch, local_state, "dump_streams", MemoryError()),
                       ("journal", "new table", "full")),
    "copy": (_fail_copying, ("journal", "new table", "full")),
    "serialise": (lambda patch, _kind: _fail_once(patch, json, "dumps", ValueError("Out of range float values")),
                  ("journal", "new table", "full")),
    "write": (lambda patch, _kind: _write_fails(patch), ("journal", "new table", "full")),
    "fsync": (lambda patch, _kind: _fail_once(patch, os, "fsync", _eio()), ("journal", "new table", "full")),
    "rename": (lambda patch, _kind: _fail_once(patch, os, "replace", _nospc()), ("journal", "new table", "full")),
    "directory fsync": (lambda patch, _kind: _fail_once(patch, local_state, "_fsync_directory", _eio()),
                        ("journal", "new table", "full")),
    "journal cleanup": (lambda patch, _kind: _fail_once(patch, os, "unlink", PermissionError(13, "Permission denied"),
                                                        when=_segment_file), ("new table", "full")),
}


def _generation(directory: Path) -> str:
    import gzip

    with gzip.open(directory / local_state.AWS_FILE, "rt", encoding="utf-8") as src:
        return str(json.loads(src.readline())["generation"])


@pytest.mark.parametrize(("step", "kind"), [(step, kind) for step, (_fail, kinds) in SAVE_STEPS.items()
                                            for kind in kinds])
def test_a_save_that_fails_at_any_step_loses_no_change(
        table: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: str, kind: str) -> None:
    """A save that fails at any of its steps (taking the changes, reading the KMS keys and stream records,
    copying the items, serialising, writing, fsyncing, renaming, fsyncing the directory, dropping the journal)
    raises; the next save, with nothing changed in between, writes all it was to write (the full snapshot that
    was due is still due), and a restart has every change, twice over."""
    data = tmp_path / "data"
    state = local_state.LocalState(data, log=lambda _: None)
    state.restore()
    _create(table, "other")
    _put(table, "o", 0, name="other")
    for key in "abc":
        _put(table, key, 0)
    assert state.save("full")
    _put(table, "a", 1)
    assert state.save("journal")  # a segment, for the next full snapshot to drop
    generation = _generation(data)
    _put(table, "a", 2)
    table.delete_item(TableName=TABLE, Key={"PK": {"S": "b"}})
    _put(table, "o", 1, name="other")
    if kind == "new table":  # a full snapshot is due
        _create(table, "second")
        _put(table, "x", 7, name="second")
    expected = {TABLE: {"a": 2, "c": 0}, "other": {"o": 1}, **({"second": {"x": 7}} if kind == "new table" else {})}
    fail, _kinds = SAVE_STEPS[step]
    with monkeypatch.context() as patch:
        failed = fail(patch, kind)
        with pytest.raises(BaseException):  # noqa: B017 (each step fails its own way, KeyboardInterrupt too)
            state.save("failing", full=kind == "full")
    assert failed, f"the save did not reach {step}"
    assert not list(data.glob("*.tmp"))
    assert state.save("the next one")  # nothing changed since the failure: written all the same
    if kind == "journal":
        assert _generation(data) == generation and len(_segments(data)) == 2
    else:
        assert _generation(data) != generation and _segments(data) == []  # the full snapshot that was due
    state, restored = _restart(data)
    assert restored is not None and {name: _values(table, name) for name in expected} == expected
    _put(table, "c", 3)  # the run goes on from what was restored
    assert state.save("after the restart")
    _state, restored = _restart(data)
    assert restored is not None and _values(table) == {"a": 2, "c": 3}
    assert restored["tables"] == len(expected)


def test_a_journal_segment_with_a_table_the_snapshot_lacks_creates_it_from_the_segment(
        table: Any, tmp_path: Path) -> None:
    """A segment carries the settings of the tables its items are in: should one hold items of a table the full
    snapshot before it does not have (a full snapshot is due when a table is created, so a run does not write
    this), the start creates the table from them and loads its items, and says so."""
    data = tmp_path / "data"
    state = local_state.LocalState(data, log=lambda _: None)
    _put(table, "a", 0)
    assert state.save("full")
    _create(table, "second")
    _put(table, "x", 7, name="second")
    _put(table, "a", 1)
    local_state.CHANGES.schema = False  # as if the table's creation had not been noted
    assert state.save("journal")
    assert len(_segments(data)) == 1
    _reset_moto()
    said: list[str] = []
    restored = local_state.LocalState(data, log=said.append).restore()
    assert restored is not None and restored["journal"] == 1
    assert _values(table) == {"a": 1} and _values(table, "second") == {"x": 7}
    assert any("created table(s) second" in line for line in said), said


def test_every_rename_in_the_data_directory_is_made_durable(table: Any, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """After a file is renamed into place (or the journal dropped), the directory itself is fsynced, so a
    power cut does not take the rename back."""
    import stat

    data = tmp_path / "data"
    state = local_state.LocalState(data, log=lambda _: None)
    events: list[str] = []
    real_replace, real_fsync = os.replace, os.fsync

    def replace(source: Any, target: Any) -> None:
        real_replace(source, target)
        events.append(f"rename {Path(target).name}")

    def fsync(fd: int) -> None:
        real_fsync(fd)
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            events.append("fsync directory")

    with monkeypatch.context() as patch:
        patch.setattr(os, "replace", replace)
        patch.setattr(os, "fsync", fsync)
        state.save_keys({"operator_key": "srf_op_x"})
        _put(table, "a", 0)
        assert state.save("full")
        _put(table, "a", 1)
        assert state.save("journal")
    renames = [i for i, event in enumerate(events) if event.startswith("rename")]
    assert len(renames) == 3
    assert all(events[i + 1] == "fsync directory" for i in renames), events


def test_a_second_run_on_the_same_data_directory_is_refused_naming_the_first(tmp_path: Path) -> None:
    """The directory is locked for the run's life: a second run on it stops before reading or writing
    anything, and says which process holds it; once that one is gone the directory is free."""
    import subprocess
    import sys

    data = tmp_path / "data"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, pathlib; from infra.local_state import LocalState; "
         "LocalState(pathlib.Path(sys.argv[1])).lock(); print('locked', flush=True); sys.stdin.read()", str(data)],
        cwd=Path(__file__).resolve().parents[2], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        second = local_state.LocalState(data, log=lambda _: None)
        with pytest.raises(SystemExit) as refused:
            second.lock()
        message = str(refused.value)
        assert f"pid {holder.pid}" in message and str(data.resolve()) in message, message
        assert sorted(p.name for p in data.iterdir()) == [local_state.LOCK_FILE]  # nothing read or written
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(30)
    second.lock()  # the holder is gone: the lock went with it
    third = local_state.LocalState(data, log=lambda _: None)
    with pytest.raises(SystemExit, match=f"pid {os.getpid()}"):  # a second LocalState in one process too
        third.lock()
    second.unlock()
    third.lock()
    third.unlock()


def _good_directory(ddb: Any, data: Path) -> None:
    """A data directory as a run leaves it: a full snapshot, two journal segments, the keys."""
    state = local_state.LocalState(data, log=lambda _: None)
    state.save_keys({"operator_key": "srf_op_x"})
    for value in range(3):
        for key in "abc":
            _put(ddb, key, value)
        assert state.save("snapshot")
    assert len(_segments(data)) == 2


def _rewrite(path: Path, change: Callable[[bytes], bytes]) -> None:
    path.write_bytes(change(path.read_bytes()))


def _gzip_lines(path: Path, change: Callable[[list[str]], list[str]]) -> None:
    import gzip

    lines = gzip.decompress(path.read_bytes()).decode().splitlines()
    path.write_bytes(gzip.compress(("\n".join(change(lines)) + "\n").encode()))


def _unknown_table(segment: Path) -> Path:
    """A segment whose items are in a table neither the snapshot nor the segment describes (what a save that
    failed copying the tables could leave before the fix of 2026-12-06)."""
    import gzip

    content = json.loads(gzip.decompress(segment.read_bytes()))
    for item in content["items"]:
        item["table"][2] = "gone"
    del content["tables"]
    segment.write_bytes(gzip.compress(json.dumps(content).encode()))
    return segment


def _segment(data: Path, number: int) -> Path:
    return data / _segments(data)[number]


DAMAGE: dict[str, tuple[Callable[[Path], Path], str]] = {
    # kind: (damage the directory, return the file the message must name), what the message says
    "snapshot random bytes": (lambda d: (d / local_state.AWS_FILE).write_bytes(os.urandom(5000)) and d / local_state.AWS_FILE, "damaged"),
    "snapshot truncated": (lambda d: _rewrite(d / local_state.AWS_FILE, lambda b: b[: len(b) // 2]) or d / local_state.AWS_FILE, "damaged"),
    "snapshot empty": (lambda d: (d / local_state.AWS_FILE).write_bytes(b"") or d / local_state.AWS_FILE, "damaged"),
    "snapshot not gzip": (lambda d: (d / local_state.AWS_FILE).write_bytes(b'{"hello": 1}') and d / local_state.AWS_FILE, "damaged"),
    "snapshot bad item line": (lambda d: _gzip_lines(d / local_state.AWS_FILE, lambda ls: [*ls[:2], "{not json", *ls[3:]]) or d / local_state.AWS_FILE, "damaged"),
    "snapshot another version": (lambda d: _gzip_lines(d / local_state.AWS_FILE, lambda ls: [json.dumps({**json.loads(ls[0]), "format": 99}), *ls[1:]]) or d / local_state.AWS_FILE, "another version"),
    "journal segment garbage": (lambda d: _segment(d, 0).write_bytes(os.urandom(300)) and _segment(d, 0), "damaged"),
    "journal segment truncated": (lambda d: _rewrite(_segment(d, 1), lambda b: b[: len(b) // 2]) or _segment(d, 1), "damaged"),
    "journal segment missing": (lambda d: _segment(d, 0).unlink() or d / _segments(d)[0].replace("000002", "000001"), "missing"),
    "journal segment names a table the snapshot lacks": (lambda d: _unknown_table(_segment(d, 0)), "does not have"),
    "keys garbage": (lambda d: (d / local_state.KEYS_FILE).write_text("{not json") and d / local_state.KEYS_FILE, "damaged"),
    "keys not an object": (lambda d: (d / local_state.KEYS_FILE).write_text("[1, 2]") and d / local_state.KEYS_FILE, "damaged"),
    "keys another version": (lambda d: (d / local_state.KEYS_FILE).write_text('{"format": 7}') and d / local_state.KEYS_FILE, "another version"),
}


def _contents(directory: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(directory.iterdir()) if path.name != local_state.LOCK_FILE}


@pytest.mark.parametrize("kind", sorted(DAMAGE))
def test_a_damaged_data_directory_stops_the_start_with_a_clear_message_and_changes_nothing(
        table: Any, tmp_path: Path, kind: str) -> None:
    """What a start does with the directory (lock it, read the keys, load the snapshot and its journal) stops
    with a message naming the damaged file and what to do, no traceback (``SystemExit``: exit code 1), and
    leaves every file as it was."""
    data = tmp_path / "data"
    _good_directory(table, data)
    damage, says = DAMAGE[kind]
    damaged = damage(data)
    before = _contents(data)
    _reset_moto()
    state = local_state.LocalState(data, log=lambda _: None)
    with pytest.raises(SystemExit) as stopped:
        state.lock()
        state.load_keys()
        state.restore()
    message = str(stopped.value)
    assert stopped.value.code not in (None, 0)
    assert str(damaged) in message and says in message, message
    assert "move" in message and str(data) in message, message
    assert _contents(data) == before
    state.unlock()


@pytest.mark.parametrize("kind", ["a file", "inside a file"])
def test_a_data_path_that_is_not_a_directory_is_refused_clearly(tmp_path: Path, kind: str) -> None:
    target = tmp_path / "regular-file"
    target.write_text("x")
    data = target if kind == "a file" else target / "data"
    with pytest.raises(SystemExit, match="not a directory") as stopped:
        local_state.LocalState(data, log=lambda _: None).lock()
    assert str(data) in str(stopped.value)
    assert target.read_text() == "x"


def test_a_last_snapshot_that_fails_is_said_and_the_run_exits_non_zero(
        table: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import errno

    from infra.local_run import last_snapshot

    state = local_state.LocalState(tmp_path / "data", log=lambda _: None)
    _put(table, "a", 0)
    fatal: list[str] = []

    def disk_full(source: Any, target: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(os, "replace", disk_full)
        last_snapshot(state, fatal)
    assert fatal and "No space left on device" in fatal[0]
    said = capsys.readouterr().out
    assert "the last snapshot could not be written" in said and "is lost" in said, said
