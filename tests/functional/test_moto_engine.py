"""The local run's adjustments to moto's DynamoDB (``infra/moto_tuning.py``) keep DynamoDB's answers.

The whole suite runs on the adjusted engine (``tests/conftest.py``); these tests pin the
behaviours the adjustments touch: transaction rollback, partition queries, misses, and that
model objects are no longer kept alive for moto's dashboard.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from infra import moto_tuning

TABLE = "engine-test"


@pytest.fixture
def ddb(aws_env: None) -> Iterator[Any]:
    import boto3
    from moto import mock_aws

    with mock_aws():
        moto_tuning.apply()
        client = boto3.client("dynamodb", region_name="eu-central-1")
        client.create_table(
            TableName=TABLE, BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "PK", "KeyType": "HASH"}, {"AttributeName": "SK", "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": n, "AttributeType": "S"} for n in ("PK", "SK", "G")],
            GlobalSecondaryIndexes=[{"IndexName": "ByG", "KeySchema": [{"AttributeName": "G", "KeyType": "HASH"}],
                                     "Projection": {"ProjectionType": "ALL"}}],
        )
        yield client


def _backend_table() -> Any:
    from moto.dynamodb.models import dynamodb_backends

    return dynamodb_backends["123456789012"]["eu-central-1"].tables[TABLE]


def _item(pk: str, sk: str, **attrs: Any) -> dict[str, Any]:
    return {"PK": {"S": pk}, "SK": {"S": sk}, **attrs}


def _all(client: Any) -> list[dict[str, Any]]:
    return sorted(client.scan(TableName=TABLE)["Items"], key=lambda i: (i["PK"]["S"], i["SK"]["S"]))


def test_the_suite_and_the_local_run_use_the_adjusted_engine(ddb: Any) -> None:
    assert moto_tuning.applied() == {"tracking", "rollback", "query", "get_item", "lock", "responses", "streams",
                                     "expressions", "traversal", "simple_updates", "items", "actions", "direct", "index", "transactions", "overheads", "arn_lists",
                                     "compact", "ses_history",
                                     "disk"}  # infra/moto_disk.py


def test_ses_keeps_only_the_newest_sent_emails(aws_env: None) -> None:
    import boto3
    from moto import mock_aws
    from moto.ses.models import ses_backends

    with mock_aws():
        ses = boto3.client("ses", region_name="eu-central-1")
        ses.verify_email_identity(EmailAddress="no-reply@sarafan.test")
        for n in range(moto_tuning.SENT_EMAIL_HISTORY + 5):
            ses.send_email(Source="no-reply@sarafan.test", Destination={"ToAddresses": [f"m{n}@example.com"]},
                           Message={"Subject": {"Data": f"n{n}"}, "Body": {"Text": {"Data": "x"}}})
        kept = list(ses_backends["123456789012"]["eu-central-1"].sent_messages)
        assert len(kept) == moto_tuning.SENT_EMAIL_HISTORY
        assert kept[0].destinations["ToAddresses"] == ["m5@example.com"]  # the oldest five went
        assert kept[-1].destinations["ToAddresses"] == [f"m{moto_tuning.SENT_EMAIL_HISTORY + 4}@example.com"]


def test_a_cancelled_transaction_leaves_every_item_as_it_was(ddb: Any) -> None:
    ddb.put_item(TableName=TABLE, Item=_item("a", "1", n={"N": "1"}, m={"M": {"x": {"N": "1"}}}))
    ddb.put_item(TableName=TABLE, Item=_item("b", "1"))
    ddb.put_item(TableName=TABLE, Item=_item("c", "1", n={"N": "5"}))
    before = _all(ddb)
    table = _backend_table()
    with pytest.raises(ClientError) as caught:
        ddb.transact_write_items(TransactItems=[
            {"Put": {"TableName": TABLE, "Item": _item("new", "1")}},
            {"Update": {"TableName": TABLE, "Key": _item("a", "1"), "UpdateExpression": "ADD n :one SET m.x = :one",
                        "ExpressionAttributeValues": {":one": {"N": "1"}}}},
            {"Delete": {"TableName": TABLE, "Key": _item("b", "1")}},
            {"ConditionCheck": {"TableName": TABLE, "Key": _item("c", "1"), "ConditionExpression": "n = :six",
                                "ExpressionAttributeValues": {":six": {"N": "6"}}}},
            {"Update": {"TableName": TABLE, "Key": _item("fresh", "1"), "UpdateExpression": "SET v = :one",
                        "ExpressionAttributeValues": {":one": {"N": "1"}}}},
        ])
    error = caught.value.response
    assert error["Error"]["Code"] == "TransactionCanceledException"
    assert [r["Code"] for r in error["CancellationReasons"]] == ["None", "None", "None", "ConditionalCheckFailed", "None"]
    assert _all(ddb) == before
    assert _backend_table() is table  # restored in place: no copy of the table was taken
    assert "new" not in {str(k.value) for k in table.items}  # no empty partition left behind either


def test_a_transaction_naming_one_item_twice_is_rejected_and_rolled_back(ddb: Any) -> None:
    ddb.put_item(TableName=TABLE, Item=_item("a", "1", n={"N": "1"}))
    before = _all(ddb)
    with pytest.raises(ClientError) as caught:
        ddb.transact_write_items(TransactItems=[
            {"Put": {"TableName": TABLE, "Item": _item("x", "1")}},
            {"Update": {"TableName": TABLE, "Key": _item("a", "1"), "UpdateExpression": "ADD n :one",
                        "ExpressionAttributeValues": {":one": {"N": "1"}}}},
            {"Delete": {"TableName": TABLE, "Key": _item("a", "1")}},
        ])
    assert caught.value.response["Error"]["Code"] == "ValidationException"
    assert _all(ddb) == before


def test_a_successful_transaction_applies_every_item(ddb: Any) -> None:
    ddb.put_item(TableName=TABLE, Item=_item("a", "1", n={"N": "1"}))
    ddb.transact_write_items(TransactItems=[
        {"Put": {"TableName": TABLE, "Item": _item("b", "1"), "ConditionExpression": "attribute_not_exists(PK)"}},
        {"Update": {"TableName": TABLE, "Key": _item("a", "1"), "UpdateExpression": "ADD n :one",
                    "ExpressionAttributeValues": {":one": {"N": "1"}}}},
    ])
    assert [(i["PK"]["S"], i.get("n")) for i in _all(ddb)] == [("a", {"N": "2"}), ("b", None)]


def test_queries_read_their_partition_in_order_with_pages(ddb: Any) -> None:
    for pk in ("p", "q"):
        for sk in ("3", "1", "2", "4"):
            ddb.put_item(TableName=TABLE, Item=_item(pk, sk, G={"S": f"g-{sk}"}))

    def query(**kw: Any) -> dict[str, Any]:
        return ddb.query(TableName=TABLE, KeyConditionExpression="PK = :p", ExpressionAttributeValues={":p": {"S": "p"}},
                         **kw)

    assert [i["SK"]["S"] for i in query()["Items"]] == ["1", "2", "3", "4"]
    first = query(Limit=3, ScanIndexForward=False)
    assert [i["SK"]["S"] for i in first["Items"]] == ["4", "3", "2"]
    rest = query(Limit=3, ScanIndexForward=False, ExclusiveStartKey=first["LastEvaluatedKey"])
    assert [i["SK"]["S"] for i in rest["Items"]] == ["1"]
    assert ddb.query(TableName=TABLE, KeyConditionExpression="PK = :p AND SK > :s",
                     ExpressionAttributeValues={":p": {"S": "q"}, ":s": {"S": "2"}})["Count"] == 2
    assert ddb.query(TableName=TABLE, KeyConditionExpression="PK = :p",
                     ExpressionAttributeValues={":p": {"S": "none"}})["Items"] == []
    by_index = ddb.query(TableName=TABLE, IndexName="ByG", KeyConditionExpression="G = :g",
                         ExpressionAttributeValues={":g": {"S": "g-2"}})["Items"]
    assert sorted(i["PK"]["S"] for i in by_index) == ["p", "q"]


def test_a_miss_answers_nothing_and_leaves_no_partition(ddb: Any) -> None:
    assert "Item" not in ddb.get_item(TableName=TABLE, Key=_item("ghost", "1"))
    assert len(_backend_table().items) == 0
    ddb.put_item(TableName=TABLE, Item=_item("real", "1"))
    assert ddb.get_item(TableName=TABLE, Key=_item("real", "1"))["Item"] == _item("real", "1")


def test_model_objects_are_not_kept_for_the_dashboard(ddb: Any) -> None:
    from moto.dynamodb.models.dynamo_type import Item
    from moto.dynamodb.models.table import Table

    for i in range(20):
        ddb.transact_write_items(TransactItems=[
            {"Put": {"TableName": TABLE, "Item": _item(f"p{i}", str(j))}} for j in range(10)
        ])
        ddb.query(TableName=TABLE, KeyConditionExpression="PK = :p", ExpressionAttributeValues={":p": {"S": f"p{i}"}})
    assert Item.instances_tracked == [] and Table.instances_tracked == []
    assert len(_all(ddb)) == 200


def test_data_plane_answers_are_what_motos_own_serializer_writes(ddb: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from moto.dynamodb.responses import DynamoHandler

    fast = DynamoHandler.serialized
    moto_own = fast.__wrapped__  # type: ignore[attr-defined]
    compared: list[str] = []

    def both(self: Any, action_result: Any) -> Any:
        ours, theirs = fast(self, action_result), moto_own(self, action_result)
        if self._get_action() in moto_tuning.PLAIN_JSON_ACTIONS and isinstance(action_result.result, dict):
            assert (ours[0], json.loads(ours[2])) == (theirs[0], json.loads(theirs[2])), self._get_action()
            assert ours[1]["Content-Type"] == theirs[1]["Content-Type"]
            compared.append(self._get_action())
        return ours

    monkeypatch.setattr(DynamoHandler, "serialized", both)
    key = _item("a", "1")
    item = {**key, "n": {"N": "1.50"}, "b": {"B": b"\x00\xff"}, "ss": {"SS": ["x", "y"]}, "ns": {"NS": ["1", "2"]},
            "bs": {"BS": [b"1", b"2"]}, "e": {"S": ""},
            "m": {"M": {"k": {"L": [{"S": "v"}, {"NULL": True}, {"BOOL": False}, {"B": b"zz"}]}}}}
    one = {":one": {"N": "1"}}
    ddb.put_item(TableName=TABLE, Item=item, ReturnConsumedCapacity="TOTAL")
    ddb.put_item(TableName=TABLE, Item=item, ReturnValues="ALL_OLD")
    assert ddb.get_item(TableName=TABLE, Key=key)["Item"]["b"] == {"B": b"\x00\xff"}
    ddb.get_item(TableName=TABLE, Key=_item("a", "2"))
    ddb.get_item(TableName=TABLE, Key=key, ProjectionExpression="m.k[0], n")
    for returns in ("ALL_NEW", "UPDATED_OLD", "NONE"):
        ddb.update_item(TableName=TABLE, Key=key, UpdateExpression="ADD n :one", ExpressionAttributeValues=one,
                        ReturnValues=returns)
    for sk in range(5):
        ddb.put_item(TableName=TABLE, Item=_item("q", str(sk)))
    page = ddb.query(TableName=TABLE, KeyConditionExpression="PK = :p", ExpressionAttributeValues={":p": {"S": "q"}},
                     Limit=2, ReturnConsumedCapacity="TOTAL")
    assert page["LastEvaluatedKey"] == _item("q", "1")
    ddb.query(TableName=TABLE, KeyConditionExpression="PK = :p", ExpressionAttributeValues={":p": {"S": "q"}},
              Select="COUNT")
    ddb.scan(TableName=TABLE, Limit=3)
    ddb.batch_get_item(RequestItems={TABLE: {"Keys": [key, _item("q", "1"), _item("none", "1")]}})
    ddb.batch_write_item(RequestItems={TABLE: [{"PutRequest": {"Item": _item("w", "1")}},
                                               {"DeleteRequest": {"Key": _item("q", "0")}}]},
                         ReturnConsumedCapacity="TOTAL")
    ddb.transact_write_items(TransactItems=[{"Put": {"TableName": TABLE, "Item": _item("tx", "1")}}],
                             ReturnConsumedCapacity="TOTAL")
    ddb.transact_get_items(TransactItems=[{"Get": {"TableName": TABLE, "Key": key}},
                                          {"Get": {"TableName": TABLE, "Key": _item("nx", "1")}}])
    ddb.delete_item(TableName=TABLE, Key=key, ReturnValues="ALL_OLD")
    assert set(compared) == moto_tuning.PLAIN_JSON_ACTIONS


def test_stream_records_are_what_motos_own_serializer_writes(aws_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """The local run's stream poller reads records through the fast path: same answer, bounded iterators."""
    import json

    import boto3
    from moto import mock_aws
    from moto.core.responses import ActionResult
    from moto.dynamodbstreams.models import dynamodbstreams_backends
    from moto.dynamodbstreams.responses import DynamoDBStreamsHandler

    with mock_aws():
        moto_tuning.apply()
        fast = DynamoDBStreamsHandler.serialized
        moto_own = fast.__wrapped__  # type: ignore[attr-defined]
        compared: list[int] = []

        def both(self: Any, action_result: Any) -> Any:
            ours = fast(self, action_result)
            # moto's own serializer takes the records as moto built them (the fast path keeps their texts).
            theirs = moto_own(self, ActionResult(moto_tuning._records_of(action_result.result)))
            assert (ours[0], json.loads(ours[2])) == (theirs[0], json.loads(theirs[2])), self._get_action()
            if self._get_action() == "GetRecords":
                compared.append(len(json.loads(ours[2])["Records"]))
            return ours

        monkeypatch.setattr(DynamoDBStreamsHandler, "serialized", both)
        ddb = boto3.client("dynamodb", region_name="eu-central-1")
        arn = ddb.create_table(
            TableName=TABLE, BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "PK", "KeyType": "HASH"}, {"AttributeName": "SK", "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": n, "AttributeType": "S"} for n in ("PK", "SK")],
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
        )["TableDescription"]["LatestStreamArn"]
        item = {**_item("a", "1"), "n": {"N": "1.50"}, "b": {"B": b"\x00\xff"},
                "m": {"M": {"k": {"L": [{"S": "v"}, {"NULL": True}, {"BOOL": False}]}}}}
        ddb.put_item(TableName=TABLE, Item=item)
        ddb.update_item(TableName=TABLE, Key=_item("a", "1"), UpdateExpression="ADD n :one",
                        ExpressionAttributeValues={":one": {"N": "1"}})
        ddb.delete_item(TableName=TABLE, Key=_item("a", "1"))
        from botocore.config import Config

        # moto serves the classic host only (as infra/local_stream.py's client does).
        streams = boto3.client("dynamodbstreams", region_name="eu-central-1",
                               config=Config(account_id_endpoint_mode="disabled"))
        shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
        iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard,
                                              ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        reply = streams.get_records(ShardIterator=iterator)
        assert [r["eventName"] for r in reply["Records"]] == ["INSERT", "MODIFY", "REMOVE"]
        assert reply["Records"][0]["dynamodb"]["NewImage"]["b"] == {"B": b"\x00\xff"}
        for _ in range(moto_tuning.MAX_SHARD_ITERATORS + 50):  # a long-polling consumer
            reply = streams.get_records(ShardIterator=reply["NextShardIterator"])
        assert compared[0] == 3 and len(compared) == moto_tuning.MAX_SHARD_ITERATORS + 51
        backend = dynamodbstreams_backends["123456789012"]["eu-central-1"]
        assert len(backend.shard_iterators) <= moto_tuning.MAX_SHARD_ITERATORS


