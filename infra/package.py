"""Build the Lambda bundle without what the Lambda runtime already ships (botocore).

Plain ``chalice package`` installs the whole dependency closure of
``requirements.txt``; PynamoDB depends on botocore, so the zip grows to ~18 MB of
botocore service models the Python Lambda runtime already has. This module stages
the project in ``build/lambda-<stage>/`` with:

* ``app.py``, ``chalicelib/`` (no ``__pycache__``; with the compiled code cache of
  ``chalicelib.domain.codecache``, built here), ``.chalice/config.json`` and policies;
* a ``requirements.txt`` without the requirements whose only dependencies are
  runtime-provided (``RUNTIME_PROVIDED``); those are put in ``vendor/`` with
  ``pip install --no-deps`` for the Lambda platform instead (Chalice copies
  ``vendor/`` as is);

then runs Chalice there, and rewrites the zip (:func:`slim_zip`): without files Lambda never reads,
and with a ``.pyc`` (unchecked-hash) beside every ``.py``, since Lambda's ``/var/task`` is read-only
and every cold start would otherwise compile the sources (:data:`BYTECODE`; only when the building
Python is the functions' ``Runtime``). Used by ``python3 infra/dev.py package|deploy`` and the
benchmark. Run inside ``.venv``.

Before anything is built, the stage's settings are checked (:func:`check_settings`):
placeholders such as ``REPLACE_ME`` or an empty operator hash stop the build with a
message saying how to fix them. After ``chalice package``, :func:`finish_template`
completes the SAM template: the ``Stage`` parameter follows the stage, Chalice's
log-group names point at the real functions, API access logs are on, and every
function, queue, the API and the table get alarms (helpers below) on one SNS topic.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build"
#: Distributions the AWS Lambda Python runtime provides (boto3 and its closure).
RUNTIME_PROVIDED = {"boto3", "botocore", "s3transfer", "jmespath", "urllib3", "python-dateutil", "six"}
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._\-]*)\s*==\s*([^\s;#]+)")


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _runtime_dependencies(distribution: str) -> set[str]:
    """Names of what ``distribution`` needs on this Python (markers evaluated, extras ignored)."""
    try:
        from packaging.requirements import Requirement
    except ImportError:  # pragma: no cover - pip always vendors it
        from pip._vendor.packaging.requirements import Requirement  # type: ignore[assignment]

    names = set()
    for text in metadata.requires(distribution) or []:
        requirement = Requirement(text)
        if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
            names.add(_normal(requirement.name))
    return names


def split_requirements(lines: list[str]) -> tuple[list[str], list[str]]:
    """(lines Chalice should resolve, pins to vendor without their runtime-provided dependencies)."""
    keep, vendor = [], []
    for line in lines:
        match = _PIN.match(line.strip())
        if match:
            deps = _runtime_dependencies(match.group(1))
            if deps and deps <= RUNTIME_PROVIDED:
                vendor.append(f"{match.group(1)}=={match.group(2)}")
                continue
        keep.append(line)
    return keep, vendor


def load_config(overrides: dict[str, str] | None = None) -> dict[str, Any]:
    """``.chalice/config.json`` with ``overrides`` (``--set NAME=VALUE``) put into every stage's environment."""
    config: dict[str, Any] = json.loads((ROOT / ".chalice" / "config.json").read_text(encoding="utf-8"))
    for stage_config in config.get("stages", {}).values():
        stage_config.setdefault("environment_variables", {}).update(overrides or {})
    return config


