"""Operators and their scope, over real loopback HTTP on SQLite and PostgreSQL.

The walk takes every admin operation from the hub's own OpenAPI schema (so a route added later is
walked too) with its declared requirement, and tries it with a key of another venue, with every
weaker role, with a revoked key, and with the weakest key that should pass. Then: the lifecycle of
API keys and gate tokens, gates disabled and deleted, the audit log, the CLI, the migration of
existing keys, and a revoked or rotated credential refused at once by a multi-worker server.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from fastapi import APIRouter, FastAPI, HTTPException, Request
from sqlalchemy import event as sa_event
from sqlalchemy import func, select, text

from passgate_hub import app as hub_app
from passgate_hub import auth, cli, db, operators
from passgate_hub.models import AuditEntry
from passgate_hub.scope import EVERYTHING, Role
from tests.system.procs import HubProcess, hub_json, run_hub_cli

from .server import HubServer, issue
from .test_api import event, gate_client, setup_venue

TIMEOUT = 10
ADMIN_PREFIX = "/v1/admin/"


def client(key: str) -> requests.Session:
    return gate_client(key)  # a bearer credential, whatever its kind


def audit_count(hub: HubServer) -> int:
    with hub.session() as s:
        return int(s.scalar(select(func.count()).select_from(AuditEntry)) or 0)


def last_audit(hub: HubServer) -> AuditEntry:
    with hub.session() as s:
        entry = s.scalar(select(AuditEntry).order_by(AuditEntry.id.desc()).limit(1))
        assert entry is not None
        return entry


class Walk:
    """Two venues set up by a hub-wide admin, and keys of each role: on arena, hub-wide, and an
    admin of the stadium (the other venue)."""

    def __init__(self, hub: HubServer) -> None:
        self.hub = hub
        self.everywhere = {role: hub.api_key(role, name=f"hub-{role}") for role in Role}
        root = client(self.everywhere[Role.ADMIN])
        self.tokens = setup_venue(hub, root, "arena")
        setup_venue(hub, root, "stadium")
        self.kid = root.get(f"{hub.url}/v1/admin/venues/arena/keys", timeout=TIMEOUT).json()[-1]["kid"]
        self.pass_id = issue(hub, root)[0]["pass_id"]
        self.arena = {role: hub.api_key(role, ("arena",), name=f"arena-{role}") for role in Role}
        self.foreign = hub.api_key(Role.ADMIN, ("stadium",), name="stadium-admin")
        self.revoked = hub.api_key(Role.ADMIN, ("arena",), name="arena-revoked")
        r = root.post(f"{hub.url}/v1/admin/apikeys/arena-revoked/revoke", timeout=TIMEOUT)
        assert r.status_code == 200
        hub.api_key(Role.VIEWER, ("arena",), name="arena-victim")
        with hub.session() as s:  # and an operator of that name: ``{name}`` fills both kinds of route
            operators.create(s, "arena-victim", role=Role.VIEWER, venues=["arena"], by=EVERYTHING)
            s.commit()
        self.names = {key: f"{where}-{role}"
                      for where, keys in (("hub", self.everywhere), ("arena", self.arena))
                      for role, key in keys.items()}
        self.made = 0

    def url(self, path: str) -> str:
        filled = (path.replace("{venue}", "arena").replace("{gate_id}", "arena-g1")
                  .replace("{kind}", "revoked").replace("{kid}", self.kid).replace("{name}", "arena-victim")
                  .replace("{pass_id}", self.pass_id))
        assert "{" not in filled, f"the walk cannot fill {path}: teach Walk.url the new parameter"
        return self.hub.url + filled

    def body(self, method: str, path: str) -> dict[str, Any] | None:
        """A body that succeeds for the routes known today; ``{}`` for any other (a 422 past the
        scope check still shows the check passed)."""
        if method in ("GET", "DELETE"):
            return None
        self.made += 1
        now = time.time()
        known: dict[str, dict[str, Any]] = {
            "/v1/admin/venues": {"name": f"venue-{self.made}"},
            "/v1/admin/venues/{venue}/zones": {"name": f"zone-{self.made}"},
            "/v1/admin/venues/{venue}/gates": {"gate_id": f"arena-new-{self.made}", "zone": "floor"},
            "/v1/admin/venues/{venue}/gates/{gate_id}": {"settings": {"relay_pulse_ms": 300}},
            "/v1/admin/venues/{venue}/keys": {"generate": True},
            "/v1/admin/venues/{venue}/passes": {"count": 1, "valid_from": now - 60,
                                                "valid_until": now + 3600, "zones": ["floor"]},
            "/v1/admin/venues/{venue}/revocations": {"pass_ids": [self.pass_id]},
            "/v1/admin/venues/{venue}/blocks": {"pass_ids": [self.pass_id]},
            "/v1/admin/venues/{venue}/unblocks": {"pass_ids": [self.pass_id]},
            "/v1/admin/apikeys": {"name": f"made-{self.made}", "role": "viewer", "venues": ["arena"]},
            "/v1/admin/operators": {"name": f"made-{self.made}", "role": "viewer", "venues": ["arena"]},
            "/v1/admin/purge": {"venue": "arena"},
        }
        return known.get(path, {})

    def call(self, key: str, method: str, path: str, query: str = "") -> requests.Response:
        return client(key).request(method, self.url(path) + query, json=self.body(method, path),
                                   timeout=TIMEOUT)


def admin_operations(hub: HubServer) -> list[tuple[str, str, dict[str, Any]]]:
    """(method, path, operation) of every admin operation of the served schema; DELETEs last (the
    walk deletes the gate the other routes name)."""
    schema = requests.get(f"{hub.url}/openapi.json", timeout=TIMEOUT).json()
    ops = [(method.upper(), path, op) for path, item in schema["paths"].items()
           if path.startswith(ADMIN_PREFIX) for method, op in item.items()]
    return sorted(ops, key=lambda o: o[0] == "DELETE")


def test_every_admin_route_refuses_other_venues_weaker_roles_and_revoked_keys(hub: HubServer) -> None:
    walk = Walk(hub)
    operations = admin_operations(hub)
    assert len(operations) >= 30
    passed = 0
    for method, path, operation in operations:
        where = f"{method} {path}"
        access = operation.get(hub_app.ACCESS)
        assert access is not None, f"{where} declares no requirement"
        needed = Role(access["role"])
        # sanity of the declarations themselves: reading is for viewers, any change for more
        assert needed.covers(Role.VIEWER if method == "GET" else Role.OPERATOR), where
        venue_in_path = "{venue}" in path
        weaker = [r for r in Role if not r.covers(needed)]
        refused = [walk.arena[r] for r in weaker] + [walk.everywhere[r] for r in weaker]
        if venue_in_path or access["hub_wide"]:
            refused.append(walk.foreign)
        if access["hub_wide"]:
            refused += list(walk.arena.values())
        before = audit_count(hub)
        for key in refused:
            r = walk.call(key, method, path)
            assert r.status_code == 403, (where, key[:12], r.status_code, r.text)
            assert "API key" in r.json()["detail"], (where, r.text)
        r = walk.call(walk.revoked, method, path)
        assert r.status_code == 401, (where, r.text)
        query_names = {p["name"] for p in operation.get("parameters", []) if p["in"] == "query"}
        if not venue_in_path and not access["hub_wide"]:
            # a route over the key's venues: the other venue's key sees nothing of arena's
            r = walk.call(walk.foreign, method, path)
            assert r.status_code == 403 or (r.ok and "arena" not in r.text), (where, r.text)
            if "venue" in query_names:
                assert walk.call(walk.foreign, method, path, "?venue=arena").status_code == 403, where
        assert audit_count(hub) == before, f"{where}: a refused request left an audit entry"
        right = walk.everywhere[needed] if access["hub_wide"] else walk.arena[needed]
        r = walk.call(right, method, path)
        assert r.status_code not in (401, 403), (where, r.status_code, r.text)
        if method != "GET" and r.ok:
            passed += 1
            entry = last_audit(hub)
            assert audit_count(hub) > before, f"{where} changed the hub without an audit entry"
            assert (entry.actor, entry.source) == (f"apikey:{walk.names[right]}", "127.0.0.1"), where
    assert passed >= 15  # most changes went through with the right key, and each was audited


def test_the_hub_refuses_to_build_with_an_admin_route_that_declares_no_role() -> None:
    app = FastAPI()
    router = APIRouter(prefix="/v1/admin")

    @router.get("/forgotten")
    def forgotten() -> dict[str, str]:
        return {}

    app.include_router(router)
    with pytest.raises(RuntimeError, match=r"admin route GET /v1/admin/forgotten declares no role"):
        hub_app.check_scoped(app)


def test_a_venue_admin_manages_only_keys_of_its_venues(hub: HubServer) -> None:
    root = hub.admin()
    for venue in ("arena", "stadium"):
        r = root.post(f"{hub.url}/v1/admin/venues", json={"name": venue}, timeout=TIMEOUT)
        assert r.status_code == 201
    arena_admin = client(hub.api_key(Role.ADMIN, ("arena",), name="arena-admin"))
    hub.api_key(Role.OPERATOR, ("arena", "stadium"), name="both")
    hub.api_key(Role.OPERATOR, ("stadium",), name="stadium-ops")
    url = f"{hub.url}/v1/admin/apikeys"

    r = arena_admin.post(url, json={"name": "door", "role": "operator", "venues": ["arena"]}, timeout=TIMEOUT)
    assert r.status_code == 201 and r.json()["key"].startswith("pga_")
    for body, reason in (({"venues": ["stadium"]}, "no grant on venue 'stadium'"),
                         ({"venues": ["arena", "stadium"]}, "no grant on venue 'stadium'"),
                         ({"all_venues": True}, "needs a hub-wide admin")):
        r = arena_admin.post(url, json={"name": "sneaky", "role": "viewer", **body}, timeout=TIMEOUT)
        assert r.status_code == 403 and reason in r.json()["detail"], r.text
    # neither both venues nor none
    for body in ({"venues": ["arena"], "all_venues": True}, {}):
        r = root.post(url, json={"name": "x", "role": "viewer", **body}, timeout=TIMEOUT)
        assert r.status_code == 422 and "--all-venues" in r.json()["detail"]
    # listed: only the keys within arena; never a secret or a hash
    listed = arena_admin.get(url, timeout=TIMEOUT).json()
    assert {k["name"] for k in listed} == {"arena-admin", "door"}
    door = next(k for k in listed if k["name"] == "door")
    assert door["grants"] == [{"venue": "arena", "role": "operator"}]
    assert door["revoked_at"] is None and door["created_at"] > 0
    every = root.get(url, timeout=TIMEOUT).json()
    assert {"both", "stadium-ops", "door"} <= {k["name"] for k in every}
    assert not any("pga_" in json.dumps(k) or "hash" in json.dumps(k) for k in every)
    for name in ("both", "stadium-ops"):
        for action in ("rotate", "revoke"):
            r = arena_admin.post(f"{url}/{name}/{action}", timeout=TIMEOUT)
            assert r.status_code == 403 and "does not administer" in r.json()["detail"], r.text
    assert arena_admin.post(f"{url}/nobody/revoke", timeout=TIMEOUT).status_code == 404


def test_an_upload_learns_its_gate_is_disabled_from_its_one_token_query(hub: HubServer) -> None:
    """The upload is the hub's busiest route: the disabled check rides on the token lookup."""
    root = hub.admin()
    tokens = setup_venue(hub, root)
    assert root.post(f"{hub.url}/v1/admin/venues/arena/gates/arena-g1/disable", timeout=TIMEOUT).ok
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    request = Request({"type": "http", "headers": [(b"authorization", f"Bearer {tokens['g1']}".encode())]})
    sa_event.listen(hub.engine, "before_cursor_execute", seen)
    try:
        with hub.app.state.sessions() as session, pytest.raises(HTTPException) as refused:
            auth.uploading_gate(request, session, "arena-g1")
    finally:
        sa_event.remove(hub.engine, "before_cursor_execute", seen)
    assert refused.value.status_code == 403 and str(refused.value.detail).startswith("gate disabled")
    assert len([s for s in statements if "FROM" in s.upper()]) == 1, statements


