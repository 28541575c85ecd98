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
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
