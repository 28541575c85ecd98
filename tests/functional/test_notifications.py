"""Notifications end to end under moto: signed events → outbox → the stream handler → SES/SNS."""

from __future__ import annotations

from typing import Any

import pytest

from chalicelib.store import keys
from chalicelib.store.members import MemberItem
from tests.functional.test_ledger_support import Shop, utc
from tests.notify_support import instant_delivery, ses_sent, sms_sent, stream_poller
from tests.support import CLOCK, ApiClient

NOW = "2026-01-15T12:00:00Z"
RULES: dict[str, Any] = {
    "max_depth": 2,
    "hold_days": 0,
    "rules": [
        {"id": "cashback", "name": "5% cashback", "trigger": {"event": "order.paid"},
         "recipient": {"type": "self"}, "amount": {"rate_bp": 500, "max_points": 5000}},
        {"id": "bring-a-friend", "name": "Bring a friend", "trigger": {"event": "order.paid", "order": "first"},
         "recipient": {"type": "referrer", "level": 1}, "amount": {"points": 500}},
        {"id": "friend-welcome", "name": "Welcome bonus", "trigger": {"event": "order.paid", "order": "first"},
         "recipient": {"type": "friend"}, "amount": {"points": 300}},
        {"id": "level-2", "name": "Friend of a friend", "trigger": {"event": "order.paid", "order": "first"},
         "recipient": {"type": "referrer", "level": 2}, "amount": {"points": 100}},
    ],
}


@pytest.fixture(autouse=True)
def no_backoff(api: ApiClient, monkeypatch: pytest.MonkeyPatch) -> None:
    instant_delivery(monkeypatch)
    CLOCK.set(utc(NOW))


def set_locale(pid: str, member_id: str, locale: str, name: str | None = None) -> None:
    actions = [MemberItem.locale.set(locale)]
    if name is not None:
        actions.append(MemberItem.name.set(name))
    MemberItem(*keys.member(pid, member_id)).update(actions=actions)


def chain(shop: Shop) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    masha = shop.member("masha")
    olga = shop.member("olga", masha["code"])
    vera = shop.member("vera", olga["code"])
    return masha, olga, vera


def by_recipient() -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for sent in ses_sent():
        out.setdefault(sent.to[0], []).append(sent)
    return out


def test_two_level_chain_order_notifies_buyer_referrer_and_level_two_in_their_languages(api: ApiClient) -> None:
    shop = Shop(api, RULES, default_locale="ru")
    masha, _olga, _vera = chain(shop)
    set_locale(shop.pid, masha["member_id"], "en", "Masha Ivanova")
    poller = stream_poller()
    poller.drain()
    joined = by_recipient()
    # Signups through a link: the referrer hears "friend joined" (Masha in English, Olga in Russian).
    assert [m.subject for m in joined["masha@example.com"]] == ["Your friend joined Demo"]
    assert [m.subject for m in joined["olga@example.com"]] == ["Ваш друг присоединился к «Demo»"]
    assert "vera@example.com" not in joined
    before = len(ses_sent())
    shop.order("vera", "o-1", 300_000)
    poller.drain()
    got = {m.to[0]: m for m in ses_sent()[before:]}
    assert set(got) == {"vera@example.com", "olga@example.com", "masha@example.com"}
    # Vera: cashback (150) + welcome bonus (300) from one event = one message, the welcome leads.
    assert got["vera@example.com"].subject == "Добро пожаловать: +450 баллов"
    assert got["olga@example.com"].subject == "Ваш друг сделал покупку: +500 баллов"
    assert got["masha@example.com"].subject == "Your friend's friend bought: +100 points"
    assert got["masha@example.com"].language == "en" and got["olga@example.com"].language == "ru"
    assert "Hello Masha," in got["masha@example.com"].text and "(level 2)" in got["masha@example.com"].text
    # RFC 8058 headers, the sender from config, the referral link in the footer.
    mail = got["masha@example.com"]
    assert mail.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert mail.headers["List-Unsubscribe"].startswith("<https://srf.test/u/")
    assert mail.headers["From"] == "Demo <no-reply@sarafan.test>"
    assert "https://srf.test/r/" in mail.text and 'href="https://srf.test/r/' in mail.html
    # The same stream read again (a second consumer from the start) sends nothing new.
    stream_poller().drain()
    assert len(ses_sent()) == before + 3


