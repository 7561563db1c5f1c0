"""State machine transitions with an injected clock: no sleeping, no hardware."""

import pytest

from passgate import Reason, TrustStore, generate_private_key, issue_pass, verify_signature
from passgated.machine import (
    FREE,
    SAFE,
    Beep,
    Booted,
    Commit,
    FireLoop,
    GateMachine,
    Health,
    Maintenance,
    Outputs,
    Passage,
    Record,
    Release,
    Reserve,
    ResetRequested,
    Scanned,
    SetOutputs,
    State,
    Tamper,
    Tick,
    Timing,
)
from passgated.policy import Decision, Direction

TIMING = Timing(relay_pulse_s=0.3, passage_timeout_s=5.0, refusal_display_s=2.0)
KEY = generate_private_key()
TRUST = TrustStore()
TRUST.add(KEY.public_key())
PASS = verify_signature(issue_pass(KEY, valid_from=0, valid_until=2**31), TRUST)
ADMIT = Decision(True, Reason.ADMIT, "Welcome", Direction.ENTRY, PASS)
ADMIT_EXIT = Decision(True, Reason.ADMIT, "Goodbye", Direction.EXIT, PASS)
REFUSE = Decision(False, Reason.EXPIRED, "Expired", Direction.ENTRY, PASS)


def kinds(actions):
    return [type(a).__name__ for a in actions]


def booted(**kw) -> GateMachine:
    m = GateMachine(TIMING, **kw)
    m.handle(Booted(fire_loop_closed=True), 0.0)
    assert m.state is State.IDLE
    return m


def test_grant_pulse_passage_commit() -> None:
    m = booted()
    actions = m.handle(Scanned(ADMIT), 1.0)
    assert kinds(actions)[:2] == ["Reserve", "SetOutputs"]  # durable before the relay moves
    assert actions[1] == SetOutputs(Outputs(relay_entry=True, green=True))
    assert Beep("admit") in actions and m.state is State.GRANTED
    assert m.handle(Tick(), 1.29) == []
    assert m.handle(Tick(), 1.3) == [SetOutputs(Outputs(green=True))]  # pulse over, still waiting
    actions = m.handle(Passage(Direction.ENTRY), 2.0)
    assert actions[0] == Commit(ADMIT) and Record("passage", Direction.ENTRY) in actions
    assert m.state is State.IDLE and m.outputs == SAFE and m.next_deadline() is None


def test_exit_grant_pulses_the_exit_relay() -> None:
    m = booted()
    assert SetOutputs(Outputs(relay_exit=True, green=True)) in m.handle(Scanned(ADMIT_EXIT), 0.0)


def test_timeout_releases_the_reservation() -> None:
    m = booted()
    m.handle(Scanned(ADMIT), 1.0)
    m.handle(Tick(), 1.3)
    actions = m.handle(Tick(), 6.0)
    assert Release(ADMIT) in actions and Record("not_passed", Direction.ENTRY, "timeout") in actions
    assert Commit(ADMIT) not in actions and m.state is State.IDLE


def test_passage_in_the_other_direction_is_forced() -> None:
    m = booted()
    m.handle(Scanned(ADMIT), 0.0)
    actions = m.handle(Passage(Direction.EXIT), 0.5)
    assert Record("forced_passage", Direction.EXIT) in actions and m.state is State.GRANTED


def test_refusal_shows_red_then_returns_to_idle() -> None:
    m = booted()
    actions = m.handle(Scanned(REFUSE), 0.0)
    assert SetOutputs(Outputs(red=True)) in actions and Beep("refuse") in actions
    assert m.state is State.REFUSED and m.refusal_for_scan() is None
    m.handle(Tick(), 2.0)
    assert m.state is State.IDLE and m.outputs == SAFE


def test_forced_passage_alarm_without_grant() -> None:
    m = booted()
    actions = m.handle(Passage(Direction.ENTRY), 0.0)
    assert Record("forced_passage", Direction.ENTRY) in actions and Beep("alarm") in actions
    assert any(getattr(a, "event", {}).get("alarm") == "forced_passage" for a in actions)


def test_free_exit_passage_is_no_alarm() -> None:
    m = booted(free_exit=True)
    assert m.handle(Passage(Direction.EXIT), 0.0) == [Record("passage", Direction.EXIT, "free exit")]


