"""The times an operator types, read one way by every passgate command line (``passgate`` and
``passgate-hub``): epoch seconds, ISO 8601 with a zone, ``now``, or relative to now (``+4h``,
``-30m``, ``+2d``).

An ISO time without a zone is refused rather than read as local time: the hub's clock and the
operator's often sit in different zones, and a pass valid from the wrong hour fails silently.

    >>> parse_time("+2h", now=1000.0)
    8200.0
    >>> parse_time("2026-07-01T18:00:00Z")
    1782928800.0
"""

from __future__ import annotations

import math
import re
import time
from datetime import datetime

__all__ = ["FORMS", "parse_time"]

FORMS = "epoch seconds, ISO 8601 with a zone, now, or +4h"
_RELATIVE = re.compile(r"^([+-])(\d{1,9})([smhdw])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_LAST = 253402300800.0  # 10000-01-01T00:00Z: later times cannot be shown as dates


def parse_time(value: str, *, name: str = "", now: float | None = None) -> float:
    """Epoch seconds of ``value``, or ``ValueError`` with one line naming ``name`` (the flag)."""
    prefix = f"{name}: " if name else ""
    now = time.time() if now is None else now
    text = value.strip()
    match = _RELATIVE.match(text)
    if text == "now":
        result = now
    elif match:
        sign, count, unit = match.groups()
        result = now + (1 if sign == "+" else -1) * int(count) * _UNIT_S[unit]
    else:
        try:
            result = float(text)
        except ValueError:
            result = _iso(text, value, prefix)
        if not math.isfinite(result):  # "nan", "inf"
            raise ValueError(f"{prefix}{value!r} is not a time (give {FORMS})")
    if not 0 <= result < _LAST:
        raise ValueError(f"{prefix}{value!r} is out of range (1970 to 9999)")
    return float(result)


def _iso(text: str, value: str, prefix: str) -> float:
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{prefix}{value!r} is not a time (give {FORMS})") from None
    if parsed.tzinfo is None:
        raise ValueError(f"{prefix}{value!r} has no time zone (add Z or an offset such as +02:00)")
    return parsed.timestamp()
