"""Web pages served by the app: the operator/partner dashboard (static HTML + JS + CSS from this package;
uPlot vendored under ``static/vendor``, no CDN and no build step)."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from chalice import Response

from chalicelib.api.http import ApiBlueprint, ApiRequest
from chalicelib.domain.errors import NotFound

web = ApiBlueprint(__name__)
TAG = "Web pages"
STATIC = Path(__file__).resolve().parent / "static"
#: Assets the dashboard may load, by the name in its URL: (file under static/, media type).
ASSETS = {
    "dashboard.js": ("dashboard.js", "text/javascript"),
    "dashboard.css": ("dashboard.css", "text/css"),
    "uPlot.iife.min.js": ("vendor/uPlot.iife.min.js", "text/javascript"),
    "uPlot.min.css": ("vendor/uPlot.min.css", "text/css"),
}
#: Pages run only our own scripts and talk only to this origin (the key never leaves it).
CSP = ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; connect-src 'self'; "
       "img-src 'self' data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
PAGE_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
                "Cache-Control": "no-store"}


@cache
def _read(name: str) -> str:
    return (STATIC / name).read_text(encoding="utf-8")


@web.endpoint("/dashboard", "GET", tag=TAG, auth="none", response_schema={"type": "string"},
              response_content_types=("text/html",),
              summary="The analytics dashboard (a web page; signs in with an operator or partner key)",
              description="Static HTML; the page keeps the key in sessionStorage and calls the analytics API with "
                          "a bearer header. See docs/analytics.md.")
def dashboard(req: ApiRequest) -> Any:
    return Response(body=_read("dashboard.html"), status_code=200,
                    headers={"Content-Type": "text/html; charset=utf-8", **PAGE_HEADERS})


@web.endpoint("/dashboard/assets/{name}", "GET", tag=TAG, auth="none", response_schema={"type": "string"},
              response_content_types=("text/javascript", "text/css"),
              summary="The dashboard's scripts and styles (uPlot vendored)")
def dashboard_asset(req: ApiRequest, name: str) -> Any:
    if name not in ASSETS:
        raise NotFound("No such asset", details={"name": name[:64]})
    path, media = ASSETS[name]
    return Response(body=_read(path), status_code=200,
                    headers={"Content-Type": f"{media}; charset=utf-8", "X-Content-Type-Options": "nosniff",
                             "Cache-Control": "public, max-age=300"})
