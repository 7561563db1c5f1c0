"""The turnstile state machine, pure: events and the time in, actions out.

It imports nothing that does I/O, and time is always a parameter (monotonic seconds), so every
transition, timeout and alarm is testable without sleeping or hardware. The control loop feeds it
events in order and carries out the actions it returns.

Record, then actuate, or refuse: every scan's decision first becomes ``RecordDecision`` (with the
grant's reservation); only the journal's answer, handed back as ``Recorded``, lets the machine move
an output. A record that failed turns the answer into a ``gate_fault`` refusal and the gate into
FAULT, with the cause a guard can read; it leaves FAULT when a ``Health`` without a fault arrives.

States: BOOT → IDLE ⇄ GRANTED(direction) / REFUSED; EMERGENCY (latched), FAULT, MAINTENANCE_FREE,
MAINTENANCE_LOCKED. Precedence: EMERGENCY > MAINTENANCE > FAULT > the rest.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

from passgate import Reason
from passgate.feedback import Cue, Signal

from .policy import Decision, Direction
from .records import EventKind


class State(StrEnum):
    BOOT = "BOOT"
    IDLE = "IDLE"
    GRANTED = "GRANTED"
    REFUSED = "REFUSED"
    EMERGENCY = "EMERGENCY"
    FAULT = "FAULT"
    MAINTENANCE_FREE = "MAINTENANCE_FREE"
    MAINTENANCE_LOCKED = "MAINTENANCE_LOCKED"


class MaintenanceMode(StrEnum):
    FREE = "free"
    LOCKED = "locked"


STATE_TEXT = {
    State.BOOT: "Starting",
    State.IDLE: "Ready",
    State.GRANTED: "Please pass",
    State.REFUSED: "Refused",
    State.EMERGENCY: "EMERGENCY — FREE PASSAGE",
    State.FAULT: "Out of order: please use another gate",
    State.MAINTENANCE_FREE: "Maintenance: free passage",
    State.MAINTENANCE_LOCKED: "Maintenance: gate closed",
}
ACCEPTING = frozenset({State.IDLE, State.REFUSED})  # states in which a scan is decided
STATE_SIGNAL = {  # what feedback devices show while the gate rests in a state
    State.IDLE: Signal.READY,
    State.FAULT: Signal.FAULT,
    State.EMERGENCY: Signal.EMERGENCY,
    State.MAINTENANCE_FREE: Signal.OPEN,
    State.MAINTENANCE_LOCKED: Signal.CLOSED,
}


def journal_fault(cause: str) -> str:
    """The fault a failed journal write puts the gate in, as the guard reads it."""
    return f"Journal cannot record ({cause})"


@dataclass(frozen=True, slots=True)
class Timing:
    relay_pulse_s: float = 0.3
    passage_timeout_s: float = 5.0
    refusal_display_s: float = 2.0


@dataclass(frozen=True, slots=True)
class Outputs:
    """Steady output levels. All False is the safe, de-energised state. A grant's relay pulse is not
    a level: it is a ``Pulse`` action, timed by the output itself."""

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
    emergency_latched: bool = False  # an EMERGENCY not yet reset before the last stop


@dataclass(frozen=True, slots=True)
class Scanned:
    """A scan's decision: from ``policy.decide`` in IDLE/REFUSED, or the refusal that
    ``refusal_for_scan`` named in any other state. ``reader`` is where the scan came from: the
    decision's feedback is shown there."""

    decision: Decision
    reader: str = ""


@dataclass(frozen=True, slots=True)
class Recorded:
    """The journal's answer to ``RecordDecision``: ``ok`` False with a one-line ``cause``."""

    decision: Decision
    ok: bool
    cause: str = ""


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
    """What the gate needs to take scans: scanners present, turnstile ready, and no ``fault`` (a part
    it cannot trust, e.g. a journal that cannot record; the text is shown to the guard).
    ``scanners`` names the scanners or readers missing (or reporting tamper) when it is known."""

    scanners_ok: bool = True
    turnstile_ready: bool = True
    fault: str | None = None
    scanners: str = ""


@dataclass(frozen=True, slots=True)
class Maintenance:
    mode: MaintenanceMode | None  # None leaves maintenance


