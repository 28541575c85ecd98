"""The analytics figures' definitions, on hand-computed inputs."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from chalicelib.domain import analytics as fig


def test_buckets_and_roll_up() -> None:
    assert fig.bucket("2026-01-15", "day") == "2026-01-15"
    assert fig.bucket("2026-01-15", "week") == "2026-01-12"  # Thursday → Monday
    assert fig.bucket("2026-01-04", "week") == "2025-12-29"  # across a year
    assert fig.bucket("2026-01-15", "month") == "2026-01"
    rows = [("2026-01-31", {"signups": 2}), ("2026-02-01", {"signups": 1, "clicks": 4}), ("2026-01-01", {"signups": 3})]
    assert fig.roll_up(rows, "month", ("signups", "clicks")) == {
        "2026-01": {"signups": 5, "clicks": 0}, "2026-02": {"signups": 1, "clicks": 4}}


def test_periods_cover_the_range() -> None:
    assert fig.periods(date(2026, 1, 30), date(2026, 2, 2), "day") == ["2026-01-30", "2026-01-31", "2026-02-01",
                                                                      "2026-02-02"]
    assert fig.periods(date(2026, 1, 30), date(2026, 3, 1), "month") == ["2026-01", "2026-02", "2026-03"]


def test_range_is_bounded() -> None:
    today = date(2026, 3, 1)
    assert fig.parse_range(None, None, today) == (date(2026, 2, 2), today)
    assert fig.parse_range("2025-03-01", "2026-03-01", today)[0] == date(2025, 3, 1)  # 366 days
    with pytest.raises(fig.RangeError):
        fig.parse_range("2025-02-28", "2026-03-01", today)  # 367 days
    with pytest.raises(fig.RangeError):
        fig.parse_range("2026-03-02", "2026-03-01", today)
    with pytest.raises(fig.RangeError):
        fig.parse_range("March", None, today)


def test_kfactor_and_referral_rate() -> None:
    # 40 clicks by 20 members: 2 invites each; 10 of 40 invites became a buying friend: 0.25; K = 0.5.
    assert fig.kfactor(40, 10, 20) == {"invites_per_member": 2.0, "invite_conversion": 0.25, "k_factor": 0.5}
    assert fig.kfactor(0, 0, 20)["k_factor"] is None
    assert fig.referral_rate(8, 2) == 0.25 and fig.referral_rate(0, 0) is None


def test_cycle_time_median_from_the_histogram() -> None:
    assert fig.cycle_bucket(0) == 0 and fig.cycle_bucket(86400) == 0 and fig.cycle_bucket(86401) == 1
    assert fig.cycle_bucket(400 * 86400) == len(fig.CYCLE_BOUNDS_DAYS)
    histogram = [0] * fig.CYCLE_BUCKETS
    for days in (2, 4, 4, 6, 40):  # buckets ≤2, ≤5, ≤5, ≤7, ≤45: the median cycle (3rd) is in ≤5
        histogram[fig.cycle_bucket(days * 86400)] += 1
    assert fig.cycle_median_days(histogram) == 5
    assert fig.cycle_median_days([0] * fig.CYCLE_BUCKETS) is None


def test_cohort_row_and_roi() -> None:
    row = fig.cohort_row("2026-01", True, {"customers": 4, "orders": 6, "revenue": 60_000, "repeaters": 1})
    assert (row["average_order"], row["repeat_rate"]) == (10_000, 0.25)
    assert fig.roi(30_000, 100, 100) == {"referred_revenue": 30_000, "reward_points": 100, "reward_cost": 10_000,
                                         "roi": 2.0}
    assert fig.roi(0, 0, 100)["roi"] is None


def test_leaderboard_key_orders_by_score_then_who_got_there_first() -> None:
    early, late = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)
    keys = sorted([fig.leaderboard_sort_key(3, late, "b"), fig.leaderboard_sort_key(3, early, "a"),
                   fig.leaderboard_sort_key(12, late, "c")], reverse=True)  # read descending
    assert [k.rsplit("#", 1)[1] for k in keys] == ["c", "a", "b"]


def test_masks_and_labels() -> None:
    assert fig.mask_name("Anna Petrova") == "Anna P." and fig.mask_name("Anna") == "A***" and fig.mask_name(None) == "***"
    assert fig.utm_label({"source": "Tele gram", "campaign": "x" * 50}) == "tele_gram/-/" + "x" * 30
