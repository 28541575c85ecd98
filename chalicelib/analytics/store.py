"""Analytics items in the single table: idempotent counter writes and the panels' bounded reads.

Keys (all in ``store.keys`` style, readable prefixes; see docs/data-model.md):

* ``AGG#<program>#DAY`` / ``<yyyy-mm-dd>``: coalition totals of a day;
* ``AGG#<program>#PARTNERDAY`` / ``<yyyy-mm-dd>#<partner>``: a partner's row of a day;
* ``AGG#<program>#CHDAY`` / ``<yyyy-mm-dd>#<ch|utm>#<value>``: a channel's or UTM triple's row;
* ``AGG#<program>#RULEDAY`` / ``<yyyy-mm-dd>#<rule>#<funding partner>``: reward cost per rule;
* ``AGG#<program>#COHORT`` / ``<yyyy-mm>#<referred|other>``: customers' value by join month;
* ``AGG#<program>#TOTAL`` / ``TOTAL``: members so far;
* ``AGG#<program>#LEADER#<metric>#<period>`` / ``MEMBER#<member>``, GSI1 ``LEADERBOARD#<program>#<metric>#<period>``
  / zero-padded score: the leaderboard, read with one Query;
* ``AGG#SEEN#<program>#<hash of the group>`` / ``SEEN``: the ids of the source items of a group (an event's
  record, its ledger entries and messages; a member's join; a block of a link's clicks) already counted
  (an attribute ``c#<id>`` each; TTL 7 days, the stream keeps 24 h).

A stream batch's increments and its groups' markers go into ONE transaction (``store.count_once``): each
marker sets the ids of the batch's items, conditioned on none of them being there, so a redelivered or
differently split batch counts every item once; rows shared by the batch's items are one update.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from pynamodb.attributes import NumberAttribute, UnicodeAttribute

from chalicelib.domain import analytics as fig
from chalicelib.services import ports
from chalicelib.store import count_once
from chalicelib.store.count_once import Source
from chalicelib.store.db import Entity, batch_get_raw, shared_connection

SEEN_TTL_SECONDS = 7 * 86400


class LeaderboardItem(Entity, discriminator="leaderboard"):
    """A leaderboard entry as PynamoDB reads it (written by :func:`apply` with the raw client; read here by the
    member erasure and export)."""

    member_id = UnicodeAttribute(null=True)
    score = NumberAttribute(null=True)
    code = UnicodeAttribute(null=True)
    masked_name = UnicodeAttribute(null=True)


def partition(program_id: str, kind: str) -> str:
    return f"AGG#{program_id}#{kind}"


def leader_partition(program_id: str, metric: str, period: str) -> str:
    return partition(program_id, f"LEADER#{metric}#{period}")


def gsi1_leaderboard(program_id: str, metric: str, period: str) -> str:
    return f"LEADERBOARD#{program_id}#{metric}#{period}"


@dataclass
class Increment:
    pk: str
    sk: str
    add: dict[str, int]
    entity: str = "agg"


@dataclass
class LeaderDelta:
    program_id: str
    metric: str
    period: str
    member_id: str
    delta: int
    at: datetime
    label: dict[str, str] = field(default_factory=dict)  # code, masked name


def _client() -> tuple[Any, str]:
    conn = shared_connection()
    return conn.connection.client, conn.table_name


def _n(value: int) -> dict[str, str]:
    return {"N": str(int(value))}


def _merge(increments: Iterable[Increment]) -> list[Increment]:
    merged: dict[tuple[str, str], Increment] = {}
    for inc in increments:
        target = merged.setdefault((inc.pk, inc.sk), Increment(inc.pk, inc.sk, {}, inc.entity))
        for name, value in inc.add.items():
            if value:
                target.add[name] = target.add.get(name, 0) + int(value)
    return [m for m in merged.values() if m.add]


def _update(table: str, inc: Increment) -> dict[str, Any]:
    names = {f"#a{i}": name for i, name in enumerate(sorted(inc.add))}
    values = {f":a{i}": _n(inc.add[name]) for i, name in enumerate(sorted(inc.add))}
    names["#e"], values[":e"] = "entity", {"S": inc.entity}
    return {"Update": {"TableName": table, "Key": {"PK": {"S": inc.pk}, "SK": {"S": inc.sk}},
                       "UpdateExpression": "SET #e = :e ADD " + ", ".join(f"#a{i} :a{i}" for i in range(len(inc.add))),
                       "ExpressionAttributeNames": names, "ExpressionAttributeValues": values}}


def counter_updates(increments: Iterable[Increment]) -> list[tuple[dict[str, Any], tuple[str, str]]]:
    """The counters' ``Update`` operations (merged per row) with their keys, for a transaction that counts
    what it writes itself (``services.importer``: an imported member's signup, exactly once with the row)."""
    _, table = _client()
    return [(_update(table, inc)["Update"], (inc.pk, inc.sk)) for inc in _merge(increments)]


def _leader_keys(d: LeaderDelta) -> dict[str, Any]:
    return {"PK": {"S": leader_partition(d.program_id, d.metric, d.period)}, "SK": {"S": f"MEMBER#{d.member_id}"}}


_LEADER_NAMES = {"#s": "score", "#e": "entity", "#m": "member_id", "#g": "GSI1PK", "#k": "GSI1SK", "#c": "code",
                 "#n": "masked_name"}


def _leader_update(table: str, d: LeaderDelta, old: int | None) -> dict[str, Any]:
    new = (old or 0) + d.delta
    values: dict[str, Any] = {":s": _n(new), ":e": {"S": "leaderboard"}, ":m": {"S": d.member_id},
                              ":g": {"S": gsi1_leaderboard(d.program_id, d.metric, d.period)},
                              ":k": {"S": fig.leaderboard_sort_key(new, d.at, d.member_id)},
                              ":code": {"S": d.label.get("code", "")}, ":name": {"S": d.label.get("name", "")}}
    # Every attribute by a placeholder name, as the counters' updates do: one expression text for every entry.
    update = {"TableName": table, "Key": _leader_keys(d),
              "UpdateExpression": "SET #s = :s, #e = :e, #m = :m, #g = :g, #k = :k, #c = :code, #n = :name",
              "ExpressionAttributeNames": dict(_LEADER_NAMES), "ExpressionAttributeValues": values}
    if old is None:
        update["ConditionExpression"] = "attribute_not_exists(#s)"
    else:
        update["ConditionExpression"] = "#s = :old"
        values[":old"] = _n(old)
    return {"Update": update}


def _merge_leaders(deltas: Iterable[LeaderDelta]) -> list[LeaderDelta]:
    """One delta per leaderboard entry (a transaction takes one operation per item): the sum, reached at the
    latest time, with the latest label."""
    merged: dict[tuple[str, str, str, str], LeaderDelta] = {}
    for d in deltas:
        if not d.delta:
            continue
        key = (d.program_id, d.metric, d.period, d.member_id)
        seen = merged.get(key)
        merged[key] = d if seen is None else LeaderDelta(
            d.program_id, d.metric, d.period, d.member_id, seen.delta + d.delta, max(seen.at, d.at),
            d.label or seen.label)
    return [d for d in merged.values() if d.delta]


def _scores(deltas: list[LeaderDelta]) -> dict[tuple[str, str], int]:
    """The current scores of these leaderboard entries (strongly consistent; unprocessed keys retried)."""
    if not deltas:
        return {}
    client, table = _client()
    wanted = [(leader_partition(d.program_id, d.metric, d.period), f"MEMBER#{d.member_id}") for d in deltas]
    return {(item["PK"]["S"], item["SK"]["S"]): int(item["score"]["N"])
            for item in batch_get_raw(wanted, projection="PK, SK, score", client=client, table=table) if "score" in item}


@dataclass
class Figures:
    """What one source item (a stream record) adds: counter increments and leaderboard deltas."""

    increments: list[Increment] = field(default_factory=list)
    leaders: list[LeaderDelta] = field(default_factory=list)

    def __bool__(self) -> bool:
        return any(any(i.add.values()) for i in self.increments) or any(d.delta for d in self.leaders)


def seen_marker(program_id: str, group: str) -> tuple[str, str]:
    """The "counted" marker of a group of source items (an event's records share one): a hash of the group."""
    return f"AGG#SEEN#{program_id}#{hashlib.sha256(group.encode()).hexdigest()[:32]}", "SEEN"


def source(program_id: str, group: str, source_id: str, figures: Figures) -> Source[Figures]:
    return Source(seen_marker(program_id, group), source_id, figures)


def _touches(source: Source[Figures]) -> list[tuple[str, str]]:
    rows = [(i.pk, i.sk) for i in source.payload.increments if any(i.add.values())]
    return rows + [(leader_partition(d.program_id, d.metric, d.period), f"MEMBER#{d.member_id}")
                   for d in source.payload.leaders if d.delta]


def _build(sources: list[Source[Figures]]) -> list[dict[str, Any]]:
    """The chunk's counters (merged per row) and leaderboard scores (read now, written conditioned on them)."""
    _, table = _client()
    items = [_update(table, inc) for inc in _merge(i for s in sources for i in s.payload.increments)]
    deltas = _merge_leaders(d for s in sources for d in s.payload.leaders)
    scores = _scores(deltas)
    for d in deltas:
        keys = _leader_keys(d)
        items.append(_leader_update(table, d, scores.get((keys["PK"]["S"], keys["SK"]["S"]))))
    return items


def count(sources: list[Source[Figures]], now: float | None = None) -> int:
    """Count every source item once ever: markers, counters and leaderboard scores of a whole batch in as few
    transactions as fit (``store.count_once``). Leaderboard scores are optimistic (read, then a conditioned
    write); a concurrent change of a score retries the transaction with fresh scores. Returns how many source
    items were newly counted (a redelivered one is not)."""
    wanted = [s for s in sources if s.payload]
    if not wanted:
        return 0
    expires = int((now if now is not None else ports.current().clock.now().timestamp()) + SEEN_TTL_SECONDS)
    return count_once.count(wanted, _build, _touches, marker_entity="agg_seen", expires_at=expires)


# --------------------------------------------------------------------------- reads


def query_range(pk: str, low: str, high: str, index: str | None = None) -> tuple[list[dict[str, Any]], int]:
    """Every item of ``pk`` with ``low <= SK <= high`` (all pages); returns items and round trips."""
    client, table = _client()
    kwargs: dict[str, Any] = {"TableName": table, "KeyConditionExpression": "PK = :p AND SK BETWEEN :lo AND :hi",
                              "ExpressionAttributeValues": {":p": {"S": pk}, ":lo": {"S": low}, ":hi": {"S": high}}}
    items: list[dict[str, Any]] = []
    trips = 0
    while True:
        response = client.query(**kwargs)
        trips += 1
        items += [plain(i) for i in response.get("Items", [])]
        if "LastEvaluatedKey" not in response:
            return items, trips
        kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]


def get(pk: str, sk: str) -> dict[str, Any] | None:
    client, table = _client()
    item = client.get_item(TableName=table, Key={"PK": {"S": pk}, "SK": {"S": sk}}).get("Item")
    return plain(item) if item else None


def leaderboard(program_id: str, metric: str, period: str, limit: int) -> list[dict[str, Any]]:
    """The top ``limit`` entries: ONE Query on GSI1, highest score first."""
    client, table = _client()
    response = client.query(TableName=table, IndexName="GSI1", KeyConditionExpression="GSI1PK = :g",
                            ExpressionAttributeValues={":g": {"S": gsi1_leaderboard(program_id, metric, period)}},
                            ScanIndexForward=False, Limit=limit)
    return [plain(i) for i in response.get("Items", [])]


def plain(item: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in item.items():
        if "N" in value:
            out[name] = int(Decimal(value["N"]))  # counters are integers; a float loses digits past 2**53
        elif "S" in value:
            out[name] = value["S"]
        elif "BOOL" in value:
            out[name] = value["BOOL"]
    return out
