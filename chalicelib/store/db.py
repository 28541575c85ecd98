"""PynamoDB base model for the single table, bound lazily, sharing one connection.

Every entity is a subclass of :class:`Entity` told apart by the ``entity``
discriminator attribute, so one ``BatchGetItem`` or ``Query`` can return mixed
entities already typed. PynamoDB gives each model class its own connection (and
botocore session, ~80 ms of cold start each); :meth:`Entity._get_connection` is
overridden so all models share one. The table name and endpoint come from
settings on first use, never at import time.
"""

from __future__ import annotations

import inspect
import json
import random
import threading
import time
import zlib
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

import pynamodb.attributes
import pynamodb.indexes
import pynamodb.models
from pynamodb.attributes import Attribute, DiscriminatorAttribute, UnicodeAttribute
from pynamodb.connection import TableConnection
from pynamodb.constants import BINARY, NULL, STRING
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model

from chalicelib.domain.clock import iso, parse_iso
from chalicelib.logs import get_logger


def class_members(cls: Any, predicate: Callable[[Any], bool] | None = None) -> list[tuple[str, Any]]:
    """``inspect.getmembers(cls, predicate)`` as PynamoDB's class set-up calls it, faster.

    PynamoDB finds a model's attributes and indexes (and an index's attributes) with ``getmembers`` and an
    ``isinstance`` test: ``dir()`` of the class and a ``getattr`` of each of a model's ~110 names, twice per
    model class: about 0.5 M instructions of the ~1.4 M each of the ~55 models costs a webhook's cold start.
    Here each name's entry in the class dictionaries (``__mro__`` order, as ``dir`` and attribute lookup
    see them) is tested first, and only what passes is read through ``getattr`` and tested again (an
    attribute or an index answers itself); the result is sorted by name, as ``getmembers`` sorts it. A
    non-class or no predicate goes to ``inspect.getmembers``. ``tests/unit/test_store_db.py`` compares both
    for every model, map and index class.
    """
    if not isinstance(cls, type) or predicate is None:
        return inspect.getmembers(cls, predicate)
    seen: set[str] = set()
    found: list[tuple[str, Any]] = []
    for klass in cls.__mro__:
        for name, raw in vars(klass).items():
            if name in seen:
                continue
            seen.add(name)
            if predicate(raw):
                value = getattr(cls, name)
                if predicate(value):
                    found.append((name, value))
    found.sort(key=lambda pair: pair[0])
    return found


# PynamoDB's three modules call ``getmembers`` by their module-global name (pinned version: requirements.txt).
for _module in (pynamodb.attributes, pynamodb.indexes, pynamodb.models):
    if getattr(_module, "getmembers", None) is inspect.getmembers:
        _module.getmembers = class_members  # type: ignore[attr-defined]

_E = TypeVar("_E", bound="Entity")
log = get_logger("sarafan.store")

_lock = threading.Lock()
_connection: TableConnection | None = None


class IsoDateTimeAttribute(Attribute[datetime]):
    """UTC datetime stored as ISO-8601 ``...Z`` text (readable and sortable)."""

    attr_type = STRING

    def serialize(self, value: datetime) -> str:
        return iso(value)

    def deserialize(self, value: str) -> datetime:
        return parse_iso(value)


#: zlib preset dictionary of what replies and stored postings repeat (JSON keys, the engine's English reason
#: and skip phrases). Short documents compress to about half with it (an order's reply: 646 -> about 300 bytes),
#: which keeps the hot write-once items under 1 KB (one write unit, two in a transaction).
#: NEVER edit it: stored values name it by its Adler-32 checksum. Add a new one to ``_DICTIONARIES``.
ZDICT_1 = "".join((
    '"amount"', '"currency":"RUB"', '"kind":"', '"parked":[]', '"vouchers":[', '"review_item_id":"',
    '"risk":{"held":true,"reasons":[', '"matched":[', '"parked_refunds_applied":[',
    '"type":"member.signup"', '"type":"order.refunded"', '"type":"order.cancelled"',
    '"attribution":{"outcome":"credited","referrer_id":"mbr_', '"source":"ref_code"',
    '","source":null,"reason_code":"no_candidate","reason":"The event carries no referral code, coupon or '
    'matching invite.","final":true,"candidates":[]}',
    '"attribution":{"outcome":"unchanged","referrer_id":"mbr_', '"attribution":null',
    '"status":"reversed"', '"status":"available"', '"status":"held"',
    " taken back: the order was refunded in full.", "% of the order amount.", " points from '",
    '"funding_partner_id":"ptn_', '"sk":"LEDGER#', '.000000Z#le_',
    '"rule_id":"', '","member_id":null,"reason_code":"no_referrer","detail":"the member has no level-',
    ' referrer","requested_points":0,"granted_points":0}', '"skipped":[]', '"skipped":[{',
    "): fixed reward.", "% of the order total ", " RUB.", "'s first order (", "'s order (",
    " points for your first order as a referred member (", " points for your order (",
    " points for your referral mbr_", " points for your signup (", " points for your level-",
    '"reason":"', '"level":0,', '"level":1,', '"level":2,', '"level":3,', '","rule_version":1,',
    '{"member_id":"mbr_', '"status":"pending","rule_id":"', '"points":', '"postings":[', '"rewards":{"points":',
    '{"type":"order.paid","member":{"member_id":"mbr_', '","code":"', '","created":false},',
    '","created":true},',
)).encode("utf-8")
_DICTIONARIES = {zlib.adler32(d): d for d in (ZDICT_1,)}
_ZDICT = ZDICT_1  # what new values are written with


