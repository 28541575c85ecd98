"""moto's DynamoDB items on disk: a bounded working set in memory, every item in a ``sqlite3`` file.

moto keeps every item of a table in ``Table.items`` (a ``defaultdict(dict)``: hash key -> {range key ->
``Item``}, or hash key -> ``Item`` for a table without a range key), so a long local run's memory grew with
what it stored (about 11 MB per 1,000 webhooks after :func:`infra.moto_tuning.compact_items`: the items'
packed bytes, moto's key objects, the dict entries and the attribute index around them). With
:func:`install` (from ``moto_tuning.apply()``, so the test suite runs the same engine as the local run)
each table's ``items`` is a :class:`DiskItems`: the same mapping to moto's code, backed by

* a table in one ``sqlite3`` database per process (the standard library: no new dependency), a file
  created in the temporary directory and unlinked as soon as it is open (the open connection keeps it), so
  nothing is left on disk however the process ends (``os._exit``, a signal, a kill); ``journal_mode=MEMORY``
  (a write the full disk cuts short is rolled back from it) and ``synchronous=OFF``, since nothing is meant
  to survive the process (keeping data is ``--data``'s job, ``infra/local_state.py``). Every item is a row: its key, and its attributes as the ``marshal``
  bytes :func:`~infra.moto_tuning.compact_items` keeps in memory;
* a working set of at most :data:`HOT_ITEMS` ``Item`` objects (``SARAFAN_MOTO_HOT_ITEMS``), the most
  recently used, so the items a request reads and writes again (a program, its counters, a member being
  rewarded) are not decoded from disk each time.

The rules that keep it what moto would answer:

* an item read or written by key during a request is the same object until the request ends (moto
  changes items in place in ``update_item``, and a transaction's rollback puts objects back); nothing is
  evicted during a request;
* at the end of each DynamoDB request (the hook ``moto_tuning`` already runs there, under
  ``ENGINE_LOCK``) every item touched is written through if its bytes changed, deletions are applied, and
  the working set is cut back to :data:`HOT_ITEMS`. Each store's write-through is one sqlite transaction:
  one that fails (the disk full) is rolled back whole, raises, and keeps every change touched and in the
  working set, to be written at the next request's end. The
  file is then the whole truth, so walks (Scan,
  ``all_items``, ``DescribeTable``'s count, the TTL sweep, ``--data`` snapshots) read it, in key order,
  in chunks, with the working set's objects in place of rows where they exist; a walk inside a request
  writes the request's changes first;
* the attribute index GSI queries use (``moto_tuning._index_candidates``) is a table in the same file,
  built by one walk of the file on the first query of an attribute and kept at the write-through, so it
  holds no Python object per item;
* a key found missing is remembered (the last :data:`ABSENT_KEYS`), so a put of a new item, which looks
  its key up first, does not ask the file twice.

Not bounded: a single query/scan page still materialises its candidates (moto sorts them), a GSI query
the partition of that index value. A whole-table deep copy (the tests' fixtures; ``--data``'s full snapshot,
``infra/local_state.freeze_dynamodb``) copies the rows in SQL into a new store in the same file, no Python
object per item. Backups/restores of moto's ``RestoreTableFromBackup`` copy the store likewise.
"""

from __future__ import annotations

import collections
import contextlib
import marshal
import os
import pickle
import sqlite3
import tempfile
import threading
from collections.abc import Iterator
from decimal import Context, Decimal, InvalidOperation
from typing import Any

#: Items of a table kept as Python objects at the end of a request (the rest are only in the file).
HOT_ITEMS = 10000

#: Keys a store remembers as missing from its file (each a few hundred bytes; a put or a conditional check
#: of a new key looks it up first). A member-import chunk's batched read finds ~5,000 keys missing that its
#: transactions then create, and those add ~4,000 more: at 4,096 each pushed the next row's out before its
#: put, and nearly every put asked the file again. Since 2026-12-06 a chunk also reads its rows' identifiers'
#: erasure tombstones (~3,000 more keys, all missing) and the working set's misses pushed each other out again
#: at 16,384 (100,000 rows: 2.47 ms of main-process CPU per row, 1.92 at 65,536; at most ~16 MB per table).
ABSENT_KEYS = 65536

#: Rows a walk of the file reads at a time.
CHUNK = 256

_lock = threading.RLock()  # ENGINE_LOCK once installed
_db: dict[str, Any] = {}
_touched_stores: dict[int, DiskItems] = {}
_to_drop: list[str] = []
_counter = [0]
_pid = [os.getpid()]  # this process (a forked child opens its own file)
os.register_at_fork(after_in_child=lambda: _pid.__setitem__(0, os.getpid()))


