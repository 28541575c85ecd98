"""Key builders for the single table: the only place that spells a PK/SK/GSI1 value.

Prefixes are readable so an operator browsing the table sees what an item is.
Every builder returns ``(PK, SK)``; ``gsi1_*`` builders return ``(GSI1PK, GSI1SK)``.
Personal identifiers never appear in keys: callers pass the salted hash from
``chalicelib.domain.identity``. See docs/data-model.md for the access-pattern chart.
"""

from __future__ import annotations

Key = tuple[str, str]

# --- tenancy (service foundation) -------------------------------------------


def program(program_id: str) -> Key:
    return f"PROGRAM#{program_id}", "PROGRAM"


def gsi1_program_listing(created_at: str, program_id: str) -> Key:
    # One listing partition is fine: only the operator lists programs, rarely.
    return "PROGRAMS", f"CREATED#{created_at}#{program_id}"


def partner(program_id: str, partner_id: str) -> Key:
    return f"PROGRAM#{program_id}", f"PARTNER#{partner_id}"


def partner_locator(partner_id: str) -> Key:
    """Partner id → program: webhook URLs carry only the partner id."""
    return f"PARTNER#{partner_id}", "LOCATOR"


def partners_prefix(program_id: str) -> Key:
    return f"PROGRAM#{program_id}", "PARTNER#"


def api_key(key_hash: str) -> Key:
    # Looked up by the SHA-256 of the presented key: one GetItem per auth.
    return f"APIKEY#{key_hash}", "APIKEY"


def api_key_ref(program_id: str, key_id: str) -> Key:
    # Lets the operator list and revoke keys by id without knowing the key.
    return f"PROGRAM#{program_id}", f"APIKEYREF#{key_id}"


def api_key_refs_prefix(program_id: str) -> Key:
    return f"PROGRAM#{program_id}", "APIKEYREF#"


def integration(program_id: str, partner_id: str, platform: str) -> Key:
    """A partner's connection to a shop/CRM platform (settings, sealed secrets, token hashes)."""
    return f"PROGRAM#{program_id}", f"INTEGRATION#{partner_id}#{platform}"


def integration_log(program_id: str, partner_id: str, platform: str, at: str, entry_id: str) -> Key:
    """Per-partner, per-platform integration log (permanent failures of the asynchronous CRM fetch)."""
    return integration_log_partition(program_id, partner_id, platform), f"AT#{at}#{entry_id}"


def integration_log_partition(program_id: str, partner_id: str, platform: str) -> str:
    return f"INTEGRATIONLOG#{program_id}#{partner_id}#{platform}"


def crm_ack(program_id: str, partner_id: str, platform: str, event_id_hash: str) -> Key:
    """"This CRM event was acknowledged and queued" (TTL): a redelivery is not fetched twice."""
    return f"CRMACK#{program_id}#{partner_id}#{platform}#{event_id_hash}", "ACK"


# --- referral core -----------------------------------------------------------


def member(program_id: str, member_id: str) -> Key:
    return f"MEMBER#{program_id}#{member_id}", "PROFILE"


def member_partition(program_id: str, member_id: str) -> str:
    """PK shared by everything owned by one member (profile, balance, ledger, attribution records)."""
    return f"MEMBER#{program_id}#{member_id}"


def gsi1_referrals_of(program_id: str, referrer_id: str, joined_at: str, member_id: str) -> Key:
    return f"REFERRER#{program_id}#{referrer_id}", f"JOINED#{joined_at}#{member_id}"


def identity(program_id: str, kind: str, value_hash: str) -> Key:
    """Pointer from an identifier (``email``, ``phone``, ``ext:<partner_id>``) to a member."""
    return f"IDENT#{program_id}#{kind}#{value_hash}", "IDENT"


def pending_invite(program_id: str, kind: str, value_hash: str) -> Key:
    """A friend's identifier left on a referrer's landing page, waiting for their signup/order."""
    return f"INVITE#{program_id}#{kind}#{value_hash}", "INVITE"


