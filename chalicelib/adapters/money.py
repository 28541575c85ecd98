"""Money strings from platforms ("1490.00", "-10.00", 1490) → integer minor units. Never through float."""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

#: ISO 4217 minor-unit exponents that are not 2 (everything else has 2).
_EXPONENTS: dict[str, int] = {
    **dict.fromkeys(("BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI",
                     "VND", "VUV", "XAF", "XOF", "XPF"), 0),
    **dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3),
    "CLF": 4, "UYW": 4,
}
_NUMBER = re.compile(r"^-?[0-9]{1,15}(\.[0-9]{1,8})?$")


def exponent(currency: str) -> int:
    return _EXPONENTS.get(currency.upper(), 2)


def to_minor(amount: object, currency: str) -> int | None:
    """``"1490.00"`` RUB → 149000; ``"1490"`` JPY → 1490; ``"1.250"`` KWD → 1250.

    Accepts decimal strings and integers (not floats, not bools), rounds half-up to the
    currency's exponent, returns ``None`` for anything else (the caller decides whether that
    is malformed). The sign is kept (WooCommerce sends refunds as ``"-10.00"``).
    """
    if isinstance(amount, bool) or amount is None:
        return None
    if isinstance(amount, int):
        text = str(amount)
    elif isinstance(amount, str):
        text = amount.strip().replace(",", ".") if amount.count(",") == 1 and "." not in amount else amount.strip()
    else:
        return None
    if not _NUMBER.match(text):
        return None
    try:
        value = Decimal(text)
    except InvalidOperation:
        return None
    scaled = (value * (Decimal(10) ** exponent(currency))).quantize(Decimal(1), rounding=ROUND_HALF_UP)
    return int(scaled)