#: (attributes before, update expression, names, values): valid updates and each kind of refusal.
UPDATE_CASES: list[tuple[dict[str, Any], str, dict[str, str], dict[str, Any]]] = [
    ({}, "SET #a = :s, #b = :n", {"#a": "a", "#b": "b"}, {":s": {"S": "x"}, ":n": {"N": "2"}}),
    ({"c": {"N": "5"}}, "ADD c :n SET d = :s", {}, {":n": {"N": "-2"}, ":s": {"S": "y"}}),
    ({}, "ADD c :n", {}, {":n": {"N": "3"}}),
    ({"t": {"SS": ["a"]}}, "ADD t :set DELETE u :set", {}, {":set": {"SS": ["b"]}}),
    ({"t": {"SS": ["a", "b"]}}, "DELETE t :set", {}, {":set": {"SS": ["b"]}}),
    ({"k": {"N": "1"}}, "SET k = if_not_exists(k, :z) + :n, j = if_not_exists(j, :z) - :n", {},
     {":z": {"N": "0"}, ":n": {"N": "4"}}),
    ({"l": {"L": [{"S": "a"}]}}, "SET l = list_append(l, :l), l2 = list_append(:l, :l)", {},
     {":l": {"L": [{"S": "b"}]}}),
    ({"m": {"M": {"x": {"N": "1"}}}}, "SET m.#y = :n, m.x = m.x + :n REMOVE m.z", {"#y": "y"}, {":n": {"N": "1"}}),
    ({"l": {"L": [{"S": "a"}, {"S": "b"}, {"S": "c"}]}}, "REMOVE l[0], l[2] SET l[1] = :s", {}, {":s": {"S": "q"}}),
    ({"r": {"S": "x"}, "q": {"N": "1"}}, "REMOVE r, #q", {"#q": "q"}, {}),
    ({"e": {"S": "x"}}, "SET e = :e", {}, {":e": {"S": ""}}),
    ({}, "SET G = :e", {}, {":e": {"S": ""}}),  # an index key may not be empty
    ({}, "SET #pk = :s", {"#pk": "PK"}, {":s": {"S": "other"}}),  # a key attribute
    ({}, "SET a = :missing", {}, {}),
    ({}, "SET a = :s", {"#unused": "u"}, {":s": {"S": "x"}}),
    ({}, "SET a = :s, a = :s", {}, {":s": {"S": "x"}}),  # overlapping paths
    ({}, "SET a = :s SET b = :s", {}, {":s": {"S": "x"}}),  # two SET clauses
    ({"s": {"S": "text"}}, "ADD s :n", {}, {":n": {"N": "1"}}),  # type mismatch
    ({"s": {"S": "text"}}, "SET s = s + :n", {}, {":n": {"N": "1"}}),
    ({}, "SET m.x = :n", {}, {":n": {"N": "1"}}),  # no such document path
    ({"m": {"M": {}}}, "SET m.x.y = :n", {}, {":n": {"N": "1"}}),
    ({}, "SET a = #nope", {}, {}),
    ({}, "ADD a :s", {}, {":s": {"S": "x"}}),  # ADD takes numbers and sets only
    ({}, "SET a = :big", {}, {":big": {"S": "x" * 410_000}}),
]


