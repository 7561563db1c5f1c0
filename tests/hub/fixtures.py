"""Fixtures for tests that need a hub (imported by tests/hub/conftest.py and the sync tests).

``db_url`` is parametrized over SQLite and PostgreSQL; the PostgreSQL cluster is started once per
run, and every test gets a database of its own, empty (the migrations' own tests migrate it).
``hub`` serves that database with the newest schema in place: a copy of one database that
``db.migrate`` brought to the newest revision once per run (a file copy for SQLite, ``CREATE
DATABASE ... TEMPLATE`` for PostgreSQL), instead of every migration run again for every test.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from passgate_hub import db
from tests.parts import require_part

from .pgcluster import shared_cluster
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


_migrated: dict[str, str] = {}  # "sqlite" or "postgresql": the URL of the migrated template


def _migrate(url: str) -> None:
    engine = db.make_engine(url)
    try:
        db.migrate(engine)
    finally:
        engine.dispose()  # no connection left: a template must have none when it is copied


def template_url(kind: str, name: str) -> str:
    """A new database named ``name`` to make a template of: on SQLite a file in a directory of its
    own (removed at exit), on PostgreSQL one on the shared cluster."""
    if kind == "sqlite":
        root = Path(tempfile.mkdtemp(prefix=f"passgate-{name}-"))
        atexit.register(shutil.rmtree, root, ignore_errors=True)
        return f"sqlite:///{root / 'hub.db'}"
    cluster = shared_cluster()
    assert cluster is not None
    return cluster.create_database(name)


def copy_into(url: str, template: str) -> str:
    """Replace ``url``'s new, empty database (from ``db_url``) with a copy of ``template`` (same
    backend; made by ``template_url``, nothing connected to it): a file copy on SQLite, with the
    sealing key file beside it if the hub made one, ``CREATE DATABASE ... TEMPLATE`` on
    PostgreSQL. Returns ``url``."""
    if url.startswith("sqlite:///"):
        path, source = Path(url.removeprefix("sqlite:///")), Path(template.removeprefix("sqlite:///"))
        assert not path.exists(), f"{path} is not a new database"
        if source.with_name(source.name + "-wal").exists():  # left by a process that did not close
            with contextlib.closing(sqlite3.connect(source)) as conn:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # all in the file
        shutil.copyfile(source, path)
        if source.with_name(source.name + ".kek").exists():
            shutil.copy2(source.with_name(source.name + ".kek"), path.with_name(path.name + ".kek"))
        return url
    cluster = shared_cluster()
    assert cluster is not None and url.startswith(f"postgresql+psycopg://postgres@127.0.0.1:{cluster.port}/")
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(cluster.dsn(name)) as conn:
        tables = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'").fetchone()
    assert tables == (0,), f"{name} is not a new database"
    with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}"')
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template.rsplit("/", 1)[1]}"')
    return url


def migrated(url: str) -> str:
    """``url``'s database, new and empty (from ``db_url``), replaced by a copy of a database
    ``db.migrate`` brought to the newest revision earlier in this run; returns ``url``."""
    kind = "sqlite" if url.startswith("sqlite:///") else "postgresql"
    if kind not in _migrated:
        template = template_url(kind, TEMPLATE)
        _migrate(template)
        _migrated[kind] = template
    return copy_into(url, _migrated[kind])
