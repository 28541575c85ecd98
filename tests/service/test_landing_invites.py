"""Landing invites and their fraud signals (``services.landing.invites``, ``.signals``) on the in-memory ports.

Through the API under moto (CORS, the route's schema, parallel requests, the pipeline matching the pending invites):
tests/functional/test_landing.py, test_landing_concurrency.py, test_landing_signals.py; the fakes are held to
DynamoDB's behaviour by tests/contract/test_landing_ports.py.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from chalicelib.domain.errors import RateLimited, ServiceUnavailable, ValidationFailed
from chalicelib.services import ports
from chalicelib.services.landing import invites
from chalicelib.store import fakes
from chalicelib.store.members import PendingInviteItem
from tests import ports_support as support

PID = "prg_1"
FARM_IP = "198.51.100.30"


def _deps(**settings: Any) -> ports.Ports:
    deps = ports.fakes(support.NOW)
    fakes.seed(deps, support.program(PID, default_locale="ru", settings={
        "landing_rate_limits": {"invites_per_minute": 1000}, **settings}))
    return deps


@pytest.fixture
def deps() -> ports.Ports:
    return _deps()


def _invite(deps: ports.Ports, source_ip: str = "127.0.0.1", **data: Any) -> dict[str, Any]:
    return invites.create_invite(deps.programs.get(PID), data, source_ip, deps)


def _pending(deps: ports.Ports, email: str) -> PendingInviteItem | None:
    (ref,) = deps.members.identity_refs(PID, email=email)
    return deps.members.table.get(PendingInviteItem, ref.invite_key(PID))  # type: ignore[attr-defined, no-any-return]


def test_a_visitor_gets_a_member_a_code_a_link_and_share_texts_once(deps: ports.Ports) -> None:
    first = _invite(deps, email="Olga@Example.com", name="  Olga   Petrova ", utm={"source": "vk", "medium": ""})
    assert first["link"].endswith(f"/r/{first['code']}") and first["locale"] == "ru"
    assert first["code_display"].replace("-", "") == first["code"] and first["qr_svg"].startswith("<svg")
    assert first["referral_recorded"] is False and set(first["share_texts"]) == {"ru", "en"}
    member_id = deps.members.find_by_identity(PID, email="olga@example.com")
    member = deps.members.get(PID, member_id or "")
    assert member is not None and (member.name, member.joined_via, member.joined_at) == (
        "Olga Petrova", "invite", support.NOW)
    assert member.acquisition == {"channel": "landing", "utm": {"source": "vk"}}
    assert deps.members.short_link(first["code"]) is not None
    again = _invite(deps, email="olga@example.com", phone="+7 912 345-67-89")
    assert again["code"] == first["code"]  # found by the e-mail; the phone is not attached to her (a visitor's claim)
    assert deps.members.find_by_identity(PID, phone="+79123456789") is None


def test_an_e_mail_or_a_phone_is_required_and_must_be_valid(deps: ports.Ports) -> None:
    with pytest.raises(ValidationFailed) as missing:
        _invite(deps, name="Olga")
    assert [e["path"] for e in missing.value.details["errors"]] == ["$.email", "$.phone"]
    with pytest.raises(ValidationFailed):
        _invite(deps, phone="12")


def test_a_referrers_link_records_a_pending_invite_per_identifier(deps: ports.Ports) -> None:
    anna = _invite(deps, email="anna@example.com")
    friend = _invite(deps, email="friend@example.com", phone="+79123456789", ref=anna["code_display"].lower())
    assert friend["referral_recorded"] is True and friend["code"] != anna["code"]
    pending = _pending(deps, "friend@example.com")
    assert pending is not None and pending.code == anna["code"] and pending.invited_at == support.NOW
    assert pending.expires_at_epoch == int((support.NOW + timedelta(days=30 + 7)).timestamp())
    (phone_ref,) = deps.members.identity_refs(PID, phone="+79123456789")
    assert deps.members.table.get(PendingInviteItem, phone_ref.invite_key(PID)) is not None  # type: ignore[attr-defined]
    # Own link, unknown codes and junk credit nobody.
    assert _invite(deps, email="anna@example.com", ref=anna["code"])["referral_recorded"] is False
    assert _invite(deps, email="x@example.com", ref="NOBODY-CODE")["referral_recorded"] is False
    assert _invite(deps, email="y@example.com", ref="!!")["referral_recorded"] is False


def test_first_touch_keeps_the_first_referrer_inside_the_window_and_last_touch_replaces(deps: ports.Ports) -> None:
    anna, boris = _invite(deps, email="anna@example.com"), _invite(deps, email="boris@example.com")
    assert _invite(deps, email="f@example.com", ref=anna["code"])["referral_recorded"] is True
    assert _invite(deps, email="f@example.com", ref=boris["code"])["referral_recorded"] is False
    anna_id = deps.members.find_by_identity(PID, email="anna@example.com")
    assert _pending(deps, "f@example.com").referrer_id == anna_id  # type: ignore[union-attr]
    deps.clock.advance(days=31)  # type: ignore[attr-defined]
    assert _invite(deps, email="f@example.com", ref=boris["code"])["referral_recorded"] is True
    last = _deps(attribution_model="last_touch")
    anna, boris = _invite(last, email="anna@example.com"), _invite(last, email="boris@example.com")
    _invite(last, email="f@example.com", ref=anna["code"])
    assert _invite(last, email="f@example.com", ref=boris["code"])["referral_recorded"] is True
    assert _pending(last, "f@example.com").code == boris["code"]  # type: ignore[union-attr]


def test_a_referrers_invites_per_day_are_capped(deps: ports.Ports) -> None:
    capped = _deps(fraud={"invites_per_referrer_day": 2})
    anna = _invite(capped, email="anna@example.com")
    recorded = [_invite(capped, email=f"f{n}@example.com", ref=anna["code"])["referral_recorded"] for n in range(3)]
    assert recorded == [True, True, False]
    assert _pending(capped, "f2@example.com") is None
    capped.clock.advance(days=1)  # type: ignore[attr-defined]
    assert _invite(capped, email="f3@example.com", ref=anna["code"])["referral_recorded"] is True


def test_invites_are_rate_limited_per_client_ip() -> None:
    limited = _deps(landing_rate_limits={"invites_per_minute": 2})
    for n in range(2):
        _invite(limited, FARM_IP, email=f"v{n}@example.com")
    with pytest.raises(RateLimited):
        _invite(limited, FARM_IP, email="v2@example.com")
    _invite(limited, "198.51.100.31", email="v3@example.com")  # another client


def test_a_friend_on_the_referrers_device_is_recorded_as_rejected_and_credits_nobody(deps: ports.Ports) -> None:
    anna = _invite(deps, email="anna@example.com", context={"device_id": "dev-anna-1"})
    boris = _invite(deps, email="boris@example.com", ref=anna["code"], context={"device_id": "dev-anna-1"})
    assert boris["referral_recorded"] is False
    pending = _pending(deps, "boris@example.com")
    assert pending is not None and pending.risk_reject == "self_referral_device"  # the pipeline rejects with it
    device = invites.invite_signals.refs_of(PID, invites.invite_signals.context_of({"device_id": "dev-anna-1"},
                                                                                    "127.0.0.1"), deps)
    (pointer,) = deps.signals.pointers(PID, device).values()
    assert len(pointer.seen()) == 2  # both were seen with it; no value is stored, only the keyed hash


def test_many_friends_of_one_referrer_from_one_ip_are_held(deps: ports.Ports) -> None:
    farm = _deps(fraud={"friends_per_signal": 2})
    anna = _invite(farm, email="anna@example.com")  # from the local address: no signal of hers
    for n in range(3):
        assert _invite(farm, FARM_IP, email=f"f{n}@example.com", ref=anna["code"])["referral_recorded"] is True
    holds = [list(_pending(farm, f"f{n}@example.com").risk_holds) for n in range(3)]  # type: ignore[union-attr]
    assert holds == [[], [], ["many_friends_same_signal"]]


def test_a_lost_creation_race_returns_the_winners_member(deps: ports.Ports, monkeypatch: pytest.MonkeyPatch) -> None:
    winner = _invite(deps, email="anna@example.com")
    real = deps.members.identity_owner
    calls: list[int] = []

    def stale_first_read(program_id: str, refs: Any) -> str | None:
        calls.append(1)
        return None if len(calls) == 1 else real(program_id, refs)

    monkeypatch.setattr(deps.members, "identity_owner", stale_first_read)
    assert _invite(deps, email="anna@example.com")["code"] == winner["code"]
    assert len(calls) == 2  # read "nobody", the create was refused, read the winner


def test_creation_that_keeps_failing_is_a_503(deps: ports.Ports, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(deps.members, "create_member", lambda member, refs: None)
    with pytest.raises(ServiceUnavailable):
        _invite(deps, email="anna@example.com")


def test_a_lost_race_on_a_signal_pointer_reads_again(deps: ports.Ports, monkeypatch: pytest.MonkeyPatch) -> None:
    real = deps.signals.see
    outcomes: list[bool] = []

    def first_lost(*args: Any) -> bool:
        outcomes.append(bool(outcomes) and real(*args))
        return outcomes[-1]

    monkeypatch.setattr(deps.signals, "see", first_lost)
    _invite(deps, email="anna@example.com", context={"device_id": "dev-1"})
    assert outcomes == [False, True]
    refs = invites.invite_signals.refs_of(PID, invites.invite_signals.context_of({"device_id": "dev-1"},
                                                                                   "127.0.0.1"), deps)
    assert [len(p.seen()) for p in deps.signals.pointers(PID, refs).values()] == [1]
