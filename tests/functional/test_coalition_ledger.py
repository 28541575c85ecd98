"""One balance across partners, cross-partner referral, manual adjustments, settlement statements.

Real paths: signed events and API calls through ``chalice.test.Client`` under moto, the table's
stream read back and handed to the deployed ``table_stream`` handler (``tests.notify_support``).
"""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest

from chalicelib.domain import settlement
from chalicelib.store import keys
from chalicelib.store.ledger import BalanceItem, LedgerEntryItem, OutboxItem
from tests.functional.test_ledger_support import Shop, check_invariants, utc
from tests.notify_support import stream_poller
from tests.support import CLOCK, ApiClient

DAY = "2026-01-15"


@pytest.fixture(autouse=True)
def frozen_clock(api: ApiClient) -> None:
    CLOCK.set(utc(f"{DAY}T12:00:00Z"))


def coalition_rules(bank: str, fitness: str) -> dict[str, Any]:
    """1 % back everywhere (5 % at the fitness club); the fitness club's own referral rules fund its referrals."""
    return {
        "name": "Bank + fitness", "currency": "RUB", "point_value_minor": 100, "hold_days": 0,
        "rules": [
            {"id": "earn", "name": "Earn", "trigger": {"event": "order.paid"}, "recipient": {"type": "self"},
             "amount": {"rate_bp": 100}, "partners": {fitness: {"amount": {"rate_bp": 500}}}},
            {"id": "fit-friend", "name": "Fitness welcome", "trigger": {"event": "order.paid", "order": "first",
                                                                         "partners": [fitness]},
             "recipient": {"type": "friend"}, "amount": {"points": 300}},
            {"id": "fit-referrer", "name": "Fitness: bring a friend", "trigger": {"event": "order.paid",
                                                                                  "order": "first",
                                                                                  "partners": [fitness]},
             "recipient": {"type": "referrer", "level": 1}, "amount": {"points": 500}},
        ],
    }


class Coalition(Shop):
    def __init__(self, api: ApiClient) -> None:
        super().__init__(api, None, partners=2)
        self.bank, self.fitness = self.partners
        reply = api.put(f"/v1/programs/{self.pid}/rules",
                        coalition_rules(self.bank["partner_id"], self.fitness["partner_id"]))
        assert reply.status == 200, reply.body

    def settle(self, key: str = "operator", frm: str = DAY, to: str = DAY, **headers: str) -> Any:
        reply = self.api.get(f"/v1/programs/{self.pid}/settlement?from={frm}&to={to}", key=key, headers=headers)
        assert reply.status == 200, reply.body
        return reply.body

    def member_ledger(self, member_id: str, key: str) -> list[dict[str, Any]]:
        reply = self.api.get(f"/v1/programs/{self.pid}/members/{member_id}/ledger?limit=200", key=key)
        assert reply.status == 200, reply.body
        return reply.body["items"]  # type: ignore[no-any-return]

    def adjust(self, member_id: str, body: dict[str, Any], key: str | None = "operator",
               idem: str | None = "adj-1") -> Any:
        headers = {"Idempotency-Key": idem} if idem else {}
        return self.api.post(f"/v1/programs/{self.pid}/members/{member_id}/adjustments", body, key=key,
                             headers=headers)


def all_entries(pid: str, members: list[str]) -> list[LedgerEntryItem]:
    out: list[LedgerEntryItem] = []
    for m in members:
        pk, prefix = keys.ledger_prefix(pid, m)
        out += [e for e in LedgerEntryItem.query(pk, LedgerEntryItem.SK.startswith(prefix), consistent_read=True)
                if isinstance(e, LedgerEntryItem)]
    return out


def liability(pid: str, members: list[str]) -> int:
    """The outstanding points liability from the balances: available + pending - owed of every member."""
    total = 0
    for m in members:
        try:
            b = BalanceItem.get(*keys.balance(pid, m), consistent_read=True)
        except BalanceItem.DoesNotExist:
            continue
        total += int(b.available or 0) + int(b.pending or 0) - int(b.owed or 0)
    return total


