"""The gate's sync client against a real hub over loopback HTTP (SQLite and PostgreSQL): single-use
shared between gates, outage and recovery with exactly-once delivery, lost acknowledgements,
token scoping, deny lists and trusted keys from the bundle, Retry-After and the worker thread."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

import passgated.sync as sync_module
from passgate import PassRefused, Reason, TrustStore, verify_pass
from passgated.config import HubSpec
from passgated.journal import Journal
from passgated.policy import Context, Decision, Direction, PolicyConfig, decide
from passgated.records import EventKind
from passgated.sync import SyncClient, sync_state_path
from tests.helpers import LOADED_WRITE_TIMEOUT_S, gate_lists
from tests.hub.fixtures import db_url, hub
from tests.hub.server import HubServer, issue
from tests.hub.test_api import setup_venue

__all__ = ["db_url", "hub"]
TIMEOUT = 10
WAIT_S = 20.0  # bound on every wait for a background effect


class Gate:
    """A gate's journal, deny lists and trust directory, as the daemon wires them, and its sync."""

    def __init__(self, root: Path, gate_id: str, hub_url: str, token: str, **sync_options: object) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.gate_id = gate_id
        self.journal = Journal(root / "journal.db", gate_id, write_timeout_s=LOADED_WRITE_TIMEOUT_S)
        self.lists = gate_lists(root)
        self.trust_dir = root / "trust"
        self.trust_changes = 0
        self.sync = SyncClient(HubSpec(hub_url, token, interval_s=0.2), journal_path=root / "journal.db",
                               gate_id=gate_id, lists=self.lists, trust_dir=self.trust_dir,
                               on_trust_changed=self._trust_changed, **sync_options)  # type: ignore[arg-type]

    def _trust_changed(self) -> None:
        self.trust_changes += 1

    def scan(self, text: str, direction: Direction = Direction.ENTRY) -> Decision:
        """Verify with the trust directory the sync client wrote, decide, and pass through."""
        try:
            result = verify_pass(text, TrustStore.load(self.trust_dir))
        except PassRefused as refused:
            result = refused
        ctx = Context(now=time.time(), direction=direction, revoked=self.lists.live["revoked"].current,
                      blocked=self.lists.live["blocked"].current, usage=self.journal)
        decision = decide(result, ctx, PolicyConfig(zones=("floor",)))
        rid = self.journal.record_decision(decision, 1.0, reserve=decision.admit)
        if rid:
            self.journal.commit(rid)
        return decision

    def close(self) -> None:
        self.sync.close()
        self.journal.close()


@pytest.fixture
def venue(hub: HubServer, tmp_path: Path) -> Iterator[tuple[HubServer, requests.Session, dict[str, Gate]]]:
    admin = hub.admin()
    tokens = setup_venue(hub, admin)
    gates = {name: Gate(tmp_path / name, f"arena-{name}", hub.url, token) for name, token in tokens.items()}
    yield hub, admin, gates
    for gate in gates.values():
        gate.close()


def hub_events(hub: HubServer, admin: requests.Session, gate_id: str) -> list[dict]:
    r = admin.get(f"{hub.url}/v1/admin/venues/arena/events", params={"gate_id": gate_id, "limit": 10000},
                  timeout=TIMEOUT)
    return r.json()


def test_single_use_pass_used_at_gate_1_is_refused_at_gate_2(venue) -> None:
    hub, admin, gates = venue
    g1, g2 = gates["g1"], gates["g2"]
    for gate in (g1, g2):
        assert gate.sync.sync_once().ok
    assert g1.trust_changes == 1 and len(TrustStore.load(g1.trust_dir)) == 1  # the pass issuer only
    [ticket] = issue(hub, admin)
    assert g1.scan(ticket["text"]).admit
    first = g1.sync.sync_once()
    assert first.ok and first.uploaded == 2  # the decision and the redemption
    got = g2.sync.sync_once()
    assert got.ok and got.redemptions == 1
    refused = g2.scan(ticket["text"])
    assert (refused.admit, refused.reason) == (False, Reason.USED_UP)
    assert g2.journal.usage(bytes.fromhex(ticket["pass_id"])).entries_used == 1
    assert g2.sync.sync_once().redemptions == 0  # the cursor moved on
    # revoked at the hub, refused at a gate after its next round
    [other] = issue(hub, admin)
    admin.post(f"{hub.url}/v1/admin/venues/arena/revocations", json={"pass_ids": [other["pass_id"]]},
               timeout=TIMEOUT)
    assert g1.sync.sync_once().ok
    assert g1.scan(other["text"]).reason == Reason.REVOKED
    assert g1.sync.status()["backlog"] == 1  # that refusal, until the next round
    assert g1.sync.sync_once().ok
    status = g1.sync.status()
    assert status["backlog"] == 0 and status["last_error"] is None
    assert status["lists"]["revoked"]["version"] == 2 and status["lists"]["revoked"]["age_s"] < 60
    assert abs(status["clock_offset_s"]) < 5
    listed = {g["gate_id"]: g for g in admin.get(f"{hub.url}/v1/admin/gates", timeout=TIMEOUT).json()}
    assert listed["arena-g1"]["lists"]["revoked"]["version"] >= 1 and listed["arena-g1"]["backlog"] == 0