def _update_outcomes(ddb: Any) -> list[Any]:
    outcomes: list[Any] = []
    for number, (before, expression, names, values) in enumerate(UPDATE_CASES):
        key = _item("upd", str(number))
        ddb.put_item(TableName=TABLE, Item={**key, **before})
        kwargs: dict[str, Any] = {"TableName": TABLE, "Key": key, "UpdateExpression": expression,
                                  "ReturnValues": "ALL_NEW"}
        if names:
            kwargs["ExpressionAttributeNames"] = names
        if values:
            kwargs["ExpressionAttributeValues"] = values
        try:
            outcome: Any = ddb.update_item(**kwargs)["Attributes"]
        except ClientError as error:
            outcome = (error.response["Error"]["Code"], error.response["Error"]["Message"])
        in_transaction: Any
        try:
            ddb.transact_write_items(TransactItems=[{"Update": {k: v for k, v in kwargs.items()
                                                                 if k != "ReturnValues"}}])
            in_transaction = ddb.get_item(TableName=TABLE, Key=key, ConsistentRead=True)["Item"]
        except ClientError as error:
            in_transaction = (error.response["Error"]["Code"], error.response.get("CancellationReasons"))
        outcomes.append((expression, outcome, in_transaction))
        ddb.delete_item(TableName=TABLE, Key=key)
    return outcomes


