"""The published JSON Schema of the rules document and ``parse_rules``.

Validation happens in two passes:

1. ``RULES_SCHEMA`` (draft-07, ``additionalProperties: false`` everywhere so typos are caught)
   via fastjsonschema. The validator is compiled on first use and cached (nothing at import
   time: cold starts only pay for it when rules are actually parsed). fastjsonschema stops at
   the first violation, so a schema failure reports exactly one error.
2. Semantic checks the schema cannot express (duplicate rule ids, referrer level deeper than
   ``max_depth``, tiers in order, ...). These collect *all* errors.

Both raise ``ValidationFailed`` (HTTP 422) with ``details = {"errors": [{"path": "$.rules[2]...",
"message": ...}]}``. The input dict is never mutated (defaults are applied while building the
dataclasses, not written back into the document).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping
from typing import Any, cast

from chalicelib.domain.errors import ValidationFailed, field_error
from chalicelib.domain.rewards.models import (
    Amount,
    AmountBase,
    OfferRef,
    OrderSelector,
    PartnerOverride,
    Recipient,
    RecipientType,
    Recurring,
    Rule,
    RulesDoc,
    Tier,
    Trigger,
)
from chalicelib.domain.safe_json import SINGLE_LINE
from chalicelib.domain.settings import DEFAULT_MAX_DEPTH, MAX_DEPTH_RANGE, TIER_ID_PATTERN, TIER_LEVELS_RANGE
from chalicelib.domain.validation import child_path, schema_errors, to_jsonpath

MAX_DEPTH_LIMIT = MAX_DEPTH_RANGE[1]
_BIG = 10**12  # sanity bound for money/points so products stay small and nobody types 1e30
_ID = "^[a-z0-9][a-z0-9_.-]{0,63}$"
_PARTNER_ID = "^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"

_POINTS = {"type": "integer", "minimum": 1, "maximum": _BIG}
_RATE_BP = {
    "type": "integer",
    "minimum": 1,
    "maximum": 10_000,
    "description": "Basis points of the order amount: 500 = 5.00 %, 10000 = 100 %.",
}
_NULLABLE_CAP = {"type": ["integer", "null"], "minimum": 0, "maximum": _BIG}

# Checks run property-first (allOf order): a typo like "percent" is reported as an unknown
# property at its own path, not as the vaguer "must set exactly one of".
_TIER = {
    "type": "object",
    "required": ["min_converted"],
    "allOf": [
        {
            "additionalProperties": False,
            "properties": {
                "min_converted": {
                    "type": "integer",
                    "minimum": 0,
                    "description": "Tier applies once the recipient has at least this many converted referrals.",
                },
                "points": _POINTS,
                "rate_bp": _RATE_BP,
            },
        },
        {"oneOf": [{"required": ["points"]}, {"required": ["rate_bp"]}]},
    ],
}

# Shared by a rule's ``amount`` and a partner override's ``amount``; the rule's version also
# requires exactly one of points / rate_bp / tiers (an override may change only a cap).
_AMOUNT_PROPERTIES: dict[str, Any] = {
    "points": {**_POINTS, "description": "Fixed number of points."},
    "rate_bp": _RATE_BP,
    "tiers": {
        "type": "array",
        "minItems": 1,
        "maxItems": 20,
        "items": _TIER,
        "description": "Commission tiers by the recipient's converted referrals (referrer rules only).",
    },
    "base": {
        "enum": ["total", "subtotal", "subtotal_minus_discount", "total_minus_shipping"],
        "default": "total",
        "description": "Which order amount percentages and min_order_amount use.",
    },
    "offer": {
        "type": "object",
        "additionalProperties": False,
        "required": ["partner_id", "offer_id"],
        "properties": {
            "partner_id": {"type": "string", "pattern": _PARTNER_ID},
            "offer_id": {"type": "string", "pattern": _PARTNER_ID},
            "fallback_points": {**_POINTS, "description": "Points given instead when no code can be issued."},
            "per_month": {"type": "integer", "minimum": 1, "maximum": 31,
                          "description": "At most this many vouchers of this rule per recipient and calendar month."},
        },
        "description": "A partner offer as the reward: a voucher from its pool (or its static code).",
    },
    "max_points": {**_POINTS, "description": "Per-reward cap in points."},
    "min_order_amount": {
        "type": "integer",
        "minimum": 0,
        "maximum": _BIG,
        "description": "Minimum order amount (minor units, measured on `base`).",
    },
}

_AMOUNT = {
    "type": "object",
    "allOf": [
        {"additionalProperties": False, "properties": _AMOUNT_PROPERTIES},
        {"oneOf": [{"required": ["points"]}, {"required": ["rate_bp"]}, {"required": ["tiers"]},
                   {"required": ["offer"]}]},
    ],
}

_PARTNER_OVERRIDE = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "enabled": {"type": "boolean", "default": True},
        "amount": {
            "type": "object",
            "additionalProperties": False,
            "properties": _AMOUNT_PROPERTIES,
            "description": "Merged over the rule's amount; setting points/rate_bp/tiers replaces the kind.",
        },
        "funded_by": {"type": "string", "pattern": _PARTNER_ID},
        "hold_days": {"type": "integer", "minimum": 0, "maximum": 365},
    },
}

_RULE = {
    "type": "object",
    "additionalProperties": False,
    "required": ["id", "trigger", "recipient", "amount"],
    "properties": {
        "id": {"type": "string", "pattern": _ID, "description": "Stable id, shown on postings."},
        "name": {"type": "string", "minLength": 1, "maxLength": 120, "pattern": SINGLE_LINE},
        "enabled": {"type": "boolean", "default": True},
        "trigger": {
            "type": "object",
            "additionalProperties": False,
            "required": ["event"],
            "properties": {
                "event": {
                    "type": "string",
                    "pattern": "^(member\\.signup|lead\\.created|deal\\.won|order\\.paid"
                    "|custom\\.[a-z0-9][a-z0-9_.-]{0,63})$",
                    "description": "member.signup | lead.created | deal.won | order.paid | custom.<name>",
                },
                "order": {
                    "enum": ["every", "first", "nth"],
                    "default": "every",
                    "description": "order.paid only: every order, the first, or the n-th of the buyer.",
                },
                "n": {"type": "integer", "minimum": 1, "maximum": 100_000},
                "partners": {
                    "type": "array",
                    "items": {"type": "string", "pattern": _PARTNER_ID},
                    "minItems": 1,
                    "uniqueItems": True,
                    "description": "Only events at these partners trigger the rule.",
                },
                "tiers": {
                    "type": "array",
                    "items": {"type": "string", "pattern": TIER_ID_PATTERN},
                    "minItems": 1,
                    "maxItems": TIER_LEVELS_RANGE[1],
                    "uniqueItems": True,
                    "description": "Only recipients in these member tiers (settings.tiers) get the reward.",
                },
            },
        },
        "recipient": {
            "type": "object",
            "additionalProperties": False,
            "required": ["type"],
            "properties": {
                "type": {"enum": ["self", "friend", "referrer"]},
                "level": {"type": "integer", "minimum": 1, "maximum": MAX_DEPTH_LIMIT},
            },
        },
        "amount": _AMOUNT,
        "caps": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "member_monthly_points": {
                    **_NULLABLE_CAP,
                    "description": "Pay only while the recipient's points this calendar month stay <= this.",
                },
            },
        },
        "hold_days": {"type": "integer", "minimum": 0, "maximum": 365},
        "recurring": {
            "type": "object",
            "additionalProperties": False,
            "minProperties": 1,
            "properties": {
                "months": {"type": "integer", "minimum": 1, "maximum": 120},
                "orders": {"type": "integer", "minimum": 1, "maximum": 100_000},
                "max_points_per_friend": _POINTS,
            },
        },
        "funded_by": {"type": "string", "pattern": _PARTNER_ID},
        "partners": {
            "type": "object",
            "propertyNames": {"pattern": _PARTNER_ID},
            "additionalProperties": _PARTNER_OVERRIDE,
        },
        "tier_multipliers": {
            "type": "object",
            "propertyNames": {"pattern": TIER_ID_PATTERN},
            "maxProperties": TIER_LEVELS_RANGE[1],
            "additionalProperties": {"type": "integer", "minimum": 1, "maximum": 100_000},
            "description": "Member tier -> basis points the rule's points are multiplied by (15000 = x1.5, floored).",
        },
    },
}

RULES_SCHEMA: dict[str, Any] = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "$id": "https://sarafan.dev/schemas/rewards-rules.json",
    "title": "Sarafan rewards rules document",
    "type": "object",
    "additionalProperties": False,
    "required": ["rules"],
    "properties": {
        "version": {"type": "integer", "minimum": 1, "description": "Assigned by the server."},
        "name": {"type": "string", "maxLength": 120, "pattern": SINGLE_LINE},
        "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
        "max_depth": {"type": "integer", "minimum": MAX_DEPTH_RANGE[0], "maximum": MAX_DEPTH_LIMIT, "default": DEFAULT_MAX_DEPTH},
        "hold_days": {"type": "integer", "minimum": 0, "maximum": 365, "default": 14},
        "point_value_minor": {
            "type": "integer",
            "minimum": 1,
            "maximum": 1_000_000,
            "default": 100,
            "description": "Minor currency units per point (100 = 1 point per 1.00).",
        },
        "budget_points": {**_NULLABLE_CAP, "description": "Program-wide budget in points; null = none."},
        "member_monthly_cap_points": {
            **_NULLABLE_CAP,
            "description": "Max points one member may earn per calendar month (UTC); null = none.",
        },
        "rules": {"type": "array", "maxItems": 100, "items": _RULE},
    },
}


@functools.cache
def _validator() -> Callable[[Any], Any]:
    import fastjsonschema  # local: keep import-time work (and cold start) at zero

    # use_default=False: fastjsonschema would otherwise write defaults into the caller's dict.
    return cast(Callable[[Any], Any], fastjsonschema.compile(RULES_SCHEMA, use_default=False))


def parse_rules(doc: Any) -> RulesDoc:
    """Validate a rules document (schema, then semantics) and build a ``RulesDoc``.

    Raises ``ValidationFailed`` with ``details.errors`` = ``[{"path": "$.rules[0].amount.rate_bp",
    "message": "..."}]``.
    """
    import fastjsonschema

    try:
        _validator()(doc)
    except fastjsonschema.JsonSchemaValueException as exc:
        _fail(_schema_errors(exc))

    _fail(list(_float_errors(doc, "$")) + _semantic_errors(doc))
    return _build(doc)


def load_rules(doc: Any) -> RulesDoc:
    """Build a ``RulesDoc`` from a *stored* document, which ``parse_rules`` validated when it was stored.

    Validating again on every cold read would cost a cold container tens of milliseconds
    (compiling the schema) for nothing; a stored document the builder cannot read (written by
    an older release, edited by hand) falls back to full validation, so it is a clear 422, never
    a crash.
    """
    try:
        return _build(doc)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError):
        return parse_rules(doc)


def _fail(errors: list[dict[str, str]]) -> None:
    if errors:
        first = errors[0]
        raise ValidationFailed(
            f"Rules document is invalid: {first['path']} {first['message']}", details={"errors": errors}
        ) from None


# --------------------------------------------------------------------------- error mapping


def _schema_errors(exc: Any) -> list[dict[str, str]]:
    if exc.rule == "propertyNames":
        pattern = TIER_ID_PATTERN if "tier_multipliers" in str(exc.name or "") else _PARTNER_ID
        return [field_error(to_jsonpath(exc.name or "data"), f"keys must match {pattern}")]
    return schema_errors(exc)


def _float_errors(value: Any, path: str) -> Iterator[dict[str, str]]:
    # JSON Schema treats 5.0 as an integer; we do not: points and money are integers only.
    if isinstance(value, float):
        yield field_error(path, "must be an integer (floats are not allowed)")
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _float_errors(v, child_path(path, str(k)))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _float_errors(v, f"{path}[{i}]")


def _semantic_errors(doc: Mapping[str, Any]) -> list[dict[str, str]]:
    errors: list[dict[str, str]] = []

    def err(path: str, msg: str) -> None:
        errors.append(field_error(path, msg))

    max_depth = doc.get("max_depth", DEFAULT_MAX_DEPTH)
    seen: dict[str, int] = {}
    for i, rule in enumerate(doc["rules"]):
        p = f"$.rules[{i}]"
        rid = rule["id"]
        if rid in seen:
            err(f"{p}.id", f"duplicate rule id '{rid}' (first used at $.rules[{seen[rid]}])")
        seen.setdefault(rid, i)

        trigger, recipient, amount = rule["trigger"], rule["recipient"], rule["amount"]
        event = trigger["event"]
        rtype = recipient["type"]
        if rtype == "referrer":
            level = recipient.get("level", 1)
            if level > max_depth:
                err(f"{p}.recipient.level", f"level {level} is deeper than max_depth {max_depth}")
        elif "level" in recipient:
            err(f"{p}.recipient.level", "level is only allowed for recipient type 'referrer'")

        if event != "order.paid" and "order" in trigger:
            err(f"{p}.trigger.order", "only allowed for trigger event 'order.paid'")
        order = trigger.get("order", "every")
        if order == "nth" and "n" not in trigger:
            err(f"{p}.trigger.n", "required when order is 'nth'")
        if order != "nth" and "n" in trigger:
            err(f"{p}.trigger.n", "only allowed when order is 'nth'")

        _amount_errors(amount, f"{p}.amount", event, rtype, err)
        for partner, override in rule.get("partners", {}).items():
            o_amount = override.get("amount")
            if o_amount is None:
                continue
            op = child_path(f"{p}.partners", partner) + ".amount"
            kinds = [k for k in _KINDS if k in o_amount]
            if len(kinds) > 1:
                err(op, "must set at most one of: points | rate_bp | tiers | offer")
            else:
                _amount_errors(_merge_amount(amount, o_amount), op, event, rtype, err)

        if "recurring" in rule:
            if event != "order.paid":
                err(f"{p}.recurring", "recurring rewards need trigger event 'order.paid'")
            if rtype == "self":
                err(
                    f"{p}.recurring", "recurring rewards pay for a referred member's orders; use 'referrer' or 'friend'"
                )
    return errors


_KINDS = ("points", "rate_bp", "tiers", "offer")


def _amount_errors(amount: Mapping[str, Any], p: str, event: str, rtype: str, err: Callable[[str, str], None]) -> None:
    if "offer" in amount and "max_points" in amount and "fallback_points" not in amount["offer"]:
        err(f"{p}.max_points", "an offer reward has no points to cap (set offer.fallback_points)")
    if event == "member.signup":
        for key in ("rate_bp", "min_order_amount"):
            if key in amount:
                err(f"{p}.{key}", "member.signup has no amount; use fixed points")
        if any("rate_bp" in t for t in amount.get("tiers", [])):
            err(f"{p}.tiers", "member.signup has no amount; use fixed points")
    tiers = amount.get("tiers")
    if tiers is None:
        return
    if rtype != "referrer":
        err(f"{p}.tiers", "tiers depend on converted referrals and need recipient type 'referrer'")
    if tiers[0]["min_converted"] != 0:
        err(f"{p}.tiers[0].min_converted", "the first tier must start at 0")
    for j in range(1, len(tiers)):
        if tiers[j]["min_converted"] <= tiers[j - 1]["min_converted"]:
            err(f"{p}.tiers[{j}].min_converted", "tiers must be sorted by strictly increasing min_converted")
    if len({"points" in t for t in tiers}) > 1:
        err(f"{p}.tiers", "all tiers must use the same kind (points or rate_bp)")


def _merge_amount(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """A partner override changes only what it names; naming a kind replaces the base's kind."""
    merged = dict(base)
    if any(k in override for k in _KINDS):
        for k in _KINDS:
            merged.pop(k, None)
    merged.update(override)
    return merged


