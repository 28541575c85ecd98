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
  A GSI query walks the table once without sorting it first (moto sorted every item of the
  table by its keys for each page, then sorted the matches again).
* **A ``get_item`` miss leaves an empty partition behind** (``items`` is a ``defaultdict``);
  :func:`no_partition_on_miss` answers a miss without creating one.
* **moto's DynamoDB is not thread-safe** (conditional writes are check-then-write in Python):
  :data:`ENGINE_LOCK` serialises its requests, as real DynamoDB applies each request
  atomically, whichever client sends it (the app, the scheduler, ``aws --endpoint-url``).

The rest is CPU per request (each webhook is two ``BatchGetItem`` and one
``TransactWriteItems``): :func:`plain_json_responses` writes data-plane answers with
``json.dumps`` instead of moto's generic serializer (a quarter of the run's CPU);
:func:`parse_each_expression_once` parses each distinct condition/update expression once;
:func:`size_items_once` checks the 400 KB item limit once per item instead of once per
attribute (n²); :func:`cache_action_lookup` stops ``inspect.getmembers`` on every request;
``update_item`` no longer deep-copies the old item for a stream record when the table has
no stream.

Memory per item: :func:`compact_items` keeps stored items' attributes as ``marshal`` bytes (moto's
``DynamoType`` objects took about six times the item's DynamoDB JSON) and stream records pickled until
they are read.

Items on disk: ``infra/moto_disk.py`` (installed first by :func:`apply`) backs each table's ``items`` with a
``sqlite3`` file and keeps a bounded working set of ``Item`` objects in memory, so the engine's memory stays
flat whatever the tables hold; the hooks here that walk items (the partition and index queries, the TTL
sweep, the rollback snapshot) use its walks, and :func:`end_of_request` writes it through at the end of each
request.

Outside DynamoDB: :func:`bound_sent_email_history` keeps moto's SES history of sent e-mails to the
newest 1,000 (it kept every message of a long run, about 4.5 KB each).

:func:`apply` installs all of them once per process (idempotent).
"""

from __future__ import annotations

import base64
import collections
import copy
import json
import marshal
import pickle
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from infra.moto_disk import _canonical_number

#: One DynamoDB request at a time across every thread (also taken by the local run's snapshot).
ENGINE_LOCK = threading.RLock()

_applied: set[str] = set()
_local = threading.local()


def apply() -> None:
    """Install every adjustment (safe to call more than once)."""
    for name, install in (
        ("disk", _disk_items),  # before "query": its all_items wraps the disk store's
        ("tracking", stop_instance_tracking),
        ("rollback", rollback_touched_items_only),
        ("transactions", fast_conditional_puts),
        ("overheads", trim_request_overheads),
        ("arn_lists", remember_resource_arn_lists),
        ("query", query_one_partition),
        ("get_item", no_partition_on_miss),
        ("index", index_follows_writes),
        ("lock", serialize_requests),
        ("responses", plain_json_responses),
        ("streams", plain_json_stream_records),
        ("expressions", parse_each_expression_once),
        ("traversal", fast_expression_traversal),
        ("simple_updates", fast_simple_updates),
        ("items", size_items_once),
        ("actions", cache_action_lookup),
        ("direct", direct_dynamodb_calls),
        ("compact", compact_items),
        ("ses_history", bound_sent_email_history),
    ):
        if name not in _applied:
            install()
            _applied.add(name)


def applied() -> frozenset[str]:
    return frozenset(_applied)


def _disk_items() -> None:
    from infra import moto_disk

    moto_disk.install()


def _disk(items: Any) -> bool:
    """``table.items`` is ``infra.moto_disk``'s store (items in its file, a bounded working set in memory)."""
    return getattr(items, "on_disk", False) is True


# --- SES's sent-mail history -------------------------------------------------------------------

#: Sent e-mails moto's SES keeps (its ``sent_messages``, for ``GetSendStatistics`` and moto's dashboard):
#: every message a process ever sent, about 4.5 KB each, one per rewarded order of a long local run. The
#: newest ones are kept; the local run's rendered notifications are at ``GET /dev/outbox``.
SENT_EMAIL_HISTORY = 1000


def bound_sent_email_history(limit: int = SENT_EMAIL_HISTORY) -> None:
    """moto's SES keeps every e-mail sent for the life of the process; keep the newest ``limit``."""
    from moto.ses.models import SESBackend

    if getattr(SESBackend.__init__, "_sarafan_bounded", False):
        return
    original = SESBackend.__init__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self.sent_messages = collections.deque(self.sent_messages, maxlen=limit)

    __init__._sarafan_bounded = True  # type: ignore[attr-defined]
    SESBackend.__init__ = __init__  # type: ignore[method-assign]  # before the process first uses SES


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
        from moto.dynamodb.models.dynamo_type import Item
        from moto.dynamodb.models.table import Table

        if getattr(_local, "in_transaction", False) and isinstance(value, Table):
            return value
        if isinstance(value, Item):
            if getattr(_local, "update_without_stream", False):
                return value  # update_item copies the old item only for a stream record; there is no stream
            return item_copy(value, memo)
        return copy.deepcopy(value, memo)


def item_copy(item: Any, memo: dict[int, Any] | None = None) -> Any:
    """A copy of a stored item that later changes to the original do not reach: with :func:`compact_items`,
    a new ``Item`` holding the original's attributes packed (its bytes when it is packed already: nothing
    to copy), unpacked when read; else (or for a value ``marshal`` cannot hold) ``copy.deepcopy``. For the
    rollback snapshot of a transaction and the old image of an update's stream record, where moto deep-copied
    every attribute (the largest part of a transaction's cost after the writes)."""
    if item is None or "compact" not in _applied:
        return copy.deepcopy(item, memo)
    state = item.__dict__
    blob = state.get("_packed")
    attrs = state.get("_attrs")
    if attrs is not None:
        try:
            blob = marshal.dumps({name: _pack_value(value) for name, value in attrs.items()})
        except (AttributeError, TypeError, ValueError):
            return copy.deepcopy(item, memo)
    if blob is None:
        return copy.deepcopy(item, memo)
    clone = object.__new__(type(item))
    clone.__dict__.update(state)
    clone.__dict__["_attrs"], clone.__dict__["_packed"] = None, blob
    return clone


_Snapshot = tuple[dict[tuple[str, Any, Any], Any], dict[str, int]]


def _transaction_keys(backend: Any,
                      transact_items: list[dict[str, Any]]) -> Iterator[tuple[tuple[str, Any, Any], str]]:
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
            yield (table.name, hash_value, range_value), op_type


def _snapshot(backend: Any, transact_items: list[dict[str, Any]]) -> _Snapshot:
    items: dict[tuple[str, Any, Any], Any] = {}
    streams: dict[str, int] = {}
    updated = {key for key, op_type in _transaction_keys(backend, transact_items) if op_type == "Update"}
    for key, _ in _transaction_keys(backend, transact_items):
        if key in items:
            continue
        table_name, hash_value, range_value = key
        table = backend.tables[table_name]
        if range_value is not None and _disk(table.items):
            current = table.items[hash_value].get(range_value)  # (no walk of the partition for its truth value)
        else:
            partition = table.items.get(hash_value)
            current = partition if range_value is None else (partition or {}).get(range_value)
        # update_item changes the item in place; put and delete replace or drop the object.
        items[key] = item_copy(current) if key in updated else current
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
    for table_name, hash_value, range_value in items:
        table = backend.tables.get(table_name)
        if table is not None:
            _reindex(table, hash_value, range_value)
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

    original_update: Callable[..., Any] = backend_class.update_item

    def update_item(self: Any, table_name: str, *args: Any, **kwargs: Any) -> Any:
        table = self.tables.get(table_name)
        _local.update_without_stream = table is not None and table.stream_shard is None
        try:
            return original_update(self, table_name, *args, **kwargs)
        finally:
            _local.update_without_stream = False
            if table is not None and getattr(table, "_sarafan_index", None):
                key = args[0] if args else kwargs.get("key")
                if isinstance(key, dict) and table.hash_key_attr in key:
                    from moto.dynamodb.models.dynamo_type import DynamoType

                    range_attr = table.range_key_attr
                    _reindex(table, DynamoType(key[table.hash_key_attr]),
                             DynamoType(key[range_attr]) if range_attr and range_attr in key else None)

    backend_class.update_item = update_item  # type: ignore[method-assign]


# --- a transaction's conditional puts ---------------------------------------------------------

#: ``[False]``: every transaction through moto's own loop again (the engine tests compare both).
FAST_TRANSACTIONS = [True]
#: ``hook(table, item)`` after each put :func:`_plain_put` writes without ``Table.put_item`` (whose wrappers
#: it skips): ``infra/local_state.py``'s change tracking registers here too.
PUT_HOOKS: list[Callable[[Any, Any], None]] = []
#: Attribute and map member names moto's item validation treats specially (``N``, ``S``, ``NULL`` keys):
#: an item holding one anywhere takes moto's own put.
_TYPE_NAMES = frozenset({"N", "S", "NULL"})


def _plain_put_value(raw: Any, numbers: list[str] | None) -> tuple[tuple[str, Any], int] | None:
    """A string, number, boolean, list or map of them in :func:`compact_items`' packed form (``(type, value)``,
    nested values likewise: what ``_pack_value`` makes of ``DynamoType(raw)``) and its size (as
    :func:`sized_dynamo_type` sizes it); ``None`` for anything else (binary, sets, NULL, a member named like a
    type, anything malformed). The numbers moto's ``_validate_item_types`` checks (outside lists: it does not
    look into them) are added to ``numbers`` in its order."""
    if type(raw) is not dict or len(raw) != 1:
        return None
    for kind, value in raw.items():
        if kind == "S":
            if type(value) is not str:
                return None
            if value.isascii():
                return (kind, value), len(value)
            try:
                return (kind, value), len(value.encode("utf-8"))
            except UnicodeEncodeError:
                return None  # a lone surrogate: moto's own put, so its errors come in moto's order
        if kind == "N":
            if type(value) is not str:
                return None
            if numbers is not None:
                numbers.append(value)
            return (kind, value), len(value)
        if kind == "BOOL":
            if type(value) is not bool:
                return None
            return (kind, value), 1
        if kind == "M":
            if type(value) is not dict:
                return None
            members, size = {}, 0
            for name, member in value.items():
                if type(name) is not str or name in _TYPE_NAMES:
                    return None
                built = _plain_put_value(member, numbers)
                if built is None:
                    return None
                members[name] = built[0]
                size += (len(name) if name.isascii() else len(name.encode("utf-8"))) + built[1]
            return (kind, members), size
        if kind == "L":
            if type(value) is not list:
                return None
            items, size = [], 0
            for member in value:
                built = _plain_put_value(member, None)
                if built is None:
                    return None
                items.append(built[0])
                size += built[1]
            return (kind, items), size
    return None


def _raw_value_key(raw: Any) -> Any:
    """:func:`_value_key` of ``DynamoType(raw)``, read from the request's value."""
    if type(raw) is dict and len(raw) == 1:
        for kind, value in raw.items():
            return _typed_key(kind, value)
    return None


def _typed_key(kind: str, value: Any) -> Any:
    """``(type, value)`` as the attribute indexes hold it: a number canonical (``1``, ``1.0`` and ``1E0`` are
    one value to moto, which compares ``Decimal``s); None for a value no index holds."""
    if not isinstance(value, str | bytes):
        return None
    if kind == "N" and isinstance(value, str):
        return kind, _canonical_number(value)
    return kind, value


#: ``StreamShard.add`` as :func:`compact_items` installs it (over :func:`index_follows_writes`'): while it is
#: still the one in place, :func:`_plain_put` does what it does without the generic steps.
_STREAM_ADD: list[Any] = []


