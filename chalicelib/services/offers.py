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

from typing import TYPE_CHECKING, Any

from chalicelib.domain import clock
from chalicelib.domain.errors import NotFound, ValidationFailed
from chalicelib.domain.ids import new_id
from chalicelib.domain.offers import (
    MAX_LISTED,
    MAX_POOL_CODES,
    check_offer,
    is_low,
    parse_codes,
)
from chalicelib.services.auth import Principal
from chalicelib.services.ports import OFFER_CODES_PER_WRITE, Ports

if TYPE_CHECKING:
    from chalicelib.store.offers import OfferItem, PoolHeadItem

#: Codes per upload transaction (2 items per code + up to 8 shard heads stay within 100).
BATCH = OFFER_CODES_PER_WRITE


def size_of(heads: dict[int, PoolHeadItem | None]) -> int:
    return sum(int(h.size or 0) for h in heads.values() if h is not None)


def remaining_of(heads: dict[int, PoolHeadItem | None]) -> int:
    return sum(h.remaining for h in heads.values() if h is not None)


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


def get_offer_item(deps: Ports, program_id: str, partner_id: str, offer_id: str) -> OfferItem:
    item = deps.offers.offer(program_id, partner_id, offer_id)
    if item is None or item.archived:
        raise NotFound("Offer not found", details={"offer_id": offer_id})
    return item


def _with_heads(deps: Ports, item: OfferItem) -> dict[str, Any]:
    if item.code_source != "pool":
        return offer_view(item)
    return offer_view(item, deps.offers.heads(item.program_id, item.offer_id))


# --------------------------------------------------------------------------- CRUD


def create_offer(deps: Ports, principal: Principal, program_id: str, partner_id: str,
                 data: dict[str, Any]) -> dict[str, Any]:
    principal.require_partner_scope(program_id, partner_id)
    check_offer(data)
    deps.programs.partner(program_id, partner_id)  # 404 for an unknown partner
    now = deps.clock.now()
    offer_id = new_id("off")
    item = deps.offers.create_offer(dict(
        program_id=program_id, partner_id=partner_id, offer_id=offer_id, name=data["name"],
        description=data.get("description"), kind=data["kind"], percent=data.get("percent"),
        amount_minor=data.get("amount_minor"), currency=data.get("currency"), item=data.get("item"),
        subscription=data.get("subscription"), code_source=data["code_source"], static_code=data.get("static_code"),
        low_pool_threshold=data.get("low_pool_threshold"), valid_days=data.get("valid_days"),
        enabled=data.get("enabled", True), archived=False, alert_epoch=0, revision=0, created_at=now,
        updated_at=now,
    ))
    return _with_heads(deps, item)


def list_offers(deps: Ports, principal: Principal, program_id: str, partner_id: str, limit: int,
                cursor: dict[str, Any] | None) -> dict[str, Any]:
    principal.require_partner_scope(program_id, partner_id)
    page = deps.offers.offers(program_id, partner_id, limit, cursor)
    return {"items": [offer_view(i) for i in page.items], "next_cursor": page.next_cursor}


def get_offer(deps: Ports, principal: Principal, program_id: str, partner_id: str, offer_id: str) -> dict[str, Any]:
    principal.require_partner_scope(program_id, partner_id)
    return _with_heads(deps, get_offer_item(deps, program_id, partner_id, offer_id))


def update_offer(deps: Ports, principal: Principal, program_id: str, partner_id: str, offer_id: str,
                 data: dict[str, Any]) -> dict[str, Any]:
    principal.require_partner_scope(program_id, partner_id)
    item = get_offer_item(deps, program_id, partner_id, offer_id)
    if item.code_source == "static" and data.get("low_pool_threshold") is not None:
        raise ValidationFailed("low_pool_threshold is only for pool offers",
                               details={"errors": [{"path": "$.low_pool_threshold",
                                                    "message": "only allowed when code_source is 'pool'"}]})
    editable = ("name", "description", "low_pool_threshold", "valid_days", "enabled")
    changes = {name: data[name] for name in editable if name in data}
    # A new threshold is a new crossing to watch for.
    deps.offers.update_offer(item, changes, deps.clock.now(), new_alert_epoch="low_pool_threshold" in data)
    return _with_heads(deps, item)


def archive_offer(deps: Ports, principal: Principal, program_id: str, partner_id: str,
                  offer_id: str) -> dict[str, Any]:
    """Soft delete: no more vouchers are issued from it (rules granting it fall back); issued ones stay valid."""
    principal.require_partner_scope(program_id, partner_id)
    item = get_offer_item(deps, program_id, partner_id, offer_id)
    deps.offers.archive_offer(item, deps.clock.now())
    return {"offer_id": offer_id, "archived": True}


# --------------------------------------------------------------------------- codes


def upload_codes(deps: Ports, principal: Principal, program_id: str, partner_id: str, offer_id: str,
                 raw_codes: list[str]) -> dict[str, Any]:
    principal.require_partner_scope(program_id, partner_id)
    offer = get_offer_item(deps, program_id, partner_id, offer_id)
    if offer.code_source != "pool":
        raise ValidationFailed("This offer has one static code; codes are uploaded only to pool offers",
                               code="not_a_pool_offer", details={"offer_id": offer_id})
    codes = parse_codes(raw_codes)
    heads, present = deps.offers.codes_present(program_id, offer_id, codes)
    if present:
        raise ValidationFailed(f"{len(present)} code(s) are already in this pool (free or issued)",
                               code="codes_already_present",
                               details={"codes": present[:MAX_LISTED], "count": len(present)})
    if size_of(heads) + len(codes) > MAX_POOL_CODES:
        raise ValidationFailed(f"A pool holds at most {MAX_POOL_CODES:,} codes", code="pool_full",
                               details={"limit": MAX_POOL_CODES, "size": size_of(heads), "uploaded": len(codes)})
    remaining_before = remaining_of(heads)
    sizes = {s: int(h.size or 0) if h is not None else 0 for s, h in heads.items()}
    now = deps.clock.now()
    stored = 0
    for start in range(0, len(codes), BATCH):
        batch = codes[start:start + BATCH]
        sizes = deps.offers.append_codes(program_id, offer_id, batch, sizes, now)
        stored += len(batch)
    remaining_after = remaining_before + stored
    threshold = _int(offer.low_pool_threshold)
    if threshold is not None and is_low(threshold, remaining_before) and not is_low(threshold, remaining_after):
        # Refilled above the threshold: the next fall below it is a new crossing (a new alert).
        deps.offers.bump_alert_epoch(offer)
    return {"offer_id": offer_id, "accepted": stored,
            "pool": {"size": sum(sizes.values()), "remaining": remaining_after}}
