"""Run locally what Lambda event sources run in AWS.

In AWS, ``@app.schedule(...)`` handlers are invoked by EventBridge rules and
``@app.on_sqs_message``/``on_dynamodb_record``... by event source mappings. The
local runner (``infra/local_run.py``) has neither, so :class:`EventSourceRunner`
reads the same registrations Chalice deploys from (``app.event_sources``) and
drives them in-process:

* schedules (``rate(...)``, ``cron(...)``, ``Rate``/``Cron`` objects) fire on a
  background thread, through the handler Chalice wraps for Lambda
  (``app.handler_map[name]``), with an EventBridge-shaped event, so middleware
  and the ``CloudWatchEvent`` object behave as deployed. ``speedup`` compresses
  time (``SARAFAN_LOCAL_SCHEDULE_SPEEDUP=60`` runs ``rate(1 hour)`` every minute);
* every other event source type goes through :data:`CONSUMERS`: register a
  factory for its config class (queue/stream pollers) with
  :func:`register_consumer`; types without one are reported as not emulated.
"""

from __future__ import annotations

import calendar
import heapq
import re
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

ACCOUNT_ID = "123456789012"
_RATE = re.compile(r"^rate\(\s*(\d+)\s+(minute|minutes|hour|hours|day|days)\s*\)$", re.IGNORECASE)
_CRON = re.compile(r"^cron\((.+)\)$", re.IGNORECASE)
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}
_MONTHS = {m.upper(): i for i, m in enumerate(calendar.month_abbr) if m}
_DAYS = {"SUN": 1, "MON": 2, "TUE": 3, "WED": 4, "THU": 5, "FRI": 6, "SAT": 7}


# --- schedule expressions -------------------------------------------------------


def expression_text(expression: Any) -> str:
    """``'rate(5 minutes)'`` from a string or a Chalice ``Rate``/``Cron`` object."""
    return expression if isinstance(expression, str) else str(expression.to_string())


class Schedule(Protocol):
    def next_after(self, moment: datetime) -> datetime: ...


@dataclass(frozen=True)
class RateSchedule:
    seconds: int

    def next_after(self, moment: datetime) -> datetime:
        return moment + timedelta(seconds=self.seconds)


def _cron_values(spec: str, low: int, high: int, names: dict[str, int] | None = None) -> frozenset[int] | None:
    """Values a cron field allows; ``None`` means any (``*`` or ``?``)."""
    spec = spec.strip().upper()
    if spec in {"*", "?"}:
        return None
    values: set[int] = set()

    def number(text: str) -> int:
        if names and text in names:
            return names[text]
        if not text.isdigit():
            raise ValueError(f"unsupported cron value {text!r}")
        return int(text)

    for part in spec.split(","):
        step = 1
        if "/" in part:
            part, step_text = part.split("/", 1)
            step = int(step_text)
        if part in {"*", ""}:
            start, end = low, high
        elif "-" in part:
            first, last = part.split("-", 1)
            start, end = number(first), number(last)
        else:
            start = number(part)
            end = high if step > 1 else start
        if not low <= start <= high or not low <= end <= high or step < 1:
            raise ValueError(f"cron field {spec!r} is outside {low}-{high}")
        values.update(range(start, end + 1, step))
    return frozenset(values)


