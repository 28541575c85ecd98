"""The one consumer of the table's DynamoDB stream, dispatching records by item kind.

DynamoDB Streams throttles more than two concurrent readers of a shard, so the table has exactly
one event source mapping (``@streams.on_dynamodb_record`` in ``chalicelib/api/streams.py``) and
features register handlers here instead of adding their own::

    from chalicelib.notify import dispatcher

    @dispatcher.handles("ledger_entry")
    def on_entries(records: list[dispatcher.StreamRecord]) -> set[str]:
        ...  # return the sequence numbers that failed (retried by Lambda), empty when all went well

The item kind is the ``entity`` discriminator of the single table. A handler that raises fails all
its records of the batch; handlers must be idempotent (Lambda retries a failed batch from the first
failed record, and a batch may be delivered more than once). The result is Lambda's partial batch
response (``ReportBatchItemFailures``).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("sarafan.stream")

#: Modules whose import registers handlers (loaded on the first batch, not at cold start).
HANDLER_MODULES = ["chalicelib.notify.sources", "chalicelib.analytics.consumer", "chalicelib.services.settlement_feed",
                   "chalicelib.notify.pool_alerts", "chalicelib.notify.partner_events"]

Handler = Callable[[list["StreamRecord"]], set[str]]
_handlers: dict[str, list[Handler]] = {}
_loaded = False


@dataclass(frozen=True)
class StreamRecord:
    event_name: str  # INSERT | MODIFY | REMOVE
    sequence_number: str
    keys: dict[str, Any]
    new_image: dict[str, Any] | None

    @property
    def entity(self) -> str | None:
        image = self.new_image or {}
        value = image.get("entity", {})
        return value.get("S") if isinstance(value, dict) else None

    def item(self) -> Any:
        """The new image as its PynamoDB entity (``None`` for a removal)."""
        from chalicelib.store.db import Entity

        return Entity.from_raw_data(self.new_image) if self.new_image else None


def handles(entity: str) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        _handlers.setdefault(entity, [])
        if handler not in _handlers[entity]:
            _handlers[entity].append(handler)
        return handler

    return register


def _load() -> None:
    global _loaded
    if not _loaded:
        for name in HANDLER_MODULES:
            importlib.import_module(name)
        _loaded = True


def handled_entities() -> list[str]:
    """Every item kind some handler consumes: the packaged stream filter is generated from this list."""
    _load()
    return sorted(_handlers)


def parse(raw: dict[str, Any]) -> StreamRecord:
    data = raw.get("dynamodb") or {}
    return StreamRecord(event_name=str(raw.get("eventName") or ""), sequence_number=str(data.get("SequenceNumber")),
                        keys=data.get("Keys") or {}, new_image=data.get("NewImage"))


def dispatch(raw_records: list[dict[str, Any]]) -> dict[str, Any]:
    """Handle one batch; return ``{"batchItemFailures": [{"itemIdentifier": <sequence number>}]}``."""
    _load()
    by_entity: dict[str, list[StreamRecord]] = {}
    failed: set[str] = set()
    for raw in raw_records:
        try:
            record = parse(raw)
        except Exception:  # a record we cannot even read: report it (Lambda retries, then the on-failure queue)
            seq = str((raw.get("dynamodb") or {}).get("SequenceNumber", "")) if isinstance(raw, dict) else ""
            log.warning("unreadable stream record", extra={"sequence_number": seq})
            if seq:
                failed.add(seq)
            continue
        entity = record.entity
        if entity and entity in _handlers:
            by_entity.setdefault(entity, []).append(record)
    for entity, records in by_entity.items():
        for handler in _handlers[entity]:
            try:
                failed |= handler(records)
            except Exception as exc:
                log.exception("stream handler failed", extra={"entity": entity, "error_type": type(exc).__name__})
                failed |= {r.sequence_number for r in records}
    order = {str((r.get("dynamodb") or {}).get("SequenceNumber")): i for i, r in enumerate(raw_records)
             if isinstance(r, dict)}
    return {"batchItemFailures": [{"itemIdentifier": seq} for seq in sorted(failed, key=lambda s: order.get(s, 0))]}
