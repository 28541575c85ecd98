"""``python3 infra/dev.py run --data DIR``: the local run's state kept across restarts.

How: the embedded moto keeps everything in memory, so the run takes **snapshots** of it.
On a clean stop (Ctrl-C, SIGTERM; after the API has stopped taking requests and the last
one finished) and every ``--save-every`` seconds while something changed, it writes

* ``DIR/aws-state.json.gz``: every DynamoDB table of the embedded moto (its key schema,
  indexes, stream and TTL settings, and every item as DynamoDB JSON) and every symmetric KMS
  key with its key material and aliases (so what was encrypted before a restart still decrypts);
* ``DIR/keys.json`` (mode 0600): the master secret the webhook secrets derive from, the operator
  key, the demo program's keys and the ``SARAFAN_*`` settings the run chose, so the next start
  prints and accepts the same keys and secrets.

Each file is written to a temporary name and renamed, so a snapshot is whole or absent. The
next ``run --data DIR`` loads the snapshot into moto before anything else starts.

Limits: what happened after the last snapshot is lost if the process is killed (``kill -9``,
out of memory, power cut); a DynamoDB stream starts empty after a restart (records not yet
consumed are not kept); SNS, SES, SQS and the other services start empty (the run recreates
what it needs); asymmetric KMS keys are not kept; the files hold plain secrets for this machine
only; the format belongs to this version of the local run (a snapshot written by another is
refused: move the directory away to start over). Writing or loading takes about 4 s of CPU per
100,000 items.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

FORMAT = 1
AWS_FILE = "aws-state.json.gz"
KEYS_FILE = "keys.json"

#: DynamoDB actions that change data (what makes an autosave due).
WRITE_ACTIONS = frozenset({
    "PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems", "CreateTable", "DeleteTable",
    "UpdateTable", "UpdateTimeToLive", "ExecuteStatement", "BatchExecuteStatement", "ExecuteTransaction",
})


def _write_atomically(path: Path, data: bytes, mode: int = 0o600) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)


class _WriteCounter:
    """Counts DynamoDB write requests, whoever sends them (app, jobs, ``aws --endpoint-url``)."""

    def __init__(self) -> None:
        self.count = 0
        self._installed = False

    def install(self) -> None:
        if self._installed:
            return
        from moto.dynamodb.responses import DynamoHandler

        original = DynamoHandler.call_action
        counter = self

        def call_action(handler: Any) -> Any:
            if handler._get_action() in WRITE_ACTIONS:
                counter.count += 1
            return original(handler)

        DynamoHandler.call_action = call_action  # type: ignore[method-assign]
        self._installed = True


WRITES = _WriteCounter()


# --- DynamoDB -----------------------------------------------------------------------------


def _dynamodb_tables() -> Iterator[tuple[str, str, Any]]:
    from moto.dynamodb.models import dynamodb_backends

    for account, regions in list(dynamodb_backends.items()):
        for region, backend in list(regions.items()):
            for table in list(backend.tables.values()):
                yield account, region, table


def _item_rows(table: Any) -> list[dict[str, Any]]:
    return [item.to_json()["Attributes"] for item in table.all_items()]


def dump_dynamodb() -> list[dict[str, Any]]:
    """Every table's settings and items (call with moto paused: ``moto_tuning.engine_paused()``)."""
    tables = []
    for account, region, table in _dynamodb_tables():
        description = table.describe()["TableDescription"]
        tables.append({
            "account": account,
            "region": region,
            "name": table.name,
            "key_schema": description["KeySchema"],
            "attribute_definitions": description["AttributeDefinitions"],
            "global_indexes": [{"IndexName": i["IndexName"], "KeySchema": i["KeySchema"], "Projection": i["Projection"]}
                               for i in description.get("GlobalSecondaryIndexes", [])],
            "local_indexes": [{"IndexName": i["IndexName"], "KeySchema": i["KeySchema"], "Projection": i["Projection"]}
                              for i in description.get("LocalSecondaryIndexes", [])],
            "stream": description.get("StreamSpecification"),
            "ttl": dict(table.ttl),
            "items": _item_rows(table),
        })
    return tables


