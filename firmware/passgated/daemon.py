"""The running gate: wiring of scanner sources, verification, policy, state machine, GPIO, journal,
guard display and sync, around one control loop that owns the state.

Data flows one way: scan → pass → decision → actuation → journal → sync. Sources run in their own
threads and put scans on one queue; gpiozero input callbacks put events on the same queue; the
control loop takes them in order, runs the state machine and carries out its actions. The fire
loop jumps the queue: its callback drives the release outputs itself, and its event goes to an
urgent queue the loop drains before anything else.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import queue
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from passgate import PassRefused, TrustStore, verify_signature
from passgate.scanners import Scan, ScannerSource, open_scanner

from .config import GateConfig
from .display import GateMetrics, GuardDisplay
from .droplists import ListDropFolder
from .io import GateIO, make_pin_factory
from .journal import Journal, unsent_count
from .machine import (
    Beep,
    Booted,
    Commit,
    Event,
    FireLoop,
    GateMachine,
    Health,
    Maintenance,
    Record,
    Release,
    Reserve,
    ResetRequested,
    Scanned,
    SetOutputs,
    Show,
    State,
    Tick,
)
from .policy import Context, Decision, Direction, decide

log = logging.getLogger("passgated")
STOP = object()
HEALTH_EVERY_S = 1.0
# Queue priorities: shutdown first, then hardware and operator events, then scans. A backlog of
# scans must never delay a passage edge, a reset or a shutdown.
PRIO_STOP, PRIO_EVENT, PRIO_SCAN = 0, 1, 2


@dataclass(frozen=True, slots=True)
class Clock:
    """The gate's two clocks: monotonic for timers (a wall-clock jump never holds a turnstile
    open), wall time for validity windows and the journal."""

    monotonic: Callable[[], float] = time.monotonic
    wall: Callable[[], float] = time.time


class _NoList:
    """Stands in for a deny list when none is configured."""

    version = 0

    def __contains__(self, pass_id: object) -> bool:
        return False


def hub_trust_dir(config: GateConfig) -> Path:
    """Keys the hub sends; the sync client owns this directory, the operator's stays apart."""
    return config.journal_path.parent / "hub-trust"


def denylist_dir(config: GateConfig) -> Path | None:
    """Where the gate keeps its deny lists (with a hub and no [denylist] dir: beside the journal)."""
    if config.denylist_dir is None and config.hub is not None:
        return config.journal_path.parent / "lists"
    return config.denylist_dir


def load_gate_trust(config: GateConfig) -> TrustStore:
    """The operator's trust directory plus, with a hub, the issuer keys the hub sent."""
    store = TrustStore()
    directories = [config.trust_dir] if config.trust_dir is not None else []
    if config.hub is not None and any(hub_trust_dir(config).glob("*.pem")):
        directories.append(hub_trust_dir(config))
    for directory in directories:
        for key in TrustStore.load(directory):
            store.add(key)
    if not len(store) and config.hub is None:
        log.warning("no trusted keys configured: every pass will be refused (unknown_key)")
    return store