def test_api_keys_rotate_and_revoke_at_once_and_last_use_is_kept(hub: HubServer) -> None:
    root = hub.admin()
    assert root.post(f"{hub.url}/v1/admin/venues", json={"name": "arena"}, timeout=TIMEOUT).status_code == 201
    old = hub.api_key(Role.VIEWER, ("arena",), name="reports")
    counts = f"{hub.url}/v1/admin/venues/arena/counts"
    assert client(old).get(counts, timeout=TIMEOUT).status_code == 200
    listed = {k["name"]: k for k in root.get(f"{hub.url}/v1/admin/apikeys", timeout=TIMEOUT).json()}
    assert listed["reports"]["last_used_at"] is not None
    assert hashlib.sha256(old.encode()).hexdigest() not in json.dumps(listed)

    r = root.post(f"{hub.url}/v1/admin/apikeys/reports/rotate", timeout=TIMEOUT)
    assert r.status_code == 201
    new = r.json()["key"]
    assert client(old).get(counts, timeout=TIMEOUT).status_code == 401
    assert client(new).get(counts, timeout=TIMEOUT).status_code == 200

    r = root.post(f"{hub.url}/v1/admin/apikeys/reports/revoke", timeout=TIMEOUT)
    assert r.status_code == 200 and r.json()["revoked_at"] is not None
    r = client(new).get(counts, timeout=TIMEOUT)
    assert r.status_code == 401 and r.json()["detail"] == "unknown or revoked credential"
    assert root.post(f"{hub.url}/v1/admin/apikeys/reports/rotate", timeout=TIMEOUT).status_code == 409
    r = root.post(f"{hub.url}/v1/admin/apikeys",
                  json={"name": "reports", "role": "viewer", "venues": ["arena"]}, timeout=TIMEOUT)
    assert r.status_code == 409  # a revoked key's name is not given again
    actions = [e["action"] for e in root.get(f"{hub.url}/v1/admin/audit", timeout=TIMEOUT).json()]
    assert actions[-2:] == ["apikey.rotate", "apikey.revoke"]