def hot_limit() -> int:
    return HOT_ITEMS


def _connection() -> sqlite3.Connection:
    conn = _db.get("conn")
    if conn is not None and _db["pid"] == _pid[0]:
        return conn  # type: ignore[no-any-return]
    _pid[0] = os.getpid()
    directory = tempfile.mkdtemp(prefix="sarafan-moto-")
    path = os.path.join(directory, "items.sqlite")
    try:
        conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, cached_statements=256)
        conn.execute("PRAGMA page_size=8192")
        # The rollback journal in memory: a write the disk cannot take (ENOSPC, a file size limit) fails and sqlite puts
        # the pages it had changed back, so the file stays sound and the next write-through can succeed. (With
        # journal_mode=OFF there was nothing to put back: a statement cut short left a half-changed b-tree, and every
        # request after the disk had filled failed with "database disk image is malformed".) The journal is lost only
        # with the process, and the file (unlinked) goes with it.
        conn.execute("PRAGMA journal_mode=MEMORY")
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute("PRAGMA temp_store=MEMORY")
        # The file is this process's own: hold its lock instead of taking and dropping it around every statement
        # (two fcntl calls per lookup and per write-through; a third of the disk store's cost in the member import).
        conn.execute("PRAGMA locking_mode=EXCLUSIVE")
        conn.execute("PRAGMA cache_size=-8000")  # 8 MB of pages (the OS keeps the rest of the file cached)
    finally:
        # Unlinked at once (the connection keeps its open file): nothing is left on disk however the process ends
        # (the local run ends with ``os._exit``, which runs no ``atexit`` hook; a killed process runs nothing).
        # A journal in memory and the exclusive lock need no other file, and sqlite checks whether the file moved only
        # when it opens a journal file. (Not ``sqlite3.connect("")``, sqlite's own self-unlinking temporary database: it
        # keeps committed pages in its cache, so a failed statement's rollback without a journal corrupted it.)
        with contextlib.suppress(OSError):
            os.unlink(path)
        with contextlib.suppress(OSError):
            os.rmdir(directory)
    _db.update(conn=conn, pid=_pid[0])
    return conn


def _drop_pending(conn: sqlite3.Connection) -> None:
    while _to_drop:
        name = _to_drop.pop()
        conn.execute(f"DROP TABLE IF EXISTS i{name}")
        conn.execute(f"DROP TABLE IF EXISTS x{name}")


def _forget(name: str) -> None:
    """A :class:`DiskItems` was garbage-collected: its tables are dropped at the next chance (not here: a
    finalizer may run in any thread at any moment)."""
    _to_drop.append(name)


# --- keys ------------------------------------------------------------------------------------------


#: ``normalize`` rounds to its context's precision (28 digits by default); a DynamoDB number has up to 38
#: and moto compares them exactly, so two keys differing in the 29th digit must stay two.
_EXACT = Context(prec=400)


def _canonical_number(value: str) -> str:
    try:
        number = Decimal(value)
    except (InvalidOperation, TypeError, ValueError):
        return str(value)
    if number == 0:
        return "0"
    return format(number.normalize(_EXACT), "f")


def _number_order(value: str) -> str:
    """A text whose byte order is the exact order of the decimal values (``Decimal``, as moto compares
    them; a float collides beyond 17 digits): ``"1"`` zero; ``"2"`` + the exponent (offset, fixed width) +
    the digits for a positive number; ``"0"`` + the exponent and the digits complemented + ``"~"`` for a
    negative one (so a longer magnitude with the same start sorts first)."""
    try:
        number = Decimal(value).normalize(_EXACT)
    except (InvalidOperation, TypeError, ValueError):
        return "1"
    if not number.is_finite() or number == 0:
        return "1"
    sign, digits, _exponent = number.as_tuple()
    adjusted = min(max(number.adjusted(), -49999), 49999) + 50000  # DynamoDB's numbers: -130 to +125
    text = "".join(map(str, digits))
    if not sign:
        return f"2{adjusted:05d}{text}"
    return f"0{99999 - adjusted:05d}{text.translate(_COMPLEMENT)}~"


_COMPLEMENT = str.maketrans("0123456789", "9876543210")


class _KeyCodec:
    """A key attribute's value as sqlite columns: identity (equal iff moto's ``DynamoType`` keys are
    equal: numbers by their decimal value), moto's order (strings by code point = UTF-8 bytes, binary by
    bytes, numbers by value: a sort column of :func:`_number_order` text) and the value as moto holds it."""

    def __init__(self, kind: str | None) -> None:
        self.kind = kind
        self.numeric = kind == "N"

    def identity(self, key: Any) -> Any:
        if key is None:
            return ""
        if self.numeric:
            return _canonical_number(key.value)
        return key.value

    def sort(self, key: Any) -> Any:
        if key is None or not self.numeric:
            return None
        return _number_order(key.value)

    def original(self, key: Any) -> Any:
        """What to keep besides the identity to rebuild moto's key (``None``: the identity is the value)."""
        if key is None or not self.numeric:
            return None
        return key.value


