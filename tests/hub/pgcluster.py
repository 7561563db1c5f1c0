"""A throwaway PostgreSQL cluster on a free loopback port, for the hub's tests and benchmark.

Debian's ``postgresql`` package puts ``initdb`` and ``pg_ctl`` in /usr/lib/postgresql/N/bin. They
refuse to run as root, so as root they run as the ``postgres`` user, in a temp dir it owns.
"""

from __future__ import annotations

import atexit
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import psycopg

from passgate_hub import sealing


def bindir() -> Path | None:
    """The newest installed server's bin directory, or None when PostgreSQL is not installed."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parent.parent.name))
    return Path(found[-1]).parent if found else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgCluster:
    """``start()``, ``create_database(name)`` → SQLAlchemy URL, ``stop()`` (removes everything).

    ``durable=False`` turns fsync off: fine for tests, whose data dies with the cluster.
    """

    def __init__(self, *, durable: bool = False) -> None:
        self.bin = bindir()
        if self.bin is None:
            raise FileNotFoundError("PostgreSQL server binaries not found (apt-get install postgresql)")
        self.durable = durable
        # hubs on a throwaway cluster seal their keys with a throwaway sealing key (a PostgreSQL
        # hub has no default one); child processes inherit it
        os.environ.setdefault(sealing.ENV_KEY, sealing.new_kek_text().strip())
        self.root = Path(tempfile.mkdtemp(prefix="passgate-pg-"))
        self.port = free_port()
        self._as: list[str] = []
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(self.root, user.pw_uid, user.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]

    def _run(self, *args: str) -> None:
        subprocess.run([*self._as, *args], check=True, capture_output=True, timeout=120)

    def start(self) -> PgCluster:
        data = self.root / "data"
        self._run(str(self.bin / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                  "-E", "UTF8", "--no-sync")
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c max_connections=200"
        if not self.durable:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        self._run(str(self.bin / "pg_ctl"), "-D", str(data), "-o", options, "-l",
                  str(self.root / "server.log"), "-w", "-t", "60", "start")
        return self

    def dsn(self, dbname: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={dbname}"

    def create_database(self, name: str) -> str:
        """A new empty database; returns its SQLAlchemy URL (psycopg 3 driver)."""
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"

    def restart(self) -> None:
        """Restart the server (every connection to it is cut), keeping its data."""
        self._pg_ctl("restart", "-m", "fast", "-w", "-t", "60")

    def halt(self) -> None:
        """Stop the server, keeping its data (``restart`` brings it back)."""
        self._pg_ctl("stop", "-m", "fast", "-w", "-t", "60")

    def _pg_ctl(self, *args: str) -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.root / "data"), "-l",
                  str(self.root / "server.log"), *args)

    def stop(self) -> None:
        try:  # (a server a test left halted has nothing to stop)
            subprocess.run([*self._as, str(self.bin / "pg_ctl"), "-D", str(self.root / "data"), "-m",
                            "immediate", "stop"], check=False, capture_output=True, timeout=120)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


_shared: PgCluster | None = None


def shared_cluster() -> PgCluster | None:
    """One cluster per test run, shared by the hub's and the sync client's tests (stopped at exit);
    None when PostgreSQL is not installed."""
    global _shared
    if _shared is None and bindir() is not None:
        _shared = PgCluster().start()
        atexit.register(_shared.stop)
    return _shared
