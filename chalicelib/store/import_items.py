"""The member import's writes for a new member, as DynamoDB JSON built directly (the bulk path).

``services.importer`` writes a new member of an imported row (profile, identity pointers, code, short
link, opening-balance ledger entry, balance, the import marker, the referrer's signup counter) in
transactions of up to 100 items. Building each item as a PynamoDB model object and serialising it
(``Model.serialize``, ``get_save_kwargs_from_instance``) was about a fifth of the import's CPU per row;
these functions write the same operations straight away: the same attributes (defaults included,
``None`` left out, as PynamoDB writes them), the same conditions (``attribute_not_exists`` on creation)
and ``ReturnValuesOnConditionCheckFailure``. ``tests/functional/test_import_items.py`` compares every
operation with the one the models write. They are added to a ``store.transact.Transaction`` with
``put_raw`` / ``update_raw``, so a row's conditions and its ``on_fail`` work exactly as with models.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from chalicelib.domain.clock import iso
from chalicelib.store import keys
from chalicelib.store.db import Entity

Key = tuple[str, str]
_CREATE_NAMES = {"#0": "PK"}


def _s(value: str) -> dict[str, str]:
    return {"S": value}


def _n(value: int) -> dict[str, str]:
    return {"N": str(value)}


def _strings(values: Sequence[str]) -> dict[str, Any]:
    return {"L": [{"S": v} for v in values]}


def _table() -> str:
    return str(Entity.Meta.table_name)


def create(item: dict[str, Any]) -> dict[str, Any]:
    """A ``Put`` that fails if an item with the key exists (``Transaction.create``'s condition)."""
    return {"TableName": _table(), "Item": item, "ConditionExpression": "attribute_not_exists (#0)",
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD", "ExpressionAttributeNames": dict(_CREATE_NAMES)}


def key_of(item: dict[str, Any]) -> Key:
    return item["PK"]["S"], item["SK"]["S"]


@dataclass(frozen=True)
class NewMember:
    """What the rows after it need of an imported member (as referrer or duplicate): no model object."""

    program_id: str
    member_id: str
    code: str
    name: str | None
    ancestors: list[str]
    joined_at: datetime
    referrer_id: str | None = None


def member_item(member: NewMember, *, locale: str | None, email: str | None, phone: str | None,
                customer_ids: dict[str, str], pointer_keys: list[str], joined_via: str,
                acquisition: dict[str, Any], attributed_at: datetime | None = None,
                attribution_source: str | None = None, signup_counted: bool = False) -> dict[str, Any]:
    """``MemberItem`` of ``members.new_member`` (no birthday) with ``referrals_index``, as PynamoDB writes it."""
    pk, sk = keys.member(member.program_id, member.member_id)
    item: dict[str, Any] = {"PK": _s(pk), "SK": _s(sk)}
    if member.referrer_id:
        gsi_pk, gsi_sk = keys.gsi1_referrals_of(member.program_id, member.referrer_id, iso(member.joined_at),
                                                member.member_id)
        item["GSI1PK"], item["GSI1SK"] = _s(gsi_pk), _s(gsi_sk)
    item.update({
        "acquisition": _s(json.dumps(acquisition)),
        "ancestors": _strings(member.ancestors),
    })
    if attributed_at is not None:
        item["attributed_at"] = _s(iso(attributed_at))
    item["attribution_final"] = {"BOOL": bool(member.referrer_id)}
    if attribution_source is not None:
        item["attribution_source"] = _s(attribution_source)
    item.update({"code": _s(member.code), "converted_referrals": _n(0),
                 "customer_ids": {"M": {k: _s(v) for k, v in customer_ids.items()}}})
    if email is not None:
        item["email"] = _s(email)
    item.update({"entity": _s("member"), "joined_at": _s(iso(member.joined_at)), "joined_via": _s(joined_via)})
    if locale is not None:
        item["locale"] = _s(locale)
    item["member_id"] = _s(member.member_id)
    if member.name is not None:
        item["name"] = _s(member.name)
    item["orders_count"] = _n(0)
    if phone is not None:
        item["phone"] = _s(phone)
    item.update({"pointer_keys": _strings(pointer_keys), "program_id": _s(member.program_id),
                 "push_endpoints": {"L": []}, "referral_signups": _n(0)})
    if member.referrer_id:
        item["referrer_id"] = _s(member.referrer_id)
    item["revision"] = _n(0)
    if signup_counted:
        item["signup_counted"] = {"BOOL": True}
    item["tier"] = _s("base")
    return item


def pointer_item(member: NewMember, key: Key, kind: str) -> dict[str, Any]:
    """``IdentityItem`` of ``members.pointer_items``."""
    return {"PK": _s(key[0]), "SK": _s(key[1]), "ancestors": _strings(member.ancestors), "entity": _s("identity"),
            "kind": _s(kind), "member_id": _s(member.member_id), "program_id": _s(member.program_id)}


def code_item(member: NewMember) -> dict[str, Any]:
    """``CodeItem`` of ``members.code_item`` (not vanity)."""
    pk, sk = keys.referral_code(member.program_id, member.code)
    item = {"PK": _s(pk), "SK": _s(sk), "ancestors": _strings(member.ancestors), "code": _s(member.code),
            "entity": _s("code")}
    first_name = (member.name or "").split(" ")[0] or None
    if first_name is not None:
        item["first_name"] = _s(first_name)
    item.update({"member_id": _s(member.member_id), "program_id": _s(member.program_id), "vanity": {"BOOL": False}})
    return item


def link_item(member: NewMember) -> dict[str, Any]:
    """``LinkItem`` of ``members.link_item``."""
    pk, sk = keys.short_link(member.code)
    return {"PK": _s(pk), "SK": _s(sk), "code": _s(member.code), "entity": _s("link"),
            "member_id": _s(member.member_id), "program_id": _s(member.program_id)}


def opening_entry(program_id: str, member_id: str, entry_id: str, at: datetime, *, kind: str, points: int,
                  reason: str, reason_code: str, partner_id: str | None) -> dict[str, Any]:
    """An available ledger entry booked at ``at`` as ``ledger.new_entry`` writes it (credit and day indexes)."""
    at_iso = iso(at)
    pk, sk = keys.ledger_entry(program_id, member_id, at_iso, entry_id)
    item: dict[str, Any] = {"PK": _s(pk), "SK": _s(sk)}
    if points > 0:
        gsi1 = keys.gsi1_credit_month(program_id, at_iso[:7], at_iso, member_id, entry_id)
        item["GSI1PK"], item["GSI1SK"] = _s(gsi1[0]), _s(gsi1[1])
    gsi2 = keys.gsi2_ledger_day(program_id, at_iso[:10], at_iso, entry_id)
    item["GSI2PK"], item["GSI2SK"] = _s(gsi2[0]), _s(gsi2[1])
    item.update({"created_at": _s(at_iso), "effective_at": _s(at_iso), "entity": _s("ledger_entry"),
                 "entry_id": _s(entry_id), "kind": _s(kind), "member_id": _s(member_id)})
    if partner_id is not None:
        item["partner_id"] = _s(partner_id)
    item.update({"points": _n(points), "program_id": _s(program_id), "reason": _s(reason),
                 "reason_code": _s(reason_code), "reversed_points": _n(0), "status": _s("available")})
    return item


def import_marker(key: Key, program_id: str, member_id: str, entry_id: str | None, opening_balance: int,
                  imported_at: datetime, line: int) -> dict[str, Any]:
    """``data_rights.ImportRowItem``."""
    item: dict[str, Any] = {"PK": _s(key[0]), "SK": _s(key[1]), "entity": _s("import_row")}
    if entry_id is not None:
        item["entry_id"] = _s(entry_id)
    item.update({"imported_at": _s(iso(imported_at)), "line": _n(line), "member_id": _s(member_id),
                 "opening_balance": _n(opening_balance), "program_id": _s(program_id)})
    return item


def new_balance(program_id: str, member_id: str, points: int) -> tuple[dict[str, Any], Key]:
    """``ledger.stage_balance`` of a member with no balance yet crediting ``points`` (available and earned)."""
    key = keys.balance(program_id, member_id)
    return {"TableName": _table(), "Key": {"PK": _s(key[0]), "SK": _s(key[1])},
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            "UpdateExpression": "SET #0 = :0, #1 = :1, #2 = :2 ADD #3 :3, #4 :4",
            "ExpressionAttributeNames": {"#0": "entity", "#1": "program_id", "#2": "member_id", "#3": "available",
                                         "#4": "lifetime_earned"},
            "ExpressionAttributeValues": {":0": _s("balance"), ":1": _s(program_id), ":2": _s(member_id),
                                          ":3": _n(points), ":4": _n(points)}}, key


def referral_signup(program_id: str, referrer_id: str) -> tuple[dict[str, Any], Key]:
    """``ADD referral_signups 1`` on an existing member's profile (conditioned on it existing and on her erasure not
    having started: ``erased_at``)."""
    key = keys.member(program_id, referrer_id)
    return {"TableName": _table(), "Key": {"PK": _s(key[0]), "SK": _s(key[1])},
            "ConditionExpression": "(attribute_exists (#0) AND attribute_not_exists (#1))",
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            "UpdateExpression": "ADD #2 :0",
            "ExpressionAttributeNames": {"#0": "PK", "#1": "erased_at", "#2": "referral_signups"},
            "ExpressionAttributeValues": {":0": _n(1)}}, key
