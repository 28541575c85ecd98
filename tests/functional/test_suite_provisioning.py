"""The suite's own set-up: a new moto provisioned from moto's backends (tests/conftest.py) holds what the
API calls leave there, so the shortcut changes no test's starting point."""

from __future__ import annotations

from typing import Any

from tests import conftest


def _state() -> dict[str, Any]:
    from chalicelib import aws
    from chalicelib.store.db import raw_client

    name = conftest.TEST_ENV["SARAFAN_TABLE"]
    table = raw_client().describe_table(TableName=name)["Table"]
    for volatile in ("CreationDateTime", "TableId", "TableArn", "LatestStreamArn", "LatestStreamLabel"):
        table.pop(volatile, None)
    keys = aws.client("kms").list_keys()["Keys"]
    key = aws.client("kms").describe_key(KeyId=keys[0]["KeyId"])["KeyMetadata"]
    for volatile in ("KeyId", "Arn", "CreationDate"):
        key.pop(volatile, None)
    return {
        "tables": raw_client().list_tables()["TableNames"],
        "table": table,
        "ttl": raw_client().describe_time_to_live(TableName=name)["TimeToLiveDescription"],
        "identities": aws.client("ses").list_identities()["Identities"],
        "keys": len(keys),
        "key": key,
    }


def test_a_new_moto_from_the_backends_matches_the_api_calls(aws_env: None) -> None:
    from moto import mock_aws

    from chalicelib.store.db import Entity

    states = []
    for provision in (conftest._provision_through_api, conftest._provision_in_backends, conftest._provision):
        conftest.reset_process_state()
        with mock_aws():
            key_id = provision()
            assert key_id is not None
            conftest._read_settings()
            assert Entity.Meta.table_name == conftest.TEST_ENV["SARAFAN_TABLE"]
            states.append(_state())
    assert states[1] == states[0] and states[2] == states[0]
    assert states[0]["keys"] == 1 and states[0]["table"]["ItemCount"] == 0


def test_fresh_table_empties_the_table_and_keeps_the_rest(aws_env: None) -> None:
    with conftest.moto_aws():
        before = _state()
        with conftest.fresh_table() as api:
            api.create_program()
        with conftest.fresh_table():
            after = _state()
    assert after == before