def recomputed_rows(pid: str, members: list[str]) -> dict[str, dict[str, int]]:
    entries = [{"kind": e.kind, "points": int(e.points), "partner_id": e.partner_id,
                "funding_partner_id": e.funding_partner_id} for e in all_entries(pid, members)]
    return settlement.recompute(entries).partners


def test_cross_partner_referral_is_decided_and_funded_by_the_partner_where_the_friend_buys(api: ApiClient) -> None:
    c = Coalition(api)
    bank, fit = c.bank["partner_id"], c.fitness["partner_id"]
    olga = c.member("olga", partner=c.bank)  # a bank customer
    c.order("olga", "b-1", 100_000, partner=c.bank)  # 1 % at the bank: 10 points, bank-funded
    reply = c.order("masha", "f-1", 200_000, code=olga["code"], partner=c.fitness)
    masha = reply["member"]["member_id"]
    assert reply["attribution"]["outcome"] == "credited"
    by_rule = {(p["member_id"], p["rule_id"]): p for p in reply["rewards"]["postings"]}
    assert by_rule[(olga["member_id"], "fit-referrer")]["points"] == 500
    assert by_rule[(masha, "fit-friend")]["points"] == 300
    assert by_rule[(masha, "earn")]["points"] == 100  # the fitness club's 5 %
    entries = {(e.member_id, e.rule_id): e for e in all_entries(c.pid, [olga["member_id"], masha])}
    assert entries[(olga["member_id"], "fit-referrer")].funding_partner_id == fit
    assert entries[(olga["member_id"], "fit-referrer")].partner_id == fit
    assert entries[(olga["member_id"], "earn")].funding_partner_id == bank
    # One balance: both partners see Olga's coalition balance (10 from the bank + 500 from the fitness club).
    for key in (c.bank["api_key"], c.fitness["api_key"]):
        assert c.balance(olga["member_id"], key=key)["available"] == 510
    # The fitness club sees the referral bonus in full; the bank sees it as a coalition entry, no order details.
    fit_view = {e["entry_id"]: e for e in c.member_ledger(olga["member_id"], c.fitness["api_key"])}
    bank_view = {e["entry_id"]: e for e in c.member_ledger(olga["member_id"], c.bank["api_key"])}
    bonus = entries[(olga["member_id"], "fit-referrer")].entry_id
    own_earn = entries[(olga["member_id"], "earn")].entry_id
    assert fit_view[bonus]["redacted"] is False and fit_view[bonus]["funding_partner_id"] == fit
    assert fit_view[bonus]["business_key"]
    assert bank_view[bonus]["redacted"] is True and bank_view[bonus]["points"] == 500
    assert bank_view[bonus]["partner_id"] is None and bank_view[bonus]["business_key"] is None
    assert bank_view[bonus]["rule_id"] is None and "coalition partner" in bank_view[bonus]["reason"]
    assert bank_view[own_earn]["redacted"] is False
    assert fit_view[own_earn]["redacted"] is True and fit_view[own_earn]["business_key"] is None
    # Masha spends at the bank; the fitness club's statement of her shows a redacted redemption.
    assert c.redeem(masha, 200, "spend-1", partner_key=c.bank["api_key"]).status == 201
    spend = [e for e in c.member_ledger(masha, c.fitness["api_key"]) if e["kind"] == "redemption"]
    assert spend and spend[0]["redacted"] is True and spend[0]["redemption_id"] is None
    # Both partners see the referral in their settlement statements.
    stream_poller().drain()
    fit_rows = c.settle(c.fitness["api_key"])
    assert [p["partner_id"] for p in fit_rows["partners"]] == [fit]
    assert fit_rows["partners"][0]["funded"] == 900  # 100 + 300 + 500
    assert {(p["funding_partner_id"], p["at_partner_id"]) for p in fit_rows["pairs"]} == {(fit, fit)}
    bank_rows = c.settle(c.bank["api_key"])
    assert [p["partner_id"] for p in bank_rows["partners"]] == [bank]
    assert (bank_rows["partners"][0]["funded"], bank_rows["partners"][0]["redeemed"]) == (10, 200)
    # The fitness club funded 900 and took in nothing; the bank accepted 200 and funded 10: fit pays the bank.
    assert {"from": fit, "to": bank, "value_minor": 190 * 100} in bank_rows["transfers"]
    assert "liability_change_points" not in bank_rows


