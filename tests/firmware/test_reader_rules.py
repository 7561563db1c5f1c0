"""What a source's readers do to the gate, per its [[scanner]] table's rules: ``on_offline = "event"``
keeps the gate in service while one reader of a bus is gone (only a journal event), until none is
left; tamper still faults by default. A source whose readers the test sets (the real OSDP bus is in
``tests/osdp``), registered as a scanner kind for the test's duration, built from the config."""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path

import pytest

from passgate.scanners import ReaderHealth, Scan, ScannerSource
from passgated import gate as gate_module
from passgated.gate import Gate
from passgated.journal import Journal
from passgated.machine import State
from tests.helpers import gate_with_source, wait_for


class Bus(ScannerSource):
    """Two readers whose state the test sets."""

    def __init__(self, target: str) -> None:
        super().__init__(f"fakebus:{target}")

    def _read(self) -> Generator[Scan, None, None]:
        self._closed.wait()
        yield from ()

    def readers(self, one: bool, two: bool, *, tamper: bool = False) -> None:
        self._set_readers((ReaderHealth("bus#1", one, one, tamper=tamper), ReaderHealth("bus#2", two, two)))


@pytest.fixture
def gate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Generator[Gate, None, None]:
    monkeypatch.setattr(gate_module, "SCANNERS_AT_BOOT_S", 0.0)  # its readers come when the test says
    gate = gate_with_source(tmp_path, monkeypatch, "fakebus", Bus, 'on_offline = "event"\n')
    gate.start()
    yield gate
    gate.stop()


def links(tmp_path: Path) -> list[tuple[str, str]]:
    events = Journal(tmp_path / "journal.db", "gate-1", recover=False).events()
    return [(e["kind"], e["detail"]) for e in events if e["kind"].startswith(("reader_", "tamper"))]


def test_a_lost_reader_is_an_event_until_none_is_left(gate: Gate, tmp_path: Path) -> None:
    (source, _), = gate.sources
    assert isinstance(source, Bus)
    source.readers(True, True)
    assert wait_for(lambda: gate.state is State.IDLE)
    source.readers(True, False)  # one reader gone: recorded, the gate goes on
    assert wait_for(lambda: links(tmp_path) == [("reader_offline", "bus#2")])
    assert gate.wait_settled(5) and gate.state is State.IDLE
    source.readers(False, False)  # none left: out of service
    assert wait_for(lambda: gate.state is State.FAULT)
    assert gate.machine.fault == "Scanner disconnected: fakebus:x: no reader online"
    source.readers(True, True)
    assert wait_for(lambda: gate.state is State.IDLE)
    source.readers(True, True, tamper=True)  # tamper keeps its default rule: fault
    assert wait_for(lambda: gate.state is State.FAULT)
    assert gate.machine.fault == "Scanner disconnected: bus#1 tamper"
    source.readers(True, True)
    assert wait_for(lambda: gate.state is State.IDLE)
    assert wait_for(lambda: links(tmp_path) == [
        ("reader_offline", "bus#2"), ("reader_offline", "bus#1"), ("reader_online", "bus#1"),
        ("reader_online", "bus#2"), ("tamper", "bus#1"), ("tamper_cleared", "bus#1")])
