"""Birthday gifts (issue #11): the daily job grants the program's gift once per member and year.

Real paths under moto: members enrolled by signed events carrying ``customer.birthday``, program
settings through the API, the job's ``run(now)`` (what the scheduled Lambda calls), the statement,
vouchers and the message delivered by the stream dispatcher.
"""

from __future__ import annotations

from typing import Any

import pytest

from chalicelib.jobs import birthdays
from chalicelib.store import keys
from chalicelib.store.birthdays import BirthdayGiftItem, BirthdayPointerItem
from chalicelib.store.db import Entity
from chalicelib.store.ledger import OutboxItem
from tests.functional.test_ledger_support import Shop, check_invariants, utc
from tests.functional.test_vouchers import offer, upload
from tests.support import CLOCK, ApiClient

JOINED = "2026-01-10T10:00:00Z"


def signup(shop: Shop, customer: str, birthday: str | None, at: str = JOINED, **fields: Any) -> str:
    CLOCK.set(utc(at))
    event: dict[str, Any] = {"type": "member.signup", "occurred_at": at, "object": {"type": "customer", "id": customer},
                             "customer": {"id": customer, "email": f"{customer}@example.com", "birthday": birthday,
                                          **fields}}
    return shop.send(event)["member"]["member_id"]  # type: ignore[no-any-return]


def order(shop: Shop, customer: str, order_id: str, at: str, birthday: str | None) -> None:
    CLOCK.set(utc(at))
    event = shop.order_event(customer, order_id, 10_000, at=at)
    event["customer"]["birthday"] = birthday
    shop.send(event)


def set_gift(api: ApiClient, shop: Shop, gift: Any, **settings: Any) -> None:
    reply = api.patch(f"/v1/programs/{shop.pid}", {"settings": {"birthday_gift": gift, **settings}})
    assert reply.status == 200, reply.body


def run_at(when: str, **kw: Any) -> dict[str, int]:
    now = utc(when)
    CLOCK.set(now)
    return birthdays.run(now, **kw)


def gifts(pid: str, member_id: str) -> list[BirthdayGiftItem]:
    return [g for g in BirthdayGiftItem.query(keys.member_partition(pid, member_id),
                                              Entity.SK.startswith("BIRTHDAYGIFT#"), consistent_read=True)
            if isinstance(g, BirthdayGiftItem)]


def messages(member_id: str) -> list[OutboxItem]:
    return [m for m in OutboxItem.scan() if isinstance(m, OutboxItem) and m.member_id == member_id
            and m.template == "birthday_gift"]


def reset_watermark(pid: str) -> None:
    """As if the job's state were lost: the next run does the day again (every gift must still be once)."""
    from chalicelib.store.birthdays import BirthdayJobStateItem

    BirthdayJobStateItem(*keys.birthday_job_state(pid)).delete()


@pytest.fixture
def shop(api: ApiClient) -> Shop:
    return Shop(api, None, partners=2)


