"""One contract per port, run against the in-memory fake and the DynamoDB implementation (moto).

If a fake passes here, a service test on it means the same as one on DynamoDB. Each test gets a
``impl`` fixture parametrised ``fake`` / ``dynamo``; the dynamo side runs under moto with a fresh
table (the ``aws`` fixture), the fake side needs nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from chalicelib.domain.errors import Conflict, NotFound
from chalicelib.domain.records import NewKey, StaleMember
from chalicelib.services import ports
from chalicelib.store import fakes, keys
from chalicelib.store.dynamo_ports import MAX_COUPONS_PER_MEMBER
from chalicelib.store.events import EventItem
from chalicelib.store.ledger import BalanceItem, OutboxItem
from chalicelib.store.members import MemberItem, new_member
from tests import ports_support as support

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
PID = "prg_contract"


@dataclass
class Impl:
    kind: str
    ports: ports.Ports

    def seed_member(self, member_id: str, **fields: Any) -> MemberItem:
        member = new_member(PID, member_id, f"CODE{member_id.upper()}", joined_at=NOW, joined_via="api",
                            refs=[], **fields)
        if self.kind == "fake":
            self.ports.members.put(member)  # type: ignore[attr-defined]
        else:
            member.save()
        found = self.ports.members.get(PID, member_id)
        assert found is not None
        return found

    def seed(self, *items: Any) -> None:
        for item in items:
            if self.kind == "dynamo":
                item.save()
            elif isinstance(item, EventItem):
                self.ports.events.put(item)  # type: ignore[attr-defined]
            elif isinstance(item, OutboxItem):
                self.ports.outbox.put(item)  # type: ignore[attr-defined]
            else:
                fakes.seed(self.ports, item)  # the fakes' shared table


@pytest.fixture(params=["fake", "dynamo"])
def impl(request: pytest.FixtureRequest) -> Iterator[Impl]:
    if request.param == "fake":
        yield Impl("fake", ports.fakes(NOW))
    else:
        request.getfixturevalue("aws")
        request.getfixturevalue("serialized_dynamodb")  # one request at a time, as DynamoDB applies them
        yield Impl("dynamo", ports.production())


# --------------------------------------------------------------------------- members and coupons


def test_an_unknown_member_is_none(impl: Impl) -> None:
    assert impl.ports.members.get(PID, "mbr_nobody") is None


def test_a_coupon_is_registered_once_and_listed(impl: Impl) -> None:
    anna = impl.seed_member("anna")
    assert impl.ports.members.add_coupon(anna, "ANNA-500") is True
    anna = impl.ports.members.get(PID, "anna")  # type: ignore[assignment]
    assert impl.ports.members.coupons_of(anna) == ["ANNA-500"]
    assert impl.ports.members.coupon_owner(PID, "ANNA-500") == "anna"
    assert impl.ports.members.add_coupon(anna, "ANNA-500") is False  # already hers: no change
    assert impl.ports.members.coupon_owner(PID, "OTHER") is None


def test_a_coupon_belongs_to_one_member_per_program(impl: Impl) -> None:
    anna, boris = impl.seed_member("anna"), impl.seed_member("boris")
    impl.ports.members.add_coupon(anna, "SPRING")
    with pytest.raises(Conflict) as taken:
        impl.ports.members.add_coupon(boris, "SPRING")
    assert taken.value.code == "coupon_taken"
    boris = impl.ports.members.get(PID, "boris")  # type: ignore[assignment]
    assert impl.ports.members.coupons_of(boris) == []


def test_a_stale_member_is_refused(impl: Impl) -> None:
    anna = impl.seed_member("anna")
    impl.ports.members.add_coupon(anna, "ONE")
    with pytest.raises(StaleMember):  # ``anna`` was read before the first coupon changed her
        impl.ports.members.add_coupon(anna, "TWO")
    assert impl.ports.members.coupon_owner(PID, "TWO") is None


def test_removal_frees_the_code(impl: Impl) -> None:
    anna, boris = impl.seed_member("anna"), impl.seed_member("boris")
    impl.ports.members.add_coupon(anna, "SPRING")
    anna = impl.ports.members.get(PID, "anna")  # type: ignore[assignment]
    with pytest.raises(NotFound):
        impl.ports.members.remove_coupon(boris, "SPRING")
    impl.ports.members.remove_coupon(anna, "SPRING")
    assert impl.ports.members.coupon_owner(PID, "SPRING") is None
    anna = impl.ports.members.get(PID, "anna")  # type: ignore[assignment]
    assert impl.ports.members.coupons_of(anna) == []
    with pytest.raises(NotFound):
        impl.ports.members.remove_coupon(anna, "SPRING")
    assert impl.ports.members.add_coupon(boris, "SPRING") is True


def test_a_member_has_a_bounded_number_of_coupons(impl: Impl) -> None:
    impl.seed_member("anna")
    for n in range(MAX_COUPONS_PER_MEMBER):
        member = impl.ports.members.get(PID, "anna")
        assert member is not None and impl.ports.members.add_coupon(member, f"C{n}")
    member = impl.ports.members.get(PID, "anna")
    assert member is not None
    with pytest.raises(Conflict) as full:
        impl.ports.members.add_coupon(member, "ONE-MORE")
    assert full.value.code == "too_many_coupons"


def test_concurrent_registrations_of_one_code_have_one_winner(impl: Impl) -> None:
    members = [impl.seed_member(f"m{n}") for n in range(4)]

    def attempt(member: MemberItem) -> str:
        try:
            return "won" if impl.ports.members.add_coupon(member, "HOT") else "noop"
        except Conflict:
            return "taken"

    with ThreadPoolExecutor(4) as pool:
        outcomes = list(pool.map(attempt, members))
    assert outcomes.count("won") == 1 and outcomes.count("taken") == 3
    owner = impl.ports.members.coupon_owner(PID, "HOT")
    assert owner == members[outcomes.index("won")].member_id


# --------------------------------------------------------------------------- rate limiter


def test_the_rate_limiter_counts_up_to_the_limit_per_scope_and_window(impl: Impl) -> None:
    take = impl.ports.rate_limiter.take
    assert [take("s", "w1", 2, 0) for _ in range(3)] == [True, True, False]
    assert take("s", "w2", 2, 0) is True  # next window
    assert take("other", "w1", 2, 0) is True  # other scope


def test_the_rate_limiter_holds_under_concurrency(impl: Impl) -> None:
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: impl.ports.rate_limiter.take("c", "w", 5, 0), range(12)))
    assert results.count(True) == 5


# --------------------------------------------------------------------------- secrets, clock


def test_secrets_are_stable_per_purpose_and_distinct(impl: Impl) -> None:
    s = impl.ports.secrets
    assert s.derive_key("a") == s.derive_key("a") != s.derive_key("b")
    assert len(s.derive_key("a")) == 32
    secret = s.webhook_secret(PID, "ptn", "events", 1)
    assert secret.startswith("whsec_") and secret != s.webhook_secret(PID, "ptn", "events", 2)


def test_the_clock_is_timezone_aware_utc(impl: Impl) -> None:
    now = impl.ports.clock.now()
    assert now.tzinfo is not None and now.utcoffset().total_seconds() == 0  # type: ignore[union-attr]


# --------------------------------------------------------------------------- programs and partners


def test_programs_and_partners_are_read_and_unknown_ones_are_404(impl: Impl) -> None:
    impl.seed(support.program(PID, name="Coffee"), support.partner(PID, "ptn_1"), support.program("prg_other"),
              support.partner("prg_other", "ptn_2"))
    assert impl.ports.programs.get(PID).name == "Coffee"
    assert impl.ports.programs.get(PID, fresh=True).program_settings.max_depth >= 1
    assert impl.ports.programs.partner(PID, "ptn_1").partner_id == "ptn_1"
    with pytest.raises(NotFound):
        impl.ports.programs.get("prg_nobody")
    with pytest.raises(NotFound):
        impl.ports.programs.partner(PID, "ptn_2")  # another program's partner


# --------------------------------------------------------------------------- ledger, events, outbox


def test_an_account_is_the_member_and_the_balance(impl: Impl) -> None:
    assert impl.ports.ledger.account(PID, "anna") == (None, None)
    impl.seed_member("anna")
    member, balance = impl.ports.ledger.account(PID, "anna")
    assert member is not None and member.member_id == "anna" and balance is None
    impl.seed(support.balance(PID, "anna", available=7))
    member, balance = impl.ports.ledger.account(PID, "anna")
    assert member is not None and balance is not None and int(balance.available) == 7


def test_ledger_pages_are_newest_first_bounded_and_stay_in_the_members_partition(impl: Impl) -> None:
    impl.seed(*(support.entry(PID, "anna", n) for n in range(5)), support.entry(PID, "boris", 9),
              support.entry("prg_other", "anna", 8), support.balance(PID, "anna", available=50))
    seen: list[str] = []
    cursor = None
    for _ in range(5):
        page = impl.ports.ledger.entries(PID, "anna", 2, cursor)
        assert len(page.items) <= 2
        seen += [e.entry_id for e in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
        assert cursor["PK"] == {"S": keys.member_partition(PID, "anna")}  # what the view checks
    assert seen == ["le_0004", "le_0003", "le_0002", "le_0001", "le_0000"]
    assert impl.ports.ledger.entries(PID, "nobody", 10, None).items == []
    assert [e.entry_id for e in impl.ports.ledger.entries("prg_other", "anna", 10, None).items] == ["le_0008"]


def test_balances_are_read_back(impl: Impl) -> None:
    assert impl.ports.ledger.balance(PID, "anna") is None
    pk, sk = keys.balance(PID, "anna")
    impl.seed(BalanceItem(PK=pk, SK=sk, program_id=PID, member_id="anna", available=30, pending=10, lifetime_earned=40))
    balance = impl.ports.ledger.balance(PID, "anna")
    assert balance is not None and (int(balance.available), int(balance.pending)) == (30, 10)


def test_an_event_record_is_found_by_its_business_key(impl: Impl) -> None:
    from chalicelib.store.dynamo_ports import event_key_hash

    bkey = f"{PID}|ptn|order|o-1|order.paid"
    assert impl.ports.events.get(PID, bkey) is None
    pk, sk = keys.event(PID, event_key_hash(bkey))
    impl.seed(EventItem(PK=pk, SK=sk, program_id=PID, partner_id="ptn", business_key=bkey, type="order.paid",
                        object_type="order", object_id="o-1", occurred_at=NOW, received_at=NOW,
                        result={"status": "processed"}))
    record = impl.ports.events.get(PID, bkey)
    assert record is not None and record.result == {"status": "processed"}


def _message(n: int, day: str = "2026-11-23") -> OutboxItem:
    from chalicelib.domain import clock

    at = NOW.replace(minute=n)
    pk, sk = keys.outbox_message(PID, f"msg{n}")
    gpk, gsk = keys.gsi1_outbox_pending(day, clock.iso(at), f"msg{n}")
    return OutboxItem(PK=pk, SK=sk, GSI1PK=gpk, GSI1SK=gsk, program_id=PID, message_id=f"msg{n}", member_id="anna",
                      template="points_earned", locale="ru", params={}, channels={}, status="pending", created_at=at)


def test_the_outbox_lists_a_days_pending_messages_oldest_first_and_sends_each_once(impl: Impl) -> None:
    for n in (3, 1, 2):
        impl.seed(_message(n))
    impl.seed(_message(4, day="2026-11-24"))
    pending = impl.ports.outbox.pending("2026-11-23", 10)
    assert [m.message_id for m in pending] == ["msg1", "msg2", "msg3"]
    assert [m.message_id for m in impl.ports.outbox.pending("2026-11-23", 2)] == ["msg1", "msg2"]
    assert impl.ports.outbox.mark_sent(pending[0], NOW) is True
    assert impl.ports.outbox.mark_sent(_message(1), NOW) is False  # someone already sent it
    assert [m.message_id for m in impl.ports.outbox.pending("2026-11-23", 10)] == ["msg2", "msg3"]


# --------------------------------------------------------------------------- member reads


def test_code_pointers_and_identities_name_their_member(impl: Impl) -> None:
    anna = support.member(PID, "anna", email="anna@example.com")
    impl.seed(anna, support.code_pointer(PID, "ANNA1", "anna", "Anna"),
              *support.identities(anna, email="anna@example.com", customer_id=("ptn_1", "c-7")))
    pointer = impl.ports.members.code_pointer(PID, "ANNA1")
    assert pointer is not None and (pointer.member_id, pointer.first_name) == ("anna", "Anna")
    assert impl.ports.members.code_pointer(PID, "NOPE") is None
    assert impl.ports.members.code_pointer("prg_other", "ANNA1") is None
    find = impl.ports.members.find_by_identity
    assert find(PID, email="anna@example.com") == "anna"
    assert find(PID, customer_id=("ptn_1", "c-7")) == "anna"
    assert find(PID, customer_id=("ptn_2", "c-7")) is None  # another partner's customer
    assert find("prg_other", email="anna@example.com") is None
    assert find(PID, phone="+79990001122") is None


def test_referrals_page_newest_first_and_resume_after_a_position(impl: Impl) -> None:
    impl.seed(support.member(PID, "anna"), *(support.referred(PID, f"f{n}", "anna", n) for n in range(5)),
              support.referred(PID, "g0", "boris", 9), support.referred("prg_other", "h0", "anna", 8))
    members = impl.ports.members
    seen: list[str] = []
    cursor = None
    for _ in range(5):
        page = members.referrals(PID, "anna", 2, cursor)
        seen += [m.member_id for m in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
        assert cursor["GSI1PK"]["S"] == page.items[-1].GSI1PK  # what the view checks
    assert seen == ["f4", "f3", "f2", "f1", "f0"]
    first = members.referrals(PID, "anna", 2, None).items
    position = members.referral_position(first[-1])
    assert position is not None
    assert [m.member_id for m in members.referrals_after(PID, "anna", 10, position).items] == ["f2", "f1", "f0"]
    assert [m.member_id for m in members.referrals_after(PID, "anna", 1, None).items] == ["f4"]
    assert members.referrals(PID, "nobody", 10, None).items == []


def test_click_totals_and_the_balance_come_together(impl: Impl) -> None:
    impl.seed(support.click_total(PID, "ANNA1", 5, email=3, other=2), support.click_total(PID, "ANNA0", 1),
              support.click_total("prg_other", "ANNA2", 9), support.balance(PID, "anna", orders_count=2))
    totals, balance = impl.ports.members.clicks_and_balance(PID, "anna", ["ANNA1", "ANNA0", "ANNA2"])
    assert sorted((t.code, int(t.clicks)) for t in totals) == [("ANNA0", 1), ("ANNA1", 5)]
    assert {t.code: t.by_source.as_dict() for t in totals if t.by_source} == {"ANNA1": {"email": 3, "other": 2}}
    assert balance is not None and int(balance.orders_count) == 2
    assert impl.ports.members.clicks_and_balance(PID, "boris", []) == ([], None)


def test_balances_of_a_page_of_members(impl: Impl) -> None:
    impl.seed(support.balance(PID, "anna", available=1), support.balance(PID, "boris", available=2),
              support.balance("prg_other", "carl", available=3))
    found = impl.ports.ledger.balances(PID, ["anna", "boris", "carl"])
    assert {k: int(v.available) for k, v in found.items()} == {"anna": 1, "boris": 2}
    assert impl.ports.ledger.balances(PID, []) == {}


def test_the_erasure_record_is_read_back(impl: Impl) -> None:
    from chalicelib.store.data_rights import ErasureItem

    assert impl.ports.members.erasure_record(PID, "anna") is None
    pk, sk = keys.erasure_record(PID, "anna")
    impl.seed(ErasureItem(PK=pk, SK=sk, program_id=PID, member_id="anna", status="requested", requested_by="member",
                          requested_at=NOW, codes=["ANNA1"]))
    record = impl.ports.members.erasure_record(PID, "anna")
    assert record is not None and record.status == "requested" and list(record.codes) == ["ANNA1"]


# --------------------------------------------------------------------------- vanity codes


def _with_code(impl: Impl, member_id: str) -> MemberItem:
    impl.seed(support.code_pointer(PID, f"CODE{member_id.upper()}", member_id))
    return impl.seed_member(member_id)


def test_a_code_change_keeps_the_old_code_and_can_go_back(impl: Impl) -> None:
    anna = _with_code(impl, "anna")
    impl.ports.members.change_code(anna, "SUNNY")
    anna = impl.ports.members.get(PID, "anna")  # type: ignore[assignment]
    assert anna.code == "SUNNY" and int(anna.revision) == 1
    assert f"{keys.referral_code(PID, 'CODEANNA')[0]}|CODE" in anna.pointer_keys
    pointer = impl.ports.members.code_pointer(PID, "SUNNY")
    assert pointer is not None and pointer.member_id == "anna"
    # Back to an earlier code of her own: allowed only if its link pointer still names her.
    impl.seed(_link("CODEANNA", "anna"))
    impl.ports.members.change_code(anna, "CODEANNA")
    anna = impl.ports.members.get(PID, "anna")  # type: ignore[assignment]
    assert anna.code == "CODEANNA" and f"{keys.referral_code(PID, 'SUNNY')[0]}|CODE" in anna.pointer_keys


def _link(code: str, member_id: str, program_id: str = PID) -> Any:
    from chalicelib.store.members import LinkItem

    pk, sk = keys.short_link(code)
    return LinkItem(PK=pk, SK=sk, program_id=program_id, member_id=member_id, code=code)


def test_a_programs_stored_settings_read_back_typed_as_the_pipelines_context_uses_them(impl: Impl) -> None:
    """``EventContext.settings`` is the program read through this port (tests/service/test_event_context.py)."""
    impl.seed(support.program(PID, settings={"deals_count_as_orders": True, "max_depth": 5}),
              support.program("prg_plain"), support.program("prg_odd", settings={"max_depth": 99}))
    typed = impl.ports.programs.get(PID, fresh=True).program_settings
    assert (typed.deals_count_as_orders, typed.max_depth) == (True, 5)
    plain = impl.ports.programs.get("prg_plain", fresh=True).program_settings
    assert (plain.deals_count_as_orders, plain.max_depth) == (False, 3)  # the defaults
    assert impl.ports.programs.get("prg_odd", fresh=True).program_settings.max_depth == 3  # out of range: default


def test_a_code_held_by_anyone_in_any_program_is_taken_and_a_stale_member_is_refused(impl: Impl) -> None:
    anna, boris = _with_code(impl, "anna"), _with_code(impl, "boris")
    impl.ports.members.change_code(anna, "SUNNY")
    with pytest.raises(Conflict) as taken:
        impl.ports.members.change_code(boris, "SUNNY")
    assert taken.value.code == "code_taken"
    impl.seed(_link("GLOBAL", "zed", "prg_other"))  # a short link of another program
    with pytest.raises(Conflict):
        impl.ports.members.change_code(boris, "GLOBAL")
    with pytest.raises(StaleMember):
        impl.ports.members.change_code(anna, "RAINY")  # read before her first change
    assert impl.ports.members.code_pointer(PID, "RAINY") is None
    boris = impl.ports.members.get(PID, "boris")  # type: ignore[assignment]
    assert boris.code == "CODEBORIS" and int(boris.revision or 0) == 0


# --------------------------------------------------------------------------- tiers, attribution records


def test_tier_state_and_history(impl: Impl) -> None:
    assert impl.ports.tiers.state(PID, "anna") is None and impl.ports.tiers.history(PID, "anna", 5) == []
    impl.seed(support.tier_state(PID, "anna", "silver", **{"2026-11": 120}),
              *(support.tier_change(PID, "anna", n) for n in range(4)), support.tier_change(PID, "boris", 9))
    state = impl.ports.tiers.state(PID, "anna")
    assert state is not None and state.tier == "silver" and state.buckets_for("points_earned") == {"2026-11": 120}
    assert [c.change_id for c in impl.ports.tiers.history(PID, "anna", 3)] == ["tc_0003", "tc_0002", "tc_0001"]


def test_attribution_records_per_member_and_per_code(impl: Impl) -> None:
    impl.seed(*(support.attribution(PID, "f1", n) for n in range(3)), support.attribution(PID, "f2", 5),
              support.attribution(PID, "f3", 6, code="GHOST", outcome="rejected"),
              support.attribution("prg_other", "f1", 7))
    events = impl.ports.events
    first = events.attributions(PID, "f1", 2, None)
    assert [r.record_id for r in first.items] == ["ar_0002", "ar_0001"] and first.next_cursor is not None
    assert first.next_cursor["PK"] == {"S": keys.member_partition(PID, "f1")}
    rest = events.attributions(PID, "f1", 2, first.next_cursor)
    assert [r.record_id for r in rest.items] == ["ar_0000"]
    by_code = events.code_attributions(PID, "CODEANNA", 10, None)
    assert [r.record_id for r in by_code.items] == ["ar_0005", "ar_0002", "ar_0001", "ar_0000"]
    assert [r.outcome for r in events.code_attributions(PID, "GHOST", 10, None).items] == ["rejected"]
    assert events.code_attributions(PID, "NOBODY", 10, None).items == []


# --------------------------------------------------------------------------- ledger export, settlement


def test_a_booking_day_pages_in_booking_order_and_resumes_after_any_row(impl: Impl) -> None:
    from datetime import timedelta

    day = NOW.date().isoformat()
    next_day = support.entry(PID, "carl", 60 * 24)  # booked the next day
    impl.seed(*(support.entry(PID, m, n) for n, m in ((3, "anna"), (1, "boris"), (2, "anna"), (0, "boris"))),
              next_day, support.entry("prg_other", "anna", 5))
    ledger = impl.ports.ledger
    seen: list[str] = []
    cursor = None
    for _ in range(5):
        page = ledger.booked(PID, day, 3, cursor)
        assert len(page.items) <= 3
        seen += [e.entry_id for item in page.items for e in ledger.entries_of(item)]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == ["le_0000", "le_0001", "le_0002", "le_0003"]
    first = ledger.booked(PID, day, 10, None).items
    resumed = ledger.booked(PID, day, 10, ledger.cursor_after(first[1])).items
    assert [i.entry_id for i in resumed] == ["le_0002", "le_0003"]  # type: ignore[union-attr]
    assert [i.entry_id for i in ledger.booked(PID, (NOW + timedelta(days=1)).date().isoformat(), 10, None).items] == [
        next_day.entry_id]  # type: ignore[union-attr]
    assert ledger.booked(PID, "2020-01-01", 10, None) == ports.Page([], None)


def test_settlement_rows_of_a_period_include_both_ends(impl: Impl) -> None:
    from datetime import date

    impl.seed(support.settlement_row(PID, "2026-11-01", "ptn_1", funded=5),
              support.settlement_row(PID, "2026-11-02", "ptn_1", "ptn_2", points=3),
              support.settlement_row(PID, "2026-11-03", "ptn_2", redeemed=4),
              support.settlement_row(PID, "2026-11-04", "ptn_2", expired=9),
              support.settlement_row("prg_other", "2026-11-02", "ptn_9", funded=1))
    rows = list(impl.ports.ledger.settlement_rows(PID, date(2026, 11, 1), date(2026, 11, 3), 10))
    assert [(r.day, r.partner_id, r.at_partner_id) for r in rows] == [
        ("2026-11-01", "ptn_1", None), ("2026-11-02", "ptn_1", "ptn_2"), ("2026-11-03", "ptn_2", None)]
    assert list(impl.ports.ledger.settlement_rows(PID, date(2026, 12, 1), date(2026, 12, 31), 10)) == []
    # At most ``limit`` rows, the first ones in day order.
    assert [r.day for r in impl.ports.ledger.settlement_rows(PID, date(2026, 11, 1), date(2026, 11, 4), 2)] == [
        "2026-11-01", "2026-11-02"]


# --------------------------------------------------------------------------- keys, webhooks, short links, clicks


def test_a_webhooks_partner_and_program_are_found_by_the_partner_alone(impl: Impl) -> None:
    from chalicelib.store.tenancy import PartnerLocatorItem

    pk, sk = keys.partner_locator("ptn_loc")
    impl.seed(support.program(PID, name="Coffee"), support.partner(PID, "ptn_loc", webhook_secrets={"events": []}),
              PartnerLocatorItem(PK=pk, SK=sk, program_id=PID, partner_id="ptn_loc"))
    partner, program = impl.ports.programs.webhook_config("ptn_loc")
    assert (partner.partner_id, program.program_id, program.name) == ("ptn_loc", PID, "Coffee")
    with pytest.raises(NotFound):
        impl.ports.programs.webhook_config("ptn_unknown")


def test_api_keys_are_found_by_their_hash(impl: Impl) -> None:
    from chalicelib.store.tenancy import ApiKeyItem

    pk, sk = keys.api_key("hash-1")
    impl.seed(ApiKeyItem(PK=pk, SK=sk, key_id="key_1", kind="partner", program_id=PID, partner_id="ptn_1",
                         created_at=NOW))
    found = impl.ports.programs.api_key("hash-1")
    assert found is not None and (found.key_id, found.kind, found.revoked) == ("key_1", "partner", False)
    assert impl.ports.programs.api_key("hash-unknown") is None


def test_short_links_and_clicks(impl: Impl) -> None:
    from chalicelib.store.counters import MAX_SOURCES, OTHER_SOURCE
    from chalicelib.store.members import LinkItem

    pk, sk = keys.short_link("ANNA1")
    impl.seed(LinkItem(PK=pk, SK=sk, program_id=PID, member_id="anna", code="ANNA1"))
    link = impl.ports.members.short_link("ANNA1")
    assert link is not None and (link.program_id, link.member_id) == (PID, "anna")
    assert impl.ports.members.short_link("NOBODY") is None
    members = impl.ports.members
    for source in ("vk", "vk", "-", *(f"s{n}" for n in range(MAX_SOURCES))):
        members.count_click(PID, "ANNA1", "2026-11-23", source)
    (total,), _ = members.clicks_and_balance(PID, "anna", ["ANNA1"])
    by_source = total.by_source.as_dict()
    assert int(total.clicks) == 3 + MAX_SOURCES and by_source["vk"] == 2 and by_source["-"] == 1
    assert len(by_source) <= MAX_SOURCES + 1 and by_source.get(OTHER_SOURCE, 0) >= 1  # a full map counts the rest


def test_concurrent_clicks_are_all_counted(impl: Impl) -> None:
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda n: impl.ports.members.count_click(PID, "HOT", "2026-11-23", "vk"), range(8)))
    (total,), _ = impl.ports.members.clicks_and_balance(PID, "anna", ["HOT"])
    assert int(total.clicks) == 8 and total.by_source.as_dict() == {"vk": 8}


# --------------------------------------------------------------------------- redemptions


def _redeem(impl: Impl, redemption_id: str, points: int, member_id: str = "anna") -> tuple[Any, bool]:
    return impl.ports.ledger.redeem(PID, member_id, redemption_id, partner_id="ptn_1", points=points,
                                    value_minor=points * 100, currency="RUB", order_id="o-1", order_amount=None,
                                    request_hash=f"h-{points}", reason=f"{points} points redeemed.", at=NOW)


def test_a_redemption_debits_once_and_never_overdraws(impl: Impl) -> None:
    impl.seed_member("anna")
    impl.seed(support.balance(PID, "anna", available=100, lifetime_spent=0))
    item, created = _redeem(impl, "rdm_1", 60)
    assert created and (item.status, int(item.points), item.entry_sk.startswith("LEDGER#")) == ("held", 60, True)
    again, created = _redeem(impl, "rdm_1", 60)
    assert not created and again.redemption_id == "rdm_1" and again.request_hash == "h-60"
    with pytest.raises(Conflict) as short:
        _redeem(impl, "rdm_2", 41)
    assert short.value.code == "insufficient_points" and short.value.details == {"available": 40}
    balance = impl.ports.ledger.balance(PID, "anna")
    assert balance is not None and (int(balance.available), int(balance.lifetime_spent)) == (40, 60)
    entries = impl.ports.ledger.entries(PID, "anna", 10, None).items
    assert [(e.kind, e.status, int(e.points), e.redemption_id) for e in entries] == [
        ("redemption", "spent", -60, "rdm_1")]
    stored = impl.ports.ledger.redemption(PID, "rdm_1")
    assert stored is not None and stored.entry_sk == entries[0].SK
    assert impl.ports.ledger.redemption(PID, "rdm_2") is None


def test_a_redemption_needs_the_member_and_a_balance(impl: Impl) -> None:
    with pytest.raises(NotFound):
        _redeem(impl, "rdm_1", 1, member_id="nobody")
    impl.seed_member("anna")
    with pytest.raises(Conflict) as none:
        _redeem(impl, "rdm_1", 1)  # no balance yet
    assert none.value.details == {"available": 0}


def test_concurrent_redemptions_never_overdraw(impl: Impl) -> None:
    impl.seed_member("anna")
    impl.seed(support.balance(PID, "anna", available=50))

    def attempt(n: int) -> bool:
        try:
            return _redeem(impl, f"rdm_{n}", 10)[1]
        except Conflict:
            return False

    with ThreadPoolExecutor(4) as pool:
        outcomes = list(pool.map(attempt, range(8)))
    assert outcomes.count(True) == 5
    balance = impl.ports.ledger.balance(PID, "anna")
    assert balance is not None and int(balance.available) == 0


def test_confirm_and_cancel_move_the_status_once_and_cancel_repays_owed_first(impl: Impl) -> None:
    from datetime import timedelta

    impl.seed_member("anna")
    impl.seed(support.balance(PID, "anna", available=100))
    held, _ = _redeem(impl, "rdm_1", 30)
    later = NOW + timedelta(minutes=5)
    impl.ports.ledger.confirm_redemption(held, later)
    assert held.status == "confirmed"
    with pytest.raises(Conflict) as twice:
        impl.ports.ledger.confirm_redemption(impl.ports.ledger.redemption(PID, "rdm_1"), later)  # type: ignore[arg-type]
    assert twice.value.code == "concurrent_update"
    # A clawback left the member owing 10 meanwhile: the returned 30 repay those first.
    impl.seed(support.balance(PID, "anna", available=0, owed=10, lifetime_spent=30))
    balance = impl.ports.ledger.balance(PID, "anna")
    stored = impl.ports.ledger.redemption(PID, "rdm_1")
    assert stored is not None and stored.status == "confirmed"
    impl.ports.ledger.cancel_redemption(stored, balance, later, "30 points returned.", "ptn_1")
    after = impl.ports.ledger.balance(PID, "anna")
    assert after is not None and (int(after.available), int(after.owed), int(after.lifetime_spent)) == (20, 0, 0)
    assert impl.ports.ledger.redemption(PID, "rdm_1").status == "cancelled"  # type: ignore[union-attr]
    kinds = [(e.kind, int(e.points)) for e in impl.ports.ledger.entries(PID, "anna", 10, None).items]
    assert kinds == [("redemption_return", 30), ("redemption", -30)]
    with pytest.raises(Conflict):  # read as confirmed, but it was cancelled since
        impl.ports.ledger.cancel_redemption(stored, after, later, "again", "ptn_1")


# --------------------------------------------------------------------------- adjustments


def _adjust(impl: Impl, adjustment_id: str, points: int, member_id: str = "anna") -> tuple[Any, bool]:
    return impl.ports.ledger.adjust(PID, member_id, adjustment_id, points=points, reason="Goodwill", partner_id=None,
                                    created_by="operator", request_hash=f"h{points}", at=NOW)


def test_an_adjustment_credits_repaying_owed_first_and_debits_never_below_zero(impl: Impl) -> None:
    impl.seed_member("anna")
    impl.seed(support.balance(PID, "anna", available=0, owed=30, lifetime_earned=100))
    record, created = _adjust(impl, "adj_1", 50)
    assert created and (int(record.points), record.created_by, record.entry_id.startswith("le_")) == (50, "operator",
                                                                                                      True)
    balance = impl.ports.ledger.balance(PID, "anna")
    assert balance is not None and (int(balance.available), int(balance.owed), int(balance.lifetime_earned)) == (
        20, 0, 150)
    again, created = _adjust(impl, "adj_1", 50)
    assert not created and again.adjustment_id == "adj_1"
    with pytest.raises(Conflict) as short:
        _adjust(impl, "adj_2", -21)
    assert short.value.code == "insufficient_points" and short.value.details == {"available": 20}
    record, created = _adjust(impl, "adj_3", -20)
    balance = impl.ports.ledger.balance(PID, "anna")
    assert created and balance is not None and (int(balance.available), int(balance.lifetime_earned)) == (0, 130)
    entries = impl.ports.ledger.entries(PID, "anna", 10, None).items
    assert sorted((e.kind, int(e.points), e.reason_code) for e in entries) == [
        ("adjustment", -20, "manual_adjustment"), ("adjustment", 50, "manual_adjustment")]


def test_an_adjustment_needs_the_member_and_a_credit_creates_the_balance(impl: Impl) -> None:
    with pytest.raises(NotFound):
        _adjust(impl, "adj_1", 5, member_id="nobody")
    impl.seed_member("anna")
    with pytest.raises(Conflict):
        _adjust(impl, "adj_1", -1)  # no balance: nothing to debit
    assert _adjust(impl, "adj_2", 5)[1] is True
    balance = impl.ports.ledger.balance(PID, "anna")
    assert balance is not None and (int(balance.available), balance.member_id) == (5, "anna")


def test_existing_partners(impl: Impl) -> None:
    impl.seed(support.partner(PID, "ptn_1"), support.partner("prg_other", "ptn_2"))
    assert impl.ports.programs.existing_partners(PID, {"ptn_1", "ptn_2", "ptn_3"}) == {"ptn_1"}
    assert impl.ports.programs.existing_partners(PID, set()) == set()


def test_allowed_origins_of_every_program(impl: Impl) -> None:
    assert impl.ports.programs.allowed_origins() == frozenset()
    if impl.kind == "dynamo":
        from chalicelib.store import cache

        cache.clear()  # the empty answer above is cached like configuration
    impl.seed(support.program(PID, allowed_origins=["https://coffee.example", "https://www.coffee.example/"]),
              support.program("prg_other", allowed_origins=["https://gym.example"]), support.program("prg_none"))
    assert impl.ports.programs.allowed_origins() == {"https://coffee.example", "https://www.coffee.example/",
                                                      "https://gym.example"}


# --------------------------------------------------------------------------- administration (services.programs)


def _new_key(key_id: str, partner_id: str | None = None, program_id: str = PID,
             key_hash: str | None = None) -> NewKey:
    return NewKey(key_id=key_id, key_hash=key_hash or f"hash_{key_id}", display_prefix="sk_live_abcd",
                  kind="partner" if partner_id else "publishable", program_id=program_id, partner_id=partner_id,
                  created_at=NOW)


def _program_fields(program_id: str, minute: int = 0, **fields: Any) -> dict[str, Any]:
    return {"program_id": program_id, "name": "Coffee", "points_unit": "points", "point_value_minor": 100,
            "currency": "RUB", "default_locale": "en", "allowed_origins": [], "settings": {},
            "created_at": NOW + timedelta(minutes=minute), **fields}


def test_a_program_is_created_with_its_key_and_listed_newest_first_in_bounded_pages(impl: Impl) -> None:
    for n in range(3):
        program, ref = impl.ports.programs.create_program(_program_fields(f"prg_{n}", n),
                                                          _new_key(f"key_{n}", program_id=f"prg_{n}"))
        assert (program.program_id, ref.key_id, ref.kind, ref.revoked) == (f"prg_{n}", f"key_{n}", "publishable",
                                                                          False)
    assert impl.ports.programs.get("prg_1", fresh=True).name == "Coffee"
    assert impl.ports.programs.api_key("hash_key_1").program_id == "prg_1"  # type: ignore[union-attr]
    first = impl.ports.programs.programs(2, None)
    assert [p.program_id for p in first.items] == ["prg_2", "prg_1"] and first.next_cursor is not None
    rest = impl.ports.programs.programs(2, first.next_cursor)
    assert [p.program_id for p in rest.items] == ["prg_0"] and rest.next_cursor is None


def test_a_key_hash_is_stored_once(impl: Impl) -> None:
    impl.ports.programs.create_program(_program_fields("prg_a"), _new_key("key_a", program_id="prg_a", key_hash="same"))
    with pytest.raises(Conflict) as clash:
        impl.ports.programs.create_program(_program_fields("prg_b"), _new_key("key_b", program_id="prg_b",
                                                                              key_hash="same"))
    assert clash.value.code == "key_collision"
    with pytest.raises(NotFound):  # nothing of the refused transaction was written
        impl.ports.programs.get("prg_b", fresh=True)


def test_a_program_update_sets_removes_and_refuses_a_stale_revision(impl: Impl) -> None:
    impl.ports.programs.create_program(_program_fields(PID, landing_url="https://coffee.example/"), _new_key("k"))
    read = impl.ports.programs.get(PID, fresh=True)
    updated = impl.ports.programs.update_program(read, {"name": "Tea", "landing_url": None,
                                                        "settings": {"max_depth": 2}})
    assert (updated.name, updated.landing_url, updated.settings, int(updated.revision)) == ("Tea", None,
                                                                                        {"max_depth": 2}, 1)
    assert impl.ports.programs.get(PID).name == "Tea"  # the cache forgot the old one
    with pytest.raises(Conflict) as stale:
        impl.ports.programs.update_program(read, {"name": "Late"})  # read before the update above
    assert stale.value.code == "concurrent_update"
    assert impl.ports.programs.get(PID, fresh=True).name == "Tea"
    again = impl.ports.programs.update_program(updated, {"name": "Juice"})
    assert (again.name, int(again.revision)) == ("Juice", 2)


def test_a_partner_is_created_with_its_locator_and_key_and_paged_within_its_program(impl: Impl) -> None:
    impl.seed(support.program(PID), support.program("prg_other"), support.partner("prg_other", "ptn_x"))
    for n in range(3):
        partner, ref = impl.ports.programs.create_partner(
            {"program_id": PID, "partner_id": f"ptn_{n}", "name": f"Shop {n}", "created_at": NOW,
             "webhook_secrets": {"events": [{"version": 1, "created_at": "2026-11-23T10:00:00Z", "expires_at": None}]}},
            _new_key(f"key_{n}", f"ptn_{n}"))
        assert (partner.partner_id, ref.partner_id, ref.kind) == (f"ptn_{n}", f"ptn_{n}", "partner")
    located, program = impl.ports.programs.webhook_config("ptn_1")
    assert (located.name, program.program_id) == ("Shop 1", PID)
    first = impl.ports.programs.partners(PID, 2, None)
    assert [p.partner_id for p in first.items] == ["ptn_0", "ptn_1"] and first.next_cursor is not None
    rest = impl.ports.programs.partners(PID, 2, first.next_cursor)
    assert [p.partner_id for p in rest.items] == ["ptn_2"] and rest.next_cursor is None
    assert [p.partner_id for p in impl.ports.programs.partners("prg_other", 10, None).items] == ["ptn_x"]


def test_a_partner_update_sets_and_removes_and_needs_the_partner(impl: Impl) -> None:
    impl.seed(support.program(PID), support.partner(PID, "ptn_1", contact_email="a@shop.example"))
    partner = impl.ports.programs.partner(PID, "ptn_1", fresh=True)
    changed = impl.ports.programs.update_partner(partner, {"name": "Bakery", "contact_email": None})
    assert (changed.name, changed.contact_email) == ("Bakery", None)
    stored = impl.ports.programs.partner(PID, "ptn_1", fresh=True)
    assert (stored.name, stored.contact_email) == ("Bakery", None)
    ghost = support.partner(PID, "ptn_ghost")
    with pytest.raises(NotFound):
        impl.ports.programs.update_partner(ghost, {"name": "Nobody"})
    with pytest.raises(NotFound):
        impl.ports.programs.partner(PID, "ptn_ghost", fresh=True)  # the refused update created nothing


def test_webhook_secrets_change_only_from_the_state_read(impl: Impl) -> None:
    v1 = {"events": [{"version": 1, "created_at": "2026-11-23T10:00:00Z", "expires_at": None}]}
    impl.seed(support.program(PID), support.partner(PID, "ptn_1", webhook_secrets=v1))
    first, second = (impl.ports.programs.partner(PID, "ptn_1", fresh=True) for _ in range(2))
    v2 = {"events": [*v1["events"], {"version": 2, "created_at": "2026-11-23T11:00:00Z", "expires_at": None}]}
    impl.ports.programs.set_webhook_secrets(first, v2)
    assert first.webhook_secrets == v2
    with pytest.raises(NotFound) as raced:
        impl.ports.programs.set_webhook_secrets(second, {"events": []})
    assert raced.value.code == "concurrent_update"
    assert impl.ports.programs.partner(PID, "ptn_1", fresh=True).webhook_secrets == v2


def test_keys_are_added_for_existing_partners_paged_and_revoked(impl: Impl) -> None:
    impl.seed(support.program(PID), support.partner(PID, "ptn_1"), support.program("prg_other"))
    for n in range(3):
        assert impl.ports.programs.add_key(_new_key(f"key_{n}", "ptn_1")).key_id == f"key_{n}"
    impl.ports.programs.create_program(_program_fields("prg_other2"), _new_key("key_o", program_id="prg_other2"))
    with pytest.raises(NotFound):
        impl.ports.programs.add_key(_new_key("key_x", "ptn_nobody"))
    assert impl.ports.programs.api_key("hash_key_x") is None
    first = impl.ports.programs.key_refs(PID, 2, None)
    assert [r.key_id for r in first.items] == ["key_0", "key_1"] and first.next_cursor is not None
    rest = impl.ports.programs.key_refs(PID, 2, first.next_cursor)
    assert [r.key_id for r in rest.items] == ["key_2"] and rest.next_cursor is None
    ref = impl.ports.programs.key_ref(PID, "key_1")
    assert impl.ports.programs.api_key("hash_key_1").revoked is False  # type: ignore[union-attr]
    impl.ports.programs.revoke_key(ref)
    assert ref.revoked is True and impl.ports.programs.key_ref(PID, "key_1").revoked is True
    assert impl.ports.programs.api_key("hash_key_1").revoked is True  # type: ignore[union-attr]
    with pytest.raises(NotFound):
        impl.ports.programs.key_ref(PID, "key_o")  # another program's key
    with pytest.raises(NotFound):
        impl.ports.programs.key_ref(PID, "key_nobody")


def test_an_offer_exists_only_for_its_partner_and_program(impl: Impl) -> None:
    from chalicelib.store.offers import OfferItem

    pk, sk = keys.offer(PID, "ptn_1", "off_1")
    impl.seed(OfferItem(PK=pk, SK=sk, program_id=PID, partner_id="ptn_1", offer_id="off_1", name="Coffee",
                        kind="free_item", item="coffee", code_source="static", created_at=NOW,
                        updated_at=NOW))
    assert impl.ports.programs.offer_exists(PID, "ptn_1", "off_1") is True
    assert impl.ports.programs.offer_exists(PID, "ptn_2", "off_1") is False
    assert impl.ports.programs.offer_exists("prg_other", "ptn_1", "off_1") is False


# --------------------------------------------------------------------------- rules documents (services.rules)


def test_rules_versions_are_appended_once_and_read_back_or_from_a_batch_read(impl: Impl) -> None:
    impl.seed(support.program(PID), support.program("prg_other"))
    program = impl.ports.programs.get(PID, fresh=True)
    first = impl.ports.programs.put_rules(program, {"rules": [], "currency": "RUB"}, NOW)
    assert (int(first.version), first.document) == (1, {"rules": [], "currency": "RUB", "version": 1})
    assert int(impl.ports.programs.get(PID).rules_version) == 1  # the cache forgot the program
    with pytest.raises(Conflict) as stale:  # ``program`` still says version 0
        impl.ports.programs.put_rules(program, {"rules": ["late"]}, NOW)
    assert stale.value.code == "concurrent_update"
    second = impl.ports.programs.put_rules(impl.ports.programs.get(PID, fresh=True), {"rules": []}, NOW)
    assert int(second.version) == 2 and int(impl.ports.programs.get(PID, fresh=True).rules_version) == 2
    stored = impl.ports.programs.rules_version(PID, 1)
    assert stored is not None and stored.document == first.document  # never rewritten
    assert impl.ports.programs.rules_version(PID, 3) is None
    assert impl.ports.programs.rules_version("prg_other", 1) is None
    key = impl.ports.programs.rules_key(PID, 2)
    batch = {key: second}
    assert impl.ports.programs.rules_version(PID, 2, batch) is second  # no read when the batch has it
    assert impl.ports.programs.rules_version(PID, 1, batch).version == 1  # type: ignore[union-attr]


def test_existing_offers_of_a_program(impl: Impl) -> None:
    from chalicelib.store.offers import OfferItem

    def offer(program_id: str, partner_id: str, offer_id: str) -> OfferItem:
        pk, sk = keys.offer(program_id, partner_id, offer_id)
        return OfferItem(PK=pk, SK=sk, program_id=program_id, partner_id=partner_id, offer_id=offer_id,
                         name="Coffee", kind="free_item", item="coffee", code_source="static", created_at=NOW,
                         updated_at=NOW)

    impl.seed(offer(PID, "ptn_1", "off_1"), offer(PID, "ptn_2", "off_2"), offer("prg_other", "ptn_1", "off_3"))
    wanted = [("ptn_1", "off_1"), ("ptn_2", "off_2"), ("ptn_1", "off_2"), ("ptn_1", "off_3")]
    assert impl.ports.programs.existing_offers(PID, wanted) == {("ptn_1", "off_1"), ("ptn_2", "off_2")}
    assert impl.ports.programs.existing_offers(PID, []) == set()


# --------------------------------------------------------------------------- offers and code pools (services.offers)


def _offer_fields(offer_id: str, partner_id: str = "ptn_1", **fields: Any) -> dict[str, Any]:
    return {"program_id": PID, "partner_id": partner_id, "offer_id": offer_id, "name": "Coffee", "kind": "free_item",
            "item": "coffee", "code_source": "pool", "enabled": True, "archived": False, "alert_epoch": 0,
            "revision": 0, "created_at": NOW, "updated_at": NOW, **fields}


def test_an_offer_needs_its_partner_and_pages_leave_archived_ones_out(impl: Impl) -> None:
    impl.seed(support.program(PID), support.partner(PID, "ptn_1"), support.partner(PID, "ptn_2"))
    for n in range(4):
        assert impl.ports.offers.create_offer(_offer_fields(f"off_{n}")).offer_id == f"off_{n}"
    impl.ports.offers.create_offer(_offer_fields("off_other", "ptn_2"))
    with pytest.raises(NotFound):
        impl.ports.offers.create_offer(_offer_fields("off_x", "ptn_nobody"))
    assert impl.ports.offers.offer(PID, "ptn_nobody", "off_x") is None
    with pytest.raises(Conflict):
        impl.ports.offers.create_offer(_offer_fields("off_0"))
    archived = impl.ports.offers.offer(PID, "ptn_1", "off_1")
    assert archived is not None
    impl.ports.offers.archive_offer(archived, NOW)
    stored = impl.ports.offers.offer(PID, "ptn_1", "off_1")
    assert stored is not None and (stored.archived, stored.enabled, int(stored.revision)) == (True, False, 1)
    first = impl.ports.offers.offers(PID, "ptn_1", 2, None)  # reads on past the archived one
    assert [o.offer_id for o in first.items] == ["off_0", "off_2"] and first.next_cursor is not None
    rest = impl.ports.offers.offers(PID, "ptn_1", 2, first.next_cursor)
    assert [o.offer_id for o in rest.items] == ["off_3"]
    if rest.next_cursor is not None:
        assert impl.ports.offers.offers(PID, "ptn_1", 2, rest.next_cursor).items == []
    assert [o.offer_id for o in impl.ports.offers.offers(PID, "ptn_2", 10, None).items] == ["off_other"]


def test_an_offer_update_is_conditioned_on_the_revision_and_not_archived(impl: Impl) -> None:
    impl.seed(support.program(PID), support.partner(PID, "ptn_1"))
    impl.ports.offers.create_offer(_offer_fields("off_1", description="Old"))
    read, stale = (impl.ports.offers.offer(PID, "ptn_1", "off_1") for _ in range(2))
    assert read is not None and stale is not None
    later = datetime(2026, 11, 24, tzinfo=UTC)
    impl.ports.offers.update_offer(read, {"name": "Tea", "description": None, "low_pool_threshold": 5}, later,
                                   new_alert_epoch=True)
    assert (read.name, int(read.revision), int(read.alert_epoch), read.updated_at) == ("Tea", 1, 1, later)
    stored = impl.ports.offers.offer(PID, "ptn_1", "off_1")
    assert stored is not None and (stored.name, stored.description, int(stored.low_pool_threshold),
                                   int(stored.alert_epoch), int(stored.revision)) == ("Tea", None, 5, 1, 1)
    with pytest.raises(Conflict) as raced:
        impl.ports.offers.update_offer(stale, {"name": "Late"}, later)
    assert raced.value.code == "concurrent_update"
    impl.ports.offers.archive_offer(stored, later)
    archived = impl.ports.offers.offer(PID, "ptn_1", "off_1")
    assert archived is not None
    with pytest.raises(Conflict):
        impl.ports.offers.update_offer(archived, {"name": "Ghost"}, later)
    impl.ports.offers.bump_alert_epoch(archived)
    assert int(impl.ports.offers.offer(PID, "ptn_1", "off_1").alert_epoch) == 2  # type: ignore[union-attr]


def test_codes_are_appended_per_shard_once_and_a_changed_pool_refuses_the_write(impl: Impl) -> None:
    from chalicelib.domain.errors import ValidationFailed
    from chalicelib.domain.offers import SHARDS

    heads, present = impl.ports.offers.codes_present(PID, "off_1", ["A1", "A2"])
    assert present == [] and set(heads) == set(range(SHARDS)) and all(h is None for h in heads.values())
    sizes = {s: 0 for s in range(SHARDS)}
    codes = [f"A{i}" for i in range(30)]
    after = impl.ports.offers.append_codes(PID, "off_1", codes, sizes, NOW)
    assert sum(after.values()) == 30
    heads, present = impl.ports.offers.codes_present(PID, "off_1", ["A3", "B1", "A29"])
    assert present == ["A3", "A29"]
    assert {s: int(h.size) for s, h in heads.items() if h is not None} == {s: n for s, n in after.items() if n}
    assert all(h is None or int(h.next) == 0 for h in heads.values())
    assert {s: (int(h.size) if h else None) for s, h in impl.ports.offers.heads(PID, "off_1").items()} == {
        s: (int(h.size) if h else None) for s, h in heads.items()}
    assert impl.ports.offers.codes_present(PID, "off_other", ["A3"])[1] == []  # pools are per offer
    with pytest.raises(Conflict) as stale:  # sizes read before the first append
        impl.ports.offers.append_codes(PID, "off_1", ["C1", "C2", "C3"], sizes, NOW)
    assert stale.value.code == "concurrent_upload"
    with pytest.raises((ValidationFailed, Conflict)):
        impl.ports.offers.append_codes(PID, "off_1", ["A5"], after, NOW)  # already in the pool
    assert sum(int(h.size) for h in impl.ports.offers.heads(PID, "off_1").values() if h is not None) == 30
    more = impl.ports.offers.append_codes(PID, "off_1", ["C1", "C2"], after, NOW)
    assert sum(more.values()) == 32


# --------------------------------------------------------------------------- platform integrations (services.integrations)


def _integration(revision: int, **fields: Any) -> dict[str, Any]:
    return {"program_id": PID, "partner_id": "ptn_1", "platform": "tilda", "settings": {}, "secrets": [],
            "tokens": [{"sha256": "abc", "expires_at": None}], "api_token": None, "revision": revision,
            "created_at": NOW, "updated_at": NOW, **fields}


def test_an_integration_is_created_once_replaced_from_the_revision_read_and_deleted(impl: Impl) -> None:
    assert impl.ports.integrations.get(PID, "ptn_1", "tilda") is None
    created = impl.ports.integrations.save(_integration(1, settings={"ref_field": "ref"}), None)
    assert impl.ports.integrations.get(PID, "ptn_1", "tilda", fresh=True).settings == {"ref_field": "ref"}  # type: ignore[union-attr]
    with pytest.raises(Conflict) as exists:
        impl.ports.integrations.save(_integration(1), None)
    assert exists.value.code == "concurrent_update"
    impl.ports.integrations.save(_integration(2, settings={"ref_field": "code"}), 1)
    with pytest.raises(Conflict):  # replaced from revision 1 again
        impl.ports.integrations.save(_integration(2, settings={"ref_field": "late"}), 1)
    stored = impl.ports.integrations.get(PID, "ptn_1", "tilda", fresh=True)
    assert stored is not None and (stored.settings, int(stored.revision)) == ({"ref_field": "code"}, 2)
    assert impl.ports.integrations.get(PID, "ptn_2", "tilda") is None
    impl.ports.integrations.delete(stored)
    assert impl.ports.integrations.get(PID, "ptn_1", "tilda", fresh=True) is None
    with pytest.raises(Conflict):
        impl.ports.integrations.delete(created)


def test_an_integration_log_pages_newest_first_within_its_platform(impl: Impl) -> None:
    from chalicelib.domain.clock import iso
    from chalicelib.store.integrations import IntegrationLogItem

    def entry(n: int, platform: str = "tilda") -> IntegrationLogItem:
        at = NOW + timedelta(minutes=n)
        pk, sk = keys.integration_log(PID, "ptn_1", platform, iso(at), f"e{n}")
        return IntegrationLogItem(PK=pk, SK=sk, program_id=PID, partner_id="ptn_1", platform=platform,
                                  code="crm_auth_failed", message="refused", at=at)

    impl.seed(*(entry(n) for n in range(3)), entry(9, "amocrm"))
    first = impl.ports.integrations.log(PID, "ptn_1", "tilda", 2, None)
    assert [i.SK.rsplit("#", 1)[-1] for i in first.items] == ["e2", "e1"] and first.next_cursor is not None
    rest = impl.ports.integrations.log(PID, "ptn_1", "tilda", 2, first.next_cursor)
    assert [i.SK.rsplit("#", 1)[-1] for i in rest.items] == ["e0"] and rest.next_cursor is None
    assert impl.ports.integrations.log(PID, "ptn_2", "tilda", 10, None).items == []
