"""Birthday gifts in the single table: the month-day index, the gift of a year, the job's watermark.

* ``BirthdayPointerItem`` (``BDAY#<program>#<MMDD>`` / ``MEMBER#<member>``): one per member with a
  birthday, so the daily job finds a day's birthdays with one Query per ``MMDD`` (paged), never a Scan.
  It holds ids and ``set_at`` (when the birthday was set or last changed), not the birthday itself;
  the month and day are in its key, so it goes on erasure (``services.erasure``) and on a change.
  Written in the transaction that sets the profile's ``birthday`` (:func:`stage_birthday`), so
  the profile and the index never disagree.
* ``BirthdayGiftItem`` (``MEMBER#<program>#<member>`` / ``BIRTHDAYGIFT#<yyyy>``): the business key of a
  gift (program, member, year), created with ``attribute_not_exists`` in the gift's transaction.
* ``BirthdayJobStateItem`` (``JOBS`` / ``BIRTHDAY#<program>``): days fully granted, and where the day
  in progress stopped (a resumed run continues from its cursor).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pynamodb.attributes import JSONAttribute, NumberAttribute, UnicodeAttribute

from chalicelib.domain.birthdays import month_day
from chalicelib.store import keys
from chalicelib.store.db import Entity, IsoDateTimeAttribute


class BirthdayPointerItem(Entity, discriminator="birthday_pointer"):
    program_id = UnicodeAttribute()
    member_id = UnicodeAttribute()
    set_at = IsoDateTimeAttribute()  # when the birthday was set or last changed (the N-day guard)


class BirthdayGiftItem(Entity, discriminator="birthday_gift"):
    """One member's gift of one year: what was given, or why not (``outcome``)."""

    program_id = UnicodeAttribute()
    member_id = UnicodeAttribute()
    year = NumberAttribute()
    day = UnicodeAttribute()  # the day celebrated, YYYY-MM-DD (a 29 February birthday: 28 February in other years)
    outcome = UnicodeAttribute()  # granted | fallback | pool_empty
    points = NumberAttribute(default=0)
    funding_partner_id = UnicodeAttribute(null=True)
    entry_id = UnicodeAttribute(null=True)
    voucher_id = UnicodeAttribute(null=True)
    offer_id = UnicodeAttribute(null=True)
    offer_partner_id = UnicodeAttribute(null=True)
    granted_at = IsoDateTimeAttribute()


class BirthdayJobStateItem(Entity, discriminator="birthday_job_state"):
    done_through = UnicodeAttribute(null=True)  # YYYY-MM-DD: every day up to it is granted
    day = UnicodeAttribute(null=True)  # the day in progress
    month_day_index = NumberAttribute(default=0)  # which of its MMDD partitions (29 Feb on 28 Feb)
    cursor = JSONAttribute(null=True)  # where its Query stopped


def pointer(program_id: str, member_id: str, birthday: str | None, set_at: datetime) -> BirthdayPointerItem | None:
    md = month_day(birthday) if birthday else None
    if md is None:
        return None
    pk, sk = keys.birthday_pointer(program_id, md, member_id)
    return BirthdayPointerItem(PK=pk, SK=sk, program_id=program_id, member_id=member_id, set_at=set_at)


def pointer_key(program_id: str, member_id: str, birthday: str | None) -> tuple[str, str] | None:
    md = month_day(birthday) if birthday else None
    return keys.birthday_pointer(program_id, md, member_id) if md else None


def moves_day(old: str | None, new: str | None) -> bool:
    """Whether a new birthday celebrates on another day than the old one (a changed year does not:
    the guard's clock restarts only when the day moves)."""
    return (month_day(old) if old else None) != (month_day(new) if new else None)


def stage_birthday(tx: Any, program_id: str, member_id: str, old: str | None, new: str | None,
                   set_at: datetime) -> None:
    """Move the member's index entry from the ``old`` birthday's day to the ``new`` one's in ``tx`` (the
    caller updates the profile, ``birthday`` and ``birthday_set_at``, in the same transaction)."""
    old_key = pointer_key(program_id, member_id, old)
    item = pointer(program_id, member_id, new, set_at)
    if old_key is not None and (item is None or old_key != (item.PK, item.SK)):
        tx.delete(BirthdayPointerItem(PK=old_key[0], SK=old_key[1]))
    if item is not None:
        tx.put(item)
