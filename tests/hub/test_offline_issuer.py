"""Offline issuer mode, on SQLite and PostgreSQL, through the real hub over loopback HTTP and the
real CLIs: the hub holds only public keys of the venue; passes and deny lists signed where the
private keys live are verified, then recorded or served; anything unsigned or mis-signed is
refused with the reason, and gates keep the version signed before."""

from __future__ import annotations

import base64
import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import cbor2
import pytest
import requests
import sqlalchemy as sa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from passgate import TrustStore, cose, generate_private_key, issue_pass
from passgate.cose import PrivateKey
from passgate.denylist import Delta, DenyList, read_signed
from passgate.keys import TrustedKey, public_pem, write_keypair
from passgate.passes import decode_text
from passgate.pending import PendingList
from passgate.wire import KeyPurpose
from passgate_hub import cli
from passgate_hub.models import IssuerKey
from tests.test_readme import run_example

from .leaks import database_bytes, leaks
from .server import HubServer

TIMEOUT = 10
PASSGATE = str(Path(sys.executable).parent / "passgate")


class Venue:
    """An offline-issuer venue "arena" on ``hub``, its keys on the operator's machine, a gate."""

    def __init__(self, hub: HubServer) -> None:
        self.hub, self.admin = hub, hub.admin()
        self.list_key, self.pass_key = generate_private_key(), generate_private_key("es256")
        r = self.post("venues", json={"name": "arena", "offline": True,
                                      "denylist_public_pem": public_pem(self.list_key).decode()})
        assert r.status_code == 201 and r.json()["offline"], r.text
        assert self.post("venues/arena/zones", json={"name": "floor"}).status_code == 201
        r = self.post("venues/arena/keys", json={"public_pem": public_pem(self.pass_key).decode()})
        assert r.status_code == 201 and not r.json()["has_private"]
        r = self.post("venues/arena/gates", json={"gate_id": "g1", "zone": "floor"})
        self.gate = requests.Session()
        self.gate.headers["Authorization"] = f"Bearer {r.json()['token']}"

    def post(self, path: str, **kwargs: object) -> requests.Response:
        return self.admin.post(f"{self.hub.url}/v1/admin/{path}", timeout=TIMEOUT, **kwargs)  # type: ignore[arg-type]

    def get(self, path: str) -> requests.Response:
        return self.admin.get(f"{self.hub.url}/v1/admin/{path}", timeout=TIMEOUT)

    def pass_text(self, key: PrivateKey | None = None, **claims: object) -> str:
        now = time.time()
        return issue_pass(key or self.pass_key, valid_from=now - 60, valid_until=now + 3600,  # type: ignore[arg-type]
                          zones=["floor"], entries=1, issued_at=now, **claims)

    def upload(self, data: bytes) -> requests.Response:
        return self.post("venues/arena/denylists/signed", data=data,
                         headers={"Content-Type": "application/octet-stream"})

    def pending(self, kind: str = "revoked") -> PendingList:
        r = self.get(f"venues/arena/denylists/{kind}/pending")
        assert r.status_code == 200, r.text
        return PendingList.from_json(r.text)

    def bundle(self, **have: int) -> dict[str, object]:
        r = self.gate.get(f"{self.hub.url}/v1/gates/g1/bundle", params=have, timeout=TIMEOUT)
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]

    def served(self, **have: int) -> list[DenyList | Delta]:
        """The revoked-list files a gate holding ``have`` is sent, verified as the gate does."""
        bundle = self.bundle(**have)
        updates = bundle["denylists"]["revoked"]["updates"]  # type: ignore[index]
        return [read_signed(base64.b64decode(u), list_trust(bundle)) for u in updates]


def list_trust(bundle: dict[str, object]) -> TrustStore:
    """The deny-list keys a gate trusts, from its bundle (as the gate reads them)."""
    return TrustStore(TrustedKey(load_pem_public_key(k["pem"].encode()), purpose=KeyPurpose.DENYLIST,  # type: ignore[arg-type]
                                 scope=k["scope"])
                      for k in bundle["keys"] if k["purpose"] == "denylist")  # type: ignore[attr-defined]


