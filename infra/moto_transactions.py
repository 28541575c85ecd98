"""A faster ``TransactWriteItems`` for the local run's embedded moto (dev only; never shipped).

moto 5.x backs up the *whole table* with ``copy.deepcopy`` once per item of every transaction,
so the cost of a transaction grows with the table: after an import of 100,000 members each
webhook would take seconds. Real DynamoDB evaluates every condition of a transaction against the
state before it (items are distinct, which moto also enforces) and applies all or nothing. This
does the same directly: check every operation first, then apply them, keeping an undo log of the
touched items only in case an apply step fails. Error codes and cancellation reasons are moto's.
"""

from __future__ import annotations

import copy
from typing import Any

_OPS = {"ConditionCheck", "Put", "Delete", "Update"}


def install() -> None:
    from moto.dynamodb.comparisons import get_filter_expression
    from moto.dynamodb.exceptions import (
        ConditionalCheckFailed,
        MockValidationException,
        MultipleTransactionsException,
        TooManyTransactionsException,
        TransactionCanceledException,
        TransactWriteSingleOpException,
    )
    from moto.dynamodb.models import DynamoDBBackend

    if getattr(DynamoDBBackend.transact_write_items, "_sarafan", False):
        return

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        if len(transact_items) > 100:
            raise TooManyTransactionsException()
        seen: set[tuple[str, str]] = set()
        errors: list[tuple[Any, Any, Any]] = []
        planned: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
        for item in transact_items:
            if len(item) > 1:
                raise TransactWriteSingleOpException
            original_item = None
            try:
                op_type, op = next(iter(item.items()))
                if op_type not in _OPS:
                    raise ValueError("Unsupported transaction operation")
                table = self.get_table(op["TableName"])
                if op_type == "Put":
                    attrs = op["Item"]
                    key = {table.hash_key_attr: attrs[table.hash_key_attr]}
                    if table.range_key_attr is not None:
                        key[table.range_key_attr] = attrs[table.range_key_attr]
                else:
                    key = op["Key"]
                ident = (str(op["TableName"]), str(dict(sorted(key.items()))))
                if ident in seen:
                    raise MultipleTransactionsException()
                seen.add(ident)
                condition = op.get("ConditionExpression")
                if condition is not None:
                    current = self.get_item(op["TableName"], key)
                    check = get_filter_expression(condition, op.get("ExpressionAttributeNames"),
                                                  op.get("ExpressionAttributeValues"))
                    if not check.expr(current):
                        if op.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD" and current:
                            original_item = current.to_json()["Attributes"]
                        raise ConditionalCheckFailed(item=original_item)
                planned.append((op_type, op, key))
                errors.append((None, None, None))
            except (MultipleTransactionsException, MockValidationException):
                raise
            except ConditionalCheckFailed as exc:
                errors.append(("ConditionalCheckFailed", str(exc.message), original_item))
            except Exception as exc:
                errors.append((type(exc).__name__, str(exc), original_item))
        if any(code is not None for code, _, _ in errors):
            raise TransactionCanceledException(errors)
        undo: list[tuple[str, dict[str, Any], Any]] = []
        try:
            for op_type, op, key in planned:
                if op_type == "ConditionCheck":
                    continue
                table_name = op["TableName"]
                before = self.get_item(table_name, key)
                undo.append((table_name, key, copy.deepcopy(before) if before is not None else None))
                # The condition was checked above and still holds (no other operation touches this item);
                # passing it again keeps moto's validation of the expressions exactly as before.
                expressions = {"condition_expression": op.get("ConditionExpression"),
                               "expression_attribute_names": op.get("ExpressionAttributeNames"),
                               "expression_attribute_values": op.get("ExpressionAttributeValues")}
                if op_type == "Put":
                    self.put_item(table_name, op["Item"], **expressions)
                elif op_type == "Delete":
                    self.delete_item(table_name, key, **expressions)
                else:
                    self.update_item(table_name, key, update_expression=op["UpdateExpression"], **expressions)
        except Exception:
            for table_name, key, before in reversed(undo):
                if before is None:
                    self.delete_item(table_name, key)
                else:
                    self.put_item(table_name, before.to_json()["Attributes"])
            raise

    transact_write_items._sarafan = True  # type: ignore[attr-defined]
    DynamoDBBackend.transact_write_items = transact_write_items