def _dynamo_type(kind: str, value: Any) -> Any:
    from moto.dynamodb.models.dynamo_type import DynamoType

    key = object.__new__(DynamoType)
    key.type, key.value = kind, value
    return key


# --- items as bytes ----------------------------------------------------------------------------------


def _pack(item: Any) -> tuple[bytes, int]:
    """``(bytes, kind)`` of an item's attributes: 0 the ``marshal`` bytes ``compact_items`` keeps, 1 pickle
    (a value marshal cannot hold)."""
    from infra.moto_tuning import _pack_value

    state = item.__dict__
    attrs = state.get("_attrs", state.get("attrs"))
    if attrs is None:
        blob = state.get("_packed")
        if blob is not None:
            return blob, 0
        attrs = item.attrs
    try:
        return marshal.dumps({name: _pack_value(value) for name, value in attrs.items()}), 0
    except (AttributeError, TypeError, ValueError):
        return pickle.dumps(dict(attrs), pickle.HIGHEST_PROTOCOL), 1


def _item(hash_key: Any, range_key: Any, blob: bytes, kind: int) -> Any:
    from moto.dynamodb.models.dynamo_type import Item, LimitedSizeDict

    item = object.__new__(Item)
    state = item.__dict__
    state["hash_key"], state["range_key"] = hash_key, range_key
    if kind == 0 and "_attrs" in _compact_state():
        state["_attrs"], state["_packed"] = None, blob
    else:
        attrs = LimitedSizeDict.__new__(LimitedSizeDict)
        if kind == 0:
            from moto.dynamodb.models.dynamo_type import DynamoType

            from infra.moto_tuning import _unpack_value

            for name, packed in marshal.loads(blob).items():
                dict.__setitem__(attrs, name, _unpack_value(packed, DynamoType))
        else:
            dict.update(attrs, pickle.loads(blob))
        item.attrs = attrs
    return item


def _compact_state() -> frozenset[str]:
    from infra import moto_tuning

    return frozenset({"_attrs"}) if "compact" in moto_tuning.applied() else frozenset()


def _attribute(item: Any, blob: bytes, kind: int, name: str) -> Any:
    """``(type, raw)`` of one attribute of a stored item (from its bytes when packed), or None."""
    state = item.__dict__ if item is not None else {}
    attrs = state.get("_attrs", state.get("attrs")) if item is not None else None
    if attrs is not None:
        value = attrs.get(name)
        return (value.type, value.value) if value is not None else None
    if kind == 0:
        return marshal.loads(blob).get(name)
    value = pickle.loads(blob).get(name)
    return (value.type, value.value) if value is not None else None


def _attributes(item: Any, blob: bytes, kind: int) -> dict[str, Any]:
    """Every attribute of a stored item as ``(type, raw)``, decoded once (from its objects when unpacked)."""
    state = item.__dict__
    attrs = state.get("_attrs", state.get("attrs"))
    if attrs is not None:
        return {name: (value.type, value.value) for name, value in attrs.items()}
    if kind == 0:
        return marshal.loads(blob)  # type: ignore[no-any-return]
    return {name: (value.type, value.value) for name, value in pickle.loads(blob).items()}


def _index_value(found: Any) -> tuple[str, Any] | None:
    """``(type, raw)`` as the attribute index holds it (a number canonical: ``1``, ``1.0`` and ``1E0`` are
    one value to moto), or None (not indexable)."""
    if found is None:
        return None
    kind, raw = found
    if not isinstance(raw, str | bytes):
        return None
    return (kind, _canonical_number(raw)) if kind == "N" and isinstance(raw, str) else (kind, raw)


# --- the mapping -----------------------------------------------------------------------------------------


