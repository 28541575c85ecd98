"""Contract of the ``DataRightsStore`` port (``services.erasure``, ``services.member_export``), on the fake and on
moto: each erasure step is one transaction that also advances the audit record, conditioned on its revision.

The ``impl`` fixture is the one of ``test_ports.py`` (``fake`` / ``dynamo``).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from chalicelib.domain.records import ERASURE_DONE, ERASURE_IN_PROGRESS, ERASURE_REQUESTED, StaleErasure
from chalicelib.store import keys
from chalicelib.store.birthdays import pointer
from chalicelib.store.data_rights import ErasedIdentityItem, ErasureItem
from chalicelib.store.db import Entity, get_or_none
from chalicelib.store.members import MemberItem, PendingInviteItem, identity_refs, key_str, new_member
from chalicelib.store.partner_hooks import new_delivery
from tests import ports_support as support
from tests.contract import test_ports
from tests.contract.test_ports import NOW, PID, Impl

impl = test_ports.impl  # the same fixture: fake and dynamo
LATER = NOW + timedelta(hours=1)


def _stored(impl: Impl, model: type[Entity], key: tuple[str, str]) -> Any:
    if impl.kind == "fake":
        return impl.ports.members.table.get(model, key)  # type: ignore[attr-defined]
    return get_or_none(model, key, consistent=True)


def _olga(impl: Impl, **fields: Any) -> MemberItem:
    """Olga with an e-mail and a customer id, an earlier code and a friend's invite waiting for her e-mail."""
    refs = identity_refs(PID, email="olga@example.com", customer_id=("ptn_1", "c-1"))
    member = new_member(PID, "olga", "OLGA2", joined_at=NOW, joined_via="api", name="Olga Petrova",
                        email="olga@example.com", birthday="1990-05-17", refs=refs, **fields)
    member.pointer_keys = [*member.pointer_keys, key_str(keys.referral_code(PID, "OLGA1"))]
    email = next(r for r in refs if r.kind == "email")
    ipk, isk = keys.pending_invite(PID, "email", email.value_hash)
    impl.seed(member, *support.identities(member, email="olga@example.com", customer_id=("ptn_1", "c-1")),
              support.code_pointer(PID, "OLGA1", "olga"), support.code_pointer(PID, "OLGA2", "olga"),
              PendingInviteItem(PK=ipk, SK=isk, program_id=PID, kind="email", referrer_id="anna", code="ANNA",
                                invited_at=NOW))
    birthday = pointer(PID, "olga", "1990-05-17", NOW)
    assert birthday is not None
    impl.seed(birthday)
    found = impl.ports.members.get(PID, "olga")
    assert found is not None
    return found


def _until(impl: Impl, record: ErasureItem, step: str, limit: int = 2) -> tuple[ErasureItem, int]:
    calls = 0
    while record.step == "pointers":
        record, handled = impl.ports.data_rights.erase_pointers(record, limit, step, LATER)
        assert handled <= limit
        calls += 1
    return record, calls


def test_a_members_own_request_is_recorded_once_and_listed_until_started(impl: Impl) -> None:
    olga = _olga(impl)
    impl.seed_member("boris")
    first = impl.ports.data_rights.request(PID, "olga", NOW)
    assert first is not None and (first.status, first.requested_by, first.revision) == (ERASURE_REQUESTED, "member", 0)
    assert impl.ports.data_rights.request(PID, "olga", LATER) is None  # one record per member
    impl.ports.data_rights.request(PID, "boris", LATER)
    page = impl.ports.data_rights.requests(PID, 1, None)
    assert [r.member_id for r in page.items] == ["olga"] and page.next_cursor is not None
    rest = impl.ports.data_rights.requests(PID, 10, page.next_cursor)
    assert [r.member_id for r in rest.items] == ["boris"]
    requested = impl.ports.members.erasure_record(PID, "olga")
    assert requested is not None
    started = impl.ports.data_rights.start(olga, requested, "operator", LATER)
    assert (started.status, started.requested_by, started.confirmed_by, started.revision) == (
        ERASURE_IN_PROGRESS, "member", "operator", 1)
    assert [r.member_id for r in impl.ports.data_rights.requests(PID, 10, None).items] == ["boris"]
    with pytest.raises(StaleErasure):
        impl.ports.data_rights.start(olga, requested, "operator", LATER)  # the request read is gone


