"""Partner offers: create, list, read, change, archive; upload pool codes (JSON or CSV).

Every function takes the caller's :class:`Principal` and checks the scope first: the operator, or
the partner that owns the offers (``require_partner_scope``: another partner of the program gets a
403 and learns nothing about the offers). The tenant always comes from the key.

Uploads (``upload_codes``) are checked whole before anything is written (well-formed, no duplicate
inside the upload, none already in the pool, the pool stays within ``MAX_POOL_CODES``), then written
in transactions of ``BATCH`` codes: each appends the codes to their shard's slots, creates their
uniqueness items with ``attribute_not_exists`` and moves the shard heads conditioned on the size read,
so a concurrent upload cannot take the same positions or the same codes.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from chalicelib.domain import clock
from chalicelib.domain.errors import Conflict, NotFound, ValidationFailed
from chalicelib.domain.ids import new_id
from chalicelib.domain.offers import (
    MAX_LISTED,
    MAX_POOL_CODES,
    check_offer,
    code_hash,
    is_low,
    parse_codes,
    shard_of,
)
from chalicelib.services.auth import Principal
from chalicelib.store import keys, tenancy_repo
from chalicelib.store.members import batch_get
from chalicelib.store.offers import (
    OfferItem,
    PoolCodeItem,
    PoolHeadItem,
    PoolSlotItem,
    head_keys,
    heads_of,
    remaining_of,
    size_of,
)
from chalicelib.store.tenancy import PartnerItem
from chalicelib.store.transact import Transaction

#: Codes per upload transaction: 2 items per code + up to 8 shard heads + the offer stay within 100.
BATCH = 40
_CONCURRENT = Conflict("The pool changed while the codes were written; retry the upload with the codes not yet "
                       "stored", code="concurrent_upload")


def offer_view(item: OfferItem, heads: dict[int, PoolHeadItem | None] | None = None) -> dict[str, Any]:
    view: dict[str, Any] = {
        "offer_id": item.offer_id, "program_id": item.program_id, "partner_id": item.partner_id,
        "name": item.name, "description": item.description, "kind": item.kind,
        "code_source": item.code_source, "enabled": bool(item.enabled), "archived": bool(item.archived),
        "low_pool_threshold": _int(item.low_pool_threshold), "valid_days": _int(item.valid_days),
        "created_at": clock.iso(item.created_at), "updated_at": clock.iso(item.updated_at),
    }
    view.update(value_of(item))
    if item.code_source == "static":
        view["static_code"] = item.static_code
    if heads is not None and item.code_source == "pool":
        size, remaining = size_of(heads), remaining_of(heads)
        view["pool"] = {"size": size, "remaining": remaining, "issued": size - remaining,
                        "low": is_low(_int(item.low_pool_threshold), remaining)}
    return view


def value_of(item: Any) -> dict[str, Any]:
    """The offer's value fields (also copied onto each voucher)."""
    out: dict[str, Any] = {}
    for name in ("percent", "amount_minor", "currency", "item", "subscription"):
        value = getattr(item, name, None)
        if value is not None:
            out[name] = int(value) if name in ("percent", "amount_minor") else value
    return out


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def get_offer_item(program_id: str, partner_id: str, offer_id: str) -> OfferItem:
    item = batch_get([keys.offer(program_id, partner_id, offer_id)]).get(keys.offer(program_id, partner_id, offer_id))
    if not isinstance(item, OfferItem) or item.archived:
        raise NotFound("Offer not found", details={"offer_id": offer_id})
    return item


def _with_heads(item: OfferItem) -> dict[str, Any]:
    if item.code_source != "pool":
        return offer_view(item)
    read = batch_get(head_keys(item.program_id, item.offer_id))
    return offer_view(item, heads_of(item.program_id, item.offer_id, read))


# --------------------------------------------------------------------------- CRUD


