"""``python3 infra/dev.py package`` builds what CloudFormation accepts: lint it, translate it, deploy it on moto.

Both stages are packaged for real (the same code path as an operator's ``package``,
vendoring included), linted with cfn-lint, translated from SAM with
aws-sam-translator and created as a stack in moto's CloudFormation, then the stack's
functions, alarms and log groups are checked. checkov runs on the same packages in
``.ci/run`` (it is too large for a newcomer's install; see docs/deploy.md).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from infra import package as packaging

ROOT = Path(__file__).resolve().parents[2]
OPERATOR_HASH = hashlib.sha256(b"srf_op_test-package").hexdigest()
STAGES = ("dev", "prod")


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = {}
    for stage in STAGES:
        target = tmp_path_factory.mktemp(f"package-{stage}")
        # Own staging dir: two test workers may package at once.
        code = packaging.package(stage, target, overrides={"SARAFAN_OPERATOR_KEY_SHA256": OPERATOR_HASH,
                                                           "SARAFAN_DEFAULT_LANDING_URL": "https://shop.example/"},
                                 build=tmp_path_factory.mktemp(f"build-{stage}"))
        assert code == 0, f"chalice package --stage {stage} failed"
        out[stage] = target
    return out


def load(out: Path) -> dict[str, Any]:
    from chalice.package import YAMLTemplateSerializer

    return YAMLTemplateSerializer().load_template((out / "sam.yaml").read_text(encoding="utf-8"))  # type: ignore[no-any-return]


@pytest.mark.parametrize("stage", STAGES)
def test_the_package_passes_cfn_lint(packages: dict[str, Path], stage: str) -> None:
    from cfnlint.api import lint_all

    matches = lint_all((packages[stage] / "sam.yaml").read_text(encoding="utf-8"))
    # Errors and warnings, as the cfn-lint command reports by default (not informational hints).
    assert [f"{m.rule.id} {m.message} (line {m.linenumber})" for m in matches if m.rule.id[0] in "EW"] == []


@pytest.mark.parametrize("stage", STAGES)
def test_the_template_follows_the_stage(packages: dict[str, Path], stage: str) -> None:
    template = load(packages[stage])
    assert template["Parameters"]["Stage"]["Default"] == stage
    assert "ApiFunctionName" not in template["Parameters"]
    resources = template["Resources"]
    functions = sorted(k for k, v in resources.items() if v["Type"] == "AWS::Serverless::Function")
    assert {"APIHandler", "ReleasePendingPoints", "SendPartnerWebhooks"} <= set(functions)
    sender = resources["SendPartnerWebhooks"]["Properties"]
    assert sender["Timeout"] == 120 and "rate(1 minute)" in json.dumps(sender["Events"])
    for function in functions:  # every function: errors and throttles, to the operators' topic
        for kind in ("Errors", "Throttles"):
            properties = resources[f"{function}{kind}Alarm"]["Properties"]
            assert properties["MetricName"] == kind
            assert properties["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": function}}]
            assert properties["AlarmActions"] == [{"Ref": "AlarmsTopic"}]
    api = resources["RestAPI"]["Properties"]
    assert api["AccessLogSetting"]["DestinationArn"] == {"Fn::GetAtt": ["ApiAccessLogGroup", "Arn"]}
    assert "$context.identity.sourceIp" not in api["AccessLogSetting"]["Format"]  # no IPs in logs
    assert json.loads(api["AccessLogSetting"]["Format"])["status"] == "$context.status"
    for alarm in ("Api5xxAlarm", "ApiLatencyP99Alarm"):
        dims = {d["Name"]: d["Value"] for d in resources[alarm]["Properties"]["Dimensions"]}
        assert dims == {"ApiName": api["Name"], "Stage": api["StageName"]}
    assert resources["ApiLatencyP99Alarm"]["Properties"]["ExtendedStatistic"] == "p99"
    assert {"TableThrottlesAlarm", "TableSystemErrorsAlarm", "MasterSecret"} <= set(resources)
    env = resources["APIHandler"]["Properties"]["Environment"]["Variables"]
    assert env["SARAFAN_OPERATOR_KEY_SHA256"] == OPERATOR_HASH
    assert env["SARAFAN_SECRET_KEY_SECRET_ID"] == f"sarafan/{stage}/master-key"


def test_alarm_helpers_cover_queues_added_later() -> None:
    template = {"Parameters": {}, "Resources": {
        "NotifyDLQ": {"Type": "AWS::SQS::Queue", "Properties": {}},
        "NotifyQueue": {"Type": "AWS::SQS::Queue", "Properties": {}},
        "Consumer": {"Type": "AWS::Serverless::Function", "Properties": {}},
    }}
    resources = packaging.finish_template(template, "dev", api_stage="dev", log_retention_days=30)["Resources"]
    assert resources["NotifyDLQDepthAlarm"]["Properties"]["Dimensions"] == [
        {"Name": "QueueName", "Value": {"Fn::GetAtt": ["NotifyDLQ", "QueueName"]}}]
    assert "NotifyQueueDepthAlarm" not in resources  # only dead-letter queues page the operator
    assert {"ConsumerErrorsAlarm", "ConsumerThrottlesAlarm"} <= set(resources)


def _import_swagger_into_moto(monkeypatch: pytest.MonkeyPatch) -> None:
    """moto's CloudFormation creates a RestApi without its ``Body`` (and then refuses to deploy an API
    without methods); API Gateway imports the body. Add the body's paths and methods, as AWS does."""
    from moto.apigateway.models import RestAPI, apigateway_backends

    original = RestAPI.create_from_cloudformation_json.__func__  # type: ignore[attr-defined]

    def create(cls: Any, resource_name: str, cloudformation_json: dict[str, Any], account_id: str,
               region_name: str, **kwargs: Any) -> Any:
        api = original(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs)
        backend = apigateway_backends[account_id][region_name]
        created = {"": api.default}
        for path, methods in cloudformation_json["Properties"].get("Body", {}).get("paths", {}).items():
            prefix = ""
            for part in [p for p in path.split("/") if p]:
                if f"{prefix}/{part}" not in created:
                    created[f"{prefix}/{part}"] = backend.create_resource(api.id, created[prefix].id, part)
                prefix = f"{prefix}/{part}"
            resource = created[prefix]
            for method, operation in methods.items():
                if method.lower() in {"get", "post", "put", "patch", "delete", "options", "head"}:
                    backend.put_method(api.id, resource.id, method.upper(), authorization_type="NONE")
                    integration = operation.get("x-amazon-apigateway-integration", {})
                    backend.put_integration(api.id, resource.id, method.upper(),
                                            integration_type=integration.get("type", "aws_proxy").upper(),
                                            uri=str(integration.get("uri", "")),
                                            integration_method=integration.get("httpMethod", "POST"))
        return api

    monkeypatch.setattr(RestAPI, "create_from_cloudformation_json", classmethod(create))


