"""The pipeline's stage interface and registry (see ``services.pipeline``).

A stage runs after membership and attribution were decided. It may ask for extra items in each
of the pipeline's two batched reads and adds its writes to the event's one transaction:

* ``first_read_keys(ctx)``: keys for the first ``BatchGetItem`` (e.g. an order's ledger item);
* ``second_read_keys(ctx, first, chains)``: keys for the second, knowing every member whose state
  may matter (``chains`` lists candidate ``[subject, level-1, level-2, ...]`` member-id chains);
* ``stage(ctx, tx, view)``: add items to ``tx`` (conditions included) and return a
  :class:`StageOutcome`: ``reply`` is merged into the webhook reply (and kept on the event record,
  so a duplicate delivery gets the same answer); ``audit`` is for later stages only (``view.outcomes``),
  never stored: the event record stays small (the ledger entries hold the postings).

A condition that fails because of a concurrent writer raises ``RetryEvent`` (re-read, re-decide)
or ``AlreadyProcessed`` (the fact was processed by someone else) through the transaction's
``on_fail``. Stages never read or write outside the two reads and the one transaction.

Stages run in registration order and see what earlier stages returned (``view.outcomes``). The
built-in stages are listed in :func:`builtin_stages`; a new one (vouchers, tiers, settlement,
notifications) is a class with these three methods, added there or with :func:`register`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from chalicelib.services.event_context import EventContext, StageView
    from chalicelib.store.transact import Transaction

Key = tuple[str, str]


@dataclass
class StageOutcome:
    #: Merged into the webhook reply (JSON-able).
    reply: dict[str, Any] = field(default_factory=dict)
    #: For later stages (``view.outcomes``), not stored (e.g. ``postings``: the ledger entries written).
    audit: dict[str, Any] = field(default_factory=dict)


class Stage(Protocol):
    #: Unique, stable (``view.outcomes`` is keyed by it).
    name: str

    def first_read_keys(self, ctx: EventContext) -> list[Key]: ...

    def second_read_keys(self, ctx: EventContext, first: dict[Key, Any], chains: list[list[str]]) -> list[Key]: ...

    def stage(self, ctx: EventContext, tx: Transaction, view: StageView) -> StageOutcome: ...


_extra: list[Stage] = []


def builtin_stages() -> list[Stage]:
    """The stages every event goes through, in order (imported on first use: cold start)."""
    from chalicelib.services.ledger import LedgerStage
    from chalicelib.services.risk_stage import RiskStage
    from chalicelib.services.suppression_stage import SuppressionStage
    from chalicelib.services.tier_stage import TierStage

    return [RiskStage(), LedgerStage(), TierStage(), SuppressionStage()]


_builtin: list[Stage] | None = None


def register(stage: Stage) -> Stage:
    """Add a stage after the built-in ones (and after those registered before it)."""
    if any(s.name == stage.name for s in registered()):
        raise ValueError(f"a stage named {stage.name!r} is already registered")
    _extra.append(stage)
    return stage


def unregister(name: str) -> None:
    _extra[:] = [s for s in _extra if s.name != name]


def registered() -> tuple[Stage, ...]:
    global _builtin
    if _builtin is None:
        _builtin = builtin_stages()
    return (*_builtin, *_extra)
