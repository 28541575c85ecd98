"""``python3 infra/dev.py run --data DIR``: the local run's state kept across restarts.

How: the embedded moto keeps everything in memory, so the run takes **snapshots** of it.
On a clean stop (Ctrl-C, SIGTERM; after the API has stopped taking requests and the last
one finished) and every ``--save-every`` seconds while something changed, it writes

* the first time (and after a table is created or changed): ``DIR/aws-state.json.gz``, every
  DynamoDB table of the embedded moto (its key schema, indexes, stream and TTL settings, and
  every item as DynamoDB JSON) and every symmetric KMS key with its key material and aliases
  (so what was encrypted before a restart still decrypts);
* after that: a **journal segment** ``DIR/aws-journal-GGGGGGGGGGGG-NNNNNN.json.gz`` with only the items
  written since the previous snapshot (their state now, or their deletion), the settings of their tables
  (a table the full snapshot lacks is created from them at the next start) and the KMS keys,
  so a snapshot costs what changed, not the size of the tables (moto's item writes are
  hooked to note which items changed, whoever wrote them). ``G…`` is the **generation** of the full
  snapshot it follows (a random id in the snapshot's head, new with each full snapshot), ``N…`` its
  number from 1; each segment's content names both too;
* ``DIR/keys.json`` (mode 0600): the master secret the webhook secrets derive from, the operator
  key, the demo program's keys and the ``SARAFAN_*`` settings the run chose, so the next start
  prints and accepts the same keys and secrets.

Each file is written to a temporary name, fsynced, renamed and the directory fsynced, so a file is
whole or absent, and each snapshot is taken with moto paused (no DynamoDB request runs meanwhile): one
consistent state. The next ``run --data DIR`` loads the full snapshot and then its generation's journal,
in order (a missing number stops the start), into moto before anything else starts; after
:data:`MAX_JOURNAL` segments the next snapshot is a full one again, and once it is in place the journal
is dropped. A crash between the two leaves segments of the generation before: the next start ignores
them and deletes them (and any ``*.tmp`` a crash left), so the set loaded is always one snapshot and
its own journal. A save that fails (the disk full, the directory not writable) raises, and everything it
was to write is noted again for the next save, wherever it failed from taking the changes on (copying the
tables, serialising, writing, fsyncing, renaming, dropping the journal), and a full snapshot that was due
stays due: nothing is dropped while the run goes on.

The run holds ``flock`` on ``DIR/.lock`` (which holds its pid) for its life: a second run on the same
directory stops at once, naming the first's pid. A file that cannot be read (not gzip, cut short, not
JSON, another version's) stops the start with a message naming it (:class:`Damaged`, exit code 1) before
anything in the directory is written.

Limits: what happened after the last snapshot that was written is lost if the process is killed
(``kill -9``, out of memory, power cut); the table streams' records not consumed yet are kept with the consumers'
positions (``infra/local_stream.POSITIONS``), so a restart delivers them once (a snapshot waits until
no stream batch is half done); SNS, SES, SQS and the other services start empty (the run recreates
what it needs); asymmetric KMS keys are not kept; the files hold plain secrets for this machine
only; the format belongs to this version of the local run (a snapshot written by another is
refused: move the directory away to start over). A full snapshot takes about 4 s of CPU per
100,000 items to write or to load.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import gzip
import json
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from infra import moto_disk

FORMAT = 1
#: ``aws-state.json.gz``'s format since the items are on disk: JSON lines, a head (the tables' settings, KMS keys,
#: stream records) and then one item a line, written and read a line at a time (format 1, one JSON document with
#: every item in it, held the whole table in memory twice over; it is still read).
FULL_FORMAT = 2
AWS_FILE = "aws-state.json.gz"
KEYS_FILE = "keys.json"

#: DynamoDB actions that change tables rather than items (a full snapshot follows).
SCHEMA_ACTIONS = frozenset({"CreateTable", "DeleteTable", "UpdateTable", "UpdateTimeToLive"})
JOURNAL_GLOB = "aws-journal-*.json.gz"
#: A journal segment's name: the generation of the full snapshot it follows, and its number from 1 (a name without
#: the generation is one an earlier version wrote; it follows a full snapshot without one).
SEGMENT_NAME = re.compile(r"aws-journal-(?:(?P<generation>[0-9a-f]{12})-)?(?P<sequence>[0-9]{6})\.json\.gz")
#: Held (``flock``) by the run using the directory, for its whole life; it holds that run's pid.
LOCK_FILE = ".lock"
#: Journal segments before the next snapshot is a full one again (which drops them).
MAX_JOURNAL = 200
#: Seconds a snapshot waits for the stream batch in progress to finish (it holds new batches back meanwhile).
QUIET_WAIT = 3.0


def _write_atomically(path: Path, data: bytes, mode: int = 0o600) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)  # (the disk full: what was written of it is given back)
        raise
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    """Make the renames and unlinks in ``directory`` durable (a power cut would otherwise undo them)."""
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


TableId = tuple[str, str, str]  # account, region, table name


class _Changes:
    """Which DynamoDB items changed since the last snapshot, whoever changed them.

    Hooks moto's item writes (``Table.put_item``/``delete_item``, ``update_item``, and the puts
    ``moto_tuning``'s transactions write themselves: ``PUT_HOOKS``), so a
    snapshot writes only those items (a journal segment) instead of the whole table. Every
    hook runs inside a DynamoDB request, i.e. under ``moto_tuning.ENGINE_LOCK``, as does
    :meth:`take`.
    """

    def __init__(self) -> None:
        self.items: set[tuple[TableId, Any, Any]] = set()
        self.schema = False
        #: What the save in progress took, held until it is written (:meth:`written`) or given back.
        self._taken: tuple[set[tuple[TableId, Any, Any]], bool] | None = None
        self._installed = False

    def take(self) -> tuple[set[tuple[TableId, Any, Any]], bool]:
        """What changed (and whether a table did) for a snapshot, held here too until the snapshot is written:
        a save that fails anywhere from here on gives it back (:meth:`give_back`). Call with moto paused."""
        if self._taken is None:
            self._taken = (self.items, self.schema)  # (held before the notes are cleared)
        else:  # (a save before that neither wrote nor gave back)
            self._taken = (self._taken[0] | self.items, self._taken[1] or self.schema)
        self.items, self.schema = set(), False
        return self._taken

    def written(self) -> None:
        """The snapshot :meth:`take` was for is in place: what it took is no longer held."""
        self._taken = None

    def give_back(self) -> None:
        """What :meth:`take` took, noted again (the snapshot it was for was not written; call with moto
        paused)."""
        if self._taken is not None:
            items, schema = self._taken
            self.items |= items
            self.schema = self.schema or schema
            self._taken = None

    def discard(self) -> None:
        """Nothing to write (what moto holds is what is on disk: just loaded)."""
        self.items, self.schema, self._taken = set(), False, None

    def install(self) -> None:
        if self._installed:
            return
        from moto.dynamodb.models import DynamoDBBackend
        from moto.dynamodb.models.dynamo_type import DynamoType
        from moto.dynamodb.models.table import Table
        from moto.dynamodb.responses import DynamoHandler

        from infra import moto_tuning

        changes = self
        call_action, put_item, delete_item = DynamoHandler.call_action, Table.put_item, Table.delete_item
        update_item = DynamoDBBackend.update_item

        def table_id(table: Any) -> TableId:
            return (table.account_id, table.region_name, table.name)

        def handler_call_action(handler: Any) -> Any:
            if handler._get_action() in SCHEMA_ACTIONS:
                changes.schema = True
            return call_action(handler)

        def table_put_item(table: Any, item_attrs: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
            item = put_item(table, item_attrs, *args, **kwargs)
            changes.items.add((table_id(table), item.hash_key, item.range_key))
            return item

        def put_written(table: Any, item: Any) -> None:  # a transaction's put moto_tuning wrote itself
            changes.items.add((table_id(table), item.hash_key, item.range_key))

        def table_delete_item(table: Any, hash_key: Any, range_key: Any) -> Any:
            changes.items.add((table_id(table), hash_key, range_key))
            return delete_item(table, hash_key, range_key)

        def backend_update_item(backend: Any, table_name: str, key: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
            try:
                return update_item(backend, table_name, key, *args, **kwargs)
            finally:
                table = backend.tables.get(table_name)
                if table is not None and table.hash_key_attr in key:
                    range_value = key.get(table.range_key_attr) if table.range_key_attr else None
                    changes.items.add((table_id(table), DynamoType(key[table.hash_key_attr]),
                                       DynamoType(range_value) if range_value is not None else None))

        DynamoHandler.call_action = handler_call_action  # type: ignore[method-assign]
        Table.put_item = table_put_item  # type: ignore[method-assign, assignment]
        moto_tuning.PUT_HOOKS.append(put_written)
        Table.delete_item = table_delete_item  # type: ignore[method-assign, assignment]
        DynamoDBBackend.update_item = backend_update_item  # type: ignore[method-assign, assignment]
        self._installed = True


CHANGES = _Changes()


# --- DynamoDB -----------------------------------------------------------------------------


def _dynamodb_tables() -> Iterator[tuple[str, str, Any]]:
    from moto.dynamodb.models import dynamodb_backends

    for account, regions in list(dynamodb_backends.items()):
        for region, backend in list(regions.items()):
            for table in list(backend.tables.values()):
                yield account, region, table


def _binary_as_base64(value: Any) -> str:
    """Binary attribute values (``{"B": ...}``) as DynamoDB JSON writes them: base64 text."""
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(bytes(value)).decode("ascii")
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _item_rows(table: Any) -> list[dict[str, Any]]:
    return [item.to_json()["Attributes"] for item in table.all_items()]


def dump_dynamodb() -> list[dict[str, Any]]:
    """Every table's settings and items (call with moto paused: ``moto_tuning.engine_paused()``)."""
    return [{**meta, "items": [_item_json(item) for item in _source_items(source)]} for meta, source in freeze_dynamodb()]


