"""The packaging checks and template fixes of ``infra/package.py`` on small inputs (no Chalice run)."""

from __future__ import annotations

import copy
import hashlib
import zipfile
from pathlib import Path
from typing import Any

import pytest

from infra import package as packaging

GOOD = {
    "SARAFAN_STAGE": "prod", "SARAFAN_TABLE": "sarafan-prod", "SARAFAN_SECRET_KEY_SECRET_ID": "sarafan/prod/master-key",
    "SARAFAN_OPERATOR_KEY_SHA256": hashlib.sha256(b"srf_op_x").hexdigest(), "SARAFAN_SES_SENDER": "no-reply@shop.example",
    "SARAFAN_PUBLIC_BASE_URL": "https://api.shop.example", "SARAFAN_DEFAULT_LANDING_URL": "https://shop.example/",
}


def test_good_settings_pass() -> None:
    assert packaging.check_settings("prod", GOOD) == []


@pytest.mark.parametrize(("change", "expected"), [
    ({"SARAFAN_OPERATOR_KEY_SHA256": "REPLACE_ME-run-python3-infra-dev.py-operator-key"}, "is a placeholder"),
    ({"SARAFAN_OPERATOR_KEY_SHA256": ""}, "SARAFAN_OPERATOR_KEY_SHA256 is empty"),
    ({"SARAFAN_OPERATOR_KEY_SHA256": "abc123"}, "64-character hex"),
    ({"SARAFAN_SES_SENDER": "replace_me@example.com"}, "SARAFAN_SES_SENDER is a placeholder"),
    ({"SARAFAN_TABLE": " "}, "SARAFAN_TABLE is empty"),
    ({"SARAFAN_DEFAULT_LANDING_URL": ""}, "SARAFAN_DEFAULT_LANDING_URL is empty"),
    ({"SARAFAN_DEFAULT_LANDING_URL": "http://shop.example/"}, "absolute https:// URL"),
    ({"SARAFAN_DEFAULT_LANDING_URL": "/landing"}, "absolute https:// URL"),
    ({"SARAFAN_SECRET_KEY": "c2VjcmV0"}, "SARAFAN_SECRET_KEY must not be"),
    ({"SARAFAN_WEBHOOK_ALLOW_ANY_TARGET": "1"}, "local run only"),
])
def test_bad_settings_are_refused_with_how_to_fix_them(change: dict[str, str], expected: str) -> None:
    problems = packaging.check_settings("prod", {**GOOD, **change})
    assert len(problems) == 1 and expected in problems[0]
    assert ".chalice/config.json, stages.prod.environment_variables" in problems[0]


def test_the_shipped_config_needs_the_operators_own_settings() -> None:
    """As checked out, packaging refuses until the operator sets their key's hash and their landing page."""
    config = packaging.load_config()
    for stage in ("dev", "prod"):
        problems = packaging.check_settings(stage, packaging.stage_environment(config, stage))
        assert len(problems) == 2
        assert "SARAFAN_OPERATOR_KEY_SHA256 is a placeholder" in problems[0]
        assert "python3 infra/dev.py operator-key" in problems[0]
        assert "SARAFAN_DEFAULT_LANDING_URL is empty" in problems[1]


def test_packaging_refuses_before_building(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="refusing to build stage 'prod'"):
        packaging.stage("prod", overrides={"SARAFAN_OPERATOR_KEY_SHA256": ""}, build=tmp_path)
    assert not (tmp_path / "lambda-prod").exists()