def test_points_gift_on_the_birthday_once_per_year_also_when_rerun(api: ApiClient, shop: Shop) -> None:
    from tests.notify_support import ses_sent, stream_poller

    olga = signup(shop, "olga", "1990-03-05", name="Olga", locale="en")
    boris = signup(shop, "boris", "1985-03-06")  # tomorrow's birthday
    nobody = signup(shop, "anna", None)
    set_gift(api, shop, {"points": 200})
    assert run_at("2026-03-04T12:00:00Z")["granted"] == 0  # nobody's birthday
    first = run_at("2026-03-05T00:30:00Z")
    assert (first["programs"], first["granted"], first["points"]) == (1, 1, 200)
    assert shop.balance(olga)["available"] == 200 and shop.balance(boris)["available"] == 0
    [entry] = [e for e in shop.ledger(olga) if e["reason_code"] == "birthday_gift"]
    assert (entry["kind"], entry["status"], entry["points"]) == ("reward", "available", 200)
    [gift] = gifts(shop.pid, olga)
    assert (gift.year, gift.day, gift.outcome, int(gift.points)) == (2026, "2026-03-05", "granted", 200)
    # Reruns the same day (the watermark says done), and with the watermark lost: nothing twice.
    assert run_at("2026-03-05T13:00:00Z")["granted"] == 0
    reset_watermark(shop.pid)
    again = run_at("2026-03-05T14:00:00Z")
    assert (again["granted"], again["already"]) == (0, 1)
    assert shop.balance(olga)["available"] == 200 and len(messages(olga)) == 1
    check_invariants(shop.pid, olga)
    # The message: one e-mail in her language (the points are not announced a second time as points_earned).
    stream_poller().drain()
    [mail] = [m for m in ses_sent() if m.to == ["olga@example.com"]]
    assert "Happy birthday" in mail.subject and "200" in mail.text and "1990" not in mail.text
    # The next day is Boris's; next year Olga's again.
    assert run_at("2026-03-06T00:30:00Z")["granted"] == 1 and shop.balance(boris)["available"] == 200
    assert run_at("2027-03-05T00:30:00Z")["granted"] == 1
    assert shop.balance(olga)["available"] == 400 and [g.year for g in gifts(shop.pid, olga)] == [2026, 2027]
    assert shop.balance(nobody)["available"] == 0


def test_a_run_cut_short_resumes_where_it_stopped(api: ApiClient, shop: Shop, monkeypatch: pytest.MonkeyPatch) -> None:
    members = [signup(shop, f"m{i}", "1990-03-05") for i in range(5)]
    set_gift(api, shop, {"points": 10})
    monkeypatch.setattr(birthdays, "MEMBER_PAGE", 2)
    first = run_at("2026-03-05T00:10:00Z", max_pages=1)  # one page of two members, then out of budget
    assert (first["granted"], first["unfinished"]) == (2, 1)
    second = run_at("2026-03-05T01:10:00Z", max_pages=1)
    assert (second["granted"], second["unfinished"]) == (2, 1)
    third = run_at("2026-03-05T02:10:00Z")
    assert (third["granted"], third["unfinished"]) == (1, 0)
    assert [shop.balance(m)["available"] for m in members] == [10] * 5
    assert run_at("2026-03-05T03:10:00Z")["pages"] == 0  # done: one GetItem of the watermark


def test_a_missed_day_is_caught_up(api: ApiClient, shop: Shop) -> None:
    olga = signup(shop, "olga", "1990-03-05")
    set_gift(api, shop, {"points": 10})
    run_at("2026-03-03T12:00:00Z")  # the watermark starts here
    assert run_at("2026-03-07T12:00:00Z")["granted"] == 1  # the job was down on the 5th
    assert gifts(shop.pid, olga)[0].day == "2026-03-05"


def test_a_birthday_set_or_moved_within_n_days_does_not_count(api: ApiClient, shop: Shop) -> None:
    recent = signup(shop, "recent", "1990-03-05", at="2026-02-20T10:00:00Z")  # 13 days before
    moved = signup(shop, "moved", "1990-06-01")
    order(shop, "moved", "o-1", "2026-02-25T10:00:00Z", "1990-03-05")  # moved to 5 March 8 days before
    fixed_year = signup(shop, "fixed", "1991-03-05")
    order(shop, "fixed", "o-2", "2026-03-01T10:00:00Z", "1990-03-05")  # a corrected year: the day stays
    week = signup(shop, "week", "1990-03-05", at="2026-02-25T10:00:00Z")
    set_gift(api, shop, {"points": 10})
    result = run_at("2026-03-05T00:30:00Z")
    assert (result["granted"], result["too_recent"]) == (1, 3)
    assert [shop.balance(m)["available"] for m in (recent, moved, fixed_year, week)] == [0, 0, 10, 0]
    # The moved birthday left the old day's index; the profile says when it moved.
    assert list(BirthdayPointerItem.query(keys.birthday_partition(shop.pid, "0601"))) == []
    profile = api.get(f"/v1/programs/{shop.pid}/members/{moved}").body
    assert "birthday" not in str(profile)  # the member API does not show it
    # A shorter guard (program setting) lets the week-old one count on the same day's rerun.
    set_gift(api, shop, {"points": 10}, birthday_min_age_days=7)
    reset_watermark(shop.pid)
    assert run_at("2026-03-05T02:00:00Z")["granted"] == 3  # recent (13 days), moved and week (8 days)
    assert [shop.balance(m)["available"] for m in (recent, moved, fixed_year, week)] == [10] * 4


