"""Member import: members, opening balances and referrers from a CSV, idempotent per row."""

from __future__ import annotations

import json
from typing import Any

import pytest

from chalicelib.domain.member_import import parse, parse_points
from tests.functional.test_ledger_support import Shop, check_invariants, utc
from tests.support import CLOCK, ApiClient

CSV = """email,phone,customer_id,name,birthday,code,opening_balance,referrer_code,referrer_customer_id
anna@example.com,+79161112233,c-1,Анна,1991-02-03,ANNA-2020,1490.00,,
boris@example.com,,c-2,Борис,,,300,ANNA-2020,
,+79162223344,c-3,,,,0,,c-2
not-an-email,,c-4,,,,12.5,,
dora@example.com,,c-5,,,,10,NOSUCHCODE,
"""


@pytest.fixture(autouse=True)
def frozen_clock(api: ApiClient) -> None:
    CLOCK.set(utc("2026-01-15T12:00:00Z"))


def send(api: ApiClient, pid: str, text: str, **extra: Any) -> dict[str, Any]:
    reply = api.post(f"/v1/programs/{pid}/imports/members", {"csv": text, **extra})
    assert reply.status == 200, reply.body
    return reply.body  # type: ignore[no-any-return]


def lookup(api: ApiClient, pid: str, **query: str) -> dict[str, Any]:
    q = "&".join(f"{k}={v}" for k, v in query.items()).replace("+", "%2B")
    reply = api.get(f"/v1/programs/{pid}/members/lookup?{q}")
    assert reply.status == 200, reply.body
    return reply.body  # type: ignore[no-any-return]


def test_import_creates_members_balances_and_referrers_and_reports_bad_rows(api: ApiClient) -> None:
    shop = Shop(api, "uds_3_level")
    pid, partner = shop.pid, shop.partner["partner_id"]
    result = send(api, pid, CSV, partner_id=partner)
    assert (result["rows"], result["imported"], result["already_imported"]) == (5, 3, 0)
    assert result["opening_points"] == 1790
    lines = {e["line"]: e["errors"] for e in result["errors"]}
    assert set(lines) == {5, 6}
    assert {e["column"] for e in lines[5]} == {"email", "opening_balance"}
    assert lines[6][0]["column"] == "referrer_code"
    anna = lookup(api, pid, code="ANNA-2020")
    assert anna["code"] == "ANNA2020" and anna["counts"]["signups"] == 1
    boris = lookup(api, pid, email="boris@example.com")
    assert boris["referrer_id"] == anna["member_id"] and boris["attribution"]["source"] == "import"
    carl = lookup(api, pid, phone="+79162223344")
    assert carl["referrer_id"] == boris["member_id"]
    assert shop.balance(anna["member_id"])["available"] == 1490
    assert shop.balance(boris["member_id"])["available"] == 300
    entries = shop.ledger(anna["member_id"])
    assert [(e["kind"], e["points"]) for e in entries] == [("import", 1490)]
    check_invariants(pid, anna["member_id"])
    # Nothing of the bad rows was written.
    assert api.get(f"/v1/programs/{pid}/members/lookup?email=dora@example.com").status == 404
    # An imported member's later order earns as usual, and their referrer too.
    shop.order("c-2", "o-1", 100_000)
    boris_after, anna_after = shop.balance(boris["member_id"]), shop.balance(anna["member_id"])
    assert boris_after["available"] + boris_after["pending"] > 300
    assert anna_after["available"] + anna_after["pending"] > 1490


def test_reimporting_changes_nothing(api: ApiClient) -> None:
    from tests.functional.test_data_rights_erasure import scan_test_table

    shop = Shop(api, None)
    pid, partner = shop.pid, shop.partner["partner_id"]
    send(api, pid, CSV, partner_id=partner)
    before = sorted(json.dumps(i, sort_keys=True) for i in scan_test_table())
    again = send(api, pid, CSV, partner_id=partner)
    assert (again["imported"], again["already_imported"], again["opening_points"]) == (0, 3, 0)
    assert [e["line"] for e in again["errors"]] == [5, 6]
    assert sorted(json.dumps(i, sort_keys=True) for i in scan_test_table()) == before


def test_chunks_report_file_line_numbers_and_a_dry_run_writes_nothing(api: ApiClient) -> None:
    from tests.functional.test_data_rights_erasure import scan_test_table

    shop = Shop(api, None)
    pid = shop.pid
    before = len(scan_test_table())
    header = "email,opening_balance\n"
    dry = send(api, pid, header + "a@example.com,5\nbroken,5\n", first_line=1001, dry_run=True)
    assert dry["dry_run"] is True and [e["line"] for e in dry["errors"]] == [1002]
    assert len(scan_test_table()) == before
    done = send(api, pid, header + "a@example.com,5\n", first_line=1001)
    assert done["imported"] == 1


