"""Member tiers end to end (chalice.test.Client + moto): settings, promotion in the event's transaction,
concurrency, the review job's demotion after the clock moves, messages, history, trigger.tiers and multipliers."""

from __future__ import annotations

from typing import Any

import pytest

from chalicelib.domain import clock
from chalicelib.store import keys
from chalicelib.store.ledger import OutboxItem
from chalicelib.store.tiers import TierChangeItem, TierStateItem
from tests.functional.test_ledger_support import Shop, utc
from tests.support import ApiClient

TIERS = {"metric": "points_earned", "period_months": 12, "levels": [
    {"id": "base", "threshold": 0, "names": {"ru": "Базовый", "en": "Base"}},
    {"id": "silver", "threshold": 1000, "names": {"ru": "Серебро", "en": "Silver"}},
    {"id": "gold", "threshold": 3000, "names": {"ru": "Золото", "en": "Gold"}}]}
CASHBACK = {"hold_days": 0, "rules": [
    {"id": "cashback", "trigger": {"event": "order.paid"}, "recipient": {"type": "self"}, "amount": {"rate_bp": 1000}}]}


@pytest.fixture(autouse=True)
def _clock() -> Any:
    clock.freeze(utc("2026-01-15T12:00:00Z"))
    yield
    clock.freeze(None)


def tiered_shop(api: ApiClient, rules: dict[str, Any] | None = None, tiers: dict[str, Any] | None = None,
                partners: int = 1) -> Shop:
    shop = Shop(api, None, partners=partners, settings={"tiers": tiers or TIERS})
    if rules is not False:
        reply = api.put(f"/v1/programs/{shop.pid}/rules", rules or CASHBACK)
        assert reply.status == 200, reply.body
    return shop


def state(pid: str, member_id: str) -> TierStateItem:
    item = TierStateItem.get(*keys.member_tier(pid, member_id), consistent_read=True)
    assert isinstance(item, TierStateItem)
    return item


def changes(pid: str, member_id: str) -> list[TierChangeItem]:
    pk, prefix = keys.tier_changes_prefix(pid, member_id)
    return [c for c in TierChangeItem.query(pk, TierChangeItem.SK.startswith(prefix)) if isinstance(c, TierChangeItem)]


def tier_messages(member_id: str) -> list[OutboxItem]:
    return [m for m in OutboxItem.scan() if isinstance(m, OutboxItem) and m.template == "tier_changed"
            and m.member_id == member_id]


# --------------------------------------------------------------------------- settings


def test_tier_settings_are_validated_at_patch(api: ApiClient) -> None:
    shop = Shop(api, None)
    path = f"/v1/programs/{shop.pid}"
    bad_start = {"levels": [{"id": "base", "threshold": 10}, {"id": "gold", "threshold": 100}]}
    reply = api.patch(path, {"settings": {"tiers": bad_start}})
    assert reply.status == 422 and reply.body["error"]["details"]["errors"][0]["path"] == \
        "$.settings.tiers.levels[0].threshold", reply.body
    not_rising = {"levels": [{"id": "base", "threshold": 0}, {"id": "gold", "threshold": 100},
                             {"id": "gold", "threshold": 100}]}
    reply = api.patch(path, {"settings": {"tiers": not_rising}})
    paths = {e["path"] for e in reply.body["error"]["details"]["errors"]}
    assert reply.status == 422 and paths == {"$.settings.tiers.levels[2].id", "$.settings.tiers.levels[2].threshold"}
    for body in ({"levels": [{"id": "base", "threshold": 0}]},  # one level is no tiers
                 {**TIERS, "metric": "balance"},  # earned, not balance
                 {**TIERS, "period_months": 0}, {**TIERS, "levels": [{"id": "Base!", "threshold": 0},
                                                                    {"id": "x", "threshold": 1}]},
                 {**TIERS, "levels": [{"id": "base", "threshold": 0.5}, {"id": "x", "threshold": 1}]}):
        reply = api.patch(path, {"settings": {"tiers": body}})
        assert reply.status == 422, (body, reply.body)
    reply = api.patch(path, {"settings": {"tiers": TIERS}})
    assert reply.status == 200 and reply.body["settings"]["tiers"] == TIERS
    reply = api.patch(path, {"settings": {"tiers": None}})  # off again
    assert reply.status == 200 and reply.body["settings"]["tiers"] is None


# --------------------------------------------------------------------------- promotion


def test_promotion_is_in_the_order_transaction_with_history_and_message(api: ApiClient) -> None:
    shop = tiered_shop(api)
    first = shop.order("anna", "o-1", 500_000)  # 500 points: still base
    mid = first["member"]["member_id"]
    assert "tiers" not in first
    assert state(shop.pid, mid).tier == "base" and state(shop.pid, mid).buckets == {"2026-01": 500}
    second = shop.order("anna", "o-2", 600_000)  # 1100 points earned: silver, at once
    assert second["tiers"]["changes"] == [{"member_id": mid, "from": "base", "to": "silver", "direction": "up",
                                           "value": 1100, "threshold": 1000}]
    tier = state(shop.pid, mid)
    assert (tier.tier, int(tier.version), tier.review_month) == ("silver", 2, "2027-01")
    assert f"TIERREVIEW#{shop.pid}#2027-01" == tier.GSI1PK
    [change] = changes(shop.pid, mid)
    assert (change.from_tier, change.to_tier, change.reason_code, int(change.value)) == ("base", "silver",
                                                                                          "promotion", 1100)
    [message] = tier_messages(mid)
    assert message.params["to_name"] == "Серебро" and message.business_key == second["business_key"]
    # A replayed delivery changes nothing more.
    again = shop.order("anna", "o-2", 600_000)
    assert again["status"] == "duplicate" and len(changes(shop.pid, mid)) == 1 and len(tier_messages(mid)) == 1
    # Straight to gold with one big order (skipping nothing: one change base→... silver→gold).
    third = shop.order("anna", "o-3", 2_000_000)
    assert third["tiers"]["changes"][0]["to"] == "gold" and state(shop.pid, mid).tier == "gold"
