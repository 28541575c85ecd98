"""A local stand-in for Lambda's DynamoDB Streams event source mapping.

Reads the table's stream through the DynamoDB Streams API (``DescribeStream``,
``GetShardIterator``, ``GetRecords``; moto implements them) and invokes the same handler
Chalice deploys (``app.handler_map["table_stream"]``) with Lambda-shaped batches. Like Lambda with
``ReportBatchItemFailures``, a batch whose response names failed records is retried from the first
failed record, at most ``max_retries`` times; then the rest goes to :attr:`dead_letters` (the SQS
on-failure destination in AWS) and the shard moves on.

Used by ``infra/local_run.py`` (a background thread polling every 0.2 s, so a webhook's messages
go out within a second; by default in the run's second process, ``infra/local_consumers.py``) and
by the tests (``drain()``), so both drive the deployed code path.

With ``positions`` (the local run's :data:`POSITIONS`, held by its main process) the poller
records, after each batch it delivered (or sent to the on-failure destination), the last sequence
number of that batch, and starts reading after it: a restarted consumer process, or a run restarted
with ``--data`` (``infra/local_state.py`` keeps the unconsumed records and these positions), goes on
where the previous one finished, neither skipping nor repeating a batch. The engine keeps every
record a registered consumer has not finished (``moto_tuning.STREAM_HOLDS``).
"""

from __future__ import annotations

import contextlib
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any, Protocol

from infra.local_events import ACCOUNT_ID, lambda_context


def streams_client() -> Any:
    """A DynamoDB Streams client on the app's endpoint (account-id endpoints off: moto serves the classic host)."""
    import boto3
    from botocore.config import Config

    from chalicelib.config import get_settings

    return boto3.client("dynamodbstreams", region_name=get_settings().region,
                        config=Config(account_id_endpoint_mode="disabled"))


def table_stream_arn() -> str:
    from chalicelib.store.db import Entity, raw_client

    return str(raw_client().describe_table(TableName=Entity.Meta.table_name)["Table"]["LatestStreamArn"])


def lambda_record(record: dict[str, Any], stream_arn: str, region: str) -> dict[str, Any]:
    data = dict(record.get("dynamodb") or {})
    created = data.get("ApproximateCreationDateTime")
    if isinstance(created, datetime):
        data["ApproximateCreationDateTime"] = created.timestamp()
    data.setdefault("SizeBytes", 0)
    data.setdefault("StreamViewType", "NEW_IMAGE")
    out = {"eventID": record.get("eventID"), "eventName": record.get("eventName"), "eventVersion": "1.1",
           "eventSource": "aws:dynamodb", "awsRegion": region, "dynamodb": data, "eventSourceARN": stream_arn}
    if record.get("userIdentity"):  # a TTL deletion (moto_tuning.sweep_expired), as Lambda passes it on
        out["userIdentity"] = record["userIdentity"]
    return out


def position_key(function_name: str, stream_arn: str, shard_id: str) -> str:
    """``function|table|shard``: the table's name, not the stream's ARN (a restored table gets a new stream
    label, its records and sequence numbers stay)."""
    table = stream_arn.split(":", 6)[5].split("/")[1]
    return f"{function_name}|{table}|{shard_id}"


class Positions(Protocol):
    def get(self, key: str) -> int | None: ...
    def begin(self, key: str) -> None: ...
    def commit(self, key: str, sequence: int | None) -> None: ...


