"""Ports: what the services need from the outside world, as typed interfaces.

Each port has a production implementation (PynamoDB/DynamoDB, the master key, the system clock)
and an in-memory fake beside it (``chalicelib/store/fakes.py``); one contract test suite runs
against both (``tests/contract/``), so the fakes cannot drift from the real thing. The set is
built once where the app is wired (``app.py`` → :func:`use`, default :func:`production`) and
reaches services as an argument (views pass ``req.ports``); a service test builds
``ports.fakes(now)`` and calls the service directly, without moto.

The notifier port (e-mail/SMS/push) lives with the notifications in ``chalicelib/notify/``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, Protocol

from chalicelib.domain.records import Cursor, NewKey, NewMember, Page, PendingInvite, StaleMember

if TYPE_CHECKING:
    from chalicelib.store.counters import ClickTotalItem
    from chalicelib.store.data_rights import ErasureItem
    from chalicelib.store.events import AttributionRecordItem, EventItem
    from chalicelib.store.integrations import IntegrationItem, IntegrationLogItem
    from chalicelib.store.ledger import (
        AdjustmentItem,
        BalanceItem,
        LedgerEntryItem,
        OutboxItem,
        RedemptionItem,
        RulesVersionItem,
    )
    from chalicelib.store.members import CodeItem, IdentityRef, LinkItem, MemberItem
    from chalicelib.store.offers import OfferItem, PoolHeadItem
    from chalicelib.store.partner_hooks import WebhookDeliveryItem, WebhookEndpointItem
    from chalicelib.store.review import ReviewItem
    from chalicelib.store.settlement import SettlementRowItem
    from chalicelib.store.signals import SignalItem, SignalRef
    from chalicelib.store.tenancy import ApiKeyItem, ApiKeyRefItem, PartnerItem, ProgramItem
    from chalicelib.store.tiers import TierChangeItem, TierStateItem

__all__ = ["Cursor", "NewKey", "NewMember", "Page", "PendingInvite", "Ports", "StaleMember"]


class Clock(Protocol):
    """The one clock: signatures, secrets, holding, windows, consumers and jobs all ask it (``domain.clock``:
    ``SystemClock`` in production, ``ManualClock`` where tests move time). Nothing else reads the time."""

    def now(self) -> datetime: ...


class RateLimiter(Protocol):
    def take(self, scope: str, window: str, limit: int, expires_at_epoch: int) -> bool:
        """Count one request in ``(scope, window)`` unless ``limit`` is reached; False when full."""
        ...


class Secrets(Protocol):
    def derive_key(self, purpose: str) -> bytes:
        """A 32-byte key for one purpose, derived from the master key."""
        ...

    def webhook_secret(self, program_id: str, partner_id: str, source: str, version: int) -> str: ...


class MemberStore(Protocol):
    def get(self, program_id: str, member_id: str, *, consistent: bool = True) -> MemberItem | None:
        """The profile; ``consistent=False`` for reads that may be a moment behind (half the read cost)."""
        ...

    def codes_of(self, member: MemberItem) -> list[str]:
        """The member's current referral code, then earlier ones (they keep working after a vanity change)."""
        ...

    def code_pointer(self, program_id: str, code: str, *, consistent: bool = False) -> CodeItem | None:
        """Who holds a referral code (normalised), current or earlier, with the first name landing pages show."""
        ...

    def identity_refs(self, program_id: str, *, email: str | None = None,
                      phone: str | None = None) -> list[IdentityRef]:
        """The keyed hashes of a person's canonical identifiers (e-mail by its match key), as pointers are stored."""
        ...

    def identity_owner(self, program_id: str, refs: Sequence[IdentityRef]) -> str | None:
        """The member holding the first of ``refs`` that has a pointer (one consistent ``BatchGetItem``), or None."""
        ...

    def create_member(self, member: NewMember, refs: Sequence[IdentityRef]) -> MemberItem | None:
        """One transaction: the profile, a pointer per identifier in ``refs``, the code pointer and the short link, each
        created only if absent. The profile as stored, or None (nothing written) when any of them exists: the person
        was created concurrently (read again) or the code is taken (draw another). With ``member.ref_member_id``
        also her back-reference per identifier (no TTL), and a ``ConditionCheck`` that her erasure has not started:
        ``MemberErased`` (naming her) when it has, nothing written."""
        ...

    def put_pending_invite(self, program_id: str, ref: IdentityRef, invite: PendingInvite, *,
                           first_touch_since: datetime | None = None, keep_ref: bool = False) -> bool:
        """Write the pending invite of one identifier and the referrer's back-reference (``keys.invite_ref``) in one
        transaction, with a ``ConditionCheck`` that the referrer's erasure has not started. With
        ``first_touch_since`` an earlier invite by another referrer made at or after it is kept. False (nothing
        written) when either condition fails. The back-reference expires with the invite unless ``keep_ref`` (the
        visitor's profile names the referrer's code: ``acquisition.ref``)."""
        ...

    def find_by_identity(self, program_id: str, *, email: str | None = None, phone: str | None = None,
                         customer_id: tuple[str, str] | None = None) -> str | None:
        """The member id behind one canonical identifier (give exactly one), or None."""
        ...

    def referrals(self, program_id: str, member_id: str, limit: int, cursor: Cursor | None) -> Page[MemberItem]:
        """The members ``member_id`` brought, newest first (one ``Query`` on the referrer's list)."""
        ...

    def referral_position(self, member: MemberItem) -> str | None:
        """A referral's place in its referrer's list, compact (a signed cursor carries it)."""
        ...

    def referrals_after(self, program_id: str, member_id: str, limit: int,
                        position: str | None) -> Page[MemberItem]:
        """:meth:`referrals` from just after ``position`` (``None``: from the newest)."""
        ...

    def clicks_and_balance(self, program_id: str, member_id: str,
                           codes: Sequence[str]) -> tuple[list[ClickTotalItem], BalanceItem | None]:
        """The click totals of ``codes`` and the member's balance: one ``BatchGetItem``."""
        ...

    def erasure_record(self, program_id: str, member_id: str) -> ErasureItem | None: ...

    def short_link(self, code: str) -> LinkItem | None:
        """Where ``/r/{code}`` points (codes are unique across the deployment)."""
        ...

    def count_click(self, program_id: str, code: str, day: str, utm_source: str) -> None:
        """One click on ``code``'s link: the day's counter and the code's total (per source, bounded);
        concurrent clicks are never lost."""
        ...

    def change_code(self, member: MemberItem, code: str) -> None:
        """Give ``member`` the (valid, normalised) ``code``; the old one keeps working. One transaction.

        Raises ``Conflict`` (``code_taken``) when another member holds the code in any program (short links
        are deployment-wide), ``MemberErased`` (409) when the member read is erased, ``StaleMember`` when the
        member changed since it was read (its erasure started, say: the update is conditioned on ``erased_at``
        not existing)."""
        ...

    def coupon_owner(self, program_id: str, code: str) -> str | None: ...

    def coupons_of(self, member: MemberItem) -> list[str]: ...

    def add_coupon(self, member: MemberItem, code: str) -> bool:
        """Register ``code`` for ``member`` (unique per program); False if it already was theirs.

        Raises ``Conflict`` (``coupon_taken``, ``too_many_coupons``) when another member holds it or the
        member has the maximum, ``MemberErased`` when the member read is erased, ``StaleMember`` when the
        member changed since it was read (or its erasure started)."""
        ...

    def remove_coupon(self, member: MemberItem, code: str) -> None:
        """Raises ``NotFound`` when the code is not the member's."""
        ...


