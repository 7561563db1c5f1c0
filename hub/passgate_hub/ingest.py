"""Ingest of a gate's journal events: what the hub stores, at which time, and what it refuses.

A batch is judged as a whole, with a few set-based queries (never one per event):

- time: each event keeps the gate's claimed ``t`` and gets ``hub_t``, that time corrected by the
  gate's clock offset measured at its last heartbeat and never later than the hub received it.
  An event that both the gate's clock and the corrected one put in the future (beyond
  ``FUTURE_TOLERANCE_S``) is refused: nothing a gate did can have happened after it was uploaded.
  Only both together refuse: a gate whose clock was stepped since its last heartbeat has a stale
  offset, and refusing its redemptions would keep them from the other gates (its time is then
  bounded by the receipt time instead). Refusal is for good, so it needs a fresh offset: without
  one (no heartbeat yet, or none for ``OFFSET_FRESH_S``) such an event is deferred (neither held
  nor refused; the gate sends it again after its heartbeat).
- redemptions (``wire.REDEMPTION_KINDS``) are stored only when backed: the same gate admitted the
  same pass in the same direction (a stored decision, or one earlier in the batch) at least as
  often as it redeemed it. The gate's journal writes the decision and its reservation in one
  transaction and uploads in journal order, so an honest gate never sends an unbacked one; a
  token that uploads one (to burn a pass at every gate) is refused.
- double redemptions: entries of a pass beyond what it allows (its record on the hub, else the
  entry limit its admit decisions carried) raise one ``Alert`` per excess redemption.
- counts: the passages among the new rows are added to ``PassageTotal`` (per gate and direction)
  and ``EntryMinute`` (entries per venue and minute) in the same transaction, so the live counts
  and the day's chart never read the events.

Refusals go back in the ack's ``rejected`` list and to the log; the rest of the batch is stored.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from psycopg.rows import namedtuple_row
from pydantic_core import to_json
from sqlalchemy import (
    ColumnElement,
    Integer,
    String,
    bindparam,
    func,
    literal_column,
    or_,
    select,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.sql.compiler import ExpandedState

from passgate import wire

from .db import among
from .models import (
    POS_OFFSET,
    REDEMPTION_KINDS,
    Alert,
    AlertKind,
    EntryMinute,
    Event,
    IssuedPass,
    PassageTotal,
    shard_of,
)

log = logging.getLogger(__name__)

# How far past the hub's clock an event's time may lie: clocks read a second apart, plus the
# heartbeat's transit (which makes the measured offset err so that corrected times come out late).
FUTURE_TOLERANCE_S = 120.0
OFFSET_FRESH_S = 300.0  # a heartbeat this recent measures the offset a refusal relies on
MAX_LISTED = 20  # redemptions listed in one alert (the excess one and those before it)
_DECISION, _ADMITTED = str(wire.EventKind.DECISION), str(wire.Verdict.ADMIT)
_ENTRY = str(wire.Direction.ENTRY)
_ADMIT = (Event.kind == _DECISION) & (Event.decision == _ADMITTED)
_DIRECTIONS = frozenset(str(d) for d in wire.Direction)
_COUNTED_KINDS = frozenset(str(k) for k in wire.COUNTED_KINDS)
# Each dialect's own insert(): the generic one has no ON CONFLICT clause.
_INSERT: dict[str, Callable[[Any], postgresql.Insert | sqlite.Insert]] = {
    "postgresql": postgresql.insert, "sqlite": sqlite.insert}
_COLUMNS = (*(f.name for f in dataclasses.fields(wire.Event)), "venue_id", "received_at", "hub_t")
# One statement of one JSON parameter (the rows): its text never changes, so PostgreSQL parses and
# plans it once per connection, and serializing the rows (``pydantic_core.to_json``) costs far less
# than the driver adapting one array per column in Python.
_PG_INSERT = text(
    f"WITH new AS (INSERT INTO events ({', '.join(_COLUMNS)}) SELECT {', '.join(_COLUMNS)} "
    "FROM json_populate_recordset(NULL::events, :rows) ON CONFLICT (event_id) DO NOTHING "
    "RETURNING event_id, kind, direction) "
    "SELECT count(*), coalesce(array_agg(event_id) FILTER (WHERE kind = ANY(:kinds) AND direction = :entry), "
    "'{}'), coalesce(array_agg(event_id) FILTER (WHERE kind = ANY(:counted)), '{}') FROM new"
).bindparams(bindparam("kinds", list(REDEMPTION_KINDS), type_=postgresql.ARRAY(String)),
             bindparam("entry", _ENTRY),
             bindparam("counted", sorted(_COUNTED_KINDS), type_=postgresql.ARRAY(String)))
# ``_count``'s two upserts on PostgreSQL, in one round trip and, like ``_PG_INSERT``, one text with
# JSON parameters (planned once per connection): built by SQLAlchemy for each batch, the same
# upserts cost a third of the realistic mix's throughput in batches of 100 (benchmarks/hub_ingest.py).
# The minute rows wait for the totals (their CTE is read before the first minute row is taken).
_PG_COUNT = text(
    "WITH totals AS (INSERT INTO passage_totals AS t (venue_id, gate_id, direction, passages) "
    "SELECT venue_id, gate_id, direction, passages "
    "FROM json_populate_recordset(NULL::passage_totals, :totals) "
    "ON CONFLICT (venue_id, gate_id, direction) DO UPDATE SET passages = t.passages + excluded.passages "
    "RETURNING 1) "
    "INSERT INTO entry_minutes AS m (venue_id, minute, shard, entries) "
    "SELECT venue_id, minute, shard, entries FROM json_populate_recordset(NULL::entry_minutes, :minutes) "
    "WHERE (SELECT count(*) FROM totals) >= 0 "
    "ON CONFLICT (venue_id, minute, shard) DO UPDATE SET entries = m.entries + excluded.entries")
# ``EntryMinute.minute`` is a 32-bit integer: an event timed before 1970 or past 6053 (a gate's
# clock gone wrong) is on no day's chart, so it adds to no minute.
MINUTES = range(0, 2**31)
# Rows of transactions that may still commit have a position at or above this (PostgreSQL).
HORIZON: ColumnElement[int] = literal_column(
    f"(pg_snapshot_xmin(pg_current_snapshot())::text::bigint + {POS_OFFSET})")


class Uploader(Protocol):
    """What ingest reads of the gate that uploads (a ``Gate``, or the columns ``auth.GateRef``)."""

    @property
    def gate_id(self) -> str: ...
    @property
    def venue_id(self) -> int: ...
    @property
    def clock_offset_s(self) -> float | None: ...
    @property
    def last_seen(self) -> float | None: ...


@dataclass
class Ingested:
    acked: list[str] = field(default_factory=list)
    stored: int = 0
    rejected: list[wire.EventRejected] = field(default_factory=list)
    deferred: list[wire.EventRejected] = field(default_factory=list)
    alerts: int = 0


def ingest(db: Session, gate: Uploader, events: Iterable[dict[str, Any]], *,
           now: float | None = None) -> Ingested:
    """Judge and store one batch of ``gate``'s events (dicts of ``wire.Event`` fields, in journal
    order); commits nothing (the caller does)."""
    now = time.time() if now is None else now
    out = Ingested()
    rows = _timed(gate, _first_of_each(events), now, out)
    known = _known(db, gate, {r["pass_id"] for r in rows if r["kind"] in REDEMPTION_KINDS
                              and unshareable(r["pass_id"], r["direction"]) is None})
    rows = _backed(gate, rows, known, out)
    if rows:
        out.stored, new_entries, new_counted = _store(db, rows)
        entered = [r for r in rows if r["event_id"] in new_entries]
        if entered:
            out.alerts = _double_redemptions(db, gate.venue_id, known, rows, entered, now)
        out.acked = [r["event_id"] for r in rows]
        if new_counted:
            _count(db, [r for r in rows if r["event_id"] in new_counted])
    return out


def _known(db: Session, gate: Uploader, pass_ids: set[str]) -> list[Any]:
    """What the hub holds of these passes in the gate's venue: redemptions and admit decisions.
    On PostgreSQL, first a lock per pass until commit: two gates' batches redeeming one pass may
    run at once, and each would miss the other's redemption; the later one waits, then reads the
    earlier's (SQLite has one writer)."""
    if not pass_ids:
        return []
    ids = sorted(pass_ids)
    dialect = db.get_bind().dialect.name
    if dialect == "postgresql":
        # The locks and the read in one plain round trip, through the migration's function (see
        # there why the read sees what the locks waited for); the ids, all 32 hex digits, go as
        # one text (an array parameter costs the driver more than the query).
        driver = db.connection().connection.driver_connection
        assert driver is not None  # (a live connection: the token was just read through it)
        cursor = driver.cursor(row_factory=namedtuple_row)
        known = _pg_known()
        params = {**known.parameters, "venue": gate.venue_id, "ids": ",".join(ids)}
        return cursor.execute(known.statement, params).fetchall()
    return list(db.connection().execute(_KNOWN[dialect], {"ids": ids, "venue": gate.venue_id}))


