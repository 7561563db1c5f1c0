"""Background workers never die silently: a failing step is logged, counted, shown in /status, and
retried with a growing backoff; the worker carries on when the fault clears."""

from __future__ import annotations

import threading
from pathlib import Path

from gpiozero.pins.mock import MockFactory

from passgate import TrustStore
from passgated.config import load_config
from passgated.gate import Gate
from passgated.workers import Worker
from tests.helpers import LOADED_WRITE_TIMEOUT_S, wait_for


def test_a_failing_step_is_retried_with_backoff_and_reported() -> None:
    calls: list[float] = []
    waits: list[float] = []
    done = threading.Event()

    def step() -> float:
        calls.append(0)
        if len(calls) <= 3:
            raise OSError(f"disk I/O error #{len(calls)}")
        if len(calls) >= 5:
            done.set()
        return 0.01

    worker = Worker("flaky", step, interval_s=0.01, first_backoff_s=0.01, max_backoff_s=0.04)
    real_wait = worker.stopping.wait

    def wait(timeout: float | None = None) -> bool:
        waits.append(timeout or 0.0)
        return real_wait(timeout)

    worker.stopping.wait = wait  # type: ignore[method-assign]
    worker.start()
    assert wait_for(lambda: worker.health().failures == 3 and worker.health().failing)
    assert "disk I/O error #3" in (worker.health().last_error or "")
    assert done.wait(5)
    worker.close()
    health = worker.health()
    assert health.failures == 3 and not health.failing and health.last_error is None
    assert not health.alive and health.last_ok_age_s is not None
    assert waits[1:4] == [0.01, 0.02, 0.04]  # the backoff doubles up to its ceiling


def test_the_gate_reports_its_workers(tmp_path: Path, caplog) -> None:
    config = load_config(None, journal_path=tmp_path / "j.db", journal_write_timeout_s=LOADED_WRITE_TIMEOUT_S)
    gate = Gate(config, pin_factory=MockFactory(), trust=TrustStore(), sources=[], display=False)
    gate.io.fire_loop.pin.drive_low()
    upkeep = gate.workers[0]
    real_step = upkeep.step
    failures = iter([RuntimeError("checkpoint failed: disk I/O error")])

    def step() -> float:
        for exc in failures:
            raise exc
        return real_step()

    upkeep.step = step
    upkeep.first_backoff_s = 0.01
    gate.start()
    try:
        assert wait_for(lambda: any(w["failures"] == 1 and not w["failing"] for w in gate.status()["workers"]
                                    if w["name"] == "journal-upkeep"))
        names = [w["name"] for w in gate.status()["workers"]]
        assert names == ["journal-upkeep", "control-socket"]
        assert all(w["alive"] for w in gate.status()["workers"])
        assert "journal-upkeep failed" in caplog.text  # logged with its traceback
    finally:
        gate.stop()
