"""A program's settings, typed: defaults and limits written once, here.

``PROGRAM_SETTINGS_SCHEMA`` validates what the program API accepts; :meth:`ProgramSettings.from_stored`
turns what the table holds into the typed value, once, at the store boundary (``ProgramItem.program_settings``).
A stored value outside its limits (written before a limit existed, or by hand) falls back to the
default instead of failing later reads: nothing stored may make a read fail.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, Literal

AttributionModel = Literal["first_touch", "last_touch"]

ATTRIBUTION_MODELS: Final = ("first_touch", "last_touch")
DEFAULT_WINDOW_DAYS: Final = 30
WINDOW_DAYS_RANGE: Final = (1, 365)
DEFAULT_MODEL: Final[AttributionModel] = "first_touch"
#: How many referrer levels a program keeps (stored ancestry is cut to it; rules may pay up to it).
DEFAULT_MAX_DEPTH: Final = 3
MAX_DEPTH_RANGE: Final = (1, 5)
DEFAULT_AUTO_ENROL: Final = True
#: A won CRM deal is not a shop order unless the program says so.
DEFAULT_DEALS_COUNT_AS_ORDERS: Final = False
DEFAULT_REDEMPTION_MAX_SHARE_PERCENT: Final = 100
REDEMPTION_SHARE_RANGE: Final = (1, 100)
DEFAULT_INVITES_PER_MINUTE: Final = 20
DEFAULT_OFFER_PER_MINUTE: Final = 60
RATE_LIMIT_RANGE: Final = (1, 10_000)
OFFER_TEXT_MAX: Final = 200
#: Points expiry (docs/coalition.md#points-expiry): off unless ``expiry_months`` is set.
EXPIRY_MONTHS_RANGE: Final = (1, 120)
DEFAULT_EXPIRY_WARNING_DAYS: Final = 14
EXPIRY_WARNING_DAYS_RANGE: Final = (1, 90)
#: Birthday gifts (docs/coalition.md#birthday-gifts): off unless ``birthday_gift`` is set.
BIRTHDAY_POINTS_RANGE: Final = (1, 1_000_000)
DEFAULT_BIRTHDAY_MIN_AGE_DAYS: Final = 30
BIRTHDAY_MIN_AGE_DAYS_RANGE: Final = (0, 365)
_ID: Final = {"type": "string", "minLength": 1, "maxLength": 64, "pattern": "^[A-Za-z0-9_-]+$"}
#: Member tiers (docs/coalition.md#tiers): off unless ``tiers`` is set.
TierMetric = Literal["points_earned", "spend", "converted_referrals"]
TIER_METRICS: Final = ("points_earned", "spend", "converted_referrals")
DEFAULT_TIER_METRIC: Final[TierMetric] = "points_earned"
DEFAULT_TIER_PERIOD_MONTHS: Final = 12
TIER_PERIOD_RANGE: Final = (1, 36)
TIER_LEVELS_RANGE: Final = (2, 10)
TIER_THRESHOLD_MAX: Final = 10**12
TIER_ID_PATTERN: Final = "^[a-z0-9][a-z0-9_-]{0,31}$"

#: Notifications (settings.notifications; read by chalicelib/notify/settings.py).
DEFAULT_DAILY_CAP: Final = 10
DAILY_CAP_RANGE: Final = (1, 100)
SMS_BUDGET_RANGE: Final = (0, 10_000_000)
SLEEPING_REMINDER_RANGE: Final = (7, 365)
_HH_MM: Final = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"
_TIME_ZONE: Final = r"^[A-Za-z_]+(/[A-Za-z0-9_+\-]+){0,2}$"

#: Fraud velocity limits and review (docs/fraud.md): name -> (default, (min, max)).
FRAUD_LIMITS: Final = {
    "signups_per_referrer_hour": (10, (1, 100_000)),
    "signups_per_referrer_day": (30, (1, 100_000)),
    "rewards_per_referrer_day": (20, (1, 100_000)),
    "first_purchases_per_signal_day": (5, (1, 100_000)),
    "friends_per_signal": (3, (1, 1_000)),
    "same_network_hours": (24, (1, 720)),
    "invites_per_referrer_day": (50, (1, 100_000)),
}

#: Settings that cannot change once the program exists: name -> why.
IMMUTABLE_SETTINGS: Final = {"max_depth": "members' stored ancestry is cut to this depth when they are attributed"}


def _int_range(bounds: tuple[int, int]) -> dict[str, Any]:
    return {"type": "integer", "minimum": bounds[0], "maximum": bounds[1]}


PROGRAM_SETTINGS_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "attribution_window_days": _int_range(WINDOW_DAYS_RANGE),
        "attribution_model": {"enum": list(ATTRIBUTION_MODELS)},
        "auto_enrol": {"type": "boolean"},
        # Whether a won CRM deal (deal.won) counts as one of the customer's orders (docs/integrations.md).
        "deals_count_as_orders": {"type": "boolean"},
        "max_depth": _int_range(MAX_DEPTH_RANGE),
        "offer": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "friend_reward": {"type": "object",
                                  "additionalProperties": {"type": "string", "maxLength": OFFER_TEXT_MAX}},
                "partner_reward": {"type": "object",
                                   "additionalProperties": {"type": "string", "maxLength": OFFER_TEXT_MAX}},
            },
        },
        "redemption_max_share_percent": _int_range(REDEMPTION_SHARE_RANGE),
        # Points expire this many months after they became available (oldest first); null: never.
        "expiry_months": {"anyOf": [_int_range(EXPIRY_MONTHS_RANGE), {"type": "null"}]},
        "expiry_warning_days": _int_range(EXPIRY_WARNING_DAYS_RANGE),
        # The program's birthday gift: points and/or a partner's offer; null: none.
        "birthday_gift": {
            "type": ["object", "null"],
            "additionalProperties": False,
            # Points, an offer, or both (the object's keywords do not apply to null).
            "anyOf": [{"required": ["points"]}, {"required": ["offer"]}, {"type": "null"}],
            "properties": {
                "points": _int_range(BIRTHDAY_POINTS_RANGE),
                # Who funds the points in settlement (a partner of the program); default: the program.
                "funded_by": _ID,
                "offer": {
                    "type": "object", "additionalProperties": False, "required": ["partner_id", "offer_id"],
                    "properties": {"partner_id": _ID, "offer_id": _ID,
                                   # Points (funded by the offer's partner) when no code can be issued.
                                   "fallback_points": _int_range(BIRTHDAY_POINTS_RANGE)},
                },
            },
        },
        # A birthday set or changed within this many days before the day does not count.
        "birthday_min_age_days": _int_range(BIRTHDAY_MIN_AGE_DAYS_RANGE),
        # Channels' limits, quiet hours and reminders (read by chalicelib/notify/settings.py).
        "notifications": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "time_zone": {"type": "string", "pattern": _TIME_ZONE, "maxLength": 64},
                "quiet_hours": {
                    "type": "object", "additionalProperties": False, "required": ["start", "end"],
                    "properties": {"start": {"type": "string", "pattern": _HH_MM},
                                   "end": {"type": "string", "pattern": _HH_MM}},
                },
                "daily_cap": _int_range(DAILY_CAP_RANGE),
                "sms": {
                    "type": "object", "additionalProperties": False,
                    "properties": {"enabled": {"type": "boolean"},
                                   "monthly_budget": _int_range(SMS_BUDGET_RANGE)},
                },
                "sleeping_reminder_days": {"anyOf": [_int_range(SLEEPING_REMINDER_RANGE), {"type": "null"}]},
            },
        },
        # Member tiers (docs/coalition.md#tiers); null switches them off. Order and thresholds: validate_tiers.
        "tiers": {"anyOf": [{"type": "null"}, {
            "type": "object",
            "additionalProperties": False,
            "required": ["levels"],
            "properties": {
                "metric": {"enum": list(TIER_METRICS)},
                "period_months": _int_range(TIER_PERIOD_RANGE),
                "levels": {
                    "type": "array", "minItems": TIER_LEVELS_RANGE[0], "maxItems": TIER_LEVELS_RANGE[1],
                    "items": {
                        "type": "object", "additionalProperties": False, "required": ["id", "threshold"],
                        "properties": {
                            "id": {"type": "string", "pattern": TIER_ID_PATTERN},
                            "threshold": {"type": "integer", "minimum": 0, "maximum": TIER_THRESHOLD_MAX},
                            "names": {"type": "object", "additionalProperties": False,
                                      "properties": {"ru": {"type": "string", "minLength": 1, "maxLength": 40},
                                                     "en": {"type": "string", "minLength": 1, "maxLength": 40}}},
                        },
                    },
                },
            },
        }]},
        # Velocity limits and review holds (docs/fraud.md).
        "fraud": {
            "type": "object",
            "additionalProperties": False,
            "properties": {**{name: _int_range(bounds) for name, (_, bounds) in FRAUD_LIMITS.items()},
                           # Opt in to the deployment's shared deny list of hashed signals (docs/fraud.md).
                           "shared_deny_list": {"type": "boolean"}},
        },
        # Per client IP per minute on the public landing endpoints (see services/landing).
        "landing_rate_limits": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "invites_per_minute": _int_range(RATE_LIMIT_RANGE),
                "offer_per_minute": _int_range(RATE_LIMIT_RANGE),
            },
        },
    },
}


def _bounded(raw: Any, bounds: tuple[int, int], default: int) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int | float) or int(raw) != raw:
        return default
    value = int(raw)
    return value if bounds[0] <= value <= bounds[1] else default


@dataclass(frozen=True)
class LandingRateLimits:
    invites_per_minute: int = DEFAULT_INVITES_PER_MINUTE
    offer_per_minute: int = DEFAULT_OFFER_PER_MINUTE


@dataclass(frozen=True)
class FraudSettings:
    """Velocity limits: over one, the event's rewards are posted ``held`` and queued for review."""

    signups_per_referrer_hour: int = FRAUD_LIMITS["signups_per_referrer_hour"][0]
    signups_per_referrer_day: int = FRAUD_LIMITS["signups_per_referrer_day"][0]
    rewards_per_referrer_day: int = FRAUD_LIMITS["rewards_per_referrer_day"][0]
    first_purchases_per_signal_day: int = FRAUD_LIMITS["first_purchases_per_signal_day"][0]
    #: Friends of one referrer from one IP or device before the next one is held.
    friends_per_signal: int = FRAUD_LIMITS["friends_per_signal"][0]
    #: A friend on the referrer's IP and browser within this many hours is held.
    same_network_hours: int = FRAUD_LIMITS["same_network_hours"][0]
    #: Landing-page invites recorded for one referrer's link per day (more still get their own link).
    invites_per_referrer_day: int = FRAUD_LIMITS["invites_per_referrer_day"][0]
    #: Check (and feed) the deployment's shared deny list of hashed device/payment signals.
    shared_deny_list: bool = False

    @classmethod
    def from_stored(cls, raw: Any) -> FraudSettings:
        raw = raw if isinstance(raw, Mapping) else {}
        shared = raw.get("shared_deny_list")
        return cls(**{name: _bounded(raw.get(name), bounds, default) for name, (default, bounds) in FRAUD_LIMITS.items()},
                   shared_deny_list=shared if isinstance(shared, bool) else False)