def test_settlement_reconciles_with_the_ledger_and_counts_a_redelivered_batch_once(api: ApiClient) -> None:
    c = Coalition(api)
    bank, fit = c.bank["partner_id"], c.fitness["partner_id"]
    members = []
    olga = c.member("olga", partner=c.bank)
    members.append(olga["member_id"])
    c.order("olga", "b-1", 500_000, partner=c.bank)  # 50 bank-funded
    masha = c.order("masha", "f-1", 200_000, code=olga["code"], partner=c.fitness)["member"]["member_id"]
    members.append(masha)
    c.refund("f-1", 100_000, partner=c.fitness, at=f"{DAY}T11:00:00Z")  # half of the order's points come back
    assert c.redeem(masha, 100, "s-1", partner_key=c.bank["api_key"]).status == 201
    assert c.redeem(olga["member_id"], 40, "s-2", partner_key=c.fitness["api_key"]).status == 201
    assert c.adjust(olga["member_id"], {"points": 25, "reason": "Goodwill for a late card",
                                        "partner_id": bank}).status == 201
    assert c.adjust(masha, {"points": -5, "reason": "Duplicate credit"}, idem="adj-2").status == 201
    poller = stream_poller()
    records = poller._new_records()
    assert records
    from app import app
    from infra.local_stream import lambda_record

    batch = {"Records": [lambda_record(r, "arn:stream", "eu-central-1") for r in records]}
    for _ in range(3):  # the same batch delivered three times
        assert app.handler_map["table_stream"](batch, None) == {"batchItemFailures": []}
    poller.drain()
    body = c.settle()
    rows = {p["partner_id"]: p for p in body["partners"]}
    expected = recomputed_rows(c.pid, members)
    assert {p: {k: rows[p][k] for k in settlement.COLUMNS} for p in rows} == expected
    assert set(rows) == {bank, fit, settlement.PROGRAM}
    for p in rows.values():
        assert p["net_value_minor"] == p["net_points"] * 100
        assert p["funded_value_minor"] == p["funded"] * 100
    # The nets add up to the outstanding liability (it was 0 before the period).
    assert sum(p["net_points"] for p in rows.values()) == body["liability_change_points"] == liability(c.pid, members)
    for m in members:
        check_invariants(c.pid, m)
    # Transfers from each party add up to its net value; nothing is paid twice.
    paid: dict[str, int] = {}
    for t in body["transfers"]:
        paid[t["from"]] = paid.get(t["from"], 0) + t["value_minor"]
        paid[t["to"]] = paid.get(t["to"], 0) - t["value_minor"]
    for p, row in rows.items():
        if p != settlement.PROGRAM:
            assert paid.get(p, 0) == row["net_value_minor"]
    # The CSV carries the same figures.
    reply = api.get(f"/v1/programs/{c.pid}/settlement?from={DAY}&to={DAY}", headers={"Accept": "text/csv"})
    headers = {k.lower(): v for k, v in reply.headers.items()}
    assert reply.status == 200 and headers["content-type"].startswith("text/csv"), reply.body
    table = list(csv.DictReader(io.StringIO(reply.body)))
    csv_rows = {r["partner_id"]: r for r in table if r["section"] == "partner"}
    assert {p: int(r["net_points"]) for p, r in csv_rows.items()} == {p: r["net_points"] for p, r in rows.items()}
    assert next(r for r in table if r["section"] == "liability_change")["net_points"] == str(liability(c.pid, members))
    # Another period is empty; a bad period is a 400.
    assert c.settle(frm="2026-02-01", to="2026-02-28")["partners"] == []
    assert api.get(f"/v1/programs/{c.pid}/settlement?from=2026-02-01&to=2026-01-01").status == 400
    assert api.get(f"/v1/programs/{c.pid}/settlement?from=x&to=2026-01-01").status == 400