_WANTED = (Event.event_id, Event.kind, Event.pass_id, Event.gate_id, Event.direction, Event.hub_t,
           Event.entries)


@functools.cache
def _pg_known() -> ExpandedState:
    """``_known``'s query on PostgreSQL as the driver's SQL and constant parameters: the wanted rows
    of what ``passgate_lock_passes`` returns (every event of the passes), in the order stored."""
    ids = func.string_to_array(bindparam("ids"), ",")
    rows = func.passgate_lock_passes(bindparam("venue", type_=Integer), ids).table_valued(
        *(c.name for c in (*_WANTED, Event.decision, Event.seq)))
    query = (select(*(rows.c[c.name] for c in _WANTED))
             .where(or_(rows.c.kind.in_(REDEMPTION_KINDS),
                        (rows.c.kind == _DECISION) & (rows.c.decision == _ADMITTED)))
             .order_by(rows.c.seq))
    compiled = query.compile(dialect=postgresql.psycopg.dialect())
    return compiled.construct_expanded_state({"venue": 0, "ids": ""})


def _known_query(dialect: str) -> Any:
    """The query of ``_known`` on SQLite, built once (building one costs more than running it)."""
    return (select(*_WANTED)
            .where(Event.pass_id.in_(bindparam("ids", expanding=True)), Event.venue_id == bindparam("venue"),
                   or_(Event.kind.in_(REDEMPTION_KINDS), _ADMIT))
            .order_by(Event.seq))


