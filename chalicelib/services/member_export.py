"""Everything stored about one member, as JSON (GDPR Art. 15 access and Art. 20 portability).

Operator only: the export is unmasked and spans every partner of the program (a partner key
sees masked e-mail/phone and only its own customer ids through the member API).

Bounded, paged reads: the first page starts with the *summary* (profile, balance, erasure
record, codes with their click counters, identity kinds, pending invites waiting for the
member); then every item in the member's partition (ledger entries, attribution records,
counters...), then items of registered erasable kinds that live outside it
(``store.erasure_kinds``: her pointers and import marker, her events' records, redemptions, adjustments and
order ledgers, outbox messages, webhook deliveries, her part of signal pointers and review items, her velocity
counters). Each page holds at most ``limit`` items and a signed ``next_cursor``, and makes at most
``READS_PER_PAGE`` section reads (one Query or batch of keys each, with at most two ``BatchGetItem`` of what it
names): a section whose reads find nothing to list (her ledger entries that name no
record, back-references to invites that expired) ends the page early, with fewer items or none, and the cursor.

Reads go through the ports (``deps.members`` for the profile, codes, clicks and balance, the erasure record;
``deps.data_rights`` for the partition's pages, the registered kinds and the items' JSON form).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chalicelib.domain import clock
from chalicelib.domain.errors import NotFound
from chalicelib.services import erasure, signed_cursor
from chalicelib.services.auth import Principal
from chalicelib.services.ports import Ports

if TYPE_CHECKING:
    from chalicelib.store.members import MemberItem

FORMAT_VERSION = 1
#: Section reads per page (``DataRightsStore.member_items`` / ``exported`` calls), whatever the member's data: each
#: is one Query (or one batch of keys) of at most ``limit`` and at most two BatchGetItems of what it names. Enough
#: for every section of a member with little data in one page (a section with nothing costs one read).
READS_PER_PAGE = 16


def export(deps: Ports, principal: Principal, program_id: str, member_id: str, limit: int,
           raw_cursor: str | None) -> dict[str, Any]:
    # The route's contract (auth="operator", api.http) has checked the key, the program and the operator.
    deps.programs.get(program_id)
    scope = f"member-export|{program_id}|{member_id}"
    cursor = signed_cursor.decode(scope, raw_cursor, deps.secrets)
    member = deps.members.get(program_id, member_id, consistent=True)
    if member is None:
        raise NotFound("Member not found", details={"member_id": member_id})
    page: dict[str, Any] = {"format_version": FORMAT_VERSION, "program_id": program_id, "member_id": member_id,
                            "exported_at": clock.iso(deps.clock.now())}
    if cursor is None:
        page["summary"] = _summary(deps, member)
        cursor = {"section": "partition", "last": None}
    items: list[dict[str, Any]] = []
    rights = deps.data_rights
    sections = ["partition", *rights.exported_kinds()]
    section = str(cursor.get("section"))
    last = cursor.get("last")
    if section not in sections:
        section, last = "done", None
    reads = 0
    while section != "done" and len(items) < limit and reads < READS_PER_PAGE:
        reads += 1
        if section == "partition":
            found = rights.member_items(program_id, member_id, limit - len(items), last)
        else:
            found = rights.exported(section, program_id, member_id, limit - len(items), last)
        items += [rights.item_data(i) for i in found.items]
        if found.next_cursor:
            last = found.next_cursor
            continue
        index = sections.index(section)
        section, last = (sections[index + 1], None) if index + 1 < len(sections) else ("done", None)
    page["items"] = items
    page["next_cursor"] = None if section == "done" else signed_cursor.encode(scope, {"section": section,
                                                                                      "last": last}, deps.secrets)
    return page


def _summary(deps: Ports, member: MemberItem) -> dict[str, Any]:
    pid, mid = member.program_id, member.member_id
    rights = deps.data_rights
    record = deps.members.erasure_record(pid, mid)
    codes = list(record.codes or []) if record is not None else deps.members.codes_of(member)
    totals_read, balance = deps.members.clicks_and_balance(pid, mid, codes)
    totals = {t.code: rights.item_data(t) for t in totals_read if t.code}
    return {
        "profile": rights.item_data(member),
        "balance": rights.item_data(balance) if balance is not None else None,
        "erasure": erasure.erasure_view(record) if record is not None else None,
        "codes": [{"code": code, "clicks": totals.get(code)} for code in codes],
        "identifiers": rights.identifier_kinds(member),
        "pending_invites": [rights.item_data(i) for i in rights.pending_invites(member)],
    }
