"""End to end through the real pieces: pty serial scanner → daemon → gpiozero MockFactory pins →
SQLite journal. Waits on conditions, never on fixed sleeps."""

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory

from passgate import TrustStore, generate_private_key, issue_pass
from passgate.keys import write_keypair
from passgate.scanners import SerialScanner
from passgated.config import load_config
from passgated.control import Command, ControlRefused, ControlRequest, send
from passgated.gate import Gate
from passgated.journal import Journal
from passgated.machine import MaintenanceMode, State, Timing
from passgated.policy import Direction
from tests.helpers import LOADED_WRITE_TIMEOUT_S, wait_for

KEY = generate_private_key()
LIST_KEY = generate_private_key()  # signs the "acme" deny lists
PULSE_S = 0.1


@pytest.fixture
def trust() -> TrustStore:
    store = TrustStore()
    store.add(KEY.public_key())
    return store


@pytest.fixture
def pty_scanner() -> Iterator[tuple[int, SerialScanner]]:
    master, slave = os.openpty()
    scanner = SerialScanner(os.ttyname(slave), dedupe=0)
    yield master, scanner
    scanner.close()
    os.close(master)
    os.close(slave)


def make_gate(tmp_path: Path, trust: TrustStore, sources, *, display: bool = False,
              config_file: Path | None = None, **overrides) -> Gate:
    config = load_config(
        config_file, zones=["A"], journal_path=tmp_path / "journal.db", pin_factory="mock",
        journal_write_timeout_s=LOADED_WRITE_TIMEOUT_S,
        display_listen="127.0.0.1:0", **overrides,
    )
    config = replace(config, timing=Timing(relay_pulse_s=PULSE_S, passage_timeout_s=2.0,
                                           refusal_display_s=0.2))
    gate = Gate(config, pin_factory=MockFactory(), trust=trust, sources=sources, display=display)
    gate.io.fire_loop.pin.drive_low()  # the fire loop is closed and healthy
    return gate


def scan(master: int, text: str) -> None:
    os.write(master, text.encode() + b"\r")


def walk_through(gate: Gate, direction: Direction = Direction.ENTRY) -> None:
    pin = gate.io.passage[direction].pin
    pin.drive_low()
    pin.drive_high()


def test_scan_to_relay_to_journal_and_restart_keeps_entries(tmp_path, trust, pty_scanner) -> None:
    master, scanner = pty_scanner
    single = issue_pass(KEY, valid_from=time.time() - 60, valid_until=time.time() + 3600,
                        zones=["A"], entries=1)
    gate = make_gate(tmp_path, trust, [(scanner, Direction.ENTRY)])
    relay, green, red = gate.io.relay_entry.pin, gate.io.green.pin, gate.io.red.pin
    gate.start()
    try:
        assert wait_for(lambda: scanner.health().connected)
        scan(master, single)
        assert wait_for(lambda: gate.state is State.GRANTED)
        assert wait_for(lambda: green.state and not red.state)  # outputs follow the state
        assert wait_for(lambda: not relay.state)  # the pulse ended by itself
        walk_through(gate)
        assert wait_for(lambda: gate.state is State.IDLE)
        on_times = [s.timestamp for s in relay.states[1:] if not s.state]
        # the pulse lasts its configured length and ends by itself, long before the passage timeout
        assert len(on_times) == 1 and PULSE_S * 0.9 <= on_times[0] < 2.0
        scan(master, single)
        assert wait_for(lambda: gate.state is State.REFUSED)
        assert wait_for(lambda: red.state and not green.state)
    finally:
        gate.stop()

    again = make_gate(tmp_path, trust, [])
    decisions = []
    again.on_decision = decisions.append
    again.start()
    try:
        from passgate.scanners import Scan

        again.submit_scan(Scan(single.encode(), "test", time.monotonic()))
        assert again.wait_settled(5)
    finally:
        again.stop()
    assert [d["reason"] for d in decisions] == ["used_up"]
    events = Journal(tmp_path / "journal.db", "gate-1", recover=False).events()
    kinds = [e["kind"] for e in events]
    assert kinds.count("redeemed") == 1 and kinds.count("decision") == 3
    assert all(e["latency_ms"] is not None for e in events if e["kind"] == "decision")


def test_timeout_keeps_the_entry(tmp_path, trust) -> None:
    from passgate.scanners import Scan

    gate = make_gate(tmp_path, trust, [])
    decisions: list[dict] = []
    gate.on_decision = decisions.append
    text = issue_pass(KEY, valid_from=time.time() - 60, valid_until=time.time() + 3600, entries=1)
    gate.start()
    try:
        gate.submit_scan(Scan(text.encode(), "test", time.monotonic()))
        assert wait_for(lambda: gate.state is State.GRANTED)
        assert wait_for(lambda: gate.state is State.IDLE, timeout=5)  # nobody walked: timeout
        gate.submit_scan(Scan(text.encode(), "test", time.monotonic()))
        assert wait_for(lambda: gate.state is State.GRANTED)
        walk_through(gate)
        assert gate.wait_settled(5)
    finally:
        gate.stop()
    assert [d["decision"] for d in decisions] == ["admit", "admit"]