# --------------------------------------------------------------------------- building


def _build_amount(a: Mapping[str, Any]) -> Amount:
    return Amount(
        points=a.get("points"),
        rate_bp=a.get("rate_bp"),
        tiers=tuple(
            Tier(min_converted=t["min_converted"], points=t.get("points"), rate_bp=t.get("rate_bp"))
            for t in a.get("tiers", ())
        ),
        base=cast(AmountBase, a.get("base", "total")),
        max_points=a.get("max_points"),
        min_order_amount=a.get("min_order_amount"),
        offer=None if "offer" not in a else OfferRef(
            partner_id=a["offer"]["partner_id"], offer_id=a["offer"]["offer_id"],
            fallback_points=a["offer"].get("fallback_points"), per_month=a["offer"].get("per_month")),
    )


def _build_rule(r: Mapping[str, Any]) -> Rule:
    t, rc = r["trigger"], r["recipient"]
    rtype = cast(RecipientType, rc["type"])
    rec = r.get("recurring")
    return Rule(
        id=r["id"],
        name=r.get("name"),
        enabled=r.get("enabled", True),
        trigger=Trigger(
            event=t["event"],
            order=cast(OrderSelector, t.get("order", "every")),
            n=t.get("n"),
            partners=tuple(t.get("partners", ())),
            tiers=tuple(t.get("tiers", ())),
        ),
        recipient=Recipient(type=rtype, level=rc.get("level", 1) if rtype == "referrer" else 0),
        amount=_build_amount(r["amount"]),
        member_monthly_cap_points=r.get("caps", {}).get("member_monthly_points"),
        hold_days=r.get("hold_days"),
        recurring=None
        if rec is None
        else Recurring(
            months=rec.get("months"), orders=rec.get("orders"), max_points_per_friend=rec.get("max_points_per_friend")
        ),
        funded_by=r.get("funded_by"),
        partners={
            pid: PartnerOverride(
                enabled=o.get("enabled", True),
                amount=_build_amount(_merge_amount(r["amount"], o["amount"])) if "amount" in o else None,
                funded_by=o.get("funded_by"),
                hold_days=o.get("hold_days"),
            )
            for pid, o in r.get("partners", {}).items()
        },
        tier_multipliers=dict(r.get("tier_multipliers", {})),
    )


def _build(doc: Mapping[str, Any]) -> RulesDoc:
    return RulesDoc(
        rules=tuple(_build_rule(r) for r in doc["rules"]),
        version=doc.get("version", 0),
        max_depth=doc.get("max_depth", DEFAULT_MAX_DEPTH),
        hold_days=doc.get("hold_days", 14),
        point_value_minor=doc.get("point_value_minor", 100),
        budget_points=doc.get("budget_points"),
        member_monthly_cap_points=doc.get("member_monthly_cap_points"),
        currency=doc.get("currency"),
    )