@dataclass(frozen=True, slots=True)
class Tamper:
    """The gate's tamper contact, or (``where`` names it) a reader's tamper report."""

    active: bool
    where: str = ""


@dataclass(frozen=True, slots=True)
class ReaderLink:
    """A reader on a bus went offline or came back: a journal event (whether the gate goes out of
    service for it is a ``Health`` matter, per the configuration)."""

    reader: str
    online: bool


@dataclass(frozen=True, slots=True)
class Tick:
    pass


Event = (Booted | Scanned | Recorded | Passage | FireLoop | ResetRequested | Health | Maintenance | Tamper
         | ReaderLink | Tick)


# Actions (outputs) --------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SetOutputs:
    """Drive the steady levels; a relay pulse still running ends."""

    outputs: Outputs


@dataclass(frozen=True, slots=True)
class Pulse:
    """Energise one direction's relay for ``seconds``; the output ends it, not the control loop."""

    direction: Direction
    seconds: float


@dataclass(frozen=True, slots=True)
class RecordDecision:
    """Journal a decision (with ``reserve``, its redemption in the same durable write) and hand the
    outcome back as ``Recorded`` before anything else happens."""

    decision: Decision
    reserve: bool


@dataclass(frozen=True, slots=True)
class Commit:
    """The holder walked through: the reservation counts."""

    decision: Decision


@dataclass(frozen=True, slots=True)
class GiveBack:
    """The holder did not walk through: the reserved entry is given back."""

    decision: Decision


@dataclass(frozen=True, slots=True)
class Record:
    """A journal event that is not a decision: passage, not_passed, forced_passage, tamper…"""

    kind: EventKind
    direction: Direction | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Latch:
    """Persist whether an EMERGENCY waits for its reset, so a restart cannot clear it."""

    latched: bool


@dataclass(frozen=True, slots=True)
class Show:
    """A state change or alarm for the guard page."""

    event: dict[str, object]


@dataclass(frozen=True, slots=True)
class Announce:
    """The final answer to one scan: guard page, metrics and whoever waits for decisions."""

    decision: Decision


Action = (SetOutputs | Pulse | Cue | RecordDecision | Commit | GiveBack | Record | Latch | Show
          | Announce)


