"""A gate assembled from its config: scanner sources, verification, policy, state machine, pins,
journal, deny lists, guard display, control socket, hub sync and the workers that keep them, around
one control loop (``passgated.loop``) that owns the state.

Data flows one way: scan → pass → decision → record → actuation → sync. ``start()`` boots with
every output safe and every input read, then starts the threads and tells systemd READY; ``stop()``
leaves the outputs safe (an EMERGENCY keeps its release driven) and closes everything.

    with Gate(load_config("gate.toml")) as gate:
        gate.start()
        ...
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from passgate import PassRefused, Reason, TrustStore, verify_signature, wire
from passgate.feedback import Feedback
from passgate.passes import PREFIX as PG1_PREFIX
from passgate.pretix import PretixTicket, is_sig1
from passgate.scanners import Scan, ScanKind, ScannerSource, open_scanner

from . import droplists, settings
from .config import ExitMode, GateConfig, ReaderFault
from .control import Command, ControlRefused, ControlRequest, ControlServer
from .denylists import DenyLists, kinds_in_use
from .display import GateMetrics, GuardDisplay
from .effects import Effects
from .io import GateIO, make_pin_factory
from .journal import JournalError, open_journal
from .layout import GateLayout
from .loop import Clock, ControlLoop
from .machine import (
    Booted,
    GateMachine,
    Health,
    Maintenance,
    ReaderLink,
    ResetRequested,
    State,
    Tamper,
    journal_fault,
)
from .policy import Context, Decision, Direction, PretixPolicy, decide
from .pretix_event import PretixEvent
from .status import AWAITING_HUB, Answers, StatusCollector, gate_status
from .systemd import notify
from .upkeep import CHECKPOINT_EVERY_S, JournalUpkeep
from .workers import Worker

log = logging.getLogger("passgated")
DEFAULT_CLOCK = Clock()
# How long boot waits for its scanners to connect before READY (an OSDP reader's secure channel takes
# a moment): meanwhile they count as present; one still missing after it puts the gate in FAULT.
SCANNERS_AT_BOOT_S = 5.0


def load_gate_trust(config: GateConfig, layout: GateLayout | None = None) -> TrustStore:
    """The operator's trust directory plus, with a hub, the issuer keys the hub sent."""
    layout = layout or GateLayout.from_config(config)
    store = TrustStore()
    directories = [config.trust_dir] if config.trust_dir is not None else []
    if config.hub is not None:  # the hub supplies keys: the operator's directory may be empty
        directories = [d for d in directories if any(d.glob("*.pem"))]
        if any(layout.hub_trust_dir.glob("*.pem")):
            directories.append(layout.hub_trust_dir)
    for directory in directories:
        for key in TrustStore.load(directory):
            store.add(key)
    if not len(store) and config.hub is None:
        log.warning("no trusted keys configured: every pass will be refused (unknown_key)")
    return store


