"""Hub ingest through the HTTP API into PostgreSQL, and bundle polling with ETags.

- events/s: 50 concurrent simulated gates, each POSTing batches (the sync client's path: JSON over
  HTTP, auth, validation, one INSERT ... ON CONFLICT DO NOTHING per batch, commit), in two mixes:
  decisions alone, and the realistic mix a gate sends (each admit's decision, then its redemption,
  which the hub checks against that decision and for double use; free exits), and in two batch
  sizes: 100 events, and the gate's own full batch (``passgated.sync.BATCH``, 500: what a gate with
  a backlog sends, e.g. a fleet back after an outage). Each run sends the same number of events.
  Baseline, same run, same table: the same rows written by raw psycopg ``COPY`` (no HTTP, no
  validation, no idempotency): the ceiling of this PostgreSQL on this machine.
- bundle fetches/s: 1,000 gates polling their bundle with If-None-Match (answers are 304).

Goals on a 2-core machine: >= 5,000 events/s (issue 6); the realistic mix >= 15,000 (issue 12).
The PostgreSQL cluster is a throwaway one (durable settings: fsync on) in a temp dir; the hub runs
as ``passgate-hub serve`` in a subprocess.

A hub worker is one Python process: while one of its requests waits on PostgreSQL, the others
wait for its interpreter lock, so one more worker than cores keeps both cores busy (README).

    python benchmarks/hub_ingest.py [--runs 5] [--workers 3] [--events 2000] [--no-polls]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from pathlib import Path

import psycopg
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the throwaway-cluster helper lives beside the hub's tests

from served import served_hub  # noqa: E402

from passgate import wire  # noqa: E402
from passgate_hub import audit, db, ops  # noqa: E402
from passgated.sync import BATCH as GATE_BATCH  # noqa: E402
from tests.hub.pgcluster import PgCluster  # noqa: E402

GATES, SENDERS, POLLERS = 1000, 50, 50
SIZES = (100, GATE_BATCH)
FIELDS = ("event_id", "venue_id", "gate_id", "t", "kind", "direction", "pass_id", "decision", "reason",
          "latency_ms", "detail", "received_at", "hub_t")
MIXES = ("decisions", "realistic")


def seed(url: str) -> list[tuple[str, str]]:
    engine = db.make_engine(url)
    db.migrate(engine)
    with db.session_factory(engine)() as session:
        audit.act_as(session, audit.Actor("benchmark", None))
        venue = ops.create_venue(session, "bench")
        gates = [(f"g{i:04d}", ops.create_gate(session, venue, f"g{i:04d}")) for i in range(GATES)]
        session.commit()
    engine.dispose()
    return gates


def batch_events(gate_id: str, mix: str, size: int) -> list[dict[str, object]]:
    """One batch as a gate sends it: decisions alone, or per admitted holder its decision and then
    its redemption, with a free exit after every second one (and one refusal to fill the batch)."""
    now = time.time()

    def one(kind: wire.EventKind, **fields: object) -> dict[str, object]:
        return {"event_id": uuid.uuid4().hex, "gate_id": gate_id, "t": now, "kind": str(kind),
                "direction": "entry", "pass_id": None, "decision": None, "reason": None,
                "latency_ms": None, "detail": None, **fields}

    def admit(pass_id: str) -> dict[str, object]:
        return one(wire.EventKind.DECISION, pass_id=pass_id, decision="admit", reason="admit",
                   latency_ms=1.2, detail="Welcome")

    if mix == "decisions":
        return [admit(uuid.uuid4().hex) for _ in range(size)]
    events: list[dict[str, object]] = []
    while len(events) < size - 2:
        pass_id = uuid.uuid4().hex
        events += [admit(pass_id), one(wire.EventKind.REDEEMED, pass_id=pass_id, detail=uuid.uuid4().hex)]
        if len(events) % 5 == 4 and len(events) < size:
            events.append(one(wire.EventKind.PASSAGE, direction="exit", detail="free exit"))
    while len(events) < size:
        events.append(one(wire.EventKind.DECISION, pass_id=uuid.uuid4().hex, decision="refuse",
                          reason="revoked", latency_ms=1.1, detail="Revoked"))
    return events[:size]


def batch_body(gate_id: str, mix: str, size: int) -> bytes:
    return json.dumps({"events": batch_events(gate_id, mix, size)}).encode()


def ingest_run(base: str, gates: list[tuple[str, str]], batches_per_gate: int, mix: str, size: int) -> float:
    """Events/s for SENDERS gates sending ``batches_per_gate`` batches of ``size`` each, concurrently.

    The clients share the hub's two cores here (a gate sends from its own), so they cost as little
    of them as a client can: one asyncio thread, each gate on its own kept-alive connection,
    sending requests built before the clock starts and reading each answer by its length."""
    host, port = base.removeprefix("http://").split(":")
    requests_of = {gate_id: [request_bytes(gate_id, token, host, batch_body(gate_id, mix, size))
                             for _ in range(batches_per_gate)] for gate_id, token in gates[:SENDERS]}
    stored, elapsed = asyncio.run(_send_all(host, int(port), requests_of))
    assert stored == SENDERS * batches_per_gate * size, stored
    return stored / elapsed


def request_bytes(gate_id: str, token: str, host: str, body: bytes) -> bytes:
    return (f"POST /v1/gates/{gate_id}/events HTTP/1.1\r\nHost: {host}\r\n"
            f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
            f"{wire.PROTOCOL_HEADER}: {wire.PROTOCOL_VERSION}\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode() + body


async def _send_all(host: str, port: int, requests_of: dict[str, list[bytes]]) -> tuple[int, float]:
    """(events stored, seconds) for every gate sending its requests, one after another, at once."""
    connections = [await asyncio.open_connection(host, port) for _ in requests_of]

    async def send(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, requests: list[bytes]) -> int:
        stored = 0
        for request in requests:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
            answer = await reader.readexactly(length)
            assert head.startswith(b"HTTP/1.1 200"), head + answer[:300]
            ack = json.loads(answer)
            assert not ack["rejected"] and not ack["deferred"], ack
            stored += ack["stored"]
        writer.close()
        return stored

    start = time.perf_counter()
    done = await asyncio.gather(*(send(reader, writer, requests) for (reader, writer), requests
                                  in zip(connections, requests_of.values(), strict=True)))
    return sum(done), time.perf_counter() - start


def copy_run(dsn: str, batches: int, mix: str, size: int) -> float:
    """Events/s for the same rows written by psycopg COPY in one transaction."""
    now = time.time()
    data = [(uuid.uuid4().hex, 1, "g0000", now, e["kind"], e["direction"], e["pass_id"], e["decision"],
             e["reason"], e["latency_ms"], e["detail"], now, now)
            for _ in range(batches) for e in batch_events("g0000", mix, size)]
    rows = len(data)
    with psycopg.connect(dsn) as conn:
        start = time.perf_counter()
        with conn.cursor() as cur, cur.copy(f"COPY events ({', '.join(FIELDS)}) FROM STDIN") as copy:
            for row in data:
                copy.write_row(row)
        conn.commit()
        return rows / (time.perf_counter() - start)


def poll_run(base: str, gates: list[tuple[str, str]], etags: dict[str, str], held: str,
             seconds: float) -> tuple[float, int, int]:
    """(fetches/s, fetches, 304s) for POLLERS threads cycling through all gates with If-None-Match."""
    stop = time.perf_counter() + seconds
    counts: list[tuple[int, int]] = []

    def poll(part: list[tuple[str, str]]) -> None:
        session = requests.Session()
        done = not_modified = 0
        while time.perf_counter() < stop:
            for gate_id, token in part:
                r = session.get(f"{base}/v1/gates/{gate_id}/bundle?{held}",
                                headers={"Authorization": f"Bearer {token}", "If-None-Match": etags[gate_id]},
                                timeout=60)
                done += 1
                not_modified += r.status_code == 304
                if time.perf_counter() >= stop:
                    break
        counts.append((done, not_modified))

    start = time.perf_counter()
    threads = [threading.Thread(target=poll, args=(gates[i::POLLERS],)) for i in range(POLLERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    done = sum(c[0] for c in counts)
    return done / elapsed, done, sum(c[1] for c in counts)


WRK_SCRIPT = """
-- Cycle through every gate: its own path, token and ETag (If-None-Match).
local gates = {}
for line in io.lines(os.getenv("PASSGATE_GATES")) do
  local id, token, etag, held = line:match("([^\t]+)\t([^\t]+)\t([^\t]+)\t(.+)")
  gates[#gates + 1] = {id, token, etag, held}
end
local i = 0
request = function()
  i = i % #gates + 1
  local g = gates[i]
  return wrk.format("GET", "/v1/gates/" .. g[1] .. "/bundle?" .. g[4],
                    {["Authorization"] = "Bearer " .. g[2], ["If-None-Match"] = g[3]})
end
"""


def wrk_polls(base: str, gates: list[tuple[str, str]], etags: dict[str, str], held: str,
              seconds: float) -> float | None:
    """Bundle polls/s with wrk (a C load generator: the client costs far less CPU than Python's,
    so more of the 2 cores measure the hub). None when wrk is not installed."""
    wrk = shutil.which("wrk")
    if wrk is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "gates.tsv").write_text("".join(f"{g}\t{t}\t{etags[g]}\t{held}\n" for g, t in gates))
        (Path(tmp) / "poll.lua").write_text(WRK_SCRIPT)
        command = [wrk, "-t2", "-c64", f"-d{seconds:.0f}s", "-s", str(Path(tmp) / "poll.lua"), base]
        out = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60,
                             env={**os.environ, "PASSGATE_GATES": str(Path(tmp) / "gates.tsv")}).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    return float(match.group(1)) if match else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--events", type=int, default=2000, help="events per gate per run")
    parser.add_argument("--workers", type=int, default=3,
                        help="hub worker processes (one more than the cores: README's advice)")
    parser.add_argument("--poll-seconds", type=float, default=5.0)
    parser.add_argument("--no-fsync", action="store_true", help="PostgreSQL with fsync off")
    parser.add_argument("--no-polls", action="store_true", help="ingest only")
    args = parser.parse_args()

    cluster = PgCluster(durable=not args.no_fsync).start()
    with contextlib.ExitStack() as stack:
        stack.callback(cluster.stop)
        url = cluster.create_database("bench")
        gates = seed(url)
        base, _ = stack.enter_context(served_hub(url, args.workers))
        for mix in MIXES:
            ingest_run(base, gates, 1, mix, SIZES[0])  # warm-up: connections, pools, caches
        with psycopg.connect(cluster.dsn("bench"), autocommit=True) as conn:
            # the statistics autovacuum keeps on a running hub (a new table has none for its
            # first minute, and the planner would scan it whole to look up a few pass ids)
            conn.execute("ANALYZE events")
        # the cases and the baseline take turns, so a slow spell of the machine falls on each
        cases = [(mix, size) for size in SIZES for mix in MIXES]
        rates: dict[tuple[str, int], list[float]] = {case: [] for case in cases}
        copies: dict[tuple[str, int], list[float]] = {case: [] for case in cases}
        for _ in range(args.runs):
            for mix, size in cases:
                batches = max(1, args.events // size)
                rates[mix, size].append(ingest_run(base, gates, batches, mix, size))
                copies[mix, size].append(copy_run(cluster.dsn("bench"), SENDERS * batches, mix, size))
        goals = {"decisions": 5000, "realistic": 15000}
        for mix, size in cases:
            hub_rate, copy_rate = statistics.median(rates[mix, size]), statistics.median(copies[mix, size])
            print(f"ingest over HTTP, {mix:9}, batches of {size:3}: {hub_rate:6.0f} events/s (median of "
                  f"{args.runs}: {', '.join(f'{r:.0f}' for r in rates[mix, size])}; {SENDERS} gates, "
                  f"{args.workers} hub workers)")
            print(f"  psycopg COPY of the same rows: {copy_rate:6.0f} events/s; ratio HTTP / COPY "
                  f"{hub_rate / copy_rate:.2f}; goal >= {goals[mix]} events/s: "
                  f"{'met' if hub_rate >= goals[mix] else 'NOT met'}")

        if args.no_polls:
            return
        # each gate polls as it does once it holds the lists: their versions and signing times
        session = requests.Session()
        first = session.get(f"{base}/v1/gates/{gates[0][0]}/bundle",
                            headers={"Authorization": f"Bearer {gates[0][1]}"}, timeout=60).json()
        held = urllib.parse.urlencode({
            key: value for kind, update in first["denylists"].items()
            for key, value in ((kind, update["version"]), (f"{kind}_issued_at", update["issued_at"]))})
        etags = {}
        for gate_id, token in gates:
            r = session.get(f"{base}/v1/gates/{gate_id}/bundle?{held}",
                            headers={"Authorization": f"Bearer {token}"}, timeout=60)
            etags[gate_id] = r.headers["ETag"]
        polls = [poll_run(base, gates, etags, held, args.poll_seconds) for _ in range(3)]
        rate = statistics.median(p[0] for p in polls)
        print(f"bundle polls      : {rate:8.0f} fetches/s (median of 3; {GATES} gates; Python clients; "
              f"{sum(p[2] for p in polls)} of {sum(p[1] for p in polls)} answers were 304)")
        wrk_rate = wrk_polls(base, gates, etags, held, args.poll_seconds * 2)
        if wrk_rate is not None:
            print(f"bundle polls, wrk : {wrk_rate:8.0f} fetches/s ({GATES} gates, 64 connections; "
                  f"{wrk_rate / rate:.1f} x the Python clients' figure)")


if __name__ == "__main__":
    main()