def validate_tiers(raw: Any) -> list[dict[str, str]]:
    """What the schema cannot say about ``settings.tiers`` (schema-valid input): the first level starts at 0,
    thresholds rise strictly, ids are unique. ``[{"path", "message"}]``, empty when fine."""
    if not isinstance(raw, Mapping):
        return []
    errors: list[dict[str, str]] = []
    levels = list(raw.get("levels") or [])
    if levels and levels[0].get("threshold") != 0:
        errors.append({"path": "$.settings.tiers.levels[0].threshold",
                       "message": "the first (lowest) tier must have threshold 0: every member is in a tier"})
    seen: set[str] = set()
    for i, level in enumerate(levels):
        if level.get("id") in seen:
            errors.append({"path": f"$.settings.tiers.levels[{i}].id", "message": f"duplicate tier id {level.get('id')!r}"})
        seen.add(level.get("id"))
        if i and not int(level.get("threshold", 0)) > int(levels[i - 1].get("threshold", 0)):
            errors.append({"path": f"$.settings.tiers.levels[{i}].threshold",
                           "message": "thresholds must rise strictly from one tier to the next"})
    return errors


@dataclass(frozen=True)
class TierLevel:
    id: str
    threshold: int
    #: Display names by locale (``ru``, ``en``); the id when unset.
    names: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def name(self, locale: str | None) -> str:
        return self.names.get(locale or "", "") or self.names.get("en", "") or self.id


