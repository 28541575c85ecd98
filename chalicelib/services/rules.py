"""Program rules documents: validate, store as a new immutable version, read (cached).

A program's current version is ``ProgramItem.rules_version``; each version is its own item
(``keys.rules_version``), created with ``attribute_not_exists`` and never rewritten, so every
posting's ``rule_version`` can always be looked up. Versions are immutable, so the parsed
document is cached per (program, version) for long; only the program record (30 s config
cache) decides which version is current.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chalicelib.domain import clock
from chalicelib.domain.errors import NotFound, ValidationFailed, field_error
from chalicelib.domain.rewards import RULES_SCHEMA, RulesDoc, load_rules, parse_rules
from chalicelib.domain.validation import child_path
from chalicelib.services import ports
from chalicelib.services.auth import Principal
from chalicelib.services.ports import Ports

if TYPE_CHECKING:
    from chalicelib.store.ledger import RulesVersionItem
    from chalicelib.store.tenancy import ProgramItem


def rules_key(program: ProgramItem, deps: Ports | None = None) -> tuple[str, str] | None:
    """The key of the current version (what the pipeline's first batch read fetches), None without rules."""
    version = int(program.rules_version or 0)
    return (deps or ports.current()).programs.rules_key(program.program_id, version) if version else None


#: Parsed documents by (program id, version): versions are immutable, so this never goes stale.
_parsed: dict[tuple[str, int], RulesDoc] = {}


def is_cached(program: ProgramItem) -> bool:
    return (program.program_id, int(program.rules_version or 0)) in _parsed


def remember(program_id: str, item: RulesVersionItem) -> RulesDoc:
    # Validated by put_rules when stored: built without validating again (cold-start cost).
    doc = load_rules(item.document)
    _parsed[(program_id, int(item.version))] = doc
    return doc


def current_rules(program: ProgramItem, items: dict[tuple[str, str], Any] | None = None,
                  deps: Ports | None = None) -> RulesDoc | None:
    """The program's current rules: from the in-process cache, the given batch-read items, or a GetItem."""
    version = int(program.rules_version or 0)
    if not version:
        return None
    hit = _parsed.get((program.program_id, version))
    if hit is not None:
        return hit
    item = (deps or ports.current()).programs.rules_version(program.program_id, version, items)
    if item is None:
        return None
    return remember(program.program_id, item)


def reset_cache() -> None:
    _parsed.clear()


def _prepare(deps: Ports, program: ProgramItem, body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ValidationFailed("The rules document must be a JSON object",
                               details={"errors": [field_error("$", "must be a JSON object")]})
    doc = {k: v for k, v in body.items() if k != "version"}  # the server numbers versions
    errors = []
    for name, program_value in (("point_value_minor", int(program.point_value_minor)), ("currency", program.currency)):
        if name not in doc:
            doc[name] = program_value
        elif doc[name] != program_value:
            errors.append(field_error(f"$.{name}", f"must equal the program's {name} ({program_value!r})"))
    if errors:
        raise ValidationFailed("Invalid rules document", details={"errors": errors})
    parsed = parse_rules(doc)  # 422 with the JSON path on any problem
    max_depth = program.program_settings.max_depth
    depth_errors = [
        field_error(f"$.rules[{i}].recipient.level",
                    f"level {rule.recipient.level} is deeper than the program's settings.max_depth ({max_depth})")
        for i, rule in enumerate(parsed.rules)
        if rule.recipient.type == "referrer" and rule.recipient.level > max_depth
    ]
    if depth_errors:
        raise ValidationFailed("Invalid rules document", details={"errors": depth_errors})
    # Only the partners the document names are read (bounded by the document, not by the program).
    unknown = _unknown_partner_errors(
        parsed, deps.programs.existing_partners(program.program_id, _named_partners(parsed)))
    if unknown:
        raise ValidationFailed("The rules name partners that are not in this program", details={"errors": unknown})
    missing = _unknown_offer_errors(deps, program.program_id, parsed)
    if missing:
        raise ValidationFailed("The rules grant offers that do not exist", details={"errors": missing})
    tier_errors = _unknown_tier_errors(program, parsed)
    if tier_errors:
        raise ValidationFailed("The rules name member tiers the program does not have", details={"errors": tier_errors})
    return doc


def _unknown_tier_errors(program: ProgramItem, parsed: Any) -> list[dict[str, str]]:
    """``trigger.tiers`` and ``tier_multipliers`` must name tiers of ``settings.tiers`` (a typo would never match)."""
    tiers = program.program_settings.tiers
    known = set(tiers.ids) if tiers is not None else set()
    why = "is not a tier of this program's settings.tiers" if tiers is not None else "the program has no settings.tiers"
    errors = []
    for i, rule in enumerate(parsed.rules):
        errors += [field_error(f"$.rules[{i}].trigger.tiers[{j}]", f"'{t}' {why}" if tiers else why)
                   for j, t in enumerate(rule.trigger.tiers) if t not in known]
        errors += [field_error(child_path(f"$.rules[{i}].tier_multipliers", t), f"'{t}' {why}" if tiers else why)
                   for t in rule.tier_multipliers if t not in known]
    return errors


def _unknown_offer_errors(deps: Ports, program_id: str, parsed: Any) -> list[dict[str, str]]:
    """An offer reward naming no offer of that partner (a typo) would only ever fall back: refuse it.
    An offer archived later is not an error (its rules fall back, docs/coalition.md)."""
    named = [(f"$.rules[{i}].amount.offer.offer_id", rule.amount.offer)
             for i, rule in enumerate(parsed.rules) if rule.amount.offer is not None]
    if not named:
        return []
    found = deps.programs.existing_offers(program_id, [(ref.partner_id, ref.offer_id) for _, ref in named])
    return [field_error(path, f"'{ref.offer_id}' is not an offer of partner '{ref.partner_id}'")
            for path, ref in named if (ref.partner_id, ref.offer_id) not in found]


def _named_partners(parsed: Any) -> set[str]:
    named: set[str] = set()
    for rule in parsed.rules:
        named.update(rule.trigger.partners)
        named.update(p for p in (rule.funded_by, *rule.partners) if p is not None)
        named.update(o.funded_by for o in rule.partners.values() if o.funded_by is not None)
    return named


def _unknown_partner_errors(parsed: Any, partner_ids: set[str]) -> list[dict[str, str]]:
    """A typo in a partner id would silently turn a reward off (or fund it from nobody): refuse it."""
    errors = []
    for i, rule in enumerate(parsed.rules):
        named = [(f"$.rules[{i}].trigger.partners[{j}]", p) for j, p in enumerate(rule.trigger.partners)]
        named.append((f"$.rules[{i}].funded_by", rule.funded_by))
        for partner_id, override in rule.partners.items():
            named.append((child_path(f"$.rules[{i}].partners", partner_id), partner_id))
            named.append((child_path(f"$.rules[{i}].partners", partner_id) + ".funded_by", override.funded_by))
        errors += [field_error(path, f"'{pid}' is not a partner of this program")
                   for path, pid in named if pid is not None and pid not in partner_ids]
    return errors


def version_view(item: RulesVersionItem, current: int) -> dict[str, Any]:
    return {
        "program_id": item.program_id,
        "version": int(item.version),
        "current": int(item.version) == current,
        "created_at": clock.iso(item.created_at),
        "document": item.document,
    }


def put_rules(deps: Ports, principal: Principal, program_id: str, body: Any) -> dict[str, Any]:
    principal.require_program(program_id)  # the route requires the operator
    program = deps.programs.get(program_id, fresh=True)
    doc = _prepare(deps, program, body)
    item = deps.programs.put_rules(program, doc, deps.clock.now())
    remember(program_id, item)
    return version_view(item, int(item.version))


def get_rules(deps: Ports, principal: Principal, program_id: str, version: int | None) -> dict[str, Any]:
    principal.require_program(program_id)
    program = deps.programs.get(program_id, fresh=True)
    current = int(program.rules_version or 0)
    wanted = version if version is not None else current
    item = deps.programs.rules_version(program_id, wanted) if wanted else None
    if item is None:
        raise NotFound("No rules document with that version" if version else "The program has no rules yet",
                       details={"program_id": program_id, "version": version})
    return version_view(item, current)


def schema() -> dict[str, Any]:
    return RULES_SCHEMA