def _add_put_record(table: Any, current: Any, item: Any, attrs: dict[str, Any]) -> None:
    """The stream record of a plain put (``StreamShard.add(current, item)``), its new image ``attrs``."""
    shard = table.stream_shard
    if not _STREAM_ADD or type(shard).add is not _STREAM_ADD[0] or shard.table.lambda_event_source_mappings:
        _local.put_image = (item, attrs)
        try:
            shard.add(current, item)
        finally:
            _local.put_image = None
        return
    record_class = _module("moto.dynamodb.models.table").StreamRecord
    record = record_class.__new__(record_class)
    seq = len(shard.items) + shard.starting_sequence_number
    _local.put_image = (item, attrs)
    try:
        record.__init__(table, table.stream_specification["StreamViewType"], "INSERT" if current is None else "MODIFY",
                        current, item, seq)
    finally:
        _local.put_image = None
    state = record.__dict__
    if "record" in state:
        _keep_record_as_text(state)
    shard.items.append(record)
    if table.__dict__.get("_sarafan_index"):
        _reindex(table, item.hash_key, item.range_key, attrs)


def _plain_put(table: Any, attrs: Any, hash_value: Any, range_value: Any, current: Any) -> Any:
    """What ``Table.put_item`` does for a put whose condition already held for ``current`` (moto checks it
    again against the same item), when every value is plain (:func:`_plain_put_value`): the same checks in
    the same order (key types, numbers, key sizes, the 400 KB limit), the ``Item`` (kept packed, as
    :func:`compact_items` keeps stored items: no ``DynamoType`` is built), the write, the stream record
    (its new image the put's own attributes: the JSON moto makes of the ``Item``). Returns ``None``
    (nothing done) for an item moto's own put must handle."""
    from moto.dynamodb.exceptions import HashKeyTooLong, InvalidAttributeTypeError, ItemSizeTooLarge, RangeKeyTooLong
    from moto.dynamodb.limits import HASH_KEY_MAX_LENGTH, RANGE_KEY_MAX_LENGTH
    from moto.dynamodb.models.dynamo_type import DynamoType, Item, LimitedSizeDict

    if type(attrs) is not dict:
        return None
    numbers: list[str] = []
    packed: dict[str, Any] = {}
    sizes: dict[str, int] = {}
    total = 0
    for name, raw in attrs.items():
        if type(name) is not str or name in _TYPE_NAMES:
            return None
        built = _plain_put_value(raw, numbers)
        if built is None:
            return None
        packed[name] = built[0]
        sizes[name] = built[1]
        total += (len(name) if name.isascii() else len(name.encode("utf-8"))) + built[1]
    if hash_value.type != table.hash_key_type:
        raise InvalidAttributeTypeError(table.hash_key_attr, expected_type=table.hash_key_type,
                                        actual_type=hash_value.type)
    if range_value and range_value.type != table.range_key_type:
        raise InvalidAttributeTypeError(table.range_key_attr, expected_type=table.range_key_type,
                                        actual_type=range_value.type)
    for number in numbers:
        table._validate_number_type(number)
    for name in table.hash_key_names:
        if name in sizes and sizes[name] > HASH_KEY_MAX_LENGTH:
            raise HashKeyTooLong
    for name in table.range_key_names:
        if name in sizes and sizes[name] > RANGE_KEY_MAX_LENGTH:
            raise RangeKeyTooLong
    if total > 405000:  # Item.__init__'s limit (size_items_once)
        raise ItemSizeTooLarge
    item = object.__new__(Item)
    item.hash_key = DynamoType(hash_value)
    item.range_key = DynamoType(range_value) if range_value is not None else None
    if "compact" in _applied:
        item.__dict__["_attrs"], item.__dict__["_packed"] = None, marshal.dumps(packed)
    else:
        item_attrs = LimitedSizeDict()
        dict.update(item_attrs, {name: _unpack_value(value, DynamoType) for name, value in packed.items()})
        item.attrs = item_attrs
    if range_value:
        table.items[hash_value][range_value] = item
    else:
        table.items[hash_value] = item
    for hook in PUT_HOOKS:
        hook(table, item)
    if table.stream_shard is not None:
        _add_put_record(table, current, item, attrs)
    return item


def _fast_eligible(backend: Any, transact_items: Any) -> list[tuple[str, dict[str, Any], Any]] | None:
    """``(op type, op, table)`` per entry when every entry is one ``Put`` or ``Update`` on an existing table
    (the transactions :func:`fast_conditional_puts` writes itself); ``None`` for anything else."""
    if type(transact_items) is not list or len(transact_items) > 100:
        return None
    plan = []
    for entry in transact_items:
        if type(entry) is not dict or len(entry) != 1:
            return None
        for op_type, op in entry.items():
            if op_type not in ("Put", "Update") or type(op) is not dict:
                return None
            try:
                table = backend.get_table(op["TableName"])
            except Exception:
                return None
            plan.append((op_type, op, table))
    return plan


_CONDITION_NAMES: dict[tuple[Any, ...], list[str]] = {}
_UPDATE_NAMES: dict[str, list[str]] = {}


def _names_in_condition(condition: Any, names: Any, values: Any) -> list[str]:
    """The names moto's ``ConditionExpressionParser`` reports found (its ``parse`` raises what it raises);
    remembered for a condition without values (an import's ``attribute_not_exists (#0)``)."""
    from moto.dynamodb.comparisons import create_condition_expression_parser

    key = None
    if not values and type(names) is dict and all(type(k) is str and type(v) is str for k, v in names.items()):
        key = (condition, type(values).__name__, *names.items())
        found = _CONDITION_NAMES.get(key)
        if found is not None:
            return found
    parser = create_condition_expression_parser(condition, names, values)
    parser.parse()
    found = list(parser.expr_attr_names_found)
    if key is not None:
        if len(_CONDITION_NAMES) >= _EXPRESSION_CACHE_SIZE:
            _CONDITION_NAMES.clear()
        _CONDITION_NAMES[key] = found
    return found


def _names_in_update(expression: str) -> list[str]:
    """The name placeholders of an update expression, as ``DynamoHandler.transact_write_items`` lists them."""
    found = _UPDATE_NAMES.get(expression)
    if found is None:
        from moto.dynamodb.parsing.ast_nodes import ExpressionAttributeName  # type: ignore[attr-defined]
        from moto.dynamodb.parsing.expressions import UpdateExpressionParser  # type: ignore[attr-defined]

        tree = UpdateExpressionParser.make(expression)
        found = [attr.get_attribute_name_placeholder() for attr in tree.find_clauses([ExpressionAttributeName])]
        if len(_UPDATE_NAMES) >= _EXPRESSION_CACHE_SIZE:
            _UPDATE_NAMES.clear()
        _UPDATE_NAMES[expression] = found
    return found


def _key_names(table: Any) -> tuple[str, ...]:
    """The names ``validate_put_has_empty_keys`` checks: the table's and its indexes' keys."""
    return (*table.attribute_keys, *(n for index in table.global_indexes for n in index.schema_key_attrs))


def _no_empty_keys(attrs: Any, table: Any, names: tuple[str, ...] | None = None) -> bool:
    """True when ``validate_put_has_empty_keys(attrs, table)`` passes: no key of the table or of an index is an
    empty string or binary (False also when it would fail some other way: a value that is not a dict...);
    ``names``: :func:`_key_names` of the table, if known."""
    if type(attrs) is not dict:
        return False
    for value in attrs.values():
        if type(value) is not dict or not value:
            return False
    for name in names if names is not None else _key_names(table):
        value = attrs.get(name)
        if value is not None:
            for kind, raw in value.items():
                if kind in ("S", "B") and raw == "":
                    return False
                break
    return True


def _passes_moto_checks(backend: Any, transact_items: Any) -> bool:
    """True when ``DynamoHandler.transact_write_items``' checks (before it calls the backend) pass for a
    transaction of puts and updates: each condition parses, no ``ExpressionAttributeValues`` is empty, no key
    is empty, every name given is used. False (moto's handler then checks, and refuses, itself) otherwise."""
    if type(transact_items) is not list:
        return False
    key_names: dict[int, tuple[Any, tuple[str, ...]]] = {}  # per table, once per transaction
    for entry in transact_items:
        if type(entry) is not dict or len(entry) != 1:
            return False
        for kind, op in entry.items():
            if kind not in ("Put", "Update") or type(op) is not dict:
                return False
            names = op.get("ExpressionAttributeNames", {})
            values = op.get("ExpressionAttributeValues", {})
            if op.get("ExpressionAttributeValues") == {}:
                return False
            used = list(_names_in_condition(op.get("ConditionExpression"), names, values))
            table = backend.get_table(op["TableName"])
            known = key_names.get(id(table))
            if known is None or known[0] is not table:
                known = key_names[id(table)] = (table, _key_names(table))
            if not _no_empty_keys(op["Item"] if kind == "Put" else op["Key"], table, known[1]):
                return False
            if kind == "Update":
                used += _names_in_update(op["UpdateExpression"])
            if any(name not in used for name in names or []):
                return False
    return True


def fast_conditional_puts() -> None:
    """A transaction of puts and updates written without moto's generic loop's repeated work.

    moto's ``transact_write_items`` (under :func:`rollback_touched_items_only`) walks the transaction's keys
    twice for the rollback snapshot, looks each item up twice, and for a put checks its condition twice,
    walks its attributes three times (type validation, key sizes, the ``Item`` build) and once more for its
    stream record's new image. Here each operation is checked in moto's order with moto's own exceptions
    (the same cancellation reasons, the same ``ValidationException`` for an invalid or oversized item, the
    same ``MultipleTransactionsException``), the snapshot is taken as each key is first touched, a put of
    plain values (:func:`_plain_put`) is validated and built in one walk and its stream record's image is
    its own attributes; updates go through moto's ``update_item`` as before. Anything else (a
    ``ConditionCheck`` or ``Delete``, an unknown table, a malformed entry, a put holding binary values,
    sets or NULLs) takes moto's own path. ``tests/functional/test_moto_engine.py`` compares the two."""
    import moto.dynamodb.models as models
    from moto.dynamodb.exceptions import (
        ConditionalCheckFailed,
        MockValidationException,
        MultipleTransactionsException,
        TransactionCanceledException,
    )
    from moto.dynamodb.models.dynamo_type import DynamoType

    backend_class = models.DynamoDBBackend
    original: Callable[..., Any] = backend_class.transact_write_items
    get_filter_expression = models.get_filter_expression  # type: ignore[attr-defined]

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> Any:
        plan = _fast_eligible(self, transact_items) if FAST_TRANSACTIONS[0] else None
        if plan is None:
            return original(self, transact_items)
        snapshot: dict[tuple[str, Any, Any], Any] = {}
        streams: dict[str, int] = {}
        target_items: set[tuple[str, str]] = set()
        errors: list[tuple[Any, Any, Any]] = []
        try:
            for op_type, op, table in plan:
                original_item = None
                try:
                    table_name = op["TableName"]
                    condition_expression = op.get("ConditionExpression")
                    names = op.get("ExpressionAttributeNames")
                    values = op.get("ExpressionAttributeValues")
                    if op_type == "Put":
                        attrs = op["Item"]
                        key = {table.hash_key_attr: attrs[table.hash_key_attr]}
                        if table.range_key_attr is not None:
                            key[table.range_key_attr] = attrs[table.range_key_attr]
                    else:
                        key = op["Key"]
                    unique = (str(table_name), str(dict(sorted(key.items()))))
                    if unique in target_items:
                        raise MultipleTransactionsException()
                    target_items.add(unique)
                    # backend.get_item: get_keys_value's check and keys, then the table's get_item
                    if table.hash_key_attr not in key or (table.has_range_key and table.range_key_attr not in key):
                        raise MockValidationException("Validation Exception")
                    hash_value = DynamoType(key[table.hash_key_attr])
                    range_value = DynamoType(key[table.range_key_attr]) if table.range_key_attr else None
                    current = table.get_item(hash_value, range_value)
                    if condition_expression is not None:
                        condition_op = get_filter_expression(condition_expression, names, values)
                        if not condition_op.expr(current):
                            if op.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD" and current:
                                original_item = current.to_json()["Attributes"]
                            raise ConditionalCheckFailed(item=original_item)
                    snapshot_key = (table.name, hash_value, range_value)
                    if snapshot_key not in snapshot:
                        # update_item changes the item in place; a put replaces the object.
                        snapshot[snapshot_key] = current if op_type == "Put" else item_copy(current)
                    if table.stream_shard is not None:
                        streams.setdefault(table.name, len(table.stream_shard.items))
                    if op_type == "Put":
                        if _plain_put(table, attrs, hash_value, range_value, current) is None:
                            self.put_item(table_name, attrs, condition_expression=condition_expression,
                                          expression_attribute_names=names, expression_attribute_values=values)
                    else:
                        self.update_item(table_name, key, update_expression=op["UpdateExpression"],
                                         condition_expression=condition_expression,
                                         expression_attribute_names=names, expression_attribute_values=values)
                    errors.append((None, None, None))
                except (MultipleTransactionsException, MockValidationException):
                    raise
                except ConditionalCheckFailed as e:
                    errors.append(("ConditionalCheckFailed", str(e.message), original_item))
                except Exception as e:  # moto's loop records any other error as its reason
                    errors.append((type(e).__name__, str(e), original_item))
            if any(code is not None for code, _, _ in errors):
                raise TransactionCanceledException(errors)
        except BaseException:
            _restore(self, (snapshot, streams))
            raise

    transact_write_items.__wrapped__ = original  # type: ignore[attr-defined]
    backend_class.transact_write_items = transact_write_items  # type: ignore[method-assign]

    from moto.core.responses import ActionResult
    from moto.dynamodb.responses import DynamoHandler

    handler_original: Callable[..., Any] = DynamoHandler.transact_write_items

    def handler_transact_write_items(self: Any) -> Any:
        try:
            transact_items = self.body["TransactItems"]
            checked = FAST_TRANSACTIONS[0] and _passes_moto_checks(self.dynamodb_backend, transact_items)
        except Exception:
            checked = False
        if not checked:
            return handler_original(self)
        self.dynamodb_backend.transact_write_items(transact_items)
        return ActionResult({"ConsumedCapacity": [], "ItemCollectionMetrics": {}})

    handler_transact_write_items.__wrapped__ = handler_original  # type: ignore[attr-defined]
    DynamoHandler.transact_write_items = handler_transact_write_items  # type: ignore[method-assign]



