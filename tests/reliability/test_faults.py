"""Fault injection through the real gate (``passgated simulate`` in a child process): a full disk, a
journal locked by another process, damaged journals, a stopped process. Each test checks that no
relay moved for a scan that was not recorded, no single-use pass was admitted twice, every scan was
answered, the cause was shown, and the gate came back by itself when the fault cleared."""

from __future__ import annotations

import contextlib
import resource
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from passgated.journal import Journal
from tests.parts import require_part

from .simchild import GATE_ID, SimChild, check_invariants, corrupt_root_page, single_use, write_config


def recover(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "passgated.cli", "journal", "recover", "--config",
                           str(config)], capture_output=True, text=True, timeout=60)


def test_disk_full_mid_traffic_refuses_without_moving_the_relay_and_recovers(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    passes = [single_use() for _ in range(12)]
    with SimChild(config) as gate:
        for text in passes[:4]:
            assert gate.scan(text).decision["decision"] == "admit"
        gate.limit_file_size(4096)  # from now on no write past the first 4 KiB of any file: EFBIG
        faulty = [gate.scan(text) for text in passes[4:8]]
        assert {s.decision["reason"] for s in faulty} == {"gate_fault"}
        assert faulty[0].decision["text"] == "Gate fault: please use another gate"
        status = gate.wait_state("FAULT")
        assert status["fault"].startswith("Journal cannot record (disk I/O error")  # EFBIG: SQLITE_IOERR
        assert status["journal"]["lost_records"] >= 4
        assert gate.scan(passes[0]).decision["reason"] == "gate_fault"  # the FAULT answers every scan
        gate.limit_file_size(resource.RLIM_INFINITY)  # space again
        gate.wait_state("IDLE")
        for text in passes[4:]:  # refused during the fault, never recorded: their entry is intact
            assert gate.scan(text).decision["decision"] == "admit"
        assert gate.scan(passes[5]).decision["reason"] == "used_up"
        assert gate.scan(passes[0]).decision["reason"] == "used_up"
        assert gate.close() == 0  # every line answered, and the gate ended by itself
    check_invariants(gate.scans, tmp_path / "journal.db")
    with Journal(tmp_path / "journal.db", GATE_ID, recover=False) as journal:
        assert journal.events("fault_cleared")  # the fault and its end are on record


def test_a_disk_full_at_boot_starts_out_of_service_never_a_crash_loop(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    text = single_use()
    with SimChild(config, file_size_limit=0) as gate:  # not even the journal can be created
        status = gate.wait_state("FAULT")
        assert "Journal cannot record" in status["fault"]
        refused = gate.scan(text)
        assert refused.decision["reason"] == "gate_fault" and refused.pulses == 0
        gate.limit_file_size(resource.RLIM_INFINITY)
        gate.wait_state("IDLE")  # the journal opened by itself
        assert gate.scan(text).decision["decision"] == "admit"
        assert gate.scan(text).decision["reason"] == "used_up"
        assert gate.close() == 0
    check_invariants(gate.scans, tmp_path / "journal.db")


def test_a_small_full_filesystem(tmp_path: Path) -> None:
    """The journal on a 1 MiB tmpfs that fills up (SQLite: "database or disk is full")."""
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(mount)],
                             capture_output=True).returncode == 0
    require_part(mounted, "a tmpfs mount (needs root)")
    try:
        config = write_config(tmp_path, journal=str(mount / "journal.db"))
        passes = [single_use() for _ in range(60)]
        with SimChild(config) as gate:
            assert gate.scan(passes[0]).decision["decision"] == "admit"
            filler = mount / "filler"
            with contextlib.suppress(OSError), open(filler, "wb") as f:
                while True:
                    f.write(b"\0" * 4096)
            # SQLite may still write into the WAL's own space for a while: each such scan is
            # recorded, so it may be admitted; the first write that needs a new block is refused.
            refused = []
            for text in passes[1:50]:
                if gate.scan(text).decision["reason"] == "gate_fault":
                    refused.append(text)
                    break
            assert refused, "the full filesystem never refused a write"
            assert "disk full" in gate.wait_state("FAULT")["fault"]
            refused += [text for text in passes[50:53] if gate.scan(text).decision["reason"] == "gate_fault"]
            assert len(refused) == 4  # the FAULT answers every scan
            filler.unlink()  # an operator frees space
            gate.wait_state("IDLE")
            assert [gate.scan(text).decision["decision"] for text in refused] == ["admit"] * 4
            assert gate.close() == 0
        check_invariants(gate.scans, mount / "journal.db")
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_journal_locked_by_another_process(tmp_path: Path) -> None:
    """An SD card stalling in fsync looks the same: a write that waits past the bound is refused.
    (That every wait on this path is bounded is test_journal's, without a stopwatch.)"""
    config = write_config(tmp_path, write_timeout_ms=300)  # the product's default bound
    passes = [single_use() for _ in range(4)]
    with SimChild(config) as gate:
        assert gate.scan(passes[0]).decision["decision"] == "admit"
        other = sqlite3.connect(tmp_path / "journal.db", isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # holds the write lock
        refused = gate.scan(passes[1])
        assert refused.decision["reason"] == "gate_fault" and refused.pulses == 0
        assert "locked" in gate.wait_state("FAULT")["fault"]
        other.execute("ROLLBACK")
        other.close()
        gate.wait_state("IDLE")
        assert gate.scan(passes[1]).decision["decision"] == "admit"
        assert gate.close() == 0
    check_invariants(gate.scans, tmp_path / "journal.db")


@pytest.mark.parametrize("damage", ["header", "truncated", "redemptions index"])
def test_a_journal_damaged_at_boot_is_set_aside_and_recovered(tmp_path: Path, damage: str) -> None:
    config = write_config(tmp_path)
    used, fresh = single_use(), single_use()
    with SimChild(config) as gate:
        assert gate.scan(used).decision["decision"] == "admit"
        assert gate.close() == 0
    path = tmp_path / "journal.db"
    if damage == "header":
        with open(path, "r+b") as f:
            f.write(b"\xff" * 100)
    elif damage == "truncated":
        with open(path, "r+b") as f:
            f.truncate(path.stat().st_size // 2)
    else:
        corrupt_root_page(path, "redemptions_pass")
    with SimChild(config) as gate:  # starts: never a crash loop
        status = gate.wait_state("FAULT")
        assert "Redemption history missing" in status["fault"]
        assert "passgated journal recover" in status["fault"]
        refused = gate.scan(fresh)  # out of service until the history is back: nothing admitted
        assert refused.decision["reason"] == "gate_fault" and refused.pulses == 0
        aside = list((tmp_path / "damaged").glob("journal-*.db"))
        assert len(aside) == 1  # kept for evidence
        result = recover(config)
        assert result.returncode == 0, result.stderr
        assert "recovered into" in result.stdout
        gate.wait_state("IDLE")
        assert gate.scan(fresh).decision["decision"] == "admit"
        again = gate.scan(used).decision
        if damage == "redemptions index":  # the table survived: the history came back whole
            assert again["reason"] == "used_up"
        assert gate.close() == 0
    with Journal(path, GATE_ID, recover=False) as journal:
        assert journal.events("journal_set_aside") and journal.events("history_restored")
        assert journal.history_missing() is None


def test_damage_found_after_boot_takes_the_gate_out_of_service(tmp_path: Path) -> None:
    """Damage the cheap boot check cannot see (the events table) is found by the upkeep's
    quick_check after READY; a restart sets the journal aside, the recovery brings the history back."""
    config = write_config(tmp_path)
    used = single_use()
    with SimChild(config) as gate:
        assert gate.scan(used).decision["decision"] == "admit"
        assert gate.close() == 0
    corrupt_root_page(tmp_path / "journal.db", "events_t")
    with SimChild(config) as gate:
        assert "Journal damaged" in gate.wait_state("FAULT")["fault"]
        assert gate.scan(single_use()).decision["reason"] == "gate_fault"
        assert gate.close() == 0
    with SimChild(config) as gate:
        assert "Redemption history missing" in gate.wait_state("FAULT")["fault"]
        assert recover(config).returncode == 0
        gate.wait_state("IDLE")
        assert gate.scan(used).decision["reason"] == "used_up"  # salvaged from the set-aside file
        assert gate.close() == 0


def test_sigstop_and_sigcont(tmp_path: Path) -> None:
    """A gate stopped mid-pulse (SIGSTOP) answers the scans that queued up once it runs again,
    ends the pulse at once, and admits nobody twice."""
    config = write_config(tmp_path)
    first, second = single_use(), single_use()
    with SimChild(config, walk_ms=400) as gate:
        gate.scan(first)
        gate.pause()
        for text in (first, second, first):
            gate.send(text)
        time.sleep(1.0)
        assert len(gate.decisions) == 1  # stopped: nothing moves
        gate.resume()
        assert gate.answered(4)
        assert gate.close() == 0
    decisions = gate.decisions
    admits = [d["pass_id"] for d in decisions if d["decision"] == "admit"]
    assert len(admits) == len(set(admits)) == 2
    pulses = [line for line in gate.lines if line.get("output") == "relay_entry"]
    assert [p["on"] for p in pulses] == [True, False, True, False]


def test_the_fault_is_on_metrics_too(tmp_path: Path) -> None:
    import re
    import urllib.request

    config = write_config(tmp_path, write_timeout_ms=300)  # the product's bound: each locked write waits that
    with SimChild(config) as gate:
        other = sqlite3.connect(tmp_path / "journal.db", isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        gate.scan(single_use())
        gate.wait_state("FAULT")
        assert gate.url is not None
        with urllib.request.urlopen(f"{gate.url}/metrics", timeout=5) as response:
            metrics = response.read().decode()
        other.execute("ROLLBACK")
        other.close()
        assert 'passgate_fault{part="journal"} 1.0' in metrics
        assert 'passgate_state{state="FAULT"} 1.0' in metrics
        lost = re.search(r"^passgate_journal_lost_records (\S+)$", metrics, re.M)
        assert lost is not None and float(lost.group(1)) >= 1  # the decision, and the state change
        gate.wait_state("IDLE")
        with urllib.request.urlopen(f"{gate.url}/metrics", timeout=5) as response:
            assert 'passgate_fault{part="journal"} 0.0' in response.read().decode()
        assert gate.close() == 0