def test_update_expressions_give_what_motos_own_code_gives(ddb: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every adjustment on the update path (traversal, expression caches...) against moto's own code."""
    from moto.dynamodb.parsing.ast_nodes import DepthFirstTraverser, Node
    from moto.dynamodb.parsing.executors import UpdateExpressionExecutor
    from moto.dynamodb.parsing.validators import UpdateExpressionValidator

    simple: list[Any] = []
    original_simple = moto_tuning._SimpleUpdate.__init__

    def counted(self: Any, actions: Any) -> None:
        simple.append([kind for kind, _, _ in actions])
        original_simple(self, actions)

    monkeypatch.setattr(moto_tuning._SimpleUpdate, "__init__", counted)
    tuned = _update_outcomes(ddb)
    assert {tuple(kinds) for kinds in simple} >= {("SET", "SET"), ("ADD", "SET"), ("ADD",), ("REMOVE", "REMOVE")}
    assert sum(isinstance(o[1], dict) for o in tuned) >= 9 and sum(isinstance(o[1], tuple) for o in tuned) >= 9
    monkeypatch.setattr(DepthFirstTraverser, "traverse_node_recursively",
                        DepthFirstTraverser.traverse_node_recursively.__wrapped__)
    monkeypatch.setattr(Node, "find_clauses", Node.find_clauses.__wrapped__)
    for cls, name in ((UpdateExpressionValidator, "__init__"), (UpdateExpressionValidator, "validate"),
                      (UpdateExpressionExecutor, "execute")):
        monkeypatch.setattr(cls, name, getattr(cls, name).__wrapped__)
    assert tuned == _update_outcomes(ddb)


def _data_plane_calls(ddb: Any) -> list[Any]:
    """Answers (or errors) of every data-plane action, valid and refused, with blobs and sets."""
    key = _item("d", "1")
    item = {**key, "b": {"B": b"\x00\xff"}, "bs": {"BS": [b"1", b"2"]}, "n": {"N": "1.5"}, "G": {"S": "g"},
            "m": {"M": {"B": {"S": "not a blob"}, "l": {"L": [{"B": b"zz"}, {"NULL": True}]}}}}
    calls: list[tuple[str, dict[str, Any]]] = [
        ("put_item", {"TableName": TABLE, "Item": item, "ReturnConsumedCapacity": "TOTAL"}),
        ("put_item", {"TableName": TABLE, "Item": item, "ReturnValues": "ALL_OLD"}),
        ("put_item", {"TableName": TABLE, "Item": item, "ConditionExpression": "attribute_not_exists(PK)"}),
        ("put_item", {"TableName": TABLE, "Item": item, "ConditionExpression": "attribute_not_exists(PK)",
                      "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}),
        ("get_item", {"TableName": TABLE, "Key": key}),
        ("get_item", {"TableName": TABLE, "Key": _item("d", "none")}),
        ("get_item", {"TableName": "no-such-table", "Key": key}),
        ("update_item", {"TableName": TABLE, "Key": key, "UpdateExpression": "ADD n :one",
                         "ExpressionAttributeValues": {":one": {"N": "1"}}, "ReturnValues": "UPDATED_NEW"}),
        ("update_item", {"TableName": TABLE, "Key": key, "UpdateExpression": "SET #pk = :one",
                         "ExpressionAttributeNames": {"#pk": "PK"}, "ExpressionAttributeValues": {":one": {"S": "1"}}}),
        ("query", {"TableName": TABLE, "KeyConditionExpression": "PK = :p", "Limit": 1,
                   "ExpressionAttributeValues": {":p": {"S": "d"}}, "ReturnConsumedCapacity": "TOTAL"}),
        ("query", {"TableName": TABLE, "IndexName": "ByG", "KeyConditionExpression": "G = :g",
                   "ExpressionAttributeValues": {":g": {"S": "g"}}}),
        ("query", {"TableName": TABLE, "KeyConditionExpression": "nope"}),
        ("scan", {"TableName": TABLE, "Select": "COUNT"}),
        ("batch_get_item", {"RequestItems": {TABLE: {"Keys": [key, _item("d", "2")], "ConsistentRead": True}}}),
        ("batch_write_item", {"RequestItems": {TABLE: [{"PutRequest": {"Item": _item("d", "3")}}]}}),
        ("transact_get_items", {"TransactItems": [{"Get": {"TableName": TABLE, "Key": key}}]}),
        ("transact_write_items", {"TransactItems": [
            {"Put": {"TableName": TABLE, "Item": _item("d", "4")}},
            {"Update": {"TableName": TABLE, "Key": key, "UpdateExpression": "SET s = :s",
                        "ExpressionAttributeValues": {":s": {"S": "x"}}}}]}),
        ("transact_write_items", {"TransactItems": [
            {"Put": {"TableName": TABLE, "Item": _item("d", "5")}},
            {"ConditionCheck": {"TableName": TABLE, "Key": key, "ConditionExpression": "attribute_not_exists(PK)",
                                "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}}]}),
        ("transact_write_items", {"TransactItems": [
            {"Put": {"TableName": TABLE, "Item": key}}, {"Delete": {"TableName": TABLE, "Key": key}}]}),
        ("delete_item", {"TableName": TABLE, "Key": _item("d", "3"), "ReturnValues": "ALL_OLD"}),
    ]
    answers: list[Any] = []
    for name, kwargs in calls:
        try:
            reply: Any = getattr(ddb, name)(**kwargs)
        except ClientError as error:
            reply = ("error", type(error).__name__, error.response)
        answers.append((name, _without_volatile(reply)))
    for sk in ("1", "4", "5", "none"):
        ddb.delete_item(TableName=TABLE, Key=_item("d", sk))
    return answers


def _without_volatile(reply: Any) -> Any:
    """Request ids and dates differ between any two calls."""
    if isinstance(reply, tuple):
        return (*reply[:2], _without_volatile(reply[2]))
    reply = dict(reply)
    metadata = dict(reply.pop("ResponseMetadata", {}))
    metadata.pop("RequestId", None)
    headers = {k: v for k, v in metadata.pop("HTTPHeaders", {}).items() if k not in ("x-amzn-requestid", "date")}
    return {**reply, "ResponseMetadata": {**metadata, "HTTPHeaders": headers}}


def test_the_in_process_hop_answers_what_the_http_shaped_path_answers(ddb: Any) -> None:
    from moto.core.models import botocore_stubber

    direct_calls: list[str] = []
    original = botocore_stubber.process_request

    def counted(request: Any) -> Any:
        direct_calls.append(request.headers.get("X-Amz-Target", b""))
        return original(request)

    botocore_stubber.process_request = counted  # type: ignore[method-assign]
    try:
        direct = _data_plane_calls(ddb)
        assert direct_calls == []  # no data-plane call went the HTTP-shaped way
        moto_tuning.DIRECT_CALLS[0] = False
        usual = _data_plane_calls(ddb)
        assert len(direct_calls) >= 20
    finally:
        moto_tuning.DIRECT_CALLS[0] = True
        botocore_stubber.process_request = original  # type: ignore[method-assign]
    assert sum(isinstance(a[1], tuple) for a in direct) >= 6
    assert direct == usual
    moto_tuning.SKIP_SERIALIZER[0] = False  # the hop with botocore's serializer and moto's parse of its text
    try:
        assert _data_plane_calls(ddb) == direct
    finally:
        moto_tuning.SKIP_SERIALIZER[0] = True


def test_the_hop_without_the_serializer_keeps_no_reference_to_the_callers_values(ddb: Any) -> None:
    """``_skip_serializer``: moto gets its own copy of the parameters (as it did parsing the JSON text), and
    parameters botocore validates are still validated (boto3's client validates; PynamoDB's does not)."""
    from botocore.exceptions import ParamValidationError

    tags = ["a", "b"]
    item = _item("c", "1", ss={"SS": tags}, m={"M": {"l": {"L": [{"S": "x"}]}}}, b={"B": b"\x00"})
    ddb.put_item(TableName=TABLE, Item=item)
    tags.append("c")
    item["m"]["M"]["l"]["L"].append({"S": "y"})
    stored = ddb.get_item(TableName=TABLE, Key=_item("c", "1"))["Item"]
    assert stored["ss"] == {"SS": ["a", "b"]} and stored["m"] == {"M": {"l": {"L": [{"S": "x"}]}}}
    assert stored["b"] == {"B": b"\x00"}
    with pytest.raises(ParamValidationError):
        ddb.put_item(TableName=TABLE, Item=_item("c", "2"), NoSuchParameter=1)


def test_index_queries_answer_what_motos_own_walk_answers(ddb: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from moto.dynamodb.models.table import Table

    for i in range(30):
        attrs: dict[str, Any] = {"n": {"N": str(i)}}
        if i % 3:
            attrs["G"] = {"S": f"g{i % 2}"}
        if i % 5 == 0:
            attrs["G"] = {"S": "g0"}
        ddb.put_item(TableName=TABLE, Item=_item(f"p{i % 4}", f"{i:03d}", **attrs))

    def pages(**extra: Any) -> list[Any]:
        out: list[Any] = []
        kwargs: dict[str, Any] = {"TableName": TABLE, "IndexName": "ByG", "KeyConditionExpression": "G = :g",
                                  "ExpressionAttributeValues": {":g": {"S": "g0"}}, **extra}
        while True:
            reply = ddb.query(**kwargs)
            out.append((reply["Items"], reply.get("LastEvaluatedKey"), reply["Count"], reply["ScannedCount"]))
            if "LastEvaluatedKey" not in reply:
                return out
            kwargs["ExclusiveStartKey"] = reply["LastEvaluatedKey"]

    cases = [{}, {"Limit": 4}, {"Limit": 3, "ScanIndexForward": False},
             {"FilterExpression": "n > :five", "ExpressionAttributeValues": {":g": {"S": "g0"}, ":five": {"N": "5"}},
              "Limit": 5}]
    tuned = [pages(**case) for case in cases]
    assert len(tuned[1]) > 2 and tuned[0][0][2] > 5
    monkeypatch.setattr(Table, "query", Table.query.__wrapped__)
    monkeypatch.setattr(Table, "all_items", Table.all_items.__wrapped__)
    assert tuned == [pages(**case) for case in cases]


def _create_streamed_table_with_index(client: Any, view_type: str) -> None:
    """The app's table shape in small: string keys, a GSI ``ByG`` on ``G``, a stream of ``view_type``."""
    client.create_table(
        TableName=TABLE, BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "PK", "KeyType": "HASH"}, {"AttributeName": "SK", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": n, "AttributeType": "S"} for n in ("PK", "SK", "G")],
        GlobalSecondaryIndexes=[{"IndexName": "ByG", "KeySchema": [{"AttributeName": "G", "KeyType": "HASH"}],
                                 "Projection": {"ProjectionType": "ALL"}}],
        StreamSpecification={"StreamEnabled": True, "StreamViewType": view_type},
    )


def test_index_queries_follow_every_kind_of_write(aws_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """A streamed table answers GSI queries from an attribute index kept by its writes (puts, updates,
    deletes, transactions, cancelled ones too); the answers are moto's own walk's."""
    import random

    import boto3
    from moto import mock_aws
    from moto.dynamodb.models.table import Table

    with mock_aws():
        moto_tuning.apply()
        ddb = boto3.client("dynamodb", region_name="eu-central-1")
        _create_streamed_table_with_index(ddb, "NEW_IMAGE")

        def answers() -> list[Any]:
            return [sorted((i["PK"]["S"], i["SK"]["S"], i.get("n", {}).get("N")) for i in ddb.query(
                TableName=TABLE, IndexName="ByG", KeyConditionExpression="G = :g",
                ExpressionAttributeValues={":g": {"S": g}})["Items"]) for g in ("g0", "g1", "g2")]

        rng = random.Random(7)
        answers()  # the index is built here, then follows the writes below
        seen: list[Any] = []
        for step in range(120):
            key = _item(f"p{rng.randrange(4)}", str(rng.randrange(12)))
            g = {"S": f"g{rng.randrange(3)}"}
            kind = rng.randrange(5)
            try:
                if kind == 0:
                    ddb.put_item(TableName=TABLE, Item={**key, "G": g, "n": {"N": str(step)}})
                elif kind == 1:
                    ddb.update_item(TableName=TABLE, Key=key, UpdateExpression="SET G = :g, n = :n",
                                    ExpressionAttributeValues={":g": g, ":n": {"N": str(step)}})
                elif kind == 2:
                    ddb.update_item(TableName=TABLE, Key=key, UpdateExpression="REMOVE G")
                elif kind == 3:
                    ddb.delete_item(TableName=TABLE, Key=key)
                else:  # a transaction that moves one item and then fails on a condition: nothing moves
                    ddb.transact_write_items(TransactItems=[
                        {"Update": {"TableName": TABLE, "Key": key, "UpdateExpression": "SET G = :g",
                                    "ExpressionAttributeValues": {":g": g}}},
                        {"ConditionCheck": {"TableName": TABLE, "Key": _item("never", "x"),
                                            "ConditionExpression": "attribute_exists(PK)"}}])
            except ClientError:
                pass
            if step % 10 == 9:
                tuned = answers()
                with monkeypatch.context() as moto_own:
                    moto_own.setattr(Table, "all_items", Table.all_items.__wrapped__)
                    moto_own.setattr(Table, "query", Table.query.__wrapped__)
                    seen.append((step, tuned, answers()))
        assert all(tuned == own for _, tuned, own in seen) and any(seen[-1][1])
        table = _backend_table()  # answered from the index (in the disk store's file, or moto_tuning's own)
        assert "G" in (getattr(table.items, "indexed", None) or table.__dict__["_sarafan_index"])


def test_stream_records_read_by_every_live_iterator_are_dropped(aws_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3
    from botocore.config import Config
    from moto import mock_aws

    monkeypatch.setattr(moto_tuning, "TRIM_STEP", 50)
    monkeypatch.setattr(moto_tuning, "MAX_SHARD_ITERATORS", 3)  # older iterators are forgotten: unusable
    with mock_aws():
        moto_tuning.apply()
        ddb = boto3.client("dynamodb", region_name="eu-central-1")
        arn = ddb.create_table(
            TableName=TABLE, BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "PK", "KeyType": "HASH"}, {"AttributeName": "SK", "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": n, "AttributeType": "S"} for n in ("PK", "SK")],
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"},
        )["TableDescription"]["LatestStreamArn"]
        streams = boto3.client("dynamodbstreams", region_name="eu-central-1",
                               config=Config(account_id_endpoint_mode="disabled"))
        shard_id = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
        iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard_id,
                                              ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        received: list[int] = []
        for batch in range(6):
            for i in range(40):
                ddb.put_item(TableName=TABLE, Item=_item("p", f"{batch}-{i}"))
            reply = streams.get_records(ShardIterator=iterator, Limit=1000)
            received += [int(r["dynamodb"]["SequenceNumber"]) for r in reply["Records"]]
            iterator = reply["NextShardIterator"]
        reply = streams.get_records(ShardIterator=iterator)
        assert reply["Records"] == []
        assert received == list(range(received[0], received[0] + 240))  # every record once, in order
        shard = _backend_table().stream_shard
        assert len(shard.items) < 240 and shard.starting_sequence_number > received[0]
        ddb.put_item(TableName=TABLE, Item=_item("p", "last"))
        reply = streams.get_records(ShardIterator=reply["NextShardIterator"])
        assert [int(r["dynamodb"]["SequenceNumber"]) for r in reply["Records"]] == [received[-1] + 1]


def test_the_stream_pollers_calls_answer_what_the_http_shaped_path_answers(aws_env: None) -> None:
    """DynamoDB Streams calls take the in-process hop too (``STREAM_ACTIONS``): same answers, timestamps
    as botocore parses them, blobs as bytes, errors as before."""
    import boto3
    from botocore.config import Config
    from moto import mock_aws
    from moto.core.models import botocore_stubber

    with mock_aws():
        moto_tuning.apply()
        ddb = boto3.client("dynamodb", region_name="eu-central-1")
        arn = ddb.create_table(
            TableName=TABLE, BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "PK", "KeyType": "HASH"}, {"AttributeName": "SK", "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": n, "AttributeType": "S"} for n in ("PK", "SK")],
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
        )["TableDescription"]["LatestStreamArn"]
        ddb.put_item(TableName=TABLE, Item={**_item("a", "1"), "n": {"N": "1.50"}, "b": {"B": b"\x00\xff"},
                                            "bs": {"BS": [b"\x01"]},
                                            "m": {"M": {"k": {"L": [{"S": "v"}, {"NULL": True}, {"B": b"\x02"}]}}}})
        ddb.update_item(TableName=TABLE, Key=_item("a", "1"), UpdateExpression="ADD n :one",
                        ExpressionAttributeValues={":one": {"N": "1"}})
        streams = boto3.client("dynamodbstreams", region_name="eu-central-1",
                               config=Config(account_id_endpoint_mode="disabled"))
        routed: list[str] = []
        original = botocore_stubber.process_request

        def counted(request: Any) -> Any:
            routed.append(request.url)
            return original(request)

        def calls() -> list[Any]:
            out: list[Any] = [streams.describe_stream(StreamArn=arn), streams.list_streams(TableName=TABLE)]
            shard = out[0]["StreamDescription"]["Shards"][0]["ShardId"]
            iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON")
            reply = streams.get_records(ShardIterator=iterator["ShardIterator"])
            out.append({k: v for k, v in reply.items() if k != "NextShardIterator"})
            return [_without_volatile(r) for r in out]

        botocore_stubber.process_request = counted  # type: ignore[method-assign]
        try:
            direct = calls()
            assert routed == []
            moto_tuning.DIRECT_CALLS[0] = False
            usual = calls()
            assert len(routed) == 4
        finally:
            moto_tuning.DIRECT_CALLS[0] = True
            botocore_stubber.process_request = original  # type: ignore[method-assign]
        assert direct == usual
        records = direct[2]["Records"]
        assert [r["eventName"] for r in records] == ["INSERT", "MODIFY"]
        assert records[1]["dynamodb"]["NewImage"]["m"]["M"]["k"]["L"][2] == {"B": b"\x02"}
        assert records[0]["dynamodb"]["ApproximateCreationDateTime"].tzinfo is not None


def test_the_lean_request_is_the_request_moto_builds(ddb: Any) -> None:
    from moto.core.request import Request
    from moto.dynamodb.responses import DynamoHandler

    url = "https://dynamodb.eu-central-1.amazonaws.com/"
    headers = {"X-Amz-Target": "DynamoDB_20120810.GetItem", "Content-Type": "application/x-amz-json-1.0",
               "Authorization": "AWS4-HMAC-SHA256 Credential=local/20000101/eu-central-1/dynamodb/aws4_request, "
                                "SignedHeaders=host, Signature=0", "User-Agent": "Boto3/1.35 md/x", "Content-Length": "28",
               "Transfer-Encoding": "chunked"}
    body = b'{"TableName": "engine-test"}'
    ours = moto_tuning.lean_request(Request, url, headers, body)
    theirs = Request.from_primitives("POST", url, headers, body)
    for name in ("method", "url", "raw_url", "raw_path", "path", "query_string", "data", "content_type", "content_length",
                 "host", "scheme", "url_root", "form", "files"):
        assert getattr(ours, name) == getattr(theirs, name), name
    assert sorted(ours.headers.items()) == sorted(theirs.headers.items())
    handlers = [DynamoHandler(), DynamoHandler()]
    for handler, request in zip(handlers, (ours, theirs), strict=True):
        handler.setup_class(request)
    for name in ("body", "querystring", "region", "current_account", "uri", "path", "raw_path", "method"):
        assert getattr(handlers[0], name) == getattr(handlers[1], name), name


def test_items_are_kept_packed_and_unpack_to_what_moto_built(ddb: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """``compact_items``: stored items hold marshal bytes; reading one gives moto's own values back."""
    from moto.dynamodb.models.dynamo_type import DynamoType, Item

    monkeypatch.setattr(moto_tuning, "UNPACKED_ITEMS", 2)
    attrs = {"n": {"N": "1.50"}, "s": {"S": "ж"}, "b": {"B": b"\x00\xff"}, "ss": {"SS": ["x", "y"]},
             "ns": {"NS": ["1", "2"]}, "bs": {"BS": [b"\x01"]}, "t": {"BOOL": True}, "z": {"NULL": True},
             "m": {"M": {"k": {"L": [{"S": "v"}, {"NULL": True}, {"B": b"\x02"}, {"M": {"d": {"N": "3"}}}]}}},
             "l": {"L": []}, "e": {"M": {}}}
    for i in range(6):
        ddb.put_item(TableName=TABLE, Item=_item("p", str(i), **attrs))
    ddb.update_item(TableName=TABLE, Key=_item("p", "0"), UpdateExpression="ADD n :one SET m.k[0] = :w",
                    ExpressionAttributeValues={":one": {"N": "1"}, ":w": {"S": "w"}})
    table = _backend_table()
    stored = list(table.items[DynamoType({"S": "p"})].values())
    assert sum(item.__dict__["_packed"] is not None for item in stored) >= 4  # all but the newest two
    moto_built = Item(DynamoType({"S": "p"}), DynamoType({"S": "1"}), _item("p", "1", **attrs))
    assert stored[1].attrs == moto_built.attrs and stored[1].to_json() == moto_built.to_json()
    assert stored[1].to_json() == Item.to_json.__wrapped__(moto_built)  # type: ignore[attr-defined]
    reply = ddb.get_item(TableName=TABLE, Key=_item("p", "0"))["Item"]
    assert reply["n"] == (DynamoType({"N": "1.50"}) + DynamoType({"N": "1"})).to_json()  # moto's arithmetic
    assert reply["m"]["M"]["k"]["L"][0] == {"S": "w"}
    assert reply["b"] == {"B": b"\x00\xff"} and reply["m"]["M"]["k"]["L"][2] == {"B": b"\x02"}
    assert [i["SK"]["S"] for i in ddb.query(TableName=TABLE, KeyConditionExpression="PK = :p",
                                             FilterExpression="t = :t", ExpressionAttributeValues={
                                                 ":p": {"S": "p"}, ":t": {"BOOL": True}})["Items"]] == list("012345")
    moto_tuning.pack_unpacked_items(0)
    assert all(item.__dict__["_packed"] is not None for item in stored)
    assert ddb.get_item(TableName=TABLE, Key=_item("p", "3"))["Item"] == {
        **_item("p", "3"), **{k: v for k, v in attrs.items()}}


def test_expired_items_are_swept_as_dynamodbs_ttl_does(aws_env: None) -> None:
    """Items whose TTL passed are deleted (packed or not), each with a service-marked REMOVE stream record;
    items without the attribute, or with a later TTL, stay; tables without TTL are left alone."""
    import time

    import boto3
    from moto import mock_aws

    with mock_aws():
        moto_tuning.apply()
        client = boto3.client("dynamodb", region_name="eu-central-1")
        for name in (TABLE, "no-ttl"):
            client.create_table(
                TableName=name, BillingMode="PAY_PER_REQUEST",
                KeySchema=[{"AttributeName": "PK", "KeyType": "HASH"}, {"AttributeName": "SK", "KeyType": "RANGE"}],
                AttributeDefinitions=[{"AttributeName": n, "AttributeType": "S"} for n in ("PK", "SK")],
                StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"})
        client.update_time_to_live(TableName=TABLE, TimeToLiveSpecification={"Enabled": True,
                                                                             "AttributeName": "expires_at_epoch"})
        now = int(time.time())
        for table in (TABLE, "no-ttl"):
            for i in range(30):
                ttl = now - 10 if i % 3 == 0 else now + 3600 if i % 3 == 1 else None
                item = _item(f"p{i % 4}", f"{i:02d}", **({"expires_at_epoch": {"N": str(ttl)}} if ttl else {}))
                client.put_item(TableName=table, Item=item)
        moto_tuning.pack_unpacked_items(0)  # most items packed, as in a long run
        client.get_item(TableName=TABLE, Key={"PK": {"S": "p0"}, "SK": {"S": "00"}})  # one unpacked
        records_before = len(_backend_table().stream_shard.items)

        removed = sum(moto_tuning.sweep_expired(budget=7) for _ in range(10))

        assert removed == 10
        left = {i["SK"]["S"] for i in client.scan(TableName=TABLE)["Items"]}
        assert left == {f"{i:02d}" for i in range(30) if i % 3}
        assert len(client.scan(TableName="no-ttl")["Items"]) == 30
        new_records = _backend_table().stream_shard.items[records_before:]
        assert len(new_records) == 10
        assert all(r.to_json()["eventName"] == "REMOVE" and r.to_json()["userIdentity"] ==
                   {"type": "Service", "principalId": "dynamodb.amazonaws.com"} for r in new_records)
        assert moto_tuning.sweep_expired() == 0


def _tree(value: Any) -> Any:
    """A ``DynamoType`` as plain data (type, value, nested values likewise), to compare two builds."""
    from moto.dynamodb.models.dynamo_type import DynamoType

    assert type(value) is DynamoType
    raw = value.value
    if isinstance(raw, list):
        raw = [_tree(v) if isinstance(v, DynamoType) else ("raw", v) for v in raw]
    elif isinstance(raw, dict):
        raw = {k: _tree(v) if isinstance(v, DynamoType) else ("raw", v) for k, v in raw.items()}
    return value.type, raw


@pytest.mark.parametrize("raw", [
    {"S": "plain"}, {"S": ""}, {"S": "Ünïcödé ✓ 名前"}, {"N": "0"}, {"N": "-12.50"}, {"BOOL": True}, {"BOOL": False},
    {"NULL": True}, {"B": b"\x00\xffbytes"}, {"SS": ["a", "bé"]}, {"NS": ["1", "2.5"]}, {"BS": [b"x", b"yz"]},
    {"L": []}, {"M": {}}, {"L": [{"S": "a"}, {"N": "1"}, {"L": [{"BOOL": True}]}, {"M": {"k": {"SS": ["x"]}}}]},
    {"M": {"ключ": {"S": "значение"}, "n": {"N": "7"}, "deep": {"M": {"l": {"L": [{"NULL": True}, {"B": b"q"}]}}}}},
])
def test_an_items_values_are_built_and_sized_as_moto_builds_and_sizes_them(aws_env: None, raw: dict[str, Any]) -> None:
    import copy

    from moto.dynamodb.models.dynamo_type import DynamoType

    built, size = moto_tuning.sized_dynamo_type(copy.deepcopy(raw))
    theirs = DynamoType(copy.deepcopy(raw))
    assert _tree(built) == _tree(theirs)
    assert size == theirs.size() == built.size()
    assert built == theirs


def test_an_item_over_400_kb_is_still_refused(ddb: Any) -> None:
    big = "x" * 210_000  # two of them: over moto's 405,000 bytes
    with pytest.raises(ClientError) as raised:
        ddb.put_item(TableName=TABLE, Item=_item("big", "1", a={"S": big}, b={"L": [{"S": big}]}, c={"M": {"k": {"S": "y"}}}))
    assert "Item size has exceeded the maximum allowed size" in str(raised.value)
    ddb.put_item(TableName=TABLE, Item=_item("big", "2", a={"S": big}))
    assert ddb.get_item(TableName=TABLE, Key={"PK": {"S": "big"}, "SK": {"S": "2"}})["Item"]["a"]["S"] == big


def _conditional_put(pk: str, sk: str, **attrs: Any) -> dict[str, Any]:
    """A put that creates an item (the import's shape: ``attribute_not_exists`` on the hash key, ``ALL_OLD``)."""
    return {"Put": {"TableName": TABLE, "Item": _item(pk, sk, **attrs), "ConditionExpression": "attribute_not_exists (#0)",
                    "ExpressionAttributeNames": {"#0": "PK"}, "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}}


_MEMBER = {"name": {"S": "Ünïcödé ✓ 名前"}, "n": {"N": "-12.50"}, "flag": {"BOOL": False}, "empty": {"L": []},
           "l": {"L": [{"S": "a"}, {"N": "not a number in a list"}, {"L": [{"BOOL": True}]}, {"M": {"k": {"S": "x"}}}]},
           "m": {"M": {"ключ": {"S": "значение"}, "deep": {"M": {"z": {"N": "7"}}}}}, "G": {"S": "g1"}}
_BALANCE = {"Update": {"TableName": TABLE, "Key": _item("bal", "1"), "UpdateExpression": "SET #0 = :0 ADD #1 :1",
                       "ExpressionAttributeNames": {"#0": "entity", "#1": "available"},
                       "ExpressionAttributeValues": {":0": {"S": "balance"}, ":1": {"N": "5"}},
                       "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}}

#: Transactions run in order on one table, each answered (or refused) the same with and without the fast path.
TRANSACTIONS: list[list[dict[str, Any]]] = [
    [_conditional_put("a", "1", **_MEMBER), _conditional_put("a", "2"), _BALANCE],  # the import's shape
    [_conditional_put("b", "1", G={"S": "g1"}), _conditional_put("a", "1"),  # exists: ALL_OLD in the reason
     _BALANCE, _conditional_put("c", "1", n={"N": "1e500"}),  # a number DynamoDB refuses: a reason too
     {"Update": {"TableName": TABLE, "Key": _item("nobody", "1"), "UpdateExpression": "ADD #1 :1",
                 "ConditionExpression": "attribute_exists (#0)", "ExpressionAttributeNames": {"#0": "PK", "#1": "n"},
                 "ExpressionAttributeValues": {":1": {"N": "1"}}, "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}}],
    [_conditional_put("d", "1"), {"Put": {"TableName": TABLE, "Item": _item("a", "2", v={"S": "replaced"})}}],
    [_conditional_put("e", "1"), _BALANCE, _conditional_put("e", "1")],  # one item twice: ValidationException
    [_conditional_put("f", "1"), _BALANCE, _conditional_put("f", "2", big={"S": "x" * 410_000})],  # over 400 KB
    [_conditional_put("g", "1"), {"Put": {"TableName": TABLE, "Item": {"PK": {"N": "1"}, "SK": {"S": "1"}}}}],
    [_conditional_put("h", "1"), _conditional_put("x" * 2049, "1")],  # hash key over 2,048 bytes
    [_conditional_put("i", "1"), _conditional_put("i", "y" * 1025)],  # range key over 1,024 bytes
    [_conditional_put("j", "1", b={"B": b"\x00\xff"}, s={"SS": ["a"]}, z={"NULL": True}),  # moto's own put
     _conditional_put("j", "2", m={"M": {"S": {"S": "a member named like a type"}}}), _BALANCE],
    [_conditional_put("k", "1"), {"ConditionCheck": {"TableName": TABLE, "Key": _item("a", "1"),
                                                     "ConditionExpression": "attribute_exists (PK)"}}],
    [_conditional_put("l", "1"), {"Put": {"TableName": "no-such-table", "Item": _item("l", "2")}}],
    [_conditional_put("m", "1", n={"N": " 1"}), _conditional_put("m", "2")],  # whitespace: not a number
    # refused before the backend: an unused name, empty keys (an index's too), empty values
    [_conditional_put("n", "1"), {"Put": {**_conditional_put("n", "2")["Put"],
                                          "ExpressionAttributeNames": {"#0": "PK", "#x": "unused"}}}],
    [_conditional_put("o", "1"), _conditional_put("o", "2", G={"S": ""})],
    [_conditional_put("p", "1"), _conditional_put("", "2")],
    [_conditional_put("q", "1"), {"Update": {**_BALANCE["Update"], "ExpressionAttributeValues": {}}}],
    [_conditional_put("r", "1"), {"Update": {**_BALANCE["Update"], "ExpressionAttributeNames": {
        "#0": "entity", "#1": "available", "#2": "unused"}}}],
    [{"Update": {**_BALANCE["Update"], "Key": _item("s", "")}}],
    [_conditional_put("t", "1")],  # and the table still takes a plain put after all of them
]


def _transaction_outcomes(client: Any) -> list[Any]:
    """Each transaction's answer, the table and its stream records after it (volatile fields left out)."""
    outcomes: list[Any] = []
    shard = _backend_table().stream_shard
    for items in TRANSACTIONS:
        seen = len(shard.items)
        try:
            answer: Any = client.transact_write_items(TransactItems=items)
            answer = {k: v for k, v in answer.items() if k != "ResponseMetadata"}
        except ClientError as error:
            answer = (error.response["Error"], error.response.get("CancellationReasons"))
        records = []
        for record in shard.items[seen:]:
            data = record.to_json()
            # (SizeBytes counts the creation time's digits: it varies by a byte with the clock in either path)
            records.append((data["eventName"], {k: v for k, v in data["dynamodb"].items()
                                                if k not in ("ApproximateCreationDateTime", "SizeBytes")}))
        outcomes.append((answer, _all(client), records, len(shard.items)))
    return outcomes


def test_a_transactions_conditional_puts_answer_what_motos_own_loop_answers(aws_env: None) -> None:
    """The fast path of a transaction (``fast_conditional_puts``) against moto's own loop: the same answers,
    cancellation reasons (``ALL_OLD`` items included), refusals, items, stream records and rollbacks."""
    import boto3
    from moto import mock_aws

    def run(fast: bool) -> tuple[list[Any], int]:
        with mock_aws():
            moto_tuning.apply()
            client = boto3.client("dynamodb", region_name="eu-central-1")
            _create_streamed_table_with_index(client, "NEW_AND_OLD_IMAGES")
            client.query(TableName=TABLE, IndexName="ByG", KeyConditionExpression="G = :g",
                         ExpressionAttributeValues={":g": {"S": "g1"}})  # the attribute index follows writes
            built = [0]
            plain_put = moto_tuning._plain_put

            def counted(*args: Any) -> Any:
                item = plain_put(*args)
                built[0] += item is not None
                return item

            saved = moto_tuning.FAST_TRANSACTIONS[0]
            moto_tuning.FAST_TRANSACTIONS[0] = fast
            moto_tuning._plain_put = counted  # type: ignore[assignment]
            try:
                outcomes = _transaction_outcomes(client)
                by_g = client.query(TableName=TABLE, IndexName="ByG", KeyConditionExpression="G = :g",
                                    ExpressionAttributeValues={":g": {"S": "g1"}})["Items"]
                from moto.dynamodb.models import dynamodb_backends

                backend = dynamodb_backends["123456789012"]["eu-central-1"]
                for items in TRANSACTIONS:
                    try:
                        checked.append(moto_tuning._passes_moto_checks(backend, items))
                    except Exception:  # the handler takes moto's own path then
                        checked.append(False)
                return [*outcomes, sorted(by_g, key=lambda i: (i["PK"]["S"], i["SK"]["S"]))], built[0]
            finally:
                moto_tuning.FAST_TRANSACTIONS[0] = saved
                moto_tuning._plain_put = plain_put  # type: ignore[assignment]

    checked: list[bool] = []
    fast, built = run(True)
    own, not_built = run(False)
    assert not_built == 0 and built == 12  # the fast path wrote the plain puts itself
    # the handler's checks were proven to pass without moto's loop except where moto refuses (or the shape differs)
    assert [n for n, passed in enumerate(checked[: len(TRANSACTIONS)]) if not passed] == [9, 10, 12, 13, 14, 15, 16, 17]
    for number, (ours, theirs) in enumerate(zip(fast, own, strict=True)):
        assert ours == theirs, f"transaction {number}"
    answers = [outcome[0] for outcome in fast[:-1]]
    assert answers[0] == answers[2] == {"ConsumedCapacity": [], "ItemCollectionMetrics": {}}
    assert [r["Code"] for r in answers[1][1]] == ["None", "ConditionalCheckFailed", "None", "ValidationException",
                                                  "ConditionalCheckFailed"]
    assert answers[1][1][1]["Item"]["name"] == _MEMBER["name"]  # ALL_OLD: the existing item
    assert [a[0]["Code"] for a in answers[3:8]] == ["ValidationException"] * 5
    assert [a[0]["Code"] for a in answers[12:18]] == ["ValidationException"] * 6
    assert fast[1][1] == fast[0][1] and fast[1][3] == fast[0][3]  # cancelled: items and stream as they were
    assert fast[0][2][0][1]["NewImage"] == _item("a", "1", **_MEMBER)
    assert fast[2][2][1][0] == "MODIFY" and fast[2][2][1][1]["OldImage"] == _item("a", "2")


def test_a_string_utf8_cannot_encode_goes_to_motos_own_put() -> None:
    """A lone surrogate (the API refuses it at the edge; an engine client may still send one): the fast path
    hands the item to moto's put, so moto's checks report its errors in moto's order."""
    assert moto_tuning._plain_put_value({"S": "\ud800"}, []) is None
    assert moto_tuning._plain_put_value({"M": {"k": {"S": "ok \udfff"}}}, []) is None
    assert moto_tuning._plain_put_value({"S": "ключ"}, []) == (("S", "ключ"), 8)


def test_the_trimmed_request_steps_give_what_moto_gives(aws_env: None) -> None:
    """``trim_request_overheads``: the response enrichment and the remembered expression rewrite."""
    import re

    import moto.dynamodb.models as models
    from moto.core.responses import BaseResponse

    moto_tuning.apply()
    ours = BaseResponse._enrich_response
    theirs = ours.__wrapped__  # type: ignore[attr-defined]
    for body in ('{"Records":[{"a":"<Request>"}]}', "<x><RequestId>old</RequestId></x>", b"bytes", "", None):
        mine, moto_own = ours({"status": 200}, body), theirs({"status": 200}, body)
        # (the request id is random: the body holds it where it names one)
        assert [str(mine[1]).replace(mine[0]["x-amzn-requestid"], "ID"), mine[0].keys(), mine[0]["status"]] == \
            [str(moto_own[1]).replace(moto_own[0]["x-amzn-requestid"], "ID"), moto_own[0].keys(), "200"]
        assert len(mine[0]["x-amzn-requestid"]) == 52
    assert "old" not in ours({}, "<x><RequestId>old</RequestId></x>")[1]
    for text in ("SET #0 = :0, #1 = :1 ADD #2 :2", "SET a=b + c - d", "ADD n :n"):
        for _ in range(2):
            assert models.re.sub(r"\s*([=\+-])\s*", "\\1", text) == re.sub(r"\s*([=\+-])\s*", "\\1", text)
    assert models.re.compile is re.compile


def test_a_transactions_resource_arn_list_is_what_jmespath_finds(aws_env: None) -> None:
    """``remember_resource_arn_lists``: botocore's endpoint parameter for a transaction, remembered by the
    tables it names, against JMESPath's own search of the same parameters."""
    import jmespath
    from botocore.regions import EndpointRulesetResolver

    moto_tuning.apply()
    resolve = EndpointRulesetResolver._resolve_param_as_operation_context_param
    model = type("Model", (), {"operation_context_parameters": {
        "ResourceArnList": {"path": moto_tuning._TRANSACT_TABLES_PATH}}})()
    cases: list[Any] = [
        {"TransactItems": [{"Put": {"TableName": "a", "Item": {}}}, {"Update": {"TableName": "b"}}]},
        {"TransactItems": [{"Put": {"TableName": "a"}, "Delete": {"TableName": "c"}}, {"ConditionCheck": {}}]},
        {"TransactItems": []}, {"TransactItems": [{"Put": "odd"}, 5]}, {"TransactItems": [{"Put": {"TableName": 3}}]},
        {"Other": 1},
    ]
    for _ in range(2):  # the second time from what was remembered
        for call_args in cases:
            expected = jmespath.search(moto_tuning._TRANSACT_TABLES_PATH, call_args)
            assert resolve(None, "ResourceArnList", model, call_args) == expected
    assert resolve(None, "Elsewhere", model, cases[0]) is None
