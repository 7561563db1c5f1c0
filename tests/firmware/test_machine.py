"""State machine transitions with an injected clock: no sleeping, no hardware."""

import pytest

from passgate import Reason, TrustStore, generate_private_key, issue_pass, verify_signature
from passgated.machine import (
    FREE,
    SAFE,
    Announce,
    Beep,
    BeepPattern,
    Booted,
    Commit,
    FireLoop,
    GateMachine,
    GiveBack,
    Health,
    Latch,
    Maintenance,
    MaintenanceMode,
    Outputs,
    Passage,
    Pulse,
    Record,
    RecordDecision,
    Recorded,
    ResetRequested,
    Scanned,
    SetOutputs,
    State,
    Tamper,
    Tick,
    Timing,
)
from passgated.policy import Decision, Direction
from passgated.records import EventKind

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


def scan(m: GateMachine, decision: Decision, now: float, *, ok: bool = True, cause: str = "") -> list:
    """A scan as the control loop runs it: the decision, then the journal's answer."""
    first = m.handle(Scanned(decision), now)
    assert first == [RecordDecision(decision, reserve=decision.admit)]  # nothing else before the record
    return first + m.handle(Recorded(decision, ok, cause), now)


def test_grant_pulse_passage_commit() -> None:
    m = booted()
    actions = scan(m, ADMIT, 1.0)
    # record first; the relay moves only after the journal holds the reservation
    assert kinds(actions)[:3] == ["RecordDecision", "SetOutputs", "Pulse"]
    assert actions[1] == SetOutputs(Outputs(green=True))
    assert actions[2] == Pulse(Direction.ENTRY, 0.3)  # timed by the output, not by the loop
    assert Beep(BeepPattern.ADMIT) in actions and Announce(ADMIT) in actions and m.state is State.GRANTED
    assert m.next_deadline() == pytest.approx(6.0)
    assert m.handle(Tick(), 5.99) == []
    actions = m.handle(Passage(Direction.ENTRY), 2.0)
    assert actions[0] == Commit(ADMIT) and Record(EventKind.PASSAGE, Direction.ENTRY) in actions
    assert m.state is State.IDLE and m.outputs == SAFE and m.next_deadline() is None


def test_a_grant_the_journal_cannot_record_moves_nothing_and_faults() -> None:
    m = booted()
    actions = scan(m, ADMIT, 1.0, ok=False, cause="disk full")
    assert not any(isinstance(a, Pulse) for a in actions)
    assert not any(isinstance(a, SetOutputs) and (a.outputs.relay_entry or a.outputs.green) for a in actions)
    (announced,) = [a.decision for a in actions if isinstance(a, Announce)]
    assert (announced.admit, announced.reason) == (False, Reason.GATE_FAULT)
    assert announced.text == "Gate fault: please use another gate" and announced.detail == "disk full"
    assert m.state is State.FAULT and m.outputs == Outputs(red=True)
    assert m.fault == "Journal cannot record (disk full)"
    assert m.refusal_for_scan() is Reason.GATE_FAULT
    # every later scan is answered with the same refusal, still recorded if the journal can
    refusal = Decision(False, Reason.GATE_FAULT, Reason.GATE_FAULT.text, Direction.ENTRY)
    assert scan(m, refusal, 2.0, ok=False, cause="disk full")[1:] == [Announce(refusal)]
    with pytest.raises(RuntimeError):
        m.handle(Scanned(ADMIT), 3.0)  # an admit is never handed over outside IDLE/REFUSED
    m.handle(Health(), 4.0)  # the journal records again
    assert m.state is State.IDLE and m.outputs == SAFE and m.fault is None


def test_a_refusal_the_journal_cannot_record_is_still_refused_and_faults() -> None:
    m = booted()
    actions = scan(m, REFUSE, 1.0, ok=False, cause="disk I/O error")
    (announced,) = [a.decision for a in actions if isinstance(a, Announce)]
    assert announced.reason is Reason.GATE_FAULT and m.state is State.FAULT


