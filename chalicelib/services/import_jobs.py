"""Chunked member imports: an operator creates an import, uploads the file in numbered chunks, reads its status.

    POST /v1/programs/{program_id}/imports                      → {"import_id": "imp_…", …}
    PUT  /v1/programs/{program_id}/imports/{import_id}/chunks/{n} {"csv": "header\\nrow…", "first_line": 2}
    GET  /v1/programs/{program_id}/imports/{import_id}           → totals, status, the first bad rows

Each chunk is the header row and up to 1000 rows (at most ``MAX_CSV_CHARS``), written by
:func:`chalicelib.services.importer.import_chunk`: each row whole or not at all, a row already
imported skipped, so sending a chunk again changes no member, balance or ledger entry. A chunk number
is **claimed** first: its record is created with the digest of its content (``attribute_not_exists``)
before any of its rows is written, so the same number with other content is refused (``409``) with
nothing written, whether the first one finished or not. Then the rows are written, and the chunk's
result and the import's totals change in one transaction, conditioned on the chunk having no result
yet and on the import's ``revision``: totals count each chunk number once, concurrent chunks never
lose a count, and a chunk sent again with the same content answers its first result
(``replayed: true``). Bad rows come back with their file line numbers (``first_line`` says where the
chunk starts in the file) in the chunk's answer; the import keeps the first :data:`KEPT_ERRORS` of
them for the status route.

While a claim has no result for less than :data:`CLAIM_LEASE_SECONDS`, the same chunk sent again is
``503 import_busy`` with the seconds left (``Retry-After``; its first request may still be writing it).
A request that fails after its claim releases it (``released_at``, conditioned on the claim still being
its own), so the same chunk sent again takes it over at once. Limit: if the process stops after the
claim, the same chunk sent again after the lease takes the claim over, writes its rows (the ones
already in count as ``already_imported``) and records it.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from chalicelib.domain import clock
from chalicelib.domain.errors import Conflict, NotFound, ServiceUnavailable, ValidationFailed
from chalicelib.domain.ids import new_id
from chalicelib.logs import get_logger
from chalicelib.services import importer, ports
from chalicelib.services.auth import Principal
from chalicelib.store import keys, tenancy_repo
from chalicelib.store.data_rights import ImportChunkItem, ImportJobItem, get_import_chunk, get_import_job
from chalicelib.store.transact import Transaction

log = get_logger("sarafan.import")

#: Chunk numbers run from 1 to this (1000 rows each: ten million rows per import).
MAX_CHUNKS = 10_000
#: A chunk's CSV text (the API takes bodies up to 256 KiB).
MAX_CSV_CHARS = 200_000
#: Bad rows an import keeps for its status (every chunk's answer lists all of its own).
KEPT_ERRORS = 100
#: A claimed chunk with no result is someone's work in progress for this long (the API's Lambda stops after 15 s,
#: API Gateway answers after 29 s); after it, the claim's request is gone and the chunk sent again takes it over.
CLAIM_LEASE_SECONDS = 60
TOTALS = ("rows", "imported", "existing_members", "already_imported", "opening_points", "bad_rows")
_ATTEMPTS = 8

CREATE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "partner_id": {"type": "string", "minLength": 1, "maxLength": 64,
                       "description": "Whose customer ids the file holds (customer_id, referrer_customer_id columns)"},
        "expected_chunks": {"type": "integer", "minimum": 1, "maximum": MAX_CHUNKS,
                            "description": "How many chunks the file has: the import reads `completed` once all arrived"},
        "include_erased": {"type": "boolean", "description": "Enrol again people whose data was erased here "
                                                             "(default false: such a row is a bad row)"},
    },
}
CHUNK_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["csv"],
    "properties": {
        "csv": {"type": "string", "minLength": 1, "maxLength": MAX_CSV_CHARS,
                "description": "The header row, then up to 1000 rows of the file"},
        "first_line": {"type": "integer", "minimum": 2, "maximum": 100_000_000,
                       "description": "File line number of the chunk's first row (default 2), for error line numbers"},
    },
}


class _Changed(Exception):
    """The import's revision moved (another chunk landed meanwhile): read it again."""


class _ChunkTaken(Exception):
    """This chunk number was claimed (or recorded) meanwhile."""


