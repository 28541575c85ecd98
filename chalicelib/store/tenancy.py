"""Programs, partners and API keys in the single table."""

from __future__ import annotations

from typing import Any

from pynamodb.attributes import (
    BooleanAttribute,
    JSONAttribute,
    ListAttribute,
    NumberAttribute,
    UnicodeAttribute,
)

from chalicelib.domain.clock import iso
from chalicelib.domain.settings import ProgramSettings
from chalicelib.store import keys
from chalicelib.store.db import Entity, IsoDateTimeAttribute


class ProgramItem(Entity, discriminator="program"):
    program_id = UnicodeAttribute()
    name = UnicodeAttribute()
    #: Label of the points unit shown to members, e.g. "баллы" / "points".
    points_unit = UnicodeAttribute()
    #: Value of one point in minor currency units (100 = 1 point is worth 1 RUB).
    point_value_minor = NumberAttribute()
    currency = UnicodeAttribute()
    default_locale = UnicodeAttribute()
    allowed_origins: ListAttribute[str] = ListAttribute(of=UnicodeAttribute, default=list)  # type: ignore[arg-type]
    landing_url = UnicodeAttribute(null=True)
    #: Program-level settings owned by later features (attribution window, auto-enrolment, offer texts...).
    settings = JSONAttribute(default=dict)
    #: Current rules version (0 = no rules yet).
    rules_version = NumberAttribute(default=0)
    #: Bumped by every settings update; updates are conditioned on the revision they read.
    revision = NumberAttribute(default=0)
    created_at = IsoDateTimeAttribute()

    @property
    def program_settings(self) -> ProgramSettings:
        """The typed settings (defaults applied), parsed once per loaded item (also when they are empty: the
        cache is keyed on the stored dict itself, not on a fresh ``{}``)."""
        raw = self.settings
        cached = self.__dict__.get("_program_settings")
        if cached is None or cached[0] is not raw:
            cached = (raw, ProgramSettings.from_stored(raw or {}))
            self.__dict__["_program_settings"] = cached
        return cached[1]

    @classmethod
    def new(cls, **fields: Any) -> ProgramItem:
        pk, sk = keys.program(fields["program_id"])
        gpk, gsk = keys.gsi1_program_listing(iso(fields["created_at"]), fields["program_id"])
        return cls(PK=pk, SK=sk, GSI1PK=gpk, GSI1SK=gsk, **fields)


class PartnerItem(Entity, discriminator="partner"):
    program_id = UnicodeAttribute()
    partner_id = UnicodeAttribute()
    name = UnicodeAttribute()
    landing_url = UnicodeAttribute(null=True)
    #: Where partner alerts go (a low voucher pool); a business address, never logged.
    contact_email = UnicodeAttribute(null=True)
    #: ``{source: [{"version": n, "created_at": iso, "expires_at": iso|None}]}``; the secrets
    #: themselves are derived from the master key and never stored (see services.secrets).
    webhook_secrets = JSONAttribute(default=dict)
    created_at = IsoDateTimeAttribute()

    @classmethod
    def new(cls, **fields: Any) -> PartnerItem:
        pk, sk = keys.partner(fields["program_id"], fields["partner_id"])
        return cls(PK=pk, SK=sk, **fields)


class PartnerLocatorItem(Entity, discriminator="partner_locator"):
    """Immutable partner id → program id mapping (cached forever in-process)."""

    program_id = UnicodeAttribute()
    partner_id = UnicodeAttribute()


class ApiKeyItem(Entity, discriminator="api_key"):
    """Looked up by the SHA-256 of the presented key; the key itself is never stored."""

    key_id = UnicodeAttribute()
    kind = UnicodeAttribute()  # "partner" | "publishable"
    program_id = UnicodeAttribute()
    partner_id = UnicodeAttribute(null=True)
    revoked = BooleanAttribute(default=False)
    created_at = IsoDateTimeAttribute()


class ApiKeyRefItem(Entity, discriminator="api_key_ref"):
    """Per-program index of keys by id, so they can be listed and revoked without the key."""

    key_id = UnicodeAttribute()
    key_hash = UnicodeAttribute()
    kind = UnicodeAttribute()
    program_id = UnicodeAttribute()
    partner_id = UnicodeAttribute(null=True)
    #: First characters of the key, enough for a human to recognise it.
    display_prefix = UnicodeAttribute()
    revoked = BooleanAttribute(default=False)
    created_at = IsoDateTimeAttribute()
