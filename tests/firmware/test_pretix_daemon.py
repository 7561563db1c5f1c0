"""A venue's pretix event at a passgate gate, start to finish, with real parts: a fake pretix API on
loopback, ``passgate pretix pull`` writing the event's files and signed deny lists, ``passgated
denylist add`` dropping them in, and the real daemon (in process on gpiozero's MockFactory pins with
each admitted person walking through, and ``passgated simulate`` as a user runs it) deciding a mix
of PG1 passes and pretix tickets."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

import passgated.droplists as droplists
from passgate import generate_private_key, issue_pass
from passgate.cli import main as passgate_main
from passgate.keys import write_keypair
from passgate.pretix import issue_sig1, seed_pass_id
from passgated.config import load_config
from passgated.simulate import SimulatedGate, feed
from tests.helpers import LOADED_WRITE_TIMEOUT_S, wait_for
from tests.pretix_fake import EVENT, ORGANIZER, TOKEN, FakePretix, checkin_list, event_resource

SCOPE = "democon"
HALL_ITEM, VIP_ITEM, MERCH_ITEM = 1, 2, 9
EVENT_KEY = ed25519.Ed25519PrivateKey.generate()
STRANGER = ed25519.Ed25519PrivateKey.generate()
PG1_KEY = generate_private_key()
# the pretix event's lists: the hall admits tickets once (back in after an exit), the VIP lounge
# admits VIP tickets at most twice a day (a rule staff wrote in pretix)
LISTS = [
    checkin_list(7, "Hall", all_products=False, limit_products=[HALL_ITEM, VIP_ITEM],
                 allow_multiple_entries=False, allow_entry_after_exit=True),
    checkin_list(8, "VIP lounge", all_products=False, limit_products=[VIP_ITEM], allow_multiple_entries=True,
                 rules={"<": [{"var": "entries_today"}, 2]}),
]


def pretix_ticket(seed: str, item: int = HALL_ITEM, key: ed25519.Ed25519PrivateKey = EVENT_KEY) -> str:
    return issue_sig1(key, seed=seed, item=item)


@pytest.fixture()
def pretix() -> Iterator[FakePretix]:
    pem = EVENT_KEY.public_key().public_bytes(serialization.Encoding.PEM,
                                              serialization.PublicFormat.SubjectPublicKeyInfo)
    # the event runs from before these tests to long after (times are the gate's real clock)
    event = event_resource(EVENT, [pem], date_from="2024-06-01T09:00:00Z", date_to="2099-06-02T18:00:00Z")
    with FakePretix.running(event=event, checkinlists=LISTS) as fake:
        yield fake


def pull(tmp_path: Path, url: str) -> Path:
    """The operator's pull: keys, lists and the signed deny lists into ``tmp_path/pretix``."""
    token = tmp_path / "token"
    token.write_text(TOKEN)
    token.chmod(0o600)
    out = tmp_path / "pretix"
    assert passgate_main(["pretix", "pull", "--url", url, "--organizer", ORGANIZER, "--event", EVENT,
                          "--out", str(out), "--signing-key", str(tmp_path / "keys/lists.key.pem"),
                          "--scope", SCOPE, "--token-file", str(token)]) == 0
    return out


def gate_files(tmp_path: Path, *, zone: str, anti_passback: bool = True) -> Path:
    """A gate without a hub: PG1 issuer and list key trusted, the pretix event's files, a zone each
    for the hall and the lounge naming their pretix check-in lists."""
    assert passgate_main(["keygen", "--out", str(tmp_path / "keys"), "--name", "lists", "--purpose",
                          "denylist", "--scope", SCOPE]) == 0
    trust = tmp_path / "trust"
    write_keypair(PG1_KEY, trust, "issuer")
    (trust / "lists.pub.pem").write_bytes((tmp_path / "keys/lists.pub.pem").read_bytes())
    (trust / "trust.toml").write_text(f'[[key]]\nfile = "lists.pub.pem"\npurpose = "denylist"\n'
                                      f'scope = "{SCOPE}"\n')
    config = tmp_path / "gate.toml"
    config.write_text(f"""
[gate]
id = "door-1"
venue = "{SCOPE}"
zones = ["{zone}"]
[trust]
dir = "trust"
[denylist]
dir = "lists"
[journal]
path = "journal.db"
[display]
listen = false
[policy]
anti_passback = {str(anti_passback).lower()}
[pretix]
event = "pretix/event.json"
checkin_lists = "pretix/checkinlists.json"
[pretix.zones.hall]
checkin_list = 7
[pretix.zones.lounge]
checkin_list = 8
""")
    return config


