"""Fraud-signal pointers: a signal's salted hash → the members recently seen with it.

One item per (program, kind, hash) (``keys.signal``), read in the event pipeline's first batched
read. ``members`` is bounded (``MAX_MEMBERS`` most recent ``[member_id, last seen ISO]`` pairs) and
rewritten only when a new member appears or a member's last sighting is older than
``REFRESH``; the write is conditioned on the revision read, so concurrent events re-read.
No raw value is stored anywhere (the hash is keyed: ``domain.signals``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from pynamodb.attributes import JSONAttribute, NumberAttribute, UnicodeAttribute

from chalicelib.domain import clock
from chalicelib.store import keys
from chalicelib.store.db import Entity, IsoDateTimeAttribute

MAX_MEMBERS: Final = 20
REFRESH: Final = timedelta(hours=1)


@dataclass(frozen=True)
class SignalRef:
    kind: str
    value_hash: str

    def pointer_key(self, program_id: str) -> tuple[str, str]:
        return keys.signal(program_id, self.kind, self.value_hash)


class SignalItem(Entity, discriminator="signal"):
    program_id = UnicodeAttribute()
    kind = UnicodeAttribute()
    #: [[member_id, last seen ISO]], oldest first, at most MAX_MEMBERS.
    members = JSONAttribute(default=list)
    first_seen_at = IsoDateTimeAttribute()
    last_seen_at = IsoDateTimeAttribute()
    revision = NumberAttribute(default=0)
    #: Set when a held reward of an event with this signal was voided as fraud (shared by every
    #: partner of the program: a later event with it is held, docs/fraud.md).
    fraud_at = IsoDateTimeAttribute(null=True)

    def seen(self) -> dict[str, datetime]:
        """member id → last sighting."""
        out: dict[str, datetime] = {}
        for pair in self.members or []:
            if isinstance(pair, list) and len(pair) == 2:
                try:
                    out[str(pair[0])] = clock.parse_iso(str(pair[1]))
                except ValueError:
                    continue
        return out


class SignalRefItem(Entity, discriminator="signal_ref"):
    """In the member's partition (``keys.signal_ref``): the member was added to that signal's pointer at ``seen_at``.
    Written with the pointer whenever she is new on it, so an erasure or an export finds her pointers by a Query of
    her partition. Holds the keyed hash only, like the pointer."""

    program_id = UnicodeAttribute()
    member_id = UnicodeAttribute()
    kind = UnicodeAttribute()
    value_hash = UnicodeAttribute()
    seen_at = IsoDateTimeAttribute()


def signal_ref(program_id: str, member_id: str, kind: str, value_hash: str, at: datetime) -> SignalRefItem:
    pk, sk = keys.signal_ref(program_id, member_id, kind, value_hash)
    return SignalRefItem(PK=pk, SK=sk, program_id=program_id, member_id=member_id, kind=kind, value_hash=value_hash,
                         seen_at=at)


def new_on_pointer(read: SignalItem | None, member_id: str) -> bool:
    """Whether writing the pointer adds ``member_id`` to it (then her back-reference is written too)."""
    return read is None or member_id not in read.seen()


def _names(pair: Any, member_id: str) -> bool:
    """Whether one ``[member_id, seen_at]`` pair of a pointer's ``members`` is ``member_id``'s sighting."""
    return isinstance(pair, list) and bool(pair) and pair[0] == member_id


def without_member(item: SignalItem, member_id: str) -> list[list[str]]:
    """The pointer's ``members`` with ``member_id`` taken off."""
    return [list(pair) for pair in item.members or [] if not _names(pair, member_id)]


def sightings_of(item: SignalItem, member_id: str) -> list[list[str]]:
    """``member_id``'s own pairs of the pointer's ``members`` (what her export shows of a shared pointer)."""
    return [list(pair) for pair in item.members or [] if _names(pair, member_id)]


def updated_members(read: SignalItem | None, member_id: str, now: datetime) -> list[list[str]] | None:
    """The new ``members`` list after seeing ``member_id`` now, or ``None`` when nothing needs writing."""
    seen = read.seen() if read is not None else {}
    last = seen.get(member_id)
    if last is not None and now - last < REFRESH:
        return None
    seen.pop(member_id, None)
    ordered = sorted(seen.items(), key=lambda kv: kv[1])[-(MAX_MEMBERS - 1):]
    return [[m, clock.iso(at)] for m, at in ordered] + [[member_id, clock.iso(now)]]


def next_pointer(key: tuple[str, str], program_id: str, kind: str, members: list[list[str]],
                 read: SignalItem | None, now: datetime) -> SignalItem:
    """The pointer as it is written next: ``read``'s successor (one revision up), or a new one."""
    return SignalItem(PK=key[0], SK=key[1], program_id=program_id, kind=kind, members=members,
                      first_seen_at=read.first_seen_at if read else now, last_seen_at=now,
                      revision=int(read.revision or 0) + 1 if read else 1,
                      fraud_at=read.fraud_at if read else None)