def load_dynamodb(tables: list[dict[str, Any]]) -> int:
    """Recreate the tables in moto and put their items back (no stream records); return the item count."""
    from moto.dynamodb.models import dynamodb_backends
    from moto.dynamodb.models.dynamo_type import DynamoType, Item

    count = 0
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
        # Straight into the table: these items were valid when moto stored them, and loading
        # is not a change to stream.
        hash_attr, range_attr = table.hash_key_attr, table.range_key_attr
        for attrs in saved["items"]:
            hash_key = DynamoType(attrs[hash_attr])
            range_key = DynamoType(attrs[range_attr]) if range_attr else None
            item = Item(hash_key, range_key, attrs)
            if range_key is None:
                table.items[hash_key] = item  # type: ignore[assignment]
            else:
                table.items[hash_key][range_key] = item
            count += 1
    return count


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
        self.saved_writes = 0
        self.last_save_seconds: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._save_lock = threading.Lock()

    @property
    def persistent(self) -> bool:
        return self.directory is not None

    def _path(self, name: str) -> Path:
        assert self.directory is not None
        return self.directory / name

    # keys and settings
    def load_keys(self) -> dict[str, Any]:
        if not self.persistent or not self._path(KEYS_FILE).exists():
            return {}
        data = json.loads(self._path(KEYS_FILE).read_text(encoding="utf-8"))
        if data.get("format") != FORMAT:
            raise SystemExit(f"{self._path(KEYS_FILE)} was written by another version of the local run; "
                             "move the directory away to start over")
        return data  # type: ignore[no-any-return]

    def save_keys(self, keys: dict[str, Any]) -> None:
        if not self.persistent:
            return
        self.directory.mkdir(parents=True, exist_ok=True)  # type: ignore[union-attr]
        os.chmod(self.directory, 0o700)  # type: ignore[arg-type]
        payload = {"format": FORMAT, **keys}
        _write_atomically(self._path(KEYS_FILE), json.dumps(payload, ensure_ascii=False, indent=2).encode())

    # AWS state
    def restore(self) -> dict[str, int] | None:
        """Load the last snapshot into moto (before anything else talks to it)."""
        WRITES.install()
        if not self.persistent or not self._path(AWS_FILE).exists():
            return None
        started = time.monotonic()
        with gzip.open(self._path(AWS_FILE), "rt", encoding="utf-8") as src:
            data = json.load(src)
        if data.get("format") != FORMAT:
            raise SystemExit(f"{self._path(AWS_FILE)} was written by another version of the local run; "
                             f"move {self.directory} away to start over")
        loaded = {"items": load_dynamodb(data["dynamodb"]), "tables": len(data["dynamodb"]),
                  "kms_keys": load_kms(data.get("kms", []))}
        self.saved_writes = WRITES.count
        self.log(f"restored {loaded['items']} items in {loaded['tables']} table(s) and {loaded['kms_keys']} KMS "
                 f"key(s) from {self._path(AWS_FILE)} in {time.monotonic() - started:.1f} s")
        return loaded

    def save(self, reason: str = "snapshot") -> bool:
        """Write a snapshot if anything changed since the last one; True if written."""
        if not self.persistent:
            return False
        from infra import moto_tuning

        with self._save_lock:
            writes = WRITES.count
            if writes == self.saved_writes and self._path(AWS_FILE).exists():
                return False
            started = time.monotonic()
            with moto_tuning.engine_paused():  # one consistent state: no DynamoDB request runs meanwhile
                writes = WRITES.count
                tables = dump_dynamodb()
                data = {"format": FORMAT, "saved_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                        "dynamodb": tables, "kms": dump_kms()}
            # Plain JSON values from here on: serialised outside the pause.
            blob = json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
            self.directory.mkdir(parents=True, exist_ok=True)  # type: ignore[union-attr]
            _write_atomically(self._path(AWS_FILE), gzip.compress(blob, compresslevel=1))
            self.saved_writes = writes
            self.last_save_seconds = time.monotonic() - started
            items = sum(len(t["items"]) for t in tables)
            self.log(f"{reason}: saved {items} items to {self._path(AWS_FILE)} in {self.last_save_seconds:.1f} s")
            return True

    def start_autosave(self, every: float) -> None:
        if not self.persistent or every <= 0:
            return

        def loop() -> None:
            while not self._stop.wait(every):
                try:
                    self.save("autosave")
                except Exception as exc:  # a failed autosave is reported; the run goes on
                    self.log(f"autosave failed: {type(exc).__name__}: {exc}")

        self._thread = threading.Thread(target=loop, name="sarafan-autosave", daemon=True)
        self._thread.start()

    def stop_autosave(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
