"""Notification items of a member that hold personal data, registered with the erasure service.

Everything under the member's partition whose sort key starts with ``NOTIF`` goes: the
notification state (``NOTIFY``: device endpoints, suppressed-address hashes, opt-outs), the
day counters (``NOTIFYDAY#``) and the delivery log (``NOTIF#``: masked recipients, provider ids);
plus the last-activity item (``ACTIVITY``) of sleeping-member reminders.
"""

from __future__ import annotations

from chalicelib.services.erasure import ErasableKind, partition_prefix_finder, register

register(ErasableKind(name="notifications", find=partition_prefix_finder("NOTIF"),
                      scrub=lambda tx, item: tx.delete(item)))
register(ErasableKind(name="notification_activity", find=partition_prefix_finder("ACTIVITY"),
                      scrub=lambda tx, item: tx.delete(item)))
