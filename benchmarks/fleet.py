"""A fleet's sync rounds against one hub: 1,000 gates, each round as a quiet gate makes it (no
events to upload, nothing changed), on PostgreSQL, the hub with 3 workers on this 2-core machine.

Two ways, taking turns: protocol 3's one request (``POST sync``: heartbeat, bundle check, first page
of redemptions) and the request-by-request round a gate of protocol 2 makes (``POST heartbeat``,
``GET bundle`` with ``If-None-Match``, ``GET redemptions``). For each: rounds a second, and the CPU
the hub's processes and PostgreSQL's spent a round (from /proc), which says how many gates polling
every 10 s one 2-core replica can serve (2 cores × 10 s / CPU a round). The clients are one asyncio
thread on kept-alive connections with requests built before the clock starts, so they take as
little of the same cores as a client can.

Goal ("Fleet scale" issue): one replica serves at least 10,000 gates polling every 10 s.

    python benchmarks/fleet.py [--seconds 8] [--runs 3] [--connections 50] [--workers 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import statistics
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hub_ingest import seed  # noqa: E402
from served import served_hub  # noqa: E402

from passgate import wire  # noqa: E402
from tests.hub.pgcluster import PgCluster  # noqa: E402

POLL_S = 10.0
GOAL_GATES = 10_000
TICKS = os.sysconf("SC_CLK_TCK")
HEALTH = {"journal_ok": True, "lists_stale": False, "fault": None,
          "scanners": [{"source": "serial:/dev/ttyACM0", "connected": True}]}


def cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds of these processes and their children so far."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += sum(int(fields[i]) for i in (11, 12))  # utime, stime
    return total / TICKS


def family(root: int) -> list[int]:
    """``root`` and every process below it."""
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except FileNotFoundError:
            continue
        todo += [int(c) for c in children]
    return out


def postgres_pids() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if Path(entry, "comm").read_text().strip() == "postgres":
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def raw(method: str, path: str, host: str, token: str, body: bytes = b"", headers: str = "") -> bytes:
    head = (f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
            f"{wire.PROTOCOL_HEADER}: {wire.PROTOCOL_VERSION}\r\n{headers}")
    if body:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return (head + "\r\n").encode() + body


def rounds_of(base: str, gates: list[tuple[str, str]]) -> dict[str, dict[str, list[bytes]]]:
    """For each gate, the requests of one quiet round both ways, as it holds its lists and bundle."""
    host = base.removeprefix("http://")
    session = requests.Session()
    out: dict[str, dict[str, list[bytes]]] = {"one request": {}, "request by request": {}}
    for gate_id, token in gates:
        beat = {"t": time.time(), "version": "0.1.0", "protocol": wire.PROTOCOL_VERSION, "backlog": 0,
                "state": "IDLE", "lists": {}, "health": HEALTH}
        first = session.post(f"{base}/v1/gates/{gate_id}/sync", timeout=60,
                             headers={"Authorization": f"Bearer {token}",
                                      wire.PROTOCOL_HEADER: str(wire.PROTOCOL_VERSION)},
                             json={"heartbeat": beat}).json()
        lists = {kind: {"version": u["version"], "issued_at": u["issued_at"]}
                 for kind, u in first["bundle"]["denylists"].items()}
        beat["lists"] = {kind: {"version": held["version"], "age_s": 30.0} for kind, held in lists.items()}
        cursor = first["redemptions"]["cursor"]
        body = json.dumps({"heartbeat": beat, "lists": lists, "etag": first["etag"],
                           "redemptions_after": cursor}).encode()
        out["one request"][gate_id] = [raw("POST", f"/v1/gates/{gate_id}/sync", host, token, body)]
        query = "&".join(f"{kind}={held['version']}&{kind}_issued_at={held['issued_at']}"
                         for kind, held in lists.items())
        etag = session.get(f"{base}/v1/gates/{gate_id}/bundle?{query}", timeout=60,
                           headers={"Authorization": f"Bearer {token}",
                                    wire.PROTOCOL_HEADER: str(wire.PROTOCOL_VERSION)}).headers["ETag"]
        out["request by request"][gate_id] = [
            raw("POST", f"/v1/gates/{gate_id}/heartbeat", host, token, json.dumps(beat).encode()),
            raw("GET", f"/v1/gates/{gate_id}/bundle?{query}", host, token,
                headers=f"If-None-Match: {etag}\r\n"),
            raw("GET", f"/v1/gates/{gate_id}/redemptions?after={cursor}", host, token)]
    return out


async def _run(host: str, port: int, rounds: dict[str, list[bytes]], connections: int,
               seconds: float) -> int:
    """Rounds done in ``seconds`` by ``connections`` clients, each cycling through its gates."""
    gates = list(rounds.values())
    stop = time.monotonic() + seconds

    async def client(share: list[list[bytes]]) -> int:
        reader, writer = await asyncio.open_connection(host, port)
        done, i = 0, 0
        while time.monotonic() < stop:
            for request in share[i % len(share)]:
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                match = re.search(rb"(?i)content-length: *(\d+)", head)
                body = await reader.readexactly(int(match.group(1))) if match else b""
                assert head[9:12] in (b"200", b"304"), head + body[:300]
            done, i = done + 1, i + 1
        writer.close()
        return done

    shares = [gates[n::connections] for n in range(connections)]
    return sum(await asyncio.gather(*(client(share) for share in shares)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each measured run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--workers", type=int, default=3)
    args = parser.parse_args()
    cluster = PgCluster().start()
    with contextlib.ExitStack() as stack:
        stack.callback(cluster.stop)
        url = cluster.create_database("bench")
        gates = seed(url)
        base, proc = stack.enter_context(served_hub(url, args.workers))
        port = int(base.rsplit(":", 1)[1])
        ways = rounds_of(base, gates)
        host = "127.0.0.1"
        figures: dict[str, list[tuple[float, float, float]]] = {way: [] for way in ways}
        for rounds in ways.values():  # warm-up
            asyncio.run(_run(host, port, rounds, args.connections, 1.0))
        for _ in range(args.runs):
            for way, rounds in ways.items():
                hub_pids, pg_pids = family(proc.pid), postgres_pids()
                hub_before, pg_before = cpu_s(hub_pids), cpu_s(pg_pids)
                started = time.perf_counter()
                done = asyncio.run(_run(host, port, rounds, args.connections, args.seconds))
                elapsed = time.perf_counter() - started
                hub_ms = (cpu_s(hub_pids) - hub_before) * 1000 / done
                pg_ms = (cpu_s(pg_pids) - pg_before) * 1000 / done
                figures[way].append((done / elapsed, hub_ms, pg_ms))
        print(f"\nfleet: {len(gates):,} gates, quiet rounds, PostgreSQL, {args.workers} hub workers, "
              f"{args.connections} client connections, {args.runs} runs of {args.seconds:.0f} s")
        for way, runs in figures.items():
            rate = statistics.median(r[0] for r in runs)
            hub_ms = statistics.median(r[1] for r in runs)
            pg_ms = statistics.median(r[2] for r in runs)
            capacity = 2 * POLL_S * 1000 / (hub_ms + pg_ms)
            each = ", ".join(f"{r[0]:.0f}" for r in runs)
            print(f"{way:19}: {rate:6.0f} rounds/s (runs {each}); CPU a round: "
                  f"hub {hub_ms:.2f} ms + PostgreSQL {pg_ms:.2f} ms -> one 2-core replica serves about "
                  f"{capacity:,.0f} gates polling every {POLL_S:.0f} s (goal >= {GOAL_GATES:,}: "
                  f"{'met' if capacity >= GOAL_GATES else 'NOT met'})")
        one, many = (statistics.median(r[1] + r[2] for r in figures[w]) for w in ways)
        print(f"CPU a round, one request / request by request: {one / many:.2f}")


if __name__ == "__main__":
    main()