def test_the_hub_holds_no_private_key_of_an_offline_venue(hub: HubServer, db_url: str) -> None:
    v = Venue(hub)
    with hub.session() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(IssuerKey)
                        .where(IssuerKey.private_sealed.is_not(None))) == 0
        assert s.scalar(sa.select(sa.func.count()).select_from(IssuerKey)) == 2
    for path, body in (("venues/arena/keys", {"generate": True}), ("venues/arena/keys/rotate", {}),
                       ("venues/arena/passes", {"count": 1, "valid_from": time.time(),
                                                "valid_until": time.time() + 60})):
        r = v.post(path, json=body)
        assert r.status_code == 409 and "offline-issuer venue" in r.json()["detail"], (path, r.text)
    r = v.post("venues", json={"name": "half", "offline": True})
    assert r.status_code == 422 and "deny-list public key" in r.json()["detail"]
    r = v.post("venues", json={"name": "bad", "offline": True, "denylist_public_pem": "not a key"})
    assert r.status_code == 409 and "not a PEM" in r.json()["detail"]
    assert leaks(database_bytes(db_url), [v.list_key, v.pass_key]) == []
    assert [x["offline"] for x in v.get("venues").json()] == [True]


def test_passes_signed_elsewhere_are_recorded_only_when_they_verify(hub: HubServer) -> None:
    v = Venue(hub)
    good = [v.pass_text(), v.pass_text()]
    stranger = generate_private_key("es256")
    tampered = good[0][:-3] + ("A" if good[0][-3] != "A" else "B") + good[0][-2:]
    for bad, reason in ((v.pass_text(stranger), "unknown_key"), (tampered, "bad_signature"),
                        (v.pass_text(v.list_key), "unknown_key"),  # the list key signs no pass
                        ("PG1:NOT A PASS", "unreadable")):
        r = v.post("venues/arena/passes/upload", json={"passes": [*good, bad]})
        assert r.status_code == 422 and reason in r.json()["detail"], (reason, r.text)
        assert "pass 3 of 3" in r.json()["detail"] and "nothing recorded" in r.json()["detail"]
    # nothing was recorded: revoking them as the hub's own passes is refused
    ids = [_decode_id(t) for t in good]
    r = v.post("venues/arena/revocations", json={"pass_ids": ids})
    assert r.status_code == 404 and "2 of 2" in r.json()["detail"]
    r = v.post("venues/arena/passes/upload", json={"passes": good})
    assert r.status_code == 200 and r.json() == {"recorded": 2, "already": 0}
    assert v.post("venues/arena/passes/upload", json={"passes": good}).json() == {"recorded": 0, "already": 2}
    assert v.post("venues/arena/revocations", json={"pass_ids": ids}).status_code == 200


def _decode_id(text: str) -> str:
    """A pass's id, read without any key (as anyone holding the text can)."""
    return bytes(cbor2.loads(cose.decode_sign1(decode_text(text)).payload)[7]).hex()


