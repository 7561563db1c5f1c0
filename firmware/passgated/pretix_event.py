"""The gate's pretix event: its keys, time zone and times, and each zone's check-in list, read from
the files ``passgate pretix pull`` writes, so a gate holds no pretix credentials.

The event file is read again when it changes (a pull that brings a new key reaches the gate's next
scan); a file that cannot be read then keeps the last good one and says so in the log, and a gate
that never read one refuses pretix tickets with the reason, never admits them.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from passgate import PassRefused, Reason
from passgate.keys import KeyFileError
from passgate.pretix import (
    JsonFileError,
    PretixKey,
    PretixTicket,
    load_event_keys,
    read_json_file,
    verify_sig1_signature,
)

from .config import CheckinSpec, ConfigError, PretixSpec
from .policy import CheckinList, PretixPolicy

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Loaded:
    keys: tuple[PretixKey, ...]
    policy: PretixPolicy


def _read_json(path: Path, key: str) -> Any:
    try:
        return read_json_file(path, "file")
    except JsonFileError as exc:
        raise ConfigError(f"{key}: {path}: {exc}") from None


def _time(event: Mapping[str, Any], name: str, required: bool = False) -> datetime | None:
    value = event.get(name)
    if value is None and not required:
        return None
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        raise ConfigError(f"pretix.event: {name} is not an ISO 8601 time: {value!r}") from None
    if parsed.tzinfo is None:
        raise ConfigError(f"pretix.event: {name} has no UTC offset: {value!r}")
    return parsed


def _ids(value: Any, where: str) -> frozenset[int]:
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise ConfigError(f"{where}: expected a list of ids, got {value!r}")
    return frozenset(value)


def _fetched_list(resource: Any, where: str) -> CheckinList:
    """A check-in list resource as pretix's API gives it (``GET .../checkinlists/``)."""
    if not isinstance(resource, dict):
        raise ConfigError(f"{where}: not a check-in list")
    products = None if resource.get("all_products", False) else _ids(resource.get("limit_products", []),
                                                                    f"{where}.limit_products")
    variations = resource.get("limit_variations")
    subevent = resource.get("subevent")
    rules = resource.get("rules") or None
    if subevent is not None and not isinstance(subevent, int):
        raise ConfigError(f"{where}.subevent: expected an id, got {subevent!r}")
    if rules is not None and not isinstance(rules, dict):
        raise ConfigError(f"{where}.rules: a JsonLogic rule is an object, got {type(rules).__name__}")
    return CheckinList(
        name=f"{resource.get('name', '')} (#{resource.get('id')})".strip(),
        products=products,
        variations=_ids(variations, f"{where}.limit_variations") if variations else None,
        subevent=subevent,
        allow_multiple_entries=bool(resource.get("allow_multiple_entries", False)),
        allow_entry_after_exit=bool(resource.get("allow_entry_after_exit", True)),
        rules=rules,
    )


def _lists_file(spec: PretixSpec) -> dict[int, Any]:
    if spec.checkin_lists is None:
        return {}
    data = _read_json(spec.checkin_lists, "pretix.checkin_lists")
    if isinstance(data, dict):  # passgate pretix pull's file ("lists"), or a page of pretix's API ("results")
        data = data.get("lists", data.get("results"))
    if not isinstance(data, list):
        raise ConfigError(f"pretix.checkin_lists: {spec.checkin_lists}: expected a list of check-in lists")
    return {item["id"]: item for item in data if isinstance(item, dict) and isinstance(item.get("id"), int)}


def _zone_list(zone: str, checkin: CheckinSpec, fetched: dict[int, Any]) -> CheckinList:
    where = f"pretix.zones.{zone}" if zone else "pretix"
    if checkin.checkin_list is not None:
        if checkin.checkin_list not in fetched:
            known = ", ".join(str(i) for i in sorted(fetched)) or "none"
            raise ConfigError(f"{where}.checkin_list: no list {checkin.checkin_list} in pretix.checkin_lists "
                              f"(lists: {known})")
        return _fetched_list(fetched[checkin.checkin_list], f"pretix.checkin_lists[{checkin.checkin_list}]")
    return CheckinList(
        name=f"zone {zone}" if zone else "gate.toml",
        products=frozenset(checkin.products) if checkin.products is not None else None,
        variations=frozenset(checkin.variations) if checkin.variations is not None else None,
        subevent=checkin.subevent, allow_multiple_entries=checkin.allow_multiple_entries,
        allow_entry_after_exit=checkin.allow_entry_after_exit, rules=checkin.rules)


def load(spec: PretixSpec) -> Loaded:
    """Read the event's files; ``ConfigError`` naming the key when they do not make a usable event."""
    event = _read_json(spec.event, "pretix.event")
    if not isinstance(event, dict):
        raise ConfigError(f"pretix.event: {spec.event}: not an event resource (a JSON object)")
    try:
        keys = load_event_keys(event)
    except (KeyFileError, ValueError) as exc:
        raise ConfigError(f"pretix.event: {spec.event}: {exc}") from None
    zone_name = spec.timezone or event.get("timezone")
    if not isinstance(zone_name, str) or not zone_name:
        raise ConfigError(f"pretix.event: {spec.event} names no timezone (set pretix.timezone)")
    try:
        tz = ZoneInfo(zone_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"pretix.timezone: unknown time zone {zone_name!r}") from None
    date_from = _time(event, "date_from", required=True)
    assert date_from is not None
    fetched = _lists_file(spec)
    lists = {zone: _zone_list(zone, checkin, fetched) for zone, checkin in spec.lists.items()}
    policy = PretixPolicy(tz=tz, date_from=date_from, lists=lists, gate=spec.gate,
                          date_to=_time(event, "date_to"), date_admission=_time(event, "date_admission"))
    return Loaded(keys, policy)


class PretixEvent:
    """The loaded event, read again when its files change; ``verify`` is the scan path's entry."""

    def __init__(self, spec: PretixSpec) -> None:
        self.spec = spec
        self._lock = threading.Lock()
        self._stamp: tuple[Any, ...] | None = None
        self.loaded: Loaded | None = None
        self.error: str | None = None
        self.refresh()

    def _files_stamp(self) -> tuple[Any, ...]:
        stamp: list[Any] = []
        for path in (self.spec.event, self.spec.checkin_lists):
            try:
                st = os.stat(path) if path is not None else None
            except OSError:
                st = None
            stamp.append((st.st_mtime_ns, st.st_size, st.st_ino) if st else None)
        return tuple(stamp)

    def refresh(self) -> Loaded | None:
        """The event as its files say now (read again only when they changed)."""
        stamp = self._files_stamp()
        with self._lock:
            if stamp != self._stamp:
                self._stamp = stamp
                try:
                    self.loaded, self.error = load(self.spec), None
                except ConfigError as exc:
                    self.error = str(exc)
                    if self.loaded is None:
                        log.error("pretix: %s: pretix tickets are refused until it is fixed", exc)
                    else:
                        log.error("pretix: %s: the event as read before applies", exc)
            return self.loaded

    def verify(self, text: str) -> tuple[PretixTicket | PassRefused, PretixPolicy | None]:
        """A pretix ticket's signature checked with the event's keys (its time window is the policy's,
        after revocation); the event's policy with it."""
        loaded = self.refresh()
        if loaded is None:
            return PassRefused(Reason.UNKNOWN_KEY, f"pretix event not loaded: {self.error}"), None
        try:
            return verify_sig1_signature(text, loaded.keys), loaded.policy
        except PassRefused as refused:
            return refused, loaded.policy
