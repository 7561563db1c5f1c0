"""Moments as dates a person reads, in the venue's time zone: the CLI's JSON (ISO 8601 with the
zone's offset, which a script still parses) and the console's pages (with the zone's name).

The hub stores and serves epoch seconds (``Event.t``, ``Gate.last_seen``, ...); only what a person
reads is turned into dates, at the edge.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

UTC = ZoneInfo("UTC")
# Keys whose number is a moment (epoch seconds); ``*_s`` durations and counts stay numbers.
MOMENTS = frozenset({"t", "hub_t", "at", "last_seen", "valid_from", "valid_until"})


def is_moment(key: str) -> bool:
    return key in MOMENTS or key.endswith("_at") or key == "locked_until"


def iso(t: float, tz: ZoneInfo) -> str:
    """``2026-12-03T07:45:12+01:00``: read by people and by ``datetime.fromisoformat``."""
    return datetime.fromtimestamp(t, tz).isoformat(timespec="seconds")


def when_in(t: float | None, tz: ZoneInfo) -> str:
    """A moment for a page, in the venue's time zone (named): ``2026-12-03 07:45 CET``."""
    return "–" if t is None else datetime.fromtimestamp(t, tz).strftime("%Y-%m-%d %H:%M %Z")


def readable(value: Any, zones: Mapping[str, str], tz: ZoneInfo = UTC) -> Any:
    """``value`` (the CLI's answer) with each moment as ``iso`` in its venue's zone: a record
    naming a ``venue`` (``zones``: venue name → IANA zone) uses that venue's, others the zone
    around them (``tz``: the command's venue, else UTC)."""
    if isinstance(value, list):
        return [readable(item, zones, tz) for item in value]
    if not isinstance(value, dict):
        return value
    venue = value.get("venue")
    if isinstance(venue, str) and venue in zones:
        tz = ZoneInfo(zones[venue])
    return {key: iso(item, tz) if is_moment(key) and _number(item) else readable(item, zones, tz)
            for key, item in value.items()}


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
