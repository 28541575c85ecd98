"""Reads and atomic writes of programs, partners and keys."""

from __future__ import annotations

from typing import Any, TypeVar

from chalicelib.config import get_settings
from chalicelib.domain.errors import Conflict, NotFound
from chalicelib.store import cache, keys
from chalicelib.store.db import Entity, get_or_none
from chalicelib.store.tenancy import ApiKeyItem, ApiKeyRefItem, PartnerItem, PartnerLocatorItem, ProgramItem
from chalicelib.store.transact import Transaction

E = TypeVar("E", bound=Entity)


def find_api_key(key_hash: str) -> ApiKeyItem | None:
    ttl = get_settings().config_cache_seconds
    item = cache.cached("api_key", key_hash, ttl, lambda: get_or_none(ApiKeyItem, keys.api_key(key_hash)))
    return item if isinstance(item, ApiKeyItem) else None


def _cached(model: type[E], namespace: str, cache_key: str, key: tuple[str, str], fresh: bool) -> E | None:
    """A configuration record through the in-process cache; a miss is not remembered."""

    def load() -> E | None:
        item = get_or_none(model, key)
        return item if isinstance(item, model) else None

    if fresh:
        cache.invalidate(namespace, cache_key)
    item = cache.cached(namespace, cache_key, get_settings().config_cache_seconds, load)
    if item is None:
        cache.invalidate(namespace, cache_key)
    return item


def get_program(program_id: str, *, fresh: bool = False) -> ProgramItem:
    item = _cached(ProgramItem, "program", program_id, keys.program(program_id), fresh)
    if item is None:
        raise NotFound("Program not found", details={"program_id": program_id})
    return item


def list_programs(limit: int, cursor: dict[str, Any] | None) -> tuple[list[ProgramItem], dict[str, Any] | None]:
    result = ProgramItem.gsi1.query("PROGRAMS", limit=limit, last_evaluated_key=cursor, scan_index_forward=False)
    items = [i for i in result if isinstance(i, ProgramItem)]
    return items, result.last_evaluated_key


def get_partner(program_id: str, partner_id: str, *, fresh: bool = False) -> PartnerItem:
    item = _cached(PartnerItem, "partner", f"{program_id}/{partner_id}", keys.partner(program_id, partner_id), fresh)
    if item is None:
        raise NotFound("Partner not found", details={"program_id": program_id, "partner_id": partner_id})
    return item


def locate_partner(partner_id: str) -> str:
    """The program a partner belongs to (the mapping never changes, so it is cached for a long time)."""

    def load() -> str | None:
        item = get_or_none(PartnerLocatorItem, keys.partner_locator(partner_id))
        return item.program_id if isinstance(item, PartnerLocatorItem) else None

    program_id = cache.cached("partner_locator", partner_id, 3600, load)
    if program_id is None:
        cache.invalidate("partner_locator", partner_id)
        raise NotFound("Unknown partner", details={"partner_id": partner_id})
    return program_id


def webhook_config(partner_id: str) -> tuple[PartnerItem, ProgramItem]:
    """A webhook's partner (its secrets) and program: on a cold container one ``BatchGetItem`` for both
    (after the locator), instead of a ``GetItem`` each; both then live in the config cache."""
    program_id = locate_partner(partner_id)
    partner_key = f"{program_id}/{partner_id}"
    partner, program = cache.peek("partner", partner_key), cache.peek("program", program_id)
    if not isinstance(partner, PartnerItem) or not isinstance(program, ProgramItem):
        wanted = [keys.partner(program_id, partner_id), keys.program(program_id)]
        got = {(item.PK, item.SK): item for item in Entity.batch_get(wanted)}
        partner, program = got.get(wanted[0]), got.get(wanted[1])
        ttl = get_settings().config_cache_seconds
        if isinstance(partner, PartnerItem):
            cache.put("partner", partner_key, ttl, partner)
        if isinstance(program, ProgramItem):
            cache.put("program", program_id, ttl, program)
    if not isinstance(partner, PartnerItem):
        raise NotFound("Partner not found", details={"program_id": program_id, "partner_id": partner_id})
    if not isinstance(program, ProgramItem):
        raise NotFound("Program not found", details={"program_id": program_id})
    return partner, program


def stage_partner(tx: Transaction, partner: PartnerItem) -> None:
    tx.create(partner)
    pk, sk = keys.partner_locator(partner.partner_id)
    tx.create(PartnerLocatorItem(PK=pk, SK=sk, program_id=partner.program_id, partner_id=partner.partner_id))


def list_partners(program_id: str, limit: int = 100, cursor: dict[str, Any] | None = None
                  ) -> tuple[list[PartnerItem], dict[str, Any] | None]:
    """One page of a program's partners (one ``Query``, at most ``limit`` items) and the next cursor."""
    pk, prefix = keys.partners_prefix(program_id)
    result = PartnerItem.query(pk, PartnerItem.SK.startswith(prefix), limit=limit, last_evaluated_key=cursor)
    return [i for i in result if isinstance(i, PartnerItem)], result.last_evaluated_key


def existing_partners(program_id: str, partner_ids: set[str]) -> set[str]:
    """Which of ``partner_ids`` are partners of the program: one ``BatchGetItem`` per 100 ids."""
    wanted = [keys.partner(program_id, p) for p in sorted(partner_ids)]
    return {i.partner_id for i in PartnerItem.batch_get(wanted) if isinstance(i, PartnerItem)} if wanted else set()


def list_key_refs(program_id: str, limit: int = 100, cursor: dict[str, Any] | None = None
                  ) -> tuple[list[ApiKeyRefItem], dict[str, Any] | None]:
    """One page of a program's key references and the next cursor."""
    pk, prefix = keys.api_key_refs_prefix(program_id)
    result = ApiKeyRefItem.query(pk, ApiKeyRefItem.SK.startswith(prefix), limit=limit, last_evaluated_key=cursor)
    return [i for i in result if isinstance(i, ApiKeyRefItem)], result.last_evaluated_key


def get_key_ref(program_id: str, key_id: str) -> ApiKeyRefItem:
    item = get_or_none(ApiKeyRefItem, keys.api_key_ref(program_id, key_id))
    if not isinstance(item, ApiKeyRefItem):
        raise NotFound("API key not found", details={"key_id": key_id})
    return item


def add_key(tx: Transaction, key: ApiKeyItem, ref: ApiKeyRefItem) -> None:
    """Both items of a key in the caller's transaction; a (astronomically unlikely) clash fails it."""
    key.PK, key.SK = keys.api_key(ref.key_hash)
    ref.PK, ref.SK = keys.api_key_ref(ref.program_id, ref.key_id)
    clash = Conflict("API key collision; retry", code="key_collision")
    tx.create(key, on_fail=clash)
    tx.create(ref, on_fail=clash)


def revoke_key(ref: ApiKeyRefItem) -> None:
    tx = Transaction()
    gone = NotFound("API key not found", details={"key_id": ref.key_id})
    tx.update(ApiKeyItem(*keys.api_key(ref.key_hash)), [ApiKeyItem.revoked.set(True)], Entity.PK.exists(), gone)
    tx.update(ref, [ApiKeyRefItem.revoked.set(True)], Entity.PK.exists(), gone)
    tx.commit()
    cache.invalidate("api_key", ref.key_hash)