def test_consumer_invoked_three_times_on_the_same_batch_sends_once(api: ApiClient) -> None:
    shop = Shop(api, RULES)
    shop.member("solo")
    from infra.local_stream import lambda_record

    poller = stream_poller()
    records = poller._new_records()
    assert records
    from app import app

    batch = {"Records": [lambda_record(r, "arn:stream", "eu-central-1") for r in records]}
    for _ in range(3):
        assert app.handler_map["table_stream"](batch, None) == {"batchItemFailures": []}
    shop.order("solo", "o-1", 100_000)
    # The order's entries (their points_earned message is derived once), then that message's INSERT.
    for _round in range(2):
        records = poller._new_records()
        batch = {"Records": [lambda_record(r, "arn:stream", "eu-central-1") for r in records]}
        for _ in range(3):
            app.handler_map["table_stream"](batch, None)
    assert [m.to[0] for m in ses_sent()] == ["solo@example.com"]


class Flaky:
    """The real SES adapter, throttled for the first ``failures`` calls (then SES is back)."""

    def __init__(self, failures: int) -> None:
        from chalicelib.notify.port import AwsNotifier

        self.real = AwsNotifier()
        self.failures = failures
        self.calls = 0

    def send_email(self, email: Any) -> str:
        from chalicelib.notify.port import TransientSendError

        self.calls += 1
        if self.calls <= self.failures:
            raise TransientSendError("Throttling", "Maximum sending rate exceeded.")
        return self.real.send_email(email)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def test_ses_throttling_then_recovery_delivers_every_message_exactly_once(api: ApiClient) -> None:
    from chalicelib.notify import delivery, sources, sweep

    shop = Shop(api, RULES)
    masha, _olga, _vera = chain(shop)
    flaky = Flaky(failures=10_000)
    sources.use_delivery(delivery.Delivery(flaky, sleep=lambda _s: None))  # type: ignore[arg-type]
    poller = stream_poller(max_retries=2)
    poller.drain()
    shop.order("vera", "o-1", 300_000)
    poller.drain()
    assert ses_sent() == []  # SES down: nothing sent, nothing lost
    assert poller.dead_letters  # Lambda gave up on those batches (the on-failure queue in AWS)
    flaky.failures = 0  # SES is back; the scheduled sweep finds what is still pending
    result = sweep.run_sweep(utc(NOW).replace(hour=13))
    assert result["sent"] == 5, result
    assert sweep.run_sweep(utc(NOW).replace(hour=14))["found"] == 0
    recipients = sorted(m.to[0] for m in ses_sent())
    assert recipients == sorted(["masha@example.com", "olga@example.com", "masha@example.com",
                                 "olga@example.com", "vera@example.com"])
    log = api.get(f"/v1/programs/{shop.pid}/members/{masha['member_id']}/notifications").body["items"]
    assert {entry["template"] for entry in log} == {"friend_joined", "upline_purchase"}
    assert all(entry["attempts"] > 1 and entry["status"] == "sent" for entry in log)
    assert log[0]["channels"][0]["recipient"] == "m***@ex***.com" and log[0]["channels"][0]["provider_id"]


