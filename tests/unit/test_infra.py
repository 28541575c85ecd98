"""Deployment artefacts stay in step with the code, and the local tooling works.

* ``infra/resources.yaml`` creates the table the PynamoDB models describe;
* ``.chalice/config.json`` and the IAM policies name the same table, parameter
  and sender, and the policies grant every AWS call the code makes;
* the local event-source runner (``infra/local_events.py``) and the bootstrapper
  helpers (``infra/dev.py``) behave.
"""

from __future__ import annotations

import json
import re
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from infra import dev
from infra.local_events import CronSchedule, EventSourceRunner, RateSchedule, parse_schedule

ROOT = Path(__file__).resolve().parents[2]
STAGES = ("dev", "prod")
REQUIRED_ENV = {"SARAFAN_STAGE", "SARAFAN_TABLE", "SARAFAN_SECRET_KEY_SECRET_ID", "SARAFAN_OPERATOR_KEY_SHA256",
                "SARAFAN_SES_SENDER", "SARAFAN_PUBLIC_BASE_URL"}
#: The data-plane DynamoDB actions the policy grants (no Scan: it would read every tenant; no TransactGetItems:
#: nothing uses it, and test_policy_grants_every_aws_call_in_the_code catches a first use).
DYNAMODB_ALLOWED = {"GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query", "BatchGetItem", "BatchWriteItem",
                    "TransactWriteItems", "ConditionCheckItem"}
#: Only the local runner and tests create tables; production tables come from infra/resources.yaml.
NOT_SHIPPED_TO_PRODUCTION_PATHS = {"chalicelib/store/tables.py"}


def load_template() -> dict[str, Any]:
    from chalice.package import YAMLTemplateSerializer  # CloudFormation-aware: !Ref, !Sub, !GetAtt...

    return YAMLTemplateSerializer().load_template((ROOT / "infra" / "resources.yaml").read_text(encoding="utf-8"))


def chalice_config() -> dict[str, Any]:
    return json.loads((ROOT / ".chalice" / "config.json").read_text(encoding="utf-8"))


def policy(stage: str) -> dict[str, Any]:
    file = chalice_config()["stages"][stage]["iam_policy_file"]
    return json.loads((ROOT / ".chalice" / file).read_text(encoding="utf-8"))


def stage_env(stage: str) -> dict[str, str]:
    config = chalice_config()
    return {**config.get("environment_variables", {}), **config["stages"][stage].get("environment_variables", {})}


def granted(stage: str) -> dict[str, list[Any]]:
    """``{"dynamodb:GetItem": [resources...], ...}`` for Allow statements."""
    actions: dict[str, list[Any]] = {}
    for statement in policy(stage)["Statement"]:
        assert statement["Effect"] == "Allow"
        names = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        for name in names:
            actions.setdefault(name, []).extend(resources)
    return actions


def _schema_from_description(table: dict[str, Any]) -> dict[str, Any]:
    def keys(schema: list[dict[str, str]]) -> list[tuple[str, str]]:
        return [(k["AttributeName"], k["KeyType"]) for k in schema]

    return {
        "keys": keys(table["KeySchema"]),
        "attributes": sorted((a["AttributeName"], a["AttributeType"]) for a in table["AttributeDefinitions"]),
        "gsis": sorted((g["IndexName"], tuple(keys(g["KeySchema"])), g["Projection"]["ProjectionType"])
                       for g in table.get("GlobalSecondaryIndexes", [])),
        "lsis": sorted((g["IndexName"], tuple(keys(g["KeySchema"]))) for g in table.get("LocalSecondaryIndexes", [])),
    }


# --- the table -------------------------------------------------------------------------------


def test_template_table_matches_the_pynamodb_models() -> None:
    from chalicelib.store.db import Entity

    schema = Entity._get_schema()
    table = load_template()["Resources"]["SarafanTable"]["Properties"]
    expected = _schema_from_description({
        "KeySchema": schema["key_schema"],
        "AttributeDefinitions": schema["attribute_definitions"],
        "GlobalSecondaryIndexes": [
            {"IndexName": g["index_name"], "KeySchema": g["key_schema"], "Projection": g["projection"]}
            for g in schema["global_secondary_indexes"]
        ],
        "LocalSecondaryIndexes": [
            {"IndexName": i["index_name"], "KeySchema": i["key_schema"]} for i in schema["local_secondary_indexes"]
        ],
    })
    assert _schema_from_description(table) == expected
    assert table["BillingMode"] == Entity.Meta.billing_mode == "PAY_PER_REQUEST"


