"""Erasable kinds of the fraud data (docs/data-rights.md, docs/fraud.md): signal pointers, review items, the
velocity counters of a referrer.

A device id, an IP, a card or an address is personal data even as a keyed hash once it is linked to the member.
The pointers and review items live outside her partition and are shared with other members, so each is found by
a back-reference in her partition (``SignalRefItem``, ``ReviewRefItem``, written with the item) and loses only her
link, keeping what fraud review of everyone else needs:

* ``fraud_signals``: she is taken off each pointer listing her (conditioned on its revision: a concurrent event
  re-reads it, a concurrent change redoes the step). A pointer left with nobody is deleted, unless a review voided
  one of its events as fraud: then it stays, with no member, as the anonymous fraud mark (its times coarsened to
  the day of the mark, so they match none of her items). Her back-references go in the same transaction.
* ``review_items``: on the items of her own events (she is the subject) the event's device and payment hashes
  (``signals``, ``deny``) are removed and the business key is replaced by its hash, as on her attribution records;
  the item stays open or decided as it was (the held entries, ids and amounts, still decide). On her friends' items
  (she is the referrer or an upline member) the signals are the friend's and stay.
* ``referrer_velocity``: her counters as a referrer (``VEL#<program>#ref#<member>``: friends per hour and day, and
  per friend's IP or device hash), deleted; they expire by TTL anyway, and her codes are gone.

Each is bounded: a Query of her partition's back-references (half a transaction of them, each with its item in one
BatchGetItem), or of her counters' partition. Each also lists what is hers in the export (``export_view``): her own
sighting on a pointer, a review item without another member's entries or the friend's signals.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pynamodb.expressions.update import Action

from chalicelib.domain import clock
from chalicelib.store import keys
from chalicelib.store.db import Entity
from chalicelib.store.erasure_kinds import (
    ConcurrentChange,
    ErasableKind,
    ErasureTarget,
    Page,
    back_reference_finder,
    business_key_hash,
    register,
)
from chalicelib.store.review import ReviewItem, ReviewRefItem
from chalicelib.store.signals import SignalItem, SignalRefItem, sightings_of, without_member
from chalicelib.store.transact import Transaction

# --------------------------------------------------------------------------- signal pointers


def _signal_key(target: ErasureTarget, ref: Entity) -> tuple[str, str]:
    return keys.signal(target.program_id, str(getattr(ref, "kind", "")), str(getattr(ref, "value_hash", "")))


def _day(at: datetime) -> datetime:
    return at.replace(hour=0, minute=0, second=0, microsecond=0)


def _scrub_signal(tx: Transaction, item: Entity, target: ErasureTarget) -> None:
    if isinstance(item, SignalRefItem):
        tx.delete(item)
        return
    if not isinstance(item, SignalItem):
        return
    rest = without_member(item, target.member_id)
    if len(rest) == len(item.members or []):
        return  # newer members pushed her off the pointer already
    S = SignalItem
    unchanged = S.revision == int(item.revision or 0)
    if not rest and item.fraud_at is None:
        tx.delete(item, unchanged, on_fail=ConcurrentChange())
        return
    seen = sorted(clock.parse_iso(str(at)) for _, at in rest)
    fraud_at = _day(item.fraud_at) if item.fraud_at is not None else None
    first, last = (seen[0], seen[-1]) if seen else (fraud_at, fraud_at)
    tx.update(item, [S.members.set(rest), S.revision.set(int(item.revision or 0) + 1), S.first_seen_at.set(first),
                     S.last_seen_at.set(last), S.fraud_at.set(fraud_at) if fraud_at else S.fraud_at.remove()],
              unchanged, on_fail=ConcurrentChange())


def _export_signal(item: Entity, target: ErasureTarget) -> dict[str, Any] | None:
    if not isinstance(item, SignalItem):
        return None  # the back-reference is in her partition's pages already
    mine = sightings_of(item, target.member_id)
    return {"item_type": "signal", "program_id": item.program_id, "kind": item.kind,
            "value_hash": item.PK.rsplit("#", 1)[-1], "members": mine,
            "fraud_at": clock.iso(item.fraud_at) if item.fraud_at else None}


# --------------------------------------------------------------------------- review items


def _review_key(target: ErasureTarget, ref: Entity) -> tuple[str, str]:
    return keys.review_item(target.program_id, str(getattr(ref, "item_id", "")))


def _scrub_review(tx: Transaction, item: Entity, target: ErasureTarget) -> None:
    if isinstance(item, ReviewRefItem):
        tx.delete(item)
        return
    if not isinstance(item, ReviewItem) or item.member_id != target.member_id:
        return  # a friend's event: the signals are the friend's
    R = ReviewItem
    actions: list[Action] = [R.signals.set([]), R.deny.set([])]
    if item.business_key and not item.business_key.startswith("sha256:"):
        actions.append(R.business_key.set("sha256:" + business_key_hash(item.business_key)))
    tx.update(item, actions, Entity.PK.exists())


def _export_review(item: Entity, target: ErasureTarget) -> dict[str, Any] | None:
    from chalicelib.store.dynamo_ports import item_data

    if not isinstance(item, ReviewItem):
        return None
    data = item_data(item)
    data["entries"] = [e for e in item.entries or [] if isinstance(e, dict) and e.get("member_id") == target.member_id]
    own = item.member_id == target.member_id  # else a friend's event: the friend's device and card are not hers
    data["signals"], data["deny"] = (list(item.signals or []), list(item.deny or [])) if own else ([], [])
    return data


# --------------------------------------------------------------------------- the referrer's velocity counters


def _find_referrer_velocity(target: ErasureTarget, cursor: dict[str, Any] | None, limit: int) -> Page:
    result = Entity.query(keys.velocity_partition(target.program_id, f"ref#{target.member_id}"), limit=limit,
                          last_evaluated_key=cursor, consistent_read=True)
    return Page(list(result), result.last_evaluated_key)


register(ErasableKind("fraud_signals", back_reference_finder("SIGNAL#", _signal_key), scrub_member=_scrub_signal,
                      export=True, export_view=_export_signal))
register(ErasableKind("review_items", back_reference_finder("REVIEW#", _review_key), scrub_member=_scrub_review,
                      export=True, export_view=_export_review))
register(ErasableKind("referrer_velocity", _find_referrer_velocity, scrub=lambda tx, item: tx.delete(item),
                      export=True))
