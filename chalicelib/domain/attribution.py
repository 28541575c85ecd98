"""Who referred this friend? A pure decision over facts the caller has already loaded.

Candidate priority (highest first; the caller lists candidates, ``decide`` sorts them
stably by source so the rule holds whatever order they arrive in):

1. ``ref_code`` -- a referral code the shop passed with the event (landing-page
   cookie, ``?ref=`` URL parameter, order attribute). It is the most direct evidence:
   the friend followed this member's link. Its time is the click time, when known.
2. ``coupon`` -- a coupon code that maps to a member. Strong evidence (the friend
   typed the member's coupon at checkout) but coupons leak to coupon-aggregator
   sites, so an explicit link click wins.
3. ``invite_match`` -- the friend's e-mail/phone/customer id matches an invite a
   member sent. Weakest: it proves the member knew the friend, not that the
   invite caused the purchase; its time is when the invite was sent.

Each candidate is first checked on its own (reason codes in order of checking):
``unknown_code`` (the code maps to nobody), ``self_referral_same_member``,
``self_referral_email``, ``self_referral_phone``, ``self_referral_customer_id``
(the friend and referrer share an identifier), ``self_referral_device``,
``self_referral_payment``, ``self_referral_shipping`` (the event's device, payment
fingerprint or shipping address was seen with the referrer: ``Friend.signal_members``),
``self_referral_upline`` (the friend shares any of those with a member *above* the
referrer), ``loop_in_chain`` (the friend is in the referrer's ancestry: crediting would
create a cycle), ``loop_in_upline`` (the referrer's stored ancestry names the referrer or
repeats a member: a corrupt or forged chain), ``outside_window`` (the click/invite is
older than ``window_days`` before the event, or after it). See docs/fraud.md.

Then the policy, against the friend's existing attribution:

* no current referrer and no purchase yet: the first valid candidate is ``credited``;
* ``attribution_final``: after the friend's first purchase nothing changes any
  more (a late code must not move rewards already earned, and an existing customer
  who bought without a referrer cannot be "referred" afterwards);
* ``first_touch`` (default): an existing referrer is kept -> ``already_attributed``;
* ``last_touch``: a different valid referrer replaces the existing one, unless the
  friend already has referees -> ``has_referees`` (their descendants store the
  friend's ancestry, which would go stale);
* ``same_referrer``: the candidate is the current referrer; nothing to do;
* ``lower_priority``: valid but a higher-priority candidate won;
* ``event_not_attributable``: refunds/cancellations never create attributions.

Outcomes: ``credited`` (write the attribution), ``unchanged`` (nothing to write --
no candidate, or valid candidates lost to the existing attribution), ``rejected``
(candidates existed and every one was invalid; worth counting for fraud review).

Identifiers are compared as opaque strings: pass e-mail match keys, E.164 phones and
partner-scoped customer ids, or their ``identity_hash`` values -- but the same
representation for the friend and every candidate.

Ancestry is stored truncated to ``max_depth``, so a cycle longer than that cannot be
seen here; it cannot matter either, since rewards never look further than that.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final, Literal

from chalicelib.domain import settings as defaults
from chalicelib.domain.errors import ValidationFailed, field_error

Source = Literal["ref_code", "coupon", "invite_match"]
Outcome = Literal["credited", "rejected", "unchanged"]
Model = Literal["first_touch", "last_touch"]

SOURCE_PRIORITY: Final[dict[str, int]] = {"ref_code": 0, "coupon": 1, "invite_match": 2}

# The first purchase makes the attribution final (see module docstring).
FINALISING_EVENTS: Final = frozenset({"order.paid", "deal.won"})
# Money flowing back never creates a referral relationship.
NON_ATTRIBUTABLE_EVENTS: Final = frozenset({"order.refunded", "order.cancelled"})

# Clocks of the shop, the browser and us differ a little; a click "after" the order by
# less than this is still before it.
CLOCK_SKEW: Final = timedelta(minutes=5)

REASONS: Final[dict[str, str]] = {
    "credited": "The referrer was credited for this friend.",
    "self_referral_same_member": "The referrer and the friend are the same member.",
    "self_referral_email": "The referrer and the friend share an e-mail address.",
    "self_referral_phone": "The referrer and the friend share a phone number.",
    "self_referral_customer_id": "The referrer and the friend are the same customer of the shop.",
    "self_referral_device": "The friend's device was seen with the referrer.",
    "self_referral_payment": "The friend paid with a payment method seen with the referrer.",
    "self_referral_shipping": "The friend's shipping address was seen with the referrer.",
    "self_referral_upline": "The friend shares an identifier or signal with a member above the referrer.",
    "loop_in_chain": "The friend is already above the referrer in the referral chain.",
    "loop_in_upline": "The referrer's chain repeats a member, so it cannot be extended.",
    "outside_window": "The click or invite is outside the program's attribution window.",
    "already_attributed": "The friend already has a referrer and the program keeps the first one.",
    "attribution_final": "The friend has already made a purchase; the referrer can no longer change.",
    "has_referees": (
        "The friend has already referred others, so their referrer cannot be replaced "
        "without breaking their referees' chains."
    ),
    "same_referrer": "The friend is already attributed to this referrer.",
    "lower_priority": "Another candidate with a higher priority was credited.",
    "unknown_code": "The code does not belong to any member.",
    "no_candidate": "The event carries no referral code, coupon or matching invite.",
    "event_not_attributable": "Refunds and cancellations never create a referral.",
}


@dataclass(frozen=True)
class Identifiers:
    """A person's identifiers in one comparable representation (see module docstring)."""

    email_keys: frozenset[str] = frozenset()
    phones: frozenset[str] = frozenset()
    customer_ids: frozenset[str] = frozenset()

    @classmethod
    def of(
        cls,
        email_keys: Iterable[str] = (),
        phones: Iterable[str] = (),
        customer_ids: Iterable[str] = (),
    ) -> Identifiers:
        return cls(frozenset(email_keys), frozenset(phones), frozenset(customer_ids))


