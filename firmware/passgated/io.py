"""The gate's hardware through gpiozero: relays, LEDs, buzzer, passage feedback, fire loop, tamper.

Every device takes the injected pin factory: ``MockFactory`` in tests and simulation (the real
gpiozero code path), ``LGPIOFactory`` on a Raspberry Pi 4 or 5, ``RPiGPIOFactory`` on older boards.
Pi-only modules are imported only when that factory is chosen, so this runs on any machine.

Safety: the fire-alarm panel releases the turnstile directly in hardware; this module only watches
an isolated normally closed contact. When the loop opens (or its wire is cut) the callback drives
the release outputs *itself*, before anything is queued or logged, and every later ``apply`` keeps
them driven while the loop is open. Outputs start de-energised; the relay drivers' own pull
resistors hold them there when this process dies.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from gpiozero import Buzzer, DigitalInputDevice, OutputDevice
from gpiozero.pins import Factory

from .config import GateConfig, PinSpec
from .machine import FREE, Event, FireLoop, Outputs, Passage, ResetRequested, Tamper, Tick
from .policy import Direction

BEEPS = {  # pattern: (on_s, off_s, repetitions)
    "admit": (0.08, 0.05, 1),
    "refuse": (0.15, 0.1, 3),
    "alarm": (0.5, 0.5, None),
}


def make_pin_factory(name: str) -> Factory | None:
    """The gpiozero pin factory for a config name (None: gpiozero's own default)."""
    if name == "mock":
        from gpiozero.pins.mock import MockFactory

        return MockFactory()
    if name == "lgpio":
        from gpiozero.pins.lgpio import LGPIOFactory

        return LGPIOFactory()
    if name == "rpigpio":
        from gpiozero.pins.rpigpio import RPiGPIOFactory

        return RPiGPIOFactory()
    return None


class GateIO:
    """All of one gate's pins. Inputs become machine events through ``on_event``.

    >>> from gpiozero.pins.mock import MockFactory
    >>> from passgated.config import load_config
    >>> io = GateIO(load_config(), MockFactory())
    >>> io.apply(Outputs(relay_entry=True)); io.relay_entry.value
    1
    >>> io.close()
    """

    def __init__(self, config: GateConfig, pin_factory: Factory | None,
                 on_event: Callable[[Event], None] | None = None) -> None:
        self.pin_factory = pin_factory
        self.on_event = on_event or (lambda event: None)
        self._lock = threading.Lock()
        self._devices: list[object] = []
        pins, glitch = config.pins, config.glitch_filter_s
        self.relay_entry = self._output(pins["relay_entry"])
        self.relay_exit = self._output(pins["relay_exit"])
        self.release = self._output(pins["release"])
        self.green = self._output(pins["green"])
        self.red = self._output(pins["red"])
        self.buzzer = self._output(pins["buzzer"], Buzzer)
        self.fire_loop = self._input(pins["fire_loop"], None)  # no debounce: never delay an alarm
        self.passage = {
            Direction.ENTRY: self._input(pins["passage_entry"], glitch),
            Direction.EXIT: self._input(pins["passage_exit"], glitch),
        }
        self.tamper = self._input(pins["tamper"], glitch)
        self.reset = self._input(pins["reset"], glitch)
        self.turnstile = self._input(pins["turnstile_ready"], glitch)
        self._outputs = Outputs()

    def _output(self, spec: PinSpec | None, cls: type = OutputDevice) -> OutputDevice | None:
        if spec is None:
            return None
        device = cls(spec.pin, active_high=spec.active_high, initial_value=False,
                     pin_factory=self.pin_factory)
        self._devices.append(device)
        return device

    def _input(self, spec: PinSpec | None, bounce_s: float | None) -> DigitalInputDevice | None:
        if spec is None:
            return None
        device = DigitalInputDevice(
            spec.pin, pull_up=spec.pull_up,
            bounce_time=bounce_s, pin_factory=self.pin_factory,
        )
        self._devices.append(device)
        return device

    # -- inputs -------------------------------------------------------------------------------
    @property
    def fire_loop_closed(self) -> bool:
        """The NC loop pulls the input active; open loop or cut wire reads inactive."""
        return bool(self.fire_loop.is_active)

    @property
    def turnstile_ready(self) -> bool:
        """The turnstile controller reports ready (True when that input is not wired)."""
        return self.turnstile is None or bool(self.turnstile.is_active)

    def start(self) -> None:
        """Wire input edges to events (after the boot read, so boot sees levels, not edges)."""
        self.fire_loop.when_deactivated = self._fire_loop_opened
        self.fire_loop.when_activated = lambda: self.on_event(FireLoop(closed=True))
        for direction, device in self.passage.items():
            if device is not None:
                device.when_activated = lambda d=direction: self.on_event(Passage(d))
        if self.tamper is not None:
            self.tamper.when_activated = lambda: self.on_event(Tamper(True))
            self.tamper.when_deactivated = lambda: self.on_event(Tamper(False))
        if self.reset is not None:
            self.reset.when_activated = lambda: self.on_event(ResetRequested())
        if self.turnstile is not None:  # re-check health at once on either edge
            self.turnstile.when_activated = lambda: self.on_event(Tick())
            self.turnstile.when_deactivated = lambda: self.on_event(Tick())

    def _fire_loop_opened(self) -> None:
        self._drive(FREE)  # first: release, before the event is even queued
        self.on_event(FireLoop(closed=False))

    # -- outputs ------------------------------------------------------------------------------
    def apply(self, outputs: Outputs) -> None:
        """Set the steady outputs; while the fire loop is open, release stays driven regardless."""
        if not self.fire_loop_closed:
            outputs = Outputs(relay_entry=True, relay_exit=True, release=True,
                              green=outputs.green, red=outputs.red)
        self._drive(outputs)

    def _drive(self, outputs: Outputs) -> None:
        with self._lock:
            for name in ("release", "relay_entry", "relay_exit", "green", "red"):
                device = getattr(self, name)
                if device is not None:
                    device.value = getattr(outputs, name)
            self._outputs = outputs

    @property
    def outputs(self) -> Outputs:
        return self._outputs

    def beep(self, pattern: str) -> None:
        if self.buzzer is None:
            return
        if pattern == "off":
            self.buzzer.off()
            return
        on, off, n = BEEPS[pattern]
        self.buzzer.beep(on_time=on, off_time=off, n=n, background=True)

    def safe(self) -> None:
        """De-energise every output (shutdown). Release is left to the hardware fire panel."""
        self._drive(Outputs())
        if self.buzzer is not None:
            self.buzzer.off()

    def close(self) -> None:
        for device in reversed(self._devices):
            device.close()  # type: ignore[attr-defined]
        self._devices.clear()
