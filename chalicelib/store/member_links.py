"""Kinds of the items about a member stored outside her partition, found from keys her partition already holds, with
bounded reads and no Scan (docs/data-rights.md#export).

Erased and exported:

* ``referred_invites``: pending invites through her link (``INVITE#…``, keyed by the friend's identifier: they hold
  her id and her code), found by her back-references ``INVITE#<kind>#<hash>`` (written before each invite); the
  erasure deletes both, so the friend's later signup is referred by nobody, and takes her code off the visitor's
  profile (``acquisition.ref``: the landing call names the link it came through).

Export only (``ErasableKind(erase=False)``: the erasure keeps them, accounting and dedupe, or deletes them in its
pointers step):

* ``pointers``: her referral code and the items her profile's ``pointer_keys`` name (identity pointers, earlier
  codes, personal promo codes) with each code's short link, her birthday's index entry, and her import marker
  (``IMPORT#<program>#member#<member>``, or one written before 2026-12-06, keyed by the hash of one of her
  identifiers; after an erasure, the hashes kept on the erasure record). One ``BatchGetItem`` of the profile and
  the record, then the page's keys.
* ``linked_records``: the records of her events (``EVENT#…``: business key, reply, fingerprint), found by her
  back-references (``store.events.EventRefItem``) and by the business keys of her ledger entries; the redemptions
  and manual adjustments her entries name (``redemption_id``, ``adjustment_id``); the order ledger (``ORDER#…``)
  of each paid order of hers; the pool slot (``POOL#…``) of each pool code issued to her (her vouchers name it). A Query of her partition (half a page of sources, and one to the end of the last entry's ledger time), one
  ``BatchGetItem`` of what they name and one of the orders. An event about another member that paid her (a friend's order) is listed as its
  business key and time only, not the friend's reply.

Pointers and order ledgers are listed only when they name her (``member_id``, ``buyer_id``).
"""

from __future__ import annotations

from typing import Any

from chalicelib.domain import clock
from chalicelib.domain.events.keys import paid_order_of
from chalicelib.store import keys
from chalicelib.store.birthdays import pointer_key as birthday_pointer_key
from chalicelib.store.data_rights import ErasureItem
from chalicelib.store.db import Entity
from chalicelib.store.erasure_kinds import (
    ConcurrentChange,
    ErasableKind,
    ErasureTarget,
    Page,
    business_key_hash,
    register,
)
from chalicelib.store.events import EventItem
from chalicelib.store.ledger import (
    KIND_REDEMPTION,
    AdjustmentItem,
    LedgerEntryItem,
    OrderLedgerItem,
    RedemptionItem,
    order_hash,
)
from chalicelib.store.members import (
    ERASED_CODE,
    InviteRefItem,
    MemberItem,
    PendingInviteItem,
    batch_get,
    identity_pointer_parts,
    key_from_str,
    key_str,
)
from chalicelib.store.offers import PoolSlotItem, VoucherItem
from chalicelib.store.transact import Transaction

Key = tuple[str, str]


def _names(item: Entity, member_id: str) -> bool:
    return member_id in (getattr(item, "member_id", None), getattr(item, "buyer_id", None))


# --------------------------------------------------------------------------- pointers and the import marker