class GateMachine:
    """One turnstile. ``handle(event, now)`` returns the actions to carry out, in order.

    >>> m = GateMachine(Timing())
    >>> [type(a).__name__ for a in m.handle(Booted(fire_loop_closed=False), now=0.0)][:2]
    ['SetOutputs', 'Cue']
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
        self.emergency_latched = False
        self.maintenance: MaintenanceMode | None = None
        self.health = Health()
        self._granted: Decision | None = None
        self._pending: Decision | None = None  # recorded, waiting for the journal's answer
        self._reader = ""  # where the pending decision's scan came from
        self._state_end: float | None = None

    # -- queries ------------------------------------------------------------------------------
    def refusal_for_scan(self) -> Reason | None:
        """Why a scan cannot be decided now (None when the gate takes scans)."""
        if self.state in ACCEPTING:
            return None
        if self.state is State.EMERGENCY:
            return Reason.EMERGENCY
        if self.state is State.GRANTED:
            return Reason.BUSY
        if self.state is State.FAULT and self.health.fault:
            return Reason.GATE_FAULT
        return Reason.OUT_OF_SERVICE

    def next_deadline(self) -> float | None:
        """The earliest time a ``Tick`` would change something."""
        return self._state_end

    @property
    def fault(self) -> str | None:
        """What keeps the gate out of service, in words for the guard (None when nothing does)."""
        if self.health.fault:
            return self.health.fault
        if not self.health.scanners_ok:
            missing = self.health.scanners
            return f"Scanner disconnected: {missing}" if missing else "Scanner disconnected"
        if not self.health.turnstile_ready:
            return "Turnstile controller not ready"
        return None

    def abandon_pending(self) -> Decision | None:
        """Forget a decision whose ``Recorded`` will never come (the loop failed in between);
        returns it so the scan can still be answered."""
        decision, self._pending = self._pending, None
        return decision

    # -- the one entry point ------------------------------------------------------------------
    def handle(self, event: Event, now: float) -> list[Action]:
        actions: list[Action] = []
        match event:
            case Booted(fire_loop_closed=closed, emergency_latched=latched):
                self.fire_loop_closed = closed
                self.emergency_latched = latched
                self._enter(self._resting_state(), now, actions)
            case FireLoop(closed=closed):
                self.fire_loop_closed = closed
                if not closed and self.state is not State.EMERGENCY:
                    self._enter(State.EMERGENCY, now, actions)
                elif closed and self.state is State.EMERGENCY:
                    actions.append(Show(self._state_event(now, "Fire loop closed: reset to resume")))
            case ResetRequested():
                if self.state is State.EMERGENCY and self.fire_loop_closed:
                    self.emergency_latched = False
                    actions.append(Latch(False))
                    actions.append(Record(EventKind.EMERGENCY_RESET))
                    self._enter(self._resting_state(), now, actions)
            case Scanned(decision=decision, reader=reader):
                self._scanned(decision, actions)
                self._reader = reader
            case Recorded() as recorded:
                self._recorded(recorded, now, actions)
            case Passage(direction=direction):
                self._passage(direction, now, actions)
            case Health() as health:
                self.health = health
                self._settle(now, actions)
            case Maintenance(mode=mode):
                self.maintenance = None if mode is None else MaintenanceMode(mode)
                if self.state is not State.EMERGENCY:
                    self._abandon_grant(actions)
                    self._enter(self._resting_state(), now, actions)
            case Tamper(active=active, where=where):
                actions.append(Record(EventKind.TAMPER if active else EventKind.TAMPER_CLEARED, detail=where))
                if active:
                    actions.append(Cue(Signal.ALARM))
            case ReaderLink(reader=reader, online=online):
                actions.append(Record(EventKind.READER_ONLINE if online else EventKind.READER_OFFLINE,
                                      detail=reader))
            case Tick():
                self._tick(now, actions)
        return actions

    # -- transitions --------------------------------------------------------------------------
    def _resting_state(self) -> State:
        if not self.fire_loop_closed or self.emergency_latched:
            return State.EMERGENCY
        if self.maintenance is MaintenanceMode.FREE:
            return State.MAINTENANCE_FREE
        if self.maintenance is MaintenanceMode.LOCKED:
            return State.MAINTENANCE_LOCKED
        if self.fault is not None:
            return State.FAULT
        return State.IDLE

    def _settle(self, now: float, actions: list[Action]) -> None:
        """After a health change: go to the resting state, unless busy with a person (GRANTED),
        showing a refusal that is still fine (REFUSED), or in a state that outranks FAULT."""
        if self.state not in (State.IDLE, State.REFUSED, State.FAULT, State.BOOT):
            return
        resting = self._resting_state()
        if resting is self.state or (self.state is State.REFUSED and resting is State.IDLE):
            if resting is State.FAULT:  # still FAULT, maybe for another cause: show the new one
                actions.append(Show(self._state_event(now)))
            return
        self._enter(resting, now, actions)

    def _enter(self, state: State, now: float, actions: list[Action]) -> None:
        if state is State.EMERGENCY:
            self._abandon_grant(actions)
            if not self.emergency_latched:
                self.emergency_latched = True
                actions.append(Latch(True))
        previous = self.state
        self.state = state
        self._state_end = None
        outputs = {
            State.EMERGENCY: FREE,
            State.MAINTENANCE_FREE: FREE,
            State.MAINTENANCE_LOCKED: replace(SAFE, red=True),
            State.FAULT: replace(SAFE, red=True),
        }.get(state, SAFE)
        self._set(outputs, actions)
        if state is not previous:
            actions.append(Cue(STATE_SIGNAL[state]))
            detail = f"{previous}->{state}" + (f": {self.fault}" if state is State.FAULT else "")
            actions.append(Record(EventKind.STATE, detail=detail))
        actions.append(Show(self._state_event(now)))

    def _state_event(self, now: float, text: str | None = None) -> dict[str, object]:
        """For the guard page: ``text`` in the guard's words, ``detail`` the cause of a FAULT."""
        detail = self.fault if self.state is State.FAULT else None
        return {"kind": "state", "state": str(self.state), "text": text or STATE_TEXT[self.state],
                "detail": detail or "", "t": now}

    def _set(self, outputs: Outputs, actions: list[Action]) -> None:
        if outputs != self.outputs:
            self.outputs = outputs
            actions.append(SetOutputs(outputs))

    def _abandon_grant(self, actions: list[Action]) -> None:
        """A grant cut short (emergency, maintenance): the holder keeps the entry."""
        if self._granted is not None and not self.commit_at_grant:
            actions.append(GiveBack(self._granted))
            actions.append(Record(EventKind.NOT_PASSED, self._granted.direction, "interrupted"))
        self._granted = None

    def _scanned(self, decision: Decision, actions: list[Action]) -> None:
        if self._pending is not None:
            raise RuntimeError("a scan arrived while the previous decision waits for its record")
        if decision.admit and self.state not in ACCEPTING:
            raise RuntimeError(f"an admit handed to the machine in state {self.state}")
        self._pending = decision
        actions.append(RecordDecision(decision, reserve=decision.admit))

    def _recorded(self, recorded: Recorded, now: float, actions: list[Action]) -> None:
        decision = self._pending
        if decision is None or recorded.decision is not decision:
            raise RuntimeError("Recorded does not answer the pending decision")
        self._pending = None
        accepting = self.state in ACCEPTING
        if not recorded.ok:
            # Nothing moves for a decision the journal does not hold: refuse, and say why.
            self.health = replace(self.health, fault=journal_fault(recorded.cause))
            if not accepting:
                actions.append(Announce(decision))
                return
            refusal = decision.refused_for_fault(recorded.cause)
            actions.append(Cue(Signal.REFUSED, self._reader, decision.direction))
            actions.append(Announce(refusal))
            self._enter(self._resting_state(), now, actions)  # the FAULT screen, with its cause, stays
            return
        if not accepting:  # busy, emergency, out of service: the refusal only needed its record
            actions.append(Announce(decision))
            return
        if not decision.admit:
            self.state = State.REFUSED
            self._state_end = now + self.timing.refusal_display_s
            self._set(replace(SAFE, red=True), actions)
            actions.append(Cue(Signal.REFUSED, self._reader, decision.direction))
            actions.append(Announce(decision))
            return
        self._granted = decision
        self.state = State.GRANTED
        if self.commit_at_grant:
            actions.append(Commit(decision))
        self._set(Outputs(green=True), actions)
        actions.append(Pulse(decision.direction, self.timing.relay_pulse_s))
        actions.append(Cue(Signal.GRANTED, self._reader, decision.direction))
        wait = self.timing.relay_pulse_s if self.commit_at_grant else self.timing.passage_timeout_s
        self._state_end = now + wait
        actions.append(Announce(decision))

    def _passage(self, direction: Direction, now: float, actions: list[Action]) -> None:
        if self.state is State.GRANTED and self._granted and self._granted.direction is direction:
            decision, self._granted = self._granted, None
            if not self.commit_at_grant:  # its ``redeemed`` record is the passage: counted once
                actions.append(Commit(decision))
            self._enter(self._resting_state(), now, actions)
        elif self.state in (State.EMERGENCY, State.MAINTENANCE_FREE):
            actions.append(Record(EventKind.PASSAGE, direction, "free passage"))
        elif self.free_exit and direction is Direction.EXIT:
            actions.append(Record(EventKind.PASSAGE, direction, "free exit"))
        else:
            actions.append(Record(EventKind.FORCED_PASSAGE, direction))
            actions.append(Cue(Signal.ALARM, direction=direction))
            event = {"kind": "alarm", "alarm": str(EventKind.FORCED_PASSAGE), "direction": str(direction),
                     "t": now, "text": "Forced passage", "state": str(self.state)}
            actions.append(Show(event))

    def _tick(self, now: float, actions: list[Action]) -> None:
        if self._state_end is None or now < self._state_end:
            return
        if self._granted is not None:  # only GRANTED holds a grant: the passage never came
            decision, self._granted = self._granted, None
            if not self.commit_at_grant:
                actions.append(GiveBack(decision))
                actions.append(Record(EventKind.NOT_PASSED, decision.direction, "timeout"))
        self._enter(self._resting_state(), now, actions)