def freeze_dynamodb() -> list[tuple[dict[str, Any], Any]]:
    """Every table's settings and a frozen copy of its items, to read after moto runs again (call with moto
    paused): a disk store's copy made in SQL (``infra/moto_disk.py``: milliseconds per thousand rows, no
    Python object per item), moto's own dict's items as their JSON."""
    import copy

    frozen: list[tuple[dict[str, Any], Any]] = []
    try:
        for meta, table in _table_metas():
            frozen.append((meta, copy.deepcopy(table.items) if moto_disk.is_disk(table.items) else _item_rows(table)))
    except BaseException:
        frozen.clear()  # the copies made so far leave the store's file now (the disk is likely full)
        raise
    return frozen


def _source_items(source: Any) -> Iterator[Any]:
    """The items of :func:`freeze_dynamodb`'s copy, one at a time (the store's file is read in chunks)."""
    if moto_disk.is_disk(source):
        yield from source.sorted_items()
    else:
        yield from source


def _item_json(item: Any) -> dict[str, Any]:
    """An item's attributes as DynamoDB JSON (already that for moto's own dict's copy); a packed item from its
    bytes, without unpacking it into moto's objects."""
    if isinstance(item, dict):
        return item
    import marshal

    blob = item.__dict__.get("_packed")
    if blob is not None:
        return {name: _packed_json(value) for name, value in marshal.loads(blob).items()}
    return item.to_json()["Attributes"]  # type: ignore[no-any-return]


