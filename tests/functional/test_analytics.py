"""Analytics figures end to end: a small history through the real pipeline and the stream consumer,
every figure compared with the answer computed by hand (in the comments)."""

from __future__ import annotations

from typing import Any

import pytest

from chalicelib.notify import sources
from tests.functional.test_ledger_support import Shop, utc
from tests.notify_support import stream_poller
from tests.support import CLOCK, ApiClient

RULES: dict[str, Any] = {
    "max_depth": 2, "hold_days": 0,
    "rules": [
        {"id": "bring-a-friend", "name": "Bring a friend", "trigger": {"event": "order.paid", "order": "first"},
         "recipient": {"type": "referrer", "level": 1}, "amount": {"points": 500}},
        {"id": "friend-welcome", "name": "Welcome bonus", "trigger": {"event": "order.paid", "order": "first"},
         "recipient": {"type": "friend"}, "amount": {"points": 300}},
    ],
}
RANGE = "from=2026-01-01&to=2026-01-31"


@pytest.fixture(autouse=True)
def _quiet(api: ApiClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sources, "MAX_PARALLEL", 1)
    CLOCK.set(utc("2026-01-10T09:00:00Z"))


def history(api: ApiClient) -> tuple[Shop, dict[str, Any]]:
    """Anna (P0, no referrer) → Boris (P0, Anna's code) → Carl (P0, Boris's code); Dora a lead at P1.

    Jan 10: 3 clicks on Anna's link (utm_source=telegram); Anna, Boris, Carl sign up at P0.
    Jan 12: Boris's first order 2,000.00 at P0 (referred; Anna +500, Boris +300); Anna's first 1,000.00 at P1.
    Jan 15: Dora a lead at P1 (a member, no purchase).
    Jan 20: Boris's repeat order 500.00 at P1.  Jan 21: Carl's first order 300.00 at P0 (Boris +500, Carl +300).
    Jan 22: Carl's order refunded in full at P0 (both rewards reversed).
    """
    shop = Shop(api, RULES, partners=2, landing_url="https://shop.test/")
    p0, p1 = shop.partners
    anna = shop.member("anna", at="2026-01-10T10:00:00Z")
    for _ in range(3):
        assert api.get(f"/r/{anna['code']}?utm_source=telegram", key=None).status == 302
    boris = shop.member("boris", anna["code"], at="2026-01-10T10:00:00Z")
    carl = shop.member("carl", boris["code"], at="2026-01-10T11:00:00Z")
    shop.order("boris", "o-1", 200_000, at="2026-01-12T10:00:00Z", partner=p0)
    shop.order("anna", "o-2", 100_000, at="2026-01-12T12:00:00Z", partner=p1)
    shop.send({"type": "lead.created", "occurred_at": "2026-01-15T10:00:00Z", "object": {"type": "lead", "id": "L-1"},
               "customer": {"id": "dora", "email": "dora@example.com"}}, p1)
    shop.order("boris", "o-3", 50_000, at="2026-01-20T10:00:00Z", partner=p1)
    shop.order("carl", "o-4", 30_000, at="2026-01-21T10:00:00Z", partner=p0)
    shop.refund("o-4", 30_000, at="2026-01-22T10:00:00Z", partner=p0)
    CLOCK.set(utc("2026-01-31T12:00:00Z"))
    stream_poller().drain()
    return shop, {"anna": anna, "boris": boris, "carl": carl}


def panel(api: ApiClient, shop: Shop, name: str, query: str = RANGE, key: str | None = "operator") -> Any:
    reply = api.get(f"/v1/programs/{shop.pid}/analytics/{name}?{query}", key=key)
    assert reply.status == 200, reply.body
    return reply.body