def _template() -> dict[str, Any]:
    role = {"Type": "AWS::IAM::Role", "Properties": {"Policies": [{"PolicyName": "p", "PolicyDocument": {
        "Version": "2012-10-17", "Statement": [{"Sid": "Logs", "Effect": "Allow", "Action": ["logs:PutLogEvents"],
                                                "Resource": ["*"]}]}}]}}
    function = {"Type": "AWS::Serverless::Function", "Properties": {
        "Handler": "h", "Role": {"Fn::GetAtt": ["SesFeedbackRole", "Arn"]},
        "Events": {"Sub": {"Type": "SNS", "Properties": {"Topic": "arn:aws:sns:eu-central-1:1:t"}}}}}
    api_function = {"Type": "AWS::Serverless::Function", "Properties": {"Handler": "app.app"}}
    watched_dlq = {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": "x-dlq"}}
    hand_alarm = {"Type": "AWS::CloudWatch::Alarm", "Properties": {
        "Dimensions": [{"Name": "QueueName", "Value": {"Fn::GetAtt": ["CrmFetchDeadLetterQueue", "QueueName"]}}]}}
    return {"Parameters": {}, "Resources": {
        "SesFeedback": function, "SesFeedbackRole": role, "APIHandler": api_function,
        "CrmFetchDeadLetterQueue": watched_dlq, "CrmFetchDeadLettersAlarm": hand_alarm,
        "OtherDLQ": copy.deepcopy(watched_dlq)}}


def test_an_sns_invoked_function_gets_a_dead_letter_queue_it_may_write_to() -> None:
    template = packaging.finish_template(_template(), "prod", api_stage="v1", log_retention_days=90)
    resources = template["Resources"]
    target = {"Fn::GetAtt": ["SesFeedbackDeadLetterQueue", "Arn"]}
    assert resources["SesFeedback"]["Properties"]["DeadLetterQueue"] == {"Type": "SQS", "TargetArn": target}
    queue = resources["SesFeedbackDeadLetterQueue"]["Properties"]
    assert queue["SqsManagedSseEnabled"] is True and queue["MessageRetentionPeriod"] == 1209600
    statements = resources["SesFeedbackRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    assert {"Sid": "DeadLetters", "Effect": "Allow", "Action": ["sqs:SendMessage"], "Resource": [target]} in statements
    assert "SesFeedbackDeadLetterQueueDepthAlarm" in resources
    # A synchronously invoked function gets none.
    assert "DeadLetterQueue" not in resources["APIHandler"]["Properties"]
    assert "APIHandlerDeadLetterQueue" not in resources


def test_a_dead_letter_queue_gets_one_depth_alarm() -> None:
    resources = packaging.finish_template(_template(), "prod", api_stage="v1", log_retention_days=90)["Resources"]
    assert "OtherDLQDepthAlarm" in resources
    # Already watched by the hand-written alarm of resources.yaml: no second alarm on the same metric.
    assert "CrmFetchDeadLetterQueueDepthAlarm" not in resources


def test_slim_zip_drops_only_what_the_functions_never_read(tmp_path: Path) -> None:
    path = tmp_path / "deployment.zip"
    kept = ["app.py", "chalicelib/domain/identity.py", "phonenumbers/__init__.py", "phonenumbers/shortdata/__init__.py",
            "phonenumbers/data/region_RU.py", "phonenumberslite-9.0.42.dist-info/LICENSE"]
    dropped = ["phonenumbers/shortdata/region_RU.py", "phonenumbers/__init__.pyi",
               "phonenumberslite-9.0.42.dist-info/RECORD"]
    with zipfile.ZipFile(path, "w") as archive:
        for name in kept + dropped:
            archive.writestr(name, f"# {name}\n" * 50)
    before, after = packaging.slim_zip(path)
    assert after < before
    with zipfile.ZipFile(path) as archive:
        assert sorted(archive.namelist()) == sorted(kept)
        assert archive.read("app.py") == b"# app.py\n" * 50


def test_two_stack_deploy_refuses_without_the_data_stacks_stream_arn(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SARAFAN_TABLE_STREAM_ARN", raising=False)
    ran: list[tuple[str, ...]] = []
    monkeypatch.setattr(packaging, "chalice", lambda *args, **kwargs: ran.append(args) or 0)
    with pytest.raises(SystemExit, match="TableStreamArn"):
        packaging.deploy("prod", {"SARAFAN_OPERATOR_KEY_SHA256": GOOD["SARAFAN_OPERATOR_KEY_SHA256"]})
    assert ran == []


def test_two_stack_deploy_points_the_event_sources_at_the_data_stack(monkeypatch: pytest.MonkeyPatch,
                                                                     tmp_path: Path) -> None:
    arn = "arn:aws:dynamodb:eu-central-1:123456789012:table/sarafan-prod/stream/2026-12-03T00:00:00.000"
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(packaging, "stage", lambda name, overrides=None, build=None: tmp_path)
    monkeypatch.setattr(packaging, "chalice", lambda project, *args, extra_env=None: calls.append(
        {"args": args, "env": extra_env}) or 0)
    monkeypatch.setattr(packaging, "ROOT", tmp_path)
    assert packaging.deploy("prod", {"SARAFAN_TABLE_STREAM_ARN": arn}) == 0
    assert calls == [{"args": ("deploy", "--stage", "prod"), "env": {
        "SARAFAN_TABLE_STREAM_ARN": arn, "SARAFAN_SES_FEEDBACK_TOPIC": "sarafan-prod-ses-feedback"}}]
