"""Risk stage of the event pipeline: fraud signals, velocity limits and review holds.

The signals (``domain.signals``: device, payment, shipping, ip_ua, ip) are hashed per program
before the first read (``signal_refs``); their pointers (``store.signals.SignalItem``) come in the
pipeline's first batched read, so attribution's checks see who else used them without another
round trip. This stage records the subject on every signal pointer of the event in the event's
transaction (conditioned on the revision read), and, when the subject is new on a pointer, her back-reference
``store.signals.SignalRefItem`` in her partition (erasure and export find her pointers by it). Listed before the
ledger in ``builtin_stages``.
Signal values are never logged or stored.

Holds (docs/fraud.md): velocity counters (``store.review.VelocityItem``; the signal ones in the
first read, the referrer's in the second) and the signal pointers decide whether the event's
rewards are posted ``held``: the reasons go to ``StageOutcome.audit["hold"]``, which the ledger
stage reads (``view.outcomes["risk"]``) to post held entries and create the review item.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from chalicelib.domain import signals
from chalicelib.domain.events import CanonicalEvent, Context
from chalicelib.services.outcomes import RetryEvent
from chalicelib.services.stages import StageOutcome
from chalicelib.store import keys
from chalicelib.store.ledger import identity_actions
from chalicelib.store.review import DenyItem, VelocityItem
from chalicelib.store.signals import SignalItem, SignalRef, new_on_pointer, next_pointer, signal_ref, updated_members

if TYPE_CHECKING:
    from chalicelib.services import ports
    from chalicelib.services.event_context import EventContext, StageView
    from chalicelib.store.transact import Transaction

Key = tuple[str, str]
#: The master-secret derivation purpose of the signal hash key.
KEY_PURPOSE = "fraud-signals"


def signal_refs(program_id: str, event: CanonicalEvent, deps: ports.Ports) -> list[SignalRef]:
    return context_refs(program_id, event.context, deps)


def context_refs(program_id: str, context: Context | None, deps: ports.Ports) -> list[SignalRef]:
    """The keyed hashes of a ``context``'s signals (an event's or a landing invite's), strongest kind first."""
    values = signals.signal_values(context)
    if not values:
        return []
    key = deps.secrets.derive_key(KEY_PURPOSE)
    return [SignalRef(kind, signals.signal_hash(key, program_id, kind, value)) for kind, value in values]


DENY_KEY_PURPOSE = "shared-deny-list"


def deny_refs(program: Any, event: CanonicalEvent, deps: ports.Ports) -> list[SignalRef]:
    if not program.program_settings.fraud.shared_deny_list:
        return []
    values = [(k, v) for k, v in signals.signal_values(event.context) if k in signals.DENY_KINDS]
    if not values:
        return []
    key = deps.secrets.derive_key(DENY_KEY_PURPOSE)
    return [SignalRef(kind, signals.deny_hash(key, kind, value)) for kind, value in values]


def signal_items(ctx: EventContext, items: dict[Key, Any]) -> dict[str, SignalItem]:
    """kind → the pointer read for this event's signal of that kind (absent when never seen)."""
    out: dict[str, SignalItem] = {}
    for ref in ctx.signals:
        item = items.get(ref.pointer_key(ctx.program_id))
        if isinstance(item, SignalItem):
            out[ref.kind] = item
    return out


#: Signals counted per day (first purchases) and per referrer (friends): an IP or a device.
COUNTED_SIGNALS = ("ip", "device")
HOLD_REASONS = {
    "velocity_signups_hour": "The referrer brought more friends this hour than the program allows.",
    "velocity_signups_day": "The referrer brought more friends today than the program allows.",
    "velocity_rewards_day": "The referrer earned more referral rewards today than the program allows.",
    "velocity_first_purchases": "More first purchases than the program allows came from one IP address or device today.",
    "many_friends_same_signal": "Too many friends of this referrer came from one IP address or device.",
    "same_network_as_referrer": "The friend used the referrer's IP address and browser recently.",
    "signal_voided_as_fraud": "A device or payment method of this event was voided as fraud before.",
    "shared_deny_list": "A device or payment method of this event is on the deployment's shared deny list.",
}


def _hour(at: datetime) -> str:
    return at.strftime("%Y%m%d%H")


def _day(at: datetime) -> str:
    return at.strftime("%Y%m%d")


def _signal_counter(ctx: EventContext, ref: SignalRef) -> Key:
    return keys.velocity(ctx.program_id, f"sig#{ref.kind}#{ref.value_hash}", f"FP#{_day(ctx.now)}")