def invite_ref(program_id: str, referrer_id: str, kind: str, value_hash: str) -> Key:
    """Back-reference in the referrer's partition to a pending invite through her link (erasure, export)."""
    return member_partition(program_id, referrer_id), f"INVITE#{kind}#{value_hash}"


def referral_code(program_id: str, code: str) -> Key:
    return f"CODE#{program_id}#{code}", "CODE"


def coupon(program_id: str, coupon_code: str) -> Key:
    return f"COUPON#{program_id}#{coupon_code}", "COUPON"


def event(program_id: str, business_key_hash: str) -> Key:
    """Permanent dedupe record of one business fact (see ``domain.events.business_key``)."""
    return f"EVENT#{program_id}#{business_key_hash}", "EVENT"


def event_ref(program_id: str, member_id: str, business_key_hash: str) -> Key:
    """Back-reference in the subject's partition to an event's record (``event``) that posted nothing to her (a
    ledger entry of hers names the others by its business key): the export finds all her events without a Scan."""
    return member_partition(program_id, member_id), f"EVENT#{business_key_hash}"


def attribution_record(program_id: str, member_id: str, at: str, record_id: str) -> Key:
    return member_partition(program_id, member_id), f"ATTR#{at}#{record_id}"


def gsi1_attribution_by_code(program_id: str, code: str, at: str, record_id: str) -> Key:
    return f"ATTRCODE#{program_id}#{code}", f"ATTR#{at}#{record_id}"


def click_counter(program_id: str, code: str, day: str, utm_source: str) -> Key:
    return f"CLICKS#{program_id}#{code}", f"DAY#{day}#SRC#{utm_source}"


def click_total(program_id: str, code: str) -> Key:
    """All clicks on one code (pre-aggregated: the member profile reads this, not the days)."""
    return f"CLICKS#{program_id}#{code}", "TOTAL"


def rate_limit(scope: str, window: str) -> Key:
    return f"RATE#{scope}", f"WINDOW#{window}"


def short_link(code: str) -> Key:
    """Code → program for ``/r/{code}``. One short domain serves every program, so this pointer
    (created with the code pointer, in the same transaction) makes link codes unique deployment-wide."""
    return f"LINK#{code}", "LINK"


def click_counters_prefix(program_id: str, code: str) -> Key:
    return f"CLICKS#{program_id}#{code}", "DAY#"


def attribution_records_prefix(program_id: str, member_id: str) -> Key:
    return member_partition(program_id, member_id), "ATTR#"


def gsi1_referrals_partition(program_id: str, referrer_id: str) -> str:
    return f"REFERRER#{program_id}#{referrer_id}"


def gsi1_attribution_code_partition(program_id: str, code: str) -> str:
    return f"ATTRCODE#{program_id}#{code}"


# --- rewards and ledger --------------------------------------------------------


def rules_version(program_id: str, version: int) -> Key:
    return f"PROGRAM#{program_id}", f"RULES#{version:06d}"


def balance(program_id: str, member_id: str) -> Key:
    return member_partition(program_id, member_id), "BALANCE"


def member_month(program_id: str, member_id: str, month: str) -> Key:
    return member_partition(program_id, member_id), f"MONTH#{month}"


def ledger_entry(program_id: str, member_id: str, created_at: str, entry_id: str) -> Key:
    return member_partition(program_id, member_id), f"LEDGER#{created_at}#{entry_id}"


def gsi1_pending_release(available_day: str, available_at: str, entry_id: str) -> Key:
    # Sparse: only pending entries carry it, so the release job queries a day
    # bucket instead of scanning the ledger.
    return f"PENDING#{available_day}", f"{available_at}#{entry_id}"


def program_counters(program_id: str) -> Key:
    return f"PROGRAM#{program_id}", "COUNTERS"


def redemption(program_id: str, redemption_id: str) -> Key:
    return f"REDEMPTION#{program_id}#{redemption_id}", "REDEMPTION"