def _packed_json(packed: tuple[str, Any]) -> dict[str, Any]:
    kind, raw = packed
    if kind == "L":
        return {kind: [_packed_json(member) for member in raw]}
    if kind == "M":
        return {kind: {name: _packed_json(member) for name, member in raw.items()}}
    return {kind: raw}


def _table_metas() -> Iterator[tuple[dict[str, Any], Any]]:
    for account, region, table in _dynamodb_tables():
        yield _table_meta(account, region, table), table


def _table_meta(account: str, region: str, table: Any) -> dict[str, Any]:
    """A table's settings as a snapshot keeps them (what ``DescribeTable`` says, without its item count)."""
    stream = table.stream_specification
    return {
        "account": account,
        "region": region,
        "name": table.name,
        "key_schema": table.schema,
        "attribute_definitions": table.attr,
        "global_indexes": [{"IndexName": i.name, "KeySchema": i.schema, "Projection": i.projection}
                           for i in table.global_indexes],
        "local_indexes": [{"IndexName": i.name, "KeySchema": i.schema, "Projection": i.projection}
                          for i in table.indexes],
        "stream": stream if stream and stream.get("StreamEnabled") else None,
        "ttl": dict(table.ttl),
    }


def load_dynamodb(tables: list[dict[str, Any]]) -> int:
    """Recreate the tables in moto and put their items back (no stream records); return the item count."""
    count = 0
    for saved, table in zip(tables, create_tables(tables), strict=True):
        for attrs in saved["items"]:
            put_loaded(table, attrs)
            count += 1
            if count % LOAD_SETTLE_EVERY == 0:
                _settle()  # written to the disk store's file, the working set cut back
    _settle()
    return count


def _settle() -> None:
    """What the end of a DynamoDB request does, for items put straight into moto: the disk store writes them
    through and cuts its working set back, and the items unpacked longest ago are packed again (a load holds
    no more of them as objects than a run does)."""
    from infra import moto_tuning

    with moto_tuning.ENGINE_LOCK:
        moto_tuning.end_of_request()


def put_loaded(table: Any, attrs: dict[str, Any]) -> None:
    """A saved item straight into the table: it was valid when moto stored it, and loading is not a change
    to stream."""
    from moto.dynamodb.models.dynamo_type import DynamoType, Item

    hash_key = DynamoType(attrs[table.hash_key_attr])
    range_key = DynamoType(attrs[table.range_key_attr]) if table.range_key_attr else None
    item = Item(hash_key, range_key, attrs)
    if range_key is None:
        table.items[hash_key] = item
    else:
        table.items[hash_key][range_key] = item


