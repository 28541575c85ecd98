"""Contracts of the ports a landing invite uses (``services.landing.invites`` and ``.signals``), on the in-memory
fakes and on DynamoDB under moto (the ``impl`` fixture of ``test_ports``): who holds an identifier, a member created
with its pointers in one transaction, pending invites (first touch / last touch), fraud-signal pointers and the
conditional velocity counters."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from chalicelib.domain.records import NewMember, PendingInvite
from chalicelib.store import keys
from chalicelib.store.db import get_or_none
from chalicelib.store.members import CodeItem, IdentityItem, LinkItem, MemberItem, PendingInviteItem
from chalicelib.store.review import VelocityItem
from chalicelib.store.signals import REFRESH, SignalItem, SignalRef
from tests.contract.test_ports import NOW, PID, Impl, impl  # noqa: F401 (the fixture)


def _stored(target: Impl, model: Any, key: tuple[str, str]) -> Any:
    """What the table holds (no port reads it back: the pipeline does, in its own batched read)."""
    if target.kind == "fake":
        return target.ports.members.table.get(model, key)  # type: ignore[attr-defined]
    return get_or_none(model, key, consistent=True)


def _plan(member_id: str, code: str, **fields: Any) -> NewMember:
    return NewMember(program_id=PID, member_id=member_id, code=code, joined_at=NOW, joined_via="invite", **fields)


def test_a_member_is_created_with_its_pointers_code_and_link_once(impl: Impl) -> None:  # noqa: F811
    members = impl.ports.members
    refs = members.identity_refs(PID, email="Olga@Example.com", phone="+79123456789")
    assert [r.kind for r in refs] == ["email", "phone"]
    assert members.identity_owner(PID, refs) is None
    created = members.create_member(_plan("mbr_olga", "OLGACODE1", name="Olga Petrova", locale="ru",
                                          email="olga@example.com", acquisition={"channel": "landing"}), refs)
    assert created is not None and created.member_id == "mbr_olga"
    stored = members.get(PID, "mbr_olga", consistent=True)
    assert stored is not None and (stored.code, stored.joined_via, stored.acquisition) == (
        "OLGACODE1", "invite", {"channel": "landing"})
    assert members.identity_owner(PID, refs) == "mbr_olga"
    assert members.identity_owner(PID, members.identity_refs(PID, phone="+79123456789")) == "mbr_olga"
    pointer = members.code_pointer(PID, "OLGACODE1", consistent=True)
    assert pointer is not None and (pointer.member_id, pointer.first_name) == ("mbr_olga", "Olga")
    link = members.short_link("OLGACODE1")
    assert link is not None and (link.program_id, link.member_id) == (PID, "mbr_olga")
    # Another member for the same phone, or with the same code: nothing written at all.
    assert members.create_member(_plan("mbr_twin", "TWINCODE1"), members.identity_refs(PID, phone="+79123456789")) \
        is None
    assert members.create_member(_plan("mbr_other", "OLGACODE1"), members.identity_refs(PID, email="o@example.com")) \
        is None
    for member_id in ("mbr_twin", "mbr_other"):
        assert members.get(PID, member_id) is None
    assert members.short_link("TWINCODE1") is None
    assert members.identity_owner(PID, members.identity_refs(PID, email="o@example.com")) is None
    assert _stored(impl, CodeItem, keys.referral_code(PID, "TWINCODE1")) is None
    assert isinstance(_stored(impl, LinkItem, keys.short_link("OLGACODE1")), LinkItem)
    assert isinstance(_stored(impl, MemberItem, keys.member(PID, "mbr_olga")), MemberItem)
    assert all(isinstance(_stored(impl, IdentityItem, r.pointer_key(PID)), IdentityItem) for r in refs)


def _invite(referrer_id: str, at: Any, **risk: Any) -> PendingInvite:
    return PendingInvite(referrer_id=referrer_id, code=f"{referrer_id.upper()}CODE", invited_at=at,
                         ancestors=("mbr_top",), expires_at_epoch=int((at + timedelta(days=37)).timestamp()), **risk)


def test_pending_invites_first_touch_keeps_anothers_within_the_window(impl: Impl) -> None:  # noqa: F811
    members = impl.ports.members
    (ref,) = members.identity_refs(PID, email="friend@example.com")
    since = NOW - timedelta(days=30)

    def held() -> tuple[str, Any, list[str]]:
        item = _stored(impl, PendingInviteItem, ref.invite_key(PID))
        return item.referrer_id, item.invited_at, list(item.risk_holds)

    assert members.put_pending_invite(PID, ref, _invite("anna", NOW - timedelta(days=3)), first_touch_since=since)
    assert not members.put_pending_invite(PID, ref, _invite("boris", NOW), first_touch_since=since)  # anna's kept
    assert held()[0] == "anna"
    # The same referrer again: refreshed (with what the checks found now).
    assert members.put_pending_invite(PID, ref, _invite("anna", NOW, risk_holds=("same_network_as_referrer",)),
                                      first_touch_since=since)
    assert held() == ("anna", NOW, ["same_network_as_referrer"])
    # Once anna's invite is older than the window, boris's replaces it; last touch always replaces.
    assert members.put_pending_invite(PID, ref, _invite("boris", NOW + timedelta(days=31)),
                                      first_touch_since=NOW + timedelta(days=1))
    assert held()[0] == "boris"
    assert members.put_pending_invite(PID, ref, _invite("vera", NOW + timedelta(days=32)))
    stored = _stored(impl, PendingInviteItem, ref.invite_key(PID))
    assert (stored.referrer_id, stored.code, list(stored.ancestors), stored.kind) == ("vera", "VERACODE",
                                                                                     ["mbr_top"], "email")


def _back_ref(target: Impl, referrer_id: str, ref: Any) -> Any:
    from chalicelib.store.members import InviteRefItem

    return _stored(target, InviteRefItem, keys.invite_ref(PID, referrer_id, ref.kind, ref.value_hash))


def test_an_invite_and_its_back_reference_are_written_together_or_not_at_all(impl: Impl) -> None:  # noqa: F811
    members = impl.ports.members
    (ref,) = members.identity_refs(PID, email="friend@example.com")
    since = NOW - timedelta(days=30)
    invite = _invite("anna", NOW)
    assert members.put_pending_invite(PID, ref, invite, first_touch_since=since)
    stored = _back_ref(impl, "anna", ref)
    assert stored is not None and stored.expires_at_epoch == invite.expires_at_epoch  # expires with the invite
    # Boris's invite is refused (anna's first touch is kept): no back-reference of his either.
    assert not members.put_pending_invite(PID, ref, _invite("boris", NOW), first_touch_since=since)
    assert _back_ref(impl, "boris", ref) is None
    # Vera's erasure has started: nothing naming her is written.
    impl.seed(new_member_item("vera", erased_at=NOW))
    assert not members.put_pending_invite(PID, ref, _invite("vera", NOW))
    assert _back_ref(impl, "vera", ref) is None
    assert _stored(impl, PendingInviteItem, ref.invite_key(PID)).referrer_id == "anna"
    # The visitor's profile names Anna's code: her back-reference is kept after the invite expires (no TTL).
    assert members.put_pending_invite(PID, ref, _invite("anna", NOW), keep_ref=True)
    assert _back_ref(impl, "anna", ref).expires_at_epoch is None


def new_member_item(member_id: str, **fields: Any) -> MemberItem:
    from chalicelib.store.members import new_member

    member = new_member(PID, member_id, f"{member_id.upper()}CODE", joined_at=NOW, joined_via="api", refs=[])
    for name, value in fields.items():
        setattr(member, name, value)
    return member


def test_a_visitor_naming_a_code_is_created_with_the_referrers_back_references(impl: Impl) -> None:  # noqa: F811
    from chalicelib.domain.errors import MemberErased

    members = impl.ports.members
    impl.seed(new_member_item("anna"), new_member_item("vera", erased_at=NOW))
    refs = members.identity_refs(PID, email="zoe@example.com", phone="+79123456780")
    created = members.create_member(_plan("mbr_zoe", "ZOECODE01", acquisition={"channel": "landing", "ref": "ANNA"},
                                          ref_member_id="anna"), refs)
    assert created is not None
    assert [getattr(_back_ref(impl, "anna", r), "expires_at_epoch", "missing") for r in refs] == [None, None]
    # The referrer's erasure has started: MemberErased naming her, nothing written.
    others = members.identity_refs(PID, email="yan@example.com")
    with pytest.raises(MemberErased) as erased:
        members.create_member(_plan("mbr_yan", "YANCODE01", acquisition={"channel": "landing", "ref": "VERA"},
                                    ref_member_id="vera"), others)
    assert erased.value.details == {"member_id": "vera"}
    assert members.get(PID, "mbr_yan") is None and members.identity_owner(PID, others) is None
    assert _back_ref(impl, "vera", others[0]) is None


def test_signal_pointers_gain_members_conditioned_on_the_revision_read(impl: Impl) -> None:  # noqa: F811
    signals = impl.ports.signals
    device, ip = SignalRef("device", "d" * 32), SignalRef("ip", "i" * 32)
    assert signals.pointers(PID, [device, ip]) == {}
    assert signals.see(PID, [device, ip], {}, "mbr_anna", NOW) is True
    read = signals.pointers(PID, [device, ip])
    assert set(read) == {"device", "ip"} and read["device"].seen() == {"mbr_anna": NOW}
    assert signals.see(PID, [device], {}, "mbr_boris", NOW) is False  # read before anna: refused, nothing written
    assert signals.pointers(PID, [device])["device"].seen() == {"mbr_anna": NOW}
    later = NOW + timedelta(minutes=5)
    assert signals.see(PID, [device], read, "mbr_boris", later) is True
    now_read = signals.pointers(PID, [device])
    assert now_read["device"].seen() == {"mbr_anna": NOW, "mbr_boris": later}
    assert int(now_read["device"].revision) == 2
    assert signals.see(PID, [device], read, "mbr_vera", later) is False  # stale revision
    # Seen again within the refresh interval: nothing needs writing (no conflict either).
    assert signals.see(PID, [device], now_read, "mbr_boris", later + REFRESH / 2) is True
    assert int(signals.pointers(PID, [device])["device"].revision) == 2
    assert isinstance(_stored(impl, SignalItem, device.pointer_key(PID)), SignalItem)


def test_a_velocity_counter_counts_up_to_its_limit_per_window(impl: Impl) -> None:  # noqa: F811
    signals = impl.ports.signals
    expires = int((NOW + timedelta(days=2)).timestamp())
    assert [signals.take_velocity_slot(PID, "ref#anna", "INV#D#20261123", 2, expires) for _ in range(3)] == [
        True, True, False]
    assert signals.take_velocity_slot(PID, "ref#anna", "INV#D#20261124", 2, expires) is True  # another day
    assert signals.take_velocity_slot(PID, "ref#boris", "INV#D#20261123", 2, expires) is True  # another referrer
    counter = _stored(impl, VelocityItem, keys.velocity(PID, "ref#anna", "INV#D#20261123"))
    assert (int(counter.hits), int(counter.expires_at_epoch)) == (2, expires)


def test_concurrent_creations_of_one_person_make_one_member(impl: Impl) -> None:  # noqa: F811
    from concurrent.futures import ThreadPoolExecutor

    members = impl.ports.members
    refs = members.identity_refs(PID, email="friend@example.com")
    with ThreadPoolExecutor(6) as pool:
        created = list(pool.map(lambda n: members.create_member(_plan(f"mbr_{n}", f"CODE{n}XYZ"), refs), range(6)))
    winners = [m.member_id for m in created if m is not None]
    assert len(winners) == 1 and members.identity_owner(PID, refs) == winners[0]
    assert [n for n in range(6) if members.get(PID, f"mbr_{n}") is not None] == [int(winners[0][4:])]


def test_concurrent_hits_never_pass_the_counters_limit(impl: Impl) -> None:  # noqa: F811
    from concurrent.futures import ThreadPoolExecutor

    signals = impl.ports.signals
    expires = int((NOW + timedelta(days=90)).timestamp())
    with ThreadPoolExecutor(6) as pool:
        taken = list(pool.map(lambda _: signals.take_velocity_slot(PID, "ref#anna", "INVSIG#ip#x", 4, expires),
                              range(10)))
    assert sorted(taken) == [False] * 6 + [True] * 4
