"""The review item of a held event, written by the ledger stage in the event's transaction (docs/fraud.md).

One item per held event: its id is derived from the business key, so a replay cannot queue it twice. Each member
it names gets a back-reference (``ReviewRefItem``) in her partition, in the same transaction. The queue
and the decision are ``services.review`` (on the ports).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chalicelib.domain import clock
from chalicelib.domain.records import REVIEW_OPEN, stable_id
from chalicelib.services.risk_stage import HOLD_REASONS
from chalicelib.store import keys
from chalicelib.store.review import ReviewItem, ReviewRefItem, review_members

if TYPE_CHECKING:
    from chalicelib.services.event_context import EventContext, StageView
    from chalicelib.store.transact import Transaction


def stage_review_item(ctx: EventContext, tx: Transaction, view: StageView, postings: list[dict[str, Any]],
                      risk: dict[str, Any], vouchers: list[dict[str, Any]] | None = None) -> str:
    item_id = stable_id("rev", ctx.business_key)
    now = clock.iso(ctx.now)
    pk, sk = keys.review_item(ctx.program_id, item_id)
    g1pk, g1sk = keys.gsi1_review_open(ctx.program_id, now, item_id)
    g2pk, g2sk = keys.gsi2_review_open_partner(ctx.program_id, ctx.partner_id, now, item_id)
    subject = view.subject
    assert subject is not None
    entries = [{"member_id": p["member_id"], "sk": p["sk"], "entry_id": p["entry_id"], "points": int(p["points"]),
                "available_at": clock.iso(p["available_at"]) if p.get("available_at") else None,
                "rule_id": p.get("rule_id")} for p in postings]
    signals = [ref.kind + "#" + ref.value_hash for ref in ctx.signals if ref.kind in ("device", "payment")]
    item = ReviewItem(
        PK=pk, SK=sk, GSI1PK=g1pk, GSI1SK=g1sk, GSI2PK=g2pk, GSI2SK=g2sk, program_id=ctx.program_id,
        item_id=item_id, partner_id=ctx.partner_id, business_key=ctx.business_key, event_type=ctx.event.type,
        member_id=subject.member_id, referrer_id=subject.referrer_id,
        reasons=[{"code": code, "reason": HOLD_REASONS[code]} for code in risk.get("hold") or []],
        matched=list(risk.get("matched") or []), entries=entries, signals=signals,
        deny=[ref.kind + "#" + ref.value_hash for ref in ctx.deny], vouchers=list(vouchers or []),
        points=sum(e["points"] for e in entries), status=REVIEW_OPEN, created_at=ctx.now,
    )
    tx.create(item)
    for member_id in review_members(item):  # the back-references (erasure, export): 1 + levels more items
        rpk, rsk = keys.review_ref(ctx.program_id, member_id, item_id)
        tx.put(ReviewRefItem(PK=rpk, SK=rsk, program_id=ctx.program_id, member_id=member_id, item_id=item_id,
                             created_at=ctx.now))
    return item_id