def adjustment(program_id: str, adjustment_id: str) -> Key:
    """A manual adjustment's record (idempotency by the operator's ``Idempotency-Key``, audit)."""
    return f"ADJUSTMENT#{program_id}#{adjustment_id}", "ADJUSTMENT"


def outbox_message(program_id: str, message_id: str) -> Key:
    return f"OUTBOX#{program_id}#{message_id}", "OUTBOX"


# --- rewards and ledger (ledger issue) -----------------------------------------


def ledger_prefix(program_id: str, member_id: str) -> Key:
    return member_partition(program_id, member_id), "LEDGER#"


def recurring_counter(program_id: str, friend_id: str, rule_id: str) -> Key:
    """Points a recurring rule has paid for one referred member, kept only while the rule has a
    ``max_points_per_friend`` cap (counting starts with the first event under a rules version that sets it:
    docs/rules.md)."""
    return member_partition(program_id, friend_id), f"RECUR#{rule_id}"


def order_ledger(program_id: str, order_hash: str) -> Key:
    """Per-order ledger state: what the order posted, refunded so far, refunds parked before it."""
    return f"ORDER#{program_id}#{order_hash}", "LEDGER"


def gsi2_member_outbox(program_id: str, member_id: str, created_at: str, message_id: str) -> Key:
    """A member's outbox messages (erasure and export find them without a Scan; docs/data-rights.md)."""
    return gsi2_member_outbox_partition(program_id, member_id), f"{created_at}#{message_id}"


def gsi2_member_outbox_partition(program_id: str, member_id: str) -> str:
    return f"OUTBOXM#{program_id}#{member_id}"


def gsi1_outbox_pending(day: str, created_at: str, message_id: str) -> Key:
    # Sparse like the release buckets: the notification consumer reads a day bucket.
    return f"OUTBOX#PENDING#{day}", f"{created_at}#{message_id}"


def release_job_state() -> Key:
    return "JOBS", "RELEASE"


# --- notifications (notify/) ----------------------------------------------------


def outbox_pending_partition(day: str) -> str:
    return f"OUTBOX#PENDING#{day}"


def notify_state(program_id: str, member_id: str) -> Key:
    """A member's channel preferences, push devices and suppressed addresses (read with the profile)."""
    return member_partition(program_id, member_id), "NOTIFY"


def notify_day(program_id: str, member_id: str, day: str) -> Key:
    """Messages sent to a member on one day (the daily cap); expires by TTL."""
    return member_partition(program_id, member_id), f"NOTIFYDAY#{day}"


def notification_log(program_id: str, member_id: str, created_at: str, message_id: str) -> Key:
    """The delivery log: one item per delivered (or finally failed) message, in the member's partition."""
    return member_partition(program_id, member_id), f"NOTIF#{created_at}#{message_id}"


def notification_log_prefix(program_id: str, member_id: str) -> Key:
    return member_partition(program_id, member_id), "NOTIF#"


def sms_budget(program_id: str, month: str) -> Key:
    """SMS sent by a program in one month (the monthly SMS budget)."""
    return f"PROGRAM#{program_id}", f"SMSMONTH#{month}"


def activity(program_id: str, member_id: str) -> Key:
    """A member's last activity day and last reminder (sleeping-member reminders)."""
    return member_partition(program_id, member_id), "ACTIVITY"


def gsi1_activity_day(day: str, program_id: str, member_id: str) -> Key:
    # Sparse, one bucket per day: the reminder job reads the bucket of N days ago, no Scan.
    return f"ACTIVE#{day}", f"{program_id}#{member_id}"


# --- data rights: erasure, import, ledger export --------------------------------


def erasure_record(program_id: str, member_id: str) -> Key:
    """Audit record and progress of one member's erasure (who, when, how far; no personal data)."""
    return member_partition(program_id, member_id), "ERASURE"


