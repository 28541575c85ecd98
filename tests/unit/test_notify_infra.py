"""The notification Lambdas' IAM and event source settings, checked against what they really call."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
STAGES = ("dev", "prod")
HANDLERS = {"table_stream": "notify", "notify_sweep": "notify", "sleeping_reminders": "notify",
            "ses_feedback": "ses-feedback"}


def policy_actions(name: str) -> set[str]:
    document = json.loads((ROOT / ".chalice" / name).read_text(encoding="utf-8"))
    actions: set[str] = set()
    for statement in document["Statement"]:
        value = statement["Action"]
        actions |= {value} if isinstance(value, str) else set(value)
    return actions


@pytest.mark.parametrize("stage", STAGES)
def test_each_notification_handler_has_its_own_policy(stage: str) -> None:
    config = json.loads((ROOT / ".chalice" / "config.json").read_text(encoding="utf-8"))
    functions = config["stages"][stage]["lambda_functions"]
    for handler, policy in HANDLERS.items():
        name = functions[handler]["iam_policy_file"]
        assert name == f"policy-{stage}-{policy}.json" and (ROOT / ".chalice" / name).exists()
        text = (ROOT / ".chalice" / name).read_text(encoding="utf-8")
        other = "prod" if stage == "dev" else "dev"
        assert f"sarafan-{other}" not in text and f"sarafan-{stage}" in text


@pytest.mark.parametrize("stage", STAGES)
def test_policies_grant_exactly_the_calls(stage: str) -> None:
    assert policy_actions(f"policy-{stage}-notify.json") == {
        "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:Query", "dynamodb:BatchGetItem",
        "dynamodb:TransactWriteItems",  # claim, derived messages, reads, finish, sweep/reminder indexes
        "dynamodb:BatchWriteItem",  # a batch's delivery-log lines
        "dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator", "dynamodb:ListStreams",
        "secretsmanager:GetSecretValue",  # the master secret signs unsubscribe links
        "ses:SendRawEmail", "sns:Publish", "sqs:SendMessage",
        "logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents",
    }
    assert policy_actions(f"policy-{stage}-ses-feedback.json") == {
        "dynamodb:GetItem", "dynamodb:UpdateItem", "logs:CreateLogGroup", "logs:CreateLogStream",
        "logs:PutLogEvents"}


def test_the_packaged_stream_mapping_reports_partial_failures_and_has_an_on_failure_queue(tmp_path: Path) -> None:
    from infra import package

    merged = json.loads(package.merged_template(tmp_path).read_text(encoding="utf-8"))
    source = merged["Resources"]["TableStream"]["Properties"]["Events"]["TableStreamDynamodbEventSource"]["Properties"]
    assert source["Stream"] == {"Fn::GetAtt": ["SarafanTable", "StreamArn"]}
    assert source["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert 0 < source["MaximumRetryAttempts"] <= 5
    assert source["DestinationConfig"]["OnFailure"]["Destination"] == {"Fn::GetAtt": ["StreamFailuresQueue", "Arn"]}
    assert merged["Resources"]["StreamFailuresQueue"]["Properties"]["QueueName"] == {
        "Fn::Sub": "sarafan-${Stage}-stream-failures"}
    kinds = json.loads(source["FilterCriteria"]["Filters"][0]["Pattern"])["dynamodb"]["NewImage"]["entity"]["S"]
    from chalicelib.notify import dispatcher

    assert set(kinds) == set(dispatcher.handled_entities())
    # Every feature's kinds, not only the notifications' own (the filter once dropped them in AWS).
    assert {"outbox", "ledger_entry", "event", "click_counter", "pool_alert"} <= set(kinds)


def test_a_delivery_only_makes_granted_calls(api: Any) -> None:
    """By observation: every DynamoDB/SES/SNS operation the consumer makes is in its policy."""
    from chalicelib import aws
    from chalicelib.store.db import raw_client
    from tests.functional.test_ledger_support import Shop
    from tests.functional.test_notifications import RULES
    from tests.notify_support import stream_poller

    shop = Shop(api, RULES)
    masha = shop.member("masha")
    shop.member("olga", masha["code"])
    seen: set[str] = set()
    raw_client().meta.events.register("before-call.dynamodb", lambda model, **_: seen.add(f"dynamodb:{model.name}"))
    for service in ("ses", "sns"):
        aws.client(service).meta.events.register(f"before-call.{service}",
                                                 lambda model, _s=service, **_: seen.add(f"{_s}:{model.name}"))
    poller = stream_poller()
    poller._setup()  # the poller's own DescribeTable is the local stand-in, not the Lambda
    seen.clear()
    poller.drain()
    shop.order("olga", "o-1", 300_000)
    poller.drain()
    from chalicelib.notify import sweep

    sweep.run_sweep()
    assert "ses:SendRawEmail" in seen and "dynamodb:TransactWriteItems" in seen
    assert seen <= policy_actions("policy-dev-notify.json"), seen - policy_actions("policy-dev-notify.json")
