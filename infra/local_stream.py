"""A local stand-in for Lambda's DynamoDB Streams event source mapping.

Reads the table's stream through the DynamoDB Streams API (``DescribeStream``,
``GetShardIterator``, ``GetRecords``; moto implements them) and invokes the same handler
Chalice deploys (``app.handler_map["table_stream"]``) with Lambda-shaped batches. Like Lambda with
``ReportBatchItemFailures``, a batch whose response names failed records is retried from the first
failed record, at most ``max_retries`` times; then the rest goes to :attr:`dead_letters` (the SQS
on-failure destination in AWS) and the shard moves on.

Used by ``infra/local_run.py`` (a background thread polling every 0.2 s, so a webhook's messages
go out within a second) and by the tests (``drain()``), so both drive the deployed code path.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable
from datetime import datetime
from typing import Any

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
    return {"eventID": record.get("eventID"), "eventName": record.get("eventName"), "eventVersion": "1.1",
            "eventSource": "aws:dynamodb", "awsRegion": region, "dynamodb": data, "eventSourceARN": stream_arn}


class StreamPoller:
    def __init__(self, handler: Callable[[dict[str, Any], Any], Any], *, region: str = "eu-central-1",
                 batch_size: int = 100, max_retries: int = 3, log: Callable[[str], None] = print,
                 function_name: str = "table_stream") -> None:
        self.handler = handler
        self.region = region
        self.batch_size = batch_size
        self.max_retries = max_retries
        self.log = log
        self.function_name = function_name
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
                self._iterators[shard_id] = self._client.get_shard_iterator(
                    StreamArn=self._arn, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
            iterator = self._iterators[shard_id]
            if not iterator:
                continue
            reply = self._client.get_records(ShardIterator=iterator, Limit=1000)
            self._iterators[shard_id] = reply.get("NextShardIterator")
            records += reply.get("Records", [])
        return records

    def invoke(self, records: list[dict[str, Any]]) -> None:
        """One batch the way Lambda delivers it, with partial-failure retries."""
        assert self._arn is not None
        batch = [lambda_record(r, self._arn, self.region) for r in records]
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
        records = self._new_records()
        for start in range(0, len(records), self.batch_size):
            if self._stop.is_set():
                # Stopping: the rest of this read is not delivered (a local stream starts empty on
                # the next start anyway); a batch in progress is not cut short.
                return start
            self.invoke(records[start:start + self.batch_size])
        return len(records)

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


def register(log: Callable[[str], None] = print) -> None:
    """Make :class:`infra.local_events.EventSourceRunner` drive ``@on_dynamodb_record`` with this poller."""
    from infra.local_events import register_consumer

    def factory(runner: Any, config: Any) -> StreamPoller:
        return StreamPoller(runner.app.handler_map[config.name], region=runner.region,
                            batch_size=config.batch_size, log=runner.log, function_name=config.name)

    register_consumer("DynamoDBEventConfig", factory)


__all__ = ["ACCOUNT_ID", "StreamPoller", "register"]
