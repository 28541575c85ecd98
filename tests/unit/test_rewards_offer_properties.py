"""Property tests of the engine's partner-offer and member-tier features, which the main property
strategy (``test_rewards_properties``) does not generate: offer rewards (pools, ``per_month``,
``fallback_points``), ``trigger.tiers`` and ``tier_multipliers``, on top of that strategy's partners,
overrides, orders, recurring rules, caps and currencies."""

from __future__ import annotations

import dataclasses as dc
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from chalicelib.domain.rewards import Amount, Evaluation, OfferRef, evaluate
from chalicelib.domain.rewards.engine import tier_multiply
from tests.unit.test_rewards_properties import MEMBERS, PARTNERS, _month_read, effective_amount, scenarios

TIERS = ["bronze", "silver", "gold"]
OFFERS = ["o1", "o2"]
SETTINGS = settings(max_examples=100, deadline=None, database=None)


@st.composite
def offer_scenarios(draw: st.DrawFn) -> tuple[Any, ...]:
    rules, event, subject, ancestors, counters = draw(scenarios())
    new_rules = []
    for r in rules.rules:
        if draw(st.integers(0, 2)) == 0:
            fallback = draw(st.one_of(st.none(), st.integers(1, 500)))
            ref = OfferRef(draw(st.sampled_from(PARTNERS)), draw(st.sampled_from(OFFERS)), fallback,
                           draw(st.one_of(st.none(), st.integers(1, 3))))
            # The schema allows max_points on an offer reward only with fallback points to cap.
            cap = draw(st.one_of(st.none(), st.integers(1, 400))) if fallback else None
            r = dc.replace(r, amount=Amount(offer=ref, max_points=cap), partners={})
        if draw(st.integers(0, 2)) == 0:
            r = dc.replace(r, tier_multipliers={t: draw(st.integers(1, 30_000))
                                                for t in draw(st.sets(st.sampled_from(TIERS), min_size=1))})
        if draw(st.integers(0, 3)) == 0:
            r = dc.replace(r, trigger=dc.replace(r.trigger, tiers=tuple(sorted(draw(
                st.sets(st.sampled_from(TIERS), min_size=1))))))
        new_rules.append(r)
    rules = dc.replace(rules, rules=tuple(new_rules))
    subject = dc.replace(subject, tier=draw(st.sampled_from([None, *TIERS])))
    ancestors = [dc.replace(a, tier=draw(st.sampled_from([None, *TIERS]))) for a in ancestors]
    pools = {o: draw(st.integers(0, 2)) for o in draw(st.sets(st.sampled_from(OFFERS)))}
    this_month = {f"{r.id}#{m}": draw(st.integers(0, 3)) for r in rules.rules for m in MEMBERS
                  if draw(st.integers(0, 4)) == 0}
    return rules, event, subject, ancestors, counters, pools, this_month


def _tier_of(subject: Any, ancestors: list[Any], member_id: str, level: int) -> str | None:
    if level == 0:
        return subject.tier  # type: ignore[no-any-return]
    return next(a.tier for a in sorted(ancestors, key=lambda a: a.level) if a.level == level)


@SETTINGS
@given(offer_scenarios())
def test_offers_pools_monthly_limits_fallbacks_and_tiers(scenario: tuple[Any, ...]) -> None:
    rules, event, subject, ancestors, counters, pools, this_month = scenario
    result: Evaluation = evaluate(rules, event, subject, ancestors, counters, pools, this_month)
    by_id = {r.id: r for r in rules.rules}

    # Pools: never more vouchers of an offer than codes the writer said it can give.
    for offer_id in OFFERS:
        assert sum(v.offer_id == offer_id for v in result.vouchers) <= pools.get(offer_id, 0)
    # per_month: what the member already got this month plus this event's vouchers stays within it.
    for v in result.vouchers:
        ref = by_id[v.rule_id].amount.offer
        assert ref is not None and (v.partner_id, v.offer_id) == (ref.partner_id, ref.offer_id)
        if ref.per_month is not None:
            key = f"{v.rule_id}#{v.member_id}"
            given_now = sum(f"{w.rule_id}#{w.member_id}" == key for w in result.vouchers)
            assert this_month.get(key, 0) + given_now <= ref.per_month
    voucher_rules = {v.rule_id for v in result.vouchers}
    skipped: dict[str, set[str]] = {}
    for s in result.skipped:
        skipped.setdefault(s.rule_id, set()).add(s.reason_code)

    for p in result.postings:
        rule = by_id[p.rule_id]
        tier = _tier_of(subject, ancestors, p.member_id, p.level)
        if rule.amount.offer is not None:
            # Points from an offer rule only as its fallback, only when no code could be given.
            assert p.reason_code == "offer_fallback" and p.rule_id not in voucher_rules
            assert "pool_empty" in skipped[p.rule_id]
            assert rule.amount.offer.fallback_points is not None
        if rule.trigger.tiers:
            assert tier in rule.trigger.tiers
        multiplied = tier is not None and tier in rule.tier_multipliers
        assert (f" Tier {tier}: x" in p.reason) == multiplied, p.reason
        amount = effective_amount(rule, event)
        fixed = amount.offer.fallback_points if amount.offer is not None else amount.points
        if fixed is not None and not amount.tiers:  # fixed points: the multiplier is exactly one floor
            assert p.requested_points == (tier_multiply(fixed, rule.tier_multipliers[tier]) if multiplied else fixed)
    for v in result.vouchers:
        rule = by_id[v.rule_id]
        if rule.trigger.tiers:
            assert _tier_of(subject, ancestors, v.member_id, v.level) in rule.trigger.tiers

    # Every rule for this event is accounted for: it posted, gave a voucher, or says why not.
    posted = {p.rule_id for p in result.postings}
    for rule in rules.rules:
        if rule.enabled and rule.trigger.event == event.type:
            assert rule.id in posted | voucher_rules | set(skipped), rule.id

    # The caps hold with fallback points and multiplied points too.
    month = _month_read(subject, ancestors)
    budget = counters.budget_used_points
    for p in result.postings:
        rule = by_id[p.rule_id]
        month[p.member_id] += p.points
        for cap in (rule.member_monthly_cap_points, rules.member_monthly_cap_points):
            assert cap is None or month[p.member_id] <= cap
        budget += p.points
        assert rules.budget_points is None or budget <= rules.budget_points
        if rule.amount.max_points is not None and rule.amount.offer is not None:
            assert p.points <= rule.amount.max_points
