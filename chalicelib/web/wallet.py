"""The member wallet page ``GET /w/{token}`` (server-rendered HTML, ru and en) and the partner API that issues
its links, ``POST /v1/programs/{program_id}/members/{member_id}/wallet-links``."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

from chalice import Response

from chalicelib.api.http import ApiBlueprint, ApiRequest, lazy_module, respond
from chalicelib.api.response_schemas import STR, TIME, obj
from chalicelib.domain.errors import DomainError
from chalicelib.domain.l10n import history_reason
from chalicelib.web.pages import PAGE_HEADERS

if TYPE_CHECKING:
    from chalicelib.services import wallet as service
else:  # Imported when one of these routes first runs (cold start: bench/cold_start.py).
    service = lazy_module("chalicelib.services.wallet")

wallet_pages = ApiBlueprint(__name__)

WORDS: dict[str, dict[str, str]] = {
    "en": {"title": "Your wallet", "hello": "Hello", "available": "Available", "pending": "Pending",
           "owed": "Owed", "points": "points", "code": "Your code", "invite": "Invite friends",
           "copy": "Copy link", "friends": "Friends", "no_friends": "No friends yet: share your link.",
           "joined": "joined", "purchased": "made a purchase", "history": "Recent history",
           "no_history": "Nothing yet.", "vouchers": "Vouchers", "expires": "expires",
           "preferences": "Notifications", "unsubscribe": "Stop e-mails from this program",
           "invalid": "This wallet link is invalid or has expired. Ask the shop for a new one.",
           "qr": "QR code of your invite link", "tier": "Your status", "top_tier": "The top status: well done!",
           "to_next": "towards", "points_earned": "points earned", "spend": "spent", "converted_referrals": "friends who bought",
           "months": "over the last {n} months",
           "data": "Your data",
           "erase_intro": "You can ask the program to erase your personal data (name, e-mail, phone, birthday). "
                          "Your points history stays, without your name. The program confirms the request.",
           "erase_button": "Request erasure of my data",
           "erase_requested": "You asked for your data to be erased on {at}. The program will confirm it.",
           "erase_running": "Your data is being erased.",
           "erase_done_title": "Request received",
           "back": "Back to your wallet"},
    "ru": {"title": "Ваш кошелёк", "hello": "Здравствуйте", "available": "Доступно", "pending": "Ожидает",
           "owed": "Долг", "points": "баллов", "code": "Ваш код", "invite": "Пригласите друзей",
           "copy": "Скопировать ссылку", "friends": "Друзья", "no_friends": "Пока никого: поделитесь ссылкой.",
           "joined": "присоединился", "purchased": "сделал покупку", "history": "Последние операции",
           "no_history": "Пока ничего.", "vouchers": "Ваучеры", "expires": "до",
           "preferences": "Уведомления", "unsubscribe": "Не присылать письма этой программы",
           "invalid": "Ссылка на кошелёк недействительна или устарела. Попросите у магазина новую.",
           "qr": "QR-код вашей ссылки", "tier": "Ваш статус", "top_tier": "Высший статус: отлично!",
           "to_next": "до статуса", "points_earned": "баллов начислено", "spend": "потрачено",
           "converted_referrals": "друзей с покупкой", "months": "за последние {n} мес.",
           "data": "Ваши данные",
           "erase_intro": "Вы можете попросить программу удалить ваши персональные данные (имя, e-mail, телефон, "
                          "дату рождения). История баллов останется, но без вашего имени. Программа подтвердит запрос.",
           "erase_button": "Запросить удаление моих данных",
           "erase_requested": "Вы запросили удаление данных {at}. Программа подтвердит запрос.",
           "erase_running": "Ваши данные удаляются.",
           "erase_done_title": "Запрос принят",
           "back": "Вернуться в кошелёк"},
}
SHARE_LABELS = {"telegram": "Telegram", "whatsapp": "WhatsApp", "vk": "VK", "email": "E-mail", "sms": "SMS"}
STYLE = """body{margin:0;font:15px/1.5 system-ui,sans-serif;color:#1d2330;background:#f6f7f9}
main{max-width:560px;margin:0 auto;padding:16px}.card{background:#fff;border:1px solid #e4e7ec;border-radius:12px;
padding:14px 16px;margin:0 0 14px}h1{font-size:20px;margin:8px 0 14px}h2{font-size:16px;margin:0 0 8px}
.balance{display:flex;gap:14px;flex-wrap:wrap}.balance div{flex:1;min-width:90px}.balance b{display:block;font-size:24px}
.muted{color:#667085}.code{font:600 22px ui-monospace,monospace;letter-spacing:1px}.share a{display:inline-block;
margin:4px 6px 4px 0;padding:6px 10px;border-radius:8px;background:#2f6fed;color:#fff;text-decoration:none}
.qr svg{width:160px;height:160px}ul{padding-left:18px;margin:0}li{margin:3px 0}.plus{color:#067647}.minus{color:#b42318}
input{width:100%;box-sizing:border-box;padding:6px;border:1px solid #e4e7ec;border-radius:6px;font:inherit}
.bar{height:8px;background:#e4e7ec;border-radius:4px;overflow:hidden}.bar span{display:block;height:100%;background:#2f6fed}"""


def _e(value: Any) -> str:
    return html.escape(str(value if value is not None else ""), quote=True)


def _page(lang: str, title: str, body: str, status: int = 200) -> Response:
    text = (f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8"><meta name="viewport" '
            f'content="width=device-width, initial-scale=1"><title>{_e(title)}</title><link rel="icon" href="data:,">'
            f"<style>{STYLE}</style></head><body><main>{body}</main></body></html>")
    return Response(body=text, status_code=status, headers={"Content-Type": "text/html; charset=utf-8", **PAGE_HEADERS})


def _tier_card(tier: dict[str, Any], w: dict[str, str], program: dict[str, Any], lang: str) -> str:
    """The member's tier and the progress to the next one (a bar: the metric's value against the threshold)."""
    from chalicelib.domain.l10n import format_money

    def amount(v: int) -> str:
        return format_money(v, program.get("currency"), lang) if tier["metric"] == "spend" else str(v)

    value = int(tier["value"])
    shown = amount(value)
    nxt = tier.get("next")
    if nxt:
        target = int(nxt["threshold"])
        goal = amount(target)
        line = (f'<p><span data-field="tier_value">{_e(shown)}</span> / <span data-field="tier_threshold">'
                f'{_e(goal)}</span> {_e(w[tier["metric"]])} {_e(w["to_next"])} «{_e(nxt["names"].get(lang, nxt["name"]))}» '
                f'<span class="muted">({_e(w["months"].format(n=tier["period_months"]))})</span></p>'
                f'<div class="bar" role="progressbar" aria-valuemin="0" aria-valuemax="100" '
                f'aria-valuenow="{int(tier["percent"])}"><span style="width:{int(tier["percent"])}%"></span></div>')
    else:
        line = (f'<p><span data-field="tier_value">{_e(shown)}</span> {_e(w[tier["metric"]])} '
                f'<span class="muted">({_e(w["months"].format(n=tier["period_months"]))})</span></p>'
                f'<p class="muted">{_e(w["top_tier"])}</p>')
    name = tier["names"].get(lang, tier["name"])
    return (f'<section class="card" id="tier"><h2>{_e(w["tier"])}: <span data-field="tier">{_e(name)}'
            f"</span></h2>{line}</section>")


def render(data: dict[str, Any], lang: str) -> str:
    w = WORDS[lang]
    b = data["balance"]
    parts = [f'<h1>{_e(data["program"]["name"])}: {_e(w["title"])}</h1>']
    if data.get("name"):
        parts.append(f'<p>{_e(w["hello"])}, {_e(data["name"])}!</p>')
    parts.append('<section class="card" id="balance"><div class="balance">' + "".join(
        f'<div><span class="muted">{_e(w[k])}</span><b data-field="{k}">{int(b[k])}</b>'
        f'<span class="muted">{_e(w["points"])}</span></div>' for k in ("available", "pending", "owed")) + "</div></section>")
    if data.get("tier"):
        parts.append(_tier_card(data["tier"], w, data["program"], lang))
    share = "".join(f'<a href="{_e(url)}" rel="noopener" target="_blank">{_e(SHARE_LABELS.get(name, name))}</a>'
                    for name, url in data["share_links"].items())
    parts.append(f'<section class="card" id="invite"><h2>{_e(w["invite"])}</h2><p class="muted">{_e(w["code"])}</p>'
                 f'<p class="code" data-field="code">{_e(data["code"])}</p>'
                 f'<input readonly value="{_e(data["link"])}" aria-label="{_e(w["copy"])}" data-field="link">'
                 f'<p class="share">{share}</p>'
                 f'<div class="qr" role="img" aria-label="{_e(w["qr"])}">{data["qr_svg"]}</div></section>')
    friends = "".join(f'<li>{_e(f["name"])}: {_e(w[f["status"]])} <span class="muted">{_e(f["joined_at"][:10])}</span>'
                      f"</li>" for f in data["friends"]) or f'<p class="muted">{_e(w["no_friends"])}</p>'
    if data["friends"]:
        friends = f"<ul>{friends}</ul>"
    parts.append(f'<section class="card" id="friends"><h2>{_e(w["friends"])}</h2>{friends}</section>')
    rows = "".join(f'<li><b class="{"plus" if h["points"] >= 0 else "minus"}">{h["points"]:+d}</b> '
                   f'{_e(history_reason(lang, **h["facts"]))} '
                   f'<span class="muted">{_e(h["at"][:10])}</span></li>' for h in data["history"])
    parts.append(f'<section class="card" id="history"><h2>{_e(w["history"])}</h2>'
                 f'{f"<ul>{rows}</ul>" if rows else "<p class=muted>" + _e(w["no_history"]) + "</p>"}</section>')
    if data.get("vouchers"):
        items = "".join(f'<li><b>{_e(v["name"])}</b>: <span class="code">{_e(v["code"])}</span> '
                        f'<span class="muted">{_e(v["status"])}'
                        f'{" · " + _e(w["expires"]) + " " + _e(str(v["expires_at"])[:10]) if v.get("expires_at") else ""}'
                        f"</span></li>" for v in data["vouchers"])
        parts.append(f'<section class="card" id="vouchers"><h2>{_e(w["vouchers"])}</h2><ul>{items}</ul></section>')
    parts.append(f'<section class="card" id="preferences"><h2>{_e(w["preferences"])}</h2>'
                 f'<p><a href="{_e(data["unsubscribe_url"])}">{_e(w["unsubscribe"])}</a></p></section>')
    parts.append(f'<section class="card" id="data"><h2>{_e(w["data"])}</h2>{_erasure_part(data, lang)}</section>')
    return "".join(parts)


def _erasure_part(data: dict[str, Any], lang: str) -> str:
    w = WORDS[lang]
    erasure = data.get("erasure")
    if erasure and erasure["status"] == "requested":
        return f'<p data-field="erasure">{_e(w["erase_requested"].format(at=str(erasure["requested_at"])[:10]))}</p>'
    if erasure:
        return f'<p data-field="erasure">{_e(w["erase_running"])}</p>'
    return (f'<p class="muted">{_e(w["erase_intro"])}</p>'
            f'<form method="post" action="{_e(data.get("token", ""))}/erasure-request?lang={lang}">'
            f'<button type="submit" data-field="erase">{_e(w["erase_button"])}</button></form>')


@wallet_pages.endpoint("/w/{token}", "GET", tag="Web pages", auth="none", query_params=(("lang", "string"),),
                       response_schema={"type": "string"}, response_content_types=("text/html",),
                       summary="A member's wallet page (signed short-lived link; ru or en)",
                       description="Balance (available, pending, owed), code, invite link with share buttons and QR "
                                   "code, friends (names masked) and their status, recent history with reasons, "
                                   "vouchers, notification preferences. `lang=ru|en` overrides the member's "
                                   "language. A tampered or expired link: 404 with a page saying so.")
def wallet_page(req: ApiRequest, token: str) -> Any:
    wanted = req.query("lang")
    try:
        data = service.content(token)
    except DomainError as exc:
        if "text/html" not in req.headers.get("accept", ""):
            raise  # API clients get the JSON error; a browser gets a page saying what happened
        lang = wanted if wanted in WORDS else "en"
        return _page(lang, WORDS[lang]["title"], f'<section class="card" id="invalid"><p>{_e(WORDS[lang]["invalid"])}'
                                                 f"</p></section>", status=exc.status)
    lang = wanted if wanted in WORDS else data["locale"]
    return _page(lang, WORDS[lang]["title"], render({**data, "token": token}, lang))


@wallet_pages.endpoint("/w/{token}/erasure-request", "POST", tag="Web pages", auth="none",
                       query_params=(("lang", "string"),),
                       content_types=["application/x-www-form-urlencoded", "application/json"],
                       response_schema=obj({"status": STR, "requested_at": TIME}),
                       response_content_types=("application/json", "text/html"),
                       summary="The member asks for erasure of their data (from the wallet page; signed link)",
                       description="Records an erasure request (`status: requested`, `requested_by: member`) that "
                                   "the operator sees in `GET /v1/programs/{program_id}/erasure-requests` and "
                                   "confirms with `POST …/members/{member_id}/erase`. Idempotent. The wallet page's "
                                   "form posts here (no body); a browser gets a page, an API client JSON. A "
                                   "tampered or expired link: 404.")
def request_erasure(req: ApiRequest, token: str) -> Any:
    wanted = req.query("lang")
    browser = "text/html" in req.headers.get("accept", "")
    try:
        result = service.request_erasure(token)
    except DomainError as exc:
        if not browser:
            raise
        lang = wanted if wanted in WORDS else "en"
        return _page(lang, WORDS[lang]["title"], f'<section class="card" id="invalid"><p>{_e(WORDS[lang]["invalid"])}'
                                                 f"</p></section>", status=exc.status)
    if not browser:
        return {"status": result["status"], "requested_at": result["requested_at"]}
    lang = wanted if wanted in WORDS else result["locale"]
    w = WORDS[lang]
    return _page(lang, w["erase_done_title"], f'<h1>{_e(w["erase_done_title"])}</h1><section class="card" id="data">'
                 f'<p data-field="erasure">{_e(w["erase_requested"].format(at=str(result["requested_at"])[:10]))}</p>'
                 f'<p><a href="../{_e(token)}?lang={lang}">{_e(w["back"])}</a></p></section>')


@wallet_pages.endpoint("/v1/programs/{program_id}/members/{member_id}/wallet-links", "POST", tag="Members",
                       request_schema=lambda: service.LINKS_SCHEMA, success_status=201,
                       response_schema=obj({"url": STR, "expires_at": TIME}),
                       summary="A signed, short-lived link to the member's wallet page (operator or partner)",
                       description="For a shop's account area or an e-mail. The link works until `expires_at` "
                                   "(default 24 h, `ttl_hours` up to 14 days); notification e-mails carry one that "
                                   "works for 7 days.")
def create_wallet_link(req: ApiRequest, program_id: str, member_id: str) -> Any:
    return respond(service.issue_link(req.principal, program_id, member_id, req.body or {}), 201)