def create_offer(principal: Principal, program_id: str, partner_id: str, data: dict[str, Any]) -> dict[str, Any]:
    principal.require_partner_scope(program_id, partner_id)
    check_offer(data)
    tenancy_repo.get_partner(program_id, partner_id)  # 404 for an unknown partner
    now = clock.utcnow()
    offer_id = new_id("off")
    pk, sk = keys.offer(program_id, partner_id, offer_id)
    item = OfferItem(
        PK=pk, SK=sk, program_id=program_id, partner_id=partner_id, offer_id=offer_id, name=data["name"],
        description=data.get("description"), kind=data["kind"], percent=data.get("percent"),
        amount_minor=data.get("amount_minor"), currency=data.get("currency"), item=data.get("item"),
        subscription=data.get("subscription"), code_source=data["code_source"], static_code=data.get("static_code"),
        low_pool_threshold=data.get("low_pool_threshold"), valid_days=data.get("valid_days"),
        enabled=data.get("enabled", True), archived=False, alert_epoch=0, revision=0, created_at=now,
        updated_at=now,
    )
    tx = Transaction()
    tx.create(item, on_fail=Conflict("Offer id collision; retry", code="conflict"))
    tx.check(PartnerItem, keys.partner(program_id, partner_id), PartnerItem.PK.exists(),
             on_fail=NotFound("Partner not found", details={"partner_id": partner_id}))
    tx.commit()
    return _with_heads(item)


def list_offers(principal: Principal, program_id: str, partner_id: str, limit: int,
                cursor: dict[str, Any] | None) -> dict[str, Any]:
    principal.require_partner_scope(program_id, partner_id)
    pk, prefix = keys.offers_prefix(program_id, partner_id)
    result = OfferItem.query(pk, OfferItem.SK.startswith(prefix), limit=limit, last_evaluated_key=cursor,
                             filter_condition=OfferItem.archived == False)  # noqa: E712 (a DynamoDB condition)
    items = [offer_view(i) for i in result if isinstance(i, OfferItem)]
    return {"items": items, "next_cursor": result.last_evaluated_key}


def get_offer(principal: Principal, program_id: str, partner_id: str, offer_id: str) -> dict[str, Any]:
    principal.require_partner_scope(program_id, partner_id)
    return _with_heads(get_offer_item(program_id, partner_id, offer_id))


def update_offer(principal: Principal, program_id: str, partner_id: str, offer_id: str,
                 data: dict[str, Any]) -> dict[str, Any]:
    principal.require_partner_scope(program_id, partner_id)
    item = get_offer_item(program_id, partner_id, offer_id)
    if item.code_source == "static" and data.get("low_pool_threshold") is not None:
        raise ValidationFailed("low_pool_threshold is only for pool offers",
                               details={"errors": [{"path": "$.low_pool_threshold",
                                                    "message": "only allowed when code_source is 'pool'"}]})
    E = OfferItem
    attrs: dict[str, Any] = {"name": E.name, "description": E.description, "low_pool_threshold": E.low_pool_threshold,
             "valid_days": E.valid_days, "enabled": E.enabled}
    actions: list[Any] = []
    for name, value in data.items():
        attr = attrs[name]
        actions.append(attr.remove() if value is None else attr.set(value))
        setattr(item, name, value)
    if "low_pool_threshold" in data:
        # A new threshold is a new crossing to watch for.
        actions.append(E.alert_epoch.add(1))
        item.alert_epoch = int(item.alert_epoch or 0) + 1
    now = clock.utcnow()
    revision = int(item.revision or 0)
    actions += [E.updated_at.set(now), E.revision.set(revision + 1)]
    tx = Transaction()
    tx.update(item, actions, (E.revision == revision) & (E.archived == False),  # noqa: E712
              on_fail=Conflict("The offer changed concurrently; read it again and retry", code="concurrent_update"))
    tx.commit()
    item.updated_at, item.revision = now, revision + 1
    return _with_heads(item)


def archive_offer(principal: Principal, program_id: str, partner_id: str, offer_id: str) -> dict[str, Any]:
    """Soft delete: no more vouchers are issued from it (rules granting it fall back); issued ones stay valid."""
    principal.require_partner_scope(program_id, partner_id)
    item = get_offer_item(program_id, partner_id, offer_id)
    now = clock.utcnow()
    item.update(actions=[OfferItem.archived.set(True), OfferItem.enabled.set(False), OfferItem.updated_at.set(now),
                         OfferItem.revision.add(1)])
    return {"offer_id": offer_id, "archived": True}


