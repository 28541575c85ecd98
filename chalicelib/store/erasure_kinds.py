"""The registry of erasable item kinds: what else, besides a member's pointers and profile, an erasure scrubs.

``services.erasure`` runs the erasure through the ``DataRightsStore`` port (``services.ports``); its DynamoDB
implementation (``store.dynamo_ports``) runs one step per registered kind, in registration order. A kind says
how to find a member's items (bounded: a Query by key prefix or an index, never a Scan) and how to scrub one
into the step's transaction. Registering a kind (e.g. in ``chalicelib/notify/erasure.py``)::

    from chalicelib.store.erasure_kinds import ErasableKind, partition_prefix_finder, register

    register(ErasableKind(
        name="device_endpoints",
        find=partition_prefix_finder("DEVICE#"),  # or any bounded Query (an index), never a Scan
        scrub=lambda tx, item: tx.delete(item),
    ))

and add the module to ``services.ports.ERASABLE_MODULES`` so it is imported before an erasure runs (the
wiring, ``services.ports.production``, hands the list to the store).
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from chalicelib.domain.records import StaleErasure
from chalicelib.store import keys
from chalicelib.store.db import Entity
from chalicelib.store.events import AttributionRecordItem
from chalicelib.store.transact import Transaction

#: For scrubbers: an ``on_fail`` meaning "the item changed since it was found: redo the step".
ConcurrentChange = StaleErasure


@dataclass(frozen=True)
class ErasureTarget:
    """What a finder needs: the member, their codes and their identifiers' hashes (``kind:hash``)."""

    program_id: str
    member_id: str
    codes: tuple[str, ...]
    identities: tuple[str, ...]

    @property
    def partition(self) -> str:
        return keys.member_partition(self.program_id, self.member_id)


@dataclass
class Page:
    items: list[Entity]
    cursor: dict[str, Any] | None  # None: nothing more to find


Finder = Callable[[ErasureTarget, dict[str, Any] | None, int], Page]
Scrubber = Callable[[Transaction, Entity], None]
#: A scrubber that needs to know whose erasure it is (e.g. to take the member off an item listing several).
MemberScrubber = Callable[[Transaction, Entity, ErasureTarget], None]
#: What the export shows of a found item (``None``: nothing, e.g. a back-reference already in the partition);
#: a dict is exported as it is (it must carry ``item_type``).
ExportView = Callable[[Entity, ErasureTarget], "Entity | dict[str, Any] | None"]


def _no_scrub(tx: Transaction, item: Entity) -> None:
    return None


@dataclass(frozen=True)
class ErasableKind:
    """An item kind holding personal data: how to find a member's items (bounded) and scrub one.

    ``find(target, cursor, limit)`` returns at most ``limit`` items and a cursor (``None`` when
    done); it must be a Query by key prefix or an index, never a Scan. ``scrub(tx, item)`` stages
    at most one operation on ``item`` (delete it, or remove its personal attributes) and must be
    idempotent: a resumed erasure may scrub an item twice. The member export lists everything in
    the member's partition; a kind whose items live elsewhere sets ``export=True`` so the export
    lists them through ``find`` too.

    ``scrub_member(tx, item, target)``, when set, is used instead of ``scrub`` (same rules), for an item that names
    several members and must lose only this one. ``export_view(item, target)``, when set, says what the export
    shows of a found item: only this member's part of an item shared with others, or ``None`` for nothing.
    ``erase=False`` (with ``export=True``): a kind only the export lists.
    """

    name: str
    find: Finder
    scrub: Scrubber = _no_scrub
    export: bool = False
    scrub_member: MemberScrubber | None = None
    export_view: ExportView | None = None
    #: False: exported only (items the erasure keeps as they are: accounting, dedupe; it runs no step for them).
    erase: bool = True


_REGISTRY: dict[str, ErasableKind] = {}
_loaded: set[str] = set()


def register(kind: ErasableKind) -> ErasableKind:
    """Add a kind (idempotent by name; a later registration replaces an earlier one)."""
    _REGISTRY[kind.name] = kind
    return kind


