"""The clocks, and UTC times as text: the one place that reads the time.

The service reads "now" only through the ``Clock`` port (``services.ports.Clock``: ``deps.clock.now()``, or
``ports.current().clock.now()`` where no ``deps`` is passed); pure domain functions take ``now`` as an
argument from such a caller. The port is one of the two clocks here: :class:`SystemClock` in production,
:class:`ManualClock` where time is moved by hand (service tests through ``ports.fakes(now)``, the functional
tests through ``tests.support.CLOCK``, the demo-history and bench tools). Nothing else in ``chalicelib``
reads the wall clock; ``tests/unit/test_one_clock.py`` fails when something does. (``time.monotonic`` and
``time.perf_counter`` measure durations and are allowed anywhere: they tell no date.)
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


class SystemClock:
    """Production: the wall clock, in UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class ManualClock:
    """A clock moved by hand: it stands at the time it was given (:meth:`set`, :meth:`advance`); given
    ``None`` it follows the wall clock (the functional tests' default, as in production)."""

    def __init__(self, at: datetime | None = None) -> None:
        self._at = at

    def now(self) -> datetime:
        return self._at if self._at is not None else datetime.now(UTC)

    @property
    def stopped(self) -> bool:
        """True once set to a time (not following the wall clock)."""
        return self._at is not None

    def set(self, at: datetime | None) -> None:
        """Stand at ``at`` (aware UTC); ``None`` follows the wall clock again."""
        self._at = at

    def advance(self, **delta: float) -> None:
        """Move on by ``timedelta(**delta)`` from now (from the wall clock's now if not stopped)."""
        self._at = self.now() + timedelta(**delta)


def iso(at: datetime) -> str:
    """ISO-8601 UTC with a ``Z`` suffix and microseconds, which sorts lexicographically."""
    # isoformat, not strftime("%Y"): strftime does not zero-pad years below 1000, and
    # "1-01-01T…" neither sorts nor parses back.
    return at.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def parse_iso(text: str) -> datetime:
    """Inverse of :func:`iso`; also reads the unpadded years (``1-01-01T…``) older versions wrote."""
    text = text.strip().replace("Z", "+00:00")
    year, dash, rest = text.partition("-")
    if dash and year.isdigit() and len(year) < 4:
        text = year.zfill(4) + "-" + rest
    return datetime.fromisoformat(text).astimezone(UTC)
