"""Items of the data-rights features: erasure audit records, identifier tombstones, import markers.

None of them holds personal data: identifiers appear only as the salted hashes that the
identity pointers already use as keys (``chalicelib.domain.identity.identity_hash``).
"""

from __future__ import annotations

from pynamodb.attributes import BooleanAttribute, JSONAttribute, ListAttribute, NumberAttribute, UnicodeAttribute
from pynamodb.exceptions import DoesNotExist

#: Erasure statuses (defined in ``domain.records``). ``requested`` is the member-initiated flow (wallet page):
#: the member asks, the record waits there, and the operator's confirmation runs the erasure.
from chalicelib.domain.records import ERASURE_DONE as ERASURE_DONE
from chalicelib.domain.records import ERASURE_IN_PROGRESS as ERASURE_IN_PROGRESS
from chalicelib.domain.records import ERASURE_REQUESTED as ERASURE_REQUESTED
from chalicelib.store import keys
from chalicelib.store.db import Entity, IsoDateTimeAttribute


class ErasureItem(Entity, discriminator="erasure"):
    """Audit record and progress of one member's erasure.

    ``step`` and ``cursor`` say where an interrupted erasure resumes; ``counts`` how many items
    of each kind were scrubbed. ``codes`` and ``identities`` (``kind:hash``) are what the erasure
    needs after the profile is scrubbed (codes to find records naming them, hashes for tombstones).
    """

    program_id = UnicodeAttribute()
    member_id = UnicodeAttribute()
    status = UnicodeAttribute()
    requested_by = UnicodeAttribute()  # "operator" or "member" (a key kind, never a person's identifier)
    #: The id of the key that asked (``op_<first 12 hex digits of its SHA-256>`` for an operator key, a partner
    #: key's ``key_id``); None when the member asked on the wallet page (the signed link was the credential).
    requested_by_key = UnicodeAttribute(null=True)
    requested_at = IsoDateTimeAttribute()
    confirmed_by = UnicodeAttribute(null=True)
    confirmed_by_key = UnicodeAttribute(null=True)  # the id of the key that confirmed (ran) the erasure
    started_at = IsoDateTimeAttribute(null=True)
    completed_at = IsoDateTimeAttribute(null=True)
    step = UnicodeAttribute(default="pointers")
    cursor = JSONAttribute(null=True)
    codes: ListAttribute[str] = ListAttribute(of=UnicodeAttribute, default=list)  # type: ignore[arg-type]
    identities: ListAttribute[str] = ListAttribute(of=UnicodeAttribute, default=list)  # type: ignore[arg-type]
    counts = JSONAttribute(default=dict)
    revision = NumberAttribute(default=0)


class ErasedIdentityItem(Entity, discriminator="erased_identity"):
    """Tombstone: an identifier (by hash only) whose member was erased (or a suppressed address of theirs). Non-signup events about it
    enrol nobody; a new ``member.signup`` creates a new member as usual."""

    program_id = UnicodeAttribute()
    kind = UnicodeAttribute()
    erased_at = IsoDateTimeAttribute()
    #: An e-mail address that bounced or complained (``NotifyStateItem.suppressed``): a new member signing up
    #: with it starts suppressed (``services.suppression_stage``), so a complainer gets no mail after erasure.
    suppressed = BooleanAttribute(null=True)


class ImportRowItem(Entity, discriminator="import_row"):
    """One person imported: keyed by their member (``IMPORT#<program>#member#<member>``), so a row naming them by
    any of their identifiers finds it; markers written before 2026-12-06 are keyed by the hash of their row's
    strongest identifier (``IMPORT#<program>#<kind>#<hash>``) and are still read. A re-run skips the person."""

    program_id = UnicodeAttribute()
    member_id = UnicodeAttribute()
    entry_id = UnicodeAttribute(null=True)
    opening_balance = NumberAttribute(default=0)
    imported_at = IsoDateTimeAttribute()
    #: The file line of the row (for a later row naming the same person with another balance).
    line = NumberAttribute(null=True)


class ImportJobItem(Entity, discriminator="import_job"):
    """A chunked member import (``POST …/imports``): totals over its chunks and the first bad rows.

    ``revision`` counts the chunks folded in; each chunk's record and this item change in one
    transaction conditioned on it, so concurrent chunks never lose a count."""

    program_id = UnicodeAttribute()
    import_id = UnicodeAttribute()
    partner_id = UnicodeAttribute(null=True)
    expected_chunks = NumberAttribute(null=True)
    #: Rows naming people whose data was erased enrol them again (else they are bad rows).
    include_erased = BooleanAttribute(null=True)
    created_at = IsoDateTimeAttribute()
    updated_at = IsoDateTimeAttribute()
    revision = NumberAttribute(default=0)
    totals = JSONAttribute(default=dict)
    errors = JSONAttribute(default=list)  # the first bad rows, with their file line numbers


class ImportChunkItem(Entity, discriminator="import_chunk"):
    """One chunk of an import: claimed with the ``digest`` of its content before any of its rows is written, then
    its ``result`` (with the import's totals, in one transaction). No result yet: claimed, not finished."""

    program_id = UnicodeAttribute()
    import_id = UnicodeAttribute()
    number = NumberAttribute()
    digest = UnicodeAttribute()
    result = JSONAttribute(null=True)
    received_at = IsoDateTimeAttribute()
    #: The claim's request failed (an exception, not a stopped process): the same content takes it over at once.
    released_at = IsoDateTimeAttribute(null=True)


def get_import_job(program_id: str, import_id: str) -> ImportJobItem | None:
    try:
        item = ImportJobItem.get(*keys.import_job(program_id, import_id), consistent_read=True)
    except DoesNotExist:
        return None
    return item if isinstance(item, ImportJobItem) else None


def get_import_chunk(program_id: str, import_id: str, number: int) -> ImportChunkItem | None:
    try:
        item = ImportChunkItem.get(*keys.import_chunk(program_id, import_id, number), consistent_read=True)
    except DoesNotExist:
        return None
    return item if isinstance(item, ImportChunkItem) else None


def erased_identity_keys(program_id: str, identities: list[str]) -> list[tuple[str, str]]:
    """Tombstone keys for ``kind:hash`` strings."""
    out = []
    for text in identities:
        kind, _, value_hash = text.partition(":")
        out.append(keys.erased_identity(program_id, kind, value_hash))
    return out
