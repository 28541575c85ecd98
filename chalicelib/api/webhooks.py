"""Incoming webhooks. Canonical events follow the Standard Webhooks spec."""

from __future__ import annotations

from typing import Any

from chalicelib.api.http import ApiBlueprint, ApiRequest

webhooks = ApiBlueprint(__name__)


@webhooks.endpoint(
    "/v1/webhooks/{partner_id}/events", "POST", tag="Webhooks", auth="signature",
    summary="Receive a signed canonical event (Standard Webhooks)",
    description="Signed with the partner's `events` secret: headers `webhook-id`, `webhook-timestamp`, "
                "`webhook-signature` over `{id}.{timestamp}.{raw body}`. The same business fact "
                "(program, partner, object type, object id, event type) is processed once; repeats answer 200 "
                'with `"status": "duplicate"`. Body: one of the `Event.*` schemas.',
    request_schema={"oneOf": [{"$ref": f"#/components/schemas/Event.{name}"} for name in (
        "member.signup", "lead.created", "deal.won", "order.paid", "order.refunded", "order.cancelled", "custom")]},
    body="raw",  # read only after the signature is verified, then parsed by domain.events
    headers=(("webhook-id", "Unique message id (reused on retries), printable ASCII, at most 256 characters"),
             ("webhook-timestamp", "Unix seconds when sent; within 5 minutes of the server's clock"),
             ("webhook-signature", "`v1,<base64 HMAC-SHA256 of {id}.{timestamp}.{raw body}>`, space-separated "
                                   "for several secrets")),
)
def receive_event(req: ApiRequest, partner_id: str) -> Any:
    # Imported on first use: the pipeline, rules engine and ledger are the bulk of the app's
    # import time, and a cold start for any other route should not pay for them.
    from chalicelib.services import intake

    return intake.receive(partner_id, req.headers, req.raw_body, req.ports)
