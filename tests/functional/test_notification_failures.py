"""Permanent send errors, push endpoints that SNS disabled, and channels decided at delivery, under moto.

Everything goes the deployed way: outbox items → moto's DynamoDB stream → the ``table_stream``
handler → the AWS notifier (botocore → moto's SES/SNS) → the delivery log. The one thing moto's SES
does not model, a per-recipient ``MessageRejected``, is answered by a botocore ``before-call`` hook
with the error body SES returns, so the reply still goes through botocore's error parsing and the
notifier's classification.
"""

from __future__ import annotations

from typing import Any

import pytest

from chalicelib.store import keys
from chalicelib.store.members import MemberItem
from tests.functional.test_ledger_support import Shop, utc
from tests.notify_support import ACCOUNT, REGION, instant_delivery, ses_sent, stream_poller
from tests.support import CLOCK, ApiClient

RULES: dict[str, Any] = {"max_depth": 1, "hold_days": 0, "rules": [
    {"id": "cashback", "name": "10%", "trigger": {"event": "order.paid"}, "recipient": {"type": "self"},
     "amount": {"rate_bp": 1000}},
]}


@pytest.fixture(autouse=True)
def setup(api: ApiClient, monkeypatch: pytest.MonkeyPatch) -> None:
    instant_delivery(monkeypatch)
    CLOCK.set(utc("2026-01-15T12:00:00Z"))


@pytest.fixture
def fcm(api: ApiClient) -> str:
    """An SNS platform application for FCM, used by the real AWS notifier (devices and pushes)."""
    from chalicelib import aws
    from chalicelib.notify import sources
    from chalicelib.notify.delivery import Delivery
    from chalicelib.notify.port import AwsNotifier

    arn = aws.client("sns").create_platform_application(
        Name="sarafan-test-fcm", Platform="GCM", Attributes={"PlatformCredential": "key"})["PlatformApplicationArn"]
    sources.use_delivery(Delivery(AwsNotifier({"fcm": arn})))
    return str(arn)


def reject_email_to(address: str) -> Any:
    """SES answers ``MessageRejected`` (HTTP 400) for mail to ``address``; other mail goes to moto."""
    from botocore.awsrequest import AWSResponse

    from chalicelib import aws

    def hook(params: Any = None, **_: Any) -> Any:
        body = params.get("body") if isinstance(params, dict) else None
        sent = body if isinstance(body, dict) else {}
        destinations = [value for name, value in sent.items() if name.startswith("Destinations.member.")]
        if address not in destinations:
            return None
        error = {"Error": {"Code": "MessageRejected", "Message": "Email address is not verified.", "Type": "Sender"},
                 "ResponseMetadata": {"HTTPStatusCode": 400}}
        return AWSResponse("https://email.eu-central-1.amazonaws.com/", 400, {}, None), error

    aws.client("ses").meta.events.register("before-call.ses.SendRawEmail", hook)
    return hook


def endpoints() -> dict[str, Any]:
    from moto.sns.models import sns_backends

    return sns_backends[ACCOUNT][REGION].platform_endpoints  # type: ignore[no-any-return]


def pushes() -> list[str]:
    return [str(m) for e in endpoints().values() for m in e.messages.values()]


def push_only_member(shop: Shop, api: ApiClient, name: str, token: str) -> dict[str, Any]:
    """A member reachable by push only (no e-mail) with one registered FCM device."""
    member = shop.member(name)
    MemberItem(*keys.member(shop.pid, member["member_id"])).update(actions=[MemberItem.email.remove()])
    reply = register(api, shop, member, token)
    assert reply.status == 200 and reply.body["device"]["enabled"] is True, reply.body
    return member


def register(api: ApiClient, shop: Shop, member: dict[str, Any], token: str) -> Any:
    return api.post(f"/v1/programs/{shop.pid}/members/{member['member_id']}/devices",
                    {"platform": "fcm", "token": token, "device_id": f"phone-{member['code'][:4]}"})


