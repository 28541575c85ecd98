"""The SQS implementation of the CRM fetch queue port (``services.ports.FetchQueue``).

Nothing connects at import: the SQS client is built on first use (``aws.client``). The in-memory fake
is ``store.fakes.FakeFetchQueue``; both pass ``tests/contract/test_crm_and_landing_ports.py``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from typing import Any


class SqsFetchQueue:
    """``SARAFAN_CRM_FETCH_QUEUE_URL``: the queue's URL or its name (resolved once per container)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._resolved: dict[str, str] = {}

    @staticmethod
    def _configured() -> str | None:
        from chalicelib.config import get_settings

        return get_settings().crm_fetch_queue_url

    def enabled(self) -> bool:
        return bool(self._configured())

    def _url(self, name_or_url: str) -> str:
        from chalicelib import aws

        if name_or_url.startswith(("https://", "http://")):
            return name_or_url
        with self._lock:
            if name_or_url not in self._resolved:
                self._resolved[name_or_url] = aws.client("sqs").get_queue_url(QueueName=name_or_url)["QueueUrl"]
            return self._resolved[name_or_url]

    def send(self, message: Mapping[str, Any]) -> None:
        from chalicelib import aws

        configured = self._configured()
        if not configured:
            raise RuntimeError("no CRM fetch queue is configured (SARAFAN_CRM_FETCH_QUEUE_URL)")
        aws.client("sqs").send_message(QueueUrl=self._url(configured), MessageBody=json.dumps(dict(message)))