def test_a_start_knows_what_to_erase_and_happens_once(impl: Impl) -> None:
    olga = _olga(impl)
    record = impl.ports.data_rights.start(olga, None, "operator", NOW)
    assert (record.step, record.requested_by, record.requested_at, record.revision) == ("pointers", "operator", NOW, 0)
    assert record.codes == ["OLGA2", "OLGA1"]
    assert sorted(i.split(":")[0] for i in record.identities) == ["customer_id", "email"]
    pointers = record.cursor["pointers"]
    assert key_str(keys.short_link("OLGA1")) in pointers and key_str(keys.referral_code(PID, "OLGA2")) in pointers
    assert len(pointers) == len(set(pointers)) == 6  # 2 identities, 2 codes, 2 links
    stored = impl.ports.members.erasure_record(PID, "olga")
    assert stored is not None and stored.codes == record.codes
    with pytest.raises(StaleErasure):
        impl.ports.data_rights.start(olga, None, "operator", NOW)


def test_the_start_marks_the_profile_erased_in_its_transaction_conditioned_on_the_profile_read(impl: Impl) -> None:
    from chalicelib.domain.errors import MemberErased
    from chalicelib.domain.records import StaleMember

    olga = _olga(impl)
    before = impl.ports.members.get(PID, "olga")
    assert before is not None and before.erased_at is None
    # A profile changed since it was read (a new pointer, say): the start writes nothing, not even the record.
    impl.ports.members.add_coupon(before, "OLGA-500")
    with pytest.raises(StaleErasure):
        impl.ports.data_rights.start(olga, None, "operator", NOW, "op_0123456789ab")
    assert impl.ports.members.erasure_record(PID, "olga") is None
    fresh, stale = impl.ports.members.get(PID, "olga"), impl.ports.members.get(PID, "olga")
    assert fresh is not None and stale is not None
    record = impl.ports.data_rights.start(fresh, None, "operator", NOW, "op_0123456789ab")
    assert key_str(keys.coupon(PID, "OLGA-500")) in record.cursor["pointers"]  # the pointer list is the profile's
    assert (record.requested_by_key, record.confirmed_by_key) == ("op_0123456789ab", "op_0123456789ab")
    marked = impl.ports.members.get(PID, "olga")
    assert marked is not None and marked.erased_at == NOW and marked.revision == int(before.revision or 0) + 2
    assert marked.name == "Olga Petrova"  # scrubbed by the profile step, later
    # From now on no code or coupon is attached to her: read before the start (stale) or after (erased).
    with pytest.raises(StaleMember):
        impl.ports.members.add_coupon(stale, "OLGA-700")
    with pytest.raises(StaleMember):
        impl.ports.members.change_code(stale, "OLGA-AGAIN")
    with pytest.raises(MemberErased):
        impl.ports.members.add_coupon(marked, "OLGA-700")
    with pytest.raises(MemberErased):
        impl.ports.members.change_code(marked, "OLGA-AGAIN")
    assert impl.ports.members.coupon_owner(PID, "OLGA-700") is None
    assert impl.ports.members.code_pointer(PID, "OLGAAGAIN") is None


