"""A simulated gate: the real daemon on gpiozero's MockFactory pins, with passage feedback played
back after a walk time, and ``demo``, the one-command tour of every decision.
"""

from __future__ import annotations

import json
import logging
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from passgate import TrustStore, generate_private_key, issue_pass, key_id
from passgate.scanners import Scan, StdinScanner

from .config import OUTPUT_PINS, GateConfig, PinFactory
from .gate import Gate
from .policy import Direction

log = logging.getLogger("passgated")


def traced_factory(trace: Callable[[str, bool], None]) -> Any:
    """A MockFactory whose pins report every change of state: ``trace("GPIO5", state)``."""
    from gpiozero.pins.mock import MockFactory, MockPin

    class TracedPin(MockPin):  # type: ignore[misc]
        def _change_state(self, value: bool) -> bool:
            changed = bool(super()._change_state(value))
            if changed:
                trace(self.info.name, bool(value))
            return changed

    return MockFactory(pin_class=TracedPin)


class SimulatedGate(Gate):
    """A ``Gate`` on mock pins that walks each admitted person through after ``walk_s``.

    The passage is a real edge on the mock passage-feedback pin, so it travels the same gpiozero
    callback path as on hardware. ``trace`` (as ``passgated simulate --trace``) hears every change
    of an output: ``{"output": "relay_entry", "on": true, "t": <monotonic seconds>}``.
    """

    def __init__(self, config: GateConfig, *, walk_s: float = 0.8,
                 trace: Callable[[dict[str, Any]], None] | None = None, **kwargs: Any) -> None:
        from gpiozero.pins.mock import MockFactory

        config = replace(config, pin_factory=PinFactory.MOCK)
        factory = kwargs.pop("pin_factory", None)
        if factory is None:
            factory = MockFactory() if trace is None else traced_factory(self._tracer(config, trace))
        super().__init__(config, pin_factory=factory, **kwargs)
        self.walk_s = walk_s
        self._walkers: list[threading.Timer] = []
        self.user_on_decision = self.on_decision
        self.on_decision = self._walk_through
        fire = self.io.fire_loop.pin
        fire.drive_low()  # a healthy, closed fire loop

    @staticmethod
    def _tracer(config: GateConfig, trace: Callable[[dict[str, Any]], None]) -> Callable[[str, bool], None]:
        names = {f"GPIO{spec.pin}": name for name, spec in config.pins.items()
                 if spec is not None and name in OUTPUT_PINS}

        def on_change(pin: str, state: bool) -> None:
            name = names.get(pin)
            if name is not None:
                trace({"output": name, "on": state, "t": round(time.monotonic(), 4)})

        return on_change

    def _walk_through(self, record: dict[str, Any]) -> None:
        if self.user_on_decision is not None:
            self.user_on_decision(record)
        if record["decision"] != "admit":
            return
        device = self.io.passage[Direction(record["direction"])]
        if device is None or self.config.commit_at_grant:
            return
        timer = threading.Timer(self.walk_s, self._pulse, args=(device.pin,))
        timer.daemon = True
        self._walkers.append(timer)
        timer.start()

    @staticmethod
    def _pulse(pin: Any) -> None:
        """The passage sensor sees a person: contact to ground, then released. Released at once:
        a held-low pin would swallow the next person's edge."""
        pin.drive_low()
        pin.drive_high()

    def stop(self) -> None:
        for timer in self._walkers:
            timer.cancel()
        super().stop()


def feed(gate: Gate, texts: Iterable[str | bytes], direction: Direction = Direction.ENTRY,
         *, settle_timeout: float = 30.0) -> None:
    """Scan texts one person at a time: each waits until the gate is ready for the next."""
    for text in texts:
        data = text.encode() if isinstance(text, str) else text
        gate.submit_scan(Scan(data, "simulated", time.monotonic()), direction)
        gate.wait_settled(settle_timeout)


def simulate_stdin(gate: SimulatedGate, direction: Direction = Direction.ENTRY) -> int:
    """Scans from stdin (one pass text a line) until end of input, one person at a time; returns
    the lines dropped (over-long, binary noise: each logged). A file or a pipe is not a scanner:
    no flood limit and no duplicate suppression, so every line is decided."""
    with StdinScanner(dedupe=0, max_rate=float("inf")) as source:
        for scan in source:
            # The next person steps up once the gate is ready: latency counts from then.
            gate.submit_scan(replace(scan, t=time.monotonic()), direction)
            gate.wait_settled(60)
        dropped = source.health().dropped
    gate.wait_settled(60)
    if dropped:
        log.warning("stdin: %d line(s) dropped (see above): not decided", dropped)
    return dropped


