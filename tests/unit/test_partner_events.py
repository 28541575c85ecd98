"""Outgoing partner webhooks: the event builders, delivery ids and the local run's sender period (no AWS)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from chalicelib.domain import partner_hooks
from chalicelib.notify import dispatcher
from chalicelib.notify import partner_events as pe
from chalicelib.store import partner_hooks as store
from chalicelib.store.ledger import LedgerEntryItem, RedemptionItem
from chalicelib.store.offers import PoolAlertItem, VoucherItem

AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def record(event_name: str = "INSERT") -> dispatcher.StreamRecord:
    return dispatcher.StreamRecord(event_name, "1", {}, {"entity": {"S": "x"}})


def entry(**fields: Any) -> LedgerEntryItem:
    base: dict[str, Any] = dict(program_id="prg", member_id="mbr_1", entry_id="le_1", kind="reward",
                                status="available", points=120, reason="r", reason_code="rule_reward",
                                created_at=AT, effective_at=AT, partner_id="ptn_fit", funding_partner_id="ptn_bank",
                                rule_id="cashback", business_key="prg|ptn_fit|order|o%7C1001|order.paid")
    return LedgerEntryItem(**{**base, **fields})


def test_a_reward_goes_to_where_it_was_earned_and_to_its_funder_with_the_order_only_for_the_first() -> None:
    events = pe.reward_posted(record(), entry())
    assert [(e.partner_id, e.event_type, e.source_id) for e in events] == [
        ("ptn_bank", "reward.posted", "ledger_entry:le_1"), ("ptn_fit", "reward.posted", "ledger_entry:le_1")]
    bank, fit = events
    assert fit.data["order_id"] == "o|1001" and "order_id" not in bank.data
    assert fit.data["member_id"] == "mbr_1" and fit.data["points"] == 120
    one = pe.reward_posted(record(), entry(funding_partner_id="ptn_fit"))
    assert [e.partner_id for e in one] == ["ptn_fit"]


def test_only_new_positive_rewards_count() -> None:
    assert pe.reward_posted(record("MODIFY"), entry()) == []
    assert pe.reward_posted(record(), entry(kind="redemption", points=-50)) == []
    assert pe.reward_posted(record(), entry(kind="reversal", points=-120)) == []
    assert pe.reward_posted(record(), object()) == []


def test_vouchers_pool_alerts_and_confirmed_redemptions() -> None:
    voucher = VoucherItem(program_id="prg", member_id="mbr_1", voucher_id="vch_1", offer_id="off_1",
                          partner_id="ptn_cafe", code="CAFE-1", code_source="pool", name="Coffee", kind="free_item",
                          reason="r", reason_code="offer_reward", business_key="bk", issued_at=AT)
    [v] = pe.voucher_issued(record(), voucher)
    assert (v.partner_id, v.event_type, v.data["code"], v.data["expires_at"]) == ("ptn_cafe", "voucher.issued",
                                                                                 "CAFE-1", None)
    alert = PoolAlertItem(program_id="prg", partner_id="ptn_cafe", offer_id="off_1", epoch=2, threshold=5,
                          remaining=4, created_at=AT)
    [low] = pe.pool_low(record(), alert)
    assert low.source_id == "pool_alert:off_1:2" and low.data == {"offer_id": "off_1", "remaining": 4,
                                                                  "threshold": 5, "epoch": 2}
    redemption = RedemptionItem(program_id="prg", redemption_id="rdm_1", member_id="mbr_1", partner_id="ptn_fit",
                                points=100, value_minor=10000, currency="RUB", order_id="o-9", status="held",
                                request_hash="h", entry_sk="s", created_at=AT, updated_at=AT)
    assert pe.redemption_confirmed(record("MODIFY"), redemption) == []
    redemption.status = "confirmed"
    [confirmed] = pe.redemption_confirmed(record("MODIFY"), redemption)
    assert confirmed.data["order_id"] == "o-9" and confirmed.source_id == "redemption:rdm_1:confirmed"
    redemption.status = "cancelled"
    assert pe.redemption_confirmed(record("MODIFY"), redemption) == []


def test_every_builder_is_on_the_one_dispatcher_and_makes_known_types() -> None:
    assert {"ledger_entry", "voucher", "pool_alert", "redemption"} <= set(pe.BUILDERS)
    assert set(pe.BUILDERS) <= set(dispatcher.handled_entities())


def test_delivery_ids_are_stable_per_endpoint_and_source_and_sort_by_time() -> None:
    a = store.delivery_id("prg", "whe_1", "ledger_entry:le_1", "reward.posted", AT)
    assert a == store.delivery_id("prg", "whe_1", "ledger_entry:le_1", "reward.posted", AT)
    assert a != store.delivery_id("prg", "whe_2", "ledger_entry:le_1", "reward.posted", AT)
    later = store.delivery_id("prg", "whe_1", "ledger_entry:le_0", "reward.posted", AT.replace(hour=13))
    assert a < later and a.startswith("whd_20260301120000")
    assert 0 <= store.shard_of(a) < store.DUE_SHARDS


def test_the_body_is_the_standard_webhooks_envelope() -> None:
    body = json.loads(partner_hooks.message_body("whd_1", "pool.low", "2026-03-01T12:00:00.000000Z", {"a": 1}))
    assert body == {"id": "whd_1", "type": "pool.low", "timestamp": "2026-03-01T12:00:00.000000Z", "data": {"a": 1}}


def test_the_local_run_fires_the_sender_every_second() -> None:
    from app import app
    from infra.local_events import EventSourceRunner
    from infra.local_run import faster_local_schedules

    for speedup in (1.0, 60.0):
        runner = EventSourceRunner(app, speedup=speedup, log=lambda _m: None)
        faster_local_schedules(runner)
        [line] = [d for d in runner.describe() if d.startswith("send_partner_webhooks")]
        assert line.endswith("every 1 s"), line
        assert any(d.startswith("expire_points") and not d.endswith("every 1 s") for d in runner.describe())
