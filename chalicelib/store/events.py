"""Processed business events (the permanent dedupe record) and attribution records."""

from __future__ import annotations

from pynamodb.attributes import JSONAttribute, UnicodeAttribute

from chalicelib.store.db import Entity, IsoDateTimeAttribute


class EventItem(Entity, discriminator="event"):
    """One per business fact. Created with ``attribute_not_exists`` in the event's transaction,
    so a fact delivered twice, concurrently or under another delivery id, is processed once."""

    program_id = UnicodeAttribute()
    partner_id = UnicodeAttribute()
    business_key = UnicodeAttribute()
    type = UnicodeAttribute()
    object_type = UnicodeAttribute()
    object_id = UnicodeAttribute()
    occurred_at = IsoDateTimeAttribute()
    received_at = IsoDateTimeAttribute()
    delivery_id = UnicodeAttribute(null=True)
    member_id = UnicodeAttribute(null=True)
    #: What the first processing answered; duplicates get the same answer.
    result = JSONAttribute(default=dict)
    #: Ledger entries this event posted (for refunds to reverse): owned by the ledger.
    postings = JSONAttribute(default=list)
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
