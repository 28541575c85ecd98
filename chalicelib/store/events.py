"""Processed business events (the permanent dedupe record) and attribution records."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pynamodb.attributes import JSONAttribute, NumberAttribute, UnicodeAttribute

from chalicelib.domain.clock import iso
from chalicelib.store import keys
from chalicelib.store.db import CompressedJSONAttribute, Entity, IsoDateTimeAttribute

Key = tuple[str, str]


class EventItem(Entity, discriminator="event"):
    """One per business fact. Created with ``attribute_not_exists`` in the event's transaction,
    so a fact delivered twice, concurrently or under another delivery id, is processed once.

    Lean on purpose (every started KB is 2 write units in the transaction): the business key
    (which names program, partner, object and event type), when it was received, by which
    delivery, about which member, and the reply compressed. The postings live in the ledger
    entries, not here. Kept for good: dedupe on the business key is permanent (see docs/cost.md).

    An ``order.paid`` record is also what the order's refunds start from (issue #10): its reply's
    postings, ``occurred_at``, fingerprint (total, currency) and member are all a refund needs
    (:meth:`order_postings`), so the order writes no separate ledger item; the first refund writes
    one (``services.ledger.refunds``). Records of the previous version came with that item.
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
    #: 1 on a record that replaced the refunds parked before its order at its key (``services.ledger.refunds``):
    #: the stream shows its first write as a MODIFY, which the analytics consumer counts (the holding job's
    #: later update of the record removes the mark).
    replaced_parked = NumberAttribute(null=True)

    def stored_reply(self) -> dict[str, Any]:
        """The reply as stored (see :func:`lean_reply`); :meth:`full_reply` for the one the first processing gave."""
        reply = self.reply if self.reply is not None else self.result
        return dict(reply) if isinstance(reply, dict) else {}

    def full_reply(self) -> dict[str, Any]:
        return full_reply(self.business_key, self.stored_reply())

    @property
    def program_of(self) -> str:
        return self.business_key.split("|", 1)[0]

    def indexed_entry_keys(self) -> list[Key]:
        """The keys of the entries this record indexes (none for a record without index keys): the reward
        postings of its reply, whose entry ids are derived (:func:`lean_reply`), and a refund's reversals
        (``rewards.reversals``, with their ids), all at ``occurred_at``."""
        if self.occurred_at is None or not (self.GSI1PK or self.GSI2PK):
            return []
        rewards = self.stored_reply().get("rewards")
        if not isinstance(rewards, dict):
            return []
        at = iso(self.occurred_at)
        out = []
        for posting in rewards.get("postings") or []:
            if "entry_id" in posting:
                continue  # not a reward of this event's rules (indexed by itself)
            entry_id = reward_entry_id(self.business_key, posting)
            if entry_id:
                out.append(keys.ledger_entry(self.program_of, posting["member_id"], at, entry_id))
        for reversal in rewards.get("reversals") or []:
            if reversal.get("entry_id") and reversal.get("member_id"):
                out.append(keys.ledger_entry(self.program_of, reversal["member_id"], at, reversal["entry_id"]))
        return out

    def order_postings(self) -> list[dict[str, Any]]:
        """What an ``order.paid`` record posted, as the order's ledger item keeps it (``OrderLedgerItem.postings``):
        the reward postings of its reply with their entries' sort keys (the funding partner is the entry's)."""
        if self.occurred_at is None:
            return []
        rewards = self.full_reply().get("rewards")
        out: list[dict[str, Any]] = []
        for posting in (rewards.get("postings") or []) if isinstance(rewards, dict) else []:
            if not posting.get("entry_id") or not all(k in posting for k in ("member_id", "points", "rule_id", "level")):
                continue
            _, sk = keys.ledger_entry(self.program_of, posting["member_id"], iso(self.occurred_at), posting["entry_id"])
            out.append({"member_id": posting["member_id"], "sk": sk, "points": int(posting["points"]),
                        "rule_id": posting["rule_id"], "rule_version": posting.get("rule_version"),
                        "level": int(posting["level"])})
        return out

    def order_amounts(self) -> tuple[int, str | None]:
        """(total in minor units, currency) of the order an ``order.paid`` record is about (its fingerprint)."""
        fp = dict(self.fingerprint or {})
        return int(fp.get("order.total") or 0), fp.get("order.currency")

    def index_entries(self, program_id: str, created_at: datetime, pending_at: datetime | None) -> None:
        """Carry the index keys of the event's reward entries: the ledger-day (``GSI2``, the ledger export) and,
        while one of them is pending, the pending-release bucket of the earliest (``GSI1``, the holding job)."""
        tag = self.PK.rsplit("#", 1)[-1][:16]
        self.GSI2PK, self.GSI2SK = keys.gsi2_ledger_day(program_id, iso(created_at)[:10], iso(created_at), f"E{tag}")
        if pending_at is not None:
            self.GSI1PK, self.GSI1SK = keys.gsi1_pending_release(iso(pending_at)[:10], iso(pending_at), f"E{tag}")
    #: The fact's content as first seen (amounts, currency, customer id; e-mail/phone only hashed),
    #: so a repeat with different content is reported as a conflict (see ``domain.events.fingerprint``).
    fingerprint = JSONAttribute(null=True)


def reward_entry_id(business_key: str, posting: dict[str, Any]) -> str | None:
    """The id a reward posting's entry gets (``stable_id("le", Posting.key)``), or None when it cannot be told."""
    from chalicelib.store.ledger import stable_id

    if not all(k in posting for k in ("rule_id", "level", "member_id")):
        return None
    return stable_id("le", f"{business_key}#{posting['rule_id']}#{posting['level']}#{posting['member_id']}")


def lean_reply(business_key: str, reply: dict[str, Any]) -> dict[str, Any]:
    """The reply as stored: the entry ids of reward postings are left out (derived again from the business key,
    rule, level and member by :func:`full_reply`); every other id is kept as it is."""
    rewards = reply.get("rewards")
    if not isinstance(rewards, dict) or not rewards.get("postings"):
        return reply
    postings = []
    for posting in rewards["postings"]:
        if posting.get("entry_id") and posting["entry_id"] == reward_entry_id(business_key, posting):
            posting = {k: v for k, v in posting.items() if k != "entry_id"}
        postings.append(posting)
    return {**reply, "rewards": {**rewards, "postings": postings}}


def full_reply(business_key: str, stored: dict[str, Any]) -> dict[str, Any]:
    rewards = stored.get("rewards")
    if not isinstance(rewards, dict) or not rewards.get("postings"):
        return stored
    postings = []
    for posting in rewards["postings"]:
        if "entry_id" not in posting:
            entry_id = reward_entry_id(business_key, posting)
            posting = {"entry_id": entry_id, **posting} if entry_id else posting
        postings.append(posting)
    return {**stored, "rewards": {**rewards, "postings": postings}}


class EventRefItem(Entity, discriminator="event_ref"):
    """In the subject's partition (``keys.event_ref``): the record of an event about her that wrote no ledger entry
    of hers (those carry its business key already). The member export lists her events by these and her entries."""

    program_id = UnicodeAttribute()
    member_id = UnicodeAttribute()
    received_at = IsoDateTimeAttribute()


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
