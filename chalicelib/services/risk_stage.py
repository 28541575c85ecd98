"""Risk stage of the event pipeline: the event's fraud signals, kept as salted-hash pointers.

The signals (``domain.signals``: device, payment, shipping, ip_ua, ip) are hashed per program
before the first read (``signal_refs``); their pointers (``store.signals.SignalItem``) come in the
pipeline's first batched read, so attribution's checks see who else used them without another
round trip. This stage records the subject on every signal pointer of the event in the event's
transaction (conditioned on the revision read). Listed before the ledger in ``builtin_stages``.
Signal values are never logged or stored.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chalicelib.domain import signals
from chalicelib.domain.events import CanonicalEvent
from chalicelib.services.outcomes import RetryEvent
from chalicelib.services.stages import StageOutcome
from chalicelib.store.signals import SignalItem, SignalRef, updated_members

if TYPE_CHECKING:
    from chalicelib.services import ports
    from chalicelib.services.event_context import EventContext, StageView
    from chalicelib.store.transact import Transaction

Key = tuple[str, str]
#: The master-secret derivation purpose of the signal hash key.
KEY_PURPOSE = "fraud-signals"


def signal_refs(program_id: str, event: CanonicalEvent, deps: ports.Ports) -> list[SignalRef]:
    values = signals.signal_values(event.context)
    if not values:
        return []
    key = deps.secrets.derive_key(KEY_PURPOSE)
    return [SignalRef(kind, signals.signal_hash(key, program_id, kind, value)) for kind, value in values]


def signal_items(ctx: EventContext, items: dict[Key, Any]) -> dict[str, SignalItem]:
    """kind → the pointer read for this event's signal of that kind (absent when never seen)."""
    out: dict[str, SignalItem] = {}
    for ref in ctx.signals:
        item = items.get(ref.pointer_key(ctx.program_id))
        if isinstance(item, SignalItem):
            out[ref.kind] = item
    return out


class RiskStage:
    name = "risk"

    def first_read_keys(self, ctx: EventContext) -> list[Key]:
        return []  # the signal pointers are in the pipeline's own first-read keys (attribution needs them)

    def second_read_keys(self, ctx: EventContext, first: dict[Key, Any], chains: list[list[str]]) -> list[Key]:
        return []

    def stage(self, ctx: EventContext, tx: Transaction, view: StageView) -> StageOutcome:
        if view.subject is None or not ctx.signals:
            return StageOutcome()
        member_id = view.subject.member_id
        for ref in ctx.signals:
            key = ref.pointer_key(ctx.program_id)
            read = view.items.get(key)
            read = read if isinstance(read, SignalItem) else None
            members = updated_members(read, member_id, ctx.now)
            if members is None or tx.touches(key):
                continue
            item = SignalItem(PK=key[0], SK=key[1], program_id=ctx.program_id, kind=ref.kind, members=members,
                              first_seen_at=read.first_seen_at if read else ctx.now, last_seen_at=ctx.now,
                              revision=int(read.revision or 0) + 1 if read else 1)
            if read is None:
                tx.create(item, on_fail=RetryEvent())
            else:
                tx.put(item, SignalItem.revision == int(read.revision or 0), on_fail=RetryEvent())
        return StageOutcome(audit={"signals": [ref.kind for ref in ctx.signals]})
