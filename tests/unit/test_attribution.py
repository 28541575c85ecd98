from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from chalicelib.domain.attribution import (
    REASONS,
    AttributionDecision,
    AttributionSettings,
    Candidate,
    Friend,
    Identifiers,
    decide,
)
from chalicelib.domain.errors import ValidationFailed

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)

FRIEND_IDS = Identifiers.of(email_keys=["anna@gmail.com"], phones=["+79123456789"], customer_ids=["fitlab/c-1"])
NEW_FRIEND = Friend(member_id="m_friend", identifiers=FRIEND_IDS)


def ref(referrer: str | None = "m_ref", *, ancestors: tuple[str, ...] = ("m_a1", "m_a2"), **kw: object) -> Candidate:
    return Candidate(source="ref_code", referrer_id=referrer, ancestors=ancestors, code="ABCDEFGHJK", **kw)  # type: ignore[arg-type]


def coupon(referrer: str | None = "m_cpn", **kw: object) -> Candidate:
    return Candidate(source="coupon", referrer_id=referrer, code="ANNA-500", **kw)  # type: ignore[arg-type]


def invite(referrer: str = "m_inv", *, at: datetime = T0 - timedelta(days=3), **kw: object) -> Candidate:
    return Candidate(source="invite_match", referrer_id=referrer, touched_at=at, **kw)  # type: ignore[arg-type]


def run(
    friend: Friend, *candidates: Candidate, event_type: str = "order.paid", **settings: object
) -> AttributionDecision:
    return decide(friend, event_type, T0, candidates, AttributionSettings(**settings))  # type: ignore[arg-type]


# --------------------------------------------------------------------------- credited


def test_ref_code_credited_with_ancestry_and_final_after_purchase() -> None:
    d = run(NEW_FRIEND, ref())
    assert d.outcome == "credited"
    assert (d.referrer_id, d.source, d.reason_code) == ("m_ref", "ref_code", "credited")
    assert d.new_ancestors == ("m_ref", "m_a1", "m_a2")
    assert d.final is True
    assert d.attributed_at == T0
    assert [c.accepted for c in d.candidates] == [True]
    assert d.reason == REASONS["credited"]


def test_signup_credits_but_does_not_finalise() -> None:
    d = run(NEW_FRIEND, ref(), event_type="member.signup")
    assert d.outcome == "credited" and d.final is False


def test_ancestry_truncated_to_max_depth() -> None:
    assert run(NEW_FRIEND, ref(), max_depth=1).new_ancestors == ("m_ref",)
    assert run(NEW_FRIEND, ref(), max_depth=2).new_ancestors == ("m_ref", "m_a1")


def test_friend_without_member_record_can_be_credited() -> None:
    d = run(Friend(member_id=None, identifiers=FRIEND_IDS), invite())
    assert d.outcome == "credited" and d.source == "invite_match"


def test_priority_ref_code_over_coupon_over_invite_whatever_the_input_order() -> None:
    d = run(NEW_FRIEND, invite(), coupon(), ref())
    assert d.source == "ref_code" and d.referrer_id == "m_ref"
    by_source = {c.source: c.reason_code for c in d.candidates}
    assert by_source == {"ref_code": "credited", "coupon": "lower_priority", "invite_match": "lower_priority"}
    assert [c.source for c in d.candidates] == ["ref_code", "coupon", "invite_match"]


def test_coupon_wins_when_ref_code_is_invalid() -> None:
    d = run(NEW_FRIEND, ref(referrer=None), coupon(), invite())
    assert (d.outcome, d.source, d.referrer_id) == ("credited", "coupon", "m_cpn")
    assert d.candidates[0].reason_code == "unknown_code"


def test_invite_wins_when_others_fail() -> None:
    d = run(NEW_FRIEND, ref(referrer="m_friend"), coupon(identifiers=Identifiers.of(phones=["+79123456789"])), invite())
    assert (d.source, d.referrer_id) == ("invite_match", "m_inv")
    assert [c.reason_code for c in d.candidates] == ["self_referral_same_member", "self_referral_phone", "credited"]


# --------------------------------------------------------------------------- per-candidate rejections


@pytest.mark.parametrize(
    ("candidate", "reason_code"),
    [
        (ref(referrer=None), "unknown_code"),
        (ref(referrer="m_friend"), "self_referral_same_member"),
        (ref(identifiers=Identifiers.of(email_keys=["anna@gmail.com"])), "self_referral_email"),
        (ref(identifiers=Identifiers.of(phones=["+79123456789"])), "self_referral_phone"),
        (ref(identifiers=Identifiers.of(customer_ids=["fitlab/c-1"])), "self_referral_customer_id"),
        (ref(ancestors=("m_x", "m_friend")), "loop_in_chain"),
        (ref(touched_at=T0 - timedelta(days=31)), "outside_window"),
        (ref(touched_at=T0 + timedelta(hours=1)), "outside_window"),
        (invite(at=T0 - timedelta(days=30, seconds=1)), "outside_window"),
    ],
)
def test_single_candidate_rejections(candidate: Candidate, reason_code: str) -> None:
    d = run(NEW_FRIEND, candidate)
    assert d.outcome == "rejected"
    assert d.reason_code == reason_code
    assert d.referrer_id is None
    assert d.new_ancestors == ()
    assert d.candidates[0].reason_code == reason_code and not d.candidates[0].accepted
    assert d.reason


