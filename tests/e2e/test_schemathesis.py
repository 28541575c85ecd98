"""schemathesis against the real local run (moto server + Chalice's HTTP server), as a client would see it.

The document the server serves (``/openapi.json``) drives it: examples and fuzzed
requests for every operation, once with the operator key and once with a partner key
(plus the demo program's publishable key, for the landing routes). Checks: no 5xx, only
documented status codes, documented content types, and bodies matching the documented
response schemas. Path parameters are pinned to real ids of the seeded demo program (a
member is created first), so requests reach the code behind the 404s.

Bounded (a few hundred requests in all): ``SARAFAN_SCHEMATHESIS_EXAMPLES`` (per operation
and key, default 3) and ``SARAFAN_SCHEMATHESIS_SEED`` explore more.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_local_run import Running, running, start  # noqa: F401 -- the server fixtures

pytestmark = pytest.mark.e2e

EXAMPLES = int(os.environ.get("SARAFAN_SCHEMATHESIS_EXAMPLES", "3"))
SEED = int(os.environ.get("SARAFAN_SCHEMATHESIS_SEED", "7"))
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"


def _signed_event(server: Running, partner: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
    from chalicelib.domain.webhook_signature import sign

    raw = json.dumps(event).encode()
    msg_id, ts = f"msg_st{time.monotonic_ns()}", int(time.time())
    request = urllib.request.Request(
        f"{server.info['base_url']}/v1/webhooks/{partner['partner_id']}/events", data=raw, method="POST",
        headers={"Content-Type": "application/json", "webhook-id": msg_id, "webhook-timestamp": str(ts),
                 "webhook-signature": sign(partner["webhook_secrets"]["events"], msg_id, ts, raw)})
    with urllib.request.urlopen(request, timeout=30) as reply:
        return json.loads(reply.read())  # type: ignore[no-any-return]


def _config(path: Path, server: Running, key: str, member_id: str, code: str) -> Path:
    demo = server.info["demo"]
    pinned = {"program_id": demo["program_id"], "partner_id": demo["partners"][0]["partner_id"],
              "member_id": member_id, "code": code, "source": "events"}
    lines = [
        "[headers]",
        f'Authorization = "Bearer {key}"',
        f'X-Publishable-Key = "{demo["publishable_key"]}"',
        "[parameters]",
        *(f'"path.{name}" = "{value}"' for name, value in pinned.items()),
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_schemathesis_finds_no_server_error_and_no_contradiction_with_the_document(
        running: Running, tmp_path: Path) -> None:  # noqa: F811 -- pytest fixture
    demo = running.info["demo"]
    partner = demo["partners"][0]
    order = {"type": "order.paid", "occurred_at": "2026-11-21T10:00:00Z", "object": {"type": "order", "id": "st-1"},
             "customer": {"id": "c-st", "email": "st@example.com", "name": "Schema"},
             "order": {"total": 100_000, "currency": "RUB"}}
    _signed_event(running, partner, order)
    status, found = running.call("GET", f"/v1/programs/{demo['program_id']}/members/lookup?customer_id=c-st",
                                 key=partner["api_key"])
    assert status == 200, found
    member_id, code = found["member_id"], found["code"]

    schemathesis = Path(sys.executable).with_name("schemathesis")
    failures = []
    for who, key in (("operator", running.info["operator_key"]), ("partner", partner["api_key"])):
        config = _config(tmp_path / f"{who}.toml", running, key, member_id, code)
        command = [str(schemathesis), "--config-file", str(config), "run", running.info["openapi_url"],
                   "--checks", CHECKS, "--phases", "examples,fuzzing", "--max-examples", str(EXAMPLES),
                   "--seed", str(SEED), "--workers", "1", "--no-shrink", "--request-timeout", "30",
                   "--suppress-health-check", "all", "--warnings", "off", "--output-truncate", "false"]
        result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path,
                                env={**os.environ, "NO_COLOR": "1", "SCHEMATHESIS_TELEMETRY": "false"})
        if result.returncode != 0:
            failures.append(f"--- schemathesis as {who} (exit {result.returncode}):\n{result.stdout[-12000:]}"
                            f"\n{result.stderr[-2000:]}")
        else:
            generated = re.search(r"(\d+) generated", result.stdout)
            assert generated and int(generated.group(1)) >= 50, result.stdout[-3000:]
            print(f"schemathesis as {who}: {generated.group(0)}")
    assert not failures, "\n".join(failures)
    assert "Traceback" not in running.output.read_text()
