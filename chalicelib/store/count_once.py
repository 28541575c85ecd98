"""Counting stream records exactly once, a whole batch per transaction (analytics, settlement feed).

A stream consumer that adds a record's figures to aggregate rows must not add them twice when Lambda
delivers the record again (a retried batch, a batch split at another record, two deliveries). Each record
is a :class:`Source`: the *group* it belongs to (typically the business event that wrote it: one order's
event record, ledger entries and messages share one group) and an id unique within the group. Every group
has ONE marker item holding the ids already counted (one attribute ``c#<id>`` each); a transaction adds a chunk
of sources' figures and, per group, sets their ids on the marker, conditioned on none of them being there yet.

So a batch costs one transaction (up to :data:`MAX_ITEMS` items) instead of one per record, one marker write
per event instead of one per record, and rows shared by the batch's records are one update. A marker whose
condition fails (some of the chunk's ids were counted by an earlier delivery) is read back, the counted
sources are dropped and the rest is committed again: every source is counted once, however the stream cuts
or repeats its batches. Markers expire by TTL long after the stream's 24 h retention.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from chalicelib.store.db import batch_get_raw, shared_connection

#: Items per transaction (DynamoDB allows 100).
MAX_ITEMS = 100
#: Ids one marker takes per transaction (one ``attribute_not_exists`` each; expressions are limited to 4 KB).
MAX_IDS = 40
MAX_ATTEMPTS = 8
#: A marker's attribute per counted id: ``c#<id>``.
COUNTED_PREFIX = "c#"
_RETRYABLE = {"TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded", "RequestLimitExceeded",
              "None", ""}

P = TypeVar("P")


@dataclass(frozen=True)
class Source(Generic[P]):
    marker: tuple[str, str]  # the group's marker item (PK, SK)
    source_id: str  # unique within the group
    payload: P


#: The transaction items (raw ``TransactItems`` entries) that add a chunk of sources' figures; called again
#: on every attempt (it may read current values, e.g. leaderboard scores, and condition on them).
Build = Callable[[list[Source[P]]], list[dict[str, Any]]]
#: The keys of the items :data:`Build` writes for one source (for chunking; without reading anything).
Touches = Callable[[Source[P]], Iterable[Hashable]]


def _client() -> tuple[Any, str]:
    conn = shared_connection()
    return conn.connection.client, conn.table_name


def _marker_update(table: str, marker: tuple[str, str], ids: list[str], entity: str,
                   expires_at: int) -> dict[str, Any]:
    """Each counted id is a top-level attribute ``c#<id>`` of the marker (set to 1), created on the condition
    that none of them exists: plain SETs and ``attribute_not_exists``, the cheapest update to evaluate."""
    names = {"#e": "entity", "#x": "expires_at_epoch",
             **{f"#c{i}": COUNTED_PREFIX + source_id for i, source_id in enumerate(ids)}}
    values: dict[str, Any] = {":one": {"N": "1"}, ":e": {"S": entity}, ":x": {"N": str(int(expires_at))}}
    sets = ", ".join(f"#c{i} = :one" for i in range(len(ids)))
    return {"Update": {"TableName": table, "Key": {"PK": {"S": marker[0]}, "SK": {"S": marker[1]}},
                       "UpdateExpression": f"SET #e = :e, #x = :x, {sets}",
                       "ConditionExpression": " AND ".join(f"attribute_not_exists(#c{i})" for i in range(len(ids))),
                       "ExpressionAttributeNames": names, "ExpressionAttributeValues": values}}


def _by_marker(sources: Sequence[Source[P]]) -> dict[tuple[str, str], list[Source[P]]]:
    groups: dict[tuple[str, str], list[Source[P]]] = {}
    for source in sources:
        groups.setdefault(source.marker, []).append(source)
    return groups


def _counted(client: Any, table: str, markers: list[tuple[str, str]]) -> dict[tuple[str, str], set[str]]:
    """The ids each marker holds (strongly consistent; unprocessed keys retried with backoff)."""
    out: dict[tuple[str, str], set[str]] = {m: set() for m in markers}
    for item in batch_get_raw(markers, client=client, table=table):
        out[(item["PK"]["S"], item["SK"]["S"])] = {
            name[len(COUNTED_PREFIX):] for name in item if name.startswith(COUNTED_PREFIX)}
    return out


def _chunks(sources: list[Source[P]], touches: Touches[P]) -> list[list[Source[P]]]:
    """Consecutive chunks whose markers and built items fit one transaction."""
    out: list[list[Source[P]]] = []
    chunk: list[Source[P]] = []
    items: set[Hashable] = set()
    markers: Counter[tuple[str, str]] = Counter()
    for source in sources:
        mine = set(touches(source))
        grown = len(markers) + (source.marker not in markers) + len(items | mine)
        if chunk and (grown > MAX_ITEMS or markers[source.marker] >= MAX_IDS):
            out.append(chunk)
            chunk, items, markers = [], set(), Counter()
        chunk.append(source)
        items |= mine
        markers[source.marker] += 1
    if chunk:
        out.append(chunk)
    return out


def count(sources: Sequence[Source[P]], build: Build[P], touches: Touches[P], *, marker_entity: str,
          expires_at: int) -> int:
    """Add every source's figures once ever; the number of sources newly counted.

    Sources repeated in ``sources`` (same marker and id) count once. Raises on a store error or after
    :data:`MAX_ATTEMPTS` contended attempts (the stream then delivers the batch again: nothing is lost,
    nothing counted twice)."""
    unique: dict[tuple[tuple[str, str], str], Source[P]] = {}
    for source in sources:
        unique.setdefault((source.marker, source.source_id), source)
    ordered = sorted(unique.values(), key=lambda s: s.marker)  # a group's sources together
    return sum(_commit(chunk, build, marker_entity, expires_at) for chunk in _chunks(ordered, touches))


def _commit(chunk: list[Source[P]], build: Build[P], entity: str, expires_at: int) -> int:
    client, table = _client()
    pending = list(chunk)
    for attempt in range(MAX_ATTEMPTS):
        if not pending:
            return 0
        groups = _by_marker(pending)
        markers = list(groups)
        items = [_marker_update(table, m, sorted(s.source_id for s in groups[m]), entity, expires_at)
                 for m in markers]
        items += build(pending)
        try:
            client.transact_write_items(TransactItems=items)
            return len(pending)
        except client.exceptions.TransactionCanceledException as exc:
            reasons = exc.response.get("CancellationReasons") or []
            refused = [markers[i] for i, r in enumerate(reasons[:len(markers)])
                       if r.get("Code") == "ConditionalCheckFailed"]
            if refused:  # counted (in part) by an earlier delivery: drop what was counted, commit the rest
                counted = _counted(client, table, refused)
                pending = [s for s in pending if s.source_id not in counted.get(s.marker, set())]
                continue
            codes = {str(r.get("Code") or "") for r in reasons}
            if not codes <= _RETRYABLE | {"ConditionalCheckFailed"} or attempt == MAX_ATTEMPTS - 1:
                raise
        time.sleep(random.uniform(0, 0.02 * (2 ** attempt)))  # contention: spread out and read again
    raise RuntimeError("count_once: no attempt left")  # pragma: no cover - the loop raises first
