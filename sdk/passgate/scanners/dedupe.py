"""Duplicate suppression shared by all sources: a payload seen again within ``window`` seconds
of its last sighting is a duplicate.

The window slides on every sighting, so a code held in front of a camera (seen every frame) or
re-sent by a scanner in continuous mode stays one scan however long it is held.
"""

from __future__ import annotations

from collections import OrderedDict


class Dedupe:
    """``seen(payload, t)`` answers "is this a repeat?"; memory stays bounded by pruning
    payloads not seen for ``window`` seconds (and by ``max_entries``)."""

    def __init__(self, window: float, *, max_entries: int = 1024) -> None:
        self.window = window
        self.max_entries = max_entries
        self._last: OrderedDict[bytes, float] = OrderedDict()

    def seen(self, payload: bytes, t: float) -> bool:
        while self._last:
            oldest, at = next(iter(self._last.items()))
            if t - at <= self.window and len(self._last) < self.max_entries:
                break
            del self._last[oldest]
        previous = self._last.pop(payload, None)
        self._last[payload] = t
        return previous is not None and t - previous <= self.window