def stage(stage_name: str, overrides: dict[str, str] | None = None, build: Path | None = None) -> Path:
    config = load_config(overrides)
    if stage_name not in config.get("stages", {}):
        raise SystemExit(f"no stage {stage_name!r} in .chalice/config.json")
    problems = check_settings(stage_name, stage_environment(config, stage_name))
    if problems:
        raise SystemExit(f"refusing to build stage {stage_name!r}:\n" + "\n".join(f"  - {p}" for p in problems))
    target = (build or BUILD) / f"lambda-{stage_name}"
    shutil.rmtree(target, ignore_errors=True)
    (target / ".chalice").mkdir(parents=True)
    shutil.copy2(ROOT / "app.py", target / "app.py")
    shutil.copytree(ROOT / "chalicelib", target / "chalicelib",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "__codecache__.*"))
    build_codecache(target)
    for file in (ROOT / ".chalice").glob("*.json"):
        shutil.copy2(file, target / ".chalice" / file.name)
    (target / ".chalice" / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    if (ROOT / "vendor").is_dir():
        shutil.copytree(ROOT / "vendor", target / "vendor")
    keep, vendor = split_requirements((ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines())
    (target / "requirements.txt").write_text("\n".join(keep) + "\n", encoding="utf-8")
    if vendor:
        arch = config["stages"][stage_name].get("lambda_architecture", config.get("lambda_architecture", "x86_64"))
        machine = "aarch64" if arch == "arm64" else "x86_64"
        version = f"{sys.version_info[0]}{sys.version_info[1]}"
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps",
             "--no-compile", "--only-binary=:all:", "--implementation", "cp", "--python-version", version,
             "--platform", f"manylinux2014_{machine}", "--target", str(target / "vendor"), *vendor],
            check=True,
        )
    return target


def build_codecache(project: Path) -> None:
    """Compile the code the app would generate on every cold start (dataclass methods, the event validators)
    into ``chalicelib/__codecache__.<python>.marshal`` of ``project`` (``chalicelib.domain.codecache``). The
    Lambda runtime must be this Python version (Chalice packages for the running one); another one ignores it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SARAFAN_"))}
    env.update({"PYTHONPATH": str(project), "AWS_DEFAULT_REGION": "us-east-1"})
    subprocess.run([sys.executable, "-c", "from chalicelib.domain import codecache; codecache.main()"], cwd=project, env=env, check=True,
                   stdout=subprocess.DEVNULL)


#: Environment variables a stage must set to a real value before it is packaged or deployed.
_OPERATOR_HASH = re.compile(r"^[0-9a-f]{64}$")


def stage_environment(config: dict[str, Any], stage_name: str) -> dict[str, str]:
    return {**config.get("environment_variables", {}),
            **config["stages"][stage_name].get("environment_variables", {})}


def check_settings(stage_name: str, env: dict[str, str]) -> list[str]:
    """What is wrong with a stage's settings, each with how to fix it (empty = fine)."""
    where = f".chalice/config.json, stages.{stage_name}.environment_variables"
    fix_hash = f"run `python3 infra/dev.py operator-key`, keep the key, and put the printed SHA-256 in {where}"
    problems = [f"{name} is a placeholder ({value!r}): set it in {where}" for name, value in sorted(env.items())
                if "REPLACE_ME" in value.upper() and name != "SARAFAN_OPERATOR_KEY_SHA256"]
    raw = env.get("SARAFAN_OPERATOR_KEY_SHA256", "")
    hashes = [h.strip() for h in raw.split(",") if h.strip()]
    if "REPLACE_ME" in raw.upper():
        problems.append(f"SARAFAN_OPERATOR_KEY_SHA256 is a placeholder: {fix_hash}")
    elif not hashes:
        problems.append(f"SARAFAN_OPERATOR_KEY_SHA256 is empty: {fix_hash}")
    elif not all(_OPERATOR_HASH.match(h.lower()) for h in hashes):
        problems.append(f"SARAFAN_OPERATOR_KEY_SHA256 must be 64-character hex SHA-256 digests, comma-separated: {fix_hash}")
    for name in ("SARAFAN_TABLE", "SARAFAN_PUBLIC_BASE_URL", "SARAFAN_SES_SENDER", "SARAFAN_SECRET_KEY_SECRET_ID",
                 "SARAFAN_DEFAULT_LANDING_URL"):
        if not env.get(name, "").strip():
            problems.append(f"{name} is empty: set it in {where}")
    # Where /r/{code} sends a visitor when the code is unknown or erased, or the master secret is
    # missing: the operator's site, never a page that is not theirs.
    landing = env.get("SARAFAN_DEFAULT_LANDING_URL", "").strip()
    if landing and not re.fullmatch(r"https://[^\s/?#]+\.[^\s/?#]+(?:/\S*)?", landing):
        problems.append(f"SARAFAN_DEFAULT_LANDING_URL must be an absolute https:// URL (got {landing!r}): set it in {where}")
    if env.get("SARAFAN_WEBHOOK_ALLOW_ANY_TARGET"):
        problems.append("SARAFAN_WEBHOOK_ALLOW_ANY_TARGET lets partner webhooks reach private addresses: it is for "
                        f"the local run only (and ignored in deployed stages); remove it from {where}")
    if env.get("SARAFAN_SECRET_KEY"):
        problems.append("SARAFAN_SECRET_KEY must not be in a deployed stage's config (it would sit in plain text in "
                        f"the template): remove it from {where}; the stack generates the master secret")
    return problems


