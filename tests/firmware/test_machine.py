"""The state machine pinned down, with an injected clock (no sleeping, no hardware): every transition's
actions as a literal list, output by output; exact pulse and display times; every state's text."""

from __future__ import annotations

from typing import Any

import pytest

from passgate import Reason, TrustStore, generate_private_key, issue_pass, verify_signature
from passgate.feedback import Cue, Signal
from passgated.machine import (
    FREE,
    SAFE,
    STATE_TEXT,
    Announce,
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
    Show,
    State,
    Tamper,
    Tick,
    Timing,
    journal_fault,
)
from passgated.policy import Decision, Direction
from passgated.records import EventKind

GRANTED_CUE = Cue(Signal.GRANTED, "", Direction.ENTRY)  # the reader: none in these tests
REFUSED_CUE = Cue(Signal.REFUSED, "", Direction.ENTRY)
READY_CUE = Cue(Signal.READY)
TIMING = Timing(relay_pulse_s=0.3, passage_timeout_s=5.0, refusal_display_s=2.0)
KEY = generate_private_key()
TRUST = TrustStore()
TRUST.add(KEY.public_key())
PASS = verify_signature(issue_pass(KEY, valid_from=0, valid_until=2**31), TRUST)
ADMIT = Decision(True, Reason.ADMIT, "Welcome", Direction.ENTRY, PASS)
ADMIT_EXIT = Decision(True, Reason.ADMIT, "Goodbye", Direction.EXIT, PASS)
REFUSE = Decision(False, Reason.EXPIRED, "Expired", Direction.ENTRY, PASS)
RED = Outputs(red=True)
GREEN = Outputs(green=True)


def shown(state: str, text: str, t: float, detail: str = "") -> Show:
    return Show({"kind": "state", "state": state, "text": text, "detail": detail, "t": t})


def ready(t: float) -> Show:
    return shown("IDLE", "Ready", t)


def state_record(change: str) -> Record:
    return Record(EventKind.STATE, detail=change)


def booted(**kw: Any) -> GateMachine:
    m = GateMachine(TIMING, **kw)
    m.handle(Booted(fire_loop_closed=True), 0.0)
    assert m.state is State.IDLE
    return m


def scan(m: GateMachine, decision: Decision, now: float, *, ok: bool = True, cause: str = "") -> list[Any]:
    """A scan as the control loop runs it: the decision, then the journal's answer."""
    first = m.handle(Scanned(decision), now)
    assert first == [RecordDecision(decision, reserve=decision.admit)]  # nothing else before the record
    return first + m.handle(Recorded(decision, ok, cause), now)


# -- the vocabulary ---------------------------------------------------------------------------
def test_names_texts_and_defaults() -> None:
    assert [s.value for s in State] == ["BOOT", "IDLE", "GRANTED", "REFUSED", "EMERGENCY", "FAULT",
                                        "MAINTENANCE_FREE", "MAINTENANCE_LOCKED"]
    assert [s.value for s in Signal] == ["granted", "refused", "alarm", "ready", "fault", "emergency",
                                         "open", "closed"]
    assert [m.value for m in MaintenanceMode] == ["free", "locked"]
    assert STATE_TEXT == {
        State.BOOT: "Starting",
        State.IDLE: "Ready",
        State.GRANTED: "Please pass",
        State.REFUSED: "Refused",
        State.EMERGENCY: "EMERGENCY — FREE PASSAGE",
        State.FAULT: "Out of order: please use another gate",
        State.MAINTENANCE_FREE: "Maintenance: free passage",
        State.MAINTENANCE_LOCKED: "Maintenance: gate closed",
    }
    assert Timing() == Timing(relay_pulse_s=0.3, passage_timeout_s=5.0, refusal_display_s=2.0)
    assert (SAFE.relay_entry, SAFE.relay_exit, SAFE.release, SAFE.green, SAFE.red) == (False,) * 5
    assert (FREE.relay_entry, FREE.relay_exit, FREE.release, FREE.green, FREE.red) == (True, True, True,
                                                                                      False, False)
    assert Health() == Health(scanners_ok=True, turnstile_ready=True, fault=None)
    assert Booted(fire_loop_closed=True).emergency_latched is False
    assert Recorded(ADMIT, True).cause == ""
    assert Record(EventKind.PASSAGE) == Record(EventKind.PASSAGE, None, "")
    assert journal_fault("disk full") == "Journal cannot record (disk full)"