def test_gate_tokens_rotate_revoke_and_gates_disable_enable_delete(hub: HubServer) -> None:
    root = hub.admin()
    tokens = setup_venue(hub, root)
    gates = f"{hub.url}/v1/admin/venues/arena/gates/arena-g1"
    bundle = f"{hub.url}/v1/gates/arena-g1/bundle"
    upload = f"{hub.url}/v1/gates/arena-g1/events"

    r = root.post(f"{gates}/token/rotate", timeout=TIMEOUT)
    assert r.status_code == 201
    token = r.json()["token"]
    assert gate_client(tokens["g1"]).get(bundle, timeout=TIMEOUT).status_code == 401
    assert gate_client(token).get(bundle, timeout=TIMEOUT).status_code == 200

    r = root.post(f"{gates}/disable", timeout=TIMEOUT)
    assert r.status_code == 200 and r.json()["disabled_at"] is not None
    for method, url, body in (("GET", bundle, None), ("POST", upload, {"events": [event("arena-g1")]}),
                              ("GET", f"{hub.url}/v1/gates/arena-g1/redemptions", None),
                              ("POST", f"{hub.url}/v1/gates/arena-g1/heartbeat", {"t": time.time()})):
        r = gate_client(token).request(method, url, json=body, timeout=TIMEOUT)
        assert r.status_code == 403 and r.json()["detail"].startswith("gate disabled"), (url, r.text)
    assert root.post(f"{gates}/disable", timeout=TIMEOUT).status_code == 409
    assert root.post(f"{gates}/enable", timeout=TIMEOUT).json()["disabled_at"] is None
    r = gate_client(token).post(upload, json={"events": [event("arena-g1", "boot")]}, timeout=TIMEOUT)
    assert r.status_code == 200 and r.json()["stored"] == 1

    r = root.post(f"{gates}/token/revoke", timeout=TIMEOUT)
    assert r.status_code == 200 and r.json()["has_token"] is False
    assert gate_client(token).get(bundle, timeout=TIMEOUT).status_code == 401
    token = root.post(f"{gates}/token/rotate", timeout=TIMEOUT).json()["token"]  # a new one after all
    assert gate_client(token).get(bundle, timeout=TIMEOUT).status_code == 200

    events = f"{hub.url}/v1/admin/venues/arena/events"
    held = root.get(events, timeout=TIMEOUT).json()
    assert root.delete(gates, timeout=TIMEOUT).status_code == 204
    assert gate_client(token).get(bundle, timeout=TIMEOUT).status_code == 401
    listed = root.get(f"{hub.url}/v1/admin/gates", timeout=TIMEOUT).json()
    assert "arena-g1" not in {g["gate_id"] for g in listed}
    assert root.get(events, timeout=TIMEOUT).json() == held  # its events stay
    for method, url in (("DELETE", gates), ("POST", f"{gates}/enable"), ("POST", f"{gates}/token/rotate")):
        assert root.request(method, url, timeout=TIMEOUT).status_code == 404
    r = root.post(f"{hub.url}/v1/admin/venues/arena/gates", json={"gate_id": "arena-g1"}, timeout=TIMEOUT)
    assert r.status_code == 409 and "was deleted" in r.json()["detail"]
    actions = [e["action"] for e in root.get(f"{hub.url}/v1/admin/audit?venue=arena", timeout=TIMEOUT).json()]
    assert actions[-6:] == ["gate.token_rotate", "gate.disable", "gate.enable", "gate.token_revoke",
                            "gate.token_rotate", "gate.delete"]


