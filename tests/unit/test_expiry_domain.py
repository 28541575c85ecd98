"""FIFO expiry arithmetic (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

from chalicelib.domain.expiry import Credit, expiring, months_before, split


def t(day: str) -> datetime:
    return datetime.fromisoformat(f"{day}T12:00:00").replace(tzinfo=UTC)


def test_months_before_clamps_the_day() -> None:
    assert months_before(t("2026-03-31"), 1) == t("2026-02-28")
    assert months_before(t("2026-01-15"), 13) == t("2024-12-15")


def test_debits_take_the_oldest_points_first() -> None:
    credits = [Credit(t("2026-01-01"), 100, "a"), Credit(t("2026-01-10"), 50, "b"), Credit(t("2026-02-01"), 70, "c")]
    assert expiring(credits, 0, t("2026-01-15")) == {"b": 50, "a": 100}
    assert expiring(credits, 120, t("2026-01-15")) == {"b": 30}  # 120 took a's 100 and 20 of b's
    assert expiring(credits, 150, t("2026-01-15")) == {}
    assert expiring(credits, 200, t("2026-02-15")) == {"c": 20}


def test_split_counts_pending_clawbacks_off_the_credit_and_available_ones_as_debits() -> None:
    rows = [
        {"kind": "reward", "points": 100, "entry_id": "r1", "created_at": t("2026-01-01"),
         "available_at": t("2026-01-08"), "released_at": t("2026-01-08"), "funding_partner_id": "a"},
        {"kind": "reversal", "points": -30, "reverses_entry_id": "r1", "from_status": "pending",
         "created_at": t("2026-01-05")},
        {"kind": "reward", "points": 40, "entry_id": "r2", "created_at": t("2026-01-02"),
         "available_at": t("2026-01-02"), "partner_id": "b"},
        {"kind": "reversal", "points": -10, "reverses_entry_id": "r2", "from_status": "available",
         "created_at": t("2026-01-03")},
        {"kind": "reward", "points": 99, "entry_id": "r3", "created_at": t("2026-01-03"),
         "available_at": t("2026-02-03")},  # still pending: not a credit
        {"kind": "redemption", "points": -5, "created_at": t("2026-01-09")},
        {"kind": "redemption_return", "points": 5, "created_at": t("2026-01-11"), "partner_id": "b"},
        {"kind": "expiry", "points": -1, "created_at": t("2026-01-12")},
    ]
    credits, debits = split(rows)
    assert credits == [Credit(t("2026-01-02"), 40, "b"), Credit(t("2026-01-08"), 70, "a"),
                       Credit(t("2026-01-11"), 5, "b")]
    assert debits == 10 + 5 + 1
