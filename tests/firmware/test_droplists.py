"""Deny-list updates by file for gates without a hub: verified, applied in version order, waiting
for missing predecessors, and refused files set aside with their reason."""

from __future__ import annotations

import mmap
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from gpiozero.pins.mock import MockFactory

import passgated.droplists as droplists
from passgate import TrustStore, freshness, generate_private_key, issue_pass
from passgate.denylist import DenyList, LiveDenyList, sign_delta, sign_snapshot
from passgate.keys import write_keypair
from passgated.config import load_config
from passgated.denylists import DenyLists
from passgated.droplists import ListDropFolder
from passgated.gate import Gate
from passgated.layout import ListsLayout
from passgated.simulate import feed
from tests.helpers import LOADED_WRITE_TIMEOUT_S, wait_for

KEY = generate_private_key()  # signs passes
LIST_KEY = generate_private_key()  # signs the "acme" lists
ID = [bytes([i]) * 16 for i in range(6)]


@pytest.fixture(autouse=True)
def no_settle(monkeypatch) -> None:
    monkeypatch.setattr(droplists, "SETTLE_S", 0.0)


def trust() -> TrustStore:
    store = TrustStore()
    store.add(KEY.public_key())
    store.add(LIST_KEY.public_key(), purpose="denylist", scope="acme")
    return store


def folder(tmp_path: Path, **options) -> ListDropFolder:
    layout = ListsLayout(tmp_path)
    lists = DenyLists(layout, ("revoked", "blocked"), scope="acme", trust=trust, max_age_s=3600, **options)
    return ListDropFolder(layout, lists, trust)


def drop(f: ListDropFolder, name: str, data: bytes) -> None:
    (f.layout.incoming / name).write_bytes(data)


def test_snapshot_then_deltas_in_version_order(tmp_path: Path) -> None:
    f = folder(tmp_path)
    # names sort against the version order, so only the version ordering can apply them in one go
    drop(f, "a-delta-2-3.pgdl", sign_delta(LIST_KEY, kind="revoked", scope="acme", base=2, adds=[ID[2]]))
    drop(f, "b-delta-1-2.pgdl", sign_delta(LIST_KEY, kind="revoked", scope="acme", base=1, adds=[ID[1]]))
    drop(f, "c-snapshot.pgdl", sign_snapshot(LIST_KEY, [ID[0]], kind="revoked", scope="acme", version=1))
    assert f.scan_once() == {"a-delta-2-3.pgdl": "applied", "b-delta-1-2.pgdl": "applied",
                             "c-snapshot.pgdl": "applied"}
    current = f.lists.live["revoked"].current
    assert current.version == 3 and all(ID[i] in current for i in range(3)) and ID[3] not in current
    # kept under names that sort by version: what a damaged local copy is rebuilt from
    assert sorted(p.name for p in f.layout.applied.iterdir()) == [
        "revoked-0000000001.snapshot.pgdl", "revoked-0000000002.delta.pgdl", "revoked-0000000003.delta.pgdl"]
    assert not any(f.layout.incoming.iterdir())
    assert LiveDenyList(tmp_path / "revoked.pgdl", kind="revoked", scope="acme").current.version == 3


def mapped(dl: DenyList) -> bool:
    """Whether a list's entries are mapped from its file rather than a copy in memory."""
    base: object = dl.keys
    while isinstance(base, np.ndarray):
        base = base.base
    return isinstance(base, memoryview) and isinstance(base.obj, mmap.mmap)


def test_the_gate_maps_its_lists_whichever_way_updates_arrive(tmp_path: Path) -> None:
    """From the drop folder (files), from bytes (the hub's bundle), and at the next start: the
    list in force is always mapped from the gate's own file, never a second copy in memory."""
    f = folder(tmp_path)
    drop(f, "v1.pgdl", sign_snapshot(LIST_KEY, ID[:2], kind="revoked", scope="acme", version=1))
    drop(f, "d2.pgdl", sign_delta(LIST_KEY, kind="revoked", scope="acme", base=1, adds=[ID[2]]))
    assert f.scan_once() == {"v1.pgdl": "applied", "d2.pgdl": "applied"}
    assert mapped(f.lists.live["revoked"].current)
    for update in (sign_delta(LIST_KEY, kind="revoked", scope="acme", base=2, adds=[ID[3]]),
                   sign_snapshot(LIST_KEY, ID[:5], kind="revoked", scope="acme", version=4)):
        new = f.lists.apply_signed(update, trust())
        assert new is f.lists.live["revoked"].current and mapped(new)
    assert sorted(p.name for p in f.layout.applied.iterdir()) == ["revoked-0000000004.snapshot.pgdl"]
    restarted = DenyLists(f.layout, ("revoked",), scope="acme", trust=trust, max_age_s=3600)
    current = restarted.live["revoked"].current
    assert mapped(current) and current.version == 4 and all(ID[i] in current for i in range(5))