def test_template_table_has_ttl_pitr_and_a_stream() -> None:
    from chalicelib.store.tables import TTL_ATTRIBUTE

    table = load_template()["Resources"]["SarafanTable"]
    props = table["Properties"]
    assert props["TimeToLiveSpecification"] == {"AttributeName": TTL_ATTRIBUTE, "Enabled": True}
    assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert props["StreamSpecification"] == {"StreamViewType": "NEW_IMAGE"}
    assert table["DeletionPolicy"] == table["UpdateReplacePolicy"] == "Retain"
    assert props["TableName"] == {"Fn::Sub": "sarafan-${Stage}"}


def test_the_stack_generates_the_master_secret_and_keeps_it() -> None:
    secret = load_template()["Resources"]["MasterSecret"]
    assert secret["Type"] == "AWS::SecretsManager::Secret"
    assert secret["DeletionPolicy"] == secret["UpdateReplacePolicy"] == "Retain"
    assert secret["Properties"]["Name"] == {"Fn::Sub": "sarafan/${Stage}/master-key"}
    # Generated on creation only: a stack update never changes it (webhook secrets derive from it).
    assert secret["Properties"]["GenerateSecretString"]["PasswordLength"] >= 32
    assert "SecretString" not in secret["Properties"]


@pytest.mark.filterwarnings("ignore:Tried to parse AWS")
def test_template_deploys_the_same_table_create_table_builds(aws_env: None) -> None:
    """Deploy the template into moto's CloudFormation and compare with the models' own table."""
    from moto import mock_aws

    from chalicelib import aws
    from chalicelib.store.db import raw_client
    from chalicelib.store.tables import create_table

    with mock_aws():
        cloudformation = aws.client("cloudformation")
        cloudformation.create_stack(StackName="sarafan-dev-data",
                                    TemplateBody=(ROOT / "infra" / "resources.yaml").read_text(encoding="utf-8"),
                                    Parameters=[{"ParameterKey": "Stage", "ParameterValue": "dev"}])
        create_table("sarafan-from-models")
        client = raw_client()
        deployed = client.describe_table(TableName="sarafan-dev")["Table"]
        modelled = client.describe_table(TableName="sarafan-from-models")["Table"]
        assert _schema_from_description(deployed) == _schema_from_description(modelled)
        assert deployed["StreamSpecification"] == {"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"}
        outputs = {o["OutputKey"]: o["OutputValue"]
                   for o in cloudformation.describe_stacks(StackName="sarafan-dev-data")["Stacks"][0]["Outputs"]}
        assert outputs["TableName"] == stage_env("dev")["SARAFAN_TABLE"]
        assert outputs["MasterSecretName"] == stage_env("dev")["SARAFAN_SECRET_KEY_SECRET_ID"]

        assert outputs["NotificationsTopicArn"].endswith(":sarafan-dev-notifications")


# --- Chalice config and IAM --------------------------------------------------------------------


def test_chalice_config_defines_both_stages_with_explicit_policies() -> None:
    config = chalice_config()
    assert config["app_name"] == "sarafan"
    assert config["autogen_policy"] is False
    assert config["lambda_memory_size"] == 512
    assert 3 <= config["lambda_timeout"] <= 30
    assert set(config["stages"]) == set(STAGES)
    for stage in STAGES:
        env = stage_env(stage)
        assert set(env) >= REQUIRED_ENV, stage
        assert env["SARAFAN_STAGE"] == stage
        assert env["SARAFAN_TABLE"] == f"sarafan-{stage}"  # = TableName in infra/resources.yaml
        assert env["SARAFAN_SECRET_KEY_SECRET_ID"] == f"sarafan/{stage}/master-key"  # = MasterSecret's name
        assert "SARAFAN_SECRET_KEY" not in env  # the master secret lives in Secrets Manager, never in config
        assert env["SARAFAN_PUBLIC_BASE_URL"].startswith("https://")
        assert (ROOT / ".chalice" / config["stages"][stage]["iam_policy_file"]).exists()


