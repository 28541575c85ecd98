"""Value types of the rewards engine: the parsed rules document and the engine's input/output.

Everything is a frozen dataclass of plain values (str/int/datetime/tuples) so results can be
compared in tests, logged, and turned into DynamoDB items without surprises. Points are always
``int``; money is always ``int`` minor units (kopecks, cents). There are no floats anywhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

from chalicelib.domain.settings import DEFAULT_MAX_DEPTH

# --------------------------------------------------------------------------- rules document

CUSTOM_PREFIX = "custom."
RecipientType = Literal["self", "friend", "referrer"]
OrderSelector = Literal["every", "first", "nth"]
AmountBase = Literal["total", "subtotal", "subtotal_minus_discount", "total_minus_shipping"]


@dataclass(frozen=True)
class Trigger:
    event: str  # "order.paid", "member.signup", ..., or "custom.<name>"
    order: OrderSelector = "every"  # only meaningful for order.paid
    n: int | None = None  # the n-th order (1-based) when order == "nth"
    partners: tuple[str, ...] = ()  # empty = events at any partner
    #: Member tiers (``settings.tiers``) the recipient must be in; empty = any (``trigger.tiers``).
    tiers: tuple[str, ...] = ()

    def order_number_matches(self, orders_before: int) -> bool:
        """``orders_before`` paid orders came before this one, so this is order #orders_before+1."""
        if self.order == "every":
            return True
        if self.order == "first":
            return orders_before == 0
        return self.n is not None and orders_before + 1 == self.n


@dataclass(frozen=True)
class Recipient:
    type: RecipientType
    level: int = 0  # 0 for self/friend, 1..max_depth for referrer


@dataclass(frozen=True)
class Tier:
    min_converted: int
    points: int | None = None
    rate_bp: int | None = None


@dataclass(frozen=True)
class OfferRef:
    """A partner offer granted as the reward (a voucher from its pool, or its static code)."""

    partner_id: str
    offer_id: str
    #: Points given instead when no code can be issued (pool empty, offer disabled); None = nothing.
    fallback_points: int | None = None
    #: At most this many vouchers of this rule per recipient and calendar month (UTC); None = no limit
    #: ("Gold members get the partner's catalogue offer once a month").
    per_month: int | None = None


@dataclass(frozen=True)
class Amount:
    """Exactly one of ``points`` / ``rate_bp`` / ``tiers`` / ``offer`` is set (enforced by the schema)."""

    points: int | None = None
    rate_bp: int | None = None  # basis points: 500 = 5.00 %
    tiers: tuple[Tier, ...] = ()
    base: AmountBase = "total"
    max_points: int | None = None
    min_order_amount: int | None = None  # minor units, compared with ``base``
    offer: OfferRef | None = None

    @property
    def needs_order_amount(self) -> bool:
        return (
            self.rate_bp is not None
            or any(t.rate_bp is not None for t in self.tiers)
            or self.min_order_amount is not None
        )


@dataclass(frozen=True)
class Recurring:
    months: int | None = None  # window [attributed_at, attributed_at + months)
    orders: int | None = None  # only the subject's first N paid orders
    max_points_per_friend: int | None = None  # lifetime total of this rule per subject


@dataclass(frozen=True)
class PartnerOverride:
    enabled: bool = True
    amount: Amount | None = None  # already merged over the rule's base amount
    funded_by: str | None = None
    hold_days: int | None = None


@dataclass(frozen=True)
class Rule:
    id: str
    trigger: Trigger
    recipient: Recipient
    amount: Amount
    name: str | None = None
    enabled: bool = True
    member_monthly_cap_points: int | None = None  # ``caps.member_monthly_points``
    hold_days: int | None = None  # None = program default
    recurring: Recurring | None = None
    funded_by: str | None = None  # None = partner where the event happened
    partners: Mapping[str, PartnerOverride] = field(default_factory=dict)
    #: Tier id -> basis points the rule's points are multiplied by for a recipient in that tier
    #: (15000 = x1.5; floored). Tiers not named: x1.
    tier_multipliers: Mapping[str, int] = field(default_factory=dict)

    @property
    def recurring_cap(self) -> int | None:
        """``recurring.max_points_per_friend``, or None: only a capped recurring rule keeps a per-friend counter.

        Without the cap nothing reads the counter, so it is neither read nor written (2 write units
        plus a read key per event). A cap added by a later rules version counts from then on.
        """
        return self.recurring.max_points_per_friend if self.recurring is not None else None