def devices_of(shop: Shop, member: dict[str, Any]) -> list[dict[str, Any]]:
    from chalicelib.store.notify import NotifyStateItem

    state = NotifyStateItem.get(*keys.notify_state(shop.pid, member["member_id"]))
    return list(state.devices or [])


def log_of(api: ApiClient, shop: Shop, member: dict[str, Any]) -> list[dict[str, Any]]:
    reply = api.get(f"/v1/programs/{shop.pid}/members/{member['member_id']}/notifications")
    assert reply.status == 200, reply.body
    return reply.body["items"]  # type: ignore[no-any-return]


def sns_disables(endpoint_arn: str) -> None:
    """What SNS does when FCM/APNs reports the token invalid: the endpoint's ``Enabled`` turns false."""
    from chalicelib import aws

    aws.client("sns").set_endpoint_attributes(EndpointArn=endpoint_arn, Attributes={"Enabled": "false"})


def test_permanent_errors_fail_their_message_and_the_rest_of_the_batch_goes_out(api: ApiClient, fcm: str) -> None:
    from chalicelib import aws
    from chalicelib.notify import sources

    shop = Shop(api, RULES, default_locale="en")
    alice = shop.member("alice")  # SES rejects her address
    bob = shop.member("bob")  # fine
    carol = push_only_member(shop, api, "carol", "fcm-token-carol-0001")  # SNS disabled her endpoint
    dave = push_only_member(shop, api, "dave", "fcm-token-dave-00001")  # her endpoint was deleted (invalid)
    sns_disables(devices_of(shop, carol)[0]["endpoint_arn"])
    aws.client("sns").delete_endpoint(EndpointArn=devices_of(shop, dave)[0]["endpoint_arn"])
    reject_email_to("alice@example.com")
    for n, who in enumerate((alice, carol, bob, dave)):
        sources.new_outbox(shop.pid, who["member_id"], "points_available", {"points": 10 + n}, None, f"perm-{n}",
                           f"msg_perm{n}")
    poller = stream_poller(max_retries=0)
    poller.drain()

    assert not poller.dead_letters  # a permanent error is not a failed record: nothing is retried
    assert [m.to for m in ses_sent()] == [["bob@example.com"]]
    assert log_of(api, shop, bob)[0]["status"] == "sent"
    rejected = log_of(api, shop, alice)[0]
    assert rejected["status"] == "failed" and rejected["last_error"] == "MessageRejected"
    assert rejected["channels"] == [{"channel": "email", "status": "failed", "recipient": "a***@ex***.com",
                                     "provider_id": None, "error": "MessageRejected"}]
    for who, why in ((carol, "EndpointDisabled"), (dave, "NotFound")):
        entry = log_of(api, shop, who)[0]
        assert entry["status"] == "failed" and entry["last_error"] == why, entry
        assert entry["channels"][0]["channel"] == "push"
        assert devices_of(shop, who) == []  # dropped: never tried again until the app registers a token
    from chalicelib.store.ledger import OutboxItem

    statuses = {m: OutboxItem.get(*keys.outbox_message(shop.pid, m)).status for m in
                ("msg_perm0", "msg_perm1", "msg_perm2", "msg_perm3")}
    assert statuses == {"msg_perm0": "failed", "msg_perm1": "failed", "msg_perm2": "sent", "msg_perm3": "failed"}
    # Nothing more on a second pass of the sweep: failed messages are final.
    from chalicelib.notify import sweep

    assert sweep.run_sweep(utc("2026-01-15T13:00:00Z")).get("sent", 0) == 0
    assert len(ses_sent()) == 1 and pushes() == []