def test_pointers_go_in_batches_with_tombstones_and_invites_and_the_record_advances(impl: Impl) -> None:
    olga = _olga(impl)
    record = impl.ports.data_rights.start(olga, None, "operator", NOW)
    stale = impl.ports.members.erasure_record(PID, "olga")
    record, calls = _until(impl, record, "profile")
    assert calls == 3 and record.step == "profile" and record.cursor is None
    assert record.counts == {"pointers": 4}  # 2 identities and 2 code pointers (no links were seeded)
    stored = impl.ports.members.erasure_record(PID, "olga")
    assert stored is not None and (stored.step, stored.revision, stored.counts) == ("profile", 3, {"pointers": 4})
    assert impl.ports.members.code_pointer(PID, "OLGA1") is None
    assert impl.ports.members.find_by_identity(PID, email="olga@example.com") is None
    email = next(i for i in record.identities if i.startswith("email:")).split(":")[1]
    tombstone = _stored(impl, ErasedIdentityItem, keys.erased_identity(PID, "email", email))
    assert tombstone is not None and tombstone.erased_at == LATER
    assert _stored(impl, PendingInviteItem, keys.pending_invite(PID, "email", email)) is None
    assert stale is not None
    with pytest.raises(StaleErasure):
        impl.ports.data_rights.erase_pointers(stale, 2, "profile", LATER)


def test_the_invitees_pointers_step_deletes_the_referrers_back_references_to_her_identifier(impl: Impl) -> None:
    """Anna's invite waits for Olga's e-mail (Anna's back-reference to it in her partition), and Olga's profile names
    Vera's code as the link she came through (Vera's back-references, one per identifier): Olga's erasure deletes all
    of them, keyed by her identifiers' hashes, and the profile step takes Vera's code off her profile."""
    from chalicelib.store.members import InviteRefItem

    olga = _olga(impl, acquisition={"channel": "landing", "ref": "VERA"})
    impl.seed(support.code_pointer(PID, "VERA", "vera"))
    hashes = {r.kind: r.value_hash for r in identity_refs(PID, email="olga@example.com",
                                                          customer_id=("ptn_1", "c-1"))}
    refs = [keys.invite_ref(PID, "anna", "email", hashes["email"]),
            *(keys.invite_ref(PID, "vera", kind, h) for kind, h in hashes.items())]
    impl.seed(*(InviteRefItem(PK=pk, SK=sk, program_id=PID, member_id=pk.rsplit("#", 1)[1], kind=sk.split("#")[1])
                for pk, sk in refs))
    record, _ = _until(impl, impl.ports.data_rights.start(olga, None, "operator", NOW), "profile", limit=10)
    assert [_stored(impl, InviteRefItem, key) for key in refs] == [None, None, None]
    assert _stored(impl, PendingInviteItem, keys.pending_invite(PID, "email", hashes["email"])) is None
    impl.ports.data_rights.erase_profile(record, "attribution_records", LATER)
    member = impl.ports.members.get(PID, "olga")
    assert member is not None and member.acquisition == {"channel": "landing"}


def test_a_pointer_that_is_someone_elses_now_stays(impl: Impl) -> None:
    olga = _olga(impl)
    record = impl.ports.data_rights.start(olga, None, "operator", NOW)
    impl.seed(support.code_pointer(PID, "OLGA1", "boris"))  # the old code went to Boris meanwhile
    record, _ = _until(impl, record, "profile", limit=10)
    assert record.counts == {"pointers": 3}
    pointer_now = impl.ports.members.code_pointer(PID, "OLGA1")
    assert pointer_now is not None and pointer_now.member_id == "boris"


def test_the_profile_is_scrubbed_once_with_its_birthday_entry(impl: Impl) -> None:
    olga = _olga(impl)
    record, _ = _until(impl, impl.ports.data_rights.start(olga, None, "operator", NOW), "profile", limit=10)
    record = impl.ports.data_rights.erase_profile(record, "attribution_records", LATER)
    assert (record.step, record.counts["profile"]) == ("attribution_records", 1)
    member = impl.ports.members.get(PID, "olga")
    assert member is not None
    assert (member.name, member.email, member.birthday, member.code, member.pointer_keys, member.erased_at) == (
        None, None, None, "-", [], NOW)  # erased since the erasure started
    birthday = pointer(PID, "olga", "1990-05-17", NOW)
    assert birthday is not None and _stored(impl, Entity, (birthday.PK, birthday.SK)) is None
    again = impl.ports.data_rights.erase_profile(record, "attribution_records", LATER)  # already erased: a no-op
    assert again.counts["profile"] == 1 and again.revision == record.revision