def _pointer_keys(target: ErasureTarget) -> list[Key]:
    read = batch_get([keys.member(target.program_id, target.member_id),
                      keys.erasure_record(target.program_id, target.member_id)], consistent=True)
    member = read.get(keys.member(target.program_id, target.member_id))
    record = read.get(keys.erasure_record(target.program_id, target.member_id))
    texts = list(member.pointer_keys or []) if isinstance(member, MemberItem) else []
    if isinstance(member, MemberItem) and member.code and member.code != ERASED_CODE:  # her current code
        texts.insert(0, key_str(keys.referral_code(target.program_id, member.code)))
    out: list[Key] = []
    identities = list(record.identities or []) if isinstance(record, ErasureItem) else []
    code_prefix = f"CODE#{target.program_id}#"
    for text in texts:
        key = key_from_str(text)
        out.append(key)
        if key[0].startswith(code_prefix):
            out.append(keys.short_link(key[0][len(code_prefix):]))
        elif (parts := identity_pointer_parts(target.program_id, text)) is not None:
            identities.append(f"{parts[0]}:{parts[1]}")
    out.append(keys.import_row(target.program_id, f"member#{target.member_id}"))
    for text in dict.fromkeys(identities):
        kind, _, value_hash = text.partition(":")
        out.append(keys.import_row(target.program_id, f"{kind}#{value_hash}"))
    birthday = birthday_pointer_key(target.program_id, target.member_id, member.birthday) if isinstance(
        member, MemberItem) else None
    if birthday is not None:  # her birthday's index entry (the day's partition the gift job reads)
        out.append(birthday)
    return list(dict.fromkeys(out))


def _find_pointers(target: ErasureTarget, cursor: dict[str, Any] | None, limit: int) -> Page:
    start = int((cursor or {}).get("i", 0))
    wanted = _pointer_keys(target)
    batch = wanted[start:start + max(1, limit)]
    found = batch_get(batch, consistent=True)
    items = [found[k] for k in batch if k in found and _names(found[k], target.member_id)]
    end = start + len(batch)
    return Page(items, {"i": end} if end < len(wanted) else None)


# --------------------------------------------------------------------------- events, redemptions, adjustments, orders

_SOURCES = ("EVENT#", "LEDGER#", "VOUCHER#")  # her back-references to event records, her entries, her vouchers


def _named_by(target: ErasureTarget, source: Entity) -> list[Key]:
    pid = target.program_id
    if source.SK.startswith("EVENT#"):
        return [keys.event(pid, source.SK[len("EVENT#"):])]
    if isinstance(source, VoucherItem):  # a pool code issued to her: its slot names her
        if source.shard is None or source.position is None:
            return []
        return [keys.pool_slot(pid, source.offer_id, int(source.shard), int(source.position))]
    if not isinstance(source, LedgerEntryItem):
        return []
    out = []
    if source.business_key and source.reason_code != "review_voided":  # a void's reversal: the reward's event
        out.append(keys.event(pid, business_key_hash(source.business_key)))
    if source.redemption_id and source.kind == KIND_REDEMPTION:  # from its spend entry only, not a cancel's return
        out.append(keys.redemption(pid, source.redemption_id))
    if source.adjustment_id:
        out.append(keys.adjustment(pid, source.adjustment_id))
    return out


def _order_key(target: ErasureTarget, item: Entity) -> Key | None:
    if not isinstance(item, EventItem) or item.member_id != target.member_id:
        return None
    paid = paid_order_of(item.business_key)
    return keys.order_ledger(target.program_id, order_hash(*paid)) if paid else None


#: Entries read past a page's last ledger entry to end the page with its ledger time (one Query): a page ends inside a
#: ledger time only when more of its entries follow than this.
GROUP_READ = 50


def _group(source: Entity) -> str:
    """A ledger entry's time in its key (``LEDGER#<effective_at>#<entry>``): every entry of one event has the
    event's time, so entries naming one record are all in one group (with other events' at the same time)."""
    return _group_of_key(str(source.SK))


def _group_of_key(sk: str) -> str:
    return sk.rsplit("#", 1)[0]


def _key_of(source: Entity) -> dict[str, Any]:
    """The item's key as a Query's ``last_evaluated_key`` (the next Query starts after it)."""
    return {"PK": {"S": source.PK}, "SK": {"S": source.SK}}