def test_outage_then_recovery_delivers_every_event_exactly_once(venue, tmp_path: Path) -> None:
    hub, admin, gates = venue
    g1 = gates["g1"]
    assert g1.sync.sync_once().ok
    [ticket] = issue(hub, admin)
    hub.stop()
    assert g1.scan(ticket["text"]).admit  # the gate decides while the hub is away
    for i in range(300):
        g1.journal.record("state", detail=f"tick {i}")
    down = g1.sync.sync_once()
    assert not down.ok and "ConnectionError" in (down.error or "")
    status = g1.sync.status()
    assert status["backlog"] == 302 and status["last_error"] == down.error
    g1.sync.close()  # the gate restarts during the outage: the outbox is on disk
    g1.sync = SyncClient(HubSpec(hub.url, g1.sync.hub.token, interval_s=0.2),
                         journal_path=tmp_path / "g1" / "journal.db", gate_id=g1.gate_id,
                         lists=g1.lists, trust_dir=g1.trust_dir)
    hub.start()
    rounds = 0
    while g1.sync.status()["backlog"] and rounds < 10:
        assert g1.sync.sync_once().ok
        rounds += 1
    assert g1.sync.status()["backlog"] == 0
    stored = hub_events(hub, admin, "arena-g1")
    assert len(stored) == len({e["event_id"] for e in stored}) == len(g1.journal.events()) == 302
    # acknowledgements lost in transit: the gate sends everything again, the hub stores nothing twice
    g1.journal.db.execute("UPDATE events SET sent = 0")
    again = g1.sync.sync_once()
    assert again.ok and again.uploaded == 302
    assert len(hub_events(hub, admin, "arena-g1")) == 302


def test_a_token_works_only_for_its_own_gate(venue, tmp_path: Path) -> None:
    hub, _, gates = venue
    g1_token = gates["g1"].sync.hub.token
    impostor = SyncClient(HubSpec(hub.url, g1_token), journal_path=tmp_path / "imp.db", gate_id="arena-g2",
                          lists=None, trust_dir=None)
    Journal(tmp_path / "imp.db", "arena-g2").record("state", detail="hello")
    result = impostor.sync_once()
    assert not result.ok and "HTTP 403" in (result.error or "")
    assert impostor.status()["backlog"] == 1  # nothing marked sent
    impostor.close()
    wrong = SyncClient(HubSpec(hub.url, "pgg_wrong"), journal_path=tmp_path / "w.db", gate_id="arena-g1",
                       lists=None, trust_dir=None)
    assert "HTTP 401" in (wrong.sync_once().error or "")
    wrong.close()


def test_background_worker_syncs_and_stops_promptly(venue) -> None:
    hub, admin, gates = venue
    g1, g3 = gates["g1"], gates["g3"]
    g1.sync.start()
    g3.sync.start()
    deadline = time.monotonic() + WAIT_S
    while g1.trust_changes == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    [ticket] = issue(hub, admin)
    assert g1.scan(ticket["text"]).admit
    while time.monotonic() < deadline and not g3.journal.usage(bytes.fromhex(ticket["pass_id"])).entries_used:
        time.sleep(0.05)
    assert g3.journal.usage(bytes.fromhex(ticket["pass_id"])).entries_used == 1
    start = time.monotonic()
    g1.sync.close()
    g3.sync.close()
    assert time.monotonic() - start < 5


class Busy(http.server.BaseHTTPRequestHandler):
    """A hub that is overloaded: every request gets 503 with Retry-After."""

    requests = 0

    def do_GET(self) -> None:
        type(self).requests += 1
        self.send_response(503)
        self.send_header("Retry-After", "7")
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_POST = do_GET

    def log_message(self, *_: object) -> None:
        pass


def test_retry_after_is_honoured_between_rounds(tmp_path: Path) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Busy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    waits: list[float] = []
    done = threading.Event()

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) >= 3:
            done.set()
            client._stop.set()

    Journal(tmp_path / "j.db", "g1").record("state")
    client = SyncClient(HubSpec(f"http://127.0.0.1:{server.server_port}", "pgg_x"),
                        journal_path=tmp_path / "j.db", gate_id="g1", lists=None, trust_dir=None,
                        sleep=sleep, backoff=(0.5, 4.0))
    result = client.sync_once()
    assert (result.ok, result.retry_after) == (False, 7.0) and "HTTP 503" in (result.error or "")
    assert Busy.requests == 1  # an overloaded hub gets no more requests from this round
    client.start()
    assert done.wait(WAIT_S)
    client.close()
    server.shutdown()
    assert waits and all(w >= 7.0 for w in waits)
    assert client.last_success is None


