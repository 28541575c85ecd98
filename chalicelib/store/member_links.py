"""Export-only kinds (``ErasableKind(erase=False)``): the items about a member stored outside her partition that the
erasure keeps (accounting, dedupe) or scrubs in its pointers step, found from keys her partition already holds, with
bounded reads and no Scan (docs/data-rights.md#export):

* ``pointers``: her referral code and the items her profile's ``pointer_keys`` name (identity pointers, earlier
  codes, personal promo codes) with each code's short link, and her import marker (``IMPORT#<program>#member#<member>``,
  or one written before 2026-12-06, keyed by the hash of one of her identifiers; after an erasure, the hashes kept on
  the erasure record). One ``BatchGetItem`` of the profile and
  the record, then the page's keys.
* ``linked_records``: the records of her events (``EVENT#…``: business key, reply, fingerprint), found by her
  back-references (``store.events.EventRefItem``) and by the business keys of her ledger entries; the redemptions
  and manual adjustments her entries name (``redemption_id``, ``adjustment_id``); the order ledger (``ORDER#…``)
  of each paid order of hers. A Query of her partition (half a page of sources), one ``BatchGetItem`` of what they
  name and one of the orders. An event about another member that paid her (a friend's order) is listed as its
  business key and time only, not the friend's reply.

Pointers and order ledgers are listed only when they name her (``member_id``, ``buyer_id``).
"""

from __future__ import annotations

from typing import Any

from chalicelib.domain import clock
from chalicelib.domain.events.keys import paid_order_of
from chalicelib.store import keys
from chalicelib.store.data_rights import ErasureItem
from chalicelib.store.db import Entity
from chalicelib.store.erasure_kinds import ErasableKind, ErasureTarget, Page, business_key_hash, register
from chalicelib.store.events import EventItem
from chalicelib.store.ledger import AdjustmentItem, LedgerEntryItem, OrderLedgerItem, RedemptionItem, order_hash
from chalicelib.store.members import MemberItem, key_from_str, key_str

Key = tuple[str, str]
#: The profile's code once the erasure scrubbed it (``store.dynamo_ports.ERASED_CODE``).
ERASED_CODE = "-"


def _batch(wanted: list[Key]) -> dict[Key, Entity]:
    unique = list(dict.fromkeys(wanted))
    return {(i.PK, i.SK): i for i in Entity.batch_get(unique, consistent_read=True)} if unique else {}


def _names(item: Entity, member_id: str) -> bool:
    return member_id in (getattr(item, "member_id", None), getattr(item, "buyer_id", None))


# --------------------------------------------------------------------------- pointers and the import marker


def _pointer_keys(target: ErasureTarget) -> list[Key]:
    read = _batch([keys.member(target.program_id, target.member_id),
                   keys.erasure_record(target.program_id, target.member_id)])
    member = read.get(keys.member(target.program_id, target.member_id))
    record = read.get(keys.erasure_record(target.program_id, target.member_id))
    texts = list(member.pointer_keys or []) if isinstance(member, MemberItem) else []
    if isinstance(member, MemberItem) and member.code and member.code != ERASED_CODE:  # her current code
        texts.insert(0, key_str(keys.referral_code(target.program_id, member.code)))
    out: list[Key] = []
    identities = list(record.identities or []) if isinstance(record, ErasureItem) else []
    code_prefix, ident_prefix = f"CODE#{target.program_id}#", f"IDENT#{target.program_id}#"
    for text in texts:
        key = key_from_str(text)
        out.append(key)
        if key[0].startswith(code_prefix):
            out.append(keys.short_link(key[0][len(code_prefix):]))
        elif key[0].startswith(ident_prefix):
            kind, _, value_hash = key[0][len(ident_prefix):].rpartition("#")
            identities.append(f"{kind}:{value_hash}")
    out.append(keys.import_row(target.program_id, f"member#{target.member_id}"))
    for text in dict.fromkeys(identities):
        kind, _, value_hash = text.partition(":")
        out.append(keys.import_row(target.program_id, f"{kind}#{value_hash}"))
    return list(dict.fromkeys(out))


