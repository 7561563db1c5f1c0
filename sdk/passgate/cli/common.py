"""Argument helpers shared by the subcommands."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta


class CliError(Exception):
    """A user error: printed as one line, exit status 2."""


_RELATIVE = re.compile(r"^\+(\d+)([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_time(value: str, *, now: datetime | None = None) -> datetime:
    """ISO 8601 (``2026-12-31T23:00``, local time when no offset is given), ``now``, or a
    relative ``+90m`` / ``+2h`` / ``+7d``."""
    now = now or datetime.now(UTC)
    text = value.strip()
    if text == "now":
        return now
    match = _RELATIVE.match(text)
    if match:
        return now + timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise CliError(f"bad time {value!r}: use ISO 8601 (2026-12-31T23:00) or +2h / +7d") from None
    return parsed if parsed.tzinfo else parsed.astimezone()


def read_lines(arg: str) -> Iterator[str]:
    """The argument itself, or each non-empty line of stdin when it is ``-``."""
    if arg != "-":
        yield arg
        return
    for line in sys.stdin:
        if line.strip():
            yield line.strip()