def test_a_gate_that_lost_its_history_fetches_it_again_with_its_own(venue) -> None:
    hub, admin, gates = venue
    g1 = gates["g1"]
    assert g1.sync.sync_once().ok  # the keys first
    [ticket] = issue(hub, admin, valid_until=1_900_000_000)
    assert g1.scan(ticket["text"]).admit
    assert g1.sync.sync_once().ok  # the admit and its redemption: the hub's first events
    g1.journal.db.execute("DELETE FROM redemptions")  # the journal was set aside: a new, empty one
    g1.journal.mark_history_missing("set aside for this test")
    refetch = g1.sync.sync_once()
    assert refetch.ok and refetch.redemptions == 1  # this gate's own redemption, fetched again
    assert g1.journal.history_missing() is None
    assert [e["detail"] for e in g1.journal.events("history_restored")] == [
        f"fetched again from the hub ({hub.url})"]
    held = g1.journal.db.execute("SELECT gate_id, direction, state, valid_until FROM redemptions")
    assert held.fetchall() == [("arena-g1", "entry", "committed", 1_900_000_000.0)]
    assert g1.scan(ticket["text"]).reason == Reason.USED_UP
    assert g1.sync.sync_once().redemptions == 0 and len(g1.journal.events("history_restored")) == 1


def test_redemptions_arrive_in_pages_and_the_cursor_survives_a_restart(venue, tmp_path: Path) -> None:
    hub, _, gates = venue
    g1, g2 = gates["g1"], gates["g2"]
    with g1.journal.db:  # more than one page of the hub's answer (1,000), each after its admit
        g1.journal.db.executemany(
            "INSERT INTO events(event_id, gate_id, t, kind, direction, pass_id, decision, reason, detail) "
            "VALUES (?, ?, ?, ?, 'entry', ?, ?, ?, ?)",
            [row for n in range(1_100) for row in (
                (f"d{n}", g1.gate_id, time.time(), str(EventKind.DECISION), f"{n:032x}", "admit", "admit",
                 None),
                (f"e{n}", g1.gate_id, time.time(), str(EventKind.REDEEMED), f"{n:032x}", None, None,
                 f"r{n}"))])
    assert g1.sync.sync_once().uploaded == 2_200
    got = g2.sync.sync_once()
    assert got.ok and got.redemptions == 1_100
    assert g2.journal.db.execute("SELECT count(*) FROM redemptions").fetchone()[0] == 1_100
    cursor = json.loads(sync_state_path(tmp_path / "g2" / "journal.db").read_text())["cursor"]
    g2.sync.close()
    g2.sync = SyncClient(HubSpec(hub.url, g2.sync.hub.token), journal_path=tmp_path / "g2" / "journal.db",
                         gate_id=g2.gate_id, lists=g2.lists, trust_dir=g2.trust_dir)
    assert g2.sync._cursor == cursor > 1_000  # read back: a restart does not fetch it all again


class CountingSession(requests.Session):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, str]] = []

    def request(self, method, url, *args, **kwargs):  # type: ignore[no-untyped-def, override]
        self.calls.append((method, url.rsplit("/", 1)[-1]))
        return super().request(method, url, *args, **kwargs)


def test_long_fields_are_cut_to_the_wire_limits_and_a_backlog_spans_rounds(venue, monkeypatch,
                                                                           tmp_path: Path) -> None:
    hub, admin, gates = venue
    g1 = gates["g1"]
    session = CountingSession()
    g1.sync.close()
    g1.sync = SyncClient(HubSpec(hub.url, g1.sync.hub.token), journal_path=tmp_path / "g1" / "journal.db",
                         gate_id=g1.gate_id, lists=g1.lists, trust_dir=g1.trust_dir, session=session)
    monkeypatch.setattr(sync_module, "BATCH", 10)
    monkeypatch.setattr(sync_module, "MAX_BATCHES", 2)
    g1.journal.record("state", detail="x" * 5_000)
    for n in range(24):
        g1.journal.record("state", detail=str(n))
    first = g1.sync.sync_once()
    assert (first.ok, first.uploaded, first.rejected, first.more) == (True, 20, 0, True)
    second = g1.sync.sync_once()
    assert (second.ok, second.uploaded, second.more) == (True, 5, False)
    assert session.calls.count(("POST", "events")) == 3  # whole batches, not one event a request
    stored = hub_events(hub, admin, "arena-g1")
    assert sorted(len(e["detail"] or "") for e in stored)[-1] == sync_module.FIELD_LIMITS["detail"] == 2000


class RefusesBatches(http.server.BaseHTTPRequestHandler):
    """A hub that refuses every batch as malformed and then fails (503) on single events."""

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.send_response(422 if len(body["events"]) > 1 else 503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


def test_a_hub_failing_while_events_go_one_by_one_quarantines_nothing(tmp_path: Path) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RefusesBatches)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    journal = Journal(tmp_path / "j.db", "g1")
    for n in range(3):
        journal.record("state", detail=str(n))
    client = SyncClient(HubSpec(f"http://127.0.0.1:{server.server_port}", "pgg_x"),
                        journal_path=tmp_path / "j.db", gate_id="g1", lists=None, trust_dir=None)
    result = client.sync_once()
    client.close()
    server.shutdown()
    assert (result.ok, result.rejected, result.uploaded) == (False, 0, 0)
    assert "HTTP 503" in (result.error or "")
    assert journal.backlog() == 3  # all still queued for the next round: the hub failed, not the events
