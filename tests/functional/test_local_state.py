"""``run --data``: snapshots and their journal bring moto's DynamoDB and KMS back exactly (``infra/local_state.py``)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from infra import local_state, moto_tuning

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
        local_state.CHANGES.take()
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
