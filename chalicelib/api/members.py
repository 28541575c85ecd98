"""Member API: find a member, their referral counts, referrals and attribution records; vanity codes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chalicelib.api import response_schemas as rs
from chalicelib.api.http import ApiBlueprint, ApiRequest, decode_cursor, encode_cursor, lazy_module
from chalicelib.domain.settings import MAX_DEPTH_RANGE
from chalicelib.store import keys

if TYPE_CHECKING:
    from chalicelib.services import coupons, members_query
else:  # Imported when one of these routes first runs (cold start: bench/cold_start.py).
    coupons = lazy_module("chalicelib.services.coupons")
    members_query = lazy_module("chalicelib.services.members_query")

members = ApiBlueprint(__name__)
TAG = "Members"
BASE = "/v1/programs/{program_id}"
PAGING = (("limit", "integer"), ("cursor", "string"))


def _page(result: dict[str, Any]) -> dict[str, Any]:
    return {**result, "next_cursor": encode_cursor(result["next_cursor"])}


@members.endpoint(
    f"{BASE}/members/lookup", "GET", tag=TAG,
    summary="Find a member by code, e-mail, phone or the partner's customer id",
    query_params=(("code", "string"), ("email", "string"), ("phone", "string"), ("customer_id", "string"),
                  ("partner_id", "string")),
    description="Exactly one of `code`, `email`, `phone`, `customer_id`. A customer id is the partner's own: "
                "a partner key looks up its own customers; the operator passes `partner_id`. Invalid e-mail or "
                "phone: 422. No such member: 404.",
)
def lookup(req: ApiRequest, program_id: str) -> Any:
    params = {name: req.query(name) for name in (*members_query.LOOKUP_PARAMS, "partner_id")}
    return members_query.lookup(req.ports, req.principal, program_id, params)


@members.endpoint(
    f"{BASE}/members/{{member_id}}", "GET", tag=TAG,
    summary="A member: code, link, referrer, counts (clicks, signups, purchasers); e-mail and phone masked",
)
def get_member(req: ApiRequest, program_id: str, member_id: str) -> Any:
    return members_query.get_member(req.ports, req.principal, program_id, member_id)


@members.endpoint(f"{BASE}/members/{{member_id}}/referrals", "GET", tag=TAG, query_params=PAGING,
                  summary="Members this member referred, newest first (paged)")
def list_referrals(req: ApiRequest, program_id: str, member_id: str) -> Any:
    cursor = decode_cursor(req.query("cursor"), ("GSI1PK", keys.gsi1_referrals_partition(program_id, member_id)))
    return _page(members_query.referrals(req.ports, req.principal, program_id, member_id,
                                         req.int_query("limit", 50, 1, 100), cursor))


@members.endpoint(
    f"{BASE}/members/{{member_id}}/referral-tree", "GET", tag=TAG,
    query_params=(("max_depth", "integer"), *PAGING), response_schema=rs.REFERRAL_TREE,
    summary="A member's referral tree: friends, their friends… up to max_depth levels (depth first, paged)",
    description="`max_depth` 1 … the program's `max_depth` (default: the program's). Depth first: each friend, then "
                "that friend's friends, newest first on every level; every node is the referral list's view plus "
                "`level` (1 = the member's own friends), `referrer_id` (its parent) and `referrals` (how many friends "
                "it brought). `limit` 1–100 (default 50) members a page; follow `next_cursor` (signed: bound to this "
                "member and depth). Each page costs at most `limit + max_depth` Queries.",
)
def referral_tree(req: ApiRequest, program_id: str, member_id: str) -> Any:
    raw_depth = req.query("max_depth")
    depth = None if raw_depth is None else req.int_query("max_depth", 1, *MAX_DEPTH_RANGE)
    return members_query.referral_tree(req.ports, req.principal, program_id, member_id, depth,
                                       req.int_query("limit", 50, 1, 100), req.query("cursor"))


@members.endpoint(f"{BASE}/members/{{member_id}}/attributions", "GET", tag=TAG, query_params=PAGING,
                  summary="Attribution records of a member as the friend, with reasons, newest first (paged)")
def list_member_attributions(req: ApiRequest, program_id: str, member_id: str) -> Any:
    cursor = decode_cursor(req.query("cursor"), ("PK", keys.member_partition(program_id, member_id)))
    return _page(members_query.member_attributions(req.ports, req.principal, program_id, member_id,
                                                   req.int_query("limit", 50, 1, 100), cursor))


@members.endpoint(f"{BASE}/codes/{{code}}/attributions", "GET", tag=TAG, query_params=PAGING,
                  summary="Attribution records naming a referral code, with reasons, newest first (paged)")
def list_code_attributions(req: ApiRequest, program_id: str, code: str) -> Any:
    from chalicelib.domain.codes import normalize_code

    partition = keys.gsi1_attribution_code_partition(program_id, normalize_code(code) or "")
    cursor = decode_cursor(req.query("cursor"), ("GSI1PK", partition))
    return _page(members_query.code_attributions(req.ports, req.principal, program_id, code,
                                                 req.int_query("limit", 50, 1, 100), cursor))


@members.endpoint(
    f"{BASE}/members/{{member_id}}/code", "PUT", tag=TAG, auth="operator",
    request_schema=lambda: members_query.VANITY_SCHEMA,
    summary="Give a member a vanity code (operator); the old code and link keep working",
    description="4–24 Latin letters/digits with single inner dashes, case-insensitive (`ANNA-2024` = `anna2024`); "
                "reserved words refused (422). Codes are unique across the deployment (links share one short "
                "domain): a code someone else holds is a 409 `code_taken`. A member holds at most 10 codes (the "
                "current one and the earlier ones, which keep working): an 11th is a 409 `too_many_codes`; "
                "switching back to an earlier one is always allowed.",
)
def set_code(req: ApiRequest, program_id: str, member_id: str) -> Any:
    return members_query.set_vanity_code(req.ports, req.principal, program_id, member_id, req.body)


COUPON_DOC = ("A member's personal promo code (one the shop created in its platform, e.g. `ANNA-500`): an order "
              "naming it in `referral.coupon_codes` is attributed to the member (source `coupon`). Unique per "
              "program: a code another member holds is a 409 `coupon_taken`; at most 20 per member. Codes compare "
              "case-insensitively (stored upper-cased). Partner key or operator.")


@members.endpoint(f"{BASE}/members/{{member_id}}/coupons", "GET", tag=TAG,
                  summary="A member's personal coupon codes", description=COUPON_DOC)
def list_coupons(req: ApiRequest, program_id: str, member_id: str) -> Any:
    return coupons.list_coupons(req.ports, req.principal, program_id, member_id)


@members.endpoint(f"{BASE}/members/{{member_id}}/coupons/{{code}}", "PUT", tag=TAG,
                  summary="Register a personal coupon code for a member (idempotent)", description=COUPON_DOC)
def put_coupon(req: ApiRequest, program_id: str, member_id: str, code: str) -> Any:
    return coupons.register(req.ports, req.principal, program_id, member_id, code)


@members.endpoint(f"{BASE}/members/{{member_id}}/coupons/{{code}}", "GET", tag=TAG,
                  summary="One of a member's coupon codes (404 when not theirs)", description=COUPON_DOC)
def get_coupon(req: ApiRequest, program_id: str, member_id: str, code: str) -> Any:
    return coupons.get_coupon(req.ports, req.principal, program_id, member_id, code)


@members.endpoint(f"{BASE}/members/{{member_id}}/coupons/{{code}}", "DELETE", tag=TAG,
                  summary="Remove a member's coupon code; orders naming it are no longer attributed by it",
                  description=COUPON_DOC)
def delete_coupon(req: ApiRequest, program_id: str, member_id: str, code: str) -> Any:
    return coupons.remove(req.ports, req.principal, program_id, member_id, code)