def test_a_delta_ahead_waits_for_its_predecessor(tmp_path: Path) -> None:
    f = folder(tmp_path)
    drop(f, "v1.pgdl", sign_snapshot(LIST_KEY, [ID[0]], kind="blocked", scope="acme", version=1))
    drop(f, "a3.pgdl", sign_delta(LIST_KEY, kind="blocked", scope="acme", base=2, removes=[ID[0]]))
    assert f.scan_once() == {"v1.pgdl": "applied", "a3.pgdl": "waiting"}
    assert (f.layout.incoming / "a3.pgdl").exists()
    drop(f, "b2.pgdl", sign_delta(LIST_KEY, kind="blocked", scope="acme", base=1, adds=[ID[4]]))
    assert f.scan_once() == {"b2.pgdl": "applied", "a3.pgdl": "applied"}
    current = f.lists.live["blocked"].current
    assert current.version == 3 and ID[0] not in current and ID[4] in current


def test_bad_files_are_set_aside_with_their_reason(tmp_path: Path) -> None:
    f = folder(tmp_path)
    good = sign_snapshot(LIST_KEY, [ID[0]], kind="revoked", scope="acme", version=2)
    drop(f, "ok.pgdl", good)
    f.scan_once()
    tampered = bytearray(sign_snapshot(LIST_KEY, [ID[1]], kind="revoked", scope="acme", version=3))
    tampered[-1] ^= 1
    drop(f, "tampered.pgdl", bytes(tampered))
    drop(f, "stranger.pgdl", sign_snapshot(generate_private_key(), [ID[2]], kind="revoked", scope="acme",
                                           version=4))
    drop(f, "old.pgdl", sign_snapshot(LIST_KEY, [ID[3]], kind="revoked", scope="acme", version=1))
    drop(f, "other-scope.pgdl", sign_snapshot(LIST_KEY, [ID[3]], kind="revoked", scope="zoo", version=9))
    drop(f, "noise.pgdl", b"not a list at all")
    outcomes = f.scan_once()
    assert set(outcomes.values()) == {"rejected"} and len(outcomes) == 5
    for name in outcomes:
        assert (f.layout.rejected / name).exists() and (f.layout.rejected / f"{name}.why").read_text().strip()
    assert f.lists.live["revoked"].current.version == 2 and ID[1] not in f.lists.live["revoked"].current