def test_the_audit_log_is_scoped_to_the_keys_venues(hub: HubServer) -> None:
    root = hub.admin()
    setup_venue(hub, root, "arena")
    setup_venue(hub, root, "stadium")
    arena = client(hub.api_key(Role.ADMIN, ("arena",), name="arena-admin"))
    r = arena.post(f"{hub.url}/v1/admin/venues/arena/zones", json={"name": "bar"}, timeout=TIMEOUT)
    assert r.status_code == 201
    entries = arena.get(f"{hub.url}/v1/admin/audit", timeout=TIMEOUT).json()
    assert entries and {e["venue"] for e in entries} == {"arena"}
    mine = entries[-1]
    assert (mine["actor"], mine["source"], mine["action"], mine["target"]) == (
        "apikey:arena-admin", "127.0.0.1", "zone.create", "arena/bar")
    assert arena.get(f"{hub.url}/v1/admin/audit?venue=stadium", timeout=TIMEOUT).status_code == 403
    everything = root.get(f"{hub.url}/v1/admin/audit", timeout=TIMEOUT).json()
    assert {e["venue"] for e in everything} == {"arena", "stadium", None}  # hub-wide keys made by tests
    page = root.get(f"{hub.url}/v1/admin/audit?after={everything[1]['id']}&limit=2", timeout=TIMEOUT).json()
    assert [e["id"] for e in page] == [e["id"] for e in everything[2:4]]
    # an operator of arena reads the venue but not its audit log
    operator = client(hub.api_key(Role.OPERATOR, ("arena",), name="arena-ops"))
    r = operator.get(f"{hub.url}/v1/admin/audit", timeout=TIMEOUT)
    assert r.status_code == 403 and "needs admin" in r.json()["detail"]