def registered(modules: Iterable[str] = ()) -> list[ErasableKind]:
    """Every registered kind, in order, after importing ``modules`` (the ones that register kinds) once."""
    for module in modules:
        if module not in _loaded:
            importlib.import_module(module)
            _loaded.add(module)
    return list(_REGISTRY.values())


def partition_prefix_finder(sk_prefix: str, model: type[Entity] = Entity) -> Finder:
    """A finder for items under the member's partition whose sort key starts with ``sk_prefix``."""

    def find(target: ErasureTarget, cursor: dict[str, Any] | None, limit: int) -> Page:
        result = model.query(target.partition, Entity.SK.startswith(sk_prefix), limit=limit,
                             last_evaluated_key=cursor, consistent_read=True)
        items = list(result)
        return Page(items, result.last_evaluated_key)

    return find


def back_reference_finder(sk_prefix: str, item_key: Callable[[ErasureTarget, Entity], tuple[str, str]]) -> Finder:
    """A finder for items outside the member's partition that she shares with others (a signal pointer, a review
    item, an invite through her link): her back-references under ``sk_prefix`` in her partition, each followed by
    the item it points to (``item_key``), read in one BatchGetItem. Half of ``limit`` back-references per page, so
    a page is at most ``limit`` items."""

    def find(target: ErasureTarget, cursor: dict[str, Any] | None, limit: int) -> Page:
        result = Entity.query(target.partition, Entity.SK.startswith(sk_prefix), limit=max(1, limit // 2),
                              last_evaluated_key=cursor, consistent_read=True)
        refs = list(result)
        wanted = [item_key(target, ref) for ref in refs]
        found = {(i.PK, i.SK): i for i in Entity.batch_get(wanted, consistent_read=True)} if wanted else {}
        items: list[Entity] = []
        for ref, key in zip(refs, wanted, strict=True):
            items.append(ref)
            if key in found:
                items.append(found[key])
        return Page(items, result.last_evaluated_key)

    return find


# --------------------------------------------------------------------------- built-in kinds


def business_key_hash(text: str) -> str:
    # The same digest as the event dedupe key (services.pipeline._hash): still links to the event record.
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:40]


def _scrub_own_attribution(tx: Transaction, item: Entity) -> None:
    """The member's own attribution records (as the friend): the business key names the partner's
    customer record, so only its hash is kept; reasons are fixed texts and stay."""
    if isinstance(item, AttributionRecordItem) and item.business_key and not item.business_key.startswith("sha256:"):
        tx.update(item, [AttributionRecordItem.business_key.set("sha256:" + business_key_hash(item.business_key))],
                  Entity.PK.exists())


def _find_code_attributions(target: ErasureTarget, cursor: dict[str, Any] | None, limit: int) -> Page:
    """Records (in other members' partitions) naming one of the member's codes, code by code."""
    index = int((cursor or {}).get("code_index", 0))
    last = (cursor or {}).get("last")
    while index < len(target.codes):
        partition = keys.gsi1_attribution_code_partition(target.program_id, target.codes[index])
        result = AttributionRecordItem.gsi1.query(partition, limit=limit, last_evaluated_key=last)
        items = list(result)
        if result.last_evaluated_key:
            return Page(items, {"code_index": index, "last": result.last_evaluated_key})
        index, last = index + 1, None
        if items:
            return Page(items, {"code_index": index, "last": None} if index < len(target.codes) else None)
    return Page([], None)


def _scrub_code_attribution(tx: Transaction, item: Entity) -> None:
    """Take the erased code off the record and off the code's listing (the code may be issued again)."""
    if isinstance(item, AttributionRecordItem):
        tx.update(item, [AttributionRecordItem.code.remove(), AttributionRecordItem.GSI1PK.remove(),
                         AttributionRecordItem.GSI1SK.remove()], Entity.PK.exists())


register(ErasableKind("attribution_records", partition_prefix_finder("ATTR#"), _scrub_own_attribution))
# Other members' records (the friends'), naming this member's code: not part of the member's export.
register(ErasableKind("code_attributions", _find_code_attributions, _scrub_code_attribution))
