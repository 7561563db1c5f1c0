"""One request a quiet round (protocol 3's ``POST sync``): the heartbeat, the bundle only when it
changed and the first page of redemptions in one answer; an upload before it only when there are
events; more pages asked for only when the answer says so; and a hub without it served request by
request, as before. Protocol 4: a new freshness grid step brings statements in the answer, not the
bundle again; and a worker reads again what its quiet rounds are answered from (``rounds.refresh``)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from sqlalchemy import event, select, update
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from passgate import wire
from passgate_hub import db as hub_db
from passgate_hub import denylists as hub_lists
from passgate_hub import rounds
from passgate_hub.api import gates as gate_api
from passgate_hub.models import Gate as GateRow
from passgated.policy import Direction
from passgated.sync import SyncResult
from tests.hub.fixtures import db_url, hub
from tests.hub.server import HubServer, issue
from tests.hub.test_api import setup_venue

from .test_sync import Gate

__all__ = ["db_url", "hub"]


def counting(gate: Gate) -> list[str]:
    """Every request the gate's sync client makes to the hub, as "METHOD last-path-part"."""
    made: list[str] = []

    def hook(response: requests.Response, *args: object, **kwargs: object) -> None:
        made.append(f"{response.request.method} {response.request.path_url.split('?')[0].rsplit('/', 1)[-1]}")

    gate.sync.session.hooks["response"].append(hook)
    return made


@pytest.fixture
def two_gates(hub: HubServer, tmp_path: Path) -> Iterator[tuple[HubServer, requests.Session, Gate, Gate]]:
    admin = hub.admin()
    tokens = setup_venue(hub, admin)
    g1, g2 = (Gate(tmp_path / name, f"arena-{name}", hub.url, tokens[name]) for name in ("g1", "g2"))
    yield hub, admin, g1, g2
    g1.close()
    g2.close()


def test_a_quiet_round_is_one_request_and_events_add_one(two_gates) -> None:
    hub, admin, g1, g2 = two_gates
    made = counting(g1)
    assert g1.sync.sync_once().ok and made == ["POST sync"]  # the first bundle came in its answer
    assert g1.lists.versions()["revoked"] >= 1 and g1.sync._etag
    made.clear()
    assert g1.sync.sync_once().ok and made == ["POST sync"]
    [ticket] = issue(hub, admin)
    assert g1.scan(ticket["text"]).admit
    made.clear()
    result = g1.sync.sync_once()
    assert result.ok and result.uploaded == 2 and made == ["POST events", "POST sync"]
    got = g2.sync.sync_once()  # the redemption reaches the other gate in its one request
    assert got.ok and got.redemptions == 1
    assert not g2.scan(ticket["text"]).admit
    status = g1.sync.status()
    assert status["last_error"] is None and abs(status["clock_offset_s"]) < 5


def test_more_redemptions_than_an_answer_holds_are_fetched_in_the_same_round(two_gates, monkeypatch) -> None:
    hub, admin, g1, g2 = two_gates
    monkeypatch.setattr(gate_api, "SYNC_REDEMPTIONS", 2)
    assert g1.sync.sync_once().ok and g2.sync.sync_once().ok
    tickets = issue(hub, admin, count=5)
    for ticket in tickets:
        assert g1.scan(ticket["text"]).admit
        assert g1.sync.sync_once().ok  # an upload (one ingest transaction) a passage: pages end between
    made = counting(g2)
    got = g2.sync.sync_once()
    assert got.ok and got.redemptions == 5
    assert made[0] == "POST sync" and made.count("GET redemptions") >= 2
    assert all(not g2.scan(t["text"], Direction.ENTRY).admit for t in tickets)


