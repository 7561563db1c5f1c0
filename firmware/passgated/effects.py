"""Carrying out the machine's actions: record first, then actuate, and never lose a fault.

``Effects.run(actions)`` does what the state machine asked, in order, and returns the events the
machine must hear next: the journal's answer to each ``RecordDecision`` (``Recorded``). Every journal
write can fail (disk full, I/O error, a lock held by another process, a write slower than the bound);
a failure never propagates as an exception and never skips an output's safe state: it becomes the
journal fault the control loop reports to the machine, and each record it cost is counted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from passgate import wire
from passgate.feedback import Cue, Feedback

from .io import GateIO
from .journal import Journal, JournalDamaged, JournalError
from .machine import (
    Action,
    Announce,
    Commit,
    Event,
    GiveBack,
    Latch,
    Pulse,
    Record,
    RecordDecision,
    Recorded,
    SetOutputs,
    Show,
)
from .policy import Decision
from .records import EventKind

log = logging.getLogger("passgated")
LOG_EVERY_S = 5.0  # while the journal fails, one log line per this many seconds


class Effects:
    """The hands of the control loop: journal, pins, guard page. Used from the loop's thread only.

    ``announce(decision, latency_ms)`` gets each scan's final answer; ``show(event)`` state changes
    and alarms for the guard page; ``passed(direction)`` each passage once it is recorded, by the
    contract's rule (``wire.counts_as_passage``), so the gate counts what the hub counts."""

    def __init__(self, journal: Journal, io: GateIO, *, announce: Callable[[Decision, float], None],
                 show: Callable[[dict[str, Any]], None], wall: Callable[[], float] = time.time,
                 passed: Callable[[str], None] | None = None, feedback: Sequence[Feedback] = ()) -> None:
        self.journal = journal
        self.io = io
        self.feedback: tuple[Feedback, ...] = (io, *feedback)
        self._feedback_logged: dict[int, float] = {}  # id(device) -> when its last failure was logged
        self.announce = announce
        self.show = show
        self.passed = passed
        self.wall = wall
        self.fault: str | None = None  # the journal's last failure, until a write succeeds again
        self.fault_since: float | None = None
        self.damaged: str | None = None  # the file itself is damaged: only a restart sets it aside
        self.lost_records = 0  # journal writes that failed (each also logged, at most every 5 s)
        self._inflight: dict[int, str] = {}  # id(decision) -> its reservation
        self._last_log = float("-inf")

    def run(self, actions: list[Action], *, latency_ms: float = 0.0) -> list[Event]:
        feedback: list[Event] = []
        for action in actions:
            match action:
                case RecordDecision(decision=decision, reserve=reserve):
                    try:
                        rid = self.journal.record_decision(decision, latency_ms, reserve=reserve)
                    except JournalError as exc:
                        self._failed(exc, "decision")
                        feedback.append(Recorded(decision, False, str(exc)))
                    else:
                        self._worked()
                        if rid:
                            self._inflight[id(decision)] = rid
                        feedback.append(Recorded(decision, True))
                case SetOutputs(outputs=outputs):
                    self.io.apply(outputs)
                case Pulse(direction=direction, seconds=seconds):
                    self.io.pulse(direction, seconds)
                case Cue() as cue:
                    self._cue(cue)
                case Commit(decision=decision):
                    # A commit that fails leaves the reservation, which counts as used: fail closed.
                    if (rid := self._inflight.pop(id(decision), None)) and self._write(
                            self.journal.commit, rid, what="commit"):
                        self._count(EventKind.REDEEMED, str(decision.direction), "")
                case GiveBack(decision=decision):
                    if rid := self._inflight.pop(id(decision), None):
                        self._write(self.journal.release, rid, what="give back")
                case Record(kind=kind, direction=direction, detail=detail):
                    if self._write(self.journal.record, kind, what=kind,
                                   direction=str(direction) if direction else None, detail=detail):
                        self._count(kind, str(direction) if direction else None, detail)
                    if kind in (EventKind.FORCED_PASSAGE, EventKind.TAMPER):
                        log.warning("%s %s", kind, direction or "")
                case Latch(latched=latched):
                    self._write(self.journal.set_emergency_latched, latched, what="emergency latch")
                case Show(event=event):
                    self.show({**event, "t": self.wall()})
                case Announce(decision=decision):
                    self.announce(decision, latency_ms)
        return feedback

    def _cue(self, cue: Cue) -> None:
        """Every feedback device shows the cue; one that fails is logged (at most every 5 s) and
        skipped: a cue never holds up the loop or another device."""
        for device in self.feedback:
            try:
                device.cue(cue)
            except Exception as exc:
                now = time.monotonic()
                if now - self._feedback_logged.get(id(device), float("-inf")) >= LOG_EVERY_S:
                    self._feedback_logged[id(device)] = now
                    log.error("feedback %r cannot show %s: %s: %s", device, cue.signal,
                              type(exc).__name__, exc)

    def _write(self, write: Callable[..., object], *args: Any, what: str, **kwargs: Any) -> bool:
        try:
            write(*args, **kwargs)
        except JournalError as exc:
            self._failed(exc, what)
            return False
        self._worked()
        return True

    def _count(self, kind: str, direction: str | None, detail: str) -> None:
        if self.passed is not None and direction and wire.counts_as_passage(kind, detail):
            self.passed(direction)

    def note(self, exc: JournalError, what: str) -> None:
        """A failure met outside an action (the usage lookup of a decision)."""
        if isinstance(exc, JournalDamaged):
            self.damaged = str(exc)
        now = time.monotonic()
        if now - self._last_log >= LOG_EVERY_S:
            self._last_log = now
            log.error("journal cannot answer (%s): %s", what, exc)

    def _failed(self, exc: JournalError, what: str) -> None:
        if isinstance(exc, JournalDamaged):
            self.damaged = str(exc)
        self.lost_records += 1
        if self.fault is None:
            self.fault_since = self.wall()
        self.fault = str(exc)
        now = time.monotonic()
        if now - self._last_log >= LOG_EVERY_S:
            self._last_log = now
            log.error("journal cannot record (%s): %s; %d record(s) lost so far", what, exc,
                      self.lost_records)

    def _worked(self) -> None:
        if self.fault is None:
            return
        cause, since = self.fault, self.fault_since
        self.fault = self.fault_since = None
        log.warning("journal records again after %.1f s (%s)", self.wall() - (since or self.wall()), cause)
        try:
            self.journal.record(EventKind.FAULT_CLEARED,
                                detail=f"{cause}; {self.lost_records} record(s) lost in all")
        except JournalError as exc:
            self._failed(exc, "fault cleared")

    def probe(self) -> None:
        """While faulted: one small write; success clears the fault."""
        try:
            self.journal.probe()
        except JournalError as exc:
            self.fault = str(exc)
        else:
            self._worked()
