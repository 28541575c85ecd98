"""The outgoing webhook sender: every minute, POST the due deliveries, signed, and schedule retries.

Due deliveries are found by Query on the sparse GSI1 time index (``WHDUE#<shard>``, sort key
``<next_attempt_at>#…``; ``store.partner_hooks.due``), never a Scan, bounded per shard and run. For each:

1. its endpoint is read (gone or disabled: the delivery is ``cancelled``);
2. it is **claimed** with a conditional update (still ``pending`` with the ``next_attempt_at`` read) that
   moves ``next_attempt_at`` a lease ahead: two overlapping runs never send one delivery twice at once,
   and a run that dies mid-way leaves the delivery due again after the lease;
3. outside the local run the target is checked again (DNS resolution now, every address public:
   ``domain.partner_hooks.check_target``) and the connection goes to the address checked (TLS still
   verifies the host name), so a DNS answer that changed since registration cannot reach an internal
   address; an unsafe target is a failed attempt (``unsafe_target``) without any request;
4. the body is POSTed with ``webhook-id`` (the delivery id, the same on every retry),
   ``webhook-timestamp`` and ``webhook-signature`` (one ``v1`` signature per valid secret: during a
   rotation both), a short timeout, no redirects followed; a 2xx answer is success;
5. the result is written conditioned on the claim: ``delivered``, or the next attempt after the
   backoff of ``domain.partner_hooks.next_attempt_at`` (1 min, 5 min, 30 min, 2 h, 5 h, 8 h, 11 h), or,
   after the 8th failed attempt (~26.6 h after the first), ``failed``: the endpoint is disabled
   (conditional: once) and its partner gets an e-mail at ``contact_email`` (the SES path of the pool
   alerts), recorded on the endpoint (``notice``). A manual retry is one attempt and disables nothing.

Times come from the one clock (``domain.clock``), so tests move it instead of sleeping. Like every job it reads
and writes the store directly (``store.partner_hooks``), not through the ports: docs/architecture.md says why.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import ssl
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from chalicelib.domain import clock, partner_hooks
from chalicelib.logs import get_logger
from chalicelib.services import partner_webhooks as service
from chalicelib.services import ports
from chalicelib.store import partner_hooks as store
from chalicelib.store.partner_hooks import (
    CANCELLED,
    DELIVERED,
    FAILED,
    PENDING,
    WebhookDeliveryItem,
    WebhookEndpointItem,
)

log = get_logger("sarafan.partner_webhooks")

#: Per socket operation (connect, each read), and for the whole request and answer.
TIMEOUT_SECONDS = 5.0
TOTAL_SECONDS = 10.0
#: How long a claimed delivery is kept from other runs (then it is due again).
LEASE = timedelta(minutes=2)
#: Due deliveries read per shard and run.
BATCH = 50
#: Parallel requests per run.
WORKERS = 8
#: Rounds of due Queries per run (a backlog is worked through within the run's budget).
MAX_ROUNDS = 20
#: A run stops claiming new deliveries after this many seconds (the rest waits for the next run).
RUN_BUDGET_SECONDS = 50.0
#: Bytes of the partner's answer read, characters kept.
READ_BYTES = 2048
USER_AGENT = "Sarafan-Webhooks/1"


@dataclass(frozen=True)
class Answer:
    status: int | None  # HTTP status, None when there was none
    error: str | None  # None on 2xx; http_status | timeout | connection_error | tls_error | unsafe_target
    text: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


Transport = Callable[[str, list[str], dict[str, str], bytes, float], Answer]


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to one checked address, with SNI and certificate verification for the URL's host name."""

    def __init__(self, host: str, port: int | None, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]


class _PinnedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, host: str, port: int | None, address: str | None, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address or self.host, self.port), self.timeout)


def http_post(url: str, addresses: list[str], headers: dict[str, str], body: bytes, timeout: float) -> Answer:
    """POST ``body``; ``addresses``: the checked addresses to connect to (empty: resolve normally)."""
    parts = urlsplit(url)
    host = (parts.hostname or "").strip("[]")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    address = addresses[0] if addresses else None
    connection: http.client.HTTPConnection
    if parts.scheme == "https":
        connection = _PinnedHTTPSConnection(host, parts.port, address or host, timeout)
    else:
        connection = _PinnedHTTPConnection(host, parts.port, address, timeout)
    # ``timeout`` bounds each socket operation; the watchdog bounds the whole exchange (a receiver
    # dripping one byte at a time cannot hold a worker for longer than TOTAL_SECONDS).
    expired = threading.Event()

    def abort() -> None:
        expired.set()
        sock = connection.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    watchdog = threading.Timer(TOTAL_SECONDS, abort)
    watchdog.daemon = True
    watchdog.start()
    try:
        connection.request("POST", path, body=body, headers={**headers, "user-agent": USER_AGENT})
        response = connection.getresponse()
        text = response.read(READ_BYTES).decode("utf-8", errors="replace")[:service.RESPONSE_CHARS]
        status = int(response.status)
    except TimeoutError:
        return Answer(None, "timeout")
    except ssl.SSLError:
        return Answer(None, "timeout" if expired.is_set() else "tls_error")
    except (OSError, http.client.HTTPException):
        return Answer(None, "timeout" if expired.is_set() else "connection_error")
    finally:
        watchdog.cancel()
        connection.close()
    if expired.is_set():
        return Answer(status, "timeout", text)
    return Answer(status, None if 200 <= status < 300 else "http_status", text)