def test_a_record_failing_during_emergency_keeps_emergency() -> None:
    m = booted()
    m.handle(FireLoop(closed=False), 0.0)
    refusal = Decision(False, Reason.EMERGENCY, Reason.EMERGENCY.text, Direction.ENTRY)
    actions = scan(m, refusal, 1.0, ok=False, cause="disk full")
    assert Announce(refusal) in actions and m.state is State.EMERGENCY and m.outputs == FREE
    m.handle(FireLoop(closed=True), 2.0)
    m.handle(ResetRequested(), 3.0)
    assert m.state is State.FAULT  # the journal fault it met waits behind the emergency


def test_a_scan_cannot_overtake_a_pending_record() -> None:
    m = booted()
    m.handle(Scanned(ADMIT), 0.0)
    with pytest.raises(RuntimeError):
        m.handle(Scanned(REFUSE), 0.0)
    with pytest.raises(RuntimeError):
        m.handle(Recorded(REFUSE, True), 0.0)  # not the decision that waits
    assert m.abandon_pending() is ADMIT and m.abandon_pending() is None


def test_exit_grant_pulses_the_exit_relay() -> None:
    assert Pulse(Direction.EXIT, 0.3) in scan(booted(), ADMIT_EXIT, 0.0)


def test_timeout_gives_the_entry_back() -> None:
    m = booted()
    scan(m, ADMIT, 1.0)
    actions = m.handle(Tick(), 6.0)
    assert GiveBack(ADMIT) in actions and Record(EventKind.NOT_PASSED, Direction.ENTRY, "timeout") in actions
    assert Commit(ADMIT) not in actions and m.state is State.IDLE


def test_passage_in_the_other_direction_is_forced() -> None:
    m = booted()
    scan(m, ADMIT, 0.0)
    actions = m.handle(Passage(Direction.EXIT), 0.5)
    assert Record(EventKind.FORCED_PASSAGE, Direction.EXIT) in actions and m.state is State.GRANTED


def test_refusal_shows_red_then_returns_to_idle() -> None:
    m = booted()
    actions = scan(m, REFUSE, 0.0)
    assert SetOutputs(Outputs(red=True)) in actions and Beep(BeepPattern.REFUSE) in actions
    assert m.state is State.REFUSED and m.refusal_for_scan() is None
    m.handle(Tick(), 2.0)
    assert m.state is State.IDLE and m.outputs == SAFE


def test_forced_passage_alarm_without_grant() -> None:
    m = booted()
    actions = m.handle(Passage(Direction.ENTRY), 0.0)
    assert Record(EventKind.FORCED_PASSAGE, Direction.ENTRY) in actions and Beep(BeepPattern.ALARM) in actions
    assert any(getattr(a, "event", {}).get("alarm") == "forced_passage" for a in actions)


def test_free_exit_passage_is_no_alarm() -> None:
    m = booted(free_exit=True)
    assert m.handle(Passage(Direction.EXIT), 0.0) == [Record(EventKind.PASSAGE, Direction.EXIT, "free exit")]


def test_commit_at_grant_for_turnstiles_without_feedback() -> None:
    m = booted(commit_at_grant=True)
    actions = scan(m, ADMIT, 0.0)
    assert kinds(actions)[:4] == ["RecordDecision", "Commit", "SetOutputs", "Pulse"]
    m.handle(Tick(), 0.3)
    assert m.state is State.IDLE and m.outputs == SAFE


def _drive_to(state: State) -> GateMachine:
    m = booted()
    if state is State.GRANTED:
        scan(m, ADMIT, 0.0)
    elif state is State.REFUSED:
        scan(m, REFUSE, 0.0)
    elif state is State.FAULT:
        m.handle(Health(scanners_ok=False), 0.0)
    elif state is State.MAINTENANCE_FREE:
        m.handle(Maintenance(MaintenanceMode.FREE), 0.0)
    elif state is State.MAINTENANCE_LOCKED:
        m.handle(Maintenance(MaintenanceMode.LOCKED), 0.0)
    assert m.state is state
    return m


@pytest.mark.parametrize("state", [State.IDLE, State.GRANTED, State.REFUSED, State.FAULT,
                                   State.MAINTENANCE_FREE, State.MAINTENANCE_LOCKED])
