"""Property: random histories of earn / spend / refund / adjust / cancel / expire across 3 partners, through the real
API and the real stream handler (each example on a fresh table; the stream's batches delivered twice),
give a settlement whose nets sum to the change of the outstanding points liability and whose every partner
row equals a recomputation from the ledger."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chalicelib.domain import clock, settlement
from chalicelib.jobs import expiry
from tests.conftest import fresh_table, moto_aws
from tests.functional.test_coalition_ledger import all_entries, liability
from tests.functional.test_ledger_support import Shop, utc
from tests.support import CLOCK, ApiClient, Reply

DAY = "2026-03-10"
CUSTOMERS = ("anna", "boris", "vera")

step = st.one_of(
    st.tuples(st.just("earn"), st.integers(0, 2), st.sampled_from(CUSTOMERS), st.integers(1, 50)),
    st.tuples(st.just("spend"), st.integers(0, 2), st.sampled_from(CUSTOMERS), st.integers(1, 400)),
    st.tuples(st.just("refund"), st.integers(0, 2), st.integers(0, 9), st.integers(1, 100)),
    st.tuples(st.just("adjust"), st.integers(-1, 2), st.sampled_from(CUSTOMERS), st.integers(-200, 200)),
    st.tuples(st.just("cancel_spend"), st.integers(0, 9)),
    st.tuples(st.just("expire"), st.integers(20, 40)),  # the clock moves on N days, then the expiry job runs
)


@pytest.fixture(scope="module")
def moto() -> Iterator[None]:
    with moto_aws():
        yield


def rules(partners: list[str]) -> dict[str, Any]:
    rates = [100, 300, 500]
    return {"name": "Three partners", "currency": "RUB", "point_value_minor": 100, "hold_days": 0,
            "rules": [{"id": "earn", "name": "Earn", "trigger": {"event": "order.paid"},
                       "recipient": {"type": "self"}, "amount": {"rate_bp": 100},
                       "partners": {p: {"amount": {"rate_bp": r}} for p, r in zip(partners, rates, strict=True)}}]}


def run_history(api: ApiClient, steps: list[tuple[Any, ...]]) -> None:
    from tests.notify_support import stream_poller

    shop = Shop(api, None, partners=3)
    pids = [p["partner_id"] for p in shop.partners]
    assert api.put(f"/v1/programs/{shop.pid}/rules", rules(pids)).status == 200
    assert api.patch(f"/v1/programs/{shop.pid}", {"settings": {"expiry_months": 1}}).status == 200
    members: dict[str, str] = {}
    orders: list[tuple[int, str]] = []
    spends: list[tuple[str, str, int]] = []
    reply: Reply
    for n, s in enumerate(steps):
        kind = s[0]
        if kind == "earn":
            _, p, who, amount = s
            result = shop.order(who, f"o-{n}", amount * 10_000, at=clock.iso(CLOCK.now() - timedelta(hours=1)),
                                partner=shop.partners[p])
            members[who] = result["member"]["member_id"]
            orders.append((p, f"o-{n}"))
        elif kind == "spend" and s[2] in members:
            _, p, who, points = s
            reply = shop.redeem(members[who], points, f"k-{n}", partner_key=shop.partners[p]["api_key"])
            assert reply.status in (201, 409), reply.body
            if reply.status == 201:
                spends.append((members[who], reply.body["redemption_id"], p))
        elif kind == "refund" and orders:
            _, _, i, percent = s
            p, order_id = orders[i % len(orders)]
            shop.send_raw(shop.refund_event(order_id, percent * 100, at=clock.iso(CLOCK.now())),
                          partner=shop.partners[p])
        elif kind == "adjust" and s[2] in members and s[3]:
            _, p, who, points = s
            body: dict[str, Any] = {"points": points, "reason": "property test"}
            if p >= 0:
                body["partner_id"] = pids[p]
            reply = api.post(f"/v1/programs/{shop.pid}/members/{members[who]}/adjustments", body,
                             headers={"Idempotency-Key": f"a-{n}"})
            assert reply.status in (201, 409), reply.body
        elif kind == "expire":
            later = CLOCK.now() + timedelta(days=s[1])
            CLOCK.set(later)
            expiry.run(later)
        elif kind == "cancel_spend" and spends:
            member, rid, p = spends[s[1] % len(spends)]
            reply = api.post(f"/v1/programs/{shop.pid}/members/{member}/redemptions/{rid}/cancel",
                             key=shop.partners[p]["api_key"])
            assert reply.status == 200, reply.body
    # Every stream batch delivered twice (a redelivery must count once).
    poller = stream_poller()
    for _ in range(3):
        records = poller._new_records()
        if not records:
            break
        poller.invoke(records)
        poller.invoke(records)
    end = clock.iso(CLOCK.now())[:10]
    body = api.get(f"/v1/programs/{shop.pid}/settlement?from={DAY}&to={end}").body
    ids = list(members.values())
    entries: list[dict[str, Any]] = [{"kind": e.kind, "points": int(e.points), "partner_id": e.partner_id,
                "funding_partner_id": e.funding_partner_id} for e in all_entries(shop.pid, ids)]
    expected = settlement.recompute(entries).partners
    got = {p["partner_id"]: {c: p[c] for c in settlement.COLUMNS} for p in body["partners"]}
    assert got == {p: row for p, row in expected.items() if any(row.values()) or p in got}
    nets = sum(int(p["net_points"]) for p in body["partners"])
    assert nets == body["liability_change_points"] == liability(shop.pid, ids)  # liability was 0 before
    assert nets == sum(int(e["points"]) for e in entries)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(step, min_size=1, max_size=14))
def test_random_histories_reconcile(moto: None, steps: list[tuple[Any, ...]]) -> None:
    try:
        with fresh_table() as api:
            CLOCK.set(utc(f"{DAY}T12:00:00Z"))  # after fresh_table, which resets the clock
            run_history(api, steps)
    finally:
        CLOCK.set(None)
