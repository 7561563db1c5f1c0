"""The passage counters ingest keeps with the events (``PassageTotal``, ``EntryMinute``), on SQLite
and PostgreSQL: always what a recount of the events gives (seeded mixes of batches: every kind,
direction, re-sent and refused events, clocks off), exact and free of deadlocks with many gates'
batches at once (PostgreSQL), and filled by migration 0010 from an older hub's events and purged
counts."""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, func, inspect, select, text
from sqlalchemy.orm import Session

from passgate import wire
from passgate_hub import audit, db, ingest, ops, retention
from passgate_hub.models import ENTRY_SHARDS, EntryMinute, Event, Gate, PassageTotal, Venue, shard_of

ZONES = {"arena-g1": "floor", "arena-g2": "floor", "arena-g3": "vip", "arena-g4": "vip", "arena-g5": None}


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    made = db.make_engine(db_url)
    try:
        yield made
    finally:
        made.dispose()


def session(engine: Engine) -> Session:
    s = db.session_factory(engine)()
    audit.act_as(s, audit.Actor("test", None))
    return s


def arena(engine: Engine, gates: dict[str, str | None] = ZONES) -> None:
    db.migrate(engine)
    with session(engine) as s:
        venue = ops.create_venue(s, "arena")
        for zone in sorted({z for z in gates.values() if z}):
            ops.create_zone(s, venue, zone)
        for gate_id, zone in gates.items():
            ops.create_gate(s, venue, gate_id, zone)
        s.commit()


def event(gate_id: str, kind: str, t: float, **fields: Any) -> dict[str, Any]:
    return {"event_id": uuid.uuid4().hex, "gate_id": gate_id, "t": t, "kind": kind, "direction": "entry",
            "pass_id": None, "decision": None, "reason": None, "latency_ms": None, "detail": None,
            "entries": None, **fields}


def passage(gate_id: str, t: float, direction: str = "entry",
            kind: str = "redeemed") -> list[dict[str, Any]]:
    """A scanned passage: the admit decision and its redemption (or reservation assumed)."""
    pass_id = uuid.uuid4().hex
    return [event(gate_id, "decision", t, direction=direction, pass_id=pass_id, decision="admit",
                  reason="admit", detail="Welcome"),
            event(gate_id, kind, t + 0.5, direction=direction, pass_id=pass_id, detail=uuid.uuid4().hex)]


