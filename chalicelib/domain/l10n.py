"""Member-facing wording in Russian and English: money, rates, ordinals, reward and reversal reasons.

Pure and table-driven. The rewards engine writes ledger reasons through it (in English, the
ledger's stored language), share texts take their locale rules from it, and notifications render
the same phrases in the member's locale. Add a language by adding it to ``SUPPORTED_LOCALES``
and giving every table below an entry for it (a unit test checks every table covers every locale).

Money is integer minor units; only the display knows the currency's exponent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

SUPPORTED_LOCALES: Final = ("ru", "en")
DEFAULT_LOCALE: Final = "ru"

# ISO 4217 currencies whose minor unit is not 1/100; anything else is shown with 2 decimals.
_EXPONENT: Final = {"JPY": 0, "KRW": 0, "VND": 0, "CLP": 0, "ISK": 0, "UGX": 0, "XAF": 0, "XOF": 0,
                    "BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3}  # fmt: skip


def resolve_locale(locale: str | None) -> str:
    """``"ru-RU"``/``"ru_RU"``/``"RU"`` -> ``"ru"``; anything unsupported -> ``"en"``; nothing -> default."""
    if not locale:
        return DEFAULT_LOCALE
    base = locale.replace("_", "-").split("-", 1)[0].lower()
    return base if base in SUPPORTED_LOCALES else "en"


def _loc(locale: str) -> str:
    return locale if locale in SUPPORTED_LOCALES else "en"


# --------------------------------------------------------------------------- numbers


def currency_exponent(currency: str) -> int:
    return _EXPONENT.get(currency, 2)


def format_rate(rate_bp: int, locale: str = "en") -> str:
    """500 -> "5%", 250 -> "2.5%" (ru: "2,5 %"), 1 -> "0.01%"."""
    whole, frac = divmod(rate_bp, 100)
    text = f"{whole}" if frac == 0 else f"{whole}.{frac:02d}".rstrip("0")
    if _loc(locale) == "ru":
        return text.replace(".", ",") + " %"
    return text + "%"


def format_money(minor: int, currency: str | None, locale: str = "en") -> str:
    """12345, "RUB" -> "123.45 RUB" (ru: "123,45 RUB"); without a currency the minor units as they are."""
    ru = _loc(locale) == "ru"
    if not currency:
        return f"{minor} (в минимальных единицах)" if ru else f"{minor} (minor units)"
    exp = currency_exponent(currency)
    if exp == 0:
        return f"{minor} {currency}"
    whole, frac = divmod(minor, 10**exp)
    return f"{whole}{',' if ru else '.'}{frac:0{exp}d} {currency}"


def ordinal(n: int, locale: str = "en") -> str:
    """1 -> "1st" (ru: "1-й")."""
    if _loc(locale) == "ru":
        return f"{n}-й"
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def plural_ru(n: int, one: str, few: str, many: str) -> str:
    n = abs(n)
    if n % 10 == 1 and n % 100 != 11:
        return one
    if 2 <= n % 10 <= 4 and not 12 <= n % 100 <= 14:
        return few
    return many


def points(n: int, locale: str = "en") -> str:
    """5 -> "5 points" (ru: "5 баллов")."""
    if _loc(locale) == "ru":
        return f"{n} {plural_ru(n, 'балл', 'балла', 'баллов')}"
    return f"{n} points"


# --------------------------------------------------------------------------- reward reasons

_EVENT_PHRASES: Final[dict[str, dict[str, str]]] = {
    "en": {"member.signup": "signup", "lead.created": "new lead", "deal.won": "won deal",
           "order": "order", "first_order": "first order", "nth_order": "{n} order", "custom": "'{name}' event"},
    "ru": {"member.signup": "регистрацию", "lead.created": "новую заявку", "deal.won": "выигранную сделку",
           "order": "заказ", "first_order": "первый заказ", "nth_order": "{n} заказ", "custom": "событие «{name}»"},
}
_CAPS: Final[dict[str, dict[str, str]]] = {
    "en": {"cap_reward": "per-reward max_points", "cap_recurring": "per-friend recurring cap",
           "cap_monthly": "monthly cap", "cap_budget": "program budget"},
    "ru": {"cap_reward": "лимит награды max_points", "cap_recurring": "лимит повторных наград за друга",
           "cap_monthly": "месячный лимит", "cap_budget": "бюджет программы"},
}
_BASES: Final[dict[str, dict[str, str]]] = {
    "en": {"total": "total", "subtotal": "subtotal", "subtotal_minus_discount": "subtotal minus discount",
           "total_minus_shipping": "total minus shipping"},
    "ru": {"total": "суммы", "subtotal": "суммы товаров", "subtotal_minus_discount": "суммы товаров за вычетом скидки",
           "total_minus_shipping": "суммы без доставки"},
}
#: The member's own history (wallet page): neutral wording by entry kind and reason code, never the stored
#: ledger reason, which names the friend's member id ("your referral mbr_…'s first order").
_HISTORY: Final = {
    "en": {"self": "Your purchase", "self_signup": "Welcome to the program", "friend": "Welcome bonus",
           "friend_purchase": "Your friend's purchase", "friend_signup": "A friend joined",
           "friend_activity": "Your friend's activity", "network_purchase": "A purchase in your network (level {n})",
           "network_activity": "Activity in your network (level {n})", "birthday": "Birthday gift",
           "offer_fallback": "Instead of a partner's offer", "reversal": "Points taken back: an order was refunded",
           "voided": "Points taken back after a review", "redemption": "Paid with points",
           "redemption_return": "Payment with points cancelled", "expiry": "Points expired",
           "import": "Balance carried over", "credit": "Points credited", "debit": "Points debited"},
    "ru": {"self": "Ваша покупка", "self_signup": "Добро пожаловать в программу", "friend": "Приветственный бонус",
           "friend_purchase": "Покупка вашего друга", "friend_signup": "Друг присоединился",
           "friend_activity": "Активность вашего друга", "network_purchase": "Покупка в вашей сети ({n}-й уровень)",
           "network_activity": "Активность в вашей сети ({n}-й уровень)", "birthday": "Подарок на день рождения",
           "offer_fallback": "Вместо предложения партнёра", "reversal": "Баллы списаны: заказ возвращён",
           "voided": "Баллы списаны после проверки", "redemption": "Оплата баллами",
           "redemption_return": "Оплата баллами отменена", "expiry": "Баллы сгорели",
           "import": "Перенесённый баланс", "credit": "Начисление баллов", "debit": "Списание баллов"},
}

#: Every table a locale must fill in (checked by a unit test).
TABLES: Final = (_EVENT_PHRASES, _CAPS, _BASES, _HISTORY)


def history_reason(locale: str, *, kind: str, reason_code: str | None, level: int | None, event_type: str | None,
                   points: int, reason: str | None = None) -> str:
    """A ledger entry as the member reads it in their own history: what happened, in their language, without
    naming anyone (a friend appears as "your friend"). A manual adjustment shows the operator's reason, which
    was written for the member's statement."""
    words = _HISTORY[_loc(locale)]
    purchase = event_type in ("order.paid", "deal.won")
    if kind == "adjustment" and reason:
        return reason
    if kind == "reward":
        if reason_code == "birthday_gift":
            return words["birthday"]
        if reason_code == "offer_fallback":
            return words["offer_fallback"]
        if reason_code == "friend_reward":
            return words["friend"]
        if level and level >= 2:
            return words["network_purchase" if purchase else "network_activity"].format(n=level)
        if level == 1 or reason_code in ("referral_reward", "recurring_reward"):
            if event_type == "member.signup":
                return words["friend_signup"]
            return words["friend_purchase" if purchase else "friend_activity"]
        return words["self_signup"] if event_type == "member.signup" else words["self"]
    named = {"reversal": "voided" if reason_code == "review_voided" else "reversal", "redemption": "redemption",
             "redemption_return": "redemption_return", "expiry": "expiry", "import": "import"}
    return words.get(named.get(kind, ""), words["credit" if points >= 0 else "debit"])