class _RememberedSubstitutions:
    """Stands in for the ``re`` module inside moto's DynamoDB backend module, whose ``update_item`` rewrites
    every update expression with ``re.sub``: the app sends a handful of distinct expressions, so each
    rewrite is remembered (the same text ``re.sub`` returns); everything else is the real module."""

    def __init__(self) -> None:
        self.subs: dict[tuple[str, str, str], str] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(re, name)

    def sub(self, pattern: Any, repl: Any, string: Any, count: int = 0, flags: int = 0) -> Any:
        if type(pattern) is not str or type(repl) is not str or type(string) is not str or count or flags:
            return re.sub(pattern, repl, string, count=count, flags=flags)
        key = (pattern, repl, string)
        text = self.subs.get(key)
        if text is None:
            if len(self.subs) >= _EXPRESSION_CACHE_SIZE:
                self.subs.clear()
            text = self.subs[key] = re.sub(pattern, repl, string)
        return text


def trim_request_overheads() -> None:
    """Two steps of every moto request that scan text for nothing.

    ``BaseResponse._enrich_response`` runs ``re.sub`` with a look-behind for ``<RequestId>`` over every
    response body (for the stream poller's ``GetRecords``, every record's text): a body without that text
    cannot match, so only the request id header is set for it (the rest is moto's own function). And
    ``update_item``'s rewrite of its expression is remembered (:class:`_RememberedSubstitutions`)."""
    import moto.core.responses as responses
    import moto.dynamodb.models as models

    original: Callable[..., Any] = responses.BaseResponse._enrich_response

    def _enrich_response(headers: dict[str, str], body: Any) -> tuple[dict[str, str], Any]:
        if not isinstance(body, str) or "<RequestId>" in body:
            return original(headers, body)  # type: ignore[no-any-return]
        if "status" in headers:
            headers["status"] = str(headers["status"])
        responses.gen_amzn_requestid_long(headers)
        return headers, body

    _enrich_response.__wrapped__ = original  # type: ignore[attr-defined]
    responses.BaseResponse._enrich_response = staticmethod(_enrich_response)  # type: ignore[method-assign, assignment]
    models.re = _RememberedSubstitutions()  # type: ignore[attr-defined, assignment]


#: The one ``operationContextParams`` path :func:`remember_resource_arn_lists` remembers: which tables a
#: transaction names, for botocore's endpoint rules (``ResourceArnList``).
_TRANSACT_TABLES_PATH = "TransactItems[*].[ConditionCheck.TableName, Put.TableName, Delete.TableName, Update.TableName][]"
_ARN_LISTS: dict[tuple[Any, ...], Any] = {}


def _transact_tables_key(call_args: Any) -> tuple[Any, ...] | None:
    """Everything the path reads of a call's parameters (each entry's four operations' ``TableName``), or
    ``None`` when an entry is not the plain shape (a non-dict, a name that is not a string)."""
    entries = call_args.get("TransactItems") if isinstance(call_args, dict) else None
    if type(entries) is not list:
        return None
    key: list[Any] = []
    for entry in entries:
        if type(entry) is not dict:
            return None
        for kind in ("ConditionCheck", "Put", "Delete", "Update"):
            op = entry.get(kind)
            if op is None:
                key.append(None)
            elif type(op) is dict and (op.get("TableName") is None or type(op.get("TableName")) is str):
                key.append(("op", op.get("TableName")))
            else:
                return None
    return tuple(key)


def remember_resource_arn_lists() -> None:
    """botocore resolves a ``TransactWriteItems`` call's endpoint parameters with a JMESPath search over
    every entry of the transaction (the ``ResourceArnList`` of DynamoDB's account-based endpoints): a tenth
    of the member import's CPU in the process that sends it. The search reads only each entry's four
    ``TableName`` members, so its result is remembered by those (the same list JMESPath returns)."""
    from botocore.regions import EndpointRulesetResolver

    original: Callable[..., Any] = EndpointRulesetResolver._resolve_param_as_operation_context_param
    if getattr(original, "_sarafan_remembered", False):
        return

    def resolve(self: Any, param_name: str, operation_model: Any, call_args: Any) -> Any:
        params = operation_model.operation_context_parameters
        if param_name not in params or params[param_name]["path"] != _TRANSACT_TABLES_PATH:
            return original(self, param_name, operation_model, call_args)
        key = _transact_tables_key(call_args)
        if key is None:
            return original(self, param_name, operation_model, call_args)
        found = _ARN_LISTS.get(key)
        if found is None:
            if len(_ARN_LISTS) >= _EXPRESSION_CACHE_SIZE:
                _ARN_LISTS.clear()
            found = _ARN_LISTS[key] = original(self, param_name, operation_model, call_args)
        return list(found) if isinstance(found, list) else found

    resolve._sarafan_remembered = True  # type: ignore[attr-defined]
    resolve.__wrapped__ = original  # type: ignore[attr-defined]
    EndpointRulesetResolver._resolve_param_as_operation_context_param = resolve  # type: ignore[method-assign]

# --- reads -------------------------------------------------------------------------------------


def query_one_partition() -> None:
    from moto.dynamodb.models.table import Table

    original_query: Callable[..., Any] = Table.query
    original_all_items: Callable[..., Any] = Table.all_items

    def query(self: Any, hash_key: Any, *args: Any, **kwargs: Any) -> Any:
        index_name = args[6] if len(args) > 6 else kwargs.get("index_name")
        if index_name:
            # moto sorts the matches by the index's keys and then the table's (a total order), so the
            # table-wide sort it starts with is wasted; only items holding the index's hash key values
            # can match.
            conditions = kwargs.get("hash_key_conditions") or []
            _local.index_query = (self, [(name, value) for name, value in conditions])
            try:
                return original_query(self, hash_key, *args, **kwargs)
            finally:
                _local.index_query = None
        if hash_key is None:
            return original_query(self, hash_key, *args, **kwargs)
        _local.partition = (self, hash_key)
        try:
            return original_query(self, hash_key, *args, **kwargs)
        finally:
            _local.partition = None

    def all_items(self: Any) -> Any:
        indexed = getattr(_local, "index_query", None)
        if indexed is not None and indexed[0] is self:
            _local.index_query = None  # once: the query's own walk
            conditions = indexed[1]
            candidates: Any = _index_candidates(self, conditions[0]) if conditions else None
            if candidates is None:
                candidates = (item for partition in self.items.values()
                              for item in (partition.values() if self.range_key_attr else (partition,)))
            out = []
            for item in candidates:
                attrs = item.attrs
                if all(name in attrs and attrs[name] == value for name, value in conditions):
                    out.append(item)
            return out
        hint = getattr(_local, "partition", None)
        if hint is None or hint[0] is not self:
            return original_all_items(self)
        if _disk(self.items) and self.range_key_attr:
            return self.items[hint[1]].values()
        partition = self.items.get(hint[1])
        if partition is None:
            return []
        return list(partition.values()) if self.range_key_attr else [partition]

    query.__wrapped__ = original_query  # type: ignore[attr-defined]
    all_items.__wrapped__ = original_all_items  # type: ignore[attr-defined]
    Table.query = query  # type: ignore[method-assign]
    Table.all_items = all_items  # type: ignore[method-assign]


def _value_key(value: Any) -> Any:
    return _typed_key(value.type, getattr(value, "value", None))


def _index_candidates(table: Any, condition: tuple[str, Any]) -> list[Any] | None:
    """Items whose ``name`` attribute may equal ``value`` (a superset, checked by the caller), from
    the table's attribute index, built on the first query of that attribute; ``None`` (walk the table)
    for a table without a stream (the index follows writes through their stream records) or an
    unindexable value."""
    name, value = condition
    wanted = _value_key(value)
    if wanted is not None and _disk(table.items):
        return table.items.index_candidates(name, wanted)  # type: ignore[no-any-return]  # kept in its file
    if table.stream_shard is None or wanted is None:
        return None
    index = table.__dict__.setdefault("_sarafan_index", {})
    entry = index.get(name)
    if entry is None:
        by_value: dict[Any, set[tuple[Any, Any]]] = {}
        of_key: dict[tuple[Any, Any], Any] = {}
        for partition in table.items.values():
            for item in (partition.values() if table.range_key_attr else (partition,)):
                found = item.attrs.get(name)
                vk = _value_key(found) if found is not None else None
                if vk is not None:
                    key = (item.hash_key, item.range_key if table.range_key_attr else None)
                    by_value.setdefault(vk, set()).add(key)
                    of_key[key] = vk
        entry = index[name] = (by_value, of_key)
    out = []
    for hash_value, range_value in entry[0].get(wanted, ()):
        partition = table.items.get(hash_value)
        item = partition if range_value is None else (partition or {}).get(range_value)
        if item is not None:
            out.append(item)
    return out