def totals(series: list[dict[str, Any]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for row in series:
        for name, value in row.items():
            if isinstance(value, int) and name != "period":
                out[name] = out.get(name, 0) + value
    return out


def test_every_figure_matches_the_hand_computed_history(api: ApiClient) -> None:
    shop, m = history(api)
    funnel = panel(api, shop, "funnel", RANGE + "&granularity=month")
    assert [row["period"] for row in funnel["series"]] == ["2026-01"]
    row = funnel["series"][0]
    # clicks 3; signups anna, boris, carl, dora (lead) = 4, referred 2; leads 1; first purchases boris, anna,
    # carl = 3 (referred 2: rate 2/3); repeat 1 (boris); orders 4 = 380,000, referred 280,000; 1 refund 30,000.
    assert {k: row[k] for k in ("clicks", "signups", "signups_referred", "leads", "first_purchases",
                                "first_purchases_referred", "repeat_purchases", "orders", "revenue",
                                "revenue_referred", "refunds", "refund_amount")} == {
        "clicks": 3, "signups": 4, "signups_referred": 2, "leads": 1, "first_purchases": 3,
        "first_purchases_referred": 2, "repeat_purchases": 1, "orders": 4, "revenue": 380_000,
        "revenue_referred": 280_000, "refunds": 1, "refund_amount": 30_000}
    assert row["referral_rate"] == 0.6667
    # Rewards: 800 for Boris's first order + 800 for Carl's − 800 reversed = 800 points.
    assert row["reward_points"] == 800
    by_day = {r["period"]: r for r in panel(api, shop, "funnel", "")["series"]}  # the default: the last 28 days
    assert min(by_day) == "2026-01-04" and max(by_day) == "2026-01-31"
    by_day = {r["period"]: r for r in panel(api, shop, "funnel", RANGE)["series"]}
    assert by_day["2026-01-12"]["first_purchases"] == 2 and by_day["2026-01-20"]["repeat_purchases"] == 1
    weeks = [r["period"] for r in panel(api, shop, "funnel", RANGE + "&granularity=week")["series"]]
    # Mondays of the weeks the range touches (Jan 1 is a Thursday), zeros included.
    assert weeks == ["2025-12-29", "2026-01-05", "2026-01-12", "2026-01-19", "2026-01-26"]
    assert len(by_day) == 31 and by_day["2026-01-02"]["orders"] == 0

    k = panel(api, shop, "kfactor")
    # members 4; invites per member 3 / 4 = 0.75; conversion 2 / 3 = 0.6667; K = 0.75 × 0.6667 = 0.5.
    assert (k["members"], k["invites_per_member"], k["invite_conversion"], k["k_factor"]) == (4, 0.75, 0.6667, 0.5)
    # Cycles: Anna joined Jan 10 10:00 → Boris's first purchase Jan 12 10:00 = 2 days (bucket ≤ 2);
    # Boris joined Jan 10 10:00 → Carl's Jan 21 10:00 = 11 days (bucket ≤ 14). Median (lower) = 2 days.
    counts = {b["up_to_days"]: b["count"] for b in k["cycle_histogram"] if b["count"]}
    assert counts == {2: 1, 14: 1} and k["cycle_time_median_days"] == 2

    cohorts = {(r["cohort"], r["referred"]): r for r in panel(api, shop, "cohorts")["rows"]}
    # Referred (Boris, Carl): 2 customers, 3 orders, 280,000, average 93,333, Boris repeats: 1/2.
    assert cohorts[("2026-01", True)] | {} == {"cohort": "2026-01", "referred": True, "customers": 2, "orders": 3,
                                               "revenue": 280_000, "average_order": 93_333, "repeat_rate": 0.5}
    assert cohorts[("2026-01", False)]["customers"] == 1 and cohorts[("2026-01", False)]["repeat_rate"] == 0.0

    roi = panel(api, shop, "roi")
    value = roi["point_value_minor"]
    p0, p1 = (p["partner_id"] for p in shop.partners)
    partners = {p["partner_id"]: p for p in roi["partners"]}
    # P0: referred revenue 200,000 + 30,000; rewards 800 points. P1: Boris's repeat 50,000, no rewards.
    assert partners[p0]["referred_revenue"] == 230_000 and partners[p0]["reward_points"] == 800
    assert partners[p0]["reward_cost"] == 800 * value
    assert partners[p0]["roi"] == round((230_000 - 800 * value) / (800 * value), 4)
    assert partners[p1] == {"partner_id": p1, "referred_revenue": 50_000, "reward_points": 0, "reward_cost": 0,
                            "roi": None}
    rules = {r["rule_id"]: r for r in roi["rules"]}
    assert (rules["bring-a-friend"]["rewards"], rules["bring-a-friend"]["reward_points"]) == (2, 500)
    assert (rules["friend-welcome"]["rewards"], rules["friend-welcome"]["reward_points"]) == (2, 300)

    board = panel(api, shop, "leaderboard", "period=2026-01")["rows"]
    # Converted: Anna 1 (Boris, Jan 12) and Boris 1 (Carl, Jan 21): a tie, Anna reached it first.
    assert [(r["member_id"], r["score"]) for r in board] == [(m["anna"]["member_id"], 1), (m["boris"]["member_id"], 1)]
    revenue = panel(api, shop, "leaderboard", "period=all&metric=revenue")["rows"]
    assert [(r["member_id"], r["score"]) for r in revenue] == [(m["anna"]["member_id"], 250_000),
                                                              (m["boris"]["member_id"], 30_000)]
    assert board[0]["code"] == m["anna"]["code"]

    channels = {(r["dimension"], r["value"]): r for r in panel(api, shop, "channels")["rows"]}
    assert channels[("click_source", "telegram")]["clicks"] == 3
    assert channels[("channel", "member.signup")]["signups"] == 3
    assert channels[("channel", "lead.created")]["signups"] == 1


def test_a_redelivered_stream_counts_nothing_twice(api: ApiClient) -> None:
    shop, _ = history(api)
    before = panel(api, shop, "funnel", RANGE + "&granularity=month")["series"]
    stream_poller().drain()  # a second consumer from the start of the stream: every record again
    assert panel(api, shop, "funnel", RANGE + "&granularity=month")["series"] == before
    assert panel(api, shop, "leaderboard", "period=2026-01")["rows"][0]["score"] == 1


def test_a_partner_sees_its_own_rows_and_coalition_totals_only(api: ApiClient) -> None:
    shop, _ = history(api)
    p0, p1 = shop.partners
    mine = panel(api, shop, "funnel", RANGE + "&granularity=month", key=p1["api_key"])
    assert mine["partner_id"] == p1["partner_id"]
    # P1: Anna's first order 100,000 and Boris's repeat 50,000; Dora's lead and signup.
    assert {k: mine["partner"][0][k] for k in ("orders", "revenue", "first_purchases", "repeat_purchases", "leads",
                                               "signups")} == {
        "orders": 2, "revenue": 150_000, "first_purchases": 1, "repeat_purchases": 1, "leads": 1, "signups": 1}
    assert mine["coalition"][0]["orders"] == 4
    other = api.get(f"/v1/programs/{shop.pid}/analytics/funnel?partner_id={p0['partner_id']}", key=p1["api_key"])
    assert other.status == 404
    roi = panel(api, shop, "roi", key=p1["api_key"])
    assert [p["partner_id"] for p in roi["partners"]] == [p1["partner_id"]] and roi["rules"] == []


def test_csv_and_bounded_ranges(api: ApiClient) -> None:
    shop, _ = history(api)
    reply = api.get(f"/v1/programs/{shop.pid}/analytics/funnel?{RANGE}&granularity=month", headers={"Accept": "text/csv"})
    assert reply.status == 200 and reply.headers["content-type"].startswith("text/csv")
    lines = reply.body.splitlines() if isinstance(reply.body, str) else reply.body.decode().splitlines()
    assert lines[0].startswith("period,clicks,signups,leads,first_purchases") and lines[1].startswith("2026-01,3,4,1,3")
    for query in ("from=2025-01-01&to=2026-01-31", "from=2026-02-01&to=2026-01-01", "from=yesterday",
                  "granularity=hour"):
        bad = api.get(f"/v1/programs/{shop.pid}/analytics/funnel?{query}")
        assert bad.status == 400, (query, bad.body)
    assert api.get(f"/v1/programs/{shop.pid}/analytics/leaderboard?metric=likes").status == 400
    assert api.get(f"/v1/programs/{shop.pid}/analytics/leaderboard?period=2026").status == 400


def test_each_panel_is_a_bounded_number_of_round_trips(api: ApiClient) -> None:
    shop, _ = history(api)
    for name in ("funnel", "kfactor", "cohorts", "roi", "channels"):
        assert panel(api, shop, name, "from=2025-02-01&to=2026-01-31")["round_trips"] <= 5, name
    assert panel(api, shop, "leaderboard")["round_trips"] == 1


def test_the_dashboard_page_and_its_assets_are_served_from_the_package(api: ApiClient) -> None:
    page = api.get("/dashboard", key=None)
    assert page.status == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "/dashboard/assets/uPlot.iife.min.js" in page.body and "https://" not in page.body  # no CDN
    script = api.get("/dashboard/assets/dashboard.js", key=None)
    assert script.status == 200 and script.headers["content-type"].startswith("text/javascript")
    assert "sessionStorage" in script.body and "Bearer" in script.body
    assert api.get("/dashboard/assets/uPlot.min.css", key=None).headers["content-type"].startswith("text/css")
    assert api.get("/dashboard/assets/..%2Fpages.py", key=None).status == 404