@pytest.mark.filterwarnings("ignore:Tried to parse AWS")
@pytest.mark.parametrize("stage", STAGES)
def test_the_package_deploys_on_moto_cloudformation(
        packages: dict[str, Path], stage: str, aws_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    from moto import mock_aws
    from samtranslator.translator.transform import transform

    from chalicelib import aws

    _import_swagger_into_moto(monkeypatch)
    template = load(packages[stage])
    with mock_aws():
        s3 = aws.client("s3")
        s3.create_bucket(Bucket="artifacts", CreateBucketConfiguration={"LocationConstraint": "eu-central-1"})
        s3.put_object(Bucket="artifacts", Key=f"{stage}.zip", Body=(packages[stage] / "deployment.zip").read_bytes())
        for resource in template["Resources"].values():  # what `aws cloudformation package` does
            if resource["Type"] == "AWS::Serverless::Function":
                resource["Properties"]["CodeUri"] = f"s3://artifacts/{stage}.zip"

        class NoManagedPolicies:  # the functions use explicit roles, not SAM policy templates
            def load(self) -> dict[str, str]:
                return {}

        translated = transform(template, {"AWS::Region": "eu-central-1"}, NoManagedPolicies())
        assert not any(r["Type"].startswith("AWS::Serverless::") for r in translated["Resources"].values())
        cloudformation = aws.client("cloudformation")
        cloudformation.create_stack(StackName=f"sarafan-{stage}", TemplateBody=json.dumps(translated),
                                    Capabilities=["CAPABILITY_IAM"])
        stack = cloudformation.describe_stacks(StackName=f"sarafan-{stage}")["Stacks"][0]
        assert stack["StackStatus"] == "CREATE_COMPLETE", stack.get("StackStatusReason")
        assert {p["ParameterKey"]: p["ParameterValue"] for p in stack["Parameters"]}["Stage"] == stage

        functions = {f["FunctionName"]: f for f in aws.client("lambda").list_functions()["Functions"]}
        # moto's CloudFormation does not create CloudWatch alarms: check them on the deployed template.
        deployed = translated["Resources"]
        alarms = [r["Properties"] for r in deployed.values() if r["Type"] == "AWS::CloudWatch::Alarm"]
        watched = {d["Value"]["Ref"] for a in alarms if a.get("Namespace") == "AWS/Lambda" for d in a["Dimensions"]}
        lambdas = {k for k, v in deployed.items() if v["Type"] == "AWS::Lambda::Function"}
        assert watched == lambdas and len(lambdas) == len(functions)  # every function, and only real ones
        assert all(a["AlarmActions"] == [{"Ref": "AlarmsTopic"}] for a in alarms)
        topics = [t["TopicArn"] for t in aws.client("sns").list_topics()["Topics"]]
        assert any(t.endswith(f":sarafan-{stage}-alarms") for t in topics)
        groups = {g["logGroupName"] for g in aws.client("logs").describe_log_groups()["logGroups"]}
        assert {f"/aws/lambda/{name}" for name in functions} <= groups
        assert f"/aws/apigateway/sarafan-{stage}-access" in groups
        assert aws.client("dynamodb").describe_table(TableName=f"sarafan-{stage}")["Table"]["TableStatus"] == "ACTIVE"


@pytest.mark.parametrize("stage", STAGES)
def test_phone_numbers_parse_from_the_slimmed_zip(packages: dict[str, Path], stage: str) -> None:
    """The zip leaves out phonenumbers' short-number metadata (infra/package.py slim_zip); what Sarafan
    uses (parse, validate, format) still works from the shipped files alone."""
    import subprocess
    import sys
    import zipfile

    bundle = packages[stage] / "deployment.zip"
    with zipfile.ZipFile(bundle) as archive:
        names = archive.namelist()
    assert "phonenumbers/data/region_RU.py" in names
    assert not [n for n in names if n.startswith("phonenumbers/shortdata/region_") or n.endswith((".pyi", "/RECORD"))]
    script = (
        "import sys; sys.path.insert(0, sys.argv[1]); import phonenumbers\n"
        "assert phonenumbers.__file__.startswith(sys.argv[1]), phonenumbers.__file__\n"
        "from chalicelib.domain import identity\n"
        "print(identity.normalize_phone('8 (916) 123-45-67', 'RU'), identity.normalize_phone('+49 30 901820'))\n")
    result = subprocess.run([sys.executable, "-S", "-c", script, str(bundle)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["+79161234567", "+4930901820"]
