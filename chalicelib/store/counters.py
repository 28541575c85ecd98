"""Counters written with one ``UpdateItem`` each: link clicks and per-IP rate-limit windows.

Both are plain ``ADD`` updates, so concurrent requests never lose a count and no
read precedes the write. Neither stores a raw IP: rate-limit scopes carry a salted
hash (``services.landing.rate_limits.client_fingerprint``) and windows expire by DynamoDB TTL.
"""

from __future__ import annotations

from collections.abc import Iterator

from pynamodb.attributes import NumberAttribute, UnicodeAttribute
from pynamodb.exceptions import UpdateError

from chalicelib.store import keys
from chalicelib.store.db import Entity


class ClickCounterItem(Entity, discriminator="click_counter"):
    """Clicks on one code's link, per UTC day and ``utm_source`` (``-`` when absent)."""

    program_id = UnicodeAttribute(null=True)
    code = UnicodeAttribute(null=True)
    day = UnicodeAttribute(null=True)
    utm_source = UnicodeAttribute(null=True)
    clicks = NumberAttribute(default=0)


class RateWindowItem(Entity, discriminator="rate_window"):
    """Requests of one (scope, client) in one window; the TTL attribute removes it afterwards."""

    hits = NumberAttribute(default=0)
    expires_at_epoch = NumberAttribute(null=True)


def count_click(program_id: str, code: str, day: str, utm_source: str) -> None:
    pk, sk = keys.click_counter(program_id, code, day, utm_source)
    ClickCounterItem(PK=pk, SK=sk).update(actions=[
        ClickCounterItem.clicks.add(1),
        # Written on every click (idempotent), so the first ADD also creates a typed item.
        ClickCounterItem.entity.set(ClickCounterItem),  # type: ignore[arg-type]
        ClickCounterItem.program_id.set(program_id),
        ClickCounterItem.code.set(code),
        ClickCounterItem.day.set(day),
        ClickCounterItem.utm_source.set(utm_source),
    ])


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
