"""Gate configuration: one TOML file, validated at start with errors that name the key.

Every setting has an embedded default, so ``passgated simulate`` and ``demo`` need no file. See
``packaging/gate.toml`` for a commented example of every key.
"""

from __future__ import annotations

import ipaddress
import json
import math
import os
import re
import tomllib
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from passgate import KeyFileError, TrustStore, wire
from passgate.denylist import DEFAULT_MAX_BYTES, KINDS
from passgate.scanners import ScannerSpecError, check_scanner

from . import texts
from .journal import DEFAULT_WRITE_TIMEOUT_S
from .machine import Timing
from .policy import Direction, PolicyConfig, StaleListPolicy


class ExitMode(StrEnum):
    FREE = "free"  # exits need no scan
    SCANNED = "scanned"  # exit scans are decided and record the exit


class PinFactory(StrEnum):
    MOCK = "mock"  # gpiozero's MockFactory: simulation and tests
    LGPIO = "lgpio"  # Raspberry Pi 4 and 5
    RPIGPIO = "rpigpio"  # older Pis
    AUTO = "auto"  # gpiozero's own choice


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


class ReaderFault(StrEnum):
    """What a reader that goes offline (or reports tamper) does to the gate: ``fault`` takes it out
    of service until the reader is back, ``event`` only records it (the other readers go on)."""

    FAULT = "fault"
    EVENT = "event"


@dataclass(frozen=True, slots=True)
class ScannerSpec:
    source: str
    direction: Direction = Direction.ENTRY
    options: dict[str, Any] = field(default_factory=dict)
    on_offline: ReaderFault = ReaderFault.FAULT
    on_tamper: ReaderFault = ReaderFault.FAULT


@dataclass(frozen=True, slots=True)
class HubSpec:
    url: str
    token: str
    ca_bundle: str | None = None
    interval_s: float = 10.0


@dataclass(frozen=True, slots=True)
class CheckinSpec:
    """One zone's pretix check-in list: the id of a list in ``pretix.checkin_lists`` (written by
    ``passgate pretix pull``), or the list written out in gate.toml."""

    checkin_list: int | None = None
    products: tuple[int, ...] | None = None  # None: all products
    variations: tuple[int, ...] | None = None
    subevent: int | None = None
    allow_multiple_entries: bool = False
    allow_entry_after_exit: bool = True
    rules: Any = None  # JsonLogic


@dataclass(frozen=True, slots=True)
class PretixSpec:
    """The ``[pretix]`` section: the event's file (its keys, time zone and times), the check-in
    lists' file, the gate's id in pretix, and the list of each zone (``""``: the gate's own)."""

    event: Path
    checkin_lists: Path | None
    gate: int | str | None
    timezone: str | None
    lists: dict[str, CheckinSpec]


@dataclass(frozen=True, slots=True)
class GateConfig:
    """A validated gate configuration; build it with ``load_config`` / ``parse_config``, which
    hold the defaults."""

    gate_id: str
    venue: str
    directions: tuple[Direction, ...]
    exit_mode: ExitMode
    trust_dir: Path | None
    denylist_dir: Path | None
    denylist_scope: str | None  # None: the venue (the hub signs each venue's lists with its name)
    denylist_kinds: tuple[str, ...] | None  # None: the lists the hub serves or that left a trace
    max_list_age_s: float
    max_list_bytes: int
    scanners: tuple[ScannerSpec, ...]
    pin_factory: PinFactory
    pins: dict[str, PinSpec | None]
    timing: Timing
    glitch_filter_s: float
    commit_at_grant: bool  # for turnstiles without passage feedback
    policy: PolicyConfig
    journal_path: Path
    retention_days: float
    journal_write_timeout_s: float
    display_listen: str | None
    display_hosts: tuple[str, ...]  # names besides its addresses the display answers to (Host)
    display_language: str  # the guard page's words (``passgated.texts``)
    display_sound: bool  # the guard page beeps for admit and refuse (switchable on the page)
    control_socket: Path | None  # None: control.sock beside the journal (passgated.layout)
    hub: HubSpec | None
    pretix: PretixSpec | None = None  # None: pretix tickets are refused (not an issuer known here)
    given: frozenset[str] = frozenset()  # the keys set in the file or on the command line ("gate.zones")


