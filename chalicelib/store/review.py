"""Fraud: velocity counters and review items (docs/fraud.md).

``VelocityItem``: one counter per (scope, window), ADDed in the event's transaction, conditioned
on still being below the limit when the decision was "under the limit" (two concurrent events
cannot both take the last slot); DynamoDB's TTL removes old windows, so counters stay bounded.

``ReviewItem``: the held rewards of one event, their reasons and matched signals (described,
never raw), and the decision (who, when, why). Open items carry the sparse queue keys (GSI1 per
program, GSI2 per partner); a decision removes them in the same transaction that releases or
reverses the held entries, conditioned on the item still being open. ``ReviewRefItem``: the item's
back-reference in the partition of each member it names (erasure, export).
"""

from __future__ import annotations

from pynamodb.attributes import JSONAttribute, NumberAttribute, UnicodeAttribute

from chalicelib.domain.records import REVIEW_APPROVED as REVIEW_APPROVED
from chalicelib.domain.records import REVIEW_OPEN as REVIEW_OPEN
from chalicelib.domain.records import REVIEW_VOIDED as REVIEW_VOIDED
from chalicelib.store.db import Entity, IsoDateTimeAttribute


class VelocityItem(Entity, discriminator="velocity"):
    hits = NumberAttribute(default=0)
    expires_at_epoch = NumberAttribute(null=True)


def take_velocity_slot(pk: str, sk: str, limit: int, expires_at_epoch: int) -> bool:
    """One conditional ADD on a bounded counter (DynamoDB's TTL removes it at ``expires_at_epoch``);
    False, and nothing written, when ``limit`` hits came before."""
    from pynamodb.exceptions import UpdateError

    from chalicelib.store.ledger import identity_actions

    try:
        VelocityItem(PK=pk, SK=sk).update(
            actions=[VelocityItem.hits.add(1), VelocityItem.expires_at_epoch.set(expires_at_epoch),
                     *identity_actions(VelocityItem)],
            condition=VelocityItem.hits.does_not_exist() | (VelocityItem.hits < limit))
    except UpdateError as exc:
        if exc.cause_response_code != "ConditionalCheckFailedException":
            raise
        return False
    return True


class ReviewItem(Entity, discriminator="review"):
    program_id = UnicodeAttribute()
    item_id = UnicodeAttribute()
    partner_id = UnicodeAttribute()
    business_key = UnicodeAttribute()
    event_type = UnicodeAttribute()
    member_id = UnicodeAttribute()  # the friend (the event's subject)
    referrer_id = UnicodeAttribute(null=True)
    #: [{"code", "reason"}]
    reasons = JSONAttribute(default=list)
    #: ["same device as referrer", ...]: descriptions, never values
    matched = JSONAttribute(default=list)
    #: [{"member_id", "sk", "entry_id", "points", "available_at"}]: the held entries
    entries = JSONAttribute(default=list)
    #: ["<kind>#<hash>"] of the event's device and payment signals (marked as fraud on a fraud void)
    signals = JSONAttribute(default=list)
    #: ["<kind>#<deployment hash>"] when the program feeds the shared deny list (a fraud void adds them)
    deny = JSONAttribute(default=list)
    #: Offer vouchers the event granted, not issued while held: ``services.vouchers.held_grant`` dicts plus,
    #: after the decision, ``status`` (``issued`` with ``voucher_id``, ``voided``, ``pool_empty``).
    vouchers = JSONAttribute(default=list)
    points = NumberAttribute(default=0)
    status = UnicodeAttribute(default=REVIEW_OPEN)
    created_at = IsoDateTimeAttribute()
    decided_at = IsoDateTimeAttribute(null=True)
    decided_by = UnicodeAttribute(null=True)
    decision_reason = UnicodeAttribute(null=True)


class ReviewRefItem(Entity, discriminator="review_ref"):
    """In the partition of each member a review item names (``keys.review_ref``): created with the item, so an
    erasure or an export finds the member's review items by a Query of her partition."""

    program_id = UnicodeAttribute()
    member_id = UnicodeAttribute()
    item_id = UnicodeAttribute()
    created_at = IsoDateTimeAttribute()


def review_members(item: ReviewItem) -> list[str]:
    """Every member the item names: the subject, the referrer, the members of its held entries."""
    named = [item.member_id, item.referrer_id, *(str(e.get("member_id")) for e in item.entries or [])]
    return list(dict.fromkeys(m for m in named if m))


class DenyItem(Entity, discriminator="deny"):
    """A signal hash on the deployment's shared deny list (no program, no member, no value)."""

    kind = UnicodeAttribute()
    added_at = IsoDateTimeAttribute()