def test_a_hub_without_the_one_request_round_is_served_request_by_request(two_gates) -> None:
    hub, admin, g1, _ = two_gates
    # as a hub of protocol 2 answers: no such route
    hub.app.router.routes.insert(0, Route("/v1/gates/{gate_id}/sync", methods=["POST"],
                                          endpoint=lambda request: PlainTextResponse("Not Found", 404)))
    made = counting(g1)
    assert g1.sync.sync_once().ok
    assert made == ["POST sync", "POST heartbeat", "GET bundle", "GET redemptions"]
    made.clear()
    [ticket] = issue(hub, admin)
    assert g1.scan(ticket["text"]).admit
    assert g1.sync.sync_once().ok
    assert made[:4] == ["POST events", "POST heartbeat", "GET bundle", "GET redemptions"]
    assert "POST sync" not in made  # not asked again


def statements(hub: HubServer) -> list[str]:
    """Every SQL statement the hub runs from now on."""
    seen: list[str] = []

    @event.listens_for(hub.engine, "before_cursor_execute")
    def _record(conn: object, cursor: object, statement: str, *args: object) -> None:
        seen.append(statement)

    return seen


def test_an_unchanged_bundle_is_answered_without_reading_lists_keys_or_venues(two_gates) -> None:
    """From what the worker last read (for at most a second); a change this worker makes (a
    revocation) is seen by the very next round."""
    hub, admin, g1, _ = two_gates
    assert g1.sync.sync_once().ok and g1.sync.sync_once().ok
    seen = statements(hub)
    assert g1.sync.sync_once().ok
    touched = " ".join(seen).lower()
    assert "deny_lists" not in touched and "venues" not in touched and "issuer_keys" not in touched
    before = g1.lists.versions()["revoked"]
    [ticket] = issue(hub, admin)
    r = admin.post(f"{hub.url}/v1/admin/venues/arena/revocations", json={"pass_ids": [ticket["pass_id"]]},
                   timeout=10)
    assert r.status_code == 200
    assert g1.sync.sync_once().ok
    assert g1.lists.versions()["revoked"] == before + 1
    assert bytes.fromhex(ticket["pass_id"]) in g1.lists.live["revoked"].current
    etag = g1.sync._etag
    assert g1.sync.sync_once().ok  # the answer's ETag named what it brought: once is enough
    assert g1.sync._raw_bundle is None and g1.sync._etag == etag


@pytest.fixture
def kept(monkeypatch: pytest.MonkeyPatch) -> None:
    """What a worker reads is kept a minute, not a second: a slow machine's rounds stay quiet."""
    monkeypatch.setattr(rounds, "TTL_S", 60.0)


def gate_row(hub: HubServer, gate_id: str) -> tuple[float, dict[str, object]]:
    with hub.session() as db:
        row = db.execute(select(GateRow.last_seen, GateRow.health).where(GateRow.gate_id == gate_id)).one()
    return row.last_seen, row.health


def test_a_quiet_round_runs_no_statement_and_its_heartbeat_joins_a_batch(two_gates, kept) -> None:
    hub, _, g1, _ = two_gates
    assert g1.sync.sync_once().ok and g1.sync.sync_once().ok  # the first reads; then all is known
    seen_before, _ = gate_row(hub, g1.gate_id)
    seen = statements(hub)
    assert g1.sync.sync_once().ok
    assert seen == []  # no token lookup, no lists, no redemptions, no heartbeat update, no commit
    assert gate_row(hub, g1.gate_id)[0] == seen_before
    assert hub.app.state.beats.flush(hub.app.state.sessions) == 1
    last_seen, health = gate_row(hub, g1.gate_id)
    assert last_seen > seen_before and health["t"] == pytest.approx(last_seen, abs=5)


def test_a_heartbeat_that_changes_what_the_hub_shows_is_written_at_once(two_gates, kept) -> None:
    hub, _, g1, _ = two_gates
    assert g1.sync.sync_once().ok and g1.sync.sync_once().ok
    g1.sync.gate_health = lambda: {"fault": "Turnstile not ready", "scanners": [], "lists_stale": False}
    seen = statements(hub)
    assert g1.sync.sync_once().ok
    assert any(s.lower().startswith("update gates") for s in seen)
    assert gate_row(hub, g1.gate_id)[1]["health"]["fault"] == "Turnstile not ready"