def create(principal: Principal, program_id: str, data: Mapping[str, Any]) -> dict[str, Any]:
    """``data``: valid :data:`CREATE_SCHEMA`; the caller is the operator (the route's contract)."""
    tenancy_repo.get_program(program_id)
    partner_id = data.get("partner_id")
    if partner_id:
        tenancy_repo.get_partner(program_id, partner_id)
    now = ports.current().clock.now()
    import_id = new_id("imp")
    pk, sk = keys.import_job(program_id, import_id)
    job = ImportJobItem(PK=pk, SK=sk, program_id=program_id, import_id=import_id, partner_id=partner_id,
                        expected_chunks=data.get("expected_chunks"), include_erased=bool(data.get("include_erased")),
                        created_at=now, updated_at=now,
                        revision=0, totals=dict.fromkeys(TOTALS, 0), errors=[])
    tx = Transaction()
    tx.create(job, on_fail=Conflict("Import id collision; try again", code="conflict"))
    tx.commit()
    return view(job)


def status(principal: Principal, program_id: str, import_id: str) -> dict[str, Any]:
    return view(_job(program_id, import_id))


def put_chunk(principal: Principal, program_id: str, import_id: str, number_text: str,
              data: Mapping[str, Any]) -> dict[str, Any]:
    """Import chunk ``number_text`` (``1``…:data:`MAX_CHUNKS`) of the import; ``data``: valid :data:`CHUNK_SCHEMA`."""
    number = chunk_number(number_text)
    job = _job(program_id, import_id)
    first_line = int(data.get("first_line", 2))
    digest = hashlib.sha256(json.dumps([data["csv"], first_line]).encode()).hexdigest()
    recorded = _chunk(program_id, import_id, number)
    claimed_at = None
    if recorded is None:
        try:
            claimed_at = _claim(job, number, digest)
        except _ChunkTaken:
            recorded = _chunk(program_id, import_id, number)
    if recorded is not None:
        if recorded.digest != digest:
            raise Conflict(f"Chunk {number} of this import was already received with other content",
                           code="chunk_conflict", details={"chunk": number})
        if recorded.result is not None:
            return _replay(recorded, import_id, number)
        # Claimed with this content, not finished: in flight (busy: send it again), or its request stopped (past
        # the lease) or failed (released): take the claim over (one taker wins), write the rows (idempotent), record.
        claimed_at = _take_over(recorded, number)
    try:
        return _import_and_record(principal, job, number, digest, first_line, data["csv"])
    except BaseException:
        # This request fails: its claim is let go, so the same chunk sent again is imported at once rather than
        # busy for the rest of the lease (only a stopped process leaves a claim to the lease).
        _release(job, number, digest, claimed_at)
        raise


def _import_and_record(principal: Principal, job: ImportJobItem, number: int, digest: str, first_line: int,
                       text: str) -> dict[str, Any]:
    program_id, import_id = job.program_id, job.import_id
    payload: dict[str, Any] = {"csv": text, "first_line": first_line, "dry_run": False,
                               "include_erased": bool(job.include_erased)}
    if job.partner_id:
        payload["partner_id"] = job.partner_id
    result = importer.import_chunk(principal, program_id, payload)
    result.pop("dry_run", None)
    result["bad_rows"] = len(result["errors"])
    for _attempt in range(_ATTEMPTS):
        try:
            _record(job, number, digest, result)
            break
        except _ChunkTaken:
            recorded = _chunk(program_id, import_id, number)
            if recorded is None or recorded.result is None:  # pragma: no cover - only its own request lets it go
                raise ServiceUnavailable("The chunk could not be recorded; send it again",
                                         code="import_busy") from None
            return _replay(recorded, import_id, number)
        except _Changed:
            job = _job(program_id, import_id)
    else:
        raise ServiceUnavailable("Too many chunks at once for this import; send this one again",
                                 code="import_busy")
    return {"import_id": import_id, "chunk": number, "replayed": False, **result}


def chunk_number(text: str) -> int:
    if not text.isascii() or not text.isdigit() or len(text) > 5 or not 1 <= int(text) <= MAX_CHUNKS:
        raise ValidationFailed(f"The chunk number must be a whole number from 1 to {MAX_CHUNKS}",
                               code="invalid_chunk_number", details={"chunk": text[:16], "max": MAX_CHUNKS})
    return int(text)


def _claim(job: ImportJobItem, number: int, digest: str) -> datetime:
    """The chunk number's record with the content's digest and no result, before any row is written. Returns
    the claim's ``received_at`` (which names this request's claim)."""
    pk, sk = keys.import_chunk(job.program_id, job.import_id, number)
    now = ports.current().clock.now()
    tx = Transaction()
    tx.create(ImportChunkItem(PK=pk, SK=sk, program_id=job.program_id, import_id=job.import_id, number=number,
                              digest=digest, received_at=now), on_fail=_ChunkTaken())
    tx.commit()
    return now