#: How requests are made (tests may replace it; the functional tests use a real local receiver).
transport: Transport = http_post


def _target(url: str) -> tuple[list[str], str | None]:
    """(addresses to connect to, error): the send-time SSRF check, skipped by the local setting."""
    if service.allow_any_target():
        return [], None
    seen: list[str] = []

    def resolve(host: str) -> list[str]:
        found = list(service.resolve(host))
        seen.extend(found)
        return found

    try:
        clean = partner_hooks.check_target(url, resolve)
    except partner_hooks.UnsafeTarget:
        return [], "unsafe_target"
    host = (urlsplit(clean).hostname or "").strip("[]")
    return (seen or [host]), None


# --------------------------------------------------------------------------- one delivery


def _finish(item: WebhookDeliveryItem, lease_until: datetime, actions: list[Any]) -> bool:
    """Write an attempt's result if the claim is still ours."""
    return store.conditional_update(item, actions, (WebhookDeliveryItem.status == PENDING)
                                    & (WebhookDeliveryItem.next_attempt_at == lease_until))


def _cancel(item: WebhookDeliveryItem, why: str) -> str:
    D = WebhookDeliveryItem
    done = store.conditional_update(item, [D.status.set(CANCELLED), D.last_error.set(why), D.GSI1PK.remove(),
                                           D.GSI1SK.remove(), D.next_attempt_at.remove()],
                                    (D.status == PENDING) & (D.next_attempt_at == item.next_attempt_at))
    return "cancelled" if done else "skipped"


def attempt(item: WebhookDeliveryItem, endpoint: WebhookEndpointItem | None, now: datetime) -> str:
    """One attempt of one due delivery; what happened (``delivered``, ``retry``, ``failed``, ``cancelled``, ``skipped``)."""
    if endpoint is None:
        return _cancel(item, "endpoint_deleted")
    if not endpoint.enabled:
        return _cancel(item, "endpoint_disabled")
    D = WebhookDeliveryItem
    lease_until = now + LEASE
    gsi1pk, gsi1sk = store.due_key(item, lease_until)
    claimed = store.conditional_update(
        item, [D.next_attempt_at.set(lease_until), D.GSI1PK.set(gsi1pk), D.GSI1SK.set(gsi1sk)],
        (D.status == PENDING) & (D.next_attempt_at == item.next_attempt_at))
    if not claimed:
        return "skipped"  # another run has it, or it changed since the index was read
    addresses, unsafe = _target(endpoint.url)
    if unsafe:
        answer = Answer(None, unsafe)
    else:
        body = item.body.encode("utf-8")
        headers = partner_hooks.signed_request(service.signing_secrets(endpoint, now), item.delivery_id,
                                               int(now.timestamp()), body)
        answer = transport(endpoint.url, addresses, headers, body, TIMEOUT_SECONDS)
    attempts = int(item.attempts or 0) + 1
    actions: list[Any] = [D.attempts.set(attempts), D.last_attempt_at.set(now), D.last_error.remove()
                          if answer.error is None else D.last_error.set(answer.error)]
    actions.append(D.last_status_code.remove() if answer.status is None else D.last_status_code.set(answer.status))
    actions.append(D.last_response.remove() if answer.text is None else D.last_response.set(answer.text))
    log.info("partner webhook attempt", extra={"delivery_id": item.delivery_id, "endpoint_id": item.endpoint_id,
                                               "attempt": attempts, "status_code": answer.status,
                                               "error": answer.error})
    if answer.ok:
        _finish(item, lease_until, [*actions, D.status.set(DELIVERED), D.delivered_at.set(now),
                                    D.next_attempt_at.remove(), D.GSI1PK.remove(), D.GSI1SK.remove()])
        return "delivered"
    limit = int(item.max_attempts) if item.max_attempts is not None else partner_hooks.MAX_ATTEMPTS
    following = partner_hooks.next_attempt_at(attempts, now) if attempts < limit else None
    if following is not None:
        gsi1pk, gsi1sk = store.due_key(item, following)
        _finish(item, lease_until, [*actions, D.next_attempt_at.set(following), D.GSI1PK.set(gsi1pk),
                                    D.GSI1SK.set(gsi1sk)])
        return "retry"
    finished = _finish(item, lease_until, [*actions, D.status.set(FAILED), D.next_attempt_at.remove(),
                                           D.GSI1PK.remove(), D.GSI1SK.remove()])
    if finished and item.max_attempts is None:  # the whole schedule failed (not a manual retry)
        disable(endpoint, item, answer, now)
    return "failed"


# --------------------------------------------------------------------------- disable + notice