@dataclass(frozen=True)
class TierSettings:
    """Ordered member tiers (lowest first) by one program-wide metric over a rolling period of calendar months."""

    levels: tuple[TierLevel, ...]
    metric: TierMetric = DEFAULT_TIER_METRIC
    period_months: int = DEFAULT_TIER_PERIOD_MONTHS

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(level.id for level in self.levels)

    @classmethod
    def from_stored(cls, raw: Any) -> TierSettings | None:
        """None when tiers are off, or when what is stored is unusable (never a failing read)."""
        if not isinstance(raw, Mapping):
            return None
        levels: list[TierLevel] = []
        for item in raw.get("levels") or ():
            if not isinstance(item, Mapping) or not isinstance(item.get("id"), str):
                return None
            threshold = _bounded(item.get("threshold"), (0, TIER_THRESHOLD_MAX), -1)
            if threshold < 0:
                return None
            names = item.get("names")
            levels.append(TierLevel(item["id"], threshold, MappingProxyType(
                {k: v for k, v in names.items() if isinstance(v, str)} if isinstance(names, Mapping) else {})))
        if len(levels) < TIER_LEVELS_RANGE[0] or validate_tiers(
                {"levels": [{"id": lv.id, "threshold": lv.threshold} for lv in levels]}):
            return None
        metric = raw.get("metric")
        return cls(levels=tuple(levels), metric=metric if metric in TIER_METRICS else DEFAULT_TIER_METRIC,
                   period_months=_bounded(raw.get("period_months"), TIER_PERIOD_RANGE, DEFAULT_TIER_PERIOD_MONTHS))