# A check-in list's keys, in [pretix] (the gate's own list) and in each [pretix.zones.NAME].
CHECKIN_KEYS = ("checkin_list", "products", "variations", "subevent", "allow_multiple_entries",
                "allow_entry_after_exit", "rules", "rules_file")
SECTIONS = {
    "gate": {"id", "venue", "zones", "directions", "exit_mode"},
    "trust": {"dir"},
    "denylist": {"dir", "scope", "lists", "max_age_hours", "stale_policy", "max_file_mb"},
    "scanner": {"source", "direction", "on_offline", "on_tamper"},  # plus free-form source options
    "pins": {"factory", *OUTPUT_PINS, *INPUT_PINS},
    "timing": {"relay_pulse_ms", "passage_timeout_ms", "refusal_display_ms", "glitch_filter_ms"},
    "policy": {"anti_passback", "anti_passback_minutes", "skew_seconds", "commit_at_grant",
               "presentation_window_steps"},
    "journal": {"path", "retention_days", "write_timeout_ms"},
    "display": {"listen", "hosts", "control_from", "language", "sound"},
    "control": {"socket"},
    "hub": {"url", "token", "ca_bundle", "interval_seconds"},
    "pretix": {"event", "checkin_lists", "gate", "timezone", "zones", *CHECKIN_KEYS},
}


_HOSTNAME = re.compile(r"(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                       r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?")


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


def _within(value: float, low: float, high: float, where: str, unit: str = "") -> float:
    """A number in [low, high]: outside it a setting is a typo or would make the gate unsafe."""
    if not low <= value <= high:
        raise ConfigError(f"{where}: must be between {low:g} and {high:g}{unit}, got {value!r}")
    return value


def check_listen(value: str, where: str) -> str:
    """HOST:PORT with an IP address (or localhost) and a port 0-65535 (0: any free port)."""
    host, sep, port = value.rpartition(":")
    host = host.strip("[]")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"{where}: expected HOST:PORT with a port 0-65535, got {value!r}")
    if host != "localhost":
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ConfigError(f"{where}: the host must be an IP address or localhost, got {host!r}") from None
    return value


def _bounds(setting: str) -> tuple[float, float]:
    """A hub-managed setting's bounds, from the wire contract (the hub validates the same)."""
    bounds = wire.bounds(wire.GateSettings, setting)
    return bounds["ge"], bounds["le"]


def _non_negative(value: float, where: str) -> float:
    if value < 0:
        raise ConfigError(f"{where}: must not be negative, got {value!r}")
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


def _ids(table: dict[str, Any], key: str, where: str) -> tuple[int, ...] | None:
    value = _get(table, key, list, where, None)
    if value is not None and not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value):
        raise ConfigError(f"{where}.{key}: a list of pretix ids (whole numbers), got {value!r}")
    return None if value is None else tuple(value)


def _checkin(table: dict[str, Any], where: str, path_of: Any) -> CheckinSpec | None:
    """A zone's check-in list from its keys; None when the table names none."""
    given = [key for key in CHECKIN_KEYS if key in table]
    if not given:
        return None
    if "checkin_list" in table and len(given) > 1:
        raise ConfigError(f"{where}.checkin_list: names a list from pretix.checkin_lists; do not also set "
                          f"{', '.join(k for k in given if k != 'checkin_list')} (edit the list in pretix)")
    if "rules" in table and "rules_file" in table:
        raise ConfigError(f"{where}.rules: set rules or rules_file, not both")
    rules: Any = None
    if "rules" in table or "rules_file" in table:
        key = "rules" if "rules" in table else "rules_file"
        text = _get(table, key, str, where, "")
        if key == "rules_file":
            try:
                text = Path(path_of(text)).read_text()
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError(f"{where}.rules_file: cannot be read ({exc})") from None
        try:
            rules = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise ConfigError(f"{where}.{key}: not JSON ({exc})") from None
        if not isinstance(rules, dict):
            raise ConfigError(f"{where}.{key}: a JsonLogic rule is a JSON object, got {type(rules).__name__}")
    checkin_list = _get(table, "checkin_list", int, where, None)
    subevent = _get(table, "subevent", int, where, None)
    return CheckinSpec(
        checkin_list=checkin_list, products=_ids(table, "products", where),
        variations=_ids(table, "variations", where), subevent=subevent,
        allow_multiple_entries=_get(table, "allow_multiple_entries", bool, where, False),
        allow_entry_after_exit=_get(table, "allow_entry_after_exit", bool, where, True), rules=rules)


