"""PynamoDB base model for the single table, bound lazily, sharing one connection.

Every entity is a subclass of :class:`Entity` told apart by the ``entity``
discriminator attribute, so one ``BatchGetItem`` or ``Query`` can return mixed
entities already typed. PynamoDB gives each model class its own connection (and
botocore session, ~80 ms of cold start each); :meth:`Entity._get_connection` is
overridden so all models share one. The table name and endpoint come from
settings on first use, never at import time.
"""

from __future__ import annotations

import json
import threading
import zlib
from datetime import datetime
from typing import Any

from pynamodb.attributes import Attribute, DiscriminatorAttribute, UnicodeAttribute
from pynamodb.connection import TableConnection
from pynamodb.constants import BINARY, STRING
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model

from chalicelib.domain.clock import iso, parse_iso

_lock = threading.Lock()
_connection: TableConnection | None = None


class IsoDateTimeAttribute(Attribute[datetime]):
    """UTC datetime stored as ISO-8601 ``...Z`` text (readable and sortable)."""

    attr_type = STRING

    def serialize(self, value: datetime) -> str:
        return iso(value)

    def deserialize(self, value: str) -> datetime:
        return parse_iso(value)


class CompressedJSONAttribute(Attribute[Any]):
    """JSON kept compact and zlib-compressed in a binary attribute: for write-once documents that are
    only ever read back whole (an event's reply), where every started KB is a write unit."""

    attr_type = BINARY

    def serialize(self, value: Any) -> bytes:
        return zlib.compress(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8"), 9)

    def deserialize(self, value: bytes) -> Any:
        return json.loads(zlib.decompress(value).decode("utf-8"))


def plain_binary(value: bytes) -> Any:
    """A binary attribute as JSON-able data: a compressed JSON document decoded, anything else base64."""
    try:
        return json.loads(zlib.decompress(value).decode("utf-8"))
    except (zlib.error, UnicodeDecodeError, ValueError):
        import base64

        return base64.b64encode(value).decode("ascii")


class Gsi1(GlobalSecondaryIndex["Entity"]):
    class Meta:
        index_name = "GSI1"
        projection = AllProjection()

    GSI1PK = UnicodeAttribute(hash_key=True)
    GSI1SK = UnicodeAttribute(range_key=True)


class Gsi2(GlobalSecondaryIndex["Entity"]):
    """Ledger entries by program and booking day (the ledger CSV export); see ``keys.gsi2_ledger_day``."""

    class Meta:
        index_name = "GSI2"
        projection = AllProjection()

    GSI2PK = UnicodeAttribute(hash_key=True)
    GSI2SK = UnicodeAttribute(range_key=True)


class Entity(Model):
    class Meta:
        # Placeholder until bind(): settings are read on first use, not at import.
        table_name = "sarafan-unbound"
        billing_mode = "PAY_PER_REQUEST"
        region: str | None = None
        host: str | None = None
        max_retry_attempts = 3
        # The notification consumer reads the table's stream (infra/resources.yaml: StreamSpecification).
        stream_view_type = "NEW_IMAGE"

    PK = UnicodeAttribute(hash_key=True)
    SK = UnicodeAttribute(range_key=True)
    GSI1PK = UnicodeAttribute(null=True)
    GSI1SK = UnicodeAttribute(null=True)
    GSI2PK = UnicodeAttribute(null=True)
    GSI2SK = UnicodeAttribute(null=True)
    entity = DiscriminatorAttribute()
    gsi1 = Gsi1()
    gsi2 = Gsi2()

    @classmethod
    def _get_connection(cls) -> TableConnection:
        return shared_connection()


def bind(table_name: str | None = None) -> None:
    """Point the models at a table (default: from settings) and drop the old connection."""
    global _connection
    from chalicelib.config import get_settings

    settings = get_settings()
    with _lock:
        Entity.Meta.table_name = table_name or settings.table_name
        Entity.Meta.region = settings.region
        _connection = None


def shared_connection() -> TableConnection:
    global _connection
    if _connection is None:
        if Entity.Meta.table_name == "sarafan-unbound":
            bind()
        with _lock:
            if _connection is None:
                # Model._get_connection builds the MetaTable from the schema, which
                # spares PynamoDB a DescribeTable round trip; reuse that logic once.
                _connection = Model._get_connection.__func__(Entity)  # type: ignore[attr-defined]
    return _connection


def reset() -> None:
    """Unbind (tests switch tables and emulators between cases)."""
    global _connection
    with _lock:
        Entity.Meta.table_name = "sarafan-unbound"
        Entity._connection = None
        _connection = None


def raw_client() -> Any:
    """The botocore DynamoDB client under the shared connection (for TTL setup and benchmarks)."""
    return shared_connection().connection.client
