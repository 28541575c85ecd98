"""Partner offers and voucher pools: offers CRUD, code uploads, a member's vouchers (docs/coalition.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chalicelib.api import response_schemas as rs
from chalicelib.api.http import ApiBlueprint, ApiRequest, decode_cursor, encode_cursor, lazy_module, respond
from chalicelib.domain.errors import UnsupportedMediaType
from chalicelib.domain.offers import CODES_JSON_SCHEMA, OFFER_CREATE_SCHEMA, OFFER_UPDATE_SCHEMA, codes_from_csv
from chalicelib.domain.validation import validate
from chalicelib.store import keys

if TYPE_CHECKING:
    from chalicelib.services import offers
else:  # Imported when one of these routes first runs (cold start: bench/cold_start.py).
    offers = lazy_module("chalicelib.services.offers")

offers_api = ApiBlueprint(__name__)
TAG = "Offers"
BASE = "/v1/programs/{program_id}/partners/{partner_id}/offers"
SCOPE = "Operator key, or the key of the partner that owns the offers (another partner: 403)."

_VALUE = {"percent": rs.INT, "amount_minor": rs.INT, "currency": rs.STR, "item": rs.STR, "subscription": rs.STR}
OFFER = rs.obj({
    "offer_id": rs.STR, "program_id": rs.STR, "partner_id": rs.STR, "name": rs.STR,
    "description": rs.nullable(rs.STR), "kind": {"enum": ["percent_off", "fixed_discount", "free_item",
                                                          "subscription_month"]},
    "code_source": {"enum": ["static", "pool"]}, "enabled": rs.BOOL, "archived": rs.BOOL,
    "low_pool_threshold": rs.nullable(rs.INT), "valid_days": rs.nullable(rs.INT),
    "created_at": rs.TIME, "updated_at": rs.TIME,
}, {**_VALUE, "static_code": rs.STR,
    "pool": rs.obj({"size": rs.INT, "remaining": rs.INT, "issued": rs.INT, "low": rs.BOOL})})
UPLOADED = rs.obj({"offer_id": rs.STR, "accepted": rs.INT, "pool": rs.obj({"size": rs.INT, "remaining": rs.INT})})
ARCHIVED = rs.obj({"offer_id": rs.STR, "archived": rs.BOOL})


@offers_api.endpoint(BASE, "POST", tag=TAG, summary="Create an offer of a partner", success_status=201,
                     request_schema=OFFER_CREATE_SCHEMA, response_schema=OFFER,
                     description="`kind` decides the value field: `percent_off` → `percent`, `fixed_discount` → "
                                 "`amount_minor` + `currency`, `free_item` → `item`, `subscription_month` → "
                                 "`subscription`. `code_source`: `static` (one `static_code` for every member) or "
                                 "`pool` (unique codes uploaded to `…/codes`). " + SCOPE,
                     request_example={"name": "Coffee on us", "kind": "free_item", "item": "Cappuccino",
                                      "code_source": "pool", "low_pool_threshold": 50, "valid_days": 30})
def create_offer(req: ApiRequest, program_id: str, partner_id: str) -> Any:
    return respond(offers.create_offer(req.ports, req.principal, program_id, partner_id, req.body), 201)


@offers_api.endpoint(BASE, "GET", tag=TAG, summary="A partner's offers (paged; archived ones left out)",
                     query_params=(("limit", "integer"), ("cursor", "string")), response_schema=rs.page(OFFER),
                     description=SCOPE)
def list_offers(req: ApiRequest, program_id: str, partner_id: str) -> Any:
    cursor = decode_cursor(req.query("cursor"), ("PK", keys.offers_prefix(program_id, partner_id)[0]))
    result = offers.list_offers(req.ports, req.principal, program_id, partner_id, req.int_query("limit", 50, 1, 100), cursor)
    return {**result, "next_cursor": encode_cursor(result["next_cursor"])}


@offers_api.endpoint(BASE + "/{offer_id}", "GET", tag=TAG, response_schema=OFFER,
                     summary="An offer, with its pool's size, remaining and issued codes", description=SCOPE)
def get_offer(req: ApiRequest, program_id: str, partner_id: str, offer_id: str) -> Any:
    return offers.get_offer(req.ports, req.principal, program_id, partner_id, offer_id)


@offers_api.endpoint(BASE + "/{offer_id}", "PATCH", tag=TAG, request_schema=OFFER_UPDATE_SCHEMA,
                     response_schema=OFFER, summary="Change an offer's name, description, threshold, validity or "
                                                    "whether it is issued", description=SCOPE)
def update_offer(req: ApiRequest, program_id: str, partner_id: str, offer_id: str) -> Any:
    return offers.update_offer(req.ports, req.principal, program_id, partner_id, offer_id, req.body)


@offers_api.endpoint(BASE + "/{offer_id}", "DELETE", tag=TAG, response_schema=ARCHIVED,
                     summary="Archive an offer: nothing more is issued from it; issued vouchers stay valid",
                     description="Rules that grant it fall back to their `fallback_points` (or record "
                                 "`offer_unavailable`). " + SCOPE)
def archive_offer(req: ApiRequest, program_id: str, partner_id: str, offer_id: str) -> Any:
    return offers.archive_offer(req.ports, req.principal, program_id, partner_id, offer_id)


@offers_api.endpoint(BASE + "/{offer_id}/codes", "POST", tag=TAG, body="raw", request_schema=CODES_JSON_SCHEMA,
                     content_types=["application/json", "text/csv"], response_schema=UPLOADED,
                     summary="Upload unique codes to an offer's pool (JSON or CSV)",
                     description="JSON `{\"codes\": [...]}` or `text/csv` (one code per line, or a `code` column; "
                                 "a UTF-8 BOM and CRLF are accepted). Codes: 1–64 of `A-Z a-z 0-9 _ . : / + = # -`, "
                                 "case-sensitive. At most 5,000 per request (and 256 KB), 100,000 per pool. A code "
                                 "given twice in the upload (`duplicate_codes`) or already in the pool, free or "
                                 "issued (`codes_already_present`), makes the whole upload a 422 listing them; "
                                 "nothing is written. " + SCOPE,
                     request_example={"codes": ["CAFE-0001", "CAFE-0002"]})
def upload_codes(req: ApiRequest, program_id: str, partner_id: str, offer_id: str) -> Any:
    content_type = req.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if content_type == "text/csv":
        try:
            text = req.raw_body.decode("utf-8")
        except UnicodeDecodeError:
            raise UnsupportedMediaType("The CSV must be UTF-8", details={"content_type": "text/csv"}) from None
        codes = codes_from_csv(text)
    else:
        codes = validate(CODES_JSON_SCHEMA, req.json())["codes"]
    return offers.upload_codes(req.ports, req.principal, program_id, partner_id, offer_id, codes)


VOUCHER = rs.obj({
    "voucher_id": rs.STR, "member_id": rs.STR, "offer_id": rs.STR, "partner_id": rs.STR, "name": rs.STR,
    "kind": rs.STR, "code": rs.STR, "status": rs.STR, "reason": rs.STR, "reason_code": rs.STR,
    "rule_id": rs.nullable(rs.STR), "event_partner_id": rs.nullable(rs.STR), "issued_at": rs.TIME,
    "expires_at": rs.nullable(rs.TIME)}, _VALUE)


@offers_api.endpoint("/v1/programs/{program_id}/members/{member_id}/vouchers", "GET", tag=TAG,
                     query_params=(("limit", "integer"), ("cursor", "string")), response_schema=rs.page(VOUCHER),
                     summary="A member's vouchers (partner offers issued to them), newest first (paged)",
                     description="The operator sees every voucher; a partner key sees the vouchers of its own offers "
                                 "and those its events earned (never another partner's codes otherwise).")
def list_member_vouchers(req: ApiRequest, program_id: str, member_id: str) -> Any:
    from chalicelib.services import vouchers

    cursor = decode_cursor(req.query("cursor"), ("PK", keys.member_partition(program_id, member_id)))
    result = vouchers.member_vouchers(req.principal, program_id, member_id, req.int_query("limit", 50, 1, 100),
                                      cursor)
    return {**result, "next_cursor": encode_cursor(result["next_cursor"])}
