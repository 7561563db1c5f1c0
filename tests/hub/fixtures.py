"""Fixtures for tests that need a hub (imported by tests/hub/conftest.py and the sync tests).

``db_url`` is parametrized over SQLite and PostgreSQL; the PostgreSQL cluster is started once per
run, and every test gets a database of its own, empty (the migrations' own tests migrate it).
``hub`` serves that database with the newest schema in place: a copy of one database that
``db.migrate`` brought to the newest revision once per run (a file copy for SQLite, ``CREATE
DATABASE ... TEMPLATE`` for PostgreSQL), instead of every migration run again for every test.
"""

from __future__ import annotations

import atexit
import itertools
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from passgate_hub import db
from tests.parts import require_part

from .pgcluster import PgCluster, shared_cluster
from .server import HubServer

_names = itertools.count()
TEMPLATE = "hub_template"  # the PostgreSQL database every hub test's database is copied from


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
    server = HubServer(migrated(db_url)).start()
    try:
        yield server
    finally:
        server.close()


_sqlite_template: Path | None = None
_pg_template: PgCluster | None = None


def _migrate(url: str) -> None:
    engine = db.make_engine(url)
    try:
        db.migrate(engine)
    finally:
        engine.dispose()  # no connection left: a template must have none when it is copied


def migrated(url: str) -> str:
    """``url``'s database, new and empty (from ``db_url``), replaced by a copy of a database
    ``db.migrate`` brought to the newest revision earlier in this run; returns ``url``."""
    global _sqlite_template, _pg_template
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        assert not path.exists(), f"{path} is not a new database"
        if _sqlite_template is None:
            root = Path(tempfile.mkdtemp(prefix="passgate-hub-template-"))
            atexit.register(shutil.rmtree, root, ignore_errors=True)
            _migrate(f"sqlite:///{root / 'hub.db'}")
            assert not (root / "hub.db-wal").exists()  # all in the file (WAL checkpointed at close)
            _sqlite_template = root / "hub.db"
        shutil.copyfile(_sqlite_template, path)
        return url
    cluster = shared_cluster()
    assert cluster is not None and url.startswith(f"postgresql+psycopg://postgres@127.0.0.1:{cluster.port}/")
    if _pg_template is not cluster:
        _migrate(cluster.create_database(TEMPLATE))
        _pg_template = cluster
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(cluster.dsn(name)) as conn:
        tables = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'").fetchone()
    assert tables == (0,), f"{name} is not a new database"
    with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}"')
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE}"')
    return url
