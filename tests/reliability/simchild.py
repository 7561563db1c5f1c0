"""The real gate in a child process, as the fault-injection tests drive it.

``SimChild`` runs ``passgated simulate --config gate.toml --trace`` (the real daemon on gpiozero's
MockFactory pins, passage played back at once), writes one pass a line on its stdin and reads its
stdout: one JSON line per decision and one per output change, in the order they happened. A child
process is what the faults need: a file-size limit (``prlimit``), SIGSTOP, another process holding
the journal's lock.

The invariants every test checks (``check_invariants``): every scan answered; a relay pulse for
each admit and for nothing else; every admit's reservation in the journal; no single-use pass
admitted twice.
"""

from __future__ import annotations

import json
import os
import re
import resource
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from passgate import generate_private_key, issue_pass
from passgate.keys import write_keypair
from passgated.journal import Journal

KEY = generate_private_key()
LIST_KEY = generate_private_key()  # signs the "acme" deny lists
GATE_ID = "fault-gate"
WAIT_S = 20.0  # bound on every wait for the child


def write_config(root: Path, extra: str = "", *, journal: str = "journal.db",
                 write_timeout_ms: int = 5000) -> Path:
    """A gate.toml in ``root`` with a trust directory holding KEY's public key (passes) and
    LIST_KEY's (the "acme" deny lists). The journal's write bound is generous (the tests run on
    loaded machines) unless a test is about that bound."""
    write_keypair(KEY, root / "trust", "issuer")
    write_keypair(LIST_KEY, root / "trust", "lists")
    (root / "trust" / "trust.toml").write_text(
        '[[key]]\nfile = "lists.pub.pem"\npurpose = "denylist"\nscope = "acme"\n')
    path = root / "gate.toml"
    path.write_text(
        f'[gate]\nid = "{GATE_ID}"\nvenue = "acme"\nzones = ["A"]\n[trust]\ndir = "trust"\n'
        f'[journal]\npath = "{journal}"\nwrite_timeout_ms = {write_timeout_ms}\n'
        '[display]\nlisten = "127.0.0.1:0"\n[timing]\nrelay_pulse_ms = 100\nrefusal_display_ms = 20\n'
        + extra
    )
    return path


def single_use(pass_id: bytes | None = None) -> str:
    now = time.time()
    return issue_pass(KEY, valid_from=now - 60, valid_until=now + 3600, zones=["A"], entries=1,
                      pass_id=pass_id)


@dataclass
class Scanned:
    """One scan's answer and the output changes that came with it."""

    text: str
    decision: dict[str, Any]
    outputs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def pulses(self) -> int:
        return sum(1 for o in self.outputs if o["output"] in ("relay_entry", "relay_exit") and o["on"])


