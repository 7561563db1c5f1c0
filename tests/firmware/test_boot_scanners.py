"""Boot waits a bounded time for its scanners to connect before READY: a reader that needs a moment
(an OSDP secure channel) does not put a gate through FAULT at every start; one that never comes
does, with its name. A source the test connects, registered as a scanner kind for the test only."""

from __future__ import annotations

import threading
from collections.abc import Generator
from pathlib import Path

import pytest

from passgate.scanners import Scan, ScannerSource
from passgated import gate as gate_module
from passgated.gate import Gate
from passgated.journal import Journal
from passgated.machine import State
from tests.helpers import gate_with_source, wait_for


class Slow(ScannerSource):
    """Connects when the test says so (``connect``), as a reader finishing its handshake would."""

    connect = threading.Event()

    def __init__(self, target: str) -> None:
        super().__init__(f"slow:{target}")

    def _read(self) -> Generator[Scan, None, None]:
        while not self.connect.wait(0.05):
            if self._closed.is_set():
                return
        self._set_connected(True)
        self._closed.wait()
        yield from ()


@pytest.fixture
def gate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Generator[Gate, None, None]:
    Slow.connect = threading.Event()
    gate = gate_with_source(tmp_path, monkeypatch, "slow", Slow)
    yield gate
    gate.stop()


def states(tmp_path: Path) -> list[str]:
    events = Journal(tmp_path / "journal.db", "gate-1", recover=False).events()
    return [e["detail"] for e in events if e["kind"] == "state"]


def test_a_scanner_that_connects_during_boot_is_waited_for(gate: Gate, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gate_module, "SCANNERS_AT_BOOT_S", 30.0)
    timer = threading.Timer(1.5, Slow.connect.set)  # past the loop's first health check (1 s)
    timer.start()
    gate.start()  # returns (READY) once the scanner is there
    timer.join()
    (source, _), = gate.sources
    connected_at_ready = source.health().connected
    assert gate.wait_settled(5) and gate.state is State.IDLE
    gate.stop()
    assert "FAULT" not in " ".join(states(tmp_path))  # no out-of-service flicker at boot
    assert connected_at_ready


def test_a_scanner_that_never_comes_faults_the_gate_after_the_wait(gate: Gate, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(gate_module, "SCANNERS_AT_BOOT_S", 0.3)
    gate.start()
    assert "scanners not ready after 0 s: slow:x" in caplog.text
    assert wait_for(lambda: gate.state is State.FAULT)
    assert gate.machine.fault == "Scanner disconnected: slow:x"
    Slow.connect.set()  # it comes after all: back in service
    assert wait_for(lambda: gate.state is State.IDLE)
    gate.stop()
    assert "FAULT" in " ".join(states(tmp_path))