@pytest.mark.parametrize("stage", STAGES)
def test_policy_is_scoped_to_the_stage(stage: str) -> None:
    env = stage_env(stage)
    actions = granted(stage)
    assert not any("*" in name for name in actions), "no wildcard actions"
    table_arn = f"arn:aws:dynamodb:*:*:table/{env['SARAFAN_TABLE']}"
    for name in DYNAMODB_ALLOWED:
        assert sorted(actions[f"dynamodb:{name}"]) == [table_arn, f"{table_arn}/index/*"]
    assert {a.split(":", 1)[1] for a in actions if a.startswith("dynamodb:")} == DYNAMODB_ALLOWED
    # Secrets Manager appends 6 random characters to the name in the ARN.
    assert actions["secretsmanager:GetSecretValue"] == [
        f"arn:aws:secretsmanager:*:*:secret:{env['SARAFAN_SECRET_KEY_SECRET_ID']}-*"]
    statements = policy(stage)["Statement"]
    ses = next(s for s in statements if "ses:SendEmail" in s["Action"])
    assert ses["Condition"]["StringEquals"]["ses:FromAddress"] == env["SARAFAN_SES_SENDER"]
    assert {"sns:Publish", "sns:CreatePlatformEndpoint", "logs:PutLogEvents"} <= set(actions)
    other = "prod" if stage == "dev" else "dev"
    assert f"sarafan-{other}" not in json.dumps(policy(stage))


def _python_sources() -> dict[str, str]:
    files = [ROOT / "app.py", *sorted((ROOT / "chalicelib").rglob("*.py"))]
    return {str(f.relative_to(ROOT)): f.read_text(encoding="utf-8") for f in files}


#: PynamoDB-level calls → the DynamoDB actions they make. Over-matching (``dict.get``)
#: only asks for actions that are granted anyway; the point is to catch the ones that are not.
_PYNAMODB_CALLS = [
    (r"\bTransactWrite\(", "TransactWriteItems"),
    (r"\.condition_check\(", "ConditionCheckItem"),
    (r"\bTransactGet\(", "TransactGetItems"),
    (r"\.batch_get\(", "BatchGetItem"),
    (r"\.batch_write\(", "BatchWriteItem"),
    (r"\.query\(", "Query"),
    (r"\.count\(\s*\w", "Query"),
    (r"\.count\(\s*\)", "DescribeTable"),  # Model.count() without a hash key describes the table
    (r"\.scan\(", "Scan"),
    (r"\.save\(", "PutItem"),
    (r"\.update\(", "UpdateItem"),
    (r"\.delete\(", "DeleteItem"),
    (r"\.(?:get|refresh)\(", "GetItem"),
    (r"(?<![\w.])[A-Z]\w*\.exists\(\)", "DescribeTable"),  # Model.exists(), not Model.attr.exists()
    (r"\.(?:create_table|delete_table|describe_table|update_table|update_time_to_live)\(", "<control plane>"),
]


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def aws_calls_in_code() -> dict[str, set[str]]:
    """``{"dynamodb:Query": {"chalicelib/...py", ...}, "secretsmanager:GetSecretValue": {...}}`` found by reading the code."""
    found: dict[str, set[str]] = {}
    for path, text in _python_sources().items():
        if path in NOT_SHIPPED_TO_PRODUCTION_PATHS:
            continue
        if "pynamodb" in text or "chalicelib.store" in text or path.startswith("chalicelib/store/"):
            for pattern, action in _PYNAMODB_CALLS:
                if re.search(pattern, text):
                    found.setdefault(f"dynamodb:{action}", set()).add(path)
        # Low-level clients: aws.client("ses").send_email(...), or through a variable.
        for service, operation in re.findall(r"client\(\s*[\"'](\w+)[\"']\s*\)\s*\.(\w+)\(", text):
            found.setdefault(f"{service}:{_camel(operation)}", set()).add(path)
        for variable, service in re.findall(r"(\w+)\s*=\s*(?:\w+\.)?client\(\s*[\"'](\w+)[\"']\s*\)", text):
            for operation in re.findall(rf"\b{re.escape(variable)}\.(\w+)\(", text):
                found.setdefault(f"{service}:{_camel(operation)}", set()).add(path)
        for operation in re.findall(r"raw_client\(\)\s*\.(\w+)\(", text):
            found.setdefault(f"dynamodb:{_camel(operation)}", set()).add(path)
    return found