class SimChild:
    """``passgated simulate`` in a child; ``scan(text)`` waits for its answer."""

    def __init__(self, config: Path, *, walk_ms: int = 0, file_size_limit: int | None = None) -> None:
        self.config = config

        def limit() -> None:  # in the child, before exec: a disk that is full from the start
            if file_size_limit is not None:
                _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
                resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, hard))

        self.child = subprocess.Popen(
            [sys.executable, "-m", "passgated.cli", "simulate", "--config", str(config),
             "--walk-ms", str(walk_ms), "--trace"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1,
            preexec_fn=limit,
        )
        self.lines: list[dict[str, Any]] = []
        self.stderr: list[str] = []
        self.url: str | None = None
        self._changed = threading.Condition()
        self.scans: list[Scanned] = []
        self._readers = [threading.Thread(target=self._read_out, daemon=True),
                         threading.Thread(target=self._read_err, daemon=True)]
        for reader in self._readers:
            reader.start()
        if not self._wait(lambda: self.url is not None or self.child.poll() is not None):
            raise RuntimeError("the gate did not start")
        if self.url is None:
            raise RuntimeError(f"the gate exited: {''.join(self.stderr)[-2000:]}")

    def _read_out(self) -> None:
        assert self.child.stdout is not None
        for line in self.child.stdout:
            with self._changed:
                self.lines.append(json.loads(line))
                self._changed.notify_all()

    def _read_err(self) -> None:
        assert self.child.stderr is not None
        for line in self.child.stderr:
            with self._changed:
                self.stderr.append(line)
                found = re.search(r"guard page: (http://\S+)", line)
                if found:
                    self.url = found.group(1)
                self._changed.notify_all()
        with self._changed:  # the child has gone: wake whoever waits
            self._changed.notify_all()

    def _wait(self, condition: Any, timeout: float = WAIT_S) -> bool:
        with self._changed:
            return self._changed.wait_for(condition, timeout)

    @property
    def decisions(self) -> list[dict[str, Any]]:
        return [line for line in self.lines if "decision" in line]

    def send(self, text: str) -> None:
        """Write a pass without waiting for its answer (e.g. while the child is stopped)."""
        assert self.child.stdin is not None
        self.child.stdin.write(text + "\n")
        self.child.stdin.flush()

    def scan(self, text: str) -> Scanned:
        """Scan one pass and wait for its answer; raises AssertionError when none comes."""
        start = len(self.lines)
        self.send(text)
        assert self._wait(lambda: any("decision" in line for line in self.lines[start:])), \
            f"no answer to a scan within {WAIT_S} s: {''.join(self.stderr)[-2000:]}"
        return self._collect(text, start)

    def _collect(self, text: str, start: int) -> Scanned:
        with self._changed:
            new = self.lines[start:]
            index = next(i for i, line in enumerate(new) if "decision" in line)
            scanned = Scanned(text, new[index], [line for line in new[:index] if "output" in line])
        self.scans.append(scanned)
        return scanned

    def answered(self, count: int) -> bool:
        """Wait until ``count`` decisions in all were printed."""
        return self._wait(lambda: len(self.decisions) >= count)

    def status(self) -> dict[str, Any]:
        assert self.url is not None
        with urllib.request.urlopen(f"{self.url}/status", timeout=5) as response:
            return dict(json.load(response))

    def wait_state(self, state: str, timeout: float = WAIT_S) -> dict[str, Any]:
        """Poll /status until the gate is in ``state``; returns that status."""
        end = time.monotonic() + timeout
        while True:
            status = self.status()
            if status["state"] == state or time.monotonic() > end:
                assert status["state"] == state, f"state {status['state']}, not {state}: {status}"
                return status
            time.sleep(0.05)

    def limit_file_size(self, limit: int) -> None:
        """Disk full for this child: no file may grow past ``limit`` bytes (EFBIG; CPython ignores
        SIGXFSZ). ``resource.RLIM_INFINITY`` clears it. Only the soft limit moves: raising a hard
        limit again needs a privilege, lowering the soft one does not."""
        _, hard = resource.prlimit(self.child.pid, resource.RLIMIT_FSIZE)
        resource.prlimit(self.child.pid, resource.RLIMIT_FSIZE, (limit, hard))

    def pause(self) -> None:
        self.child.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.child.send_signal(signal.SIGCONT)

    def peak_rss_mb(self) -> float:
        text = Path(f"/proc/{self.child.pid}/status").read_text()
        return int(re.search(r"VmHWM:\s+(\d+) kB", text).group(1)) / 1024  # type: ignore[union-attr]

    def close(self) -> int:
        """End of input: the child decides what is left and exits by itself."""
        if self.child.poll() is None:
            assert self.child.stdin is not None
            self.child.stdin.close()
            try:
                self.child.wait(timeout=WAIT_S)
            except subprocess.TimeoutExpired:
                self.child.kill()
                self.child.wait()
                raise AssertionError("the gate did not exit at the end of its input") from None
        for reader in self._readers:
            reader.join(timeout=5)
        return self.child.returncode

    def __enter__(self) -> SimChild:
        return self

    def __exit__(self, *_: object) -> None:
        if self.child.poll() is None:
            self.child.send_signal(signal.SIGCONT)
            self.child.kill()
            self.child.wait()


def check_invariants(scans: list[Scanned], journal_path: Path) -> None:
    """The promises a fault must not break; raises AssertionError naming the first one broken."""
    for scanned in scans:
        admit = scanned.decision["decision"] == "admit"
        assert scanned.pulses == (1 if admit else 0), (
            f"{scanned.pulses} relay pulse(s) for a {scanned.decision['reason']} decision")
    with Journal(journal_path, GATE_ID, recover=False) as journal:
        reserved = Counter(row[0] for row in journal.db.execute(
            "SELECT pass_id FROM redemptions WHERE gate_id = ? AND state IN "
            "('reserved', 'committed', 'assumed')", (GATE_ID,)))
    admits = Counter(s.decision["pass_id"] for s in scans if s.decision["decision"] == "admit")
    unrecorded = {p: n for p, n in admits.items() if reserved[p] < n}
    assert not unrecorded, f"admits without their reservation in the journal: {unrecorded}"
    twice = {p: n for p, n in admits.items() if n > 1}
    assert not twice, f"single-use passes admitted more than once: {twice}"


def corrupt_root_page(path: Path, name: str) -> None:
    """Overwrite the first b-tree page of table or index ``name`` with garbage (SD-card rot)."""
    with Journal(path, GATE_ID, recover=False) as journal:
        page_size = journal.db.execute("PRAGMA page_size").fetchone()[0]
        (root,) = journal.db.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (name,)).fetchone()
    with open(path, "r+b") as f:
        f.seek((root - 1) * page_size)
        f.write(os.urandom(page_size))
