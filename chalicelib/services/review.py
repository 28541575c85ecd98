"""The fraud review queue: held rewards, their reasons, and the reviewer's decision (docs/fraud.md).

* ``stage_review_item``: the ledger stage creates one item per held event, in the event's
  transaction (id derived from the business key: a replay cannot queue it twice).
* ``queue``: open items, oldest first, one Query on a sparse index (GSI1 per program for the
  operator, GSI2 per partner for a partner key: a partner sees the items of its own events).
* ``decide``: approve (held entries become pending, or available when their holding period is
  over, and follow the normal rules) or void (each held entry is reversed with the reviewer's
  reason). One transaction, conditioned on the item still being open and every entry still
  held: of two concurrent decisions exactly one wins, the other is a 409. Repeating the decision
  that was taken answers the item again (idempotent). Who, when and why are kept on the item.
  Voiding with ``fraud: true`` marks the event's device and payment signals as fraud, so later
  events with them at any partner of the program are held (``risk_stage``).
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any

from pynamodb.expressions.update import Action

from chalicelib.domain import clock
from chalicelib.domain.errors import Conflict, NotFound
from chalicelib.domain.safe_json import SINGLE_LINE
from chalicelib.services import ports
from chalicelib.services.risk_stage import HOLD_REASONS
from chalicelib.store import keys
from chalicelib.store.db import Entity
from chalicelib.store.ledger import (
    KIND_REVERSAL,
    STATUS_AVAILABLE,
    STATUS_HELD,
    STATUS_PENDING,
    STATUS_REVERSED,
    BalanceDelta,
    BalanceItem,
    LedgerEntryItem,
    credit_index,
    day_of,
    new_entry,
    stable_id,
    stage_balance,
)
from chalicelib.store.members import batch_get
from chalicelib.store.review import REVIEW_APPROVED, REVIEW_OPEN, REVIEW_VOIDED, DenyItem, ReviewItem
from chalicelib.store.signals import SignalItem
from chalicelib.store.transact import Transaction

if TYPE_CHECKING:
    from chalicelib.services.auth import Principal
    from chalicelib.services.event_context import EventContext, StageView

DECISION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "reason": {"type": "string", "minLength": 1, "maxLength": 500, "pattern": SINGLE_LINE},
        "fraud": {"type": "boolean"},
    },
}
VOID_SCHEMA: dict[str, Any] = {**DECISION_SCHEMA, "required": ["reason"]}


def public_voucher(grant: dict[str, Any]) -> dict[str, Any]:
    """A held (or decided) voucher grant as replies and the queue show it: whose offer, for whom, what became of it."""
    return {"member_id": grant["member_id"], "partner_id": grant["partner_id"], "offer_id": grant["offer_id"],
            "rule_id": grant["rule_id"], "status": grant.get("status", "held"), "voucher_id": grant.get("voucher_id")}


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
    tx.create(ReviewItem(
        PK=pk, SK=sk, GSI1PK=g1pk, GSI1SK=g1sk, GSI2PK=g2pk, GSI2SK=g2sk, program_id=ctx.program_id,
        item_id=item_id, partner_id=ctx.partner_id, business_key=ctx.business_key, event_type=ctx.event.type,
        member_id=subject.member_id, referrer_id=subject.referrer_id,
        reasons=[{"code": code, "reason": HOLD_REASONS[code]} for code in risk.get("hold") or []],
        matched=list(risk.get("matched") or []), entries=entries, signals=signals,
        deny=[ref.kind + "#" + ref.value_hash for ref in ctx.deny], vouchers=list(vouchers or []),
        points=sum(e["points"] for e in entries), status=REVIEW_OPEN, created_at=ctx.now,
    ))
    return item_id


def view(item: ReviewItem) -> dict[str, Any]:
    return {
        "item_id": item.item_id, "status": item.status, "partner_id": item.partner_id,
        "event_type": item.event_type, "business_key": item.business_key, "member_id": item.member_id,
        "referrer_id": item.referrer_id, "reasons": list(item.reasons or []), "matched": list(item.matched or []),
        "points": int(item.points or 0),
        "entries": [{k: e.get(k) for k in ("member_id", "entry_id", "points", "rule_id")} for e in item.entries or []],
        "vouchers": [public_voucher(g) for g in item.vouchers or []],
        "created_at": clock.iso(item.created_at),
        "decision": None if item.decided_at is None else {
            "by": item.decided_by, "at": clock.iso(item.decided_at), "reason": item.decision_reason},
    }


def queue(principal: Principal, program_id: str, limit: int, cursor: dict[str, Any] | None) -> dict[str, Any]:
    principal.require_program(program_id)
    if principal.is_operator:
        partition = keys.gsi1_review_open(program_id, "", "")[0]
        result = ReviewItem.gsi1.query(partition, limit=limit, last_evaluated_key=cursor)
    else:
        assert principal.partner_id is not None
        partition = keys.gsi2_review_open_partner(program_id, principal.partner_id, "", "")[0]
        result = ReviewItem.gsi2.query(partition, limit=limit, last_evaluated_key=cursor)
    items = [view(i) for i in result if isinstance(i, ReviewItem)]
    return {"items": items, "next_cursor": result.last_evaluated_key}


def queue_partition(principal: Principal, program_id: str) -> tuple[str, str]:
    if principal.is_operator:
        return "GSI1PK", keys.gsi1_review_open(program_id, "", "")[0]
    return "GSI2PK", keys.gsi2_review_open_partner(program_id, principal.partner_id or "", "", "")[0]


def _item(principal: Principal, program_id: str, item_id: str) -> ReviewItem:
    principal.require_program(program_id)
    found = batch_get([keys.review_item(program_id, item_id)]).get(keys.review_item(program_id, item_id))
    if not isinstance(found, ReviewItem) or (not principal.is_operator and found.partner_id != principal.partner_id):
        raise NotFound("Review item not found", details={"item_id": item_id})
    return found


def _reviewer(principal: Principal) -> str:
    return "operator" if principal.is_operator else f"partner:{principal.partner_id}/key:{principal.key_id}"


class _Lost(Exception):
    pass


#: Reading an offer's pool again after a lost race for a code (another event took it meanwhile).
VOUCHER_ATTEMPTS = 3


def decide(principal: Principal, program_id: str, item_id: str, decision: str,
           data: dict[str, Any]) -> dict[str, Any]:
    from chalicelib.services.outcomes import RetryEvent

    for attempt in range(VOUCHER_ATTEMPTS):
        try:
            return _decide_once(principal, program_id, item_id, decision, data)
        except RetryEvent:  # only the vouchers' pool conditions raise it: read the pool again
            if attempt == VOUCHER_ATTEMPTS - 1:
                from chalicelib.domain.errors import ServiceUnavailable

                raise ServiceUnavailable("The offer's codes were contended; retry the decision") from None
    raise AssertionError("unreachable")  # pragma: no cover


def _stage_vouchers(tx: Transaction, item: ReviewItem, approved: bool, now: Any) -> list[dict[str, Any]]:
    """Approval issues the held grants (the pool as it is now: empty → ``pool_empty``); void issues none."""
    from chalicelib.services import vouchers as voucher_service
    from chalicelib.store import tenancy_repo

    grants = [dict(g) for g in item.vouchers or []]
    if not grants:
        return grants
    if not approved:
        return [{**g, "status": "voided"} for g in grants]
    program = tenancy_repo.get_program(item.program_id)
    pools: dict[tuple[str, str], voucher_service.PoolView] = {}
    out = []
    for grant in grants:
        ref = (grant["partner_id"], grant["offer_id"])
        if ref not in pools:
            pools[ref] = voucher_service.read_pool(item.program_id, *ref)
        voucher = voucher_service.issue_held_grant(tx, pools[ref], program, grant, now)
        out.append({**grant, "status": "issued", "voucher_id": voucher.voucher_id} if voucher is not None
                   else {**grant, "status": "pool_empty"})
    return out


def _decide_once(principal: Principal, program_id: str, item_id: str, decision: str,
                 data: dict[str, Any]) -> dict[str, Any]:
    wanted = REVIEW_APPROVED if decision == "approve" else REVIEW_VOIDED
    item = _item(principal, program_id, item_id)
    if item.status == wanted:
        return view(item)  # the same decision again: idempotent
    if item.status != REVIEW_OPEN:
        raise Conflict(f"The review item was already {item.status}", details={"status": item.status})
    now = ports.current().clock.now()
    entry_keys = [(keys.member_partition(program_id, e["member_id"]), e["sk"]) for e in item.entries or []]
    members = sorted({e["member_id"] for e in item.entries or []})
    read = batch_get([*entry_keys, *(keys.balance(program_id, m) for m in members)])
    tx = Transaction()
    deltas: dict[str, BalanceDelta] = defaultdict(BalanceDelta)
    reason = data.get("reason")
    for key in entry_keys:
        entry = read.get(key)
        if not isinstance(entry, LedgerEntryItem) or entry.status != STATUS_HELD:
            continue  # refunded meanwhile: nothing held is left of it
        net = entry.net_points
        E = LedgerEntryItem
        condition = (E.status == STATUS_HELD) & (E.reversed_points == int(entry.reversed_points or 0))
        actions: list[Action]
        if wanted == REVIEW_APPROVED:
            pending = entry.available_at is not None and entry.available_at > now
            status = STATUS_PENDING if pending else STATUS_AVAILABLE
            actions = [E.status.set(status)]
            if pending:
                assert entry.available_at is not None
                gpk, gsk = keys.gsi1_pending_release(day_of(entry.available_at), clock.iso(entry.available_at),
                                                     entry.entry_id)
                actions += [E.GSI1PK.set(gpk), E.GSI1SK.set(gsk)]
                deltas[entry.member_id].pending += net
            else:
                gpk, gsk = credit_index(entry, now)  # available now: the expiry job's month bucket
                actions += [E.released_at.set(now), E.GSI1PK.set(gpk), E.GSI1SK.set(gsk)]
                deltas[entry.member_id].available += net
        else:
            actions = [E.status.set(STATUS_REVERSED), E.reversed_points.set(int(entry.points))]
            tx.create(new_entry(
                program_id, entry.member_id, stable_id("le", "review-void", item.item_id, entry.entry_id), now,
                kind=KIND_REVERSAL, status=STATUS_REVERSED, points=-net,
                reason=f"Voided in fraud review: {reason}", reason_code="review_voided", created_at=now,
                business_key=item.business_key, rule_id=entry.rule_id, rule_version=entry.rule_version,
                level=entry.level, funding_partner_id=entry.funding_partner_id, partner_id=item.partner_id,
                reverses_entry_id=entry.entry_id, from_status=STATUS_HELD), on_fail=_Lost())
            deltas[entry.member_id].earned -= net
        deltas[entry.member_id].held -= net
        tx.update(entry, actions, condition, on_fail=_Lost())
    for member_id, delta in deltas.items():
        balance = read.get(keys.balance(program_id, member_id))
        stage_balance(tx, program_id, member_id, balance if isinstance(balance, BalanceItem) else None, delta,
                      on_fail=_Lost())
    if wanted == REVIEW_VOIDED and data.get("fraud"):
        for text in item.signals or []:
            kind, _, value_hash = text.partition("#")
            pk, sk = keys.signal(program_id, kind, value_hash)
            tx.update(SignalItem(PK=pk, SK=sk), [SignalItem.fraud_at.set(now)], Entity.PK.exists(), on_fail=_Lost())
        for text in item.deny or []:  # the program feeds the deployment's shared deny list
            kind, _, value_hash = text.partition("#")
            pk, sk = keys.deny_list(kind, value_hash)
            tx.put(DenyItem(PK=pk, SK=sk, kind=kind, added_at=now))
    decided_vouchers = _stage_vouchers(tx, item, wanted == REVIEW_APPROVED, now)
    R = ReviewItem
    tx.update(item, [R.status.set(wanted), R.decided_at.set(now), R.decided_by.set(_reviewer(principal)),
                     *([R.vouchers.set(decided_vouchers)] if decided_vouchers else []),
                     R.decision_reason.set(reason) if reason else R.decision_reason.remove(),
                     R.GSI1PK.remove(), R.GSI1SK.remove(), R.GSI2PK.remove(), R.GSI2SK.remove()],
              R.status == REVIEW_OPEN, on_fail=_Lost())
    try:
        tx.commit()
    except _Lost:
        fresh = _item(principal, program_id, item_id)
        if fresh.status == wanted:
            return view(fresh)
        raise Conflict("The review item was decided concurrently", details={"status": fresh.status}) from None
    return view(_item(principal, program_id, item_id))
