"""Event type names, object types and limits of the canonical event format."""

from __future__ import annotations

import re
from typing import Final

MEMBER_SIGNUP: Final = "member.signup"
LEAD_CREATED: Final = "lead.created"
DEAL_WON: Final = "deal.won"
ORDER_PAID: Final = "order.paid"
ORDER_REFUNDED: Final = "order.refunded"
ORDER_CANCELLED: Final = "order.cancelled"
CUSTOM_PREFIX: Final = "custom."
CUSTOM_SCHEMA_KEY: Final = "custom.*"

EVENT_TYPES: Final = (MEMBER_SIGNUP, LEAD_CREATED, DEAL_WON, ORDER_PAID, ORDER_REFUNDED, ORDER_CANCELLED)
CUSTOM_TYPE_RE: Final = re.compile(r"^custom\.[a-z0-9_.-]{1,64}$")
SUPPORTED_LOCALES: Final = ("ru", "en")

# Which ``object.type`` each standard event is about (custom events: any).
OBJECT_TYPES: Final = {
    MEMBER_SIGNUP: "customer",
    LEAD_CREATED: "lead",
    DEAL_WON: "deal",
    ORDER_PAID: "order",
    ORDER_CANCELLED: "order",
    ORDER_REFUNDED: "refund",
}

# Upper bound on amounts: 10**14 minor units is 1 trillion roubles; anything larger is
# a unit mistake (e.g. sending kopecks of kopecks), not a sale.
MAX_AMOUNT: Final = 10**14

