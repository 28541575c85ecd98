"""The Shopify storefront snippet (docs/snippets/sarafan-ref.js) as a JS unit.

Two runners: Node (a vm with location, cookie and fetch stubs) and, when the Debian ``chromium``
package is installed, a real headless Chromium loading the snippet from a local server whose
``/cart/update.js`` records what the browser sent. A missing runner is a loud skip.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SNIPPET = ROOT / "docs" / "snippets" / "sarafan-ref.js"
HARNESS = ROOT / "tests" / "js" / "snippet_harness.js"


def loud_skip(reason: str) -> None:
    warnings.warn(f"SKIPPED storefront snippet test: {reason}", stacklevel=2)
    pytest.skip(reason)


def node(search: str, cookie: str = "") -> dict[str, Any]:
    binary = shutil.which("node") or shutil.which("nodejs")
    if binary is None:
        loud_skip("node is not installed")
    assert binary is not None
    out = subprocess.run([binary, str(HARNESS), str(SNIPPET), search, cookie], capture_output=True, text=True,
                         timeout=30, check=True)
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def test_a_ref_in_the_url_is_kept_in_a_cookie_and_written_to_the_cart() -> None:
    result = node("?utm_source=vk&ref=ANNA-7K2Q")
    assert result["code"] == "ANNA-7K2Q"
    assert result["cookie"] == "sarafan_ref=ANNA-7K2Q"
    assert "max-age=2592000" in result["cookieAttrs"] and "path=/" in result["cookieAttrs"]
    assert result["calls"] == [{"url": "/cart/update.js", "method": "POST",
                                "body": {"attributes": {"sarafan_ref": "ANNA-7K2Q"}}}]


def test_a_later_page_without_ref_uses_the_cookie() -> None:
    result = node("?page=2", "theme=dark; sarafan_ref=ANNA-7K2Q")
    assert result["code"] == "ANNA-7K2Q"
    assert result["calls"][0]["body"] == {"attributes": {"sarafan_ref": "ANNA-7K2Q"}}


@pytest.mark.parametrize("search", ["", "?ref=", "?ref=%3Cscript%3E", "?ref=" + "A" * 40])
def test_no_usable_code_does_nothing(search: str) -> None:
    result = node(search)
    assert result["code"] is None and result["calls"] == [] and result["cookie"] == ""


class _Shop(BaseHTTPRequestHandler):
    posts: list[dict[str, Any]] = []

    def do_GET(self) -> None:
        if self.path.startswith("/sarafan-ref.js"):
            body, kind = SNIPPET.read_bytes(), "application/javascript"
        else:
            body = (b"<html><body><div id=out>waiting</div><script src=/sarafan-ref.js></script><script>"
                    b"SarafanRef.ready.then(function(c){document.getElementById('out').textContent="
                    b"'code='+c+';cookie='+document.cookie;});</script></body></html>")
            kind = "text/html"
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        _Shop.posts.append({"path": self.path, "body": json.loads(self.rfile.read(length))})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: Any) -> None:
        pass


def test_in_headless_chromium(tmp_path: Path) -> None:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        loud_skip("chromium is not installed (Debian: apt-get install chromium; .ci/run tries it)")
    assert binary is not None
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Shop)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Shop.posts = []
    try:
        url = f"http://127.0.0.1:{server.server_port}/products/tea?ref=ANNA-7K2Q"
        out = subprocess.run([binary, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path}",
                              "--virtual-time-budget=5000", "--dump-dom", url],
                             capture_output=True, text=True, timeout=90)
    finally:
        server.shutdown()
    assert "code=ANNA-7K2Q;cookie=sarafan_ref=ANNA-7K2Q" in out.stdout, out.stderr[-2000:]
    assert _Shop.posts == [{"path": "/cart/update.js", "body": {"attributes": {"sarafan_ref": "ANNA-7K2Q"}}}]
