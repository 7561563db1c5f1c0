"""A fleet's sync rounds against one hub: 1,000 gates of one venue, each round as a quiet gate makes it
(no events to upload, nothing changed: it holds the bundle's ETag as a settled gate does, and its
heartbeat carries its clock and its lists' growing age), on PostgreSQL, the hub with 3 workers on this
2-core machine.

Four ways, taking turns: protocol 4's one request (``POST sync``: heartbeat, bundle check, first page
of redemptions; a worker answers it from what it knows, ``passgate_hub.rounds``); the same for as many
gates again spread over ``--venues`` venues (10 gates a venue by default: a venue's gates then reach a
worker less often than once a second, so it is the worker's refresh that keeps what they are
answered from); the first gates' rounds at a new freshness grid step (each gate holds the last
step's statements, so every answer carries this step's: at 10 s a round, one round in 30 of every
gate is such a round); and the request-by-request round a gate makes of a hub without the one
request (``POST heartbeat``, ``GET bundle`` with ``If-None-Match``, ``GET redemptions``), the
baseline. For each:
rounds a second, and the CPU the hub's processes and PostgreSQL's spent a round (from /proc), which
says how many gates polling every 10 s one 2-core replica can serve (2 cores × 10 s / CPU a round).
The clients are one asyncio thread on kept-alive connections, each request built as it is sent, so
they take as little of the same cores as a client can.

Goal ("Fleet scale" issue): one replica serves at least 10,000 gates polling every 10 s.

Second part (``--part fetch``): a new snapshot of 10 M entries (one signed file of 80 MB, published
as the hub publishes it, ``passgate_hub.published``) fetched by 100 gates at once through Debian's
nginx on loopback, and as well (``--servers nginx,hub``) from the hub itself, ``passgate-hub serve``
at ``/lists/`` (SQLite, ``--workers`` workers). Each simulated gate is a thread with the gate's own
session and download code (``passgated.downloads.download``: streamed to a file of its own, fsync,
size and SHA-256 checked), started together; the file is deleted once it is whole and checked, and
if the free space beside the gates' folders is short, at most as many as fit hold one at once (the
others wait their turn, and the wait counts). Figures: the time until all have it, each gate's time
(p50, p95), the fleet's MB/s together, and the CPU the server's processes spent (from /proc). The
baseline in the same runs, taking turns with the fleet: one gate alone fetching the same file, so
``all / alone`` says what sharing the server costs (``gates``: the server gives the fleet no more
than it gives one gate; 1: the fleet costs no more than one gate). The gates and the server share
the same 2 cores (and one disk), so these times are the client's as much as the server's: the
server's CPU a run is the figure for the server. No goal is set; the issue asks for the time.

    python benchmarks/fleet.py [--part rounds|fetch|all] [--seconds 8] [--runs 3] [--connections 50]
                               [--workers 3] [--venues 100] [--snapshot-entries 10000000] [--fetch-gates 100]
                               [--servers nginx,hub] [--gate-dir DIR] [--max-on-disk N]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import cbor2  # noqa: E402
import served_nginx  # noqa: E402
from hub_ingest import seed  # noqa: E402
from served import served_hub  # noqa: E402

from passgate import cose, generate_private_key, wire  # noqa: E402
from passgate.denylist import DEFAULT_MAX_BYTES, DenyList  # noqa: E402
from passgate_hub import audit, db, ops, published  # noqa: E402
from passgate_hub.denylists import FRESH_EVERY_S as STEP_S  # noqa: E402
from passgated import downloads  # noqa: E402
from passgated.config import HubSpec  # noqa: E402
from passgated.sync import TIMEOUT, _session  # noqa: E402
from tests.hub.pgcluster import PgCluster  # noqa: E402

POLL_S = 10.0
GOAL_GATES = 10_000
TICKS = os.sysconf("SC_CLK_TCK")
TRIES = 3  # a gate's download, resumed after a cut
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


def postmaster_pid(cluster: PgCluster) -> int:
    """The cluster's first process (its backends' CPU, once they exit, is in its own), from its
    ``postmaster.pid``: not another cluster's running beside it (a test suite's)."""
    return int((cluster.root / "data" / "postmaster.pid").read_text().split()[0])


def off_step(seconds: float) -> None:
    """Wait, when a new freshness grid step would fall within the next ``seconds``, until it is
    past (and the workers' refresh signed its statements): a quiet run holds no step."""
    now = time.time()
    step = (now // STEP_S + 1) * STEP_S
    if step - now < seconds + 1:
        time.sleep(step - now + 2)


def raw(method: str, path: str, host: str, token: str, body: bytes = b"", headers: str = "") -> bytes:
    head = (f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
            f"{wire.PROTOCOL_HEADER}: {wire.PROTOCOL_VERSION}\r\n{headers}")
    if body:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return (head + "\r\n").encode() + body


Request = Callable[[], bytes]  # built as it is sent: a heartbeat carries the gate's clock then
NO_BUNDLE = b'"bundle": null'
NO_STATEMENTS = b'"fresh": {}'
ETAG = re.compile(rb'"etag":\s*("(?:[^"\\]|\\.)*")')  # a JSON string (an ETag holds quotes)


def as_of(statement: str) -> int:
    """The time a freshness statement vouches for (a gate verifies it too; the hub's CPU is measured)."""
    return int(cbor2.loads(cose.decode_sign1(base64.b64decode(statement)).payload)["as_of"])


class SyncRound:
    """A gate's one-request round: built as it is sent, with the ETag of the last answer and the
    statements' times it holds, as a gate keeps them (``held_back``: it claims the step before the
    one it was given, so every answer carries the statements, as at a new grid step)."""

    def __init__(self, build: Callable[[str, dict[str, int]], bytes], etag: str, vouched: dict[str, int],
                 held_back: bool = False) -> None:
        self.build, self.etag, self.vouched, self.held_back = build, etag, dict(vouched), held_back
        self.bundles = 0  # answers that carried a bundle
        self.statements = 0  # answers that carried freshness statements

    def __call__(self) -> bytes:
        claimed = {kind: t - STEP_S for kind, t in self.vouched.items()} if self.held_back else self.vouched
        return self.build(self.etag, claimed)

    def answered(self, body: bytes) -> None:
        match = ETAG.search(body)
        if match:
            self.etag = json.loads(match.group(1))
        if NO_BUNDLE not in body:
            self.bundles += 1
        if NO_STATEMENTS not in body:
            self.statements += 1
            for kind, statement in json.loads(body)["fresh"].items():
                self.vouched[kind] = as_of(statement)


def rounds_of(base: str, gates: list[tuple[str, str]]) -> dict[str, dict[str, list[Request]]]:
    """For each gate, the requests of one quiet round each way, as it holds its lists and bundle;
    each heartbeat says what a quiet gate's says: its clock now, its lists' age since the statement
    it holds, nothing else changed."""
    host = base.removeprefix("http://")
    session = requests.Session()
    out: dict[str, dict[str, list[Request]]] = {"one request": {}, "at a grid step": {},
                                                "request by request": {}}

    def beat(lists: dict[str, dict[str, int]], vouched: dict[str, int]) -> dict[str, Any]:
        now = time.time()
        held = {kind: {"version": each["version"],
                       "age_s": now - max(vouched.get(kind, 0), each["issued_at"])}
                for kind, each in lists.items()}
        return {"t": now, "version": "0.1.0", "protocol": wire.PROTOCOL_VERSION, "backlog": 0,
                "state": "IDLE", "lists": held, "health": HEALTH}

    for gate_id, token in gates:
        first = session.post(f"{base}/v1/gates/{gate_id}/sync", timeout=60,
                             headers={"Authorization": f"Bearer {token}",
                                      wire.PROTOCOL_HEADER: str(wire.PROTOCOL_VERSION)},
                             json={"heartbeat": beat({}, {})}).json()
        lists = {kind: {"version": u["version"], "issued_at": u["issued_at"]}
                 for kind, u in first["bundle"]["denylists"].items()}
        vouched = {kind: as_of(u["fresh"]) for kind, u in first["bundle"]["denylists"].items() if u["fresh"]}
        cursor = first["redemptions"]["cursor"]

        def held(vouched: dict[str, int], lists: dict[str, dict[str, int]] = lists) -> dict[str, Any]:
            return {kind: {**each, "as_of": vouched.get(kind)} for kind, each in lists.items()}

        # the round after, holding what the first brought: its ETag is the one a settled gate holds
        settled = session.post(f"{base}/v1/gates/{gate_id}/sync", timeout=60,
                               headers={"Authorization": f"Bearer {token}",
                                        wire.PROTOCOL_HEADER: str(wire.PROTOCOL_VERSION)},
                               json={"heartbeat": beat(lists, vouched), "lists": held(vouched),
                                     "etag": first["etag"], "redemptions_after": cursor}).json()
        assert settled["bundle"] is None, "the round after the first bundle brought it again"

        def sync(etag: str, vouched: dict[str, int], gate_id: str = gate_id, token: str = token,
                 lists: dict[str, dict[str, int]] = lists, cursor: int = cursor,
                 held: Callable[[dict[str, int]], dict[str, Any]] = held) -> bytes:
            body = json.dumps({"heartbeat": beat(lists, vouched), "lists": held(vouched), "etag": etag,
                               "redemptions_after": cursor}).encode()
            return raw("POST", f"/v1/gates/{gate_id}/sync", host, token, body)

        def heartbeat(gate_id: str = gate_id, token: str = token, lists: dict[str, dict[str, int]] = lists,
                      vouched: dict[str, int] = vouched) -> bytes:
            body = json.dumps(beat(lists, vouched)).encode()
            return raw("POST", f"/v1/gates/{gate_id}/heartbeat", host, token, body)

        out["one request"][gate_id] = [SyncRound(sync, settled["etag"], vouched)]
        out["at a grid step"][gate_id] = [SyncRound(sync, settled["etag"], vouched, held_back=True)]
        query = "&".join(f"{kind}={held['version']}&{kind}_issued_at={held['issued_at']}"
                         for kind, held in lists.items())
        etag = session.get(f"{base}/v1/gates/{gate_id}/bundle?{query}", timeout=60,
                           headers={"Authorization": f"Bearer {token}",
                                    wire.PROTOCOL_HEADER: str(wire.PROTOCOL_VERSION)}).headers["ETag"]
        bundle = raw("GET", f"/v1/gates/{gate_id}/bundle?{query}", host, token,
                     headers=f"If-None-Match: {etag}\r\n")
        redemptions = raw("GET", f"/v1/gates/{gate_id}/redemptions?after={cursor}", host, token)
        out["request by request"][gate_id] = [heartbeat, lambda bundle=bundle: bundle,
                                              lambda redemptions=redemptions: redemptions]
    return out


async def _run(host: str, port: int, rounds: dict[str, list[Request]], connections: int,
               seconds: float, *, once: bool = False) -> int:
    """Rounds done in ``seconds`` by ``connections`` clients, each cycling through its gates
    (``once``: one round of every gate, however long it takes)."""
    gates = list(rounds.values())
    stop = time.monotonic() + seconds

    async def client(share: list[list[Request]]) -> int:
        reader, writer = await asyncio.open_connection(host, port)
        done, i = 0, 0
        while i < len(share) if once else time.monotonic() < stop:
            for request in share[i % len(share)]:
                writer.write(request())
                head = await reader.readuntil(b"\r\n\r\n")
                match = re.search(rb"(?i)content-length: *(\d+)", head)
                body = await reader.readexactly(int(match.group(1))) if match else b""
                assert head[9:12] in (b"200", b"304"), head + body[:300]
                if isinstance(request, SyncRound):
                    request.answered(body)
            done, i = done + 1, i + 1
        writer.close()
        return done

    shares = [gates[n::connections] for n in range(connections)]
    return sum(await asyncio.gather(*(client(share) for share in shares)))


def seed_venues(url: str, venues: int, gates: int) -> list[tuple[str, str]]:
    """As many gates again, spread over ``venues`` venues: a venue's gates then reach a worker less
    often than once a second, and a worker reads the venue again for more of their rounds."""
    if venues <= 1:
        return []
    engine = db.make_engine(url)
    out = []
    with db.session_factory(engine)() as session:
        audit.act_as(session, audit.Actor("benchmark", None))
        for v in range(venues):
            venue = ops.create_venue(session, f"v{v:04d}")
            out += [(f"v{v:04d}-g{i:04d}", ops.create_gate(session, venue, f"v{v:04d}-g{i:04d}"))
                    for i in range(gates // venues)]
        session.commit()
    engine.dispose()
    return out


def rounds(args: argparse.Namespace) -> None:
    cluster = PgCluster().start()
    with contextlib.ExitStack() as stack:
        stack.callback(cluster.stop)
        url = cluster.create_database("bench")
        gates = seed(url)
        spread = seed_venues(url, args.venues, len(gates))
        base, proc = stack.enter_context(served_hub(url, args.workers))
        port = int(base.rsplit(":", 1)[1])
        ways = rounds_of(base, gates)
        if spread:
            over = rounds_of(base, spread)
            ways[f"one request, {args.venues} venues"] = over["one request"]
            ways[f"at a grid step, {args.venues} venues"] = over["at a grid step"]
        host = "127.0.0.1"
        figures: dict[str, list[tuple[float, float, float]]] = {way: [] for way in ways}
        settled: dict[str, int] = {}  # way -> the grid step its gates all hold statements for

        def settle(way: str) -> None:
            """One round of every gate when the grid stepped since its last: the quiet runs measure
            quiet rounds, not each gate's first after a step (the step's ways measure those)."""
            step = int(time.time()) // STEP_S
            if settled.get(way) != step:
                asyncio.run(_run(host, port, ways[way], args.connections, 0.0, once=True))
                settled[way] = step

        for way in ways:  # warm-up: every gate once
            settle(way)
        postmaster = postmaster_pid(cluster)
        bundles: dict[str, list[int]] = {way: [] for way in ways}
        statements: dict[str, list[int]] = {way: [] for way in ways}

        def counted(rounds: dict[str, list[Request]]) -> tuple[int, int]:
            kept = [r for each in rounds.values() for r in each if isinstance(r, SyncRound)]
            return sum(r.bundles for r in kept), sum(r.statements for r in kept)

        for _ in range(args.runs):
            for way, rounds in ways.items():
                off_step(args.seconds)
                settle(way)
                before = counted(rounds)
                hub_before, pg_before = tree_cpu_s(proc.pid), tree_cpu_s(postmaster)
                started = time.perf_counter()
                done = asyncio.run(_run(host, port, rounds, args.connections, args.seconds))
                elapsed = time.perf_counter() - started
                hub_ms = (tree_cpu_s(proc.pid) - hub_before) * 1000 / done
                pg_ms = (tree_cpu_s(postmaster) - pg_before) * 1000 / done
                figures[way].append((done / elapsed, hub_ms, pg_ms))
                after = counted(rounds)
                bundles[way].append(after[0] - before[0])
                statements[way].append(after[1] - before[1])
        print(f"\nfleet: {len(gates):,} gates, quiet rounds, PostgreSQL, {args.workers} hub workers, "
              f"{args.connections} client connections, {args.runs} runs of {args.seconds:.0f} s")

        def capacity(ms: float) -> str:
            gates = 2 * POLL_S * 1000 / ms
            return (f"one 2-core replica serves about {gates:,.0f} gates polling every {POLL_S:.0f} s "
                    f"(goal >= {GOAL_GATES:,}: {'met' if gates >= GOAL_GATES else 'NOT met'})")

        cost: dict[str, float] = {}
        for way, runs in figures.items():
            rate = statistics.median(r[0] for r in runs)
            hub_ms = statistics.median(r[1] for r in runs)
            pg_ms = statistics.median(r[2] for r in runs)
            cost[way] = statistics.median(r[1] + r[2] for r in runs)
            each = ", ".join(f"{r[0]:.0f}" for r in runs)
            cpu_each = ", ".join(f"{r[1] + r[2]:.2f}" for r in runs)
            print(f"{way:34}: {rate:6.0f} rounds/s (runs {each}); CPU a round: hub {hub_ms:.2f} ms + "
                  f"PostgreSQL {pg_ms:.2f} ms (runs {cpu_each}) -> {capacity(cost[way])}")
            if any(statements[way]) or any(bundles[way]):
                print(f"{'':36}answers with statements, each run: {', '.join(map(str, statements[way]))}; "
                      f"with a whole bundle: {', '.join(map(str, bundles[way]))}")
        rounds_a_step = STEP_S / POLL_S
        for quiet, step in (("one request", "at a grid step"),
                            (f"one request, {args.venues} venues", f"at a grid step, {args.venues} venues")):
            if quiet in cost and step in cost:
                mean = ((rounds_a_step - 1) * cost[quiet] + cost[step]) / rounds_a_step
                print(f"a gate's {rounds_a_step:.0f} rounds a grid step ({quiet}; one of them with "
                      f"statements): {mean:.2f} ms a round -> {capacity(mean)}")
        one, many = cost["one request"], cost["request by request"]
        print(f"CPU a round, one request / request by request: {one / many:.2f}")


# --- a new snapshot fetched by many gates at once -------------------------------------------


def publish_snapshot(root: Path, entries: int) -> wire.ListFile:
    """A signed snapshot of ``entries`` random entries, published in ``root`` as the hub does
    (named ``/lists/<sha256>.pgdl``, relative: each server's base URL goes before it)."""
    import numpy as np

    keys = np.sort(np.random.default_rng(entries).integers(0, 2**64, entries, dtype=np.uint64))
    keys = keys[np.concatenate(([True], keys[1:] != keys[:-1]))]
    snapshot = DenyList(keys, kind="blocked", scope="bench", version=2, issued_at=int(time.time()))
    return published.Published(root).file(snapshot.to_signed(generate_private_key()))


def tree_cpu_s(root: int) -> float:
    """User + system CPU seconds of ``root``, every process below it and every one of those that
    has exited and been waited for (a hub worker uvicorn restarted, say) so far."""
    total = 0
    for pid in family(root):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += sum(int(fields[i]) for i in (11, 12, 13, 14))  # utime, stime, cutime, cstime
    return total / TICKS


def at_once(url: str, named: wire.ListFile, folder: Path, gates: int, room: int) -> tuple[list[float], int]:
    """Seconds until each of ``gates`` gates, started together, has the file whole and checked
    (at most ``room`` of them holding a file at once; each deletes it then), and how many times
    one resumed a cut download as a gate's next round does (at once here, ``TRIES`` at most)."""
    go = threading.Event()
    slots = threading.BoundedSemaphore(room)
    done: list[float] = [0.0] * gates
    resumed = [0] * gates
    errors: list[BaseException] = []

    def gate(n: int) -> None:
        session = _session(HubSpec(url=url, token=""))  # the gate's session for list files
        try:
            go.wait()
            with slots:
                for attempt in range(TRIES):
                    try:
                        path = downloads.download(session, url, named, folder / f"g{n:03d}", verify=True,
                                                  timeout=TIMEOUT, max_bytes=DEFAULT_MAX_BYTES)
                        break
                    except (downloads.DownloadError, requests.RequestException):
                        if attempt == TRIES - 1:
                            raise
                        resumed[n] += 1
                done[n] = time.perf_counter()
                path.unlink()
        except BaseException as exc:  # reported below, by the thread that started them
            errors.append(exc)
        finally:
            session.close()

    threads = [threading.Thread(target=gate, args=(n,), daemon=True) for n in range(gates)]
    for thread in threads:
        thread.start()
    started = time.perf_counter()
    go.set()
    for thread in threads:
        thread.join()
    if errors:
        raise RuntimeError(f"{len(errors)} of {gates} gates failed; the first: {errors[0]!r}")
    return [t - started for t in done], sum(resumed)


def span(values: list[float], fmt: str = "{:.2f}") -> str:
    """``median s (runs low-high)``."""
    low, mid, high = (fmt.format(v) for v in (min(values), statistics.median(values), max(values)))
    return f"{mid} s (runs {low}-{high})"


def fetch(args: argparse.Namespace) -> None:
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="fleet-fetch-")))
        gate_root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="fleet-gates-",
                                                                         dir=args.gate_dir)))
        root = work / "published"
        named = publish_snapshot(root, args.snapshot_entries)
        mb = named.size / 1e6
        free = shutil.disk_usage(gate_root).free
        fit = max(1, int(free * 0.5 // named.size))  # half the free space at most
        room = min(args.fetch_gates, args.max_on_disk or fit)
        servers: dict[str, tuple[str, subprocess.Popen[bytes]]] = {}
        servers["nginx"] = stack.enter_context(served_nginx.served_nginx(root))
        if "hub" in args.servers:
            os.environ[published.ENV_DIR] = str(root)  # for the serve process; nothing else reads it
            servers["hub"] = stack.enter_context(served_hub(f"sqlite:///{work}/hub.db", args.workers))
        for base, _ in servers.values():  # warm-up: connections, the file in the page cache
            at_once(downloads.url_of(named, base), named, gate_root, 1, 1)
        alone: dict[str, list[float]] = {name: [] for name in servers}
        fleet: dict[str, list[list[float]]] = {name: [] for name in servers}
        server_cpu: dict[str, list[float]] = {name: [] for name in servers}
        gates_cpu: dict[str, list[float]] = {name: [] for name in servers}
        resumed = dict.fromkeys(servers, 0)
        for _ in range(args.runs):
            for name, (base, proc) in servers.items():
                url = downloads.url_of(named, base)
                times, cuts = at_once(url, named, gate_root, 1, 1)
                alone[name] += times
                before, own_before = tree_cpu_s(proc.pid), cpu_s([os.getpid()])
                times, more = at_once(url, named, gate_root, args.fetch_gates, room)
                server_cpu[name].append(tree_cpu_s(proc.pid) - before)
                gates_cpu[name].append(cpu_s([os.getpid()]) - own_before)
                fleet[name].append(times)
                resumed[name] += cuts + more
        gates = args.fetch_gates
        print(f"\nfetch: a new snapshot of {args.snapshot_entries:,} entries ({mb:.1f} MB, signed), "
              f"{gates} gates at once, each with the gate's download code (streamed to its own file in "
              f"{gate_root.parent}, fsync, size and SHA-256 checked, then deleted), {args.runs} runs")
        if room < gates:
            print(f"at most {room} files on disk at once ({free / 1e9:.1f} GB free there): "
                  f"the others wait their turn")
        for name in servers:
            label = (f"{served_nginx.version()} (a worker a core, sendfile)" if name == "nginx"
                     else f"passgate-hub serve /lists/ ({args.workers} workers)")
            all_s = [max(run) for run in fleet[name]]
            p50 = [statistics.median(run) for run in fleet[name]]
            p95 = [statistics.quantiles(run, n=20, method="inclusive")[18] if len(run) > 1 else run[0]
                   for run in fleet[name]]
            ratio = statistics.median(all_s) / statistics.median(alone[name])
            print(f"{label}:")
            print(f"  one gate alone: {span(alone[name])}, {mb / statistics.median(alone[name]):.0f} MB/s")
            print(f"  {gates} at once: all have it after {span(all_s)}; a gate: p50 {span(p50)}, "
                  f"p95 {span(p95)}; {gates * mb / statistics.median(all_s):.0f} MB/s together")
            print(f"  all / alone: {ratio:.1f} (of {gates} gates); CPU a run: the server "
                  f"{span(server_cpu[name], '{:.1f}')} "
                  f"({statistics.median(server_cpu[name]) / (gates * mb / 1000):.2f} s a GB), "
                  f"the gates' threads {span(gates_cpu[name], '{:.1f}')}")
            if resumed[name]:
                print(f"  cut downloads resumed: {resumed[name]} in all (the time counts them)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=("rounds", "fetch", "all"), default="all",
                        help="sync rounds, the snapshot fetched at once, or both")
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each measured run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--venues", type=int, default=100,
                        help="rounds part: as many gates again over this many venues (1: not measured)")
    parser.add_argument("--snapshot-entries", type=int, default=10_000_000)
    parser.add_argument("--fetch-gates", type=int, default=100)
    parser.add_argument("--servers", default="nginx,hub",
                        help="nginx, and the hub itself beside it unless left out")
    parser.add_argument("--gate-dir", type=Path, default=None,
                        help="where the gates' folders go (default: the temp dir; /dev/shm: no disk)")
    parser.add_argument("--max-on-disk", type=int, default=None,
                        help="files held at once at most (default: as many as fit in half the free space)")
    args = parser.parse_args()
    if args.part in ("rounds", "all"):
        rounds(args)
    if args.part in ("fetch", "all"):
        fetch(args)


if __name__ == "__main__":
    main()