def _reindex(table: Any, hash_value: Any, range_value: Any, raw: dict[str, Any] | None = None) -> None:
    """Bring the table's attribute index up to date for one item key (after any write to it); ``raw``: the
    item's attributes as the put that just wrote it sent them (read instead of unpacking the item)."""
    index = table.__dict__.get("_sarafan_index")
    if not index:
        return  # (a disk store's index follows its writes in the file)
    key = (hash_value, range_value if table.range_key_attr else None)
    if raw is None:
        partition = table.items.get(hash_value)
        item = partition if not table.range_key_attr else (partition or {}).get(range_value)
    for name, (by_value, of_key) in index.items():
        old = of_key.pop(key, None)
        if old is not None:
            bucket = by_value.get(old)
            if bucket is not None:
                bucket.discard(key)
                if not bucket:
                    del by_value[old]
        if raw is not None:
            vk = _raw_value_key(raw.get(name))
        else:
            found = item.attrs.get(name) if item is not None else None
            vk = _value_key(found) if found is not None else None
        if vk is not None:
            by_value.setdefault(vk, set()).add(key)
            of_key[key] = vk


def index_follows_writes() -> None:
    """Every write of a streamed table ends in its stream record: keep the attribute index there."""
    from moto.dynamodb.models.table import StreamShard

    original: Callable[..., Any] = StreamShard.add

    def add(self: Any, old: Any, new: Any) -> None:
        original(self, old, new)
        item = new if new is not None else old
        if item is not None and self.table.__dict__.get("_sarafan_index"):
            _reindex(self.table, item.hash_key, item.range_key)

    add.__wrapped__ = original  # type: ignore[attr-defined]
    StreamShard.add = add  # type: ignore[method-assign]


def no_partition_on_miss() -> None:
    from moto.dynamodb.models.table import Table

    original: Callable[..., Any] = Table.get_item

    def get_item(self: Any, hash_key: Any, range_key: Any = None, projection_expression: Any = None) -> Any:
        if range_key and self.has_range_key and not _disk(self.items) and hash_key not in self.items:
            return None
        return original(self, hash_key, range_key, projection_expression)

    Table.get_item = get_item  # type: ignore[method-assign]


# --- expressions and items ------------------------------------------------------------------------

_EXPRESSION_CACHE_SIZE = 1024


def parse_each_expression_once() -> None:
    """Parse each distinct condition / update expression once, not on every request.

    The app sends a handful of expression shapes (``attribute_not_exists (#0)``,
    ``SET #0 = :0 ADD #1 :1``...). A condition's syntax tree depends on the expression, its
    names and its values, and is never changed after parsing (evaluation only reads it), so
    it is reused along with the names/values the parser reports as found; an update
    expression's tree is changed by moto's validator, so each use gets a fresh copy.
    """
    import pickle

    from moto.dynamodb.comparisons import ConditionExpressionParser
    from moto.dynamodb.parsing.expressions import UpdateExpressionParser  # type: ignore[attr-defined]

    conditions: dict[tuple[Any, str, str], tuple[Any, list[str], list[str]]] = {}
    original_parse: Callable[..., Any] = ConditionExpressionParser.parse

    def parse(self: Any) -> Any:
        # repr() of names and values (str, bytes, bool, None, lists and dicts of them) tells any two apart;
        # the same dict built in another key order is only a miss.
        key = (self.condition_expression, repr(self.expression_attribute_names),
               repr(self.expression_attribute_values))
        hit = conditions.get(key)
        if hit is None:
            op = original_parse(self)
            if len(conditions) >= _EXPRESSION_CACHE_SIZE:
                conditions.clear()
            conditions[key] = hit = (op, list(self.expr_attr_names_found), list(self.expr_attr_values_found))
        op, self.expr_attr_names_found, self.expr_attr_values_found = hit[0], list(hit[1]), list(hit[2])
        return op

    ConditionExpressionParser.parse = parse  # type: ignore[method-assign]

    trees: dict[str, Any] = {}
    original_make: Callable[..., Any] = UpdateExpressionParser.make

    def make(cls: Any, expression_str: str) -> Any:
        tree = trees.get(expression_str)
        if tree is None:
            tree = original_make(expression_str)
            if len(trees) >= _EXPRESSION_CACHE_SIZE:
                trees.clear()
            trees[expression_str] = tree
        return tree

    UpdateExpressionParser.make = classmethod(make)  # type: ignore[method-assign, assignment]

    # The one place that changes a tree works on a copy (``Validator.__init__`` deep-copies
    # the expression); a pickle round trip copies moto's syntax nodes about 7x faster.
    import moto.dynamodb.parsing.validators as validators
    from moto.dynamodb.parsing.ast_nodes import Node  # type: ignore[attr-defined]

    def copy_tree(value: Any, memo: Any = None) -> Any:
        if isinstance(value, Node):
            try:
                return pickle.loads(pickle.dumps(value, pickle.HIGHEST_PROTOCOL))
            except (pickle.PicklingError, TypeError, AttributeError):
                pass
        return copy.deepcopy(value, memo)

    validators.deepcopy = copy_tree  # type: ignore[attr-defined, assignment]


def fast_expression_traversal() -> None:
    """Walk update-expression trees without re-deriving the same facts at every node.

    moto's ``Validator`` runs ten ``DepthFirstTraverser`` passes over each update expression; at
    every node a pass rebuilt its processing map (``_processing_map()``: a dict of bound methods)
    and checked ``isinstance`` against abstract classes (``ABCMeta.__instancecheck__``), which made
    validation about a quarter of the local run's CPU (py-spy, ``bench/local_run.py``). The same
    walk here: the map built once per pass, "is a node" and "which processor" looked up once per
    node type, the same visit order, the same hooks (``pre_processing_of_child``), the same
    replacement of processed nodes in their parent. ``Node.find_clauses`` likewise checks node
    types through a per-type table. Same results (``tests/functional/test_moto_engine.py``).
    """
    from moto.dynamodb.parsing import ast_nodes
    from moto.dynamodb.parsing.ast_nodes import DepthFirstTraverser, Node  # type: ignore[attr-defined]

    base_pre = DepthFirstTraverser.pre_processing_of_child
    original_traverse = DepthFirstTraverser.traverse_node_recursively
    original_find = Node.find_clauses
    is_node: dict[type, bool] = {}
    chosen: dict[tuple[type, type], int] = {}

    def traverse_node_recursively(self: Any, node: Any, child_id: int = -1) -> Any:
        state = self.__dict__.get("_sarafan_map")
        if state is None:
            mapping = list(self._processing_map().items())
            state = self.__dict__["_sarafan_map"] = (
                mapping, type(self).pre_processing_of_child is not base_pre, type(self))
        mapping, has_pre, processor_type = state

        def visit(node: Any, child_id: int) -> Any:
            node_type = type(node)
            known = is_node.get(node_type)
            if known is None:
                known = is_node[node_type] = issubclass(node_type, Node)
            if not known:
                return node
            parent_node = node.parent
            children = node.children
            if children is not None:
                for i, child_node in enumerate(children):
                    if has_pre:
                        self.pre_processing_of_child(node, i)
                    visit(child_node, i)
            index = chosen.get((processor_type, node_type))
            if index is None:
                index = next((i for i, (cls, _) in enumerate(mapping) if issubclass(node_type, cls)), -1)
                chosen[(processor_type, node_type)] = index
            if index >= 0:
                node = mapping[index][1](node)
                node.parent = parent_node
                if parent_node:
                    parent_node.children[child_id] = node
            return node

        return visit(node, child_id)

    traverse_node_recursively.__wrapped__ = original_traverse  # type: ignore[attr-defined]
    DepthFirstTraverser.traverse_node_recursively = traverse_node_recursively  # type: ignore[method-assign]

    nested: dict[type, bool] = {}
    nesting = (ast_nodes.Expression, ast_nodes.UpdateExpressionFunction)  # type: ignore[attr-defined]

    def find_clauses(self: Any, clause_types: Any) -> list[Any]:
        clauses: list[Any] = []
        for child in self.children or []:
            child_type = type(child)
            if child_type in clause_types:
                clauses.append(child)
                continue
            deeper = nested.get(child_type)
            if deeper is None:
                deeper = nested[child_type] = issubclass(child_type, nesting)
            if deeper:
                clauses.extend(child.find_clauses(clause_types))
        return clauses

    find_clauses.__wrapped__ = original_find  # type: ignore[attr-defined]
    Node.find_clauses = find_clauses  # type: ignore[method-assign]


class _SimpleUpdate:
    """A validated update of top-level attributes only: what :func:`fast_simple_updates` executes."""

    def __init__(self, actions: list[tuple[str, str, Any]]) -> None:
        self.actions = actions  # (SET|ADD|REMOVE, attribute name, DynamoType or None)

    def normalize(self) -> None:
        """The actions touch distinct attributes: their order does not matter."""


def _simple_plan(tree: Any) -> list[tuple[str, str, str | None]] | None:
    """``[(action, path token, value token)]`` when the expression only sets top-level attributes to
    values (``SET a = :v``), adds a value to one (``ADD a :n``) or removes one (``REMOVE a``), each
    clause at most once; ``None`` for anything else (moto's own code handles it)."""
    from moto.dynamodb.parsing import ast_nodes as n

    plan: list[tuple[str, str, str | None]] = []
    clauses = {n.UpdateExpressionSetClause: "SET", n.UpdateExpressionAddClause: "ADD",  # type: ignore[attr-defined]
               n.UpdateExpressionRemoveClause: "REMOVE"}  # type: ignore[attr-defined]
    actions = {"SET": n.UpdateExpressionSetAction, "ADD": n.UpdateExpressionAddAction,  # type: ignore[attr-defined]
               "REMOVE": n.UpdateExpressionRemoveAction}  # type: ignore[attr-defined]
    seen: set[str] = set()

    def path_token(node: Any) -> str | None:
        if type(node) is not n.UpdateExpressionPath or len(node.children) != 1:  # type: ignore[attr-defined]
            return None
        leaf = node.children[0]
        if type(leaf) in (n.ExpressionAttributeName, n.ExpressionAttribute) and len(leaf.children) == 1:  # type: ignore[attr-defined]
            token = leaf.children[0]
            return token if isinstance(token, str) else None
        return None

    def value_token(node: Any) -> str | None:
        if type(node) is n.ExpressionAttributeValue and len(node.children) == 1:  # type: ignore[attr-defined]
            token = node.children[0]
            return token if isinstance(token, str) else None
        return None

    def walk_actions(node: Any, kind: str) -> bool:
        """``Set/Add/RemoveActions`` nest as (action, actions?)."""
        for child in node.children or []:
            if type(child) is actions[kind]:
                path = path_token(child.children[0]) if child.children else None
                if path is None:
                    return False
                value: str | None = None
                if kind == "SET":
                    if len(child.children) != 2 or type(child.children[1]) is not n.UpdateExpressionValue:  # type: ignore[attr-defined]
                        return False
                    inner = child.children[1].children
                    value = value_token(inner[0]) if inner and len(inner) == 1 else None
                elif kind == "ADD":
                    value = value_token(child.children[1]) if len(child.children) == 2 else None
                elif len(child.children) != 1:
                    return False
                if kind != "REMOVE" and value is None:
                    return False
                plan.append((kind, path, value))
            elif type(child).__name__ == f"UpdateExpression{kind.title()}Actions":
                if not walk_actions(child, kind):
                    return False
            else:
                return False
        return True

    def walk(node: Any) -> bool:
        if type(node) is not n.UpdateExpression:  # type: ignore[attr-defined]
            return False
        for child in node.children or []:
            if type(child) is n.UpdateExpression:  # type: ignore[attr-defined]
                if not walk(child):
                    return False
                continue
            kind = clauses.get(type(child))
            if kind is None or kind in seen or len(child.children) != 1:
                return False
            seen.add(kind)
            if not walk_actions(child, kind):
                return False
        return True

    return plan if walk(tree) and plan else None


