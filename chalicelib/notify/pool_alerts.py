"""Low voucher pool → an e-mail to the partner's ``contact_email`` (registered with ``notify.dispatcher``).

The issuing transaction upserts one ``pool_alert`` item per threshold crossing
(``services.vouchers``); only its creation (stream INSERT) alerts. The handler claims the alert
with a conditional update (``status`` absent → ``sending``) before sending, so a redelivered
batch or a second consumer sends nothing more; a transient send failure gives the claim back and
reports the record (Lambda retries it). Outgoing partner webhooks for the same item are another
handler's (``@handles("pool_alert")`` may be registered more than once).
"""

from __future__ import annotations

import logging

from pynamodb.exceptions import UpdateError

from chalicelib.notify import dispatcher
from chalicelib.services import ports
from chalicelib.store.offers import PoolAlertItem

log = logging.getLogger("sarafan.notify")

def _claim(item: PoolAlertItem, frm: str | None, to: str) -> bool:
    """Move the alert's delivery state (``alert_status``, written only here) from ``frm`` to ``to``;
    ``frm=None``: not claimed yet, or given back after a transient failure."""
    from pynamodb.expressions.operand import Path

    status = Path("alert_status")
    condition = (status.does_not_exist() | (status == "retry")) if frm is None else (status == frm)
    try:
        item.update(actions=[status.set(to)], condition=condition)
    except UpdateError as exc:
        if getattr(exc, "cause_response_code", None) == "ConditionalCheckFailedException":
            return False
        raise
    return True


def _text(item: PoolAlertItem, offer_name: str, partner_name: str, program_name: str) -> tuple[str, str]:
    subject = f"Voucher pool running low: {offer_name}"
    body = (f"Hello {partner_name},\n\nThe code pool of your offer \u201c{offer_name}\u201d in {program_name} has "
            f"{int(item.remaining)} code(s) left, below your threshold of {int(item.threshold)}.\n"
            f"Upload more codes: POST /v1/programs/{item.program_id}/partners/{item.partner_id}/offers/"
            f"{item.offer_id}/codes\n\nWhen the pool is empty, rules fall back to their points (or give nothing).\n")
    return subject, body


@dispatcher.handles("pool_alert")
def on_pool_alert(records: list[dispatcher.StreamRecord]) -> set[str]:
    failed: set[str] = set()
    for record in records:
        if record.event_name != "INSERT":
            continue
        item = record.item()
        if not isinstance(item, PoolAlertItem):
            continue
        try:
            if not send_alert(item):
                continue
        except Exception as exc:
            log.warning("pool alert not sent", extra={"offer_id": item.offer_id, "error_type": type(exc).__name__})
            failed.add(record.sequence_number)
    return failed


def send_alert(item: PoolAlertItem) -> bool:
    """Send the alert once; ``False`` when it was already claimed (or there is nobody to tell)."""
    from email.utils import formataddr

    from chalicelib.config import get_settings
    from chalicelib.notify.port import Email, PermanentSendError
    from chalicelib.notify.sources import delivery
    from chalicelib.store import keys, tenancy_repo
    from chalicelib.store.members import batch_get
    from chalicelib.store.offers import OfferItem

    if not _claim(item, None, "sending"):
        return False
    partner = tenancy_repo.get_partner(item.program_id, item.partner_id, fresh=True)
    if not partner.contact_email:
        _claim(item, "sending", "no_contact_email")
        return False
    program = tenancy_repo.get_program(item.program_id)
    offer = batch_get([keys.offer(item.program_id, item.partner_id, item.offer_id)]).get(
        keys.offer(item.program_id, item.partner_id, item.offer_id))
    subject, body = _text(item, offer.name if isinstance(offer, OfferItem) else item.offer_id, partner.name,
                          program.name)
    try:
        delivery().notifier.send_email(Email(
            sender=formataddr((program.name, get_settings().ses_sender)), to=partner.contact_email,
            subject=subject, text=body, html="<pre>" + _escape(body) + "</pre>",
            sent_at=ports.current().clock.now(), tags={"kind": "pool_low"}))
    except PermanentSendError:
        _claim(item, "sending", "failed")
        return False
    except Exception:
        _claim(item, "sending", "retry")  # give it back: Lambda's retry of the record claims it again
        raise
    _claim(item, "sending", "sent")
    log.info("pool alert sent", extra={"offer_id": item.offer_id, "remaining": int(item.remaining)})
    return True


def _escape(text: str) -> str:
    import html

    return html.escape(text)
