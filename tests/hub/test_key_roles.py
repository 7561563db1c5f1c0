"""The hub's key commands (retire, revoke, rotate, export: CLI and admin API), the roles it sends
in bundles, and list epochs: a gate ahead of a restored hub is brought forward, a gate's made-up
version moves nothing."""

from __future__ import annotations

import base64
import json
import time

import pytest
import requests
from sqlalchemy import select

from passgate import denylist
from passgate_hub import cli, denylists
from passgate_hub.models import DenyList, Venue

from .server import HubServer, issue
from .test_api import gate_client, setup_venue

TIMEOUT = 10


def keys_of(hub: HubServer, admin: requests.Session) -> dict[str, dict]:
    r = admin.get(f"{hub.url}/v1/admin/venues/arena/keys", timeout=TIMEOUT)
    assert r.status_code == 200
    return {k["purpose"] if k["purpose"] == "denylist" else k["kid"]: k for k in r.json()}


def hub_cli(hub: HubServer, *argv: str) -> int:
    return cli.main(["--database", hub.engine.url.render_as_string(hide_password=False), *argv])


def test_key_commands_on_the_cli(hub: HubServer, capsys: pytest.CaptureFixture[str]) -> None:
    admin = hub.admin()
    setup_venue(hub, admin)
    (first,) = [k for k in keys_of(hub, admin) if k != "denylist"]
    assert hub_cli(hub, "key", "rotate", "arena") == 0
    rotated = json.loads(capsys.readouterr().out)
    assert rotated["retired"] == [first] and rotated["new"]["has_private"]
    second = rotated["new"]["kid"]
    assert hub_cli(hub, "key", "revoke", "arena", first) == 0
    capsys.readouterr()
    assert hub_cli(hub, "key", "retire", "arena", second, "--at", "2030-01-01T00:00:00Z") == 0
    assert json.loads(capsys.readouterr().out)["retired_at"] == "2030-01-01T00:00:00+00:00"  # venue: UTC
    assert hub_cli(hub, "--epoch", "key", "list", "arena") == 0
    listed = {k["kid"]: k for k in json.loads(capsys.readouterr().out)}
    assert listed[first]["revoked_at"] is not None and listed[second]["retired_at"] == 1893456000.0
    assert hub_cli(hub, "key", "export", "arena", second) == 0
    assert capsys.readouterr().out == keys_pem(hub, second)
    list_kid = keys_of(hub, admin)["denylist"]["kid"]
    assert hub_cli(hub, "key", "export", "arena", list_kid) == 0
    assert capsys.readouterr().out.startswith("-----BEGIN PUBLIC KEY-----")
    for argv, message in ((("key", "revoke", "arena", first), f"key {first} is already revoked"),
                          (("key", "retire", "arena", second), "already retired"),
                          (("key", "revoke", "arena", list_kid), "signs 'arena''s deny lists"),
                          (("key", "export", "arena", "00" * 8), "no key '0000000000000000'"),
                          (("key", "retire", "arena", second, "--at", "someday"), "--at")):
        assert hub_cli(hub, *argv) == 1
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1 and "Traceback" not in err


def keys_pem(hub: HubServer, kid: str) -> str:
    r = hub.admin().get(f"{hub.url}/v1/admin/venues/arena/keys/{kid}.pem", timeout=TIMEOUT)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-pem-file")
    return r.text


def test_key_changes_reach_the_bundle_and_issuing(hub: HubServer) -> None:
    admin = hub.admin()
    tokens = setup_venue(hub, admin)
    g1 = gate_client(tokens["g1"])
    url = f"{hub.url}/v1/gates/arena-g1/bundle"
    first = g1.get(url, timeout=TIMEOUT)
    by_purpose = {k["purpose"]: k for k in first.json()["keys"]}
    assert by_purpose["denylist"]["scope"] == "arena" and by_purpose["passes"]["scope"] is None
    old = by_purpose["passes"]["kid"]

    r = admin.post(f"{hub.url}/v1/admin/venues/arena/keys/rotate", json={}, timeout=TIMEOUT)
    assert r.status_code == 201 and r.json()["retired"] == [old]
    new = r.json()["new"]["kid"]
    assert issue(hub, admin)[0]["text"]  # issued with the new key
    r = g1.get(url, headers={"If-None-Match": first.headers["ETag"]}, timeout=TIMEOUT)
    assert r.status_code == 200  # the key change is a new bundle
    keys = {k["kid"]: k for k in r.json()["keys"]}
    assert keys[old]["retired_at"] is not None and keys[new]["retired_at"] is None

    r = admin.post(f"{hub.url}/v1/admin/venues/arena/keys/{new}/revoke", timeout=TIMEOUT)
    assert r.status_code == 200 and r.json()["revoked_at"] is not None
    keys = {k["kid"]: k for k in g1.get(url, timeout=TIMEOUT).json()["keys"]}
    assert keys[new]["revoked_at"] is not None
    # neither a retired nor a revoked key issues
    r = admin.post(f"{hub.url}/v1/admin/venues/arena/passes",
                   json={"count": 1, "valid_from": time.time(), "valid_until": time.time() + 60},
                   timeout=TIMEOUT)
    assert r.status_code == 404 and "no hub-held issuer key" in r.text

    r = admin.post(f"{hub.url}/v1/admin/venues/arena/keys/{old}/retire", json={}, timeout=TIMEOUT)
    assert r.status_code == 409 and "already retired" in r.text
    r = admin.post(f"{hub.url}/v1/admin/venues/arena/keys/NOT-A-KID/retire", json={}, timeout=TIMEOUT)
    assert r.status_code == 422
    r = admin.post(f"{hub.url}/v1/admin/venues/arena/keys/{old}/retire", json={"at": "soon"},
                   timeout=TIMEOUT)
    assert r.status_code == 422
    r = admin.post(f"{hub.url}/v1/admin/venues/arena/keys/rotate", json={"alg": "rsa"}, timeout=TIMEOUT)
    assert r.status_code == 422


