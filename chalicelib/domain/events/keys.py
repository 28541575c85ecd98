"""The business key: identity of a business fact, whatever the delivery."""

from __future__ import annotations

from chalicelib.domain.events.model import CanonicalEvent
from chalicelib.domain.events.types import OBJECT_TYPES, ORDER_PAID


def _key_part(value: str) -> str:
    # Escape the separator (and the escape char) so no id can forge another key.
    return value.replace("%", "%25").replace("|", "%7C")


def business_key(program_id: str, partner_id: str, event: CanonicalEvent) -> str:
    """``program|partner|object type|object id|event type``: identity of a business fact.

    Deduplicating on the delivery id (``webhook-id``) is not enough: a partner's
    retry queue, a re-sync job or two adapters may deliver the *same* payment under
    different delivery ids. Keyed on what happened (this partner's order 1001 was
    paid), the fact counts once whatever the delivery. The event type is part of the
    key because "order 1001 paid" and "order 1001 cancelled" are different facts.
    Contains partner object ids only, no personal data.
    """
    return _join(program_id, partner_id, event.object_type, event.object_id, event.type)


def order_paid_business_key(program_id: str, partner_id: str, order_id: str) -> str:
    """The business key of ``order.paid`` for this partner's order ``order_id`` (what a refund of it names)."""
    return _join(program_id, partner_id, OBJECT_TYPES[ORDER_PAID], order_id, ORDER_PAID)


def _join(program_id: str, partner_id: str, object_type: str, object_id: str, event_type: str) -> str:
    """The one format of a business key (each part escaped, so no id can forge another key)."""
    return "|".join(_key_part(part) for part in (program_id, partner_id, object_type, object_id, event_type))


def _unescape(part: str) -> str:
    return part.replace("%7C", "|").replace("%25", "%")


def paid_order_of(key: str) -> tuple[str, str] | None:
    """``(partner, order id)`` of an ``order.paid`` business key, else None (the inverse of :func:`_join`)."""
    parts = key.split("|")
    if len(parts) != 5 or parts[4] != ORDER_PAID:
        return None
    return _unescape(parts[1]), _unescape(parts[3])