# --- the template ---------------------------------------------------------------------------------

#: ``"Ref"`` of the operators' SNS topic (infra/resources.yaml).
ALARMS_TOPIC = {"Ref": "AlarmsTopic"}


def alarm(name: str, description: str, *, namespace: str, metric: str, dimensions: dict[str, Any],
          statistic: str = "Sum", threshold: float = 1, periods: int = 1, period: int = 300,
          extended_statistic: str | None = None) -> dict[str, Any]:
    """One CloudWatch alarm on one metric, notifying the operators' topic on ALARM and OK."""
    properties: dict[str, Any] = {
        "AlarmName": {"Fn::Sub": f"sarafan-${{Stage}}-{name}"},
        "AlarmDescription": description,
        "Namespace": namespace,
        "MetricName": metric,
        "Dimensions": [{"Name": k, "Value": v} for k, v in dimensions.items()],
        "Period": period,
        "EvaluationPeriods": periods,
        "Threshold": threshold,
        "ComparisonOperator": "GreaterThanOrEqualToThreshold",
        "TreatMissingData": "notBreaching",
        "AlarmActions": [ALARMS_TOPIC],
        "OKActions": [ALARMS_TOPIC],
    }
    if extended_statistic:
        properties["ExtendedStatistic"] = extended_statistic
    else:
        properties["Statistic"] = statistic
    return {"Type": "AWS::CloudWatch::Alarm", "Properties": properties}


def _kebab(logical_id: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "-", logical_id).lower()


def function_alarms(function_id: str) -> dict[str, dict[str, Any]]:
    """Errors (crashes, timeouts: not the 4xx/5xx a view returns) and throttles of one Lambda function."""
    ref = {"Ref": function_id}
    name = _kebab(function_id)
    return {
        f"{function_id}ErrorsAlarm": alarm(
            f"{name}-errors", f"Lambda {function_id} raised errors (crashes or timeouts).",
            namespace="AWS/Lambda", metric="Errors", dimensions={"FunctionName": ref}, threshold=1),
        f"{function_id}ThrottlesAlarm": alarm(
            f"{name}-throttles", f"Lambda {function_id} was throttled (account or reserved concurrency).",
            namespace="AWS/Lambda", metric="Throttles", dimensions={"FunctionName": ref}, threshold=1),
    }


def queue_depth_alarm(queue_id: str, threshold: int = 1) -> dict[str, dict[str, Any]]:
    """Messages waiting in a queue, e.g. a dead-letter queue: anything there needs an operator."""
    return {f"{queue_id}DepthAlarm": alarm(
        f"{_kebab(queue_id)}-depth", f"Messages are waiting in {queue_id}.",
        namespace="AWS/SQS", metric="ApproximateNumberOfMessagesVisible", statistic="Maximum",
        dimensions={"QueueName": {"Fn::GetAtt": [queue_id, "QueueName"]}}, threshold=threshold)}