def test_window_boundaries_and_settings() -> None:
    assert run(NEW_FRIEND, ref(touched_at=T0 - timedelta(days=30))).outcome == "credited"
    assert run(NEW_FRIEND, ref(touched_at=T0 + timedelta(minutes=4))).outcome == "credited"  # clock skew
    assert run(NEW_FRIEND, ref(touched_at=T0 - timedelta(days=45)), window_days=60).outcome == "credited"
    d = run(NEW_FRIEND, invite(at=T0 - timedelta(days=8)), window_days=7)
    assert d.reason_code == "outside_window" and "8 days" in d.reason and "7 days" in d.reason


def test_code_without_click_time_counts_as_touch_at_event() -> None:
    assert run(NEW_FRIEND, ref(touched_at=None)).outcome == "credited"


def test_shared_unrelated_identifier_types_do_not_collide() -> None:
    # An email key equal to a *phone* value of the friend is not a match.
    other = Identifiers.of(email_keys=["+79123456789"], phones=["anna@gmail.com"])
    assert run(NEW_FRIEND, ref(identifiers=other)).outcome == "credited"


def test_rejected_keeps_existing_referrer() -> None:
    friend = Friend(member_id="m_friend", identifiers=FRIEND_IDS, referrer_id="m_old", attributed_at=T0)
    d = run(friend, ref(referrer=None))
    assert (d.outcome, d.reason_code, d.referrer_id) == ("rejected", "unknown_code", "m_old")


def test_rejected_reason_is_the_top_priority_candidates() -> None:
    d = run(NEW_FRIEND, invite(at=T0 - timedelta(days=90)), ref(referrer=None))
    assert (d.reason_code, d.source) == ("unknown_code", "ref_code")
    assert [c.reason_code for c in d.candidates] == ["unknown_code", "outside_window"]


# --------------------------------------------------------------------------- policy vs existing attribution


def attributed(**kw: object) -> Friend:
    base: dict[str, object] = {
        "member_id": "m_friend",
        "identifiers": FRIEND_IDS,
        "referrer_id": "m_old",
        "attributed_at": T0 - timedelta(days=2),
    }
    base.update(kw)
    return Friend(**base)  # type: ignore[arg-type]


def test_first_touch_keeps_existing_referrer() -> None:
    d = run(attributed(), ref(), event_type="member.signup")
    assert (d.outcome, d.reason_code, d.referrer_id) == ("unchanged", "already_attributed", "m_old")
    assert d.attributed_at == T0 - timedelta(days=2)
    assert d.candidates[0].reason_code == "already_attributed"
    assert d.new_ancestors == ()


def test_last_touch_replaces_existing_referrer() -> None:
    d = run(attributed(), ref(), event_type="lead.created", model="last_touch")
    assert (d.outcome, d.referrer_id, d.attributed_at) == ("credited", "m_ref", T0)
    assert d.final is False


def test_last_touch_refused_when_friend_has_referees() -> None:
    d = run(attributed(has_referees=True), ref(), model="last_touch")
    assert (d.outcome, d.reason_code, d.referrer_id) == ("unchanged", "has_referees", "m_old")


def test_first_attribution_allowed_even_with_referees() -> None:
    # Nothing stale: the referees' chains only miss the new top, they are not wrong.
    friend = Friend(member_id="m_friend", identifiers=FRIEND_IDS, has_referees=True)
    assert run(friend, ref(), model="last_touch").outcome == "credited"


@pytest.mark.parametrize("model", ["first_touch", "last_touch"])
def test_attribution_final_after_first_purchase(model: str) -> None:
    d = run(attributed(attribution_final=True), ref(), model=model)
    assert (d.outcome, d.reason_code, d.referrer_id, d.final) == ("unchanged", "attribution_final", "m_old", True)


def test_existing_customer_without_referrer_cannot_be_referred_later() -> None:
    friend = Friend(member_id="m_friend", identifiers=FRIEND_IDS, attribution_final=True)
    d = run(friend, coupon())
    assert (d.outcome, d.reason_code, d.referrer_id) == ("unchanged", "attribution_final", None)


