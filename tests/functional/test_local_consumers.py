"""The local run's consumer process and its socket to the main process's moto (``infra/local_consumers.py``).

A real child process (no moto of its own) calls DynamoDB, DynamoDB Streams and SES through the socket and
gets what the main process's moto answers, errors included; positions begun and never committed by a
connection that closes are given up; a child that keeps dying stops the run (``on_fatal``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from infra import local_consumers, moto_tuning
from infra.local_stream import StreamPositions

ROOT = Path(__file__).resolve().parents[2]
TABLE = "consumers-test"

CHILD = r'''
import json, os, sys
sys.path.insert(0, sys.argv[1])
from infra.local_consumers import EngineClient, RemotePositions, install_client_hooks
client = EngineClient(os.environ["SARAFAN_ENGINE_SOCKET"], bytes.fromhex(os.environ["SARAFAN_ENGINE_KEY"]))
install_client_hooks(client)
import boto3
from botocore.exceptions import ClientError
ddb = boto3.client("dynamodb", region_name="eu-central-1")
out = {}
ddb.put_item(TableName="consumers-test", Item={"PK": {"S": "a"}, "SK": {"S": "1"}, "n": {"N": "1"}, "b": {"B": b"\x00\x01"}})
ddb.transact_write_items(TransactItems=[{"Update": {"TableName": "consumers-test", "Key": {"PK": {"S": "a"}, "SK": {"S": "1"}},
    "UpdateExpression": "ADD n :one", "ExpressionAttributeValues": {":one": {"N": "2"}}}}])
item = ddb.get_item(TableName="consumers-test", Key={"PK": {"S": "a"}, "SK": {"S": "1"}}, ConsistentRead=True)["Item"]
out["item"] = {"n": item["n"]["N"], "b": list(item["b"]["B"])}
try:
    ddb.put_item(TableName="consumers-test", Item={"PK": {"S": "a"}, "SK": {"S": "1"}}, ConditionExpression="attribute_not_exists(PK)")
except ClientError as error:
    out["error"] = error.response["Error"]["Code"]
out["tables"] = ddb.list_tables()["TableNames"]
ses = boto3.client("ses", region_name="eu-central-1")
out["ses"] = ses.send_email(Source="no-reply@sarafan.local", Destination={"ToAddresses": ["x@example.com"]},
                            Message={"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "t"}}})["MessageId"] != ""
positions = RemotePositions(client)
positions.begin("f|consumers-test|s")
positions.commit("f|consumers-test|s", 41)
positions.begin("f|consumers-test|s")  # never committed: the connection closes with the process
out["position"] = positions.get("f|consumers-test|s")
print(json.dumps(out))
'''


def test_a_child_process_reaches_the_main_processs_moto_through_the_socket(aws_env: None) -> None:
    import boto3
    from moto import mock_aws

    with mock_aws():
        moto_tuning.apply()
        ddb = boto3.client("dynamodb", region_name="eu-central-1")
        ddb.create_table(TableName=TABLE, BillingMode="PAY_PER_REQUEST",
                         KeySchema=[{"AttributeName": "PK", "KeyType": "HASH"}, {"AttributeName": "SK", "KeyType": "RANGE"}],
                         AttributeDefinitions=[{"AttributeName": n, "AttributeType": "S"} for n in ("PK", "SK")])
        boto3.client("ses", region_name="eu-central-1").verify_email_identity(EmailAddress="no-reply@sarafan.local")
        positions = StreamPositions()
        server = local_consumers.EngineServer(positions, log=lambda _m: None).start()
        try:
            done = subprocess.run([sys.executable, "-c", CHILD, str(ROOT)], env={**os.environ, **server.env()},
                                  capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, done.stderr
            out = json.loads(done.stdout.strip().splitlines()[-1])
            with positions.quiet(30) as idle:  # the uncommitted batch was given up when the socket closed
                assert idle
        finally:
            server.close()
        assert out == {"item": {"n": "3", "b": [0, 1]}, "error": "ConditionalCheckFailedException",
                       "tables": [TABLE], "ses": True, "position": 41}
        # What the child wrote is in this process's moto.
        stored = ddb.get_item(TableName=TABLE, Key={"PK": {"S": "a"}, "SK": {"S": "1"}})["Item"]
        assert stored["n"] == {"N": "3"} and stored["b"] == {"B": b"\x00\x01"}
        calls = {row["call"] for row in server.stats()}
        assert {"PutItem", "TransactWriteItems", "GetItem", "send email", "begin", "commit", "get"} <= calls


def test_a_consumer_process_that_keeps_dying_stops_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local_consumers, "MAX_RESTARTS", 2)
    server: Any = type("Server", (), {"env": lambda self: {}})()
    stopped = threading.Event()
    messages: list[str] = []
    consumer = local_consumers.ConsumerProcess(server, "table_stream", 100, "eu-central-1", log=messages.append,
                                               on_fatal=lambda message: stopped.set())

    def spawn() -> None:
        consumer.process = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])

    monkeypatch.setattr(consumer, "_spawn", spawn)
    consumer.start()
    assert stopped.wait(60)
    consumer.stop(1)
    assert sum("restarting it" in m for m in messages) == 2
    assert "died 3 times" in messages[-1] and "stopping the run" in messages[-1]