def _find_pointers(target: ErasureTarget, cursor: dict[str, Any] | None, limit: int) -> Page:
    start = int((cursor or {}).get("i", 0))
    wanted = _pointer_keys(target)
    batch = wanted[start:start + max(1, limit)]
    found = _batch(batch)
    items = [found[k] for k in batch if k in found and _names(found[k], target.member_id)]
    end = start + len(batch)
    return Page(items, {"i": end} if end < len(wanted) else None)


# --------------------------------------------------------------------------- events, redemptions, adjustments, orders

_SOURCES = ("EVENT#", "LEDGER#")  # her back-references to event records, then her ledger entries


def _named_by(target: ErasureTarget, source: Entity) -> list[Key]:
    pid = target.program_id
    if source.SK.startswith("EVENT#"):
        return [keys.event(pid, source.SK[len("EVENT#"):])]
    if not isinstance(source, LedgerEntryItem):
        return []
    out = []
    if source.business_key and source.reason_code != "review_voided":  # a void's reversal: the reward's event
        out.append(keys.event(pid, business_key_hash(source.business_key)))
    if source.redemption_id:
        out.append(keys.redemption(pid, source.redemption_id))
    if source.adjustment_id:
        out.append(keys.adjustment(pid, source.adjustment_id))
    return out


def _order_key(target: ErasureTarget, item: Entity) -> Key | None:
    if not isinstance(item, EventItem) or item.member_id != target.member_id:
        return None
    paid = paid_order_of(item.business_key)
    return keys.order_ledger(target.program_id, order_hash(*paid)) if paid else None


def _find_linked(target: ErasureTarget, cursor: dict[str, Any] | None, limit: int) -> Page:
    source = int((cursor or {}).get("source", 0))
    if source >= len(_SOURCES):
        return Page([], None)
    # What the previous page's last source named: an event's entries (a reward and its refund's reversal keep their
    # own keys; several rules' rewards share one) sit side by side, so a page boundary may split them.
    seen = set((cursor or {}).get("seen") or [])
    result = Entity.query(target.partition, Entity.SK.startswith(_SOURCES[source]), limit=max(1, limit // 2),
                          last_evaluated_key=(cursor or {}).get("last"), consistent_read=True)
    sources = list(result)
    wanted = [k for k in dict.fromkeys(k for s in sources for k in _named_by(target, s)) if "|".join(k) not in seen]
    found = _batch(wanted)
    named = [found[k] for k in wanted if isinstance(found.get(k), EventItem | RedemptionItem | AdjustmentItem)]
    found_orders = _batch([k for k in (_order_key(target, i) for i in named) if k is not None])
    items: list[Entity] = []
    for item in named:  # each paid order's ledger right after its event: the same order whatever the page size
        items.append(item)
        order = found_orders.get(_order_key(target, item) or ("", ""))
        if isinstance(order, OrderLedgerItem) and order.buyer_id == target.member_id:
            items.append(order)
    following: dict[str, Any] | None
    if result.last_evaluated_key:
        last = ["|".join(k) for k in _named_by(target, sources[-1])] if sources else []
        following = {"source": source, "last": result.last_evaluated_key, "seen": last}
    else:
        following = {"source": source + 1, "last": None, "seen": []} if source + 1 < len(_SOURCES) else None
    return Page(items, following)


def _export_linked(item: Entity, target: ErasureTarget) -> Entity | dict[str, Any] | None:
    """An event about another member that paid her (a friend's order): when and which fact, not the friend's reply
    or fingerprint."""
    if isinstance(item, EventItem) and item.member_id != target.member_id:
        return {"item_type": "event", "business_key": item.business_key,
                "received_at": clock.iso(item.received_at), "about": "another member (it paid this member)"}
    return item


register(ErasableKind("pointers", _find_pointers, export=True, erase=False))
register(ErasableKind("linked_records", _find_linked, export=True, erase=False, export_view=_export_linked))
