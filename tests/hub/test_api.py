"""The hub's HTTP API over real loopback HTTP, on SQLite and PostgreSQL: auth scoping on every
route, idempotent ingest, bundles with ETags and signed deny-list updates, redemptions by cursor,
the admin operations, the OpenAPI schema, and malformed or oversized bodies."""

from __future__ import annotations

import base64
import gc
import time
import uuid

import requests
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from passgate import TrustStore, verify_pass, wire
from passgate.denylist import LiveDenyList
from passgate_hub.app import MAX_BODY

from .server import HubServer

TIMEOUT = 10


def setup_venue(hub: HubServer, admin: requests.Session, venue: str = "arena") -> dict[str, str]:
    """A venue with zones floor and vip, gates g1 and g2 on the floor and g3 in vip, and an issuer
    key held by the hub; returns the gates' tokens."""
    assert admin.post(f"{hub.url}/v1/admin/venues", json={"name": venue}, timeout=TIMEOUT).status_code == 201
    for zone in ("floor", "vip"):
        r = admin.post(f"{hub.url}/v1/admin/venues/{venue}/zones", json={"name": zone}, timeout=TIMEOUT)
        assert r.status_code == 201
    tokens = {}
    for gate, zone in (("g1", "floor"), ("g2", "floor"), ("g3", "vip")):
        r = admin.post(f"{hub.url}/v1/admin/venues/{venue}/gates",
                       json={"gate_id": f"{venue}-{gate}", "zone": zone},
                       timeout=TIMEOUT)
        assert r.status_code == 201, r.text
        tokens[gate] = r.json()["token"]
    r = admin.post(f"{hub.url}/v1/admin/venues/{venue}/keys", json={"generate": True, "issuer": "Arena"},
                   timeout=TIMEOUT)
    assert r.status_code == 201 and r.json()["has_private"]
    return tokens


def gate_client(token: str) -> requests.Session:
    client = requests.Session()
    client.headers["Authorization"] = f"Bearer {token}"
    return client


def event(gate_id: str, kind: str = "decision", **fields: object) -> dict[str, object]:
    return {"event_id": uuid.uuid4().hex, "gate_id": gate_id, "t": time.time(), "kind": kind,
            "direction": "entry", "pass_id": None, "decision": None, "reason": None,
            "latency_ms": None, "detail": None, **fields}


# The routes without a credential: the one-time code in the body is the credential, an enrollment
# code (tests/hub/test_enroll.py: a wrong, used or expired code is a 404, a malformed one a 422) or
# a holder-bound pass's claim code (tests/hub/test_claims.py: 404, 409 taken, 429 for guessers).
WITHOUT_CREDENTIAL = {("POST", "/v1/enroll"), ("POST", "/v1/wallet/claim")}


def routes(hub: HubServer) -> list[tuple[str, str]]:
    """Every (method, path template) of the API that takes a credential, from the served OpenAPI
    schema."""
    schema = requests.get(f"{hub.url}/openapi.json", timeout=TIMEOUT).json()
    every = [(method.upper(), path) for path, item in schema["paths"].items() for method in item]
    assert set(every) >= WITHOUT_CREDENTIAL
    return [route for route in every if route not in WITHOUT_CREDENTIAL]


def fill(path: str, gate_id: str = "arena-g1") -> str:
    return (path.replace("{gate_id}", gate_id).replace("{venue}", "arena")
            .replace("{kind}", "revoked"))


