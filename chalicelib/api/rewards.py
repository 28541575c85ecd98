"""Rewards routes: program rules, member balances and statements, redemption at checkout."""

from __future__ import annotations

from typing import Any

from chalicelib.api.http import ApiBlueprint, ApiRequest, decode_cursor, encode_cursor, respond
from chalicelib.store import keys

# Services are imported inside the views: they pull in the rules engine, which only the
# routes that use it should pay for at cold start.


def _redeem_schema() -> dict[str, Any]:
    from chalicelib.services.redemption import REDEEM_SCHEMA

    return REDEEM_SCHEMA


def _rules_schema() -> dict[str, Any]:
    from chalicelib.domain.rewards import RULES_SCHEMA

    return RULES_SCHEMA

def _adjustment_schema() -> dict[str, Any]:
    from chalicelib.services.adjustments import ADJUSTMENT_SCHEMA

    return ADJUSTMENT_SCHEMA


def _adjustment_response() -> dict[str, Any]:
    from chalicelib.api.response_schemas import ADJUSTMENT

    return ADJUSTMENT


rewards = ApiBlueprint(__name__)
RULES_TAG = "Rewards rules"
MEMBER_TAG = "Points"
MEMBER = "/v1/programs/{program_id}/members/{member_id}"


@rewards.endpoint("/v1/programs/{program_id}/rules", "PUT", tag=RULES_TAG, auth="operator",
                  request_schema=_rules_schema, body="raw", summary="Store a new version of the program's rules document",
                  description="Validated against the published JSON Schema (GET .../rules/schema) and semantic "
                              "checks; problems are a 422 whose `details.errors[*].path` names the JSON path. "
                              "Each PUT creates version n+1; earlier versions are never rewritten.")
def put_rules(req: ApiRequest, program_id: str) -> Any:
    from chalicelib.services import rules

    return rules.put_rules(req.ports, req.principal, program_id, req.json())


@rewards.endpoint("/v1/programs/{program_id}/rules", "GET", tag=RULES_TAG, query_params=(("version", "integer"),),
                  summary="The current rules document, or a given `version`")
def get_rules(req: ApiRequest, program_id: str) -> Any:
    from chalicelib.services import rules

    version = req.int_query("version", 0, 1, 10**6) if req.query("version") is not None else None
    return rules.get_rules(req.ports, req.principal, program_id, version)


@rewards.endpoint("/v1/programs/{program_id}/rules/schema", "GET", tag=RULES_TAG,
                  summary="The JSON Schema of rules documents")
def get_rules_schema(req: ApiRequest, program_id: str) -> Any:
    from chalicelib.services import rules

    req.principal.require_program(program_id)
    return rules.schema()


@rewards.endpoint(f"{MEMBER}/balance", "GET", tag=MEMBER_TAG,
                  summary="A member's balances: available, pending, owed, lifetime earned and spent")
def get_balance(req: ApiRequest, program_id: str, member_id: str) -> Any:
    from chalicelib.services import statement

    return statement.balance(req.ports, req.principal, program_id, member_id)


@rewards.endpoint(f"{MEMBER}/ledger", "GET", tag=MEMBER_TAG, query_params=(("limit", "integer"), ("cursor", "string")),
                  summary="A member's ledger entries with plain-language reasons, newest first")
def get_ledger(req: ApiRequest, program_id: str, member_id: str) -> Any:
    from chalicelib.services import statement

    cursor = decode_cursor(req.query("cursor"), ("PK", keys.member_partition(program_id, member_id)))
    result = statement.ledger(req.ports, req.principal, program_id, member_id, req.int_query("limit", 50, 1, 200),
                              cursor)
    return {**result, "next_cursor": encode_cursor(result["next_cursor"])}


@rewards.endpoint(
    f"{MEMBER}/adjustments", "POST", tag=MEMBER_TAG, auth="operator", success_status=201,
    request_schema=_adjustment_schema, response_schema=_adjustment_response,
    headers=(("Idempotency-Key", "1-255 characters; a retry with the same key answers the first result (200)"),),
    responses={200: "A retry with the same Idempotency-Key: the first adjustment",
               409: "`insufficient_points` (a debit above `available`, `details.available`) or "
                    "`idempotency_key_reused`"},
    request_example={"points": -150, "reason": "Duplicate order 100235 credited twice", "partner_id": "ptn_..."},
    summary="Adjust a member's points by hand (operator): ± points, a required reason, an `Idempotency-Key`",
    description="Writes an `adjustment` ledger entry recording who (the key), when and why, and changes the "
                "balance in the same transaction. A debit never takes `available` below zero (409). "
                "`partner_id` names who funds a credit (or receives a debit's value) in settlement; default: "
                "the program. See docs/coalition.md#adjustments.",
)
def post_adjustment(req: ApiRequest, program_id: str, member_id: str) -> Any:
    from chalicelib.services import adjustments

    result, created = adjustments.adjust(req.ports, req.principal, program_id, member_id,
                                         req.headers.get("idempotency-key"), req.body)
    return respond(result, 201 if created else 200)


