"""Rewards and ledger stage of the event pipeline (see ``services.pipeline``).

The pipeline calls these three functions; this module owns everything about
points: which extra items to read, and which ledger entries, balance changes,
counters and outbox messages to add to the event's one transaction.

Contract:
* ``first_read_keys(ctx)``: extra keys for the first batched read (e.g. the
  original order's event record when ``ctx.event`` is a refund).
* ``second_read_keys(ctx, first, chains)``: extra keys for the second batched read,
  knowing every member whose state may matter: ``chains`` lists candidate
  ``[subject, level-1, level-2, ...]`` member-id chains.
* ``stage(ctx, tx, view)``: add items to ``tx`` and return a JSON-able summary for
  the webhook reply (stored in the event record, so duplicates get it too).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chalicelib.services.pipeline import EventContext, StageView
    from chalicelib.store.transact import Transaction


def first_read_keys(ctx: EventContext) -> list[tuple[str, str]]:
    return []


def second_read_keys(ctx: EventContext, first: dict[tuple[str, str], Any], chains: list[list[str]]) -> list[tuple[str, str]]:
    return []


def stage(ctx: EventContext, tx: Transaction, view: StageView) -> dict[str, Any]:
    return {"postings": []}