def _notice_text(endpoint: WebhookEndpointItem, item: WebhookDeliveryItem, answer: Answer,
                 partner_name: str, program_name: str) -> tuple[str, str]:
    last = f"HTTP {answer.status}" if answer.status is not None else (answer.error or "no answer")
    base = f"/v1/programs/{endpoint.program_id}/partners/{endpoint.partner_id}/webhook-endpoints/{endpoint.endpoint_id}"
    subject = f"Webhook endpoint disabled: {endpoint.url}"
    body = (f"Hello {partner_name},\n\nWe disabled your webhook endpoint {endpoint.url} in {program_name}: "
            f"{partner_hooks.MAX_ATTEMPTS} attempts to deliver {item.event_type} ({item.delivery_id}) failed over "
            f"more than 24 hours (last: {last}).\nNo more events are sent to it until you enable it again:\n"
            f"  PATCH {base}  {{\"enabled\": true}}\nThe delivery log shows what failed: GET {base}/deliveries\n"
            f"and POST {base}/deliveries/<delivery_id>/retry sends one again.\n")
    return subject, body


def disable(endpoint: WebhookEndpointItem, item: WebhookDeliveryItem, answer: Answer, now: datetime) -> bool:
    """Disable the endpoint (once: conditioned on it being enabled) and tell the partner; False if already."""
    E = WebhookEndpointItem
    won = store.conditional_update(endpoint, [E.enabled.set(False), E.disabled_reason.set("failing"),
                                              E.disabled_at.set(now), E.notice.set({"status": "sending"})],
                                   E.enabled == True)  # noqa: E712 (a DynamoDB condition)
    if not won:
        return False
    log.warning("partner webhook endpoint disabled", extra={"endpoint_id": endpoint.endpoint_id,
                                                            "delivery_id": item.delivery_id})
    status = _send_notice(endpoint, item, answer)
    store.conditional_update(endpoint, [E.notice.set({"status": status, "at": clock.iso(now),
                                                      "delivery_id": item.delivery_id})], None)
    return True


def _send_notice(endpoint: WebhookEndpointItem, item: WebhookDeliveryItem, answer: Answer) -> str:
    import html
    from email.utils import formataddr

    from chalicelib.config import get_settings
    from chalicelib.notify.port import Email
    from chalicelib.notify.sources import delivery
    from chalicelib.store import tenancy_repo

    partner = tenancy_repo.get_partner(endpoint.program_id, endpoint.partner_id, fresh=True)
    if not partner.contact_email:
        return "no_contact_email"
    program = tenancy_repo.get_program(endpoint.program_id)
    subject, text = _notice_text(endpoint, item, answer, partner.name, program.name)
    try:
        delivery().notifier.send_email(Email(
            sender=formataddr((program.name, get_settings().ses_sender)), to=partner.contact_email,
            subject=subject, text=text, html="<pre>" + html.escape(text) + "</pre>",
            sent_at=ports.current().clock.now(), tags={"kind": "webhook_disabled"}))
    except Exception as exc:
        log.warning("webhook disable notice not sent", extra={"endpoint_id": endpoint.endpoint_id,
                                                              "error_type": type(exc).__name__})
        return "failed"
    return "sent"


# --------------------------------------------------------------------------- the job


def run(now: datetime | None = None, *, workers: int = WORKERS) -> dict[str, Any]:
    """Attempt every due delivery (rounds of at most ``BATCH`` per shard, within the run's budget); counts."""
    now = now or ports.current().clock.now()
    started = time.monotonic()
    counts: dict[str, int] = {"due": 0}
    endpoints: dict[tuple[str, str, str], WebhookEndpointItem | None] = {}

    def one(d: WebhookDeliveryItem) -> str:
        if time.monotonic() - started > RUN_BUDGET_SECONDS:
            return "deferred"
        try:
            return attempt(d, endpoints[(d.program_id, d.partner_id, d.endpoint_id)], now)
        except Exception as exc:  # one delivery's trouble does not stop the others; it is due again later
            log.warning("partner webhook attempt crashed", extra={"delivery_id": d.delivery_id,
                                                                  "error_type": type(exc).__name__})
            return "error"

    for _ in range(MAX_ROUNDS):
        # Every delivery attempted (or skipped) in a round has moved past ``now``: the next round's
        # Queries find only what the previous one could not take.
        pages = [store.due(shard, now, BATCH) for shard in range(store.DUE_SHARDS)]
        due = [d for page in pages for d in page]
        counts["due"] += len(due)
        for d in due:
            key = (d.program_id, d.partner_id, d.endpoint_id)
            if key not in endpoints:
                endpoints[key] = store.get_endpoint(*key)
        if workers <= 1 or len(due) <= 1:
            results = [one(d) for d in due]
        else:
            with ThreadPoolExecutor(max_workers=min(workers, len(due)), thread_name_prefix="webhook") as pool:
                results = list(pool.map(one, due))
        for result in results:
            counts[result] = counts.get(result, 0) + 1
        if "deferred" in results or not any(len(page) >= BATCH for page in pages):
            break
    return counts