def _simple_update(plan: list[tuple[str, str, str | None]], names: dict[str, str] | None,
                   values: dict[str, Any] | None, item: Any, table: Any) -> _SimpleUpdate | None:
    """The plan resolved for one request, or ``None`` where moto's validators would have something to
    say (a missing name or value, overlapping paths, a key attribute, an index key's empty string or
    type, an ADD that is not a number onto a number): then moto's own code runs and answers."""
    from moto.dynamodb.models.dynamo_type import DynamoType

    names, values = names or {}, values or {}
    resolved: list[tuple[str, str, Any]] = []
    touched: set[str] = set()
    index_keys: list[str] | None = None  # ``table.attribute_keys``, a property building its list on each read
    for kind, token, value_token in plan:
        if token.startswith("#"):
            if token not in names:
                return None
            name = names[token]
        else:
            name = token
        if name in touched or name in table.table_key_attrs:
            return None
        touched.add(name)
        value = None
        if value_token is not None:
            raw = values.get(value_token)
            if not isinstance(raw, dict) or len(raw) != 1:
                return None
            value = DynamoType(raw)
        if kind == "SET":
            if index_keys is None:
                index_keys = table.attribute_keys
            if token in index_keys or any(d.get("AttributeName") == token for d in table.attr):
                return None  # moto's empty-string and type checks for index keys (by the expression's token)
        elif kind == "ADD":
            current = item.attrs.get(name) if item is not None else None
            if value is None or value.type != "N" or (current is not None and current.type != "N"):
                return None
        resolved.append((kind, name, value))
    return _SimpleUpdate(resolved)


def fast_simple_updates() -> None:
    """Validate and execute the app's everyday update expressions without moto's ten tree passes.

    Most updates the app sends are ``SET #a = :a, #b = :b``, ``ADD #n :n`` and ``REMOVE #r`` on
    top-level attributes (counters, statuses, balances). For those, :class:`UpdateExpressionValidator`
    here resolves names and values directly and the executor assigns, adds (moto's own number
    arithmetic, ``DynamoType.__add__``) or removes, through the item's ``attrs`` (so the 400 KB
    check and its error stay). Anything else, or anything moto's validators would refuse, takes
    moto's own path, which then gives its own answer; ``tests/functional/test_moto_engine.py`` runs
    a table of valid and refused updates through both and compares.
    """
    from moto.dynamodb.parsing.executors import UpdateExpressionExecutor
    from moto.dynamodb.parsing.validators import UpdateExpressionValidator

    plans: dict[int, tuple[Any, list[tuple[str, str, str | None]] | None]] = {}
    original_init: Callable[..., Any] = UpdateExpressionValidator.__init__
    original_validate: Callable[..., Any] = UpdateExpressionValidator.validate
    original_execute: Callable[..., Any] = UpdateExpressionExecutor.execute

    def __init__(self: Any, expression: Any, expression_attribute_names: Any, expression_attribute_values: Any,
                 item: Any, table: Any) -> None:
        cached = plans.get(id(expression))
        if cached is None or cached[0] is not expression:
            if len(plans) >= _EXPRESSION_CACHE_SIZE:
                plans.clear()
            cached = plans[id(expression)] = (expression, _simple_plan(expression))
        plan = cached[1]
        self._sarafan_simple = None if plan is None else _simple_update(
            plan, expression_attribute_names, expression_attribute_values, item, table)
        if self._sarafan_simple is None:
            original_init(self, expression, expression_attribute_names, expression_attribute_values, item, table)

    def validate(self: Any) -> Any:
        simple = getattr(self, "_sarafan_simple", None)
        return simple if simple is not None else original_validate(self)

    def execute(self: Any, node: Any = None) -> None:
        update = self.update_ast if node is None else node
        if not isinstance(update, _SimpleUpdate):
            original_execute(self, node)
            return
        attrs = self.item.attrs
        for kind, name, value in update.actions:
            if kind == "SET":
                attrs[name] = value
            elif kind == "ADD":
                current = attrs.get(name)
                if current is None:
                    current = type(value)({"N": "0"})
                attrs[name] = current + value
            else:
                attrs.pop(name, None)

    for name, patched, original in (("__init__", __init__, original_init), ("validate", validate, original_validate)):
        patched.__wrapped__ = original  # type: ignore[union-attr]
        setattr(UpdateExpressionValidator, name, patched)
    execute.__wrapped__ = original_execute  # type: ignore[attr-defined]
    UpdateExpressionExecutor.execute = execute  # type: ignore[method-assign]


def cache_action_lookup() -> None:
    """moto lists a handler class's methods (``inspect.getmembers``) on every request; once is enough."""
    import functools

    import moto.core.responses as responses

    responses.method_names_from_class = functools.lru_cache(maxsize=None)(responses.method_names_from_class)  # type: ignore[attr-defined]


def size_items_once() -> None:
    """Check an item's 400 KB limit once when it is built, not once per attribute.

    ``LimitedSizeDict.__setitem__`` sums the size of every attribute already present, so
    building an item of n attributes cost n² size computations. The limit and the error
    (``ItemSizeTooLarge``) stay; later ``__setitem__`` calls (updates) keep moto's check.
    """
    from moto.dynamodb.exceptions import ItemSizeTooLarge
    from moto.dynamodb.models.dynamo_type import Item, LimitedSizeDict
    from moto.dynamodb.models.utilities import bytesize

    def __init__(self: Any, hash_key: Any, range_key: Any, attrs: dict[str, Any]) -> None:
        self.hash_key = hash_key
        self.range_key = range_key
        converted = {}
        total = 0
        for key, value in attrs.items():
            converted[key], size = sized_dynamo_type(value)
            total += bytesize(key) + size
        if total > 405000:
            raise ItemSizeTooLarge
        self.attrs = LimitedSizeDict()
        dict.update(self.attrs, converted)

    __init__.__wrapped__ = Item.__init__  # type: ignore[attr-defined]
    Item.__init__ = __init__  # type: ignore[method-assign]


_DYNAMO_TYPE: Any = None  # moto's ``DynamoType`` (imported once: an import statement per value cost more than the walk)


def _dynamo_type() -> Any:
    global _DYNAMO_TYPE
    from moto.dynamodb.models.dynamo_type import DynamoType

    _DYNAMO_TYPE = DynamoType
    return DynamoType


def sized_dynamo_type(raw: Any) -> tuple[Any, int]:
    """``DynamoType(raw)`` and its ``size()`` in one walk (the item build's two walks of every value).

    Strings, numbers, booleans, lists and maps are built here as moto builds them (the same ``type`` and
    ``value``, nested values as ``DynamoType``) and sized as ``DynamoType.size`` sizes them; any other
    value (binary, sets, NULL, anything unexpected) takes moto's own constructor and ``size``.
    ``tests/functional/test_moto_engine.py`` compares both on every kind of value."""
    DynamoType = _DYNAMO_TYPE or _dynamo_type()
    if type(raw) is dict and len(raw) == 1:
        for kind, value in raw.items():
            if kind == "S" and type(value) is str:
                size = len(value) if value.isascii() else len(value.encode("utf-8"))
            elif kind == "N" and type(value) is str:
                size = len(value)
            elif kind == "BOOL" and type(value) is bool:
                size = 1
            elif kind == "L" and type(value) is list:
                items, size = [], 0
                for member in value:
                    built, member_size = sized_dynamo_type(member)
                    items.append(built)
                    size += member_size
                value = items
            elif kind == "M" and type(value) is dict:
                members, size = {}, 0
                for name, member in value.items():
                    built, member_size = sized_dynamo_type(member)
                    members[name] = built
                    size += (len(name) if name.isascii() else len(name.encode("utf-8"))) + member_size
                value = members
            else:
                break
            result = object.__new__(DynamoType)
            result.type = kind
            result.value = value
            return result, size
    result = DynamoType(raw)
    return result, result.size()


# --- responses ---------------------------------------------------------------------------------

#: Data-plane actions whose successful result is already DynamoDB's JSON shape.
PLAIN_JSON_ACTIONS = frozenset({
    "GetItem", "BatchGetItem", "Query", "Scan", "PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem",
    "TransactWriteItems", "TransactGetItems",
})
JSON_CONTENT_TYPE = "application/x-amz-json-1.0"