#: Signals that reject a candidate when shared with the referrer or their upline (``domain.signals``
#: kinds; an IP, alone or with the user agent, is shared by honest people too: those only hold for review).
REJECTING_SIGNALS: Final = ("device", "payment", "shipping")
SIGNAL_LABELS: Final = {"device": "device", "payment": "payment method", "shipping": "shipping address",
                        "email": "e-mail address", "phone": "phone number", "customer_id": "customer account"}


@dataclass(frozen=True)
class Friend:
    """The person the event is about.

    ``member_id`` is ``None`` when they have no member record yet.
    ``attribution_final`` is True once their first purchase has been recorded, with or
    without a referrer. ``has_referees``: someone already names them as referrer.
    """

    member_id: str | None
    identifiers: Identifiers = field(default_factory=Identifiers)
    referrer_id: str | None = None
    attributed_at: datetime | None = None
    attribution_final: bool = False
    has_referees: bool = False
    #: signal kind → other members seen with the event's signal of that kind (signal pointers).
    signal_members: Mapping[str, frozenset[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Candidate:
    """One possible referrer, as found by the caller.

    ``referrer_id`` is ``None`` when a code was given but maps to no member.
    ``touched_at``: click time (ref_code) or invite time (invite_match); ``None`` means
    "at the event" (e.g. a code typed at checkout, a coupon).
    ``ancestors``: the referrer's stored ancestry, nearest first.
    """

    source: Source
    referrer_id: str | None
    identifiers: Identifiers = field(default_factory=Identifiers)
    ancestors: tuple[str, ...] = ()
    touched_at: datetime | None = None
    code: str | None = None
    #: Identifiers of the members in ``ancestors`` whose profiles were read (nearest first).
    upline_identifiers: tuple[Identifiers, ...] = ()
    #: An invite's fraud check already rejected this referral (the landing call's signals):
    #: ``self_referral_<kind>`` or ``self_referral_upline:<kind>``.
    rejected_at_invite: str | None = None


@dataclass(frozen=True)
class AttributionSettings:
    """The part of a program's settings attribution needs (see :meth:`of`)."""

    window_days: int = defaults.DEFAULT_WINDOW_DAYS
    model: Model = defaults.DEFAULT_MODEL
    max_depth: int = defaults.DEFAULT_MAX_DEPTH

    def __post_init__(self) -> None:
        # The limits are domain.settings' (one place); reported as field errors.
        errors = []
        low, high = defaults.WINDOW_DAYS_RANGE
        if not low <= self.window_days <= high:
            errors.append(field_error("$.window_days", f"must be between {low} and {high}"))
        if self.model not in defaults.ATTRIBUTION_MODELS:
            errors.append(field_error("$.model", "must be first_touch or last_touch"))
        low, high = defaults.MAX_DEPTH_RANGE
        if not low <= self.max_depth <= high:
            errors.append(field_error("$.max_depth", f"must be between {low} and {high}"))
        if errors:
            raise ValidationFailed("Invalid attribution settings", details={"errors": errors})

    @classmethod
    def of(cls, program: defaults.ProgramSettings) -> AttributionSettings:
        return cls(window_days=program.attribution_window_days, model=program.attribution_model,
                   max_depth=program.max_depth)


@dataclass(frozen=True)
class CandidateResult:
    """What happened to one candidate. ``accepted`` is True only for the credited one."""

    source: Source
    referrer_id: str | None
    code: str | None
    accepted: bool
    reason_code: str
    reason: str


@dataclass(frozen=True)
class AttributionDecision:
    """The verdict for one event.

    ``referrer_id``: the friend's referrer *after* this decision (the new one when
    credited, the existing one -- possibly ``None`` -- otherwise).
    ``source``: source of the candidate that decided the outcome (``None`` if none).
    ``new_ancestors``: the friend's ancestry to store, nearest first, truncated to
    ``max_depth``; only set when credited, otherwise empty.
    ``attributed_at``: when credited, the event time (store it); otherwise the
    existing value.
    ``final``: the attribution (or its absence) is final after this event; store it.
    """

    outcome: Outcome
    referrer_id: str | None
    source: Source | None
    reason_code: str
    reason: str
    new_ancestors: tuple[str, ...]
    final: bool
    attributed_at: datetime | None
    candidates: tuple[CandidateResult, ...]


def _require_aware(value: datetime | None, name: str) -> None:
    if value is not None and value.tzinfo is None:
        raise ValueError(f"{name} must be timezone-aware")


def _check_candidate(
    friend: Friend, candidate: Candidate, occurred_at: datetime, settings: AttributionSettings
) -> tuple[str, str] | None:
    """(reason_code, reason) if the candidate is invalid on its own, else None."""
    if candidate.referrer_id is None:
        return "unknown_code", REASONS["unknown_code"]
    if friend.member_id is not None and candidate.referrer_id == friend.member_id:
        return "self_referral_same_member", REASONS["self_referral_same_member"]
    mine, theirs = friend.identifiers, candidate.identifiers
    if mine.email_keys & theirs.email_keys:
        return "self_referral_email", REASONS["self_referral_email"]
    if mine.phones & theirs.phones:
        return "self_referral_phone", REASONS["self_referral_phone"]
    if mine.customer_ids & theirs.customer_ids:
        return "self_referral_customer_id", REASONS["self_referral_customer_id"]
    for kind in REJECTING_SIGNALS:
        if candidate.referrer_id in friend.signal_members.get(kind, frozenset()):
            return f"self_referral_{kind}", REASONS[f"self_referral_{kind}"]
    if candidate.rejected_at_invite:
        code, _, kind = candidate.rejected_at_invite.partition(":")
        if code == "self_referral_upline" and kind in SIGNAL_LABELS:
            return code, (f"At the invite, the friend had the same {SIGNAL_LABELS[kind]} as a member above the "
                          "referrer in the chain.")
        if code in REASONS:
            return code, f"{REASONS[code][:-1]} (at the invite)."
    upline = _shared_with_upline(friend, candidate)
    if upline is not None:
        return "self_referral_upline", (
            f"The friend has the same {SIGNAL_LABELS[upline]} as a member above the referrer in the chain.")
    if friend.member_id is not None and friend.member_id in candidate.ancestors:
        return "loop_in_chain", REASONS["loop_in_chain"]
    if candidate.referrer_id in candidate.ancestors or len(set(candidate.ancestors)) != len(candidate.ancestors):
        return "loop_in_upline", REASONS["loop_in_upline"]
    if candidate.touched_at is not None:
        age = occurred_at - candidate.touched_at
        if age > timedelta(days=settings.window_days):
            days = age.days
            return "outside_window", (
                f"The {'invite' if candidate.source == 'invite_match' else 'click'} was {days} days "
                f"before the event; the program's window is {settings.window_days} days."
            )
        if age < -CLOCK_SKEW:
            return "outside_window", (
                f"The {'invite' if candidate.source == 'invite_match' else 'click'} happened after "
                "the event, so it cannot have caused it."
            )
    return None


def _shared_with_upline(friend: Friend, candidate: Candidate) -> str | None:
    """The kind of identifier or signal the friend shares with a member above the referrer, if any."""
    upline = set(candidate.ancestors) - {friend.member_id}
    for kind in REJECTING_SIGNALS:
        if upline & friend.signal_members.get(kind, frozenset()):
            return kind
    mine = friend.identifiers
    for theirs in candidate.upline_identifiers:
        for kind, a, b in (("email", mine.email_keys, theirs.email_keys), ("phone", mine.phones, theirs.phones),
                           ("customer_id", mine.customer_ids, theirs.customer_ids)):
            if a & b:
                return kind
    return None


def decide(
    friend: Friend,
    event_type: str,
    occurred_at: datetime,
    candidates: Sequence[Candidate],
    settings: AttributionSettings | None = None,
) -> AttributionDecision:
    """Decide attribution for one event (see the module docstring for the rules)."""
    settings = settings or AttributionSettings()
    _require_aware(occurred_at, "occurred_at")
    _require_aware(friend.attributed_at, "friend.attributed_at")
    for c in candidates:
        _require_aware(c.touched_at, "candidate.touched_at")

    ordered = sorted(candidates, key=lambda c: SOURCE_PRIORITY[c.source])
    current = friend.referrer_id
    becomes_final = friend.attribution_final or event_type in FINALISING_EVENTS

    def unchanged(reason_code: str, source: Source | None, results: list[CandidateResult]) -> AttributionDecision:
        return AttributionDecision(
            outcome="unchanged",
            referrer_id=current,
            source=source,
            reason_code=reason_code,
            reason=REASONS[reason_code],
            new_ancestors=(),
            final=becomes_final,
            attributed_at=friend.attributed_at,
            candidates=tuple(results),
        )

    if not ordered:
        return unchanged("no_candidate", None, [])

    def result(c: Candidate, code: str, reason: str | None = None, accepted: bool = False) -> CandidateResult:
        return CandidateResult(
            source=c.source,
            referrer_id=c.referrer_id,
            code=c.code,
            accepted=accepted,
            reason_code=code,
            reason=reason or REASONS[code],
        )

    if event_type in NON_ATTRIBUTABLE_EVENTS:
        return unchanged(
            "event_not_attributable",
            ordered[0].source,
            [result(c, "event_not_attributable") for c in ordered],
        )

    results: list[CandidateResult] = []
    valid: list[tuple[int, Candidate]] = []
    for c in ordered:
        problem = _check_candidate(friend, c, occurred_at, settings)
        if problem is None:
            valid.append((len(results), c))
            results.append(result(c, "lower_priority"))  # placeholder, replaced below
        else:
            results.append(result(c, *problem))

    if not valid:
        top = results[0]
        return AttributionDecision(
            outcome="rejected",
            referrer_id=current,
            source=top.source,
            reason_code=top.reason_code,
            reason=top.reason,
            new_ancestors=(),
            final=becomes_final,
            attributed_at=friend.attributed_at,
            candidates=tuple(results),
        )

    index, winner = valid[0]
    # Policy: which reason keeps the existing state, if any.
    blocking: str | None = None
    if current is not None and winner.referrer_id == current:
        blocking = "same_referrer"
    elif friend.attribution_final:
        blocking = "attribution_final"
    elif current is not None and settings.model == "first_touch":
        blocking = "already_attributed"
    elif current is not None and friend.has_referees:
        blocking = "has_referees"

    if blocking is not None:
        # Only the top valid candidate is weighed against the existing attribution;
        # the others keep "lower_priority" (they would not have won anyway).
        results[index] = result(winner, blocking)
        return unchanged(blocking, winner.source, results)

    assert winner.referrer_id is not None  # checked by _check_candidate
    results[index] = result(winner, "credited", accepted=True)
    ancestors = (winner.referrer_id, *winner.ancestors)[: settings.max_depth]
    return AttributionDecision(
        outcome="credited",
        referrer_id=winner.referrer_id,
        source=winner.source,
        reason_code="credited",
        reason=REASONS["credited"],
        new_ancestors=ancestors,
        final=becomes_final,
        attributed_at=occurred_at,
        candidates=tuple(results),
    )
