"""Signed deny-list files published as static files, for any HTTP server or CDN (or the hub itself).

A bundle for a gate of protocol 3 names each file a gate needs (snapshot, deltas, a compacted delta)
by URL, size and SHA-256 instead of carrying its bytes in base64 JSON: a 10 M-entry snapshot is an
80 MB file the gate streams to disk (resuming with ``Range`` after a cut), where inline it was 102
MB of JSON that the gate's parser held several times over. Files are named by their SHA-256
(``<hex>.pgdl``), written once, atomically (a server never serves half a file), whichever worker
gets there first; they are immutable, so a cache or CDN may keep them forever. A file no bundle
named for ``KEEP_S`` goes (each bundle that names one touches it).

The directory is ``serve --lists-dir`` (``$PASSGATE_HUB_LISTS_DIR``; by default ``DATABASE.lists``
beside an SQLite database), served by the hub at ``/lists/`` unless ``--lists-url``
(``$PASSGATE_HUB_LISTS_URL``) names where another server publishes it. A PostgreSQL hub without a
directory sends the bytes in the bundle, as for gates of protocol 2.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
import time
from pathlib import Path

from sqlalchemy import Engine

from passgate import wire
from passgate.denylist import atomic_write

PATH = "/lists"  # where the hub serves the directory itself
NAME = re.compile(r"[0-9a-f]{64}\.pgdl")
KEEP_S = 10 * 86400.0  # longer than a gate may be away and still catch up by delta
PRUNE_EVERY_S = 3600.0
ENV_DIR, ENV_URL = "PASSGATE_HUB_LISTS_DIR", "PASSGATE_HUB_LISTS_URL"
log = logging.getLogger(__name__)


class Published:
    """The published directory of one hub process."""

    def __init__(self, root: Path, base_url: str | None = None) -> None:
        self.root = root
        self.base_url = (base_url or PATH).rstrip("/")
        self._pruned_at = 0.0
        self._lock = threading.Lock()

    def file(self, data: bytes) -> wire.ListFile:
        """Publish ``data`` (if it is not there yet) and name it for a bundle."""
        digest = hashlib.sha256(data).hexdigest()
        path = self.root / f"{digest}.pgdl"
        try:
            os.utime(path)  # named again: kept
        except FileNotFoundError:
            self.root.mkdir(parents=True, exist_ok=True)
            atomic_write(path, [data])
        self._prune()
        return wire.ListFile(url=f"{self.base_url}/{digest}.pgdl", size=len(data), sha256=digest)

    def path_of(self, name: str) -> Path | None:
        """The file a request names, if it is one of ours (a name that could leave the directory
        is never one)."""
        if NAME.fullmatch(name) is None:
            return None
        path = self.root / name
        return path if path.is_file() else None

    def _prune(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        with self._lock:
            if now - self._pruned_at < PRUNE_EVERY_S:
                return
            self._pruned_at = now
        for path in self.root.glob("*.pgdl"):
            try:
                if NAME.fullmatch(path.name) and now - path.stat().st_mtime > KEEP_S:
                    path.unlink()
            except FileNotFoundError:  # another worker pruned it first
                continue


def configured(engine: Engine, lists_dir: str | None = None,
               lists_url: str | None = None) -> Published | None:
    """The publisher the options or the environment ask for; beside an SQLite database by default;
    None: no directory (a PostgreSQL hub without one sends files inline)."""
    lists_dir = lists_dir or os.environ.get(ENV_DIR) or None
    lists_url = lists_url or os.environ.get(ENV_URL) or None
    if lists_dir is None:
        database = engine.url.database
        if engine.url.get_backend_name() != "sqlite" or not database or database == ":memory:":
            return None
        lists_dir = f"{database}.lists"
    return Published(Path(lists_dir), lists_url)