def test_fire_loop_drives_release_before_anything_else(tmp_path, trust) -> None:
    from passgate.scanners import Scan

    gate = make_gate(tmp_path, trust, [])
    fire, release = gate.io.fire_loop.pin, gate.io.release.pin
    gate.start()
    try:
        assert gate.state is State.IDLE and not release.state
        fire.drive_high()  # loop opened (or wire cut)
        assert release.state and gate.io.relay_entry.pin.state  # driven synchronously in the callback
        assert wait_for(lambda: gate.state is State.EMERGENCY)
        text = issue_pass(KEY, valid_from=time.time() - 60, valid_until=time.time() + 3600)
        decisions: list[dict] = []
        gate.on_decision = decisions.append
        gate.submit_scan(Scan(text.encode(), "test", time.monotonic()))
        assert gate.wait_settled(5)
        assert decisions[-1]["reason"] == "emergency" and release.state
        with pytest.raises(ControlRefused, match="fire loop is still open"):
            gate.run_command(ControlRequest(Command.RESET))  # the operator is told, not answered "ok"
        assert gate.state is State.EMERGENCY and release.state
        fire.drive_low()
        assert gate.run_command(ControlRequest(Command.RESET))["state"] == "IDLE"
        # the published state follows the applied outputs: IDLE is never seen with release still on
        assert gate.state is State.IDLE and not release.state
    finally:
        gate.stop()


def test_fire_loop_open_at_boot(tmp_path, trust) -> None:
    gate = make_gate(tmp_path, trust, [])
    gate.io.fire_loop.pin.drive_high()  # a cut wire reads as an open loop
    gate.start()
    try:
        assert gate.state is State.EMERGENCY and gate.io.release.pin.state
    finally:
        gate.stop()


def test_forced_passage_is_journalled(tmp_path, trust) -> None:
    gate = make_gate(tmp_path, trust, [])
    gate.start()
    try:
        walk_through(gate)
        assert wait_for(lambda: "forced_passage" in [e["kind"] for e in gate.journal.events()])
    finally:
        gate.stop()


def test_status_over_http_control_over_the_socket(tmp_path, trust, pty_scanner) -> None:
    master, scanner = pty_scanner
    gate = make_gate(tmp_path, trust, [(scanner, Direction.ENTRY)], display=True)
    gate.start()
    try:
        assert wait_for(lambda: scanner.health().connected)
        scan(master, "PG1:NOT-A-PASS")
        assert wait_for(lambda: gate.status()["last_decision"] is not None)
        with urllib.request.urlopen(f"{gate.display.url}/status", timeout=5) as response:
            status = json.load(response)
        assert status["gate_id"] == "gate-1" and status["state"] in ("REFUSED", "IDLE")
        assert status["last_decision"]["reason"] == "unreadable"
        assert status["counts_today"] == {"unreadable": 1}
        assert status["scanners"][0]["connected"] is True
        request = urllib.request.Request(f"{gate.display.url}/control/maintenance",
                                         data=b'{"mode": "locked"}', method="POST",
                                         headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError, match="403"):  # an address is no credential
            urllib.request.urlopen(request, timeout=5)
        assert gate.state is not State.MAINTENANCE_LOCKED
        answer = send(gate.layout.control_socket, ControlRequest(Command.MAINTENANCE, MaintenanceMode.LOCKED))
        assert answer == {"ok": True, "command": "maintenance", "state": "MAINTENANCE_LOCKED"}
        assert gate.state is State.MAINTENANCE_LOCKED
    finally:
        gate.stop()


def test_outputs_safe_after_stop(tmp_path, trust) -> None:
    from passgate.scanners import Scan

    gate = make_gate(tmp_path, trust, [])
    pins = [gate.io.relay_entry.pin, gate.io.green.pin, gate.io.release.pin]
    gate.start()
    gate.submit_scan(Scan(issue_pass(KEY, valid_from=0, valid_until=2**31).encode(), "t", time.monotonic()))
    assert wait_for(lambda: gate.state is State.GRANTED)
    gate.stop()
    assert not any(pin.state for pin in pins)