def erased_identity(program_id: str, kind: str, value_hash: str) -> Key:
    """Tombstone of an erased member's identifier: only the salted hash is kept, so events about the
    erased person do not re-enrol them (a new signup still does)."""
    return f"ERASED#{program_id}#{kind}#{value_hash}", "ERASED"


def import_row(program_id: str, person_hash: str) -> Key:
    """One imported person: ``member#<member_id>`` (before 2026-12-06 the salted hash of the row's strongest
    identifier, ``<kind>#<hash>``): makes an import idempotent."""
    return f"IMPORT#{program_id}#{person_hash}", "IMPORT"


def import_job(program_id: str, import_id: str) -> Key:
    """An operator's chunked import: its totals and the first bad rows."""
    return f"IMPORTJOB#{program_id}", f"JOB#{import_id}"


def import_chunk(program_id: str, import_id: str, number: int) -> Key:
    """One received chunk of an import: its content hash and result (a re-sent chunk answers the same)."""
    return f"IMPORTJOB#{program_id}", f"JOB#{import_id}#CHUNK#{number:05d}"


def gsi2_ledger_day(program_id: str, day: str, created_at: str, entry_id: str) -> Key:
    """Every ledger entry by program and booking day (``created_at``), for the ledger CSV export."""
    return f"LEDGERDAY#{program_id}#{day}", f"{created_at}#{entry_id}"


# --- coalition settlement (aggregates fed from the stream) -----------------------


def settlement_row(program_id: str, day: str, row: str) -> Key:
    """A settlement aggregate of one booking day: ``row`` is ``PARTNER#<partner>`` or ``PAIR#<funder>#<at>``
    (``""`` gives the day's prefix)."""
    return f"SETTLE#{program_id}", f"DAY#{day}#{row}" if row else f"DAY#{day}#"


def gsi1_credit_month(program_id: str, month: str, at: str, member_id: str, entry_id: str) -> Key:
    """Sparse: entries that credited available points, by the month they became available (the expiry job's
    index: it queries the months whose points are due, never scans)."""
    return f"CREDITS#{program_id}#{month}", f"{at}#{member_id}#{entry_id}"


def gsi1_credit_month_partition(program_id: str, month: str) -> str:
    return f"CREDITS#{program_id}#{month}"


def expiry_job_state(program_id: str) -> Key:
    return "JOBS", f"EXPIRY#{program_id}"


def settled_marker(program_id: str, group: str) -> Key:
    """The ledger entries of one event (``group``: a hash of its business key, or an entry id) already counted in
    the settlement aggregates (idempotency of the stream handler)."""
    return f"SETTLED#{program_id}#{group}", "SETTLED"


# --- coalition: partner offers and voucher pools (docs/coalition.md) --------------


def offer(program_id: str, partner_id: str, offer_id: str) -> Key:
    """A partner's offer (definition, alert epoch), in the program's partition next to the partner."""
    return f"PROGRAM#{program_id}", f"OFFER#{partner_id}#{offer_id}"


def offers_prefix(program_id: str, partner_id: str) -> Key:
    return f"PROGRAM#{program_id}", f"OFFER#{partner_id}#"


def pool_partition(program_id: str, offer_id: str, shard: int) -> str:
    """One of an offer's code-pool partitions (codes are spread over ``domain.offers.SHARDS``)."""
    return f"POOL#{program_id}#{offer_id}#{shard}"


def pool_head(program_id: str, offer_id: str, shard: int) -> Key:
    """A pool shard's cursor: ``size`` codes appended so far, ``next`` the position issued next."""
    return pool_partition(program_id, offer_id, shard), "HEAD"


def pool_slot(program_id: str, offer_id: str, shard: int, position: int) -> Key:
    """The code at one position of a pool shard (free until issued)."""
    return pool_partition(program_id, offer_id, shard), f"SLOT#{position:07d}"


def pool_code(program_id: str, offer_id: str, code_hash: str) -> Key:
    """Uniqueness of a code within its pool (created with the slot, ``attribute_not_exists``)."""
    return f"POOLCODE#{program_id}#{offer_id}#{code_hash}", "CODE"


