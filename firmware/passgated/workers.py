"""Background workers that never die silently: each one catches, logs, reports its health and
restarts with backoff.

The gate's workers (journal upkeep, deny-list drop folder, hub sync, guard display) run beside the
control loop and never touch the state machine. A worker is a ``step`` function called every
``interval_s``; an exception in it is logged with its traceback, counted, shown in ``/status`` and
``/metrics``, and the step runs again after a backoff that doubles up to ``max_backoff_s``.

    upkeep = Worker("journal-upkeep", step=upkeep.step, interval_s=2.0)
    upkeep.start()
    upkeep.health()   # {"name": ..., "alive": True, "failures": 0, "last_error": None, ...}
    upkeep.close()
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

log = logging.getLogger("passgated.workers")


@dataclass(frozen=True, slots=True)
class WorkerHealth:
    """What ``/status`` shows of one worker."""

    name: str
    alive: bool
    failures: int  # steps that raised, in all
    failing: bool  # the last step raised
    last_error: str | None
    last_ok_age_s: float | None  # seconds since a step last succeeded

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Worker:
    """Runs ``step()`` every ``interval_s`` seconds in a daemon thread until ``close()``.

    ``step`` may return a number of seconds to wait before the next step instead of the interval
    (0 to run again at once: more work is waiting)."""

    def __init__(self, name: str, step: Callable[[], float | None], *, interval_s: float,
                 first_backoff_s: float = 1.0, max_backoff_s: float = 60.0,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.step = step
        self.interval_s = interval_s
        self.first_backoff_s = first_backoff_s
        self.max_backoff_s = max_backoff_s
        self.monotonic = monotonic
        self.stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._failures = 0
        self._consecutive = 0
        self._last_error: str | None = None
        self._last_ok: float | None = None

    def start(self, *, at_once: bool = True) -> None:
        """Start the thread; the first step runs at once unless ``at_once`` is False."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, args=(at_once,), name=self.name, daemon=True)
            self._thread.start()

    def _run(self, at_once: bool) -> None:
        wait = 0.0 if at_once else self.interval_s
        while not self.stopping.wait(wait):
            try:
                requested = self.step()
            except Exception as exc:  # a worker must outlive any bug or fault in one step
                self._failures += 1
                self._consecutive += 1
                self._last_error = f"{type(exc).__name__}: {exc}"
                wait = min(self.max_backoff_s, self.first_backoff_s * 2 ** min(self._consecutive - 1, 16))
                log.exception("%s failed (%d in a row); again in %.0f s", self.name, self._consecutive, wait)
                continue
            if self._consecutive:
                log.warning("%s works again after %d failure(s)", self.name, self._consecutive)
            self._consecutive = 0
            self._last_error = None
            self._last_ok = self.monotonic()
            wait = self.interval_s if requested is None else requested

    def health(self) -> WorkerHealth:
        last_ok = self._last_ok
        return WorkerHealth(
            name=self.name,
            alive=self._thread is not None and self._thread.is_alive(),
            failures=self._failures,
            failing=self._consecutive > 0,
            last_error=self._last_error,
            last_ok_age_s=None if last_ok is None else round(self.monotonic() - last_ok, 1),
        )

    def close(self, timeout: float = 10.0) -> None:
        self.stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