class DiskItems:
    """``Table.items`` for moto's code: ``items[h]`` (a :class:`Partition` view for a table with a range
    key, the item otherwise), ``items[h] = ...``, ``pop``, ``get``, ``in``, ``del``, ``values()``,
    ``keys()``, ``items()``, ``len()`` (partitions); see the module's docstring."""

    on_disk = True

    def __init__(self, hash_type: str | None, range_type: str | None, ranged: bool) -> None:
        self.ranged = ranged
        self.hash_codec = _KeyCodec(hash_type)
        self.range_codec = _KeyCodec(range_type if ranged else None)
        self.hash_type, self.range_type = hash_type, range_type
        self.hot: collections.OrderedDict[tuple[Any, Any], list[Any]] = collections.OrderedDict()
        self.touched: dict[tuple[Any, Any], Any] = {}
        self.absent: dict[tuple[Any, Any], None] = {}  # keys last found missing in the file (bounded)
        self.indexed: set[str] = set()
        with _lock:
            conn = _connection()
            _drop_pending(conn)
            _counter[0] += 1
            self.name = f"{os.getpid()}_{_counter[0]}"
            # A rowid table (the key in its own index): a WITHOUT ROWID table keeps whole rows in its key's b-tree,
            # slow for rows of a kilobyte (writes were 6 % of the local run's main process).
            conn.execute(f"CREATE TABLE i{self.name} (h, r, hs, rs, hk, rk, data BLOB, kind INTEGER, "
                         "PRIMARY KEY (h, r))")
            conn.execute(f"CREATE TABLE x{self.name} (name TEXT, vt TEXT, v, h, r)")
            conn.execute(f"CREATE INDEX x{self.name}_v ON x{self.name} (name, vt, v)")
            conn.execute(f"CREATE INDEX x{self.name}_k ON x{self.name} (h, r)")
            order = (["hs"] if self.hash_codec.numeric else []) + ["h"] + (
                ["rs"] if self.range_codec.numeric else []) + ["r"]
            if order != ["h", "r"]:
                conn.execute(f"CREATE INDEX i{self.name}_o ON i{self.name} ({', '.join(order)})")
            self.order = order
            self._get_sql = f"SELECT data, kind, hk, rk FROM i{self.name} WHERE h = ? AND r = ?"
            self.partition_order = [c for c in order if c in ("rs", "r")]
        import weakref

        weakref.finalize(self, _forget, self.name)

    # -- plumbing

    def _sql(self, statement: str, params: Any = ()) -> list[Any]:
        with _lock:
            return _connection().execute(statement.format(t=self.name), params).fetchall()

    def _ids(self, key: tuple[Any, Any]) -> tuple[Any, Any]:
        """The key's identity columns (the working set's and the touched set's keys: plain strings hash cheaply,
        moto's ``DynamoType`` hashes by its decimal-cast value)."""
        return self.hash_codec.identity(key[0]), self.range_codec.identity(key[1])

    def _touch(self, ids: tuple[Any, Any], item: Any) -> None:
        self.touched[ids] = item
        _touched_stores[id(self)] = self

    def _keys_of(self, h: Any, r: Any, hk: Any, rk: Any) -> tuple[Any, Any]:
        hash_key = _dynamo_type(self.hash_type or "S", hk if hk is not None else h)
        range_key = _dynamo_type(self.range_type or "S", rk if rk is not None else r) if self.ranged else None
        return hash_key, range_key

    def _build(self, row: Any) -> tuple[tuple[Any, Any], Any]:
        h, r, hk, rk, blob, kind = row
        entry = self.hot.get((h, r))
        if entry is not None:
            item = entry[0]
            return (item.hash_key, item.range_key if self.ranged else None), item
        key = self._keys_of(h, r, hk, rk)
        return key, _item(key[0], key[1], blob, kind)

    def _mistyped(self, hash_key: Any, range_key: Any = None) -> bool:
        """A key of another type than the table's (moto's dict finds nothing under it: ``DynamoType``s of
        different types are unequal, though the identity columns hold only the value)."""
        hash_type, range_type = self.hash_type, self.range_type
        return ((hash_type is not None and getattr(hash_key, "type", hash_type) != hash_type)
                or (range_key is not None and range_type is not None
                    and getattr(range_key, "type", range_type) != range_type))

    def lookup(self, key: tuple[Any, Any], touch: bool = True) -> Any:
        """The item under ``key`` (None: none), kept in the working set and marked touched."""
        if self._mistyped(key[0], key[1]):
            return None
        ids = self._ids(key)
        touched = self.touched
        if ids in touched:
            return touched[ids]
        entry = self.hot.get(ids)
        if entry is not None:
            self.hot.move_to_end(ids)
            if touch:
                self._touch(ids, entry[0])
            return entry[0]
        if ids in self.absent:
            return None
        with _lock:
            rows = _connection().execute(self._get_sql, ids).fetchall()
        if not rows:
            absent = self.absent
            absent[ids] = None
            if len(absent) > ABSENT_KEYS:
                del absent[next(iter(absent))]
            return None
        blob, kind, hk, rk = rows[0]
        if hk is not None or rk is not None:
            key = self._keys_of(ids[0], ids[1], hk, rk)
        item = _item(key[0], key[1] if self.ranged else None, blob, kind)
        self.hot[ids] = [item, blob]
        if touch:
            self._touch(ids, item)
        return item

    def store(self, key: tuple[Any, Any], item: Any) -> None:
        ids = self._ids(key)
        entry = self.hot.get(ids)
        if entry is None:
            self.hot[ids] = [item, None]
            self.absent.pop(ids, None)
        else:
            entry[0] = item
            self.hot.move_to_end(ids)
        self._touch(ids, item)

    def remove(self, key: tuple[Any, Any]) -> Any:
        item = self.lookup(key, touch=False)
        if item is not None:
            ids = self._ids(key)
            self.hot.pop(ids, None)
            self._touch(ids, None)
        return item

    def flush(self) -> int:
        """Write the touched items whose bytes changed, and the deletions; return how many rows changed.

        The working set learns the bytes now in the file, and the touched set is cleared, only once the SQL
        has succeeded: if it fails (the disk full, say) every touched item stays touched and in the working
        set, the store stays registered for the next request's end, and the error is raised; the next flush
        writes them again (every statement is idempotent)."""
        if not self.touched:
            return 0
        with _lock:
            conn = _connection()
            table = self.name
            writes, deletes = [], []
            for ids, item in self.touched.items():
                if item is None:
                    deletes.append(ids)
                    continue
                entry = self.hot.get(ids)  # entry[1]: the bytes in the file for this key (None: unknown or none)
                known = entry[1] if entry is not None else None
                state = item.__dict__
                if known is not None and state.get("_attrs") is None and state.get("_packed") is known:
                    continue
                blob, kind = _pack(item)
                if known is not None and blob == known:
                    continue
                writes.append((ids, item, blob, kind))
            try:
                conn.execute("BEGIN")
                self._write(conn, table, writes, deletes)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:  # (sqlite may have rolled it back itself: SQLITE_FULL, SQLITE_IOERR)
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                _touched_stores[id(self)] = self  # (settle_all took it off the list before settling it)
                raise
            for ids, item, blob, kind in writes:
                entry = self.hot.get(ids)
                if entry is not None:
                    entry[1] = blob
                if kind == 0:
                    item.__dict__["_sarafan_disk"] = blob  # moto_tuning.pack_unpacked_items packs it into these bytes
            self.touched.clear()
            return len(writes) + len(deletes)

    def _write(self, conn: sqlite3.Connection, table: str, writes: list[tuple[Any, Any, bytes, int]],
               deletes: list[tuple[Any, Any]]) -> None:
        if deletes:
            conn.executemany(f"DELETE FROM i{table} WHERE h = ? AND r = ?", deletes)
            if self.indexed:
                conn.executemany(f"DELETE FROM x{table} WHERE h = ? AND r = ?", deletes)
        if writes:
            conn.executemany(
                f"INSERT OR REPLACE INTO i{table} (h, r, hs, rs, hk, rk, data, kind) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(ids[0], ids[1], self.hash_codec.sort(item.hash_key), self.range_codec.sort(item.range_key),
                  self.hash_codec.original(item.hash_key), self.range_codec.original(item.range_key), blob, kind)
                 for ids, item, blob, kind in writes])
            if self.indexed:
                conn.executemany(f"DELETE FROM x{table} WHERE h = ? AND r = ?", [w[0] for w in writes])
                rows = []
                for ids, item, blob, kind in writes:
                    attrs = _attributes(item, blob, kind)
                    for name in self.indexed:
                        value = _index_value(attrs.get(name))
                        if value is not None:
                            rows.append((name, value[0], value[1], ids[0], ids[1]))
                if rows:
                    conn.executemany(f"INSERT INTO x{table} (name, vt, v, h, r) VALUES (?, ?, ?, ?, ?)", rows)

    def settle(self, limit: int | None = None) -> None:
        """End of a request: write through, then cut the working set to ``limit`` items."""
        self.flush()
        keep = hot_limit() if limit is None else limit
        hot = self.hot
        while len(hot) > keep:
            hot.popitem(last=False)

    # -- walks (the file is the truth after a flush)

    def rows(self, where: str = "", params: tuple[Any, ...] = (), order: list[str] | None = None,
             after: tuple[Any, ...] | None = None) -> Iterator[tuple[tuple[Any, Any], Any]]:
        """``(key, item)`` in moto's key order, read in chunks (the working set's object where there is one)."""
        order = order or self.order
        columns = ", ".join(order)
        marker = ", ".join("?" * len(order))
        while True:
            self.flush()
            clauses = [where] if where else []
            args: list[Any] = list(params)
            if after is not None:
                clauses.append(f"({columns}) > ({marker})")
                args.extend(after)
            sql = (f"SELECT h, r, hk, rk, data, kind, {columns} FROM i{{t}}"
                   + (" WHERE " + " AND ".join(clauses) if clauses else "")
                   + f" ORDER BY {columns} LIMIT {CHUNK}")
            chunk = self._sql(sql, tuple(args))
            for row in chunk:
                yield self._build(row[:6])
            if len(chunk) < CHUNK:
                return
            after = tuple(chunk[-1][6:])

    def sorted_items(self, start: tuple[Any, Any] | None = None) -> Iterator[Any]:
        """Every item in moto's ``all_items`` order; after ``start`` (an exclusive start key) if given."""
        after = None
        if start is not None:
            values = {"h": self.hash_codec.identity(start[0]), "r": self.range_codec.identity(start[1]),
                      "hs": self.hash_codec.sort(start[0]), "rs": self.range_codec.sort(start[1])}
            after = tuple(values[c] for c in self.order)
        for _key, item in self.rows(after=after):
            yield item

    def partition_rows(self, hash_key: Any) -> list[tuple[tuple[Any, Any], Any]]:
        if self._mistyped(hash_key):
            return []
        return list(self.rows("h = ?", (self.hash_codec.identity(hash_key),), self.partition_order))

    def partition_keys_after(self, after: Any, limit: int) -> list[Any]:
        """Up to ``limit`` hash keys after ``after`` (None: from the first), in order (the TTL sweep's cursor)."""
        self.flush()
        if after is None:
            rows = self._sql(f"SELECT h, MIN(hk) FROM i{{t}} GROUP BY h ORDER BY h LIMIT {int(limit)}")
        else:
            rows = self._sql(f"SELECT h, MIN(hk) FROM i{{t}} WHERE h > ? GROUP BY h ORDER BY h LIMIT {int(limit)}",
                             (self.hash_codec.identity(after),))
        return [_dynamo_type(self.hash_type or "S", hk if hk is not None else h) for h, hk in rows]

    def count_items(self) -> int:
        self.flush()
        return int(self._sql("SELECT COUNT(*) FROM i{t}")[0][0])

    def stored_bytes(self) -> int:
        self.flush()
        return int(self._sql("SELECT COALESCE(SUM(LENGTH(data)), 0) FROM i{t}")[0][0])

    def index_candidates(self, name: str, value: tuple[str, Any]) -> list[Any]:
        """Items whose ``name`` attribute is ``value`` (``(type, raw)``), from the index in the file (built
        on the first query of ``name``)."""
        self.flush()
        wanted = _index_value(value)
        if wanted is None:
            return []
        if name not in self.indexed:
            self._build_index(name)
        rows = self._sql("SELECT i.h, i.r, i.hk, i.rk, i.data, i.kind FROM x{t} AS x JOIN i{t} AS i "
                         "ON i.h = x.h AND i.r = x.r WHERE x.name = ? AND x.vt = ? AND x.v = ?",
                         (name, wanted[0], wanted[1]))
        return [self._build(row)[1] for row in rows]

    def _build_index(self, name: str) -> None:
        """The index rows of ``name`` for every stored item (one walk of the file, written a chunk at a time)."""
        insert = f"INSERT INTO x{self.name} (name, vt, v, h, r) VALUES (?, ?, ?, ?, ?)"
        batch: list[tuple[Any, ...]] = []
        try:
            for key, item in self.rows():
                value = _index_value(_attribute(item, item.__dict__.get("_packed"), 0, name))
                if value is not None:
                    ids = self._ids(key)
                    batch.append((name, value[0], value[1], ids[0], ids[1]))
                if len(batch) >= CHUNK * 16:
                    with _lock:
                        _connection().executemany(insert, batch)
                    batch = []
            with _lock:
                _connection().executemany(insert, batch)
        except BaseException:  # (the disk full half way) the chunks written go: the next query builds it again
            with _lock, contextlib.suppress(sqlite3.Error):
                _connection().execute(f"DELETE FROM x{self.name} WHERE name = ?", (name,))
            raise
        self.indexed.add(name)

    # -- the mapping protocol

    def __getitem__(self, hash_key: Any) -> Any:
        if self.ranged:
            return Partition(self, hash_key)
        item = self.lookup((hash_key, None))
        if item is None:
            raise KeyError(hash_key)
        return item

    def get(self, hash_key: Any, default: Any = None) -> Any:
        if self.ranged:  # a view whether or not it holds items (its truth value says), as ``items[h]``
            return Partition(self, hash_key)
        item = self.lookup((hash_key, None))
        return default if item is None else item

    def __setitem__(self, hash_key: Any, value: Any) -> None:
        if not self.ranged:
            self.store((hash_key, None), value)
            return
        self.pop(hash_key, None)
        for range_key, item in dict(value).items():
            self.store((hash_key, range_key), item)

    def __delitem__(self, hash_key: Any) -> None:
        if self.pop(hash_key, None) is None and not self.ranged:  # (an empty partition is one to moto's dict)
            raise KeyError(hash_key)

    _missing = object()

    def pop(self, hash_key: Any, default: Any = _missing) -> Any:
        if not self.ranged:
            item = self.remove((hash_key, None))
        else:
            members = {key[1]: item for key, item in self.partition_rows(hash_key)}
            for range_key in members:
                self.remove((hash_key, range_key))
            item = members or None
        if item is None:
            if default is DiskItems._missing:
                raise KeyError(hash_key)
            return default
        return item

    def __contains__(self, hash_key: Any) -> bool:
        if not self.ranged:
            return self.lookup((hash_key, None), touch=False) is not None
        if self._mistyped(hash_key):
            return False
        self.flush()
        return bool(self._sql("SELECT 1 FROM i{t} WHERE h = ? LIMIT 1", (self.hash_codec.identity(hash_key),)))

    def keys(self) -> Iterator[Any]:
        after: Any = None
        while True:
            chunk = self.partition_keys_after(after, CHUNK)
            yield from chunk
            if len(chunk) < CHUNK:
                return
            after = chunk[-1]

    __iter__ = keys

    def values(self) -> Iterator[Any]:
        if not self.ranged:
            for _key, item in self.rows():
                yield item
            return
        for _hash_key, partition in self.items():
            yield partition

    def items(self) -> Iterator[tuple[Any, Any]]:
        """``(hash key, partition)``; a partition of a table with a range key as a plain dict (a copy)."""
        if not self.ranged:
            for key, item in self.rows():
                yield key[0], item
            return
        current: Any = None
        members: dict[Any, Any] = {}
        for key, item in self.rows():
            if current is not None and key[0] != current:
                yield current, members
                members = {}
            current = key[0]
            members[key[1]] = item
        if current is not None:
            yield current, members

    def __len__(self) -> int:
        self.flush()
        return int(self._sql("SELECT COUNT(DISTINCT h) FROM i{t}")[0][0])

    def __bool__(self) -> bool:
        self.flush()
        return bool(self._sql("SELECT 1 FROM i{t} LIMIT 1"))

    def clear(self) -> None:
        self.touched.clear()
        self.hot.clear()
        self.absent.clear()
        self._sql("DELETE FROM i{t}")
        self._sql("DELETE FROM x{t}")

    def __deepcopy__(self, memo: dict[int, Any]) -> DiskItems:
        self.flush()
        clone = DiskItems(self.hash_type, self.range_type, self.ranged)
        with _lock:
            conn = _connection()
            conn.execute(f"INSERT INTO i{clone.name} SELECT h, r, hs, rs, hk, rk, data, kind FROM i{self.name}")
            conn.execute(f"INSERT INTO x{clone.name} SELECT * FROM x{self.name}")
        clone.indexed = set(self.indexed)
        return clone

    def __repr__(self) -> str:
        return f"<DiskItems {self.name}: {len(self.hot)} hot>"