def voucher(program_id: str, member_id: str, issued_at: str, voucher_id: str) -> Key:
    """A voucher issued to a member, in the member's partition (the statement lists them)."""
    return member_partition(program_id, member_id), f"VOUCHER#{issued_at}#{voucher_id}"


def vouchers_prefix(program_id: str, member_id: str) -> Key:
    return member_partition(program_id, member_id), "VOUCHER#"


def voucher_month(program_id: str, member_id: str, rule_id: str, month: str) -> Key:
    """Vouchers one offer rule gave a member in a calendar month (``offer.per_month``)."""
    return member_partition(program_id, member_id), f"VOUCHERMONTH#{rule_id}#{month}"


def pool_alert(program_id: str, offer_id: str, epoch: int) -> Key:
    """The low-pool alert of one threshold crossing (``epoch`` counts refills above the threshold)."""
    return f"POOLALERT#{program_id}#{offer_id}", f"EPOCH#{epoch:06d}"


# --- fraud signals and review (docs/fraud.md) -------------------------------------


def signal(program_id: str, kind: str, value_hash: str) -> Key:
    """Pointer from a fraud signal's salted hash (device, payment, shipping, ip_ua, ip) to the members seen with it."""
    return f"SIGNAL#{program_id}#{kind}#{value_hash}", "SIGNAL"


def signal_ref(program_id: str, member_id: str, kind: str, value_hash: str) -> Key:
    """Back-reference in the member's partition: she is (or was) listed on that signal's pointer (erasure and
    export find her pointers by it, without a Scan)."""
    return member_partition(program_id, member_id), f"SIGNAL#{kind}#{value_hash}"


def velocity_partition(program_id: str, scope: str) -> str:
    return f"VEL#{program_id}#{scope}"


def velocity(program_id: str, scope: str, window: str) -> Key:
    """A bounded velocity counter (``scope``: ``ref#<member>`` or ``sig#<kind>#<hash>``; one item per window, TTL)."""
    return velocity_partition(program_id, scope), f"W#{window}"


def review_item(program_id: str, item_id: str) -> Key:
    return f"REVIEW#{program_id}#{item_id}", "REVIEW"


def review_ref(program_id: str, member_id: str, item_id: str) -> Key:
    """Back-reference in the partition of each member a review item names (the event's subject, the referrer, the
    members of its held entries): erasure and export find the item by it."""
    return member_partition(program_id, member_id), f"REVIEW#{item_id}"


def gsi1_review_open(program_id: str, created_at: str, item_id: str) -> Key:
    # Sparse: only open items carry it, so the queue is a Query, oldest first.
    return f"REVIEWQ#{program_id}", f"{created_at}#{item_id}"


def gsi2_review_open_partner(program_id: str, partner_id: str, created_at: str, item_id: str) -> Key:
    """The same queue per partner (a partner sees the items of its own events)."""
    return f"REVIEWQ#{program_id}#{partner_id}", f"{created_at}#{item_id}"


def deny_list(kind: str, value_hash: str) -> Key:
    """The deployment's shared deny list: one item per deployment-keyed signal hash (opted-in programs)."""
    return f"DENY#{kind}#{value_hash}", "DENY"


# --- coalition: birthday gifts (docs/coalition.md#birthday-gifts) -------------------


def birthday_pointer(program_id: str, month_day: str, member_id: str) -> Key:
    """A member's birthday in the index the daily job queries: one partition per program and ``MMDD``
    (written with the profile when the birthday is set or changed, deleted on a change and on erasure)."""
    return f"BDAY#{program_id}#{month_day}", f"MEMBER#{member_id}"


def birthday_partition(program_id: str, month_day: str) -> str:
    return f"BDAY#{program_id}#{month_day}"


def birthday_gift(program_id: str, member_id: str, year: int) -> Key:
    """The gift of one member and year (the business key: created with ``attribute_not_exists``)."""
    return member_partition(program_id, member_id), f"BIRTHDAYGIFT#{year:04d}"