@pytest.mark.parametrize("stage", STAGES)
def test_policy_grants_every_aws_call_in_the_code(stage: str) -> None:
    actions = set(granted(stage))
    missing = {action: sorted(paths) for action, paths in aws_calls_in_code().items() if action not in actions}
    assert not missing, (
        f"code makes AWS calls .chalice/policy-{stage}.json does not allow: {missing}. Grant them (scoped to "
        "the stage's resources) in both policy files, or avoid the call (Scan/DescribeTable have no place in "
        "request handling)."
    )


def test_the_grep_sees_the_calls_it_should() -> None:
    calls = aws_calls_in_code()
    assert "dynamodb:TransactWriteItems" in calls
    assert "dynamodb:Query" in calls
    assert "secretsmanager:GetSecretValue" in calls
    assert not any(a.startswith("dynamodb:") and a[9:] not in DYNAMODB_ALLOWED for a in calls), calls


def test_admin_api_only_makes_granted_dynamodb_calls(api: Any) -> None:
    """The same check by observation: every DynamoDB operation an admin tour sends."""
    from chalicelib.store.db import raw_client

    seen: set[str] = set()
    raw_client().meta.events.register("before-call.dynamodb", lambda model, **_: seen.add(model.name))
    program = api.create_program()
    partner = api.create_partner(program["program_id"])
    pid, ptn = program["program_id"], partner["partner_id"]
    assert api.get("/v1/programs").status == 200
    assert api.get(f"/v1/programs/{pid}", key=partner["api_key"]).status == 200
    assert api.get(f"/v1/programs/{pid}/partners").status == 200
    assert api.post(f"/v1/programs/{pid}/partners/{ptn}/webhook-secrets/events/rotate").status == 200
    new_key = api.post(f"/v1/programs/{pid}/partners/{ptn}/keys").body
    assert api.get(f"/v1/programs/{pid}/keys").status == 200
    assert api.post(f"/v1/programs/{pid}/keys/{new_key['api_key_info']['key_id']}/revoke").status == 200
    assert {"GetItem", "Query", "TransactWriteItems"} <= seen
    assert seen <= DYNAMODB_ALLOWED, seen - DYNAMODB_ALLOWED


def test_lambda_ships_only_app_code() -> None:
    """Chalice packages app.py, chalicelib/ and vendor/: infra/, bench/ and tests/ never reach Lambda."""
    from chalice.deploy.packager import BaseLambdaDeploymentPackager

    source = Path(__import__("inspect").getsourcefile(BaseLambdaDeploymentPackager)).read_text()  # type: ignore[arg-type]
    assert "'chalicelib'" in source and "'vendor'" in source
    app_source = (ROOT / "app.py").read_text(encoding="utf-8")
    assert "infra" not in app_source and "bench" not in app_source


# --- local event sources --------------------------------------------------------------------


def test_rate_expressions() -> None:
    from chalice import Rate

    assert parse_schedule("rate(1 minute)") == RateSchedule(60)
    assert parse_schedule("Rate(5 Minutes)") == RateSchedule(300)
    assert parse_schedule("rate(2 hours)") == RateSchedule(7200)
    assert parse_schedule(Rate(1, unit=Rate.DAYS)) == RateSchedule(86400)
    for bad in ("rate(0 minutes)", "rate(5 seconds)", "every 5 minutes"):
        with pytest.raises(ValueError):
            parse_schedule(bad)


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(("expression", "after", "expected"), [
    ("cron(0 3 * * ? *)", "2025-01-01T05:00", "2025-01-02T03:00"),
    ("cron(0 3 * * ? *)", "2025-01-01T02:59", "2025-01-01T03:00"),
    ("cron(0/15 * * * ? *)", "2025-01-01T10:07", "2025-01-01T10:15"),
    ("cron(30 9 ? * MON-FRI *)", "2025-01-04T12:00", "2025-01-06T09:30"),  # Saturday → Monday
    ("cron(0 0 ? * 1 *)", "2025-01-01T00:00", "2025-01-05T00:00"),  # AWS: 1 = Sunday
    ("cron(0 12 L * ? *)", "2025-02-03T00:00", "2025-02-28T12:00"),
    ("cron(0 0 1 JAN,JUL ? 2026)", "2025-03-01T00:00", "2026-01-01T00:00"),
    ("cron(5,35 14 * * ? *)", "2025-01-01T14:05", "2025-01-01T14:35"),
])
def test_cron_expressions(expression: str, after: str, expected: str) -> None:
    assert parse_schedule(expression).next_after(_at(after)) == _at(expected)


