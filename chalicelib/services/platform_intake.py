"""A shop's or CRM's webhook: authenticate, translate, hand every canonical event to the pipeline.

Order matters, as for canonical events: nothing in the delivery is read before it is
authenticated. The reads before that are configuration, all cached in-process: the partner
locator, the integration record (sealed secrets or token hashes; its secrets are unsealed with
KMS once per container) — one read more than a canonical event, at most.

Unknown partner, unknown platform and a platform not connected all answer the same 404, so
the endpoint does not tell a prober which partners or platforms exist.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import TYPE_CHECKING, Any

from chalicelib.adapters import base
from chalicelib.adapters.base import Adapter, Context, Fetch, Inbound, Mapped
from chalicelib.domain.errors import DomainError, NotFound, ValidationFailed
from chalicelib.domain.events import parse_event
from chalicelib.domain.identity import normalize_email, normalize_phone
from chalicelib.logs import get_logger
from chalicelib.services import integrations, pipeline, ports

if TYPE_CHECKING:
    from chalicelib.services.crm_fetch import Process
    from chalicelib.store.integrations import IntegrationItem

log = get_logger("sarafan.platforms")


def not_found() -> NotFound:
    return NotFound("Unknown webhook endpoint")


def _integration(partner_id: str, platform: str, deps: ports.Ports) -> tuple[Adapter, IntegrationItem]:
    from chalicelib import adapters

    adapter = adapters.get(platform)
    if adapter is None:
        raise not_found()
    try:
        program_id = deps.programs.partner_program(partner_id)
    except NotFound:
        raise not_found() from None
    item = deps.integrations.get(program_id, partner_id, platform)
    if item is None:
        raise not_found()
    return adapter, item


def _authenticate(adapter: Adapter, item: IntegrationItem, inbound: Inbound, token: str | None,
                  ctx: Context, deps: ports.Ports) -> None:
    now = ctx.now
    if adapter.auth == "token":
        presented = hashlib.sha256((token or "").encode("utf-8")).hexdigest()
        ok = False
        for entry in integrations._valid(list(item.tokens or []), now):  # every one compared: constant time
            ok |= hmac.compare_digest(presented, str(entry.get("sha256", "")))
        if not token or not ok:
            raise base.unauthorized("The webhook URL token is missing or invalid")
        return
    context = integrations.seal_context(item.program_id, item.partner_id, item.platform, "secret")
    secrets: list[bytes] = []
    for entry in integrations._valid(list(item.secrets or []), now):
        try:
            secrets.append(deps.sealer.open(entry["sealed"], context))
        except ValueError:
            log.error("integration secret cannot be unsealed", extra={"platform": item.platform,
                                                                      "program_id": item.program_id})
    if not secrets:
        raise base.unauthorized("No valid secret is configured for this platform")
    adapter.verify(inbound, secrets, ctx)


def clean_identifiers(body: dict[str, Any], region: str) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """A platform relays what shoppers typed: an unusable e-mail or phone is dropped with a warning,
    not a reason to lose the order (the other identifiers may still attribute it)."""
    customer = body.get("customer")
    if not isinstance(customer, dict):
        return body, []
    cleaned = dict(customer)
    warnings: list[dict[str, str]] = []
    for name, normalise in (("email", lambda v: normalize_email(v, path="$.customer.email")),
                            ("phone", lambda v: normalize_phone(v, region, path="$.customer.phone"))):
        if cleaned.get(name) is None:
            continue
        try:
            normalise(cleaned[name])
        except ValidationFailed as exc:
            warnings.extend(exc.details.get("errors", []))
            del cleaned[name]
    return {**body, "customer": cleaned}, warnings


def receive(partner_id: str, platform: str, inbound: Inbound, token: str | None, deps: ports.Ports | None = None,
            process: Process | None = None) -> dict[str, Any]:
    """``process`` runs each canonical event (default ``pipeline.process``)."""
    deps = deps or ports.current()
    adapter, item = _integration(partner_id, platform, deps)
    program = deps.programs.get(item.program_id)
    from chalicelib.services import crm_fetch

    can_fetch = (item.api_token is not None and platform in crm_fetch.FETCHING_PLATFORMS
                 and deps.crm_queue.enabled())
    ctx = Context(settings=dict(item.settings or {}), currency=program.currency, now=deps.clock.now(),
                  can_fetch=can_fetch)
    _authenticate(adapter, item, inbound, token, ctx, deps)

    translation = adapter.translate(inbound, ctx)
    reply: dict[str, Any] = {"platform": platform, "delivery_id": translation.delivery_id}
    if translation.ignored is not None:
        return {"status": "ignored", **reply, "reason": translation.ignored, "events": []}

    region = "RU" if program.default_locale == "ru" else "US"
    mapped = [i for i in translation.items if isinstance(i, Mapped)]
    events: list[dict[str, Any]] = []
    for item_ in translation.items:
        if isinstance(item_, Fetch):
            # Acknowledged now; the CRM is asked for what the event lacks by the queue's consumer.
            # A redelivery of the same platform event (its id within the acknowledgement TTL) is not
            # queued, so the CRM is not asked twice.
            if not crm_fetch.acknowledge(item, item_, ctx.now, deps):
                events.append({"label": item_.label, "status": "duplicate",
                               "reason": "this event was already acknowledged and queued"})
                continue
            events.append({"label": item_.label, "status": "queued",
                           "reason": f"the {item_.object_type} is fetched from the CRM before processing"})
            continue
        if not isinstance(item_, Mapped):
            events.append({"label": item_.label, "status": "skipped", "reason": item_.reason})
            continue
        body, warnings = clean_identifiers(item_.body, region)
        try:
            event = parse_event(body, default_region=region, now=ctx.now)
        except ValidationFailed as exc:
            if len(mapped) == 1:
                raise base.malformed("the payload does not make a valid event",
                                     errors=exc.details.get("errors", [])) from None
            events.append({"label": item_.label, "status": "rejected",
                           "error": {"code": exc.code, "message": exc.message, "details": exc.details}})
            continue
        try:
            result = (process or pipeline.process)(program, partner_id, event, delivery_id=translation.delivery_id)
        except DomainError as exc:
            if len(mapped) == 1:
                raise
            # One bad event of a batch (HubSpot sends up to 100) does not lose the others; a
            # transient failure still fails the delivery so the platform retries (dedupe makes that safe).
            if exc.status >= 500:
                raise
            events.append({"label": item_.label, "status": "rejected",
                           "error": {"code": exc.code, "message": exc.message, "details": exc.details}})
            continue
        if warnings:
            result = {**result, "warnings": warnings}
        events.append({"label": item_.label, **result})
    statuses = {e["status"] for e in events}
    if "processed" in statuses:
        status = "processed"
    elif "queued" in statuses:
        status = "queued"
    elif statuses == {"duplicate"} or statuses == {"duplicate", "skipped"}:
        status = "duplicate"
    elif "rejected" in statuses:
        status = "partial"
    else:
        status = "ignored"
    conflicts = [e["conflict"] for e in events if e.get("conflict")]
    out = {"status": status, **reply, "events": events}
    if conflicts:
        out["conflict"] = conflicts[0] if len(conflicts) == 1 else {"events": conflicts}
    log.info("platform webhook", extra={"platform": platform, "program_id": item.program_id, "status": status,
                                         "events": len(events)})
    return out