def create_tables(tables: list[dict[str, Any]]) -> list[Any]:
    """The saved tables created again in moto, empty, with their TTL settings."""
    from moto.dynamodb.models import dynamodb_backends

    created = []
    for saved in tables:
        backend = dynamodb_backends[saved["account"]][saved["region"]]
        params: dict[str, Any] = {
            "schema": saved["key_schema"],
            "attr": saved["attribute_definitions"],
            "throughput": None,
            "indexes": saved["local_indexes"],
            "global_indexes": saved["global_indexes"],
            "streams": saved["stream"],
            "billing_mode": "PAY_PER_REQUEST",
            "sse_specification": None,
            "tags": [],
            "deletion_protection_enabled": False,
            "warm_throughput": None,
        }
        table = backend.create_table(saved["name"], **params)
        table.ttl.update(saved.get("ttl") or {})
        created.append(table)
    return created


#: Items loaded between two write-throughs of the disk store (``infra/moto_disk.py``), so a big snapshot is
#: not held as moto objects while it loads (:func:`_settle`).
LOAD_SETTLE_EVERY = 1000


# --- the table streams -----------------------------------------------------------------------


def _stream_record_json(record: Any) -> dict[str, Any]:
    data = dict(record.to_json())
    dynamodb = dict(data.get("dynamodb") or {})
    created = dynamodb.get("ApproximateCreationDateTime")
    if isinstance(created, datetime):
        dynamodb["ApproximateCreationDateTime"] = {"datetime": created.isoformat()}
    data["dynamodb"] = dynamodb
    return data


def _stream_record(table: Any, saved: dict[str, Any]) -> Any:
    """A moto ``StreamRecord`` holding a saved record (kept as ``moto_tuning.compact_items`` keeps them)."""
    from moto.dynamodb.models.table import StreamRecord

    data = dict(saved)
    dynamodb = dict(data.get("dynamodb") or {})
    created = dynamodb.get("ApproximateCreationDateTime")
    if isinstance(created, dict) and "datetime" in created:
        dynamodb["ApproximateCreationDateTime"] = datetime.fromisoformat(created["datetime"])
    data["dynamodb"] = dynamodb
    from infra import moto_tuning

    record = object.__new__(StreamRecord)
    moto_tuning.set_stream_record(record, data)
    return record


def dump_streams() -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Each table stream's records a consumer has not finished yet (from its position on; every record
    when no consumer is registered) and the consumers' positions (call with moto paused)."""
    from infra.local_stream import POSITIONS

    streams = []
    for account, region, table in _dynamodb_tables():
        shard = getattr(table, "stream_shard", None)
        if shard is None:
            continue
        start = shard.starting_sequence_number
        held = POSITIONS.hold(table.name, shard.id)
        skip = max(0, min(len(shard.items), (held - start) if held else 0))
        streams.append({"account": account, "region": region, "table": table.name, "shard": shard.id,
                        "starting_sequence_number": start + skip,
                        "records": [_stream_record_json(r) for r in shard.items[skip:]]})
    return streams, POSITIONS.dump()


def _stream_mark() -> tuple[Any, ...]:
    """Changes when a stream grew, was trimmed or a consumer finished a batch (a snapshot is due)."""
    from infra.local_stream import POSITIONS

    marks: list[Any] = [POSITIONS.version]
    for _account, _region, table in _dynamodb_tables():
        shard = getattr(table, "stream_shard", None)
        if shard is not None:
            marks.append((table.name, shard.starting_sequence_number, len(shard.items)))
    return tuple(marks)


def load_streams(streams: list[dict[str, Any]], positions: dict[str, int]) -> int:
    """Put saved stream records back (after :func:`load_dynamodb`) and the consumers' positions; the count."""
    from moto.dynamodb.models import dynamodb_backends

    from infra.local_stream import POSITIONS

    count = 0
    for saved in streams:
        table = dynamodb_backends[saved["account"]][saved["region"]].tables.get(saved["table"])
        shard = getattr(table, "stream_shard", None)
        if shard is None:
            continue
        shard.starting_sequence_number = int(saved["starting_sequence_number"])
        shard.items = [_stream_record(table, record) for record in saved["records"]]
        count += len(shard.items)
    POSITIONS.load(positions)
    return count


def _key_json(table: Any, hash_key: Any, range_key: Any) -> dict[str, Any]:
    key = {table.hash_key_attr: hash_key.to_json()}
    if range_key is not None:
        key[table.range_key_attr] = range_key.to_json()
    return key


def dump_changes(changed: set[tuple[TableId, Any, Any]]) -> list[dict[str, Any]]:
    """The current state of each changed item: ``{"table", "key", "item"}`` (``item`` None: deleted)."""
    from moto.dynamodb.models import dynamodb_backends

    out = []
    for (account, region, name), hash_key, range_key in changed:
        table = dynamodb_backends[account][region].tables.get(name)
        if table is None:
            continue
        partition: Any = table.items.get(hash_key)
        item: Any = partition if range_key is None else (partition or {}).get(range_key)
        out.append({"table": [account, region, name], "key": _key_json(table, hash_key, range_key),
                    "item": item.to_json()["Attributes"] if item is not None else None})
    return out