@dataclass(frozen=True)
class BirthdayGift:
    """The program's birthday gift: ``points`` (funded by ``funded_by``, else the program) and/or a voucher of
    a partner's offer (``offer_partner_id``/``offer_id``; ``fallback_points`` funded by that partner when its
    pool is empty or the offer is disabled)."""

    points: int = 0
    funded_by: str | None = None
    offer_partner_id: str | None = None
    offer_id: str | None = None
    fallback_points: int = 0

    @classmethod
    def from_stored(cls, raw: Any) -> BirthdayGift | None:
        if not isinstance(raw, Mapping):
            return None
        offer = raw.get("offer")
        offer = offer if isinstance(offer, Mapping) else {}
        partner_id, offer_id = offer.get("partner_id"), offer.get("offer_id")
        has_offer = isinstance(partner_id, str) and isinstance(offer_id, str)
        funded_by = raw.get("funded_by")
        gift = cls(points=_bounded(raw.get("points"), BIRTHDAY_POINTS_RANGE, 0),
                   funded_by=funded_by if isinstance(funded_by, str) else None,
                   offer_partner_id=partner_id if has_offer else None, offer_id=offer_id if has_offer else None,
                   fallback_points=_bounded(offer.get("fallback_points"), BIRTHDAY_POINTS_RANGE, 0) if has_offer else 0)
        return gift if gift.points or gift.offer_id else None


def _hh_mm(raw: Any) -> str | None:
    import re

    return raw if isinstance(raw, str) and re.match(_HH_MM, raw) else None


@dataclass(frozen=True)
class NotificationSettings:
    """``settings.notifications``: the member's time zone, quiet hours, a daily cap, SMS, the sleeping reminder.

    Times stay text (``"22:00"``) and the zone a name: ``notify.settings`` turns them into clock values."""

    time_zone: str | None = None
    quiet_start: str | None = None  # "HH:MM", local time; both or neither
    quiet_end: str | None = None
    daily_cap: int = DEFAULT_DAILY_CAP
    sms_enabled: bool = False
    sms_monthly_budget: int | None = None  # None: no budget
    sleeping_reminder_days: int | None = None  # None: no reminder

    @classmethod
    def from_stored(cls, raw: Any) -> NotificationSettings:
        raw = raw if isinstance(raw, Mapping) else {}
        quiet = raw.get("quiet_hours")
        quiet = quiet if isinstance(quiet, Mapping) else {}
        start, end = _hh_mm(quiet.get("start")), _hh_mm(quiet.get("end"))
        sms = raw.get("sms")
        sms = sms if isinstance(sms, Mapping) else {}
        zone = raw.get("time_zone")
        enabled = sms.get("enabled")
        budget, reminder = sms.get("monthly_budget"), raw.get("sleeping_reminder_days")
        return cls(
            time_zone=zone if isinstance(zone, str) and zone else None,
            quiet_start=start if start and end else None,
            quiet_end=end if start and end else None,
            daily_cap=_bounded(raw.get("daily_cap"), DAILY_CAP_RANGE, DEFAULT_DAILY_CAP),
            sms_enabled=enabled if isinstance(enabled, bool) else False,
            sms_monthly_budget=None if budget is None else _bounded(budget, SMS_BUDGET_RANGE, 0),
            sleeping_reminder_days=None if not reminder else _bounded(reminder, SLEEPING_REMINDER_RANGE, 0) or None,
        )