def test_same_referrer_again_is_unchanged_but_becomes_final_on_purchase() -> None:
    d = run(attributed(referrer_id="m_ref"), ref())
    assert (d.outcome, d.reason_code, d.referrer_id, d.final) == ("unchanged", "same_referrer", "m_ref", True)


def test_no_candidate() -> None:
    d = run(NEW_FRIEND, event_type="member.signup")
    assert (d.outcome, d.reason_code, d.referrer_id, d.source) == ("unchanged", "no_candidate", None, None)
    assert d.final is False and d.candidates == ()
    kept = run(attributed())
    assert (kept.outcome, kept.reason_code, kept.referrer_id, kept.final) == (
        "unchanged",
        "no_candidate",
        "m_old",
        True,
    )


@pytest.mark.parametrize("event_type", ["order.refunded", "order.cancelled"])
def test_refunds_never_attribute(event_type: str) -> None:
    d = run(NEW_FRIEND, ref(), event_type=event_type)
    assert (d.outcome, d.reason_code, d.referrer_id) == ("unchanged", "event_not_attributable", None)


def test_invalid_candidates_do_not_block_policy_reason() -> None:
    d = run(attributed(), ref(referrer=None), coupon())
    assert (d.outcome, d.reason_code, d.source) == ("unchanged", "already_attributed", "coupon")


def test_every_reason_code_has_plain_english_text() -> None:
    required = {
        "credited",
        "self_referral_email",
        "self_referral_phone",
        "self_referral_customer_id",
        "self_referral_same_member",
        "loop_in_chain",
        "outside_window",
        "already_attributed",
        "attribution_final",
        "has_referees",
        "unknown_code",
        "no_candidate",
    }
    assert required <= set(REASONS)
    assert all(text.endswith(".") for text in REASONS.values())


# --------------------------------------------------------------------------- inputs


@pytest.mark.parametrize(
    ("kwargs", "path"),
    [({"window_days": 0}, "$.window_days"), ({"model": "linear"}, "$.model"), ({"max_depth": 0}, "$.max_depth")],
)
def test_settings_validated(kwargs: dict[str, object], path: str) -> None:
    with pytest.raises(ValidationFailed) as excinfo:
        AttributionSettings(**kwargs)  # type: ignore[arg-type]
    assert excinfo.value.details["errors"][0]["path"] == path


def test_defaults() -> None:
    s = AttributionSettings()
    assert (s.window_days, s.model) == (30, "first_touch")
    assert decide(NEW_FRIEND, "order.paid", T0, [ref()]).outcome == "credited"


def test_naive_datetimes_refused() -> None:
    with pytest.raises(ValueError):
        decide(NEW_FRIEND, "order.paid", datetime(2026, 11, 23), [ref()])
    with pytest.raises(ValueError):
        decide(NEW_FRIEND, "order.paid", T0, [ref(touched_at=datetime(2026, 11, 22))])


# --------------------------------------------------------------------------- fraud checks (docs/fraud.md)


def signalled(**members: frozenset[str]) -> Friend:
    return Friend(member_id="m_friend", identifiers=FRIEND_IDS, signal_members=members)


@pytest.mark.parametrize(
    ("friend", "candidate", "reason_code"),
    [
        (signalled(device=frozenset({"m_ref"})), ref(), "self_referral_device"),
        (signalled(payment=frozenset({"m_other", "m_ref"})), ref(), "self_referral_payment"),
        (signalled(shipping=frozenset({"m_ref"})), ref(), "self_referral_shipping"),
        (signalled(device=frozenset({"m_a2"})), ref(), "self_referral_upline"),
        (NEW_FRIEND, ref(upline_identifiers=(Identifiers(), Identifiers.of(phones=["+79123456789"]))),
         "self_referral_upline"),
        (NEW_FRIEND, ref(ancestors=("m_a1", "m_ref")), "loop_in_upline"),
        (NEW_FRIEND, ref(ancestors=("m_a1", "m_a2", "m_a1")), "loop_in_upline"),
    ],
)
def test_fraud_rejections(friend: Friend, candidate: Candidate, reason_code: str) -> None:
    d = run(friend, candidate)
    assert (d.outcome, d.reason_code, d.referrer_id) == ("rejected", reason_code, None)
    assert d.reason and "+7912" not in d.reason


def test_signals_of_strangers_and_ip_alone_do_not_reject() -> None:
    friend = signalled(device=frozenset({"m_stranger"}), ip=frozenset({"m_ref"}), ip_ua=frozenset({"m_ref"}))
    assert run(friend, ref()).outcome == "credited"


def test_upline_reason_names_the_kind_not_the_value() -> None:
    d = run(NEW_FRIEND, ref(upline_identifiers=(Identifiers.of(email_keys=["anna@gmail.com"]),)))
    assert "e-mail address" in d.reason and "anna" not in d.reason