def event_phrase(event_type: str, locale: str = "en", *, order_position: int | None = None) -> str:
    """What happened, as a noun phrase: "signup", "first order", "3rd order", "'visit' event".

    ``order_position`` (1-based) names the order's position; ``None`` says just "order".
    """
    table = _EVENT_PHRASES[_loc(locale)]
    if event_type == "order.paid":
        if order_position is None:
            return table["order"]
        if order_position == 1:
            return table["first_order"]
        return table["nth_order"].format(n=ordinal(order_position, locale))
    if event_type in table:
        return table[event_type]
    return table["custom"].format(name=event_type.removeprefix("custom."))


def cap_name(code: str, locale: str = "en") -> str:
    return _CAPS[_loc(locale)].get(code, code)


@dataclass(frozen=True)
class HowComputed:
    """How a reward's points were computed, before caps: fixed, or a rate of an order amount."""

    rate_bp: int | None = None
    base: str | None = None
    base_minor: int | None = None
    currency: str | None = None
    #: The tier's threshold (converted referrals) when the amount has tiers.
    tier_min_converted: int | None = None


def how_phrase(how: HowComputed, locale: str = "en") -> str:
    ru = _loc(locale) == "ru"
    tier = ""
    if how.tier_min_converted is not None:
        tier = (f" (уровень от {how.tier_min_converted} приведённых друзей)" if ru
                else f" (tier for {how.tier_min_converted}+ converted referrals)")
    if how.rate_bp is None:
        return ("фиксированная награда" if ru else "fixed reward") + tier
    base = _BASES[_loc(locale)].get(how.base or "total", how.base or "")
    money = format_money(how.base_minor or 0, how.currency, locale)
    if ru:
        return f"{format_rate(how.rate_bp, locale)} от {base} заказа {money}{tier}"
    return f"{format_rate(how.rate_bp, locale)} of the order {base} {money}{tier}"