def test_adjustments_are_operator_only_idempotent_audited_and_never_overdraw(api: ApiClient) -> None:
    c = Coalition(api)
    member = c.member("olga", partner=c.bank)["member_id"]
    c.order("olga", "b-1", 1_000_000, partner=c.bank)  # 100 points
    body = {"points": 40, "reason": "Compensation for a broken terminal", "partner_id": c.bank["partner_id"]}
    assert c.adjust(member, body, key=c.bank["api_key"]).status == 403
    assert c.adjust(member, body, idem=None).status == 400
    assert c.adjust(member, {"points": 40}).status == 422
    assert c.adjust(member, {"points": 0, "reason": "zero"}).status == 422
    assert c.adjust(member, {"points": 5, "reason": "x", "partner_id": "ptn_nobody"}).status == 422
    assert c.adjust("mbr_nobody", body).status == 404
    first = c.adjust(member, body)
    assert first.status == 201, first.body
    again = c.adjust(member, body)
    assert again.status == 200 and again.body == first.body
    assert c.adjust(member, {**body, "points": 41}).body["error"]["code"] == "idempotency_key_reused"
    assert c.balance(member)["available"] == 140
    # A debit beyond the available balance is refused, nothing written.
    refused = c.adjust(member, {"points": -141, "reason": "Too much"}, idem="adj-2")
    assert refused.status == 409 and refused.body["error"]["code"] == "insufficient_points"
    assert refused.body["error"]["details"]["available"] == 140
    assert c.balance(member)["available"] == 140
    assert c.adjust(member, {"points": -140, "reason": "Fraudulent order"}, idem="adj-2").status == 201
    assert c.balance(member)["available"] == 0
    # Audited like every entry: who, when, why.
    adjustments = [e for e in c.ledger(member) if e["kind"] == "adjustment"]
    assert sorted(e["points"] for e in adjustments) == [-140, 40]
    credit = next(e for e in adjustments if e["points"] == 40)
    assert credit["reason"] == "Compensation for a broken terminal" and credit["created_by"] == "operator"
    assert credit["reason_code"] == "manual_adjustment" and credit["created_at"].startswith(f"{DAY}T12:00:00")
    assert credit["funding_partner_id"] == c.bank["partner_id"]
    bal = check_invariants(c.pid, member)
    assert bal["available"] == 0 and bal["lifetime_earned"] == 0


@pytest.mark.parametrize("page", [500, 2])
def test_points_expire_oldest_first_per_funder_and_leave_the_liability(
        api: ApiClient, monkeypatch: pytest.MonkeyPatch, page: int) -> None:
    """The job reads each member's ledger in pages (``expiry.LEDGER_PAGE`` entries per Query): the same outcome
    with a page of 2 entries, where every member's ledger takes several Query requests."""
    from chalicelib.jobs import expiry
    from chalicelib.store.db import raw_client

    monkeypatch.setattr(expiry, "LEDGER_PAGE", page)
    ledger_queries: list[int] = []
    resumed: list[bool] = []
    in_job = []
    job = expiry.run

    def run(now: Any = None) -> Any:  # count the job's ledger reads only (not the API's ledger pages)
        in_job.append(True)
        try:
            return job(now)
        finally:
            in_job.pop()

    monkeypatch.setattr(expiry, "run", run)

    def keep(params: Any = None, model: Any = None, **_: Any) -> None:
        values = params.get("ExpressionAttributeValues") or {}
        if in_job and model.name == "Query" and any(v.get("S", "").startswith("LEDGER#") for v in values.values()):
            ledger_queries.append(params.get("Limit", 0))
            resumed.append("ExclusiveStartKey" in params)

    raw_client().meta.events.register("before-parameter-build.dynamodb", keep)
    try:
        _expire_oldest_first(api)
    finally:
        raw_client().meta.events.unregister("before-parameter-build.dynamodb", keep)
    assert ledger_queries and set(ledger_queries) == {page}  # every ledger read is a page of at most ``page``
    # With 2 entries a page, the members' ledgers (more than 2 entries) take several requests, each resumed.
    assert any(resumed) == (page == 2)


