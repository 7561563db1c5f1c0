"""Firmware test fixtures: guard displays on free ports (the browser is the root conftest's)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from passgated.display import GateMetrics, GuardDisplay
from tests.hub.fixtures import db_url, hub  # noqa: F401  (a real hub, on SQLite and PostgreSQL)


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
