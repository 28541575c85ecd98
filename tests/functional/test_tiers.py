"""Member tiers end to end (chalice.test.Client + moto): settings, promotion in the event's transaction,
concurrency, the review job's demotion after the clock moves, messages, history, trigger.tiers and multipliers."""

from __future__ import annotations

import json
from typing import Any

import pytest

from chalicelib.store import keys
from chalicelib.store.ledger import OutboxItem
from chalicelib.store.tiers import TierChangeItem, TierStateItem
from tests.functional.test_ledger_support import Shop, parallel, utc
from tests.functional.test_partner_webhooks_delivery import local_targets, receiver  # noqa: F401  (fixtures)
from tests.support import CLOCK, ApiClient

TIERS = {"metric": "points_earned", "period_months": 12, "levels": [
    {"id": "base", "threshold": 0, "names": {"ru": "Базовый", "en": "Base"}},
    {"id": "silver", "threshold": 1000, "names": {"ru": "Серебро", "en": "Silver"}},
    {"id": "gold", "threshold": 3000, "names": {"ru": "Золото", "en": "Gold"}}]}
CASHBACK = {"hold_days": 0, "rules": [
    {"id": "cashback", "trigger": {"event": "order.paid"}, "recipient": {"type": "self"}, "amount": {"rate_bp": 1000}}]}


@pytest.fixture(autouse=True)
def _clock(api: ApiClient) -> None:
    CLOCK.set(utc("2026-01-15T12:00:00Z"))  # after the api fixture, which resets the clock


def tiered_shop(api: ApiClient, rules: dict[str, Any] | bool | None = None, tiers: dict[str, Any] | None = None,
                partners: int = 1) -> Shop:
    shop = Shop(api, None, partners=partners, settings={"tiers": tiers or TIERS})
    if rules is not False:
        reply = api.put(f"/v1/programs/{shop.pid}/rules", rules if isinstance(rules, dict) else CASHBACK)
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
    assert change.partner_ids == [shop.partner["partner_id"]]  # where she is known: who may hear of it
    [message] = tier_messages(mid)
    assert message.params["to_name"] == "Серебро" and message.business_key == second["business_key"]
    # A replayed delivery changes nothing more.
    again = shop.order("anna", "o-2", 600_000)
    assert again["status"] == "duplicate" and len(changes(shop.pid, mid)) == 1 and len(tier_messages(mid)) == 1
    # Straight to gold with one big order (skipping nothing: one change base→... silver→gold).
    third = shop.order("anna", "o-3", 2_000_000)
    assert third["tiers"]["changes"][0]["to"] == "gold" and state(shop.pid, mid).tier == "gold"


