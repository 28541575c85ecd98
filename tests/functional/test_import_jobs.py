"""Chunked member imports over the API: create, upload numbered chunks, read the status."""

from __future__ import annotations

from typing import Any

import pytest

from tests.functional.test_ledger_support import Shop, check_invariants, utc
from tests.support import CLOCK, ApiClient

HEADER = "email,customer_id,opening_balance,referrer_customer_id\n"
CHUNK_1 = HEADER + "anna@example.com,c-1,1000,\nboris@example.com,c-2,300,c-1\n"
CHUNK_2 = HEADER + "not-an-email,c-3,5,\ncarl@example.com,c-4,70,c-2\ndora@example.com,c-5,1,c-404\n"


@pytest.fixture(autouse=True)
def frozen_clock(api: ApiClient) -> None:
    CLOCK.set(utc("2026-01-15T12:00:00Z"))


def start(api: ApiClient, shop: Shop, **fields: Any) -> dict[str, Any]:
    reply = api.post(f"/v1/programs/{shop.pid}/imports", {"partner_id": shop.partner["partner_id"], **fields})
    assert reply.status == 201, reply.body
    return reply.body  # type: ignore[no-any-return]


def put(api: ApiClient, shop: Shop, job: dict[str, Any], n: Any, text: str, first_line: int = 2, **kw: Any) -> Any:
    return api.put(f"/v1/programs/{shop.pid}/imports/{job['import_id']}/chunks/{n}",
                   {"csv": text, "first_line": first_line}, **kw)


def test_chunks_import_members_once_and_the_status_adds_them_up(api: ApiClient) -> None:
    shop = Shop(api, "uds_3_level")
    job = start(api, shop, expected_chunks=2)
    assert (job["status"], job["chunks"], job["rows"]) == ("receiving", 0, 0)

    first = put(api, shop, job, 1, CHUNK_1)
    assert first.status == 200, first.body
    assert (first.body["chunk"], first.body["replayed"], first.body["imported"], first.body["bad_rows"]) == (
        1, False, 2, 0)
    second = put(api, shop, job, 2, CHUNK_2, first_line=4).body
    assert (second["imported"], second["bad_rows"], second["opening_points"]) == (1, 2, 70)
    assert [e["line"] for e in second["errors"]] == [4, 6]  # file lines, from first_line

    status = api.get(f"/v1/programs/{shop.pid}/imports/{job['import_id']}").body
    assert (status["status"], status["chunks"], status["rows"], status["imported"], status["bad_rows"]) == (
        "completed", 2, 5, 3, 2)
    assert status["opening_points"] == 1370 and [e["line"] for e in status["errors"]] == [4, 6]

    # The same chunk again: its first answer, nothing written twice, totals unchanged.
    again = put(api, shop, job, 1, CHUNK_1).body
    assert again["replayed"] is True and again["imported"] == 2
    assert api.get(f"/v1/programs/{shop.pid}/imports/{job['import_id']}").body["rows"] == 5
    # The same rows in a new chunk number are recognised row by row.
    third = put(api, shop, job, 3, CHUNK_1).body
    assert (third["replayed"], third["imported"], third["already_imported"]) == (False, 0, 2)
    anna = api.get(f"/v1/programs/{shop.pid}/members/lookup?email=anna@example.com").body
    boris = api.get(f"/v1/programs/{shop.pid}/members/lookup?email=boris@example.com").body
    assert boris["referrer_id"] == anna["member_id"]
    assert shop.balance(anna["member_id"])["available"] == 1000
    for member in (anna, boris):
        check_invariants(shop, member["member_id"])


def test_a_chunk_number_sent_with_other_content_is_refused(api: ApiClient) -> None:
    shop = Shop(api, "uds_3_level")
    job = start(api, shop)
    assert put(api, shop, job, 1, CHUNK_1).status == 200
    conflict = put(api, shop, job, 1, CHUNK_2)
    assert (conflict.status, conflict.error_code) == (409, "chunk_conflict")
    assert api.get(f"/v1/programs/{shop.pid}/imports/{job['import_id']}").body["chunks"] == 1


@pytest.mark.parametrize("number", ["0", "10001", "-1", "1.5", "abc", "١"])
def test_chunk_numbers_outside_1_to_10000_are_refused(api: ApiClient, number: str) -> None:
    shop = Shop(api, "uds_3_level")
    job = start(api, shop)
    reply = put(api, shop, job, number, CHUNK_1)
    assert (reply.status, reply.error_code) == (422, "invalid_chunk_number")