def api_alarms(api_name: str, api_stage: str) -> dict[str, dict[str, Any]]:
    """API Gateway 5xx answers and p99 latency of the REST API."""
    dimensions = {"ApiName": api_name, "Stage": api_stage}
    return {
        "Api5xxAlarm": alarm(
            "api-5xx", "API Gateway answered 5xx (the API must not answer 5xx to any client input).",
            namespace="AWS/ApiGateway", metric="5XXError", dimensions=dimensions, threshold=5),
        "ApiLatencyP99Alarm": alarm(
            "api-latency-p99", "API Gateway p99 latency above 3 s for 15 minutes.",
            namespace="AWS/ApiGateway", metric="Latency", dimensions=dimensions, extended_statistic="p99",
            threshold=3000, periods=3),
    }


#: Queue logical ids that are dead-letter queues (they get a depth alarm automatically).
_DLQ = re.compile(r"(?:DLQ|Dlq|DeadLetterQueue)$")


def _watched_queues(resources: dict[str, Any]) -> set[str]:
    """Queues an alarm of the merged template already watches (no second alarm on the same depth)."""
    watched = set()
    for resource in resources.values():
        if resource["Type"] != "AWS::CloudWatch::Alarm":
            continue
        for dimension in resource["Properties"].get("Dimensions", []):
            value = dimension.get("Value")
            if dimension.get("Name") == "QueueName" and isinstance(value, dict) and "Fn::GetAtt" in value:
                watched.add(value["Fn::GetAtt"][0])
    return watched


def async_dead_letter_queue(resources: dict[str, Any], function_id: str) -> dict[str, dict[str, Any]]:
    """A dead-letter queue for a function SNS invokes asynchronously (the SES feedback consumer).

    Lambda retries an asynchronous invocation twice and then drops the event: a bounce that never
    reaches the suppression list means mail keeps going to a dead address (and SES reputation
    suffers). The queue keeps such events 14 days; its depth alarm (added with the other dead-letter
    queues) tells the operators. The function's role gets ``sqs:SendMessage`` on this queue only.
    Stream, queue and scheduled functions have their own failure paths (see infra/checkov.yaml).
    """
    function = resources[function_id]["Properties"]
    events = (function.get("Events") or {}).values()
    if not any(event.get("Type") == "SNS" for event in events) or "DeadLetterQueue" in function:
        return {}
    queue_id = f"{function_id}DeadLetterQueue"
    function["DeadLetterQueue"] = {"Type": "SQS", "TargetArn": {"Fn::GetAtt": [queue_id, "Arn"]}}
    role = function.get("Role", {}).get("Fn::GetAtt", [None])[0]
    if role in resources:
        document = resources[role]["Properties"]["Policies"][0]["PolicyDocument"]
        document["Statement"].append({"Sid": "DeadLetters", "Effect": "Allow", "Action": ["sqs:SendMessage"],
                                      "Resource": [{"Fn::GetAtt": [queue_id, "Arn"]}]})
    return {queue_id: {"Type": "AWS::SQS::Queue", "Properties": {
        "QueueName": {"Fn::Sub": f"sarafan-${{Stage}}-{_kebab(function_id)}-dlq"},
        "MessageRetentionPeriod": 1209600,
        "SqsManagedSseEnabled": True}}}