def _pretix(table: dict[str, Any], path_of: Any) -> PretixSpec | None:
    if not table:
        return None
    event = _get(table, "event", str, "pretix", None)
    if not event:
        raise ConfigError("pretix.event: required: the event's file (passgate pretix pull writes event.json)")
    gate = _get(table, "gate", (int, str), "pretix", None)
    lists: dict[str, CheckinSpec] = {}
    own = _checkin(table, "pretix", path_of)
    if own is not None:
        lists[""] = own
    zones = _get(table, "zones", dict, "pretix", {})
    for zone, zone_table in zones.items():
        where = f"pretix.zones.{zone}"
        if not isinstance(zone_table, dict):
            raise ConfigError(f"{where}: must be a table, e.g. checkin_list = 17")
        extra = set(zone_table) - set(CHECKIN_KEYS)
        if extra:
            raise ConfigError(f"{where}.{sorted(extra)[0]}: unknown key")
        spec = _checkin(zone_table, where, path_of)
        if spec is None:
            raise ConfigError(f"{where}: name a check-in list (checkin_list = ID) or its products")
        lists[zone] = spec
    if not lists:
        lists[""] = CheckinSpec()  # every product, one entry: pretix's default list
    checkin_lists = _get(table, "checkin_lists", str, "pretix", None)
    if checkin_lists is None and any(spec.checkin_list is not None for spec in lists.values()):
        raise ConfigError("pretix.checkin_lists: required to name a list by id (checkin_list = ID)")
    return PretixSpec(event=path_of(event), checkin_lists=path_of(checkin_lists), gate=gate,
                      timezone=_get(table, "timezone", str, "pretix", None), lists=lists)


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
    if changes.get("display_listen"):
        check_listen(changes["display_listen"], "--display")
    policy_changes = {k: changes.pop(k) for k in ("zones",) if k in changes}
    if policy_changes:
        changes["policy"] = replace(config.policy, zones=tuple(policy_changes["zones"]))
        changes["given"] = config.given | {"gate.zones"}
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
    raw_exit = _get(gate, "exit_mode", str, "gate", "free")
    try:
        exit_mode = ExitMode(raw_exit)
    except ValueError:
        raise ConfigError(f"gate.exit_mode: must be 'free' or 'scanned', got {raw_exit!r}") from None

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
        gate_keys = ("source", "direction", "on_offline", "on_tamper")
        options = {k: v for k, v in item.items() if k not in gate_keys}
        try:
            source_class = check_scanner(item["source"], options)
        except ScannerSpecError as exc:
            raise ConfigError(f"{where}.{exc}") from None
        kind_target = item["source"].partition(":")[2]
        for facing in sorted(source_class.target_directions(kind_target)):
            if facing not in directions:
                raise ConfigError(f"{where}.source: a reader faces {facing}, which is not in gate.directions")
        rules = []
        for key in ("on_offline", "on_tamper"):
            value = item.get(key, "fault")
            try:
                rules.append(ReaderFault(value))
            except ValueError:
                raise ConfigError(f"{where}.{key}: 'fault' or 'event', got {value!r}") from None
        scanners.append(ScannerSpec(item["source"], direction, options, *rules))

    raw_factory = _get(pins, "factory", str, "pins", "mock")
    try:
        factory = PinFactory(raw_factory)
    except ValueError:
        names = ", ".join(PinFactory)
        raise ConfigError(f"pins.factory: one of {names}, got {raw_factory!r}") from None
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
        """A hub-managed duration: its bounds are the wire's (the hub checks the same)."""
        where = f"timing.{key}"
        low, high = _bounds(key)
        return _within(_get(timing, key, (int, float), "timing", default), low, high, where, " ms") / 1000

    def policy_number(key: str, default: float) -> float:
        return _non_negative(_get(policy, key, (int, float), "policy", default), f"policy.{key}")

    stale = _get(deny, "stale_policy", str, "denylist", str(StaleListPolicy.GUARD))
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
            interval_s=_within(_get(hub_table, "interval_seconds", (int, float), "hub", 10.0), 1, 3600,
                               "hub.interval_seconds", " s"),
        )
        scheme = urlsplit(hub.url).scheme
        if scheme not in ("http", "https") or not urlsplit(hub.url).hostname:
            raise ConfigError(f"hub.url: expected an http(s):// URL, got {hub.url!r}")

    kinds = _get(deny, "lists", list, "denylist", None)
    if kinds is not None and not all(kind in KINDS for kind in kinds):
        raise ConfigError(f"denylist.lists: a list of {' and '.join(KINDS)}, got {kinds!r}")

    listen = _get(display, "listen", (str, bool), "display", "127.0.0.1:8080")
    if listen is True:
        listen = "127.0.0.1:8080"
    if listen:
        check_listen(listen, "display.listen")
    if "control_from" in display:  # an address is no credential: control moved to a Unix socket
        raise ConfigError("display.control_from: control is no longer served over HTTP; remove this key "
                          "(operators use 'passgated reset|maintenance' through [control] socket)")
    hosts = tuple(_get(display, "hosts", list, "display", []))
    for name in hosts:
        if not isinstance(name, str) or not _HOSTNAME.fullmatch(name):
            raise ConfigError(f"display.hosts: {name!r} is not a host name")
    language = _get(display, "language", str, "display", texts.REFERENCE)
    if language not in texts.languages():
        raise ConfigError(f"display.language: one of {', '.join(texts.languages())}, got {language!r} "
                          "(passgated/texts.py says how to add one)")
    socket_path = _get(sections["control"], "socket", str, "control", None)
    if socket_path is not None and not socket_path:
        raise ConfigError("control.socket: must be a path")

    return GateConfig(
        gate_id=_get(gate, "id", str, "gate", "gate-1"),
        venue=_get(gate, "venue", str, "gate", "venue"),
        directions=directions,
        exit_mode=exit_mode,
        trust_dir=path_of(_get(sections["trust"], "dir", str, "trust", None)),
        denylist_dir=path_of(_get(deny, "dir", str, "denylist", None)),
        denylist_scope=_get(deny, "scope", str, "denylist", None),
        denylist_kinds=tuple(dict.fromkeys(kinds)) if kinds is not None else None,
        max_list_age_s=3600 * _within(
            _get(deny, "max_age_hours", (int, float), "denylist", 24), *_bounds("max_list_age_hours"),
            "denylist.max_age_hours", " hours"),
        max_list_bytes=int(1024 * 1024 * _within(
            _get(deny, "max_file_mb", (int, float), "denylist", DEFAULT_MAX_BYTES // 2**20), 1, 64 * 1024,
            "denylist.max_file_mb", " MB")),
        scanners=tuple(scanners),
        pin_factory=factory,
        pins=pin_map,
        # A pulse longer than a few seconds lets several people through; a passage timeout beyond a
        # minute holds a granted entry hostage.
        timing=Timing(
            relay_pulse_s=ms("relay_pulse_ms", 300),
            passage_timeout_s=ms("passage_timeout_ms", 5000),
            refusal_display_s=ms("refusal_display_ms", 2000),
        ),
        glitch_filter_s=_within(_get(timing, "glitch_filter_ms", (int, float), "timing", 20), 1, 1000,
                                "timing.glitch_filter_ms", " ms") / 1000,
        commit_at_grant=_get(policy, "commit_at_grant", bool, "policy", False),
        policy=PolicyConfig(
            zones=zones,
            anti_passback=_get(policy, "anti_passback", bool, "policy", True),
            anti_passback_timeout_s=60 * _within(policy_number("anti_passback_minutes", 0),
                                                 *_bounds("anti_passback_minutes"),
                                                 "policy.anti_passback_minutes", " minutes"),
            stale_list=stale_policy,
            skew_s=_within(policy_number("skew_seconds", 60), *_bounds("skew_seconds"),
                           "policy.skew_seconds", " s"),
            # each step more lets a screenshot of a holder's code work a step longer
            presentation_window_steps=int(_within(_get(policy, "presentation_window_steps", int, "policy", 1),
                                                  0, 4, "policy.presentation_window_steps", " steps")),
        ),
        journal_path=path_of(_get(journal, "path", str, "journal", "passgate-journal.db")),  # type: ignore[arg-type]
        retention_days=_within(_get(journal, "retention_days", (int, float), "journal", 30), 0.01, 3660,
                               "journal.retention_days", " days"),
        # A person waits this long at most before a refusal: keep it well under a second (raise it
        # only for storage that is slow by nature, never to hide a failing card).
        journal_write_timeout_s=_within(
            _get(journal, "write_timeout_ms", (int, float), "journal", DEFAULT_WRITE_TIMEOUT_S * 1000),
            20, 5000, "journal.write_timeout_ms", " ms") / 1000,
        display_listen=listen or None,
        display_hosts=tuple(dict.fromkeys(name.lower() for name in hosts)),
        display_language=language,
        display_sound=_get(display, "sound", bool, "display", True),
        control_socket=path_of(socket_path),
        hub=hub,
        pretix=_pretix(sections["pretix"], path_of),
        given=frozenset(f"{name}.{key}" for name, table in sections.items() for key in table),
    )


def check_files(config: GateConfig) -> None:
    """What ``run`` would find wrong on disk, as a ``ConfigError`` naming the key: trusted keys
    (a gate without any refuses every pass, unless a hub supplies them), each scanner's own files
    (an OSDP bus's keys), the hub's CA bundle, and directories the gate must write."""
    if config.trust_dir is None:
        if config.hub is None:
            raise ConfigError("trust.dir: not set (simulate: --trust DIR) and no [hub] supplies keys: "
                              "every pass would be refused")
    elif not config.trust_dir.is_dir():
        raise ConfigError(f"trust.dir: {config.trust_dir}: no such directory")
    elif config.hub is not None and not any(config.trust_dir.glob("*.pem")):
        pass  # the hub supplies the keys; until they come, the gate refuses and says so
    else:
        try:
            keys = TrustStore.load(config.trust_dir)
        except KeyFileError as exc:
            raise ConfigError(f"trust.dir: {exc}") from None
        if not keys and config.hub is None:
            raise ConfigError(f"trust.dir: no public keys (*.pem) in {config.trust_dir}: every pass would "
                              "be refused")
    for i, spec in enumerate(config.scanners):  # e.g. an OSDP bus's keys file
        try:
            check_scanner(spec.source, spec.options).check_files(spec.source.partition(":")[2], spec.options)
        except (ScannerSpecError, ValueError) as exc:
            raise ConfigError(f"scanner[{i}]: {exc}") from None
    if config.pretix is not None:
        from .pretix_event import load  # the event's files: keys, time zone, check-in lists

        load(config.pretix)
    if config.hub is not None and config.hub.ca_bundle and not Path(config.hub.ca_bundle).is_file():
        raise ConfigError(f"hub.ca_bundle: {config.hub.ca_bundle}: no such file")
    for key, path in (("journal.path", config.journal_path.parent), ("denylist.dir", config.denylist_dir)):
        if path is None:
            continue
        existing = path
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
            raise ConfigError(f"{key}: {path} cannot be created or written")