def _plain(value: Any) -> Any:
    """JSON-ready: bytes as base64 (as DynamoDB sends ``B``), no ``None`` members, datetimes as epoch
    seconds with millisecond precision (what moto's serializer writes)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, datetime):
        return int(value.timestamp() * 1000) / 1000
    return value


_OUTPUT_MEMBERS: dict[str, frozenset[str]] = {}


def _output_members(action: str, service: str = "dynamodb") -> frozenset[str]:
    members = _OUTPUT_MEMBERS.get(f"{service}:{action}")
    if members is None:
        from moto.core.responses import get_service_model

        shape = get_service_model(service).operation_model(action).output_shape
        members = _OUTPUT_MEMBERS[f"{service}:{action}"] = frozenset(shape.members if shape is not None else ())
    return members


def _special(value: Any) -> Any:
    """What :func:`_plain` makes of the two non-JSON types, for ``json.dumps(default=...)``."""
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, datetime):
        return int(value.timestamp() * 1000) / 1000
    raise TypeError(type(value).__name__)


#: ``json.dumps(value, separators=(",", ":"), default=_special)``'s encoder, built once, without the cycle check
#: (a DynamoDB value is a tree: it never contains itself). The same text, in about half the time.
_COMPACT_JSON = json.JSONEncoder(separators=(",", ":"), default=_special, check_circular=False)


def plain_json_body(action: str, result: dict[str, Any], service: str = "dynamodb") -> str:
    """The response body moto's serializer would produce (top-level members of the output shape only).

    ``json.dumps`` converts blobs and datetimes through ``default`` in its C encoder, without walking the
    whole answer in Python first; an answer holding a ``None`` anywhere (``null`` in the text: moto's
    serializer leaves such members out) is written the careful way, :func:`_plain` first."""
    members = _output_members(action, service)
    top = {k: v for k, v in result.items() if k in members and v is not None}
    try:
        text = _COMPACT_JSON.encode(top)
    except (TypeError, ValueError):
        text = "null"
    if "null" in text:
        return json.dumps(_plain(top), separators=(",", ":"))
    return text


def plain_json_responses() -> None:
    """Serialise successful data-plane results with ``json.dumps`` instead of moto's generic serializer.

    moto 5.2 walks every response through the botocore service model (name aliasing, shape
    checks); for DynamoDB's JSON protocol the result dict already is the wire shape, and that
    walk was a quarter of the local run's CPU. Errors and control-plane calls keep moto's path;
    ``tests/functional/test_moto_engine.py`` compares both paths' output.
    """
    from moto.dynamodb.responses import DynamoHandler

    original: Callable[..., Any] = DynamoHandler.serialized

    def serialized(self: Any, action_result: Any) -> Any:
        result, action = action_result.result, self._get_action()
        if isinstance(result, dict) and action in PLAIN_JSON_ACTIONS:
            headers = {"Content-Type": JSON_CONTENT_TYPE}
            headers.update(self.response_headers)
            return 200, headers, plain_json_body(action, result)
        return original(self, action_result)

    serialized.__wrapped__ = original  # type: ignore[attr-defined]
    DynamoHandler.serialized = serialized  # type: ignore[method-assign]


#: Shard iterators a stream backend keeps (moto keeps every one it ever issued: the local run's
#: poller asks for five a second, so the dict grew without bound). Real iterators expire after 15 min.
MAX_SHARD_ITERATORS = 32


#: Records every live iterator has read past are dropped in steps of this many (moto kept every
#: record of the table's stream: the images of every write, for the life of the run).
TRIM_STEP = 500


#: ``hold(shard) -> first sequence number still needed, or None``: the local run's consumer positions
#: (``infra/local_stream.install_holds``), so records read but not yet finished are not trimmed.
STREAM_HOLDS: list[Callable[[Any], int | None]] = []


def _trim_read_records(backend: Any, shard: Any) -> None:
    """Drop the stream records behind every iterator still usable (moto forgets iterators beyond
    :data:`MAX_SHARD_ITERATORS`, so an older one cannot read again), as DynamoDB trims a stream after
    24 hours. Sequence numbers stay what they were (the shard's start moves with the cut)."""
    positions = [it.sequence_number for it in backend.shard_iterators.values()
                 if it.stream_shard is shard and isinstance(it.sequence_number, int)]
    if not positions:
        return
    for hold in STREAM_HOLDS:  # a consumer's unfinished batches stay, however far its iterators read
        held = hold(shard)
        if held is not None:
            positions.append(held)
    with ENGINE_LOCK:  # no transaction is between its snapshot of the shard's length and its restore
        cut = min(positions) - shard.starting_sequence_number
        if cut >= TRIM_STEP:
            cut = min(cut, len(shard.items))
            del shard.items[:cut]
            shard.starting_sequence_number += cut


def _keep_record_as_text(state: dict[str, Any]) -> None:
    """A stream record kept as the JSON text ``GetRecords`` answers with (:func:`plain_json_body`'s text for
    it; the creation time also kept as the ``datetime`` moto built), so reading it costs no decoding and no
    encoding in moto: :func:`stream_records_as_text` puts the texts into the answer as they are."""
    record = state["record"]
    text = _COMPACT_JSON.encode(record)
    if "null" in text:  # a None member somewhere: the careful way, as plain_json_body writes it
        text = json.dumps(_plain(record), separators=(",", ":"))
    state.pop("record")
    state["_text"] = text
    state["_created"] = record.get("dynamodb", {}).get("ApproximateCreationDateTime")
    state["_seq"] = int(record.get("dynamodb", {}).get("SequenceNumber", 0))


def _module(name: str) -> Any:
    """An imported module (``sys.modules``; imported on first use): cheaper than an import statement in a
    function called per record, and attribute reads on it still see a test's monkeypatching."""
    module = sys.modules.get(name)
    if module is None:
        import importlib

        module = importlib.import_module(name)
    return module


def record_as_text(self: Any, table: Any, stream_type: str, event_name: str, old: Any, new: Any, seq: int) -> None:
    """``StreamRecord.__init__`` writing the record's JSON once (:func:`_keep_record_as_text`'s text).

    moto builds the record's dict, dumps its ``dynamodb`` part only to measure ``SizeBytes``, and the record
    was then encoded again for ``GetRecords``: two encodings of every item's image per write. Here the
    ``dynamodb`` part is encoded once (``SizeBytes``: the length of that compact text, moto's measure of the
    same part without the blanks), and the record's text is put together around it. The record's fields are
    moto's; a ``None`` anywhere (never in a DynamoDB image) takes moto's own way."""
    utcnow = _module("moto.core.utils").utcnow  # (an import statement per record cost ~1 µs each)
    mock_random = _module("moto.moto_api._internal").mock_random

    record_of = old if old is not None else new
    keys = {table.hash_key_attr: record_of.hash_key.to_json()}
    if table.range_key_attr is not None:
        keys[table.range_key_attr] = record_of.range_key.to_json()
    created = utcnow()
    data: dict[str, Any] = {"StreamViewType": stream_type, "ApproximateCreationDateTime": created,
                            "SequenceNumber": str(seq), "SizeBytes": 1, "Keys": keys}
    if stream_type in ("NEW_IMAGE", "NEW_AND_OLD_IMAGES") and new is not None:
        image = getattr(_local, "put_image", None)
        # A plain put's attributes are the JSON moto makes of its Item (_plain_put): no walk of the Item.
        data["NewImage"] = image[1] if image is not None and image[0] is new else new.to_json()["Attributes"]
    if stream_type in ("OLD_IMAGE", "NEW_AND_OLD_IMAGES") and old is not None:
        data["OldImage"] = old.to_json()["Attributes"]
    event_id = mock_random.uuid4().hex
    inner = _COMPACT_JSON.encode(data)
    if "null" in inner:
        record_as_text.__wrapped__(self, table, stream_type, event_name, old, new, seq)  # type: ignore[attr-defined]
        return
    size = len(inner)
    inner = inner.replace('"SizeBytes":1,', f'"SizeBytes":{size},', 1)
    state = self.__dict__
    # json.dumps of the record's head (an id of hex digits, an event name of capitals), written out
    head = (f'{{"eventID":"{event_id}","eventName":"{event_name}"' if event_id.isalnum() and event_name.isalpha()
            else json.dumps({"eventID": event_id, "eventName": event_name}, separators=(",", ":"))[:-1])
    state["_text"] = head + ',"eventSource":"aws:dynamodb","eventVersion":"1.0","awsRegion":"us-east-1","dynamodb":' \
        + inner + "}"
    state["_created"], state["_seq"] = created, seq


def _record_from_text(state: dict[str, Any]) -> dict[str, Any]:
    """The record as moto built it (for moto's own readers), from :func:`_keep_record_as_text`'s text."""
    record: dict[str, Any] = _decode_blobs(json.loads(state["_text"]))
    data = record.get("dynamodb")
    if isinstance(data, dict) and "ApproximateCreationDateTime" in data:
        data["ApproximateCreationDateTime"] = state["_created"]
    return record


#: ``[False]``: ``GetRecords`` decodes every record for moto's serializer again (:func:`stream_records_as_text`).
RECORDS_AS_TEXT = [True]


class _RecordTexts(list[str]):
    """``GetRecords``' records as their JSON texts (:func:`_keep_record_as_text`), for :func:`plain_json_body`;
    :attr:`created`: their creation times as moto built them."""

    created: list[Any]


def _records_text(result: dict[str, Any]) -> str:
    """The ``GetRecords`` answer's JSON with the records' texts put in as they are."""
    records = result["Records"]
    head = {k: v for k, v in result.items() if k != "Records" and k in _output_members("GetRecords", "dynamodbstreams")
            and v is not None}
    inner = json.dumps(head, separators=(",", ":"))[1:-1]
    return "{" + inner + ("," if inner else "") + '"Records":[' + ",".join(records) + "]}"


def _records_of(result: dict[str, Any]) -> dict[str, Any]:
    """``result`` with its records as dicts again (what moto's own serializer takes)."""
    records = result.get("Records")
    if not isinstance(records, _RecordTexts):
        return result
    decoded = []
    for text, created in zip(records, records.created, strict=True):
        record = _decode_blobs(json.loads(text))
        record["dynamodb"]["ApproximateCreationDateTime"] = created
        decoded.append(record)
    return {**result, "Records": decoded}


def stream_records_as_text(shard_iterator_class: Any) -> None:
    """``ShardIterator.get`` (moto's ``GetRecords``) hands the kept texts on without decoding a record (moto
    unpickled each record's dict for its serializer to walk again); the next iterator is what moto makes."""
    original: Callable[..., Any] = shard_iterator_class.get

    def get(self: Any, limit: int = 1000) -> dict[str, Any]:
        shard = self.stream_shard
        start = self.sequence_number - shard.starting_sequence_number
        records = shard.items[start:start + limit] if start >= 0 else []
        if start < 0 or not RECORDS_AS_TEXT[0] or any("_text" not in r.__dict__ for r in records):
            return original(self, limit)  # type: ignore[no-any-return]
        if records:
            after = shard_iterator_class(self.streams_backend, shard, "AFTER_SEQUENCE_NUMBER",
                                         max(r.__dict__["_seq"] for r in records))
        else:
            after = shard_iterator_class(self.streams_backend, shard, "AT_SEQUENCE_NUMBER", self.sequence_number)
        self.streams_backend.shard_iterators[after.arn] = after
        texts = _RecordTexts(r.__dict__["_text"] for r in records)
        texts.created = [r.__dict__["_created"] for r in records]
        return {"NextShardIterator": after.arn, "Records": texts}

    get.__wrapped__ = original  # type: ignore[attr-defined]
    shard_iterator_class.get = get


def plain_json_stream_records() -> None:
    """``GetRecords`` of DynamoDB Streams through ``json.dumps`` too, and a bounded iterator registry.

    The local run polls the table's stream every 0.2 s (``infra/local_stream.py``); moto's generic
    serializer walking every record's images was about a fifth of the run's CPU under load
    (py-spy, ``bench/local_run.py``). ``tests/functional/test_moto_engine.py`` compares the output
    with moto's own serializer.
    """
    from moto.dynamodbstreams.models import DynamoDBStreamsBackend, ShardIterator
    from moto.dynamodbstreams.responses import DynamoDBStreamsHandler

    original: Callable[..., Any] = DynamoDBStreamsHandler.serialized

    def serialized(self: Any, action_result: Any) -> Any:
        result, action = action_result.result, self._get_action()
        if isinstance(result, dict) and action == "GetRecords":
            headers = {"Content-Type": JSON_CONTENT_TYPE}
            headers.update(self.response_headers)
            if isinstance(result.get("Records"), _RecordTexts):
                return 200, headers, _records_text(result)
            return 200, headers, plain_json_body(action, result, "dynamodbstreams")
        return original(self, action_result)

    serialized.__wrapped__ = original  # type: ignore[attr-defined]
    DynamoDBStreamsHandler.serialized = serialized  # type: ignore[method-assign]

    get_records: Callable[..., Any] = DynamoDBStreamsBackend.get_records

    def bounded_get_records(self: Any, iterator_arn: str, limit: int) -> Any:
        iterator = self.shard_iterators.get(iterator_arn)
        result = get_records(self, iterator_arn, limit)
        while len(self.shard_iterators) > MAX_SHARD_ITERATORS:  # oldest first (insertion order)
            del self.shard_iterators[next(iter(self.shard_iterators))]
        shard = getattr(iterator, "stream_shard", None)
        if shard is not None:
            _trim_read_records(self, shard)
        return result

    DynamoDBStreamsBackend.get_records = bounded_get_records  # type: ignore[method-assign]
    stream_records_as_text(ShardIterator)


# --- concurrency -------------------------------------------------------------------------------


def serialize_requests() -> None:
    """Every DynamoDB request, and every DynamoDB Streams read, under :data:`ENGINE_LOCK`: a ``GetRecords`` can
    then never see the stream records of a transaction that is being cancelled (its rollback removes them)."""
    from moto.dynamodb.responses import DynamoHandler
    from moto.dynamodbstreams.responses import DynamoDBStreamsHandler

    original: Callable[..., Any] = DynamoHandler.call_action

    def call_action(self: Any) -> Any:
        with ENGINE_LOCK:
            try:
                return original(self)
            finally:
                end_of_request()

    DynamoHandler.call_action = call_action  # type: ignore[method-assign]
    streams_original: Callable[..., Any] = DynamoDBStreamsHandler.call_action

    def streams_call_action(self: Any) -> Any:
        with ENGINE_LOCK:
            return streams_original(self)

    DynamoDBStreamsHandler.call_action = streams_call_action  # type: ignore[method-assign]


@contextmanager
def engine_paused() -> Iterator[None]:
    """No DynamoDB request runs inside this block (a consistent snapshot)."""
    with ENGINE_LOCK:
        yield


# --- the in-process hop ----------------------------------------------------------------------------


def _decode_blobs(value: Any) -> Any:
    """DynamoDB JSON as botocore's parser returns it: ``B`` and ``BS`` values as bytes (in place)."""
    if isinstance(value, dict):
        if len(value) == 1:
            if isinstance(value.get("B"), str):
                value["B"] = base64.b64decode(value["B"])
                return value
            blobs = value.get("BS")
            if isinstance(blobs, list) and all(isinstance(b, str) for b in blobs):
                value["BS"] = [base64.b64decode(b) for b in blobs]
                return value
        for member in value.values():
            if isinstance(member, dict | list):
                _decode_blobs(member)
    elif isinstance(value, list):
        for member in value:
            if isinstance(member, dict | list):
                _decode_blobs(member)
    return value


_BLOB_MEMBER = re.compile(rb'"BS?"\s*:')


def parse_plain_success(headers: dict[str, str], body: bytes) -> dict[str, Any]:
    """What botocore's JSON parser makes of a successful data-plane answer of :func:`plain_json_body`
    (``tests/functional/test_moto_engine.py`` compares the two)."""
    parsed: dict[str, Any] = json.loads(body) if body else {}
    if body and _BLOB_MEMBER.search(body):  # only an answer holding a binary value needs the walk
        _decode_blobs(parsed)
    lowered = {k.lower(): v for k, v in headers.items()}
    metadata: dict[str, Any] = {}
    if "x-amzn-requestid" in lowered:
        metadata["RequestId"] = lowered["x-amzn-requestid"]
    metadata.update({"HTTPStatusCode": 200, "HTTPHeaders": lowered, "RetryAttempts": 0})
    parsed["ResponseMetadata"] = metadata
    return parsed


#: ``[False]`` sends every call the usual way again (the engine test compares both).
DIRECT_CALLS = [True]

#: ``[False]``: the direct calls go through botocore's serializer again (:func:`_skip_serializer`).
SKIP_SERIALIZER = [True]

#: DynamoDB Streams calls the local run's stream poller makes (``infra/local_stream.py``).
STREAM_ACTIONS = frozenset({"DescribeStream", "GetShardIterator", "GetRecords", "ListStreams"})


def lean_request(request_class: Any, url: str, headers: dict[str, str], body: bytes) -> Any:
    """``moto.core.request.Request.from_primitives("POST", url, headers, body)`` for a JSON-protocol call,
    with the WSGI environ written out instead of werkzeug's ``EnvironBuilder`` (a sixth of the cost;
    ``tests/functional/test_moto_engine.py`` compares the two requests)."""
    import io
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host, _, port = parts.netloc.partition(":")
    path = parts.path or "/"
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "POST", "SCRIPT_NAME": "", "PATH_INFO": path, "QUERY_STRING": parts.query,
        "RAW_URI": path + (f"?{parts.query}" if parts.query else ""), "SERVER_NAME": host,
        "SERVER_PORT": port or ("443" if parts.scheme == "https" else "80"), "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": parts.netloc, "wsgi.version": (1, 0), "wsgi.url_scheme": parts.scheme, "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr, "wsgi.multithread": False, "wsgi.multiprocess": False, "wsgi.run_once": False,
        "CONTENT_LENGTH": str(len(body)),
    }
    environ["REQUEST_URI"] = environ["RAW_URI"]
    for name, value in headers.items():
        key = name.upper().replace("-", "_")
        if key == "TRANSFER_ENCODING":
            continue
        environ[key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else f"HTTP_{key}"] = value
    environ["moto.preserved_header_names"] = {}  # S3 metadata headers only
    return request_class(environ)