# -- demo ---------------------------------------------------------------------------------------
def demo(out: Callable[[str], None] = print) -> int:
    """Issue a handful of passes with a throwaway key and run them through a simulated gate."""
    from .config import load_config

    with tempfile.TemporaryDirectory(prefix="passgate-demo-") as tmp:
        key = generate_private_key()
        trust = TrustStore()
        trust.add(key.public_key(), issuer="Demo Arena")
        stranger = generate_private_key()
        config = load_config(None, zones=["A"], journal_path=Path(tmp) / "journal.db",
                             gate_id="demo-gate", scanners=())
        now = time.time()
        hour = 3600
        single = issue_pass(key, valid_from=now - hour, valid_until=now + 4 * hour, zones=["A"], entries=1)
        day = issue_pass(key, valid_from=now - hour, valid_until=now + 12 * hour, product="DAY")
        forged_body = issue_pass(stranger, valid_from=now - hour, valid_until=now + hour)
        forged = _with_kid(forged_body, key_id(key))
        cases: list[tuple[str, str, Direction]] = [
            ("valid single-use pass, zone A", single, Direction.ENTRY),
            ("same single-use pass again", single, Direction.ENTRY),
            ("expired pass", issue_pass(key, valid_from=now - 5 * hour, valid_until=now - hour),
             Direction.ENTRY),
            ("not valid yet (tonight)", issue_pass(key, valid_from=now + 6 * hour,
                                                   valid_until=now + 9 * hour), Direction.ENTRY),
            ("pass for zone B", issue_pass(key, valid_from=now - hour, valid_until=now + hour,
                                           zones=["B"]), Direction.ENTRY),
            ("day pass", day, Direction.ENTRY),
            ("day pass handed back out", day, Direction.ENTRY),
            ("forged: trusted kid, stranger's key", forged, Direction.ENTRY),
            ("a shop loyalty card", "LOYALTY-4411-0098", Direction.ENTRY),
        ]
        decisions: list[dict[str, Any]] = []
        gate = SimulatedGate(config, walk_s=0.0, trust=trust, sources=[], display=False,
                             on_decision=decisions.append)
        relay = gate.io.relay_entry.pin
        gate.start()
        try:
            for _, text, direction in cases:
                feed(gate, [text], direction)
        finally:
            gate.stop()
        pulses = sum(1 for state in relay.states[1:] if state.state)
        out(f"passgate demo: gate {config.gate_id}, zone A, simulated pins (gpiozero MockFactory),"
            f" throwaway issuer key {key_id(key).hex()}")
        out("")
        out(f"{'#':>2}  {'scanned':38} {'decision':8}  {'reason':15} {'the guard reads':46} {'ms':>6}")
        for i, ((label, _, _), record) in enumerate(zip(cases, decisions, strict=True), 1):
            verdict = "ADMIT" if record["decision"] == "admit" else "REFUSE"
            out(f"{i:>2}  {label:38} {verdict:8}  {record['reason']:15} {record['text'][:46]:46} "
                f"{record['latency_ms']:6.2f}")
        out("")
        out(f"relay pulses on the entry relay: {pulses}; journal: {config.journal_path.name} "
            f"(deleted with the demo's temp directory)")
        expected_admits = sum(1 for r in decisions if r["decision"] == "admit")
        return 0 if pulses == expected_admits else 1


def _with_kid(text: str, kid: bytes) -> str:
    """Re-sign nothing: rewrite the kid in the protected header (the signature no longer matches)."""
    import cbor2

    from passgate import base45, cose
    from passgate.passes import PREFIX

    msg = cose.decode_sign1(base45.decode(text[len(PREFIX):]))
    protected = cbor2.dumps({cose.HEADER_ALG: msg.alg, cose.HEADER_KID: kid})
    body = cbor2.dumps(cbor2.CBORTag(18, [protected, {}, msg.payload, msg.signature]))
    return PREFIX + base45.encode(body)


def decision_line(record: dict[str, Any]) -> str:
    """One JSON line per decision, for ``simulate``'s stdout."""
    return json.dumps(record, separators=(", ", ": "))


def default_journal() -> Path:
    """A throwaway journal for a quick simulation without a config file, in a directory of its own
    (private, so the control socket beside it may live there too)."""
    return Path(tempfile.mkdtemp(prefix="passgate-sim-")) / "journal.db"