def test_a_partner_offer_gift_falls_back_when_the_pool_is_empty(api: ApiClient, shop: Shop) -> None:
    bank, cafe = shop.partners
    coffee = offer(api, shop.pid, cafe, valid_days=30)
    upload(api, shop.pid, cafe, coffee["offer_id"], ["BDAY-1", "BDAY-2"])
    members = [signup(shop, f"m{i}", "1990-03-05", locale="ru") for i in range(3)]
    set_gift(api, shop, {"points": 100, "funded_by": bank["partner_id"],
                         "offer": {"partner_id": cafe["partner_id"], "offer_id": coffee["offer_id"],
                                   "fallback_points": 50}})
    result = run_at("2026-03-05T00:30:00Z")
    assert (result["granted"], result["vouchers"], result["fallback"], result["points"]) == (3, 2, 1, 350)
    codes = []
    for m in members:
        reply = api.get(f"/v1/programs/{shop.pid}/members/{m}/vouchers")
        codes += [v["code"] for v in reply.body["items"]]
        [gift] = gifts(shop.pid, m)
        if gift.outcome == "fallback":
            entries = {e["reason_code"]: e for e in shop.ledger(m) if e["kind"] == "reward"}
            assert entries["offer_fallback"]["funding_partner_id"] == cafe["partner_id"]
            assert entries["birthday_gift"]["funding_partner_id"] == bank["partner_id"]
            assert shop.balance(m)["available"] == 150
        else:
            assert gift.voucher_id and shop.balance(m)["available"] == 100
        check_invariants(shop.pid, m)
    assert sorted(codes) == ["BDAY-1", "BDAY-2"]  # each code once
    # One message each, naming the code; no separate voucher_issued message.
    with_code = [msg for m in members for msg in messages(m) if msg.params.get("code")]
    assert sorted(msg.params["code"] for msg in with_code) == ["BDAY-1", "BDAY-2"]
    assert not [o for o in OutboxItem.scan() if isinstance(o, OutboxItem) and o.template == "voucher_issued"]
    from chalicelib.notify import kinds
    from chalicelib.notify.render import render

    out = render("birthday_gift", "ru", {**kinds.values_of("birthday_gift", with_code[0].params),
                                         "program": "Demo", "points_unit": "points"})
    assert "С днём рождения" in out.subject and with_code[0].params["code"] in out.text and "100 баллов" in out.text


def test_an_offer_only_gift_without_fallback_records_pool_empty(api: ApiClient, shop: Shop) -> None:
    cafe = shop.partners[1]
    coffee = offer(api, shop.pid, cafe)
    olga = signup(shop, "olga", "1990-03-05")
    set_gift(api, shop, {"offer": {"partner_id": cafe["partner_id"], "offer_id": coffee["offer_id"]}})
    result = run_at("2026-03-05T00:30:00Z")
    assert (result["granted"], result["pool_empty"], result["points"]) == (1, 1, 0)
    assert gifts(shop.pid, olga)[0].outcome == "pool_empty" and messages(olga) == []
    # Decided for the year: codes uploaded later the same day do not make a second attempt.
    upload(api, shop.pid, cafe, coffee["offer_id"], ["LATE-1"])
    reset_watermark(shop.pid)
    assert run_at("2026-03-05T05:00:00Z")["vouchers"] == 0


