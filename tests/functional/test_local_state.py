"""``run --data``: snapshots and their journal bring moto's DynamoDB and KMS back exactly (``infra/local_state.py``)."""

from __future__ import annotations

import json
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