def _settlement_response() -> dict[str, Any]:
    from chalicelib.api.response_schemas import SETTLEMENT

    return SETTLEMENT


@rewards.endpoint(
    "/v1/programs/{program_id}/settlement", "GET", tag="Settlement", response_schema=_settlement_response,
    response_content_types=("application/json", "text/csv"), query_params=(("from", "string"), ("to", "string")),
    summary="Settlement statement between the program's partners for a period (JSON, or CSV with "
            "`Accept: text/csv`)",
    description="Booking days `from`..`to` (UTC, inclusive, at most 366 days). Per partner: points funded, adjusted, "
                "redeemed at it and expired, their value at the program's point value (integers, minor units), the "
                "net; per (funding partner, partner where it happened) pair the points funded; the transfers "
                "(who owes whom). At most 20,000 aggregate rows (a row per partner and per funding pair with "
                "activity on a day): a period holding more is a 400 `invalid_query` (ask for shorter periods). "
                "The operator sees every partner and the change of the outstanding points "
                "liability (the sum of the nets); a partner key sees its own rows. Built from aggregates the "
                "table's stream keeps (seconds behind the ledger). See docs/coalition.md#settlement-statements.",
)
def get_settlement(req: ApiRequest, program_id: str) -> Any:
    from chalice import Response

    from chalicelib.services import settlement

    body = settlement.statement(req.ports, req.principal, program_id, req.query("from"), req.query("to"))
    if "text/csv" in (req.headers.get("accept") or ""):
        return Response(body=settlement.as_csv(body), status_code=200,
                        headers={"Content-Type": "text/csv; charset=utf-8"})
    return body


@rewards.endpoint(f"{MEMBER}/redemptions/quote", "GET", tag=MEMBER_TAG, query_params=(("order_amount", "integer"),),
                  summary="How many points may pay for an order of `order_amount` (minor units)")
def quote(req: ApiRequest, program_id: str, member_id: str) -> Any:
    from chalicelib.services import redemption

    amount = req.int_query("order_amount", -1, 0, 10**14) if req.query("order_amount") is not None else None
    return redemption.quote(req.ports, req.principal, program_id, member_id, amount)


@rewards.endpoint(f"{MEMBER}/redemptions", "POST", tag=MEMBER_TAG, success_status=201,
                  # raw: the Idempotency-Key header is checked before the body (services.redemption).
                  request_schema=_redeem_schema, body="raw",
                  summary="Redeem points (needs an `Idempotency-Key` header); 409 `insufficient_points` "
                          "with `details.available` when the balance is too low")
def redeem(req: ApiRequest, program_id: str, member_id: str) -> Any:
    from chalicelib.services import redemption

    result, created = redemption.redeem(req.ports, req.principal, program_id, member_id,
                                        req.headers.get("idempotency-key"), req.json())
    return respond(result, 201 if created else 200)


@rewards.endpoint(f"{MEMBER}/redemptions/{{redemption_id}}", "GET", tag=MEMBER_TAG, summary="Get a redemption")
def get_redemption(req: ApiRequest, program_id: str, member_id: str, redemption_id: str) -> Any:
    from chalicelib.services import redemption

    return redemption.get(req.ports, req.principal, program_id, member_id, redemption_id)


@rewards.endpoint(f"{MEMBER}/redemptions/{{redemption_id}}/confirm", "POST", tag=MEMBER_TAG,
                  summary="Confirm a held redemption (the order went through)")
def confirm_redemption(req: ApiRequest, program_id: str, member_id: str, redemption_id: str) -> Any:
    from chalicelib.services import redemption

    return redemption.confirm(req.ports, req.principal, program_id, member_id, redemption_id)


@rewards.endpoint(f"{MEMBER}/redemptions/{{redemption_id}}/cancel", "POST", tag=MEMBER_TAG,
                  summary="Cancel a redemption (the order was cancelled): the points are returned")
def cancel_redemption(req: ApiRequest, program_id: str, member_id: str, redemption_id: str) -> Any:
    from chalicelib.services import redemption

    return redemption.cancel(req.ports, req.principal, program_id, member_id, redemption_id)
