"""Processed business events (the permanent dedupe record) and attribution records."""

from __future__ import annotations

from typing import Any

from pynamodb.attributes import JSONAttribute, NumberAttribute, UnicodeAttribute

from chalicelib.store.db import CompressedJSONAttribute, Entity, IsoDateTimeAttribute


class EventItem(Entity, discriminator="event"):
    """One per business fact. Created with ``attribute_not_exists`` in the event's transaction,
    so a fact delivered twice, concurrently or under another delivery id, is processed once.

    Lean on purpose (every started KB is 2 write units in the transaction): the business key
    (which names program, partner, object and event type), when it was received, by which
    delivery, about which member, and the reply compressed. The postings live in the ledger
    entries and the order's ledger item, not here. Kept for good: dedupe on the business key
    is permanent (see docs/cost.md).
    """

    business_key = UnicodeAttribute()
    received_at = IsoDateTimeAttribute()
    delivery_id = UnicodeAttribute(null=True)
    member_id = UnicodeAttribute(null=True)
    #: What the first processing answered (compact JSON, zlib): duplicates get the same answer.
    reply = CompressedJSONAttribute(null=True)
    #: Records written before the reply was compressed (read only).
    result = JSONAttribute(null=True)
    program_id = UnicodeAttribute(null=True)
    partner_id = UnicodeAttribute(null=True)
    type = UnicodeAttribute(null=True)
    object_type = UnicodeAttribute(null=True)
    object_id = UnicodeAttribute(null=True)
    occurred_at = IsoDateTimeAttribute(null=True)
    postings = JSONAttribute(null=True)
    #: For a member's purchase: which of their purchases it is (1 = first); read by the analytics consumer.
    order_number = NumberAttribute(null=True)

    def stored_reply(self) -> dict[str, Any]:
        reply = self.reply if self.reply is not None else self.result
        return dict(reply) if isinstance(reply, dict) else {}
    #: The fact's content as first seen (amounts, currency, customer id; e-mail/phone only hashed),
    #: so a repeat with different content is reported as a conflict (see ``domain.events.fingerprint``).
    fingerprint = JSONAttribute(null=True)


class AttributionRecordItem(Entity, discriminator="attribution"):
    """Why a conversion was credited or rejected: readable per member and per code."""

    program_id = UnicodeAttribute()
    record_id = UnicodeAttribute()
    member_id = UnicodeAttribute()  # the friend
    referrer_id = UnicodeAttribute(null=True)
    code = UnicodeAttribute(null=True)
    source = UnicodeAttribute(null=True)  # ref_code | coupon | invite_match
    outcome = UnicodeAttribute()  # credited | rejected
    reason_code = UnicodeAttribute()
    reason = UnicodeAttribute()
    event_type = UnicodeAttribute()
    business_key = UnicodeAttribute()
    at = IsoDateTimeAttribute()
