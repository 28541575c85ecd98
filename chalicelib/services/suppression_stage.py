"""The suppression stage of the event pipeline: a new member whose e-mail address was suppressed starts suppressed.

A bounce or complaint suppresses an address on the member's notification state (``NOTIFY``). When that
member is erased, the state keeps only the hashes and each one is marked on the program's tombstone for
the address (``ErasedIdentityItem.suppressed``, ``notify.erasure``). The person may sign up again (a new
member, ``membership_stage``): this stage reads the tombstone of the event's e-mail with the pipeline's
first batched read (one more key) and, when the event creates the member, writes the new member's
``NOTIFY`` item with that hash in the event's transaction, so no mail reaches an address that complained.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chalicelib.services.stages import StageOutcome
from chalicelib.store import keys
from chalicelib.store.data_rights import ErasedIdentityItem
from chalicelib.store.notify import NotifyStateItem

if TYPE_CHECKING:
    from chalicelib.services.event_context import EventContext, StageView
    from chalicelib.store.transact import Transaction

Key = tuple[str, str]


def _email_tombstones(ctx: EventContext) -> list[tuple[str, Key]]:
    return [(r.value_hash, keys.erased_identity(ctx.program_id, "email", r.value_hash))
            for r in ctx.refs if r.kind == "email"]


class SuppressionStage:
    name = "suppression"

    def first_read_keys(self, ctx: EventContext) -> list[Key]:
        return [key for _, key in _email_tombstones(ctx)]  # the pipeline's batch read drops duplicates

    def second_read_keys(self, ctx: EventContext, first: dict[Key, Any], chains: list[list[str]]) -> list[Key]:
        return []

    def stage(self, ctx: EventContext, tx: Transaction, view: StageView) -> StageOutcome:
        subject = view.subject
        if subject is None or keys.member(ctx.program_id, subject.member_id) in view.items:
            return StageOutcome()  # nobody, or a member that existed before this event
        suppressed = [value_hash for value_hash, key in _email_tombstones(ctx)
                      if isinstance(tomb := view.items.get(key), ErasedIdentityItem) and tomb.suppressed]
        if suppressed:
            pk, sk = keys.notify_state(ctx.program_id, subject.member_id)
            tx.create(NotifyStateItem(PK=pk, SK=sk, program_id=ctx.program_id, member_id=subject.member_id,
                                      suppressed=suppressed, updated_at=ctx.now))
        return StageOutcome()
