"""Everything stored about one member, as JSON (GDPR Art. 15 access and Art. 20 portability).

Operator only: the export is unmasked and spans every partner of the program (a partner key
sees masked e-mail/phone and only its own customer ids through the member API).

Bounded, paged reads: the first page starts with the *summary* (profile, balance, erasure
record, codes with their click counters, identity kinds, pending invites waiting for the
member); then every item in the member's partition (ledger entries, attribution records,
counters...), then items of registered erasable kinds that live outside it
(``services.erasure``). Each page holds at most ``limit`` items and a signed ``next_cursor``.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from chalicelib.domain import clock
from chalicelib.domain.errors import NotFound
from chalicelib.services import erasure, signed_cursor
from chalicelib.services.auth import Principal
from chalicelib.store import counters, keys, tenancy_repo
from chalicelib.store.data_rights import ErasureItem
from chalicelib.store.db import Entity, get_or_none, plain_binary
from chalicelib.store.ledger import BalanceItem
from chalicelib.store.members import MemberItem, PendingInviteItem, batch_get, key_from_str

_KEY_ATTRIBUTES = {"PK", "SK", "GSI1PK", "GSI1SK", "GSI2PK", "GSI2SK", "entity"}
_IN_SUMMARY = {"PROFILE", "BALANCE", "ERASURE"}
FORMAT_VERSION = 1


def item_data(item: Entity) -> dict[str, Any]:
    """An item's attributes as plain JSON (no table keys), with its ``item_type``."""
    raw = item.to_simple_dict()
    data = {k: _plain(v) for k, v in raw.items() if k not in _KEY_ATTRIBUTES}
    return {"item_type": raw.get("entity"), **data}


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return clock.iso(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | set | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, bytes | bytearray):
        return plain_binary(bytes(value))  # e.g. an event record's compressed reply
    return value


def export(principal: Principal, program_id: str, member_id: str, limit: int, raw_cursor: str | None) -> dict[str, Any]:
    # The route's contract (auth="operator", api.http) has checked the key, the program and the operator.
    tenancy_repo.get_program(program_id)
    scope = f"member-export|{program_id}|{member_id}"
    cursor = signed_cursor.decode(scope, raw_cursor)
    member = get_or_none(MemberItem, keys.member(program_id, member_id), consistent=True)
    if not isinstance(member, MemberItem):
        raise NotFound("Member not found", details={"member_id": member_id})
    page: dict[str, Any] = {"format_version": FORMAT_VERSION, "program_id": program_id, "member_id": member_id,
                            "exported_at": clock.iso(clock.utcnow())}
    if cursor is None:
        page["summary"] = _summary(member)
        cursor = {"section": "partition", "last": None}
    items: list[dict[str, Any]] = []
    sections = ["partition", *[k.name for k in erasure.registered() if k.export]]
    section = str(cursor.get("section"))
    last = cursor.get("last")
    if section not in sections:
        section, last = "done", None
    target = erasure.ErasureTarget(program_id, member_id, (), ())
    kinds = {k.name: k for k in erasure.registered()}
    while section != "done" and len(items) < limit:
        if section == "partition":
            result = Entity.query(keys.member_partition(program_id, member_id), limit=limit - len(items),
                                  last_evaluated_key=last)
            batch = [i for i in result if i.SK not in _IN_SUMMARY]
            next_last = result.last_evaluated_key
        else:
            found = kinds[section].find(target, last, limit - len(items))
            batch, next_last = found.items, found.cursor
        items += [item_data(i) for i in batch]
        if next_last:
            last = next_last
            continue
        index = sections.index(section)
        section, last = (sections[index + 1], None) if index + 1 < len(sections) else ("done", None)
    page["items"] = items
    page["next_cursor"] = None if section == "done" else signed_cursor.encode(scope, {"section": section,
                                                                                      "last": last})
    return page


def _summary(member: MemberItem) -> dict[str, Any]:
    pid, mid = member.program_id, member.member_id
    found = batch_get([keys.balance(pid, mid), keys.erasure_record(pid, mid)])
    balance = found.get(keys.balance(pid, mid))
    record = found.get(keys.erasure_record(pid, mid))
    codes = _codes(member, record if isinstance(record, ErasureItem) else None)
    totals = {t.code: item_data(t) for t in counters.click_totals(pid, codes) if t.code}
    return {
        "profile": item_data(member),
        "balance": item_data(balance) if isinstance(balance, BalanceItem) else None,
        "erasure": erasure.erasure_view(record) if isinstance(record, ErasureItem) else None,
        "codes": [{"code": code, "clicks": totals.get(code)} for code in codes],
        "identifiers": _identifier_kinds(member.pointer_keys or []),
        "pending_invites": [item_data(i) for i in _invites(pid, member.pointer_keys or [])],
    }


def _codes(member: MemberItem, record: ErasureItem | None) -> list[str]:
    if record is not None:
        return list(record.codes or [])
    prefix = f"CODE#{member.program_id}#"
    old = [key_from_str(k)[0][len(prefix):] for k in member.pointer_keys or [] if k.startswith(prefix)]
    return list(dict.fromkeys([member.code, *old]))


def _identifier_kinds(pointer_keys: Iterable[str]) -> list[str]:
    """Which kinds of identifier point at the member (the values are on the profile)."""
    kinds = []
    for text in pointer_keys:
        parts = key_from_str(text)[0].split("#")
        if parts[0] == "IDENT" and len(parts) >= 4:
            kinds.append(parts[2])
    return kinds


def _invites(program_id: str, pointer_keys: Iterable[str]) -> list[Entity]:
    wanted = []
    for text in pointer_keys:
        parts = key_from_str(text)[0].split("#")
        if parts[0] == "IDENT" and len(parts) >= 4:
            wanted.append(keys.pending_invite(program_id, parts[2], parts[-1]))
    return [i for i in batch_get(wanted).values() if isinstance(i, PendingInviteItem)]