def test_the_promotion_is_one_transaction_with_the_orders_entries(api: ApiClient,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The tier item, the history item, the message and the order's ledger entries commit together."""
    from chalicelib.store import transact
    from chalicelib.store.ledger import LedgerEntryItem

    shop = tiered_shop(api)
    committed: list[list[str]] = []
    original = transact.Transaction.commit

    def recording(self: transact.Transaction, **kw: Any) -> None:
        kinds = [type(op.args[0]).__name__ if op.kind != "condition_check" else op.args[0].__name__ for op in self.ops]
        committed.append(kinds)
        original(self, **kw)

    monkeypatch.setattr(transact.Transaction, "commit", recording)
    reply = shop.order("tx", "tx-1", 1_500_000)
    assert reply["tiers"]["changes"][0]["to"] == "silver"
    [kinds] = [k for k in committed if "TierChangeItem" in k]
    assert {"TierStateItem", "TierChangeItem", "OutboxItem", LedgerEntryItem.__name__, "EventItem"} <= set(kinds)
    tier_messages_in_tx = [m for m in tier_messages(reply["member"]["member_id"])]
    assert len(tier_messages_in_tx) == 1


def test_concurrent_orders_promote_once_and_count_every_point(api: ApiClient, concurrent_requests: None) -> None:
    shop = tiered_shop(api)
    mid = shop.order("olga", "o-0", 100_000)["member"]["member_id"]  # 100 points
    # Five orders at once, 300 points each: 1600 in all; silver (1000) is crossed by exactly one of them.
    replies = parallel([lambda i=i: shop.order("olga", f"o-{i}", 300_000) for i in range(1, 6)])
    promoted = [r for r in replies if r.get("tiers")]
    assert len(promoted) == 1 and promoted[0]["tiers"]["changes"][0]["to"] == "silver"
    tier = state(shop.pid, mid)
    assert tier.tier == "silver" and tier.buckets == {"2026-01": 1600} and int(tier.version) == 6
    assert len(changes(shop.pid, mid)) == 1 and len(tier_messages(mid)) == 1


def test_spend_and_converted_referrals_metrics(api: ApiClient) -> None:
    spend = {"metric": "spend", "period_months": 6, "levels": [
        {"id": "base", "threshold": 0}, {"id": "vip", "threshold": 1_000_000}]}
    shop = tiered_shop(api, tiers=spend)
    mid = shop.order("ivan", "s-1", 700_000)["member"]["member_id"]
    shop.refund("s-1", 200_000)  # 500 000 left
    assert state(shop.pid, mid).buckets == {"2026-01": 500_000}
    reply = shop.order("ivan", "s-2", 500_000)
    assert reply["tiers"]["changes"][0]["to"] == "vip" and int(reply["tiers"]["changes"][0]["value"]) == 1_000_000
    shop.refund("s-2", 100_000)  # a clawback lowers the metric but never demotes at once: the review will
    tier = state(shop.pid, mid)
    assert (tier.tier, tier.buckets, tier.review_month) == ("vip", {"2026-01": 900_000}, "2026-01")

    referrals = {"metric": "converted_referrals", "levels": [
        {"id": "base", "threshold": 0}, {"id": "ambassador", "threshold": 2}]}
    club = tiered_shop(api, tiers=referrals)
    olga = club.member("olga-r")
    for i in range(2):
        club.member(f"friend-{i}", olga["code"])
        assert TierStateItem.count(keys.member_partition(club.pid, olga["member_id"]),
                                   TierStateItem.SK == "TIER") == min(i, 1)  # joining is not converting
        reply = club.order(f"friend-{i}", f"f-{i}", 100_000)
    assert reply["tiers"]["changes"] == [{"member_id": olga["member_id"], "from": "base", "to": "ambassador",
                                          "direction": "up", "value": 2, "threshold": 2}]
    # A friend enrolled by the order itself (no signup first) converts too.
    club.order("friend-new", "f-new", 100_000, code=olga["code"])
    assert state(club.pid, olga["member_id"]).buckets == {"2026-01": 3}


# --------------------------------------------------------------------------- rules


def test_rules_put_checks_tier_names(api: ApiClient) -> None:
    plain = Shop(api, None)
    rule = {"id": "gold", "trigger": {"event": "order.paid", "tiers": ["gold"]}, "recipient": {"type": "self"},
            "amount": {"points": 10}, "tier_multipliers": {"platinum": 20_000}}
    reply = api.put(f"/v1/programs/{plain.pid}/rules", {"rules": [rule]})
    assert reply.status == 422 and {e["message"] for e in reply.body["error"]["details"]["errors"]} == {
        "the program has no settings.tiers"}
    shop = tiered_shop(api, rules=False)
    reply = api.put(f"/v1/programs/{shop.pid}/rules", {"rules": [rule]})
    assert reply.status == 422 and [e["path"] for e in reply.body["error"]["details"]["errors"]] == [
        "$.rules[0].tier_multipliers.platinum"]
    reply = api.put(f"/v1/programs/{shop.pid}/rules", {"rules": [{**rule, "tier_multipliers": {"gold": 20_000}}]})
    assert reply.status == 200, reply.body


def test_trigger_tiers_and_multipliers_use_the_tier_before_the_event(api: ApiClient) -> None:
    rules = {"hold_days": 0, "rules": [
        {"id": "cashback", "trigger": {"event": "order.paid"}, "recipient": {"type": "self"},
         "amount": {"rate_bp": 1000}, "tier_multipliers": {"silver": 15_000, "gold": 20_000}},
        {"id": "silver-club", "trigger": {"event": "order.paid", "tiers": ["silver", "gold"]},
         "recipient": {"type": "self"}, "amount": {"points": 7}}]}
    shop = tiered_shop(api, rules=rules)
    first = shop.order("pavel", "t-1", 1_000_000)  # 1000 points at x1 (base before the event): promoted to silver
    assert first["rewards"]["points"] == 1000 and first["tiers"]["changes"][0]["to"] == "silver"
    assert [s["reason_code"] for s in first["rewards"]["skipped"]] == ["tier_not_matched"]
    second = shop.order("pavel", "t-2", 100_100)  # silver now: 100 * 1.5 = 150, plus the silver club's 7
    by_rule = {p["rule_id"]: p for p in second["rewards"]["postings"]}
    assert by_rule["cashback"]["points"] == 150 and "Tier silver: x1.5." in by_rule["cashback"]["reason"]
    assert by_rule["silver-club"]["points"] == 7 and second["rewards"]["skipped"] == []


def test_gold_members_get_the_partners_catalogue_offer_once_a_month(api: ApiClient) -> None:
    """Tier privileges: an offer reward + trigger.tiers + offer.per_month, nothing else."""
    from tests.functional.test_vouchers import offer, upload

    shop = tiered_shop(api, rules=False, partners=2)
    store, catalogue = shop.partners
    gift = offer(api, shop.pid, catalogue, name="Catalogue gift")
    upload(api, shop.pid, catalogue, gift["offer_id"], [f"CAT-{i}" for i in range(10)])
    reply = api.put(f"/v1/programs/{shop.pid}/rules", {"hold_days": 0, "rules": [
        {"id": "cashback", "trigger": {"event": "order.paid"}, "recipient": {"type": "self"},
         "amount": {"rate_bp": 1000}},
        {"id": "gold-catalogue", "name": "Gold: the catalogue offer once a month",
         "trigger": {"event": "order.paid", "tiers": ["gold"]}, "recipient": {"type": "self"},
         "amount": {"offer": {"partner_id": catalogue["partner_id"], "offer_id": gift["offer_id"], "per_month": 1}}},
    ]})
    assert reply.status == 200, reply.body

    def order(order_id: str, total: int, at: str = "2026-01-15T10:00:00Z") -> dict[str, Any]:
        return shop.order("gala", order_id, total, at=at, partner=store)

    base = order("g-1", 3_000_000)  # 3000 points: gold from now on, but this order was placed as base
    mid = base["member"]["member_id"]
    assert base["tiers"]["changes"][0]["to"] == "gold" and "vouchers" not in base["rewards"]
    assert {s["rule_id"]: s["reason_code"] for s in base["rewards"]["skipped"]} == {"gold-catalogue": "tier_not_matched"}
    gold = order("g-2", 10_000)
    [voucher] = gold["rewards"]["vouchers"]
    assert (voucher["member_id"], voucher["offer_id"], voucher["rule_id"]) == (mid, gift["offer_id"], "gold-catalogue")
    again = order("g-3", 10_000)  # the same month: once is the limit
    assert "vouchers" not in again["rewards"]
    assert {s["rule_id"]: s["reason_code"] for s in again["rewards"]["skipped"]} == {"gold-catalogue": "offer_limit"}
    CLOCK.set(utc("2026-02-03T12:00:00Z"))  # next month, still gold: one more
    february = order("g-4", 10_000, at="2026-02-03T10:00:00Z")
    assert len(february["rewards"]["vouchers"]) == 1
    listed = api.get(f"/v1/programs/{shop.pid}/members/{mid}/vouchers")
    assert listed.status == 200 and [v["rule_id"] for v in listed.body["items"]] == ["gold-catalogue"] * 2


# --------------------------------------------------------------------------- review (demotion)


def test_the_review_job_demotes_after_the_clock_moves_and_is_idempotent(api: ApiClient) -> None:
    from chalicelib.jobs import tiers as job

    shop = tiered_shop(api)
    anna = shop.order("anna", "a-1", 3_100_000)["member"]["member_id"]  # 3100 points in Jan 2026: gold
    boris = shop.order("boris", "b-1", 1_100_000)["member"]["member_id"]  # 1100: silver
    CLOCK.set(utc("2026-06-10T12:00:00Z"))
    shop.order("boris", "b-2", 1_000_000, at="2026-06-10T10:00:00Z")  # 1000 more in June: keeps silver longer
    assert (state(shop.pid, anna).review_month, state(shop.pid, boris).review_month) == ("2027-01", "2027-06")
    assert job.run()["members"] == 0  # nobody is due before January 2027 (nothing read but the due months)

    CLOCK.set(utc("2026-12-20T12:00:00Z"))
    shop.order("anna", "a-2", 1_200_000, at="2026-12-20T10:00:00Z")  # Anna earns 1200 in December
    CLOCK.set(utc("2027-01-02T03:00:00Z"))  # January's window drops January 2026
    result = job.run()
    assert (result["members"], result["demoted"]) == (1, 1), result
    demoted = state(shop.pid, anna)
    assert (demoted.tier, demoted.review_month, demoted.buckets) == ("silver", "2027-12", {"2026-12": 1200})
    newest = sorted(changes(shop.pid, anna), key=lambda c: c.at)[-1]
    assert (newest.from_tier, newest.to_tier, newest.direction, newest.reason_code, int(newest.value)) == (
        "gold", "silver", "down", "review", 1200)
    [_, message] = sorted(tier_messages(anna), key=lambda m: m.created_at)
    assert message.params["direction"] == "down" and message.params["to_tier"] == "silver"
    assert state(shop.pid, boris).tier == "silver"  # not due yet
    # Idempotent: the same day again, or a second run, changes nothing.
    assert job.run()["members"] == 0 and len(changes(shop.pid, anna)) == 2  # base→gold, gold→silver
    version = int(state(shop.pid, anna).version)
    from chalicelib.store import tenancy_repo

    assert job.review_member(tenancy_repo.get_program(shop.pid), anna, CLOCK.now()) == "not_due"
    assert int(state(shop.pid, anna).version) == version

    CLOCK.set(utc("2027-06-01T00:00:00Z"))  # Boris's June 2026 leaves the window: base
    result = job.run()
    assert (result["demoted"], state(shop.pid, boris).tier, state(shop.pid, boris).review_month) == (1, "base", None)
    assert state(shop.pid, boris).GSI1PK is None  # the lowest tier is never due


def test_a_clawback_brings_the_review_forward(api: ApiClient) -> None:
    from chalicelib.jobs import tiers as job

    shop = tiered_shop(api)
    mid = shop.order("vera", "v-1", 1_200_000)["member"]["member_id"]  # 1200: silver
    shop.refund("v-1", 600_000, at="2026-01-15T11:00:00Z")  # 600 points clawed back: 600 left, still silver
    tier = state(shop.pid, mid)
    assert (tier.tier, tier.buckets, tier.review_month) == ("silver", {"2026-01": 600}, "2026-01")
    assert job.run()["demoted"] == 1 and state(shop.pid, mid).tier == "base"


# --------------------------------------------------------------------------- profile and wallet


def test_profile_and_wallet_show_the_tier_and_the_progress(api: ApiClient) -> None:
    shop = tiered_shop(api)
    mid = shop.order("lena", "l-1", 1_200_000)["member"]["member_id"]  # 1200 points: silver, 1800 to gold
    profile = api.get(f"/v1/programs/{shop.pid}/members/{mid}", key=shop.partner["api_key"])
    assert profile.status == 200, profile.body
    status = profile.body["tier_status"]
    assert profile.body["tier"] == "silver"
    assert {k: status[k] for k in ("tier", "metric", "value", "period_months", "review_month")} == {
        "tier": "silver", "metric": "points_earned", "value": 1200, "period_months": 12, "review_month": "2027-01"}
    assert status["next"] == {"tier": "gold", "name": "Золото", "threshold": 3000, "remaining": 1800}
    assert [(h["from"], h["to"], h["reason_code"]) for h in status["history"]] == [("base", "silver", "promotion")]
    plain = Shop(api, None)  # no tiers: nothing more is read, nothing shown
    other = plain.member("oleg")
    reply = api.get(f"/v1/programs/{plain.pid}/members/{other['member_id']}")
    assert reply.status == 200 and reply.body["tier_status"] is None and reply.body["tier"] == "base"

    url = api.post(f"/v1/programs/{shop.pid}/members/{mid}/wallet-links", {}).body["url"]
    page = api.get(url.removeprefix("https://srf.test") + "?lang=en", key=None, headers={"Accept": "text/html"})
    assert page.status == 200
    html = page.body
    assert 'id="tier"' in html and 'data-field="tier">Silver<' in html
    assert 'data-field="tier_value">1200<' in html and 'data-field="tier_threshold">3000<' in html
    assert "towards «Gold»" in html and 'aria-valuenow="40"' in html
    ru = api.get(url.removeprefix("https://srf.test") + "?lang=ru", key=None, headers={"Accept": "text/html"}).body
    assert "Ваш статус" in ru and "«Золото»" in ru


def test_a_refund_claws_back_from_the_month_the_points_were_earned(api: ApiClient) -> None:
    shop = tiered_shop(api)
    mid = shop.order("yana", "y-1", 1_200_000)["member"]["member_id"]  # 1200 in January
    CLOCK.set(utc("2026-02-10T12:00:00Z"))
    shop.order("yana", "y-2", 100_000, at="2026-02-10T10:00:00Z")  # 100 in February
    shop.refund("y-1", 600_000, at="2026-02-11T10:00:00Z")  # half of January's order: 600 points back
    assert state(shop.pid, mid).buckets == {"2026-01": 600, "2026-02": 100}


def test_the_review_is_resumable_and_two_runs_at_once_change_a_member_once(api: ApiClient,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib.jobs import tiers as job
    from chalicelib.store import tenancy_repo

    shop = tiered_shop(api)
    members = [shop.order(f"r{i}", f"r-{i}", 1_100_000)["member"]["member_id"] for i in range(3)]  # all silver
    CLOCK.set(utc("2027-01-03T00:00:00Z"))
    monkeypatch.setattr(job, "MAX_MEMBERS", 2)  # a run cut short: the rest waits for the next run
    first = job.run()
    assert (first["demoted"], first["more"]) == (2, 1), first
    second = job.run()
    assert (second["demoted"], second["more"]) == (1, 0), second
    assert {state(shop.pid, m).tier for m in members} == {"base"}
    assert all(len(changes(shop.pid, m)) == 2 for m in members)

    # Two reviews of the same state at once: the second one's version condition fails; nothing is doubled.
    CLOCK.set(utc("2027-01-15T12:00:00Z"))
    mid = shop.order("late", "late-1", 1_100_000, at="2027-01-15T10:00:00Z")["member"]["member_id"]  # silver
    CLOCK.set(utc("2028-01-02T00:00:00Z"))
    stale = state(shop.pid, mid)
    program = tenancy_repo.get_program(shop.pid)
    assert job.review_member(program, mid, CLOCK.now()) == "demoted"
    from chalicelib.store.tiers import TierStateItem as Item

    monkeypatch.setattr(Item, "get", classmethod(lambda cls, *a, **k: stale))  # a run that read before the first wrote
    assert job.review_member(program, mid, CLOCK.now()) == "concurrent"
    monkeypatch.undo()
    assert state(shop.pid, mid).tier == "base" and len(changes(shop.pid, mid)) == 2
    assert len(tier_messages(mid)) == 2


def test_tiers_used_by_the_rules_cannot_be_removed(api: ApiClient) -> None:
    rules = {"rules": [{"id": "gold", "trigger": {"event": "order.paid", "tiers": ["gold"]},
                        "recipient": {"type": "self"}, "amount": {"points": 10}}]}
    shop = tiered_shop(api, rules=rules)
    path = f"/v1/programs/{shop.pid}"
    for tiers in (None, {"levels": [{"id": "base", "threshold": 0}, {"id": "silver", "threshold": 10}]}):
        reply = api.patch(path, {"settings": {"tiers": tiers}})
        assert reply.status == 422 and "gold" in reply.body["error"]["details"]["errors"][0]["message"], reply.body
    renamed = {**TIERS, "period_months": 6}
    assert api.patch(path, {"settings": {"tiers": renamed}}).status == 200


# --------------------------------------------------------------------------- partners hear of it


def test_tier_changed_reaches_the_partners_the_member_is_known_at(api: ApiClient, receiver: Any,  # noqa: F811
                                                                  local_targets: None) -> None:  # noqa: F811
    """tier.changed through the outgoing-webhook path: stream → deliveries → the sender → a local receiver."""
    from datetime import timedelta

    from chalicelib.jobs import partner_webhooks as sender
    from chalicelib.jobs import tiers as job
    from infra.local_stream import StreamPoller
    from tests.functional.test_partner_webhooks_delivery import at, real_now, register, signed_with, verified

    now = real_now()
    CLOCK.set(now - timedelta(minutes=1))
    monthly = {**TIERS, "period_months": 1}
    shop = tiered_shop(api, tiers=monthly, partners=2)
    store, cafe = shop.partners
    store_hook = register(api, shop.pid, store, receiver.url + "/store", ["tier.changed"])
    register(api, shop.pid, cafe, receiver.url + "/cafe", ["tier.changed"])  # the member is not known there
    from app import app

    poller = StreamPoller(app.handler_map["table_stream"], log=lambda _m: None)
    reply = shop.order("kira", "k-1", 1_500_000, at=at(now - timedelta(minutes=1)), partner=store)
    mid = reply["member"]["member_id"]
    assert reply["tiers"]["changes"][0]["to"] == "silver"
    CLOCK.set(now)
    poller.drain()
    sender.run()
    [up] = [verified(r, store_hook["signing_secret"]) for r in receiver.of_type("tier.changed")]
    assert up["data"] == {"member_id": mid, "from_tier": "base", "to_tier": "silver", "direction": "up",
                          "reason_code": "promotion", "metric": "points_earned", "value": 1500, "threshold": 1000,
                          "at": up["data"]["at"]}
    assert all(r["path"] == "/hook/store" for r in receiver.requests)

    later = now + timedelta(days=40)  # the next month: a 1-month period no longer counts the order
    CLOCK.set(later)
    assert job.run()["demoted"] == 1
    poller.drain()
    sender.run()
    down = receiver.of_type("tier.changed")[-1]
    assert signed_with(down, store_hook["signing_secret"])  # (the moved clock's timestamp)
    body = json.loads(down["body"])
    assert (body["data"]["direction"], body["data"]["to_tier"], body["data"]["reason_code"]) == ("down", "base",
                                                                                                  "review")
    assert len(receiver.requests) == 2 and "@example.com" not in b" ".join(r["body"] for r in receiver.requests).decode()
