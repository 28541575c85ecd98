"""Fraud signals of an event (its ``context``): normalised, then only ever kept as salted hashes.

Kinds (``SIGNAL_KINDS``):

* ``ip``: the buyer's IP address (``ipaddress``' compressed form; IPv4-mapped IPv6 as IPv4);
* ``ip_ua``: the IP *and* the user agent together (one browser on one network), only when both
  are known -- an IP alone is shared by whole offices and mobile carriers;
* ``device``: a device id from the shop's or app's fingerprinting;
* ``payment``: a card hash or wallet id from the shop's payment provider (never a card number);
* ``shipping``: the shipping address, normalised (case, punctuation, whitespace, field order), so
  ``"Lenina 1, kv. 5"`` and ``"lenina 1 kv 5"`` are the same address.

``signal_hash`` is an HMAC-SHA256 under a key derived from the deployment's master secret,
scoped to the program (like identity pointers): IPs and addresses are low-entropy, so a plain
hash of a leaked table could be reversed by enumeration; the key stays outside the table.
Values are never logged. Pure code.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import re
import unicodedata
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from chalicelib.domain.events import Context

SIGNAL_KINDS: Final = ("device", "payment", "shipping", "ip_ua", "ip")
#: How each kind reads in a review item ("same device as the referrer"): never the value.
SIGNAL_LABELS: Final = {
    "device": "device", "payment": "payment method", "shipping": "shipping address",
    "ip_ua": "network and browser", "ip": "IP address",
}
_VERSION: Final = "sarafan-signal-v1"
#: Address fields in a fixed order (both platforms' names); other keys are appended sorted.
_ADDRESS_FIELDS: Final = ("country", "country_code", "province", "state", "province_code", "city", "zip",
                          "postcode", "postal_code", "address1", "address_1", "address2", "address_2", "street",
                          "house", "apartment")
#: Not part of where a parcel goes: two people at one address are one address.
_ADDRESS_IGNORED: Final = frozenset({"first_name", "last_name", "name", "company", "phone", "email",
                                     "latitude", "longitude", "country_name"})
_NON_WORD = re.compile(r"[^\w]+", re.UNICODE)


def normalize_ip(value: str) -> str | None:
    """Canonical text of an IPv4/IPv6 address, or ``None`` when it is not one."""
    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.compressed


def normalize_text(value: Any) -> str | None:
    """Trimmed, whitespace collapsed; ``None`` when empty."""
    if value is None:
        return None
    text = " ".join(str(value).split())
    return text or None


def _address_words(text: str) -> str:
    folded = unicodedata.normalize("NFKC", text).casefold().replace("ё", "е")
    return " ".join(_NON_WORD.sub(" ", folded).split())


def normalize_address(value: Any) -> str | None:
    """One comparable string for a shipping address given as text or as an object."""
    if value is None:
        return None
    if isinstance(value, Mapping):
        known = [value.get(k) for k in _ADDRESS_FIELDS]
        extra = [value[k] for k in sorted(value) if k not in _ADDRESS_FIELDS and k not in _ADDRESS_IGNORED]
        parts = [_address_words(str(v)) for v in (*known, *extra) if v not in (None, "")]
        text = " ".join(p for p in parts if p)
    else:
        text = _address_words(str(value))
    return text or None


def signal_values(context: Context | None) -> list[tuple[str, str]]:
    """``[(kind, normalised value)]`` of an event's context, strongest kind first."""
    if context is None:
        return []
    out: list[tuple[str, str]] = []
    if context.device_id:
        out.append(("device", context.device_id))
    if context.payment_fingerprint:
        out.append(("payment", context.payment_fingerprint))
    if context.shipping_address:
        out.append(("shipping", context.shipping_address))
    if context.ip and context.user_agent:
        out.append(("ip_ua", f"{context.ip}\x1f{context.user_agent}"))
    if context.ip:
        out.append(("ip", context.ip))
    return out


def signal_hash(key: bytes, program_id: str, kind: str, value: str) -> str:
    """Hex HMAC-SHA256 of one signal, scoped to a program (see the module docstring)."""
    if kind not in SIGNAL_KINDS:
        raise ValueError(f"unknown signal kind {kind!r}")
    message = json.dumps([_VERSION, program_id, kind, value], ensure_ascii=False).encode("utf-8")
    return hmac.new(key, message, hashlib.sha256).hexdigest()


#: Kinds a deployment's shared deny list holds (an IP or an address is too often shared by honest people).
DENY_KINDS: Final = ("device", "payment")


def deny_hash(key: bytes, kind: str, value: str) -> str:
    """Hex HMAC-SHA256 of a signal for the deployment's shared deny list: not scoped to a program (every
    opted-in program of the deployment finds it) but keyed with a deployment-wide key, so a hash means
    nothing outside this deployment and reveals no value."""
    if kind not in DENY_KINDS:
        raise ValueError(f"{kind!r} is not kept on the deny list")
    message = json.dumps([_VERSION, "deny-list", kind, value], ensure_ascii=False).encode("utf-8")
    return hmac.new(key, message, hashlib.sha256).hexdigest()
