"""The turnstile state machine, pure: events and the time in, actions out.

It imports nothing that does I/O, and time is always a parameter (monotonic seconds), so every
transition, timeout and alarm is testable without sleeping or hardware. The daemon's control loop
feeds it events in order and carries out the actions it returns.

States: BOOT → IDLE ⇄ GRANTED(direction) / REFUSED; EMERGENCY (latched), FAULT, MAINTENANCE_FREE,
MAINTENANCE_LOCKED. Precedence: EMERGENCY > MAINTENANCE > FAULT > the rest.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

from passgate import Reason

from .policy import Decision, Direction


class State(StrEnum):
    BOOT = "BOOT"
    IDLE = "IDLE"
    GRANTED = "GRANTED"
    REFUSED = "REFUSED"
    EMERGENCY = "EMERGENCY"
    FAULT = "FAULT"
    MAINTENANCE_FREE = "MAINTENANCE_FREE"
    MAINTENANCE_LOCKED = "MAINTENANCE_LOCKED"


STATE_TEXT = {
    State.BOOT: "Starting",
    State.IDLE: "Ready",
    State.GRANTED: "Please pass",
    State.REFUSED: "Refused",
    State.EMERGENCY: "EMERGENCY — FREE PASSAGE",
    State.FAULT: "Out of order",
    State.MAINTENANCE_FREE: "Maintenance: free passage",
    State.MAINTENANCE_LOCKED: "Maintenance: gate closed",
}


@dataclass(frozen=True, slots=True)
class Timing:
    relay_pulse_s: float = 0.3
    passage_timeout_s: float = 5.0
    refusal_display_s: float = 2.0


@dataclass(frozen=True, slots=True)
class Outputs:
    """Steady output levels. All False is the safe, de-energised state."""

    relay_entry: bool = False
    relay_exit: bool = False
    release: bool = False
    green: bool = False
    red: bool = False


SAFE = Outputs()
FREE = Outputs(relay_entry=True, relay_exit=True, release=True)


# Events (inputs) ----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Booted:
    fire_loop_closed: bool


@dataclass(frozen=True, slots=True)
class Scanned:
    decision: Decision


@dataclass(frozen=True, slots=True)
class Passage:
    direction: Direction


@dataclass(frozen=True, slots=True)
class FireLoop:
    closed: bool


@dataclass(frozen=True, slots=True)
class ResetRequested:
    pass


@dataclass(frozen=True, slots=True)
class Health:
    """Scanners present and turnstile ready; either False puts the gate in FAULT."""

    scanners_ok: bool = True
    turnstile_ready: bool = True


@dataclass(frozen=True, slots=True)
class Maintenance:
    mode: str | None  # "free", "locked" or None to leave maintenance


@dataclass(frozen=True, slots=True)
class Tamper:
    active: bool


@dataclass(frozen=True, slots=True)
class Tick:
    pass


Event = Booted | Scanned | Passage | FireLoop | ResetRequested | Health | Maintenance | Tamper | Tick


# Actions (outputs) --------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SetOutputs:
    outputs: Outputs


@dataclass(frozen=True, slots=True)
class Beep:
    pattern: str  # "admit", "refuse", "alarm", "off"


@dataclass(frozen=True, slots=True)
class Reserve:
    decision: Decision


@dataclass(frozen=True, slots=True)
class Commit:
    decision: Decision


@dataclass(frozen=True, slots=True)
class Release:
    decision: Decision


@dataclass(frozen=True, slots=True)
class Record:
    """A journal event that is not a decision: passage, not_passed, forced_passage, tamper…"""

    kind: str
    direction: Direction | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Show:
    event: dict[str, object]


Action = SetOutputs | Beep | Reserve | Commit | Release | Record | Show


class GateMachine:
    """One turnstile. ``handle(event, now)`` returns the actions to carry out, in order.

    >>> m = GateMachine(Timing())
    >>> [type(a).__name__ for a in m.handle(Booted(fire_loop_closed=False), now=0.0)][:2]
    ['SetOutputs', 'Beep']
    >>> m.state
    <State.EMERGENCY: 'EMERGENCY'>
    """

    def __init__(self, timing: Timing, *, commit_at_grant: bool = False, free_exit: bool = False) -> None:
        self.timing = timing
        self.commit_at_grant = commit_at_grant
        self.free_exit = free_exit  # exits need no scan: an exit passage is normal, not forced
        self.state = State.BOOT
        self.outputs = SAFE
        self.fire_loop_closed = True
        self.maintenance: str | None = None
        self.health = Health()
        self._granted: Decision | None = None
        self._pulse_end: float | None = None
        self._state_end: float | None = None

    # -- queries ------------------------------------------------------------------------------
    def refusal_for_scan(self) -> Reason | None:
        """Why a scan cannot be decided now (None when the gate takes scans)."""
        if self.state in (State.IDLE, State.REFUSED):
            return None
        if self.state is State.EMERGENCY:
            return Reason.EMERGENCY
        if self.state is State.GRANTED:
            return Reason.BUSY
        return Reason.OUT_OF_SERVICE

    def next_deadline(self) -> float | None:
        """The earliest time a ``Tick`` would change something."""
        times = [t for t in (self._pulse_end, self._state_end) if t is not None]
        return min(times) if times else None

    # -- the one entry point ------------------------------------------------------------------
    def handle(self, event: Event, now: float) -> list[Action]:
        actions: list[Action] = []
        match event:
            case Booted(fire_loop_closed=closed):
                self.fire_loop_closed = closed
                self._enter(State.EMERGENCY if not closed else self._resting_state(), now, actions)
            case FireLoop(closed=closed):
                self.fire_loop_closed = closed
                if not closed and self.state is not State.EMERGENCY:
                    self._enter(State.EMERGENCY, now, actions)
                elif closed and self.state is State.EMERGENCY:
                    actions.append(Show(self._state_event(now, "Fire loop closed: reset to resume")))
            case ResetRequested():
                if self.state is State.EMERGENCY and self.fire_loop_closed:
                    actions.append(Record("emergency_reset"))
                    self._enter(self._resting_state(), now, actions)
            case Scanned(decision=decision):
                self._scanned(decision, now, actions)
            case Passage(direction=direction):
                self._passage(direction, now, actions)
            case Health() as health:
                self.health = health
                if self.state in (State.IDLE, State.REFUSED, State.FAULT, State.BOOT):
                    resting = self._resting_state()
                    if resting is not self.state and not (
                        self.state is State.REFUSED and resting is State.IDLE
                    ):
                        self._enter(resting, now, actions)
            case Maintenance(mode=mode):
                if mode not in (None, "free", "locked"):
                    raise ValueError(f"unknown maintenance mode {mode!r}")
                self.maintenance = mode
                if self.state is not State.EMERGENCY:
                    self._abandon_grant(actions)
                    self._enter(self._resting_state(), now, actions)
            case Tamper(active=active):
                actions.append(Record("tamper" if active else "tamper_cleared"))
                if active:
                    actions.append(Beep("alarm"))
            case Tick():
                self._tick(now, actions)
        return actions

    # -- transitions --------------------------------------------------------------------------
    def _resting_state(self) -> State:
        if not self.fire_loop_closed:
            return State.EMERGENCY
        if self.maintenance == "free":
            return State.MAINTENANCE_FREE
        if self.maintenance == "locked":
            return State.MAINTENANCE_LOCKED
        if not (self.health.scanners_ok and self.health.turnstile_ready):
            return State.FAULT
        return State.IDLE

    def _enter(self, state: State, now: float, actions: list[Action]) -> None:
        if state is State.EMERGENCY:
            self._abandon_grant(actions)
        previous = self.state
        self.state = state
        self._pulse_end = None
        self._state_end = None
        outputs = {
            State.EMERGENCY: FREE,
            State.MAINTENANCE_FREE: FREE,
            State.MAINTENANCE_LOCKED: replace(SAFE, red=True),
            State.FAULT: replace(SAFE, red=True),
        }.get(state, SAFE)
        self._set(outputs, actions)
        if state is State.EMERGENCY:
            actions.append(Beep("alarm"))
        elif previous is State.EMERGENCY:
            actions.append(Beep("off"))
        if state is not previous:
            actions.append(Record("state", detail=f"{previous}->{state}"))
        actions.append(Show(self._state_event(now)))

    def _state_event(self, now: float, text: str | None = None) -> dict[str, object]:
        return {"kind": "state", "state": str(self.state), "text": text or STATE_TEXT[self.state], "t": now}

    def _set(self, outputs: Outputs, actions: list[Action]) -> None:
        if outputs != self.outputs:
            self.outputs = outputs
            actions.append(SetOutputs(outputs))

    def _abandon_grant(self, actions: list[Action]) -> None:
        """A grant cut short (emergency, maintenance): the holder keeps the entry."""
        if self._granted is not None and not self.commit_at_grant:
            actions.append(Release(self._granted))
            actions.append(Record("not_passed", self._granted.direction, "interrupted"))
        self._granted = None

    def _scanned(self, decision: Decision, now: float, actions: list[Action]) -> None:
        if self.refusal_for_scan() is not None:
            raise RuntimeError(f"scan handed to the machine in state {self.state}")
        if not decision.admit:
            self.state = State.REFUSED
            self._state_end = now + self.timing.refusal_display_s
            self._set(replace(SAFE, red=True), actions)
            actions.append(Beep("refuse"))
            return
        self._granted = decision
        self.state = State.GRANTED
        actions.append(Reserve(decision))
        if self.commit_at_grant:
            actions.append(Commit(decision))
        relay = {"relay_entry": True} if decision.direction is Direction.ENTRY else {"relay_exit": True}
        self._set(Outputs(green=True, **relay), actions)
        actions.append(Beep("admit"))
        self._pulse_end = now + self.timing.relay_pulse_s
        wait = self.timing.relay_pulse_s if self.commit_at_grant else self.timing.passage_timeout_s
        self._state_end = now + wait

    def _passage(self, direction: Direction, now: float, actions: list[Action]) -> None:
        if self.state is State.GRANTED and self._granted and self._granted.direction is direction:
            decision, self._granted = self._granted, None
            if not self.commit_at_grant:
                actions.append(Commit(decision))
            actions.append(Record("passage", direction))
            self._enter(State.IDLE, now, actions)
        elif self.state in (State.EMERGENCY, State.MAINTENANCE_FREE):
            actions.append(Record("passage", direction, "free passage"))
        elif self.free_exit and direction is Direction.EXIT:
            actions.append(Record("passage", direction, "free exit"))
        else:
            actions.append(Record("forced_passage", direction))
            actions.append(Beep("alarm"))
            event = {"kind": "alarm", "alarm": "forced_passage", "direction": str(direction), "t": now,
                     "text": "Forced passage", "state": str(self.state)}
            actions.append(Show(event))

    def _tick(self, now: float, actions: list[Action]) -> None:
        if self._pulse_end is not None and now >= self._pulse_end:
            self._pulse_end = None
            self._set(replace(self.outputs, relay_entry=False, relay_exit=False), actions)
        if self._state_end is not None and now >= self._state_end:
            self._state_end = None
            if self.state is State.GRANTED and self._granted is not None:
                decision, self._granted = self._granted, None
                if not self.commit_at_grant:
                    actions.append(Release(decision))
                    actions.append(Record("not_passed", decision.direction, "timeout"))
            self._enter(self._resting_state(), now, actions)