def _referrer_counters(ctx: EventContext, referrer_id: str) -> dict[str, Key]:
    scope = f"ref#{referrer_id}"
    out = {"velocity_signups_hour": keys.velocity(ctx.program_id, scope, f"SU#H#{_hour(ctx.now)}"),
           "velocity_signups_day": keys.velocity(ctx.program_id, scope, f"SU#D#{_day(ctx.now)}"),
           "velocity_rewards_day": keys.velocity(ctx.program_id, scope, f"RW#D#{_day(ctx.now)}")}
    for ref in ctx.signals:
        if ref.kind in COUNTED_SIGNALS:
            out[f"friends#{ref.kind}"] = keys.velocity(ctx.program_id, scope, f"SIG#{ref.kind}#{ref.value_hash}")
    return out


def _count(items: dict[Key, Any], key: Key) -> int:
    item = items.get(key)
    return int(item.hits or 0) if isinstance(item, VelocityItem) else 0


class _Counters:
    """Counter increments of one event, each conditioned on the decision it was part of."""

    def __init__(self, ctx: EventContext, items: dict[Key, Any]) -> None:
        self.ctx, self.items = ctx, items
        self.writes: dict[Key, tuple[int | None, int]] = {}

    def take(self, key: Key, limit: int, ttl: timedelta) -> bool:
        """Count this event; True when it is over ``limit`` (the limit was reached before it)."""
        count = _count(self.items, key)
        over = count >= limit
        self.writes[key] = (None if over else limit, int((self.ctx.now + ttl).timestamp()))
        return over

    def stage(self, tx: Transaction) -> None:
        for key, (limit, expires) in self.writes.items():
            condition = None if limit is None else (VelocityItem.hits.does_not_exist() | (VelocityItem.hits < limit))
            tx.update(VelocityItem(PK=key[0], SK=key[1]),
                      [VelocityItem.hits.add(1), VelocityItem.expires_at_epoch.set(expires),
                       *identity_actions(VelocityItem)], condition, on_fail=RetryEvent())


def assess(ctx: EventContext, tx: Transaction, view: StageView) -> tuple[list[str], list[str]]:
    """(hold reason codes, matched-signal descriptions) of the event; counters staged in ``tx``."""
    subject = view.subject
    if subject is None:
        return [], []
    limits = ctx.settings.fraud
    counters = _Counters(ctx, view.items)
    reasons: list[str] = []
    matched: list[str] = []
    pointers = signal_items(ctx, view.items)
    referrer = subject.referrer_id
    credited = (view.attribution or {}).get("outcome") == "credited"
    day, hour = timedelta(days=2), timedelta(hours=2)
    if referrer and credited:
        keyset = _referrer_counters(ctx, referrer)
        if counters.take(keyset["velocity_signups_hour"], limits.signups_per_referrer_hour, hour):
            reasons.append("velocity_signups_hour")
        if counters.take(keyset["velocity_signups_day"], limits.signups_per_referrer_day, day):
            reasons.append("velocity_signups_day")
        for kind in COUNTED_SIGNALS:
            key = keyset.get(f"friends#{kind}")
            if key and counters.take(key, limits.friends_per_signal, timedelta(days=90)):
                reasons.append("many_friends_same_signal")
                matched.append(f"many friends of the referrer from the same {signals.SIGNAL_LABELS[kind]}")
    if referrer and view.converts_referral and not credited:
        # The friend joined earlier: their referrer is over a signup limit now (a farm signed up first).
        keyset = _referrer_counters(ctx, referrer)
        for code, limit in (("velocity_signups_hour", limits.signups_per_referrer_hour),
                            ("velocity_signups_day", limits.signups_per_referrer_day)):
            if _count(view.items, keyset[code]) > limit:
                reasons.append(code)
    if referrer and view.converts_referral and counters.take(
            _referrer_counters(ctx, referrer)["velocity_rewards_day"], limits.rewards_per_referrer_day, day):
        reasons.append("velocity_rewards_day")
    if ctx.is_purchase and view.orders_before == 0:
        for ref in ctx.signals:
            if ref.kind in COUNTED_SIGNALS and counters.take(_signal_counter(ctx, ref),
                                                              limits.first_purchases_per_signal_day, day):
                reasons.append("velocity_first_purchases")
                matched.append(f"many first purchases from the same {signals.SIGNAL_LABELS[ref.kind]} today")
    if referrer and (credited or view.converts_referral):
        pointer = pointers.get("ip_ua")
        seen = pointer.seen().get(referrer) if pointer else None
        if seen is not None and ctx.now - seen <= timedelta(hours=limits.same_network_hours):
            reasons.append("same_network_as_referrer")
            matched.append("same IP address and browser as the referrer")
    invite = _credited_invite(ctx, view, referrer, credited)
    if invite is not None and (credited or view.converts_referral) and invite.risk_holds:
        # The landing call that recorded this invite matched (services.landing.signals): hold as if the event had.
        reasons.extend(invite.risk_holds)
        matched.extend(invite.risk_matched or [])
    for kind in ("device", "payment"):
        pointer = pointers.get(kind)
        if pointer is not None and pointer.fraud_at is not None:
            reasons.append("signal_voided_as_fraud")
            matched.append(f"{signals.SIGNAL_LABELS[kind]} voided as fraud before")
    for ref in ctx.deny:
        if isinstance(view.items.get(keys.deny_list(ref.kind, ref.value_hash)), DenyItem):
            reasons.append("shared_deny_list")
            matched.append(f"{signals.SIGNAL_LABELS[ref.kind]} on the shared deny list")
    counters.stage(tx)
    return list(dict.fromkeys(reasons)), list(dict.fromkeys(matched))


