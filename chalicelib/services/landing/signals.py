"""Fraud signals of a landing invite (docs/fraud.md "Landing calls", docs/landing.md).

``POST /v1/landing/invites`` may carry the event's ``context`` block (``ip``, ``user_agent``,
``device_id``, ``payment_fingerprint``, ``shipping_address``: same schema and limits); without an
``ip`` the request's source IP (API Gateway's ``requestContext.identity.sourceIp``) is the ``ip``
signal, unless it is a loopback, unspecified or link-local address (the local run, tests). Values
are hashed at once with the pipeline's keyed hash (``risk_stage.context_refs``) and never stored or
logged; only the hashes are used:

* **recorded**: the visitor's member is added to each signal's pointer (``SignalStore.see``), like an
  event's subject, so a later event or invite from the same device, card, address or network finds
  them (one transaction, conditioned on the revisions read; a lost race reads again);
* **checked** when the invite records a referral (``ref``), against the referrer and the referrer's
  upline (the code pointer's ancestry), before the pending invite is written:

  - the visitor's device, payment fingerprint or shipping address seen with the referrer →
    ``self_referral_<kind>``, with a member above the referrer → ``self_referral_upline`` (rejected:
    the pending invite carries the code, the pipeline rejects that candidate with it);
  - IP + user agent seen with the referrer within ``same_network_hours`` →
    ``same_network_as_referrer``; more than ``friends_per_signal`` invites of one referrer from one
    IP or device (a conditional counter per referrer and signal, TTL 90 days) →
    ``many_friends_same_signal``; a device or card voided as fraud → ``signal_voided_as_fraud`` (held:
    the pipeline holds the rewards of the event that credits this invite).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from chalicelib.domain import attribution
from chalicelib.domain import signals as domain_signals
from chalicelib.domain.errors import ValidationFailed
from chalicelib.domain.events import Context
from chalicelib.logs import get_logger
from chalicelib.services import ports

if TYPE_CHECKING:
    from chalicelib.store.signals import SignalItem, SignalRef

log = get_logger("sarafan.landing")
#: Invite-time signals counted per referrer (as the risk stage counts friends): an IP or a device.
COUNTED = ("ip", "device")
FRIENDS_TTL = timedelta(days=90)
RECORD_ATTEMPTS = 3


@dataclass
class InviteRisk:
    """What the invite-time checks found: a rejecting reason (``code`` or ``self_referral_upline:<kind>``)
    and hold reasons with their descriptions (never values)."""

    reject: str | None = None
    holds: list[str] = field(default_factory=list)
    matched: list[str] = field(default_factory=list)


def _usable_request_ip(source_ip: str) -> str | None:
    try:
        address = ipaddress.ip_address(source_ip)
    except ValueError:
        return None
    if address.is_loopback or address.is_unspecified or address.is_link_local:
        return None
    return domain_signals.normalize_ip(source_ip)


def context_of(raw: Mapping[str, Any] | None, source_ip: str) -> Context | None:
    """The invite's signals: its ``context`` (schema-valid) and, when it names no IP, the request's."""
    from dataclasses import replace

    from chalicelib.domain.events.parse import parse_context

    try:
        context = parse_context(raw) if raw is not None else None
    except ValidationFailed as exc:  # the event parser's wording; the same paths
        raise ValidationFailed("Request body is invalid", details=exc.details) from None
    if context is not None and context.ip:
        return context
    request_ip = _usable_request_ip(source_ip)
    if request_ip is None:
        return context
    return replace(context, ip=request_ip) if context is not None else Context(ip=request_ip)


def refs_of(program_id: str, context: Context | None, deps: ports.Ports) -> list[SignalRef]:
    from chalicelib.services.risk_stage import context_refs

    return context_refs(program_id, context, deps)


def read_pointers(program_id: str, refs: list[SignalRef], deps: ports.Ports) -> dict[str, SignalItem]:
    """kind → the signal's pointer (consistent read; absent when never seen)."""
    return deps.signals.pointers(program_id, refs) if refs else {}


def _take_friend_slot(program_id: str, referrer_id: str, ref: SignalRef, now: datetime, limit: int,
                      deps: ports.Ports) -> bool:
    """Count this invite of the referrer from this IP/device; False when ``limit`` invites came before it."""
    return deps.signals.take_velocity_slot(program_id, f"ref#{referrer_id}", f"INVSIG#{ref.kind}#{ref.value_hash}",
                                           limit, int((now + FRIENDS_TTL).timestamp()))


def assess(program: Any, refs: list[SignalRef], pointers: dict[str, SignalItem], referrer_id: str,
           ancestors: list[str], visitor_id: str, now: datetime, deps: ports.Ports) -> InviteRisk:
    """The invite-time checks of a referral by ``referrer_id`` (see the module docstring)."""
    limits = program.program_settings.fraud
    risk = InviteRisk()
    upline = set(ancestors) - {visitor_id, referrer_id}
    for kind in attribution.REJECTING_SIGNALS:
        pointer = pointers.get(kind)
        seen = set(pointer.seen()) - {visitor_id} if pointer is not None else set()
        if referrer_id in seen:
            risk.reject = f"self_referral_{kind}"
            break
        if seen & upline:
            risk.reject = f"self_referral_upline:{kind}"
            break
    if risk.reject:
        return risk
    ip_ua = pointers.get("ip_ua")
    last = ip_ua.seen().get(referrer_id) if ip_ua is not None else None
    if last is not None and now - last <= timedelta(hours=limits.same_network_hours):
        risk.holds.append("same_network_as_referrer")
        risk.matched.append("at the invite: same IP address and browser as the referrer")
    for kind in ("device", "payment"):
        pointer = pointers.get(kind)
        if pointer is not None and pointer.fraud_at is not None:
            risk.holds.append("signal_voided_as_fraud")
            risk.matched.append(f"at the invite: {domain_signals.SIGNAL_LABELS[kind]} voided as fraud before")
    for ref in refs:
        if ref.kind in COUNTED and not _take_friend_slot(program.program_id, referrer_id, ref, now,
                                                          limits.friends_per_signal, deps):
            risk.holds.append("many_friends_same_signal")
            risk.matched.append(f"at the invite: many friends of the referrer from the same "
                                f"{domain_signals.SIGNAL_LABELS[ref.kind]}")
    risk.holds = list(dict.fromkeys(risk.holds))
    risk.matched = list(dict.fromkeys(risk.matched))
    return risk


def record(program_id: str, refs: list[SignalRef], pointers: dict[str, SignalItem], member_id: str,
           now: datetime, deps: ports.Ports) -> None:
    """Add the visitor to each signal's pointer (conditioned on the revision read; a lost race reads again)."""
    for attempt in range(RECORD_ATTEMPTS):
        if deps.signals.see(program_id, refs, pointers, member_id, now):
            return
        if attempt == RECORD_ATTEMPTS - 1:
            log.warning("invite signals not recorded: concurrent updates", extra={"program_id": program_id})
            return
        pointers = read_pointers(program_id, refs, deps)