def test_a_new_redemption_this_worker_stored_ends_the_quiet_rounds_at_once(two_gates, kept) -> None:
    hub, admin, g1, g2 = two_gates
    for gate in (g1, g2, g2):
        assert gate.sync.sync_once().ok
    [ticket] = issue(hub, admin)
    assert g1.scan(ticket["text"]).admit
    result = SyncResult()
    g1.sync._upload(result)  # the upload alone (g1's own round would read the newest again)
    assert result.uploaded == 2  # so this worker forgets the venue's newest redemption
    got = g2.sync.sync_once()
    assert got.ok and got.redemptions == 1


def test_a_batch_never_takes_a_gate_back_and_drops_what_a_changed_token_sent(two_gates, kept) -> None:
    """Another worker wrote a newer heartbeat, or the token was rotated elsewhere (the CLI, straight
    on the database) meanwhile: the batch writes nothing over either."""
    hub, _, g1, g2 = two_gates
    for gate in (g1, g1, g2, g2):
        assert gate.sync.sync_once().ok
    assert g1.sync.sync_once().ok and g2.sync.sync_once().ok  # both quiet: in the batch
    with hub.session() as db:  # g1: a newer heartbeat from another worker; g2: a new token
        db.execute(update(GateRow).where(GateRow.gate_id == g1.gate_id).values(last_seen=time.time() + 30))
        db.execute(update(GateRow).where(GateRow.gate_id == g2.gate_id).values(token_hash="0" * 64))
        db.commit()
    newer, _ = gate_row(hub, g1.gate_id)
    rotated, _ = gate_row(hub, g2.gate_id)
    hub.app.state.beats.flush(hub.app.state.sessions)
    assert gate_row(hub, g1.gate_id)[0] == newer and gate_row(hub, g2.gate_id)[0] == rotated


def test_the_serving_hub_writes_its_batch_every_second(db_url: str, tmp_path: Path) -> None:
    server = HubServer(db_url, purge_every_s=3600).start()
    admin = server.admin()
    tokens = setup_venue(server, admin)
    gate = Gate(tmp_path / "g1", "arena-g1", server.url, tokens["g1"])
    try:
        assert gate.sync.sync_once().ok and gate.sync.sync_once().ok
        before, _ = gate_row(server, gate.gate_id)
        assert gate.sync.sync_once().ok
        deadline = time.monotonic() + 10 * rounds.FLUSH_S
        while gate_row(server, gate.gate_id)[0] == before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert gate_row(server, gate.gate_id)[0] > before
    finally:
        gate.close()
        server.stop()
        server.close()


def test_a_token_changed_beside_this_worker_is_refused_within_a_second(two_gates, monkeypatch) -> None:
    """Rotated by another worker or the CLI (another session factory, so this worker's own
    forgetting plays no part): the venue's ``gates_rev`` moves, and a quiet round with the old
    token is refused once the venue was read again, though the gate itself is still kept."""
    monkeypatch.setattr(rounds, "TTL_S", 0.3)
    hub, _, g1, g2 = two_gates
    assert g1.sync.sync_once().ok and g1.sync.sync_once().ok
    url = hub.engine.url.render_as_string(hide_password=False)
    elsewhere = hub_db.session_factory(hub_db.make_engine(url))
    with elsewhere() as db:
        row = db.scalar(select(GateRow).where(GateRow.gate_id == g1.gate_id))
        assert row is not None
        row.token_hash = "1" * 64
        db.commit()
    time.sleep(0.4)
    assert g2.sync.sync_once().ok  # a round of the venue's other gate reads the venue again
    result = g1.sync.sync_once()
    assert not result.ok and "401" in str(g1.sync.status()["last_error"])