def mixed_batch(rng: random.Random, gate_id: str, now: float,
                sent: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A batch of every sort of event a gate (or a token) may send, some sent before."""
    out: list[dict[str, Any]] = []
    for _ in range(rng.randint(1, 12)):
        t = now - rng.uniform(0, 3 * 3600)
        pick = rng.randrange(11)
        if pick < 3:
            out += passage(gate_id, t, rng.choice(["entry", "entry", "exit"]))
        elif pick == 3:
            out += passage(gate_id, t, "entry", kind="reservation_assumed")
        elif pick == 4:
            out.append(event(gate_id, "passage", t, direction=rng.choice(["entry", "exit"]),
                             detail=rng.choice(["free exit", "free passage", "", None])))
        elif pick == 5:
            direction = rng.choice(["entry", "exit", None, "up"])
            out.append(event(gate_id, "forced_passage", t, direction=direction, detail="forced"))
        elif pick == 6:
            out.append(event(gate_id, "decision", t, pass_id=uuid.uuid4().hex, decision="refuse",
                             reason="revoked"))
        elif pick == 7:  # unbacked: refused, never stored
            out.append(event(gate_id, "redeemed", t, pass_id=uuid.uuid4().hex, detail="forged"))
        elif pick == 8:  # a clock before 1970: counted, on no day's chart
            out += passage(gate_id, rng.uniform(-10**9, -1))
        elif pick == 9 and (mine := [e for e in sent if e["gate_id"] == gate_id]):
            out.append(rng.choice(mine))  # sent before (its ack lost): stored and counted once
        else:
            out.append(event(gate_id, "tamper", t, detail="door"))
    if out and rng.random() < 0.2:
        out.append(out[0])  # twice in one batch: the first counts
    return out


def recount(s: Session) -> tuple[Counter[tuple[str, str]], Counter[int]]:
    """Passages per (gate, direction) and entries per minute, from the events themselves."""
    totals: Counter[tuple[str, str]] = Counter()
    minutes: Counter[int] = Counter()
    for e in s.scalars(select(Event)):
        if e.direction in ("entry", "exit") and wire.counts_as_passage(e.kind, e.detail):
            totals[e.gate_id, e.direction] += 1
            if e.direction == "entry" and e.hub_t >= 0:
                minutes[int(e.hub_t // 60)] += 1
    return totals, minutes


def indexes(engine: Engine) -> set[str]:
    return {index["name"] for index in inspect(engine).get_indexes("events")}


def held(s: Session) -> tuple[Counter[tuple[str, str]], Counter[int]]:
    totals = Counter({(g, d): n for g, d, n in s.execute(
        select(PassageTotal.gate_id, PassageTotal.direction, PassageTotal.passages))})
    minutes = Counter(dict(s.execute(select(EntryMinute.minute, func.sum(EntryMinute.entries))
                                     .group_by(EntryMinute.minute)).all()))
    return totals, minutes


def by_zone(totals: Counter[tuple[str, str]], zones: dict[str, str | None]) -> list[dict[str, Any]]:
    entries: Counter[str | None] = Counter()
    exits: Counter[str | None] = Counter()
    for (gate, direction), n in totals.items():
        (entries if direction == "entry" else exits)[zones[gate]] += n
    return [{"zone": z, "entries": entries[z], "exits": exits[z], "inside": entries[z] - exits[z]}
            for z in sorted({z for z in zones.values() if z})]


@pytest.mark.parametrize("seed", [1, 2])
def test_the_counters_are_a_recount_of_the_events(engine: Engine, seed: int) -> None:
    arena(engine)
    rng = random.Random(seed)
    now = time.time()
    sent: list[dict[str, Any]] = []
    with session(engine) as s:
        gates = {g.gate_id: g for g in s.scalars(select(Gate))}
        gates["arena-g4"].clock_offset_s, gates["arena-g4"].last_seen = 7200.0, now  # two hours fast
        s.commit()
        for _ in range(60):
            gate_id = rng.choice(sorted(gates))
            batch = mixed_batch(rng, gate_id, now, sent)
            ingest.ingest(s, gates[gate_id], batch, now=now)
            s.commit()
            sent += batch
        venue = ops.get_venue(s, "arena")
        totals, minutes = recount(s)
        assert sum(totals.values()) > 50 and held(s) == (totals, minutes)
        assert ops.zone_counts(s, venue) == by_zone(totals, ZONES)
        start = (now - 4 * 3600) // 60 * 60
        chart = ops.entries_per_minute(s, venue, start, start + 5 * 3600)
        assert chart == [minutes[int(start // 60) + m] for m in range(300)] and sum(chart) > 0
        # past the retention the events and the minutes go, the counts stay
        before, rows = ops.zone_counts(s, venue), s.scalar(select(func.count()).select_from(EntryMinute))
        removed = retention.purge(s, now=now + 31 * 86400)[0]["arena"]
        assert removed.events_deleted > 0 and removed.minutes_deleted == rows
        assert ops.zone_counts(s, venue) == before and held(s)[1] == Counter()


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # SQLite has one writer
def test_many_gates_at_once_count_exactly_and_never_deadlock(engine: Engine) -> None:
    """Twelve gates (several sharing a minute shard) send batches at once, each batch entries in
    two minutes (the later one first) and redemptions of passes the other gates redeem too (the
    per-pass locks before the counters)."""
    gates = {f"arena-g{i}": "floor" for i in range(12)}
    assert len({shard_of(g) for g in gates}) < len(gates) <= 2 * ENTRY_SHARDS
    arena(engine, gates)
    now = time.time()
    early = now // 60 * 60 - 110  # a minute's 10th second: every event of a batch in its minute
    late = early + 60
    shared = [uuid.uuid4().hex for _ in range(4)]
    barrier = threading.Barrier(len(gates))

    def send(gate_id: str) -> int:
        stored = 0
        with session(engine) as s:
            gate = s.scalars(select(Gate).where(Gate.gate_id == gate_id)).one()
            barrier.wait()
            for n in range(15):
                batch = [*passage(gate_id, late), *passage(gate_id, early, "exit"), *passage(gate_id, early)]
                pass_id = shared[n % len(shared)]
                batch += [event(gate_id, "decision", late, pass_id=pass_id, decision="admit", reason="admit"),
                          event(gate_id, "redeemed", late + 1, pass_id=pass_id, detail=uuid.uuid4().hex)]
                stored += ingest.ingest(s, gate, batch, now=now).stored
                s.commit()
        return stored

    with ThreadPoolExecutor(len(gates)) as pool:
        stored = list(pool.map(send, gates))  # a deadlock raises here (DeadlockDetected)
    assert stored == [15 * 8] * len(gates)
    with session(engine) as s:
        totals, minutes = held(s)
        assert (totals, minutes) == recount(s)
        assert totals == Counter({**{(g, "entry"): 45 for g in gates}, **{(g, "exit"): 15 for g in gates}})
        n = len(gates)
        assert minutes == {int(late // 60): 30 * n, int(early // 60): 15 * n}
        shards = len({shard_of(g) for g in gates})
        assert s.scalar(select(func.count()).select_from(EntryMinute)) == 2 * shards
        assert ops.zone_counts(s, ops.get_venue(s, "arena")) == [
            {"zone": "floor", "entries": 45 * n, "exits": 15 * n, "inside": 30 * n}]


def test_migration_0010_fills_the_counters_from_an_older_hub(engine: Engine) -> None:
    """A hub at 0009 with events (of every kind) and the passages of purged events in
    ``passage_counts``: after the upgrade the counts and the chart are what they were (and a
    gate's events are indexed in hub order), and the downgrade gives the purged passages back."""
    db.migrate(engine)  # the venue made by today's code (its models are today's), then taken back to 0009
    with session(engine) as s:
        venue = ops.create_venue(s, "arena")
        ops.create_zone(s, venue, "floor")
        for gate_id in ("arena-g1", "arena-g2"):
            ops.create_gate(s, venue, gate_id, "floor")
        s.commit()
        venue_id = venue.id
    config = Config()
    config.set_main_option("script_location", str(db.MIGRATIONS))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "0009")
    t = 1_800_000_000.0  # 60 minutes from here on
    rows = [*passage("arena-g1", t), *passage("arena-g1", t + 61), *passage("arena-g2", t + 1, "exit"),
            *passage("arena-g2", t + 2, kind="reservation_assumed"),
            event("arena-g2", "passage", t + 3, detail="free passage"),
            event("arena-g2", "passage", t + 4, detail=None),  # protocol 1's second row: not counted
            event("arena-g2", "forced_passage", t + 5, direction=None, detail="forced"),
            event("arena-g1", "tamper", t + 6)]
    columns = ("event_id", "venue_id", "gate_id", "t", "kind", "direction", "pass_id", "decision", "reason",
               "latency_ms", "detail", "entries", "received_at", "hub_t", "pos")
    with engine.begin() as conn:
        conn.execute(text(f"INSERT INTO events ({', '.join(columns)}) VALUES "
                          f"({', '.join(':' + c for c in columns)})"),
                     [{**r, "venue_id": venue_id, "received_at": r["t"], "hub_t": r["t"], "pos": 1}
                      for r in rows])
        conn.execute(text("INSERT INTO passage_counts (venue_id, gate_id, day, direction, passages) VALUES "
                          "(:v, 'arena-g1', 20000, 'entry', 7), (:v, 'arena-g1', 20001, 'entry', 3), "
                          "(:v, 'arena-g2', 20000, 'exit', 2)"), {"v": venue_id})
    db.migrate(engine)
    with session(engine) as s:
        venue = ops.get_venue(s, "arena")
        assert ops.zone_counts(s, venue) == [{"zone": "floor", "entries": 4 + 10, "exits": 1 + 2,
                                              "inside": 11}]
        assert ops.entries_per_minute(s, venue, t, t + 180) == [3, 1, 0]
        assert held(s)[0] == Counter({("arena-g1", "entry"): 12, ("arena-g2", "entry"): 2,
                                      ("arena-g2", "exit"): 3})
    assert "events_gate_seq" in indexes(engine) and "events_gate_t" not in indexes(engine)
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "0009")
        purged = conn.execute(text("SELECT gate_id, direction, sum(passages) FROM passage_counts "
                                   "GROUP BY gate_id, direction ORDER BY gate_id, direction")).all()
    assert [tuple(r) for r in purged] == [("arena-g1", "entry", 10), ("arena-g2", "exit", 2)]
    assert "events_gate_t" in indexes(engine) and "events_gate_seq" not in indexes(engine)
    db.migrate(engine)
    with session(engine) as s:
        assert held(s)[0][("arena-g1", "entry")] == 12
        assert s.scalar(select(Venue.name)) == "arena"
