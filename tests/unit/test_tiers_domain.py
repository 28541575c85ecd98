"""The pure tier logic (domain/tiers.py, settings.TierSettings): windows, promotion, review months."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from chalicelib.domain import tiers as t
from chalicelib.domain.rewards.engine import tier_multiply
from chalicelib.domain.settings import TierSettings, validate_tiers

RAW = {"metric": "spend", "period_months": 3, "levels": [
    {"id": "base", "threshold": 0}, {"id": "silver", "threshold": 100, "names": {"ru": "Серебро"}},
    {"id": "gold", "threshold": 300}]}
_parsed = TierSettings.from_stored(RAW)
assert _parsed is not None
TIERS: TierSettings = _parsed


def test_settings_from_stored_and_fallbacks() -> None:
    assert TIERS.ids == ("base", "silver", "gold") and TIERS.metric == "spend" and TIERS.period_months == 3
    assert TIERS.levels[1].name("ru") == "Серебро" and TIERS.levels[1].name("en") == "silver"
    assert TierSettings.from_stored(None) is None
    assert TierSettings.from_stored({"levels": [{"id": "a", "threshold": 5}, {"id": "b", "threshold": 9}]}) is None
    assert TierSettings.from_stored({"levels": [{"id": "a", "threshold": 0}]}) is None
    odd = TierSettings.from_stored({**RAW, "metric": "balance", "period_months": 99})
    assert odd is not None and (odd.metric, odd.period_months) == ("points_earned", 12)
    assert validate_tiers(RAW) == []


def test_window_and_value() -> None:
    assert t.window("2026-02", 3) == ("2025-12", "2026-01", "2026-02")
    assert t.shift_month("2026-01", -1) == "2025-12" and t.shift_month("2025-12", 13) == "2027-01"
    buckets = {"2025-11": 50, "2025-12": 60, "2026-02": 70}
    assert t.value(buckets, "2026-02", 3) == 130
    assert t.prune(buckets, "2026-02", 3) == {"2025-12": 60, "2026-02": 70}
    assert t.value({"2026-02": -20, "2026-01": 5}, "2026-02", 3) == 0  # never negative
    assert t.add({}, "2025-01", 10, "2026-02", 3) == {}  # outside the window: nothing counted


def test_promotion_only_up_and_review_both_ways() -> None:
    assert t.promoted(TIERS, "base", 99) is None
    up = t.promoted(TIERS, "base", 300)
    assert up is not None and up.id == "gold"
    assert t.promoted(TIERS, "gold", 0) is None  # an event never demotes
    down = t.reviewed(TIERS, "gold", 150)
    assert down is not None and down.id == "silver"
    assert t.reviewed(TIERS, "silver", 150) is None
    missed = t.reviewed(TIERS, "base", 500)
    assert missed is not None and missed.id == "gold"
    renamed = t.reviewed(TIERS, "platinum", 0)  # a tier id no longer defined counts as the lowest, and is fixed
    assert renamed is not None and renamed.id == "base"


def test_review_month() -> None:
    # Gold (300) with 200 in Jan and 150 in Feb: Feb's window keeps 350; April's (Feb-Apr) has only 150.
    buckets = {"2026-01": 200, "2026-02": 150}
    assert t.review_month(TIERS, "gold", buckets, "2026-02") == "2026-04"
    assert t.review_month(TIERS, "silver", buckets, "2026-02") == "2026-05"
    assert t.review_month(TIERS, "base", buckets, "2026-02") is None
    assert t.review_month(TIERS, "gold", {"2026-02": 10}, "2026-02") == "2026-02"  # already below: due now


def test_progress_and_multiply() -> None:
    p = t.progress(TIERS, "silver", {"2026-02": 120}, "2026-02")
    assert (p.tier, p.value, p.next_tier, p.next_threshold, p.remaining) == ("silver", 120, "gold", 300, 180)
    top = t.progress(TIERS, "gold", {}, "2026-02")
    assert top.next_tier is None and top.remaining is None
    assert tier_multiply(333, 15_000) == 499 and tier_multiply(1, 10_000) == 1 and tier_multiply(7, 5_000) == 3


months = st.integers(min_value=0, max_value=40).map(lambda i: t.shift_month("2024-01", i))


@given(st.dictionaries(months, st.integers(min_value=0, max_value=1000), max_size=12),
       st.integers(min_value=0, max_value=40).map(lambda i: t.shift_month("2024-01", i)),
       st.sampled_from(["base", "silver", "gold"]))
def test_review_month_is_when_the_value_first_falls_below(buckets: dict[str, int], now: str, tier: str) -> None:
    buckets = {m: v for m, v in buckets.items() if m <= now}  # nothing is counted in months still to come
    due = t.review_month(TIERS, tier, buckets, now)
    threshold = t.level(TIERS, tier).threshold
    if threshold == 0:
        assert due is None
        return
    assert due is not None and now <= due <= t.shift_month(now, TIERS.period_months)
    assert t.value(buckets, due, 3) < threshold
    month = now
    while month < due:  # before it, with nothing new earned, the tier holds
        assert t.value(buckets, month, 3) >= threshold
        month = t.shift_month(month, 1)
    assert len(t.prune(buckets, now, 3)) <= 3  # the map stays bounded by the period


@given(st.lists(st.tuples(st.integers(min_value=0, max_value=5), st.integers(min_value=-50, max_value=400)),
                max_size=30))
def test_events_never_demote_and_promote_to_what_the_value_reaches(events: list[tuple[int, int]]) -> None:
    tier, buckets = "base", {}  # type: ignore[var-annotated]
    for ahead, amount in sorted(events):
        now = t.shift_month("2026-01", ahead)
        buckets = t.add(buckets, now, amount, now, 3)
        value = t.value(buckets, now, 3)
        up = t.promoted(TIERS, tier, value)
        if up is not None:
            assert t.rank(TIERS, up.id) > t.rank(TIERS, tier) and up.threshold <= value
            tier = up.id
        assert t.rank(TIERS, tier) >= t.rank(TIERS, t.reached(TIERS, value).id)


def test_take_claws_back_at_most_what_was_counted() -> None:
    buckets = {"2026-01": 100, "2026-02": 50}
    assert t.take(buckets, "2026-01", 30, "2026-02", 3) == {"2026-01": 70, "2026-02": 50}
    assert t.take(buckets, "2026-01", 130, "2026-02", 3) == {"2026-02": 20}  # then the newest other months
    assert t.take(buckets, "2026-02", 500, "2026-02", 3) == {}  # never below zero
    assert t.take(buckets, "2025-06", 30, "2026-02", 3) == buckets  # its month no longer counts: nothing taken


@given(st.lists(st.tuples(st.integers(min_value=0, max_value=2), st.integers(min_value=-300, max_value=300)),
                max_size=20))
def test_property_clawbacks_never_make_buckets_negative(ops: list[tuple[int, int]]) -> None:
    buckets: dict[str, int] = {}
    counted = 0
    for offset, amount in ops:
        month = t.shift_month("2026-01", offset)
        if amount >= 0:
            buckets = t.add(buckets, month, amount, "2026-03", 3)
            counted += amount
        else:
            buckets = t.take(buckets, month, -amount, "2026-03", 3)
            counted = max(0, counted + amount)
        assert all(v > 0 for v in buckets.values())
        assert t.value(buckets, "2026-03", 3) == counted
