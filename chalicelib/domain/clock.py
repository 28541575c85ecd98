"""UTC time in one place, so tests can move it (holding periods, windows, rotation)."""

from __future__ import annotations

from datetime import UTC, datetime

_frozen: datetime | None = None


def utcnow() -> datetime:
    return _frozen if _frozen is not None else datetime.now(UTC)


def freeze(at: datetime | None) -> None:
    """Pin the clock (``None`` releases it). Tests only."""
    global _frozen
    _frozen = at


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
