"""Notification state in the single table (see ``chalicelib/notify``).

* ``NotifyStateItem`` (member partition, ``NOTIFY``): channel opt-outs, registered push
  devices (SNS endpoint ARNs, never the raw token) and the hashes of e-mail addresses that
  bounced or complained. Read together with the profile in one ``BatchGetItem``.
* ``NotifyDayItem``: messages sent to a member on one day (daily cap), removed by TTL.
* ``NotificationLogItem``: the delivery log, one per finished message, in the member partition
  (so it goes with the member on erasure and pages with one ``Query``).
* ``SmsMonthItem``: SMS a program sent this month (budget).
* ``ActivityItem``: a member's last activity day, indexed by day for sleeping-member reminders.

The outbox message itself is ``chalicelib.store.ledger.OutboxItem``.
"""

from __future__ import annotations

from pynamodb.attributes import BooleanAttribute, JSONAttribute, ListAttribute, NumberAttribute, UnicodeAttribute

from chalicelib.store.db import Entity, IsoDateTimeAttribute


class NotifyStateItem(Entity, discriminator="notify_state"):
    program_id = UnicodeAttribute()
    member_id = UnicodeAttribute()
    #: Opt-outs per channel (True = the member turned it off); set one by one, atomically.
    email_off = BooleanAttribute(null=True)
    sms_off = BooleanAttribute(null=True)
    push_off = BooleanAttribute(null=True)
    #: ``[{"device_id", "platform", "endpoint_arn", "token_hash", "enabled", "updated_at"}]``
    devices = JSONAttribute(default=list)
    #: identity hashes (``domain.identity.identity_hash(..., "email", ...)``) of suppressed addresses
    suppressed: ListAttribute[str] = ListAttribute(of=UnicodeAttribute, default=list)  # type: ignore[arg-type]
    updated_at = IsoDateTimeAttribute(null=True)

    @property
    def preferences(self) -> dict[str, bool]:
        """``{"email": False}`` for an opted-out channel; channels not named are on."""
        return {name: False for name in ("email", "sms", "push") if getattr(self, f"{name}_off")}


class NotifyDayItem(Entity, discriminator="notify_day"):
    total = NumberAttribute(default=0)
    expires_at_epoch = NumberAttribute(null=True)


class SmsMonthItem(Entity, discriminator="sms_month"):
    total = NumberAttribute(default=0)


class NotificationLogItem(Entity, discriminator="notification_log"):
    program_id = UnicodeAttribute()
    member_id = UnicodeAttribute()
    message_id = UnicodeAttribute()
    template = UnicodeAttribute()
    locale = UnicodeAttribute()
    status = UnicodeAttribute()  # sent | failed
    attempts = NumberAttribute(default=1)
    last_error = UnicodeAttribute(null=True)
    subject = UnicodeAttribute(null=True)
    #: ``[{"channel", "status", "recipient" (masked), "provider_id", "error"}]``
    deliveries = JSONAttribute(default=list)
    merged = ListAttribute(of=UnicodeAttribute, default=list)  # type: ignore[arg-type]  # other outbox ids sent with it
    created_at = UnicodeAttribute()
    finished_at = UnicodeAttribute()


class ActivityItem(Entity, discriminator="activity"):
    program_id = UnicodeAttribute()
    member_id = UnicodeAttribute()
    day = UnicodeAttribute()  # YYYY-MM-DD of the last ledger activity
    reminded_for = UnicodeAttribute(null=True)  # the activity day the last reminder was about