@dataclass(frozen=True)
class RulesDoc:
    rules: tuple[Rule, ...]
    version: int = 0  # 0 = not stored yet; the server assigns 1, 2, ...
    max_depth: int = DEFAULT_MAX_DEPTH
    hold_days: int = 14
    point_value_minor: int = 100
    budget_points: int | None = None
    member_monthly_cap_points: int | None = None
    currency: str | None = None

    @property
    def depth_needed(self) -> int:
        """Deepest referrer level any enabled rule pays: how many ancestors the reader must load."""
        levels = [r.recipient.level for r in self.rules if r.enabled and r.recipient.type == "referrer"]
        return max(levels, default=0)

    @property
    def uses_tiers(self) -> bool:
        """Whether any enabled rule looks at the recipient's member tier (``trigger.tiers``, multipliers)."""
        return any(r.enabled and (r.trigger.tiers or r.tier_multipliers) for r in self.rules)

    @property
    def counts_months(self) -> bool:
        """Whether members' monthly points are counted: only when the program or a rule caps them.

        Without a monthly cap nothing reads the counter, so it is neither read nor written (2 write
        units per member paid, per event). A cap added by a later rules version counts from then on.
        """
        return self.member_monthly_cap_points is not None or any(
            r.member_monthly_cap_points is not None for r in self.rules)


# --------------------------------------------------------------------------- engine input


@dataclass(frozen=True)
class EngineEvent:
    business_key: str  # idempotency key of the business event (e.g. "order:shop1:A-1001")
    type: str  # "order.paid", "member.signup", ..., "custom.review.posted"
    occurred_at: datetime  # timezone-aware; the engine never reads a clock
    partner_id: str | None = None  # where the event happened (coalition partner / the shop)
    total: int | None = None  # minor units; None for events without an amount
    subtotal: int | None = None  # goods net of shipping; None = total - shipping
    shipping: int | None = None
    discount: int | None = None
    currency: str | None = None


@dataclass(frozen=True)
class Subject:
    """The member whose event it is (the buyer; the "friend" for referral rules)."""

    member_id: str
    referrer_id: str | None = None  # direct referrer, None if the member was not referred
    attributed_at: datetime | None = None  # when the referral attribution happened
    orders_before: int = 0  # this member's paid orders before this event
    month_earned_points: int = 0  # points this member earned in the event's calendar month
    recurring_paid: Mapping[str, int] = field(default_factory=dict)  # rule_id -> points paid so far
    tier: str | None = None  # member tier before this event (None: the program has no tiers)


@dataclass(frozen=True)
class Ancestor:
    member_id: str
    level: int  # 1 = direct referrer of the subject
    converted_referrals: int = 0  # referrals of this ancestor that converted before this event
    month_earned_points: int = 0  # points earned in the event's calendar month
    tier: str | None = None  # member tier before this event (None: the program has no tiers)


@dataclass(frozen=True)
class ProgramCounters:
    budget_used_points: int = 0


# --------------------------------------------------------------------------- engine output

PostingStatus = Literal["pending", "available"]


@dataclass(frozen=True)
class Posting:
    member_id: str
    points: int  # > 0, after every cap
    rule_id: str
    rule_version: int
    level: int  # 0 = self/friend, 1..N = upline level
    recipient: RecipientType
    funding_partner_id: str | None
    reason: str  # plain-language English sentence for statements and support
    reason_code: str  # "self_reward" | "friend_reward" | "referral_reward" | "recurring_reward"
    available_at: datetime  # occurred_at + hold days
    status: PostingStatus  # "available" iff hold is 0 days
    business_key: str
    partner_id: str | None  # where the event happened
    requested_points: int  # before caps; > points when a cap trimmed it

    @property
    def key(self) -> str:
        """Deterministic idempotency key: one event pays a (rule, level, member) at most once."""
        return f"{self.business_key}#{self.rule_id}#{self.level}#{self.member_id}"