def compress_json(value: Any) -> bytes:
    raw = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    packer = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS, 9, zlib.Z_DEFAULT_STRATEGY, _ZDICT)
    return packer.compress(raw) + packer.flush()


def decompress_json(value: bytes) -> Any:
    """Values written with a preset dictionary (FDICT set) and without (before it existed) alike."""
    flags = value[1] if len(value) > 1 else 0
    if flags & 0x20:  # FDICT: the dictionary's Adler-32 follows the two header bytes
        unpacker = zlib.decompressobj(zlib.MAX_WBITS, zdict=_DICTIONARIES[int.from_bytes(value[2:6], "big")])
        return json.loads((unpacker.decompress(value) + unpacker.flush()).decode("utf-8"))
    return json.loads(zlib.decompress(value).decode("utf-8"))


class CompressedJSONAttribute(Attribute[Any]):
    """JSON kept compact and zlib-compressed (with :data:`ZDICT_1`) in a binary attribute: for write-once
    documents that are only ever read back whole (an event's reply), where every started KB is a write unit."""

    attr_type = BINARY

    def serialize(self, value: Any) -> bytes:
        return compress_json(value)

    def deserialize(self, value: bytes) -> Any:
        return decompress_json(value)


def plain_binary(value: bytes) -> Any:
    """A binary attribute as JSON-able data: a compressed JSON document decoded, anything else base64."""
    try:
        return decompress_json(value)
    except (zlib.error, UnicodeDecodeError, ValueError, KeyError):
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

    @classmethod
    def _instantiate(cls: type[_E], attribute_values: dict[str, dict[str, Any]]) -> _E:
        """Decode a stored item, never letting one bad item break a read.

        Nothing stored may make a later read fail (an older version or a bug may have
        written it). An attribute that cannot be decoded is logged (entity and attribute
        name only: values may be personal data) and, if it is nullable or has a default,
        left at that; otherwise the whole item decodes to an :class:`UnreadableItem`, which
        read paths skip like any item of another type (they filter with ``isinstance``).
        Same steps as PynamoDB's own ``_instantiate`` (pinned version), one attribute at a time.
        """
        try:
            stored_cls = cls._get_discriminator_class(attribute_values)
        except (ValueError, TypeError):
            return _unreadable(cls, attribute_values, "entity")  # type: ignore[return-value]
        if stored_cls and not issubclass(stored_cls, cls):
            return _unreadable(cls, attribute_values, "entity")  # type: ignore[return-value]
        # The constructor sets the discriminator and the defaults (PynamoDB's own ``deserialize`` then clears and
        # sets them a second time: the same values, twice the work on every item read).
        instance = (stored_cls or cls)(_user_instantiated=False)
        values = instance.attribute_values
        broken: list[str] = []
        for name, attr, dynamo_name, plain in _decoders(type(instance)):
            raw = attribute_values.get(dynamo_name)
            if not raw or NULL in raw:
                continue
            try:
                value = attr.deserialize(attr.get_value(raw))
            except Exception:  # any decoding failure of stored data
                broken.append(name)
                continue
            if plain:  # what Attribute.__set__ does for a model's attribute
                values[name] = value
            else:
                setattr(instance, name, value)
        if broken:
            required = [n for n in broken if not _tolerable(instance.get_attributes()[n])]
            log.warning("stored item has unreadable attributes",
                        extra={"entity": type(instance).__name__, "attributes": broken, "skipped": bool(required)})
            if required:
                return _unreadable(cls, attribute_values, ",".join(required))  # type: ignore[return-value]
        return instance  # type: ignore[return-value]


_DECODERS: dict[type, list[tuple[str, Attribute[Any], str, bool]]] = {}


