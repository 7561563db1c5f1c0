"""Engines and migrations: SQLite (embedded default, no set-up) or PostgreSQL (production).

On SQLite every transaction starts with ``BEGIN IMMEDIATE``: the hub's requests read then write,
and a deferred transaction that upgrades to a writer fails at once with "database is locked"
when another writer got there first; an immediate one waits its turn (``busy_timeout``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import ColumnElement, Engine, any_, bindparam, create_engine, event
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, DisconnectionError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

DEFAULT_URL = "sqlite:///passgate-hub.db"
ENV_URL = "PASSGATE_HUB_DATABASE"
IDLE_PING_S = 10.0  # a pooled connection idle this long is pinged before use
MIGRATIONS = Path(__file__).with_name("migrations")


def database_url(url: str | None = None) -> str:
    """The URL given, else ``$PASSGATE_HUB_DATABASE``, else a SQLite file in the working directory."""
    return url or os.environ.get(ENV_URL) or DEFAULT_URL


def describe_error(exc: SQLAlchemyError, url: str | None = None) -> str:
    """Why the database could not be used, in one line (for the CLI and the log): the driver's
    own first line, never a traceback or the URL's password."""
    url = database_url(url)
    try:
        shown = make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return f"{url!r} is not a database URL (sqlite:///FILE or postgresql+psycopg://USER@HOST/DB)"
    if isinstance(exc, NoSuchModuleError):
        return (f"no database driver for {shown} (the hub takes sqlite:///FILE or "
                "postgresql+psycopg://USER@HOST/DB)")
    cause = str(exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc)
    first = next((line.strip() for line in cause.splitlines() if line.strip()), type(exc).__name__)
    if "unable to open database file" in first:
        first += " (does its directory exist, and may this user write there?)"
    return f"database {shown}: {first}"


def make_engine(url: str | None = None, *, pool_size: int = 20) -> Engine:
    """An engine for ``url`` with the per-dialect settings the hub relies on. The pool holds as
    many connections as the server's worker threads (40) can use at once."""
    url = database_url(url)
    if make_url(url).get_backend_name() != "sqlite":
        engine = create_engine(url, pool_size=pool_size, max_overflow=pool_size)
        _ping_when_idle(engine)
        return engine
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself, below
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn) -> None:  # type: ignore[no-untyped-def]
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _ping_when_idle(engine: Engine) -> None:
    """Ping a pooled connection before use only when it has lain idle for ``IDLE_PING_S``: a
    server restarted while the hub was quiet is found before a request uses the connection. A
    busy hub's connections are never idle that long, and a ping before every request is a round
    trip more for each. A connection cut while in use fails its request (503, see ``app``) and
    makes the pool replace every connection older than the failure."""

    @event.listens_for(engine, "checkin")
    def _checkin(_dbapi_connection, record) -> None:  # type: ignore[no-untyped-def]
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checkout(dbapi_connection, record, _proxy) -> None:  # type: ignore[no-untyped-def]
        idle_since = record.info.get("idle_since")  # None: a new connection, pinged once
        if idle_since is not None and time.monotonic() - idle_since < IDLE_PING_S:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as exc:
            raise DisconnectionError(str(exc)) from exc  # the pool connects afresh


def migrate(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to the newest revision (run at ``serve`` start and in tests). May raise
    ``sealing.SealingError``: plain-text keys to seal and no sealing key (see migration 0003)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        before = MigrationContext.configure(connection).get_current_revision()
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
        after = MigrationContext.configure(connection).get_current_revision()
    if engine.dialect.name == "sqlite" and after != before:
        # what a migration rewrote (plain keys it sealed) leaves the write-ahead log as well
        raw = engine.raw_connection()
        try:
            raw.cursor().execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            raw.close()


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def among(column: Any, values: Sequence[Any], dialect: str) -> ColumnElement[bool]:
    """``column IN values``; on PostgreSQL as one array parameter: one statement text for any
    number of values (rendering and parsing a placeholder a value cost more than the query)."""
    if dialect == "postgresql":
        return column == any_(bindparam(None, list(values), type_=postgresql.ARRAY(column.type)))
    return column.in_(values)  # type: ignore[no-any-return]