def test_imports_are_the_operators_and_per_program(api: ApiClient) -> None:
    shop = Shop(api, "uds_3_level")
    other = Shop(api, "uds_3_level")
    job = start(api, shop)
    partner_key = shop.partner["api_key"]
    assert api.post(f"/v1/programs/{shop.pid}/imports", {}, key=partner_key).status == 403
    assert put(api, shop, job, 1, CHUNK_1, key=partner_key).status == 403
    assert api.get(f"/v1/programs/{shop.pid}/imports/{job['import_id']}", key=partner_key).status == 403
    # Another program's import id is unknown here.
    assert api.get(f"/v1/programs/{other.pid}/imports/{job['import_id']}").status == 404
    assert put(api, other, job, 1, CHUNK_1).status == 404
    assert api.get(f"/v1/programs/{shop.pid}/imports/imp_nosuch").status == 404
    unknown_partner = api.post(f"/v1/programs/{shop.pid}/imports", {"partner_id": other.partner["partner_id"]})
    assert unknown_partner.status == 404


def test_chunk_bodies_are_bounded(api: ApiClient) -> None:
    shop = Shop(api, "uds_3_level")
    job = start(api, shop)
    assert put(api, shop, job, 1, HEADER + "x" * 200_001).status in (413, 422)
    many = HEADER + "".join(f"m{i}@example.com,c-{i},1,\n" for i in range(1001))
    reply = put(api, shop, job, 1, many)
    assert (reply.status, reply.error_code) == (422, "chunk_too_large")
    assert api.put(f"/v1/programs/{shop.pid}/imports/{job['import_id']}/chunks/1",
                   {"csv": CHUNK_1, "partner_id": "ptn_x"}).status == 422  # no other fields


def test_a_chunk_number_sent_again_with_other_content_writes_nothing(api: ApiClient) -> None:
    shop = Shop(api, "uds_3_level")
    job = start(api, shop)
    assert put(api, shop, job, 1, CHUNK_1).status == 200
    conflict = put(api, shop, job, 1, HEADER + "carl@example.com,c-4,70,\n")
    assert (conflict.status, conflict.error_code) == (409, "chunk_conflict")
    assert api.get(f"/v1/programs/{shop.pid}/members/lookup?email=carl@example.com").status == 404
    status = api.get(f"/v1/programs/{shop.pid}/imports/{job['import_id']}").body
    assert (status["chunks"], status["rows"], status["imported"]) == (1, 2, 2)