def test_cron_objects_and_unsupported_fields() -> None:
    from chalice import Cron

    schedule = parse_schedule(Cron(0, 3, "*", "*", "?", "*"))
    assert isinstance(schedule, CronSchedule)
    assert schedule.next_after(_at("2025-01-01T05:00")) == _at("2025-01-02T03:00")
    for bad in ("cron(0 3 * *)", "cron(0 3 ? * 2#1 *)", "cron(0 3 15W * ? *)", "cron(99 3 * * ? *)"):
        with pytest.raises(ValueError):
            parse_schedule(bad)


def _dummy_app() -> tuple[Any, list[Any], list[str]]:
    from chalice import Blueprint, Chalice, Cron, Rate

    app = Chalice(app_name="dummy")
    seen: list[Any] = []
    middleware_saw: list[str] = []

    @app.middleware("all")
    def tag(event: Any, get_response: Any) -> Any:
        middleware_saw.append(type(event).__name__)
        return get_response(event)

    @app.schedule("rate(1 minute)")
    def release_held_rewards(event: Any) -> None:
        seen.append(event)

    @app.schedule(Cron(0, 3, "*", "*", "?", "*"))
    def nightly(event: Any) -> None:
        seen.append(("nightly", event))

    @app.schedule("cron(0 3 ? * 2#1 *)")
    def unsupported(event: Any) -> None:  # pragma: no cover - never scheduled locally
        pass

    @app.on_sqs_message(queue="notifications")
    def consume(event: Any) -> None:  # pragma: no cover - no local SQS consumer registered
        pass

    blueprint = Blueprint(__name__)

    @blueprint.schedule(Rate(2, unit=Rate.HOURS))
    def hourly(event: Any) -> None:
        seen.append(("hourly", event))

    app.register_blueprint(blueprint, name_prefix="bp_")
    return app, seen, middleware_saw


def _wait_for(predicate: Any, timeout: float = 30.0) -> None:  # a wait for an event, not a speed check
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_runner_finds_every_schedule_including_blueprints() -> None:
    app, _, _ = _dummy_app()
    runner = EventSourceRunner(app, speedup=60)
    assert sorted(j.name for j in runner.jobs) == ["bp_hourly", "nightly", "release_held_rewards"]
    assert any(s.startswith("unsupported (cron(") for s in runner.skipped)
    assert any(s.startswith("consume (SQSEventConfig") for s in runner.skipped)
    described = "\n".join(runner.describe())
    assert "release_held_rewards: rate(1 minute) → every 1 s" in described
    assert "bp_hourly: rate(2 hours) → every 120 s" in described


def test_runner_invokes_rate_schedules_periodically_as_lambda_would() -> None:
    from chalice.app import CloudWatchEvent

    app, seen, middleware_saw = _dummy_app()
    runner = EventSourceRunner(app, region="eu-central-1", speedup=1200)  # 1 minute → 50 ms
    runner.start()
    try:
        _wait_for(lambda: sum(isinstance(e, CloudWatchEvent) for e in seen) >= 3)
    finally:
        runner.stop()
    assert runner._thread is not None and not runner._thread.is_alive()
    event = next(e for e in seen if isinstance(e, CloudWatchEvent))
    assert event.detail_type == "Scheduled Event"
    assert event.source == "aws.events"
    assert event.region == "eu-central-1"
    assert event.resources == ["arn:aws:events:eu-central-1:123456789012:rule/release_held_rewards"]
    assert getattr(event.context, "function_name", None) == "release_held_rewards"
    assert "CloudWatchEvent" in middleware_saw
    count = len(seen)
    time.sleep(0.15)
    assert len(seen) == count, "nothing fires after stop()"