def test_an_existing_member_gets_only_the_opening_balance(api: ApiClient) -> None:
    shop = Shop(api, None)
    member = shop.member("c-9")  # email c-9@example.com
    result = send(api, shop.pid, "email,name,opening_balance\nc-9@example.com,Someone Else,250\n")
    assert (result["imported"], result["existing_members"]) == (0, 1)
    assert shop.balance(member["member_id"])["available"] == 250
    assert lookup(api, shop.pid, email="c-9@example.com")["first_name"] is None


def test_bad_requests(api: ApiClient) -> None:
    shop = Shop(api, None)
    url = f"/v1/programs/{shop.pid}/imports/members"
    assert api.post(url, {"csv": "nickname\nx\n"}).status == 422
    assert api.post(url, {"csv": "email\n", "partner_id": "ptn_nobody"}).status == 404
    assert api.post(url, {}).status == 422
    assert api.post(url, {"csv": "email\na@example.com\n"}, key=shop.partner["api_key"]).status == 403
    rows = "customer_id\nc-1\n"
    assert send(api, shop.pid, rows)["errors"][0]["errors"][0]["column"] == "customer_id"


@pytest.mark.parametrize(("raw", "points"), [("1490", 1490), ("1490.00", 1490), (" 1 490 ", 1490), ("0", 0)])
def test_points_are_parsed_without_floats(raw: str, points: int) -> None:
    assert parse_points(raw) == points


@pytest.mark.parametrize("raw", ["1490.5", "-1", "1e400", "NaN", "abc", "0.1"])
def test_bad_points(raw: str) -> None:
    with pytest.raises(ValueError):
        parse_points(raw)


def test_parse_reports_multiline_records_by_their_first_line() -> None:
    rows, errors = parse('email,name\n"a@example.com","two\nlines"\nbad,x\n', first_line=2)
    assert [r.line for r in rows] == [2] and [e.line for e in errors] == [4]


