"""Which template an outbox message becomes, decided at delivery (pure).

The stream consumer derives one ``points_earned`` / ``points_reversed`` message per member and
event from the new ledger entries, with the levels and reason codes of the entries it announces;
other sources (the stream handlers in ``notify/sources.py``) write the kind directly. Precedence for ``points_earned``:

* a ``friend_reward`` entry (the welcome reward of a double-sided offer) → ``friend_welcome``;
* an entry at level 2 or deeper → ``upline_purchase`` ("your friend's friend bought");
* a level-1 entry → ``friend_joined`` on a signup, ``friend_purchase_rewarded`` otherwise;
* the member's own reward → ``points_pending`` while held, ``points_available`` otherwise.
"""

from __future__ import annotations

from typing import Any

#: Kinds a source may write directly into ``OutboxItem.template``.
DIRECT = {"points_available", "points_spent", "friend_joined", "sleeping_reminder", "points_reversed", "voucher_issued",
          "points_expiring", "tier_changed", "birthday_gift"}
#: When several messages of one event are merged, the first kind in this order leads.
PRIORITY = ("birthday_gift", "tier_changed", "voucher_issued", "friend_welcome", "points_pending", "points_available", "friend_purchase_rewarded", "upline_purchase",
            "friend_joined", "points_reversed", "points_spent", "points_expiring", "sleeping_reminder")


def kind_of(template: str, params: dict[str, Any]) -> str:
    if template in DIRECT:
        return template
    if template != "points_earned":
        return template  # unknown: rendering fails and the message is marked failed
    codes = set(params.get("reason_codes") or [])
    levels = [int(x) for x in params.get("levels") or [0]]
    if "friend_reward" in codes:
        return "friend_welcome"
    if max(levels) >= 2:
        return "upline_purchase"
    if max(levels) == 1:
        return "friend_joined" if str(params.get("event_type", "")).startswith("member.") else "friend_purchase_rewarded"
    return "points_pending" if int(params.get("pending_points") or 0) > 0 else "points_available"


def values_of(kind: str, params: dict[str, Any]) -> dict[str, Any]:
    """Template values carried by the message itself (the profile and program add the rest)."""
    levels = [int(x) for x in params.get("levels") or [0]]
    if kind == "voucher_issued":
        return {"offer_name": params.get("offer_name") or "", "code": params.get("code") or "",
                "value": _voucher_value(params),
                "valid_until": str(params["expires_at"])[:10] if params.get("expires_at") else "—"}
    if kind == "tier_changed":
        return {"to_name": params.get("to_name") or params.get("to_tier") or "",
                "from_name": params.get("from_name") or params.get("from_tier") or "",
                "to_names": params.get("to_names") or {}, "from_names": params.get("from_names") or {},
                "direction": "down" if params.get("direction") == "down" else "up",
                "value": int(params.get("value") or 0)}
    if kind == "points_expiring":
        return {"points": int(params.get("points") or 0), "expires_on": str(params.get("expires_on") or "")[:10]}
    if kind == "birthday_gift":
        out: dict[str, Any] = {"points": int(params.get("points") or 0)}
        if params.get("code"):
            out |= {"offer_name": params.get("offer_name") or "", "code": params.get("code") or "",
                    "value": _voucher_value(params),
                    "valid_until": str(params["expires_at"])[:10] if params.get("expires_at") else "—"}
        return out
    return {
        "points": int(params.get("points") or 0),
        "available_at": params.get("available_at"),
        "level": max(levels) if levels else 0,
        "balance": int(params["balance"]) if params.get("balance") is not None else None,
    }


def rank(kind: str) -> int:
    return PRIORITY.index(kind) if kind in PRIORITY else len(PRIORITY)


def _voucher_value(params: dict[str, Any]) -> str:
    """The offer's value, language-neutral (the template words it)."""
    kind = params.get("offer_kind")
    if kind == "percent_off" and params.get("percent") is not None:
        return f"{int(params['percent'])} %"
    if kind == "fixed_discount" and params.get("amount_minor") is not None:
        amount = int(params["amount_minor"])
        return f"{amount // 100}.{amount % 100:02d} {params.get('currency') or ''}".strip()
    return str(params.get("item") or params.get("subscription") or params.get("offer_name") or "")
