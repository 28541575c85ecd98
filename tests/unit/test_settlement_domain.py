"""Settlement arithmetic: attribution of entries to partners, nets, who pays whom."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from chalicelib.domain import settlement
from chalicelib.domain.settlement import PROGRAM, attribute, net_points, recompute, transfers


def test_earning_entries_count_for_the_funder_and_spending_for_the_partner_where_it_happened() -> None:
    assert attribute("reward", 500, "fit", "bank") == settlement.Attribution("bank", "funded", 500, ("bank", "fit"))
    assert attribute("reversal", -50, "fit", "bank") == settlement.Attribution("bank", "funded", -50, ("bank", "fit"))
    assert attribute("redemption", -200, "bank", None) == settlement.Attribution("bank", "redeemed", 200, None)
    assert attribute("redemption_return", 200, "bank", None).points == -200  # type: ignore[union-attr]
    assert attribute("expiry", -30, None, "fit") == settlement.Attribution("fit", "expired", 30, None)
    assert attribute("adjustment", 10, None, None) == settlement.Attribution(PROGRAM, "adjusted", 10, None)
    assert attribute("reward", 5, "fit", None).partner == "fit"  # type: ignore[union-attr]
    assert attribute("something_else", 5, "fit", None) is None


def test_nets_sum_to_the_points_of_all_entries() -> None:
    entries = [{"kind": "reward", "points": 500, "partner_id": "fit", "funding_partner_id": "fit"},
               {"kind": "reward", "points": 10, "partner_id": "bank", "funding_partner_id": "bank"},
               {"kind": "redemption", "points": -200, "partner_id": "bank"},
               {"kind": "expiry", "points": -20, "funding_partner_id": "fit"}]
    rows = recompute(entries).partners
    assert net_points(rows["fit"]) == 480 and net_points(rows["bank"]) == -190
    assert sum(net_points(r) for r in rows.values()) == sum(e["points"] for e in entries)  # type: ignore[misc]


def test_transfers_debtors_pay_creditors_and_the_rest_is_the_programs() -> None:
    assert transfers({"fit": 48_000, "bank": -19_000}) == [
        {"from": "fit", "to": "bank", "value_minor": 19_000}, {"from": "fit", "to": PROGRAM, "value_minor": 29_000}]
    assert transfers({"a": 100, "b": 50, "c": -120}) == [
        {"from": "a", "to": "c", "value_minor": 100}, {"from": "b", "to": "c", "value_minor": 20},
        {"from": "b", "to": PROGRAM, "value_minor": 30}]
    assert transfers({"a": -10, PROGRAM: 10}) == [{"from": PROGRAM, "to": "a", "value_minor": 10}]


@given(st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), st.integers(-10**6, 10**6)))
def test_transfers_settle_every_net_exactly(nets: dict[str, int]) -> None:
    balance = dict.fromkeys(nets, 0)
    for t in transfers(nets):
        assert t["value_minor"] > 0
        balance[t["from"]] = balance.get(t["from"], 0) + t["value_minor"]
        balance[t["to"]] = balance.get(t["to"], 0) - t["value_minor"]
    for partner, net in nets.items():
        assert balance[partner] == net
