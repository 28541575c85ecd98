"""The README's five-minute walk, run as written against a local run, its answers checked against the README.

The shell blocks of "Five minutes: from zero to a rewarded friend" are taken from README.md; only what the
reader copies from the run's banner is filled in (the base URL, the demo's program, partner, secret and keys),
and step 2's example code is replaced by Anna's real one, as the README tells the reader to do. Each step's
``# …`` lines are the README's promised answers: every ``"name":value`` they show (except elided ``…``
values) must be in the step's output, the redirect must go where step 2 says, and step 5 must print exactly
the lines the README shows.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.request
from typing import Any

import pytest

from tests.e2e.test_local_run import ROOT, start  # noqa: F401 -- the fixture that starts a local run

pytestmark = pytest.mark.e2e

EXAMPLE_CODE = "6S5GP4Q2V5R"  # the code the README shows for Anna
EXAMPLE_BASE = "http://127.0.0.1:8000"
PAIR = re.compile(r'"(\w+)":("(?:[^"\\…]|\\.)*"|-?\d+|true|false|null)(?=[,}\s]|$)')


def walk_blocks() -> list[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Five minutes", 1)[1].split("\n## ", 1)[0]
    blocks = [re.sub(r"^ {3}", "", block, flags=re.M) for block in re.findall(r"```sh\n(.*?)```", section, re.S)]
    assert len(blocks) == 6, "the walk is a setup block and five steps"
    return blocks


def promised(block: str) -> list[str]:
    return [line.split("# ", 1)[1] for line in block.splitlines() if line.startswith("# ")]


def values_in(document: Any) -> set[tuple[str, str]]:
    """Every (name, JSON value) pair anywhere in a JSON document."""
    found: set[tuple[str, str]] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for name, value in node.items():
                if not isinstance(value, dict | list):
                    found.add((name, json.dumps(value, ensure_ascii=False)))
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(document)
    return found


def assert_pairs_shown(promise: str, output_line: str) -> None:
    actual = values_in(json.loads(output_line))
    for name, value in PAIR.findall(promise):
        assert (name, value) in actual, (name, value, output_line)


def bash(script: str) -> list[str]:
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return [line for line in done.stdout.splitlines() if line.strip()]


@pytest.mark.skipif(not (shutil.which("curl") and shutil.which("openssl")),
                    reason="SKIPPED LOUDLY: the README walk needs curl and openssl, which this machine lacks")
def test_the_readme_walk_answers_what_the_readme_shows(start: Any) -> None:  # noqa: F811
    # Without the demo's seeded history: the walk's messages are then the only ones.
    running = start("walk", "--no-history")
    info, demo = running.info, running.info["demo"]
    shop = demo["partners"][0]
    base = info["base_url"]
    filled = {"BASE": base, "PROGRAM": demo["program_id"], "PARTNER": shop["partner_id"],
              "SECRET": shop["webhook_secrets"]["events"], "KEY": shop["api_key"], "PUB": demo["publishable_key"]}
    setup, anna_pays, invite, boris_orders, balances, messages = walk_blocks()
    setup = re.sub(r"\b(BASE|PROGRAM|PARTNER|SECRET|KEY|PUB)=\S+", lambda m: f"{m.group(1)}={filled[m.group(1)]}", setup)
    for name, value in filled.items():
        assert f"{name}={value}" in setup, f"the setup block no longer sets {name}"

    # 1. Anna pays.
    [paid] = bash(setup + anna_pays)
    [promise] = promised(anna_pays)
    code = json.loads(paid)["member"]["code"]
    assert_pairs_shown(promise.replace(EXAMPLE_CODE, code), paid)

    # 2. Her invite link and the redirect (the reader copies her code from the reply).
    assert f"CODE={EXAMPLE_CODE}" in invite
    invite_reply, redirect = bash(setup + invite.replace(f"CODE={EXAMPLE_CODE}", f"CODE={code}"))
    invite_promise, redirect_promise = (p.replace(EXAMPLE_CODE, code).replace(EXAMPLE_BASE, base)
                                        for p in promised(invite))
    assert_pairs_shown(invite_promise, invite_reply)
    assert redirect.split() == redirect_promise.split()[:2]

    # 3. Boris orders with her code.
    [ordered] = bash(setup + boris_orders.replace("$CODE", code))
    assert_pairs_shown(promised(boris_orders)[0], ordered)

    # 4 and 5. The balances, then (once the stream has delivered them) the messages.
    deadline = time.monotonic() + 60  # a readiness wait for the stream consumer, not a speed check
    while len(_outbox(base)) < len(promised(messages)) and time.monotonic() < deadline:
        time.sleep(0.2)
    marker = "@@ step 5"
    lines = bash(setup + balances + f"\necho '{marker}'\n" + messages)
    cut = lines.index(marker)
    shown_balances, shown_messages = lines[:cut], lines[cut + 1:]
    assert len(shown_balances) == 2
    for promise, line in zip(promised(balances), shown_balances, strict=True):
        assert_pairs_shown(promise, line)
    assert shown_messages == promised(messages)
    running.stop()


def _outbox(base: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{base}/dev/outbox", timeout=10) as reply:
        return list(json.loads(reply.read())["items"])