class Partition:
    """``table.items[h]`` of a table with a range key: range key -> ``Item``, read from the working set or
    the file, written through at the request's end."""

    __slots__ = ("hash_key", "store")

    def __init__(self, store: DiskItems, hash_key: Any) -> None:
        self.store, self.hash_key = store, hash_key

    def __getitem__(self, range_key: Any) -> Any:
        item = self.store.lookup((self.hash_key, range_key))
        if item is None:
            raise KeyError(range_key)
        return item

    def get(self, range_key: Any, default: Any = None) -> Any:
        item = self.store.lookup((self.hash_key, range_key))
        return default if item is None else item

    def __setitem__(self, range_key: Any, item: Any) -> None:
        self.store.store((self.hash_key, range_key), item)

    def pop(self, range_key: Any, default: Any = DiskItems._missing) -> Any:
        item = self.store.remove((self.hash_key, range_key))
        if item is None:
            if default is DiskItems._missing:
                raise KeyError(range_key)
            return default
        return item

    def __delitem__(self, range_key: Any) -> None:
        self.pop(range_key)

    def __contains__(self, range_key: Any) -> bool:
        return self.store.lookup((self.hash_key, range_key), touch=False) is not None

    def _members(self) -> list[tuple[tuple[Any, Any], Any]]:
        return self.store.partition_rows(self.hash_key)

    def values(self) -> list[Any]:
        return [item for _key, item in self._members()]

    def keys(self) -> list[Any]:
        return [key[1] for key, _item in self._members()]

    def items(self) -> list[tuple[Any, Any]]:
        return [(key[1], item) for key, item in self._members()]

    def __iter__(self) -> Iterator[Any]:
        return iter(self.keys())

    def __len__(self) -> int:
        if self.store._mistyped(self.hash_key):
            return 0
        self.store.flush()
        return int(self.store._sql("SELECT COUNT(*) FROM i{t} WHERE h = ?",
                                   (self.store.hash_codec.identity(self.hash_key),))[0][0])

    def __bool__(self) -> bool:
        return self.hash_key in self.store

    def __eq__(self, other: object) -> bool:
        return dict(self.items()) == (dict(other.items()) if isinstance(other, Partition) else other)

    __hash__ = None  # type: ignore[assignment]