class StreamPositions:
    """The last sequence number each consumer finished, per shard (``function|table|shard``).

    Kept by the local run's main process, whichever process consumes: a batch is :meth:`begin` … :meth:`commit`
    (``None``: given up without a position change), and :meth:`quiet` waits until no batch is in progress
    and holds new ones back, so a ``--data`` snapshot taken inside it has each batch either wholly
    delivered (its position committed) or not started.
    """

    def __init__(self) -> None:
        self._positions: dict[str, int] = {}
        self._busy: dict[str, int] = {}
        self._paused = False
        self._changed = threading.Condition()
        self.version = 0

    def get(self, key: str) -> int | None:
        with self._changed:
            return self._positions.get(key)

    def begin(self, key: str) -> None:
        with self._changed:
            while self._paused:
                self._changed.wait()
            self._busy[key] = self._busy.get(key, 0) + 1

    def commit(self, key: str, sequence: int | None) -> None:
        with self._changed:
            if sequence is not None and sequence > self._positions.get(key, -1):
                self._positions[key] = sequence
                self.version += 1
            if self._busy.get(key, 0) > 1:
                self._busy[key] -= 1
            else:
                self._busy.pop(key, None)
            self._changed.notify_all()

    def hold(self, table_name: str, shard_id: str) -> int | None:
        """The first sequence number a registered consumer of this shard has not finished (``None``: none)."""
        suffix = f"|{table_name}|{shard_id}"
        with self._changed:
            held = [seq + 1 for key, seq in self._positions.items() if key.endswith(suffix)]
            if any(key.endswith(suffix) for key in self._busy) and not held:
                return 0  # a first batch in progress: keep everything
        return min(held) if held else None

    @contextlib.contextmanager
    def quiet(self, timeout: float) -> Iterator[bool]:
        """No batch in progress inside (True), or ``timeout`` passed first (False: one still runs)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            self._paused = True
            while self._busy and time.monotonic() < deadline:
                self._changed.wait(max(0.01, deadline - time.monotonic()))
            idle = not self._busy
        try:
            yield idle
        finally:
            with self._changed:
                self._paused = False
                self._changed.notify_all()

    def dump(self) -> dict[str, int]:
        with self._changed:
            return dict(self._positions)

    def load(self, positions: dict[str, int]) -> None:
        with self._changed:
            self._positions = {str(k): int(v) for k, v in positions.items()}
            self._busy.clear()
            self.version += 1

    def clear(self) -> None:
        self.load({})


#: The local run's positions (its main process; ``infra/local_consumers.py`` reaches them over its socket).
POSITIONS = StreamPositions()


def backlog(positions: StreamPositions = POSITIONS) -> int:
    """Stream records the registered consumers have not finished yet, over every table (moto's state, read
    without the engine lock: a close figure, for back-pressure)."""
    from moto.dynamodb.models import dynamodb_backends

    total = 0
    for regions in list(dynamodb_backends.values()):
        for backend in list(regions.values()):
            for table in list(backend.tables.values()):
                shard = getattr(table, "stream_shard", None)
                if shard is None:
                    continue
                held = positions.hold(table.name, shard.id)
                if held is not None:
                    end = shard.starting_sequence_number + len(shard.items)
                    total += max(0, end - max(held, shard.starting_sequence_number))
    return total


def install_holds(positions: StreamPositions = POSITIONS) -> None:
    """Make the engine keep the stream records a registered consumer has not finished yet."""
    from infra import moto_tuning

    def hold(shard: Any) -> int | None:
        return positions.hold(shard.table.name, shard.id)

    if not moto_tuning.STREAM_HOLDS:
        moto_tuning.STREAM_HOLDS.append(hold)


class StreamPoller:
    def __init__(self, handler: Callable[[dict[str, Any], Any], Any], *, region: str = "eu-central-1",
                 batch_size: int = 100, max_retries: int = 3, log: Callable[[str], None] = print,
                 function_name: str = "table_stream", positions: Positions | None = None) -> None:
        self.handler = handler
        self.region = region
        self.batch_size = batch_size
        self.max_retries = max_retries
        self.log = log
        self.function_name = function_name
        self.positions = positions
        self.dead_letters: list[dict[str, Any]] = []
        self.invocations = 0
        self._client: Any = None
        self._arn: str | None = None
        self._iterators: dict[str, str | None] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _setup(self) -> None:
        if self._client is None:
            self._client = streams_client()
            self._arn = table_stream_arn()

    def _new_records(self) -> list[dict[str, Any]]:
        self._setup()
        shards = self._client.describe_stream(StreamArn=self._arn)["StreamDescription"]["Shards"]
        records: list[dict[str, Any]] = []
        for shard in shards:
            shard_id = shard["ShardId"]
            if shard_id not in self._iterators:
                done = self.positions.get(self._key(shard_id)) if self.positions else None
                where: dict[str, Any] = ({"ShardIteratorType": "TRIM_HORIZON"} if done is None else
                                         {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": str(done)})
                self._iterators[shard_id] = self._client.get_shard_iterator(
                    StreamArn=self._arn, ShardId=shard_id, **where)["ShardIterator"]
            iterator = self._iterators[shard_id]
            if not iterator:
                continue
            reply = self._client.get_records(ShardIterator=iterator, Limit=1000)
            self._iterators[shard_id] = reply.get("NextShardIterator")
            records += [dict(r, _shard=shard_id) for r in reply.get("Records", [])]
        return records

    def _key(self, shard_id: str) -> str:
        assert self._arn is not None
        return position_key(self.function_name, self._arn, shard_id)

    def deliver(self, records: list[dict[str, Any]]) -> None:
        """:meth:`invoke` one shard's batch between ``begin`` and ``commit`` of its position."""
        if self.positions is None:
            self.invoke(records)
            return
        key = self._key(records[0].get("_shard", ""))
        self.positions.begin(key)
        last = None
        try:
            self.invoke(records)
            last = int(records[-1]["dynamodb"]["SequenceNumber"])
        finally:
            self.positions.commit(key, last)

    def invoke(self, records: list[dict[str, Any]]) -> None:
        """One batch the way Lambda delivers it, with partial-failure retries."""
        assert self._arn is not None
        batch = [lambda_record(r, self._arn, self.region) for r in records]  # (drops the ``_shard`` note)
        for attempt in range(self.max_retries + 1):
            self.invocations += 1
            try:
                result = self.handler({"Records": batch}, lambda_context(self.function_name))
                failures = [f["itemIdentifier"] for f in (result or {}).get("batchItemFailures", [])]
            except Exception:
                self.log(f"stream handler raised:\n{traceback.format_exc()}")
                failures = [batch[0]["dynamodb"]["SequenceNumber"]]
            if not failures:
                return
            sequence = [r["dynamodb"]["SequenceNumber"] for r in batch]
            first = min(sequence.index(f) for f in failures if f in sequence) if any(
                f in sequence for f in failures) else 0
            batch = batch[first:]
            if attempt < self.max_retries:
                time.sleep(0.05 * (attempt + 1))
        self.dead_letters += batch
        self.log(f"stream: {len(batch)} record(s) sent to the on-failure destination after {self.max_retries} retries")

    def poll_once(self) -> int:
        try:
            records = self._new_records()
            batches: list[list[dict[str, Any]]] = []
            for record in records:  # batches of one shard each, at most batch_size long
                if batches and batches[-1][0]["_shard"] == record["_shard"] and len(batches[-1]) < self.batch_size:
                    batches[-1].append(record)
                else:
                    batches.append([record])
            done = 0
            for batch in batches:
                if self._stop.is_set():
                    # Stopping: the rest of this read is not delivered now (with positions, the next
                    # start reads it again); a batch in progress is not cut short.
                    if self.positions is not None:
                        self._iterators.clear()
                    return done
                self.deliver(batch)
                done += len(batch)
            return done
        except BaseException:
            if self.positions is not None:
                self._iterators.clear()  # read again from the last finished batch
            raise

    def drain(self, max_rounds: int = 20) -> int:
        """Poll until the stream is quiet (handlers write items that come back as records)."""
        total = 0
        for _ in range(max_rounds):
            count = self.poll_once()
            total += count
            if not count:
                return total
        return total

    # The Consumer protocol of infra/local_events.py.
    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="sarafan-stream", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop after the batch in progress (waiting at most ``timeout`` seconds for it)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.wait(0.2):
            try:
                self.poll_once()
            except Exception:
                self.log(f"stream poller error:\n{traceback.format_exc()}")


def register(log: Callable[[str], None] = print, positions: Positions | None = None) -> None:
    """Make :class:`infra.local_events.EventSourceRunner` drive ``@on_dynamodb_record`` with this poller
    (in this process; ``infra/local_consumers.py`` runs it in a second one)."""
    from infra.local_events import register_consumer

    def factory(runner: Any, config: Any) -> StreamPoller:
        return StreamPoller(runner.app.handler_map[config.name], region=runner.region,
                            batch_size=config.batch_size, log=runner.log, function_name=config.name,
                            positions=positions)

    register_consumer("DynamoDBEventConfig", factory)


__all__ = ["ACCOUNT_ID", "POSITIONS", "StreamPoller", "StreamPositions", "register"]
