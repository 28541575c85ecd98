"""What a landing page shows for a referral code: the program's offer and the referrer's first name."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chalicelib.domain.codes import normalize_code
from chalicelib.domain.errors import NotFound
from chalicelib.domain.share import resolve_locale
from chalicelib.services import ports
from chalicelib.services.landing.rate_limits import rate_limit

if TYPE_CHECKING:
    from chalicelib.store.tenancy import ProgramItem


def offer(program: ProgramItem, raw_code: str, source_ip: str, locale: str | None = None,
          deps: ports.Ports | None = None) -> dict[str, Any]:
    deps = deps or ports.current()
    rate_limit(f"offer#{program.program_id}", source_ip,
               program.program_settings.landing_rate_limits.offer_per_minute, deps)
    code = normalize_code(raw_code)
    pointer = deps.members.code_pointer(program.program_id, code) if code is not None else None
    if pointer is None:
        raise NotFound("Unknown referral code", code="code_not_found", details={"code": (raw_code or "")[:64]})
    return {
        "code": pointer.code,
        "program": {"name": program.name, "default_locale": program.default_locale},
        "referrer": {"first_name": pointer.first_name},
        "offer": dict(program.program_settings.offer),
        "locale": resolve_locale(locale or program.default_locale),
    }
