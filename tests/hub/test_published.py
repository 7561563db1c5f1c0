"""The hub's published list files: named by digest, written once, kept while bundles name them and
gone 10 days after; where the directory is by default; names that could leave it are refused."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine

from passgate_hub import published


def test_files_are_written_once_by_digest_and_go_when_no_bundle_names_them(tmp_path: Path) -> None:
    pub = published.Published(tmp_path / "lists", "https://cdn.example/pg/")
    named = pub.file(b"signed list A")
    digest = hashlib.sha256(b"signed list A").hexdigest()
    assert (named.url, named.size, named.sha256) == (f"https://cdn.example/pg/{digest}.pgdl", 13, digest)
    path = tmp_path / "lists" / f"{digest}.pgdl"
    assert path.read_bytes() == b"signed list A" and pub.file(b"signed list A") == named
    old = pub.file(b"signed list B")
    stale = tmp_path / "lists" / f"{old.sha256}.pgdl"
    long_ago = time.time() - published.KEEP_S - 60
    os.utime(stale, (long_ago, long_ago))
    os.utime(path, (long_ago, long_ago))
    pub.file(b"signed list A")  # named again: its time is now; pruned at most once an hour
    assert stale.exists()
    pub._prune(time.time() + published.PRUNE_EVERY_S + 1)
    assert path.exists() and not stale.exists()
    assert pub.path_of(path.name) == path
    for bad in ("../hub.db", f"{digest}.pgdl/..", digest, f"{digest.upper()}.pgdl", "x.pgdl"):
        assert pub.path_of(bad) is None


def test_the_directory_by_default_and_from_the_environment(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(published.ENV_DIR, raising=False)
    monkeypatch.delenv(published.ENV_URL, raising=False)
    sqlite = create_engine(f"sqlite:///{tmp_path}/hub.db")
    default = published.configured(sqlite)
    assert default is not None and default.root == tmp_path / "hub.db.lists" and default.base_url == "/lists"
    assert published.configured(create_engine("sqlite://")) is None  # in memory: nowhere to publish
    postgres = create_engine("postgresql+psycopg://hub@127.0.0.1/hub")
    assert published.configured(postgres) is None  # inline, until a directory is given
    monkeypatch.setenv(published.ENV_DIR, str(tmp_path / "pub"))
    monkeypatch.setenv(published.ENV_URL, "https://cdn.example/x")
    chosen = published.configured(postgres)
    assert chosen is not None and (chosen.root, chosen.base_url) == (tmp_path / "pub", "https://cdn.example/x")
    given = published.configured(postgres, str(tmp_path / "opt"), None)
    assert given is not None and given.root == tmp_path / "opt"
