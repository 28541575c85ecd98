"""Notification API: preferences, push devices, the delivery log, one-click unsubscribe, local preview."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

from chalice import Response

from chalicelib.api import response_schemas as rs
from chalicelib.api.http import ApiBlueprint, ApiRequest, decode_cursor, encode_cursor, lazy_module
from chalicelib.domain.errors import NotFound
from chalicelib.store import keys

if TYPE_CHECKING:
    from chalicelib.notify import members as notify_members
else:  # Imported when one of these routes first runs (cold start: bench/cold_start.py).
    notify_members = lazy_module("chalicelib.notify.members")

notifications = ApiBlueprint(__name__)
TAG = "Notifications"
BASE = "/v1/programs/{program_id}/members/{member_id}"
FORM = "application/x-www-form-urlencoded"


@notifications.endpoint(f"{BASE}/preferences", "GET", tag=TAG, auth="key", response_schema=rs.PREFERENCES,
                        summary="A member's notification channels (true = on)")
def get_preferences(req: ApiRequest, program_id: str, member_id: str) -> Any:
    return notify_members.get_preferences(req.principal, program_id, member_id)


@notifications.endpoint(
    f"{BASE}/preferences", "PATCH", tag=TAG, auth="key", request_schema=lambda: notify_members.PREFERENCES_SCHEMA,
    response_schema=rs.PREFERENCES, request_example={"email": False},
    summary="Turn notification channels on or off (`email`, `sms`, `push`); honoured at delivery",
    description="Channels not named keep their setting. The unsubscribe link in e-mails sets `email` to false.",
)
def patch_preferences(req: ApiRequest, program_id: str, member_id: str) -> Any:
    return notify_members.update_preferences(req.principal, program_id, member_id, req.body)


@notifications.endpoint(
    f"{BASE}/devices", "POST", tag=TAG, auth="key", request_schema=lambda: notify_members.DEVICE_SCHEMA,
    response_schema=rs.DEVICE,
    summary="Register a push token (`fcm` or `apns`): creates or refreshes and re-enables the SNS endpoint",
    description="The raw token is not stored (only the SNS endpoint and a hash). A token the provider refuses "
                "is a 422; push not configured for the platform is a 422 `push_token_refused` too. An erased member: "
                "409 `member_erased`.",
)
def register_device(req: ApiRequest, program_id: str, member_id: str) -> Any:
    from chalicelib.notify.sources import delivery

    return notify_members.register_device(req.principal, program_id, member_id, req.body, delivery().notifier)


@notifications.endpoint(
    f"{BASE}/notifications", "GET", tag=TAG, auth="key", query_params=(("limit", "integer"), ("cursor", "string")),
    response_schema=rs.page(rs.NOTIFICATION),
    summary="Delivery log: template, channel, status, attempts, last error, masked recipient, provider id (paged)",
)
def list_notifications(req: ApiRequest, program_id: str, member_id: str) -> Any:
    cursor = decode_cursor(req.query("cursor"), ("PK", keys.member_partition(program_id, member_id)))
    result = notify_members.notification_log(req.principal, program_id, member_id,
                                             req.int_query("limit", 50, 1, 100), cursor)
    return {**result, "next_cursor": encode_cursor(result["next_cursor"])}


_PAGE = ("<!doctype html><html lang=\"{lang}\"><head><meta charset=\"utf-8\"><title>{title}</title></head>"
         "<body style=\"font-family:Arial,sans-serif;max-width:480px;margin:40px auto\">{body}</body></html>")


def _page(locale: str, text: str, form_action: str | None = None, button: str = "") -> Response:
    body = f"<p>{html.escape(text)}</p>"
    if form_action:
        body += (f"<form method=\"post\" action=\"{html.escape(form_action, quote=True)}\">"
                 "<input type=\"hidden\" name=\"List-Unsubscribe\" value=\"One-Click\">"
                 f"<button type=\"submit\">{html.escape(button)}</button></form>")
    return Response(body=_PAGE.format(lang=locale, title=html.escape(text), body=body), status_code=200,
                    headers={"Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store"})


def _words(locale: str) -> dict[str, str]:
    from chalicelib.notify.render import strings

    return strings().get(locale, strings()["en"])


@notifications.endpoint("/u/{token}", "GET", tag=TAG, auth="none", response_schema=rs.HTML_PAGE,
                        response_content_types=("text/html",),
                        summary="Unsubscribe page (asks for a click; link scanners never unsubscribe anyone)")
def unsubscribe_page(req: ApiRequest, token: str) -> Any:
    from string import Template

    from chalicelib.notify import tokens
    from chalicelib.store import tenancy_repo

    parsed = tokens.verify(token)
    if parsed is None:
        raise NotFound("Unknown or invalid unsubscribe link", code="invalid_token")
    program = tenancy_repo.get_program(parsed[0])
    words = _words(program.default_locale)
    text = Template(words["unsubscribe_confirm"]).safe_substitute(program=program.name)
    return _page(program.default_locale, text, f"/u/{token}", words["unsubscribe_button"])


#: RFC 8058's one-click body. Documented, never parsed: the signed token in the path says everything, and
#: an unsubscribe must not fail on whatever a mail provider's client posts (``body="raw"``, unread).
ONE_CLICK_SCHEMA: dict[str, Any] = {"type": "object", "properties": {
    "List-Unsubscribe": {"type": "string", "enum": ["One-Click"]}}}


@notifications.endpoint("/u/{token}", "POST", tag=TAG, auth="none", content_types=[FORM, "application/json"],
                        request_schema=ONE_CLICK_SCHEMA, body="raw", response_schema=rs.HTML_PAGE,
                        response_content_types=("text/html",),
                        summary="One-click unsubscribe (RFC 8058 `List-Unsubscribe=One-Click`)")
def unsubscribe(req: ApiRequest, token: str) -> Any:
    from string import Template

    done = notify_members.unsubscribe(token)
    text = Template(_words(done["locale"])["unsubscribed"]).safe_substitute(program=done["program"])
    return _page(done["locale"], text)


@notifications.endpoint("/dev/outbox", "GET", tag=TAG, auth="none", query_params=(("id", "string"),),
                        response_schema=rs.DEV_OUTBOX, response_content_types=("application/json", "text/html"),
                        summary="Local stage only: the messages the local run delivered, rendered (404 elsewhere)")
def dev_outbox(req: ApiRequest) -> Any:
    from chalicelib.config import get_settings
    from chalicelib.notify import preview

    if get_settings().stage != "local":
        raise NotFound("Not found")
    wanted = req.query("id")
    messages = preview.messages()
    if wanted:
        found = next((m for m in messages if m["id"] == wanted), None)
        if found is None:
            raise NotFound("No such message", details={"id": wanted})
        return Response(body=found["html"], status_code=200, headers={"Content-Type": "text/html; charset=utf-8"})
    return {"items": [{k: v for k, v in m.items() if k != "html"} | {"html_url": f"/dev/outbox?id={m['id']}"}
                      for m in messages]}