# --- requests -------------------------------------------------------------------------------------------


def settle_all() -> None:
    """The end of a DynamoDB request (under ``ENGINE_LOCK``): every store touched writes through and is cut
    back to :data:`HOT_ITEMS` (per table); the tables of stores gone since are dropped from the file."""
    if _to_drop:
        with _lock:
            _drop_pending(_connection())
    if not _touched_stores:
        return
    stores = list(_touched_stores.values())
    _touched_stores.clear()
    failed: BaseException | None = None
    for store in stores:  # every store is settled even if one fails (a failed one stays registered)
        try:
            store.settle()
        except Exception as error:
            failed = failed or error
    if failed is not None:
        raise failed


def hot_items() -> int:
    """Items held as objects by the stores touched since the last request end (for the memory bench)."""
    return sum(len(s.hot) for s in _touched_stores.values())


def is_disk(items: Any) -> bool:
    return getattr(items, "on_disk", False) is True


_installed: list[bool] = []


def install(hot: int | None = None) -> None:
    """Every moto ``Table`` created from now on keeps its items in :class:`DiskItems` (idempotent);
    ``SARAFAN_MOTO_HOT_ITEMS`` sets :data:`HOT_ITEMS`, ``SARAFAN_MOTO_DISK=0`` keeps moto's dict."""
    global HOT_ITEMS, _lock

    if hot is not None:
        HOT_ITEMS = hot
    elif os.environ.get("SARAFAN_MOTO_HOT_ITEMS", "").strip().isdigit():
        HOT_ITEMS = int(os.environ["SARAFAN_MOTO_HOT_ITEMS"])
    if _installed or os.environ.get("SARAFAN_MOTO_DISK", "1").strip() == "0":
        return
    from moto.dynamodb.models.table import Table

    from infra.moto_tuning import ENGINE_LOCK

    _lock = ENGINE_LOCK
    original_init = Table.__init__
    original_len = Table.__len__
    original_all_items = Table.all_items
    original_scan = Table.scan

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        if not self.items:  # a new table: moto's empty defaultdict
            self.items = DiskItems(self.hash_key_type, self.range_key_type, self.range_key_attr is not None)

    def __len__(self: Any) -> int:
        if is_disk(self.items):
            return self.items.count_items()  # type: ignore[no-any-return]
        return original_len(self)  # type: ignore[no-any-return]

    def all_items(self: Any) -> Any:
        if is_disk(self.items):
            start = getattr(_scan_start, "key", None)
            _scan_start.key = None
            return self.items.sorted_items(start)
        return original_all_items(self)

    def scan(self: Any, filters: Any, limit: Any, exclusive_start_key: Any, *args: Any, **kwargs: Any) -> Any:
        index_name = kwargs.get("index_name", args[1] if len(args) > 1 else None)
        if is_disk(self.items) and exclusive_start_key and not index_name:
            from moto.dynamodb.models.dynamo_type import DynamoType

            try:
                hash_key = DynamoType(exclusive_start_key[self.hash_key_attr])
                range_key = DynamoType(exclusive_start_key[self.range_key_attr]) if self.range_key_attr else None
                _scan_start.key = (hash_key, range_key)
            except (KeyError, TypeError, AttributeError):
                _scan_start.key = None
        try:
            return original_scan(self, filters, limit, exclusive_start_key, *args, **kwargs)
        finally:
            _scan_start.key = None

    for name, patched, original in (("__init__", __init__, original_init), ("__len__", __len__, original_len),
                                    ("all_items", all_items, original_all_items), ("scan", scan, original_scan)):
        patched.__wrapped__ = original  # type: ignore[attr-defined, union-attr]
        setattr(Table, name, patched)
    _installed.append(True)


_scan_start = threading.local()