def changed_tables(changed: set[tuple[TableId, Any, Any]]) -> list[dict[str, Any]]:
    """The settings of the tables the changed items are in (a journal segment carries them, so its items
    can be loaded even where the full snapshot before it lacks their table)."""
    from moto.dynamodb.models import dynamodb_backends

    metas = []
    for account, region, name in sorted({table for table, _hash, _range in changed}):
        table = dynamodb_backends[account][region].tables.get(name)
        if table is not None:
            metas.append(_table_meta(account, region, table))
    return metas


class UnknownTable(Exception):
    """A journal segment's item in a table that neither the full snapshot nor the segment describes."""


def apply_changes(changes: list[dict[str, Any]], tables: list[dict[str, Any]] | None = None) -> list[str]:
    """A journal segment's items into moto; a table they are in that moto does not have (the full snapshot
    before lacks it) is created from the segment's ``tables`` first, or :class:`UnknownTable` is raised
    before anything is applied. Returns the names of the tables created."""
    from moto.dynamodb.models import dynamodb_backends
    from moto.dynamodb.models.dynamo_type import DynamoType, Item

    described = {(meta["account"], meta["region"], meta["name"]): meta for meta in tables or []}
    missing = sorted({tuple(change["table"]) for change in changes}
                     - {(account, region, table.name) for account, region, table in _dynamodb_tables()})
    unknown = [table_id for table_id in missing if table_id not in described]
    if unknown:
        raise UnknownTable(", ".join(f"{name!r} ({account}, {region})" for account, region, name in unknown))
    create_tables([described[table_id] for table_id in missing])
    for applied, change in enumerate(changes, 1):
        account, region, name = change["table"]
        table = dynamodb_backends[account][region].tables[name]
        hash_key = DynamoType(change["key"][table.hash_key_attr])
        range_key = DynamoType(change["key"][table.range_key_attr]) if table.range_key_attr else None
        if change["item"] is None:
            if range_key is None:
                table.items.pop(hash_key, None)
            elif hash_key in table.items:
                table.items[hash_key].pop(range_key, None)
        elif range_key is None:
            table.items[hash_key] = Item(hash_key, None, change["item"])  # type: ignore[assignment]
        else:
            table.items[hash_key][range_key] = Item(hash_key, range_key, change["item"])
        if applied % LOAD_SETTLE_EVERY == 0:
            _settle()
    _settle()
    return [name for _account, _region, name in missing]


def _write_full(path: Path, head: dict[str, Any], frozen: list[tuple[dict[str, Any], Any]]) -> int:
    """A full snapshot in :data:`FULL_FORMAT`, written under a temporary name and renamed; the item count."""
    def line(value: Any) -> bytes:
        return (json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=_binary_as_base64) + "\n").encode()

    tmp = path.with_name(path.name + ".tmp")
    count = 0
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as raw:
            with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1) as out:
                out.write(line(head))
                for number, (_meta, source) in enumerate(frozen):
                    lines = []
                    for item in _source_items(source):
                        lines.append(line({"t": number, "item": _item_json(item)}))
                        count += 1
                        if len(lines) >= LOAD_SETTLE_EVERY:
                            out.write(b"".join(lines))
                            lines = []
                    out.write(b"".join(lines))
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_directory(path.parent)
    return count


def _load_full(path: Path) -> tuple[dict[str, Any], int]:
    """Load a full snapshot (either format) into moto: its head, and how many items it held."""
    with gzip.open(path, "rt", encoding="utf-8") as src:
        data = json.loads(src.readline())  # format 1 is one line: the whole document
        if not isinstance(data, dict):
            raise ValueError("its first line is not a snapshot's head")
        if data.get("format") == FORMAT:
            return data, load_dynamodb(data["dynamodb"])
        if data.get("format") != FULL_FORMAT:
            raise OtherVersion(path)
        tables = create_tables(data["dynamodb"])
        count = 0
        for text in src:
            saved = json.loads(text)
            put_loaded(tables[saved["t"]], saved["item"])
            count += 1
            if count % LOAD_SETTLE_EVERY == 0:
                _settle()
    _settle()
    return data, count


def _read(path: Path) -> dict[str, Any]:
    with gzip.open(path, "rt", encoding="utf-8") as src:
        data = json.load(src)
    if not isinstance(data, dict):
        raise ValueError("not a journal segment")
    if data.get("format") != FORMAT:
        raise OtherVersion(path)
    return data


def _what_to_do(directory: Path) -> str:
    return (f"Nothing in {directory} was changed. Put back a copy of the directory, or move it away "
            f"(mv {directory} {directory}.old) to start over with an empty one.")