def test_29_february_birthdays_on_28_february_in_other_years(api: ApiClient, shop: Shop) -> None:
    leapling = signup(shop, "leap", "2000-02-29", at="2025-01-10T10:00:00Z")
    set_gift(api, shop, {"points": 10})
    assert run_at("2027-02-28T00:30:00Z")["granted"] == 1  # 2027 has no 29 February
    assert run_at("2027-03-01T00:30:00Z")["granted"] == 0
    assert run_at("2028-02-28T00:30:00Z")["granted"] == 0  # 2028 has one: wait for it
    assert run_at("2028-02-29T00:30:00Z")["granted"] == 1
    assert [(g.year, g.day) for g in gifts(shop.pid, leapling)] == [(2027, "2027-02-28"), (2028, "2028-02-29")]


def test_the_gift_setting_is_validated(api: ApiClient, shop: Shop) -> None:
    cafe = shop.partners[1]
    path = f"/v1/programs/{shop.pid}"
    for bad, where in [
        ({"birthday_gift": {"points": 0}}, "points"),
        ({"birthday_gift": {"funded_by": cafe["partner_id"]}}, "birthday_gift"),  # neither points nor an offer
        ({"birthday_gift": {"points": 10, "funded_by": "ptn_nobody"}}, "funded_by"),
        ({"birthday_gift": {"offer": {"partner_id": cafe["partner_id"], "offer_id": "off_nothing"}}}, "offer_id"),
        ({"birthday_min_age_days": -1}, "birthday_min_age_days"),
        ({"birthday_min_age_days": 366}, "birthday_min_age_days"),
    ]:
        reply = api.patch(path, {"settings": bad})
        assert reply.status == 422 and where in str(reply.body), (bad, reply.body)
    assert api.patch(path, {"settings": {"birthday_gift": {"points": 5}, "birthday_min_age_days": 0}}).status == 200
    assert api.patch(path, {"settings": {"birthday_gift": None}}).status == 200  # off again
    assert run_at("2026-03-05T00:30:00Z")["programs"] == 0


def test_erasure_takes_the_birthday_off_the_index(api: ApiClient, shop: Shop) -> None:
    olga = signup(shop, "olga", "1990-03-05")
    assert len(list(BirthdayPointerItem.query(keys.birthday_partition(shop.pid, "0305")))) == 1
    reply = api.post(f"/v1/programs/{shop.pid}/members/{olga}/erase")
    assert reply.status == 200 and reply.body["status"] == "erased", reply.body
    assert list(BirthdayPointerItem.query(keys.birthday_partition(shop.pid, "0305"))) == []
    set_gift(api, shop, {"points": 10})
    assert run_at("2026-03-05T00:30:00Z")["granted"] == 0


def test_with_no_guard_a_birthday_set_on_the_day_counts_on_a_later_run(api: ApiClient, shop: Shop) -> None:
    set_gift(api, shop, {"points": 10}, birthday_min_age_days=0)
    assert run_at("2026-03-05T00:30:00Z")["granted"] == 0
    olga = signup(shop, "olga", "1990-03-05", at="2026-03-05T09:00:00Z")
    assert run_at("2026-03-05T10:00:00Z")["granted"] == 1  # today stays open while the guard is 0
    assert run_at("2026-03-05T11:00:00Z")["granted"] == 0 and shop.balance(olga)["available"] == 10


def test_the_local_scheduler_drives_the_job_as_eventbridge_would(api: ApiClient, shop: Shop) -> None:
    from app import app
    from infra.local_events import EventSourceRunner

    olga = signup(shop, "olga", "1990-03-05")
    set_gift(api, shop, {"points": 10})
    CLOCK.set(utc("2026-03-05T06:00:00Z"))
    runner = EventSourceRunner(app, speedup=60, log=lambda _m: None)
    assert "birthday_gifts: rate(1 hour) → every 60 s" in runner.describe()
    result = runner.fire("birthday_gifts")
    assert result["granted"] == 1 and shop.balance(olga)["available"] == 10
