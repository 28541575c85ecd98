"""Birthday gifts: which birthdays a day celebrates, and whether a birthday counts yet (pure).

* A birthday is stored as ``YYYY-MM-DD``; the index key is its month and day, ``MMDD``.
* **29 February.** In a leap year it is celebrated on 29 February; in other years on
  **28 February** (with the 28 February birthdays), so the member still gets one gift a year.
* **The guard.** A birthday set or changed within the last ``min_age_days`` days before the day
  celebrated does not count (no gift that year): changing one's birthday to "today" buys nothing.
  ``min_age_days = 0`` lets a birthday set on the day itself count.
* **The year** of a gift is the calendar year of the day celebrated (in the program's time zone):
  one gift per member and year.
* **Catching up.** The job works through the days from the one after its watermark up to today,
  at most ``CATCH_UP_DAYS`` back (a longer outage skips the oldest days rather than sending
  birthday wishes weeks late).
"""

from __future__ import annotations

import calendar
from datetime import date, datetime, timedelta, tzinfo

#: How many days back the job still grants a missed day's gifts.
CATCH_UP_DAYS = 7


def month_day(birthday: str) -> str | None:
    """``"1990-04-17"`` → ``"0417"``; ``None`` for anything that is not a real date."""
    try:
        parsed = date.fromisoformat(birthday)
    except (TypeError, ValueError):
        return None
    return f"{parsed.month:02d}{parsed.day:02d}"


def celebrated_month_days(day: date) -> tuple[str, ...]:
    """The ``MMDD`` keys whose members have their birthday on ``day`` (29 February on 28 February in
    a non-leap year)."""
    keys: tuple[str, ...] = (f"{day.month:02d}{day.day:02d}",)
    if day.month == 2 and day.day == 28 and not calendar.isleap(day.year):
        keys += ("0229",)
    return keys


def counts(set_at: datetime, day: date, min_age_days: int) -> bool:
    """Whether a birthday set (or last changed) at ``set_at`` counts on ``day``: set at least
    ``min_age_days`` whole days before it (``set_at``'s UTC date)."""
    return (day - set_at.date()).days >= min_age_days


def local_today(now: datetime, zone: tzinfo) -> date:
    """Today in the program's time zone (``settings.notifications.time_zone``; UTC by default)."""
    return now.astimezone(zone).date()


def days_to_run(done_through: date | None, today: date, catch_up: int = CATCH_UP_DAYS) -> list[date]:
    """Days the job still has to grant, oldest first: after the watermark up to ``today``, at most
    ``catch_up`` days back. A job without a watermark (a program's first run) starts today."""
    first = today if done_through is None else max(done_through + timedelta(days=1), today - timedelta(days=catch_up))
    return [first + timedelta(days=n) for n in range((today - first).days + 1)]
