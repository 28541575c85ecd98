"""Public landing-page routes: invite links, the short-link redirect, offer info, CORS preflights.

CORS is answered here, per program (Chalice's static ``CORSConfig`` cannot vary the
allowed origin by tenant): the ``OPTIONS`` routes are declared explicitly, so both
API Gateway and ``chalice local`` pass preflights to these views.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chalice import Response

from chalicelib.api.http import ApiBlueprint, ApiRequest, lazy_module
from chalicelib.domain import urls
from chalicelib.domain.errors import DomainError, RateLimited
from chalicelib.logs import get_logger
from chalicelib.services.landing import cors, redirect
from chalicelib.store.tenancy import ProgramItem

if TYPE_CHECKING:
    from chalicelib.services.landing import invites, offer, rate_limits
else:  # Imported when one of these routes first runs (cold start: bench/cold_start.py).
    invites = lazy_module("chalicelib.services.landing.invites")
    offer = lazy_module("chalicelib.services.landing.offer")
    rate_limits = lazy_module("chalicelib.services.landing.rate_limits")

landing = ApiBlueprint(__name__)
TAG = "Landing pages"
INVITES = "/v1/landing/invites"
OFFER = "/v1/landing/offer/{code}"
log = get_logger("sarafan.landing")


def _program(req: ApiRequest) -> ProgramItem:
    """The key's program, its origin checked; remembered for the CORS headers of the response."""
    program = cors.landing_program(req.principal, req.ports)
    req.context["program"] = program
    cors.check_origin(program, req.headers.get("origin"))
    return program


def _cors(req: ApiRequest, response: Response) -> None:
    """CORS headers on success and on errors alike (through the one error mapper), so a page on an
    allowed origin can read a 422 or 429 too."""
    origin = req.headers.get("origin")
    program = req.context.get("program")
    if program is None and origin:
        try:  # the request failed before the view (e.g. a 422 from the route's schema)
            program = cors.landing_program(req.principal, req.ports)
        except DomainError:
            program = None
    allowed = isinstance(program, ProgramItem) and cors.origin_allowed(program, origin)
    response.headers.update(cors.cors_headers(origin, allowed))


def _preflight(methods: str) -> Response:
    origin = landing.current_request.headers.get("origin")
    headers: dict[str, str | list[str]]
    try:
        headers = {**cors.preflight_headers(origin, methods)}
    except Exception:  # a preflight must never become a 500 page
        log.exception("preflight failed")
        headers = {"Vary": "Origin"}
    return Response(body="", status_code=204, headers=headers)


@landing.endpoint(
    INVITES, "POST", summary="Create (or find) a visitor's invite link", tag=TAG, auth="publishable",
    request_schema=lambda: invites.INVITE_SCHEMA, finish=_cors,
    description="Called from a landing page with the program's publishable key (`X-Publishable-Key`). "
                "Finds or creates the visitor's member record by e-mail or phone and returns their code, short "
                "link, share texts (ru, en) and a QR code (SVG). `ref` is the code of the member whose link "
                "brought the visitor: it is recorded as a pending invite, credited when the visitor signs up "
                "or buys. CORS: only the program's `allowed_origins`. Rate limited per client IP "
                "(`settings.landing_rate_limits.invites_per_minute`, default 20).",
)
def create_invite(req: ApiRequest) -> Any:
    return invites.create_invite(_program(req), req.body, req.source_ip, req.ports)


@landing.route(INVITES, methods=["OPTIONS"])
def create_invite_preflight() -> Response:
    return _preflight("POST, OPTIONS")


@landing.endpoint(
    OFFER, "GET", summary="Public offer for a referral code (referrer's first name only)", tag=TAG,
    auth="publishable", query_params=(("locale", "string"),), finish=_cors,
    description="What a landing page needs to say \"Olga invites you\": the program's offer and the first name "
                "of the code's owner. 404 for a code that is not the program's. Rate limited per client IP.",
)
def get_offer(req: ApiRequest, code: str) -> Any:
    return offer.offer(_program(req), code, req.source_ip, req.query("locale"), req.ports)


@landing.route(OFFER, methods=["OPTIONS"])
def get_offer_preflight(code: str) -> Response:
    return _preflight("GET, OPTIONS")


@landing.endpoint(
    "/r/{code}", "GET", summary="Short link: redirect to the landing page and count the click", tag=TAG,
    auth="none", success_status=302, strict_path=False,
    query_params=(("p", "string"), *((k, "string") for k in redirect.UTM_PARAMS)),
    description="302 to the landing page of the code's program (of partner `p` if given and valid) with "
                "`ref=<code>` and the incoming `utm_*` parameters. The click is counted per code, day and "
                "`utm_source` (messenger link-preview fetches are not counted); no IP is stored. An unknown code redirects to the default landing page, never "
                "to an error page. Over the per-IP limit: 429 with `Retry-After`.",
)
def follow_link(req: ApiRequest, code: str) -> Any:
    query = dict(req.request.query_params or {})
    try:
        rate_limits.redirect_rate_limit(req.source_ip)
    except RateLimited:
        raise  # 429 through the one error mapper
    except Exception:  # e.g. the master secret (which keys the IP hash) is unreadable: still redirect
        log.exception("redirect rate limit unavailable")
    try:
        target = redirect.redirect_target(code, query, req.headers.get("user-agent"), req.ports)
    except Exception:  # the visitor still gets somewhere useful
        log.exception("redirect failed")
        target = redirect.default_landing_url()
    # The Location header must be ASCII (raw IDN or control characters drop the connection).
    location = urls.to_header_url(target) or redirect.FALLBACK_LANDING_URL
    return Response(body="", status_code=302, headers={
        "Location": location, "Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})