def test_every_route_refuses_missing_bad_and_wrong_scope_credentials(hub: HubServer) -> None:
    admin = hub.admin()
    tokens = setup_venue(hub, admin)
    admin_key = admin.headers["Authorization"]
    all_routes = routes(hub)
    assert len(all_routes) >= 17
    for method, path in all_routes:
        url = hub.url + fill(path)
        assert requests.request(method, url, timeout=TIMEOUT).status_code == 401, (method, path)
        for bad in ("Bearer nonsense", "Bearer pgg_forged", "Bearer pga_forged", "Basic abc"):
            r = requests.request(method, url, headers={"Authorization": bad}, timeout=TIMEOUT)
            assert r.status_code == 401, (method, path, bad)
        if path.startswith("/v1/admin/"):
            r = gate_client(tokens["g1"]).request(method, url, timeout=TIMEOUT)
            assert r.status_code == 403, (method, path)
        else:
            r = requests.request(method, url, headers={"Authorization": admin_key}, timeout=TIMEOUT)
            assert r.status_code == 403, (method, path)
            # g2's token on g1's routes
            r = gate_client(tokens["g2"]).request(method, url, timeout=TIMEOUT)
            assert r.status_code == 403, (method, path)


def test_openapi_schema_names_every_operation(hub: HubServer) -> None:
    schema = requests.get(f"{hub.url}/openapi.json", timeout=TIMEOUT).json()
    assert schema["openapi"].startswith("3.")
    assert schema == hub.app.openapi()
    expected = {
        ("GET", "/v1/gates/{gate_id}/bundle"), ("POST", "/v1/gates/{gate_id}/events"),
        ("GET", "/v1/gates/{gate_id}/redemptions"), ("POST", "/v1/gates/{gate_id}/heartbeat"),
        ("POST", "/v1/gates/{gate_id}/sync"),
        ("POST", "/v1/admin/venues"), ("GET", "/v1/admin/venues"), ("PATCH", "/v1/admin/venues/{venue}"),
        ("POST", "/v1/admin/venues/{venue}/zones"), ("POST", "/v1/admin/venues/{venue}/gates"),
        ("PATCH", "/v1/admin/venues/{venue}/gates/{gate_id}"),
        ("GET", "/v1/admin/gates"), ("POST", "/v1/admin/venues/{venue}/keys"),
        ("GET", "/v1/admin/venues/{venue}/keys"), ("POST", "/v1/admin/venues/{venue}/passes"),
        ("POST", "/v1/admin/venues/{venue}/revocations"), ("POST", "/v1/admin/venues/{venue}/blocks"),
        ("POST", "/v1/admin/venues/{venue}/unblocks"), ("GET", "/v1/admin/venues/{venue}/events"),
        ("GET", "/v1/admin/venues/{venue}/counts"), ("GET", "/v1/admin/venues/{venue}/denylists/{kind}"),
        ("GET", "/v1/admin/venues/{venue}/alerts"), ("POST", "/v1/admin/venues/{venue}/keys/rotate"),
        ("POST", "/v1/admin/venues/{venue}/keys/{kid}/retire"),
        ("POST", "/v1/admin/venues/{venue}/keys/{kid}/revoke"),
        ("GET", "/v1/admin/venues/{venue}/keys/{kid}.pem"),
        ("POST", "/v1/admin/venues/{venue}/gates/{gate_id}/token/rotate"),
        ("POST", "/v1/admin/venues/{venue}/gates/{gate_id}/token/revoke"),
        ("POST", "/v1/admin/venues/{venue}/gates/{gate_id}/disable"),
        ("POST", "/v1/admin/venues/{venue}/gates/{gate_id}/enable"),
        ("DELETE", "/v1/admin/venues/{venue}/gates/{gate_id}"),
        ("GET", "/v1/admin/apikeys"), ("POST", "/v1/admin/apikeys"),
        ("POST", "/v1/admin/apikeys/{name}/rotate"), ("POST", "/v1/admin/apikeys/{name}/revoke"),
        ("GET", "/v1/admin/audit"),
        ("POST", "/v1/admin/venues/{venue}/passes/upload"),
        ("GET", "/v1/admin/venues/{venue}/denylists/{kind}/pending"),
        ("POST", "/v1/admin/venues/{venue}/denylists/signed"),
        ("POST", "/v1/admin/venues/{venue}/gates/{gate_id}/enrollment"),
        ("GET", "/v1/admin/operators"), ("POST", "/v1/admin/operators"),
        ("POST", "/v1/admin/operators/{name}/unlock"), ("POST", "/v1/admin/operators/{name}/disable"),
        ("POST", "/v1/admin/operators/{name}/enable"), ("DELETE", "/v1/admin/operators/{name}"),
        ("POST", "/v1/admin/purge"),
        ("POST", "/v1/admin/venues/{venue}/passes/{pass_id}/claim/reset"),
    }
    assert set(routes(hub)) == expected
    events = schema["paths"]["/v1/gates/{gate_id}/events"]["post"]
    assert "EventBatch" in events["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    # the upload parses its body itself: its schema, and the event's it refers to, are there all
    # the same, with the contract's bounds
    components = schema["components"]["schemas"]
    batch = components["EventBatch"]["properties"]["events"]
    assert batch["items"]["$ref"] == "#/components/schemas/Event"
    assert batch["maxItems"] == wire.MAX_BATCH
    assert components["Event"]["properties"]["event_id"]["maxLength"] == 64


MALFORMED = [
    b"", b"{", b"[]", b"null", b'{"events": 5}', b'{"events": [{}]}', b'{"events": [null]}',
    b'{"events": [{"event_id": "x", "gate_id": "arena-g1", "t": "soon", "kind": "k"}]}',
    b'{"events": [{"event_id": "x", "gate_id": "arena-g1", "t": 1e999, "kind": "k"}]}',
    b'{"events": [{"event_id": "x", "gate_id": "arena-g1", "t": 1, "kind": "k", "extra": 1}]}',
    b'{"events": [{"event_id": "' + b"x" * 65 + b'", "gate_id": "arena-g1", "t": 1, "kind": "k"}]}',
    "{\"events\": [], \"\u00e9\": 1}".encode(), b"\xff\xfe\x00", b'{"t": NaN}',
]


def test_malformed_bodies_are_4xx_never_500(hub: HubServer) -> None:
    admin = hub.admin()
    tokens = setup_venue(hub, admin)
    g1 = gate_client(tokens["g1"])
    headers = {"Content-Type": "application/json"}
    targets = [(g1, f"/v1/gates/arena-g1/{p}") for p in ("events", "heartbeat")] + [
        (admin, p) for p in ("/v1/admin/venues", "/v1/admin/venues/arena/gates",
                             "/v1/admin/venues/arena/passes", "/v1/admin/venues/arena/revocations",
                             "/v1/admin/venues/arena/keys")]
    for body in MALFORMED:
        for client, path in targets:
            r = client.post(hub.url + path, data=body, headers=headers, timeout=TIMEOUT)
            assert 400 <= r.status_code < 500, (body, path, r.status_code, r.text)


def test_oversized_bodies_and_batches_are_refused(hub: HubServer) -> None:
    tokens = setup_venue(hub, hub.admin())
    g1 = gate_client(tokens["g1"])
    url = f"{hub.url}/v1/gates/arena-g1/events"
    huge = b'{"events": [' + b" " * (MAX_BODY + 1) + b"]}"
    assert g1.post(url, data=huge, headers={"Content-Type": "application/json"},
                   timeout=TIMEOUT).status_code == 413
    chunked = g1.post(url, data=iter([huge[i:i + 65536] for i in range(0, len(huge), 65536)]),
                      headers={"Content-Type": "application/json"}, timeout=TIMEOUT)
    assert chunked.status_code == 413
    too_many = {"events": [event("arena-g1") for _ in range(1001)]}
    assert g1.post(url, json=too_many, timeout=TIMEOUT).status_code == 422


def test_event_upload_is_idempotent_and_scoped_to_the_token_gate(hub: HubServer) -> None:
    admin = hub.admin()
    tokens = setup_venue(hub, admin)
    g1 = gate_client(tokens["g1"])
    url = f"{hub.url}/v1/gates/arena-g1/events"
    batch = {"events": [event("arena-g1", detail=f"n{i}") for i in range(100)]}
    first = g1.post(url, json=batch, timeout=TIMEOUT).json()
    assert (first["stored"], first["duplicates"]) == (100, 0)
    assert sorted(first["acked"]) == sorted(e["event_id"] for e in batch["events"])
    again = g1.post(url, json=batch, timeout=TIMEOUT).json()
    assert (again["stored"], again["duplicates"]) == (0, 100)
    mixed = {"events": [*batch["events"][:10], event("arena-g1")]}
    assert g1.post(url, json=mixed, timeout=TIMEOUT).json()["stored"] == 1
    # g1 may not upload in g2's name, and nothing of such a batch is stored
    forged = {"events": [event("arena-g1"), event("arena-g2")]}
    assert g1.post(url, json=forged, timeout=TIMEOUT).status_code == 403
    rows = admin.get(f"{hub.url}/v1/admin/venues/arena/events", params={"limit": 10000},
                     timeout=TIMEOUT).json()
    assert len(rows) == 101
    assert len({r["event_id"] for r in rows}) == 101
    assert [r["seq"] for r in rows] == sorted(r["seq"] for r in rows)


def test_redemptions_of_other_gates_of_the_venue_only_by_cursor(hub: HubServer) -> None:
    admin = hub.admin()
    tokens = setup_venue(hub, admin)
    other = setup_venue(hub, admin, "stadium")
    pid = uuid.uuid4().hex
    admit = {"kind": "decision", "pass_id": pid, "decision": "admit"}
    posts = [("g1", "arena-g1", event("arena-g1", **admit)),
             ("g1", "arena-g1", event("arena-g1", "redeemed", pass_id=pid, detail="r-1")),
             ("g2", "arena-g2", event("arena-g2", **{**admit, "direction": "exit"})),
             ("g2", "arena-g2", event("arena-g2", "reservation_assumed", pass_id=pid, direction="exit")),
             ("g1", "arena-g1", event("arena-g1", "decision", pass_id=pid))]
    for gate, gate_id, e in posts:
        r = gate_client(tokens[gate]).post(f"{hub.url}/v1/gates/{gate_id}/events",
                                           json={"events": [e]}, timeout=TIMEOUT)
        assert r.status_code == 200 and r.json()["stored"] == 1, r.text
    stadium = gate_client(other["g1"]).post(
        f"{hub.url}/v1/gates/stadium-g1/events",
        json={"events": [event("stadium-g1", **admit),
                         event("stadium-g1", "redeemed", pass_id=pid, detail="r-s")]}, timeout=TIMEOUT)
    assert stadium.status_code == 200 and stadium.json()["stored"] == 2

    def pull(gate: str, after: int) -> dict:
        return gate_client(tokens[gate]).get(f"{hub.url}/v1/gates/arena-{gate}/redemptions",
                                             params={"after": after}, timeout=TIMEOUT).json()

    g3 = pull("g3", 0)
    assert [(r["redemption_id"], r["gate_id"], r["direction"]) for r in g3["redemptions"]] == [
        ("r-1", "arena-g1", "entry"), (posts[3][2]["event_id"], "arena-g2", "exit")]
    assert pull("g3", g3["cursor"]) == {"redemptions": [], "cursor": g3["cursor"], "more": False}
    assert [r["gate_id"] for r in pull("g1", 0)["redemptions"]] == ["arena-g2"]
    assert [r["gate_id"] for r in pull("g2", 0)["redemptions"]] == ["arena-g1"]


def test_bundle_serves_keys_config_and_signed_deny_list_updates_with_etags(hub: HubServer, tmp_path) -> None:
    admin = hub.admin()
    tokens = setup_venue(hub, admin)
    g1 = gate_client(tokens["g1"])
    url = f"{hub.url}/v1/gates/arena-g1/bundle"
    live = {kind: LiveDenyList(tmp_path / f"{kind}.pgdl", kind=kind, scope="arena")
            for kind in ("revoked", "blocked")}

    def fetch(etag: str | None = None) -> requests.Response:
        params = {kind: holder.current.version for kind, holder in live.items()}
        return g1.get(url, params=params, headers={"If-None-Match": etag} if etag else {}, timeout=TIMEOUT)

    def apply(response: requests.Response) -> TrustStore:
        body = response.json()
        trust = TrustStore()  # each key in the role the bundle gives it
        for k in body["keys"]:
            trust.add(load_pem_public_key(k["pem"].encode()), purpose=k["purpose"],  # type: ignore[arg-type]
                      scope=k["scope"])
        for kind, info in body["denylists"].items():
            for update in info["updates"]:
                live[kind].apply_signed(base64.b64decode(update), trust)
            assert live[kind].current.version == info["version"]
        return trust

    first = fetch()
    body = first.json()
    assert (body["gate_id"], body["venue"], body["zone"], body["scope"]) == (
        "arena-g1", "arena", "floor", "arena")
    assert body["config"] == {"zones": ["floor"]}
    assert sorted(k["purpose"] for k in body["keys"]) == ["denylist", "passes"]
    apply(first)  # a new venue's lists are signed at first contact (version 1, empty)
    assert {k: h.current.version for k, h in live.items()} == {"revoked": 1, "blocked": 1}
    second = fetch()
    assert fetch(second.headers["ETag"]).status_code == 304

    issued = admin.post(f"{hub.url}/v1/admin/venues/arena/passes",
                        json={"count": 3, "valid_from": time.time() - 60, "valid_until": time.time() + 3600,
                              "zones": ["floor"], "entries": 1}, timeout=TIMEOUT).json()
    ids = [p["pass_id"] for p in issued["passes"]]
    r = admin.post(f"{hub.url}/v1/admin/venues/arena/revocations", json={"pass_ids": ids[:1]},
                   timeout=TIMEOUT)
    assert r.json() == {"kind": "revoked", "version": 2, "changed": 1}
    admin.post(f"{hub.url}/v1/admin/venues/arena/blocks", json={"pass_ids": ids[1:]}, timeout=TIMEOUT)
    admin.post(f"{hub.url}/v1/admin/venues/arena/unblocks", json={"pass_ids": ids[2:]}, timeout=TIMEOUT)
    r = admin.post(f"{hub.url}/v1/admin/venues/arena/unblocks", json={"pass_ids": ids[1:2]}, timeout=TIMEOUT)
    assert r.status_code == 200
    # revocation is permanent
    r = admin.post(f"{hub.url}/v1/admin/venues/arena/blocks", json={"pass_ids": ids[1:2]}, timeout=TIMEOUT)
    assert r.json()["version"] == 5
    changed = fetch(second.headers["ETag"])
    assert changed.status_code == 200
    trust = apply(changed)
    pass_ids = [bytes.fromhex(i) for i in ids]
    assert [p in live["revoked"] for p in pass_ids] == [True, False, False]
    assert [p in live["blocked"] for p in pass_ids] == [False, True, False]
    assert verify_pass(issued["passes"][0]["text"], trust).pass_id == pass_ids[0]

    # a gate far behind or new gets one snapshot; the hub's snapshot file says the same
    fresh = LiveDenyList(tmp_path / "fresh.pgdl", kind="blocked", scope="arena")
    updates = g1.get(url, params={"blocked": 0, "revoked": 0}, timeout=TIMEOUT).json()["denylists"]["blocked"]
    for update in updates["updates"]:
        fresh.apply_signed(base64.b64decode(update), trust)
    assert fresh.current.same_entries(live["blocked"].current)
    snapshot = admin.get(f"{hub.url}/v1/admin/venues/arena/denylists/blocked", timeout=TIMEOUT)
    other = LiveDenyList(tmp_path / "other.pgdl", kind="blocked", scope="arena")
    assert other.apply_signed(snapshot.content, trust).same_entries(live["blocked"].current)


def test_admin_operations_gates_counts_and_conflicts(hub: HubServer) -> None:
    admin = hub.admin()
    tokens = setup_venue(hub, admin)
    base = f"{hub.url}/v1/admin"
    assert admin.post(f"{base}/venues", json={"name": "arena"}, timeout=TIMEOUT).status_code == 409
    assert admin.post(f"{base}/venues/nowhere/zones", json={"name": "x"}, timeout=TIMEOUT).status_code == 404
    r = admin.post(f"{base}/venues/arena/gates", json={"gate_id": "arena-g9", "zone": "nope"},
                   timeout=TIMEOUT)
    assert r.status_code == 404
    venues = admin.get(f"{base}/venues", timeout=TIMEOUT).json()
    assert venues[0]["name"] == "arena" and venues[0]["zones"] == ["floor", "vip"]
    # passages: two in and one out on the floor, one in to vip; decisions and a protocol-1 gate's
    # detail-less repeat of a redemption do not count (tests/hub/test_ingest_trust.py: in depth)
    flows = [("g1", "decision", "entry", "a1", "admit"), ("g1", "redeemed", "entry", "a1", "r1"),
             ("g2", "decision", "entry", "a2", "admit"), ("g2", "redeemed", "entry", "a2", "r2"),
             ("g2", "passage", "exit", None, "free exit"), ("g1", "decision", "entry", "a3", "admit"),
             ("g1", "passage", "entry", None, None), ("g3", "forced_passage", "entry", None, "")]
    for gate, kind, direction, pid, detail in flows:
        e = event(f"arena-{gate}", kind, direction=direction, pass_id=pid and pid * 16,
                  decision=detail if kind == "decision" else None, detail=detail)
        assert gate_client(tokens[gate]).post(f"{hub.url}/v1/gates/arena-{gate}/events",
                                              json={"events": [e]}, timeout=TIMEOUT).status_code == 200
    counts = admin.get(f"{base}/venues/arena/counts", timeout=TIMEOUT).json()
    assert counts == [{"zone": "floor", "entries": 2, "exits": 1, "inside": 1},
                      {"zone": "vip", "entries": 1, "exits": 0, "inside": 1}]
    beat = {"t": time.time() + 120, "version": "0.1.0", "backlog": 7,
            "lists": {"revoked": {"version": 3, "age_s": 10.0}}, "health": {"journal_ok": True}}
    answer = gate_client(tokens["g1"]).post(f"{hub.url}/v1/gates/arena-g1/heartbeat", json=beat,
                                            timeout=TIMEOUT).json()
    assert abs(answer["server_time"] - time.time()) < 60
    gates = {g["gate_id"]: g for g in admin.get(f"{base}/gates", params={"venue": "arena"},
                                                timeout=TIMEOUT).json()}
    assert sorted(gates) == ["arena-g1", "arena-g2", "arena-g3"]
    g1 = gates["arena-g1"]
    assert (g1["backlog"], g1["version"], g1["zone"]) == (7, "0.1.0", "floor")
    assert g1["lists"]["revoked"]["version"] == 3 and g1["lists"]["revoked"]["age_s"] >= 10.0
    assert 100 < g1["clock_skew_s"] < 140
    assert gates["arena-g2"]["last_seen"] is None
    entries = admin.get(f"{base}/venues/arena/events", params={"gate_id": "arena-g1", "kind": "redeemed"},
                        timeout=TIMEOUT).json()
    assert [e["pass_id"] for e in entries] == ["a1" * 16]
    keys = admin.get(f"{base}/venues/arena/keys", timeout=TIMEOUT).json()
    assert sorted((k["purpose"], k["has_private"]) for k in keys) == [("denylist", True), ("passes", True)]
    r = admin.post(f"{base}/venues/arena/keys", json={"public_pem": "not a key"}, timeout=TIMEOUT)
    assert r.status_code == 409


def test_the_serving_hub_sets_its_startup_objects_aside_from_full_collections(db_url: str) -> None:
    """A full collection walked every object the hub built to start, on every pass: about a
    tenth of its CPU under ingest load. Frozen while it serves, given back when it stops."""
    gc.unfreeze()
    hub = HubServer(db_url, purge_every_s=3600).start()  # served with its lifespan, as in production
    try:
        assert gc.get_freeze_count() > 10_000
    finally:
        hub.stop()
    assert gc.get_freeze_count() == 0
