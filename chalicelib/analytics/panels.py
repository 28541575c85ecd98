"""Dashboard panels from the pre-aggregated items: each a bounded number of Queries (≤ 5 round trips).

A partner key sees its own rows (``partner_id`` forced to its own) plus the coalition's totals; the
operator sees every partner and may filter by ``partner_id``.
"""

from __future__ import annotations

import csv
import io
from datetime import date
from typing import Any

from chalicelib.analytics import store
from chalicelib.domain import analytics as fig
from chalicelib.domain.errors import BadRequest, NotFound
from chalicelib.services import ports
from chalicelib.services.auth import Principal


def _scope(principal: Principal, program_id: str, partner_id: str | None) -> str | None:
    principal.require_program(program_id)
    principal.require_server_key()
    if principal.is_operator:
        return partner_id or None
    if partner_id and partner_id != principal.partner_id:
        raise NotFound("Partner not found", details={"partner_id": partner_id})
    return principal.partner_id


def _range(raw_from: str | None, raw_to: str | None) -> tuple[date, date]:
    try:
        return fig.parse_range(raw_from, raw_to, ports.current().clock.now().date())
    except fig.RangeError as exc:
        raise BadRequest(str(exc), code="invalid_range", details=exc.details) from exc


def _granularity(raw: str | None) -> str:
    value = raw or "day"
    if value not in fig.GRANULARITIES:
        raise BadRequest("'granularity' must be day, week or month", code="invalid_query",
                         details={"parameter": "granularity", "allowed": list(fig.GRANULARITIES)})
    return value


def _days(program_id: str, kind: str, start: date, end: date) -> tuple[list[dict[str, Any]], int]:
    return store.query_range(store.partition(program_id, kind), start.isoformat(), end.isoformat() + "#~")


def _rows(items: list[dict[str, Any]], partner: str | None = None) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for item in items:
        day, _, rest = item["SK"].partition("#")
        if partner is None or rest == partner:
            out.append((day, item))
    return out


def _series(rows: list[tuple[str, dict[str, Any]]], granularity: str, start: date, end: date) -> list[dict[str, Any]]:
    names = (*fig.DAY_COUNTERS, *(f"cycle_{i}" for i in range(fig.CYCLE_BUCKETS)))
    found = fig.roll_up(rows, granularity, names)
    out = []
    for period in fig.periods(start, end, granularity):
        counters = found.get(period) or dict.fromkeys(names, 0)
        row = {"period": period, **{n: counters[n] for n in fig.DAY_COUNTERS}}
        row["referral_rate"] = fig.referral_rate(counters["first_purchases"], counters["first_purchases_referred"])
        out.append(row)
    return out


def _meta(program_id: str, start: date, end: date, granularity: str, partner: str | None,
          trips: int) -> dict[str, Any]:
    return {"program_id": program_id, "from": start.isoformat(), "to": end.isoformat(), "granularity": granularity,
            "partner_id": partner, "round_trips": trips}


def funnel(principal: Principal, program_id: str, q: dict[str, str | None]) -> dict[str, Any]:
    partner = _scope(principal, program_id, q.get("partner_id"))
    start, end = _range(q.get("from"), q.get("to"))
    granularity = _granularity(q.get("granularity"))
    totals, trips = _days(program_id, "DAY", start, end)
    out = {**_meta(program_id, start, end, granularity, partner, trips), "coalition": _series(_rows(totals), granularity, start, end)}
    if partner:
        rows, more = _days(program_id, "PARTNERDAY", start, end)
        out["partner"] = _series(_rows(rows, partner), granularity, start, end)
        out["round_trips"] += more
    out["series"] = out.get("partner", out["coalition"])
    return out


def kfactor(principal: Principal, program_id: str, q: dict[str, str | None]) -> dict[str, Any]:
    partner = _scope(principal, program_id, q.get("partner_id"))
    start, end = _range(q.get("from"), q.get("to"))
    granularity = _granularity(q.get("granularity"))
    items, trips = _days(program_id, "DAY", start, end)
    total = store.get(store.partition(program_id, "TOTAL"), "TOTAL") or {}
    names = ("clicks", "first_purchases_referred", "signups", *(f"cycle_{i}" for i in range(fig.CYCLE_BUCKETS)))
    whole = fig.roll_up(((start.isoformat(), c) for _, c in _rows(items)), "month", names)
    sums = next(iter(whole.values()), dict.fromkeys(names, 0))
    # Members at the period's end: all members so far minus those who joined after it (none when `to` is today).
    members = int(total.get("members", 0))
    histogram = [sums[f"cycle_{i}"] for i in range(fig.CYCLE_BUCKETS)]
    series = []
    for period, c in fig.roll_up(_rows(items), granularity, names).items():
        series.append({"period": period, **fig.kfactor(c["clicks"], c["first_purchases_referred"], members)})
    return {**_meta(program_id, start, end, granularity, partner, trips + 1), "members": members,
            "clicks": sums["clicks"], "referred_first_purchases": sums["first_purchases_referred"],
            **fig.kfactor(sums["clicks"], sums["first_purchases_referred"], members),
            "cycle_time_median_days": fig.cycle_median_days(histogram),
            "cycle_histogram": [{"up_to_days": b, "count": n} for b, n in
                                zip([*fig.CYCLE_BOUNDS_DAYS, None], histogram, strict=True)],
            "series": series}