def reward_reason(
    locale: str,
    *,
    recipient: str,
    what: str,
    level: int,
    subject_id: str,
    points_granted: int,
    points_requested: int,
    rule_name: str,
    how: HowComputed,
    trims: Sequence[str] = (),
) -> str:
    """The ledger line: "40 points for your referral m1's first order (Friend bonus): 5% of ...".

    ``recipient`` is "self" | "friend" | "referrer"; ``what`` an :func:`event_phrase`;
    ``trims`` the cap codes that reduced the reward, in the order applied.
    """
    ru = _loc(locale) == "ru"
    if ru:
        if recipient == "self":
            whose = f"за {what}"
        elif recipient == "friend":
            whose = f"за {what} приглашённого участника"
        else:
            who = "вашего друга" if level == 1 else f"вашего друга {level}-го уровня"
            whose = f"за {what} {who} {subject_id}"
        text = f"{points(points_granted, locale)} {whose} ({rule_name}): {how_phrase(how, locale)}."
        if trims:
            text += f" Уменьшено с {points_requested}: {' и '.join(cap_name(t, locale) for t in trims)}."
        return text
    if recipient == "self":
        whose = f"your {what}"
    elif recipient == "friend":
        whose = f"your {what} as a referred member"
    else:
        who = "your referral" if level == 1 else f"your level-{level} referral"
        whose = f"{who} {subject_id}'s {what}"
    text = f"{points(points_granted, locale)} for {whose} ({rule_name}): {how_phrase(how, locale)}."
    if trims:
        text += f" Reduced from {points_requested} by the {' and '.join(cap_name(t, locale) for t in trims)}."
    return text


def multiplier_factor(multiplier_bp: int) -> str:
    """A multiplier in basis points as a factor, no floats: 15000 -> "1.5", 10000 -> "1", 12550 -> "1.255"."""
    whole, frac = divmod(multiplier_bp, 10_000)
    return f"{whole}.{frac:04d}".rstrip("0").rstrip(".")


def tier_multiplier_phrase(locale: str, *, tier: str | None, multiplier_bp: int) -> str:
    """Appended to a reward reason when the recipient's member tier multiplied it: " Tier gold: x1.5."."""
    if _loc(locale) == "ru":
        return f" Уровень {tier}: x{multiplier_factor(multiplier_bp).replace('.', ',')}."
    return f" Tier {tier}: x{multiplier_factor(multiplier_bp)}."


def voucher_reason(locale: str, *, rule_name: str, offer_id: str, partner_id: str, what: str) -> str:
    """Why a member got a partner's voucher: "Welcome gift: offer o1 of partner p1 (first order)"."""
    if _loc(locale) == "ru":
        return f"{rule_name}: предложение {offer_id} партнёра {partner_id} (за {what})"
    return f"{rule_name}: offer {offer_id} of partner {partner_id} ({what})"


def reversal_reason(locale: str, *, taken: int, of_points: int, rule_id: str, share_percent: int | None) -> str:
    """``share_percent`` None means the order was refunded in full."""
    if _loc(locale) == "ru":
        share = "полностью" if share_percent is None else f"на {share_percent}% суммы заказа"
        return f"Списано {taken} из {of_points} баллов по «{rule_id}»: заказ возвращён {share}."
    share = "in full" if share_percent is None else f"{share_percent}% of the order amount"
    return f"{taken} of {of_points} points from '{rule_id}' taken back: the order was refunded {share}."
