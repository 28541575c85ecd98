"""Counters written with single ``UpdateItem`` calls: link clicks and per-IP rate-limit windows.

All are ``ADD``-style updates, so concurrent requests never lose a count and no read
precedes the write. Neither stores a raw IP: rate-limit scopes carry a salted hash
(``services.landing.rate_limits.client_fingerprint``) and windows expire by DynamoDB TTL.

Clicks are kept twice: a pre-aggregated total per code (``ClickTotalItem``: all clicks and
per-``utm_source`` counts for at most ``MAX_SOURCES`` sources, later ones under ``OTHER_SOURCE``),
which is what the member profile reads (one item per code, whatever the history), and the
detail per UTC day and source (``ClickCounterItem``), which expires after
``CLICK_DETAIL_RETENTION_DAYS`` by DynamoDB TTL.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from pynamodb.attributes import MapAttribute, NumberAttribute, UnicodeAttribute
from pynamodb.exceptions import UpdateError
from pynamodb.expressions.condition import size

from chalicelib.store import keys
from chalicelib.store.db import Entity

#: How long the per-day click detail is kept (the totals are kept for good).
CLICK_DETAIL_RETENTION_DAYS = 400
#: Distinct ``utm_source`` values counted one by one per code; clicks from later ones count as OTHER_SOURCE.
MAX_SOURCES = 50
OTHER_SOURCE = "(other)"


class ClickCounterItem(Entity, discriminator="click_counter"):
    """Clicks on one code's link, per UTC day and ``utm_source`` (``-`` when absent); expires by TTL."""

    program_id = UnicodeAttribute(null=True)
    code = UnicodeAttribute(null=True)
    day = UnicodeAttribute(null=True)
    utm_source = UnicodeAttribute(null=True)
    clicks = NumberAttribute(default=0)
    expires_at_epoch = NumberAttribute(null=True)


class ClickTotalItem(Entity, discriminator="click_total"):
    """All clicks on one code's link: the total and a bounded map of per-source counts."""

    program_id = UnicodeAttribute(null=True)
    code = UnicodeAttribute(null=True)
    clicks = NumberAttribute(default=0)
    by_source = MapAttribute[str, int](null=True)


class RateWindowItem(Entity, discriminator="rate_window"):
    """Requests of one (scope, client) in one window; the TTL attribute removes it afterwards."""

    hits = NumberAttribute(default=0)
    expires_at_epoch = NumberAttribute(null=True)


def count_click(program_id: str, code: str, day: str, utm_source: str) -> None:
    pk, sk = keys.click_counter(program_id, code, day, utm_source)
    expires = datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=UTC) + timedelta(days=CLICK_DETAIL_RETENTION_DAYS)
    ClickCounterItem(PK=pk, SK=sk).update(actions=[
        ClickCounterItem.clicks.add(1),
        # Written on every click (idempotent), so the first ADD also creates a typed item.
        ClickCounterItem.entity.set(ClickCounterItem),  # type: ignore[arg-type]
        ClickCounterItem.program_id.set(program_id),
        ClickCounterItem.code.set(code),
        ClickCounterItem.day.set(day),
        ClickCounterItem.utm_source.set(utm_source),
        ClickCounterItem.expires_at_epoch.set(int(expires.timestamp())),
    ])
    _count_total(program_id, code, utm_source)


def _count_total(program_id: str, code: str, utm_source: str) -> None:
    """One ``UpdateItem`` when the source is known (the usual case); a new source or a new code's
    first click takes one or two more, each conditioned, so concurrent clicks are never lost."""
    T = ClickTotalItem
    item = T(*keys.click_total(program_id, code))
    for _ in range(3):
        counted: Any = T.by_source[utm_source]  # a document path (typed as the map's value type)
        other: Any = T.by_source[OTHER_SOURCE]
        attempts = [
            # a known source, or a new one while the map has room
            ([T.clicks.add(1), counted.set((counted | 0) + 1)],
             T.by_source.exists() & (counted.exists() | (size(T.by_source) < MAX_SOURCES))),
            # the code's first click creates the typed item and its map
            ([T.clicks.add(1), T.by_source.set({utm_source: 1}), T.entity.set(T),  # type: ignore[arg-type]
              T.program_id.set(program_id), T.code.set(code)], T.by_source.does_not_exist()),
            # the map is full: counted as another source (only when full: a concurrent first click that lost
            # the race to create the map is retried above, not counted as another source)
            ([T.clicks.add(1), other.set((other | 0) + 1)], T.by_source.exists() & (size(T.by_source) >= MAX_SOURCES)),
        ]
        for actions, condition in attempts:
            try:
                item.update(actions=actions, condition=condition)
                return
            except UpdateError as exc:
                if exc.cause_response_code != "ConditionalCheckFailedException":
                    raise
    raise RuntimeError("click total not counted after retries")  # caller logs it; the redirect goes on


def click_totals(program_id: str, codes: list[str]) -> list[ClickTotalItem]:
    """The totals of a member's codes: one ``BatchGetItem`` (codes are few: the current one and earlier vanity changes)."""
    wanted = [keys.click_total(program_id, c) for c in dict.fromkeys(codes)]
    return [i for i in ClickTotalItem.batch_get(wanted) if isinstance(i, ClickTotalItem)] if wanted else []


def click_counters(program_id: str, code: str) -> Iterator[ClickCounterItem]:
    pk, prefix = keys.click_counters_prefix(program_id, code)
    for item in ClickCounterItem.query(pk, ClickCounterItem.SK.startswith(prefix)):
        if isinstance(item, ClickCounterItem):
            yield item


def take(scope: str, window: str, limit: int, expires_at_epoch: int) -> bool:
    """Count one request in ``(scope, window)`` unless ``limit`` is reached: one conditional ``UpdateItem``.

    Returns False (and counts nothing) when the window is full.
    """
    pk, sk = keys.rate_limit(scope, window)
    try:
        RateWindowItem(PK=pk, SK=sk).update(
            actions=[
                RateWindowItem.hits.add(1),
                RateWindowItem.entity.set(RateWindowItem),  # type: ignore[arg-type]
                RateWindowItem.expires_at_epoch.set(expires_at_epoch),
            ],
            condition=RateWindowItem.hits.does_not_exist() | (RateWindowItem.hits < limit),
        )
    except UpdateError as exc:
        if exc.cause_response_code == "ConditionalCheckFailedException":
            return False
        raise
    return True