class OtherVersion(SystemExit):
    """A file of the data directory in a format this version does not read."""

    def __init__(self, path: Path) -> None:
        super().__init__(f"{path} was written by another version of the local run. {_what_to_do(path.parent)}")


class Damaged(SystemExit):
    """A file of the data directory that cannot be read: the run stops before it writes anything (exit code 1)."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"the local run's data directory is damaged: {path} {problem}. {_what_to_do(path.parent)}")


@contextlib.contextmanager
def _reading(path: Path) -> Iterator[None]:
    """Whatever goes wrong reading ``path`` (not gzip, cut short, not JSON, not what a snapshot holds) as
    :class:`Damaged`, naming the file."""
    try:
        yield
    except (SystemExit, MemoryError):
        raise
    except Exception as error:  # every way a file can be damaged, named in the message
        raise Damaged(path, f"cannot be read ({type(error).__name__}: {error})") from error


# --- KMS ------------------------------------------------------------------------------------


def dump_kms() -> list[dict[str, Any]]:
    from moto.kms.models import kms_backends

    keys = []
    for account, regions in list(kms_backends.items()):
        for region, backend in list(regions.items()):
            for key in list(backend.keys.values()):
                if key.key_spec != "SYMMETRIC_DEFAULT":
                    continue
                keys.append({
                    "account": account, "region": region, "id": key.id, "arn": key.arn,
                    "description": key.description, "policy": key.policy, "key_usage": key.key_usage,
                    "creation_date": key.creation_date, "enabled": key.enabled, "key_state": key.key_state,
                    "material": base64.b64encode(key.key_material).decode(), "aliases": sorted(key.aliases),
                })
    return keys


def load_kms(keys: list[dict[str, Any]]) -> int:
    from moto.kms.models import kms_backends

    for saved in keys:
        backend = kms_backends[saved["account"]][saved["region"]]
        key = backend.create_key(saved["policy"], saved["key_usage"], "SYMMETRIC_DEFAULT", saved["description"], None)
        del backend.keys[key.id]
        key.id, key.arn, key.creation_date = saved["id"], saved["arn"], saved["creation_date"]
        key.key_material = base64.b64decode(saved["material"])
        key.enabled, key.key_state = saved["enabled"], saved["key_state"]
        backend.keys[key.id] = key
        for alias in saved["aliases"]:
            backend.create_alias(key.id, alias)
    return len(keys)


# --- the directory ------------------------------------------------------------------------------


class LocalState:
    """The ``--data`` directory (or nothing: ``LocalState(None)`` keeps today's in-memory run)."""

    def __init__(self, directory: Path | None, log: Callable[[str], None] = print) -> None:
        self.directory = directory.expanduser().resolve() if directory else None
        self.log = log
        self.last_save_seconds: float | None = None
        self._saved_kms: list[dict[str, Any]] | None = None
        #: The generation of the full snapshot on disk that this run restored or wrote (None: none yet, or one
        #: without a generation: the next snapshot is a full one), and the number of its last journal segment.
        self._generation: str | None = None
        self._sequence = 0
        #: A full snapshot was due at a save that failed: the next one is full too.
        self._full_due = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._save_lock = threading.Lock()
        self._stream_mark: tuple[Any, ...] = ()
        self._lock_fd: int | None = None

    @property
    def persistent(self) -> bool:
        return self.directory is not None

    def _path(self, name: str) -> Path:
        assert self.directory is not None
        return self.directory / name

    # the directory: one run at a time
    def lock(self) -> None:
        """Create the directory if missing and lock it for this run's life (``flock`` on ``DIR/.lock``, released
        when the process ends however it ends); another run holding it stops this one, naming its pid."""
        if not self.persistent or self._lock_fd is not None:
            return
        directory = self.directory
        assert directory is not None
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise SystemExit(f"--data {directory}: not a directory (it, or a path above it, is a file); "
                             "pass a directory (created if missing)") from None
        except OSError as error:
            raise SystemExit(f"--data {directory}: cannot create it ({error.strerror})") from None
        try:
            fd = os.open(self._path(LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as error:
            raise SystemExit(f"--data {directory}: cannot use it ({error.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise SystemExit(f"--data {directory} is in use by another local run (pid {holder}); two runs on one "
                             "directory would overwrite each other's snapshots. Stop that run first, or pass "
                             "another --data directory.") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # keys and settings
    def load_keys(self) -> dict[str, Any]:
        if not self.persistent or not self._path(KEYS_FILE).exists():
            return {}
        path = self._path(KEYS_FILE)
        with _reading(path):
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise ValueError("not an object")
        if data.get("format") != FORMAT:
            raise OtherVersion(path)
        return data

    def save_keys(self, keys: dict[str, Any]) -> None:
        if not self.persistent:
            return
        self.directory.mkdir(parents=True, exist_ok=True)  # type: ignore[union-attr]
        os.chmod(self.directory, 0o700)  # type: ignore[arg-type]
        payload = {"format": FORMAT, **keys}
        _write_atomically(self._path(KEYS_FILE), json.dumps(payload, ensure_ascii=False, indent=2).encode())

    # AWS state
    def _journal(self, generation: str | None) -> tuple[list[Path], list[Path]]:
        """The journal segments that follow the full snapshot of ``generation``, in order, and the others
        (an earlier snapshot's, left by a crash between writing a full snapshot and dropping them)."""
        assert self.directory is not None
        ours: list[tuple[int, Path]] = []
        others: list[Path] = []
        for path in self.directory.glob(JOURNAL_GLOB):
            named = SEGMENT_NAME.fullmatch(path.name)
            if named is None:
                continue  # not a name this run writes: left alone
            if named["generation"] == generation:
                ours.append((int(named["sequence"]), path))
            else:
                others.append(path)
        ours.sort()
        if generation is not None:  # each segment holds what changed since the one before: none may be missing
            for expected, (sequence, path) in enumerate(ours, 1):
                if sequence != expected:
                    missing = self._path(_segment_name(generation, expected))
                    raise Damaged(missing, f"is missing (the journal goes on with {path.name})")
        return [path for _sequence, path in ours], others

    def restore(self) -> dict[str, int] | None:
        """Load the last snapshot and its journal into moto (before anything else talks to it).

        A file that cannot be read stops the start (:class:`Damaged`) before anything is written. Once
        everything is loaded, what the snapshot does not need goes: another snapshot's journal segments and
        the temporary files of a write a crash cut short.
        """
        if not self.persistent:
            return None  # nothing to note: without --data, noting every changed key would only grow
        CHANGES.install()
        full_path = self._path(AWS_FILE)
        if not full_path.exists():
            return None
        started = time.monotonic()
        with _reading(full_path):
            data, count = _load_full(full_path)
            generation = data.get("generation")
            loaded = {"items": count, "tables": len(data["dynamodb"])}
            kms = data.get("kms", [])
            streams, positions = data.get("streams", []), data.get("positions", {})
        kms_from = streams_from = full_path
        segments, stale = self._journal(generation)
        for segment in segments:
            with _reading(segment):
                changes = _read(segment)
                if changes.get("generation") != generation:
                    raise ValueError(f"it belongs to snapshot {changes.get('generation')}, not {generation}")
                try:
                    created = apply_changes(changes["items"], changes.get("tables"))
                except UnknownTable as unknown:
                    raise Damaged(segment, f"holds items of table {unknown}, which {AWS_FILE} does not have and "
                                           "the segment does not describe, so they cannot be loaded") from None
                if created:
                    self.log(f"{segment.name}: created table(s) {', '.join(created)} from the segment (the "
                             f"full snapshot before it does not have them)")
                if "kms" in changes:
                    kms, kms_from = changes["kms"], segment
                if "streams" in changes:
                    streams, positions, streams_from = changes["streams"], changes.get("positions", {}), segment
        with _reading(kms_from):
            loaded["kms_keys"] = load_kms(kms)
        with _reading(streams_from):
            loaded["stream_records"] = load_streams(streams, positions)
        loaded["journal"] = len(segments)
        CHANGES.discard()  # what was just loaded is what is on disk
        self._stream_mark = _stream_mark()
        leftovers = [*stale, *self.directory.glob("*.tmp")]  # type: ignore[union-attr]
        for path in leftovers:
            path.unlink(missing_ok=True)
        if leftovers:
            _fsync_directory(self.directory)  # type: ignore[arg-type]
        self.log(f"restored {loaded['items']} items in {loaded['tables']} table(s), {len(segments)} journal "
                 f"segment(s), {loaded['stream_records']} stream record(s) not consumed yet and "
                 f"{loaded['kms_keys']} KMS key(s) from {self.directory} in {time.monotonic() - started:.1f} s"
                 + (f"; dropped {len(stale)} journal segment(s) of an earlier snapshot" if stale else ""))
        self._saved_kms = kms
        self._generation = generation
        self._sequence = len(segments) if generation is not None else 0
        return loaded

    def save(self, reason: str = "snapshot", full: bool = False) -> bool:
        """Write what changed since the last snapshot (a journal segment), or everything; True if written.

        A full snapshot replaces ``aws-state.json.gz`` (with a new generation) and drops the journal; it is
        taken when there is none yet, when a table was created or changed, or with ``full``. A save that
        fails at any step from :meth:`_Changes.take` on (the disk full, the directory not writable) raises,
        and what it was to write is kept for the next one (a full snapshot that was due stays due).
        """
        if not self.persistent:
            return False
        from infra import moto_tuning

        assert self.directory is not None
        from infra.local_stream import POSITIONS

        with self._save_lock:
            started = time.monotonic()
            frozen: list[tuple[dict[str, Any], Any]] = []
            full = full or self._full_due
            # Everything from CHANGES.take() on, in the pause or after it, gives what it took back if it fails
            # (whatever the failure: the disk full while the tables are copied, an error serialising, a rename
            # refused, a process told to stop), and a full snapshot that was due stays due: nothing is dropped.
            try:
                # No stream batch half done (each is wholly delivered, its position committed, or not begun),
                # and no DynamoDB request running: one consistent state, stream records and positions included.
                with POSITIONS.quiet(QUIET_WAIT) as idle, moto_tuning.engine_paused():
                    if not idle:
                        self.log(f"{reason}: a stream batch was still in progress after {QUIET_WAIT:g} s; "
                                 "after a crash it would be delivered again")
                    changed, schema = CHANGES.take()
                    full = (full or schema or self._generation is None or not self._path(AWS_FILE).exists()
                            or (bool(changed) and self._sequence >= MAX_JOURNAL))
                    kms = dump_kms()
                    mark = _stream_mark()
                    if not full and not changed and kms == self._saved_kms and mark == self._stream_mark:
                        CHANGES.written()  # (nothing was taken)
                        return False
                    streams, positions = dump_streams()
                    if full:
                        frozen = freeze_dynamodb()  # read after the pause, a row at a time (_write_full)
                        data: dict[str, Any] = {"format": FULL_FORMAT, "dynamodb": [meta for meta, _ in frozen],
                                                "kms": kms}
                        count = 0
                    else:
                        items = dump_changes(changed)
                        data = {"format": FORMAT, "items": items, "tables": changed_tables(changed), "kms": kms}
                        count = len(items)
                    data["streams"], data["positions"] = streams, positions
                    unconsumed = sum(len(stream["records"]) for stream in streams)
                # Plain JSON values from here on: serialised outside the pause.
                data["saved_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
                self.directory.mkdir(parents=True, exist_ok=True)
                if full:
                    where, count = self._write_full_snapshot(data, frozen)
                else:
                    where = self._write_segment(data)
            except BaseException:
                with moto_tuning.engine_paused():
                    CHANGES.give_back()  # for the next save: nothing is dropped
                self._full_due = full
                raise
            finally:
                del frozen  # (a disk store's copy: its rows leave the file)
            CHANGES.written()
            self._full_due = False
            self._stream_mark = mark
            self._saved_kms = kms
            self.last_save_seconds = time.monotonic() - started
            self.log(f"{reason}: saved {count} {'items' if full else 'changed items'} and {unconsumed} stream "
                     f"record(s) not consumed yet to {where.name} in {self.last_save_seconds:.1f} s")
            return True

    def _write_full_snapshot(self, data: dict[str, Any], frozen: list[tuple[dict[str, Any], Any]]) -> tuple[Path, int]:
        """``aws-state.json.gz`` with a new generation, renamed into place; then the journal segments of the
        one before are dropped. A crash between the two leaves them, but they name the other generation: the
        next start ignores and deletes them."""
        generation = secrets.token_hex(6)
        where = self._path(AWS_FILE)
        self._generation = None  # until the new one is in place, whatever fails: the next snapshot is full
        count = _write_full(where, {**data, "generation": generation}, frozen)
        self._generation, self._sequence = generation, 0
        _ours, others = self._journal(generation)
        for segment in others:
            segment.unlink(missing_ok=True)
        _fsync_directory(where.parent)
        return where, count

    def _write_segment(self, data: dict[str, Any]) -> Path:
        """The next journal segment of this generation (its number taken only once it is in place)."""
        assert self._generation is not None
        sequence = self._sequence + 1
        blob = gzip.compress(json.dumps({**data, "generation": self._generation, "sequence": sequence},
                                        separators=(",", ":"), ensure_ascii=False,
                                        default=_binary_as_base64).encode(), compresslevel=1)
        where = self._path(_segment_name(self._generation, sequence))
        _write_atomically(where, blob)
        self._sequence = sequence
        return where

    def start_autosave(self, every: float) -> None:
        if not self.persistent or every <= 0:
            return

        def loop() -> None:
            while not self._stop.wait(every):
                try:
                    self.save("autosave")
                except Exception as exc:  # a failed autosave is reported; the run goes on
                    self.log(f"autosave failed: {type(exc).__name__}: {exc}; what changed is kept for the next "
                             "snapshot")

        self._thread = threading.Thread(target=loop, name="sarafan-autosave", daemon=True)
        self._thread.start()

    def stop_autosave(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)


def _segment_name(generation: str, sequence: int) -> str:
    return f"aws-journal-{generation}-{sequence:06d}.json.gz"
