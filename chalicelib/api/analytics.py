"""Analytics API: the dashboard's panels from pre-aggregated counters (JSON, or CSV with ``Accept: text/csv``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chalice import Response

from chalicelib.api.http import ApiBlueprint, ApiRequest, lazy_module
from chalicelib.api.response_schemas import BOOL, INT, STR, nullable, obj

if TYPE_CHECKING:
    from chalicelib.analytics import panels
else:  # Imported when one of these routes first runs (cold start: bench/cold_start.py).
    panels = lazy_module("chalicelib.analytics.panels")

analytics_api = ApiBlueprint(__name__)
TAG = "Analytics"
BASE = "/v1/programs/{program_id}/analytics"
RANGE = (("from", "string"), ("to", "string"), ("partner_id", "string"), ("granularity", "string"))
NUM = {"type": ["number", "null"]}
META = {"program_id": STR, "from": STR, "to": STR, "granularity": STR, "partner_id": nullable(STR),
        "round_trips": INT}
#: Every day counter of ``chalicelib.domain.analytics.DAY_COUNTERS`` (a row carries them all).
COUNTERS = {name: INT for name in (
    "clicks", "signups", "leads", "first_purchases", "repeat_purchases", "signups_referred",
    "first_purchases_referred", "orders", "orders_referred", "revenue", "revenue_referred", "refunds",
    "refund_amount", "reward_points", "redeemed_points", "notifications_sent", "notifications_failed",
    "notifications_skipped")}
SERIES_ROW = obj({"period": STR, **COUNTERS, "referral_rate": NUM})
SCHEMAS: dict[str, dict[str, Any]] = {
    "funnel": obj({**META, "coalition": {"type": "array", "items": SERIES_ROW},
                   "series": {"type": "array", "items": SERIES_ROW}},
                  {"partner": {"type": "array", "items": SERIES_ROW}}),
    "kfactor": obj({**META, "members": INT, "clicks": INT, "referred_first_purchases": INT,
                    "invites_per_member": NUM, "invite_conversion": NUM, "k_factor": NUM,
                    "cycle_time_median_days": nullable(INT),
                    "cycle_histogram": {"type": "array", "items": obj({"up_to_days": nullable(INT), "count": INT})},
                    "series": {"type": "array", "items": obj({"period": STR, "k_factor": NUM,
                                                              "invites_per_member": NUM,
                                                              "invite_conversion": NUM})}}),
    "cohorts": obj({**META, "scope": STR, "rows": {"type": "array", "items": obj({
        "cohort": STR, "referred": BOOL, "customers": INT, "orders": INT, "revenue": INT,
        "average_order": nullable(INT), "repeat_rate": NUM})}}),
    "roi": obj({**META, "point_value_minor": INT, "coalition": obj({"referred_revenue": INT, "reward_cost": INT,
                                                                     "reward_points": INT, "roi": NUM}),
                "partners": {"type": "array", "items": obj({"partner_id": STR, "referred_revenue": INT,
                                                            "reward_cost": INT, "reward_points": INT,
                                                            "roi": NUM})},
                "rules": {"type": "array", "items": obj({"rule_id": STR, "funding_partner_id": nullable(STR),
                                                         "rewards": INT, "reward_points": INT, "reward_cost": INT})}}),
    "leaderboard": obj({"program_id": STR, "metric": STR, "period": STR, "partner_id": nullable(STR),
                        "round_trips": INT, "rows": {"type": "array", "items": obj({
                            "rank": INT, "member_id": nullable(STR), "code": STR, "name": STR, "score": INT})}}),
    "channels": obj({**META, "scope": STR, "rows": {"type": "array", "items": obj({
        "dimension": STR, "value": STR, **COUNTERS, "referral_rate": NUM})}}),
}
DESCRIPTIONS = {
    "funnel": "Link clicks → signups → leads → first purchases → repeat purchases per period, with orders, "
              "revenue (minor units) and the referral rate (share of first purchases that came referred). "
              "`coalition` is the program's total; with a partner (a partner key is always its own) `partner` "
              "is that partner's rows and `series` points at them.",
    "kfactor": "K = invites per member (link clicks / members) × invite conversion (referred first purchases / "
               "clicks). Viral cycle time: median days from a referrer's join to their friend's first purchase, "
               "from a bounded histogram (the upper bound of the median's bucket).",
    "cohorts": "Customers by join month, referred vs other: customers, orders, revenue, average order, repeat rate "
               "(share of customers with a second order). Coalition totals.",
    "roi": "Reward cost (points × point value) vs referred revenue per partner (the funding partner of the "
           "rewards) and reward cost per rule; ROI = (referred revenue − cost) / cost. A partner sees its rows.",
    "leaderboard": "Ambassadors by `metric` (`converted`: referred first purchases, `revenue`: referred revenue) "
                   "for `period` (`YYYY-MM`, default this month, or `all`); one Query of a sorted index; ties go to "
                   "whoever reached the score first. Names masked.",
    "channels": "The funnel split by acquisition channel, UTM source/medium/campaign and link clicks by "
                "`utm_source`, summed over the range. Coalition totals.",
}


def _answer(req: ApiRequest, panel: str, result: dict[str, Any]) -> Any:
    if "text/csv" in req.headers.get("accept", ""):
        return Response(body=panels.to_csv(panel, result), status_code=200,
                        headers={"Content-Type": "text/csv; charset=utf-8"})
    return result


def _register(panel: str) -> None:
    extra = (("metric", "string"), ("period", "string"), ("limit", "integer")) if panel == "leaderboard" else ()

    def view(req: ApiRequest, program_id: str) -> Any:
        params = {name: req.query(name) for name, _ in RANGE + extra}
        if panel == "leaderboard":
            params["limit"] = str(req.int_query("limit", 20, 1, 100))
        return _answer(req, panel, panels.PANELS[panel](req.principal, program_id, params))

    view.__name__ = view.__qualname__ = f"analytics_{panel}"
    analytics_api.endpoint(f"{BASE}/{panel}", "GET", tag=TAG, query_params=RANGE + extra,
                           response_schema=SCHEMAS[panel], response_content_types=("application/json", "text/csv"),
                           summary=f"Analytics: {panel} (operator or partner key; JSON or CSV)",
                           description=DESCRIPTIONS[panel] + " `from`/`to`: dates, inclusive, at most 366 days "
                                       "(default the last 28). Figures are as fresh as the table's stream.")(view)


for _panel in SCHEMAS:  # the panels of analytics.panels.PANELS (tests/unit/test_codecache.py checks both agree)
    _register(_panel)