def list_row(hub: HubServer, kind: str = "revoked") -> tuple[int, int]:
    with hub.session() as s:
        venue = s.scalar(select(Venue).where(Venue.name == "arena"))
        assert venue is not None
        return denylists.current_versions(s, venue)[kind]


def test_a_gate_ahead_of_the_hub_starts_one_new_epoch(hub: HubServer) -> None:
    admin = hub.admin()
    tokens = setup_venue(hub, admin)
    g1 = gate_client(tokens["g1"])
    url = f"{hub.url}/v1/gates/arena-g1/bundle"
    r = admin.post(f"{hub.url}/v1/admin/venues/arena/revocations",
                   json={"pass_ids": ["ab" * 16], "external": True}, timeout=TIMEOUT)
    assert r.status_code == 200
    version, _ = list_row(hub)
    assert version == 1
    # a gate that holds version 7 (this hub's own history went back: restored from a backup)
    answer = g1.get(url, params={"revoked": 7, "blocked": 0}, timeout=TIMEOUT).json()
    epoch_version = answer["denylists"]["revoked"]["version"]
    assert denylist.epoch_of(epoch_version) == denylists._minute(time.time())
    (update,) = answer["denylists"]["revoked"]["updates"]
    snapshot = denylist.read_signed(base64.b64decode(update), trust_of(answer))
    assert isinstance(snapshot, denylist.DenyList) and snapshot.version == epoch_version > 7
    assert bytes.fromhex("ab" * 16) in snapshot
    assert denylist.epoch_of(answer["denylists"]["blocked"]["version"]) == 0  # it was not ahead
    # within the new epoch another claim moves nothing (an epoch at most every EPOCH_EVERY_S)
    again = g1.get(url, params={"revoked": epoch_version + 9}, timeout=TIMEOUT).json()
    assert again["denylists"]["revoked"] == {"version": epoch_version, "issued_at": snapshot.issued_at,
                                             "updates": [], "fresh": again["denylists"]["revoked"]["fresh"],
                                             "files": []}
    assert list_row(hub)[0] == epoch_version


@pytest.mark.parametrize("claim", [2**63 - 1, denylist.make_version(2**31 - 1, 5)])
def test_a_made_up_version_wedges_nothing(hub: HubServer, claim: int) -> None:
    admin = hub.admin()
    tokens = setup_venue(hub, admin)
    g1 = gate_client(tokens["g1"])
    url = f"{hub.url}/v1/gates/arena-g1/bundle"
    r = g1.get(url, params={"revoked": claim, "blocked": claim}, timeout=TIMEOUT)
    assert r.status_code == 200
    versions = {kind: info["version"] for kind, info in r.json()["denylists"].items()}
    assert all(denylist.epoch_of(v) == 0 for v in versions.values())  # no epoch begun, nothing sent
    assert all(not info["updates"] for info in r.json()["denylists"].values())
    assert g1.get(url, params={"revoked": 2**63}, timeout=TIMEOUT).status_code == 422
    admin.post(f"{hub.url}/v1/admin/venues/arena/revocations",
               json={"pass_ids": ["cd" * 16], "external": True}, timeout=TIMEOUT)
    honest = g1.get(url, params={"revoked": 0, "blocked": 0}, timeout=TIMEOUT).json()
    assert honest["denylists"]["revoked"]["version"] == versions["revoked"] + 1
    assert honest["denylists"]["revoked"]["updates"]


def test_an_epoch_begins_under_the_lock_once(hub: HubServer) -> None:
    """Two gates ahead at once: the second sees the epoch the first began, not another one."""
    admin = hub.admin()
    setup_venue(hub, admin)
    now = time.time()
    with hub.session() as s:
        venue = s.scalar(select(Venue).where(Venue.name == "arena"))
        assert venue is not None
        first, changed = denylists.refreshed_versions(s, venue, {"revoked": 7}, now=now)
        s.commit()
        second, changed_again = denylists.refreshed_versions(s, venue, {"revoked": 7}, now=now + 1)
        row = s.scalar(select(DenyList).where(DenyList.venue_id == venue.id, DenyList.kind == "revoked"))
        assert row is not None and row.version == first["revoked"][0]
    assert changed and not changed_again and first == second


def trust_of(bundle: dict) -> denylist.TrustStore:
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    trust = denylist.TrustStore()
    for k in bundle["keys"]:
        trust.add(load_pem_public_key(k["pem"].encode()), purpose=k["purpose"],  # type: ignore[arg-type]
                  scope=k["scope"])
    return trust
