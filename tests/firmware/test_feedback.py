"""The feedback seam: every cue of the machine reaches every feedback device (the gate's buzzer
through gpiozero, a source that shows cues on its readers), a failing device is skipped, and scans
that carry no signed credential are refused with their own reasons."""

from __future__ import annotations

import time
from collections.abc import Generator
from pathlib import Path

from gpiozero.pins.mock import MockFactory

from passgate import TrustStore, generate_private_key, issue_pass
from passgate.feedback import Cue, Feedback, Signal
from passgate.scanners import Scan, ScanKind, ScannerSource
from passgated.config import load_config
from passgated.gate import Gate
from passgated.io import GateIO
from passgated.machine import State
from passgated.policy import Direction
from tests.helpers import LOADED_WRITE_TIMEOUT_S, wait_for

KEY = generate_private_key()


class ReaderBus(ScannerSource):
    """A source with its own lights: it records the cues the gate sends it."""

    def __init__(self, *, broken: bool = False) -> None:
        super().__init__("bus:test")
        self.cues: list[Cue] = []
        self.broken = broken

    def _read(self) -> Generator[Scan, None, None]:
        self._online()
        self._closed.wait()
        yield from ()

    def cue(self, cue: Cue) -> None:
        self.cues.append(cue)
        if self.broken:
            raise OSError("reader LED command failed")


def make_gate(tmp_path: Path, sources: list) -> tuple[Gate, list[dict]]:
    trust = TrustStore()
    trust.add(KEY.public_key())
    config = load_config(None, journal_path=tmp_path / "journal.db", pin_factory="mock",
                         journal_write_timeout_s=LOADED_WRITE_TIMEOUT_S)
    decisions: list[dict] = []
    gate = Gate(config, pin_factory=MockFactory(), trust=trust, sources=sources, display=False,
                on_decision=decisions.append)
    gate.io.fire_loop.pin.drive_low()
    return gate, decisions


def test_every_feedback_device_gets_the_cues_and_a_broken_one_is_skipped(tmp_path: Path, caplog) -> None:
    broken, working = ReaderBus(broken=True), ReaderBus()
    assert isinstance(working, Feedback)
    gate, decisions = make_gate(tmp_path, [(broken, Direction.ENTRY), (working, Direction.ENTRY)])
    gate.start()
    try:
        assert wait_for(lambda: Cue(Signal.READY) in working.cues)
        text = issue_pass(KEY, valid_from=time.time() - 60, valid_until=time.time() + 3600)
        gate.submit_scan(Scan(text.encode(), "bus:test", time.monotonic(), reader="bus:test#4"))
        assert wait_for(lambda: gate.state is State.GRANTED)  # the failing device held nothing up
        assert wait_for(lambda: any(s.state for s in gate.io.relay_entry.pin.states))
        granted = Cue(Signal.GRANTED, "bus:test#4", Direction.ENTRY)
        assert wait_for(lambda: granted in working.cues and granted in broken.cues)
        gate.io.fire_loop.pin.drive_high()  # the fire loop opens
        assert wait_for(lambda: Cue(Signal.EMERGENCY) in working.cues)
    finally:
        gate.stop()
    assert decisions[0]["decision"] == "admit"
    # logged once (the next failures within 5 s are not: a dead reader must not flood the log)
    assert caplog.text.count("feedback <ReaderBus bus:test> cannot show ready: OSError: reader LED") == 1


def test_cards_and_incomplete_reads_are_refused_with_their_reasons(tmp_path: Path) -> None:
    gate, decisions = make_gate(tmp_path, [])
    gate.start()
    try:
        t = time.monotonic()
        card = Scan(b"\x12\x34\x56", "bus:test", t, kind=ScanKind.CARD, detail="a card number (26 bits)")
        gate.submit_scan(card)
        gate.submit_scan(Scan(b"", "bus:test", t, kind=ScanKind.INCOMPLETE, detail="1 of 3 parts arrived"))
        # a card number that happens to be a valid pass's text is still a card: never admitted on it
        text = issue_pass(KEY, valid_from=time.time() - 60, valid_until=time.time() + 3600)
        gate.submit_scan(Scan(text.encode(), "bus:test", t, kind=ScanKind.CARD))
        assert wait_for(lambda: len(decisions) == 3) and gate.wait_settled(5)
    finally:
        gate.stop()
    assert [d["reason"] for d in decisions] == ["card_not_accepted", "incomplete_read", "card_not_accepted"]
    assert [d["text"] for d in decisions[:2]] == ["Cards are not accepted here: show the pass's QR code",
                                                 "Code not read completely: scan again"]


def test_the_gate_buzzer_as_a_feedback_device() -> None:
    io = GateIO(load_config(None), MockFactory())
    buzzer = io.buzzer.pin
    try:
        io.cue(Cue(Signal.GRANTED))
        assert wait_for(lambda: any(s.state for s in buzzer.states))  # one short beep
        io.cue(Cue(Signal.EMERGENCY))
        assert wait_for(lambda: buzzer.state)
        io.cue(Cue(Signal.FAULT))  # a state after the emergency: its alarm stops
        assert wait_for(lambda: not buzzer.state)
        buzzer.clear_states()
        io.cue(Cue(Signal.REFUSED))
        io.cue(Cue(Signal.FAULT))  # a refusal's beeps are not cut by the state that follows
        assert wait_for(lambda: sum(1 for s in buzzer.states if s.state) == 3, timeout=3)
    finally:
        io.close()