def test_a_new_machine_before_boot() -> None:
    m = GateMachine(TIMING)
    assert (m.state, m.outputs, m.fire_loop_closed, m.emergency_latched, m.maintenance) == (
        State.BOOT, SAFE, True, False, None)
    assert (m.health, m.next_deadline(), m.fault, m.commit_at_grant, m.free_exit) == (
        Health(), None, None, False, False)
    assert m.refusal_for_scan() is Reason.OUT_OF_SERVICE


def test_boot_with_the_loop_closed() -> None:
    m = GateMachine(TIMING)
    assert m.handle(Booted(fire_loop_closed=True), 0.0) == [READY_CUE, state_record("BOOT->IDLE"), ready(0.0)]
    assert m.refusal_for_scan() is None


# -- grants -----------------------------------------------------------------------------------
def test_grant_pulse_passage_commit() -> None:
    m = booted()
    assert scan(m, ADMIT, 1.0) == [
        RecordDecision(ADMIT, reserve=True),  # durable before anything moves
        SetOutputs(GREEN),
        Pulse(Direction.ENTRY, 0.3),  # the output times it, not the loop
        GRANTED_CUE,
        Announce(ADMIT),
    ]
    assert m.state is State.GRANTED and m.outputs == GREEN and m.refusal_for_scan() is Reason.BUSY
    assert m.next_deadline() == 6.0  # the passage timeout, from the grant
    assert m.handle(Tick(), 5.999) == []
    assert m.handle(Passage(Direction.ENTRY), 2.0) == [
        Commit(ADMIT), SetOutputs(SAFE),  # the commit's record is the passage (counted once)
        READY_CUE, state_record("GRANTED->IDLE"), shown("IDLE", "Ready", 2.0)]
    assert m.state is State.IDLE and m.next_deadline() is None
    assert m.handle(Tick(), 6.0) == []  # the old deadline is gone


def test_exit_grant_pulses_the_exit_relay() -> None:
    actions = scan(booted(), ADMIT_EXIT, 0.0)
    assert Pulse(Direction.EXIT, 0.3) in actions and Pulse(Direction.ENTRY, 0.3) not in actions


def test_timeout_gives_the_entry_back() -> None:
    m = booted()
    scan(m, ADMIT, 1.0)
    assert m.handle(Tick(), 6.0) == [
        GiveBack(ADMIT), Record(EventKind.NOT_PASSED, Direction.ENTRY, "timeout"), SetOutputs(SAFE),
        READY_CUE, state_record("GRANTED->IDLE"), shown("IDLE", "Ready", 6.0)]
    assert m.handle(Passage(Direction.ENTRY), 7.0)[0] == Record(EventKind.FORCED_PASSAGE, Direction.ENTRY)


def test_commit_at_grant_for_turnstiles_without_feedback() -> None:
    m = booted(commit_at_grant=True)
    assert scan(m, ADMIT, 1.0) == [RecordDecision(ADMIT, reserve=True), Commit(ADMIT), SetOutputs(GREEN),
                                   Pulse(Direction.ENTRY, 0.3), GRANTED_CUE, Announce(ADMIT)]
    assert m.next_deadline() == pytest.approx(1.3)  # the pulse, not the passage timeout
    assert m.handle(Tick(), 1.299) == []
    assert m.handle(Tick(), 1.3) == [SetOutputs(SAFE), READY_CUE, state_record("GRANTED->IDLE"), ready(1.3)]
    scan(m, ADMIT, 2.0)
    assert Commit(ADMIT) not in m.handle(Passage(Direction.ENTRY), 2.1)  # committed already


def test_passage_in_the_other_direction_is_forced() -> None:
    m = booted()
    scan(m, ADMIT, 0.0)
    assert m.handle(Passage(Direction.EXIT), 0.5) == [
        Record(EventKind.FORCED_PASSAGE, Direction.EXIT), Cue(Signal.ALARM, direction=Direction.EXIT),
        Show({"kind": "alarm", "alarm": "forced_passage", "direction": "exit", "t": 0.5,
              "text": "Forced passage", "state": "GRANTED"})]
    assert m.state is State.GRANTED


# -- refusals ---------------------------------------------------------------------------------
def test_refusal_shows_red_then_returns_to_idle() -> None:
    m = booted()
    assert scan(m, REFUSE, 10.0) == [RecordDecision(REFUSE, reserve=False), SetOutputs(RED),
                                     REFUSED_CUE, Announce(REFUSE)]
    assert m.state is State.REFUSED and m.refusal_for_scan() is None and m.next_deadline() == 12.0
    assert m.handle(Tick(), 11.999) == []
    assert m.handle(Tick(), 12.0) == [SetOutputs(SAFE), READY_CUE, state_record("REFUSED->IDLE"), ready(12.0)]