def first_attempt_raises(api: ApiClient, shop: Shop, job: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
                         failure: str) -> None:
    """Chunk 1 (``CHUNK_1``) sent once while the import itself raises ``failure`` after the claim: the request
    ends in a 500 (which the route contract refuses as undeclared); the import works again afterwards."""
    from chalicelib.services import import_jobs

    real = import_jobs.importer.import_chunk

    def raises(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(failure)

    monkeypatch.setattr(import_jobs.importer, "import_chunk", raises)
    with pytest.raises(AssertionError, match="500"):
        put(api, shop, job, 1, CHUNK_1)
    monkeypatch.setattr(import_jobs.importer, "import_chunk", real)


def test_a_chunk_that_stopped_after_its_claim_is_imported_when_sent_again_and_keeps_its_content(
        api: ApiClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """The process stops between claiming chunk 1 and writing its rows (nothing of the request runs after: its
    claim is not released): the same content sent again imports it once the lease is over, other content for
    that number is refused before any row is written."""
    from chalicelib.services import import_jobs

    shop = Shop(api, "uds_3_level")
    job = start(api, shop)
    monkeypatch.setattr(import_jobs, "_release", lambda *args: None)  # a stopped process lets nothing go
    first_attempt_raises(api, shop, job, monkeypatch, "the process stopped")
    conflict = put(api, shop, job, 1, CHUNK_2)
    assert (conflict.status, conflict.error_code) == (409, "chunk_conflict")
    assert api.get(f"/v1/programs/{shop.pid}/members/lookup?email=carl@example.com").status == 404
    CLOCK.advance(seconds=20)
    busy = put(api, shop, job, 1, CHUNK_1)  # within the claim's lease: maybe its first request is still at it
    assert (busy.status, busy.error_code) == (503, "import_busy")
    left = import_jobs.CLAIM_LEASE_SECONDS - 20  # when to send it again: the lease's rest
    assert (busy.headers["retry-after"], busy.body["error"]["details"]["retry_after_seconds"]) == (str(left), left)
    CLOCK.advance(seconds=left)
    again = put(api, shop, job, 1, CHUNK_1)
    assert again.status == 200 and (again.body["replayed"], again.body["imported"]) == (False, 2)
    assert api.get(f"/v1/programs/{shop.pid}/imports/{job['import_id']}").body["imported"] == 2


def test_a_chunk_whose_request_failed_is_imported_at_once_when_sent_again(
        api: ApiClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """A request that fails after its claim (an exception) lets the claim go: the same content sent again right
    away is imported, not busy for the rest of the lease; other content for the number is still refused."""
    shop = Shop(api, "uds_3_level")
    job = start(api, shop)
    first_attempt_raises(api, shop, job, monkeypatch, "DynamoDB went away")
    conflict = put(api, shop, job, 1, CHUNK_2)
    assert (conflict.status, conflict.error_code) == (409, "chunk_conflict")
    again = put(api, shop, job, 1, CHUNK_1)  # no clock moved: the lease is not what frees it
    assert again.status == 200 and (again.body["replayed"], again.body["imported"]) == (False, 2)
    replay = put(api, shop, job, 1, CHUNK_1)
    assert replay.status == 200 and (replay.body["replayed"], replay.body["imported"]) == (True, 2)
    status = api.get(f"/v1/programs/{shop.pid}/imports/{job['import_id']}").body
    assert (status["chunks"], status["imported"]) == (1, 2)


def test_a_failed_request_does_not_release_a_claim_taken_over_meanwhile(
        api: ApiClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first request is slow past the lease; the chunk sent again takes the claim over and records it; then
    the first one fails: the claim is no longer its own, so its failure changes nothing."""
    from chalicelib.services import import_jobs
    from chalicelib.store.data_rights import get_import_chunk

    shop = Shop(api, "uds_3_level")
    job = start(api, shop)
    real = import_jobs.importer.import_chunk
    taken_over: list[Any] = []

    def slow_then_fails(*args: Any, **kwargs: Any) -> Any:
        if not taken_over:
            CLOCK.advance(seconds=import_jobs.CLAIM_LEASE_SECONDS)
            monkeypatch.setattr(import_jobs.importer, "import_chunk", real)
            taken_over.append(put(api, shop, job, 1, CHUNK_1))
        raise RuntimeError("the first request's DynamoDB call failed")

    monkeypatch.setattr(import_jobs.importer, "import_chunk", slow_then_fails)
    with pytest.raises(AssertionError, match="500"):
        put(api, shop, job, 1, CHUNK_1)
    assert taken_over[0].status == 200 and taken_over[0].body["imported"] == 2
    chunk = get_import_chunk(shop.pid, job["import_id"], 1)
    assert chunk is not None and chunk.released_at is None and chunk.result is not None
    replay = put(api, shop, job, 1, CHUNK_1)
    assert replay.status == 200 and (replay.body["replayed"], replay.body["imported"]) == (True, 2)


def test_an_import_may_allow_erased_people_back(api: ApiClient) -> None:
    shop = Shop(api, "uds_3_level")
    gone = shop.member("gone")
    assert api.post(f"/v1/programs/{shop.pid}/members/{gone['member_id']}/erase").status == 200
    refused, allowed = start(api, shop), start(api, shop, include_erased=True)
    assert (refused["include_erased"], allowed["include_erased"]) == (False, True)
    text = HEADER + "gone@example.com,gone-2,10,\n"
    assert put(api, shop, refused, 1, text).body["bad_rows"] == 1
    assert put(api, shop, allowed, 1, text).body["imported"] == 1


def test_the_same_chunk_sent_twice_at_once_counts_once(api: ApiClient) -> None:
    from tests.functional.test_ledger_support import parallel

    shop = Shop(api, "uds_3_level")
    job = start(api, shop)
    replies = parallel([lambda: put(api, shop, job, 1, CHUNK_1), lambda: put(api, shop, job, 1, CHUNK_1)])
    # One writes it; the other finds it recorded (its answer again) or still being written (busy: send it again).
    assert sorted(r.status for r in replies) in ([200, 200], [200, 503])
    assert {(r.body["rows"], r.body["imported"], r.body["already_imported"]) for r in replies if r.status == 200} == {
        (2, 2, 0)}
    status = api.get(f"/v1/programs/{shop.pid}/imports/{job['import_id']}").body
    assert (status["chunks"], status["rows"], status["imported"]) == (1, 2, 2)
    anna = api.get(f"/v1/programs/{shop.pid}/members/lookup?email=anna@example.com").body
    assert shop.balance(anna["member_id"])["available"] == 1000
