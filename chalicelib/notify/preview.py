"""Rendered messages kept in memory in the local stage only (``GET /dev/outbox``).

The local run serves the API and drives the stream consumer in one process, so a newcomer can
open the e-mail Olga got. Nothing is kept in any other stage.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

from chalicelib.domain import clock
from chalicelib.notify.render import Rendered
from chalicelib.services import ports

_lock = threading.Lock()
_messages: deque[dict[str, Any]] = deque(maxlen=200)


def record(program_id: str, member_id: str, rendered: Rendered, deliveries: list[dict[str, Any]],
           message_ids: list[str]) -> None:
    with _lock:
        _messages.appendleft({
            "id": message_ids[0], "program_id": program_id, "member_id": member_id, "template": rendered.kind,
            "locale": rendered.locale, "subject": rendered.subject, "text": rendered.text, "html": rendered.html,
            "short": rendered.short, "merged": message_ids[1:], "at": clock.iso(ports.current().clock.now()),
            "deliveries": [{k: v for k, v in d.items() if k != "target"} for d in deliveries],
        })


def messages() -> list[dict[str, Any]]:
    with _lock:
        return list(_messages)


def clear() -> None:
    with _lock:
        _messages.clear()