_KNOWN = {"sqlite": _known_query("sqlite")}


class _Redemption(NamedTuple):
    event_id: str
    gate_id: str
    hub_t: float


def _store(db: Session, rows: list[dict[str, Any]]) -> tuple[int, set[str], set[str]]:
    """Insert the rows that are new (by event id); returns how many were, the ids of the new
    entry redemptions among them (what double redemptions are checked for), and the ids of the
    new ones of a kind that may count as a passage (``wire.COUNTED_KINDS``)."""
    if db.get_bind().dialect.name == "postgresql":
        # One statement, one JSON parameter: its text never changes, so it is parsed and planned
        # once per connection (a multi-row VALUES is a new text for each batch size), and its
        # answer is one row, not one per event.
        stored, entered, counted = db.connection().execute(
            _PG_INSERT, {"rows": to_json(rows).decode()}).one()
        return stored, set(entered), set(counted)
    pos = (db.scalar(select(func.max(Event.seq))) or 0) + 1  # one writer: past every row so far
    stmt = (sqlite.insert(Event).on_conflict_do_nothing(index_elements=["event_id"])
            .returning(Event.event_id, Event.kind, Event.direction))
    new = db.connection().execute(stmt, [{**dict.fromkeys(_COLUMNS), **r, "pos": pos} for r in rows]).all()
    return (len(new), {n.event_id for n in new if n.kind in REDEMPTION_KINDS and n.direction == _ENTRY},
            {n.event_id for n in new if n.kind in _COUNTED_KINDS})