def test_a_refusal_outside_idle_is_only_recorded_and_announced() -> None:
    m = booted()
    scan(m, ADMIT, 0.0)
    busy = Decision(False, Reason.BUSY, Reason.BUSY.text, Direction.ENTRY)
    assert scan(m, busy, 0.1) == [RecordDecision(busy, reserve=False), Announce(busy)]
    assert m.state is State.GRANTED and m.outputs == GREEN


# -- the journal cannot record ----------------------------------------------------------------
def test_a_grant_the_journal_cannot_record_moves_nothing_and_faults() -> None:
    m = booted()
    refusal = Decision(False, Reason.GATE_FAULT, "Gate fault: please use another gate", Direction.ENTRY, PASS,
                       detail="disk full")
    cause = "Journal cannot record (disk full)"
    assert scan(m, ADMIT, 1.0, ok=False, cause="disk full") == [
        RecordDecision(ADMIT, reserve=True), REFUSED_CUE, Announce(refusal), SetOutputs(RED),
        Cue(Signal.FAULT), state_record(f"IDLE->FAULT: {cause}"),
        shown("FAULT", "Out of order: please use another gate", 1.0, cause)]
    assert m.state is State.FAULT and m.fault == cause and m.refusal_for_scan() is Reason.GATE_FAULT
    later = Decision(False, Reason.GATE_FAULT, Reason.GATE_FAULT.text, Direction.ENTRY)
    assert scan(m, later, 2.0, ok=False, cause="disk full") == [RecordDecision(later, reserve=False),
                                                              Announce(later)]
    with pytest.raises(RuntimeError):
        m.handle(Scanned(ADMIT), 3.0)  # an admit is never handed over outside IDLE/REFUSED
    assert m.handle(Health(), 4.0) == [SetOutputs(SAFE), READY_CUE, state_record("FAULT->IDLE"), ready(4.0)]


def test_a_refusal_the_journal_cannot_record_is_still_refused_and_faults() -> None:
    m = booted()
    announced = [a.decision for a in scan(m, REFUSE, 1.0, ok=False, cause="disk I/O error")
                 if isinstance(a, Announce)]
    assert [(d.reason, d.detail) for d in announced] == [(Reason.GATE_FAULT, "disk I/O error")]
    assert m.state is State.FAULT


def test_a_record_failing_during_emergency_keeps_emergency() -> None:
    m = booted()
    m.handle(FireLoop(closed=False), 0.0)
    refusal = Decision(False, Reason.EMERGENCY, Reason.EMERGENCY.text, Direction.ENTRY)
    assert scan(m, refusal, 1.0, ok=False, cause="disk full") == [RecordDecision(refusal, reserve=False),
                                                                Announce(refusal)]
    assert m.state is State.EMERGENCY and m.outputs == FREE
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
    with pytest.raises(RuntimeError):
        m.handle(Recorded(ADMIT, True), 0.0)  # nothing waits any more


# -- the fire alarm ---------------------------------------------------------------------------
def test_fire_alarm_from_idle_then_closed_then_reset() -> None:
    m = booted()
    assert m.handle(FireLoop(closed=False), 1.0) == [
        Latch(True), SetOutputs(FREE), Cue(Signal.EMERGENCY), state_record("IDLE->EMERGENCY"),
        shown("EMERGENCY", "EMERGENCY — FREE PASSAGE", 1.0)]
    assert m.emergency_latched and m.refusal_for_scan() is Reason.EMERGENCY
    assert m.handle(FireLoop(closed=False), 1.5) == []  # a bouncing contact: already there
    assert m.handle(ResetRequested(), 2.0) == []  # loop still open: reset refused
    assert m.handle(FireLoop(closed=True), 3.0) == [
        shown("EMERGENCY", "Fire loop closed: reset to resume", 3.0)]
    assert m.state is State.EMERGENCY and m.emergency_latched and m.outputs == FREE  # latched
    assert m.handle(Tick(), 1000.0) == [] and m.handle(Health(), 1001.0) == []
    assert m.handle(ResetRequested(), 1002.0) == [
        Latch(False), Record(EventKind.EMERGENCY_RESET), SetOutputs(SAFE), READY_CUE,
        state_record("EMERGENCY->IDLE"), shown("IDLE", "Ready", 1002.0)]
    assert not m.emergency_latched
    assert m.handle(ResetRequested(), 1003.0) == []  # nothing to reset


def test_a_loop_closed_edge_in_idle_changes_nothing() -> None:
    m = booted()
    assert m.handle(FireLoop(closed=True), 1.0) == [] and m.state is State.IDLE