def test_a_kind_is_scrubbed_page_by_page_and_an_unknown_kind_is_skipped(impl: Impl) -> None:
    assert impl.ports.data_rights.kinds()[:2] == ["attribution_records", "code_attributions"]
    assert "partner_webhook_deliveries" in impl.ports.data_rights.kinds()
    olga = _olga(impl)
    own = [support.attribution(PID, "olga", n, code="ANNA") for n in range(3)]
    friends = [support.attribution(PID, f"friend{n}", 10 + n, code="OLGA1") for n in range(2)]
    impl.seed(*own, *friends)
    record, _ = _until(impl, impl.ports.data_rights.start(olga, None, "operator", NOW), "profile", limit=10)
    record = impl.ports.data_rights.erase_profile(record, "attribution_records", LATER)
    record, n = impl.ports.data_rights.scrub(record, "attribution_records", 2, "code_attributions", LATER)
    assert (n, record.step) == (2, "attribution_records") and record.cursor is not None
    record, n = impl.ports.data_rights.scrub(record, "attribution_records", 2, "code_attributions", LATER)
    assert (n, record.step, record.cursor) == (1, "code_attributions", None)
    assert record.counts["attribution_records"] == 3
    hashed = impl.ports.events.attributions(PID, "olga", 10, None).items
    assert len(hashed) == 3 and all(r.business_key.startswith("sha256:") for r in hashed)
    while record.step == "code_attributions":
        record, n = impl.ports.data_rights.scrub(record, "code_attributions", 5, "gone_kind", LATER)
    assert record.counts["code_attributions"] == 2
    assert impl.ports.events.code_attributions(PID, "OLGA1", 10, None).items == []
    assert all(r.code is None for r in impl.ports.events.attributions(PID, "friend0", 10, None).items)
    record, n = impl.ports.data_rights.scrub(record, "gone_kind", 5, "done", LATER)
    assert (n, record.step, record.status, record.completed_at) == (0, "done", ERASURE_DONE, LATER)
    stored = impl.ports.members.erasure_record(PID, "olga")
    assert stored is not None and stored.status == ERASURE_DONE


def test_the_export_pages_the_partition_without_the_summary_items_and_lists_exported_kinds(impl: Impl) -> None:
    olga = _olga(impl)
    impl.seed(support.balance(PID, "olga", available=5), *[support.entry(PID, "olga", n) for n in range(3)])
    impl.ports.data_rights.request(PID, "olga", NOW)
    first = impl.ports.data_rights.member_items(PID, "olga", 2, None)
    seen = list(first.items)
    cursor = first.next_cursor
    while cursor is not None:
        page = impl.ports.data_rights.member_items(PID, "olga", 2, cursor)
        seen += page.items
        cursor = page.next_cursor
    assert sorted(i.SK for i in seen) == sorted(e.SK for e in [support.entry(PID, "olga", n) for n in range(3)])
    assert "partner_webhook_deliveries" in impl.ports.data_rights.exported_kinds()
    delivery = new_delivery(program_id=PID, partner_id="ptn_1", endpoint_id="whe_1", event_type="reward.posted",
                            source_id="ledger_entry:1", occurred_at=NOW, body="{}", now=NOW, delivery="whd_1",
                            member_id="olga")
    impl.seed(delivery)
    found = impl.ports.data_rights.exported("partner_webhook_deliveries", PID, "olga", 10, None)
    assert [d.delivery_id for d in found.items] == ["whd_1"] and found.next_cursor is None
    assert impl.ports.data_rights.exported("partner_webhook_deliveries", PID, "boris", 10, None).items == []
    invites = impl.ports.data_rights.pending_invites(olga)
    assert [(i.kind, i.referrer_id) for i in invites] == [("email", "anna")]
    assert sorted(impl.ports.data_rights.identifier_kinds(olga)) == ["customer_id", "email"]
    data = impl.ports.data_rights.item_data(olga)
    assert data["item_type"] == "member" and data["name"] == "Olga Petrova" and "PK" not in data
    assert data["joined_at"] == "2026-11-23T10:00:00.000000Z"
