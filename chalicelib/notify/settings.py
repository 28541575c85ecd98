"""A program's notification settings (``settings.notifications`` on the program) as clock values.

``{"time_zone": "Europe/Moscow", "quiet_hours": {"start": "22:00", "end": "08:00"},
"daily_cap": 5, "sms": {"enabled": false, "monthly_budget": 0}, "sleeping_reminder_days": null}``
is parsed, with its defaults and limits, once at the store boundary
(``ProgramItem.program_settings.notifications``, ``domain.settings.NotificationSettings``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta, tzinfo

from chalicelib.domain.settings import NotificationSettings
from chalicelib.store.tenancy import ProgramItem


def _zone(name: str | None) -> tzinfo:
    from datetime import UTC

    if not name:
        return UTC
    try:
        from zoneinfo import ZoneInfo

        return ZoneInfo(name)
    except Exception:  # unknown zone or no tz database: UTC rather than failing deliveries
        return UTC


def _clock(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


@dataclass(frozen=True)
class NotifySettings:
    zone: tzinfo
    quiet_start: time | None
    quiet_end: time | None
    daily_cap: int
    sms_enabled: bool
    sms_monthly_budget: int | None
    sleeping_reminder_days: int | None
    local_preview: bool

    def local_day(self, now: datetime) -> str:
        return now.astimezone(self.zone).strftime("%Y-%m-%d")

    def hold_until(self, now: datetime, sent_today: int) -> datetime | None:
        """When a message due ``now`` may go out: ``None`` = now; else the UTC time it is held until."""
        local = now.astimezone(self.zone)
        if self.quiet_start is not None and self.quiet_end is not None and self.quiet_start != self.quiet_end:
            t = local.time()
            start, end = self.quiet_start, self.quiet_end
            quiet = (start <= t < end) if start < end else (t >= start or t < end)
            if quiet:
                opens = local.replace(hour=end.hour, minute=end.minute, second=0, microsecond=0)
                if opens <= local:
                    opens += timedelta(days=1)
                return opens.astimezone(now.tzinfo)
        if sent_today >= self.daily_cap:
            tomorrow = (local + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
            if self.quiet_end is not None and self.quiet_start is not None and self.quiet_start > self.quiet_end:
                tomorrow = tomorrow.replace(hour=self.quiet_end.hour, minute=self.quiet_end.minute)
            return tomorrow.astimezone(now.tzinfo)
        return None


def of(program: ProgramItem) -> NotifySettings:
    """The program's notification settings (built once per loaded program item and settings version: a delivery
    asks for them several times)."""
    from chalicelib.config import get_settings

    typed = program.program_settings.notifications
    local = get_settings().stage == "local"
    cached = program.__dict__.get("_notify_settings")
    if cached is not None and cached[0] is typed and cached[1] == local:
        return cached[2]  # type: ignore[no-any-return]
    value = _build(typed, local)
    program.__dict__["_notify_settings"] = (typed, local, value)
    return value


def _build(typed: NotificationSettings, local: bool) -> NotifySettings:
    return NotifySettings(
        zone=_zone(typed.time_zone),
        quiet_start=_clock(typed.quiet_start) if typed.quiet_start else None,
        quiet_end=_clock(typed.quiet_end) if typed.quiet_end else None,
        daily_cap=typed.daily_cap,
        sms_enabled=typed.sms_enabled,
        sms_monthly_budget=typed.sms_monthly_budget,
        sleeping_reminder_days=typed.sleeping_reminder_days,
        local_preview=local,
    )


def offer_text(program: ProgramItem, locale: str) -> str:
    """The program's referral offer for the footer ("Invite a friend: ..."), in ``locale`` if given."""
    texts = program.program_settings.offer.get("partner_reward") or {}
    if not isinstance(texts, dict) or not texts:
        return ""
    return str(texts.get(locale) or texts.get(program.default_locale) or next(iter(texts.values()), ""))
