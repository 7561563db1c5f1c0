"""Firmware test fixtures: a real browser for the guard page (Debian's chromium driven by Playwright).

``browser_page`` gives each test a fresh page in one chromium shared by the session. Playwright's own
browser downloads are never used (the gate and CI are offline): the system's chromium is required,
and missing it skips locally but fails under ``CI=true`` (``.ci/run`` installs it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from passgated.display import GateMetrics, GuardDisplay
from tests.hub.fixtures import db_url, hub  # noqa: F401  (a real hub, on SQLite and PostgreSQL)
from tests.parts import require_part

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

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


@pytest.fixture
def metrics() -> GateMetrics:
    return GateMetrics()


@pytest.fixture
def make_display(metrics: GateMetrics) -> Iterator[Callable[..., GuardDisplay]]:
    """Started displays on a free loopback port (``port=0`` unless given), all closed at the end."""
    displays: list[GuardDisplay] = []

    def make(**kwargs: object) -> GuardDisplay:
        kwargs.setdefault("status", lambda: {"state": "IDLE", "gate_id": "G-07"})
        kwargs.setdefault("metrics", metrics)
        kwargs.setdefault("port", 0)
        display = GuardDisplay(**kwargs)  # type: ignore[arg-type]
        displays.append(display)
        display.start()
        return display

    yield make
    for display in displays:
        display.close()
