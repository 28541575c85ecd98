"""The one consumer of the table's DynamoDB stream, dispatching records by item kind.

DynamoDB Streams throttles more than two concurrent readers of a shard, so the table has exactly
one event source mapping (``@streams.on_dynamodb_record`` in ``chalicelib/api/streams.py``) and
features register handlers here instead of adding their own::

    from chalicelib.notify import dispatcher

    @dispatcher.handles("ledger_entry")
    def on_entries(records: list[dispatcher.StreamRecord]) -> set[str]:
        ...  # return the sequence numbers that failed (retried by Lambda), empty when all went well

A handler may take several item kinds (``@dispatcher.handles("event", "ledger_entry")``): it is then
called once per batch with all their records, in stream order (one transaction for an order's event
record and its ledger entries, say).

The item kind is the ``entity`` discriminator of the single table. A handler that raises fails all
its records of the batch; handlers must be idempotent (Lambda retries a failed batch from the first
failed record, and a batch may be delivered more than once). The result is Lambda's partial batch
response (``ReportBatchItemFailures``).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
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
    #: The parsed new image, once (see :meth:`item`).
    _parsed: list[Any] = field(default_factory=list, compare=False, repr=False)

    @property
    def entity(self) -> str | None:
        image = self.new_image or {}
        value = image.get("entity", {})
        return value.get("S") if isinstance(value, dict) else None

    def item(self) -> Any:
        """The new image as its PynamoDB entity (``None`` for a removal), decoded once: every handler of the batch
        that takes this kind gets the same object (handlers read it; a write goes through an item of its own)."""
        if not self._parsed:
            from chalicelib.store.db import Entity

            self._parsed.append(Entity.from_raw_data(self.new_image) if self.new_image else None)
        return self._parsed[0]


def handles(*entities: str) -> Callable[[Handler], Handler]:
    """Register a handler for the records of these item kinds (called once per batch with all of them)."""
    if not entities:
        raise ValueError("name at least one item kind")

    def register(handler: Handler) -> Handler:
        for entity in entities:
            _handlers.setdefault(entity, [])
            if handler not in _handlers[entity]:
                _handlers[entity].append(handler)
        return handler

    return register


def wrap_handlers(wrap: Callable[[Handler], Handler]) -> Callable[[], None]:
    """Replace every registered handler by ``wrap(handler)`` (one wrapper per handler, whatever the number of
    item kinds it takes: benchmarks meter handlers this way); returns the function that puts them back."""
    _load()
    saved = {entity: list(handlers) for entity, handlers in _handlers.items()}
    wrapped: dict[int, Handler] = {}
    for entity, handlers in _handlers.items():
        _handlers[entity] = [wrapped.setdefault(id(h), wrap(h)) for h in handlers]

    def restore() -> None:
        _handlers.clear()
        _handlers.update(saved)

    return restore


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
    arrival: dict[int, int] = {}
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
            arrival[id(record)] = len(arrival)
    # Each handler once, with the records of every kind it takes (in stream order).
    calls: dict[int, tuple[Handler, list[str]]] = {}
    for entity in by_entity:
        for handler in _handlers[entity]:
            calls.setdefault(id(handler), (handler, []))[1].append(entity)
    for handler, entities in calls.values():
        records = [r for entity in entities for r in by_entity[entity]]
        if len(entities) > 1:
            records.sort(key=lambda r: arrival[id(r)])
        try:
            failed |= handler(records)
        except Exception as exc:
            log.exception("stream handler failed", extra={"entity": ",".join(entities),
                                                          "error_type": type(exc).__name__})
            failed |= {r.sequence_number for r in records}
    order = {str((r.get("dynamodb") or {}).get("SequenceNumber")): i for i, r in enumerate(raw_records)
             if isinstance(r, dict)}
    return {"batchItemFailures": [{"itemIdentifier": seq} for seq in sorted(failed, key=lambda s: order.get(s, 0))]}
