"""Delivering outbox messages exactly once per message (as far as SES/SNS allow).

Per group of outbox messages (one member, one event):

1. **claim** each message with a conditional ``UpdateItem``: ``pending``/``held`` (and due) →
   ``sending`` with a lease (``lease_until``, ``lease_token``), or ``sending`` whose lease has
   expired (the consumer that held it crashed). A message already ``sent``/``failed``, or leased
   by a live consumer, is not claimed: a consumer invoked three times on the same stream batch
   sends once. ``attempts`` counts claims; past :data:`MAX_ATTEMPTS` the message is ``failed``.
2. **read** the member's current profile, notification state (opt-outs, devices, suppressed
   addresses) and today's counter in one ``BatchGetItem``; the program from the config cache.
3. **decide**: quiet hours (program time zone) or the daily cap → ``held`` until the window
   opens (moved to that day's bucket of the pending index, where the sweep finds it); the
   channels from the *current* profile and preferences.
4. **send** on each channel; throttling/5xx are retried with backoff, then the claim is
   released (``pending`` again) and the batch item reported as failed (Lambda retries it,
   and the sweep picks up whatever is still pending). Permanent errors fail that channel.
   Before sending, one slot of the member's daily cap is *reserved* with a conditional counter
   update (``total < cap``), and given back when nothing went out, so concurrent consumers never
   exceed the cap.
5. **finish**: every claimed message ``sent``/``failed`` with the provider ids (conditioned on our
   lease token), then the delivery-log item; one message (the usual case) as two plain writes
   (a crash between them loses the log line, never re-sends), merged messages in one transaction.

The at-least-once window is between the provider accepting a message and step 5 committing:
a crash there leaves the message ``sending``; after the lease (60 s) it is sent again. SES has
no idempotency token, so this window cannot be closed, only kept short.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pynamodb.exceptions import PynamoDBException, UpdateError
from pynamodb.expressions.update import Action

from chalicelib.config import get_settings
from chalicelib.domain import clock
from chalicelib.domain.identity import email_match_key, identity_hash, mask_email, mask_phone
from chalicelib.notify import kinds, preview
from chalicelib.notify import settings as program_settings
from chalicelib.notify.port import Email, Notifier, PermanentSendError, SendError, TransientSendError
from chalicelib.notify.render import Rendered, render
from chalicelib.services import ports
from chalicelib.store import keys
from chalicelib.store.db import Entity, update_only
from chalicelib.store.ledger import OUTBOX_RETENTION_DAYS, OutboxItem
from chalicelib.store.members import MemberItem
from chalicelib.store.notify import NotificationLogItem, NotifyDayItem, NotifyStateItem, SmsMonthItem
from chalicelib.store.tenancy import ProgramItem
from chalicelib.store.transact import Transaction

log = logging.getLogger("sarafan.notify")

MAX_ATTEMPTS = 5
SEND_TRIES = 3
BACKOFF_SECONDS = 0.2
SENDING, PENDING, HELD, SENT, FAILED = "sending", "pending", "held", "sent", "failed"


@dataclass
class Outcome:
    message_id: str
    member_id: str
    status: str  # sent | failed | held | retry | skipped (not ours to send)
    kind: str | None = None
    subject: str | None = None
    deliveries: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    merged: list[str] = field(default_factory=list)

    def line(self) -> str:
        """One log line (masked recipients only)."""
        channels = ", ".join(f"{d['channel']}→{d.get('recipient', '?')} {d['status']}" for d in self.deliveries)
        extra = f" ({self.error})" if self.error else ""
        merged = f" +{len(self.merged)} merged" if self.merged else ""
        return f"notify {self.status}: {self.kind or '?'} [{channels or 'no channel'}] «{self.subject or ''}»{merged}{extra}"


@dataclass
class DeliveryBatch:
    """What the deliveries of one handler call share: the members' items read ahead in one ``BatchGetItem``
    (:meth:`Delivery.read_ahead`; a key missing from ``known`` is read as usual) and the delivery-log items of
    single messages, written together afterwards (:meth:`Delivery.write_logs`)."""

    known: dict[tuple[str, str], Any] = field(default_factory=dict)  # key -> item, or None: read, not there
    logs: list[NotificationLogItem] = field(default_factory=list)


class LeaseLost(Exception):
    """Our lease expired and another consumer took the message over: it decides now."""


def _conditional_failed(exc: PynamoDBException) -> bool:
    return getattr(exc, "cause_response_code", None) == "ConditionalCheckFailedException"


class Delivery:
    def __init__(self, notifier: Notifier, *, sleep: Callable[[float], None] = time.sleep) -> None:
        self.notifier = notifier
        self.sleep = sleep

    # ------------------------------------------------------------------ claim

    def claim(self, item: OutboxItem, now: datetime, token: str) -> OutboxItem | None:
        now_iso = clock.iso(now)
        lease = clock.iso(now + timedelta(seconds=get_settings().notify_lease_seconds))
        Ob = OutboxItem
        due = Ob.not_before.does_not_exist() | (Ob.not_before <= now_iso)
        condition = (Ob.status.is_in(PENDING, HELD) & due) | ((Ob.status == SENDING) & (Ob.lease_until < now_iso))
        target = OutboxItem(item.PK, item.SK)
        try:
            target.update(actions=[Ob.status.set(SENDING), Ob.lease_until.set(lease), Ob.lease_token.set(token),
                                   Ob.attempts.add(1)], condition=condition)
        except UpdateError as exc:
            if _conditional_failed(exc):
                return None
            raise
        return target

    @staticmethod
    def _drop(items: list[OutboxItem], token: str) -> None:
        """Delete claimed messages (each conditioned on our lease: one another consumer took over is its own)."""
        from pynamodb.exceptions import DeleteError

        for item in items:
            try:
                OutboxItem(item.PK, item.SK).delete(condition=OutboxItem.lease_token == token)
            except DeleteError as exc:
                if not _conditional_failed(exc):
                    raise

    def _release(self, items: list[OutboxItem], token: str, error: str, deliveries: dict[str, list[dict[str, Any]]],
                 *, held_until: datetime | None = None) -> None:
        """Give claimed messages back (pending again, or held until a time)."""
        Ob = OutboxItem
        for item in items:
            actions: list[Action] = [Ob.status.set(HELD if held_until else PENDING), Ob.lease_until.remove(),
                                     Ob.lease_token.remove()]
            if held_until is not None:
                due = clock.iso(held_until)
                actions += [Ob.not_before.set(due), Ob.attempts.add(-1),
                            Ob.GSI1PK.set(keys.outbox_pending_partition(due[:10])),
                            Ob.GSI1SK.set(f"{due}#{item.message_id}")]
            if error:
                actions.append(Ob.last_error.set(error[:500]))
            if deliveries.get(item.message_id):
                actions.append(Ob.deliveries.set(deliveries[item.message_id]))
            try:
                update_only(OutboxItem(item.PK, item.SK), actions, Ob.lease_token == token)
            except UpdateError as exc:
                if not _conditional_failed(exc):
                    raise
                log.warning("lease lost before release", extra={"message_id": item.message_id})

    # ------------------------------------------------------------------ deliver

    def read_ahead(self, items: list[OutboxItem], batch: DeliveryBatch) -> None:
        """Read the profile, notification state and today's counter of every member of ``items`` in one
        ``BatchGetItem`` (per 100 keys) instead of one per message."""
        from chalicelib.store import tenancy_repo

        now = ports.current().clock.now()
        wanted: set[tuple[str, str]] = set()
        for item in items:
            try:
                program = tenancy_repo.get_program(item.program_id)
            except Exception:  # the delivery itself finds out
                continue
            wanted.update(self._member_keys(item.program_id, item.member_id, program, now))
        wanted -= set(batch.known)
        if not wanted:
            return
        found = {(i.PK, i.SK): i for i in Entity.batch_get(sorted(wanted))}
        batch.known.update({key: found.get(key) for key in wanted})

    @staticmethod
    def write_logs(batch: DeliveryBatch) -> None:
        """The batch's delivery-log items, 25 a request (each was due after its message's final update)."""
        if batch.logs:
            with NotificationLogItem.batch_write() as writer:
                for entry in batch.logs:
                    writer.save(entry)
            batch.logs.clear()

    def deliver_group(self, items: list[OutboxItem], claimed_by: str | None = None,
                      batch: DeliveryBatch | None = None) -> list[Outcome]:
        """Deliver messages of one member from one event as one message.

        ``claimed_by``: the messages were created already claimed under this lease token (derived messages,
        ``notify.sources.Derived``), so there is nothing to claim. ``batch``: reads and log writes shared with
        the other groups of the call (the caller writes the logs: :meth:`write_logs`)."""
        now = ports.current().clock.now()
        if claimed_by is not None:
            return self._deliver_safely(list(items), now, claimed_by, [], batch)
        token = secrets.token_hex(8)
        claimed: list[OutboxItem] = []
        outcomes: list[Outcome] = []
        for item in items:
            got = self.claim(item, now, token)
            if got is None:
                outcomes.append(Outcome(item.message_id, item.member_id, "skipped"))
            else:
                claimed.append(got)
        return self._deliver_safely(claimed, now, token, outcomes, batch)

    def _deliver_safely(self, claimed: list[OutboxItem], now: datetime, token: str,
                        outcomes: list[Outcome], batch: DeliveryBatch | None = None) -> list[Outcome]:
        if not claimed:
            return outcomes
        try:
            outcomes.append(self._deliver_claimed(claimed, now, token, batch))
        except Exception as exc:  # a poison message: counted, released, failed after MAX_ATTEMPTS
            error = f"{type(exc).__name__}: {exc}"[:300]
            log.warning("notification attempt failed", extra={"error_type": type(exc).__name__,
                                                               "message_id": claimed[0].message_id})
            if max(int(i.attempts or 0) for i in claimed) >= MAX_ATTEMPTS:
                self._finish(claimed, token, now, None, FAILED, [], error, None, batch)
                outcomes.append(Outcome(claimed[0].message_id, claimed[0].member_id, FAILED, error=error))
            else:
                self._release(claimed, token, error, {})
                outcomes.append(Outcome(claimed[0].message_id, claimed[0].member_id, "retry", error=error))
        return outcomes

    def _deliver_claimed(self, claimed: list[OutboxItem], now: datetime, token: str,
                         batch: DeliveryBatch | None = None) -> Outcome:
        from chalicelib.store import tenancy_repo

        claimed.sort(key=lambda i: (kinds.rank(kinds.kind_of(i.template, i.params or {})), i.message_id))
        lead = claimed[0]
        pid, mid = lead.program_id, lead.member_id
        program = tenancy_repo.get_program(pid)
        profile, state, day_count = self._read_member(pid, mid, program, now, batch)
        lead_kind = kinds.kind_of(lead.template, lead.params or {})
        if profile is None:
            return self._finish(claimed, token, now, None, FAILED, [], "member_not_found", lead_kind, batch)
        if profile.erased_at is not None:
            # Her erasure started after the message was queued: nothing is sent, logged or counted, and the
            # message goes (the erasure deletes the ones it finds; this one was claimed meanwhile).
            self._drop(claimed, token)
            return Outcome(lead.message_id, mid, "skipped", kind=lead_kind, error="member_erased")
        if int(lead.attempts or 0) > MAX_ATTEMPTS:
            return self._finish(claimed, token, now, None, FAILED, [], f"too_many_attempts: {lead.last_error}",
                                lead_kind, batch)
        config = program_settings.of(program)
        hold = config.hold_until(now, day_count)
        if hold is None and not self._reserve_daily_slot(pid, mid, config, now):
            # Another consumer took the last slot of the day between our read and now.
            hold = config.hold_until(now, config.daily_cap)
        if hold is not None:
            self._release(claimed, token, "", {}, held_until=hold)
            return Outcome(lead.message_id, mid, HELD, kind=lead_kind, error=f"held until {clock.iso(hold)}")
        try:
            outcome = self._send_reserved(claimed, now, token, program, profile, state, config, batch)
        except BaseException:
            self._return_daily_slot(pid, mid, config, now)
            raise
        if outcome.status != SENT:
            self._return_daily_slot(pid, mid, config, now)
        return outcome

    def _send_reserved(self, claimed: list[OutboxItem], now: datetime, token: str, program: ProgramItem,
                       profile: MemberItem, state: NotifyStateItem | None,
                       config: program_settings.NotifySettings, batch: DeliveryBatch | None = None) -> Outcome:
        lead = claimed[0]
        pid, mid = lead.program_id, lead.member_id
        locale = profile.locale or lead.locale or program.default_locale
        rendered = self._render(program, profile, claimed, locale)
        deliveries: list[dict[str, Any]] = list(lead.deliveries or [])
        done = {d["channel"] + "|" + d.get("target", "") for d in deliveries if d["status"] == SENT}
        prefs = (state.preferences if state else None) or {}
        attempted = False
        for channel, target, recipient in self._channels(program, profile, state, config):
            if prefs.get(channel) is False:
                deliveries.append({"channel": channel, "status": FAILED, "recipient": recipient, "error": "opted_out"})
                continue
            if channel + "|" + target in done:
                continue
            attempted = True
            result = self._send(channel, target, recipient, rendered, program, profile, lead, config, state, now)
            if result.get("error") == "transient":
                deliveries.append({k: v for k, v in result.items() if k != "error"} | {"status": PENDING})
                self._release(claimed, token, str(result.get("detail", "transient")),
                              {lead.message_id: [d for d in deliveries if d["status"] == SENT]})
                return Outcome(lead.message_id, mid, "retry", kind=rendered.kind, subject=rendered.subject,
                               deliveries=deliveries, error=str(result.get("detail")))
            deliveries.append(result)
        # Drop stale "pending" markers of earlier attempts; keep one line per channel target.
        deliveries = [d for d in deliveries if d["status"] != PENDING]
        sent = any(d["status"] == SENT for d in deliveries)
        if not deliveries:
            error = "no_channel"
        elif not sent:
            error = "; ".join(sorted({str(d.get("error")) for d in deliveries}))
        else:
            error = None
        if not attempted and not sent and not deliveries:
            error = "no_channel"
        status = SENT if sent else FAILED
        if sent and config.local_preview:
            preview.record(pid, mid, rendered, deliveries, [i.message_id for i in claimed])
        return self._finish(claimed, token, now, rendered, status, deliveries, error, rendered.kind, batch)

    @staticmethod
    def _member_keys(pid: str, mid: str, program: ProgramItem, now: datetime) -> list[tuple[str, str]]:
        config = program_settings.of(program)
        return [keys.member(pid, mid), keys.notify_state(pid, mid), keys.notify_day(pid, mid, config.local_day(now))]

    def _read_member(self, pid: str, mid: str, program: ProgramItem, now: datetime,
                     batch: DeliveryBatch | None = None) -> tuple[MemberItem | None, NotifyStateItem | None, int]:
        wanted = self._member_keys(pid, mid, program, now)
        found: dict[tuple[str, str], Any] = {}
        if batch is not None and all(key in batch.known for key in wanted):
            # Read ahead for the call: today's counter may be behind by this call's own earlier messages to the
            # member, which only decides holding early; the daily slot is reserved with its own condition.
            found = {key: batch.known[key] for key in wanted}
        else:
            for item in Entity.batch_get(wanted):
                found[(item.PK, item.SK)] = item
        profile = found.get(wanted[0])
        state = found.get(wanted[1])
        day = found.get(wanted[2])
        return (profile if isinstance(profile, MemberItem) else None,
                state if isinstance(state, NotifyStateItem) else None,
                int(day.total or 0) if isinstance(day, NotifyDayItem) else 0)

    def _render(self, program: ProgramItem, profile: MemberItem, claimed: list[OutboxItem], locale: str) -> Rendered:
        from chalicelib.notify.tokens import unsubscribe_url
        from chalicelib.services.landing.invites import public_link
        from chalicelib.services.wallet import EMAIL_TTL_HOURS, wallet_url

        lead = claimed[0]
        base = {"program": program.name, "points_unit": program.points_unit,
                "name": (profile.name or "").split(" ")[0] or None}
        lead_kind = kinds.kind_of(lead.template, lead.params or {})
        values = {**base, **kinds.values_of(lead_kind, lead.params or {})}
        extras = []
        for other in claimed[1:]:
            kind = kinds.kind_of(other.template, other.params or {})
            extras.append((kind, {**base, **kinds.values_of(kind, other.params or {})}))
        offer = program_settings.offer_text(program, locale)
        return render(lead_kind, locale, values, extra_parts=extras,
                      link=public_link(profile.code) if profile.code else "",
                      unsubscribe_url=unsubscribe_url(program.program_id, profile.member_id, "email"), offer=offer,
                      wallet_url=wallet_url(program.program_id, profile.member_id, EMAIL_TTL_HOURS)[0])

    def _channels(self, program: ProgramItem, profile: MemberItem, state: NotifyStateItem | None,
                  config: program_settings.NotifySettings) -> list[tuple[str, str, str]]:
        """(channel, target, masked recipient) the member can be reached on right now."""
        out: list[tuple[str, str, str]] = []
        if profile.email:
            out.append(("email", profile.email, mask_email(profile.email)))
        if profile.phone and config.sms_enabled:
            out.append(("sms", profile.phone, mask_phone(profile.phone)))
        for device in (state.devices if state else None) or []:
            if device.get("enabled", True) and device.get("endpoint_arn"):
                out.append(("push", device["endpoint_arn"], f"{device.get('platform', 'push')} device "
                                                           f"…{str(device.get('device_id', ''))[-4:]}"))
        return out

    def _send(self, channel: str, target: str, recipient: str, rendered: Rendered, program: ProgramItem,
              profile: MemberItem, lead: OutboxItem, config: program_settings.NotifySettings,
              state: NotifyStateItem | None, now: datetime) -> dict[str, Any]:
        from chalicelib.notify.tokens import unsubscribe_url

        result: dict[str, Any] = {"channel": channel, "recipient": recipient}
        if channel == "push":
            result["target"] = target
        if channel == "email":
            hashed = identity_hash(program.program_id, "email", email_match_key(target))
            if state is not None and hashed in (state.suppressed or []):
                return result | {"status": FAILED, "error": "suppressed"}
        if channel == "sms" and not self._take_sms_budget(program.program_id, config, now):
            return result | {"status": FAILED, "error": "sms_budget"}

        def once() -> str:
            if channel == "email":
                from email.utils import formataddr

                url = unsubscribe_url(program.program_id, profile.member_id, "email")
                return self.notifier.send_email(Email(
                    sender=formataddr((program.name, get_settings().ses_sender)), to=target,
                    subject=rendered.subject, text=rendered.text, html=rendered.html, sent_at=now,
                    headers={"List-Unsubscribe": f"<{url}>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"},
                    tags={"program_id": _tag(program.program_id), "member_id": _tag(profile.member_id),
                          "kind": rendered.kind},
                    message_id=f"{program.program_id}/{lead.message_id}",
                ))
            if channel == "sms":
                return self.notifier.send_sms(target, rendered.short)
            return self.notifier.send_push(target, rendered.subject, rendered.short)

        for attempt in range(SEND_TRIES):
            try:
                return result | {"status": SENT, "provider_id": once()}
            except TransientSendError as exc:
                if attempt == SEND_TRIES - 1:
                    return result | {"error": "transient", "detail": str(exc)[:200]}
                self.sleep(BACKOFF_SECONDS * (2 ** attempt))
            except PermanentSendError as exc:
                if channel == "push":
                    from chalicelib.notify import members as member_service

                    member_service.drop_device(program.program_id, profile.member_id, target)
                return result | {"status": FAILED, "error": exc.code}
            except SendError as exc:  # pragma: no cover - both subclasses handled above
                return result | {"status": FAILED, "error": exc.code}
        return result | {"status": FAILED, "error": "unreachable"}  # pragma: no cover

    def _reserve_daily_slot(self, pid: str, mid: str, config: program_settings.NotifySettings,
                            now: datetime) -> bool:
        """Take one of the member's messages of the day *before* sending: a conditional counter, so two
        consumers delivering to one member at once cannot both take the last slot (no check-then-write)."""
        day = NotifyDayItem(*keys.notify_day(pid, mid, config.local_day(now)))
        try:
            update_only(day, [NotifyDayItem.entity.set(NotifyDayItem), NotifyDayItem.total.add(1),  # type: ignore[arg-type]
                              NotifyDayItem.expires_at_epoch.set(int(now.timestamp()) + 3 * 86400)],
                        NotifyDayItem.total.does_not_exist() | (NotifyDayItem.total < config.daily_cap))
        except UpdateError as exc:
            if _conditional_failed(exc):
                return False
            raise
        return True

    def _return_daily_slot(self, pid: str, mid: str, config: program_settings.NotifySettings,
                           now: datetime) -> None:
        """Nothing went out (failed, retried later): give the slot back."""
        day = NotifyDayItem(*keys.notify_day(pid, mid, config.local_day(now)))
        try:
            update_only(day, [NotifyDayItem.total.add(-1)], NotifyDayItem.total > 0)
        except UpdateError as exc:
            if not _conditional_failed(exc):
                raise
            log.warning("daily slot already returned", extra={"program_id": pid})

    def _take_sms_budget(self, pid: str, config: program_settings.NotifySettings, now: datetime) -> bool:
        if config.sms_monthly_budget is None:
            return True
        item = SmsMonthItem(*keys.sms_budget(pid, clock.iso(now)[:7]))
        try:
            update_only(item, [SmsMonthItem.entity.set(SmsMonthItem), SmsMonthItem.total.add(1)],  # type: ignore[arg-type]
                        SmsMonthItem.total.does_not_exist() | (SmsMonthItem.total < config.sms_monthly_budget))
        except UpdateError as exc:
            if _conditional_failed(exc):
                return False
            raise
        return True

    # ------------------------------------------------------------------ finish

    def _finish(self, claimed: list[OutboxItem], token: str, now: datetime, rendered: Rendered | None, status: str,
                deliveries: list[dict[str, Any]], error: str | None, kind: str | None,
                batch: DeliveryBatch | None = None) -> Outcome:
        lead = claimed[0]
        pid, mid = lead.program_id, lead.member_id
        now_iso = clock.iso(now)
        Ob = OutboxItem
        tx = Transaction()
        finishing: list[tuple[OutboxItem, list[Action]]] = []
        for item in claimed:
            actions: list[Action] = [Ob.status.set(status), Ob.finished_at.set(now_iso), Ob.lease_until.remove(),
                       Ob.expires_at_epoch.set(int(now.timestamp()) + OUTBOX_RETENTION_DAYS * 86400),
                       Ob.lease_token.remove(), Ob.GSI1PK.remove(), Ob.GSI1SK.remove(),
                       Ob.deliveries.set([{k: v for k, v in d.items() if k != "target"} for d in deliveries]
                                        if item is lead else [])]
            if kind:
                actions.append(Ob.kind.set(kind))
            if error:
                actions.append(Ob.last_error.set(error[:500]))
            if item is not lead:
                actions.append(Ob.merged_into.set(lead.message_id))
            finishing.append((item, actions))
        pk, sk = keys.notification_log(pid, mid, clock.iso(lead.created_at), lead.message_id)
        entry = NotificationLogItem(
            pk, sk, program_id=pid, member_id=mid, message_id=lead.message_id, template=kind or lead.template,
            locale=rendered.locale if rendered else lead.locale, status=status, attempts=int(lead.attempts or 1),
            last_error=error, subject=rendered.subject if rendered else None,
            deliveries=[{k: v for k, v in d.items() if k != "target"} for d in deliveries],
            merged=[i.message_id for i in claimed[1:]], created_at=clock.iso(lead.created_at), finished_at=now_iso,
        )
        try:
            if len(finishing) == 1:
                # One message (the usual case): its conditioned update, then the log item, two plain writes at
                # half a transaction's write units. A crash between them leaves the message finished and its
                # log line missing (the message is not sent again); a lost lease writes no log line.
                item, actions = finishing[0]
                try:
                    update_only(item, actions, Ob.lease_token == token)
                except UpdateError as exc:
                    if _conditional_failed(exc):
                        raise LeaseLost() from None
                    raise
                if batch is not None:
                    batch.logs.append(entry)  # written with the call's other log lines
                else:
                    entry.save()
            else:  # merged messages finish together or not at all
                for item, actions in finishing:
                    tx.update(item, actions, Ob.lease_token == token, on_fail=LeaseLost())
                tx.put(entry)
                tx.commit()
        except LeaseLost:
            log.warning("lease lost before finish", extra={"message_id": lead.message_id})
            return Outcome(lead.message_id, mid, "skipped", kind=kind, error="lease_lost")
        return Outcome(lead.message_id, mid, status, kind=kind, subject=rendered.subject if rendered else None,
                       deliveries=deliveries, error=error, merged=[i.message_id for i in claimed[1:]])


def _tag(value: str) -> str:
    """SES tag values allow letters, digits, ``_`` and ``-`` only."""
    return "".join(c if c.isalnum() or c in "_-" else "-" for c in value)[:256]
