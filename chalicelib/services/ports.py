"""Ports: what the services need from the outside world, as typed interfaces.

Each port has a production implementation (PynamoDB/DynamoDB, the master key, the system clock)
and an in-memory fake beside it (``chalicelib/store/fakes.py``); one contract test suite runs
against both (``tests/contract/``), so the fakes cannot drift from the real thing. The set is
built once where the app is wired (``app.py`` → :func:`use`, default :func:`production`) and
reaches services as an argument (views pass ``req.ports``); a service test builds
``ports.fakes(now)`` and calls the service directly, without moto.

The notifier port (e-mail/SMS/push) lives with the notifications in ``chalicelib/notify/``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from chalicelib.domain.records import Cursor, Page, StaleMember

if TYPE_CHECKING:
    from chalicelib.store.events import EventItem
    from chalicelib.store.ledger import BalanceItem, LedgerEntryItem, OutboxItem
    from chalicelib.store.members import MemberItem
    from chalicelib.store.tenancy import PartnerItem, ProgramItem

__all__ = ["Cursor", "Page", "Ports", "StaleMember"]


class Clock(Protocol):
    """The one clock: signatures, secrets, holding, windows and jobs all ask it."""

    def now(self) -> datetime: ...


class RateLimiter(Protocol):
    def take(self, scope: str, window: str, limit: int, expires_at_epoch: int) -> bool:
        """Count one request in ``(scope, window)`` unless ``limit`` is reached; False when full."""
        ...


class Secrets(Protocol):
    def derive_key(self, purpose: str) -> bytes:
        """A 32-byte key for one purpose, derived from the master key."""
        ...

    def webhook_secret(self, program_id: str, partner_id: str, source: str, version: int) -> str: ...


class MemberStore(Protocol):
    def get(self, program_id: str, member_id: str) -> MemberItem | None: ...

    def coupon_owner(self, program_id: str, code: str) -> str | None: ...

    def coupons_of(self, member: MemberItem) -> list[str]: ...

    def add_coupon(self, member: MemberItem, code: str) -> bool:
        """Register ``code`` for ``member`` (unique per program); False if it already was theirs.

        Raises ``Conflict`` (``coupon_taken``, ``too_many_coupons``) when another member holds it or the
        member has the maximum, ``StaleMember`` when the member changed since it was read."""
        ...

    def remove_coupon(self, member: MemberItem, code: str) -> None:
        """Raises ``NotFound`` when the code is not the member's."""
        ...


class ProgramStore(Protocol):
    """Programs and partners: configuration, read through the in-process cache."""

    def get(self, program_id: str, *, fresh: bool = False) -> ProgramItem:
        """Raises ``NotFound`` for an unknown program; ``fresh`` skips the cache."""
        ...

    def partner(self, program_id: str, partner_id: str) -> PartnerItem:
        """Raises ``NotFound`` for a partner the program does not have."""
        ...


class LedgerStore(Protocol):
    def balance(self, program_id: str, member_id: str) -> BalanceItem | None: ...

    def account(self, program_id: str, member_id: str) -> tuple[MemberItem | None, BalanceItem | None]:
        """The member's profile and balance in one read (either may be missing)."""
        ...

    def entries(self, program_id: str, member_id: str, limit: int, cursor: Cursor | None) -> Page[LedgerEntryItem]:
        """One page of the member's ledger, newest first (one ``Query``, at most ``limit`` entries)."""
        ...


class EventStore(Protocol):
    def get(self, program_id: str, business_key: str) -> EventItem | None:
        """The stored record (and reply) of a processed business fact."""
        ...


class Outbox(Protocol):
    def pending(self, day: str, limit: int) -> Sequence[OutboxItem]:
        """Messages queued on ``day`` (UTC ``YYYY-MM-DD``) not yet delivered, oldest first."""
        ...

    def mark_sent(self, message: OutboxItem, at: datetime) -> bool:
        """Take the message off the pending list; False if someone else already did."""
        ...


@dataclass(frozen=True)
class Ports:
    clock: Clock
    rate_limiter: RateLimiter
    secrets: Secrets
    programs: ProgramStore
    members: MemberStore
    ledger: LedgerStore
    events: EventStore
    outbox: Outbox


_current: Ports | None = None
_factory: Callable[[], Ports] | None = None


def production() -> Ports:
    """DynamoDB, the master key and the system clock; nothing is connected until first use."""
    from chalicelib.services.secrets import MasterKeySecrets
    from chalicelib.store import dynamo_ports

    return Ports(
        clock=dynamo_ports.SystemClock(),
        rate_limiter=dynamo_ports.DynamoRateLimiter(),
        secrets=MasterKeySecrets(),
        programs=dynamo_ports.DynamoProgramStore(),
        members=dynamo_ports.DynamoMemberStore(),
        ledger=dynamo_ports.DynamoLedgerStore(),
        events=dynamo_ports.DynamoEventStore(),
        outbox=dynamo_ports.DynamoOutbox(),
    )


def fakes(now: datetime) -> Ports:
    """Every port in memory (``store.fakes``), the clock set to ``now``: for service tests."""
    from chalicelib.store import fakes as f

    table = f.FakeTable()
    return Ports(clock=f.ManualClock(now), rate_limiter=f.FakeRateLimiter(), secrets=f.FakeSecrets(),
                 programs=f.FakeProgramStore(table), members=f.FakeMemberStore(table),
                 ledger=f.FakeLedgerStore(table), events=f.FakeEventStore(), outbox=f.FakeOutbox())


def wire(factory: Callable[[], Ports]) -> None:
    """Where the app is wired (``app.py``): how to build the ports, once, on first use."""
    global _factory, _current
    _factory, _current = factory, None


def use(ports: Ports | None) -> None:
    """Install a built set (tests: ``use(fakes(now))``); ``None`` rebuilds from the wired factory on next use."""
    global _current
    _current = ports


def current() -> Ports:
    global _current
    if _current is None:
        _current = (_factory or production)()
    return _current
