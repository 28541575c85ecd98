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


#: Imports the app and every module of ``chalicelib`` from an unpacked bundle (argv[1]), counting the
#: bundle's files compiled from source (the ``compile`` audit event importlib raises for a source it has
#: no usable bytecode for) and the bundle's modules imported.
_IMPORT_ALL = """
import importlib, os, pkgutil, sys
root = os.path.realpath(sys.argv[1]) + os.sep
compiled = []
def audit(event, args):
    if event == "compile" and isinstance(args[1], str) and os.path.isabs(args[1]) and os.path.realpath(args[1]).startswith(root):
        compiled.append(os.path.relpath(args[1], root))
sys.addaudithook(audit)
import app, chalicelib
for module in pkgutil.walk_packages(chalicelib.__path__, "chalicelib."):
    importlib.import_module(module.name)
loaded = sorted(m.__name__ for m in list(sys.modules.values())
                if os.path.realpath(getattr(m, "__file__", None) or "/").startswith(root))
print(json.dumps({"compiled": compiled, "loaded": loaded, "flag": sys.flags.dont_write_bytecode}))
""".replace("import importlib,", "import json, importlib,")


@pytest.mark.parametrize("stage", STAGES)
def test_the_bundle_ships_the_bytecode_lambda_loads(packages: dict[str, Path], stage: str, tmp_path: Path) -> None:
    """/var/task is read-only and the bundle's code would otherwise be compiled on every cold start: the
    zip carries an unchecked-hash ``.pyc`` beside every ``.py`` (infra/package.py ``BYTECODE``), and
    importing the app and all of ``chalicelib`` from the unpacked zip compiles none of the bundle's
    sources (counted with an audit hook: no timing)."""
    import os
    import subprocess
    import sys
    import zipfile
    from importlib.util import cache_from_source

    with zipfile.ZipFile(packages[stage] / "deployment.zip") as archive:
        names = set(archive.namelist())
        archive.extractall(tmp_path / "task")
    sources = sorted(n for n in names if n.endswith(".py"))
    assert {"app.py", "chalicelib/__init__.py", "pynamodb/models.py", "chalice/app.py"} <= set(sources)
    assert [n for n in sources if cache_from_source(n) not in names] == []
    assert f"chalicelib/__codecache__.{sys.implementation.cache_tag}.marshal" in names  # built in the same step
    for path in [tmp_path / "task", *(tmp_path / "task").rglob("*")]:  # as Lambda's /var/task
        path.chmod(0o555 if path.is_dir() else 0o444)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "SARAFAN_"))}
    env.update({"PYTHONPATH": str(tmp_path / "task"), "PYTHONDONTWRITEBYTECODE": "1", "AWS_DEFAULT_REGION": "eu-central-1"})
    try:
        result = subprocess.run([sys.executable, "-c", _IMPORT_ALL, str(tmp_path / "task")], cwd=tmp_path / "task",
                                env=env, capture_output=True, text=True, check=False)
    finally:
        for path in [tmp_path / "task", *(tmp_path / "task").rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["flag"] == 1
    assert {"app", "chalicelib.api", "pynamodb.models", "chalice.app"} <= set(report["loaded"])
    assert report["compiled"] == []


def _tiny_zip(path: Path) -> Path:
    import zipfile

    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("app.py", "from pkg import mod\n")
        archive.writestr("pkg/__init__.py", "")
        archive.writestr("pkg/mod.py", "def f():\n    return 1 / 0\n")
        archive.writestr("pkg/py2_only.py", "print 'no'\n")  # does not compile: shipped as source only
        archive.writestr("pkg/mod.pyi", "def f() -> float: ...\n")
    return path


@pytest.mark.parametrize("mode", ["beside", "sourceless", "none"])
def test_slim_zip_compiles_as_the_mode_says(tmp_path: Path, mode: str) -> None:
    import subprocess
    import sys
    import zipfile
    from importlib.util import cache_from_source

    bundle = _tiny_zip(tmp_path / "deployment.zip")
    packaging.slim_zip(bundle, mode)
    with zipfile.ZipFile(bundle) as archive:
        names = set(archive.namelist())
        archive.extractall(tmp_path / "task")
    cached = {cache_from_source(n) for n in ("app.py", "pkg/__init__.py", "pkg/mod.py")}
    expected = {
        "none": {"app.py", "pkg/__init__.py", "pkg/mod.py", "pkg/py2_only.py"},
        "beside": {"app.py", "pkg/__init__.py", "pkg/mod.py", "pkg/py2_only.py"} | cached,
        "sourceless": {"app.pyc", "pkg/__init__.pyc", "pkg/mod.pyc", "pkg/py2_only.py"},
    }[mode]
    assert names == expected  # .pyi dropped by slim_zip in every mode
    script = ("import sys, traceback\ncompiled = []\n"
              "sys.addaudithook(lambda e, a: compiled.append(a[1]) if e == 'compile' else None)\n"
              "import app\ntry:\n    app.mod.f()\nexcept ZeroDivisionError:\n"
              "    print(len(compiled), traceback.format_exc())\n")
    result = subprocess.run([sys.executable, "-S", "-B", "-c", script], cwd=tmp_path / "task", capture_output=True,
                            text=True, check=True, env={"PYTHONPATH": str(tmp_path / "task")})
    count, trace = result.stdout.split(" ", 1)
    assert int(count) == (3 if mode == "none" else 0)
    assert 'pkg/mod.py", line 2, in f' in trace
    assert ("return 1 / 0" in trace) is (mode != "sourceless")  # sourceless code has no source line to show


def test_bytecode_is_only_shipped_for_the_runtimes_python() -> None:
    import sys

    building = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    assert packaging.bytecode_problem({building}) is None
    other = f"python{sys.version_info[0]}.{sys.version_info[1] + 1}"
    problem = packaging.bytecode_problem({building, other}) or ""
    assert "not shipping bytecode" in problem and other in problem
    template = {"Globals": {"Function": {"Runtime": building}},
                "Resources": {"F": {"Type": "AWS::Serverless::Function", "Properties": {"Runtime": other}}}}
    assert packaging.lambda_runtimes(template) == {building, other}
