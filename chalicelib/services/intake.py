"""Canonical event intake: verify the Standard Webhooks signature, parse, run the pipeline.

Order matters: nothing about the event is read or written before the signature
checks out. The only read before verification is the partner record (cached),
which holds the secret versions needed to verify, and its program's record in the same
``BatchGetItem`` (a cold container then makes one configuration round trip, not two).
"""

from __future__ import annotations

from typing import Any

from chalicelib.domain import safe_json, webhook_signature
from chalicelib.domain.errors import NotFound
from chalicelib.domain.events import parse_event
from chalicelib.services import pipeline, ports, secrets

SOURCE = "events"


def receive(partner_id: str, headers: dict[str, str], raw_body: bytes, deps: ports.Ports | None = None) -> dict[str, Any]:
    # One clock for the signature's freshness and the secrets' validity (and everything after).
    deps = deps or ports.current()
    now = deps.clock.now()
    # A stale or unsigned request is refused before any read at all.
    webhook_signature.check_headers(headers, now=now.timestamp())
    # The partner holds the secrets; its program comes in the same batched read (config, cached).
    partner, program = deps.programs.webhook_config(partner_id)
    program_id = program.program_id
    valid = secrets.valid_secrets(program_id, partner_id, partner.webhook_secrets or {}, SOURCE, now)
    if not valid:
        raise NotFound("This partner has no secret for canonical events", details={"source": SOURCE})
    verified = webhook_signature.verify(valid, headers, raw_body, now=now.timestamp())
    body = safe_json.loads(raw_body, require_object=False)
    event = parse_event(body, default_region="RU" if program.default_locale == "ru" else "US", now=now)
    return pipeline.process(program, partner_id, event, delivery_id=verified.msg_id)