def test_a_failing_handler_is_logged_and_keeps_its_schedule() -> None:
    from chalice import Chalice

    app = Chalice(app_name="dummy")
    attempts: list[int] = []

    @app.schedule("rate(1 minute)")
    def flaky(event: Any) -> None:
        attempts.append(1)
        raise RuntimeError("boom")

    logs: list[str] = []
    runner = EventSourceRunner(app, speedup=1200, log=logs.append)
    runner.start()
    try:
        _wait_for(lambda: len(attempts) >= 2)
    finally:
        runner.stop()
    assert runner.jobs[0].failures >= 2
    assert "RuntimeError: boom" in logs[0]


def test_fire_runs_one_schedule_now_and_consumers_hook_in() -> None:
    from infra import local_events

    app, seen, _ = _dummy_app()
    started = threading.Event()

    class FakeQueuePoller:
        def __init__(self, runner: EventSourceRunner, source: Any) -> None:
            self.source = source

        def start(self) -> None:
            started.set()

        def stop(self, timeout: float = 10.0) -> None:  # the runner shares its stop deadline with consumers
            started.clear()

    local_events.register_consumer("SQSEventConfig", FakeQueuePoller)
    try:
        runner = EventSourceRunner(app, speedup=1)
        runner.fire("nightly", at=_at("2025-01-01T03:00"))
        assert seen[0][0] == "nightly"
        assert seen[0][1].time == "2025-01-01T03:00:00Z"
        assert [type(c).__name__ for c in runner.consumers] == ["FakeQueuePoller"]
        runner.start()
        assert started.is_set()
        runner.stop()
        assert not started.is_set()
    finally:
        local_events.CONSUMERS.pop("SQSEventConfig", None)


# --- bootstrapper -----------------------------------------------------------------------------


@pytest.mark.parametrize(("args", "cpus", "expected"), [
    ([], 2, True),
    (["tests/unit"], 2, True),
    ([], 1, False),
    (["tests/e2e"], 2, False),
    (["-m", "e2e"], 2, False),
    (["tests/unit/test_infra.py"], 2, False),
    (["tests/unit/test_infra.py::test_rate_expressions"], 2, False),
    (["-n", "4"], 2, False),
    (["--pdb"], 2, False),
    (["-k", "admin"], 2, True),
])
def test_xdist_only_when_it_pays_off(args: list[str], cpus: int, expected: bool) -> None:
    assert dev.use_xdist(args, cpu_count=cpus) is expected


def test_requirements_hash_follows_included_files(tmp_path: Path) -> None:
    base = tmp_path / "requirements.txt"
    top = tmp_path / "requirements-dev.txt"
    base.write_text("pynamodb==6.1.0\n")
    top.write_text("-r requirements.txt\npytest==9.2.0\n")
    assert dev.requirement_files(top) == [top.resolve(), base.resolve()]
    before = dev.requirements_hash(top)
    base.write_text("pynamodb==6.1.1\n")
    assert dev.requirements_hash(top) != before
    venv = tmp_path / ".venv"
    assert not dev.venv_is_current(venv, top)
    dev.venv_python(venv).parent.mkdir(parents=True)
    dev.venv_python(venv).touch()
    (venv / ".sarafan-reqs").write_text(dev.requirements_hash(top) + "\n")
    assert dev.venv_is_current(venv, top)
    top.write_text("-r requirements.txt\npytest==9.2.1\n")
    assert not dev.venv_is_current(venv, top)


def test_local_run_chooses_where_aws_is() -> None:
    from infra.local_run import choose_aws_mode

    assert choose_aws_mode({}) == "moto"
    assert choose_aws_mode({"AWS_ACCESS_KEY_ID": "AKIA..."}) == "moto"  # real AWS only on explicit opt-in
    assert choose_aws_mode({"AWS_ENDPOINT_URL": "http://localhost:8000"}) == "endpoint"
    assert choose_aws_mode({"AWS_ENDPOINT_URL_DYNAMODB": "http://localhost:8000"}) == "endpoint"
    assert choose_aws_mode({"SARAFAN_LOCAL_AWS": "aws", "AWS_PROFILE": "me"}) == "aws"
    with pytest.raises(SystemExit):
        choose_aws_mode({"SARAFAN_LOCAL_AWS": "prod"})


