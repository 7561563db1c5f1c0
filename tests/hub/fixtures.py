"""Fixtures for tests that need a hub (imported by tests/hub/conftest.py and the sync tests).

``db_url`` is parametrized over SQLite and PostgreSQL; the PostgreSQL cluster is started once per
run, and every test gets a database of its own.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.parts import require_part

from .pgcluster import shared_cluster
from .server import HubServer

_names = itertools.count()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'hub.db'}"
    cluster = shared_cluster()
    require_part(cluster is not None, "PostgreSQL", "apt-get install postgresql")
    assert cluster is not None
    return cluster.create_database(f"hub_{next(_names)}")


@pytest.fixture
def hub(db_url: str) -> Iterator[HubServer]:
    server = HubServer(db_url).start()
    try:
        yield server
    finally:
        server.close()
