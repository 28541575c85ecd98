"""The member's own notifications under moto: the sleeping-member reminder; quiet hours hold a message;
push through an SNS endpoint; the daily cap. Every kind in both languages (pending, available, reversed,
spent, …) is in ``test_notification_languages.py``."""

from __future__ import annotations

from typing import Any

import pytest

from chalicelib.store import keys
from chalicelib.store.members import MemberItem
from tests.functional.test_ledger_support import Shop, utc
from tests.notify_support import instant_delivery, ses_sent, stream_poller
from tests.support import CLOCK, ApiClient

HELD = {"max_depth": 1, "hold_days": 7, "rules": [
    {"id": "cashback", "name": "10%", "trigger": {"event": "order.paid"}, "recipient": {"type": "self"},
     "amount": {"rate_bp": 1000}},
]}


@pytest.fixture(autouse=True)
def setup(api: ApiClient, monkeypatch: pytest.MonkeyPatch) -> None:
    instant_delivery(monkeypatch)
    CLOCK.set(utc("2026-01-15T12:00:00Z"))


def subjects(since: int = 0) -> list[str]:
    return [m.subject for m in ses_sent()[since:]]


def test_sleeping_member_reminder_once_after_n_days(api: ApiClient) -> None:
    from chalicelib.notify import sweep

    shop = Shop(api, {**HELD, "hold_days": 0}, default_locale="en",
                settings={"notifications": {"sleeping_reminder_days": 30}})
    shop.member("sam")
    shop.member("idle")  # no points: never reminded
    poller = stream_poller()
    shop.order("sam", "o-1", 100_000)
    poller.drain()
    before = len(ses_sent())
    assert sweep.run_reminders(utc("2026-02-10T09:00:00Z")) == {"reminders": 0}  # not yet 30 days
    assert sweep.run_reminders(utc("2026-02-14T09:00:00Z")) == {"reminders": 1}
    assert sweep.run_reminders(utc("2026-02-14T10:00:00Z")) == {"reminders": 0}  # once per inactivity period
    poller.drain()
    assert subjects(before) == ["You have 100 points"]


def test_quiet_hours_hold_a_message_until_the_window_opens(api: ApiClient) -> None:
    from chalicelib.notify import sources, sweep
    from chalicelib.store.ledger import OutboxItem

    shop = Shop(api, HELD, settings={"notifications": {"time_zone": "Europe/Moscow",
                                                       "quiet_hours": {"start": "22:00", "end": "08:00"}}})
    member = shop.member("night")
    CLOCK.set(utc("2026-01-15T20:30:00Z"))  # 23:30 in Moscow
    sources.new_outbox(shop.pid, member["member_id"], "points_available", {"points": 5}, None, "q", "msg_q")
    stream_poller().drain()
    held = OutboxItem.get(*keys.outbox_message(shop.pid, "msg_q"))
    assert held.status == "held" and held.not_before == "2026-01-16T05:00:00.000000Z"
    assert ses_sent() == []
    assert sweep.run_sweep(utc("2026-01-16T04:00:00Z")).get("sent", 0) == 0  # still quiet: found, not due
    CLOCK.set(utc("2026-01-16T05:02:00Z"))
    assert sweep.run_sweep(utc("2026-01-16T05:02:00Z"))["sent"] == 1
    assert [m.to[0] for m in ses_sent()] == ["night@example.com"]


