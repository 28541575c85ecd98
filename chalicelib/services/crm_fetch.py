"""The asynchronous CRM fetch: complete ids-only CRM events from the CRM's own API, then run the pipeline.

HubSpot's ``deal.propertyChange`` carries the deal id and stage but not the amount or the contact;
Bitrix24's events carry only ``data[FIELDS][ID]``. The webhook is acknowledged at once (verified,
deduped on the platform's event id by :func:`acknowledge`, enqueued, ``200 "queued"``); this consumer — ``@on_sqs_message`` in AWS (``api/crm_consumer.py``,
a dead-letter queue in ``infra/resources.yaml``), the same function driven by the local run —
fetches what is missing (``services.crm_http``: short timeouts, retries with backoff, documented
hosts only) and hands the canonical event to the pipeline, which dedupes on the business fact.

A permanent failure (the CRM refused the token, the object is gone) is written to the partner's
integration log and the message is dropped; a transient one raises, so SQS retries and finally
moves the message to the dead-letter queue.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from chalicelib.adapters.base import Context, Fetch, Mapped
from chalicelib.domain.errors import ValidationFailed
from chalicelib.domain.events import CanonicalEvent, parse_event
from chalicelib.domain.ids import new_id
from chalicelib.logs import get_logger
from chalicelib.services import integrations, pipeline, ports
from chalicelib.services.crm_http import PermanentFailure, Target, get_json

if TYPE_CHECKING:
    from chalicelib.store.integrations import IntegrationItem
    from chalicelib.store.tenancy import ProgramItem

log = get_logger("sarafan.crm_fetch")
FETCHING_PLATFORMS = ("hubspot", "bitrix24", "amocrm")


class Process(Protocol):
    """What runs a canonical event (``pipeline.process``); service tests pass a recorder instead."""

    def __call__(self, program: ProgramItem, partner_id: str, event: CanonicalEvent,
                 delivery_id: str | None = None) -> dict[str, Any]: ...


def enqueue(item: IntegrationItem, fetch: Fetch, deps: ports.Ports | None = None) -> None:
    message = {"v": 1, "program_id": item.program_id, "partner_id": item.partner_id, "platform": item.platform,
               "label": fetch.label, "object_type": fetch.object_type, "object_id": fetch.object_id,
               "occurred_at": fetch.occurred_at, "event_id": fetch.event_id}
    (deps or ports.current()).crm_queue.send(message)


def acknowledge(item: IntegrationItem, fetch: Fetch, now: datetime, deps: ports.Ports | None = None) -> bool:
    """Queue ``fetch`` unless the same platform event was acknowledged within the TTL.

    A conditional write keyed by (partner, platform, the platform's event id) comes first
    (``IntegrationStore.acknowledge``, TTL ``ACK_TTL_HOURS``); ``False`` for a redelivery, which is
    answered without queueing. If the queue refuses the message the marker is removed and the error
    raised, so the platform's retry gets through. Events without an id of their own (``ack_id`` is
    ``None``) are always queued; the pipeline still dedupes them on the business fact.
    """
    deps = deps or ports.current()
    store = deps.integrations
    if fetch.ack_id is not None and not store.acknowledge(item.program_id, item.partner_id, item.platform,
                                                          fetch.ack_id, now):
        log.info("crm event redelivered: not fetched again", extra={"platform": item.platform,
                                                                    "program_id": item.program_id})
        return False
    try:
        enqueue(item, fetch, deps)
    except Exception:
        if fetch.ack_id is not None:
            store.forget_ack(item.program_id, item.partner_id, item.platform, fetch.ack_id)
        raise
    return True


def _token(item: IntegrationItem, deps: ports.Ports) -> str:
    assert item.api_token is not None
    context = integrations.seal_context(item.program_id, item.partner_id, item.platform, "api_token")
    return deps.sealer.open(item.api_token, context).decode("utf-8")


def _hubspot(fetch: Fetch, token: str, ctx: Context) -> Mapped | Any:
    from chalicelib.adapters import hubspot

    auth = {"Authorization": f"Bearer {token}"}
    responses: dict[str, Any] = {}
    if fetch.object_type == "deal":
        (_, url), = hubspot.fetch_plan(fetch, ctx)
        responses["deal"] = get_json(Target("hubspot", url, auth))
        contact_id = hubspot.deal_contact_id(responses["deal"])
        if contact_id:
            responses["contact"] = get_json(Target("hubspot", hubspot.contact_url(contact_id, ctx), auth))
    else:
        responses["contact"] = get_json(Target("hubspot", hubspot.contact_url(fetch.object_id, ctx), auth))
    return hubspot.fetched_event(fetch, responses, ctx)


def _bitrix24(fetch: Fetch, webhook_url: str, ctx: Context) -> Any:
    from chalicelib.adapters import bitrix24

    base = webhook_url.rstrip("/") + "/"
    deal = get_json(Target("bitrix24", f"{base}crm.deal.get.json?id={fetch.object_id}", {}))
    fields = deal.get("result") if isinstance(deal, dict) else None
    if not isinstance(fields, dict):
        raise PermanentFailure("crm_bad_response", "crm.deal.get answered without a result")
    contact = None
    contact_id = fields.get("CONTACT_ID")
    if contact_id:
        reply = get_json(Target("bitrix24", f"{base}crm.contact.get.json?id={contact_id}", {}))
        contact = reply.get("result") if isinstance(reply, dict) else None
    return bitrix24.deal_event(fetch.object_id, fields, fetch.occurred_at, fetch.label, ctx, contact)


def _amocrm(fetch: Fetch, token: str, ctx: Context) -> Any:
    from chalicelib.adapters import amocrm

    auth = {"Authorization": f"Bearer {token}"}
    lead = get_json(Target("amocrm", amocrm.lead_url(fetch.object_id, ctx), auth))
    contact = None
    contact_id = amocrm.main_contact_id(lead)
    if contact_id:
        contact = get_json(Target("amocrm", amocrm.contact_url(contact_id, ctx), auth))
    return amocrm.fetched_event(fetch, lead, contact, ctx)


_FETCHERS = {"hubspot": _hubspot, "bitrix24": _bitrix24, "amocrm": _amocrm}


def _log_failure(item: IntegrationItem, fetch: Fetch, code: str, message: str, deps: ports.Ports) -> None:
    deps.integrations.add_log(item.program_id, item.partner_id, item.platform, new_id("ilog"), code=code,
                              message=message, object_id=fetch.object_id, at=deps.clock.now())
    log.warning("crm fetch failed permanently", extra={"platform": item.platform, "program_id": item.program_id,
                                                       "code": code})


def handle(message: Mapping[str, Any], deps: ports.Ports | None = None,
           process: Process | None = None) -> dict[str, Any]:
    """Process one queued fetch. Raises ``TransientFailure`` (or a store error) for SQS to retry."""
    deps = deps or ports.current()
    platform = str(message.get("platform"))
    item = deps.integrations.get(str(message.get("program_id")), str(message.get("partner_id")), platform)
    if item is None or item.api_token is None or platform not in FETCHING_PLATFORMS:
        log.info("crm fetch dropped: integration gone", extra={"platform": platform})
        return {"status": "dropped"}
    fetch = Fetch(label=str(message["label"]), object_type=str(message["object_type"]),
                  object_id=str(message["object_id"]), occurred_at=str(message["occurred_at"]),
                  event_id=str(message.get("event_id", "")))
    program = deps.programs.get(item.program_id)
    ctx = Context(settings=dict(item.settings or {}), currency=program.currency, now=deps.clock.now(), can_fetch=True)
    try:
        token = _token(item, deps)
        result = _FETCHERS[platform](fetch, token, ctx)
    except PermanentFailure as exc:
        _log_failure(item, fetch, exc.code, exc.message, deps)
        return {"status": "failed", "code": exc.code}
    except Exception as exc:  # a malformed CRM answer is permanent too (not our input to retry)
        from chalicelib.domain.errors import BadRequest

        if isinstance(exc, BadRequest):
            _log_failure(item, fetch, "crm_bad_response", exc.message, deps)
            return {"status": "failed", "code": "crm_bad_response"}
        raise
    if not isinstance(result, Mapped):
        log.info("crm fetch: nothing to do", extra={"platform": platform, "reason": getattr(result, "reason", "")})
        return {"status": "skipped", "reason": getattr(result, "reason", "")}
    from chalicelib.services.platform_intake import clean_identifiers

    body, _ = clean_identifiers(result.body, "RU" if program.default_locale == "ru" else "US")
    try:
        event = parse_event(body, default_region="RU" if program.default_locale == "ru" else "US", now=deps.clock.now())
    except ValidationFailed as exc:
        _log_failure(item, fetch, "invalid_event", exc.message, deps)
        return {"status": "failed", "code": "invalid_event"}
    return (process or pipeline.process)(program, item.partner_id, event, delivery_id=f"crm-fetch:{fetch.event_id}")