def test_commit_at_grant_for_turnstiles_without_feedback() -> None:
    m = booted(commit_at_grant=True)
    actions = m.handle(Scanned(ADMIT), 0.0)
    assert kinds(actions)[:3] == ["Reserve", "Commit", "SetOutputs"]
    m.handle(Tick(), 0.3)
    assert m.state is State.IDLE and m.outputs == SAFE


def _drive_to(state: State) -> GateMachine:
    m = booted()
    if state is State.GRANTED:
        m.handle(Scanned(ADMIT), 0.0)
    elif state is State.REFUSED:
        m.handle(Scanned(REFUSE), 0.0)
    elif state is State.FAULT:
        m.handle(Health(scanners_ok=False), 0.0)
    elif state is State.MAINTENANCE_FREE:
        m.handle(Maintenance("free"), 0.0)
    elif state is State.MAINTENANCE_LOCKED:
        m.handle(Maintenance("locked"), 0.0)
    assert m.state is state
    return m


@pytest.mark.parametrize("state", [State.IDLE, State.GRANTED, State.REFUSED, State.FAULT,
                                   State.MAINTENANCE_FREE, State.MAINTENANCE_LOCKED])
def test_fire_alarm_in_every_state_releases_and_latches(state: State) -> None:
    m = _drive_to(state)
    actions = m.handle(FireLoop(closed=False), 0.1)
    assert m.state is State.EMERGENCY and m.outputs == FREE
    assert Beep("alarm") in actions
    if state is State.GRANTED:
        assert Release(ADMIT) in actions  # the holder keeps the entry
    assert m.refusal_for_scan() is Reason.EMERGENCY
    assert m.handle(ResetRequested(), 0.2) == []  # loop still open: reset refused
    m.handle(FireLoop(closed=True), 0.3)
    assert m.state is State.EMERGENCY  # latched until an operator resets
    for t in (1.0, 100.0):
        m.handle(Tick(), t)
    assert m.state is State.EMERGENCY and m.outputs == FREE
    m.handle(ResetRequested(), 101.0)
    sticky = (State.FAULT, State.MAINTENANCE_FREE, State.MAINTENANCE_LOCKED)
    resting = state if state in sticky else State.IDLE
    assert m.state is resting
    assert m.outputs.release is (resting is State.MAINTENANCE_FREE)


def test_fire_loop_open_at_boot_starts_in_emergency() -> None:
    m = GateMachine(TIMING)
    actions = m.handle(Booted(fire_loop_closed=False), 0.0)
    assert m.state is State.EMERGENCY and SetOutputs(FREE) in actions


def test_passage_during_emergency_is_free() -> None:
    m = _drive_to(State.IDLE)
    m.handle(FireLoop(closed=False), 0.0)
    assert m.handle(Passage(Direction.ENTRY), 1.0) == [Record("passage", Direction.ENTRY, "free passage")]


def test_scans_refused_with_reason_outside_idle() -> None:
    assert _drive_to(State.GRANTED).refusal_for_scan() is Reason.BUSY
    assert _drive_to(State.FAULT).refusal_for_scan() is Reason.OUT_OF_SERVICE
    assert _drive_to(State.MAINTENANCE_LOCKED).refusal_for_scan() is Reason.OUT_OF_SERVICE
    with pytest.raises(RuntimeError):
        _drive_to(State.FAULT).handle(Scanned(ADMIT), 1.0)


def test_fault_recovers_and_maintenance_leaves() -> None:
    m = _drive_to(State.FAULT)
    assert m.outputs.red
    m.handle(Health(scanners_ok=True), 1.0)
    assert m.state is State.IDLE
    m.handle(Maintenance("free"), 2.0)
    assert m.outputs == FREE
    m.handle(Maintenance(None), 3.0)
    assert m.state is State.IDLE and m.outputs == SAFE
    with pytest.raises(ValueError):
        m.handle(Maintenance("open"), 4.0)


def test_maintenance_interrupts_a_grant_and_releases() -> None:
    m = _drive_to(State.GRANTED)
    assert Release(ADMIT) in m.handle(Maintenance("locked"), 1.0)


def test_tamper_is_recorded() -> None:
    m = booted()
    assert m.handle(Tamper(True), 0.0) == [Record("tamper"), Beep("alarm")]
    assert Reserve(ADMIT) in m.handle(Scanned(ADMIT), 1.0)  # tamper does not stop service