def load_list_trust(config: GateConfig, layout: GateLayout, trust: TrustStore) -> TrustStore:
    """Keys that may have signed the lists kept in ``applied/``: the operator's and the hub's
    (each list still needs a deny-list key of its own scope)."""
    store = TrustStore()
    for key in trust:
        store.add(key)
    if config.hub is not None and any(layout.hub_list_trust_dir.glob("*.pem")):
        for key in TrustStore.load(layout.hub_list_trust_dir):
            store.add(key)
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
        clock: Clock = DEFAULT_CLOCK,
        on_decision: Callable[[dict[str, Any]], None] | None = None,
        display: bool = True,
    ) -> None:
        self.config = config
        self.layout = GateLayout.from_config(config)
        self.clock = clock
        self.on_decision = on_decision
        self.trust = trust if trust is not None else load_gate_trust(config, self.layout)
        self.pin_factory = pin_factory if pin_factory is not None else make_pin_factory(config.pin_factory)
        self.hub_settings = settings.load(self.layout.hub_settings) if config.hub is not None else None
        self.settings = settings.effective(config, self.hub_settings)
        self.machine = GateMachine(self.settings.timing, commit_at_grant=config.commit_at_grant,
                                   free_exit=config.exit_mode is ExitMode.FREE)
        self.journal = open_journal(self.layout.journal, config.gate_id,
                                    aside_dir=self.layout.journal_aside_dir, clock=clock.wall,
                                    write_timeout_s=config.journal_write_timeout_s,
                                    damaged_marker=self.layout.journal_damaged_marker)
        self.journal_recovered = self.journal.recovered
        if self.journal_recovered:
            log.warning("journal: %d reservation(s) from before a restart counted as used",
                        self.journal_recovered)
        self.history_missing: str | None = None
        self.pretix = PretixEvent(config.pretix) if config.pretix is not None else None
        kinds = kinds_in_use(self.layout.lists, config.denylist_kinds, hub=config.hub is not None)
        self.lists = DenyLists(self.layout.lists, kinds, scope=config.denylist_scope or config.venue,
                               trust=self._list_trust, max_age_s=self.settings.max_list_age_s,
                               auto=config.denylist_kinds is None, max_bytes=config.max_list_bytes,
                               clock=clock.wall)
        self.drop_folder = (
            droplists.ListDropFolder(self.layout.lists, self.lists, lambda: self.trust, wall=clock.wall)
            if self.layout.lists is not None else None)
        self.io = GateIO(config, self.pin_factory, lambda event: self.loop.input_event(event))
        self.sources = sources if sources is not None else [
            (open_scanner(spec.source, **spec.options), spec.direction) for spec in config.scanners
        ]
        # What a lost or tampered reader of each source does (injected sources: the defaults).
        self._reader_rules: dict[int, tuple[ReaderFault, ReaderFault]] = {
            id(source): (spec.on_offline, spec.on_tamper)
            for (source, _), spec in zip(self.sources, config.scanners, strict=False) if sources is None}
        # reader -> (connected, tamper, offline since a recorded reader_offline), as last heard
        self._readers_seen: dict[str, tuple[bool, bool, bool]] = {}
        self._readers_lock = threading.Lock()
        self._booting = True  # until start() has waited for the scanners
        self._scanner_news = threading.Event()  # a source's health changed (the boot wait wakes)
        self.metrics = GateMetrics()
        self.answers = Answers()
        self.display: GuardDisplay | None = None
        if display and config.display_listen:
            host, port = config.display_listen.rsplit(":", 1)
            self.display = GuardDisplay(status=self.status, metrics=self.metrics, host=host, port=int(port),
                                        hosts=config.display_hosts, gate_name=config.gate_id,
                                        language=config.display_language, sound=config.display_sound)
        self.effects = Effects(self.journal, self.io, announce=self._announce, show=self._show,
                               wall=clock.wall, passed=self._passed,
                               feedback=[s for s, _ in self.sources if isinstance(s, Feedback)])
        if self.journal.unavailable:  # e.g. a full disk at boot: out of service, and it keeps trying
            self.effects.fault, self.effects.fault_since = self.journal.unavailable, clock.wall()
        self.loop = ControlLoop(self.machine, self.effects, decide=self._decide, health=self._health,
                                clock=clock)
        self.sync: Any = None
        self.control_server: ControlServer | None = None
        self.upkeep = JournalUpkeep(self.journal, retention_days=config.retention_days,
                                    keep_unsent=config.hub is not None,
                                    damaged_marker=self.layout.journal_damaged_marker, clock=clock.wall)
        self.workers: list[Worker] = [
            Worker("journal-upkeep", self.upkeep.step, interval_s=CHECKPOINT_EVERY_S)]
        if self.drop_folder is not None:
            self.workers.append(Worker("denylist-drop", self.drop_folder.step,
                                       interval_s=droplists.SCAN_EVERY_S))
        self._source_threads: list[threading.Thread] = []
        self._stopped = threading.Event()
        self.started_wall = clock.wall()
        try:
            self.control_server = ControlServer(self.layout.control_socket, self.run_command)
        except OSError:  # e.g. an unsafe directory: the gate does not start, and holds nothing open
            if self.display is not None:
                self.display.close()
            self.journal.close()
            raise
        self.metrics.registry.register(StatusCollector(self))  # last: it reads all of the above

    # -- set-up -------------------------------------------------------------------------------
    def _list_trust(self) -> TrustStore:
        return load_list_trust(self.config, self.layout, self.trust)

    def start(self) -> None:
        """Boot: outputs safe, inputs read, machine booted, then the threads; READY last."""
        latched = self._read_latch()
        self.io.safe(keep_release=latched)
        self.loop.handle(Booted(fire_loop_closed=self.io.fire_loop_closed, emergency_latched=latched))
        self.loop.handle(self._health())
        self.io.start()
        if self.drop_folder is not None:
            self.drop_folder.scan_once()  # lists dropped while the gate was off apply before READY
        if self.display is not None:
            self.display.start()
            log.info("guard display on %s", self.display.url)
        if self.control_server is not None:
            self.control_server.start()
            log.info("control socket %s", self.control_server.path)
        if self.config.hub is not None:
            self._start_sync()
        self.workers[0].start()  # journal upkeep: its check and purge run at once, after boot
        for worker in self.workers[1:]:
            worker.start(at_once=False)
        self.loop.start()
        for source, direction in self.sources:
            source.add_listener(self._source_changed)
            thread = threading.Thread(target=self._read_source, args=(source, direction),
                                      name=f"scanner {source.source}", daemon=True)
            self._source_threads.append(thread)
            thread.start()
        if not self._wait_for_scanners(SCANNERS_AT_BOOT_S):
            log.error("scanners not ready after %.0f s: %s", SCANNERS_AT_BOOT_S,
                      ", ".join(self._scanner_faults()))
        self._booting = False
        self.loop.wake()  # the loop looks at the scanners now
        self.loop.watchdog.ready()
        log.info("gate %s ready: state %s", self.config.gate_id, self.machine.state)

    def _wait_for_scanners(self, timeout_s: float) -> bool:
        """Wait until every source is connected (per its reader rules), at most ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while True:
            self._scanner_news.clear()
            if not self._scanner_faults():
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._scanner_news.wait(remaining)

    def _read_latch(self) -> bool:
        try:
            return self.journal.emergency_latched()
        except JournalError as exc:  # the fire loop input still rules
            log.error("cannot read the emergency latch: %s", exc)
            return False

    def _start_sync(self) -> None:
        from .sync import SyncClient

        assert self.config.hub is not None
        self.sync = SyncClient(
            self.config.hub, journal_path=self.layout.journal, gate_id=self.config.gate_id,
            lists=self.lists, trust_dir=self.layout.hub_trust_dir,
            list_trust_dir=self.layout.hub_list_trust_dir, on_trust_changed=self._reload_trust,
            settings_path=self.layout.hub_settings, on_settings=self._hub_settings_changed,
            gate_state=lambda: str(self.loop.state), gate_health=self._heartbeat_health,
            clock=self.clock.wall,
        )
        self.sync.start()

    def _heartbeat_health(self) -> dict[str, Any]:
        """What the hub's fleet page shows of this gate beside its state: why it is out of service,
        its scanners, whether its lists are stale (bounded: a heartbeat is small)."""
        fault = self.machine.fault
        return {"fault": fault[:200] if fault else None,
                "scanners": [{"source": h.source[:64], "connected": h.connected}
                             for h in (source.health() for source, _ in self.sources[:8])],
                "lists_stale": self.lists.stale(self.clock.wall())}

    def _reload_trust(self) -> None:
        self.trust = load_gate_trust(self.config, self.layout)
        self.loop.wake()  # a gate waiting for its first keys re-checks its health at once

    def _hub_settings_changed(self, hub: wire.GateSettings) -> None:
        """From the sync thread: the control loop picks the new settings up at its next decision."""
        new = settings.effective(self.config, hub)
        changed = {key: value for key, value in new.values.items() if self.settings.values.get(key) != value}
        self.hub_settings, self.settings = hub, new
        self.lists.max_age_s = new.max_list_age_s  # the lists are shared: /status sees it at once
        if changed:
            log.warning("settings from the hub: %s",
                        ", ".join(f"{key} = {value!r}" for key, value in sorted(changed.items())))

    # -- inputs from other threads ------------------------------------------------------------
    def _read_source(self, source: ScannerSource, direction: Direction) -> None:
        try:
            for scan in source:
                self.loop.submit_scan(scan, scan.direction or direction)  # a reader may know its own
        except Exception:
            log.exception("scanner %s stopped", source.source)
        finally:
            self._scanner_news.set()
            self.loop.wake()  # the loop re-checks scanner health

    def _source_changed(self, source: ScannerSource) -> None:
        """From a source's thread: a reader that went offline or came back, or reports tamper or no
        longer does, becomes a journal event now; the loop re-checks health at once (FAULT or not,
        per the configuration). A reader coming online for the first time is not an event: only
        its return after a recorded ``reader_offline`` is."""
        if self._stopped.is_set():
            return  # the gate closes its sources: that is no reader going offline
        self._scanner_news.set()
        health = source.health()
        readers = [(r.name, r.connected, r.tamper) for r in health.readers] or [
            (source.source, health.connected, False)]
        events: list[ReaderLink | Tamper] = []
        with self._readers_lock:
            for name, connected, tamper in readers:
                was_connected, was_tamper, was_lost = self._readers_seen.get(name, (False, False, False))
                lost = was_connected and not connected
                if health.readers and (lost or (was_lost and connected)):
                    events.append(ReaderLink(name, connected))
                if tamper != was_tamper:
                    events.append(Tamper(tamper, where=name))
                self._readers_seen[name] = (connected, tamper, (was_lost or lost) and not connected)
        for event in events:
            self.loop.submit(event)
        self.loop.wake()

    def submit_scan(self, scan: Scan, direction: Direction = Direction.ENTRY) -> None:
        self.loop.submit_scan(scan, direction)

    def run_command(self, request: ControlRequest) -> dict[str, Any]:
        """An operator's command, from the control socket: handled by the control loop in order.
        Raises ``ControlRefused`` when the command did not take, saying why."""
        try:
            if request.command is Command.RESET:
                state = self.loop.call(ResetRequested())
                if state is State.EMERGENCY:
                    why = ("the fire loop is still open: close it, then reset"
                           if not self.machine.fire_loop_closed else "the reset did not take")
                    raise ControlRefused(f"still in EMERGENCY: {why}")
            else:
                state = self.loop.call(Maintenance(request.mode))
        except TimeoutError as exc:
            raise ControlRefused(str(exc)) from None
        return {"ok": True, "command": str(request.command), "state": str(state)}

    # -- the control loop's callbacks (its thread) --------------------------------------------
    def _decide(self, scan: Scan, direction: Direction) -> Decision:
        if scan.kind is ScanKind.CARD:  # no signature: never admitted on its number
            return Decision(False, Reason.CARD_NOT_ACCEPTED, Reason.CARD_NOT_ACCEPTED.text, direction,
                            detail=scan.detail or "a card number")
        if scan.kind is ScanKind.INCOMPLETE:
            return Decision(False, Reason.INCOMPLETE_READ, Reason.INCOMPLETE_READ.text, direction,
                            detail=scan.detail or "parts of the code are missing")
        result: Any
        text = scan.text
        current = self.settings  # one reference: a sync thread may swap it meanwhile
        policy = current.policy
        # PG1 first, the usual case: only a text that is no PG1 pass is tried as a pretix ticket
        if text is not None and not text.startswith(PG1_PREFIX) and is_sig1(text):
            result, event = self._pretix_ticket(text)
            policy = replace(policy, pretix=event)
        else:
            try:
                result = verify_signature(text if text is not None else scan.bytes, self.trust)
            except PassRefused as refused:
                result = refused
        now = self.clock.wall()
        self.machine.timing = current.timing  # the loop's thread: the machine is the loop's alone
        revoked, blocked = self.lists.lookups()
        # now, direction, revoked, blocked, usage, lists_stale: positional, as on every scan
        context = Context(now, direction, revoked, blocked, self.journal, self.lists.stale(now))
        return decide(result, context, policy)

    def _pretix_ticket(self, text: str) -> tuple[PretixTicket | PassRefused, PretixPolicy | None]:
        if self.pretix is None:
            return PassRefused(Reason.UNKNOWN_KEY, "a pretix ticket: this gate has no [pretix] event"), None
        return self.pretix.verify(text)

    def _health(self) -> Health:
        """What the gate needs to take scans; while it boots the scanners count as present (their
        threads start last, and boot waits a bounded time for them to connect)."""
        marker = self.layout.journal_damaged_marker
        if self.effects.damaged is not None and not marker.exists():
            try:  # the next start sets the journal aside
                marker.write_text(self.effects.damaged + "\n")
            except OSError as exc:
                log.error("cannot leave the journal-damaged marker %s: %s", marker, exc)
        if self.effects.fault is not None and self.effects.damaged is None:
            self.effects.probe()  # does the journal record again?
        fault = None
        if self.effects.damaged is not None or marker.exists():
            fault = "Journal damaged: restart the gate to set it aside"
        elif self.effects.fault is not None:
            fault = journal_fault(self.effects.fault)
        else:
            try:
                self.journal.catch_up()  # another process's redemptions count before FAULT can clear
                self.history_missing = self.journal.history_missing()
            except JournalError as exc:
                fault = journal_fault(str(exc))
            if self.history_missing:
                fault = ("Redemption history missing: waiting for the hub" if self.config.hub is not None
                         else "Redemption history missing: run 'passgated journal recover'")
            elif self.config.hub is not None and not len(self.trust):
                fault = AWAITING_HUB
        missing = [] if self._booting else self._scanner_faults()
        return Health(scanners_ok=not missing, turnstile_ready=self.io.turnstile_ready, fault=fault,
                      scanners=", ".join(missing))

    def _scanner_faults(self) -> list[str]:
        """The scanners and readers that keep the gate out of service, per each source's rules: a
        source without readers counts whole; a reader offline or reporting tamper counts when its
        rule says ``fault`` (the default)."""
        faults = []
        for source, _ in self.sources:
            on_offline, on_tamper = self._reader_rules.get(id(source), (ReaderFault.FAULT, ReaderFault.FAULT))
            health = source.health()
            if not health.readers:
                if not health.connected:
                    faults.append(source.source)
                continue
            for reader in health.readers:
                if not reader.connected and on_offline is ReaderFault.FAULT:
                    faults.append(f"{reader.name} offline")
                elif reader.tamper and on_tamper is ReaderFault.FAULT:
                    faults.append(f"{reader.name} tamper")
            if on_offline is ReaderFault.EVENT and not any(reader.connected for reader in health.readers):
                faults.append(f"{source.source}: no reader online")
        return faults

    def _announce(self, decision: Decision, latency_ms: float) -> None:
        t = self.clock.wall()
        event = self.answers.add(decision, t)
        self.metrics.observe_decision(decision.verdict, str(decision.reason), str(decision.direction),
                                      latency_ms / 1000)
        if self.display is not None:
            self.display.publish(event)
        if self.on_decision is not None:
            pass_id = decision.pass_id.hex() if decision.pass_id else None  # the caller's own output
            self.on_decision({"t": t, "pass_id": pass_id, "direction": event["direction"],
                              "decision": decision.verdict, "reason": event["reason"],
                              "text": decision.text, "guard_check": decision.guard_check,
                              "latency_ms": round(latency_ms, 3)})

    def _passed(self, direction: str) -> None:
        counts = self.answers.passed(direction, self.clock.wall())
        if self.display is not None:
            self.display.publish(counts)

    def _show(self, event: dict[str, Any]) -> None:
        if event.get("kind") == "state":
            self.metrics.set_state(str(event["state"]))
        if self.display is not None:
            self.display.publish(event)

    # -- queries ------------------------------------------------------------------------------
    @property
    def state(self) -> State:
        """The state whose outputs are already applied."""
        return self.loop.state

    def wait_settled(self, timeout: float = 10.0) -> bool:
        return self.loop.wait_settled(timeout)

    def status(self) -> dict[str, Any]:
        return gate_status(self)

    # -- shutdown -----------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop sources, the loop and the workers, leave outputs safe (an EMERGENCY that is not
        reset keeps release driven), close the journal. Idempotent."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        notify("STOPPING=1")
        for source, _ in self.sources:
            source.close()
        self.loop.stop()
        for thread in self._source_threads:
            thread.join(timeout=5)
        if self.sync is not None:
            self.sync.close()
        for worker in self.workers:
            worker.close()
        self.upkeep.close()
        if self.display is not None:
            self.display.close()
        if self.control_server is not None:
            self.control_server.close()
        self.io.safe(keep_release=self.machine.state is State.EMERGENCY)
        self.io.close()
        self.journal.close()
        log.info("gate %s stopped; outputs safe", self.config.gate_id)

    def __enter__(self) -> Gate:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()
