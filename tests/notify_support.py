"""Helpers for the notification tests: drive the deployed stream handler, read what SES/SNS received."""

from __future__ import annotations

import email
from dataclasses import dataclass
from email.message import Message
from typing import Any

ACCOUNT = "123456789012"
REGION = "eu-central-1"


@dataclass
class SentEmail:
    to: list[str]
    subject: str
    text: str
    html: str
    headers: Message

    @property
    def language(self) -> str:
        return "ru" if any("\u0400" <= c <= "\u04ff" for c in self.subject + self.text) else "en"


def _decoded(part: Message) -> str:
    payload = part.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload.decode(part.get_content_charset() or "utf-8")


def ses_sent() -> list[SentEmail]:
    """Every e-mail moto's SES accepted, parsed from the raw MIME it received."""
    from email.header import decode_header, make_header

    from moto.ses.models import ses_backends

    out = []
    for message in ses_backends[ACCOUNT][REGION].sent_messages:
        raw = getattr(message, "raw_data", None)
        if raw is None:
            continue
        parsed = email.message_from_string(raw) if isinstance(raw, str) else email.message_from_bytes(raw)
        text = html = ""
        for part in parsed.walk():
            if part.get_content_type() == "text/plain":
                text = _decoded(part)
            elif part.get_content_type() == "text/html":
                html = _decoded(part)
        out.append(SentEmail(to=sorted(set(message.destinations)), subject=str(make_header(decode_header(parsed["Subject"]))),
                             text=text, html=html, headers=parsed))
    return out


def sms_sent() -> list[tuple[str, str]]:
    from moto.sns.models import sns_backends

    return [(phone, text) for phone, text, *_ in sns_backends[ACCOUNT][REGION].sms_messages.values()]


def instant_delivery(monkeypatch: Any) -> None:
    """Deliveries in tests: no retry back-off, one at a time (moto's in-process DynamoDB is not thread-safe:
    a failed transaction restores a table copy), the real SES/SNS port, an empty preview outbox."""
    from chalicelib.notify import delivery, preview, sources

    monkeypatch.setattr(delivery, "BACKOFF_SECONDS", 0.0)
    monkeypatch.setattr(sources, "MAX_PARALLEL", 1)
    sources.use_delivery(None)
    preview.clear()


def stream_poller(**kw: Any) -> Any:
    from app import app
    from infra.local_stream import StreamPoller

    return StreamPoller(app.handler_map["table_stream"], log=lambda _m: None, **kw)
