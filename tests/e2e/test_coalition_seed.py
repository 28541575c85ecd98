"""The coalition seed scenario over real HTTP on the local run (moto server + Chalice local server + stream).

A bank and a fitness club in one program. Olga, a bank customer, invites Masha; Masha's first
purchase is at the fitness club. Olga gets bank points and a fitness voucher from the club's pool,
Masha her welcome reward (funded by the fitness club); Masha spends points at the bank. The
settlement statement shows what each partner funded, what was redeemed where and who owes whom.
"""

from __future__ import annotations

import csv
import io
import json
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from chalicelib.domain.webhook_signature import sign
from tests.e2e.test_local_run import Running, running, start  # noqa: F401  (the local-run fixtures)

pytestmark = pytest.mark.e2e


def http(base: str, method: str, path: str, key: str | None = None, body: Any = None,
         headers: dict[str, str] | None = None, raw: bytes | None = None) -> tuple[int, Any]:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    if key:
        all_headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(base + path, data=data, method=method, headers=all_headers)
    try:
        with urllib.request.urlopen(request, timeout=15) as reply:
            status, payload, media = reply.status, reply.read(), reply.headers.get("Content-Type", "")
    except urllib.error.HTTPError as err:
        status, payload, media = err.code, err.read(), err.headers.get("Content-Type", "")
    if "json" in media:
        return status, json.loads(payload or b"null")
    return status, payload.decode("utf-8")


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def test_bank_and_fitness_club_seed_scenario(running: Running) -> None:  # noqa: F811
    base, op = running.info["base_url"], running.info["operator_key"]
    status, program = http(base, "POST", "/v1/programs", op, {"name": "Банк + Фитнес", "currency": "RUB",
                                                               "point_value_minor": 100})
    assert status == 201, program
    pid = program["program_id"]
    _, bank = http(base, "POST", f"/v1/programs/{pid}/partners", op, {"name": "Банк"})
    _, fit = http(base, "POST", f"/v1/programs/{pid}/partners", op, {"name": "Фитнес-клуб"})
    bank_id, fit_id = bank["partner_id"], fit["partner_id"]
    # The fitness club's offer: a month's subscription at 10 % off, backed by a pool of unique codes.
    status, offer = http(base, "POST", f"/v1/programs/{pid}/partners/{fit_id}/offers", fit["api_key"], {
        "name": "Месяц фитнеса −10 %", "kind": "percent_off", "percent": 10, "code_source": "pool"})
    assert status == 201, offer
    status, uploaded = http(base, "POST", f"/v1/programs/{pid}/partners/{fit_id}/offers/{offer['offer_id']}/codes",
                            fit["api_key"], {"codes": ["FIT-0001", "FIT-0002", "FIT-0003"]})
    assert status == 200, uploaded
    voucher = {"partner_id": fit_id, "offer_id": offer["offer_id"]}
    first_at_fitness = {"event": "order.paid", "order": "first", "partners": [fit_id]}
    status, rules = http(base, "PUT", f"/v1/programs/{pid}/rules", op, {
        "name": "Bank + fitness", "hold_days": 0, "rules": [
            {"id": "earn", "name": "1 % back, 5 % at the fitness club", "trigger": {"event": "order.paid"},
             "recipient": {"type": "self"}, "amount": {"rate_bp": 100},
             "partners": {fit_id: {"amount": {"rate_bp": 500}}}},
            {"id": "bank-referrer", "name": "The bank thanks the referrer", "trigger": first_at_fitness,
             "recipient": {"type": "referrer", "level": 1}, "amount": {"points": 500}, "funded_by": bank_id},
            {"id": "fitness-referrer-voucher", "name": "A fitness voucher for the referrer",
             "trigger": first_at_fitness, "recipient": {"type": "referrer", "level": 1},
             "amount": {"offer": voucher}},
            {"id": "fitness-welcome", "name": "Welcome to the fitness club", "trigger": first_at_fitness,
             "recipient": {"type": "friend"}, "amount": {"points": 300}},
        ]})
    assert status == 200, rules

    def send(partner: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
        raw = json.dumps(event).encode()
        msg_id, ts = f"msg_{partner['partner_id']}_{event['object']['id']}", int(time.time())
        signature = sign(partner["webhook_secrets"]["events"], msg_id, ts, raw)
        status, reply = http(base, "POST", f"/v1/webhooks/{partner['partner_id']}/events", raw=raw, headers={
            "webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": signature})
        assert status == 200, reply
        return reply  # type: ignore[no-any-return]

    # Olga is the bank's customer.
    olga = send(bank, {"type": "member.signup", "occurred_at": _now(), "object": {"type": "customer", "id": "b-olga"},
                       "customer": {"id": "b-olga", "email": "olga@example.com", "name": "Olga"}})["member"]
    # Masha, invited by Olga, buys a 20 000 ₽ subscription at the fitness club.
    paid = send(fit, {"type": "order.paid", "occurred_at": _now(), "object": {"type": "order", "id": "fit-1"},
                      "customer": {"id": "f-masha", "email": "masha@example.com", "name": "Masha"},
                      "order": {"total": 2_000_000, "currency": "RUB"}, "referral": {"code": olga["code"]}})
    assert paid["attribution"]["outcome"] == "credited"
    masha_id = paid["member"]["member_id"]
    postings = {(p["member_id"], p["rule_id"]): p["points"] for p in paid["rewards"]["postings"]}
    assert postings == {(olga["member_id"], "bank-referrer"): 500, (masha_id, "fitness-welcome"): 300,
                        (masha_id, "earn"): 1000}
    assert [(v["member_id"], v["rule_id"]) for v in paid["rewards"]["vouchers"]] == [
        (olga["member_id"], "fitness-referrer-voucher")]
    status, olga_vouchers = http(base, "GET", f"/v1/programs/{pid}/members/{olga['member_id']}/vouchers", op)
    assert status == 200, olga_vouchers
    assert [v["code"] in ("FIT-0001", "FIT-0002", "FIT-0003") for v in olga_vouchers["items"]] == [True]
    # One balance: the bank sees Olga's 500 bank points and Masha's 1 300 fitness points.
    status, balance = http(base, "GET", f"/v1/programs/{pid}/members/{olga['member_id']}/balance", bank["api_key"])
    assert (status, balance["available"]) == (200, 500)
    status, found = http(base, "GET", f"/v1/programs/{pid}/members/lookup?email=masha@example.com", bank["api_key"])
    assert status == 200 and found["member_id"] == masha_id
    # Masha spends 1 200 points (12 000 ₽) at the bank.
    status, spent = http(base, "POST", f"/v1/programs/{pid}/members/{masha_id}/redemptions", bank["api_key"],
                         {"points": 1200, "order_id": "bank-cashout-1"}, headers={"Idempotency-Key": "masha-1"})
    assert status == 201, spent
    # The bank's view of Masha's ledger: its own redemption in full, the fitness club's entries redacted.
    _, ledger = http(base, "GET", f"/v1/programs/{pid}/members/{masha_id}/ledger", bank["api_key"])
    assert sorted((e["kind"], e["points"], e["redacted"]) for e in ledger["items"]) == [
        ("redemption", -1200, False), ("reward", 300, True), ("reward", 1000, True)]

    # The settlement statement (fed from the stream: poll until it has caught up).
    day = _now()[:10]
    deadline = time.monotonic() + 60
    while True:
        status, settle = http(base, "GET", f"/v1/programs/{pid}/settlement?from={day}&to={day}", op)
        assert status == 200, settle
        rows = {p["partner_id"]: p for p in settle["partners"]}
        if rows.get(bank_id, {}).get("redeemed") == 1200 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert {p: (r["funded"], r["redeemed"], r["net_points"], r["net_value_minor"]) for p, r in rows.items()} == {
        bank_id: (500, 1200, -700, -70_000), fit_id: (1300, 0, 1300, 130_000)}
    assert {(p["funding_partner_id"], p["at_partner_id"], p["points"]) for p in settle["pairs"]} == {
        (bank_id, fit_id, 500), (fit_id, fit_id, 1300)}
    # The bank accepted 700 points more than it funded: the fitness club pays it 7 000 ₽; the rest of the
    # fitness club's net (600 points still in members' balances) is the liability it owes the program.
    assert settle["transfers"] == [{"from": fit_id, "to": bank_id, "value_minor": 70_000},
                                   {"from": fit_id, "to": "program", "value_minor": 60_000}]
    assert settle["liability_change_points"] == 600  # 500 + 1300 earned − 1200 spent
    # Each partner sees its own rows; the CSV carries the same figures.
    _, bank_view = http(base, "GET", f"/v1/programs/{pid}/settlement?from={day}&to={day}", bank["api_key"])
    assert [p["partner_id"] for p in bank_view["partners"]] == [bank_id]
    status, text = http(base, "GET", f"/v1/programs/{pid}/settlement?from={day}&to={day}", op,
                        headers={"Accept": "text/csv"})
    assert status == 200
    table = {(r["section"], r["partner_id"]): r for r in csv.DictReader(io.StringIO(text))}
    assert table[("partner", fit_id)]["funded"] == "1300" and table[("partner", bank_id)]["redeemed"] == "1200"
