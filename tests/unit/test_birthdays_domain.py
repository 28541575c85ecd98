"""The birthday job's date logic (pure): month-day keys, 29 February, the N-day guard, catching up."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from chalicelib.domain import birthdays as bday
from chalicelib.domain.settings import BirthdayGift, ProgramSettings


def test_month_day_of_a_birthday() -> None:
    assert bday.month_day("1990-04-17") == "0417"
    assert bday.month_day("2000-02-29") == "0229"
    assert bday.month_day("1991-02-30") is None and bday.month_day("17.04.1991") is None


@pytest.mark.parametrize(("day", "expected"), [
    (date(2026, 4, 17), ("0417",)),
    (date(2027, 2, 28), ("0228", "0229")),  # a non-leap year: 29 February birthdays on 28 February
    (date(2028, 2, 28), ("0228",)),  # a leap year: they wait for the 29th
    (date(2028, 2, 29), ("0229",)),
    (date(2100, 2, 28), ("0228", "0229")),  # 2100 is not a leap year
    (date(2000, 2, 28), ("0228",)),  # 2000 is
    (date(2027, 3, 1), ("0301",)),
])
def test_which_birthdays_a_day_celebrates(day: date, expected: tuple[str, ...]) -> None:
    assert bday.celebrated_month_days(day) == expected


def test_a_29_february_birthday_is_celebrated_exactly_once_every_year() -> None:
    for year in range(2024, 2033):
        days = [date(year, 1, 1) + timedelta(days=n) for n in range(366 if year % 4 == 0 else 365)]
        assert sum("0229" in bday.celebrated_month_days(d) for d in days) == 1, year


def test_the_guard_counts_whole_days_before_the_birthday() -> None:
    day = date(2026, 3, 5)
    assert bday.counts(datetime(2026, 2, 3, 23, 59, tzinfo=UTC), day, 30)  # 30 days before
    assert not bday.counts(datetime(2026, 2, 4, 0, 0, tzinfo=UTC), day, 30)  # 29 days before
    assert not bday.counts(datetime(2026, 3, 5, 8, 0, tzinfo=UTC), day, 1)
    assert bday.counts(datetime(2026, 3, 5, 8, 0, tzinfo=UTC), day, 0)  # 0: a birthday set on the day counts
    assert bday.counts(datetime(2019, 1, 1, tzinfo=UTC), day, 365)


def test_today_is_the_programs_local_day() -> None:
    now = datetime(2026, 3, 4, 22, 30, tzinfo=UTC)
    assert bday.local_today(now, UTC) == date(2026, 3, 4)
    assert bday.local_today(now, timezone(timedelta(hours=3))) == date(2026, 3, 5)  # Moscow: already the 5th


def test_days_to_run_catch_up_a_bounded_number_of_days() -> None:
    today = date(2026, 3, 10)
    assert bday.days_to_run(None, today) == [today]  # a program's first run starts today
    assert bday.days_to_run(today, today) == []  # done
    assert bday.days_to_run(date(2026, 3, 8), today) == [date(2026, 3, 9), today]
    missed = bday.days_to_run(date(2026, 1, 1), today)  # a long outage: only the last 7 days and today
    assert missed[0] == date(2026, 3, 3) and missed[-1] == today and len(missed) == bday.CATCH_UP_DAYS + 1


def test_birthday_settings_are_typed_with_defaults() -> None:
    assert ProgramSettings.from_stored({}).birthday_gift is None
    assert ProgramSettings.from_stored({}).birthday_min_age_days == 30
    settings = ProgramSettings.from_stored({"birthday_gift": {
        "points": 500, "funded_by": "ptn_bank", "offer": {"partner_id": "ptn_cafe", "offer_id": "off_1",
                                                          "fallback_points": 50}},
        "birthday_min_age_days": 7})
    assert settings.birthday_gift == BirthdayGift(points=500, funded_by="ptn_bank", offer_partner_id="ptn_cafe",
                                                  offer_id="off_1", fallback_points=50)
    assert settings.birthday_min_age_days == 7
    # Nothing stored can break a read: unusable values are "no gift" / the default.
    assert ProgramSettings.from_stored({"birthday_gift": {"points": -3}}).birthday_gift is None
    assert ProgramSettings.from_stored({"birthday_gift": "yes", "birthday_min_age_days": 9999}) == ProgramSettings()