def birthday_job_state(program_id: str) -> Key:
    """The birthday job's watermark of one program (days fully granted, the day in progress and its cursor)."""
    return "JOBS", f"BIRTHDAY#{program_id}"


# --- coalition: outgoing partner webhooks (docs/coalition.md) ---------------------


def webhook_endpoint(program_id: str, partner_id: str, endpoint_id: str) -> Key:
    """A partner's registered webhook endpoint (URL, event types, sealed signing secrets)."""
    return f"PROGRAM#{program_id}", f"WEBHOOKEP#{partner_id}#{endpoint_id}"


def webhook_endpoints_prefix(program_id: str, partner_id: str) -> Key:
    return f"PROGRAM#{program_id}", f"WEBHOOKEP#{partner_id}#"


def webhook_endpoint_count(program_id: str, partner_id: str) -> Key:
    """How many endpoints a partner has (bounded: created and deleted in the endpoint's transaction)."""
    return f"PROGRAM#{program_id}", f"WEBHOOKEPS#{partner_id}"


def webhook_delivery_partition(program_id: str, endpoint_id: str) -> str:
    """An endpoint's delivery log (one item per message; the ids sort by the event's time)."""
    return f"WHLOG#{program_id}#{endpoint_id}"


def webhook_delivery(program_id: str, endpoint_id: str, delivery_id: str) -> Key:
    return webhook_delivery_partition(program_id, endpoint_id), f"DELIVERY#{delivery_id}"


def gsi2_member_webhook_delivery(program_id: str, member_id: str, delivery_id: str, endpoint_id: str) -> Key:
    """The partner webhook deliveries about one member (their payloads name the member: erasure, export)."""
    return gsi2_member_webhook_deliveries_partition(program_id, member_id), f"{delivery_id}#{endpoint_id}"


def gsi2_member_webhook_deliveries_partition(program_id: str, member_id: str) -> str:
    return f"WHMEMBER#{program_id}#{member_id}"


def gsi1_webhook_due_partition(shard: int) -> str:
    """Sparse time index of deliveries waiting for an attempt (``shard`` spreads the writes)."""
    return f"WHDUE#{shard}"


def gsi1_webhook_due(shard: int, next_attempt_at: str, program_id: str, endpoint_id: str, delivery_id: str) -> Key:
    return gsi1_webhook_due_partition(shard), f"{next_attempt_at}#{program_id}#{endpoint_id}#{delivery_id}"


# --- member tiers (docs/coalition.md#tiers) ---------------------------------------


def member_tier(program_id: str, member_id: str) -> Key:
    """A member's tier, its version and the rolling metric's monthly buckets."""
    return member_partition(program_id, member_id), "TIER"


def tier_change(program_id: str, member_id: str, at: str, change_id: str) -> Key:
    """One tier change of a member (history: from, to, reason, when)."""
    return member_partition(program_id, member_id), f"TIERCHANGE#{at}#{change_id}"


def tier_changes_prefix(program_id: str, member_id: str) -> Key:
    return member_partition(program_id, member_id), "TIERCHANGE#"


def gsi1_tier_review(program_id: str, month: str, member_id: str) -> Key:
    """Sparse: members above the lowest tier, by the month their review is due (the review job's index)."""
    return f"TIERREVIEW#{program_id}#{month}", member_id


def gsi1_tier_review_partition(program_id: str, month: str) -> str:
    return f"TIERREVIEW#{program_id}#{month}"


def tier_job_state(program_id: str) -> Key:
    return "JOBS", f"TIERS#{program_id}"


def gsi1_erasure_request(program_id: str, requested_at: str, member_id: str) -> Key:
    """Sparse: erasure records a member requested and the operator has not confirmed yet, oldest first."""
    return f"ERASUREQ#{program_id}", f"{requested_at}#{member_id}"


def gsi1_erasure_requests_partition(program_id: str) -> str:
    return f"ERASUREQ#{program_id}"