def test_deny_lists_signed_offline_are_served_only_when_they_verify(hub: HubServer, tmp_path: Path) -> None:
    v = Venue(hub)
    texts = [v.pass_text() for _ in range(3)]
    assert v.post("venues/arena/passes/upload", json={"passes": texts}).status_code == 200
    ids = [_decode_id(t) for t in texts]
    r = v.post("venues/arena/revocations", json={"pass_ids": ids[:2]})
    assert r.status_code == 200 and r.json()["version"] == 1  # pending: not signed yet
    bundle = v.bundle()
    assert bundle["denylists"]["revoked"] == {  # type: ignore[index]
        "version": 0, "issued_at": 0, "updates": [], "fresh": None, "files": []}  # no key: no statement

    pending = v.pending()
    assert (pending.base, pending.version) == (0, 1)
    assert sorted(i.hex() for i in pending.ids) == sorted(ids[:2]) and pending.removes == ()
    snapshot, delta = pending.sign(v.list_key)

    # refused, each with its reason; nothing is served
    unsigned = tmp_path / "local.pgdl"
    DenyList.from_ids(pending.ids, kind="revoked", scope="arena", version=1).save(unsigned)
    wrong_scope = PendingList(kind="revoked", scope="stadium", base=0, ids=pending.ids,
                              adds=pending.adds, removes=()).sign(v.list_key)[0]
    short = PendingList(kind="revoked", scope="arena", base=0, ids=pending.ids[:1],
                        adds=pending.ids[:1], removes=()).sign(v.list_key)[0]
    for data, status, why in ((unsigned.read_bytes(), 422, "refused"),
                              (pending.sign(v.pass_key)[0], 422, "refused"),  # the pass key
                              (pending.sign(generate_private_key())[0], 422, "refused"),
                              (snapshot[:-8] + bytes(8), 422, "digest"),
                              (wrong_scope, 422, "refused"),
                              (short, 409, "differs from the hub's pending one"),
                              (delta, 409, "upload the snapshot of version 1 first"),
                              (b"", 422, "body")):
        r = v.upload(data)
        assert r.status_code == status and why in r.text, (why, r.text)
    assert v.bundle()["denylists"]["revoked"]["version"] == 0  # type: ignore[index]

    r = v.upload(snapshot)
    assert r.status_code == 200 and r.json() == {"kind": "revoked", "file": "snapshot", "version": 1}
    assert v.upload(snapshot).status_code == 409  # a version once
    r = v.upload(delta)
    assert r.status_code == 200 and r.json()["file"] == "delta"
    assert v.bundle()["denylists"]["revoked"]["version"] == 1  # type: ignore[index]
    (served,) = v.served()
    assert isinstance(served, Delta) and served.version == 1
    assert v.get("venues/arena/denylists/revoked").content == snapshot

    # the next change: a gate one behind gets the delta, a new gate both deltas, and until the
    # delta is uploaded a gate one behind gets the snapshot
    assert v.post("venues/arena/revocations", json={"pass_ids": [ids[2]]}).json()["version"] == 2
    r = v.upload(v.pending().sign(v.list_key, issued_at=served.issued_at - 1)[0])
    assert r.status_code == 409 and "signed before" in r.text  # older than what gates hold
    snapshot2, delta2 = v.pending().sign(v.list_key)
    assert v.upload(snapshot2).status_code == 200
    assert [(type(d).__name__, d.version) for d in v.served(revoked=1)] == [("DenyList", 2)]
    assert v.upload(delta2).status_code == 200
    one_behind, new_gate = v.served(revoked=1), v.served()
    assert [(type(d).__name__, d.version) for d in one_behind] == [("Delta", 2)]
    assert [(type(d).__name__, d.version) for d in new_gate] == [("Delta", 1), ("Delta", 2)]
    final = DenyList.empty("revoked", "arena")
    for d in new_gate:
        assert isinstance(d, Delta)
        final = final.apply(d)
    assert all(bytes.fromhex(i) in final for i in ids)
    assert v.upload(delta).status_code == 409  # an old delta, not the one leading to version 2


def test_an_offline_block_list_takes_removals_only_as_signed(hub: HubServer) -> None:
    v = Venue(hub)
    texts = [v.pass_text() for _ in range(3)]
    assert v.post("venues/arena/passes/upload", json={"passes": texts}).status_code == 200
    ids = [_decode_id(t) for t in texts]
    assert v.post("venues/arena/blocks", json={"pass_ids": ids}).status_code == 200
    assert v.post("venues/arena/unblocks", json={"pass_ids": ids[:1]}).status_code == 200  # never signed
    pending = v.pending("blocked")
    assert sorted(i.hex() for i in pending.adds) == sorted(ids[1:]) and pending.removes == ()
    for data in pending.sign(v.list_key):
        assert v.upload(data).status_code == 200
    assert v.post("venues/arena/unblocks", json={"pass_ids": ids[1:2]}).json()["version"] == 2
    pending = v.pending("blocked")
    assert [i.hex() for i in pending.removes] == ids[1:2] and [i.hex() for i in pending.ids] == ids[2:]
    forged = PendingList(kind="blocked", scope="arena", base=1, ids=(), adds=(), removes=pending.ids)
    r = v.upload(forged.sign(v.list_key)[0])  # signed by the right key, but not what the hub holds
    assert r.status_code == 409 and "differs" in r.text
    at = int(time.time())
    snapshot, delta = pending.sign(v.list_key, issued_at=at)
    empty_delta = PendingList(kind="blocked", scope="arena", base=1, ids=pending.ids, adds=(),
                              removes=()).sign(v.list_key, issued_at=at)[1]
    assert v.upload(snapshot).status_code == 200
    r = v.upload(empty_delta)  # the snapshot's time, but not the change made at version 2
    assert r.status_code == 409 and "differs from the change" in r.text
    assert v.upload(delta).status_code == 200
    bundle = v.bundle(blocked=1)
    (update,) = bundle["denylists"]["blocked"]["updates"]  # type: ignore[index]
    served = read_signed(base64.b64decode(update), list_trust(bundle))
    assert isinstance(served, Delta) and len(served.removes) == 1 and len(served.adds) == 0