def test_fire_alarm_during_a_grant_gives_the_entry_back() -> None:
    m = booted()
    scan(m, ADMIT, 0.0)
    assert m.handle(FireLoop(closed=False), 0.1) == [
        GiveBack(ADMIT), Record(EventKind.NOT_PASSED, Direction.ENTRY, "interrupted"), Latch(True),
        SetOutputs(FREE), Cue(Signal.EMERGENCY), state_record("GRANTED->EMERGENCY"),
        shown("EMERGENCY", "EMERGENCY — FREE PASSAGE", 0.1)]
    assert m.next_deadline() is None  # no passage timeout runs in an emergency
    free_passage = Record(EventKind.PASSAGE, Direction.ENTRY, "free passage")
    assert m.handle(Passage(Direction.ENTRY), 0.2) == [free_passage]


@pytest.mark.parametrize("state", [State.IDLE, State.GRANTED, State.REFUSED, State.FAULT,
                                   State.MAINTENANCE_FREE, State.MAINTENANCE_LOCKED])
def test_fire_alarm_in_every_state_releases_and_latches(state: State) -> None:
    m = _drive_to(state)
    actions = m.handle(FireLoop(closed=False), 0.1)
    assert m.state is State.EMERGENCY and m.outputs == FREE
    assert Cue(Signal.EMERGENCY) in actions and Latch(True) in actions
    assert m.handle(ResetRequested(), 0.2) == []
    m.handle(FireLoop(closed=True), 0.3)
    m.handle(ResetRequested(), 101.0)
    sticky = (State.FAULT, State.MAINTENANCE_FREE, State.MAINTENANCE_LOCKED)
    resting = state if state in sticky else State.IDLE
    assert m.state is resting and m.outputs.release is (resting is State.MAINTENANCE_FREE)


def test_fire_loop_open_at_boot_starts_in_emergency_and_refuses_a_reset() -> None:
    m = GateMachine(TIMING)
    assert m.handle(Booted(fire_loop_closed=False), 0.0) == [
        Latch(True), SetOutputs(FREE), Cue(Signal.EMERGENCY), state_record("BOOT->EMERGENCY"),
        shown("EMERGENCY", "EMERGENCY — FREE PASSAGE", 0.0)]
    assert m.handle(ResetRequested(), 1.0) == [] and m.state is State.EMERGENCY
    m.handle(FireLoop(closed=True), 2.0)
    m.handle(ResetRequested(), 3.0)
    assert m.state is State.IDLE


def test_an_emergency_not_reset_before_a_restart_is_still_latched() -> None:
    m = GateMachine(TIMING)
    assert m.handle(Booted(fire_loop_closed=True, emergency_latched=True), 0.0) == [
        SetOutputs(FREE), Cue(Signal.EMERGENCY), state_record("BOOT->EMERGENCY"),
        shown("EMERGENCY", "EMERGENCY — FREE PASSAGE", 0.0)]  # no Latch(True): already persisted
    m.handle(ResetRequested(), 1.0)
    assert m.state is State.IDLE and m.outputs == SAFE


# -- health, faults, maintenance --------------------------------------------------------------
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


def test_scanners_gone_and_back() -> None:
    m = booted()
    cause = "Scanner disconnected"
    assert m.handle(Health(scanners_ok=False), 1.0) == [
        SetOutputs(RED), Cue(Signal.FAULT), state_record(f"IDLE->FAULT: {cause}"),
        shown("FAULT", "Out of order: please use another gate", 1.0, cause)]
    assert (m.fault, m.refusal_for_scan()) == (cause, Reason.OUT_OF_SERVICE)
    assert m.handle(Health(scanners_ok=False), 1.5) == [
        shown("FAULT", "Out of order: please use another gate", 1.5, cause)]  # still FAULT, shown again
    assert m.handle(Health(), 2.0) == [SetOutputs(SAFE), READY_CUE, state_record("FAULT->IDLE"), ready(2.0)]


def test_fault_causes_in_order() -> None:
    m = booted()
    m.handle(Health(turnstile_ready=False), 1.0)
    assert m.fault == "Turnstile controller not ready" and m.state is State.FAULT
    m.handle(Health(scanners_ok=False, turnstile_ready=False), 2.0)
    assert m.fault == "Scanner disconnected"
    m.handle(Health(scanners_ok=False, fault="Journal damaged"), 3.0)
    assert m.fault == "Journal damaged" and m.refusal_for_scan() is Reason.GATE_FAULT