def _credited_invite(ctx: EventContext, view: StageView, referrer: str | None, credited: bool) -> Any:
    """The pending invite (first read) through which the subject's current referrer was credited, if any."""
    from chalicelib.store.members import PendingInviteItem

    if referrer is None or view.subject is None:
        return None
    source = (view.attribution or {}).get("source") if credited else view.subject.attribution_source
    if source != "invite_match":
        return None
    for ref in ctx.refs:
        invite = view.items.get(ref.invite_key(ctx.program_id))
        if isinstance(invite, PendingInviteItem) and invite.referrer_id == referrer:
            return invite
    return None


class RiskStage:
    name = "risk"

    def first_read_keys(self, ctx: EventContext) -> list[Key]:
        # The signal pointers are in the pipeline's own first-read keys (attribution needs them).
        wanted = [keys.deny_list(ref.kind, ref.value_hash) for ref in ctx.deny]
        if ctx.is_purchase:
            wanted += [_signal_counter(ctx, ref) for ref in ctx.signals if ref.kind in COUNTED_SIGNALS]
        return wanted

    def second_read_keys(self, ctx: EventContext, first: dict[Key, Any], chains: list[list[str]]) -> list[Key]:
        from chalicelib.services.attribution_stage import candidate_pointers

        # The possible referrers: every candidate, and the current one (the head of the subject's stored ancestry).
        referrers = {c.member_id for c in candidate_pointers(ctx, first) if c.member_id}
        for ref in ctx.refs:
            pointer = first.get(ref.pointer_key(ctx.program_id))
            ancestors = getattr(pointer, "ancestors", None)
            if ancestors:
                referrers.add(ancestors[0])
        return [key for r in referrers for key in _referrer_counters(ctx, r).values()]

    def stage(self, ctx: EventContext, tx: Transaction, view: StageView) -> StageOutcome:
        if view.subject is None:
            return StageOutcome()
        hold, matched = assess(ctx, tx, view)
        audit: dict[str, Any] = {"signals": [ref.kind for ref in ctx.signals], "hold": hold, "matched": matched}
        reply = {"risk": {"held": True, "reasons": hold, "matched": matched}} if hold else {}
        self._record_signals(ctx, tx, view)
        return StageOutcome(reply=reply, audit=audit)

    @staticmethod
    def _record_signals(ctx: EventContext, tx: Transaction, view: StageView) -> None:
        assert view.subject is not None
        member_id = view.subject.member_id
        for ref in ctx.signals:
            key = ref.pointer_key(ctx.program_id)
            read = view.items.get(key)
            read = read if isinstance(read, SignalItem) else None
            members = updated_members(read, member_id, ctx.now)
            if members is None or tx.touches(key):
                continue
            item = next_pointer(key, ctx.program_id, ref.kind, members, read, ctx.now)
            if read is None:
                tx.create(item, on_fail=RetryEvent())
            else:
                tx.put(item, SignalItem.revision == int(read.revision or 0), on_fail=RetryEvent())
            if new_on_pointer(read, member_id):  # her back-reference (erasure, export): one more put, first time only
                tx.put(signal_ref(ctx.program_id, member_id, ref.kind, ref.value_hash, ctx.now))