class _DirectBody(bytes):
    """The body of a DynamoDB data-plane request that takes the in-process hop: ``{}`` on the wire (it never
    goes there), the parameters ``marshal``-ed in :attr:`packed` (each attempt gets its own copy)."""

    packed: bytes

    @property
    def params(self) -> dict[str, Any]:
        return marshal.loads(self.packed)  # type: ignore[no-any-return]


def _skip_serializer(active: Callable[[], bool]) -> None:
    """For a DynamoDB data-plane call that :func:`direct_dynamodb_calls` hands to moto, skip botocore's
    serializer: it walks every attribute of every item through the service model (with PynamoDB's client,
    which turns parameter validation off, it checks nothing) only for moto to parse the text back into the
    same dict. The request keeps its method, URL and headers (the serializer runs on no parameters); its
    body carries the parameters ``marshal``-ed (plain data; moto gets its own copy of every container, so it
    keeps no reference to the caller's lists and dicts, and a retried attempt starts from the same values). Parameters ``marshal`` cannot copy take the usual path."""
    from botocore.serialize import JSONSerializer

    original: Callable[..., Any] = JSONSerializer.serialize_to_request

    def serialize_to_request(self: Any, parameters: Any, operation_model: Any) -> Any:
        if (operation_model.name in PLAIN_JSON_ACTIONS and active()
                and operation_model.service_model.service_name == "dynamodb"):
            try:
                packed = marshal.dumps(parameters)
            except (TypeError, ValueError):
                return original(self, parameters, operation_model)
            serialized = original(self, {}, operation_model)
            body = _DirectBody(serialized["body"])
            body.packed = packed
            serialized["body"] = body
            return serialized
        return original(self, parameters, operation_model)

    serialize_to_request.__wrapped__ = original  # type: ignore[attr-defined]
    JSONSerializer.serialize_to_request = serialize_to_request  # type: ignore[method-assign]

#: The in-process hop's moto call, ``(service, url, headers, body) -> (status, headers, body)``, once
#: :func:`direct_dynamodb_calls` is installed (the local run's consumer process reaches it over a socket).
DIRECT_DISPATCH: list[Callable[[str, str, dict[str, str], bytes], tuple[int, Any, Any]]] = []


def direct_request_parts(model: Any, params: dict[str, Any],
                         request_signer: Any = None) -> tuple[str, str, dict[str, str], bytes] | None:
    """``(service, url, headers, body)`` of a data-plane call the hop answers (``None``: the usual path)."""
    service = model.service_model.service_name
    actions = PLAIN_JSON_ACTIONS if service == "dynamodb" else STREAM_ACTIONS if service == "dynamodbstreams" else ()
    if model.name not in actions:
        return None
    url = params["url"]
    headers = {k: v.decode() if isinstance(v, bytes) else v for k, v in params["headers"].items()}
    credentials = getattr(request_signer, "_credentials", None)
    access_key = getattr(credentials, "access_key", None)
    if access_key:  # moto reads the caller's account from the access key in the signature
        region = getattr(request_signer, "_region_name", "us-east-1")
        headers["Authorization"] = (f"AWS4-HMAC-SHA256 Credential={access_key}/20000101/{region}/{service}/"
                                    "aws4_request, SignedHeaders=host, Signature=0")
    body = params["body"]
    return service, url, headers, body if isinstance(body, bytes) else body.encode()


_json_parser: list[Any] = []


def parse_direct_answer(model: Any, url: str, status: int, headers: Any, body: Any) -> tuple[Any, dict[str, Any]]:
    """``(http response, parsed)`` as botocore's endpoint would return them for moto's answer to a hop call:
    a successful data-plane answer through ``json.loads``, anything else through botocore's own parser."""
    from botocore.awsrequest import AWSResponse
    from botocore.utils import parse_timestamp
    from moto.core.botocore_stubber import MockRawResponse

    service = model.service_model.service_name
    http = AWSResponse(url, status, headers, MockRawResponse(body))  # type: ignore[arg-type]
    if status == 200 and (service == "dynamodb" or model.name == "GetRecords"):
        parsed_ok = parse_plain_success(dict(http.headers), http.content)
        if service == "dynamodbstreams":  # the one timestamp member, as botocore's parser reads it
            for record in parsed_ok.get("Records", ()):
                data = record.get("dynamodb") or {}
                if "ApproximateCreationDateTime" in data:
                    data["ApproximateCreationDateTime"] = parse_timestamp(data["ApproximateCreationDateTime"])
        return http, parsed_ok
    if not _json_parser:
        from botocore.parsers import create_parser

        _json_parser.append(create_parser("json"))
    parser = _json_parser[0]
    response_dict = {"headers": http.headers, "status_code": status, "body": http.content}
    parsed = parser.parse(response_dict, model.output_shape)
    code = parsed.get("Error", {}).get("Code")
    error_shape = model.service_model.shape_for_error_code(code) if code else None
    if error_shape is not None:
        parsed.update(parser.parse(response_dict, error_shape))
    parsed.setdefault("ResponseMetadata", {})["RetryAttempts"] = 0
    return http, parsed


def direct_dynamodb_calls() -> None:
    """Hand the app's DynamoDB data-plane calls to moto's handler without the HTTP-shaped detour.

    Under ``mock_aws`` a botocore call is serialised, signed, turned into an HTTP request, matched
    against every mocked service's URL patterns, turned into a werkzeug request for moto, answered,
    wrapped as an HTTP response and parsed back: about a third of the local run's CPU went to the
    trip, not to DynamoDB (py-spy, ``bench/local_engine.py``). A ``before-call`` handler (botocore's
    own short-circuit for a ready answer) now builds moto's request from the serialised request and
    calls the same ``DynamoHandler`` (same parsing, same checks, same locks and hooks), then parses a
    successful data-plane answer with ``json.loads`` (``B``/``BS`` back to bytes) and anything else
    with botocore's own parser, as the endpoint does. The stream poller's DynamoDB Streams calls
    (:data:`STREAM_ACTIONS`) take the same hop to ``DynamoDBStreamsHandler``: ``GetRecords`` answers
    parsed by botocore's model parser were a tenth of the local run's CPU (each record's images walked
    shape by shape); ``json.loads`` gives the same dict, its timestamps parsed by botocore's own
    timestamp parser. Only while moto's mock is active; every other service, and DynamoDB's control
    plane, keeps the usual path.
    """
    from botocore.handlers import BUILTIN_HANDLERS, REGISTER_LAST
    from moto.core.exceptions import HTTPException
    from moto.core.models import botocore_stubber
    from moto.core.request import Request
    from moto.dynamodb.responses import DynamoHandler
    from moto.dynamodbstreams.responses import DynamoDBStreamsHandler

    handlers: dict[str, tuple[Any, frozenset[str]]] = {
        "dynamodb": (DynamoHandler, PLAIN_JSON_ACTIONS),
        "dynamodbstreams": (DynamoDBStreamsHandler, STREAM_ACTIONS),
    }

    def dispatch(service: str, url: str, headers: dict[str, str], body: bytes) -> tuple[int, Any, Any]:
        """moto's answer (status, headers, body) to one serialised data-plane request."""
        handler_class = handlers[service][0]
        direct = body.params if isinstance(body, _DirectBody) else None
        request = lean_request(Request, url, headers, body)
        if service == "dynamodb":
            # What botocore's serializer would have written, parsed back by moto's own parser, is the same
            # dict (blobs as bytes): a copy of the parameters (:func:`_skip_serializer`) or the body parsed.
            _local.direct_params = direct if direct is not None else (
                _decode_blobs(json.loads(body)) if body else {})
        try:
            return handler_class.dispatch(request, request.raw_url, request.headers)  # type: ignore[no-any-return]
        except HTTPException as error:
            return int(error.code or 500), error.get_headers(), error.get_body()
        finally:
            _local.direct_params = None

    DIRECT_DISPATCH[:] = [dispatch]

    def before_call(model: Any, params: dict[str, Any], request_signer: Any = None, **_: Any) -> Any:
        if not DIRECT_CALLS[0] or not botocore_stubber.enabled:
            return None
        parts = direct_request_parts(model, params, request_signer)
        if parts is None:
            return None
        service, url, headers, body = parts
        return parse_direct_answer(model, url, *dispatch(service, url, headers, body))

    original_parse: Callable[..., Any] = DynamoHandler.parse_parameters

    def parse_parameters(self: Any, request: Any) -> None:
        direct = getattr(_local, "direct_params", None)
        if direct is None:
            original_parse(self, request)
        else:
            _local.direct_params = None  # once: a nested call parses its own
            self.params = direct

    parse_parameters.__wrapped__ = original_parse  # type: ignore[attr-defined]
    DynamoHandler.parse_parameters = parse_parameters  # type: ignore[method-assign]
    _skip_serializer(lambda: DIRECT_CALLS[0] and SKIP_SERIALIZER[0] and botocore_stubber.enabled)
    # Last, so hooks a test or a benchmark registers (call counters, injected failures) still run first.
    BUILTIN_HANDLERS.append(("before-call.dynamodb", before_call, REGISTER_LAST))
    BUILTIN_HANDLERS.append(("before-call.dynamodbstreams", before_call, REGISTER_LAST))


