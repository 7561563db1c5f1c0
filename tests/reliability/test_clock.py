"""Issue 7.8: timeouts use the monotonic clock, so a wall-clock jump neither holds a turnstile open
nor burns a redemption; validity windows use the wall clock."""

import time
from pathlib import Path

from gpiozero.pins.mock import MockFactory

from passgate import TrustStore, generate_private_key, issue_pass
from passgate.scanners import Scan
from passgated.config import load_config
from passgated.gate import Gate
from passgated.journal import Journal
from passgated.loop import Clock
from passgated.machine import State, Tick
from passgated.policy import Direction
from tests.helpers import LOADED_WRITE_TIMEOUT_S, wait_for


class Wall:
    """A wall clock the test can jump; monotonic time stays real."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


def make_gate(tmp_path: Path, wall: Wall) -> tuple[Gate, bytes]:
    key = generate_private_key()
    trust = TrustStore()
    trust.add(key.public_key())
    config = load_config(None, journal_path=tmp_path / "j.db", journal_write_timeout_s=LOADED_WRITE_TIMEOUT_S)
    gate = Gate(config, pin_factory=MockFactory(), trust=trust, sources=[], display=False,
                clock=Clock(wall=wall))
    gate.io.fire_loop.pin.drive_low()
    text = issue_pass(key, valid_from=time.time() - 60, valid_until=time.time() + 3600, entries=1)
    return gate, text.encode()


def test_wall_clock_jump_forward_does_not_burn_the_redemption(tmp_path: Path) -> None:
    wall = Wall()
    gate, text = make_gate(tmp_path, wall)
    relay = gate.io.relay_entry.pin
    gate.start()
    try:
        gate.submit_scan(Scan(text, "t", time.monotonic()))
        assert wait_for(lambda: gate.state is State.GRANTED)
        wall.offset = 86400.0  # NTP steps the clock a day ahead mid-grant
        gate.loop.submit(Tick())
        time.sleep(0.1)
        assert gate.state is State.GRANTED  # the passage timeout (5 s monotonic) has not fired
        passage = gate.io.passage[Direction.ENTRY].pin
        passage.drive_low()
        passage.drive_high()
        assert wait_for(lambda: gate.state is State.IDLE)
        assert wait_for(lambda: not relay.state)
    finally:
        gate.stop()
    kinds = [e["kind"] for e in Journal(tmp_path / "j.db", "gate-1", recover=False).events()]
    assert "redeemed" in kinds and "released" not in kinds


def test_wall_clock_jump_back_does_not_hold_the_turnstile_open(tmp_path: Path) -> None:
    wall = Wall()
    gate, text = make_gate(tmp_path, wall)
    relay = gate.io.relay_entry.pin
    gate.start()
    try:
        gate.submit_scan(Scan(text, "t", time.monotonic()))
        assert wait_for(lambda: relay.state)
        wall.offset = -86400.0  # the clock steps a day back
        assert wait_for(lambda: not relay.state, timeout=2.0)  # the 300 ms pulse still ends
        on_for = next(s.timestamp for s in relay.states[1:] if not s.state)
        assert on_for >= 0.25  # the full pulse, then off by itself (the wait above bounds it)
    finally:
        gate.stop()


def test_a_gate_clock_far_off_the_hub_is_detected_and_reported(tmp_path: Path, caplog) -> None:
    from .hubgates import start_gate, start_hub

    hub, _, tokens = start_hub(tmp_path)
    wall = Wall()
    wall.offset = -2 * 3600.0  # the gate's RTC lost two hours
    gate = start_gate(tmp_path, "g1", hub, tokens["g1"], [], clock=Clock(wall=wall))
    try:
        assert wait_for(lambda: (gate.status()["sync"] or {}).get("clock_offset_s") is not None, 20)
        sync = gate.status()["sync"]
        assert sync["clock_skewed"] and abs(sync["clock_offset_s"] - 7200) < 60
        assert "gate clock is 7200 s behind the hub's" in caplog.text
    finally:
        gate.stop()
        hub.close()