def test_a_poison_message_fails_after_bounded_retries_and_the_rest_are_delivered(api: ApiClient) -> None:
    from chalicelib.notify import sources

    shop = Shop(api, RULES)
    alice = shop.member("alice")
    bob = shop.member("bob")
    sources.new_outbox(shop.pid, alice["member_id"], "no_such_template", {}, None, "poison", "msg_poison")
    poller = stream_poller(max_retries=10)
    poller.drain()
    assert {m.to[0] for m in ses_sent()} == set()  # nobody referred anybody: no message yet
    sources.new_outbox(shop.pid, bob["member_id"], "points_available", {"points": 7}, None, "ok", "msg_ok")
    poller.drain()
    from chalicelib.store.ledger import OutboxItem

    poison = OutboxItem.get(*keys.outbox_message(shop.pid, "msg_poison"))
    assert poison.status == "failed" and "TemplateMissing" in (poison.last_error or "")
    assert int(poison.attempts) == 5
    assert [m.to[0] for m in ses_sent()] == ["bob@example.com"]


def test_suppressed_address_and_opted_out_channel_are_not_sent_and_logged_why(api: ApiClient) -> None:
    import json

    from chalicelib.notify import feedback, sources

    shop = Shop(api, RULES)
    alice = shop.member("alice")
    bob = shop.member("bob")
    # Alice's address bounced (SES feedback through SNS, tagged with program and member at send time).
    assert feedback.handle(json.dumps({
        "notificationType": "Bounce", "bounce": {"bounceType": "Permanent",
                                                 "bouncedRecipients": [{"emailAddress": "alice@example.com"}]},
        "mail": {"tags": {"program_id": [shop.pid], "member_id": [alice["member_id"]]}}})) == {"suppressed": 1}
    # Bob opted out of e-mail.
    reply = api.patch(f"/v1/programs/{shop.pid}/members/{bob['member_id']}/preferences", {"email": False})
    assert reply.status == 200 and reply.body["preferences"] == {"email": False, "sms": True, "push": True}
    for who in (alice, bob):
        sources.new_outbox(shop.pid, who["member_id"], "points_available", {"points": 7}, None, "x", f"m_{who['code']}")
    stream_poller().drain()
    assert ses_sent() == []
    for who, why in ((alice, "suppressed"), (bob, "opted_out")):
        log = api.get(f"/v1/programs/{shop.pid}/members/{who['member_id']}/notifications").body["items"]
        assert log[0]["status"] == "failed" and log[0]["last_error"] == why
        assert log[0]["channels"] == [{"channel": "email", "status": "failed", "recipient": log[0]["channels"][0]["recipient"],
                                       "provider_id": None, "error": why}]