def finish_template(template: dict[str, Any], stage_name: str, api_stage: str, log_retention_days: int,
                    api_name: str = "sarafan") -> dict[str, Any]:
    """Complete what ``chalice package --merge-template`` leaves out or gets wrong (in place)."""
    resources = template["Resources"]
    template.setdefault("Parameters", {}).setdefault("Stage", {})["Default"] = stage_name
    # Chalice names a function's log group ``/aws/lambda/${ApiHandler}`` while the function is
    # ``APIHandler`` (a Chalice bug with log_retention_in_days): point each one at its function.
    by_lower = {logical_id.lower(): logical_id for logical_id in resources}
    for resource in resources.values():
        if resource["Type"] != "AWS::Logs::LogGroup":
            continue
        name = resource["Properties"].get("LogGroupName")
        if isinstance(name, dict) and isinstance(name.get("Fn::Sub"), str):
            match = re.fullmatch(r"/aws/lambda/\$\{(\w+)\}", name["Fn::Sub"])
            if match and match.group(1) not in resources and match.group(1).lower() in by_lower:
                name["Fn::Sub"] = f"/aws/lambda/${{{by_lower[match.group(1).lower()]}}}"
    # Chalice names an SQS event source's queue by an ARN string: when the queue is in this stack,
    # refer to it (GetAtt) so CloudFormation creates the queue before the event source mapping.
    queues = {r["Properties"].get("QueueName"): k for k, r in resources.items()
              if r["Type"] == "AWS::SQS::Queue" and isinstance(r.get("Properties", {}).get("QueueName"), str)}
    for resource in resources.values():
        for event in (resource.get("Properties", {}).get("Events") or {}).values():
            queue = event.get("Properties", {}).get("Queue") if event.get("Type") == "SQS" else None
            arn = queue.get("Fn::Sub") if isinstance(queue, dict) else None
            if isinstance(arn, str) and arn.rsplit(":", 1)[-1] in queues:
                event["Properties"]["Queue"] = {"Fn::GetAtt": [queues[arn.rsplit(":", 1)[-1]], "Arn"]}
    # In one stack the alarms watch the real functions; the name-based alarm of the standalone
    # data stack (chalice deploy) and its parameter do not apply.
    resources.pop("ApiErrorsAlarm", None)
    template["Parameters"].pop("ApiFunctionName", None)
    template.get("Conditions", {}).pop("HasApiFunctionName", None)
    added: dict[str, dict[str, Any]] = {}
    for logical_id, resource in sorted(resources.items()):
        if resource["Type"] in {"AWS::Serverless::Function", "AWS::Lambda::Function"}:
            added.update(function_alarms(logical_id))
            added.update(async_dead_letter_queue(resources, logical_id))
    watched = _watched_queues(resources)
    for logical_id, resource in sorted({**resources, **added}.items()):
        if resource["Type"] == "AWS::SQS::Queue" and _DLQ.search(logical_id) and logical_id not in watched:
            added.update(queue_depth_alarm(logical_id))
    api = resources.get("RestAPI")
    if api is not None:
        # One name in the API's own definition, its Name and the alarms' ApiName dimension.
        api_name = f"{api_name}-{stage_name}"
        api["Properties"]["Name"] = api_name
        api["Properties"].get("DefinitionBody", {}).setdefault("info", {})["title"] = api_name
        added.update(api_alarms(api_name, api_stage))
        added["ApiAccessLogGroup"] = {"Type": "AWS::Logs::LogGroup", "Properties": {
            "LogGroupName": {"Fn::Sub": "/aws/apigateway/sarafan-${Stage}-access"},
            "RetentionInDays": log_retention_days}}
        # One JSON line per request; no IP, no user agent (personal data stays out of logs).
        api["Properties"]["AccessLogSetting"] = {
            "DestinationArn": {"Fn::GetAtt": ["ApiAccessLogGroup", "Arn"]},
            "Format": json.dumps({
                "requestId": "$context.requestId", "time": "$context.requestTime",
                "method": "$context.httpMethod", "resource": "$context.resourcePath",
                "status": "$context.status", "latencyMs": "$context.responseLatency",
                "integrationLatencyMs": "$context.integrationLatency", "bytes": "$context.responseLength",
                "error": "$context.error.messageString"}, separators=(",", ":")),
        }
        # API Gateway writes logs with an account-wide role (one per account and region).
        added["ApiGatewayLogsRole"] = {"Type": "AWS::IAM::Role", "Properties": {
            "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Principal": {"Service": "apigateway.amazonaws.com"},
                "Action": "sts:AssumeRole"}]},
            "ManagedPolicyArns": [
                {"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs"}],
        }}
        added["ApiGatewayAccount"] = {"Type": "AWS::ApiGateway::Account", "Properties": {
            "CloudWatchRoleArn": {"Fn::GetAtt": ["ApiGatewayLogsRole", "Arn"]}}}
        api["DependsOn"] = sorted({*api.get("DependsOn", []), "ApiGatewayAccount"})
    resources.update(added)
    return template