# --- compact items -----------------------------------------------------------------------------

#: Items whose attributes may be held unpacked at once (the most recently read or written; the rest are
#: packed again at the end of a DynamoDB request).
UNPACKED_ITEMS = 4096
_unpacked: collections.deque[Any] = collections.deque()


def _pack_value(value: Any) -> tuple[str, Any]:
    kind, raw = value.type, value.value
    if kind == "L":
        return kind, [_pack_value(member) for member in raw]
    if kind == "M":
        return kind, {name: _pack_value(member) for name, member in raw.items()}
    return kind, raw


def _unpack_value(packed: tuple[str, Any], dynamo_type: Any) -> Any:
    kind, raw = packed
    value = object.__new__(dynamo_type)
    if kind == "L":
        raw = [_unpack_value(member, dynamo_type) for member in raw]
    elif kind == "M":
        raw = {name: _unpack_value(member, dynamo_type) for name, member in raw.items()}
    value.type, value.value = kind, raw
    return value


def end_of_request() -> None:
    """Under :data:`ENGINE_LOCK`, once a DynamoDB request is answered: the disk store writes through and cuts its
    working set (``infra/moto_disk.py``), then the items unpacked longest ago are packed again."""
    if "disk" in _applied:
        from infra import moto_disk

        moto_disk.settle_all()
    pack_unpacked_items()


def pack_unpacked_items(limit: int | None = None) -> int:
    """Pack the attributes of the items unpacked longest ago, down to ``limit`` (:data:`UNPACKED_ITEMS`)
    unpacked items. Called at the end of every DynamoDB request, under :data:`ENGINE_LOCK`."""
    keep = UNPACKED_ITEMS if limit is None else limit
    packed = 0
    while len(_unpacked) > keep:
        item = _unpacked.popleft()
        state = item.__dict__
        attrs = state.get("_attrs")
        if attrs is None:
            continue
        try:
            blob = marshal.dumps({name: _pack_value(value) for name, value in attrs.items()})
        except (AttributeError, TypeError, ValueError):
            continue  # a value marshal cannot hold: the item stays as moto built it
        written = state.get("_sarafan_disk")  # the same bytes in the disk store's working set (infra/moto_disk.py)
        if written is not None:
            blob = written if written == blob else blob
            state["_sarafan_disk"] = None
        state["_packed"], state["_attrs"] = blob, None
        packed += 1
    return packed


def compact_items() -> None:
    """Keep each stored item's attributes packed (``marshal`` bytes), not as moto's Python objects.

    moto holds every attribute of every item as a ``DynamoType`` object in a dict (a nested map or list
    as more of them): about 3.8 KB of Python objects for an item of 0.64 KB of DynamoDB JSON, and the
    items are what a long local run keeps (``bench/local_run.py``). ``Item.attrs`` becomes a property:
    reading it unpacks the item (the same ``DynamoType`` values moto built), and the items unpacked
    longest ago beyond :data:`UNPACKED_ITEMS` are packed again at the end of each DynamoDB request (under
    :data:`ENGINE_LOCK`, so no request is holding them). Stream records likewise keep their dict pickled
    until ``GetRecords`` reads them. What moto answers does not change
    (``tests/functional/test_moto_engine.py``).
    """
    from moto.dynamodb.models.dynamo_type import DynamoType, Item, LimitedSizeDict
    from moto.dynamodb.models.table import StreamRecord, StreamShard

    class PackedAttrs:
        """``Item.attrs``: unpacked on first read, packed again later by :func:`pack_unpacked_items`."""

        def __get__(self, item: Any, owner: Any = None) -> Any:
            if item is None:
                return self
            state = item.__dict__
            attrs = state.get("_attrs")
            if attrs is None:
                blob = state.get("_packed")
                if blob is None:
                    raise AttributeError("attrs")
                attrs = LimitedSizeDict.__new__(LimitedSizeDict)
                for name, packed in marshal.loads(blob).items():
                    dict.__setitem__(attrs, name, _unpack_value(packed, DynamoType))
                state["_attrs"], state["_packed"] = attrs, None
                _unpacked.append(item)
            return attrs

        def __set__(self, item: Any, value: Any) -> None:
            state = item.__dict__
            known = state.get("_attrs") is not None
            state["_attrs"], state["_packed"] = value, None
            if not known:
                _unpacked.append(item)

    Item.attrs = PackedAttrs()  # type: ignore[assignment, attr-defined]

    def regular(value: Any) -> dict[str, Any]:
        """``DynamoType.to_regular_json`` without deep-copying the value first (it builds new containers)."""
        raw = value.value
        if isinstance(raw, dict):
            raw = {k: regular(v) if isinstance(v, DynamoType) else copy.deepcopy(v) for k, v in raw.items()}
        elif isinstance(raw, list):
            raw = [regular(v) if isinstance(v, DynamoType) else copy.deepcopy(v) for v in raw]
        if value.type == "B" and isinstance(raw, str):
            raw = base64.b64decode(raw)
        return {value.type: raw}

    original_to_json: Callable[..., Any] = Item.to_json

    def item_to_json(self: Any, root_attr_name: str = "Attributes") -> dict[str, Any]:
        attributes: dict[str, Any] = {}
        for name, attribute in self.attrs.items():
            raw = attribute.value
            if isinstance(raw, dict):
                attributes[name] = {attribute.type: {k: regular(v) for k, v in raw.items()}}
            elif isinstance(raw, list):
                attributes[name] = {attribute.type: [regular(v) if isinstance(v, DynamoType) else v for v in raw]}
            else:
                attributes[name] = {attribute.type: raw}
        return {root_attr_name: attributes}

    item_to_json.__wrapped__ = original_to_json  # type: ignore[attr-defined]
    Item.to_json = item_to_json  # type: ignore[method-assign]

    original_add: Callable[..., Any] = StreamShard.add

    def add(self: Any, old: Any, new: Any) -> None:
        count = len(self.items)
        original_add(self, old, new)
        for record in self.items[count:]:
            state = record.__dict__
            if "record" in state:
                _keep_record_as_text(state)

    def to_json(self: Any) -> dict[str, Any]:
        state = self.__dict__
        if "record" in state:
            return state["record"]  # type: ignore[no-any-return]
        if "_text" in state:
            return _record_from_text(state)
        return pickle.loads(state["_packed"])  # type: ignore[no-any-return]

    add.__wrapped__ = original_add  # type: ignore[attr-defined]
    StreamShard.add = add  # type: ignore[method-assign]
    _STREAM_ADD[:] = [add]
    StreamRecord.to_json = to_json  # type: ignore[method-assign]
    original_init: Callable[..., Any] = StreamRecord.__init__
    record_as_text.__wrapped__ = original_init  # type: ignore[attr-defined]
    StreamRecord.__init__ = record_as_text  # type: ignore[method-assign]


# --- TTL -----------------------------------------------------------------------------------------

#: Items one :func:`sweep_expired` step looks at while holding the engine lock (requests interleave between steps).
SWEEP_STEP = 500
_sweep_cursors: dict[int, Any] = {}
_sweep_turn = [0]  # which table a call starts with (in turn: a budget spent on one table does not starve the next)


def _expiry(item: Any, attribute: str) -> float | None:
    """The item's TTL (epoch seconds), read from its packed bytes without unpacking the item."""
    state = item.__dict__
    attrs = state.get("_attrs")
    kind: Any
    raw: Any
    if attrs is not None:
        value = attrs.get(attribute)
        kind, raw = (value.type, value.value) if value is not None else (None, None)
    else:
        blob = state.get("_packed")
        kind, raw = marshal.loads(blob).get(attribute, (None, None)) if blob is not None else (None, None)
    if kind != "N":
        return None
    try:
        return float(raw)
    except (TypeError, ValueError):
        return None


def sweep_expired(now: float | None = None, budget: int = 5 * SWEEP_STEP) -> int:
    """Delete items whose TTL attribute has passed, as DynamoDB's TTL does: from tables with TTL enabled, each
    deletion a ``REMOVE`` stream record (``userIdentity`` the DynamoDB service, as AWS marks it). moto never
    deletes them (it has no sweeper), so a long local run kept every expired rate counter and marker.

    Looks at up to ``budget`` items per call, going round each table's partitions (a call continues where
    the previous one stopped), so a pass over a big table is spread over calls, as DynamoDB deletes within
    days rather than at the second; returns how many items it deleted."""
    from moto.dynamodb.models import dynamodb_backends

    now = time.time() if now is None else now
    removed = looked = 0
    tables = [t for regions in list(dynamodb_backends.values()) for backend in list(regions.values())
              for t in list(backend.tables.values())
              if (t.ttl or {}).get("TimeToLiveStatus") == "ENABLED" and (t.ttl or {}).get("AttributeName")]
    turn = _sweep_turn[0] % len(tables) if tables else 0
    for position, table in enumerate(tables[turn:] + tables[:turn]):
        _sweep_turn[0] = turn + position + 1  # the next call starts after the table this one stops at
        attribute = table.ttl["AttributeName"]
        cursor = _sweep_cursors.get(id(table))
        if not cursor:
            if _disk(table.items):  # a disk store is walked in key order from a position, not from a list of keys
                cursor = _sweep_cursors[id(table)] = _DiskCursor(table.items)
            else:
                cursor = _sweep_cursors[id(table)] = list(table.items.keys())
        while cursor and looked < budget:
            with ENGINE_LOCK:
                step = 0
                while cursor and step < SWEEP_STEP:
                    hash_key = cursor.pop()
                    if hash_key is None:
                        break
                    partition = table.items.get(hash_key)
                    if partition is None:
                        continue
                    ranged = table.range_key_attr is not None
                    members = list(partition.items()) if ranged else [(None, partition)]
                    step += len(members)
                    for range_key, item in members:
                        expires = _expiry(item, attribute)
                        if expires is None or expires > now:
                            continue
                        table.delete_item(hash_key, range_key)
                        removed += 1
                        _mark_ttl_removal(table)
                    if ranged and not table.items.get(hash_key):
                        table.items.pop(hash_key, None)
                looked += step
                end_of_request()
        if looked >= budget:
            break
    for key in [k for k in _sweep_cursors if k not in {id(t) for t in tables}]:
        del _sweep_cursors[key]
    return removed


class _DiskCursor:
    """:func:`sweep_expired`'s position in a disk store's partitions (``infra/moto_disk.py``): the last hash key
    handed out, the next ones read from the file a chunk at a time (no list of every key in memory). False
    once the walk reached the end."""

    def __init__(self, items: Any) -> None:
        self.items, self.after, self.done = items, None, False
        self.chunk: list[Any] = []

    def __bool__(self) -> bool:
        if not self.chunk and not self.done:
            self.chunk = self.items.partition_keys_after(self.after, SWEEP_STEP)
            self.chunk.reverse()
            self.done = not self.chunk
        return bool(self.chunk)

    def pop(self) -> Any:
        if not self:
            return None
        self.after = self.chunk.pop()
        return self.after


def _mark_ttl_removal(table: Any) -> None:
    """The REMOVE record just added for a TTL deletion names the service as AWS's do."""
    shard = table.stream_shard
    if shard is None or not shard.items:
        return
    record = shard.items[-1]
    data = dict(record.to_json())
    data["userIdentity"] = {"type": "Service", "principalId": "dynamodb.amazonaws.com"}
    set_stream_record(record, data)


def set_stream_record(record: Any, data: dict[str, Any]) -> None:
    """Make a moto ``StreamRecord`` hold ``data`` (kept as its text, as :func:`compact_items` keeps records)."""
    state = record.__dict__
    for name in ("record", "_text", "_created", "_seq", "_packed"):
        state.pop(name, None)
    state["record"] = data
    if "compact" in _applied:
        _keep_record_as_text(state)