SkipCode = Literal[
    "trigger_not_matched",
    "disabled_for_partner",
    "no_referrer",
    "ancestry_cycle",
    "no_amount",
    "currency_mismatch",
    "below_min_order",
    "recurring_not_attributed",
    "recurring_expired",
    "zero_points",
    "cap_reward",
    "cap_recurring",
    "cap_monthly",
    "cap_budget",
    "pool_empty",
    "offer_limit",
    "tier_not_matched",
]


@dataclass(frozen=True)
class Skip:
    """A rule that matched the event type but paid nothing, or paid less (a trim)."""

    rule_id: str
    member_id: str | None  # None when no recipient could be determined
    reason_code: SkipCode
    detail: str
    requested_points: int = 0  # points before this cap (0 when not computed)
    granted_points: int = 0  # points still posted after this cap (> 0 means "trimmed")

    @property
    def trimmed(self) -> bool:
        return self.granted_points > 0


CounterKind = Literal["member_month", "budget", "recurring"]


@dataclass(frozen=True)
class CounterDelta:
    """One counter increment for the writer's transaction (one per counter item).

    ``max_before`` (when not None) is the largest value the stored counter may have *before*
    the increment for every posting behind this delta to stay within its cap. The engine only
    produces deltas where the value it was given satisfies this, so the writer adds
    ``ConditionExpression: attribute_not_exists(v) OR v <= :max_before`` and a concurrent writer
    can never push a counter over a cap (the transaction fails; re-read and re-evaluate).
    ``None`` = no cap applies; the increment is unconditional.
    """

    kind: CounterKind
    points: int  # > 0, amount to ADD
    member_id: str | None = None  # member_month: the recipient; recurring: the subject (friend)
    month: str | None = None  # member_month only: "YYYY-MM" (UTC)
    rule_id: str | None = None  # recurring only
    max_before: int | None = None


@dataclass(frozen=True)
class VoucherGrant:
    """An offer to issue to a member (the writer takes one code from the offer's pool for it)."""

    member_id: str
    partner_id: str  # whose offer it is
    offer_id: str
    rule_id: str
    rule_version: int
    level: int
    recipient: RecipientType
    business_key: str
    reason: str
    event_partner_id: str | None

    @property
    def key(self) -> str:
        """One event grants a (rule, level, member) at most once."""
        return f"{self.business_key}#{self.rule_id}#{self.level}#{self.member_id}"


@dataclass(frozen=True)
class Evaluation:
    postings: tuple[Posting, ...]
    skipped: tuple[Skip, ...]
    counter_deltas: tuple[CounterDelta, ...]
    month: str  # "YYYY-MM" of the event (UTC): the month counters read and written
    vouchers: tuple[VoucherGrant, ...] = ()

    @property
    def total_points(self) -> int:
        return sum(p.points for p in self.postings)


# --------------------------------------------------------------------------- refunds


class PostedEntry(Protocol):
    """What ``reverse`` needs from a stored posting (``Posting`` satisfies it)."""

    @property
    def member_id(self) -> str: ...
    @property
    def points(self) -> int: ...
    @property
    def rule_id(self) -> str: ...
    @property
    def rule_version(self) -> int: ...
    @property
    def level(self) -> int: ...
    @property
    def funding_partner_id(self) -> str | None: ...


PostedEntryLike = PostedEntry | Mapping[str, Any]


@dataclass(frozen=True)
class Reversal:
    member_id: str
    points: int  # > 0: points to take back now
    rule_id: str
    rule_version: int
    level: int
    funding_partner_id: str | None
    original_points: int
    reversed_total: int  # points reversed for this posting including this reversal
    reason: str
    reason_code: str = "refund_clawback"

    @property
    def key(self) -> tuple[str, int, str]:
        """The key ``reverse`` uses for ``already_reversed``: (rule_id, level, member_id)."""
        return (self.rule_id, self.level, self.member_id)