#: Files of vendored distributions the functions never read: pip's install records, type stubs, and
#: phonenumbers' short-number metadata (``phonenumbers.shortnumberinfo``: emergency and service
#: numbers, loaded lazily per region; Sarafan only parses, validates and formats subscriber
#: numbers). About 127 KB of the zip.
UNUSED_IN_LAMBDA = re.compile(r"(?:^|/)[^/]+\.dist-info/RECORD$|\.pyi$|^phonenumbers/shortdata/region_\w+\.py$")

#: How the bundle ships bytecode (docs/benchmarks.md, "Bytecode in the bundle"): ``"beside"`` adds
#: ``__pycache__/<name>.<tag>.pyc`` next to every ``.py`` (unchecked-hash: zip mtimes don't matter, the
#: source stays for tracebacks); ``"sourceless"`` replaces each ``.py`` by a legacy-layout ``.pyc``;
#: ``"none"`` ships sources only (every cold start compiles them: /var/task is read-only).
BYTECODE_MODES = ("beside", "sourceless", "none")
BYTECODE = "beside"
#: Where Lambda unpacks the bundle (``LAMBDA_TASK_ROOT``): the file name sourceless code reports.
TASK_ROOT = "/var/task"


def lambda_runtimes(template: dict[str, Any]) -> set[str]:
    """Every ``Runtime`` of the SAM template's functions (``Globals`` included), e.g. ``{"python3.11"}``."""
    found = {template.get("Globals", {}).get("Function", {}).get("Runtime")}
    found |= {r.get("Properties", {}).get("Runtime") for r in template.get("Resources", {}).values()
              if r.get("Type") in ("AWS::Serverless::Function", "AWS::Lambda::Function")}
    return {r for r in found if isinstance(r, str)}


def bytecode_problem(runtimes: set[str]) -> str | None:
    """Why this Python must not compile the bundle for ``runtimes`` (a ``.pyc`` is version-specific), or None."""
    building = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    if runtimes and runtimes != {building}:
        return (f"not shipping bytecode: this is {building} but the functions run {', '.join(sorted(runtimes))}; "
                f"a .pyc only loads on the Python that wrote it, so every cold start would compile the sources. "
                f"Package with the runtime's Python ({', '.join(sorted(runtimes))}) to ship it.")
    return None


def _bytecode(name: str, source: bytes, sourceless: bool) -> tuple[str, bytes] | None:
    """(zip name, unchecked-hash ``.pyc`` bytes) for one ``.py`` of the bundle; None if it does not compile here."""
    from importlib import _bootstrap_external, util

    try:
        code = compile(source, f"{TASK_ROOT}/{name}", "exec", dont_inherit=True)
    except (SyntaxError, ValueError):
        return None
    data = _bootstrap_external._code_to_hash_pyc(code, util.source_hash(source), checked=False)  # type: ignore[attr-defined]
    return (name + "c" if sourceless else util.cache_from_source(name)), bytes(data)


