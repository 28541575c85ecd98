"""Data rights and operator data tools: member erasure and export, member import, ledger CSV export.

All operator-only (see docs/data-rights.md for why partners get none of them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chalice import Response

from chalicelib.api import response_schemas as rs
from chalicelib.api.http import ApiBlueprint, ApiRequest, decode_cursor, encode_cursor, lazy_module, respond

if TYPE_CHECKING:
    from chalicelib.services import erasure, import_jobs, importer, ledger_export, member_export
else:  # Imported when one of these routes first runs (cold start: bench/cold_start.py).
    erasure = lazy_module("chalicelib.services.erasure")
    import_jobs = lazy_module("chalicelib.services.import_jobs")
    importer = lazy_module("chalicelib.services.importer")
    ledger_export = lazy_module("chalicelib.services.ledger_export")
    member_export = lazy_module("chalicelib.services.member_export")

data_rights = ApiBlueprint(__name__)
TAG = "Data rights"
BASE = "/v1/programs/{program_id}"


@data_rights.endpoint(
    f"{BASE}/members/{{member_id}}/erase", "POST", tag=TAG, auth="operator", response_schema=rs.ERASURE,
    responses={202: "Erasure in progress (`status: in_progress`): call again to resume"},
    summary="Erase a member's personal data (operator); ledger, balances and counters stay",
    description="Removes the profile's name, e-mail, phone, birthday, customer ids and push endpoints, every "
                "identifier pointer, code and link (the code stops resolving) and the personal fields of related "
                "records, in bounded transactions. Answers 200 with `status: erased` when done, or 202 with "
                "`status: in_progress` when the call's budget ran out (call again: it resumes). Idempotent.",
)
def erase_member(req: ApiRequest, program_id: str, member_id: str) -> Any:
    result = erasure.erase(req.ports, req.principal, program_id, member_id)
    return respond(result, 200 if result["status"] == "erased" else 202)


@data_rights.endpoint(
    f"{BASE}/erasure-requests", "GET", tag=TAG, auth="operator", response_schema=rs.ERASURE_REQUESTS,
    query_params=(("limit", "integer"), ("cursor", "string")),
    summary="Members' own erasure requests waiting for the operator (oldest first, paged)",
    description="A member asks for erasure from their wallet page (`POST /w/{token}/erasure-request`); the request "
                "waits here (`status: requested`, `requested_by: member`) until the operator confirms it with "
                "`POST …/members/{member_id}/erase`, which runs the erasure and takes it off this list.",
)
def list_erasure_requests(req: ApiRequest, program_id: str) -> Any:
    from chalicelib.store import keys

    cursor = decode_cursor(req.query("cursor"), ("GSI1PK", keys.gsi1_erasure_requests_partition(program_id)))
    result = erasure.pending_requests(req.ports, program_id, req.int_query("limit", 50, 1, 100), cursor)
    return {**result, "next_cursor": encode_cursor(result["next_cursor"])}


@data_rights.endpoint(
    f"{BASE}/members/{{member_id}}/export", "GET", tag=TAG, auth="operator", response_schema=rs.MEMBER_EXPORT,
    query_params=(("limit", "integer"), ("cursor", "string")),
    summary="Everything stored about a member, as JSON (operator; paged)",
    description="The first page carries `summary` (profile, balance, codes and clicks, erasure record); every page "
                "carries up to `limit` stored items (ledger entries, attribution records, counters...). Follow "
                "`next_cursor` until it is null.",
)
def export_member(req: ApiRequest, program_id: str, member_id: str) -> Any:
    return member_export.export(req.ports, req.principal, program_id, member_id, req.int_query("limit", 100, 1, 500),
                                req.query("cursor"))


@data_rights.endpoint(
    f"{BASE}/imports/members", "POST", tag=TAG, auth="operator", request_schema=lambda: importer.CHUNK_SCHEMA,
    response_schema=rs.IMPORT_RESULT,
    request_example={"csv": "email,phone,customer_id,opening_balance,referrer_code\nanna@example.com,,c-1,500,\n",
                     "first_line": 2, "dry_run": False},
    summary="Import members from a CSV chunk (operator): identifiers, opening balances, referrers",
    description="Send the file in chunks of up to 1000 rows, each starting with the header row, with `first_line` "
                "the file line of the chunk's first row (`python3 infra/dev.py import` does this). Each row is written "
                "whole or not at all; re-sending a row changes nothing. Bad rows are listed with their line numbers "
                "in `errors`; `dry_run` checks without writing.",
)
def import_members(req: ApiRequest, program_id: str) -> Any:
    return importer.import_chunk(req.principal, program_id, req.body)


@data_rights.endpoint(
    f"{BASE}/imports", "POST", tag=TAG, auth="operator", request_schema=lambda: import_jobs.CREATE_SCHEMA,
    success_status=201, response_schema=rs.IMPORT_JOB, request_example={"partner_id": "ptn_…", "expected_chunks": 100},
    summary="Start a chunked member import (operator)",
    description="Creates an import; upload the file with `PUT …/imports/{import_id}/chunks/{n}` (n = 1, 2, …) and "
                "follow it with `GET …/imports/{import_id}`. `partner_id` names whose customer ids the file holds; "
                "with `expected_chunks` the import's status reads `completed` once that many chunks arrived.",
)
def create_import(req: ApiRequest, program_id: str) -> Any:
    return respond(import_jobs.create(req.principal, program_id, req.body), 201)


@data_rights.endpoint(
    f"{BASE}/imports/{{import_id}}/chunks/{{chunk}}", "PUT", tag=TAG, auth="operator",
    request_schema=lambda: import_jobs.CHUNK_SCHEMA, response_schema=rs.IMPORT_CHUNK,
    responses={409: "This chunk number was already received with other content (`chunk_conflict`)",
               503: "Too many chunks of this import at once, or this chunk is still being written by an "
                    "earlier request (`import_busy`): send it again (for a chunk being written: after "
                    "`Retry-After` seconds, also in `details.retry_after_seconds`)"},
    request_example={"csv": "email,phone,customer_id,opening_balance,referrer_code\nanna@example.com,,c-1,500,\n",
                     "first_line": 2},
    summary="Upload chunk n of an import (operator): the header row and up to 1000 rows",
    description="Chunk numbers run from 1 to 10000; chunks may arrive in any order and at once. Each row is written "
                "whole or not at all, and a row already imported is skipped, so sending a chunk again changes "
                "nothing: the same chunk with the same content answers its first result (`replayed: true`). Bad "
                "rows are listed in `errors` with their file line numbers (`first_line`: where the chunk starts in "
                "the file, default 2). At most 200,000 characters of CSV per chunk.",
)
def put_import_chunk(req: ApiRequest, program_id: str, import_id: str, chunk: str) -> Any:
    return import_jobs.put_chunk(req.principal, program_id, import_id, chunk, req.body)


@data_rights.endpoint(
    f"{BASE}/imports/{{import_id}}", "GET", tag=TAG, auth="operator", response_schema=rs.IMPORT_JOB,
    summary="An import's status (operator): chunks received, totals, the first bad rows",
    description="Totals over the chunks received so far and the first 100 bad rows with their file line numbers "
                "(`errors_truncated` when there were more: each chunk's answer lists all of its own).",
)
def get_import(req: ApiRequest, program_id: str, import_id: str) -> Any:
    return import_jobs.status(req.principal, program_id, import_id)


@data_rights.endpoint(
    f"{BASE}/ledger/export", "GET", tag=TAG, auth="operator", response_schema=rs.LEDGER_CSV,
    response_content_types=("text/csv",),
    query_params=(("from", "string"), ("to", "string"), ("limit", "integer"), ("cursor", "string")),
    summary="The program's ledger for a period as CSV (operator; paged)",
    description="Entries booked (`created_at`, UTC) from `from` to `to` (dates, inclusive, at most 366 days), in "
                "booking order. `text/csv`; the first page starts with the header row. While more remains, the "
                "`X-Next-Cursor` header carries the cursor for the next page (`python3 infra/dev.py export-ledger` "
                "follows it).",
)
def export_ledger(req: ApiRequest, program_id: str) -> Any:
    text, cursor = ledger_export.export_page(req.ports, req.principal, program_id, req.query("from"), req.query("to"),
                                             req.int_query("limit", 1000, 1, 5000), req.query("cursor"))
    headers: dict[str, str | list[str]] = {"Content-Type": "text/csv; charset=utf-8"}
    if cursor:
        headers["X-Next-Cursor"] = cursor
    return Response(body=text, status_code=200, headers=headers)