def test_package_vendors_what_only_needs_the_runtime_sdk() -> None:
    """PynamoDB needs only botocore (shipped by the Lambda runtime): vendored without it, not resolved."""
    from infra.package import split_requirements

    keep, vendor = split_requirements(["# comment", "pynamodb==6.1.0", "segno==1.6.6", "fastjsonschema==2.22.3"])
    assert vendor == ["pynamodb==6.1.0"]
    assert keep == ["# comment", "segno==1.6.6", "fastjsonschema==2.22.3"]


def test_every_skipped_checkov_check_has_its_reason() -> None:
    text = (ROOT / "infra" / "checkov.yaml").read_text(encoding="utf-8")
    skips = re.findall(r"^\s*-\s*(CKV_\w+)(.*)$", text, flags=re.M)
    assert skips, "infra/checkov.yaml lists no skip-check"
    without_reason = [check for check, rest in skips if len(rest.partition("#")[2].strip()) < 20]
    assert without_reason == []
    assert len({check for check, _ in skips}) == len(skips)


def test_every_queue_is_encrypted_at_rest() -> None:
    """checkov's CKV_AWS_27 is skipped because it only knows KmsMasterKeyId: this is the check instead."""
    from chalice.package import YAMLTemplateSerializer

    templates = [YAMLTemplateSerializer().load_template(path.read_text(encoding="utf-8"))
                 for path in sorted((ROOT / "infra").glob("*.yaml")) if path.name != "checkov.yaml"]
    queues = {name: r for t in templates for name, r in (t.get("Resources") or {}).items()
              if r.get("Type") == "AWS::SQS::Queue"}
    assert queues, "no SQS queue found in infra/*.yaml"
    unencrypted = [n for n, r in queues.items()
                   if r.get("Properties", {}).get("SqsManagedSseEnabled") is not True
                   and not r.get("Properties", {}).get("KmsMasterKeyId")]
    assert unencrypted == []


def test_every_topic_is_encrypted_and_its_service_publisher_may_use_the_key() -> None:
    """SES's bounce notices carry e-mail addresses: no topic is left unencrypted (checkov's CKV_AWS_26
    is not skipped). The AWS-managed SNS key cannot be granted to a service, so a topic that SES or
    CloudWatch publishes to is on the stack's own key, whose policy lets that service use it for
    exactly that topic; without the grant SES and the alarms would fail to publish, silently."""
    from chalice.package import YAMLTemplateSerializer

    resources: dict[str, Any] = {}
    for path in sorted((ROOT / "infra").glob("*.yaml")):
        if path.name != "checkov.yaml":
            resources.update(YAMLTemplateSerializer().load_template(path.read_text(encoding="utf-8"))
                             .get("Resources") or {})
    topics = {name: r["Properties"] for name, r in resources.items() if r.get("Type") == "AWS::SNS::Topic"}
    assert {"NotificationsTopic", "SesFeedbackTopic", "AlarmsTopic"} <= set(topics)
    assert [name for name, props in topics.items() if not props.get("KmsMasterKeyId")] == []

    key_policy = resources["IntegrationSecretsKey"]["Properties"]["KeyPolicy"]["Statement"]
    publishers = {"SesFeedbackTopic": "ses.amazonaws.com", "AlarmsTopic": "cloudwatch.amazonaws.com"}
    for topic, service in publishers.items():
        assert topics[topic]["KmsMasterKeyId"] == {"Ref": "IntegrationSecretsKey"}
        name = topics[topic]["TopicName"]["Fn::Sub"]
        grants = [s for s in key_policy if s.get("Principal") == {"Service": service}]
        assert len(grants) == 1, service
        assert set(grants[0]["Action"]) == {"kms:GenerateDataKey*", "kms:Decrypt"}
        context = grants[0]["Condition"]["StringEquals"]["kms:EncryptionContext:aws:sns:topicArn"]["Fn::Sub"]
        assert context.endswith(":" + name), (context, name)
