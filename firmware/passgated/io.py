"""The gate's hardware through gpiozero: relays, LEDs, buzzer, passage feedback, fire loop, tamper.

Every device takes the injected pin factory: ``MockFactory`` in tests and simulation (the real
gpiozero code path), ``LGPIOFactory`` on a Raspberry Pi 4 or 5, ``RPiGPIOFactory`` on older boards.
Pi-only modules are imported only when that factory is chosen, so this runs on any machine.

Safety: the fire-alarm panel releases the turnstile directly in hardware; this module only watches
an isolated normally closed contact. When the loop opens (or its wire is cut) the callback drives
the release outputs *itself*, before anything is queued or logged. One lock covers the fire state
and every write to the outputs, so a steady level computed before the alarm can never overwrite
the release afterwards. A grant's relay pulse is timed by the output itself: the relay goes on at
once and a timer thread owned by this module takes it off, so the pulse ends on time even when the
control loop stalls (and no thread start delays the relay). Outputs start de-energised; the relay
drivers' own pull resistors hold them there when this process dies.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from gpiozero import Buzzer, DigitalInputDevice, DigitalOutputDevice

from passgate.feedback import Cue, Signal

from .config import GateConfig, PinFactory, PinSpec
from .machine import FREE, Event, FireLoop, Outputs, Passage, ResetRequested, Tamper, Tick
from .policy import Direction

BEEPS: dict[Signal, tuple[float, float, int | None]] = {  # signal: (on_s, off_s, repetitions)
    Signal.GRANTED: (0.08, 0.05, 1),
    Signal.REFUSED: (0.15, 0.1, 3),
    Signal.ALARM: (0.5, 0.5, None),  # until the next cue that sounds
    Signal.EMERGENCY: (0.5, 0.5, None),  # until the EMERGENCY ends
}
STEADY = ("release", "relay_entry", "relay_exit", "green", "red")  # release first: it matters most


def make_pin_factory(name: PinFactory) -> Any:
    """The gpiozero pin factory for a config name (None: gpiozero's own default)."""
    if name is PinFactory.MOCK:
        from gpiozero.pins.mock import MockFactory

        return MockFactory()
    if name is PinFactory.LGPIO:
        from gpiozero.pins.lgpio import LGPIOFactory

        return LGPIOFactory()
    if name is PinFactory.RPIGPIO:
        from gpiozero.pins.rpigpio import RPiGPIOFactory

        return RPiGPIOFactory()
    return None


class GateIO:
    """All of one gate's pins. Inputs become machine events through ``on_event``.

    >>> from gpiozero.pins.mock import MockFactory
    >>> from passgated.config import load_config
    >>> io = GateIO(load_config(), MockFactory())
    >>> io.apply(Outputs(green=True)); io.green.value
    1
    >>> io.close()
    """

    def __init__(self, config: GateConfig, pin_factory: Any,
                 on_event: Callable[[Event], None] | None = None) -> None:
        self.pin_factory = pin_factory
        self.on_event = on_event or (lambda event: None)
        self._lock = threading.RLock()  # the fire state and every output write
        self._devices: list[Any] = []
        pins, glitch = config.pins, config.glitch_filter_s
        self.relay_entry = self._output(pins["relay_entry"])
        self.relay_exit = self._output(pins["relay_exit"])
        self.release = self._output(pins["release"])
        self.green = self._output(pins["green"])
        self.red = self._output(pins["red"])
        self.buzzer = self._output(pins["buzzer"], Buzzer)
        fire = self._input(pins["fire_loop"], None)  # no debounce: never delay an alarm
        assert fire is not None  # the config requires it
        self.fire_loop: Any = fire
        self.passage = {
            Direction.ENTRY: self._input(pins["passage_entry"], glitch),
            Direction.EXIT: self._input(pins["passage_exit"], glitch),
        }
        self.tamper = self._input(pins["tamper"], glitch)
        self.reset = self._input(pins["reset"], glitch)
        self.turnstile = self._input(pins["turnstile_ready"], glitch)
        self._outputs = Outputs()
        self._relays = {Direction.ENTRY: "relay_entry", Direction.EXIT: "relay_exit"}
        self._pulses: dict[Direction, threading.Timer] = {}  # the timer that ends each running pulse
        self._sounding: Signal | None = None  # the buzzer's last pattern

    def _output(self, spec: PinSpec | None, cls: type = DigitalOutputDevice) -> Any:
        if spec is None:
            return None
        device = cls(spec.pin, active_high=spec.active_high, initial_value=False,
                     pin_factory=self.pin_factory)
        self._devices.append(device)
        return device

    def _input(self, spec: PinSpec | None, bounce_s: float | None) -> Any:
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
        with self._lock:
            self._drive(FREE)  # first: release, before the event is even queued
        self.on_event(FireLoop(closed=False))

    # -- outputs ------------------------------------------------------------------------------
    def apply(self, outputs: Outputs) -> None:
        """Set the steady outputs (a running pulse ends); while the fire loop is open, release and
        both relays stay driven whatever is asked."""
        with self._lock:
            if not self.fire_loop_closed:
                outputs = Outputs(relay_entry=True, relay_exit=True, release=True,
                                  green=outputs.green, red=outputs.red)
            self._drive(outputs)

    def pulse(self, direction: Direction, seconds: float) -> None:
        """Energise one relay now and end the pulse ``seconds`` later from a timer thread (not from
        the control loop); ignored while the fire loop or maintenance holds the relays open."""
        name = self._relays[direction]
        relay = getattr(self, name)
        if relay is None:
            return
        with self._lock:
            if not self.fire_loop_closed or self._outputs.release:
                return
            self._cancel_pulse(direction)
            relay.on()
            timer = threading.Timer(seconds, self._end_pulse, args=(direction,))
            timer.daemon = True
            self._pulses[direction] = timer
            timer.start()

    def _end_pulse(self, direction: Direction) -> None:
        with self._lock:
            if self._pulses.get(direction) is not threading.current_thread():
                return  # superseded: a steady level or a newer pulse owns the relay now
            del self._pulses[direction]
            name = self._relays[direction]
            getattr(self, name).value = getattr(self._outputs, name)

    def _cancel_pulse(self, direction: Direction) -> None:
        timer = self._pulses.pop(direction, None)
        if timer is not None:
            timer.cancel()

    def _drive(self, outputs: Outputs) -> None:
        """Write every steady level, release first (a running pulse ends); the caller holds the lock."""
        for direction in list(self._pulses):
            self._cancel_pulse(direction)
        for name in STEADY:
            device = getattr(self, name)
            if device is not None:
                device.value = getattr(outputs, name)
        self._outputs = outputs

    @property
    def outputs(self) -> Outputs:
        return self._outputs

    def cue(self, cue: Cue) -> None:
        """The gate's buzzer as a feedback device (its green and red LEDs are steady outputs of the
        state): a beep pattern for a decision or an alarm; the EMERGENCY alarm sounds until the
        gate enters another state."""
        if self.buzzer is None:
            return
        pattern = BEEPS.get(cue.signal)
        if pattern is None:
            if self._sounding is Signal.EMERGENCY:
                self.buzzer.off()
                self._sounding = None
            return
        on, off, n = pattern
        self.buzzer.beep(on_time=on, off_time=off, n=n, background=True)
        self._sounding = cue.signal

    def safe(self, *, keep_release: bool = False) -> None:
        """De-energise the outputs at shutdown. With ``keep_release`` (an EMERGENCY not reset) or an
        open fire loop, release and the relays stay driven as the loop demands: the daemon does not
        take away what the fire alarm needs while it is still running."""
        with self._lock:
            if keep_release or not self.fire_loop_closed:
                self._drive(FREE)
            else:
                self._drive(Outputs())
        if self.buzzer is not None:
            self.buzzer.off()

    def close(self) -> None:
        with self._lock:
            for direction in list(self._pulses):
                self._cancel_pulse(direction)
            for device in reversed(self._devices):
                device.close()
            self._devices.clear()
