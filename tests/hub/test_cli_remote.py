"""``passgate-hub --url``: every command (but those of the hub's own machine) through the admin API
of a real hub over loopback, printing what the same command prints on the database."""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import requests

from passgate.keys import generate_private_key, write_keypair
from passgate_hub import cli, remote
from passgate_hub.scope import Role
from tests.hub.server import HubServer
from tests.hub.test_api import event, gate_client

from .test_offline_issuer import PASSGATE

TIMEOUT = 10


class Both:
    """The CLI in-process, on the database (``local``) and through the hub's API (``far``)."""

    def __init__(self, hub: HubServer, db_url: str, key_file: Path,
                 capsys: pytest.CaptureFixture[str]) -> None:
        self.hub, self.db_url, self.key_file, self.capsys = hub, db_url, key_file, capsys

    def _run(self, argv: list[str]) -> tuple[int, str, str]:
        status = cli.main(argv)
        out, err = self.capsys.readouterr()
        return status, out, err

    def local(self, *argv: str) -> Any:
        status, out, err = self._run(["--database", self.db_url, *argv])
        assert status == 0, err
        return out if argv[:2] == ("key", "export") else json.loads(out)

    def far_run(self, *argv: str, key_file: Path | None = None) -> tuple[int, str, str]:
        return self._run(["--url", self.hub.url, "--api-key-file", str(key_file or self.key_file), *argv])

    def far(self, *argv: str) -> Any:
        status, out, err = self.far_run(*argv)
        assert status == 0, err
        return out if argv[:2] == ("key", "export") else json.loads(out)