def test_a_disabled_endpoint_is_re_enabled_when_the_device_registers_a_new_token(api: ApiClient, fcm: str) -> None:
    from chalicelib.notify import sources

    shop = Shop(api, RULES)
    pat = push_only_member(shop, api, "pat", "fcm-token-old-00001")
    arn = devices_of(shop, pat)[0]["endpoint_arn"]
    sns_disables(arn)
    assert endpoints()[arn].enabled is False
    reply = register(api, shop, pat, "fcm-token-new-00002")  # the app got a new FCM token
    assert reply.status == 200 and reply.body["device"]["enabled"] is True
    assert [d["endpoint_arn"] for d in devices_of(shop, pat)] == [arn]  # the same endpoint, refreshed
    assert endpoints()[arn].enabled is True and endpoints()[arn].attributes["Token"] == "fcm-token-new-00002"
    sources.new_outbox(shop.pid, pat["member_id"], "points_available", {"points": 9}, None, "re", "msg_re")
    stream_poller().drain()
    assert len(endpoints()[arn].messages) == 1
    assert log_of(api, shop, pat)[0]["status"] == "sent"


def test_a_dropped_endpoint_comes_back_when_the_app_registers_again_even_with_the_same_token(
        api: ApiClient, fcm: str) -> None:
    """After a permanent failure the device is dropped; a later registration (same token, as an app
    re-sends its token on start) finds SNS's existing, disabled endpoint and re-enables it."""
    from chalicelib.notify import sources

    shop = Shop(api, RULES)
    kim = push_only_member(shop, api, "kim", "fcm-token-kim-00001")
    arn = devices_of(shop, kim)[0]["endpoint_arn"]
    sns_disables(arn)
    sources.new_outbox(shop.pid, kim["member_id"], "points_available", {"points": 5}, None, "d1", "msg_d1")
    poller = stream_poller()
    poller.drain()
    assert devices_of(shop, kim) == [] and log_of(api, shop, kim)[0]["last_error"] == "EndpointDisabled"
    sources.new_outbox(shop.pid, kim["member_id"], "points_available", {"points": 6}, None, "d2", "msg_d2")
    poller.drain()
    assert log_of(api, shop, kim)[0]["last_error"] == "no_channel"  # not tried: the endpoint is gone
    reply = register(api, shop, kim, "fcm-token-kim-00001")
    assert reply.status == 200 and reply.body["device"]["enabled"] is True, reply.body
    assert [d["endpoint_arn"] for d in devices_of(shop, kim)] == [arn] and endpoints()[arn].enabled is True
    sources.new_outbox(shop.pid, kim["member_id"], "points_available", {"points": 7}, None, "d3", "msg_d3")
    poller.drain()
    assert log_of(api, shop, kim)[0]["status"] == "sent" and len(endpoints()[arn].messages) == 1


def test_channels_are_decided_at_delivery_an_email_that_arrives_with_the_event_gets_the_message(
        api: ApiClient) -> None:
    """Nina signed up with a phone only; her first order brings her e-mail. The order's message (written
    in the order's transaction) goes to that e-mail: channels come from the profile at delivery."""
    shop = Shop(api, RULES, default_locale="en")
    signup = {"type": "member.signup", "occurred_at": "2026-01-10T10:00:00Z",
              "object": {"type": "customer", "id": "nina"}, "customer": {"id": "nina", "phone": "+79161112233"}}
    member = shop.send(signup)["member"]
    poller = stream_poller()
    poller.drain()
    assert ses_sent() == []
    order = {"type": "order.paid", "occurred_at": "2026-01-15T10:00:00Z", "object": {"type": "order", "id": "n-1"},
             "customer": {"id": "nina", "email": "nina@example.com"}, "order": {"total": 100_000, "currency": "RUB"}}
    shop.send(order)
    poller.drain()
    assert [(m.to, m.subject) for m in ses_sent()] == [(["nina@example.com"], "100 points are ready to spend")]
    entry = log_of(api, shop, member)[0]
    assert entry["status"] == "sent" and entry["channels"][0]["recipient"].endswith("***@ex***.com")


