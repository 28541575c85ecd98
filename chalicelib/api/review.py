"""Fraud review queue: held rewards with their reasons; approve or void them (docs/fraud.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chalicelib.api import response_schemas as rs
from chalicelib.api.http import ApiBlueprint, ApiRequest, decode_cursor, encode_cursor, lazy_module
from chalicelib.store import keys

if TYPE_CHECKING:
    from chalicelib.services import review as service
else:  # Imported when one of these routes first runs (cold start: bench/cold_start.py).
    service = lazy_module("chalicelib.services.review")

review = ApiBlueprint(__name__)
TAG = "Fraud review"
BASE = "/v1/programs/{program_id}/review"

ITEM = rs.obj({
    "item_id": rs.STR, "status": {"enum": ["open", "approved", "voided"]}, "partner_id": rs.STR,
    "event_type": rs.STR, "business_key": rs.STR, "member_id": rs.STR, "referrer_id": rs.nullable(rs.STR),
    "reasons": {"type": "array", "items": rs.obj({"code": rs.STR, "reason": rs.STR})},
    "matched": {"type": "array", "items": rs.STR}, "points": rs.INT,
    "entries": {"type": "array", "items": rs.obj({"member_id": rs.STR, "entry_id": rs.STR, "points": rs.INT},
                                                  {"rule_id": rs.nullable(rs.STR)})},
    "vouchers": {"type": "array", "items": rs.obj({
        "member_id": rs.STR, "partner_id": rs.STR, "offer_id": rs.STR, "rule_id": rs.STR,
        "status": {"enum": ["held", "issued", "voided", "pool_empty"]}, "voucher_id": rs.nullable(rs.STR)})},
    "created_at": rs.TIME,
    "decision": rs.nullable(rs.obj({"by": rs.STR, "at": rs.TIME, "reason": rs.nullable(rs.STR)})),
})
CONFLICT = {409: "The item was already decided the other way, or concurrently (`conflict`)"}


@review.endpoint(BASE, "GET", tag=TAG, query_params=(("limit", "integer"), ("cursor", "string")),
                 response_schema=rs.page(ITEM),
                 summary="Open review items (held rewards), oldest first (paged)",
                 description="The operator sees every item of the program; a partner key the items of its own "
                             "events. Reasons are codes with a sentence; matched signals are described (\"same IP "
                             "address and browser as the referrer\"), never shown.")
def list_review(req: ApiRequest, program_id: str) -> Any:
    principal = req.principal
    if principal.is_operator:
        partition = ("GSI1PK", keys.gsi1_review_open(program_id, "", "")[0])
    else:
        partition = ("GSI2PK", keys.gsi2_review_open_partner(program_id, principal.partner_id or "", "", "")[0])
    cursor = decode_cursor(req.query("cursor"), partition)
    result = service.queue(req.ports, principal, program_id, req.int_query("limit", 50, 1, 100), cursor)
    return {**result, "next_cursor": encode_cursor(result["next_cursor"])}


@review.endpoint(f"{BASE}/{{item_id}}/approve", "POST", tag=TAG, request_schema=lambda: service.DECISION_SCHEMA,
                 response_schema=ITEM, responses=CONFLICT,
                 summary="Approve held rewards: they become pending (or available) and follow the normal rules",
                 description="One transaction, conditioned on the item being open; approving again answers the "
                             "item (idempotent); an item voided already, or concurrently, is a 409. Offer vouchers "
                             "the held event granted are issued now, in the same transaction (from the pool as it "
                             "is now: `pool_empty` when no code is left).")
def approve(req: ApiRequest, program_id: str, item_id: str) -> Any:
    return service.decide(req.ports, req.principal, program_id, item_id, "approve", req.body or {})


@review.endpoint(f"{BASE}/{{item_id}}/void", "POST", tag=TAG, request_schema=lambda: service.VOID_SCHEMA,
                 response_schema=ITEM, responses=CONFLICT,
                 summary="Void held rewards: each is reversed with the reviewer's reason",
                 description="`reason` is required and kept with the decision (who, when, why). `fraud: true` "
                             "also marks the event's device and payment signals as fraud: later events with them, "
                             "at any partner of the program, are held. Offer vouchers the held event granted are never "
                             "issued (`voided`). Idempotent; 409 like approve.")
def void(req: ApiRequest, program_id: str, item_id: str) -> Any:
    return service.decide(req.ports, req.principal, program_id, item_id, "void", req.body or {})
