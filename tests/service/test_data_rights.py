"""Member erasure and export on the in-memory ports: the steps, their sizes, the budget, resuming, idempotency and
the member's own request; the export's summary, sections and signed cursor. No moto, no table.

Through the API under moto (every personal value gone from the whole table, amounts unchanged, the notification
and analytics kinds, a crash inside a step): tests/functional/test_data_rights_erasure.py; the fakes are held to
DynamoDB's behaviour by tests/contract/test_data_rights_ports.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from chalicelib.domain.errors import BadRequest, NotFound, ServiceUnavailable
from chalicelib.domain.records import StaleErasure
from chalicelib.services import erasure, member_export, ports
from chalicelib.services.auth import Principal
from chalicelib.store import fakes, keys
from chalicelib.store.members import PendingInviteItem, identity_refs, key_str, new_member
from tests import ports_support as support

PID = "prg_1"
OPERATOR = Principal(kind="operator")


def _olga() -> list[Any]:
    refs = identity_refs(PID, email="olga@example.com", phone="+79990001122")
    olga = new_member(PID, "olga", "OLGA2", joined_at=support.NOW, joined_via="api", name="Olga Petrova",
                      email="olga@example.com", phone="+79990001122", refs=refs)
    olga.pointer_keys = [*olga.pointer_keys, key_str(keys.referral_code(PID, "OLGA1"))]
    email = next(r for r in refs if r.kind == "email")
    ipk, isk = keys.pending_invite(PID, "email", email.value_hash)
    return [olga, *support.identities(olga, email="olga@example.com", phone="+79990001122"),
            support.code_pointer(PID, "OLGA1", "olga"), support.code_pointer(PID, "OLGA2", "olga"),
            PendingInviteItem(PK=ipk, SK=isk, program_id=PID, kind="email", referrer_id="anna", code="ANNA",
                              invited_at=support.NOW),
            support.balance(PID, "olga", available=700, lifetime_earned=700),
            *[support.entry(PID, "olga", n, points=100 * (n + 1)) for n in range(3)],
            *[support.attribution(PID, "olga", 10 + n, code="ANNA") for n in range(2)],
            *[support.attribution(PID, f"friend{n}", 20 + n, code="OLGA1") for n in range(3)],
            support.click_total(PID, "OLGA2", 7, telegram=7)]


@pytest.fixture
def deps() -> ports.Ports:
    deps = ports.fakes(support.NOW)
    fakes.seed(deps, support.program(PID), *_olga(), support.member(PID, "boris"))
    return deps


def test_an_erasure_removes_the_personal_data_and_keeps_the_amounts(deps: ports.Ports) -> None:
    done = erasure.erase(deps, OPERATOR, PID, "olga")
    assert done["status"] == "erased" and done["step"] is None and done["completed_at"] == "2026-11-23T10:00:00.000000Z"
    assert done["counts"] == {"pointers": 4, "profile": 1, "attribution_records": 2, "code_attributions": 3}
    member = deps.members.get(PID, "olga")
    assert member is not None and (member.name, member.email, member.phone, member.code) == (None, None, None, "-")
    assert deps.members.find_by_identity(PID, email="olga@example.com") is None
    assert deps.members.code_pointer(PID, "OLGA1") is None
    balance = deps.ledger.balance(PID, "olga")
    assert balance is not None and balance.available == 700
    assert len(deps.ledger.entries(PID, "olga", 10, None).items) == 3
    assert all(r.business_key.startswith("sha256:") for r in deps.events.attributions(PID, "olga", 10, None).items)
    assert deps.events.code_attributions(PID, "OLGA1", 10, None).items == []
    assert erasure.erase(deps, OPERATOR, PID, "olga") == done  # idempotent
    with pytest.raises(NotFound):
        erasure.erase(deps, OPERATOR, PID, "nobody")
    with pytest.raises(NotFound):
        erasure.erase(deps, OPERATOR, "prg_nope", "olga")


def test_a_small_budget_answers_in_progress_and_each_call_resumes(deps: ports.Ports,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(erasure, "TX_ITEMS", 4)  # two pointers, three records per transaction
    views = [erasure.erase(deps, OPERATOR, PID, "olga", budget=3)]
    while views[-1]["status"] != "erased":
        views.append(erasure.erase(deps, OPERATOR, PID, "olga", budget=3))
        assert len(views) < 20
    # 6 pointers two by two (2 items each), the profile (1), then 2 + 3 attribution records in pages of 3.
    assert [v["step"] for v in views] == ["pointers", "attribution_records", "code_attributions", None]
    assert [v["counts"].get("profile") for v in views] == [None, 1, 1, 1]
    assert all(v["status"] == "in_progress" for v in views[:-1])
    assert views[-1]["counts"] == {"pointers": 4, "profile": 1, "attribution_records": 2, "code_attributions": 3}


def test_concurrent_changes_are_retried_then_a_503(deps: ports.Ports, monkeypatch: pytest.MonkeyPatch) -> None:
    real = deps.data_rights.erase_profile
    lost = iter([True, True])

    def flaky(record: Any, then: str, at: Any) -> Any:
        if next(lost, False):
            raise StaleErasure()
        return real(record, then, at)

    monkeypatch.setattr(deps.data_rights, "erase_profile", flaky)
    assert erasure.erase(deps, OPERATOR, PID, "olga")["status"] == "erased"

    def always(record: Any, then: str, at: Any) -> Any:
        raise StaleErasure()

    monkeypatch.setattr(deps.data_rights, "erase_profile", always)
    with pytest.raises(ServiceUnavailable):
        erasure.erase(deps, OPERATOR, PID, "boris")


def test_the_members_own_request_waits_for_the_operator(deps: ports.Ports) -> None:
    deps.clock.advance(minutes=5)  # type: ignore[attr-defined]
    asked = erasure.request_by_member(deps, PID, "olga")
    assert (asked["status"], asked["requested_by"], asked["requested_at"]) == (
        "requested", "member", "2026-11-23T10:05:00.000000Z")
    assert erasure.request_by_member(deps, PID, "olga") == asked  # idempotent
    listed = erasure.pending_requests(deps, PID, 10, None)
    assert [r["member_id"] for r in listed["items"]] == ["olga"] and listed["next_cursor"] is None
    done = erasure.erase(deps, OPERATOR, PID, "olga")
    assert (done["status"], done["requested_by"], done["confirmed_by"]) == ("erased", "member", "operator")
    assert erasure.pending_requests(deps, PID, 10, None)["items"] == []
    assert erasure.request_by_member(deps, PID, "olga")["status"] == "erased"
    with pytest.raises(NotFound):
        erasure.request_by_member(deps, PID, "nobody")


def _export_all(deps: ports.Ports, member_id: str, limit: int) -> tuple[dict[str, Any], list[dict[str, Any]], int]:
    first = member_export.export(deps, OPERATOR, PID, member_id, limit, None)
    items, cursor, pages = list(first["items"]), first["next_cursor"], 1
    while cursor:
        page = member_export.export(deps, OPERATOR, PID, member_id, limit, cursor)
        assert "summary" not in page and len(page["items"]) <= limit
        items += page["items"]
        cursor, pages = page["next_cursor"], pages + 1
    return first["summary"], items, pages


def test_the_export_holds_the_summary_then_every_item_in_bounded_signed_pages(deps: ports.Ports) -> None:
    from chalicelib.store.partner_hooks import new_delivery

    fakes.seed(deps, new_delivery(program_id=PID, partner_id="ptn_1", endpoint_id="whe_1", event_type="reward.posted",
                                  source_id="le:1", occurred_at=support.NOW, body="{}", now=support.NOW,
                                  delivery="whd_1", member_id="olga"))
    summary, items, pages = _export_all(deps, "olga", 2)
    assert summary["profile"]["name"] == "Olga Petrova" and summary["balance"]["available"] == 700
    assert summary["erasure"] is None
    assert summary["codes"] == [{"code": "OLGA2", "clicks": summary["codes"][0]["clicks"]},
                                {"code": "OLGA1", "clicks": None}]
    assert summary["codes"][0]["clicks"]["clicks"] == 7
    assert sorted(summary["identifiers"]) == ["email", "phone"]
    assert [i["referrer_id"] for i in summary["pending_invites"]] == ["anna"]
    types = sorted(i["item_type"] for i in items)
    assert types == ["attribution"] * 2 + ["ledger_entry"] * 3 + ["webhook_delivery"], types
    assert pages >= 3
    with pytest.raises(BadRequest):
        member_export.export(deps, OPERATOR, PID, "olga", 2, "forged.cursor")
    with pytest.raises(NotFound):
        member_export.export(deps, OPERATOR, PID, "nobody", 2, None)


def test_an_erased_members_export_shows_the_record_and_the_erased_codes(deps: ports.Ports) -> None:
    erasure.erase(deps, OPERATOR, PID, "olga")
    summary, items, _ = _export_all(deps, "olga", 100)
    assert summary["erasure"]["status"] == "erased" and summary["profile"]["code"] == "-"
    assert [c["code"] for c in summary["codes"]] == ["OLGA2", "OLGA1"]
    assert summary["identifiers"] == [] and summary["pending_invites"] == []
    assert "Olga" not in repr(summary) and "olga@example.com" not in repr(items)