def test_a_file_still_arriving_is_left_alone(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(droplists, "SETTLE_S", 60.0)
    f = folder(tmp_path)
    drop(f, "v1.pgdl", sign_snapshot(LIST_KEY, [ID[0]], kind="revoked", scope="acme", version=1))
    drop(f, "v2.pgdl.partial", b"half a fi")
    assert f.scan_once() == {}
    old = time.time() - 120
    os.utime(f.layout.incoming / "v1.pgdl", (old, old))
    assert f.scan_once() == {"v1.pgdl": "applied"}


def test_cli_add_reaches_a_running_gate(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(droplists, "SCAN_EVERY_S", 0.05)  # the worker's interval comes from here
    write_keypair(KEY, tmp_path / "trust", "issuer")
    write_keypair(LIST_KEY, tmp_path / "trust", "lists")
    (tmp_path / "trust" / "trust.toml").write_text(
        '[[key]]\nfile = "lists.pub.pem"\npurpose = "denylist"\nscope = "acme"\n')
    config_file = tmp_path / "gate.toml"
    config_file.write_text('[gate]\nvenue = "acme"\n[trust]\ndir = "trust"\n[denylist]\ndir = "lists"\n'
                           '[journal]\npath = "journal.db"\n[display]\nlisten = false\n')
    text = issue_pass(KEY, valid_from=0, valid_until=2**31, pass_id=ID[5])
    decisions: list[dict] = []
    config = load_config(config_file, journal_write_timeout_s=LOADED_WRITE_TIMEOUT_S)
    gate = Gate(config, pin_factory=MockFactory(), sources=[], display=False, on_decision=decisions.append)
    gate.io.fire_loop.pin.drive_low()
    gate.start()
    try:
        snapshot = tmp_path / "revoked-v1.pgdl"
        snapshot.write_bytes(sign_snapshot(LIST_KEY, [ID[5]], kind="revoked", scope="acme", version=1))
        added = subprocess.run([sys.executable, "-m", "passgated.cli", "denylist", "add", str(snapshot),
                                "--config", str(config_file)], capture_output=True, text=True, timeout=60)
        assert added.returncode == 0, added.stderr
        assert "revoked list 'acme', snapshot v1, 1 entries" in added.stdout
        # (no "revoked" entry at all until the drop folder's worker has taken the file)
        assert wait_for(lambda: gate.status()["lists"].get("revoked", {}).get("version") == 1, timeout=10)
        feed(gate, [text])
        assert decisions[-1]["reason"] == "revoked"
        bad = tmp_path / "bad.pgdl"
        bad.write_bytes(b"PGDL nonsense")
        refused = subprocess.run([sys.executable, "-m", "passgated.cli", "denylist", "add", str(bad),
                                  "--config", str(config_file)], capture_output=True, text=True, timeout=60)
        assert refused.returncode == 2 and "Traceback" not in refused.stderr
        assert not (tmp_path / "lists" / "incoming" / "bad.pgdl").exists()
    finally:
        gate.stop()


def test_a_dropped_freshness_statement_keeps_the_list_fresh_without_a_new_version(tmp_path: Path) -> None:
    """What ``passgate pretix pull`` writes with every pull: the list's file once, then ``KIND.fresh``."""
    f = folder(tmp_path)
    signed_at = int(time.time()) - 7200  # two hours old: stale for this folder's one-hour limit
    drop(f, "revoked-1.snapshot.pgdl", sign_snapshot(LIST_KEY, [ID[0]], kind="revoked", scope="acme",
                                                     version=1, issued_at=signed_at))
    now = time.time()
    drop(f, "revoked.fresh", freshness.sign(LIST_KEY, kind="revoked", scope="acme", version=1,
                                                          as_of=int(now)))
    assert f.scan_once() == {"revoked-1.snapshot.pgdl": "applied", "revoked.fresh": "applied"}
    assert f.lists.age("revoked", now) < 5
    assert (tmp_path / "revoked.fresh").is_file()  # kept across a restart
    # one for a version the gate does not hold yet waits for its update; an older one is dropped
    drop(f, "revoked.fresh", freshness.sign(LIST_KEY, kind="revoked", scope="acme", version=2,
                                            as_of=int(now)))
    assert f.scan_once() == {"revoked.fresh": "waiting"}
    delta = sign_delta(LIST_KEY, kind="revoked", scope="acme", base=1, adds=[ID[1]])
    drop(f, "revoked-1-2.delta.pgdl", delta)
    assert f.scan_once() == {"revoked-1-2.delta.pgdl": "applied", "revoked.fresh": "applied"}
    drop(f, "revoked.fresh", freshness.sign(LIST_KEY, kind="revoked", scope="acme", version=1,
                                                          as_of=int(now)))
    assert f.scan_once() == {"revoked.fresh": "ignored"}
    assert not any(f.layout.incoming.iterdir())


def test_a_freshness_statement_from_an_untrusted_key_is_set_aside(tmp_path: Path) -> None:
    f = folder(tmp_path)
    drop(f, "revoked-1.snapshot.pgdl", sign_snapshot(LIST_KEY, [ID[0]], kind="revoked", scope="acme",
                                                     version=1))
    statement = freshness.sign(KEY, kind="revoked", scope="acme", version=1, as_of=int(time.time()))
    drop(f, "revoked.fresh", statement)
    drop(f, "blocked.fresh", b"\x00" * 5000)
    outcomes = f.scan_once()
    assert outcomes["revoked.fresh"] == outcomes["blocked.fresh"] == "rejected"
    assert "not the deny lists" in (f.layout.rejected / "revoked.fresh.why").read_text()
    assert "larger than a freshness statement" in (f.layout.rejected / "blocked.fresh.why").read_text()


def test_a_snapshot_of_a_new_epoch_clears_the_files_before_it(tmp_path: Path) -> None:
    f = folder(tmp_path)
    drop(f, "one.pgdl", sign_snapshot(LIST_KEY, [ID[0]], kind="revoked", scope="acme", version=1))
    assert f.scan_once() == {"one.pgdl": "applied"}
    epoch = (5 << 32) | 1  # a restored hub's, or a pull's --full
    drop(f, "two.pgdl", sign_snapshot(LIST_KEY, [ID[1]], kind="revoked", scope="acme", version=epoch))
    assert f.scan_once() == {"two.pgdl": "applied"}
    drop(f, "three.pgdl", sign_snapshot(LIST_KEY, [ID[2]], kind="revoked", scope="acme", version=epoch + 1))
    assert f.scan_once() == {"three.pgdl": "applied"}
    assert [p.name for p in f.layout.applied.iterdir()] == [f"revoked-{epoch + 1:010d}.snapshot.pgdl"]