# -- the CLI -------------------------------------------------------------------------------------


def run(database: str, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any, str]:
    status = cli.main(["--database", database, *argv])
    out, err = capsys.readouterr()
    return status, json.loads(out) if status == 0 and out.strip() else out, err


def test_cli_lifecycle_commands_and_audit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    database = f"sqlite:///{tmp_path / 'hub.db'}"
    for argv in (["venue", "create", "arena"], ["zone", "create", "arena", "floor"],
                 ["gate", "create", "arena", "north-1"]):
        assert run(database, capsys, *argv)[0] == 0
    status, out, err = run(database, capsys, "apikey", "create", "ops", "--role", "operator",
                           "--venue", "arena")
    assert status == 0 and out["key"].startswith("pga_"), err
    status, out, err = run(database, capsys, "apikey", "create", "root", "--role", "admin")
    assert (status, err) == (1, "passgate-hub apikey create: name the key's venues (--venue) or give "
                                "--all-venues, one of the two\n")
    assert run(database, capsys, "apikey", "create", "root", "--role", "admin", "--all-venues")[0] == 0
    status, out, err = run(database, capsys, "apikey", "create", "x", "--role", "viewer",
                           "--venue", "nowhere")
    assert (status, err) == (1, "passgate-hub apikey create: no venue 'nowhere'\n")
    status, listed, _ = run(database, capsys, "apikey", "list")
    assert [(k["name"], k["grants"]) for k in listed] == [
        ("ops", [{"venue": "arena", "role": "operator"}]), ("root", [{"venue": None, "role": "admin"}])]
    assert "pga_" not in json.dumps(listed)
    status, out, _ = run(database, capsys, "apikey", "rotate", "ops")
    assert status == 0 and out["key"].startswith("pga_")
    status, out, _ = run(database, capsys, "apikey", "revoke", "ops")
    assert status == 0 and out["revoked_at"] is not None
    again = run(database, capsys, "apikey", "revoke", "ops")
    assert again[:1] + again[2:] == (1, "passgate-hub apikey revoke: API key 'ops' is revoked\n")

    assert run(database, capsys, "gate", "disable", "arena", "north-1")[1]["disabled_at"] is not None
    assert run(database, capsys, "gate", "enable", "arena", "north-1")[1]["disabled_at"] is None
    assert run(database, capsys, "gate", "rotate-token", "arena", "north-1")[1]["token"].startswith("pgg_")
    assert run(database, capsys, "gate", "revoke-token", "arena", "north-1")[1]["has_token"] is False
    deleted = run(database, capsys, "gate", "delete", "arena", "north-1")[1]
    assert deleted == {"gate_id": "north-1", "deleted": True}
    assert run(database, capsys, "gate", "list")[1] == []
    status, _, err = run(database, capsys, "gate", "enable", "arena", "north-1")
    assert (status, err) == (1, "passgate-hub gate enable: no gate 'north-1' in 'arena'\n")

    status, entries, _ = run(database, capsys, "audit", "--venue", "arena")
    actions = [e["action"] for e in entries]
    assert actions[:4] == ["key.add", "venue.create", "zone.create", "gate.create"]
    assert actions[-7:] == ["apikey.rotate", "apikey.revoke", "gate.disable", "gate.enable",
                            "gate.token_rotate", "gate.token_revoke", "gate.delete"]
    assert all(e["actor"].startswith("cli:") and e["source"] for e in entries)
    status, entries, _ = run(database, capsys, "audit")
    assert any((e["venue"], e["action"], e["target"]) == (None, "apikey.create", "root") for e in entries)