# --------------------------------------------------------------------------- codes


def upload_codes(principal: Principal, program_id: str, partner_id: str, offer_id: str,
                 raw_codes: list[str]) -> dict[str, Any]:
    principal.require_partner_scope(program_id, partner_id)
    offer = get_offer_item(program_id, partner_id, offer_id)
    if offer.code_source != "pool":
        raise ValidationFailed("This offer has one static code; codes are uploaded only to pool offers",
                               code="not_a_pool_offer", details={"offer_id": offer_id})
    codes = parse_codes(raw_codes)
    code_keys = {code: keys.pool_code(program_id, offer_id, code_hash(code)) for code in codes}
    read = batch_get([*head_keys(program_id, offer_id), *code_keys.values()])
    present = [code for code, key in code_keys.items() if isinstance(read.get(key), PoolCodeItem)]
    if present:
        raise ValidationFailed(f"{len(present)} code(s) are already in this pool (free or issued)",
                               code="codes_already_present",
                               details={"codes": present[:MAX_LISTED], "count": len(present)})
    heads = heads_of(program_id, offer_id, read)
    if size_of(heads) + len(codes) > MAX_POOL_CODES:
        raise ValidationFailed(f"A pool holds at most {MAX_POOL_CODES:,} codes", code="pool_full",
                               details={"limit": MAX_POOL_CODES, "size": size_of(heads), "uploaded": len(codes)})
    remaining_before = remaining_of(heads)
    sizes = {s: int(h.size or 0) if h is not None else 0 for s, h in heads.items()}
    now = clock.utcnow()
    stored = 0
    for start in range(0, len(codes), BATCH):
        batch = codes[start:start + BATCH]
        tx = Transaction()
        by_shard: dict[int, list[str]] = defaultdict(list)
        for code in batch:
            by_shard[shard_of(code)].append(code)
        for shard, shard_codes in by_shard.items():
            first = sizes[shard]
            for offset, code in enumerate(shard_codes):
                position = first + offset
                pk, sk = keys.pool_slot(program_id, offer_id, shard, position)
                tx.create(PoolSlotItem(PK=pk, SK=sk, program_id=program_id, offer_id=offer_id, shard=shard,
                                       position=position, code=code, uploaded_at=now), on_fail=_CONCURRENT)
                cpk, csk = code_keys[code]
                tx.create(PoolCodeItem(PK=cpk, SK=csk, program_id=program_id, offer_id=offer_id, shard=shard,
                                       position=position),
                          on_fail=ValidationFailed("A code was added to this pool concurrently",
                                                   code="codes_already_present", details={"codes": [code]}))
            hpk, hsk = keys.pool_head(program_id, offer_id, shard)
            head = PoolHeadItem(PK=hpk, SK=hsk)
            H = PoolHeadItem
            condition = (H.size.does_not_exist() | (H.size == 0)) if first == 0 else (H.size == first)
            tx.update(head, [H.entity.set(PoolHeadItem), H.program_id.set(program_id),  # type: ignore[arg-type]
                             H.offer_id.set(offer_id), H.shard.set(shard), H.size.set(first + len(shard_codes)),
                             H.next.set(H.next | 0)], condition, on_fail=_CONCURRENT)
            sizes[shard] = first + len(shard_codes)
        tx.commit()
        stored += len(batch)
    remaining_after = remaining_before + stored
    threshold = _int(offer.low_pool_threshold)
    if threshold is not None and is_low(threshold, remaining_before) and not is_low(threshold, remaining_after):
        # Refilled above the threshold: the next fall below it is a new crossing (a new alert).
        offer.update(actions=[OfferItem.alert_epoch.add(1)])
    return {"offer_id": offer_id, "accepted": stored,
            "pool": {"size": sum(sizes.values()), "remaining": remaining_after}}