def _decoders(model: type[Entity]) -> list[tuple[str, Attribute[Any], str, bool]]:
    """(python name, attribute, stored name, plain) of each attribute of ``model``; plain: assigned the way
    ``Attribute.__set__`` assigns it (no ``__set__`` of its own, as maps and discriminators have)."""
    found = _DECODERS.get(model)
    if found is None:
        found = _DECODERS[model] = [(name, attr, attr.attr_name, type(attr).__set__ is Attribute.__set__)
                                    for name, attr in model.get_attributes().items()]
    return found


class UnreadableItem(Entity, discriminator="unreadable"):
    """Stands in for a stored item that cannot be decoded (only ``PK``/``SK`` are set)."""

    broken = UnicodeAttribute(null=True)


def _tolerable(attr: Attribute[Any]) -> bool:
    return bool(getattr(attr, "null", False)) or getattr(attr, "default", None) is not None


def _unreadable(cls: type[Entity], values: dict[str, dict[str, Any]], what: str) -> UnreadableItem:
    if what == "entity":
        log.warning("stored item of unknown type", extra={"entity": cls.__name__})
    item = UnreadableItem(_user_instantiated=False)
    for name in ("PK", "SK"):
        raw = values.get(name) or {}
        setattr(item, name, raw.get(STRING) if isinstance(raw.get(STRING), str) else "")
    item.broken = what
    return item


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


def get_or_none(model: type[_E], key: tuple[str, str], *, consistent: bool = False) -> _E | None:
    """One ``GetItem``: the item if it exists and is a ``model`` (the table is shared by every kind)."""
    from pynamodb.exceptions import DoesNotExist

    try:
        item = model.get(*key, consistent_read=consistent)
    except DoesNotExist:
        return None
    return item if isinstance(item, model) else None


#: ``BatchGetItem`` rounds in a row that may leave keys unprocessed (throttling) before giving up.
BATCH_GET_ATTEMPTS = 8
#: Seconds before the first retry of unprocessed keys; doubled each further round, with full jitter.
BATCH_GET_BACKOFF = 0.05


class UnprocessedKeysError(Exception):
    """DynamoDB kept leaving keys unprocessed (throttled) after every retry."""


def batch_get_raw(item_keys: list[tuple[str, str]], *, consistent: bool = True, projection: str | None = None,
                  client: Any = None, table: str | None = None,
                  sleep: Callable[[float], None] = time.sleep) -> list[dict[str, Any]]:
    """The stored items (DynamoDB JSON, no model) of ``item_keys``, 100 keys a ``BatchGetItem``.

    Keys DynamoDB returns as ``UnprocessedKeys`` (a throttled partition) are asked again after an exponential,
    jittered backoff, as AWS asks of every batch reader; after :data:`BATCH_GET_ATTEMPTS` rounds in a row that
    left keys unprocessed, :class:`UnprocessedKeysError` (a stream handler then fails its batch, and the batch is
    delivered again). Missing items are simply absent from the answer."""
    if client is None or table is None:
        conn = shared_connection()
        client, table = client or conn.connection.client, table or conn.table_name
    pending = [{"PK": {"S": pk}, "SK": {"S": sk}} for pk, sk in dict.fromkeys(item_keys)]
    request: dict[str, Any] = {"ConsistentRead": consistent}
    if projection:
        request["ProjectionExpression"] = projection
    out: list[dict[str, Any]] = []
    throttled = 0
    while pending:
        reply = client.batch_get_item(RequestItems={table: {**request, "Keys": pending[:100]}})
        out += reply.get("Responses", {}).get(table, [])
        unprocessed = list(reply.get("UnprocessedKeys", {}).get(table, {}).get("Keys", []))
        pending = pending[100:] + unprocessed
        if not unprocessed:
            throttled = 0
            continue
        throttled += 1
        if throttled >= BATCH_GET_ATTEMPTS:
            raise UnprocessedKeysError(f"{len(unprocessed)} keys still unprocessed after {throttled} attempts")
        sleep(random.uniform(0, BATCH_GET_BACKOFF * 2 ** (throttled - 1)))
    return out


def update_only(item: Entity, actions: list[Any], condition: Any = None) -> None:
    """``item.update(actions, condition=condition)`` without the item back (``ReturnValues=NONE``): PynamoDB asks
    for ``ALL_NEW`` and decodes the whole item into ``item``, which a write whose result nobody reads (a
    counter, a status) does not need. Same request otherwise, same ``UpdateError`` on a failed condition;
    ``item`` keeps the values it had."""
    item._get_connection().update_item(item.PK, range_key=item.SK, actions=actions, condition=condition,
                                       return_values="NONE")
