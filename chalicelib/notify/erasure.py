"""Notification items of a member that hold personal data, registered with the erasure service.

* ``notifications``: the member partition's day counters (``NOTIFYDAY#``) and delivery log (``NOTIF#``:
  masked recipients, provider ids) are deleted.
* ``notify_state``: the ``NOTIFY`` item. Every registered push device's SNS platform endpoint (which holds
  the device token) is deleted first (``Notifier.delete_device``; an endpoint already gone is fine, so a
  resumed erasure deletes again harmlessly); then the item is rewritten with nothing but the hashes of
  the suppressed addresses (bounces, complaints): devices and opt-outs go. Each suppressed hash is also
  marked on the program's tombstone for that address (``ErasedIdentityItem.suppressed``), so a new member
  signing up with it starts suppressed (``services.suppression_stage``): a complainer gets no mail again.
* ``outbox``: the member's outbox messages (``OUTBOX#<program>#<message>``: member id, rendered
  parameters, masked recipients), pending and finished alike, found through GSI2
  ``OUTBOXM#<program>#<member>`` (``store.ledger.OutboxItem``) and deleted (a pending one is not sent).
* ``partner_webhook_deliveries``: partner webhook deliveries whose payload names the member
  (``WHLOG#…``), found through GSI2 ``WHMEMBER#<program>#<member>`` and deleted (a pending one is not sent).
* ``notification_activity``: the last-activity item (``ACTIVITY``) of sleeping-member reminders.

The outbox and the deliveries live outside the member partition, so the export lists them too
(``export=True``). Items written before their index existed are not found; they expire (TTL, 30 days),
except outbox messages that were still pending then (see docs/data-rights.md).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pynamodb.exceptions import DoesNotExist

from chalicelib.services import ports
from chalicelib.store import keys
from chalicelib.store.data_rights import ErasedIdentityItem
from chalicelib.store.db import Entity
from chalicelib.store.erasure_kinds import (
    ConcurrentChange,
    ErasableKind,
    ErasureTarget,
    Finder,
    Page,
    partition_prefix_finder,
    register,
)
from chalicelib.store.ledger import OutboxItem
from chalicelib.store.notify import NotifyStateItem
from chalicelib.store.partner_hooks import WebhookDeliveryItem
from chalicelib.store.transact import Transaction

#: At most this many suppressed hashes are carried to tombstones in the one transaction of the step.
MAX_SUPPRESSED = 60


def _delete(tx: Transaction, item: Entity) -> None:
    tx.delete(item)


def _find_log(target: ErasureTarget, cursor: dict[str, Any] | None, limit: int) -> Page:
    page = partition_prefix_finder("NOTIF")(target, cursor, limit)
    return Page([i for i in page.items if i.SK != "NOTIFY"], page.cursor)  # the state item: its own step


def _find_state(target: ErasureTarget, cursor: dict[str, Any] | None, limit: int) -> Page:
    try:
        state = NotifyStateItem.get(*keys.notify_state(target.program_id, target.member_id), consistent_read=True)
    except DoesNotExist:
        return Page([], None)
    return Page([state] if isinstance(state, NotifyStateItem) else [], None)


def _notifier() -> Any:
    from chalicelib.notify.sources import delivery

    return delivery().notifier


def _scrub_state(tx: Transaction, item: Entity) -> None:
    if not isinstance(item, NotifyStateItem):
        return
    read = list(item.devices or [])
    if read:
        notifier = _notifier()
        for device in read:
            if device.get("endpoint_arn"):
                notifier.delete_device(str(device["endpoint_arn"]))
    S = NotifyStateItem
    # A device registered after our read has an endpoint we did not delete: read again (the step is redone).
    unchanged = (S.devices == read) if read else (S.devices.does_not_exist() | (S.devices == []))
    suppressed = list(dict.fromkeys(item.suppressed or []))
    if not suppressed:
        tx.delete(item, unchanged, on_fail=ConcurrentChange())
        return
    now = ports.current().clock.now()
    tx.put(NotifyStateItem(PK=item.PK, SK=item.SK, program_id=item.program_id, member_id=item.member_id,
                           devices=[], suppressed=suppressed, updated_at=now),
           S.PK.exists() & unchanged, on_fail=ConcurrentChange())
    for value_hash in suppressed[:MAX_SUPPRESSED]:
        pk, sk = keys.erased_identity(item.program_id, "email", value_hash)
        tx.put(ErasedIdentityItem(PK=pk, SK=sk, program_id=item.program_id, kind="email", erased_at=now,
                                  suppressed=True))


def _gsi2_finder(partition: Callable[[str, str], str]) -> Finder:
    def find(target: ErasureTarget, cursor: dict[str, Any] | None, limit: int) -> Page:
        result = Entity.gsi2.query(partition(target.program_id, target.member_id), limit=limit,
                                   last_evaluated_key=cursor)
        items: list[Entity] = [i for i in result if isinstance(i, OutboxItem | WebhookDeliveryItem)]
        return Page(items, result.last_evaluated_key)

    return find


register(ErasableKind(name="notifications", find=_find_log, scrub=_delete))
register(ErasableKind(name="notify_state", find=_find_state, scrub=_scrub_state))
register(ErasableKind(name="outbox", find=_gsi2_finder(keys.gsi2_member_outbox_partition), scrub=_delete,
                      export=True))
register(ErasableKind(name="partner_webhook_deliveries",
                      find=_gsi2_finder(keys.gsi2_member_webhook_deliveries_partition), scrub=_delete, export=True))
register(ErasableKind(name="notification_activity", find=partition_prefix_finder("ACTIVITY"), scrub=_delete))
