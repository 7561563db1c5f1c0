"""The gate's effective settings: the hub's word for what the hub manages, the gate's file for the rest.

A gate with a ``[hub]`` takes its zones, anti-passback, stale-list policy and list age, clock skew
and timing from the hub (``wire.GateSettings`` in each bundle). gate.toml keeps the local hardware
(pins, scanners, journal, display) and supplies a managed setting only where the hub leaves it
unset; the embedded default comes last. ``/status`` shows where each value came from. The hub's
last settings are kept on disk, so a gate that restarts while the hub is unreachable keeps them.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from passgate import wire
from passgate.denylist import atomic_write

from .config import GateConfig
from .machine import Timing
from .policy import PolicyConfig

log = logging.getLogger(__name__)

# Each hub-managed setting, the gate.toml key it stands for, and the factor to the gate's units.
MANAGED: dict[str, tuple[str, float]] = {
    "zones": ("gate.zones", 1),
    "anti_passback": ("policy.anti_passback", 1),
    "anti_passback_minutes": ("policy.anti_passback_minutes", 60),
    "stale_policy": ("denylist.stale_policy", 1),
    "max_list_age_hours": ("denylist.max_age_hours", 3600),
    "skew_seconds": ("policy.skew_seconds", 1),
    "relay_pulse_ms": ("timing.relay_pulse_ms", 0.001),
    "passage_timeout_ms": ("timing.passage_timeout_ms", 0.001),
    "refusal_display_ms": ("timing.refusal_display_ms", 0.001),
}
HUB, FILE, DEFAULT = "hub", "gate.toml", "default"


@dataclass(frozen=True, slots=True)
class Effective:
    """What the gate decides and times with now; ``sources``: gate.toml key -> where it came from."""

    policy: PolicyConfig
    timing: Timing
    max_list_age_s: float
    sources: dict[str, str]
    values: dict[str, Any]  # gate.toml key -> value, in the file's units (for /status)


def effective(config: GateConfig, hub: wire.GateSettings | None) -> Effective:
    """Merge the hub's settings over the gate's file (see the module docstring)."""
    given = hub.given() if hub is not None else {}
    policy, timing = config.policy, config.timing
    local: dict[str, Any] = {
        "zones": list(policy.zones), "anti_passback": policy.anti_passback,
        "anti_passback_minutes": policy.anti_passback_timeout_s / 60,
        "stale_policy": policy.stale_list, "max_list_age_hours": config.max_list_age_s / 3600,
        "skew_seconds": policy.skew_s, "relay_pulse_ms": timing.relay_pulse_s * 1000,
        "passage_timeout_ms": timing.passage_timeout_s * 1000,
        "refusal_display_ms": timing.refusal_display_s * 1000,
    }
    chosen: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name, (key, _) in MANAGED.items():
        if name in given:
            chosen[name], sources[key] = given[name], HUB
        else:
            chosen[name], sources[key] = local[name], FILE if key in config.given else DEFAULT

    def units(name: str) -> float:
        return float(chosen[name]) * MANAGED[name][1]

    return Effective(
        policy=replace(policy, zones=tuple(chosen["zones"]), anti_passback=bool(chosen["anti_passback"]),
                       anti_passback_timeout_s=units("anti_passback_minutes"),
                       stale_list=wire.StaleListPolicy(chosen["stale_policy"]),
                       skew_s=units("skew_seconds")),
        timing=Timing(relay_pulse_s=units("relay_pulse_ms"), passage_timeout_s=units("passage_timeout_ms"),
                      refusal_display_s=units("refusal_display_ms")),
        max_list_age_s=units("max_list_age_hours"),
        sources=sources,
        values={MANAGED[name][0]: wire.dump(value) for name, value in chosen.items()},
    )


def load(path: Path) -> wire.GateSettings | None:
    """The hub's settings as last received, or None (never received, or unreadable: logged)."""
    try:
        return wire.parse(wire.GateSettings, json.loads(path.read_text()))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:  # ProtocolError is a ValueError
        log.error("hub settings %s cannot be read (%s): the gate's own file applies until the next sync",
                  path, exc)
        return None


def save(path: Path, settings: wire.GateSettings) -> None:
    """Keep the hub's settings for the next start (atomic: a reader finds the old or the new)."""
    atomic_write(path, [json.dumps(wire.dump(settings), sort_keys=True).encode()])
