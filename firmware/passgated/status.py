"""What a gate has answered today, and the status ``/status`` shows (the guard page reads it too).

The status is built on the display server's threads from values the control loop published; it
never touches the control loop's journal connection and never raises (a part that cannot answer
shows as ``None``).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.core import GaugeMetricFamily, Metric

from passgate import Reason

from .journal import JournalError, unsent_count
from .policy import Decision

AWAITING_HUB = "Waiting for the hub's first bundle: no keys yet"

if TYPE_CHECKING:
    from .gate import Gate


class Answers:
    """The last decision, today's counts by reason and today's passages by direction (the day is
    the gate's local day; a passage counts once, by the rule the hub counts with)."""

    def __init__(self) -> None:
        self.last: dict[str, Any] | None = None
        self.counts: Counter[str] = Counter()
        self.passages: Counter[str] = Counter()
        self._day = ""

    def _today(self, t: float) -> None:
        day = time.strftime("%Y-%m-%d", time.localtime(t))
        if day != self._day:
            self._day, self.counts, self.passages = day, Counter(), Counter()

    def passed(self, direction: str, t: float) -> dict[str, Any]:
        """Count one passage; returns the event that updates the guard page's counts."""
        self._today(t)
        self.passages[direction] += 1
        return {"kind": "counts", "today": self.today(), "t": t}

    def today(self) -> dict[str, int]:
        """Today's counts as the guard page shows them."""
        admitted = self.counts[str(Reason.ADMIT)]
        return {"admitted": admitted, "refused": sum(self.counts.values()) - admitted,
                "entries": self.passages["entry"], "exits": self.passages["exit"]}

    def add(self, decision: Decision, t: float) -> dict[str, Any]:
        """Count one answer; returns the event the guard page shows. It carries no pass id: the
        guard page, /status and /events are readable by whoever reaches the display, and a guard
        needs the answer, not who it was for."""
        event = {
            "kind": "decision", "decision": decision.verdict, "reason": str(decision.reason),
            "text": decision.text, "detail": decision.detail, "direction": str(decision.direction),
            "t": t, "guard_check": decision.guard_check,
            # the product a pass was sold as ("Season ticket"): the guard checks it fits the holder
            "product": decision.pass_.product if decision.admit and decision.pass_ else None,
        }
        self._today(t)
        self.counts[str(decision.reason)] += 1
        event["today"] = self.today()
        self.last = event
        return event


def _workers(gate: Gate) -> list[dict[str, Any]]:
    """Every thread beside the control loop: alive, failures, the last error."""
    workers = [worker.health().as_dict() for worker in gate.workers]
    if gate.display is not None:
        workers.append({"name": "guard-display", "alive": gate.display.alive(),
                        "failures": gate.display.failures})
    if gate.control_server is not None:
        workers.append({"name": "control-socket", "alive": gate.control_server.alive(),
                        "failures": gate.control_server.failures})
    if gate.sync is not None:
        sync = gate.sync
        workers.append({"name": "hub-sync", "alive": sync.alive(), "failures": sync.crashes,
                        "failing": sync.failures > 0, "last_error": sync.last_error})
    return workers


def gate_status(gate: Gate) -> dict[str, Any]:
    """The JSON ``/status`` serves."""
    now = gate.clock.wall()
    machine = gate.machine
    try:
        backlog: int | None = unsent_count(gate.layout.journal)
    except JournalError:
        backlog = None
    sync = None
    if gate.sync is not None:
        sync = gate.sync.status()
        last = sync.get("last_success")
        sync["last_success_age_s"] = round(now - last, 1) if last else None
    return {
        "gate_id": gate.config.gate_id,
        "venue": gate.config.venue,
        "zones": list(gate.settings.policy.zones),
        "settings": {key: {"value": value, "source": gate.settings.sources[key]}
                     for key, value in gate.settings.values.items()},
        "state": str(gate.loop.state),
        "fault": machine.fault,
        "fire_loop_closed": machine.fire_loop_closed,
        "emergency_latched": machine.emergency_latched,
        "last_decision": gate.answers.last,
        "counts_today": dict(gate.answers.counts),
        "passages_today": {"entry": gate.answers.passages["entry"], "exit": gate.answers.passages["exit"]},
        "lists": gate.lists.status(now),
        "lists_stale": gate.lists.stale(now),
        "scanners": [source.health().as_dict() for source, _ in gate.sources],
        "journal": {
            "backlog": backlog,
            "fault": gate.effects.fault,
            "lost_records": gate.effects.lost_records,
            "history_missing": gate.history_missing,
            "recovered_reservations": gate.journal_recovered,
        },
        "journal_backlog": backlog,
        "workers": _workers(gate),
        "loop_errors": gate.loop.errors,
        "sync": sync,
        "uptime_s": round(now - gate.started_wall, 1),
    }


FAULT_PARTS = ("journal", "journal_damaged", "history_missing", "awaiting_hub", "scanner", "turnstile")


class StatusCollector:
    """``/metrics`` at scrape time: what keeps the gate out of service, by part (the cause's words
    are on ``/status``; a label of free text would grow without bound), records the journal lost,
    failures of each background worker, the control loop's errors and the deny lists' ages."""

    def __init__(self, gate: Gate) -> None:
        self.gate = gate

    def collect(self) -> Iterator[Metric]:
        gate = self.gate
        health = gate.machine.health
        parts = {
            "journal": gate.effects.fault is not None,
            "journal_damaged": (gate.effects.damaged is not None
                                or gate.layout.journal_damaged_marker.exists()),
            "history_missing": gate.history_missing is not None,
            "awaiting_hub": health.fault == AWAITING_HUB,
            "scanner": not health.scanners_ok,
            "turnstile": not health.turnstile_ready,
        }
        fault = GaugeMetricFamily("passgate_fault", "1 while this part keeps the gate out of service.",
                                  labels=["part"])
        for part in FAULT_PARTS:
            fault.add_metric([part], float(parts[part]))
        yield fault
        yield GaugeMetricFamily("passgate_journal_lost_records",
                                "Journal writes that failed since start (each one a refused scan or a lost "
                                "event).", value=gate.effects.lost_records)
        yield GaugeMetricFamily("passgate_control_loop_errors", "Unexpected errors in the control loop.",
                                value=gate.loop.errors)
        failures = GaugeMetricFamily("passgate_worker_failures", "Failed steps of each background worker.",
                                     labels=["worker"])
        for worker in _workers(gate):
            failures.add_metric([str(worker["name"])], float(worker.get("failures") or 0))
        yield failures
        now = gate.clock.wall()
        ages = GaugeMetricFamily("passgate_deny_list_age_seconds",
                                 "Seconds since each deny list the gate holds was last vouched for (signed, "
                                 "or a freshness statement; since 1970 for one it lost).",
                                 labels=["list"])
        for kind in gate.lists.live:
            ages.add_metric([kind], gate.lists.age(kind, now))
        yield ages