def _expire_oldest_first(api: ApiClient) -> None:
    from chalicelib.jobs import expiry

    c = Coalition(api)
    bank, fit = c.bank["partner_id"], c.fitness["partner_id"]
    assert api.patch(f"/v1/programs/{c.pid}", {"settings": {"expiry_months": 1}}).status == 200
    joined = c.member("olga", partner=c.bank)
    olga = joined["member_id"]
    c.order("olga", "b-1", 100_000, partner=c.bank, at=f"{DAY}T10:00:00Z")  # 10 bank points
    masha = c.order("masha", "f-1", 200_000, code=joined["code"], partner=c.fitness,
                    at=f"{DAY}T11:00:00Z")["member"]["member_id"]  # Masha 100 + 300, Olga 500 (fitness)
    CLOCK.set(utc("2026-01-20T12:00:00Z"))
    assert c.redeem(masha, 150, "spend-1", partner_key=c.bank["api_key"]).status == 201  # takes the oldest first
    c.order("masha", "b-2", 100_000, partner=c.bank, at="2026-02-01T10:00:00Z")  # 10 bank points, newer
    # A month after the points became available (cutoff 2026-01-16 12:00): January's points that are left expire.
    now = utc("2026-02-16T12:00:00Z")
    CLOCK.set(now)
    first = expiry.run(now)
    assert (first["programs"], first["members"], first["points"]) == (1, 2, 510 + 250)
    # Masha's February points expire within the warning window (14 days): one points_expiring message.
    assert first["warned"] == 1
    again = expiry.run(now)
    assert (again["points"], again["warned"]) == (0, 0)  # the same run again posts and sends nothing
    warnings = [m for m in OutboxItem.scan() if isinstance(m, OutboxItem) and m.template == "points_expiring"]
    assert [(m.member_id, m.params["points"], m.params["expires_on"]) for m in warnings] == [
        (masha, 10, "2026-03-02")]
    assert c.balance(olga)["available"] == 0 and c.balance(masha)["available"] == 10
    expired = {(e.member_id, e.funding_partner_id): int(e.points)
               for e in all_entries(c.pid, [olga, masha]) if e.kind == "expiry"}
    assert expired == {(olga, bank): -10, (olga, fit): -500, (masha, fit): -250}
    for m in (olga, masha):
        check_invariants(c.pid, m)
    later = utc("2026-03-02T12:00:00Z")  # cutoff 2026-02-02: Masha's February points are now due too
    CLOCK.set(later)
    assert expiry.run(later)["points"] == 10
    assert c.balance(masha)["available"] == 0
    # The member's statement shows them; the settlement counts them per funder and the liability falls to 0.
    assert [e["reason_code"] for e in c.ledger(masha) if e["kind"] == "expiry"] == ["points_expired"] * 2
    stream_poller().drain()
    body = c.settle(frm=DAY, to="2026-03-02")
    rows = {p["partner_id"]: p for p in body["partners"]}
    assert (rows[bank]["expired"], rows[fit]["expired"]) == (20, 750)
    assert {p: {k: rows[p][k] for k in settlement.COLUMNS} for p in rows} == recomputed_rows(c.pid, [olga, masha])
    assert body["liability_change_points"] == liability(c.pid, [olga, masha]) == 0


def test_stream_markers_expire_by_the_one_injected_clock(api: ApiClient) -> None:
    """The settlement feed's and analytics' "counted once" markers take their TTL from the service's clock (the Clock port),
    not the wall clock: with the clock frozen on 2026-01-15 their expiry is that day plus the TTL."""
    from chalicelib import aws
    from chalicelib.analytics.store import SEEN_TTL_SECONDS
    from chalicelib.config import get_settings
    from chalicelib.store.settlement import MARKER_TTL_DAYS

    c = Coalition(api)
    c.order("olga", "b-1", 500_000, partner=c.bank)
    stream_poller().drain()
    frozen = int(CLOCK.now().timestamp())
    items = aws.client("dynamodb").scan(TableName=get_settings().table_name)["Items"]  # a test's small table

    def expiries(prefix: str) -> set[int]:
        return {int(i["expires_at_epoch"]["N"]) for i in items if i["PK"]["S"].startswith(prefix)}

    assert expiries("SETTLED#") == {frozen + MARKER_TTL_DAYS * 86400}
    assert expiries("AGG#SEEN#") == {frozen + SEEN_TTL_SECONDS}