def _count(db: Session, rows: list[dict[str, Any]]) -> None:
    """Add the passages among ``rows`` (new rows of the batch) to ``PassageTotal`` and
    ``EntryMinute``: one multi-row upsert a table, as the transaction's last statements (the
    caller commits next, so the rows stay locked briefly), the gate's own totals before the minute
    rows it shares with the venue's other gates; each upsert's rows in key order, so concurrent
    batches lock shared rows in one order and never deadlock."""
    passed = [r for r in rows if r.get("direction") in _DIRECTIONS
              and wire.counts_as_passage(r["kind"], r.get("detail"))]
    per_gate = Counter((r["venue_id"], r["gate_id"], r["direction"]) for r in passed)
    per_minute = Counter((r["venue_id"], minute, shard_of(r["gate_id"])) for r in passed
                         if r["direction"] == _ENTRY and (minute := int(r["hub_t"] // 60)) in MINUTES)
    totals = [{"venue_id": venue, "gate_id": gate, "direction": direction, "passages": n}
              for (venue, gate, direction), n in sorted(per_gate.items())]
    minutes = [{"venue_id": venue, "minute": minute, "shard": shard, "entries": n}
               for (venue, minute, shard), n in sorted(per_minute.items())]
    if not totals:
        return
    if db.get_bind().dialect.name == "postgresql":
        db.connection().execute(_PG_COUNT, {"totals": to_json(totals).decode(),
                                            "minutes": to_json(minutes).decode()})
        return
    stmt = sqlite.insert(PassageTotal).values(totals)
    db.connection().execute(stmt.on_conflict_do_update(
        index_elements=["venue_id", "gate_id", "direction"],
        set_={"passages": PassageTotal.passages + stmt.excluded.passages}))
    if minutes:
        stmt = sqlite.insert(EntryMinute).values(minutes)
        db.connection().execute(stmt.on_conflict_do_update(
            index_elements=["venue_id", "minute", "shard"],
            set_={"entries": EntryMinute.entries + stmt.excluded.entries}))


def _first_of_each(events: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The batch without repeated event ids (the first one counts), in order."""
    seen: set[str] = set()
    out = []
    for event in events:
        if event["event_id"] not in seen:
            seen.add(event["event_id"])
            out.append(event)
    return out


def _refuse(out: Ingested, gate: Uploader, event: dict[str, Any], why: str, *, defer: bool = False) -> None:
    log.warning("gate %s: event %s (%s) %s: %s", gate.gate_id, event["event_id"], event["kind"],
                "deferred" if defer else "refused", why)
    (out.deferred if defer else out.rejected).append(wire.EventRejected(event_id=event["event_id"], why=why))


def _timed(gate: Uploader, events: list[dict[str, Any]], now: float, out: Ingested) -> list[dict[str, Any]]:
    """The events with their hub time and receipt time; those in the future refused (deferred
    while the gate's offset is not fresh)."""
    offset = gate.clock_offset_s or 0.0
    fresh = gate.clock_offset_s is not None and now - (gate.last_seen or 0.0) <= OFFSET_FRESH_S
    latest = now + FUTURE_TOLERANCE_S
    rows = []
    for event in events:
        hub_t = event["t"] - offset
        if hub_t > latest and event["t"] > latest:
            why = (f"its time is {hub_t - now:.0f} s ahead of the hub's clock (gate clock offset "
                   f"{offset:.0f} s{'' if fresh else ', not measured lately: send a heartbeat'})")
            _refuse(out, gate, event, why, defer=not fresh)
            continue
        rows.append({**event, "venue_id": gate.venue_id, "received_at": now, "hub_t": min(hub_t, now)})
    return rows


def _backed(gate: Uploader, rows: list[dict[str, Any]], known: list[Any],
            out: Ingested) -> list[dict[str, Any]]:
    """The rows without the redemptions this gate cannot have made (see the module's text)."""
    if not any(r["kind"] in REDEMPTION_KINDS for r in rows):
        return rows
    held: set[str] = set()
    admits: Counter[tuple[str | None, str | None]] = Counter()
    used: Counter[tuple[str | None, str | None]] = Counter()
    for k in known:
        if k.gate_id == gate.gate_id:
            held.add(k.event_id)
            (used if k.kind in REDEMPTION_KINDS else admits)[k.pass_id, k.direction] += 1
    kept = []
    for row in rows:
        if row["event_id"] in held:  # already stored: acknowledged again, counted once
            kept.append(row)
            continue
        key = (row["pass_id"], row["direction"])
        if row["kind"] == _DECISION and row["decision"] == _ADMITTED:
            admits[key] += 1
        elif row["kind"] in REDEMPTION_KINDS:
            why = unshareable(row["pass_id"], row["direction"]) or (None if used[key] < admits[key] else
                                        "no admit decision of this gate backs it (a redemption follows "
                                        "the gate's own admit of the same pass and direction)")
            if why:
                _refuse(out, gate, row, why)
                continue
            used[key] += 1
        kept.append(row)
    return kept


def unshareable(pass_id: str | None, direction: str | None) -> str | None:
    """Why a redemption cannot be shared with other gates as it is, if it cannot."""
    if pass_id is None or re.fullmatch(wire.HEX_ID, pass_id) is None:
        return "a redemption names its pass (32 hex digits)"
    if direction not in _DIRECTIONS:
        return f"a redemption's direction is one of {', '.join(sorted(_DIRECTIONS))}"
    return None


def _double_redemptions(db: Session, venue_id: int, known: list[Any], rows: list[dict[str, Any]],
                        entered: list[dict[str, Any]], now: float) -> int:
    """Record an alert for each entry redemption of these passes beyond what the pass allows
    (in hub-time order); returns how many alerts are new. ``known``: what the hub held before
    this batch (read under the passes' locks); ``rows``: the batch; ``entered``: its new entry
    redemptions."""
    passes = {r["pass_id"] for r in entered}
    history: dict[str, list[Any]] = {}
    for k in known:
        if k.pass_id in passes and k.kind in REDEMPTION_KINDS and k.direction == _ENTRY:
            history.setdefault(k.pass_id, []).append(k)
    for r in entered:
        history.setdefault(r["pass_id"], []).append(_Redemption(r["event_id"], r["gate_id"], r["hub_t"]))
    for made in history.values():
        made.sort(key=lambda r: r.hub_t)  # stable: equal times stay in the order the hub took them
    crowded = {p: made for p, made in history.items() if len(made) > 1}
    if not crowded:
        return 0
    admits = [(k.pass_id, k.entries) for k in known if k.kind == _DECISION]
    admits += [(r["pass_id"], r.get("entries")) for r in rows
               if r["kind"] == _DECISION and r["decision"] == _ADMITTED]
    allowed = _entries(db, venue_id, list(crowded), admits)
    alerts = []
    for pass_id, made in crowded.items():
        entries = allowed.get(pass_id)
        if entries is None:
            continue
        for i in range(entries, len(made)):
            listed = made[max(0, i - MAX_LISTED + 1):i + 1]
            alerts.append({"venue_id": venue_id, "kind": str(AlertKind.DOUBLE_REDEMPTION),
                           "pass_id": pass_id, "event_id": made[i].event_id, "entries": entries,
                           "redemptions": [{"gate_id": r.gate_id, "t": r.hub_t, "event_id": r.event_id}
                                           for r in listed],
                           "apart_s": made[i].hub_t - made[i - 1].hub_t, "created_at": now})
    if not alerts:
        return 0
    stmt = (_INSERT[db.get_bind().dialect.name](Alert)
            .on_conflict_do_nothing(index_elements=["kind", "event_id"])
            .returning(Alert.pass_id, Alert.event_id, Alert.redemptions))
    created = db.connection().execute(stmt, alerts).all()
    for pass_id, event_id, listed in created:
        log.warning("pass %s redeemed beyond its %s entr%s: %s (redemption %s)", pass_id,
                    allowed[pass_id], "y" if allowed[pass_id] == 1 else "ies",
                    ", ".join(f"{r['gate_id']} at {r['t']:.0f}" for r in listed), event_id)
    return len(created)


def _entries(db: Session, venue_id: int, pass_ids: Sequence[str],
             admits: Iterable[tuple[str, int | None]]) -> dict[str, int | None]:
    """How many entries each pass allows: the hub's record of a pass it issued (None: unlimited),
    else the smallest limit the venue's gates read from it when they admitted it (``admits``:
    pass id and entry limit of each admit decision)."""
    allowed: dict[str, int | None] = {pass_id: entries for pass_id, entries in db.execute(
        select(IssuedPass.pass_id, IssuedPass.entries)
        .where(among(IssuedPass.pass_id, pass_ids, db.get_bind().dialect.name),
               IssuedPass.venue_id == venue_id))}
    read: dict[str, int] = {}
    for pass_id, entries in admits:
        if pass_id not in allowed and entries is not None:
            read[pass_id] = min(entries, read.get(pass_id, entries))
    return {**read, **allowed}
