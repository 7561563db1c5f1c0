"""Issue 12 through real processes: a hub (``passgate-hub serve``) on SQLite and on PostgreSQL and two
``passgated`` gates on mock pins, set up with the hub's CLI as an operator would.

Gates configured only with a ``[hub]`` enforce the hub's zone; one passage is one count at the
gates and at the hub (CLI and API); a single-use pass used at one gate is refused at the other.
"""

from __future__ import annotations

import csv
import itertools
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import psycopg
import pyotp
import pytest
import requests

from passgate_hub import sealing
from tests.hub.fixtures import copy_into, db_url, template_url
from tests.hub.pgcluster import shared_cluster

from .procs import BIN, GateProcess, HubProcess, hub_json, run_hub_cli

_names = itertools.count()
__all__ = ["db_url"]  # the hub's database fixture, on SQLite and PostgreSQL


_arenas: dict[str, tuple[str, dict[str, str]]] = {}  # backend: (template database, the gates' tokens)


def set_up_arena(database: str) -> dict[str, str]:
    """The arena as an operator sets it up with the hub's CLI: zones floor and balcony, gates
    north-1 and north-2 on the floor (their tokens returned) and a hub-held key. The commands run
    once per run and backend, on a template; ``database`` (new, from ``db_url``) becomes a copy."""
    kind = "sqlite" if database.startswith("sqlite:///") else "postgresql"
    if kind not in _arenas:
        # one sealing key for the run, whichever backend comes first (as the PostgreSQL cluster
        # sets it): a key sealed in the template opens in every copy's hub
        os.environ.setdefault(sealing.ENV_KEY, sealing.new_kek_text().strip())
        template = template_url(kind, "arena_template")
        hub_json(template, "venue", "create", "arena")
        for zone in ("floor", "balcony"):
            hub_json(template, "zone", "create", "arena", zone)
        tokens = {gate: hub_json(template, "gate", "create", "arena", gate, "--zone", "floor")["token"]
                  for gate in ("north-1", "north-2")}
        hub_json(template, "key", "add", "arena")
        _arenas[kind] = template, tokens
    template, tokens = _arenas[kind]
    copy_into(database, template)
    return dict(tokens)


class Venue:
    """The arena (``set_up_arena``) on a running hub."""

    def __init__(self, tmp_path: Path, database: str) -> None:
        self.tmp, self.database = tmp_path, database
        self.tokens = set_up_arena(database)
        self.hub = HubProcess(database).start()
        self.gates: dict[str, GateProcess] = {}

    def issue(self, count: int, zone: str = "floor", entries: int = 1) -> list[dict[str, str]]:
        out = self.tmp / f"issued-{next(_names)}"
        hub_json(self.database, "issue", "arena", "--count", str(count), "--valid-from", "now",
                 "--valid-until", "+4h", "--zone", zone, "--entries", str(entries), "--no-qr",
                 "--out", str(out))
        with (out / "passes.csv").open() as f:
            return list(csv.DictReader(f))

    def gate(self, name: str) -> GateProcess:
        gate = GateProcess(self.tmp / name, name, self.hub.url, self.tokens[name]).start()
        self.gates[name] = gate
        return gate

    def close(self) -> None:
        for gate in self.gates.values():
            gate.close()
        self.hub.stop()


@pytest.fixture
def venue(tmp_path: Path, db_url: str) -> Iterator[Venue]:
    arena = Venue(tmp_path, db_url)
    try:
        yield arena
    finally:
        arena.close()


def test_two_gates_count_every_passage_once_and_share_single_use(venue: Venue) -> None:
    passes = venue.issue(6)
    [balcony] = venue.issue(1, zone="balcony")
    g1, g2 = venue.gate("north-1"), venue.gate("north-2")
    for gate in (g1, g2):  # hub-only gates: keys and zone arrive with the first bundle
        gate.wait_status(lambda s: s["state"] == "IDLE" and s["zones"] == ["floor"])

    assert g1.scan(balcony["text"])["reason"] == "wrong_zone"  # the hub's zone, not written in gate.toml
    for gate, p, direction in [(g1, passes[0], "entry"), (g1, passes[1], "entry"), (g1, passes[2], "entry"),
                               (g2, passes[3], "entry"), (g2, passes[4], "entry"),
                               (g2, passes[0], "exit")]:  # entered at north-1, leaves here
        answer = gate.scan(p["text"], direction)
        assert answer["decision"] == "admit", json.dumps(answer)
    g1.synced()
    g2.wait_status(lambda s: s["sync"]["backlog"] == 0)
    g2.synced()
    assert g2.scan(passes[1]["text"])["reason"] == "used_up"  # used at north-1, refused at north-2

    assert g1.status()["passages_today"] == {"entry": 3, "exit": 0}
    assert g2.status()["passages_today"] == {"entry": 2, "exit": 1}
    g2.synced()
    floor = {"zone": "floor", "entries": 5, "exits": 1, "inside": 4}
    counts = {c["zone"]: c for c in hub_json(venue.database, "counts", "arena")}
    assert counts["floor"] == floor and counts["balcony"]["entries"] == 0
    key = hub_json(venue.database, "apikey", "create", "counts-check", "--role", "viewer",
                   "--venue", "arena")["key"]
    r = requests.get(f"{venue.hub.url}/v1/admin/venues/arena/counts",
                     headers={"Authorization": f"Bearer {key}"}, timeout=10)
    assert r.status_code == 200 and {c["zone"]: c for c in r.json()}["floor"] == floor


