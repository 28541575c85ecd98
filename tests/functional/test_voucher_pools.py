"""Voucher pools under pressure: low-pool alerts once per crossing; 50 parallel rewards against 20 codes."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from chalicelib.domain.offers import SHARDS
from chalicelib.store import keys
from chalicelib.store.offers import PoolAlertItem, PoolSlotItem, VoucherItem
from tests.functional.test_ledger_support import Shop, parallel, utc
from tests.functional.test_vouchers import offer, upload
from tests.notify_support import instant_delivery, ses_sent, stream_poller
from tests.support import CLOCK, ApiClient, Reply

ALERTS = "cafe-ops@example.com"


@pytest.fixture
def coalition(api: ApiClient, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    instant_delivery(monkeypatch)
    CLOCK.set(utc("2026-01-15T12:00:00Z"))
    shop = Shop(api, None, partners=2)
    clothes, cafe = shop.partners
    patched = api.patch(f"/v1/programs/{shop.pid}/partners/{cafe['partner_id']}", {"contact_email": ALERTS},
                        key=cafe["api_key"])
    assert patched.status == 200 and patched.body["contact_email"] == ALERTS, patched.body
    return {"shop": shop, "clothes": clothes, "cafe": cafe}


def put_rules(api: ApiClient, shop: Shop, cafe: str, offer_id: str, fallback: int | None = None) -> None:
    ref: dict[str, Any] = {"partner_id": cafe, "offer_id": offer_id}
    if fallback:
        ref["fallback_points"] = fallback
    reply = api.put(f"/v1/programs/{shop.pid}/rules", {"hold_days": 0, "rules": [
        {"id": "coffee", "trigger": {"event": "order.paid"}, "recipient": {"type": "self"},
         "amount": {"offer": ref}}]})
    assert reply.status == 200, reply.body


def alert_mails() -> list[Any]:
    return [m for m in ses_sent() if m.to == [ALERTS]]


def test_pool_low_alerts_the_partner_once_per_crossing(api: ApiClient, coalition: dict[str, Any]) -> None:
    shop, clothes, cafe = coalition["shop"], coalition["clothes"], coalition["cafe"]
    coffee = offer(api, shop.pid, cafe, low_pool_threshold=3)
    upload(api, shop.pid, cafe, coffee["offer_id"], [f"L{i}" for i in range(5)])
    put_rules(api, shop, cafe["partner_id"], coffee["offer_id"])
    poller = stream_poller()
    for i in range(2):  # 5 → 3 left: not below 3 yet
        shop.order(f"c{i}", f"o-{i}", 100_000, partner=clothes)
    poller.drain()
    assert alert_mails() == []
    for i in range(2, 5):  # 2, 1, 0 left: one crossing
        shop.order(f"c{i}", f"o-{i}", 100_000, partner=clothes)
    poller.drain()
    [mail] = alert_mails()
    assert "running low" in mail.subject and "Free coffee" in mail.subject and "2 code(s) left" in mail.text
    alerts = list(PoolAlertItem.query(f"POOLALERT#{shop.pid}#{coffee['offer_id']}"))
    assert [(int(a.epoch), int(a.remaining)) for a in alerts] == [(1, 2)]  # epoch 1: the first upload lifted the empty pool above 3
    # Members got their vouchers by e-mail, too.
    assert len([m for m in ses_sent() if "Free coffee" in m.subject and m.to != [ALERTS]]) == 5
    # A redelivered stream batch sends nothing more.
    from chalicelib.notify.dispatcher import StreamRecord
    from chalicelib.notify.pool_alerts import on_pool_alert

    image = alerts[0].serialize()
    on_pool_alert([StreamRecord("INSERT", "seq-again", {}, {**image, "PK": {"S": alerts[0].PK},
                                                           "SK": {"S": alerts[0].SK}})])
    assert len(alert_mails()) == 1
    # Refilled above the threshold: the next fall below it is a new crossing.
    upload(api, shop.pid, cafe, coffee["offer_id"], [f"M{i}" for i in range(4)])
    for i in range(5, 7):  # 4 → 2 left
        shop.order(f"c{i}", f"o-{i}", 100_000, partner=clothes)
    poller.drain()
    assert len(alert_mails()) == 2


def test_no_alert_without_a_threshold(api: ApiClient, coalition: dict[str, Any]) -> None:
    shop, clothes, cafe = coalition["shop"], coalition["clothes"], coalition["cafe"]
    coffee = offer(api, shop.pid, cafe)
    upload(api, shop.pid, cafe, coffee["offer_id"], ["N1"])
    put_rules(api, shop, cafe["partner_id"], coffee["offer_id"])
    shop.order("c1", "o-1", 100_000, partner=clothes)
    stream_poller().drain()
    assert alert_mails() == []


@pytest.mark.usefixtures("concurrent_requests")
def test_fifty_parallel_rewards_against_twenty_codes(api: ApiClient, coalition: dict[str, Any]) -> None:
    shop, clothes, cafe = coalition["shop"], coalition["clothes"], coalition["cafe"]
    coffee = offer(api, shop.pid, cafe)
    codes = [f"CC-{i:02d}" for i in range(20)]
    upload(api, shop.pid, cafe, coffee["offer_id"], codes)
    put_rules(api, shop, cafe["partner_id"], coffee["offer_id"], fallback=100)
    events = [shop.order_event(f"p{i}", f"o-{i}", 100_000) for i in range(50)]

    def send(event: dict[str, Any]) -> Reply:
        for _ in range(10):  # a sender retries a 503 (contention), as webhook senders do
            reply = shop.send_raw(event, partner=clothes)
            if reply.status != 503:
                return reply
        return reply

    replies = parallel([lambda e=e: send(e) for e in events])
    assert all(r.status == 200 for r in replies), Counter(r.status for r in replies)
    issued = [v for r in replies for v in r.body["rewards"].get("vouchers", [])]
    empty = [r for r in replies if any(s["reason_code"] == "pool_empty" for s in r.body["rewards"]["skipped"])]
    assert len(issued) == 20 and len(empty) == 30
    assert all([p["points"] for p in r.body["rewards"]["postings"]] == [100] for r in empty)
    # Every code issued exactly once, to the member whose voucher shows it.
    stored = []
    for r in replies:
        pk, prefix = keys.vouchers_prefix(shop.pid, r.body["member"]["member_id"])
        stored += [v for v in VoucherItem.query(pk, VoucherItem.SK.startswith(prefix))]
    assert sorted(v.code for v in stored) == codes
    slots = [s for shard in range(SHARDS)
             for s in PoolSlotItem.query(keys.pool_partition(shop.pid, coffee["offer_id"], shard))
             if isinstance(s, PoolSlotItem)]
    assert len(slots) == 20 and all(s.voucher_id for s in slots)
    assert {s.voucher_id for s in slots} == {v.voucher_id for v in stored}
    pool = api.get(f"/v1/programs/{shop.pid}/partners/{cafe['partner_id']}/offers/{coffee['offer_id']}").body["pool"]
    assert pool == {"size": 20, "remaining": 0, "issued": 20, "low": False}
