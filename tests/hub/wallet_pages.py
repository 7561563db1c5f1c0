"""The wallet's JavaScript in chromium without a hub: its files answered straight from
``hub/passgate_hub/wallet/`` by Playwright's routing (nothing listens, nothing leaves the browser),
under an origin on 127.0.0.1 so the page is a secure context and WebCrypto is there.

``WalletHarness`` loads a bare page that imports ``qr.js`` and ``wallet.js`` (which starts no page
of its own without ``#wallet-app``) and calls their exports; ``shoot`` draws a code with the
wallet's own ``drawQR`` and returns the screenshot of the canvas, for a real decoder to read.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

import passgate_hub

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page, Route

WALLET = Path(passgate_hub.__file__).with_name("wallet")
# Port 9 (discard): nothing answers there, so a request the route does not serve fails at once.
ORIGIN = "http://127.0.0.1:9"
TYPES = {".js": "text/javascript", ".svg": "image/svg+xml", ".webmanifest": "application/manifest+json"}
HARNESS = """<!doctype html><html><head><meta charset="utf-8"><title>harness</title>
<style>body { margin: 0; background: #fff; } canvas { display: block; }</style></head>
<body><canvas id="shot"></canvas>
<script type="module">
import * as qr from "/wallet/qr.js";
import * as wallet from "/wallet/wallet.js";
window.qr = qr;
window.wallet = wallet;
document.body.dataset.ready = "yes";
</script></body></html>"""


def serve_wallet(route: Route) -> None:
    """Answer ``/wallet/<file>`` from the package directory and ``/harness`` with the bare page."""
    path = route.request.url.removeprefix(ORIGIN).split("?")[0]
    if path == "/harness":
        route.fulfill(status=200, content_type="text/html", body=HARNESS)
        return
    name = path.removeprefix("/wallet/")
    target = WALLET / name
    if path.startswith("/wallet/") and "/" not in name and target.is_file():
        kind = TYPES.get(target.suffix, "text/plain")
        route.fulfill(status=200, content_type=kind, body=target.read_bytes())
        return
    route.fulfill(status=404, body=b"not found")


class WalletHarness:
    """One page with the wallet's modules loaded; ``call`` runs a function on them in the page."""

    def __init__(self, browser: Browser) -> None:
        self.context: BrowserContext = browser.new_context(viewport={"width": 1280, "height": 1000})
        self.context.route(f"{ORIGIN}/**", serve_wallet)
        self.page: Page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.goto(f"{ORIGIN}/harness")
        self.page.wait_for_selector("body[data-ready=yes]", state="attached")

    def call(self, script: str, arg: Any = None) -> Any:
        """Evaluate ``script`` (a JavaScript function of one argument, may be async) in the page."""
        return self.page.evaluate(script, arg)

    def shoot(self, text: str, *, version: int | None = None,
              scale: int = 3) -> tuple[dict[str, Any], Image.Image]:
        """Encode ``text`` in the page, draw it with the wallet's 8-module quiet zone, and screenshot
        the canvas; returns what the encoder reported (version, mask, mode) and the image."""
        made = self.call(
            """([text, version, scale]) => {
                const code = qr.encodeQR(text, version === null ? {} : {version});
                qr.drawQR(document.getElementById("shot"), code, {quiet: wallet.QUIET_MODULES, scale});
                return {version: code.version, mask: code.mask, mode: code.mode, size: code.size};
            }""",
            [text, version, scale],
        )
        png = self.page.locator("#shot").screenshot()
        return made, Image.open(io.BytesIO(png)).convert("L")

    def close(self) -> None:
        self.context.close()


def harness(browser: Browser) -> Iterator[WalletHarness]:
    """The body of a fixture: a harness closed afterwards, its page having thrown nothing."""
    made = WalletHarness(browser)
    try:
        yield made
        assert made.errors == [], made.errors
    finally:
        made.close()
