"""Build the Lambda bundle without what the Lambda runtime already ships (botocore).

Plain ``chalice package`` installs the whole dependency closure of
``requirements.txt``; PynamoDB depends on botocore, so the zip grows to ~18 MB of
botocore service models the Python Lambda runtime already has. This module stages
the project in ``build/lambda-<stage>/`` with:

* ``app.py``, ``chalicelib/`` (no ``__pycache__``), ``.chalice/config.json`` and policies;
* a ``requirements.txt`` without the requirements whose only dependencies are
  runtime-provided (``RUNTIME_PROVIDED``); those are put in ``vendor/`` with
  ``pip install --no-deps`` for the Lambda platform instead (Chalice copies
  ``vendor/`` as is);

then runs Chalice there. Used by ``python3 infra/dev.py package|deploy`` and the
benchmark. Run inside ``.venv``.
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


def stage(stage_name: str) -> Path:
    config = json.loads((ROOT / ".chalice" / "config.json").read_text(encoding="utf-8"))
    if stage_name not in config.get("stages", {}):
        raise SystemExit(f"no stage {stage_name!r} in .chalice/config.json")
    target = BUILD / f"lambda-{stage_name}"
    shutil.rmtree(target, ignore_errors=True)
    (target / ".chalice").mkdir(parents=True)
    shutil.copy2(ROOT / "app.py", target / "app.py")
    shutil.copytree(ROOT / "chalicelib", target / "chalicelib", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for file in (ROOT / ".chalice").glob("*.json"):
        shutil.copy2(file, target / ".chalice" / file.name)
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


def chalice(project: Path, *args: str) -> int:
    env = dict(os.environ)
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


def merged_template(project: Path) -> Path:
    """infra/resources.yaml + infra/notify-functions.yaml as one JSON template (Chalice merges one file)."""
    from chalice.package import YAMLTemplateSerializer

    merged: dict[str, Any] = {}
    for name in MERGE_TEMPLATES:
        text = (ROOT / "infra" / name).read_text(encoding="utf-8")
        merged = _deep_merge(merged, YAMLTemplateSerializer().load_template(text))
    target = project / "merge-template.json"
    target.write_text(json.dumps(merged, indent=1), encoding="utf-8")
    return target


def package(stage_name: str, out: Path, merge_template: bool = True) -> int:
    project = stage(stage_name)
    args = ["package", "--stage", stage_name, "--template-format", "yaml"]
    if merge_template:
        args += ["--merge-template", str(merged_template(project))]
    return chalice(project, *args, str(out.resolve()))


def deploy(stage_name: str) -> int:
    """``chalice deploy`` from the staged project; its state lives on in ``.chalice/deployed/``."""
    project = stage(stage_name)
    state = ROOT / ".chalice" / "deployed"
    if state.is_dir():
        shutil.copytree(state, project / ".chalice" / "deployed")
    code = chalice(project, "deploy", "--stage", stage_name)
    if (project / ".chalice" / "deployed").is_dir():
        shutil.copytree(project / ".chalice" / "deployed", state, dirs_exist_ok=True)
    return code


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python3 infra/dev.py package|deploy")
    parser.add_argument("command", choices=["package", "deploy"])
    parser.add_argument("--stage", default="dev")
    parser.add_argument("--no-merge-template", action="store_true", help="package without infra/resources.yaml")
    parser.add_argument("out", nargs="?", type=Path, help="package output directory (default build/package-<stage>)")
    args = parser.parse_intermixed_args(argv)
    if args.command == "deploy":
        return deploy(args.stage)
    out = args.out or BUILD / f"package-{args.stage}"
    code = package(args.stage, out, merge_template=not args.no_merge_template)
    if code == 0:
        print(f"packaged {args.stage}: {out}/deployment.zip + {out}/sam.yaml")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
