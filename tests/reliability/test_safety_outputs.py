"""The outputs the fire alarm owns: stopping or restarting the gate during an EMERGENCY keeps
release driven, a steady level computed before the alarm never overwrites it, and a relay pulse
ends on time even while the control loop is stalled."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from gpiozero.pins.mock import MockFactory

from passgate import TrustStore, generate_private_key, issue_pass
from passgate.feedback import Cue, Signal
from passgate.scanners import Scan
from passgated.config import load_config
from passgated.control import Command, ControlRequest
from passgated.gate import Gate
from passgated.io import GateIO
from passgated.machine import SAFE, State
from passgated.policy import Direction
from tests.helpers import LOADED_WRITE_TIMEOUT_S, wait_for

KEY = generate_private_key()


def make_gate(tmp_path: Path, factory: MockFactory | None = None) -> Gate:
    trust = TrustStore()
    trust.add(KEY.public_key())
    config = load_config(None, journal_path=tmp_path / "j.db", journal_write_timeout_s=LOADED_WRITE_TIMEOUT_S)
    gate = Gate(config, pin_factory=factory or MockFactory(), trust=trust, sources=[], display=False)
    return gate


def test_stop_and_restart_during_an_emergency_keep_release_driven(tmp_path: Path) -> None:
    gate = make_gate(tmp_path)
    fire, release = gate.io.fire_loop.pin, gate.io.release.pin
    fire.drive_low()
    gate.start()
    fire.drive_high()  # the alarm
    assert wait_for(lambda: gate.state is State.EMERGENCY)
    fire.drive_low()  # the panel is reset, but nobody reset the gate: still latched
    gate.stop()
    assert [s.state for s in release.states[1:]] == [True]  # never de-energised by the stop

    again = make_gate(tmp_path)  # a restart: the latch is in the journal, the loop reads closed
    again.io.fire_loop.pin.drive_low()
    again.start()
    try:
        assert again.state is State.EMERGENCY and again.io.release.pin.state
        assert again.run_command(ControlRequest(Command.RESET))["state"] == "IDLE"
        assert not again.io.release.pin.state
    finally:
        again.stop()

    third = make_gate(tmp_path)  # reset once: the next start is normal
    third.io.fire_loop.pin.drive_low()
    third.start()
    try:
        assert third.state is State.IDLE and not third.io.release.pin.state
    finally:
        third.stop()


def test_a_stale_apply_never_overwrites_the_fire_release(tmp_path: Path) -> None:
    """Another thread keeps applying the safe levels (as a control loop that decided them just
    before the alarm would); once the fire loop is open, release must stay driven whatever it
    applies."""
    config = load_config(None, journal_path=tmp_path / "j.db", journal_write_timeout_s=LOADED_WRITE_TIMEOUT_S)
    for _ in range(100):
        io = GateIO(config, MockFactory())
        fire, release = io.fire_loop.pin, io.release.pin
        fire.drive_low()
        io.start()
        stop = threading.Event()

        def stale_apply(io: GateIO = io, stop: threading.Event = stop) -> None:
            while not stop.is_set():
                io.apply(SAFE)

        applier = threading.Thread(target=stale_apply)
        applier.start()
        fire.drive_high()
        time.sleep(0.002)
        stop.set()
        applier.join()
        history = [s.state for s in release.states]
        assert history.count(True) == 1 and history[-1] is True, history  # driven once, never dropped
        assert io.relay_entry.pin.state and io.relay_exit.pin.state
        io.close()


def test_the_pulse_ends_while_the_loop_is_stalled(tmp_path: Path) -> None:
    """The pulse is timed by the output: with the control loop stuck right after starting it (held
    until the test has looked, at most 30 s), the relay still falls after its 0.3 s."""
    gate = make_gate(tmp_path)
    gate.io.fire_loop.pin.drive_low()
    stalled, running, unstall = threading.Event(), threading.Event(), threading.Event()
    real_cue = gate.io.cue

    def stalling_cue(cue: Cue) -> None:  # the loop stalls right after it started the grant's pulse
        real_cue(cue)
        if cue.signal is Signal.GRANTED:
            stalled.set()
            unstall.wait(30)
            running.set()

    gate.io.cue = stalling_cue  # type: ignore[method-assign]
    relay = gate.io.relay_entry.pin
    gate.start()
    try:
        text = issue_pass(KEY, valid_from=0, valid_until=2**31)
        gate.submit_scan(Scan(text.encode(), "t", time.monotonic()), Direction.ENTRY)
        assert wait_for(stalled.is_set)
        assert wait_for(lambda: [s.state for s in relay.states[1:]] == [True, False], timeout=5)
        assert not running.is_set()  # the relay fell while the loop was still stuck
    finally:
        unstall.set()
        gate.stop()
