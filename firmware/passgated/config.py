"""Gate configuration: one TOML file, validated at start with errors that name the key.

Every setting has an embedded default, so ``passgated simulate`` and ``demo`` need no file. See
``packaging/gate.toml`` for a commented example of every key.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .machine import Timing
from .policy import Direction, PolicyConfig, StaleListPolicy

PIN_FACTORIES = ("mock", "lgpio", "rpigpio", "auto")
OUTPUT_PINS = ("relay_entry", "relay_exit", "release", "green", "red", "buzzer")
INPUT_PINS = ("passage_entry", "passage_exit", "fire_loop", "tamper", "reset", "turnstile_ready")


class ConfigError(ValueError):
    """A configuration problem; the message starts with the offending key."""


@dataclass(frozen=True, slots=True)
class PinSpec:
    """A BCM pin and its electrical sense. Inputs default to pull-up, active when pulled low
    (a contact to ground); outputs default to active high."""

    pin: int
    active_high: bool = True
    pull_up: bool = True


DEFAULT_PINS: dict[str, PinSpec | None] = {
    "relay_entry": PinSpec(5),
    "relay_exit": PinSpec(6),
    "release": PinSpec(13),
    "green": PinSpec(20),
    "red": PinSpec(21),
    "buzzer": PinSpec(12),
    "passage_entry": PinSpec(23),
    "passage_exit": PinSpec(24),
    "fire_loop": PinSpec(17),
    "tamper": PinSpec(27),
    "reset": PinSpec(22),
    "turnstile_ready": None,  # optional: the turnstile controller's ready/fault output
}


@dataclass(frozen=True, slots=True)
class ScannerSpec:
    source: str
    direction: Direction = Direction.ENTRY
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class HubSpec:
    url: str
    token: str
    ca_bundle: str | None = None
    interval_s: float = 10.0


@dataclass(frozen=True, slots=True)
class GateConfig:
    """A validated gate configuration; build it with ``load_config`` / ``parse_config``, which
    hold the defaults."""

    gate_id: str
    venue: str
    directions: tuple[Direction, ...]
    exit_mode: str  # "free": exits need no scan; "scanned": exits are scanned too
    trust_dir: Path | None
    denylist_dir: Path | None
    denylist_scope: str | None  # None: the venue (the hub signs each venue's lists with its name)
    max_list_age_s: float
    scanners: tuple[ScannerSpec, ...]
    pin_factory: str
    pins: dict[str, PinSpec | None]
    timing: Timing
    glitch_filter_s: float
    commit_at_grant: bool  # for turnstiles without passage feedback
    policy: PolicyConfig
    journal_path: Path
    retention_days: float
    display_listen: str | None
    control_from: tuple[str, ...]
    hub: HubSpec | None


SECTIONS = {
    "gate": {"id", "venue", "zones", "directions", "exit_mode"},
    "trust": {"dir"},
    "denylist": {"dir", "scope", "max_age_hours", "stale_policy"},
    "scanner": {"source", "direction"},  # plus free-form source options
    "pins": {"factory", *OUTPUT_PINS, *INPUT_PINS},
    "timing": {"relay_pulse_ms", "passage_timeout_ms", "refusal_display_ms", "glitch_filter_ms"},
    "policy": {"anti_passback", "anti_passback_minutes", "skew_seconds", "commit_at_grant"},
    "journal": {"path", "retention_days"},
    "display": {"listen", "control_from"},
    "hub": {"url", "token", "ca_bundle", "interval_seconds"},
}


def _get(table: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str, default: Any) -> Any:
    if key not in table:
        return default
    value = table[key]
    if isinstance(value, bool) and kind in (int, float, (int, float)):
        raise ConfigError(f"{where}.{key}: expected a number, got {value!r}")
    if not isinstance(value, kind):
        names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise ConfigError(f"{where}.{key}: expected {names}, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):  # NaN passes every comparison check
        raise ConfigError(f"{where}.{key}: expected a finite number, got {value!r}")
    return value


def _non_negative(value: float, where: str) -> float:
    if value < 0:
        raise ConfigError(f"{where}: must not be negative, got {value!r}")
    return value


def _positive(value: float, where: str) -> float:
    if value <= 0:
        raise ConfigError(f"{where}: must be greater than 0, got {value!r}")
    return value


def _direction(value: Any, where: str) -> Direction:
    try:
        return Direction(value)
    except ValueError:
        raise ConfigError(f"{where}: must be 'entry' or 'exit', got {value!r}") from None


def _pin(value: Any, where: str, default: PinSpec | None) -> PinSpec | None:
    if value is False:
        return None  # pin not wired
    if isinstance(value, int) and not isinstance(value, bool):
        value = {"pin": value}
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a BCM pin number, a table {{pin = N}} or false")
    unknown = set(value) - {"pin", "active_high", "pull_up"}
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}")
    pin = _get(value, "pin", int, where, default.pin if default else None)
    if pin is None or not 0 <= pin <= 53:
        raise ConfigError(f"{where}.pin: a BCM GPIO number 0-53 is required")
    return PinSpec(
        pin,
        active_high=_get(value, "active_high", bool, where, True),
        pull_up=_get(value, "pull_up", bool, where, True),
    )


def load_config(path: str | Path | None = None, **overrides: Any) -> GateConfig:
    """Read and validate a gate config (embedded defaults when ``path`` is None).

    Relative paths in the file are resolved against the file's directory.
    """
    data: dict[str, Any] = {}
    base = Path.cwd()
    if path is not None:
        file = Path(path)
        base = file.parent
        try:
            data = tomllib.loads(file.read_text())
        except FileNotFoundError:
            raise ConfigError(f"{file}: no such file") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{file}: not valid TOML ({exc})") from None
        except RecursionError:  # tomllib recurses once per level of nested arrays and tables
            raise ConfigError(f"{file}: not valid TOML (nested too deeply)") from None
    config = parse_config(data, base=base)
    return _replace(config, **{k: v for k, v in overrides.items() if v is not None})


def _replace(config: GateConfig, **changes: Any) -> GateConfig:
    policy_changes = {k: changes.pop(k) for k in ("zones",) if k in changes}
    if policy_changes:
        changes["policy"] = replace(config.policy, zones=tuple(policy_changes["zones"]))
    return replace(config, **changes)


def parse_config(data: dict[str, Any], *, base: Path = Path(".")) -> GateConfig:
    """Validate a config mapping (as parsed from TOML)."""
    unknown = set(data) - set(SECTIONS)
    if unknown:
        raise ConfigError(f"{sorted(unknown)[0]}: unknown section (known: {', '.join(SECTIONS)})")
    sections: dict[str, dict[str, Any]] = {}
    for name, allowed in SECTIONS.items():
        if name == "scanner":
            continue
        table = data.get(name, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{name}: must be a table")
        extra = set(table) - allowed
        if extra:
            raise ConfigError(f"{name}.{sorted(extra)[0]}: unknown key")
        sections[name] = table
    gate, pins, timing = sections["gate"], sections["pins"], sections["timing"]
    policy, journal, display = sections["policy"], sections["journal"], sections["display"]
    deny = sections["denylist"]

    def path_of(value: str | None) -> Path | None:
        return None if value is None else (base / value if not Path(value).is_absolute() else Path(value))

    zones = tuple(_get(gate, "zones", list, "gate", []))
    if not all(isinstance(z, str) and z for z in zones):
        raise ConfigError("gate.zones: must be a list of non-empty strings")
    raw_directions = _get(gate, "directions", (str, list), "gate", ["entry"])
    if raw_directions == "both":
        raw_directions = ["entry", "exit"]
    if isinstance(raw_directions, str):
        raw_directions = [raw_directions]
    directions = tuple(_direction(d, "gate.directions") for d in raw_directions)
    if not directions:
        raise ConfigError("gate.directions: at least one of entry, exit")
    exit_mode = _get(gate, "exit_mode", str, "gate", "free")
    if exit_mode not in ("free", "scanned"):
        raise ConfigError(f"gate.exit_mode: must be 'free' or 'scanned', got {exit_mode!r}")

    scanners = []
    raw_scanners = data.get("scanner", [{"source": "stdin:"}])
    if not isinstance(raw_scanners, list) or not raw_scanners:
        raise ConfigError("scanner: use one or more [[scanner]] tables")
    for i, item in enumerate(raw_scanners):
        where = f"scanner[{i}]"
        if not isinstance(item, dict) or not isinstance(item.get("source"), str):
            raise ConfigError(f"{where}.source: required, e.g. 'serial:/dev/ttyACM0' or 'stdin:'")
        direction = _direction(item.get("direction", directions[0]), f"{where}.direction")
        if direction not in directions:
            raise ConfigError(f"{where}.direction: {direction} is not in gate.directions")
        options = {k: v for k, v in item.items() if k not in ("source", "direction")}
        scanners.append(ScannerSpec(item["source"], direction, options))

    factory = _get(pins, "factory", str, "pins", "mock")
    if factory not in PIN_FACTORIES:
        raise ConfigError(f"pins.factory: one of {', '.join(PIN_FACTORIES)}, got {factory!r}")
    pin_map = {name: _pin(pins[name], f"pins.{name}", DEFAULT_PINS[name]) if name in pins
               else DEFAULT_PINS[name] for name in (*OUTPUT_PINS, *INPUT_PINS)}
    used: dict[int, str] = {}
    for name, spec in pin_map.items():
        if spec is None:
            continue
        if spec.pin in used:
            raise ConfigError(f"pins.{name}: GPIO {spec.pin} is already used by pins.{used[spec.pin]}")
        used[spec.pin] = name
    if pin_map["fire_loop"] is None:
        raise ConfigError("pins.fire_loop: required (the gate must watch the fire alarm loop)")

    def ms(key: str, default: float) -> float:
        return _positive(_get(timing, key, (int, float), "timing", default), f"timing.{key}") / 1000

    def policy_number(key: str, default: float) -> float:
        return _non_negative(_get(policy, key, (int, float), "policy", default), f"policy.{key}")

    stale = _get(deny, "stale_policy", str, "denylist", "admit")
    try:
        stale_policy = StaleListPolicy(stale)
    except ValueError:
        raise ConfigError(f"denylist.stale_policy: admit, guard or refuse, got {stale!r}") from None

    hub_table = sections["hub"]
    hub = None
    if hub_table:
        for key in ("url", "token"):
            if not isinstance(hub_table.get(key), str) or not hub_table[key]:
                raise ConfigError(f"hub.{key}: required when a [hub] section is present")
        hub = HubSpec(
            url=hub_table["url"].rstrip("/"),
            token=hub_table["token"],
            ca_bundle=_get(hub_table, "ca_bundle", str, "hub", None),
            interval_s=_positive(_get(hub_table, "interval_seconds", (int, float), "hub", 10.0),
                                 "hub.interval_seconds"),
        )

    listen = _get(display, "listen", (str, bool), "display", "127.0.0.1:8080")
    if listen is True:
        listen = "127.0.0.1:8080"
    if listen and (":" not in listen or not listen.rsplit(":", 1)[1].isdigit()):
        raise ConfigError(f"display.listen: expected HOST:PORT or false, got {listen!r}")

    return GateConfig(
        gate_id=_get(gate, "id", str, "gate", "gate-1"),
        venue=_get(gate, "venue", str, "gate", "venue"),
        directions=directions,
        exit_mode=exit_mode,
        trust_dir=path_of(_get(sections["trust"], "dir", str, "trust", None)),
        denylist_dir=path_of(_get(deny, "dir", str, "denylist", None)),
        denylist_scope=_get(deny, "scope", str, "denylist", None),
        max_list_age_s=3600 * _positive(
            _get(deny, "max_age_hours", (int, float), "denylist", 24), "denylist.max_age_hours"
        ),
        scanners=tuple(scanners),
        pin_factory=factory,
        pins=pin_map,
        timing=Timing(
            relay_pulse_s=ms("relay_pulse_ms", 300),
            passage_timeout_s=ms("passage_timeout_ms", 5000),
            refusal_display_s=ms("refusal_display_ms", 2000),
        ),
        glitch_filter_s=ms("glitch_filter_ms", 20),
        commit_at_grant=_get(policy, "commit_at_grant", bool, "policy", False),
        policy=PolicyConfig(
            zones=zones,
            anti_passback=_get(policy, "anti_passback", bool, "policy", True),
            anti_passback_timeout_s=60 * policy_number("anti_passback_minutes", 0),
            stale_list=stale_policy,
            skew_s=policy_number("skew_seconds", 60),
        ),
        journal_path=path_of(_get(journal, "path", str, "journal", "passgate-journal.db")),  # type: ignore[arg-type]
        retention_days=_positive(_get(journal, "retention_days", (int, float), "journal", 30),
                                 "journal.retention_days"),
        display_listen=listen or None,
        control_from=tuple(_get(display, "control_from", list, "display", ["127.0.0.1", "::1"])),
        hub=hub,
    )
