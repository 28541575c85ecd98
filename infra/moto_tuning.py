"""Make moto's in-memory DynamoDB hold a long local run: bounded memory, cost per request not per table.

Applied by ``infra/local_run.py`` (the embedded moto of ``python3 infra/dev.py run``), by
``bench/`` and by the test suite (``tests/conftest.py``), so the tests exercise the engine the
local run uses. Nothing here ships to Lambda (Chalice packages ``app.py``, ``chalicelib/`` and
``vendor/`` only), and nothing changes what a DynamoDB call returns. Measured with moto 5.2.5
(``bench/local_run.py --moto-only``; figures in ``docs/local-run.md``):

* **Every model object ever created stays referenced.** ``moto.core.BaseModel.__new__`` appends
  each instance to ``cls.instances_tracked`` (for the moto dashboard's ``/moto-api/data.json``),
  and only ``mock_aws`` / ``/moto-api/reset`` empties those lists. DynamoDB creates ``Item``
  objects for every write, every deep copy and every query result, so none of them was ever
  freed. :func:`stop_instance_tracking` stops it (S3 is left alone: it uses the list to dispose
  of its temporary files). The dashboard then shows no instances; every AWS API still works.
* **A transaction deep-copies whole tables.** ``transact_write_items`` takes
  ``copy.deepcopy(table)`` *once per item* for its rollback: a ten-item transaction on a table
  of N items copied 10·N items (and, with the tracking above, kept them all: 300 ten-item
  transactions reached 3.85 GB). :func:`rollback_touched_items_only` snapshots just the items
  the transaction names (and the stream shard's length) and restores those on failure, which is
  what the full copy restored too: a transaction only ever writes the items it names.
* **A query reads the whole table.** ``Table.query`` on the base table walks ``all_items()`` and
  keeps the partition's items; :func:`query_one_partition` hands it that partition only.
  A GSI query still walks the table (as moto does; see :func:`index_queries`).
* **A ``get_item`` miss leaves an empty partition behind** (``items`` is a ``defaultdict``);
  :func:`no_partition_on_miss` answers a miss without creating one.
* **moto's DynamoDB is not thread-safe** (conditional writes are check-then-write in Python):
  :data:`ENGINE_LOCK` serialises its requests, as real DynamoDB applies each request
  atomically, whichever client sends it (the app, the scheduler, ``aws --endpoint-url``).

:func:`apply` installs all of them once per process (idempotent).
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

#: One DynamoDB request at a time across every thread (also taken by the local run's snapshot).
ENGINE_LOCK = threading.RLock()

_applied: set[str] = set()
_local = threading.local()


def apply() -> None:
    """Install every adjustment (safe to call more than once)."""
    for name, install in (
        ("tracking", stop_instance_tracking),
        ("rollback", rollback_touched_items_only),
        ("query", query_one_partition),
        ("get_item", no_partition_on_miss),
        ("lock", serialize_requests),
    ):
        if name not in _applied:
            install()
            _applied.add(name)


def applied() -> frozenset[str]:
    return frozenset(_applied)


# --- instance tracking -----------------------------------------------------------------------


def _keeps_tracking(cls: type) -> bool:
    return cls.__module__.startswith("moto.s3")


def stop_instance_tracking() -> None:
    from moto.core.common_models import BaseModel
    from moto.core.model_instances import model_data

    def __new__(cls: type, *args: Any, **kwargs: Any) -> Any:
        instance: Any = object.__new__(cls)
        if _keeps_tracking(cls):
            cls.instances_tracked.append(instance)  # type: ignore[attr-defined]
        return instance

    BaseModel.__new__ = __new__  # type: ignore[assignment, method-assign]
    for models in model_data.values():  # drop what was tracked before this call
        for model in models.values():
            if isinstance(model, type) and not _keeps_tracking(model):
                model.instances_tracked = []  # type: ignore[attr-defined]


# --- transactions ----------------------------------------------------------------------------


class _NoTableCopy:
    """Stands in for the ``copy`` module inside moto's DynamoDB backend module.

    During :func:`rollback_touched_items_only`'s wrapper a table "copy" is the table itself,
    so moto's own restore (``self.tables[name] = backup``) changes nothing; the wrapper
    restores the touched items instead. Every other deep copy is the real one.
    """

    def __getattr__(self, name: str) -> Any:
        return getattr(copy, name)

    @staticmethod
    def deepcopy(value: Any, memo: dict[int, Any] | None = None) -> Any:
        from moto.dynamodb.models.table import Table

        if getattr(_local, "in_transaction", False) and isinstance(value, Table):
            return value
        return copy.deepcopy(value, memo)


_Snapshot = tuple[dict[tuple[str, Any, Any], Any], dict[str, int]]


def _transaction_keys(backend: Any, transact_items: list[dict[str, Any]]) -> Iterator[tuple[str, Any, Any]]:
    from moto.dynamodb.models.dynamo_type import DynamoType

    for entry in transact_items:
        for op_type, op in entry.items():
            if not isinstance(op, dict):
                continue
            table = backend.tables.get(op.get("TableName"))
            if table is None:
                continue
            attrs = op.get("Item") if op_type == "Put" else op.get("Key")
            if not isinstance(attrs, dict) or table.hash_key_attr not in attrs:
                continue
            try:
                hash_value = DynamoType(attrs[table.hash_key_attr])
                range_value = DynamoType(attrs[table.range_key_attr]) if table.range_key_attr else None
            except (KeyError, TypeError, AttributeError):
                continue  # malformed: moto rejects it before writing anything for it
            yield table.name, hash_value, range_value


def _snapshot(backend: Any, transact_items: list[dict[str, Any]]) -> _Snapshot:
    items: dict[tuple[str, Any, Any], Any] = {}
    streams: dict[str, int] = {}
    for key in _transaction_keys(backend, transact_items):
        if key in items:
            continue
        table_name, hash_value, range_value = key
        table = backend.tables[table_name]
        partition = table.items.get(hash_value)
        current = partition if range_value is None else (partition or {}).get(range_value)
        items[key] = copy.deepcopy(current)  # update_item changes items in place
        if table.stream_shard is not None:
            streams.setdefault(table_name, len(table.stream_shard.items))
    return items, streams


def _restore(backend: Any, snapshot: _Snapshot) -> None:
    items, streams = snapshot
    for (table_name, hash_value, range_value), original in items.items():
        table = backend.tables.get(table_name)
        if table is None:
            continue
        if range_value is None:
            if original is None:
                table.items.pop(hash_value, None)
            else:
                table.items[hash_value] = original
            continue
        partition = table.items.get(hash_value)
        if original is not None:
            table.items[hash_value][range_value] = original
        elif partition is not None:
            partition.pop(range_value, None)
            if not partition:
                del table.items[hash_value]
    for table_name, length in streams.items():
        table = backend.tables.get(table_name)
        shard = table.stream_shard if table is not None else None
        if shard is not None and len(shard.items) >= length:
            del shard.items[length:]  # records of the cancelled writes, as the full copy dropped them


def rollback_touched_items_only() -> None:
    import moto.dynamodb.models as models

    backend_class = models.DynamoDBBackend
    original: Callable[..., Any] = backend_class.transact_write_items
    models.copy = _NoTableCopy()  # type: ignore[assignment]

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> Any:
        if len(transact_items) > 100:  # moto raises before touching anything
            return original(self, transact_items)
        snapshot = _snapshot(self, transact_items)
        _local.in_transaction = True
        try:
            return original(self, transact_items)
        except BaseException:
            _restore(self, snapshot)
            raise
        finally:
            _local.in_transaction = False

    transact_write_items.__wrapped__ = original  # type: ignore[attr-defined]
    backend_class.transact_write_items = transact_write_items  # type: ignore[method-assign]


# --- reads -------------------------------------------------------------------------------------


def query_one_partition() -> None:
    from moto.dynamodb.models.table import Table

    original_query: Callable[..., Any] = Table.query
    original_all_items: Callable[..., Any] = Table.all_items

    def query(self: Any, hash_key: Any, *args: Any, **kwargs: Any) -> Any:
        index_name = args[6] if len(args) > 6 else kwargs.get("index_name")
        if index_name or hash_key is None:
            return original_query(self, hash_key, *args, **kwargs)
        _local.partition = (self, hash_key)
        try:
            return original_query(self, hash_key, *args, **kwargs)
        finally:
            _local.partition = None

    def all_items(self: Any) -> Any:
        hint = getattr(_local, "partition", None)
        if hint is None or hint[0] is not self:
            return original_all_items(self)
        partition = self.items.get(hint[1])
        if partition is None:
            return []
        return list(partition.values()) if self.range_key_attr else [partition]

    Table.query = query  # type: ignore[method-assign]
    Table.all_items = all_items  # type: ignore[method-assign]


def no_partition_on_miss() -> None:
    from moto.dynamodb.models.table import Table

    original: Callable[..., Any] = Table.get_item

    def get_item(self: Any, hash_key: Any, range_key: Any = None, projection_expression: Any = None) -> Any:
        if range_key and self.has_range_key and hash_key not in self.items:
            return None
        return original(self, hash_key, range_key, projection_expression)

    Table.get_item = get_item  # type: ignore[method-assign]


# --- concurrency -------------------------------------------------------------------------------


def serialize_requests() -> None:
    from moto.dynamodb.responses import DynamoHandler

    original: Callable[..., Any] = DynamoHandler.call_action

    def call_action(self: Any) -> Any:
        with ENGINE_LOCK:
            return original(self)

    DynamoHandler.call_action = call_action  # type: ignore[method-assign]


@contextmanager
def engine_paused() -> Iterator[None]:
    """No DynamoDB request runs inside this block (a consistent snapshot)."""
    with ENGINE_LOCK:
        yield