def test_a_new_member_whose_first_event_brings_the_email_gets_the_welcome(api: ApiClient) -> None:
    """The friend's first event (an order through a link, no signup before) creates her with the e-mail;
    her welcome and the referrer's message both go out by e-mail."""
    rules = {"max_depth": 1, "hold_days": 0, "rules": [
        {"id": "bring", "name": "Bring a friend", "trigger": {"event": "order.paid", "order": "first"},
         "recipient": {"type": "referrer", "level": 1}, "amount": {"points": 500}},
        {"id": "welcome", "name": "Welcome", "trigger": {"event": "order.paid", "order": "first"},
         "recipient": {"type": "friend"}, "amount": {"points": 300}},
    ]}
    shop = Shop(api, rules, default_locale="en")
    olga = shop.member("olga")
    poller = stream_poller()
    poller.drain()
    shop.order("vera", "v-1", 100_000, code=olga["code"])
    poller.drain()
    got = {m.to[0]: m.subject for m in ses_sent()}
    assert got["vera@example.com"].startswith("Welcome"), got
    assert "olga@example.com" in got


def test_device_list_changes_are_conditioned_on_what_was_read(api: ApiClient, fcm: str) -> None:
    """A delivery dropping a dead endpoint while the app registers another device loses neither change:
    the write is conditioned on the list read, and a stale read is read again."""
    from chalicelib.notify import members

    shop = Shop(api, RULES)
    ivy = push_only_member(shop, api, "ivy", "fcm-token-ivy-a0001")
    dead = devices_of(shop, ivy)[0]["endpoint_arn"]
    stale = devices_of(shop, ivy)  # what a delivery read before the registration below
    reply = api.post(f"/v1/programs/{shop.pid}/members/{ivy['member_id']}/devices",
                     {"platform": "fcm", "token": "fcm-token-ivy-b0002", "device_id": "tablet-1"})
    assert reply.status == 200, reply.body
    members._change_devices(shop.pid, ivy["member_id"], stale,
                            lambda read: [d for d in read if d.get("endpoint_arn") != dead], upsert=False)
    assert [d["device_id"] for d in devices_of(shop, ivy)] == ["tablet-1"]
    # Registering the same device again replaces its entry (one per device).
    assert register(api, shop, ivy, "fcm-token-ivy-c0003").status == 200
    assert register(api, shop, ivy, "fcm-token-ivy-c0004").status == 200
    assert sorted(d["device_id"] for d in devices_of(shop, ivy)) == sorted(["tablet-1", f"phone-{ivy['code'][:4]}"])


def throttle_email(times: int) -> list[int]:
    """SES answers ``Throttling`` (HTTP 400) to the next ``times`` SendRawEmail calls; returns the call counter."""
    from botocore.awsrequest import AWSResponse

    from chalicelib import aws

    calls = [0]

    def hook(**_: Any) -> Any:
        calls[0] += 1
        if calls[0] > times:
            return None
        error = {"Error": {"Code": "Throttling", "Message": "Maximum sending rate exceeded.", "Type": "Sender"},
                 "ResponseMetadata": {"HTTPStatusCode": 400}}
        return AWSResponse("https://email.eu-central-1.amazonaws.com/", 400, {}, None), error

    aws.client("ses").meta.events.register("before-call.ses.SendRawEmail", hook)
    return calls


def earned(shop: Shop, member_id: str) -> list[Any]:
    from chalicelib.store.ledger import OutboxItem

    return [m for m in OutboxItem.scan() if isinstance(m, OutboxItem) and m.PK.startswith(f"OUTBOX#{shop.pid}#")
            and m.member_id == member_id and m.template == "points_earned"]  # a test's small table


def test_a_derived_message_goes_out_from_the_handler_that_derives_it_and_once(api: ApiClient) -> None:
    """points_earned is created claimed by the ledger handler and delivered in the same call (no second stream
    hop, no claim write); its own INSERT record and a replay of the whole stream send nothing again."""
    shop = Shop(api, RULES)
    ivan = shop.member("ivan")
    stream_poller().drain()
    shop.order("ivan", "o-1", 100_000)
    poller = stream_poller()
    poller.drain(max_rounds=1)  # the order's records only: the entry's handler sends the message itself
    assert [m.status for m in earned(shop, ivan["member_id"])] == ["sent"]
    assert [int(m.attempts) for m in earned(shop, ivan["member_id"])] == [1]
    poller.drain()  # the message's own INSERT and its status change come back: nothing is sent again
    stream_poller().drain()  # a second consumer from the start of the stream: every record again
    assert len([e for e in ses_sent() if e.to == ["ivan@example.com"]]) == 1


