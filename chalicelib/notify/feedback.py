"""SES bounce and complaint notifications (delivered to an SNS topic, ``@on_sns_message``).

A permanent bounce or a complaint suppresses that address for the program: the hash of the
address is added to the member's notification state, and deliveries skip it (``failed:
suppressed``). The program and member come from the message tags set at send time
(``program_id``, ``member_id``), so no lookup by address is needed. Transient bounces are
ignored (SES retries them itself).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from chalicelib.domain.identity import email_match_key, identity_hash

log = logging.getLogger("sarafan.notify")


def _tag(mail: dict[str, Any], name: str) -> str | None:
    values = (mail.get("tags") or {}).get(name) or []
    return str(values[0]) if values else None


def handle(message: str) -> dict[str, Any]:
    """Apply one SES notification (the SNS message text); returns what was done (no addresses)."""
    from chalicelib.notify import members

    try:
        data = json.loads(message)
    except ValueError:
        log.warning("ses feedback is not JSON")
        return {"suppressed": 0, "ignored": "not_json"}
    if not isinstance(data, dict):
        return {"suppressed": 0, "ignored": "not_an_object"}
    kind = data.get("notificationType") or data.get("eventType")
    mail = data.get("mail") or {}
    if kind == "Bounce":
        bounce = data.get("bounce") or {}
        if bounce.get("bounceType") != "Permanent":
            return {"suppressed": 0, "ignored": "transient_bounce"}
        recipients = [r.get("emailAddress") for r in bounce.get("bouncedRecipients") or []]
    elif kind == "Complaint":
        recipients = [r.get("emailAddress") for r in (data.get("complaint") or {}).get("complainedRecipients") or []]
    else:
        return {"suppressed": 0, "ignored": str(kind)}
    program_id, member_id = _tag(mail, "program_id"), _tag(mail, "member_id")
    if not program_id or not member_id:
        log.warning("ses feedback without sarafan tags", extra={"type": kind})
        return {"suppressed": 0, "ignored": "untagged"}
    count = 0
    for address in recipients:
        if isinstance(address, str) and "@" in address:
            bare = address.rpartition("<")[2].rstrip(">").strip().lower()
            members.suppress(program_id, member_id, identity_hash(program_id, "email", email_match_key(bare)))
            count += 1
    log.info("ses feedback applied", extra={"type": kind, "suppressed": count})
    return {"suppressed": count}