@dataclass(frozen=True)
class ProgramSettings:
    attribution_window_days: int = DEFAULT_WINDOW_DAYS
    attribution_model: AttributionModel = DEFAULT_MODEL
    auto_enrol: bool = DEFAULT_AUTO_ENROL
    #: Whether ``deal.won`` counts as one of the customer's orders (order counts, ``trigger.order``,
    #: recurring ``orders`` caps, converted referrals).
    deals_count_as_orders: bool = DEFAULT_DEALS_COUNT_AS_ORDERS
    max_depth: int = DEFAULT_MAX_DEPTH
    #: ``{"friend_reward": {"ru": ..., "en": ...}, "partner_reward": {...}}`` as stored (read-only).
    offer: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    redemption_max_share_percent: int = DEFAULT_REDEMPTION_MAX_SHARE_PERCENT
    expiry_months: int | None = None
    expiry_warning_days: int = DEFAULT_EXPIRY_WARNING_DAYS
    birthday_gift: BirthdayGift | None = None
    birthday_min_age_days: int = DEFAULT_BIRTHDAY_MIN_AGE_DAYS
    landing_rate_limits: LandingRateLimits = field(default_factory=LandingRateLimits)
    fraud: FraudSettings = field(default_factory=FraudSettings)
    #: Member tiers; None = the program has none.
    tiers: TierSettings | None = None
    notifications: NotificationSettings = field(default_factory=NotificationSettings)

    @classmethod
    def from_stored(cls, raw: Mapping[str, Any] | None) -> ProgramSettings:
        """The typed settings of a stored ``settings`` map; anything unusable is the default."""
        raw = raw if isinstance(raw, Mapping) else {}
        model = raw.get("attribution_model")
        limits = raw.get("landing_rate_limits")
        limits = limits if isinstance(limits, Mapping) else {}
        offer = raw.get("offer")
        auto = raw.get("auto_enrol")
        deals = raw.get("deals_count_as_orders")
        return cls(
            attribution_window_days=_bounded(raw.get("attribution_window_days"), WINDOW_DAYS_RANGE,
                                             DEFAULT_WINDOW_DAYS),
            attribution_model=model if model in ATTRIBUTION_MODELS else DEFAULT_MODEL,
            auto_enrol=auto if isinstance(auto, bool) else DEFAULT_AUTO_ENROL,
            deals_count_as_orders=deals if isinstance(deals, bool) else DEFAULT_DEALS_COUNT_AS_ORDERS,
            max_depth=_bounded(raw.get("max_depth"), MAX_DEPTH_RANGE, DEFAULT_MAX_DEPTH),
            offer=MappingProxyType(dict(offer)) if isinstance(offer, Mapping) else MappingProxyType({}),
            redemption_max_share_percent=_bounded(raw.get("redemption_max_share_percent"), REDEMPTION_SHARE_RANGE,
                                                  DEFAULT_REDEMPTION_MAX_SHARE_PERCENT),
            fraud=FraudSettings.from_stored(raw.get("fraud")),
            notifications=NotificationSettings.from_stored(raw.get("notifications")),
            tiers=TierSettings.from_stored(raw.get("tiers")),
            expiry_months=(_bounded(raw.get("expiry_months"), EXPIRY_MONTHS_RANGE, 12)
                           if raw.get("expiry_months") is not None else None),
            expiry_warning_days=_bounded(raw.get("expiry_warning_days"), EXPIRY_WARNING_DAYS_RANGE,
                                         DEFAULT_EXPIRY_WARNING_DAYS),
            birthday_gift=BirthdayGift.from_stored(raw.get("birthday_gift")),
            birthday_min_age_days=_bounded(raw.get("birthday_min_age_days"), BIRTHDAY_MIN_AGE_DAYS_RANGE,
                                           DEFAULT_BIRTHDAY_MIN_AGE_DAYS),
            landing_rate_limits=LandingRateLimits(
                invites_per_minute=_bounded(limits.get("invites_per_minute"), RATE_LIMIT_RANGE,
                                            DEFAULT_INVITES_PER_MINUTE),
                offer_per_minute=_bounded(limits.get("offer_per_minute"), RATE_LIMIT_RANGE,
                                          DEFAULT_OFFER_PER_MINUTE),
            ),
        )