def test_a_derived_message_to_retry_fails_its_records_and_goes_out_on_the_retry(api: ApiClient) -> None:
    """SES throttles every try of the first delivery: the message is given back (pending), the ledger records
    are reported failed, and Lambda's retry of the batch delivers the pending message: one e-mail."""
    from chalicelib.notify import delivery

    shop = Shop(api, RULES)
    lena = shop.member("lena")
    stream_poller().drain()
    shop.order("lena", "o-1", 100_000)
    calls = throttle_email(delivery.SEND_TRIES)
    stream_poller().drain()
    assert calls[0] == delivery.SEND_TRIES + 1
    [message] = earned(shop, lena["member_id"])
    assert (message.status, int(message.attempts)) == ("sent", 2)
    assert len([e for e in ses_sent() if e.to == ["lena@example.com"]]) == 1


def test_a_consumer_whose_lease_was_taken_over_finishes_nothing(api: ApiClient) -> None:
    """Between sending and finishing, another consumer took the message over (our lease had expired): our finish
    changes nothing and writes no log line; the message stays the other consumer's to decide."""
    from chalicelib.notify import sources
    from chalicelib.notify.delivery import Delivery
    from chalicelib.notify.port import AwsNotifier, Email
    from chalicelib.store.ledger import OutboxItem
    from chalicelib.store.notify import NotificationLogItem

    shop = Shop(api, RULES)
    nina = shop.member("nina")
    stream_poller().drain()
    key = keys.outbox_message(shop.pid, "msg_taken")

    class TakenOver(AwsNotifier):
        def send_email(self, email: Email) -> str:
            sent = super().send_email(email)
            OutboxItem(*key).update(actions=[OutboxItem.lease_token.set("someone-else")])
            return sent

    sources.new_outbox(shop.pid, nina["member_id"], "points_available", {"points": 5}, None, "taken", "msg_taken")
    (outcome,) = Delivery(TakenOver()).deliver_group([OutboxItem.get(*key)])
    assert (outcome.status, outcome.error) == ("skipped", "lease_lost")
    message = OutboxItem.get(*key, consistent_read=True)
    assert (message.status, message.lease_token, message.finished_at) == ("sending", "someone-else", None)
    pk, _ = keys.notification_log(shop.pid, nina["member_id"], "", "")
    assert [i for i in NotificationLogItem.query(pk) if isinstance(i, NotificationLogItem)] == []


def test_one_batch_of_derived_messages_keeps_the_daily_cap(api: ApiClient) -> None:
    """Three orders of one member in one stream batch: three points_earned messages delivered from one handler
    call, whose member reads were made once ahead. With a daily cap of 2 the third is held (the read-ahead day
    counter is behind by the call's own messages; the slot's own condition holds the line), and the two sent
    have their log lines."""
    from chalicelib.store.notify import NotificationLogItem

    shop = Shop(api, RULES, settings={"notifications": {"daily_cap": 2}})
    rita = shop.member("rita")
    stream_poller().drain()
    for n in range(3):
        shop.order("rita", f"o-{n}", 100_000 + n)
    stream_poller().drain(max_rounds=1)  # the three orders' records: one batch, one handler call
    statuses = sorted(m.status for m in earned(shop, rita["member_id"]))
    assert statuses == ["held", "sent", "sent"]
    assert len([e for e in ses_sent() if e.to == ["rita@example.com"]]) == 2
    pk, prefix = keys.notification_log_prefix(shop.pid, rita["member_id"])
    logs = [i for i in NotificationLogItem.query(pk, NotificationLogItem.SK.startswith(prefix))
            if isinstance(i, NotificationLogItem)]
    assert sorted(i.status for i in logs) == ["sent", "sent"]