@dataclass(frozen=True)
class CronSchedule:
    """AWS six-field cron: minutes hours day-of-month month day-of-week year (UTC).

    Supports ``*``, ``?``, lists, ranges, steps, month/day names and ``L`` as the
    day of month; ``W`` and ``#`` are rejected (the runner skips such a schedule).
    """

    minutes: frozenset[int] | None
    hours: frozenset[int] | None
    days: frozenset[int] | None
    last_day: bool
    months: frozenset[int] | None
    weekdays: frozenset[int] | None  # AWS numbering: 1 = Sunday ... 7 = Saturday
    years: frozenset[int] | None

    @classmethod
    def parse(cls, body: str) -> CronSchedule:
        fields = body.split()
        if len(fields) != 6:
            raise ValueError(f"AWS cron needs 6 fields, got {len(fields)}: {body!r}")
        minute, hour, dom, month, dow, year = fields
        if any(c in f.upper() for f in (dom, dow) for c in "W#") or "L" in dow.upper():
            raise ValueError(f"cron {body!r}: W, # and L (day of week) are not emulated locally")
        last_day = dom.strip().upper() == "L"
        return cls(
            minutes=_cron_values(minute, 0, 59),
            hours=_cron_values(hour, 0, 23),
            days=None if last_day else _cron_values(dom, 1, 31),
            last_day=last_day,
            months=_cron_values(month, 1, 12, _MONTHS),
            weekdays=_cron_values(dow, 1, 7, _DAYS),
            years=_cron_values(year, 1970, 2199),
        )

    def _day_ok(self, moment: datetime) -> bool:
        if self.last_day and moment.day != calendar.monthrange(moment.year, moment.month)[1]:
            return False
        if self.days is not None and moment.day not in self.days:
            return False
        return self.weekdays is None or (moment.weekday() + 1) % 7 + 1 in self.weekdays

    def next_after(self, moment: datetime) -> datetime:
        t = moment.astimezone(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
        for _ in range(200_000):
            if self.years is not None and t.year not in self.years:
                if t.year > max(self.years):
                    break
                t = datetime(t.year + 1, 1, 1, tzinfo=UTC)
            elif self.months is not None and t.month not in self.months:
                t = (t.replace(day=1, hour=0, minute=0) + timedelta(days=32)).replace(day=1)
            elif not self._day_ok(t):
                t = t.replace(hour=0, minute=0) + timedelta(days=1)
            elif self.hours is not None and t.hour not in self.hours:
                t = t.replace(minute=0) + timedelta(hours=1)
            elif self.minutes is not None and t.minute not in self.minutes:
                t += timedelta(minutes=1)
            else:
                return t
        raise ValueError("cron expression never fires")


def parse_schedule(expression: Any) -> Schedule:
    text = expression_text(expression).strip()
    rate = _RATE.match(text)
    if rate:
        value, unit = int(rate.group(1)), rate.group(2).lower().rstrip("s")
        if value < 1:
            raise ValueError(f"rate must be positive: {text!r}")
        return RateSchedule(value * _UNIT_SECONDS[unit])
    cron = _CRON.match(text)
    if cron:
        return CronSchedule.parse(cron.group(1))
    raise ValueError(f"not a schedule expression: {text!r}")


# --- Lambda-shaped invocation -------------------------------------------------------


def lambda_context(function_name: str, timeout_seconds: int = 60, memory_mb: int = 512) -> Any:
    from chalice.local import LambdaContext

    return LambdaContext(function_name, memory_mb, max_runtime_ms=timeout_seconds * 1000)


def scheduled_event(rule_name: str, at: datetime, region: str) -> dict[str, Any]:
    """The event EventBridge sends a scheduled Lambda."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT_ID,
        "time": at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [f"arn:aws:events:{region}:{ACCOUNT_ID}:rule/{rule_name}"],
        "detail": {},
    }


# --- the runner -------------------------------------------------------------------------


class Consumer(Protocol):
    """A local stand-in for an event source mapping (queue/stream poller)."""

    def start(self) -> None: ...

    def stop(self, timeout: float = 5.0) -> None:
        """Stop polling; wait at most ``timeout`` seconds for the work in progress."""


#: Event source config class name (``SQSEventConfig``, ``DynamoDBEventConfig``...) →
#: factory ``(runner, config) -> Consumer``. Empty until a feature needs one locally.
CONSUMERS: dict[str, Callable[[EventSourceRunner, Any], Consumer]] = {}


def register_consumer(config_class_name: str, factory: Callable[[EventSourceRunner, Any], Consumer]) -> None:
    CONSUMERS[config_class_name] = factory


@dataclass
class ScheduledJob:
    name: str
    expression: str
    schedule: Schedule
    handler: Callable[[dict[str, Any], Any], Any]
    runs: int = 0
    failures: int = 0
    last_error: str | None = None


@dataclass
class EventSourceRunner:
    """Drives an app's event sources on a background thread until :meth:`stop`."""

    app: Any
    region: str = "eu-central-1"
    #: > 1 compresses time: ``rate(10 minutes)`` at speedup 600 fires every second.
    speedup: float = 1.0
    log: Callable[[str], None] = print
    jobs: list[ScheduledJob] = field(default_factory=list)
    consumers: list[Consumer] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __post_init__(self) -> None:
        if self.speedup <= 0:
            raise ValueError("speedup must be positive")
        for source in getattr(self.app, "event_sources", []):
            kind = type(source).__name__
            if hasattr(source, "schedule_expression"):
                self._add_schedule(source)
            elif kind in CONSUMERS:
                self.consumers.append(CONSUMERS[kind](self, source))
            else:
                self.skipped.append(f"{source.name} ({kind}: not emulated locally)")

    def _add_schedule(self, source: Any) -> None:
        text = expression_text(source.schedule_expression)
        try:
            schedule = parse_schedule(text)
        except ValueError as exc:
            self.skipped.append(f"{source.name} ({text}: {exc})")
            return
        self.jobs.append(ScheduledJob(source.name, text, schedule, self.app.handler_map[source.name]))

    def describe(self) -> list[str]:
        lines = []
        for job in self.jobs:
            if isinstance(job.schedule, RateSchedule):
                lines.append(f"{job.name}: {job.expression} → every {job.schedule.seconds / self.speedup:g} s")
            else:
                lines.append(f"{job.name}: {job.expression} (UTC, speedup {self.speedup:g})")
        return lines + [f"skipped {s}" for s in self.skipped]

    def fire(self, name: str, at: datetime | None = None) -> Any:
        """Invoke one scheduled handler now, as EventBridge would (also handy from a REPL)."""
        job = next(j for j in self.jobs if j.name == name)
        return self._invoke(job, at or datetime.now(UTC))

    def _invoke(self, job: ScheduledJob, at: datetime) -> Any:
        job.runs += 1
        try:
            return job.handler(scheduled_event(job.name, at, self.region), lambda_context(job.name))
        except Exception as exc:  # a failing invocation is logged, like Lambda's, and the schedule goes on
            job.failures += 1
            job.last_error = f"{type(exc).__name__}: {exc}"
            self.log(f"schedule {job.name} failed: {job.last_error}\n{traceback.format_exc()}")
            return None

    def start(self) -> None:
        for consumer in self.consumers:
            consumer.start()
        if self.jobs:
            self._thread = threading.Thread(target=self._loop, name="sarafan-schedules", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        deadline = time.monotonic() + timeout
        for consumer in self.consumers:
            consumer.stop(max(0.1, deadline - time.monotonic()))
        if self._thread is not None:
            self._thread.join(max(0.1, deadline - time.monotonic()))

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def _loop(self) -> None:
        # Virtual time starts at the wall clock and runs ``speedup`` times faster.
        real_start, virtual_start = time.monotonic(), datetime.now(UTC)
        queue: list[tuple[datetime, int]] = []
        for index, job in enumerate(self.jobs):
            heapq.heappush(queue, (job.schedule.next_after(virtual_start), index))
        while queue and not self._stop.is_set():
            due, index = queue[0]
            real_due = real_start + (due - virtual_start).total_seconds() / self.speedup
            if self._stop.wait(max(0.0, real_due - time.monotonic())):
                return
            heapq.heappop(queue)
            job = self.jobs[index]
            self._invoke(job, due)
            # A run longer than the period skips the missed firings instead of catching up.
            now = virtual_start + timedelta(seconds=(time.monotonic() - real_start) * self.speedup)
            try:
                following = job.schedule.next_after(due)
                while following < now:
                    following = job.schedule.next_after(following)
            except ValueError:  # a cron with no future firing
                continue
            heapq.heappush(queue, (following, index))