def test_deny_lists_and_the_stale_policy(tmp_path, trust) -> None:
    from passgate.denylist import DenyList
    from passgate.scanners import Scan

    revoked_pass = issue_pass(KEY, valid_from=0, valid_until=2**31, pass_id=b"R" * 16)
    blocked_pass = issue_pass(KEY, valid_from=0, valid_until=2**31, pass_id=b"B" * 16)
    good = issue_pass(KEY, valid_from=0, valid_until=2**31)
    lists = tmp_path / "lists"
    lists.mkdir()
    DenyList.from_ids([b"R" * 16], kind="revoked", scope="acme").save(lists / "revoked.pgdl")
    DenyList.from_ids([b"B" * 16], kind="blocked", scope="acme").save(lists / "blocked.pgdl")
    (lists / "blocked.pgdl").write_bytes((lists / "blocked.pgdl").read_bytes()[:-3] + b"bad")
    gate = make_gate(tmp_path, trust, [], denylist_dir=lists, denylist_scope="acme")
    # a damaged local list is kept aside, and never taken for an empty fresh one
    assert [p.name.split(".")[0] for p in (lists / "damaged").iterdir()] == ["blocked"]
    decisions: list[dict] = []
    events: list[dict] = []
    gate.on_decision = decisions.append
    gate.start()
    try:
        for n, text in enumerate((revoked_pass, blocked_pass, good), 1):
            gate.submit_scan(Scan(text.encode(), "t", time.monotonic()))
            assert wait_for(lambda n=n: len(decisions) == n)
            events.append(gate.status()["last_decision"])
            if decisions[-1]["decision"] == "admit":
                assert wait_for(lambda: gate.state is State.GRANTED)
                walk_through(gate)
            assert gate.wait_settled(5)
        status = gate.status()
    finally:
        gate.stop()
    assert [d["reason"] for d in decisions] == ["revoked", "admit", "admit"]
    # the lost blocked list is stale: the default policy (guard) flags each admit for a check
    assert [e["guard_check"] for e in events] == [False, True, True]
    assert status["lists"]["revoked"]["entries"] == 1 and status["lists"]["blocked"]["version"] == 0
    assert "checksum" in status["lists"]["blocked"]["damaged"]
    assert status["lists_stale"]


@pytest.mark.parametrize(("lists", "expected"), [
    ('lists = ["revoked"]\n', "deny_list_stale"),  # configured, never supplied: stale, refused
    ("", "admit"),  # no list configured or supplied: absent, not stale
])
def test_stale_lists_refused_when_configured(tmp_path, trust, lists, expected) -> None:
    from passgate.scanners import Scan

    config_file = tmp_path / "gate.toml"
    config_file.write_text(f'[denylist]\ndir = "lists"\nstale_policy = "refuse"\n{lists}')
    gate = make_gate(tmp_path, trust, [], config_file=config_file)
    decisions: list[dict] = []
    gate.on_decision = decisions.append
    gate.start()
    try:
        gate.submit_scan(Scan(issue_pass(KEY, valid_from=0, valid_until=2**31).encode(), "t",
                              time.monotonic()))
        assert gate.wait_settled(5)
    finally:
        gate.stop()
    assert decisions[0]["reason"] == expected


def test_a_list_never_supplied_is_absent_not_stale(tmp_path, trust) -> None:
    """README's deny-list flow supplies only a revoked list: the blocked one must not count as stale."""
    from passgate.denylist import sign_snapshot

    write_keypair(KEY, tmp_path / "trust", "issuer")
    trust.add(LIST_KEY.public_key(), purpose="denylist", scope="acme")
    config_file = tmp_path / "gate.toml"
    config_file.write_text('[denylist]\ndir = "lists"\nstale_policy = "refuse"\nscope = "acme"\n')
    incoming = tmp_path / "lists" / "incoming"
    incoming.mkdir(parents=True)
    (incoming / "revoked-v1.pgdl").write_bytes(
        sign_snapshot(LIST_KEY, [b"R" * 16], kind="revoked", scope="acme", version=1))
    old = time.time() - 60
    os.utime(incoming / "revoked-v1.pgdl", (old, old))
    gate = make_gate(tmp_path, trust, [], config_file=config_file)
    gate.start()
    try:
        status = gate.status()
    finally:
        gate.stop()
    assert list(status["lists"]) == ["revoked"] and status["lists"]["revoked"]["version"] == 1
    assert not status["lists_stale"]


def test_turnstile_not_ready_is_a_fault(tmp_path, trust) -> None:
    from passgated.config import PinSpec

    config = load_config(None, journal_path=tmp_path / "journal.db",
                         journal_write_timeout_s=LOADED_WRITE_TIMEOUT_S)
    config = replace(config, pins={**config.pins, "turnstile_ready": PinSpec(26)})
    gate = Gate(config, pin_factory=MockFactory(), trust=trust, sources=[], display=False)
    gate.io.fire_loop.pin.drive_low()
    ready = gate.io.turnstile.pin
    ready.drive_low()  # the controller says ready
    gate.start()
    try:
        assert gate.state is State.IDLE
        ready.drive_high()  # controller fault
        assert wait_for(lambda: gate.state is State.FAULT)
        assert wait_for(lambda: gate.io.red.pin.state)
        ready.drive_low()
        assert wait_for(lambda: gate.state is State.IDLE)
    finally:
        gate.stop()