def test_a_group_whose_transaction_fails_takes_out_the_offending_row(api: ApiClient,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows share transactions; when one fails (here a generated code collides with an existing one),
    the offending row is written again on its own and every good row still lands, once."""
    from chalicelib.domain import codes
    from chalicelib.services import importer

    shop = Shop(api, None)
    taken = shop.member("someone")["code"]
    calls = {"n": 0}
    real = codes.generate_code

    def colliding() -> str:
        calls["n"] += 1
        return taken if calls["n"] == 3 else real()

    monkeypatch.setattr(importer, "generate_code", colliding)
    rows = "email,opening_balance\n" + "".join(f"g{i}@example.com,{i + 1}\n" for i in range(8))
    result = send(api, shop.pid, rows)
    assert (result["imported"], result["errors"], result["opening_points"]) == (8, [], 36)
    assert calls["n"] > 8  # the group was staged again, row by row
    for i in range(8):
        member = lookup(api, shop.pid, email=f"g{i}@example.com")
        assert member["code"] != taken
        assert shop.balance(member["member_id"])["available"] == i + 1


def _first_read_misses(monkeypatch: pytest.MonkeyPatch, hidden: type | tuple[type, ...]) -> None:
    """The chunk's first batched read does not see items of type ``hidden``: as if another writer
    wrote them between the read and the chunk's transactions."""
    from chalicelib.services import importer

    real, calls = importer.batch_get, {"n": 0}

    def racing(wanted: Any, **kw: Any) -> Any:
        calls["n"] += 1
        found = real(wanted, **kw)
        return {k: v for k, v in found.items() if not isinstance(v, hidden)} if calls["n"] == 1 else found

    monkeypatch.setattr(importer, "batch_get", racing)


def _count_commits(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    from chalicelib.store.transact import Transaction

    real, seen = Transaction.commit, {"commits": 0, "items": 0}

    def counting(self: Transaction, **kw: Any) -> None:
        seen["commits"] += 1
        seen["items"] += len(self)
        real(self, **kw)

    monkeypatch.setattr(Transaction, "commit", counting)
    return seen


def test_a_row_whose_code_was_taken_meanwhile_is_reported_and_its_group_still_lands(
        api: ApiClient, monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib.store.members import CodeItem
    from tests.functional.test_data_rights_erasure import scan_test_table

    shop = Shop(api, None)
    send(api, shop.pid, "email,code\nfirst@example.com,TAKEN-1\n")
    items_before = len(scan_test_table())
    _first_read_misses(monkeypatch, CodeItem)
    seen = _count_commits(monkeypatch)
    rows = "email,code,opening_balance\n" + "".join(
        f"n{i}@example.com,{'TAKEN-1' if i == 2 else ''},{i + 1}\n" for i in range(5))
    result = send(api, shop.pid, rows)
    assert result["imported"] == 4 and result["opening_points"] == 1 + 2 + 4 + 5
    assert [(e["line"], e["errors"][0]["column"]) for e in result["errors"]] == [(4, "code")]
    # One group: cancelled once (the code's condition names line 4), then the four other rows together;
    # line 4, read again, finds its code taken and writes nothing.
    assert seen["commits"] == 2
    assert api.get(f"/v1/programs/{shop.pid}/members/lookup?email=n2@example.com").status == 404
    for i in (0, 1, 3, 4):
        member = lookup(api, shop.pid, email=f"n{i}@example.com")
        assert shop.balance(member["member_id"])["available"] == i + 1
    # Exactly the four members' items were written: nothing of line 4 was.
    per_member = (len(scan_test_table()) - items_before) / 4
    assert per_member == int(per_member)


def test_a_code_someone_holds_is_a_bad_row(api: ApiClient) -> None:
    shop = Shop(api, None)
    holder = shop.member("holder")
    result = send(api, shop.pid, f"email,code\nnew@example.com,{holder['code']}\nok@example.com,\n")
    assert result["imported"] == 1
    assert [(e["line"], e["errors"][0]["column"]) for e in result["errors"]] == [(2, "code")]


def test_rows_imported_meanwhile_are_skipped_and_change_nothing(api: ApiClient,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A re-run whose read misses the members and their markers (another upload of the same rows raced it): every
    row's transaction is cancelled by its pointers, the row read again finds the member and its marker, and
    nothing changes."""
    from chalicelib.store.data_rights import ImportRowItem
    from chalicelib.store.members import IdentityItem
    from tests.functional.test_data_rights_erasure import scan_test_table

    shop = Shop(api, None)
    rows = "email,opening_balance\n" + "".join(f"r{i}@example.com,{i + 1}\n" for i in range(6))
    assert send(api, shop.pid, rows)["imported"] == 6
    before = sorted(json.dumps(i, sort_keys=True) for i in scan_test_table())
    _first_read_misses(monkeypatch, (IdentityItem, ImportRowItem))
    again = send(api, shop.pid, rows)
    assert (again["imported"], again["existing_members"], again["already_imported"], again["errors"]) == (
        0, 0, 6, [])
    assert sorted(json.dumps(i, sort_keys=True) for i in scan_test_table()) == before


def test_imported_referrals_do_not_tell_the_referrers_again(api: ApiClient) -> None:
    """Members brought over from another system joined there, long ago: no «your friend joined» for
    them, while a friend who signs up here afterwards is announced as usual."""
    from tests.notify_support import stream_poller

    shop = Shop(api, "uds_3_level")
    pid, partner = shop.pid, shop.partner["partner_id"]
    send(api, pid, CSV, partner_id=partner)
    anna = lookup(api, pid, code="ANNA-2020")
    stream_poller().poll_once()
    assert [m for m in _outbox(pid) if m.template == "friend_joined"] == []
    shop.signup("dana", code=anna["code"])
    stream_poller().poll_once()
    assert [m.member_id for m in _outbox(pid) if m.template == "friend_joined"] == [anna["member_id"]]


def _outbox(pid: str) -> list[Any]:
    from tests.functional.test_rewards_examples import outbox

    return outbox(pid)  # type: ignore[no-any-return]


def test_groups_staged_while_the_one_before_commits_land_as_one_after_the_other(
        api: ApiClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """``importer.PIPELINED``: the next group is staged while one commits. The same answer, members,
    referrers, balances and transactions as with the groups taking turns, also when a group is cancelled
    and the next one names the row it loses as a referrer (its staging is undone and done again)."""
    from chalicelib.services import importer
    from chalicelib.store.members import CodeItem

    monkeypatch.setattr(importer, "GROUP_ITEMS", 20)  # two new members per group: many groups in one chunk
    undone: list[int] = []
    real_unstage = importer._Chunk.unstage

    def unstage(self: Any, group: Any, mark: Any) -> None:
        undone.append(len(group))
        real_unstage(self, group, mark)

    monkeypatch.setattr(importer._Chunk, "unstage", unstage)
    outcomes = []
    for run, pipelined in enumerate((True, False)):
        monkeypatch.setattr(importer, "PIPELINED", pipelined)
        shop = Shop(api, None)
        send(api, shop.pid, f"email,code\nholder@example.com,HELD-{run}\n")
        shop.member("old")  # a member already (old@example.com): the import credits the opening balance only
        _first_read_misses(monkeypatch, CodeItem)  # HELD-n looks free to the chunk: its row's group is cancelled
        seen = _count_commits(monkeypatch)
        rows = ["email,code,opening_balance,referrer_code"]
        rows += [f"a{i}@example.com,AAA{i}-{run},{i + 1}," for i in range(5)]
        rows += [f"taker@example.com,HELD-{run},7,", f"named@example.com,,8,HELD-{run}",  # the holder, not the taker
                 f"b1@example.com,,9,AAA1-{run}", "a2@example.com,,10,", "old@example.com,,11,",
                 f"b2@example.com,,12,AAA4-{run}", "b3@example.com,,13,"]
        result = send(api, shop.pid, "\n".join(rows) + "\n")
        members = {}
        for email in ["holder", "old", *(f"a{i}" for i in range(5)), "taker", "named", "b1", "b2", "b3"]:
            reply = api.get(f"/v1/programs/{shop.pid}/members/lookup?email={email}@example.com")
            if reply.status == 200:
                members[email] = (reply.body["member_id"], reply.body.get("referrer_id"),
                                  shop.balance(reply.body["member_id"])["available"])
        by_id = {member_id: email for email, (member_id, _, _) in members.items()}
        outcomes.append(({k: v for k, v in result.items()},
                         {email: (by_id.get(referrer), points) for email, (_, referrer, points) in members.items()},
                         seen["commits"]))
    assert outcomes[0] == outcomes[1]
    assert len(undone) == 1 and undone[0] > 0  # pipelined: the group after the cancelled one, staged again
    answer, members, _ = outcomes[0]
    # Line 10 names a2 again: a bad row (one row per person), nothing of it written.
    assert [(e["line"], e["errors"][0]["column"]) for e in answer["errors"]] == [(7, "code"), (10, "email")]
    assert (answer["imported"], answer["existing_members"], answer["already_imported"]) == (9, 1, 0)
    assert "taker" not in members and members["named"] == ("holder", 8) and members["b2"] == ("a4", 12)


def test_no_commit_outlives_the_chunk_when_staging_fails_meanwhile(
        api: ApiClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """``PIPELINED``: staging the next group raises (a bug) while a group is committing. The request answers only
    once that commit is over (the commit thread is the call's own and is joined), and what landed is what the
    groups taking turns leave: the groups before the failure, nothing of the rest."""
    import threading
    import time

    from chalicelib.services import importer
    from chalicelib.store.transact import Transaction

    monkeypatch.setattr(importer, "GROUP_ITEMS", 20)  # two new members per group
    real_commit, real_stage = Transaction.commit, importer._Chunk.stage_row

    def run(pipelined: bool) -> int:
        monkeypatch.setattr(importer, "PIPELINED", pipelined)
        shop = Shop(api, None)
        staging_failed, commits_over = threading.Event(), []
        calls = {"n": 0}

        def commit(self: Transaction, **kwargs: Any) -> None:
            if pipelined and calls["n"] >= 3:
                staging_failed.wait(10)  # the failure happens while this commit is in flight
                time.sleep(0.3)  # and the commit is still busy while the failure travels up (a wider window)
            try:
                real_commit(self, **kwargs)
            finally:
                commits_over.append(True)

        def stage_row(self: Any, row: Any) -> Any:
            calls["n"] += 1
            if calls["n"] == 6:  # a row of the second group (the first is committing)
                staging_failed.set()
                raise RuntimeError("a bug while staging")
            return real_stage(self, row)

        monkeypatch.setattr(Transaction, "commit", commit)
        monkeypatch.setattr(importer._Chunk, "stage_row", stage_row)
        csv = "email,code,opening_balance\n" + "".join(f"p{i}@example.com,,{i + 1}\n" for i in range(8))
        with pytest.raises(AssertionError, match="500"):  # the route contract refuses the undeclared 500
            api.post(f"/v1/programs/{shop.pid}/imports/members", {"csv": csv})
        commits_when_answered = len(commits_over)
        monkeypatch.setattr(Transaction, "commit", real_commit)
        monkeypatch.setattr(importer._Chunk, "stage_row", real_stage)
        assert commits_when_answered == len(commits_over) == 1  # nothing still committing after the answer
        return sum(api.get(f"/v1/programs/{shop.pid}/members/lookup?email=p{i}@example.com").status == 200
                   for i in range(8))

    assert run(True) == run(False) == 2


# -- one person, one opening balance -------------------------------------------------------------------


def _balance_by(api: ApiClient, shop: Shop, **query: str) -> int:
    return int(shop.balance(lookup(api, shop.pid, **query)["member_id"])["available"])


def test_a_rerun_that_names_the_person_by_other_identifiers_credits_nobody_twice(api: ApiClient) -> None:
    """A corrected file (a column added, the columns reordered) names the same people: they are already imported."""
    shop = Shop(api, None)
    pid, partner = shop.pid, shop.partner["partner_id"]
    assert send(api, pid, "email,opening_balance\nq@example.com,100\n")["imported"] == 1
    again = send(api, pid, "email,customer_id,opening_balance\nq@example.com,cq,100\n", partner_id=partner)
    third = send(api, pid, "phone,email,opening_balance\n+79161110000,q@example.com,100\n")
    for reply in (again, third):
        assert (reply["imported"], reply["existing_members"], reply["already_imported"], reply["errors"]) == (
            0, 0, 1, [])
    assert _balance_by(api, shop, email="q@example.com") == 100


def test_an_existing_member_gets_one_opening_balance_whichever_identifier_names_them(api: ApiClient) -> None:
    shop = Shop(api, None)
    pid, partner = shop.pid, shop.partner["partner_id"]
    member = shop.member("m-1")  # m-1@example.com, the partner's customer m-1
    assert send(api, pid, "email,opening_balance\nm-1@example.com,100\n")["existing_members"] == 1
    by_customer = send(api, pid, "customer_id,opening_balance\nm-1,100\n", partner_id=partner)
    assert (by_customer["existing_members"], by_customer["already_imported"]) == (0, 1)
    assert shop.balance(member["member_id"])["available"] == 100


def _as_imported_by_the_earlier_code(pid: str, member_id: str, kind: str, value: str) -> None:
    """Replace the member's import marker by the one the code before per-member markers wrote: keyed by the row's
    strongest identifier (``kind``/``value``), its ledger entry left as it is."""
    from chalicelib.domain import identity
    from chalicelib.store import keys
    from chalicelib.store.data_rights import ImportRowItem

    [marker] = [m for m in ImportRowItem.scan() if m.member_id == member_id]
    matched = identity.email_match_key(value) if kind == "email" else value
    old_pk, old_sk = keys.import_row(pid, f"{kind}#{identity.identity_hash(pid, kind, matched)}")
    ImportRowItem(PK=old_pk, SK=old_sk, program_id=pid, member_id=member_id, entry_id=marker.entry_id,
                  opening_balance=marker.opening_balance, imported_at=marker.imported_at).save()
    marker.delete()


def test_people_imported_by_the_earlier_code_are_still_recognised(api: ApiClient) -> None:
    shop = Shop(api, None)
    pid = shop.pid
    send(api, pid, "email,phone,opening_balance\nold@example.com,+79161110001,100\n")
    member_id = lookup(api, pid, email="old@example.com")["member_id"]
    _as_imported_by_the_earlier_code(pid, member_id, "email", "old@example.com")
    same = send(api, pid, "email,phone,opening_balance\nold@example.com,+79161110001,100\n")
    by_phone = send(api, pid, "phone,opening_balance\n+79161110001,100\n")  # the old marker is the e-mail's
    for reply in (same, by_phone):
        assert (reply["existing_members"], reply["already_imported"], reply["errors"]) == (0, 1, [])
    assert shop.balance(member_id)["available"] == 100


@pytest.mark.parametrize("holds", ["vanity code", "coupon"])
def test_a_member_with_a_changed_code_or_a_coupon_gets_the_opening_balance(api: ApiClient, holds: str) -> None:
    """Her profile's ``pointer_keys`` then also hold ``CODE#…`` or ``COUPON#…`` keys, which name no earlier-style
    marker: the row credits her once, a re-run skips her."""
    shop = Shop(api, None)
    member = shop.member("c-9")  # c-9@example.com
    path = f"/v1/programs/{shop.pid}/members/{member['member_id']}"
    if holds == "coupon":
        put = api.put(f"{path}/coupons/anna-500", key=shop.partner["api_key"])
    else:
        put = api.put(f"{path}/code", {"code": "VANITY-01"})
    assert put.status == 200, put.body
    first = send(api, shop.pid, "email,opening_balance\nc-9@example.com,250\n")
    assert (first["existing_members"], first["errors"]) == (1, [])
    again = send(api, shop.pid, "email,phone,opening_balance\nc-9@example.com,+79161110009,250\n")
    assert (again["existing_members"], again["already_imported"], again["errors"]) == (0, 1, [])
    assert shop.balance(member["member_id"])["available"] == 250


def test_rerunning_an_earlier_code_import_whose_customer_id_the_member_lacks_reports_nothing(api: ApiClient) -> None:
    """The earlier code credited an existing member found by e-mail and keyed its marker by the row's customer id
    (its strongest identifier), which it did not link: she has another customer id at the partner. A re-run of
    that file is already imported, not a bad row about the customer id, and writes nothing."""
    from chalicelib.domain.identity import customer_id_value
    from tests.functional.test_data_rights_erasure import scan_test_table

    shop = Shop(api, None)
    pid, partner = shop.pid, shop.partner["partner_id"]
    member = shop.member("k-5")  # k-5@example.com, the partner's customer k-5
    send(api, pid, "email,opening_balance\nk-5@example.com,40\n")
    _as_imported_by_the_earlier_code(pid, member["member_id"], "customer_id", customer_id_value(partner, "legacy-77"))
    before = sorted(json.dumps(i, sort_keys=True) for i in scan_test_table())
    rerun = send(api, pid, "email,customer_id,opening_balance\nk-5@example.com,legacy-77,40\n", partner_id=partner)
    assert (rerun["existing_members"], rerun["already_imported"], rerun["errors"]) == (0, 1, [])
    assert sorted(json.dumps(i, sort_keys=True) for i in scan_test_table()) == before
    assert shop.balance(member["member_id"])["available"] == 40


# -- conflicting rows are bad rows ---------------------------------------------------------------------


def test_rows_of_a_file_that_name_the_same_person_twice_are_bad_rows(api: ApiClient) -> None:
    shop = Shop(api, None)
    pid, partner = shop.pid, shop.partner["partner_id"]
    two_ids = "email,customer_id,opening_balance\nx@example.com,c1,100\nX@Example.com,c2,200\n"
    for dry_run in (True, False):  # the check pass finds them too
        result = send(api, pid, two_ids, partner_id=partner, dry_run=dry_run)
        assert [(e["line"], e["errors"][0]["column"]) for e in result["errors"]] == [(3, "email")]
        assert "duplicate of line 2" in result["errors"][0]["errors"][0]["message"]
    assert api.get(f"/v1/programs/{pid}/members/lookup?customer_id=c2&partner_id={partner}").status == 404
    assert _balance_by(api, shop, email="x@example.com") == 100
    balances = send(api, pid, "email,opening_balance\ny@example.com,100\ny@example.com,999\n")
    assert (balances["imported"], balances["already_imported"], [e["line"] for e in balances["errors"]]) == (1, 0, [3])
    assert _balance_by(api, shop, email="y@example.com") == 100


def test_rows_naming_one_member_by_different_identifiers_are_a_duplicate(api: ApiClient) -> None:
    """An existing member named by her e-mail on one row and her customer id on the next: the same person twice,
    so the later row is a bad row naming the earlier line (as a repeated identifier is), also on a re-run."""
    shop = Shop(api, None)
    pid, partner = shop.pid, shop.partner["partner_id"]
    member = shop.member("c-8")  # c-8@example.com, the partner's customer c-8
    rows = "email,customer_id,opening_balance\nc-8@example.com,,100\n,c-8,100\n"
    first = send(api, pid, rows, partner_id=partner)
    again = send(api, pid, rows, partner_id=partner)
    assert (first["existing_members"], first["already_imported"]) == (1, 0)
    assert (again["existing_members"], again["already_imported"]) == (0, 1)
    for reply in (first, again):
        assert [(e["line"], e["errors"][0]["column"]) for e in reply["errors"]] == [(3, "customer_id")]
        assert "duplicate of line 2" in reply["errors"][0]["errors"][0]["message"]
    assert shop.balance(member["member_id"])["available"] == 100


def test_a_row_is_not_counted_imported_on_a_group_mate_that_never_commits(api: ApiClient,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Line 2 names the member by e-mail (and another member's phone, which the first read misses, so its
    transaction is cancelled and it becomes a bad row); line 3 names her by customer id. Line 3 must not be
    counted already imported on line 2's staged marker: it is reported, and nothing credits her unseen."""
    from chalicelib.services import importer
    from chalicelib.store.members import IdentityItem

    shop = Shop(api, None)
    pid, partner = shop.pid, shop.partner["partner_id"]
    member = shop.member("c-9")  # c-9@example.com, the partner's customer c-9
    send(api, pid, "phone,opening_balance\n+79160000001,0\n")
    other = lookup(api, pid, phone="+79160000001")["member_id"]
    real, calls = importer.batch_get, {"n": 0}

    def first_read_misses_the_phone(wanted: Any, **kw: Any) -> Any:
        calls["n"] += 1
        found = real(wanted, **kw)
        if calls["n"] == 1:
            return {k: v for k, v in found.items() if not (isinstance(v, IdentityItem) and v.member_id == other)}
        return found

    monkeypatch.setattr(importer, "batch_get", first_read_misses_the_phone)
    result = send(api, pid, "email,phone,customer_id,opening_balance\nc-9@example.com,+79160000001,,100\n,,c-9,100\n",
                  partner_id=partner)
    assert (result["existing_members"], result["already_imported"]) == (0, 0)
    assert [e["line"] for e in result["errors"]] == [2, 3]
    assert "another member" in result["errors"][0]["errors"][0]["message"]
    assert "duplicate of line 2" in result["errors"][1]["errors"][0]["message"]
    assert shop.balance(member["member_id"])["available"] == 0


def test_a_person_imported_before_with_another_balance_is_a_bad_row(api: ApiClient) -> None:
    """The same person in a later chunk (or a corrected file) with another opening balance: reported, not dropped."""
    shop = Shop(api, None)
    send(api, shop.pid, "email,opening_balance\nz@example.com,100\n", first_line=2)
    later = send(api, shop.pid, "email,opening_balance\nz@example.com,999\n", first_line=1002)
    assert (later["already_imported"], [e["line"] for e in later["errors"]]) == (0, [1002])
    problem = later["errors"][0]["errors"][0]
    assert problem["column"] == "opening_balance" and "line 2" in problem["message"] and "100" in problem["message"]
    assert _balance_by(api, shop, email="z@example.com") == 100


def test_a_row_whose_identifiers_belong_to_two_members_is_a_bad_row(api: ApiClient) -> None:
    from tests.functional.test_data_rights_erasure import scan_test_table

    shop = Shop(api, None)
    pid, partner = shop.pid, shop.partner["partner_id"]
    a, b = shop.member("ca"), shop.member("cb")  # ca@example.com / customer ca, cb@example.com / customer cb
    before = sorted(json.dumps(i, sort_keys=True) for i in scan_test_table())
    result = send(api, pid, "email,customer_id,opening_balance\nca@example.com,cb,500\n", partner_id=partner)
    assert (result["existing_members"], [e["line"] for e in result["errors"]]) == (0, [2])
    assert "another member" in result["errors"][0]["errors"][0]["message"]
    assert sorted(json.dumps(i, sort_keys=True) for i in scan_test_table()) == before
    assert shop.balance(a["member_id"])["available"] == shop.balance(b["member_id"])["available"] == 0


def test_an_existing_member_gains_the_identifiers_the_row_adds(api: ApiClient) -> None:
    """As an event naming a known member with a new phone would: the phone points at them from then on (and a
    later row naming only the phone is that member, already imported). A customer id other than the one they
    have at that partner is a bad row."""
    shop = Shop(api, None)
    pid, partner = shop.pid, shop.partner["partner_id"]
    member = shop.member("k-1")
    result = send(api, pid, "email,phone,opening_balance\nk-1@example.com,+79161110002,40\n")
    assert (result["existing_members"], result["errors"]) == (1, [])
    assert lookup(api, pid, phone="+79161110002")["member_id"] == member["member_id"]
    assert send(api, pid, "phone,opening_balance\n+79161110002,40\n")["already_imported"] == 1
    assert shop.balance(member["member_id"])["available"] == 40
    second = shop.member("k-2")
    other_id = send(api, pid, "email,customer_id,opening_balance\nk-2@example.com,k-9,5\n", partner_id=partner)
    assert [(e["line"], e["errors"][0]["column"]) for e in other_id["errors"]] == [(2, "customer_id")]
    assert api.get(f"/v1/programs/{pid}/members/lookup?customer_id=k-9&partner_id={partner}").status == 404
    assert shop.balance(second["member_id"])["available"] == 0


# -- erased people -------------------------------------------------------------------------------------


def test_an_import_does_not_enrol_an_erased_person_again(api: ApiClient) -> None:
    """Their erasure left tombstones of their identifiers: a row naming one is a bad row, nothing written; also
    when the erased member was imported (a re-run of the file after the erasure)."""
    from tests.functional.test_data_rights_erasure import scan_test_table

    shop = Shop(api, None)
    pid = shop.pid
    signed_up = shop.member("gone")  # gone@example.com
    send(api, pid, "email,phone,opening_balance\nimported@example.com,+79161110003,70\n")
    imported = lookup(api, pid, email="imported@example.com")
    for member_id in (signed_up["member_id"], imported["member_id"]):
        assert api.post(f"/v1/programs/{pid}/members/{member_id}/erase").status == 200
    before = sorted(json.dumps(i, sort_keys=True) for i in scan_test_table())
    rows = "email,phone,opening_balance\ngone@example.com,,10\n,+79161110003,70\nfresh@example.com,,5\n"
    result = send(api, pid, rows)
    assert (result["imported"], [e["line"] for e in result["errors"]]) == (1, [2, 3])
    assert all("erased" in e["errors"][0]["message"] for e in result["errors"])
    assert api.get(f"/v1/programs/{pid}/members/lookup?email=gone@example.com").status == 404
    assert api.get(f"/v1/programs/{pid}/members/lookup?phone=%2B79161110003").status == 404
    after = sorted(json.dumps(i, sort_keys=True) for i in scan_test_table())
    assert len(after) > len(before)  # fresh@ only
    assert not any("gone@example.com" in i or "+79161110003" in i for i in after)


def _erasure_starts(pid: str, member_id: str) -> None:
    """The first step of an erasure: the profile's ``erased_at`` (pointers and the rest go in later steps)."""
    from chalicelib.store import keys
    from chalicelib.store.members import MemberItem

    MemberItem.get(*keys.member(pid, member_id)).update(actions=[MemberItem.erased_at.set(CLOCK.now())])


@pytest.mark.parametrize("when", ["before the import", "between its read and its write"])
def test_a_member_whose_erasure_has_started_gets_no_opening_balance(api: ApiClient, monkeypatch: pytest.MonkeyPatch,
                                                                     when: str) -> None:
    """Named by the identifiers she has (her profile's condition in the row's transaction) or with a new one (the
    profile update's): a bad row, nothing written, as an erased person is not enrolled again."""
    from chalicelib.services import importer
    from tests.functional.test_data_rights_erasure import scan_test_table

    shop = Shop(api, None)
    pid = shop.pid
    members = [shop.member("e-1"), shop.member("e-2")]  # e-1@example.com, e-2@example.com
    if when == "before the import":
        for m in members:
            _erasure_starts(pid, m["member_id"])
    else:
        real, calls = importer.batch_get, {"n": 0}

        def erasure_starts_after_the_reads(wanted: Any, **kw: Any) -> Any:
            found = real(wanted, **kw)
            calls["n"] += 1
            if calls["n"] == 2:  # the members' profiles read: her erasure starts now
                for m in members:
                    _erasure_starts(pid, m["member_id"])
            return found

        monkeypatch.setattr(importer, "batch_get", erasure_starts_after_the_reads)

    def stored() -> list[str]:  # the table, less the erasure's own mark
        return sorted(json.dumps({k: v for k, v in i.items() if k != "erased_at"}, sort_keys=True)
                      for i in scan_test_table())

    before = stored()
    result = send(api, pid, "email,phone,opening_balance\ne-1@example.com,,250\ne-2@example.com,+79161110077,30\n")
    assert (result["existing_members"], [e["line"] for e in result["errors"]]) == (0, [2, 3])
    assert all("erased" in e["errors"][0]["message"] for e in result["errors"])
    assert stored() == before
    assert [shop.balance(m["member_id"])["available"] for m in members] == [0, 0]


def test_a_row_naming_a_referrer_whose_erasure_started_is_a_bad_row(api: ApiClient) -> None:
    """Her code still resolves until the erasure's pointers step: the row's signup counted on her profile is
    conditioned on her erasure not having started, so the row (raw path, and the model path for a row with a
    birthday) is a bad row and writes nothing; its group-mate lands."""
    from tests.functional.test_data_rights_erasure import scan_test_table

    shop = Shop(api, None)
    pid = shop.pid
    olga = shop.member("olga")
    _erasure_starts(pid, olga["member_id"])

    def stored() -> list[str]:
        return sorted(json.dumps(i, sort_keys=True) for i in scan_test_table())

    before = stored()
    result = send(api, pid, "email,birthday,opening_balance,referrer_code\n"
                            f"kim@example.com,,10,{olga['code']}\nlev@example.com,1990-01-02,20,{olga['code']}\n")
    assert (result["imported"], [e["line"] for e in result["errors"]]) == (0, [2, 3]), result
    assert {(p["column"], p["message"]) for e in result["errors"] for p in e["errors"]} == {
        ("referrer_code", "the referrer's data is being erased: an import attaches no friend to her")}
    assert stored() == before
    [her] = [i for i in scan_test_table() if i.get("member_id", {}).get("S") == olga["member_id"]
             and i["SK"]["S"] == "PROFILE"]
    assert int(her.get("referral_signups", {}).get("N", "0")) == 0
    # With a row that names nobody: it is imported, the bad row is taken out of the group.
    mixed = send(api, pid, f"email,opening_balance,referrer_code\nmia@example.com,5,\nkim@example.com,10,{olga['code']}\n")
    assert (mixed["imported"], [e["line"] for e in mixed["errors"]]) == (1, [3]), mixed
    assert not [i for i in scan_test_table() if i.get("referrer_id", {}).get("S") == olga["member_id"]]


def test_an_erased_complainer_enrolled_again_by_an_import_that_allows_it_starts_suppressed(api: ApiClient) -> None:
    from chalicelib.domain.identity import email_match_key, identity_hash
    from chalicelib.notify import feedback
    from chalicelib.store import keys
    from chalicelib.store.notify import NotifyStateItem

    shop = Shop(api, None)
    pid = shop.pid
    old = shop.member("olga")
    assert feedback.handle(json.dumps({
        "notificationType": "Complaint", "complaint": {"complainedRecipients": [{"emailAddress": "olga@example.com"}]},
        "mail": {"tags": {"program_id": [pid], "member_id": [old["member_id"]]}}})) == {"suppressed": 1}
    assert api.post(f"/v1/programs/{pid}/members/{old['member_id']}/erase").status == 200
    result = send(api, pid, "email,opening_balance\nolga@example.com,30\n", include_erased=True)
    assert (result["imported"], result["errors"]) == (1, [])
    new = lookup(api, pid, email="olga@example.com")
    assert new["member_id"] != old["member_id"] and shop.balance(new["member_id"])["available"] == 30
    state = NotifyStateItem.get(*keys.notify_state(pid, new["member_id"]))
    assert state.suppressed == [identity_hash(pid, "email", email_match_key("olga@example.com"))]
