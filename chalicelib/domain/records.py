"""What the ports (``services.ports``) hand over besides stored records: pages of a list and the one
concurrency signal a read-modify-write service retries on. Pure: the store and the fakes both use them."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

T = TypeVar("T")

#: A paging cursor: the last item's key in DynamoDB's attribute-value form (``{"PK": {"S": ...}, ...}``),
#: what the views encode and check against the caller's partition (``api.http.decode_cursor``).
Cursor = dict[str, Any]


@dataclass(frozen=True)
class Page(Generic[T]):
    """At most ``limit`` items and the cursor of the next page (``None``: there is no more)."""

    items: list[T]
    next_cursor: Cursor | None


@dataclass(frozen=True)
class NewKey:
    """A new API key as stored: its SHA-256 (the clear key is shown once, never stored) and its public fields."""

    key_id: str
    key_hash: str
    display_prefix: str
    kind: str  # "partner" | "publishable"
    program_id: str
    partner_id: str | None
    created_at: datetime


@dataclass(frozen=True)
class NewMember:
    """A member created outside the event pipeline (a landing invite): the profile's first fields. The store makes
    the profile, its identity pointers, code pointer and short link in one transaction (``MemberStore.create_member``)."""

    program_id: str
    member_id: str
    code: str
    joined_at: datetime
    joined_via: str
    name: str | None = None
    locale: str | None = None
    email: str | None = None
    phone: str | None = None
    acquisition: Mapping[str, Any] = field(default_factory=dict)
    #: The member whose code ``acquisition["ref"]`` is: her back-reference per identifier (``keys.invite_ref``, no
    #: TTL: it leads her erasure to this profile) is written with the member, conditioned on her erasure not having
    #: started (``MemberErased`` naming her when it has: nothing written).
    ref_member_id: str | None = None


@dataclass(frozen=True)
class PendingInvite:
    """"This visitor was brought by that referrer", as a pending invite stores it (one per identifier), matched later
    by the pipeline; ``risk_*``: what the invite-time fraud checks found (``services.landing.signals``)."""

    referrer_id: str
    code: str
    invited_at: datetime
    ancestors: tuple[str, ...]
    expires_at_epoch: int
    risk_reject: str | None = None
    risk_holds: tuple[str, ...] = ()
    risk_matched: tuple[str, ...] = ()


class StaleMember(Exception):
    """The member changed since it was read: read it again and retry (the caller's loop)."""


def member_counts(profile: Any, balance: Any) -> tuple[int, int]:
    """(purchases, converted referrals) of a member: the profile's (older) counts plus the balance's."""
    def of(item: Any, name: str) -> int:
        return int(getattr(item, name, None) or 0) if item is not None else 0

    return (of(profile, "orders_count") + of(balance, "orders_count"),
            of(profile, "converted_referrals") + of(balance, "converted_referrals"))


def stable_id(prefix: str, *parts: str) -> str:
    """An id derived from what it is for (a retried request, a replayed event finds the same id)."""
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:32]
    return f"{prefix}_{digest}"


#: A redemption's statuses (``RedemptionItem.status``): held at checkout, then confirmed or cancelled.
REDEMPTION_HELD, REDEMPTION_CONFIRMED, REDEMPTION_CANCELLED = "held", "confirmed", "cancelled"


#: A member erasure's statuses (``ErasureItem.status``): the member's own request waiting for the operator,
#: then in progress (resumable), then done.
ERASURE_REQUESTED, ERASURE_IN_PROGRESS, ERASURE_DONE = "requested", "in_progress", "erased"


class StaleErasure(Exception):
    """The erasure record, the profile or an item being scrubbed changed since it was read: read again and redo the
    step (nothing of the step was written)."""


#: A fraud review item's statuses (``ReviewItem.status``).
REVIEW_OPEN, REVIEW_APPROVED, REVIEW_VOIDED = "open", "approved", "voided"


class StaleReview(Exception):
    """The review item or one of its held entries changed since read (decided or refunded concurrently):
    nothing of the decision was written; read the item again."""


class ReadAgain(Exception):
    """What a write was planned from (e.g. an offer's code pool) changed meanwhile: read again and plan again."""