class Gate:
    """One gate. ``start()`` boots it; ``stop()`` leaves every output safe.

    >>> gate = Gate(load_config(), sources=[])          # doctest: +SKIP
    >>> gate.start(); gate.submit_scan(scan, Direction.ENTRY)   # doctest: +SKIP
    """

    def __init__(
        self,
        config: GateConfig,
        *,
        pin_factory: Any = None,
        trust: TrustStore | None = None,
        sources: list[tuple[ScannerSource, Direction]] | None = None,
        clock: Clock = Clock(),
        on_decision: Callable[[dict[str, Any]], None] | None = None,
        display: bool = True,
    ) -> None:
        self.config = config
        self.clock = clock
        self.on_decision = on_decision
        self.trust = trust if trust is not None else self._load_trust()
        self.pin_factory = pin_factory if pin_factory is not None else make_pin_factory(config.pin_factory)
        self.machine = GateMachine(config.timing, commit_at_grant=config.commit_at_grant,
                                   free_exit=config.exit_mode == "free")
        self.journal = Journal(config.journal_path, config.gate_id, clock=clock.wall,
                               background_checkpoint=True,
                               retention=(config.retention_days, config.hub is not None))
        if self.journal.recovered:
            log.warning("journal: %d reservation(s) from before a restart counted as used",
                        self.journal.recovered)
        self.denylists = self._load_denylists()
        directory = denylist_dir(config)
        self.drop_folder = (ListDropFolder(directory, self.denylists, lambda: self.trust)
                            if directory is not None else None)
        self.io = GateIO(config, self.pin_factory, self._input_event)
        self.sources = sources if sources is not None else [
            (open_scanner(spec.source, **spec.options), spec.direction) for spec in config.scanners
        ]
        self.metrics = GateMetrics()
        self.display: GuardDisplay | None = None
        if display and config.display_listen:
            host, port = config.display_listen.rsplit(":", 1)
            self.display = GuardDisplay(status=self.status, metrics=self.metrics, control=self.control,
                                        host=host, port=int(port), control_from=config.control_from)
        self.sync = None
        self._queue: queue.PriorityQueue[tuple[int, int, Any]] = queue.PriorityQueue()
        self._order = itertools.count()  # FIFO within one priority
        self._urgent: queue.SimpleQueue[Event] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._inflight: dict[int, str] = {}
        self._stopped = threading.Event()
        self._settled = threading.Condition()
        self._started_wall = clock.wall()
        self._counts: Counter[str] = Counter()
        self._counts_day = time.strftime("%Y-%m-%d", time.localtime(clock.wall()))
        self._last_decision: dict[str, Any] | None = None
        self._last_health = -HEALTH_EVERY_S
        self._watchdog_s = _watchdog_interval()

    # -- set-up -------------------------------------------------------------------------------
    def _load_trust(self) -> TrustStore:
        return load_gate_trust(self.config)

    def _load_denylists(self) -> dict[str, Any]:
        directory = denylist_dir(self.config)
        if directory is None:
            return {"revoked": _NoList(), "blocked": _NoList()}
        from passgate.denylist import CorruptFileError, LiveDenyList

        scope = self.config.denylist_scope or self.config.venue
        directory.mkdir(parents=True, exist_ok=True)
        lists = {}
        for kind in ("revoked", "blocked"):
            path = directory / f"{kind}.pgdl"
            try:
                lists[kind] = LiveDenyList(path, kind=kind, scope=scope)
            except CorruptFileError as exc:
                # Keep the evidence, start empty (version 0 = stale: the stale policy rules), and
                # let the sync client fetch a fresh snapshot.
                aside = path.with_suffix(".corrupt")
                path.replace(aside)
                log.error("%s; moved to %s, starting with an empty %s list", exc, aside, kind)
                lists[kind] = LiveDenyList(path, kind=kind, scope=scope)
        return lists

    def start(self) -> None:
        """Boot: outputs safe, inputs read, machine booted, then the threads; READY last."""
        self.io.safe()
        now = self.clock.monotonic()
        self._execute(self.machine.handle(Booted(fire_loop_closed=self.io.fire_loop_closed), now))
        self.io.start()
        if self.drop_folder is not None:
            self.drop_folder.scan_once()  # lists dropped while the gate was off apply before READY
            self.drop_folder.start()
        if self.display is not None:
            self.display.start()
            log.info("guard display on %s", self.display.url)
        if self.config.hub is not None:
            self._start_sync()
        self.journal.purge(self.config.retention_days, keep_unsent=self.config.hub is not None)
        loop = threading.Thread(target=self._loop, name="control-loop", daemon=True)
        self._threads.append(loop)
        loop.start()
        for source, direction in self.sources:
            thread = threading.Thread(target=self._read_source, args=(source, direction),
                                      name=f"scanner {source.source}", daemon=True)
            self._threads.append(thread)
            thread.start()
        _sd_notify("READY=1")
        log.info("gate %s ready: state %s", self.config.gate_id, self.machine.state)

    def _start_sync(self) -> None:
        from .sync import SyncClient

        self.sync = SyncClient(
            self.config.hub, journal_path=self.config.journal_path, gate_id=self.config.gate_id,
            denylists={k: v for k, v in self.denylists.items() if not isinstance(v, _NoList)},
            trust_dir=hub_trust_dir(self.config), on_trust_changed=self._reload_trust, clock=self.clock.wall,
        )
        self.sync.start()

    def _reload_trust(self) -> None:
        self.trust = self._load_trust()

    # -- inputs from other threads ------------------------------------------------------------
    def _put(self, priority: int, item: Any) -> None:
        self._queue.put((priority, next(self._order), item))

    def _read_source(self, source: ScannerSource, direction: Direction) -> None:
        try:
            for scan in source:
                self._put(PRIO_SCAN, (scan, direction))
        except Exception:
            log.exception("scanner %s stopped", source.source)
        finally:
            self._put(PRIO_EVENT, None)  # wake the loop so it re-checks scanner health

    def submit_scan(self, scan: Scan, direction: Direction = Direction.ENTRY) -> None:
        self._put(PRIO_SCAN, (scan, direction))

    def submit(self, event: Event) -> None:
        self._put(PRIO_EVENT, event)

    def _input_event(self, event: Event) -> None:
        if isinstance(event, FireLoop):
            self._urgent.put(event)
            self._put(PRIO_STOP, None)  # wake the loop ahead of everything else
        else:
            self._put(PRIO_EVENT, event)

    def control(self, command: str, body: dict[str, Any]) -> dict[str, Any]:
        """Operator commands from the display server (loopback only by default)."""
        if command == "reset":
            self.submit(ResetRequested())
        elif command == "maintenance":
            mode = body.get("mode")
            if mode not in (None, "free", "locked"):
                raise ValueError("mode must be 'free', 'locked' or null")
            self.submit(Maintenance(mode))
        else:
            raise ValueError(f"unknown command {command!r}")
        return {"ok": True, "command": command}

    # -- the control loop ---------------------------------------------------------------------
    def _loop(self) -> None:
        last_ping = 0.0
        while True:
            deadline = self.machine.next_deadline()
            timeout = HEALTH_EVERY_S if deadline is None else max(0.0, deadline - self.clock.monotonic())
            if self._watchdog_s:
                timeout = min(timeout, self._watchdog_s)
            try:
                _, _, item = self._queue.get(timeout=min(timeout, HEALTH_EVERY_S))
                got = True
            except queue.Empty:
                item, got = None, False
            if item is STOP:
                return
            try:
                self._drain_urgent()
                if isinstance(item, tuple):
                    self._on_scan(*item)
                elif item is not None:
                    self._execute(self.machine.handle(item, self.clock.monotonic()))
                self._execute(self.machine.handle(Tick(), self.clock.monotonic()))
                self._check_health(now_please=isinstance(item, Tick))
            except Exception:
                log.exception("control loop error; outputs kept safe")
                self.io.apply(self.machine.outputs)
            if got:
                self._queue.task_done()  # after the work, so wait_settled never sees a scan in flight
            with self._settled:
                self._settled.notify_all()
            if self._watchdog_s and time.monotonic() - last_ping >= self._watchdog_s:
                last_ping = time.monotonic()
                _sd_notify("WATCHDOG=1")

    def _drain_urgent(self) -> None:
        while True:
            try:
                event = self._urgent.get_nowait()
            except queue.Empty:
                return
            self._execute(self.machine.handle(event, self.clock.monotonic()))

    def _check_health(self, *, now_please: bool = False) -> None:
        now = self.clock.monotonic()
        if now - self._last_health < HEALTH_EVERY_S and not now_please:
            return
        self._last_health = now
        health = Health(scanners_ok=all(source.health()["connected"] for source, _ in self.sources),
                        turnstile_ready=self.io.turnstile_ready)
        if health != self.machine.health:
            log.warning("health: scanners %s, turnstile %s", "ok" if health.scanners_ok else "GONE",
                        "ready" if health.turnstile_ready else "NOT READY")
            self._execute(self.machine.handle(health, now))

    def _on_scan(self, scan: Scan, direction: Direction) -> None:
        refusal = self.machine.refusal_for_scan()
        if refusal is not None:
            decision = Decision(False, refusal, refusal.text, direction)
        else:
            try:
                result = verify_signature(scan.text if scan.text is not None else scan.bytes, self.trust)
            except PassRefused as refused:
                result = refused
            revoked, blocked = self.denylists["revoked"], self.denylists["blocked"]
            context = Context(
                now=self.clock.wall(), direction=direction,
                revoked=getattr(revoked, "current", revoked), blocked=getattr(blocked, "current", blocked),
                usage=self.journal, lists_stale=self._lists_stale(),
            )
            decision = decide(result, context, self.config.policy)
        latency_ms = (self.clock.monotonic() - scan.t) * 1000
        if refusal is None:
            self._execute(self.machine.handle(Scanned(decision), self.clock.monotonic()),
                          latency_ms=latency_ms)
        if not decision.admit:
            self.journal.record_decision(decision, latency_ms)
        self._after_decision(decision, latency_ms)

    def _lists_stale(self) -> bool:
        lists = [v for v in self.denylists.values() if not isinstance(v, _NoList)]
        return any(live.current.age(self.clock.wall()) > self.config.max_list_age_s for live in lists)

    def _after_decision(self, decision: Decision, latency_ms: float) -> None:
        t = self.clock.wall()
        event = {
            "kind": "decision", "decision": decision.verdict, "reason": str(decision.reason),
            "text": decision.text, "direction": str(decision.direction),
            "pass_id": decision.pass_id.hex() if decision.pass_id else None, "t": t,
            "guard_check": decision.guard_check,
        }
        self._last_decision = event
        day = time.strftime("%Y-%m-%d", time.localtime(t))
        if day != self._counts_day:
            self._counts_day, self._counts = day, Counter()
        self._counts[str(decision.reason)] += 1
        self.metrics.observe_decision(decision.verdict, str(decision.reason), str(decision.direction),
                                      latency_ms / 1000)
        if self.display is not None:
            self.display.publish(event)
        if self.on_decision is not None:
            self.on_decision({"t": t, "pass_id": event["pass_id"], "direction": event["direction"],
                              "decision": decision.verdict, "reason": event["reason"],
                              "text": decision.text, "latency_ms": round(latency_ms, 3)})

    def _execute(self, actions: list[Any], *, latency_ms: float = 0.0) -> None:
        for action in actions:
            match action:
                case Reserve(decision=decision):
                    # Durable before the relay moves: a power cut can never lose an admitted entry.
                    rid = self.journal.record_decision(decision, latency_ms, reserve=True)
                    if rid:
                        self._inflight[id(decision)] = rid
                case SetOutputs(outputs=outputs):
                    self.io.apply(outputs)
                case Beep(pattern=pattern):
                    self.io.beep(pattern)
                case Commit(decision=decision):
                    rid = self._inflight.pop(id(decision), None)
                    if rid:
                        self.journal.commit(rid)
                case Release(decision=decision):
                    rid = self._inflight.pop(id(decision), None)
                    if rid:
                        self.journal.release(rid)
                case Record(kind=kind, direction=direction, detail=detail):
                    self.journal.record(kind, direction=str(direction) if direction else None, detail=detail)
                    if kind == "state":
                        self.metrics.set_state(str(self.machine.state))
                    if kind in ("forced_passage", "tamper"):
                        log.warning("%s %s", kind, direction or "")
                case Show(event=event):
                    if self.display is not None:
                        self.display.publish({**event, "t": self.clock.wall()})

    # -- queries ------------------------------------------------------------------------------
    @property
    def state(self) -> State:
        return self.machine.state

    def wait_settled(self, timeout: float = 10.0) -> bool:
        """Block until every queued scan and event is handled and no grant is waiting for its
        passage (simulation feeds one person at a time; tests wait on it instead of sleeping)."""
        def settled() -> bool:
            return self._queue.unfinished_tasks == 0 and self.machine.state is not State.GRANTED

        with self._settled:
            return self._settled.wait_for(settled, timeout)

    def status(self) -> dict[str, Any]:
        now = self.clock.wall()
        lists = {
            kind: {"version": live.current.version, "entries": len(live.current),
                   "age_s": round(live.current.age(now), 1)}
            for kind, live in self.denylists.items() if not isinstance(live, _NoList)
        }
        return {
            "gate_id": self.config.gate_id,
            "venue": self.config.venue,
            "zones": list(self.config.policy.zones),
            "state": str(self.machine.state),
            "fire_loop_closed": self.machine.fire_loop_closed,
            "last_decision": self._last_decision,
            "counts_today": dict(self._counts),
            "lists": lists,
            "lists_stale": self._lists_stale(),
            "scanners": [source.health() for source, _ in self.sources],
            "journal_backlog": unsent_count(self.config.journal_path),
            "sync": self._sync_status(now),
            "uptime_s": round(now - self._started_wall, 1),
        }

    def _sync_status(self, now: float) -> dict[str, Any] | None:
        if self.sync is None:
            return None
        status = self.sync.status()
        last = status.get("last_success")
        status["last_success_age_s"] = round(now - last, 1) if last else None
        return status

    # -- shutdown -----------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop sources and the loop, leave outputs safe, close the journal. Idempotent."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        _sd_notify("STOPPING=1")
        for source, _ in self.sources:
            source.close()
        self._put(PRIO_STOP, STOP)
        for thread in self._threads:
            thread.join(timeout=5)
        if self.sync is not None:
            self.sync.close()
        if self.drop_folder is not None:
            self.drop_folder.close()
        if self.display is not None:
            self.display.close()
        self.io.safe()
        self.io.close()
        self.journal.close()
        log.info("gate %s stopped; outputs safe", self.config.gate_id)

    def __enter__(self) -> Gate:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def _watchdog_interval() -> float:
    """Half of systemd's WatchdogSec, when this process is the one being watched."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return 0.0
    return int(usec) / 2e6


def _sd_notify(message: str) -> None:
    """systemd's notify protocol (one datagram to $NOTIFY_SOCKET); a no-op outside systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        try:
            sock.sendto(message.encode(), address)
        except OSError as exc:
            log.warning("sd_notify %s failed: %s", message, exc)


def decision_line(record: dict[str, Any]) -> str:
    """One JSON line per decision, for ``simulate``'s stdout."""
    return json.dumps(record, separators=(", ", ": "))

