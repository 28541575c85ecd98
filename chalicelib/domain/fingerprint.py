"""What must not change when one business fact is delivered again (conflict detection).

The pipeline stores a fingerprint with the fact's dedupe record; a later delivery of the same
fact (same business key) whose fingerprint differs is answered ``"status": "duplicate"`` with a
``conflict`` block naming the fields, and logged. Pure code.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from chalicelib.domain.events import CanonicalEvent


def fingerprint(event: CanonicalEvent, identifier_hashes: Mapping[str, str]) -> dict[str, Any]:
    """What must not change when the same business fact is delivered again.

    Flat ``{"order.total": 150000, ...}``; e-mail and phone are kept only as their identity
    hashes (``identifier_hashes["email"]``, as in the pointer keys: no personal data stored). Timestamps are left
    out: ``orders/create`` and ``orders/paid`` of one order carry different ones.
    """
    out: dict[str, Any] = {}
    if event.order is not None:
        o = event.order
        out.update({"order.total": o.total, "order.currency": o.currency})
    if event.refund is not None:
        r = event.refund
        out.update({"refund.amount": r.amount, "refund.currency": r.currency, "refund.order_id": r.order_id})
    if event.customer is not None:
        c = event.customer
        if c.id:
            out["customer.id"] = c.id
        for kind in ("email", "phone"):
            if getattr(c, kind) and kind in identifier_hashes:
                out[f"customer.{kind}"] = identifier_hashes[kind]
    return out


#: Fingerprint fields whose values are personal data: a conflict names them without values.
PERSONAL_FINGERPRINT_FIELDS: Final = frozenset({"customer.email", "customer.phone"})


def fingerprint_conflict(stored: Mapping[str, Any] | None, received: Mapping[str, Any]) -> dict[str, Any] | None:
    """``{"fields": [{"field", "stored", "received"}]}`` naming what differs, or ``None``.

    Only fields present on both sides are compared: a later delivery that carries *more*
    (a customer id the first one lacked) is not a different fact.
    """
    if not stored:
        return None
    differences = []
    for name in sorted(set(stored) & set(received)):
        if stored[name] != received[name]:
            entry: dict[str, Any] = {"field": name}
            if name not in PERSONAL_FINGERPRINT_FIELDS:
                entry.update({"stored": stored[name], "received": received[name]})
            differences.append(entry)
    if not differences:
        return None
    return {"fields": differences,
            "message": "This fact was already processed with different content; the first version stands"}
