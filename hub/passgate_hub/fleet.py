"""The fleet as the console shows it: each gate's health from its last heartbeat, and the alerts an
operator must see first. Pure reading; the page (``console``) only draws it.

A gate is online while its last heartbeat is younger than ``ONLINE_WITHIN_S`` (a gate beats every
sync round, 10 s by default). Alerts, most urgent first: a gate in EMERGENCY, a gate in FAULT, a
gate offline longer than the operator's threshold, a gate whose deny lists are stale, and double
redemptions (``Alert``) of the last day.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from passgate import wire

from . import ops
from .models import Alert, Venue

ONLINE_WITHIN_S = 60.0
DEFAULT_OFFLINE_MINUTES = 5
ALERTS_WITHIN_S = 24 * 3600.0
SORTS = ("gate", "venue", "zone", "status", "state", "last_seen", "backlog", "clock", "lists", "version")
STATUSES = ("online", "offline", "never", "disabled")


@dataclass(frozen=True)
class GateRow:
    gate_id: str
    venue: str
    zone: str | None
    status: str  # one of STATUSES
    last_seen: float | None
    state: str | None
    state_words: str
    fault: str | None
    lists: dict[str, dict[str, Any]]
    oldest_list_s: float | None
    lists_stale: bool
    clock_offset_s: float | None
    backlog: int | None
    scanners: list[dict[str, Any]]
    version: str | None
    alerting: bool = False


@dataclass(frozen=True)
class FleetAlert:
    kind: str  # emergency, fault, offline, stale_lists, double_redemption
    title: str
    gates: list[str] = field(default_factory=list)
    detail: str = ""


def _row(gate: dict[str, Any], now: float) -> GateRow:
    health = (gate.get("health") or {})
    seen = gate["last_seen"]
    if gate["disabled_at"] is not None:
        status = "disabled"
    elif seen is None:
        status = "never"
    else:
        status = "online" if now - seen < ONLINE_WITHIN_S else "offline"
    state = gate["state"]
    try:
        words = wire.GateState(state).words if state else "unknown"
    except ValueError:
        words = str(state)
    ages = [info["age_s"] for info in gate["lists"].values() if info.get("age_s") is not None]
    scanners = health.get("scanners")
    return GateRow(gate_id=gate["gate_id"], venue=gate["venue"], zone=gate["zone"], status=status,
                   last_seen=seen, state=state, state_words=words,
                   fault=health.get("fault") if isinstance(health.get("fault"), str) else None,
                   lists=gate["lists"], oldest_list_s=max(ages) if ages else None,
                   lists_stale=health.get("lists_stale") is True,
                   clock_offset_s=gate["clock_skew_s"], backlog=gate["backlog"],
                   scanners=scanners if isinstance(scanners, list) else [], version=gate["version"])


def rows(db: Session, venue_ids: Collection[int] | None, *, now: float | None = None) -> list[GateRow]:
    """Every gate of these venues (``None``: every venue), as the fleet page lists them."""
    now = time.time() if now is None else now
    return [_row(gate, now) for gate in ops.list_gates(db, only=venue_ids, now=now, with_health=True)]


def alerts(db: Session, gates: list[GateRow], venue_ids: Collection[int] | None, *,
           offline_minutes: float = DEFAULT_OFFLINE_MINUTES, now: float | None = None) -> list[FleetAlert]:
    """What needs a person now, most urgent first."""
    now = time.time() if now is None else now
    live = [g for g in gates if g.status != "disabled"]
    out = []
    for state, kind, title in ((wire.GateState.EMERGENCY, "emergency", "Emergency: free passage"),
                               (wire.GateState.FAULT, "fault", "Out of service (fault)")):
        hit = [g for g in live if g.state == state and g.status == "online"]
        if hit:
            out.append(FleetAlert(kind, f"{title}: {len(hit)} gate{'s' if len(hit) > 1 else ''}",
                                  [g.gate_id for g in hit],
                                  "; ".join(f"{g.gate_id}: {g.fault}" for g in hit if g.fault)))
    late = [g for g in live if g.last_seen is not None and now - g.last_seen > offline_minutes * 60]
    if late:
        out.append(FleetAlert("offline", f"Offline for more than {offline_minutes:g} minutes: {len(late)} "
                              f"gate{'s' if len(late) > 1 else ''}", [g.gate_id for g in late]))
    stale = [g for g in live if g.lists_stale]
    if stale:
        out.append(FleetAlert("stale_lists", f"Deny lists out of date: {len(stale)} "
                              f"gate{'s' if len(stale) > 1 else ''}", [g.gate_id for g in stale]))
    query = (select(Venue.name, func.count(Alert.id)).join(Venue, Venue.id == Alert.venue_id)
             .where(Alert.created_at >= now - ALERTS_WITHIN_S).group_by(Venue.name).order_by(Venue.name))
    if venue_ids is not None:
        query = query.where(Alert.venue_id.in_(venue_ids))
    for venue, count in db.execute(query):
        out.append(FleetAlert("double_redemption", f"Passes used beyond their entries at {venue}: "
                              f"{count} in the last 24 hours", detail=venue))
    return out


def select_rows(gates: list[GateRow], alerting: set[str], *, venue: str | None = None,
                status: str | None = None, q: str = "", sort: str = "gate", descending: bool = False,
                ) -> list[GateRow]:
    """The rows the filters keep, in the order asked (alerting gates first when not sorted)."""
    def wanted(g: GateRow) -> bool:
        if venue and g.venue != venue:
            return False
        if status == "alerting":
            return g.gate_id in alerting
        if status and g.status != status:
            return False
        return not q or q.lower() in g.gate_id.lower()

    keys = {
        "gate": lambda g: (g.gate_id,), "venue": lambda g: (g.venue, g.gate_id),
        "zone": lambda g: (g.zone or "", g.gate_id), "status": lambda g: (g.status, g.gate_id),
        "state": lambda g: (g.state_words, g.gate_id),
        "last_seen": lambda g: (g.last_seen or 0.0, g.gate_id),
        "backlog": lambda g: (g.backlog or 0, g.gate_id),
        "clock": lambda g: (abs(g.clock_offset_s or 0.0), g.gate_id),
        "lists": lambda g: (g.oldest_list_s or 0.0, g.gate_id),
        "version": lambda g: (g.version or "", g.gate_id),
    }
    kept = [g for g in gates if wanted(g)]
    kept.sort(key=keys.get(sort, keys["gate"]), reverse=descending)  # type: ignore[arg-type]
    if sort == "gate" and not descending:
        kept.sort(key=lambda g: g.gate_id not in alerting)  # stable: alerting first, each by name
    return [GateRow(**{**g.__dict__, "alerting": g.gate_id in alerting}) for g in kept]