def test_the_offline_workflow_through_both_clis(db_url: str, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """The operator's commands: keys made where they live, the venue on the hub with only their
    public halves, passes signed by passgate and recorded, a revocation signed and uploaded."""

    def hub_cli(*argv: str) -> tuple[int, str, str]:
        status = cli.main(["--database", db_url, *argv])
        out, err = capsys.readouterr()
        return status, out, err

    def passgate(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([PASSGATE, *argv], cwd=tmp_path, capture_output=True, text=True, timeout=60)

    keys = tmp_path / "keys"
    write_keypair(generate_private_key(), keys, "lists")
    write_keypair(generate_private_key(), keys, "issuer")
    lists_key, issuer_key = str(keys / "lists.key.pem"), str(keys / "issuer.key.pem")
    for argv in (["venue", "create", "arena", "--offline", "--denylist-key", str(keys / "lists.pub.pem")],
                 ["zone", "create", "arena", "floor"], ["key", "add", "arena", str(keys / "issuer.pub.pem")]):
        status, _, err = hub_cli(*argv)
        assert status == 0, err
    r = passgate("issue", "--key", issuer_key, "--valid-until", "+4h", "--zones", "floor", "--count", "3",
                 "--out", "batch")
    assert r.returncode == 0, r.stderr
    status, out, err = hub_cli("pass", "record", "arena", str(tmp_path / "batch" / "passes.csv"))
    assert status == 0 and json.loads(out) == {"recorded": 3, "already": 0}, err
    first = next(csv.DictReader((tmp_path / "batch" / "passes.csv").open()))["pass_id"]
    status, out, _ = hub_cli("revoke", "arena", first)
    assert status == 0 and json.loads(out)["version"] == 1
    status, out, _ = hub_cli("denylist", "pending", "arena", "revoked")
    assert status == 0
    (tmp_path / "revoked.pending.json").write_text(out)
    r = passgate("denylist", "sign", "--key", issuer_key, "revoked.pending.json", "--out", "wrong")
    assert r.returncode == 0  # signs with any key: the hub is the one that refuses it
    status, _, err = hub_cli("denylist", "upload", "arena",
                             str(tmp_path / "wrong" / "revoked-0000000001.snapshot.pgdl"))
    assert status == 1 and "refused" in err and len(err.strip().splitlines()) == 1
    r = passgate("denylist", "sign", "--key", lists_key, "revoked.pending.json", "--out", "signed")
    assert r.returncode == 0, r.stderr
    files = r.stdout.split()
    assert [Path(f).name for f in files] == ["revoked-0000000001.snapshot.pgdl",
                                             "revoked-0000000001.delta.pgdl"]
    status, out, err = hub_cli("denylist", "upload", "arena", *(str(tmp_path / f) for f in files))
    assert status == 0, err
    assert [x["file"] for x in json.loads(out)] == ["snapshot", "delta"]
    status, out, _ = hub_cli("key", "list", "arena")
    assert status == 0 and all(not k["has_private"] for k in json.loads(out))
    status, _, err = hub_cli("issue", "arena", "--count", "1", "--valid-until", "+1h", "--out", "x")
    assert status == 1 and "offline-issuer venue" in err
    r = passgate("denylist", "sign", "--key", lists_key, str(keys / "lists.pub.pem"), "--out", "y")
    assert r.returncode == 2 and "not a pending deny list" in r.stderr


def test_readmes_offline_example_runs_verbatim(tmp_path: Path) -> None:
    result = run_example("offline", tmp_path)
    uploaded = json.loads(result.stdout[result.stdout.index('[\n  {\n    "file"'):].split("\n]\n")[0] + "\n]")
    assert [(u["file"], u["version"]) for u in uploaded] == [("snapshot", 1), ("delta", 1)]
    keys = json.loads(result.stdout[result.stdout.rindex("[\n  {"):])
    assert len(keys) == 2 and not any(k["has_private"] for k in keys)
    assert not list(tmp_path.glob("*.kek"))  # nothing to seal: no sealing key was made
