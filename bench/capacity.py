"""DynamoDB request units computed from the real request and item bytes (for the benchmarks).

Moto does not report consumed capacity faithfully, so :class:`Meter` computes it the way
DynamoDB bills on-demand tables, from what the app actually sends and what the table holds:

* item size = UTF-8 length of every attribute name + the size of its value (strings: UTF-8
  length; numbers: 1 byte per 2 significant digits + 1; binary: length; null/bool: 1 byte;
  list/map: 3 bytes + 1 byte per element + the elements), see the DynamoDB developer guide
  "Item sizes and formats";
* a write (Put/Update/Delete) costs 1 WRU per started KB of the *larger* of the item before
  and after the write; inside ``TransactWriteItems`` 2× (condition checks included);
* every write of an item carrying a GSI key costs GSI writes, per index (GSI1 and GSI2): 1 WRU
  per started KB of the index entry (the whole item: both indexes project ALL), a key change is
  a delete + a put;
* eventually consistent reads: 0.5 RRU per started 4 KB per item of ``GetItem`` and
  ``BatchGetItem`` (a missing key still costs the minimum); ``Query`` sums the items' sizes
  before rounding; strongly consistent reads double.

The meter hooks the botocore client under PynamoDB's shared connection; the before/after
states of written items are read through a second client, unhooked and uncounted.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

#: The table's global secondary indexes (both project ALL attributes: infra/resources.yaml).
GSI_KEYS = {"gsi1": ("GSI1PK", "GSI1SK"), "gsi2": ("GSI2PK", "GSI2SK")}


def number_size(text: str) -> int:
    """DynamoDB's size of a number: about 1 byte per 2 significant digits, plus 1 byte."""
    digits = Decimal(text).normalize().as_tuple().digits
    significant = len(digits) if any(digits) else 1
    return math.ceil(significant / 2) + 1


def value_size(value: dict[str, Any]) -> int:
    (kind, raw), = value.items()
    if kind == "S":
        return len(raw.encode("utf-8"))
    if kind == "N":
        return number_size(raw)
    if kind == "B":
        return len(raw) if isinstance(raw, bytes | bytearray) else len(raw.encode())
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(s.encode("utf-8")) for s in raw)
    if kind == "NS":
        return sum(number_size(n) for n in raw)
    if kind == "BS":
        return sum(len(b) for b in raw)
    if kind == "L":
        return 3 + sum(1 + value_size(v) for v in raw)
    if kind == "M":
        return 3 + sum(1 + len(k.encode("utf-8")) + value_size(v) for k, v in raw.items())
    raise ValueError(f"unknown DynamoDB type {kind}")


def item_size(item: dict[str, Any] | None) -> int:
    if not item:
        return 0
    return sum(len(name.encode("utf-8")) + value_size(v) for name, v in item.items())


def write_units(size: int) -> int:
    return max(1, math.ceil(size / 1024))


def read_units(size: int, consistent: bool) -> float:
    units = max(1, math.ceil(size / 4096))
    return float(units) if consistent else units / 2


@dataclass
class Usage:
    calls: Counter[str] = field(default_factory=Counter)
    wru: float = 0.0
    rru: float = 0.0
    items_written: int = 0
    bytes_written: int = 0
    items_read: int = 0
    #: WRU by what was written (the item's ``entity`` discriminator, or "gsi").
    wru_by_entity: Counter[str] = field(default_factory=Counter)
    bytes_by_entity: Counter[str] = field(default_factory=Counter)
    #: Every item written: (entity, item bytes after the write, WRU of the item, WRU of its index copies).
    writes: list[tuple[str, int, int, int]] = field(default_factory=list)
    #: Every ``ConditionCheck`` of a transaction: (entity of the item checked, its bytes, WRU: 2 per started KB).
    checks: list[tuple[str, int, int]] = field(default_factory=list)
    #: Wall time of the request, moto in-process included (an upper bound of the app's own time).
    seconds: float = 0.0
    #: Time inside DynamoDB calls (moto's work, in process) and inside the meter's own hooks.
    store_seconds: float = 0.0
    meter_seconds: float = 0.0

    @property
    def app_seconds(self) -> float:
        """The app's own time: the request minus the store's and the meter's."""
        return max(self.seconds - self.store_seconds - self.meter_seconds, 0.0)

    @property
    def round_trips(self) -> int:
        return sum(self.calls.values())

    def add(self, other: Usage) -> None:
        """Count ``other``'s calls, units and items here too (times are not added)."""
        self.calls.update(other.calls)
        self.wru += other.wru
        self.rru += other.rru
        self.items_written += other.items_written
        self.bytes_written += other.bytes_written
        self.items_read += other.items_read
        self.wru_by_entity.update(other.wru_by_entity)
        self.bytes_by_entity.update(other.bytes_by_entity)
        self.writes += other.writes
        self.checks += other.checks


