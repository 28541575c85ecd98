"""What every stage of the event pipeline sees (see ``services.pipeline``).

Values only: the pipeline reads the items and builds the context, the stages compose the transaction. This
module reads and writes nothing, so it names the stored record types for type hints only and is on the ports
(``tests/unit/test_ports_seam.py``; its service test: ``tests/service/test_event_context.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from chalicelib.domain.events import CanonicalEvent

if TYPE_CHECKING:
    from chalicelib.domain.settings import ProgramSettings
    from chalicelib.services.stages import StageOutcome
    from chalicelib.store.db import Entity
    from chalicelib.store.members import IdentityRef, MemberItem
    from chalicelib.store.signals import SignalRef
    from chalicelib.store.tenancy import ProgramItem

Key = tuple[str, str]
#: Events that may link a friend to a referrer.
ATTRIBUTING_EVENTS = frozenset({"member.signup", "lead.created", "deal.won", "order.paid"})
#: Events that make the customer a member when unknown (orders only with auto-enrolment on).
ENROLLING_EVENTS = frozenset({"member.signup", "lead.created", "deal.won"})


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
    #: The event's fraud signals as salted hashes (``domain.signals``), strongest kind first.
    signals: tuple[SignalRef, ...] = ()
    #: Deployment-keyed hashes of the device/payment signals, when the program uses the shared deny list.
    deny: tuple[SignalRef, ...] = ()

    @property
    def program_id(self) -> str:
        return self.program.program_id

    @property
    def settings(self) -> ProgramSettings:
        return self.program.program_settings

    @property
    def is_purchase(self) -> bool:
        """Whether this event is one of the customer's orders (counts, ``trigger.order``, recurring caps).

        ``order.paid`` always is. A won CRM deal is not a shop order unless the program says so
        (``settings.deals_count_as_orders``): otherwise a deal would make the friend's first real
        order their second, and use up a recurring rule's ``orders`` cap.
        """
        if self.event.type == "order.paid":
            return True
        return self.event.type == "deal.won" and self.settings.deals_count_as_orders


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