def slim_zip(path: Path, bytecode: str = "none") -> tuple[int, int]:
    """Rewrite the deployment zip without :data:`UNUSED_IN_LAMBDA`, with the bundle's bytecode as
    ``bytecode`` says (:data:`BYTECODE_MODES`; the caller checks the runtime's version); (bytes before, after)."""
    import zipfile

    if bytecode not in BYTECODE_MODES:
        raise ValueError(f"bytecode must be one of {BYTECODE_MODES}, not {bytecode!r}")
    before = path.stat().st_size
    slim = path.with_suffix(".slim.zip")
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(slim, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as target:
        names = set(source.namelist())
        for info in source.infolist():
            if UNUSED_IN_LAMBDA.search(info.filename):
                continue
            data = source.read(info)
            compiled = (_bytecode(info.filename, data, bytecode == "sourceless")
                        if bytecode != "none" and info.filename.endswith(".py") else None)
            if compiled is None or compiled[0] in names:
                target.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED, compresslevel=9)
                continue
            if bytecode == "beside":
                target.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED, compresslevel=9)
            pyc = zipfile.ZipInfo(compiled[0], date_time=info.date_time)
            pyc.external_attr = info.external_attr
            target.writestr(pyc, compiled[1], compress_type=zipfile.ZIP_DEFLATED, compresslevel=9)
    slim.replace(path)
    return before, path.stat().st_size


def _finish_package(out: Path, stage_name: str, config: dict[str, Any], bytecode: str = BYTECODE) -> None:
    from chalice.package import YAMLTemplateSerializer

    serializer = YAMLTemplateSerializer()
    path = out / "sam.yaml"
    template = serializer.load_template(path.read_text(encoding="utf-8"))
    problem = bytecode_problem(lambda_runtimes(template)) if bytecode != "none" else None
    if problem:
        print(f"infra/package.py: {problem}", file=sys.stderr)
        bytecode = "none"
    slim_zip(out / "deployment.zip", bytecode)

    stage_config = config["stages"][stage_name]
    finish_template(
        template, stage_name,
        api_stage=stage_config.get("api_gateway_stage", config.get("api_gateway_stage", "api")),
        log_retention_days=stage_config.get("log_retention_in_days", config.get("log_retention_in_days", 14)),
        api_name=config["app_name"])
    path.write_text(serializer.serialize_template(template), encoding="utf-8")


def chalice(project: Path, *args: str, extra_env: dict[str, str] | None = None) -> int:
    env = {**os.environ, **(extra_env or {})}
    env.setdefault("AWS_DEFAULT_REGION", env.get("AWS_REGION", "eu-central-1"))
    executable = Path(sys.executable).parent / "chalice"
    return subprocess.call([str(executable), "--project-dir", str(project), *args], env=env)


#: Merged over Chalice's template, in order: the data plane, then settings of generated functions.
MERGE_TEMPLATES = ("resources.yaml", "notify-functions.yaml")


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        out[key] = _deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _filter_stream_to_handled_kinds(template: dict[str, Any]) -> None:
    """Generate the stream's filter from the dispatcher's registry, so a new handler is never filtered out.

    A hand-kept list drifted: records of kinds a feature handles (analytics' events, pool alerts) were
    dropped by the filter in AWS although every test, which calls the dispatcher directly, passed.
    """
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from chalicelib.notify import dispatcher

    source = template["Resources"]["TableStream"]["Properties"]["Events"]["TableStreamDynamodbEventSource"]
    pattern = {"dynamodb": {"NewImage": {"entity": {"S": dispatcher.handled_entities()}}}}
    source["Properties"]["FilterCriteria"] = {"Filters": [{"Pattern": json.dumps(pattern, separators=(", ", ": "))}]}


