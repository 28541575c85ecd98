"""This capability's stream handlers (registered with ``notify.dispatcher``).

* ``outbox`` INSERT → deliver (messages of one member from one event are delivered as one);
* ``member`` INSERT with a referrer → a ``friend_joined`` message for the referrer;
* ``ledger_entry`` INSERT of rewards → ``points_earned``, one per member and event, and of a refund's
  reversals → ``points_reversed``, one per member and refund (the event's transaction writes no message
  for them: :func:`earned_messages`, :func:`reversed_messages`);
* ``ledger_entry`` MODIFY to ``available`` by the holding job (``released_at``) → ``points_available``;
  any ledger INSERT → the member's last-activity day (sleeping-member reminders), when enabled;
* ``redemption`` MODIFY to ``confirmed`` → ``points_spent``.

Derived messages are written as outbox items with deterministic ids (``attribute_not_exists``),
so a replayed record creates nothing new. They are created already claimed by the handler that derives
them and delivered by it at once (:class:`Derived`: no claim write, no second stream hop); their own
INSERT comes back through the stream and is skipped. Every delivery goes through ``Delivery``, the one
delivery path.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from chalicelib.domain import clock
from chalicelib.notify import dispatcher
from chalicelib.notify.delivery import PENDING, SENDING, Delivery, DeliveryBatch, Outcome
from chalicelib.services import ports
from chalicelib.store import keys
from chalicelib.store.db import get_or_none
from chalicelib.store.ledger import LedgerEntryItem, OutboxItem, RedemptionItem, day_of, stable_id
from chalicelib.store.members import JOINED_VIA_IMPORT, MemberItem, check_unerased, create_unless_erased
from chalicelib.store.notify import ActivityItem

log = logging.getLogger("sarafan.notify")

#: Called with every delivery outcome (the local run prints them); set by the runner, not in Lambda.
outcome_listeners: list[Callable[[Outcome], None]] = []
_delivery: Delivery | None = None
#: Groups (members) delivered at once within one batch.
MAX_PARALLEL = 8
_executor: tuple[int, ThreadPoolExecutor] | None = None  # (its size, the pool)
_executor_lock = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    """One pool of :data:`MAX_PARALLEL` threads for the life of the process (a warm Lambda container, the local
    run), instead of a new pool started and joined for every batch."""
    global _executor
    with _executor_lock:
        if _executor is None or _executor[0] != MAX_PARALLEL:  # tests and benchmarks change MAX_PARALLEL
            if _executor is not None:
                _executor[1].shutdown(wait=False)
            _executor = (MAX_PARALLEL, ThreadPoolExecutor(max_workers=MAX_PARALLEL, thread_name_prefix="notify"))
        return _executor[1]


def delivery() -> Delivery:
    global _delivery
    if _delivery is None:
        from chalicelib.notify.port import default_notifier

        _delivery = Delivery(default_notifier())
    return _delivery


def use_delivery(value: Delivery | None) -> None:
    """Tests and benchmarks inject a delivery with another notifier (``None`` = the AWS one)."""
    global _delivery
    _delivery = value


def _report(outcome: Outcome) -> None:
    level = logging.INFO if outcome.status in ("sent", "held", "skipped") else logging.WARNING
    log.log(level, "notification", extra={"message_id": outcome.message_id, "status": outcome.status,
                                          "template": outcome.kind, "error": outcome.error,
                                          "channels": [d["channel"] for d in outcome.deliveries]})
    for listener in list(outcome_listeners):
        listener(outcome)


def deliver_items(items: list[OutboxItem], claimed_by: str | None = None) -> list[Outcome]:
    """Group by (program, member, event) and deliver each group; used by the stream and the sweep
    (``claimed_by``: the items were created claimed under this lease token, see :class:`Derived`)."""
    groups: dict[tuple[str, str, str], list[OutboxItem]] = {}
    for item in items:
        group_key = (item.program_id, item.member_id, item.business_key or item.message_id)
        groups.setdefault(group_key, []).append(item)
    # One member's groups run one after the other (they share the member's daily counter item, and
    # concurrent transactions on one item conflict); members are independent and run concurrently.
    per_member: dict[tuple[str, str], list[list[OutboxItem]]] = {}
    for (pid, mid, _event), group in groups.items():
        per_member.setdefault((pid, mid), []).append(group)

    # One read of every member's items for messages claimed already (nothing to claim: each is ours to deliver),
    # and the single messages' log lines written together at the end.
    batch = DeliveryBatch()
    if claimed_by is not None:
        delivery().read_ahead(items, batch)

    def run(member_groups: list[list[OutboxItem]]) -> list[Outcome]:
        return [outcome for group in member_groups for outcome in delivery().deliver_group(group, claimed_by, batch)]

    try:
        if len(per_member) <= 1 or MAX_PARALLEL <= 1:
            results = [run(member_groups) for member_groups in per_member.values()]
        else:
            results = list(_pool().map(run, per_member.values()))
    finally:
        delivery().write_logs(batch)
    outcomes: list[Outcome] = []
    for member_outcomes in results:
        for outcome in member_outcomes:
            _report(outcome)
            outcomes.append(outcome)
    return outcomes


@dispatcher.handles("outbox")
def on_outbox(records: list[dispatcher.StreamRecord]) -> set[str]:
    failed: set[str] = set()
    items: list[tuple[dispatcher.StreamRecord, OutboxItem]] = []
    for record in records:
        if record.event_name != "INSERT":
            continue  # our own status changes
        try:
            item = record.item()
        except Exception:
            log.warning("unreadable outbox record", extra={"sequence_number": record.sequence_number})
            failed.add(record.sequence_number)
            continue
        if isinstance(item, OutboxItem) and item.status != SENDING:  # sending: its creator delivers it (Derived)
            items.append((record, item))
    by_id = {item.message_id: record.sequence_number for record, item in items}
    outcomes = deliver_items([item for _, item in items])
    for outcome in outcomes:
        if outcome.status == "retry":
            failed.add(by_id.get(outcome.message_id, ""))
    failed.discard("")
    return failed


def _create(program_id: str, member_id: str, template: str, params: dict[str, Any], locale: str | None,
            business_key: str, message_id: str, lease: tuple[str, str] | None = None) -> OutboxItem | None:
    """Write an outbox message once (``None`` if it already exists, or if the member's erasure has started: checked
    in the same transaction, so a record consumed late or replayed never queues a message about an erased member);
    with ``lease`` (token, until) it is created claimed (``sending``), for its creator to deliver."""
    now = ports.current().clock.now()
    pk, sk = keys.outbox_message(program_id, message_id)
    gpk, gsk = keys.gsi1_outbox_pending(day_of(now), clock.iso(now), message_id)
    item = OutboxItem(PK=pk, SK=sk, GSI1PK=gpk, GSI1SK=gsk, program_id=program_id, message_id=message_id,
                      member_id=member_id, template=template, locale=locale or "", params=params,
                      business_key=business_key, status="pending", created_at=now)
    if lease is not None:
        item.status, item.lease_token, item.lease_until, item.attempts = SENDING, lease[0], lease[1], 1
    return item if create_unless_erased(item, program_id, member_id) == "created" else None


def new_outbox(program_id: str, member_id: str, template: str, params: dict[str, Any], locale: str | None,
               business_key: str, message_id: str) -> bool:
    """Create a derived outbox message once (``False`` if it already exists); its INSERT record delivers it."""
    return _create(program_id, member_id, template, params, locale, business_key, message_id) is not None


class Derived:
    """The messages one handler call derives from its records, created already claimed (``sending`` under one
    lease) and delivered before the handler returns: no claim write and no second stream hop for them.

    Their own INSERT records are skipped by :func:`on_outbox`. Should this consumer die before finishing them,
    the lease expires and the sweep delivers them (as for any claimed message). A message that exists already (a
    replayed batch) and is still ``pending`` (its delivery was given back for a retry) is delivered the usual
    way, claim first. A delivery to retry fails the records it came from, so Lambda delivers them again.
    ``claimed=False``: messages are created pending and left to their INSERT records (nothing delivered here)."""

    def __init__(self, claimed: bool = True) -> None:
        from chalicelib.config import get_settings

        now = ports.current().clock.now()
        self.lease = (secrets.token_hex(8), clock.iso(now + timedelta(seconds=get_settings().notify_lease_seconds))
                      ) if claimed else None
        self.created: list[OutboxItem] = []
        self.pending: list[OutboxItem] = []
        self.records: dict[str, set[str]] = {}  # message id -> sequence numbers it came from

    def create(self, program_id: str, member_id: str, template: str, params: dict[str, Any], business_key: str,
               message_id: str, records: set[str]) -> tuple[bool, OutboxItem | None]:
        """Create a message once: ``(True, None)``, or ``(False, the existing message)`` (queued again if it is
        still pending)."""
        item = _create(program_id, member_id, template, params, None, business_key, message_id, self.lease)
        if item is not None:
            if self.lease is not None:
                self.records.setdefault(message_id, set()).update(records)
                self.created.append(item)
            return True, None
        existing = get_or_none(OutboxItem, keys.outbox_message(program_id, message_id), consistent=True)
        if existing is None:  # the member is erased: nothing to tell, nothing to retry
            return False, None
        if self.lease is not None and existing.status == PENDING:
            self.records.setdefault(message_id, set()).update(records)
            self.pending.append(existing)
        return False, existing

    def deliver(self) -> set[str]:
        """Deliver the queued messages; the sequence numbers of the records whose message is to be retried."""
        if self.lease is None:
            return set()
        outcomes = deliver_items(self.created, claimed_by=self.lease[0]) if self.created else []
        outcomes += deliver_items(self.pending) if self.pending else []
        return {seq for o in outcomes if o.status == "retry" for seq in self.records.get(o.message_id, ())}


@dispatcher.handles("member")
def on_member(records: list[dispatcher.StreamRecord]) -> set[str]:
    derived = Derived()
    for record in records:
        if record.event_name != "INSERT":
            continue
        member = record.item()
        if not isinstance(member, MemberItem) or not member.referrer_id:
            continue
        if member.joined_via == JOINED_VIA_IMPORT:
            # Brought over from another loyalty system: the friend joined there, long ago. An import of
            # 100,000 members must not e-mail 20,000 referrers about joins they already knew of.
            continue
        derived.create(member.program_id, member.referrer_id, "friend_joined", {"event_type": "member.joined"},
                       f"joined|{member.member_id}", stable_id("msg", "friend_joined", member.program_id,
                                                               member.member_id), {record.sequence_number})
    return derived.deliver()


def earned_messages(entries: list[LedgerEntryItem], derived: Derived | None = None,
                    records: dict[str, str] | None = None) -> int:
    """``points_earned`` per member and event from new reward entries (the event's transaction writes none).
    Returns the number of messages created (see :func:`_points_messages`)."""
    from chalicelib.services.ledger import outbox

    return _points_messages(outbox.POINTS_EARNED, outbox.earned_groups(entries), derived, records)


def reversed_messages(entries: list[LedgerEntryItem], derived: Derived | None = None,
                      records: dict[str, str] | None = None) -> int:
    """``points_reversed`` per member and refund from a refund's new reversal entries (the refund's transaction
    writes none). Returns the number of messages created (see :func:`_points_messages`)."""
    from chalicelib.services.ledger import outbox

    return _points_messages(outbox.POINTS_REVERSED, outbox.reversed_groups(entries), derived, records)


def _points_messages(template: str, groups: dict[tuple[str, str, str], list[LedgerEntryItem]],
                     derived: Derived | None = None, records: dict[str, str] | None = None) -> int:
    """One message per (program, member, event) group of new entries.

    The message id is the one the event's transaction used to write (business key, member, template), so a
    replayed batch creates nothing. The entries a message announces are listed in ``params.entries``:
    should a stream batch end between two entries of one member's event, the later batch finds the
    message without its entry and creates a follow-up message for the rest (its id names those
    entries), so every entry is announced exactly once.

    With ``derived`` (the stream handler) the messages are created claimed and delivered by it (``records``: the
    sequence number of each entry's record); without, they are created pending and their INSERT delivers them."""
    from chalicelib.services.ledger import outbox
    from chalicelib.store import tenancy_repo

    derived = derived if derived is not None else Derived(claimed=False)
    created = 0
    for (pid, mid, business_key), group in groups.items():
        try:
            program = tenancy_repo.get_program(pid)
        except Exception:  # the program is gone: nobody to tell
            continue
        ids = sorted(e.entry_id for e in group)
        params = {**outbox.message_params(template, business_key, program.points_unit, group), "entries": ids}
        seqs = {(records or {}).get(e.entry_id, "") for e in group} - {""}
        first = outbox.message_id(business_key, mid, template)
        made, existing = derived.create(pid, mid, template, params, business_key, first, seqs)
        if made:
            created += 1
            continue
        covered = (existing.params or {}).get("entries") if existing is not None else None
        if covered is None:
            continue  # written by the event's transaction (before messages were derived): it announced all
        rest = [e for e in group if e.entry_id not in set(covered)]
        if rest:
            rest_ids = sorted(e.entry_id for e in rest)
            params = {**outbox.message_params(template, business_key, program.points_unit, rest), "entries": rest_ids}
            made, _ = derived.create(pid, mid, template, params, business_key,
                                     outbox.message_id(business_key, mid, template, *rest_ids), seqs)
            created += made
    return created


@dispatcher.handles("ledger_entry")
def on_ledger_entry(records: list[dispatcher.StreamRecord]) -> set[str]:
    released: dict[tuple[str, str], list[LedgerEntryItem]] = {}
    active: dict[tuple[str, str], str] = {}
    inserted: list[LedgerEntryItem] = []
    sequence: dict[str, str] = {}
    for record in records:
        entry = record.item()
        if not isinstance(entry, LedgerEntryItem):
            continue
        sequence[entry.entry_id] = record.sequence_number
        if record.event_name == "INSERT":
            active[(entry.program_id, entry.member_id)] = day_of(entry.created_at)
            inserted.append(entry)
        elif (record.event_name == "MODIFY" and entry.kind == "reward" and entry.status == "available"
              and entry.released_at is not None):
            released.setdefault((entry.program_id, entry.member_id), []).append(entry)
    derived = Derived()
    earned_messages(inserted, derived, sequence)
    reversed_messages(inserted, derived, sequence)
    for (pid, mid), entries in released.items():
        ids = sorted(e.entry_id for e in entries)
        derived.create(pid, mid, "points_available", {"points": sum(e.net_points for e in entries), "entries": ids},
                       "released|" + "|".join(ids), stable_id("msg", "released", pid, mid, *ids),
                       {sequence[e.entry_id] for e in entries})
    for (pid, mid), day in active.items():
        _touch_activity(pid, mid, day)
    return derived.deliver()


def _touch_activity(pid: str, mid: str, day: str) -> None:
    from chalicelib.notify import settings as program_settings
    from chalicelib.store import tenancy_repo

    try:
        program = tenancy_repo.get_program(pid)
    except Exception:  # the program is gone: nothing to remind about
        return
    if program_settings.of(program).sleeping_reminder_days is None:
        return
    from chalicelib.store.transact import Transaction

    gpk, gsk = keys.gsi1_activity_day(day, pid, mid)
    item = ActivityItem(*keys.activity(pid, mid))
    A = ActivityItem
    tx = Transaction()
    # Later days only; and never for a member whose erasure has started (her ACTIVITY item is erased).
    tx.update(item, [A.entity.set(ActivityItem),  # type: ignore[arg-type]
                     A.program_id.set(pid), A.member_id.set(mid), A.day.set(day), A.GSI1PK.set(gpk),
                     A.GSI1SK.set(gsk)], A.day.does_not_exist() | (A.day < day), on_fail=_NotNewer())
    check_unerased(tx, pid, mid, _NotNewer())
    with contextlib.suppress(_NotNewer):
        tx.commit()


class _NotNewer(Exception):
    """The activity item has this day or a later one already, or the member is erased: nothing to record."""


@dispatcher.handles("redemption")
def on_redemption(records: list[dispatcher.StreamRecord]) -> set[str]:
    derived = Derived()
    for record in records:
        if record.event_name != "MODIFY":
            continue
        item = record.item()
        if isinstance(item, RedemptionItem) and item.status == "confirmed":
            derived.create(item.program_id, item.member_id, "points_spent", {"points": int(item.points)},
                           f"spent|{item.redemption_id}", stable_id("msg", "spent", item.program_id,
                                                                    item.redemption_id), {record.sequence_number})
    return derived.deliver()
