"""Feedback: the one small protocol through which a gate shows what it decided and what state it is
in, on every device that can show it: the gate's own LEDs and buzzer (gpiozero), a reader's LEDs
and beeper (an OSDP reader), whatever an integrator adds.

The gate's state machine emits a ``Cue`` for each decision and each state it enters; the gate hands
it to every ``Feedback`` device in turn. A device shows what it can and ignores the rest: a cue is
a hint to a person, never a safety output (the relays and the fire-alarm release are driven by the
gate alone, and a device that fails is logged and skipped, never a reason to hold a relay).

>>> from passgate.feedback import Cue, Signal
>>> class Printer:
...     def cue(self, cue: Cue) -> None:
...         print(cue.signal, cue.reader or "every reader")
>>> Printer().cue(Cue(Signal.GRANTED, reader="osdp:/dev/ttyUSB0#1"))
granted osdp:/dev/ttyUSB0#1
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, runtime_checkable

from .wire import Direction


class Signal(StrEnum):
    """What to show. The first three answer one scan; the rest are the gate's state, shown until
    the next state's cue."""

    GRANTED = "granted"  # please pass
    REFUSED = "refused"  # this scan was refused
    ALARM = "alarm"  # forced passage or tamper: an alarm sound
    READY = "ready"  # idle, taking scans
    FAULT = "fault"  # out of service: use another gate
    EMERGENCY = "emergency"  # fire alarm: free passage
    OPEN = "open"  # maintenance: free passage
    CLOSED = "closed"  # maintenance: gate closed


@dataclass(frozen=True, slots=True)
class Cue:
    """One thing to show. ``reader`` names the reader a scan came from (a decision's cue is shown
    there; "" means every device), ``direction`` the way the holder goes, when known."""

    signal: Signal
    reader: str = ""
    direction: Direction | None = None


@runtime_checkable
class Feedback(Protocol):
    """A device that shows cues. ``cue`` is called from the gate's control loop: it must return at
    once (queue the work), and may raise: the gate logs it and goes on."""

    def cue(self, cue: Cue) -> None: ...


__all__ = ["Cue", "Feedback", "Signal"]
