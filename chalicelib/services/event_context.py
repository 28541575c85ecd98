"""What every stage of the event pipeline sees (see ``services.pipeline``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from chalicelib.domain import attribution
from chalicelib.domain.events import CanonicalEvent
from chalicelib.domain.settings import ProgramSettings
from chalicelib.store.db import Entity
from chalicelib.store.members import IdentityRef, MemberItem
from chalicelib.store.tenancy import ProgramItem

if TYPE_CHECKING:
    from chalicelib.services.stages import StageOutcome

Key = tuple[str, str]
#: Events that may link a friend to a referrer.
ATTRIBUTING_EVENTS = frozenset({"member.signup", "lead.created", "deal.won", "order.paid"})
#: Events that make the customer a member when unknown (orders only with auto-enrolment on).
ENROLLING_EVENTS = frozenset({"member.signup", "lead.created", "deal.won"})
PURCHASE_EVENTS = attribution.FINALISING_EVENTS


@dataclass(frozen=True)
class EventContext:
    program: ProgramItem
    partner_id: str
    event: CanonicalEvent
    business_key: str
    event_key: Key
    refs: tuple[IdentityRef, ...]
    delivery_id: str | None
    now: datetime

    @property
    def program_id(self) -> str:
        return self.program.program_id

    @property
    def settings(self) -> ProgramSettings:
        return self.program.program_settings


@dataclass
class StageView:
    """What the registered stages see after membership and attribution were decided."""

    items: dict[Key, Entity]
    subject: MemberItem | None
    #: The subject's ancestry after this event's attribution (nearest first).
    ancestors: list[str]
    attributed_at: datetime | None
    #: The subject's paid orders before this event.
    orders_before: int
    #: Whether this event is the subject's first purchase as a referred member.
    converts_referral: bool
    attribution: dict[str, Any] = field(default_factory=dict)
    #: What the stages that ran before returned, by stage name.
    outcomes: dict[str, StageOutcome] = field(default_factory=dict)