def test_health_waits_for_the_person_at_the_turnstile() -> None:
    m = booted()
    scan(m, ADMIT, 0.0)
    assert m.handle(Health(scanners_ok=False), 1.0) == [] and m.state is State.GRANTED
    m.handle(Passage(Direction.ENTRY), 2.0)
    assert m.state is State.FAULT


def test_a_refusal_on_screen_is_not_cut_short_by_a_healthy_report() -> None:
    m = booted()
    scan(m, REFUSE, 0.0)
    assert m.handle(Health(), 0.5) == [] and m.state is State.REFUSED
    fault = m.handle(Health(turnstile_ready=False), 0.6)  # already red: only the state changes
    assert fault[0] == Cue(Signal.FAULT), state_record("REFUSED->FAULT: Turnstile controller not ready")
    assert m.state is State.FAULT


def test_maintenance() -> None:
    m = booted()
    assert m.handle(Maintenance(MaintenanceMode.FREE), 1.0) == [
        SetOutputs(FREE), Cue(Signal.OPEN), state_record("IDLE->MAINTENANCE_FREE"),
        shown("MAINTENANCE_FREE", "Maintenance: free passage", 1.0)]
    assert m.refusal_for_scan() is Reason.OUT_OF_SERVICE
    free_passage = Record(EventKind.PASSAGE, Direction.ENTRY, "free passage")
    assert m.handle(Passage(Direction.ENTRY), 1.5) == [free_passage]
    assert m.handle(Maintenance(MaintenanceMode.LOCKED), 2.0) == [
        SetOutputs(RED), Cue(Signal.CLOSED), state_record("MAINTENANCE_FREE->MAINTENANCE_LOCKED"),
        shown("MAINTENANCE_LOCKED", "Maintenance: gate closed", 2.0)]
    assert m.handle(Maintenance(MaintenanceMode.LOCKED), 2.5) == [
        shown("MAINTENANCE_LOCKED", "Maintenance: gate closed", 2.5)]  # no change, nothing recorded
    assert m.handle(Maintenance(None), 3.0) == [
        SetOutputs(SAFE), READY_CUE, state_record("MAINTENANCE_LOCKED->IDLE"), shown("IDLE", "Ready", 3.0)]
    with pytest.raises(ValueError):
        m.handle(Maintenance("open"), 4.0)  # type: ignore[arg-type]


def test_maintenance_interrupts_a_grant_once() -> None:
    m = _drive_to(State.GRANTED)
    assert m.handle(Maintenance(MaintenanceMode.LOCKED), 1.0)[:2] == [
        GiveBack(ADMIT), Record(EventKind.NOT_PASSED, Direction.ENTRY, "interrupted")]
    assert not any((isinstance(a, GiveBack | Record) and getattr(a, "kind", None) == EventKind.NOT_PASSED)
                   or isinstance(a, GiveBack) for a in m.handle(Maintenance(None), 2.0))


def test_maintenance_during_an_emergency_waits_for_the_reset() -> None:
    m = booted()
    m.handle(FireLoop(closed=False), 0.0)
    assert m.handle(Maintenance(MaintenanceMode.LOCKED), 1.0) == [] and m.state is State.EMERGENCY
    m.handle(FireLoop(closed=True), 2.0)
    m.handle(ResetRequested(), 3.0)
    assert m.state is State.MAINTENANCE_LOCKED


def test_passages_outside_a_grant() -> None:
    m = booted()
    assert m.handle(Passage(Direction.ENTRY), 0.0) == [
        Record(EventKind.FORCED_PASSAGE, Direction.ENTRY), Cue(Signal.ALARM, direction=Direction.ENTRY),
        Show({"kind": "alarm", "alarm": "forced_passage", "direction": "entry", "t": 0.0,
              "text": "Forced passage", "state": "IDLE"})]
    free = booted(free_exit=True)
    free_exit = Record(EventKind.PASSAGE, Direction.EXIT, "free exit")
    assert free.handle(Passage(Direction.EXIT), 0.0) == [free_exit]
    assert free.handle(Passage(Direction.ENTRY), 0.0)[0] == Record(EventKind.FORCED_PASSAGE, Direction.ENTRY)


def test_tamper_is_recorded_and_does_not_stop_service() -> None:
    m = booted()
    assert m.handle(Tamper(True), 0.0) == [Record(EventKind.TAMPER), Cue(Signal.ALARM)]
    assert m.handle(Tamper(False), 0.5) == [Record(EventKind.TAMPER_CLEARED)]
    assert Pulse(Direction.ENTRY, 0.3) in scan(m, ADMIT, 1.0)
