"""A real browser for pages (Debian's chromium driven by Playwright): the guard page's tests and the
console's. Playwright's own browser downloads are never used (the gate and CI are offline): the
system's chromium is required, and missing it skips locally but fails under ``CI=true``
(``.ci/run`` installs it)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.parts import require_part

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

__all__ = ["browser_page", "chromium_browser"]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",  # tests may run as root in a container, where chromium's sandbox cannot start
    "--disable-gpu",
    "--disable-background-networking",  # no calls home: the tests and the gate are offline
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
VIEWPORT = {"width": 1280, "height": 720}  # a common size for the monitor beside a gate


@pytest.fixture(scope="session")
def chromium_browser() -> Iterator[Browser]:
    """One headless chromium for the session; starting it costs about a second."""
    require_part(CHROMIUM.exists(), "chromium", "apt-get install chromium fonts-dejavu-core")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def browser_page(chromium_browser: Browser) -> Iterator[Page]:
    """A fresh page (its own context: no cookies or cache shared between tests) at VIEWPORT."""
    context = chromium_browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    yield page
    context.close()
