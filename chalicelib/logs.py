"""Structured JSON logs with a request id, scrubbed of personal data and keys.

Why not Powertools' Logger: it is a 1 MB dependency (the whole deployment zip
budget) and adds import time to every cold start; this module is the part we need.
Callers must not pass personal data in the first place; the scrubber below is
defence in depth for values that slip through (an exception message quoting input).
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

_EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}")
# A phone number stands alone: digits inside an id or a hex token (``msg_06e3b1234567890b65``) and
# ISO timestamps (``2026-12-03T10:00``) are not phone numbers and stay searchable in the logs.
_PHONE = re.compile(r"(?<![A-Za-z0-9_])\+?\d[\d\s().\-]{8,}\d(?![A-Za-z0-9_])")
_SECRET = re.compile(r"\b(srf_[a-z]+_|whsec_)[A-Za-z0-9+/=_\-]+")


def scrub(text: str) -> str:
    text = _SECRET.sub(r"\1***", text)
    text = _EMAIL.sub("<email>", text)
    return _PHONE.sub("<phone>", text)


class JsonFormatter(logging.Formatter):
    _RESERVED = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat().replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "request_id": request_id_var.get(),
            "message": scrub(record.getMessage()),
        }
        for key, value in vars(record).items():
            if key not in self._RESERVED and not key.startswith("_"):
                entry[key] = scrub(value) if isinstance(value, str) else value
        if record.exc_info:
            entry["exception"] = scrub(self.formatException(record.exc_info))
        return json.dumps(entry, default=str, ensure_ascii=False)


_configured = False


def get_logger(name: str = "sarafan") -> logging.Logger:
    global _configured
    if not _configured:
        root = logging.getLogger("sarafan")
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(JsonFormatter())
        root.handlers[:] = [handler]
        root.setLevel(logging.INFO)
        root.propagate = False
        _configured = True
    return logging.getLogger(name)
