"""The power-cut driver (issue 7.3), shared by the default test (20 cuts) and the soak (200).

It runs the real ``passgated`` (simulate mode: real daemon, MockFactory pins, passage feedback
played back inside the child) as a child process fed by a real pty scanner with steady traffic,
and SIGKILLs it at random moments, restarting it each time. A decision is *acknowledged* when the
child printed its JSON line; the gate prints only after the journal holds the decision (and, for
an admit, the durable reservation). Afterwards the journal must hold every acknowledged decision,
no single-use pass may have been admitted twice, and no redemption may be lost.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from passgate import generate_private_key, issue_pass
from passgate.keys import write_keypair
from passgated.journal import Journal

GATE_ID = "powercut"


@dataclass
class Report:
    cuts: int = 0
    scans_sent: int = 0
    acknowledged: list[dict] = field(default_factory=list)
    assumed: int = 0
    seconds: float = 0.0

    def summary(self) -> str:
        admits = sum(1 for d in self.acknowledged if d["decision"] == "admit")
        return (f"{self.cuts} SIGKILLs, {self.scans_sent} scans sent, {len(self.acknowledged)} decisions "
                f"acknowledged ({admits} admits), {self.assumed} reservations recovered as used, "
                f"{self.seconds:.0f} s")


def _config(tmp: Path, tty: str) -> Path:
    write_keypair(KEY, tmp / "trust", "issuer")
    path = tmp / "gate.toml"
    path.write_text(
        f'[gate]\nid = "{GATE_ID}"\nzones = ["A"]\n[trust]\ndir = "trust"\n'
        '[journal]\npath = "journal.db"\n[display]\nlisten = false\n'
        f'[[scanner]]\nsource = "serial:{tty}"\ndedupe = 0\nmax_rate = 1000\n'
        "[timing]\nrelay_pulse_ms = 30\npassage_timeout_ms = 3000\nrefusal_display_ms = 30\n"
    )
    return path


KEY = generate_private_key()


def run_power_cuts(tmp: Path, cuts: int, *, seed: int = 7) -> Report:
    rng = random.Random(seed)
    master, slave = os.openpty()  # the driver keeps both ends: the port survives the child's death
    config = _config(tmp, os.ttyname(slave))
    now = time.time()
    pool: list[str] = []
    report = Report()
    started = time.monotonic()
    try:
        for _ in range(cuts):
            child = subprocess.Popen(
                [sys.executable, "-m", "passgated.cli", "simulate", "--config", str(config),
                 "--walk-ms", "5"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
            )
            ready = threading.Event()

            def read_out(stream=child.stdout) -> None:
                for line in stream:
                    report.acknowledged.append(json.loads(line))

            def read_err(stream=child.stderr, ready=ready) -> None:
                for line in stream:
                    if " ready: state " in line:
                        ready.set()

            readers = [threading.Thread(target=read_out, daemon=True),
                       threading.Thread(target=read_err, daemon=True)]
            for reader in readers:
                reader.start()
            if not ready.wait(30):
                child.kill()
                raise RuntimeError("passgated did not become ready")
            cut_at = time.monotonic() + rng.uniform(0.2, 0.8)
            while time.monotonic() < cut_at:
                if not pool or rng.random() < 0.7:
                    pool.append(issue_pass(KEY, valid_from=now - 60, valid_until=now + 3600,
                                           zones=["A"], entries=1))
                    text = pool[-1]
                else:
                    text = rng.choice(pool)  # a single-use pass shown again, maybe after a cut
                os.write(master, text.encode() + b"\r")
                report.scans_sent += 1
                time.sleep(rng.uniform(0.002, 0.02))
            child.kill()  # SIGKILL: no clean-up of any kind, as in a power cut
            child.wait(timeout=30)
            for reader in readers:
                reader.join(timeout=10)
            report.cuts += 1
    finally:
        os.close(master)
        os.close(slave)
    journal = Journal(tmp / "journal.db", GATE_ID)  # opened as the next boot would open it
    report.assumed = len(journal.events("reservation_assumed"))
    report.seconds = time.monotonic() - started
    check(journal, report)
    journal.close()
    return report


def check(journal: Journal, report: Report) -> None:
    """The three promises; raises AssertionError naming the first one broken."""
    assert journal.integrity_ok(), "journal integrity check failed"
    decisions = journal.events("decision")
    in_journal = Counter((d["pass_id"], d["decision"], d["reason"]) for d in decisions)
    acked = Counter((d["pass_id"], d["decision"], d["reason"]) for d in report.acknowledged)
    missing = {k: n for k, n in acked.items() if in_journal[k] < n}
    assert not missing, f"acknowledged decisions missing from the journal: {missing}"
    admits = Counter(d["pass_id"] for d in decisions if d["decision"] == "admit")
    twice = {p: n for p, n in admits.items() if n > 1}
    assert not twice, f"single-use passes admitted more than once: {twice}"
    counted = {row[0] for row in journal.db.execute(
        "SELECT pass_id FROM redemptions WHERE state IN ('committed', 'assumed')")}
    lost = set(admits) - counted
    assert not lost, f"admits whose redemption was lost: {sorted(lost)[:5]}"
