"""What one event adds to the ledger, collected per item before it is staged.

New entries are created with ``attribute_not_exists`` under a deterministic key (a replay of the
fact targets the same item and is refused); one balance update per member (ADD, conditioned where
a debit could overdraw or owed points are repaid). No message: ``points_earned`` and ``points_reversed``
are derived from the new entries by the stream consumer (``services.ledger.outbox``).
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any

from chalicelib.services.outcomes import AlreadyProcessed, RetryEvent
from chalicelib.store import keys
from chalicelib.store.ledger import BalanceDelta, BalanceItem, LedgerEntryItem, stage_balance
from chalicelib.store.members import MemberItem

if TYPE_CHECKING:
    from chalicelib.services.event_context import EventContext
    from chalicelib.store.transact import Transaction

Key = tuple[str, str]


class LedgerPlan:
    def __init__(self, ctx: EventContext, items: dict[Key, Any], subject: MemberItem | None) -> None:
        self.ctx = ctx
        self.items = items
        self.subject = subject
        self.deltas: dict[str, BalanceDelta] = defaultdict(BalanceDelta)
        self.earned: dict[str, list[LedgerEntryItem]] = defaultdict(list)
        self.new_entries: list[LedgerEntryItem] = []
        #: Hold reason codes of the risk stage: when set, every reward of the event is posted ``held``.
        self.hold: list[str] = []

    def profile(self, member_id: str) -> MemberItem | None:
        if self.subject is not None and self.subject.member_id == member_id:
            return self.subject
        item = self.items.get(keys.member(self.ctx.program_id, member_id))
        return item if isinstance(item, MemberItem) else None

    def balance(self, member_id: str) -> BalanceItem | None:
        item = self.items.get(keys.balance(self.ctx.program_id, member_id))
        return item if isinstance(item, BalanceItem) else None

    def stage(self, tx: Transaction) -> None:
        for entry in self.new_entries:
            tx.create(entry, on_fail=AlreadyProcessed())
        for member_id, delta in self.deltas.items():
            stage_balance(tx, self.ctx.program_id, member_id, self.balance(member_id), delta, on_fail=RetryEvent())
        # No outbox item here: the stream consumer derives ``points_earned`` and ``points_reversed`` from the
        # entries (services.ledger.outbox), so the event's transaction does not pay for them.


def posting_key(rule_id: str, level: int, member_id: str) -> str:
    return f"{rule_id}#{level}#{member_id}"


def public(posting: dict[str, Any]) -> dict[str, Any]:
    """What the webhook reply shows of a posting or reversal."""
    return {k: posting[k] for k in ("entry_id", "member_id", "points", "status", "rule_id", "rule_version", "level",
                                    "reason") if k in posting}