# -- the migration of existing keys -----------------------------------------------------------


def test_keys_from_before_grants_become_hub_wide_admins(db_url: str) -> None:
    engine = db.make_engine(db_url)
    db.migrate(engine, "0002")
    secret = "pga_from-before-grants"
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO venues (name, keys_rev, created_at) VALUES ('arena', 0, 1)"))
        digest = hashlib.sha256(secret.encode()).hexdigest()
        connection.execute(text("INSERT INTO api_keys (name, key_hash, created_at) "
                                "VALUES ('old-ops', :h, 5)"), {"h": digest})
        connection.execute(text("INSERT INTO gates (gate_id, venue_id, token_hash, config, created_at) "
                                "VALUES ('north-1', 1, 'abc', '{}', 1)"))
    engine.dispose()
    hub = HubServer(db_url).start()  # migrates to the newest schema
    try:
        old = client(secret)
        listed = old.get(f"{hub.url}/v1/admin/apikeys", timeout=TIMEOUT).json()
        assert listed == [{"name": "old-ops", "grants": [{"venue": None, "role": "admin"}], "created_at": 5.0,
                           "last_used_at": listed[0]["last_used_at"], "rotated_at": None, "revoked_at": None}]
        r = old.post(f"{hub.url}/v1/admin/venues", json={"name": "stadium"}, timeout=TIMEOUT)
        assert r.status_code == 201  # what it could do before, it still does
        gates = old.get(f"{hub.url}/v1/admin/gates", timeout=TIMEOUT).json()
        assert [(g["gate_id"], g["disabled_at"], g["has_token"]) for g in gates] == [("north-1", None, True)]
    finally:
        hub.close()


# -- a running multi-worker server ------------------------------------------------------------


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # what production runs several workers on
def test_a_revoked_or_rotated_credential_is_refused_at_once_by_every_worker(db_url: str) -> None:
    hub_json(db_url, "venue", "create", "arena")
    token = hub_json(db_url, "gate", "create", "arena", "north-1")["token"]
    key = hub_json(db_url, "apikey", "create", "ops", "--role", "admin", "--venue", "arena")["key"]
    server = HubProcess(db_url, workers=2).start()
    bundle = f"{server.url}/v1/gates/north-1/bundle"
    venues = f"{server.url}/v1/admin/venues"

    def statuses(credential: str, url: str, n: int = 12) -> set[int]:
        """Each on a new connection, so the workers take turns."""
        return {requests.get(url, headers={"Authorization": f"Bearer {credential}", "Connection": "close"},
                             timeout=TIMEOUT).status_code for _ in range(n)}

    try:
        assert statuses(token, bundle) == {200} and statuses(key, venues) == {200}
        r = requests.post(f"{server.url}/v1/admin/venues/arena/gates/north-1/token/rotate",
                          headers={"Authorization": f"Bearer {key}"}, timeout=TIMEOUT)
        assert r.status_code == 201
        assert statuses(token, bundle) == {401}
        token = r.json()["token"]
        assert statuses(token, bundle) == {200}
        run_hub_cli(db_url, "gate", "disable", "arena", "north-1")  # straight on the database
        assert statuses(token, bundle) == {403}
        run_hub_cli(db_url, "gate", "enable", "arena", "north-1")
        assert statuses(token, bundle) == {200}
        run_hub_cli(db_url, "gate", "revoke-token", "arena", "north-1")
        assert statuses(token, bundle) == {401}

        new_key = hub_json(db_url, "apikey", "rotate", "ops")["key"]
        assert statuses(key, venues) == {401} and statuses(new_key, venues) == {200}
        run_hub_cli(db_url, "apikey", "revoke", "ops")
        assert statuses(new_key, venues) == {401}
    finally:
        server.stop()
