"""The control loop: one thread owns the state machine and takes every event in order.

Sources put scans on one queue; input callbacks put edges on it; operator commands wait on it for
their answer. The fire loop jumps the queue: its callback drives the release outputs itself and its
event goes to an urgent queue drained before anything else. Each turn: urgent events, one queued
item, a ``Tick`` (timeouts), and, once a second, a health check; then the state is published (after
its outputs were applied, so whoever watches ``state`` sees the pins already set) and the systemd
watchdog is pinged. An unexpected error in a turn is logged and counted, the scan it cost is still
answered (with a refusal), and the outputs stay as the machine holds them; a relay only ever moves
for a recorded grant.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from passgate import Reason
from passgate.scanners import Scan

from .effects import Effects
from .journal import JournalError
from .machine import Event, FireLoop, GateMachine, Health, Scanned, State, Tick
from .policy import Decision, Direction
from .systemd import Watchdog

log = logging.getLogger("passgated")
HEALTH_EVERY_S = 1.0
# Queue priorities: shutdown and the fire alarm first, then hardware and operator events, then scans.
# A backlog of scans must never delay a passage edge, a reset or a shutdown.
PRIO_STOP, PRIO_EVENT, PRIO_SCAN = 0, 1, 2
_STOP = object()
_WAKE = object()


@dataclass(frozen=True, slots=True)
class Clock:
    """The gate's two clocks: monotonic for timers (a wall-clock jump never holds a turnstile
    open), wall time for validity windows and the journal."""

    monotonic: Callable[[], float] = time.monotonic
    wall: Callable[[], float] = time.time


@dataclass(frozen=True, slots=True)
class _Scan:
    scan: Scan
    direction: Direction


@dataclass(slots=True)
class _Call:
    """An event whose sender waits until the loop has handled it."""

    event: Event
    done: threading.Event
    state: State | None = None


class ControlLoop:
    """Runs the machine: ``decide(scan, direction)`` gives a scan's decision (verification and
    policy), ``health()`` what the gate needs to take scans, ``effects`` carries out actions."""

    def __init__(self, machine: GateMachine, effects: Effects, *,
                 decide: Callable[[Scan, Direction], Decision], health: Callable[[], Health],
                 clock: Clock = Clock(), watchdog: Watchdog | None = None) -> None:
        self.machine = machine
        self.effects = effects
        self.decide = decide
        self.health = health
        self.clock = clock
        self.watchdog = watchdog or Watchdog()
        self.errors = 0  # turns that failed unexpectedly (each logged with its traceback)
        self.state = machine.state  # published after a turn's outputs are applied
        self._queue: queue.PriorityQueue[tuple[int, int, Any]] = queue.PriorityQueue()
        self._order = itertools.count()  # FIFO within one priority
        self._urgent: queue.SimpleQueue[Event] = queue.SimpleQueue()
        self._settled = threading.Condition()
        self._thread: threading.Thread | None = None
        self._last_health = float("-inf")

    # -- from other threads -------------------------------------------------------------------
    def _put(self, priority: int, item: Any) -> None:
        self._queue.put((priority, next(self._order), item))

    def submit_scan(self, scan: Scan, direction: Direction) -> None:
        self._put(PRIO_SCAN, _Scan(scan, direction))

    def submit(self, event: Event) -> None:
        self._put(PRIO_EVENT, event)

    def input_event(self, event: Event) -> None:
        """gpiozero's input callbacks: the fire loop goes ahead of everything else."""
        if isinstance(event, FireLoop):
            self._urgent.put(event)
            self._put(PRIO_STOP, _WAKE)
        else:
            self._put(PRIO_EVENT, event)

    def wake(self) -> None:
        """Re-check health now (a scanner stopped)."""
        self._put(PRIO_EVENT, _WAKE)

    def call(self, event: Event, timeout: float = 5.0) -> State:
        """Hand an event to the loop and wait until it was handled; returns the state after it.
        Raises ``TimeoutError`` when the loop does not answer (stalled)."""
        call = _Call(event, threading.Event())
        self._put(PRIO_EVENT, call)
        if not call.done.wait(timeout):
            raise TimeoutError("the gate's control loop did not answer")
        assert call.state is not None
        return call.state

    # -- running ------------------------------------------------------------------------------
    def handle(self, event: Event, *, latency_ms: float = 0.0) -> None:
        """Run an event and everything it leads to (the journal's answers) through the machine.
        Only from the loop's thread, or before it starts (boot)."""
        pending: list[Event] = [event]
        while pending:
            actions = self.machine.handle(pending.pop(0), self.clock.monotonic())
            pending.extend(self.effects.run(actions, latency_ms=latency_ms))

    def start(self) -> None:
        self.state = self.machine.state
        self._thread = threading.Thread(target=self._run, name="control-loop", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        if self._thread is None:
            return
        self._put(PRIO_STOP, _STOP)
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.error("control loop did not stop within %.0f s", timeout)

    def _run(self) -> None:
        while True:
            deadline = self.machine.next_deadline()
            now = self.clock.monotonic()
            timeout = HEALTH_EVERY_S if deadline is None else min(max(0.0, deadline - now), HEALTH_EVERY_S)
            try:
                _, _, item = self._queue.get(timeout=timeout)
                got = True
            except queue.Empty:
                item, got = None, False
            if item is _STOP:
                self._queue.task_done()
                return
            ok = self._turn(item)
            with self._settled:  # state and task count change together for wait_settled
                self.state = self.machine.state
                if got:
                    self._queue.task_done()  # after the work: wait_settled never sees a scan in flight
                self._settled.notify_all()
            if isinstance(item, _Call):
                item.state = self.state
                item.done.set()
            if ok:
                self.watchdog.progressed()

    def _turn(self, item: Any) -> bool:
        try:
            self._drain_urgent()
            if isinstance(item, _Scan):
                self._on_scan(item.scan, item.direction)
            elif isinstance(item, _Call):
                self.handle(item.event)
            elif item is not None and item is not _WAKE:
                self.handle(item)
            self.handle(Tick())
            self._check_health(force=item is _WAKE or isinstance(item, Tick))
            return True
        except Exception:
            self.errors += 1
            log.exception("control loop error (%d so far); outputs kept as the machine holds them",
                          self.errors)
            lost = self.machine.abandon_pending()
            if lost is not None:  # the scan is still answered
                self.effects.announce(_refusal(lost.direction, "internal error: see the gate's log"), 0.0)
            self.effects.io.apply(self.machine.outputs)
            return False

    def _drain_urgent(self) -> None:
        while True:
            try:
                event = self._urgent.get_nowait()
            except queue.Empty:
                return
            self.handle(event)

    def _on_scan(self, scan: Scan, direction: Direction) -> None:
        refusal = self.machine.refusal_for_scan()
        if refusal is not None:
            decision = Decision(False, refusal, refusal.text, direction, detail=self.machine.fault or "")
        else:
            try:
                decision = self.decide(scan, direction)
            except JournalError as exc:  # the usage lookup failed: refuse, and the record says why
                self.effects.note(exc, "usage lookup")
                decision = _refusal(direction, str(exc))
        latency_ms = (self.clock.monotonic() - scan.t) * 1000
        self.handle(Scanned(decision, scan.origin), latency_ms=latency_ms)

    def _check_health(self, *, force: bool = False) -> None:
        now = self.clock.monotonic()
        if now - self._last_health < HEALTH_EVERY_S and not force:
            return
        self._last_health = now
        health = self.health()
        if health != self.machine.health:
            log.warning("health: scanners %s, turnstile %s, %s", "ok" if health.scanners_ok else "GONE",
                        "ready" if health.turnstile_ready else "NOT READY", health.fault or "no fault")
            self.handle(health)

    # -- queries ------------------------------------------------------------------------------
    def wait_settled(self, timeout: float = 10.0) -> bool:
        """Block until every queued scan and event is handled and no grant waits for its passage
        (simulation feeds one person at a time; tests wait on it instead of sleeping)."""
        def settled() -> bool:
            return self._queue.unfinished_tasks == 0 and self.state is not State.GRANTED

        with self._settled:
            return self._settled.wait_for(settled, timeout)


def _refusal(direction: Direction, detail: str) -> Decision:
    return Decision(False, Reason.GATE_FAULT, Reason.GATE_FAULT.text, direction, detail=detail)

