"""Damaged and hostile files never stop the gate and never un-revoke a pass: local deny lists with a
flipped bit or cut short are rebuilt from the signed files they came from; giant sparse files in the
drop folder are refused by their size and header, without being read."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from passgate.denylist import sign_delta, sign_snapshot

from .simchild import LIST_KEY, SimChild, check_invariants, single_use, write_config

LISTS = '[denylist]\ndir = "lists"\nscope = "acme"\nstale_policy = "guard"\n'
REVOKED, LATER = b"R" * 16, b"S" * 16


def drop(root: Path, name: str, data: bytes) -> None:
    """A file copied into incoming/ a while ago (the drop folder waits for files still arriving)."""
    path = root / "lists" / "incoming" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    old = time.time() - 60
    os.utime(path, (old, old))


def lists_applied(tmp_path: Path) -> Path:
    """A gate that applied a signed snapshot and a delta of its revoked list, then stopped."""
    config = write_config(tmp_path, LISTS)
    drop(tmp_path, "revoked-v1.pgdl",
         sign_snapshot(LIST_KEY, [REVOKED], kind="revoked", scope="acme", version=1))
    drop(tmp_path, "revoked-1-2.pgdl",
         sign_delta(LIST_KEY, kind="revoked", scope="acme", base=1, adds=[LATER]))
    with SimChild(config) as gate:
        assert gate.status()["lists"]["revoked"]["version"] == 2
        assert gate.scan(single_use(REVOKED)).decision["reason"] == "revoked"
        assert gate.close() == 0
    return config


@pytest.mark.parametrize("damage", ["flipped bit", "cut to 3 bytes", "deleted"])
def test_a_damaged_local_list_is_rebuilt_and_still_refuses(tmp_path: Path, damage: str) -> None:
    config = lists_applied(tmp_path)
    local = tmp_path / "lists" / "revoked.pgdl"
    data = bytearray(local.read_bytes())
    if damage == "flipped bit":
        data[len(data) // 2] ^= 0x10
        local.write_bytes(bytes(data))
    elif damage == "cut to 3 bytes":
        local.write_bytes(bytes(data[:3]))
    else:
        local.unlink()
    with SimChild(config) as gate:  # starts, whatever the file holds
        status = gate.status()["lists"]["revoked"]
        assert status["version"] == 2 and status["damaged"] is None
        for pass_id in (REVOKED, LATER):
            assert gate.scan(single_use(pass_id)).decision["reason"] == "revoked"
        assert gate.close() == 0
    check_invariants(gate.scans, tmp_path / "journal.db")
    if damage != "deleted":
        assert list((tmp_path / "lists" / "damaged").iterdir())  # kept for evidence


def test_a_list_that_cannot_be_rebuilt_is_stale_never_empty_and_fresh(tmp_path: Path) -> None:
    config = lists_applied(tmp_path)
    for path in (tmp_path / "lists" / "applied").iterdir():
        path.write_bytes(path.read_bytes()[:100])  # the signed copies are damaged too
    local = tmp_path / "lists" / "revoked.pgdl"
    local.write_bytes(local.read_bytes()[:-1])
    with SimChild(config) as gate:
        status = gate.status()
        assert status["lists"]["revoked"]["version"] == 0 and status["lists"]["revoked"]["damaged"]
        assert status["lists_stale"]
        gate.scan(single_use(REVOKED))
        assert gate.close() == 0
    # stale, and the default policy (guard) flags the admit for the guard to check by hand
    assert gate.decisions[-1]["guard_check"] is True


def test_giant_sparse_files_in_the_drop_folder(tmp_path: Path) -> None:
    config = write_config(tmp_path, LISTS)
    incoming = tmp_path / "lists" / "incoming"
    incoming.mkdir(parents=True)
    for name, size in (("gib.pgdl", 2**30), ("tib.pgdl", 2**40)):
        with open(incoming / name, "wb") as f:
            f.truncate(size)
        old = time.time() - 60
        os.utime(incoming / name, (old, old))
    # a valid signed header whose count claims far more than the file holds
    claims = sign_snapshot(LIST_KEY, [REVOKED], kind="revoked", scope="acme", version=1)
    drop(tmp_path, "claims.pgdl", claims[:-8])
    with SimChild(config) as gate:  # reading a TiB would outlast its wait for READY by hours
        rejected = tmp_path / "lists" / "rejected"
        assert sorted(p.name for p in rejected.glob("*.pgdl")) == ["claims.pgdl", "gib.pgdl", "tib.pgdl"]
        assert "more than the limit" in (rejected / "tib.pgdl.why").read_text()
        assert gate.peak_rss_mb() < 300  # nothing was read into memory
        assert gate.scan(single_use()).decision["decision"] == "admit"
        assert gate.close() == 0
