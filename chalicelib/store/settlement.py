"""Settlement aggregates, fed from the table's stream (``services.settlement_feed``), never by events.

* ``SettlementRowItem`` ``SETTLE#<program>`` / ``DAY#<yyyy-mm-dd>#PARTNER#<partner>``: the partner's
  columns for entries booked that day (``funded``, ``adjusted``, ``redeemed``, ``expired``, ADD);
* ``SettlementRowItem`` ``SETTLE#<program>`` / ``DAY#<yyyy-mm-dd>#PAIR#<funder>#<at>``: points the funder
  funded for activity at ``at``;
* ``SettledMarkerItem`` ``SETTLED#<program>#<hash of the event's business key>`` / ``SETTLED`` (an entry of no
  event: ``SETTLED#<program>#<entry>``): the ids of the event's entries counted (an attribute ``c#<id>`` each,
  set in the same transaction as the rows' ADDs and conditioned on the ids not being there, so a
  redelivered record counts once: ``store.count_once``; expires by TTL after ``MARKER_TTL_DAYS``, long after
  DynamoDB Streams' 24 h retention).

A period's statement is one paged Query on ``SETTLE#<program>`` between two day prefixes, which stops
after ``limit`` rows (``services.settlement.MAX_STATEMENT_ROWS`` + 1: the edge refuses a longer period).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta

from pynamodb.attributes import NumberAttribute, UnicodeAttribute

from chalicelib.store import keys
from chalicelib.store.db import Entity

MARKER_TTL_DAYS = 30


class SettlementRowItem(Entity, discriminator="settlement_row"):
    program_id = UnicodeAttribute(null=True)
    day = UnicodeAttribute(null=True)
    partner_id = UnicodeAttribute(null=True)  # PARTNER rows; the funder on PAIR rows
    at_partner_id = UnicodeAttribute(null=True)  # PAIR rows
    funded = NumberAttribute(default=0)
    adjusted = NumberAttribute(default=0)
    redeemed = NumberAttribute(default=0)
    expired = NumberAttribute(default=0)
    points = NumberAttribute(default=0)  # PAIR rows
    entries = NumberAttribute(default=0)


class SettledMarkerItem(Entity, discriminator="settled_marker"):
    expires_at_epoch = NumberAttribute(null=True)
    # + one attribute ``c#<entry id>`` per entry counted (written by ``store.count_once``)


def rows(program_id: str, start: date, end: date, limit: int) -> Iterator[SettlementRowItem]:
    """The aggregate rows of the days ``start``..``end`` (inclusive), at most ``limit``: one paged Query."""
    pk, low = keys.settlement_row(program_id, start.isoformat(), "")
    _, high = keys.settlement_row(program_id, (end + timedelta(days=1)).isoformat(), "")
    # ``high`` itself (the day after ``end``, no row suffix) is never a row's key: ``limit`` counts rows only.
    for item in SettlementRowItem.query(pk, SettlementRowItem.SK.between(low, high), consistent_read=True,
                                        limit=limit):
        if isinstance(item, SettlementRowItem) and high > item.SK:
            yield item