def test_one_click_unsubscribe_from_the_email_turns_email_off(api: ApiClient) -> None:
    shop = Shop(api, RULES)
    masha = shop.member("masha")
    shop.member("olga", masha["code"])
    stream_poller().drain()
    mail = ses_sent()[0]
    url = mail.headers["List-Unsubscribe"].strip("<>")
    path = url.removeprefix("https://srf.test")
    page = api.call("GET", path, key=None)
    assert page.status == 200
    assert api.call("GET", path[:-3] + "abc", key=None).status == 404  # a forged token
    done = api.call("POST", path, key=None, raw="List-Unsubscribe=One-Click",
                    headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert done.status == 200
    prefs = api.get(f"/v1/programs/{shop.pid}/members/{masha['member_id']}/preferences").body
    assert prefs["preferences"]["email"] is False


def test_sms_only_where_enabled_and_within_the_monthly_budget(api: ApiClient) -> None:
    from chalicelib.notify import sources

    shop = Shop(api, RULES, settings={"notifications": {"sms": {"enabled": True, "monthly_budget": 1}}})
    event = {"type": "member.signup", "occurred_at": "2026-01-10T10:00:00Z", "object": {"type": "customer", "id": "p"},
             "customer": {"id": "p", "phone": "+79161234567"}}
    member = shop.send(event)["member"]
    for n in (1, 2):
        sources.new_outbox(shop.pid, member["member_id"], "points_available", {"points": n}, None, f"b{n}", f"sms{n}")
    stream_poller().drain()
    assert [phone for phone, _ in sms_sent()] == ["+79161234567"]
    log = api.get(f"/v1/programs/{shop.pid}/members/{member['member_id']}/notifications").body["items"]
    assert sorted(e["last_error"] or "sent" for e in log) == ["sent", "sms_budget"]


def test_points_earned_is_derived_once_per_member_and_event_even_when_a_batch_splits_its_entries(
        api: ApiClient) -> None:
    """The event's transaction writes no points_earned message: the stream consumer derives one per member and
    event from the reward entries. Replayed records create nothing; entries of one member's event split over two
    batches get one follow-up message for the rest, so each reward is announced exactly once."""
    from chalicelib.notify import sources
    from chalicelib.store.ledger import LedgerEntryItem, OutboxItem

    shop = Shop(api, RULES)
    masha = shop.member("masha")
    olga = shop.member("olga", masha["code"])
    shop.order("olga", "o-1", 100_000)  # olga: cashback 50 + welcome 300; masha: 500
    entries = sorted((e for e in LedgerEntryItem.query(keys.member_partition(shop.pid, olga["member_id"]))
                      if isinstance(e, LedgerEntryItem) and e.kind == "reward"), key=lambda e: int(e.points))
    assert [int(e.points) for e in entries] == [50, 300]

    def messages() -> list[OutboxItem]:
        partition = f"OUTBOX#{shop.pid}#"
        return sorted((m for m in OutboxItem.scan() if isinstance(m, OutboxItem) and m.PK.startswith(partition)
                       and m.member_id == olga["member_id"] and m.template == "points_earned"),
                      key=lambda m: int(m.params["points"]))

    assert messages() == []
    assert sources.earned_messages(entries[:1]) == 1  # a batch that ends after olga's first entry
    assert sources.earned_messages(entries) == 1  # the next one (replayed from the first entry): the rest only
    assert sources.earned_messages(entries) == 0  # a replay of it
    assert [(int(m.params["points"]), len(m.params["entries"])) for m in messages()] == [(50, 1), (300, 1)]
    assert sources.earned_messages(entries[:1]) == 0


def test_points_reversed_is_derived_once_per_member_and_refund_even_when_a_batch_splits_its_entries(
        api: ApiClient) -> None:
    """The refund's transaction writes no outbox item: the stream consumer derives one points_reversed per member
    and refund from the reversal entries. A replayed batch creates nothing; a member's reversals split over two
    batches get one follow-up message for the rest; a fraud review's voids announce nothing."""
    from chalicelib.notify import sources
    from chalicelib.store.ledger import LedgerEntryItem, OutboxItem

    shop = Shop(api, RULES)
    masha = shop.member("masha")
    olga = shop.member("olga", masha["code"])
    shop.order("olga", "o-1", 100_000)  # olga: cashback 50 + welcome 300; masha: 500
    stream_poller().drain()
    refunded = shop.refund("o-1", 50_000, "r-1")  # half: olga 25 + 150, masha 250

    def olgas(kind: str) -> list[LedgerEntryItem]:
        return sorted((e for e in LedgerEntryItem.query(keys.member_partition(shop.pid, olga["member_id"]))
                       if isinstance(e, LedgerEntryItem) and e.kind == kind), key=lambda e: -int(e.points))

    def messages(member_id: str) -> list[OutboxItem]:
        partition = f"OUTBOX#{shop.pid}#"
        return sorted((m for m in OutboxItem.scan() if isinstance(m, OutboxItem) and m.PK.startswith(partition)
                       and m.member_id == member_id and m.template == "points_reversed"),
                      key=lambda m: int(m.params["points"]))

    assert refunded["rewards"]["status"] == "applied"
    assert messages(olga["member_id"]) == [] and messages(masha["member_id"]) == []  # none from the transaction
    entries = olgas("reversal")
    assert [int(e.points) for e in entries] == [-25, -150]
    assert sources.reversed_messages(olgas("reward")) == 0  # rewards are not reversals
    assert sources.reversed_messages(entries[:1]) == 1  # a batch that ends after olga's first reversal
    assert sources.reversed_messages(entries) == 1  # the next one (replayed from the first entry): the rest only
    assert sources.reversed_messages(entries) == 0  # a replay of it
    assert sources.reversed_messages(entries[:1]) == 0
    assert [(int(m.params["points"]), len(m.params["entries"])) for m in messages(olga["member_id"])] == [
        (25, 1), (150, 1)]
    assert all(m.business_key == refunded["business_key"] for m in messages(olga["member_id"]))
    stream_poller().drain()  # the stream delivers what is left: masha's one message, none more for olga
    [masha_message] = messages(masha["member_id"])
    assert int(masha_message.params["points"]) == 250 and masha_message.status == "sent"
    assert len(messages(olga["member_id"])) == 2
    void = LedgerEntryItem(PK="x", SK="y", program_id=shop.pid, member_id=olga["member_id"], entry_id="le_void",
                           kind="reversal", status="reversed", points=-5, reason="voided", reason_code="review_voided",
                           created_at=CLOCK.now(), effective_at=CLOCK.now(), business_key="b|order.paid")
    assert sources.reversed_messages([void]) == 0  # a review void: the member never heard of those points


def test_a_finished_message_expires_by_ttl_after_the_retention(api: ApiClient) -> None:
    from chalicelib.store.ledger import OUTBOX_RETENTION_DAYS, OutboxItem

    shop = Shop(api, RULES)
    solo = shop.member("solo")
    shop.order("solo", "o-1", 100_000)
    stream_poller().drain()
    [message] = [m for m in OutboxItem.scan() if isinstance(m, OutboxItem) and m.member_id == solo["member_id"]
                 and m.template == "points_earned"]
    assert message.status == "sent"
    assert message.expires_at_epoch == int(CLOCK.now().timestamp()) + OUTBOX_RETENTION_DAYS * 86400


def test_a_message_keeps_its_values_compressed_under_1_kb_and_one_stored_before_is_delivered_with_its_own(
        api: ApiClient) -> None:
    """A message's values are stored compressed (``params_z``): a ``points_earned`` stays under 1 KB, its write
    units (docs/cost.md). A message written before that (``params``, plain JSON), still pending at the deploy, is
    read and delivered with its values."""
    import json

    from chalicelib.store.db import Entity, raw_client
    from chalicelib.store.ledger import OutboxItem

    shop = Shop(api, RULES)
    masha, olga, vera = chain(shop)
    poller = stream_poller()
    poller.drain()
    shop.order("vera", "o-1", 300_000)
    poller.drain()
    client = raw_client()
    stored = [i for i in client.scan(TableName=Entity.Meta.table_name)["Items"] if i.get("entity", {}).get("S") == "outbox"]
    earned = [i for i in stored if i["template"]["S"] == "points_earned"]
    assert earned and all("params" not in i and "params_z" in i for i in earned)
    from bench.capacity import item_size

    assert all(item_size(i) < 1024 for i in earned), [item_size(i) for i in earned]
    [vera_message] = [m for m in OutboxItem.scan() if isinstance(m, OutboxItem) and m.template == "points_earned"
                      and m.member_id == vera["member_id"]]
    assert vera_message.params["points"] == 450 and vera_message.legacy_params is None

    # A message of the earlier layout: its values as plain JSON under "params", no "params_z".
    values = {"points": 70, "entries": ["le_old"]}
    old = OutboxItem(PK=f"OUTBOX#{shop.pid}#msg_old", SK="OUTBOX", program_id=shop.pid, message_id="msg_old",
                     member_id=masha["member_id"], template="points_available", locale="", params=values,
                     business_key="released|le_old", status="pending", created_at=CLOCK.now()).serialize()
    del old["params_z"]
    old["params"] = {"S": json.dumps(values)}
    before = len(ses_sent())
    client.put_item(TableName=Entity.Meta.table_name, Item=old)
    poller.drain()
    [sent] = ses_sent()[before:]
    assert sent.to == ["masha@example.com"] and "70" in sent.subject, sent.subject
    read = OutboxItem.get(f"OUTBOX#{shop.pid}#msg_old", "OUTBOX")
    assert read.params == values and read.status == "sent"
    assert olga  # the chain's middle member: paid by the order above