def test_a_hub_token_for_another_zone_and_a_changed_zone(venue: Venue) -> None:
    """The zone follows the hub: moved to the balcony, the gate refuses floor passes."""
    [floor] = venue.issue(1)
    [balcony] = venue.issue(1, zone="balcony")
    g1 = venue.gate("north-1")
    g1.wait_status(lambda s: s["state"] == "IDLE" and s["zones"] == ["floor"])
    run_hub_cli(venue.database, "gate", "set", "arena", "north-1", "--zone", "balcony")
    status = g1.wait_status(lambda s: s["zones"] == ["balcony"])
    assert status["settings"]["gate.zones"] == {"value": ["balcony"], "source": "hub"}
    assert g1.scan(floor["text"])["reason"] == "wrong_zone"
    assert g1.scan(balcony["text"])["decision"] == "admit"


def backup(database: str, tmp_path: Path) -> str:
    """A copy of the hub's database as it is now (the hub stopped), as a backup restored later
    would bring it back: a file copy for SQLite, a template copy for PostgreSQL."""
    if database.startswith("sqlite:///"):
        copy = tmp_path / f"backup-{next(_names)}.db"
        shutil.copyfile(database.removeprefix("sqlite:///"), copy)
        kek = Path(database.removeprefix("sqlite:///") + ".kek")  # the sealing key beside it, if
        if kek.exists():  # the hub made one there (none when $PASSGATE_HUB_KEK names the key)
            shutil.copy2(kek, f"{copy}.kek")  # restored with it, or the hub cannot sign
        return f"sqlite:///{copy}"
    cluster = shared_cluster()
    assert cluster is not None
    name = f"backup_{next(_names)}"
    with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{database.rsplit("/", 1)[1]}"')
    return database.rsplit("/", 1)[0] + f"/{name}"


def test_after_a_restore_from_an_older_backup_single_use_still_holds(venue: Venue, tmp_path: Path) -> None:
    passes = venue.issue(4)
    g1, g2 = venue.gate("north-1"), venue.gate("north-2")
    for gate in (g1, g2):
        gate.wait_status(lambda s: s["state"] == "IDLE")
    venue.hub.stop()
    older = backup(venue.database, tmp_path)  # the backup: before the night's traffic
    venue.hub.start()
    for p in passes[:2]:  # the night: passages, revocations; the gates' cursors and lists move on
        assert g1.scan(p["text"])["decision"] == "admit"
    hub_json(venue.database, "revoke", "arena", "ab" * 16, "--external")
    hub_json(venue.database, "revoke", "arena", "cd" * 16, "--external")
    for gate in (g1, g2):
        gate.synced()
    ahead = g2.status()["lists"]["revoked"]["version"]
    assert g2.wait_status(lambda s: s["lists"]["revoked"]["version"] >= 3)

    venue.hub.stop()  # the hub's disk dies; the operator restores last night's backup
    venue.database = venue.hub.database = older
    venue.hub.start()
    for gate in (g1, g2):  # every part of a round works again: no gate is wedged
        gate.wait_status(lambda s: not s["sync"]["last_error"] and s["sync"]["backlog"] == 0, timeout=60)
    ticket = passes[2]["text"]
    assert g1.scan(ticket)["decision"] == "admit"
    g1.synced()
    g2.synced()
    assert g2.scan(ticket)["reason"] == "used_up"  # refused at the second gate once synced
    status = g2.status()
    assert status["lists"]["revoked"]["version"] > ahead  # the restored hub moved on to a new epoch
    assert all(part["ok"] for part in status["sync"]["parts"].values())


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # the page's queries: tests/hub, on both
def test_the_console_fleet_shows_the_gates_as_they_beat(venue: Venue) -> None:
    """The console's fleet page over real processes: two gates syncing with the hub, signed in to
    as an operator made with the CLI (its password from stdin, the code from its authenticator URI)."""
    g1, g2 = venue.gate("north-1"), venue.gate("north-2")
    for gate in (g1, g2):
        gate.wait_status(lambda s: s["state"] == "IDLE" and s["zones"] == ["floor"])
        gate.synced()  # a heartbeat after READY: the state and the scanners are on the hub
    made = subprocess.run([str(BIN / "passgate-hub"), "--database", venue.database, "operator", "create",
                           "ops", "--role", "viewer", "--venue", "arena", "--password-stdin"],
                          input="a long enough password\n", capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    secret = parse_qs(urlsplit(json.loads(made.stdout)["totp_uri"]).query)["secret"][0]
    browser = requests.Session()
    form = browser.get(f"{venue.hub.url}/console/login", timeout=10).text
    csrf = re.search(r'name="csrf" value="([^"]+)"', form).group(1)  # type: ignore[union-attr]
    signed = browser.post(f"{venue.hub.url}/console/login", timeout=10, allow_redirects=False, data={
        "name": "ops", "password": "a long enough password", "code": pyotp.TOTP(secret).now(), "csrf": csrf})
    assert signed.status_code == 303, signed.text
    page = browser.get(f"{venue.hub.url}/console/fleet", timeout=10).text
    row = re.compile(r'<tr data-gate="([^"]+)"[^>]*>(.*?)</tr>', re.S)
    rows = {m.group(1): m.group(2) for m in row.finditer(page)}
    assert set(rows) == {"north-1", "north-2"}
    for row in rows.values():
        assert "online" in row and "Ready" in row and "✓ serial:" in row  # the gate's own scanner
    assert "2 gates: 2 online, 0 offline, 0 never seen, 0 disabled." in page
    assert 'id="no-alerts"' in page