def test_push_through_the_members_sns_endpoint(api: ApiClient) -> None:
    from chalicelib import aws
    from chalicelib.notify import sources
    from chalicelib.notify.delivery import Delivery
    from chalicelib.notify.port import AwsNotifier

    arn = aws.client("sns").create_platform_application(
        Name="sarafan-test-fcm", Platform="GCM", Attributes={"PlatformCredential": "key"})["PlatformApplicationArn"]
    # What SARAFAN_SNS_PLATFORM_APP_FCM configures (only FCM: APNs is refused below).
    sources.use_delivery(Delivery(AwsNotifier({"fcm": arn})))
    shop = Shop(api, HELD)
    member = shop.member("pat")
    MemberItem(*keys.member(shop.pid, member["member_id"])).update(actions=[MemberItem.email.remove()])
    path = f"/v1/programs/{shop.pid}/members/{member['member_id']}/devices"
    assert api.post(path, {"platform": "apns", "token": "abcdefgh1234"}).error_code == "push_token_refused"
    reply = api.post(path, {"platform": "fcm", "token": "fcm-token-123456", "device_id": "phone-1"})
    assert reply.status == 200 and reply.body["device"]["enabled"] is True, reply.body
    sources.new_outbox(shop.pid, member["member_id"], "points_available", {"points": 9}, None, "p", "msg_p")
    stream_poller().drain()
    from moto.sns.models import sns_backends

    endpoints = sns_backends["123456789012"]["eu-central-1"].platform_endpoints
    messages: list[Any] = [m for e in endpoints.values() for m in getattr(e, "messages", {}).values()]
    assert len(messages) == 1 and "9 баллов доступны" in str(messages[0])  # the program default (ru)
    log = api.get(f"/v1/programs/{shop.pid}/members/{member['member_id']}/notifications").body["items"]
    assert log[0]["channels"][0]["channel"] == "push" and log[0]["status"] == "sent"
    assert "fcm-token" not in str(log)


def test_the_daily_cap_holds_under_concurrent_consumers(api: ApiClient) -> None:
    """Six messages for one member delivered by four consumers at once, cap 3: exactly 3 go out today.

    The slot is reserved with a conditional counter before sending, so no two consumers can both
    take the last one after reading the same count."""
    from concurrent.futures import ThreadPoolExecutor

    from chalicelib.notify import sources
    from chalicelib.store.ledger import OutboxItem

    shop = Shop(api, HELD, settings={"notifications": {"daily_cap": 3}})
    member = shop.member("busy")
    ids = [f"msg_cap{i}" for i in range(6)]
    for i, message_id in enumerate(ids):
        sources.new_outbox(shop.pid, member["member_id"], "points_available", {"points": 5 + i}, None,
                           f"cap-{i}", message_id)
    items = [OutboxItem.get(*keys.outbox_message(shop.pid, m)) for m in ids]
    delivery = sources.delivery()
    with ThreadPoolExecutor(max_workers=4) as pool:
        outcomes = [o for group in pool.map(lambda item: delivery.deliver_group([item]), items) for o in group]
    assert sorted(o.status for o in outcomes) == ["held"] * 3 + ["sent"] * 3
    assert len(ses_sent()) == 3
    statuses = sorted(OutboxItem.get(*keys.outbox_message(shop.pid, m)).status for m in ids)
    assert statuses == ["held"] * 3 + ["sent"] * 3


def test_a_failed_send_gives_its_daily_slot_back(api: ApiClient) -> None:
    from chalicelib.notify import sources
    from chalicelib.store.ledger import OutboxItem
    from chalicelib.store.notify import NotifyDayItem

    shop = Shop(api, HELD, settings={"notifications": {"daily_cap": 1}})
    mute = shop.member("mute")
    MemberItem.get(*keys.member(shop.pid, mute["member_id"])).update(actions=[MemberItem.email.remove()])
    sources.new_outbox(shop.pid, mute["member_id"], "points_available", {"points": 5}, None, "nochan", "msg_nochan")
    (outcome,) = sources.delivery().deliver_group([OutboxItem.get(*keys.outbox_message(shop.pid, "msg_nochan"))])
    assert outcome.status == "failed"  # no channel: nothing went out, so the day's slot is free again
    day = NotifyDayItem.get(*keys.notify_day(shop.pid, mute["member_id"], "2026-01-15"))
    assert int(day.total or 0) == 0