def test_a_pulled_event_decides_pretix_tickets_beside_pg1_passes(
        tmp_path: Path, pretix: FakePretix, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(droplists, "SCAN_EVERY_S", 0.05)
    monkeypatch.setattr(droplists, "SETTLE_S", 0.0)
    config_file = gate_files(tmp_path, zone="hall")
    revoked, blocked = pretix_ticket("refunded"), pretix_ticket("chargeback")
    pretix.revoke(revoked)
    pretix.block(blocked)
    out = pull(tmp_path, pretix.url)
    decisions: list[dict[str, Any]] = []
    config = load_config(config_file, journal_write_timeout_s=LOADED_WRITE_TIMEOUT_S)
    gate = SimulatedGate(config, walk_s=0.0, sources=[], display=False, on_decision=decisions.append)
    gate.start()
    try:
        files = sorted(str(p) for p in (out / "lists").iterdir())
        added = subprocess.run([sys.executable, "-m", "passgated.cli", "denylist", "add", *files,
                                "--config", str(config_file)], capture_output=True, text=True, timeout=60)
        assert added.returncode == 0, added.stderr
        assert "current as of" in added.stdout  # the freshness statements went in too
        assert wait_for(lambda: {k: v.get("version") for k, v in gate.status()["lists"].items()}
                        == {"revoked": 1, "blocked": 1}, timeout=10)
        assert wait_for(lambda: not any((tmp_path / "lists/incoming").iterdir()), timeout=10)
        pg1 = issue_pass(PG1_KEY, valid_from=0, valid_until=2**31, zones=["hall"], entries=1)
        fan, vip = pretix_ticket("fan-1"), pretix_ticket("vip-1", VIP_ITEM)
        scans = [
            ("PG1 pass", pg1, "admit"),
            ("pretix hall ticket", fan, "admit"),
            ("the same ticket again", fan, "used_up"),
            ("a VIP ticket at the hall", vip, "admit"),
            ("revoked in pretix", revoked, "revoked"),
            ("blocked in pretix", blocked, "blocked"),
            ("merchandise voucher", pretix_ticket("mug-1", MERCH_ITEM), "wrong_zone"),
            ("signed by another event", pretix_ticket("fake-1", key=STRANGER), "bad_signature"),
            ("the PG1 pass again", pg1, "used_up"),
        ]
        feed(gate, [text for _, text, _ in scans])  # one person at a time, each walking through
        assert wait_for(lambda: len(decisions) == len(scans), timeout=10)
        assert [(what, d["reason"]) for (what, _, _), d in zip(scans, decisions, strict=True)] == \
            [(what, reason) for what, _, reason in scans]
        assert decisions[1]["pass_id"] == seed_pass_id("fan-1").hex()
        assert all(lists["stale"] is False for lists in gate.status()["lists"].values())
    finally:
        gate.stop()
    journal = (tmp_path / "journal.db").read_bytes() + b"".join(
        p.read_bytes() for p in tmp_path.glob("journal.db-*"))
    assert fan.encode() not in journal and b"fan-1" not in journal  # the secret and its seed never stored
    with sqlite3.connect(tmp_path / "journal.db") as db:
        reasons = [row for row in db.execute("SELECT kind, reason FROM events WHERE pass_id = ? ORDER BY seq",
                                                 (seed_pass_id("fan-1").hex(),))]
    assert reasons == [("decision", "admit"), ("redeemed", None), ("decision", "used_up")]


def test_passgated_simulate_applies_the_lounges_rule(tmp_path: Path, pretix: FakePretix) -> None:
    config_file = gate_files(tmp_path, zone="lounge", anti_passback=False)
    pull(tmp_path, pretix.url)
    vip, hall_only = pretix_ticket("vip-2", VIP_ITEM), pretix_ticket("fan-2")
    pg1 = issue_pass(PG1_KEY, valid_from=0, valid_until=2**31)
    lines = [vip, vip, vip, hall_only, pg1, "not a pass at all"]
    result = subprocess.run([sys.executable, "-m", "passgated.cli", "simulate", "--config", str(config_file),
                             "--walk-ms", "0"], input="\n".join(lines) + "\n", capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    decided = [json.loads(line) for line in result.stdout.splitlines()]
    # the lounge's list admits many entries and its rule two a day; a hall ticket is not on its list
    assert [d["reason"] for d in decided] == ["admit", "admit", "rules", "wrong_zone", "admit", "unreadable"]
    assert "rules do not admit" in decided[2].get("detail", decided[2].get("text", ""))
    assert "Traceback" not in result.stderr
