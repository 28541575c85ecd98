"""Typed program settings (domain.settings): parsed once, defaults and limits in one place, never a failing read."""

from __future__ import annotations

from typing import Any

import pytest

from chalicelib.domain.settings import (
    DEFAULT_DAILY_CAP,
    DEFAULT_MAX_DEPTH,
    DEFAULT_WINDOW_DAYS,
    MAX_DEPTH_RANGE,
    PROGRAM_SETTINGS_SCHEMA,
    NotificationSettings,
    ProgramSettings,
)
from chalicelib.domain.validation import validate


def test_defaults_are_written_once() -> None:
    typed = ProgramSettings.from_stored(None)
    assert (typed.attribution_window_days, typed.max_depth) == (DEFAULT_WINDOW_DAYS, DEFAULT_MAX_DEPTH)
    assert typed.notifications == NotificationSettings() and typed.notifications.daily_cap == DEFAULT_DAILY_CAP


def test_one_max_depth_range_for_the_api_and_the_rules_document() -> None:
    from chalicelib.domain.rewards.schema import RULES_SCHEMA

    api = PROGRAM_SETTINGS_SCHEMA["properties"]["max_depth"]
    rules = RULES_SCHEMA["properties"]["max_depth"]
    assert (api["minimum"], api["maximum"]) == (rules["minimum"], rules["maximum"]) == MAX_DEPTH_RANGE


def test_notification_settings_as_the_api_accepts_them() -> None:
    raw = {"time_zone": "Europe/Moscow", "quiet_hours": {"start": "22:00", "end": "08:00"}, "daily_cap": 5,
           "sms": {"enabled": True, "monthly_budget": 0}, "sleeping_reminder_days": 30}
    validate(PROGRAM_SETTINGS_SCHEMA, {"notifications": raw})
    assert ProgramSettings.from_stored({"notifications": raw}).notifications == NotificationSettings(
        time_zone="Europe/Moscow", quiet_start="22:00", quiet_end="08:00", daily_cap=5, sms_enabled=True,
        sms_monthly_budget=0, sleeping_reminder_days=30)


@pytest.mark.parametrize("junk", [
    "not a map", {"daily_cap": "many"}, {"daily_cap": 0}, {"daily_cap": 10**9}, {"quiet_hours": {"start": "25:00"}},
    {"quiet_hours": {"start": "22:00"}}, {"sms": {"enabled": "yes", "monthly_budget": -5}},
    {"sleeping_reminder_days": "soon"}, {"sleeping_reminder_days": 2}, {"time_zone": 7},
])
def test_a_stored_value_outside_its_limits_is_the_default_never_a_failing_read(junk: Any) -> None:
    typed = ProgramSettings.from_stored({"notifications": junk}).notifications
    assert 1 <= typed.daily_cap <= 100 and typed.quiet_start is None and typed.quiet_end is None
    assert typed.sms_enabled is False and typed.sms_monthly_budget in (None, 0)
    assert typed.sleeping_reminder_days is None and typed.time_zone is None