def merged_template(project: Path) -> Path:
    """infra/resources.yaml + infra/notify-functions.yaml as one JSON template (Chalice merges one file)."""
    from chalice.package import YAMLTemplateSerializer

    merged: dict[str, Any] = {}
    for name in MERGE_TEMPLATES:
        text = (ROOT / "infra" / name).read_text(encoding="utf-8")
        merged = _deep_merge(merged, YAMLTemplateSerializer().load_template(text))
    _filter_stream_to_handled_kinds(merged)
    target = project / "merge-template.json"
    target.write_text(json.dumps(merged, indent=1), encoding="utf-8")
    return target


def package(stage_name: str, out: Path, merge_template: bool = True, overrides: dict[str, str] | None = None,
            build: Path | None = None, bytecode: str = BYTECODE) -> int:
    project = stage(stage_name, overrides, build)
    args = ["package", "--stage", stage_name, "--template-format", "yaml"]
    if merge_template:
        args += ["--merge-template", str(merged_template(project))]
    code = chalice(project, *args, str(out.resolve()))
    if code == 0 and merge_template:
        _finish_package(out, stage_name, load_config(overrides), bytecode)
    return code


def deploy(stage_name: str, overrides: dict[str, str] | None = None) -> int:
    """``chalice deploy`` from the staged project; its state lives on in ``.chalice/deployed/``.

    Chalice imports ``app.py`` to find the event sources: the table stream's ARN (an output of the
    data stack, unknown until it exists) and the SES feedback topic's name come from this process's
    environment (``chalicelib/api/streams.py``), so they are set here rather than in the stage config.
    """
    stream_arn = (overrides or {}).get("SARAFAN_TABLE_STREAM_ARN") or os.environ.get("SARAFAN_TABLE_STREAM_ARN", "")
    if not stream_arn.startswith("arn:aws"):
        raise SystemExit(
            "refusing to deploy: the table stream consumer needs the data stack's stream ARN. Run\n"
            f"  aws cloudformation describe-stacks --stack-name sarafan-{stage_name}-data "
            "--query \"Stacks[0].Outputs[?OutputKey=='TableStreamArn'].OutputValue\" --output text\n"
            "and pass it: python3 infra/dev.py deploy --stage "
            f"{stage_name} --set SARAFAN_TABLE_STREAM_ARN=<arn> (or use `package`, which needs none of this)")
    project = stage(stage_name, overrides)
    state = ROOT / ".chalice" / "deployed"
    if state.is_dir():
        shutil.copytree(state, project / ".chalice" / "deployed")
    code = chalice(project, "deploy", "--stage", stage_name, extra_env={
        "SARAFAN_TABLE_STREAM_ARN": stream_arn, "SARAFAN_SES_FEEDBACK_TOPIC": f"sarafan-{stage_name}-ses-feedback"})
    if (project / ".chalice" / "deployed").is_dir():
        shutil.copytree(project / ".chalice" / "deployed", state, dirs_exist_ok=True)
    return code


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python3 infra/dev.py package|deploy")
    parser.add_argument("command", choices=["package", "deploy"])
    parser.add_argument("--stage", default="dev")
    parser.add_argument("--no-merge-template", action="store_true", help="package without infra/resources.yaml")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="override an environment variable of the stage (e.g. from CI secrets)")
    parser.add_argument("--bytecode", choices=BYTECODE_MODES, default=BYTECODE,
                        help=f"how the zip ships compiled .py files (default {BYTECODE}; see docs/benchmarks.md)")
    parser.add_argument("out", nargs="?", type=Path, help="package output directory (default build/package-<stage>)")
    args = parser.parse_intermixed_args(argv)
    overrides = dict(item.split("=", 1) for item in args.set if "=" in item)
    if args.command == "deploy":
        return deploy(args.stage, overrides)
    out = args.out or BUILD / f"package-{args.stage}"
    code = package(args.stage, out, merge_template=not args.no_merge_template, overrides=overrides,
                   bytecode=args.bytecode)
    if code == 0:
        print(f"packaged {args.stage}: {out}/deployment.zip + {out}/sam.yaml")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