def test_fire_alarm_in_every_state_releases_and_latches(state: State) -> None:
    m = _drive_to(state)
    actions = m.handle(FireLoop(closed=False), 0.1)
    assert m.state is State.EMERGENCY and m.outputs == FREE
    assert Beep(BeepPattern.ALARM) in actions and Latch(True) in actions
    if state is State.GRANTED:
        assert GiveBack(ADMIT) in actions  # the holder keeps the entry
    assert m.refusal_for_scan() is Reason.EMERGENCY
    assert m.handle(ResetRequested(), 0.2) == []  # loop still open: reset refused
    m.handle(FireLoop(closed=True), 0.3)
    assert m.state is State.EMERGENCY  # latched until an operator resets
    for t in (1.0, 100.0):
        m.handle(Tick(), t)
    assert m.state is State.EMERGENCY and m.outputs == FREE
    actions = m.handle(ResetRequested(), 101.0)
    assert Latch(False) in actions and Record(EventKind.EMERGENCY_RESET) in actions
    sticky = (State.FAULT, State.MAINTENANCE_FREE, State.MAINTENANCE_LOCKED)
    resting = state if state in sticky else State.IDLE
    assert m.state is resting
    assert m.outputs.release is (resting is State.MAINTENANCE_FREE)


def test_fire_loop_open_at_boot_starts_in_emergency() -> None:
    m = GateMachine(TIMING)
    actions = m.handle(Booted(fire_loop_closed=False), 0.0)
    assert m.state is State.EMERGENCY and SetOutputs(FREE) in actions


def test_an_emergency_not_reset_before_a_restart_is_still_latched() -> None:
    m = GateMachine(TIMING)
    actions = m.handle(Booted(fire_loop_closed=True, emergency_latched=True), 0.0)
    assert m.state is State.EMERGENCY and SetOutputs(FREE) in actions
    assert Latch(True) not in actions  # already persisted
    m.handle(ResetRequested(), 1.0)
    assert m.state is State.IDLE and m.outputs == SAFE


def test_passage_during_emergency_is_free() -> None:
    m = _drive_to(State.IDLE)
    m.handle(FireLoop(closed=False), 0.0)
    passage = Record(EventKind.PASSAGE, Direction.ENTRY, "free passage")
    assert m.handle(Passage(Direction.ENTRY), 1.0) == [passage]


def test_scans_refused_with_reason_outside_idle() -> None:
    assert _drive_to(State.GRANTED).refusal_for_scan() is Reason.BUSY
    assert _drive_to(State.FAULT).refusal_for_scan() is Reason.OUT_OF_SERVICE
    assert _drive_to(State.MAINTENANCE_LOCKED).refusal_for_scan() is Reason.OUT_OF_SERVICE
    with pytest.raises(RuntimeError):
        _drive_to(State.FAULT).handle(Scanned(ADMIT), 1.0)


def test_fault_recovers_and_maintenance_leaves() -> None:
    m = _drive_to(State.FAULT)
    assert m.outputs.red and m.fault == "Scanner disconnected"
    m.handle(Health(scanners_ok=True), 1.0)
    assert m.state is State.IDLE
    m.handle(Maintenance(MaintenanceMode.FREE), 2.0)
    assert m.outputs == FREE
    m.handle(Maintenance(None), 3.0)
    assert m.state is State.IDLE and m.outputs == SAFE
    with pytest.raises(ValueError):
        m.handle(Maintenance("open"), 4.0)  # type: ignore[arg-type]


def test_a_fault_with_a_cause_is_shown_to_the_guard() -> None:
    m = booted()
    actions = m.handle(Health(fault="Redemption history missing: waiting for the hub"), 1.0)
    assert m.state is State.FAULT and m.refusal_for_scan() is Reason.GATE_FAULT
    shown = [a.event for a in actions if type(a).__name__ == "Show"]
    assert shown[-1]["text"] == "Out of order: please use another gate"  # the guard's words
    assert shown[-1]["detail"] == "Redemption history missing: waiting for the hub"  # the cause


def test_maintenance_interrupts_a_grant_and_gives_back() -> None:
    m = _drive_to(State.GRANTED)
    assert GiveBack(ADMIT) in m.handle(Maintenance(MaintenanceMode.LOCKED), 1.0)


def test_tamper_is_recorded() -> None:
    m = booted()
    assert m.handle(Tamper(True), 0.0) == [Record(EventKind.TAMPER), Beep(BeepPattern.ALARM)]
    assert Pulse(Direction.ENTRY, 0.3) in scan(m, ADMIT, 1.0)  # tamper does not stop service