@pytest.fixture
def grid(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The freshness grid's step, moved by the test (``step[0] += 300``) whatever the clock says."""
    step = [hub_lists.fresh_as_of(time.time())]
    monkeypatch.setattr(hub_lists, "fresh_as_of", lambda now: step[0])
    return step


def refresh(hub: HubServer) -> int:
    state = hub.app.state
    return rounds.refresh(state.sessions, state.vectors, state.known, state.freshness, time.time())


def test_a_new_freshness_step_brings_statements_in_the_answer_not_the_bundle(two_gates, kept, grid) -> None:
    hub, _, g1, _ = two_gates
    assert g1.sync.sync_once().ok and g1.sync.sync_once().ok
    etag, versions = g1.sync._etag, g1.lists.versions()
    assert g1.sync._answer is not None and g1.sync._answer.fresh == {}  # it holds this step's
    for step in (1, 2):
        grid[0] += 300
        if step == 2:  # read ahead by the worker's refresh: the round itself runs no SQL
            assert refresh(hub) == 1
            seen = statements(hub)
        assert g1.sync.sync_once().ok
        answer = g1.sync._answer
        assert answer is not None and g1.sync._raw_bundle is None and g1.sync._etag == etag
        assert set(answer.fresh) == {"revoked", "blocked"}
        assert all(g1.lists.fresh[kind].as_of == grid[0] for kind in versions)
        assert g1.lists.versions() == versions
        if step == 2:
            assert seen == []
    assert g1.sync.sync_once().ok and g1.sync._answer.fresh == {}  # held now: not sent again


def test_a_gate_of_protocol_3_still_gets_the_bundle_each_step(two_gates, kept, grid) -> None:
    """It reads statements only in the bundle: its ETag steps with the grid."""
    hub, _, g1, _ = two_gates
    token = g1.sync.hub.token
    beat = wire.dump(wire.Heartbeat(t=time.time(), protocol=3))

    def sync(body: dict[str, object]) -> dict[str, object]:
        r = requests.post(f"{hub.url}/v1/gates/{g1.gate_id}/sync", json={"heartbeat": beat, **body},
                          timeout=10, headers={"Authorization": f"Bearer {token}", wire.PROTOCOL_HEADER: "3"})
        assert r.status_code == 200, r.text
        return r.json()

    first = sync({})
    held = {kind: {"version": u["version"], "issued_at": u["issued_at"]}
            for kind, u in first["bundle"]["denylists"].items()}
    again = sync({"lists": held, "etag": first["etag"]})
    assert again["bundle"] is None and again["etag"] == first["etag"] and again["fresh"] == {}
    grid[0] += 300
    stepped = sync({"lists": held, "etag": first["etag"]})
    assert stepped["bundle"] is not None and stepped["etag"] != first["etag"] and stepped["fresh"] == {}
    assert all(info["fresh"] for info in stepped["bundle"]["denylists"].values())


def test_the_etag_names_what_the_bundle_brings_and_statements_go_only_to_the_list_they_speak_for() -> None:
    versions = {"revoked": (5, 1000), "blocked": (2, 900)}
    settled, holds = rounds.bundle_etag(1, "floor", {}, versions, {"revoked": 5, "blocked": 2},
                                        {"revoked": 1000, "blocked": 900}, None)
    behind, behind_holds = rounds.bundle_etag(1, "floor", {}, versions, {"revoked": 4, "blocked": 2},
                                              {"revoked": 990, "blocked": 900}, None)
    assert holds and not behind_holds and behind == settled  # once applied, the gate holds this ETag
    forked, forked_holds = rounds.bundle_etag(1, "floor", {}, versions, {"revoked": 5, "blocked": 2},
                                              {"revoked": 777, "blocked": 900}, None)
    assert forked_holds and forked != settled  # nothing to bring until a new epoch: not resent
    assert rounds.bundle_etag(1, "floor", {}, versions, {}, {}, 300)[0] != rounds.bundle_etag(
        1, "floor", {}, versions, {}, {}, 600)[0]  # protocol 3: the grid step is in it
    made = {"revoked": "R", "blocked": "B"}
    held = {"revoked": 5, "blocked": 2}
    signed = {"revoked": 1000, "blocked": 900}
    assert rounds.due_statements(made, versions, held, signed, {}, 600) == made
    assert rounds.due_statements(made, versions, held, signed, {"revoked": 600, "blocked": 300}, 600) == {
        "blocked": "B"}
    forked = {**signed, "revoked": 777}
    assert rounds.due_statements(made, versions, held, forked, {}, 600) == {"blocked": "B"}
    assert rounds.due_statements(made, versions, {**held, "blocked": 1}, signed, {}, 600) == {"revoked": "R"}


def venue_of(hub: HubServer, gate_id: str) -> int:
    with hub.session() as db:
        return db.scalars(select(GateRow.venue_id).where(GateRow.gate_id == gate_id)).one()


def test_refresh_reads_a_change_made_elsewhere_and_keeps_nothing_read_before_a_forget(two_gates) -> None:
    hub, _, g1, _ = two_gates
    vectors = hub.app.state.vectors
    assert g1.sync.sync_once().ok and g1.sync.sync_once().ok
    venue = venue_of(hub, g1.gate_id)
    rev = vectors.gates_rev(venue, time.time())
    assert rev is not None and refresh(hub) == 1
    url = hub.engine.url.render_as_string(hide_password=False)
    with hub_db.session_factory(hub_db.make_engine(url))() as db:  # another worker's change: no forget here
        row = db.scalar(select(GateRow).where(GateRow.gate_id == "arena-g2"))
        assert row is not None
        row.config = {**row.config, "relay_pulse_ms": 400}
        db.commit()
    assert vectors.gates_rev(venue, time.time()) == rev  # not seen yet
    assert refresh(hub) == 1
    assert vectors.gates_rev(venue, time.time()) == rev + 1
    result = g1.sync.sync_once()  # its card was read at the old gates_rev: the full path reads it again
    assert result.ok and g1.sync._raw_bundle is None

    real = rounds._chunks

    def forgotten_meanwhile(ids: list[int]) -> object:
        vectors.forget()  # as a flush on another thread of this worker would, while it reads
        return real(ids)

    rounds._chunks = forgotten_meanwhile  # type: ignore[assignment]
    try:
        assert refresh(hub) == 0
    finally:
        rounds._chunks = real
    assert vectors.gates_rev(venue, time.time()) is None


def test_refresh_drops_a_venue_no_round_asked_for_lately(two_gates) -> None:
    hub, _, g1, _ = two_gates
    vectors = hub.app.state.vectors
    assert g1.sync.sync_once().ok and g1.sync.sync_once().ok  # the first signs the lists; then read
    venue = venue_of(hub, g1.gate_id)
    assert refresh(hub) == 1
    later = time.time() + rounds.IDLE_S + 1
    state = hub.app.state
    assert rounds.refresh(state.sessions, vectors, state.known, state.freshness, later) == 0
    assert vectors.gates_rev(venue, later) is None


def test_the_serving_hub_reads_its_venues_again_every_half_second(db_url: str, tmp_path: Path) -> None:
    server = HubServer(db_url, purge_every_s=3600).start()
    tokens = setup_venue(server, server.admin())
    gate = Gate(tmp_path / "g1", "arena-g1", server.url, tokens["g1"])
    try:
        assert gate.sync.sync_once().ok and gate.sync.sync_once().ok
        venue, read_at = venue_of(server, gate.gate_id), time.time()
        vectors = server.app.state.vectors
        deadline = time.monotonic() + 20 * rounds.TTL_S
        while time.monotonic() < deadline:  # past the first read's TTL, kept by the refresh
            if time.time() > read_at + 2 * rounds.TTL_S and vectors.gates_rev(venue, time.time()) is not None:
                break
            time.sleep(0.05)
        else:
            pytest.fail("the venue was not read again")
    finally:
        gate.close()
        server.stop()
        server.close()



def test_a_batch_locks_its_gates_in_the_order_of_their_ids() -> None:
    """Two workers' batches over the same gates must not deadlock: each writes in id order."""
    written: list[list[dict[str, object]]] = []

    class Connection:
        def execute(self, statement: object, rows: list[dict[str, object]]) -> None:
            written.append(rows)

    class Db:
        def connection(self) -> Connection:
            return Connection()

    rounds.Beats.write(Db(), [{"b_id": 9}, {"b_id": 2}, {"b_id": 5}])  # type: ignore[arg-type]
    assert [row["b_id"] for row in written[0]] == [2, 5, 9]