def cohorts(principal: Principal, program_id: str, q: dict[str, str | None]) -> dict[str, Any]:
    partner = _scope(principal, program_id, q.get("partner_id"))
    start, end = _range(q.get("from"), q.get("to"))
    items, trips = store.query_range(store.partition(program_id, "COHORT"), start.isoformat()[:7],
                                     end.isoformat()[:7] + "#~")
    rows = []
    for item in items:
        month, _, kind = item["SK"].partition("#")
        rows.append(fig.cohort_row(month, kind == "referred", item))
    return {**_meta(program_id, start, end, "month", partner, trips), "scope": "coalition", "rows": rows}


def _point_value(program_id: str) -> int:
    from chalicelib.store import tenancy_repo

    return int(tenancy_repo.get_program(program_id).point_value_minor or 0)


def roi(principal: Principal, program_id: str, q: dict[str, str | None]) -> dict[str, Any]:
    partner = _scope(principal, program_id, q.get("partner_id"))
    start, end = _range(q.get("from"), q.get("to"))
    value = _point_value(program_id)
    partner_items, trips = _days(program_id, "PARTNERDAY", start, end)
    rule_items, more = _days(program_id, "RULEDAY", start, end)
    by_partner: dict[str, dict[str, int]] = {}
    for item in partner_items:
        pid = item["SK"].split("#", 1)[1]
        acc = by_partner.setdefault(pid, {"revenue_referred": 0, "reward_points": 0})
        acc["revenue_referred"] += int(item.get("revenue_referred", 0))
        acc["reward_points"] += int(item.get("reward_points", 0))
    by_rule: dict[tuple[str, str], dict[str, int]] = {}
    for item in rule_items:
        _, rule, funding = item["SK"].split("#", 2)
        acc = by_rule.setdefault((rule, funding), {"reward_points": 0, "rewards": 0})
        acc["reward_points"] += int(item.get("reward_points", 0))
        acc["rewards"] += int(item.get("rewards", 0))
    coalition = {"revenue_referred": sum(a["revenue_referred"] for a in by_partner.values()),
                 "reward_points": sum(a["reward_points"] for a in by_partner.values())}
    partners = [{"partner_id": pid, **fig.roi(a["revenue_referred"], a["reward_points"], value)}
                for pid, a in sorted(by_partner.items()) if partner is None or pid == partner]
    rules = [{"rule_id": rule, "funding_partner_id": None if funding == "-" else funding,
              "rewards": a["rewards"], "reward_points": a["reward_points"], "reward_cost": a["reward_points"] * value}
             for (rule, funding), a in sorted(by_rule.items()) if partner is None or funding == partner]
    return {**_meta(program_id, start, end, "day", partner, trips + more), "point_value_minor": value,
            "coalition": fig.roi(coalition["revenue_referred"], coalition["reward_points"], value),
            "partners": partners, "rules": rules}


def channels(principal: Principal, program_id: str, q: dict[str, str | None]) -> dict[str, Any]:
    partner = _scope(principal, program_id, q.get("partner_id"))
    start, end = _range(q.get("from"), q.get("to"))
    items, trips = _days(program_id, "CHDAY", start, end)
    acc: dict[tuple[str, str], dict[str, int]] = {}
    for item in items:
        _, dim, label = item["SK"].split("#", 2)
        row = acc.setdefault((dim, label), dict.fromkeys(fig.DAY_COUNTERS, 0))
        for name in fig.DAY_COUNTERS:
            row[name] += int(item.get(name, 0))
    kinds = {"ch": "channel", "utm": "utm", "src": "click_source"}
    rows = [{"dimension": kinds.get(dim, dim), "value": label, **counters,
             "referral_rate": fig.referral_rate(counters["first_purchases"], counters["first_purchases_referred"])}
            for (dim, label), counters in sorted(acc.items())]
    return {**_meta(program_id, start, end, "day", partner, trips), "scope": "coalition", "rows": rows}


def leaderboard(principal: Principal, program_id: str, q: dict[str, str | None]) -> dict[str, Any]:
    partner = _scope(principal, program_id, q.get("partner_id"))
    metric = q.get("metric") or "converted"
    if metric not in fig.LEADERBOARD_METRICS:
        raise BadRequest("'metric' must be converted or revenue", code="invalid_query",
                         details={"parameter": "metric", "allowed": list(fig.LEADERBOARD_METRICS)})
    period = q.get("period") or ports.current().clock.now().strftime("%Y-%m")
    if period != "all" and not (len(period) == 7 and period[4] == "-" and period.replace("-", "").isdigit()):
        raise BadRequest("'period' must be YYYY-MM or all", code="invalid_query", details={"parameter": "period"})
    limit = int(q.get("limit") or 20)
    items = store.leaderboard(program_id, metric, period, limit)
    # Member ids are for the operator; a partner sees the code and the masked name.
    rows = [{"rank": i + 1, "member_id": item.get("member_id") if principal.is_operator else None,
             "code": item.get("code"),
             "name": item.get("masked_name"), "score": int(item.get("score", 0))} for i, item in enumerate(items)]
    return {"program_id": program_id, "metric": metric, "period": period, "partner_id": partner, "round_trips": 1,
            "rows": rows}


PANELS = {"funnel": funnel, "kfactor": kfactor, "cohorts": cohorts, "roi": roi, "leaderboard": leaderboard,
          "channels": channels}


def to_csv(panel: str, result: dict[str, Any]) -> str:
    """A panel's rows as CSV (header row first): the series or rows of the panel."""
    found = result.get("series") if panel in ("funnel", "kfactor") else result.get("rows")
    rows: list[dict[str, Any]] = list(found or [])
    if panel == "roi":
        rows = [{"kind": "partner", **r} for r in result.get("partners", [])] + \
               [{"kind": "rule", **r} for r in result.get("rules", [])]
    out = io.StringIO()
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    writer = csv.DictWriter(out, fieldnames=columns or ["empty"], lineterminator="\r\n", extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    return out.getvalue()

