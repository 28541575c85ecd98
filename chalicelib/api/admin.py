"""Operator administration routes: programs, partners, keys, webhook secrets."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chalicelib.api.http import ApiBlueprint, ApiRequest, decode_cursor, encode_cursor, lazy_module, respond
from chalicelib.store import keys

if TYPE_CHECKING:
    from chalicelib.services import programs
else:  # Imported when one of these routes first runs (cold start: bench/cold_start.py).
    programs = lazy_module("chalicelib.services.programs")

admin = ApiBlueprint(__name__)
TAG = "Administration"


@admin.endpoint("/v1/programs", "POST", summary="Create a program (returns its publishable key once)", tag=TAG,
                auth="operator", request_schema=lambda: programs.PROGRAM_CREATE_SCHEMA, success_status=201)
def create_program(req: ApiRequest) -> Any:
    return respond(programs.create_program(req.ports, req.principal, req.body), 201)


@admin.endpoint("/v1/programs", "GET", summary="List programs (a partner key sees its own program)", tag=TAG,
                query_params=(("limit", "integer"), ("cursor", "string")))
def list_programs(req: ApiRequest) -> Any:
    cursor = decode_cursor(req.query("cursor"), ("GSI1PK", "PROGRAMS"))
    result = programs.list_programs(req.ports, req.principal, req.int_query("limit", 50, 1, 100), cursor)
    return {**result, "next_cursor": encode_cursor(result["next_cursor"])}


@admin.endpoint("/v1/programs/{program_id}", "GET", summary="Get a program", tag=TAG)
def get_program(req: ApiRequest, program_id: str) -> Any:
    return programs.get_program(req.ports, req.principal, program_id)


@admin.endpoint("/v1/programs/{program_id}", "PATCH", tag=TAG, auth="operator",
                request_schema=lambda: programs.PROGRAM_UPDATE_SCHEMA,
                summary="Change a program's name, locale, origins, landing page or settings (merged)",
                description="Currency and point value are fixed once ledger entries exist in them; "
                            "`settings.max_depth` is fixed because members' stored ancestry is cut to it.")
def update_program(req: ApiRequest, program_id: str) -> Any:
    return programs.update_program(req.ports, req.principal, program_id, req.body)


@admin.endpoint("/v1/programs/{program_id}/partners", "POST", tag=TAG, auth="operator", success_status=201,
                summary="Add a partner (returns its API key and webhook secrets once)",
                request_schema=lambda: programs.PARTNER_CREATE_SCHEMA)
def create_partner(req: ApiRequest, program_id: str) -> Any:
    return respond(programs.create_partner(req.ports, req.principal, program_id, req.body), 201)


@admin.endpoint("/v1/programs/{program_id}/partners", "GET", summary="List the partners of a program (paged)",
                tag=TAG, query_params=(("limit", "integer"), ("cursor", "string")))
def list_partners(req: ApiRequest, program_id: str) -> Any:
    cursor = decode_cursor(req.query("cursor"), ("PK", keys.program(program_id)[0]))
    result = programs.list_partners(req.ports, req.principal, program_id, req.int_query("limit", 100, 1, 100), cursor)
    return {**result, "next_cursor": encode_cursor(result["next_cursor"])}


@admin.endpoint("/v1/programs/{program_id}/partners/{partner_id}", "GET", summary="Get a partner", tag=TAG)
def get_partner(req: ApiRequest, program_id: str, partner_id: str) -> Any:
    return programs.get_partner(req.ports, req.principal, program_id, partner_id)


@admin.endpoint("/v1/programs/{program_id}/partners/{partner_id}", "PATCH", tag=TAG,
                request_schema=lambda: programs.PARTNER_UPDATE_SCHEMA,
                summary="Change a partner's name or contact e-mail (operator, or the partner itself)")
def update_partner(req: ApiRequest, program_id: str, partner_id: str) -> Any:
    return programs.update_partner(req.ports, req.principal, program_id, partner_id, req.body)


@admin.endpoint("/v1/programs/{program_id}/partners/{partner_id}/webhook-secrets/{source}/rotate", "POST", tag=TAG,
                summary="Rotate a webhook secret; the old one keeps verifying during the overlap period")
def rotate_webhook_secret(req: ApiRequest, program_id: str, partner_id: str, source: str) -> Any:
    return programs.rotate_webhook_secret(req.ports, req.principal, program_id, partner_id, source)


@admin.endpoint("/v1/programs/{program_id}/partners/{partner_id}/keys", "POST", tag=TAG, success_status=201,
                summary="Issue another API key for a partner (shown once), e.g. before revoking the old one")
def create_partner_key(req: ApiRequest, program_id: str, partner_id: str) -> Any:
    return respond(programs.create_partner_key(req.ports, req.principal, program_id, partner_id), 201)


@admin.endpoint("/v1/programs/{program_id}/keys", "GET", summary="List a program's API keys (never the keys; paged)",
                tag=TAG, auth="operator", query_params=(("limit", "integer"), ("cursor", "string")))
def list_keys(req: ApiRequest, program_id: str) -> Any:
    cursor = decode_cursor(req.query("cursor"), ("PK", keys.program(program_id)[0]))
    result = programs.list_keys(req.ports, req.principal, program_id, req.int_query("limit", 100, 1, 100), cursor)
    return {**result, "next_cursor": encode_cursor(result["next_cursor"])}


@admin.endpoint("/v1/programs/{program_id}/keys/{key_id}/revoke", "POST", tag=TAG,
                summary="Revoke an API key (operator: any key of the program; partner: its own keys)")
def revoke_key(req: ApiRequest, program_id: str, key_id: str) -> Any:
    return programs.revoke_key(req.ports, req.principal, program_id, key_id)