def _take_over(recorded: ImportChunkItem, number: int) -> datetime:
    """The claim, once its request is gone: released by it, or its lease over. Returns the new ``received_at``.
    Busy otherwise: ``503 import_busy`` with the seconds left of the lease (``Retry-After``,
    ``details.retry_after_seconds``)."""
    now = ports.current().clock.now()
    held = (now - recorded.received_at).total_seconds()
    left = max(1, math.ceil(CLAIM_LEASE_SECONDS - held))
    busy = ServiceUnavailable(f"Chunk {number} of this import is being imported; send it again in {left} s",
                              code="import_busy", details={"chunk": number, "retry_after_seconds": left},
                              retry_after_seconds=left)
    if recorded.released_at is None and held < CLAIM_LEASE_SECONDS:
        raise busy
    tx = Transaction()
    tx.update(ImportChunkItem(PK=recorded.PK, SK=recorded.SK),
              [ImportChunkItem.received_at.set(now), ImportChunkItem.released_at.remove()],
              ImportChunkItem.received_at == recorded.received_at, on_fail=busy)
    tx.commit()
    return now


def _release(job: ImportJobItem, number: int, digest: str, claimed_at: datetime | None) -> None:
    """Let this request's claim go (its ``released_at``): conditioned on it still being this request's (no result,
    the ``received_at`` it set: not taken over meanwhile). The digest stays, so other content for the number is
    still refused. Best effort: the request's own exception is what the caller sees."""
    if claimed_at is None:  # pragma: no cover - every path that writes rows holds a claim
        return
    pk, sk = keys.import_chunk(job.program_id, job.import_id, number)
    tx = Transaction()
    tx.update(ImportChunkItem(PK=pk, SK=sk), [ImportChunkItem.released_at.set(ports.current().clock.now())],
              ImportChunkItem.PK.exists() & (ImportChunkItem.digest == digest)
              & ImportChunkItem.result.does_not_exist() & (ImportChunkItem.received_at == claimed_at),
              on_fail=_ChunkTaken())
    try:
        tx.commit()
    except _ChunkTaken:
        pass  # taken over (its lease was over) or recorded meanwhile: not this request's claim any more
    except Exception as exc:  # the failure on its way up is the one to report
        log.warning("import chunk claim not released", extra={"error": type(exc).__name__})


def _record(job: ImportJobItem, number: int, digest: str, result: dict[str, Any]) -> None:
    now = ports.current().clock.now()
    totals = {name: int((job.totals or {}).get(name, 0)) + int(result.get(name, 0)) for name in TOTALS}
    errors = list(job.errors or [])
    if len(errors) < KEPT_ERRORS:
        errors += result["errors"][: KEPT_ERRORS - len(errors)]
    pk, sk = keys.import_chunk(job.program_id, job.import_id, number)
    tx = Transaction()
    tx.update(ImportChunkItem(PK=pk, SK=sk), [ImportChunkItem.result.set(result), ImportChunkItem.received_at.set(now)],
              ImportChunkItem.PK.exists() & (ImportChunkItem.digest == digest) & ImportChunkItem.result.does_not_exist(),
              on_fail=_ChunkTaken())
    revision = int(job.revision or 0)
    tx.update(ImportJobItem(PK=job.PK, SK=job.SK),
              [ImportJobItem.revision.set(revision + 1), ImportJobItem.totals.set(totals),
               ImportJobItem.errors.set(errors), ImportJobItem.updated_at.set(now)],
              ImportJobItem.revision == revision, on_fail=_Changed())
    tx.commit()


def _replay(recorded: ImportChunkItem, import_id: str, number: int) -> dict[str, Any]:
    return {"import_id": import_id, "chunk": number, "replayed": True, **dict(recorded.result or {})}


def _job(program_id: str, import_id: str) -> ImportJobItem:
    tenancy_repo.get_program(program_id)
    item = get_import_job(program_id, import_id)
    if item is None:
        raise NotFound("Import not found", details={"import_id": import_id[:64]})
    return item


def _chunk(program_id: str, import_id: str, number: int) -> ImportChunkItem | None:
    return get_import_chunk(program_id, import_id, number)


def view(job: ImportJobItem) -> dict[str, Any]:
    chunks = int(job.revision or 0)
    expected = int(job.expected_chunks) if job.expected_chunks is not None else None
    return {
        "import_id": job.import_id, "program_id": job.program_id, "partner_id": job.partner_id,
        "include_erased": bool(job.include_erased),
        "status": "completed" if expected is not None and chunks >= expected else "receiving",
        "expected_chunks": expected, "chunks": chunks,
        **{name: int((job.totals or {}).get(name, 0)) for name in TOTALS},
        "errors": list(job.errors or []), "errors_truncated": int((job.totals or {}).get("bad_rows", 0)) > len(
            job.errors or []),
        "created_at": clock.iso(job.created_at), "updated_at": clock.iso(job.updated_at),
    }