class ProgramStore(Protocol):
    """Programs and partners: configuration, read through the in-process cache."""

    def get(self, program_id: str, *, fresh: bool = False) -> ProgramItem:
        """Raises ``NotFound`` for an unknown program; ``fresh`` skips the cache."""
        ...

    def partner(self, program_id: str, partner_id: str, *, fresh: bool = False) -> PartnerItem:
        """Raises ``NotFound`` for a partner the program does not have; ``fresh`` skips the cache."""
        ...

    def allowed_origins(self) -> frozenset[str]:
        """Every ``allowed_origins`` entry of every program, as stored (cached like the configuration)."""
        ...

    def existing_partners(self, program_id: str, partner_ids: set[str]) -> set[str]:
        """Which of ``partner_ids`` are partners of the program (one ``BatchGetItem`` per 100)."""
        ...

    def webhook_config(self, partner_id: str) -> tuple[PartnerItem, ProgramItem]:
        """A webhook's partner (its secret versions) and its program, found by the partner id alone; on a cold
        container one ``BatchGetItem`` for both after the locator. Raises ``NotFound``."""
        ...

    def api_key(self, key_hash: str) -> ApiKeyItem | None:
        """The partner or publishable key stored under the SHA-256 of the presented key (cached)."""
        ...

    def partner_program(self, partner_id: str) -> str:
        """The program a partner belongs to, by the partner id alone (the locator; the mapping never changes, so
        it is cached for an hour). Raises ``NotFound`` for an unknown partner."""
        ...

    # -- administration (services.programs)

    def programs(self, limit: int, cursor: Cursor | None) -> Page[ProgramItem]:
        """Every program, newest first (one ``Query`` on the listing index, at most ``limit``)."""
        ...

    def create_program(self, fields: Mapping[str, Any], key: NewKey) -> tuple[ProgramItem, ApiKeyRefItem]:
        """One transaction: the program (``fields``: its attributes, ``program_id`` and ``created_at`` included)
        and its publishable ``key``. Raises ``Conflict`` ``key_collision`` if the key hash exists."""
        ...

    def update_program(self, program: ProgramItem, changes: Mapping[str, Any]) -> ProgramItem:
        """Set the ``changes`` (a ``None`` value removes the attribute) and bump the revision, conditioned on the
        revision read in ``program``; the cache forgets the program. Returns it as now stored.
        Raises ``Conflict`` ``concurrent_update`` when it changed since it was read."""
        ...

    def create_partner(self, fields: Mapping[str, Any], key: NewKey) -> tuple[PartnerItem, ApiKeyRefItem]:
        """One transaction: the partner, its locator (partner id → program) and its first API ``key``."""
        ...

    def partners(self, program_id: str, limit: int, cursor: Cursor | None) -> Page[PartnerItem]:
        """One page of the program's partners in id order (one ``Query``, at most ``limit``)."""
        ...

    def update_partner(self, partner: PartnerItem, changes: Mapping[str, Any]) -> PartnerItem:
        """Set the ``changes`` (``None`` removes) on an existing partner; the cache forgets it. Raises ``NotFound``."""
        ...

    def set_webhook_secrets(self, partner: PartnerItem, webhook_secrets: dict[str, Any]) -> None:
        """Replace the secret versions, conditioned on them being what ``partner`` read; the cache forgets it.
        Raises ``NotFound`` ``concurrent_update`` otherwise."""
        ...

    def add_key(self, key: NewKey) -> ApiKeyRefItem:
        """Store another key of an existing partner (one transaction with the check). Raises ``NotFound``."""
        ...

    def key_refs(self, program_id: str, limit: int, cursor: Cursor | None) -> Page[ApiKeyRefItem]:
        """One page of the program's key references (never the keys), in id order."""
        ...

    def key_ref(self, program_id: str, key_id: str) -> ApiKeyRefItem:
        """Raises ``NotFound`` for a key the program does not have."""
        ...

    def revoke_key(self, ref: ApiKeyRefItem) -> None:
        """Revoke the key and its reference in one transaction; the key cache forgets it. Raises ``NotFound``."""
        ...

    def offer_exists(self, program_id: str, partner_id: str, offer_id: str) -> bool:
        """Whether the partner has that offer (archived ones included)."""
        ...

    def existing_offers(self, program_id: str, offers: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        """Which of the ``(partner_id, offer_id)`` pairs are offers of the program (one ``BatchGetItem`` per 100)."""
        ...

    # -- rules documents (services.rules)

    def rules_key(self, program_id: str, version: int) -> tuple[str, str]:
        """Where a rules version is stored: the key a batch read (the pipeline's first read) fetches it by."""
        ...

    def rules_version(self, program_id: str, version: int,
                      items: Mapping[tuple[str, str], Any] | None = None) -> RulesVersionItem | None:
        """One version of the program's rules: from ``items`` (a batch read's result) when there, else one read."""
        ...

    def put_rules(self, program: ProgramItem, document: dict[str, Any], at: datetime) -> RulesVersionItem:
        """One transaction: the next version (``program.rules_version`` + 1, never rewritten) and the program's
        pointer to it, conditioned on the pointer being what ``program`` read; the cache forgets the program.
        Raises ``Conflict`` ``concurrent_update`` otherwise."""
        ...


class IntegrationStore(Protocol):
    """A partner's connections to shop/CRM platforms (``services.integrations``), read through the config cache."""

    def get(self, program_id: str, partner_id: str, platform: str, *, fresh: bool = False) -> IntegrationItem | None:
        ...

    def save(self, fields: Mapping[str, Any], expected_revision: int | None) -> IntegrationItem:
        """Create (``expected_revision`` None) or replace the revision read; the cache forgets it.
        Raises ``Conflict`` ``concurrent_update`` when it exists (create) or changed (replace)."""
        ...

    def delete(self, item: IntegrationItem) -> None:
        """Raises ``Conflict`` ``concurrent_update`` when it is already gone; the cache forgets it."""
        ...

    def log(self, program_id: str, partner_id: str, platform: str, limit: int,
            cursor: Cursor | None) -> Page[IntegrationLogItem]:
        """One page of the connection's log, newest first (one ``Query``, at most ``limit``)."""
        ...

    def add_log(self, program_id: str, partner_id: str, platform: str, entry_id: str, *, code: str, message: str,
                object_id: str | None, at: datetime) -> None:
        """Append an entry to the connection's log (``message`` cut to 500 characters; kept ``LOG_TTL_DAYS``)."""
        ...

    def acknowledge(self, program_id: str, partner_id: str, platform: str, event_id: str, at: datetime) -> bool:
        """Remember a platform's event id for ``ACK_TTL_HOURS`` (one conditional write): False when it was
        acknowledged before and has not expired (a redelivery); an expired marker does not count."""
        ...

    def forget_ack(self, program_id: str, partner_id: str, platform: str, event_id: str) -> None:
        """Undo :meth:`acknowledge` (the event could not be queued: the platform's retry must get through)."""
        ...


class FetchQueue(Protocol):
    """The CRM fetch queue (SQS in AWS): ids-only CRM events wait here for ``services.crm_fetch.handle``."""

    def enabled(self) -> bool:
        """Whether a queue is configured (``SARAFAN_CRM_FETCH_QUEUE_URL``); without one nothing is fetched."""
        ...

    def send(self, message: Mapping[str, Any]) -> None:
        """Queue one message (JSON). Raises when the queue refuses it."""
        ...


class OfferStore(Protocol):
    """Partners' offers and their code pools (``services.offers``); issuing vouchers is the pipeline's."""

    def offer(self, program_id: str, partner_id: str, offer_id: str) -> OfferItem | None:
        """The offer (archived ones too: the caller decides), or None."""
        ...

    def heads(self, program_id: str, offer_id: str) -> dict[int, PoolHeadItem | None]:
        """The pool's shard heads (size appended, next issued) by shard: one ``BatchGetItem``."""
        ...

    def create_offer(self, fields: Mapping[str, Any]) -> OfferItem:
        """Store a new offer (``fields``: its attributes, ids and times included), conditioned on the partner existing.
        Raises ``NotFound`` (partner) or ``Conflict`` (an id collision)."""
        ...

    def offers(self, program_id: str, partner_id: str, limit: int, cursor: Cursor | None) -> Page[OfferItem]:
        """One page of the partner's offers not archived (a filter: archived ones are read and left out, reading
        on until ``limit`` are found); ``next_cursor`` None: no more."""
        ...

    def update_offer(self, offer: OfferItem, changes: Mapping[str, Any], at: datetime, *,
                     new_alert_epoch: bool = False) -> None:
        """Set the ``changes`` (``None`` removes), ``updated_at`` and the next revision on ``offer`` (also in place),
        conditioned on the revision read and the offer not archived; ``new_alert_epoch`` counts a new threshold.
        Raises ``Conflict`` ``concurrent_update`` otherwise."""
        ...

    def archive_offer(self, offer: OfferItem, at: datetime) -> None:
        """Archived and disabled (no more vouchers from it), the revision bumped."""
        ...

    def codes_present(self, program_id: str, offer_id: str,
                      codes: Sequence[str]) -> tuple[dict[int, PoolHeadItem | None], list[str]]:
        """The pool's heads and which of ``codes`` are already in it (free or issued): one ``BatchGetItem``."""
        ...

    def append_codes(self, program_id: str, offer_id: str, codes: Sequence[str], sizes: Mapping[int, int],
                     at: datetime) -> dict[int, int]:
        """Append ``codes`` (at most ``OFFER_CODES_PER_WRITE``) to their shards after ``sizes`` (the heads read),
        codes and slots unique, in one transaction conditioned on every head still having that size. Returns
        the new sizes. Raises ``Conflict`` ``concurrent_upload`` or ``ValidationFailed``
        ``codes_already_present`` when the pool changed meanwhile (nothing written)."""
        ...

    def bump_alert_epoch(self, offer: OfferItem) -> None:
        """The pool was refilled above its threshold: the next fall below it is a new alert."""
        ...


#: Codes per ``append_codes`` transaction: 2 items per code + up to 8 shard heads stay within 100.
OFFER_CODES_PER_WRITE = 40


class LedgerStore(Protocol):
    def balance(self, program_id: str, member_id: str) -> BalanceItem | None: ...

    def account(self, program_id: str, member_id: str) -> tuple[MemberItem | None, BalanceItem | None]:
        """The member's profile and balance in one read (either may be missing)."""
        ...

    def entries(self, program_id: str, member_id: str, limit: int, cursor: Cursor | None) -> Page[LedgerEntryItem]:
        """One page of the member's ledger, newest first (one ``Query``, at most ``limit`` entries)."""
        ...

    def balances(self, program_id: str, member_ids: Sequence[str]) -> dict[str, BalanceItem]:
        """The balances of a page of members by member id (one ``BatchGetItem`` per 100; none: absent)."""
        ...

    def booked(self, program_id: str, day: str, limit: int, cursor: Cursor | None) -> Page[LedgerEntryItem | EventItem]:
        """One page of a booking day's ledger index (``YYYY-MM-DD``), in booking order: entries, and event records
        that index their rewards (:meth:`entries_of`). ``next_cursor`` None: the day is done."""
        ...

    def entries_of(self, booked: LedgerEntryItem | EventItem) -> list[LedgerEntryItem]:
        """A booked row's entries: the entry itself, or an event record's reward entries (one read)."""
        ...

    def cursor_after(self, booked: LedgerEntryItem | EventItem) -> Cursor:
        """Where :meth:`booked` resumes just after ``booked`` (a page that stops inside a query page)."""
        ...

    def settlement_rows(self, program_id: str, start: date, end: date, limit: int) -> Iterator[SettlementRowItem]:
        """The settlement aggregate rows of the booking days ``start``..``end`` (inclusive), in day order, at most
        ``limit`` (one paged Query that reads no more)."""
        ...

    def redemption(self, program_id: str, redemption_id: str) -> RedemptionItem | None: ...

    def redeem(self, program_id: str, member_id: str, redemption_id: str, *, partner_id: str | None, points: int,
               value_minor: int, currency: str, order_id: str | None, order_amount: int | None, request_hash: str,
               reason: str, at: datetime) -> tuple[RedemptionItem, bool]:
        """One transaction: create the redemption (``held``) and its ``redemption`` ledger entry (``reason``), and
        debit the balance, conditioned on the member existing and ``available >= points`` (never overdrawn).

        ``(redemption, True)`` when written; ``(the stored one, False)`` when this id already existed (a retried
        request: nothing written). Raises ``NotFound`` for an unknown member, ``Conflict``
        ``insufficient_points`` (``details.available``), or ``concurrent_update`` while a retry's original is
        still being written."""
        ...

    def adjust(self, program_id: str, member_id: str, adjustment_id: str, *, points: int, reason: str,
               partner_id: str | None, created_by: str, request_hash: str,
               at: datetime) -> tuple[AdjustmentItem, bool]:
        """One transaction: the adjustment record, its ``adjustment`` ledger entry and the balance change,
        conditioned on the member existing. A credit repays ``owed`` first; a debit needs ``available >= -points``.

        ``(record, True)`` when written, ``(the stored one, False)`` for a retried id. Raises ``NotFound`` (member),
        ``Conflict`` ``insufficient_points`` (``details.available``) or ``concurrent_update``."""
        ...

    def confirm_redemption(self, redemption: RedemptionItem, at: datetime) -> None:
        """``held`` → ``confirmed``; raises ``Conflict`` ``concurrent_update`` if it is no longer held."""
        ...

    def cancel_redemption(self, redemption: RedemptionItem, balance: BalanceItem | None, at: datetime,
                          reason: str, partner_id: str | None) -> None:
        """→ ``cancelled`` with a ``redemption_return`` entry crediting the points back (repaying ``owed`` first,
        as read in ``balance``), in one transaction conditioned on the status and the balance read; raises
        ``Conflict`` ``concurrent_update`` otherwise."""
        ...


class TierStore(Protocol):
    def state(self, program_id: str, member_id: str) -> TierStateItem | None: ...

    def history(self, program_id: str, member_id: str, limit: int) -> list[TierChangeItem]:
        """The member's last tier changes, newest first (one bounded ``Query``)."""
        ...


class EventStore(Protocol):
    def get(self, program_id: str, business_key: str) -> EventItem | None:
        """The stored record (and reply) of a processed business fact."""
        ...

    def attributions(self, program_id: str, member_id: str, limit: int,
                     cursor: Cursor | None) -> Page[AttributionRecordItem]:
        """Why the member's conversions were credited or rejected, newest first."""
        ...

    def code_attributions(self, program_id: str, code: str, limit: int,
                          cursor: Cursor | None) -> Page[AttributionRecordItem]:
        """The records naming ``code`` (also codes nobody holds), newest first."""
        ...


class SignalStore(Protocol):
    """Fraud signals' pointers (a signal's keyed hash → the members recently seen with it) and the velocity counters
    of the landing's invite checks (``services.landing``; the pipeline's stages write theirs in the event's transaction)."""

    def pointers(self, program_id: str, refs: Sequence[SignalRef]) -> dict[str, SignalItem]:
        """kind → the signal's pointer (one consistent ``BatchGetItem``; absent when never seen)."""
        ...

    def see(self, program_id: str, refs: Sequence[SignalRef], read: Mapping[str, SignalItem], member_id: str,
            at: datetime) -> bool:
        """Add ``member_id`` to each signal's pointer (bounded, rewritten at most hourly per member: ``store.signals``)
        in one transaction: created where ``read`` has none, else conditioned on the revision read. False, nothing
        written, when one changed since it was read (read again); ``MemberErased``, nothing written, when the member's
        erasure has started (checked in the same transaction)."""
        ...

    def take_velocity_slot(self, program_id: str, scope: str, window: str, limit: int, expires_at_epoch: int) -> bool:
        """Count one hit on the bounded counter ``(scope, window)`` (one conditional ADD; DynamoDB's TTL removes it at
        ``expires_at_epoch``); False, nothing written, when ``limit`` hits came before."""
        ...


class Outbox(Protocol):
    def pending(self, day: str, limit: int) -> Sequence[OutboxItem]:
        """Messages queued on ``day`` (UTC ``YYYY-MM-DD``) not yet delivered, oldest first."""
        ...

    def mark_sent(self, message: OutboxItem, at: datetime) -> bool:
        """Take the message off the pending list; False if someone else already did."""
        ...


class Sealer(Protocol):
    """Envelope encryption of the secrets we must use or show again (production: KMS, ``services.envelope``)."""

    def seal(self, plaintext: str, context: Mapping[str, str]) -> dict[str, str]:
        """``plaintext`` sealed for ``context`` (JSON-ready: safe to store)."""
        ...

    def open(self, sealed: Mapping[str, str], context: Mapping[str, str]) -> bytes:
        """The plaintext of a sealed value; raises ``ValueError`` when tampered or sealed for another context."""
        ...


class WebhookStore(Protocol):
    """Partners' outgoing webhook endpoints and their delivery log (``services.partner_webhooks``); sending is the
    job's (``jobs.partner_webhooks``)."""

    def endpoint(self, program_id: str, partner_id: str, endpoint_id: str) -> WebhookEndpointItem | None:
        """The partner's endpoint (consistent read), or None."""
        ...

    def endpoints(self, program_id: str, partner_id: str) -> list[WebhookEndpointItem]:
        """The partner's endpoints (one bounded ``Query``: at most ``MAX_ENDPOINTS`` + 1)."""
        ...

    def create_endpoint(self, fields: Mapping[str, Any]) -> WebhookEndpointItem:
        """One transaction: the endpoint (``fields``: its attributes, ids, secrets and times included), the partner's
        endpoint count + 1 conditioned on staying within ``MAX_ENDPOINTS``, and the partner existing. Raises
        ``NotFound`` (partner), ``Conflict`` (an id collision) or ``ValidationFailed`` ``too_many_endpoints``."""
        ...

    def update_endpoint(self, endpoint: WebhookEndpointItem, changes: Mapping[str, Any], at: datetime) -> None:
        """Set the ``changes`` (``None`` removes), ``updated_at`` and the next revision (also on ``endpoint``),
        conditioned on the revision read. Raises ``Conflict`` ``concurrent_update`` otherwise (or when it is gone)."""
        ...

    def delete_endpoint(self, endpoint: WebhookEndpointItem) -> None:
        """Delete it conditioned on the revision read, the partner's count - 1 in the same transaction.
        Raises ``Conflict`` ``concurrent_update`` otherwise."""
        ...

    def deliveries(self, program_id: str, endpoint_id: str, limit: int,
                   cursor: Cursor | None) -> Page[WebhookDeliveryItem]:
        """One page of the endpoint's delivery log, newest first (one ``Query``, at most ``limit``)."""
        ...

    def delivery(self, program_id: str, endpoint_id: str, delivery_id: str) -> WebhookDeliveryItem | None: ...

    def retry_delivery(self, delivery: WebhookDeliveryItem, at: datetime) -> bool:
        """``pending`` again, due at ``at``, allowed one more attempt than were made (also on ``delivery``),
        conditioned on the status read; False when it changed meanwhile (nothing written)."""
        ...


class DataRightsStore(Protocol):
    """A member's erasure (``services.erasure``: bounded steps, each one transaction that also advances the audit
    record conditioned on its revision) and export (``services.member_export``). Steps after ``pointers`` and
    ``profile`` are the registered erasable kinds (``store.erasure_kinds``). Every write raises ``StaleErasure``
    (``domain.records``) when the record, the profile or an item scrubbed changed since read: nothing was written."""

    def requests(self, program_id: str, limit: int, cursor: Cursor | None) -> Page[ErasureItem]:
        """Members' own requests not confirmed yet, oldest first (one ``Query`` of a sparse index)."""
        ...

    def request(self, program_id: str, member_id: str, at: datetime) -> ErasureItem | None:
        """Record the member's own request (``requested`` by ``member``, on the requests list) unless the member
        has an erasure record already: then None (nothing written)."""
        ...

    def start(self, member: MemberItem, requested: ErasureItem | None, actor: str, at: datetime,
              actor_key: str | None = None) -> ErasureItem:
        """The record in progress at step ``pointers``, with what the steps need once the profile is gone (codes,
        identifier hashes, the pointers to delete) and who confirmed it (``actor``: the key kind, ``actor_key``:
        its id); conditioned on the request read (``requested``) or on there being no record. In the same
        transaction the profile gets ``erased_at`` (conditioned on the revision read, which it advances): the
        pointer list is the profile's exactly, and every later write conditioned on ``erased_at`` not existing
        (``MemberStore.change_code``, ``add_coupon``, events, devices, notifications) fails."""
        ...

    def kinds(self) -> list[str]:
        """The registered erasable kinds, in order: the steps after ``pointers`` and ``profile``."""
        ...

    def erase_pointers(self, record: ErasureItem, limit: int, then: str, at: datetime) -> tuple[ErasureItem, int]:
        """One transaction: the next ``limit`` pointers of the record's list deleted (those still the member's),
        each identifier tombstoned and invites waiting for it deleted; the record advanced (to step ``then`` when
        the list is done). Returns the record as now stored and the pointers handled."""
        ...

    def erase_profile(self, record: ErasureItem, then: str, at: datetime) -> ErasureItem:
        """One transaction: the profile's personal data removed (conditioned on its revision), its birthday index
        entry deleted, the record advanced to step ``then``."""
        ...

    def scrub(self, record: ErasureItem, kind: str, limit: int, then: str, at: datetime) -> tuple[ErasureItem, int]:
        """One transaction: the next page (at most ``limit``) of the kind's items scrubbed, the record advanced
        (to step ``then`` when the kind is done; an unknown kind moves on at once). Returns it and the items."""
        ...

    def member_items(self, program_id: str, member_id: str, limit: int, cursor: Cursor | None) -> Page[Any]:
        """One page (one ``Query`` of at most ``limit``) of everything in the member's partition but the profile,
        the balance and the erasure record; a page may hold fewer items than ``limit``."""
        ...

    def exported_kinds(self) -> list[str]:
        """The registered kinds whose items live outside the member's partition (listed by the export)."""
        ...

    def exported(self, kind: str, program_id: str, member_id: str, limit: int,
                 cursor: Cursor | None) -> Page[Any]:
        """One page of such a kind's items of the member (``next_cursor`` None: done)."""
        ...

    def pending_invites(self, member: MemberItem) -> list[Any]:
        """Friends' invites waiting for one of the member's identifiers (one ``BatchGetItem``)."""
        ...

    def identifier_kinds(self, member: MemberItem) -> list[str]:
        """Which kinds of identifier point at the member (``email``, ``phone``, ``customer``...; the values are on
        the profile)."""
        ...

    def item_data(self, item: Any) -> dict[str, Any]:
        """A stored item as plain JSON, without the table's keys, with its ``item_type`` (what the export shows)."""
        ...


@dataclass(frozen=True)
class BalanceChange:
    """A member's balance change in a decision (points; ``available`` repays ``owed`` first when positive)."""

    pending: int = 0
    available: int = 0
    earned: int = 0
    held: int = 0


@dataclass(frozen=True)
class HeldEntryDecision:
    """A held entry (as read) and what the decision makes of it: approved, ``pending`` until its ``available_at``
    or available now; voided, reversed by a reversal entry of ``-net_points``."""

    entry: LedgerEntryItem
    pending: bool = False


@dataclass(frozen=True)
class ReviewDecision:
    """The whole decision on one open review item, planned by ``services.review`` from what it read; the port
    writes it as one transaction conditioned on the item still being open and every entry still held as read."""

    item: ReviewItem
    approve: bool
    by: str
    reason: str | None
    at: datetime
    entries: tuple[HeldEntryDecision, ...]
    #: member id → (their balance as read, the change)
    balances: Mapping[str, tuple[BalanceItem | None, BalanceChange]]
    #: void with ``fraud``: the event's signals (``kind#hash``) marked as fraud, and deny-list additions
    fraud_signals: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    #: the item's voucher grants: approve, issued now from the pool as it is (``issued`` or ``pool_empty``);
    #: void, kept as given (``voided``)
    vouchers: tuple[Mapping[str, Any], ...] = ()


class ReviewStore(Protocol):
    """The fraud review queue (``services.review``); the ledger stage creates the items in the event's
    transaction (``services.ledger``)."""

    def open_items(self, program_id: str, partner_id: str | None, limit: int,
                   cursor: Cursor | None) -> Page[ReviewItem]:
        """Open items oldest first: the program's (``partner_id`` None, the operator) or of one partner's events
        (one ``Query`` of a sparse index, at most ``limit``)."""
        ...

    def item(self, program_id: str, item_id: str) -> ReviewItem | None:
        """The review item, read consistently (after a decision, the decided status)."""
        ...

    def held(self, item: ReviewItem) -> tuple[list[LedgerEntryItem], dict[str, BalanceItem | None]]:
        """The item's entries still held (refunded ones are not), in the item's order, and its members' balances:
        one ``BatchGetItem``."""
        ...

    def decide(self, decision: ReviewDecision) -> None:
        """One transaction: each entry released (pending with its release index, or available with its expiry
        month) or reversed (a reversal entry), each balance changed, signals marked and deny entries added,
        vouchers issued (or kept voided), and the item decided (who, when, why; off the queue). Raises
        ``StaleReview`` when the item or an entry changed since read, ``ReadAgain`` when an offer's pool did."""
        ...


@dataclass(frozen=True)
class Ports:
    clock: Clock
    rate_limiter: RateLimiter
    secrets: Secrets
    programs: ProgramStore
    offers: OfferStore
    integrations: IntegrationStore
    crm_queue: FetchQueue
    members: MemberStore
    ledger: LedgerStore
    tiers: TierStore
    events: EventStore
    signals: SignalStore
    outbox: Outbox
    sealer: Sealer
    webhooks: WebhookStore
    data_rights: DataRightsStore
    review: ReviewStore


_current: Ports | None = None
_factory: Callable[[], Ports] | None = None


#: Modules that register erasable kinds (``store.erasure_kinds``), imported before the first erasure or export.
ERASABLE_MODULES: tuple[str, ...] = ("chalicelib.notify.erasure", "chalicelib.analytics.erasure",
                                     "chalicelib.store.fraud_erasure", "chalicelib.store.member_links")


def production(clock: Clock | None = None) -> Ports:
    """DynamoDB, the master key and the system clock; nothing is connected until first use. ``clock``
    replaces the system clock (``domain.clock.ManualClock``: the functional tests, demo and bench tools)."""
    from chalicelib.domain.clock import SystemClock
    from chalicelib.services.envelope import KmsSealer
    from chalicelib.services.secrets import MasterKeySecrets
    from chalicelib.store import dynamo_ports, sqs_ports

    return Ports(
        clock=clock or SystemClock(),
        rate_limiter=dynamo_ports.DynamoRateLimiter(),
        secrets=MasterKeySecrets(),
        programs=dynamo_ports.DynamoProgramStore(),
        offers=dynamo_ports.DynamoOfferStore(),
        integrations=dynamo_ports.DynamoIntegrationStore(),
        crm_queue=sqs_ports.SqsFetchQueue(),
        members=dynamo_ports.DynamoMemberStore(),
        ledger=dynamo_ports.DynamoLedgerStore(),
        tiers=dynamo_ports.DynamoTierStore(),
        events=dynamo_ports.DynamoEventStore(),
        signals=dynamo_ports.DynamoSignalStore(),
        outbox=dynamo_ports.DynamoOutbox(),
        sealer=KmsSealer(),
        webhooks=dynamo_ports.DynamoWebhookStore(),
        data_rights=dynamo_ports.DynamoDataRightsStore(kind_modules=ERASABLE_MODULES),
        review=dynamo_ports.DynamoReviewStore(issue_vouchers=_issue_held_vouchers),
    )


def _issue_held_vouchers(tx: Any, program_id: str, grants: Sequence[Mapping[str, Any]],
                         at: datetime) -> list[dict[str, Any]]:
    """The review store's voucher step in production: ``services.vouchers`` adds each grant's issue to ``tx``."""
    from chalicelib.services import vouchers

    return vouchers.stage_held_grants(tx, program_id, grants, at)


def fakes(now: datetime) -> Ports:
    """Every port in memory (``store.fakes``), the clock set to ``now``: for service tests."""
    from chalicelib.domain.clock import ManualClock
    from chalicelib.store import fakes as f

    table = f.FakeTable()
    return Ports(clock=ManualClock(now), rate_limiter=f.FakeRateLimiter(), secrets=f.FakeSecrets(),
                 programs=f.FakeProgramStore(table), offers=f.FakeOfferStore(table),
                 integrations=f.FakeIntegrationStore(table), crm_queue=f.FakeFetchQueue(), members=f.FakeMemberStore(table),
                 ledger=f.FakeLedgerStore(table), tiers=f.FakeTierStore(table), events=f.FakeEventStore(table),
                 signals=f.FakeSignalStore(table),
                 outbox=f.FakeOutbox(), sealer=f.FakeSealer(), webhooks=f.FakeWebhookStore(table),
                 data_rights=f.FakeDataRightsStore(table), review=f.FakeReviewStore(table))


def wire(factory: Callable[[], Ports]) -> None:
    """Where the app is wired (``app.py``): how to build the ports, once, on first use."""
    global _factory, _current
    _factory, _current = factory, None


def use(ports: Ports | None) -> None:
    """Install a built set (tests: ``use(fakes(now))``); ``None`` rebuilds from the wired factory on next use."""
    global _current
    _current = ports


def current() -> Ports:
    global _current
    if _current is None:
        _current = (_factory or production)()
    return _current