def _her_entries(item: EventItem, member_id: str) -> list[str]:
    """The sort keys of her entries an event's record names: the reward postings of its reply (ids derived,
    ``events.full_reply``) and a refund's reversals, all at the event's ``occurred_at``."""
    if item.occurred_at is None:
        return []
    rewards = item.full_reply().get("rewards")
    if not isinstance(rewards, dict):
        return []
    out = []
    for entry in [*(rewards.get("postings") or []), *(rewards.get("reversals") or [])]:
        if isinstance(entry, dict) and entry.get("member_id") == member_id and entry.get("entry_id"):
            out.append(keys.ledger_entry(item.program_of, member_id, clock.iso(item.occurred_at),
                                         str(entry["entry_id"]))[1])
    return out


def _find_linked(target: ErasureTarget, cursor: dict[str, Any] | None, limit: int) -> Page:
    """Each record is listed from one source only: an event from the first of her entries naming it (several
    rules' rewards share its business key; a refund's reversals name the refund's), a redemption from its spend
    entry, an adjustment from its entry, a pool slot from its voucher. The cursor is the last source read, nothing
    else (bounded whatever the data): a page of ledger entries reads on to the end of the last entry's ledger time
    (``GROUP_READ`` more entries at most), so the next page starts with a new time; when more entries share that
    time, an event named again on a later page is left out when its record names an entry of hers the earlier
    pages read (sort key up to the cursor's)."""
    source = int((cursor or {}).get("source", 0))
    if source >= len(_SOURCES):
        return Page([], None)
    start = (cursor or {}).get("last")
    result = Entity.query(target.partition, Entity.SK.startswith(_SOURCES[source]), limit=max(1, limit // 2),
                          last_evaluated_key=start, consistent_read=True)
    sources = list(result)
    after = result.last_evaluated_key
    if after and sources and _SOURCES[source] == "LEDGER#":  # read on to the end of the last entry's ledger time
        rest = Entity.query(target.partition, Entity.SK.startswith(_group(sources[-1]) + "#"), limit=GROUP_READ,
                            last_evaluated_key=after, consistent_read=True)
        more = list(rest)
        sources += more
        after = rest.last_evaluated_key or (_key_of(more[-1]) if more else after)
    wanted = list(dict.fromkeys(k for s in sources for k in _named_by(target, s)))
    found = batch_get(wanted, consistent=True)
    # The page began inside a ledger time an earlier page read part of: the events its entries here name.
    read_up_to = str(start["SK"]["S"]) if _SOURCES[source] == "LEDGER#" and isinstance(start, dict) else None
    begun = _group_of_key(read_up_to) if read_up_to else None
    continued = {k for s in sources if begun and _group(s) == begun for k in _named_by(target, s)}

    def listed_before(key: Key) -> bool:  # one of her entries of that time up to the cursor's named it
        item = found[key]
        return key in continued and isinstance(item, EventItem) and any(
            _group_of_key(sk) == begun and sk <= str(read_up_to) for sk in _her_entries(item, target.member_id))

    named = [found[k] for k in wanted if (isinstance(found.get(k), EventItem | RedemptionItem | AdjustmentItem)
             or (isinstance(found.get(k), PoolSlotItem) and getattr(found[k], "member_id", None) == target.member_id))
             and not listed_before(k)]
    found_orders = batch_get([k for k in (_order_key(target, i) for i in named) if k is not None], consistent=True)
    items: list[Entity] = []
    for item in named:  # each paid order's ledger right after its event: the same order whatever the page size
        items.append(item)
        order = found_orders.get(_order_key(target, item) or ("", ""))
        if isinstance(order, OrderLedgerItem) and order.buyer_id == target.member_id:
            items.append(order)
    following: dict[str, Any] | None
    if after:
        following = {"source": source, "last": after}
    else:
        following = {"source": source + 1, "last": None} if source + 1 < len(_SOURCES) else None
    return Page(items, following)


def _export_linked(item: Entity, target: ErasureTarget) -> Entity | dict[str, Any] | None:
    """An event about another member that paid her (a friend's order): when and which fact, not the friend's reply
    or fingerprint."""
    if isinstance(item, EventItem) and item.member_id != target.member_id:
        return {"item_type": "event", "business_key": item.business_key,
                "received_at": clock.iso(item.received_at), "about": "another member (it paid this member)"}
    return item


# --------------------------------------------------------------------------- invites through her link (erased too)


def _invite_parts(ref: Entity) -> tuple[str, str]:
    kind, _, value_hash = ref.SK[len("INVITE#"):].rpartition("#")
    return kind, value_hash


def _find_invites(target: ErasureTarget, cursor: dict[str, Any] | None, limit: int) -> Page:
    """A third of ``limit`` back-references, each followed by its invite and the visitor's profile (her identity
    pointer gives the member; two BatchGetItems)."""
    result = Entity.query(target.partition, Entity.SK.startswith("INVITE#"), limit=max(1, limit // 3),
                          last_evaluated_key=cursor, consistent_read=True)
    refs = list(result)
    parts = [_invite_parts(ref) for ref in refs]
    first = batch_get([k for kind, h in parts for k in (keys.pending_invite(target.program_id, kind, h),
                                                         keys.identity(target.program_id, kind, h))], consistent=True)
    owners = {i: getattr(first.get(keys.identity(target.program_id, kind, h)), "member_id", None)
              for i, (kind, h) in enumerate(parts)}
    profiles = batch_get([keys.member(target.program_id, m) for m in owners.values() if m and m != target.member_id],
                         consistent=True)
    items: list[Entity] = []
    listed: set[Key] = set()  # one visitor may have left two identifiers: her profile once per transaction
    for i, (ref, (kind, h)) in enumerate(zip(refs, parts, strict=True)):
        items.append(ref)
        invite = first.get(keys.pending_invite(target.program_id, kind, h))
        if invite is not None:
            items.append(invite)
        owner = owners[i]
        profile = profiles.get(keys.member(target.program_id, owner)) if owner else None
        if profile is not None and (profile.PK, profile.SK) not in listed:
            listed.add((profile.PK, profile.SK))
            items.append(profile)
    return Page(items, result.last_evaluated_key)


def _scrub_invite(tx: Transaction, item: Entity, target: ErasureTarget) -> None:
    """The back-reference goes; the invite goes while it still names her (a later one through another referrer's
    link stays: the step is redone if it changed since it was read); the visitor's profile loses her code from its
    ``acquisition`` (the ``ref`` the landing call was made with), conditioned on its revision."""
    if isinstance(item, InviteRefItem):
        tx.delete(item)
    elif isinstance(item, PendingInviteItem) and item.referrer_id == target.member_id:
        tx.delete(item, PendingInviteItem.referrer_id == target.member_id, on_fail=ConcurrentChange())
    elif isinstance(item, MemberItem) and (item.acquisition or {}).get("ref") in target.codes:
        M, revision = MemberItem, int(item.revision or 0)
        acquisition = {k: v for k, v in dict(item.acquisition or {}).items() if k != "ref"}
        tx.update(item, [M.acquisition.set(acquisition), M.revision.set(revision + 1)], M.revision == revision,
                  on_fail=ConcurrentChange())


def _export_invite(item: Entity, target: ErasureTarget) -> dict[str, Any] | None:
    """What is hers of an invite through her link: which code, when, until when (the key is the friend's
    identifier's hash, the checks the friend's signals)."""
    if not isinstance(item, PendingInviteItem) or item.referrer_id != target.member_id:
        return None
    return {"item_type": "invite_by_member", "program_id": item.program_id, "kind": item.kind, "code": item.code,
            "invited_at": clock.iso(item.invited_at), "expires_at_epoch": item.expires_at_epoch}


register(ErasableKind("referred_invites", _find_invites, scrub_member=_scrub_invite, export=True,
                      export_view=_export_invite))
register(ErasableKind("pointers", _find_pointers, export=True, erase=False))
register(ErasableKind("linked_records", _find_linked, export=True, erase=False, export_view=_export_linked))