def _key_of(table_keys: tuple[str, str], item: dict[str, Any]) -> dict[str, Any]:
    return {k: item[k] for k in table_keys}


class Meter:
    """Counts calls and request units of every DynamoDB call made through ``client``."""

    def __init__(self, client: Any, side_client: Any, table_keys: tuple[str, str] = ("PK", "SK")) -> None:
        self.client = client
        self.side = side_client
        self.table_keys = table_keys
        self.usage = Usage()
        self.largest_transaction = 0
        self._pending: list[tuple[str, str, dict[str, Any], dict[str, Any] | None, int]] = []
        events = client.meta.events
        events.register("before-call.dynamodb", self._before)
        events.register("after-call.dynamodb", self._after)

    def take(self) -> Usage:
        out, self.usage = self.usage, Usage()
        return out

    # ------------------------------------------------------------------ hooks

    def _current(self, table: str, key: dict[str, Any]) -> dict[str, Any] | None:
        return self.side.get_item(TableName=table, Key=key, ConsistentRead=True).get("Item")  # type: ignore[no-any-return]

    def _before(self, model: Any = None, params: Any = None, **_: Any) -> None:
        started = time.perf_counter()
        try:
            self._before_call(model, params)
        finally:
            self._sent = time.perf_counter()
            self.usage.meter_seconds += self._sent - started

    def _after(self, model: Any = None, parsed: Any = None, http_response: Any = None, **_: Any) -> None:
        started = time.perf_counter()
        self.usage.store_seconds += started - getattr(self, "_sent", started)
        try:
            self._after_call(model, parsed, http_response)
        finally:
            self.usage.meter_seconds += time.perf_counter() - started

    def _before_call(self, model: Any, params: Any) -> None:
        name = model.name
        self.usage.calls[name] += 1
        body = params.get("body") if isinstance(params, dict) else None
        request = _decode(body)
        self._pending = []
        if name == "TransactWriteItems":
            self.largest_transaction = max(self.largest_transaction, len(request["TransactItems"]))
            for op in request["TransactItems"]:
                (kind, spec), = op.items()
                table = spec["TableName"]
                key = _key_of(self.table_keys, spec["Item"]) if kind == "Put" else spec["Key"]
                self._pending.append((kind, table, key, self._current(table, key), 2))
        elif name in ("PutItem", "UpdateItem", "DeleteItem"):
            table = request["TableName"]
            key = _key_of(self.table_keys, request["Item"]) if name == "PutItem" else request["Key"]
            self._pending.append((name.replace("Item", ""), table, key, self._current(table, key), 1))
        elif name == "BatchWriteItem":
            for table, requests in request["RequestItems"].items():
                for r in requests:
                    if "PutRequest" in r:
                        key = _key_of(self.table_keys, r["PutRequest"]["Item"])
                        self._pending.append(("Put", table, key, self._current(table, key), 1))
                    else:
                        key = r["DeleteRequest"]["Key"]
                        self._pending.append(("Delete", table, key, self._current(table, key), 1))
        self._request = request

    def _after_call(self, model: Any, parsed: Any, http_response: Any) -> None:
        name = model.name
        request = getattr(self, "_request", {})
        status = getattr(http_response, "status_code", 200)
        if name == "BatchGetItem":
            for table, spec in request.get("RequestItems", {}).items():
                consistent = bool(spec.get("ConsistentRead"))
                got = {_freeze(_key_of(self.table_keys, i)): i for i in parsed.get("Responses", {}).get(table, [])}
                unprocessed = {_freeze(k) for k in parsed.get("UnprocessedKeys", {}).get(table, {}).get("Keys", [])}
                for key in spec["Keys"]:
                    if _freeze(key) in unprocessed:
                        continue
                    self.usage.rru += read_units(item_size(got.get(_freeze(key))), consistent)
                self.usage.items_read += len(got)
        elif name == "GetItem":
            self.usage.rru += read_units(item_size(parsed.get("Item")), bool(request.get("ConsistentRead")))
            self.usage.items_read += 1 if parsed.get("Item") else 0
        elif name in ("Query", "Scan"):
            items = parsed.get("Items", [])
            self.usage.rru += read_units(sum(item_size(i) for i in items), bool(request.get("ConsistentRead")))
            self.usage.items_read += len(items)
        elif name == "TransactGetItems":
            for response in parsed.get("Responses", []):
                self.usage.rru += 2 * read_units(item_size(response.get("Item")), True)
                self.usage.items_read += 1 if response.get("Item") else 0
        if status >= 300 or "Error" in (parsed or {}):
            # A cancelled transaction or failed condition still costs its writes; count the attempt.
            for kind, _table, _key, before, factor in self._pending:
                self._charge(kind, before, before, factor)
            self._pending = []
            return
        for kind, table, key, before, factor in self._pending:
            after = None if kind == "Delete" else (self._current(table, key) if kind != "ConditionCheck" else before)
            self._charge(kind, before, after, factor)
        self._pending = []

    def _charge(self, kind: str, before: dict[str, Any] | None, after: dict[str, Any] | None, factor: int) -> None:
        entity = _entity(after) or _entity(before) or "?"
        size = max(item_size(before), item_size(after))
        units = factor * write_units(size)
        self.usage.wru += units
        if kind == "ConditionCheck":  # read, not written: its own line in the breakdown ("member check")
            self.usage.wru_by_entity[f"{entity} check"] += units
            self.usage.checks.append((entity, size, units))
            return
        self.usage.wru_by_entity[entity] += units
        self.usage.items_written += 1
        self.usage.bytes_written += item_size(after)
        self.usage.bytes_by_entity[entity] += item_size(after)
        gsi_total = 0
        for index, names in GSI_KEYS.items():
            old = _gsi_key(before, names)
            new = _gsi_key(after, names)
            gsi = 0
            if old and new and old == new:
                gsi = write_units(max(item_size(before), item_size(after)))
            else:
                if old:
                    gsi += write_units(item_size(before))
                if new:
                    gsi += write_units(item_size(after))
            if gsi:
                self.usage.wru += gsi
                self.usage.wru_by_entity[f"{index} copies"] += gsi
                gsi_total += gsi
        self.usage.writes.append((entity, item_size(after), units, gsi_total))


def _entity(item: dict[str, Any] | None) -> str | None:
    if not item or "entity" not in item:
        return None
    return str(item["entity"].get("S"))


def _gsi_key(item: dict[str, Any] | None, names: tuple[str, str]) -> tuple[str, str] | None:
    if not item or not all(k in item for k in names):
        return None
    return item[names[0]]["S"], item[names[1]]["S"]


def _freeze(key: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(sorted((k, next(iter(v.values()))) for k, v in key.items()))


def _decode(body: Any) -> dict[str, Any]:
    import json

    params = getattr(body, "params", None)
    if params is not None:  # the local engine's in-process hop: ``{}`` on the wire, the parameters beside it
        return params  # type: ignore[no-any-return]  (infra/moto_tuning._DirectBody)
    if not body:
        return {}
    if isinstance(body, bytes | bytearray):
        body = body.decode("utf-8")
    return json.loads(body)  # type: ignore[no-any-return]