def rows(path: str) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def key_file(hub: HubServer, path: Path, role: Role = Role.ADMIN, venues: tuple[str, ...] = ()) -> Path:
    path.write_text(hub.api_key(role, venues) + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture
def both(hub: HubServer, db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Both:
    return Both(hub, db_url, key_file(hub, tmp_path / "admin.key"), capsys)


def test_every_command_runs_remotely_or_says_it_belongs_to_the_hubs_machine() -> None:
    def spelt(name: str) -> str:  # "gate-enroll-code" is typed "gate enroll-code"
        return name.replace("-", " ", 1)

    commands = {spelt(name) for name in cli.COMMANDS} | {"serve", "migrate"}
    assert {spelt(name) for name in remote.COMMANDS} | set(remote.LOCAL_ONLY) == commands
    assert not set(remote.LOCAL_ONLY) & {spelt(name) for name in remote.COMMANDS}


def test_reads_print_the_same_through_the_api_as_on_the_database(both: Both, tmp_path: Path) -> None:
    """State made on the database; each read command run both ways prints the same."""
    made = [["venue", "create", "arena"], ["zone", "create", "arena", "floor"],
            ["gate", "create", "arena", "n1", "--zone", "floor", "--anti-passback"],
            ["key", "add", "arena", "--issuer", "Arena"],
            ["operator", "create", "ann", "--role", "viewer", "--venue", "arena"]]
    tokens = [both.local(*argv) for argv in made]
    issued = both.local("issue", "arena", "--count", "3", "--valid-until", "+2h", "--zone", "floor",
                        "--no-qr", "--out", str(tmp_path / "p"))
    ids = [row["pass_id"] for row in rows(issued["csv"])]
    both.local("revoke", "arena", ids[0], "--reason", "lost")
    both.local("block", "arena", ids[1])
    gate = gate_client(tokens[2]["token"])
    for direction in ("entry", "entry", "exit"):
        r = gate.post(f"{both.hub.url}/v1/gates/n1/events", timeout=TIMEOUT, json={"events": [
            event("n1", "passage", direction=direction, detail="free passage")]})
        assert r.status_code == 200, r.text
    kid = tokens[3]["kid"]
    for argv in (["venue", "list"], ["gate", "list"], ["gate", "list", "--venue", "arena"],
                 ["key", "list", "arena"], ["key", "export", "arena", kid], ["counts", "arena"],
                 ["events", "arena"],
                 ["events", "arena", "--kind", "passage", "--after", "1", "--limit", "1"],
                 ["events", "arena", "--since=-1h", "--until=+1h"], ["alerts", "arena"],
                 ["operator", "list"], ["audit", "--venue", "arena"]):
        far = both.far(*argv)
        assert far == both.local(*argv), argv
    assert both.local("counts", "arena") == [{"zone": "floor", "entries": 2, "exits": 1, "inside": 1}]
    # the API key's own listing moves (last used): compared once it has been used
    assert both.far("apikey", "list") == both.local("apikey", "list")


def test_changes_through_the_api_are_the_hubs_and_in_its_audit_log(both: Both, tmp_path: Path) -> None:
    assert both.far("venue", "create", "arena") == {"venue": "arena", "offline": False}
    assert both.far("zone", "create", "arena", "floor") == {"zone": "floor"}
    assert both.far("zone", "create", "arena", "vip") == {"zone": "vip"}
    made = both.far("gate", "create", "arena", "n1", "--zone", "floor", "--stale-policy", "guard")
    assert set(made) == {"gate_id", "token"} and made["token"].startswith("pgg_")
    assert gate_client(made["token"]).get(f"{both.hub.url}/v1/gates/n1/bundle",
                                          timeout=TIMEOUT).status_code == 200
    changed = both.far("gate", "set", "arena", "n1", "--zone", "vip", "--unset", "stale-policy")
    assert changed["zone"] == "vip" and "stale_policy" not in changed["settings"]
    code = both.far("gate", "enroll-code", "arena", "n1")
    assert code["on_the_gate"] == f"passgated enroll {code['code']} --hub {both.hub.url}"
    enrolled = requests.post(f"{both.hub.url}/v1/enroll", json={"code": code["code"]}, timeout=TIMEOUT)
    assert enrolled.status_code == 200 and enrolled.json()["gate_id"] == "n1"
    assert both.far("gate", "disable", "arena", "n1")["disabled_at"] is not None
    assert both.far("gate", "enable", "arena", "n1")["disabled_at"] is None
    rotated = both.far("gate", "rotate-token", "arena", "n1")
    assert set(rotated) == {"gate_id", "token"}
    assert both.far("gate", "revoke-token", "arena", "n1")["has_token"] is False
    added = both.far("key", "add", "arena", "--issuer", "Arena")
    assert set(added) == {"kid", "purpose", "has_private"} and added["has_private"]
    rotation = both.far("key", "rotate", "arena")
    assert rotation["retired"] == [added["kid"]]
    issued = both.far("issue", "arena", "--count", "2", "--valid-until", "+2h", "--zone", "floor",
                      "--entries", "1", "--out", str(tmp_path / "p"))
    passes = rows(issued["csv"])
    assert issued["issued"] == 2 and len(passes) == 2
    assert all((tmp_path / "p" / r["qr_file"]).is_file() for r in passes)
    revoked = both.far("revoke", "arena", passes[0]["pass_id"], "--reason", "lost")
    assert (revoked["kind"], revoked["changed"]) == ("revoked", 1)
    blocked = both.far("block", "arena", passes[1]["pass_id"])
    assert both.far("unblock", "arena", passes[1]["pass_id"]) == {
        "kind": "blocked", "version": blocked["version"] + 1, "changed": 1}
    assert both.local("revoke", "arena", passes[0]["pass_id"])["changed"] == 0  # already there
    assert both.far("key", "retire", "arena", rotation["new"]["kid"], "--at", "+1h")["retired_at"] is not None
    assert both.far("key", "revoke", "arena", rotation["new"]["kid"])["revoked_at"] is not None
    assert both.far("venue", "set", "arena", "--timezone", "Europe/Berlin", "--retention-days", "14"
                    )["timezone"] == "Europe/Berlin"
    person = both.far("operator", "create", "ann", "--role", "operator", "--venue", "arena")
    assert person["totp_uri"].startswith("otpauth://") and len(person["password"]) >= 12
    for action, field, filled in (("disable", "disabled_at", True), ("enable", "disabled_at", False),
                                  ("unlock", "locked_until", False)):
        assert (both.far("operator", action, "ann")[field] is not None) is filled
    assert both.far("operator", "delete", "ann") == {"name": "ann", "deleted": True}
    second = both.far("apikey", "create", "viewer", "--role", "viewer", "--venue", "arena")
    assert both.far("apikey", "rotate", "viewer")["key"] != second["key"]
    assert both.far("apikey", "revoke", "viewer")["revoked_at"] is not None
    assert both.far("gate", "delete", "arena", "n1") == {"gate_id": "n1", "deleted": True}
    purged = both.far("purge", "--venue", "arena", "--dry-run")
    assert purged["dry_run"] and set(purged["venues"]) == {"arena"} and "hub_wide" not in purged
    assert set(both.far("purge")) == {"dry_run", "venues", "hub_wide"}
    # what the database says, and who the audit log names
    assert [g["gate_id"] for g in both.local("gate", "list")] == []
    assert both.local("venue", "list")[0]["retention_days"] == 14
    log = both.local("audit", "--limit", "10000")
    by_api = {entry["action"] for entry in log if entry["actor"].startswith("apikey:")}
    assert {"venue.create", "gate.create", "gate.enroll_code", "key.rotate", "operator.create",
            "operator.delete", "apikey.revoke", "gate.delete", "retention.purge"} <= by_api, by_api
    assert {entry["actor"].split(":")[0] for entry in log} == {"apikey", "test", "enroll", "cli"}


def test_bulk_work_goes_in_the_apis_batches(both: Both, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    for argv in (["venue", "create", "arena"], ["zone", "create", "arena", "floor"],
                 ["key", "add", "arena"]):
        both.local(*argv)
    monkeypatch.setattr(remote, "ISSUE_BATCH", 2)
    monkeypatch.setattr(remote, "DENY_BATCH", 2)
    issued = both.far("issue", "arena", "--count", "5", "--valid-until", "+2h", "--no-qr",
                      "--out", str(tmp_path / "p"))
    ids = [row["pass_id"] for row in rows(issued["csv"])]
    assert issued["issued"] == 5 and len(set(ids)) == 5
    (tmp_path / "ids.txt").write_text("\n".join(ids) + "\n")
    assert both.far("revoke", "arena", "--file", str(tmp_path / "ids.txt")) == {
        "kind": "revoked", "version": 3, "changed": 5}  # three requests, a list version each
    with both.hub.session() as s:
        from passgate_hub import ops
        assert all(ops.pass_record(s, ops.get_venue(s, "arena"), pid)["lists"] for pid in ids)


def test_an_offline_venue_is_run_from_afar(both: Both, tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    write_keypair(generate_private_key(), keys, "lists")
    write_keypair(generate_private_key(), keys, "issuer")
    assert both.far("venue", "create", "box", "--offline", "--denylist-key", str(keys / "lists.pub.pem")
                    )["offline"] is True
    both.far("zone", "create", "box", "floor")
    assert both.far("key", "add", "box", str(keys / "issuer.pub.pem"))["has_private"] is False

    def passgate(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([PASSGATE, *argv], cwd=tmp_path, capture_output=True, text=True, timeout=60)

    r = passgate("issue", "--key", str(keys / "issuer.key.pem"), "--valid-until", "+4h", "--zones", "floor",
                 "--count", "3", "--out", "batch")
    assert r.returncode == 0, r.stderr
    assert both.far("pass", "record", "box", str(tmp_path / "batch" / "passes.csv")) == {
        "recorded": 3, "already": 0}
    first = next(csv.DictReader((tmp_path / "batch" / "passes.csv").open()))["pass_id"]
    both.far("revoke", "box", first)
    pending = both.far("denylist", "pending", "box", "revoked")
    assert pending == both.local("denylist", "pending", "box", "revoked") and pending["adds"] == [first]
    (tmp_path / "pending.json").write_text(json.dumps(pending))
    r = passgate("denylist", "sign", "--key", str(keys / "lists.key.pem"), "pending.json", "--out", "signed")
    assert r.returncode == 0, r.stderr
    snapshot, delta = r.stdout.split()
    status, _, err = both.far_run("denylist", "upload", "box", str(tmp_path / delta))  # before its snapshot
    assert status == 1 and f"{tmp_path / delta}: " in err and "(HTTP 4" in err
    uploaded = both.far("denylist", "upload", "box", str(tmp_path / snapshot), str(tmp_path / delta))
    assert [u["file"] for u in uploaded] == ["snapshot", "delta"]


def test_refusals_are_one_line_with_the_reason(both: Both, tmp_path: Path) -> None:
    both.local("venue", "create", "arena")
    both.local("venue", "create", "other")
    viewer = key_file(both.hub, tmp_path / "viewer.key", Role.VIEWER, ("arena",))
    cases = [
        (both.far_run("counts", "other", key_file=viewer), "no grant on venue 'other'"),
        (both.far_run("zone", "create", "arena", "x", key_file=viewer), "needs admin"),
        (both.far_run("counts", "nowhere"), "no venue 'nowhere' (HTTP 404)"),
        (both.far_run("venue", "set", "arena", "--timezone", "Mars/Olympus"), "Mars/Olympus"),
        (both.far_run("seal", "status"), "runs on the hub's machine only"),
        (both.far_run("counts", "arena", key_file=tmp_path / "missing.key"), "cannot read the API key file"),
    ]
    (tmp_path / "wrong.key").write_text("pgk_wrong\n")
    cases.append((both.far_run("counts", "arena", key_file=tmp_path / "wrong.key"), "refused the API key"))
    for (status, out, err), expected in cases:
        assert status == 1 and out == "" and expected in err, (expected, err)
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    key = ["--api-key-file", str(both.key_file)]
    status = cli.main(["--url", "http://127.0.0.1:9", *key, "counts", "arena"])
    assert status == 1 and "cannot reach the hub" in both.capsys.readouterr().err
    status = cli.main(["--url", "ftp://hub", *key, "counts", "arena"])
    assert status == 1 and "https://" in both.capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        cli.main(["--url", both.hub.url, "--database", both.db_url, "counts", "arena"])
    assert exited.value.code == 2 and "give one" in both.capsys.readouterr().err


def test_the_environment_names_the_hub_and_the_key(both: Both, monkeypatch: pytest.MonkeyPatch,
                                                   tmp_path: Path) -> None:
    both.local("venue", "create", "arena")
    monkeypatch.setenv(remote.ENV_URL, both.hub.url)
    monkeypatch.setenv(remote.ENV_KEY, both.key_file.read_text().strip())
    assert cli.main(["venue", "list"]) == 0
    assert json.loads(both.capsys.readouterr().out)[0]["name"] == "arena"
    monkeypatch.delenv(remote.ENV_KEY)
    monkeypatch.setenv(remote.ENV_KEY_FILE, str(both.key_file))
    assert cli.main(["counts", "arena"]) == 0
    monkeypatch.delenv(remote.ENV_KEY_FILE)
    assert cli.main(["counts", "arena"]) == 1
    assert "--url needs an API key" in both.capsys.readouterr().err
    # --database wins over the environment's URL: the command runs on that database
    monkeypatch.chdir(tmp_path)
    assert cli.main(["--database", both.db_url, "counts", "arena"]) == 0
