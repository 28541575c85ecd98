"""One atomic write: a DynamoDB transaction whose failed conditions become domain errors.

Every state change in Sarafan is one ``TransactWriteItems`` with conditions (never
check-then-write). Callers attach to each operation the domain error that its
condition failing means (e.g. "code already taken" → Conflict); PynamoDB's
``cancellation_reasons`` tell which operation failed, in order. Contention
between concurrent transactions (``TransactionConflict``) is retried with
jittered backoff; anything else is raised, never swallowed.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pynamodb.connection import Connection
from pynamodb.exceptions import PynamoDBException, TransactWriteError
from pynamodb.expressions.condition import Condition
from pynamodb.expressions.update import Action
from pynamodb.transactions import TransactWrite

from chalicelib.domain.errors import BadRequest, Conflict, DomainError, ServiceUnavailable
from chalicelib.logs import get_logger
from chalicelib.store.db import Entity, shared_connection

_log = get_logger("sarafan.store")

#: DynamoDB's limit on the number of items in one transaction.
MAX_TRANSACTION_ITEMS = 100
_RETRYABLE = {"TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded", "RequestLimitExceeded"}
_INVALID = {"ValidationError", "ItemCollectionSizeLimitExceeded"}
_THROTTLED = {"ThrottlingException", "ProvisionedThroughputExceededException", "RequestLimitExceeded"}

_SENT_ORDER = {"condition_check": 0, "delete": 1, "save": 2, "raw_put": 2, "update": 3, "raw_update": 3}

OnFail = Exception | Callable[[dict[str, Any] | None], Exception] | None


@dataclass
class _Op:
    kind: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    on_fail: OnFail


@dataclass
class Transaction:
    """Collects operations, then commits them atomically with :meth:`commit`."""

    ops: list[_Op] = field(default_factory=list)

    def put(self, item: Entity, condition: Condition | None = None, on_fail: OnFail = None) -> None:
        self.ops.append(_Op("save", (item,), {"condition": condition}, on_fail))

    def create(self, item: Entity, on_fail: OnFail = None) -> None:
        """Put that fails (with ``on_fail``) if an item with the same key exists."""
        self.put(item, Entity.PK.does_not_exist(), on_fail)

    def update(
        self, item: Entity, actions: list[Action], condition: Condition | None = None, on_fail: OnFail = None
    ) -> None:
        """Update ``item``; a second update of the same item in this transaction is merged into the first,
        because DynamoDB rejects a transaction that touches one item twice."""
        for op in self.ops:
            if op.kind == "update" and (op.args[0].PK, op.args[0].SK) == (item.PK, item.SK):
                op.args[1].extend(actions)
                if condition is not None:
                    previous = op.kwargs["condition"]
                    op.kwargs["condition"] = condition if previous is None else previous & condition
                op.on_fail = op.on_fail or on_fail
                return
        self.ops.append(_Op("update", (item, list(actions)), {"condition": condition}, on_fail))

    def put_raw(self, operation: dict[str, Any], key: tuple[str, str], on_fail: OnFail = None) -> None:
        """A ``Put`` already in DynamoDB JSON (``store.import_items``: the bulk path builds no model objects)."""
        self.ops.append(_Op("raw_put", (operation, key), {}, on_fail))

    def update_raw(self, operation: dict[str, Any], key: tuple[str, str], on_fail: OnFail = None) -> None:
        """An ``Update`` already in DynamoDB JSON (not merged with other updates of the item: stage one per item)."""
        self.ops.append(_Op("raw_update", (operation, key), {}, on_fail))

    def saved(self) -> list[Entity]:
        """The items this transaction puts (model puts only)."""
        return [op.args[0] for op in self.ops if op.kind == "save"]

    def touches(self, key: tuple[str, str]) -> bool:
        return any(self._key(op) == key for op in self.ops)

    @staticmethod
    def _key(op: _Op) -> tuple[str, str]:
        if op.kind == "condition_check":
            return op.args[1], op.args[2]
        if op.kind in ("raw_put", "raw_update"):
            return op.args[1]  # type: ignore[no-any-return]
        return op.args[0].PK, op.args[0].SK

    def delete(self, item: Entity, condition: Condition | None = None, on_fail: OnFail = None) -> None:
        self.ops.append(_Op("delete", (item,), {"condition": condition}, on_fail))

    def check(
        self, model: type[Entity], key: tuple[str, str], condition: Condition, on_fail: OnFail = None
    ) -> None:
        self.ops.append(_Op("condition_check", (model, key[0], key[1]), {"condition": condition}, on_fail))

    def __len__(self) -> int:
        return len(self.ops)

    def commit(self, *, attempts: int = 6, token: str | None = None) -> None:
        if not self.ops:
            return
        if len(self.ops) > MAX_TRANSACTION_ITEMS:
            raise ValueError(f"transaction has {len(self.ops)} items; DynamoDB allows {MAX_TRANSACTION_ITEMS}")
        for attempt in range(attempts):
            try:
                self._commit_once(token)
                return
            except TransactWriteError as exc:
                error = self._failed_condition(exc)
                if error is not None:
                    raise error from None
                if not self._retryable(exc) or attempt == attempts - 1:
                    raise map_store_error(exc) from exc
                # Full jitter: concurrent writers to the same items spread out.
                time.sleep(random.uniform(0, 0.02 * (2**attempt)))

    def _commit_once(self, token: str | None) -> None:
        connection: Connection = shared_connection().connection
        if any(op.kind in ("raw_put", "raw_update") for op in self.ops):
            self._commit_with_raw(connection, token)
            return
        with TransactWrite(connection=connection, client_request_token=token) as tx:
            for op in self.ops:
                if op.kind == "save":
                    tx.save(op.args[0], condition=op.kwargs["condition"], return_values="ALL_OLD")
                elif op.kind == "update":
                    tx.update(op.args[0], op.args[1], condition=op.kwargs["condition"], return_values="ALL_OLD")
                elif op.kind == "delete":
                    tx.delete(op.args[0], condition=op.kwargs["condition"])
                else:
                    model, hash_key, range_key = op.args
                    tx.condition_check(model, hash_key, range_key, condition=op.kwargs["condition"])

    def _commit_with_raw(self, connection: Connection, token: str | None) -> None:
        """Sent as ``TransactWrite`` sends the operations, the raw ones as they are; errors raised as it raises them."""
        checks, deletes, puts, updates = self.wire_operations()
        connection.transact_write_items(condition_check_items=checks, delete_items=deletes, put_items=puts,
                                        update_items=updates, client_request_token=token)

    def wire_operations(self) -> tuple[list[dict[str, Any]], ...]:
        """``(condition checks, deletes, puts, updates)`` as PynamoDB's ``TransactWrite`` would send them (each
        kind in the order staged, which :meth:`_failed_condition` relies on), raw operations as they are."""
        checks: list[dict[str, Any]] = []
        deletes: list[dict[str, Any]] = []
        puts: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        for op in self.ops:
            condition = op.kwargs.get("condition")
            if op.kind == "raw_put":
                puts.append(op.args[0])
            elif op.kind == "raw_update":
                updates.append(op.args[0])
            elif op.kind == "save":
                puts.append(op.args[0].get_save_kwargs_from_instance(
                    condition=condition, return_values_on_condition_failure="ALL_OLD"))
            elif op.kind == "update":
                updates.append(op.args[0].get_update_kwargs_from_instance(
                    actions=op.args[1], condition=condition, return_values_on_condition_failure="ALL_OLD"))
            elif op.kind == "delete":
                deletes.append(op.args[0].get_delete_kwargs_from_instance(condition=condition))
            else:
                model, hash_key, range_key = op.args
                checks.append(model.get_operation_kwargs_from_class(hash_key, range_key=range_key, condition=condition))
        return checks, deletes, puts, updates

    def _failed_condition(self, exc: TransactWriteError) -> Exception | None:
        if exc.cause_response_code != "TransactionCanceledException":
            return None
        reasons = exc.cancellation_reasons or []
        # PynamoDB sends condition checks, then deletes, puts and updates (its reasons follow that order).
        sent = sorted(self.ops, key=lambda op: _SENT_ORDER[op.kind])
        for op, reason in zip(sent, reasons, strict=False):
            if reason is not None and reason.code == "ConditionalCheckFailed":
                if op.on_fail is None:
                    return Conflict("The request conflicts with the current state", code="conflict")
                if isinstance(op.on_fail, Exception):
                    return op.on_fail
                return op.on_fail(reason.raw_item)
        return None

    @staticmethod
    def _retryable(exc: TransactWriteError) -> bool:
        if exc.cause_response_code == "TransactionCanceledException":
            codes = {r.code for r in (exc.cancellation_reasons or []) if r is not None}
            return bool(codes) and codes <= _RETRYABLE
        return exc.cause_response_code in _THROTTLED or exc.cause_response_code == "TransactionInProgressException"


def map_store_error(exc: PynamoDBException) -> DomainError | PynamoDBException:
    """Store errors a client can cause or fix by retrying become domain errors; the rest stay bugs (500).

    * throttling, and transactions cancelled only by contention or throttling: 503 (retry);
    * DynamoDB refusing a value (``ValidationException``, a ``ValidationError`` cancellation
      reason: a key too long, an item over 400 KB, ...): 400 ``invalid_input``. Input that
      reaches the store should have been refused at the edge, so this is also logged; it is
      never a 503, which well-behaved senders would retry forever.
    """
    code = exc.cause_response_code or ""
    reasons = {r.code for r in (getattr(exc, "cancellation_reasons", None) or []) if r is not None and r.code}
    if code == "ValidationException" or (code == "TransactionCanceledException" and reasons & _INVALID):
        _log.warning("store refused a value", extra={"store_code": code, "reasons": sorted(reasons)})
        return BadRequest("The data store refused a value in the request", code="invalid_input",
                          details={"store_code": code})
    if code in _THROTTLED or code == "TransactionInProgressException" or (
        code == "TransactionCanceledException" and (not reasons or reasons <= _RETRYABLE | {"None"})
    ):
        return ServiceUnavailable("The data store is busy; retry the request", details={"store_code": code})
    return exc
