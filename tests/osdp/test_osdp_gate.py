"""OSDP readers in a simulated gate, both ends real: libosdp's own PeripheralDevice readers behind a
pty (``tests.osdp.bus``) and passgate's ``OsdpScanner`` built from a gate.toml inside
``SimulatedGate`` (gpiozero's MockFactory pins, a real SQLite journal). Waits on conditions."""

from __future__ import annotations

import os
import random
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import osdp
import pytest

from passgate import generate_private_key, issue_pass
from passgate.keys import public_pem
from passgate.scanners.osdp import OsdpScanner, encode_parts, load_keys, store_key
from passgated import gate as gate_module
from passgated.config import load_config
from passgated.journal import Journal
from passgated.machine import State
from passgated.simulate import SimulatedGate
from tests.helpers import LOADED_WRITE_TIMEOUT_S, wait_for
from tests.osdp.bus import Bus, Reader

KEY = generate_private_key()
PART_TIMEOUT_S = 5.0  # a loaded test machine can hold a reader's next part for over the default 1 s
ONLINE_S = 15.0  # secure channel set up: about 0.3 s alone, longer on a loaded machine
OFFLINE_S = 20.0  # libosdp declares a silent reader offline after 8 s


def a_pass(**claims: Any) -> str:
    return issue_pass(KEY, valid_from=time.time() - 60, valid_until=time.time() + 3600, **claims)


@pytest.fixture
def bus() -> Iterator[Bus]:
    with Bus() as b:
        yield b


def write_config(tmp_path: Path, source: str, *, keys: Path, extra: str = "",
                 directions: str = '["entry", "exit"]') -> Path:
    trust = tmp_path / "trust"
    trust.mkdir(exist_ok=True)
    (trust / "issuer.pub.pem").write_bytes(public_pem(KEY))
    path = tmp_path / "gate.toml"
    path.write_text(f"""
[gate]
id = "gate-osdp"
directions = {directions}

[trust]
dir = "{trust}"

[journal]
path = "{tmp_path / 'journal.db'}"
write_timeout_ms = 5000

[display]
listen = ""

[[scanner]]
source = "{source}"
keys = "{keys}"
retry = 0.5
part_timeout = {PART_TIMEOUT_S}
{extra}
""")
    return path


def keys_for(tmp_path: Path, **readers: bytes) -> Path:
    path = tmp_path / "osdp.keys"
    for address, key in readers.items():
        store_key(path, int(address.removeprefix("r")), key)
    return path


class Gate:
    """A simulated gate from a config, with every decision kept."""

    def __init__(self, config: Path) -> None:
        self.decisions: list[dict[str, Any]] = []
        loaded = load_config(config, journal_write_timeout_s=LOADED_WRITE_TIMEOUT_S)
        self.gate = SimulatedGate(loaded, walk_s=0.05, on_decision=self.decisions.append)
        self.gate.start()

    def __enter__(self) -> Gate:
        return self

    def __exit__(self, *_: object) -> None:
        self.gate.stop()

    @property
    def scanner(self) -> OsdpScanner:
        source = self.gate.sources[0][0]
        assert isinstance(source, OsdpScanner)
        return source

    def reader(self, address: int) -> Any:
        """The reader's health, once the source reported its readers."""
        found = [r for r in self.scanner.health().readers if r.name.endswith(f"#{address}")]
        return found[0] if found else None

    def ready(self, *addresses: int) -> bool:
        """In service, with every reader named online over the secure channel."""
        readers = [self.reader(address) for address in addresses]
        return self.gate.state is State.IDLE and all(r is not None and r.secure for r in readers)

    def decided(self, n: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        assert wait_for(lambda: len(self.decisions) >= n, timeout), self.decisions
        assert self.gate.wait_settled(10)
        return self.decisions


def one_reader(tmp_path: Path, bus: Bus, facing: str = "") -> tuple[Reader, Path]:
    """A running reader at address 1 (facing that way, when given) and a gate.toml with its key."""
    key = secrets.token_bytes(16)
    reader = bus.add(1, key)
    reader.start()
    spec = f"osdp:{bus.port}?addr=1" + (f":{facing}" if facing else "")
    return reader, write_config(tmp_path, spec, keys=keys_for(tmp_path, r1=key))


def leds(reader: Reader) -> list[tuple[int, bool]]:
    """The LED commands a reader got: (colour, temporary)."""
    return [(c["on_color"], c["temporary"]) for c in reader.commands if c["command"] == osdp.Command.LED]


def buzzes(reader: Reader) -> list[int]:
    return [c["rep_count"] for c in reader.commands if c["command"] == osdp.Command.Buzzer]


def test_a_qr_payload_in_parts_is_decided_and_the_reader_shows_the_decision(
        tmp_path: Path, bus: Bus, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gate_module, "SCANNERS_AT_BOOT_S", ONLINE_S)
    reader, config = one_reader(tmp_path, bus, "entry")
    with Gate(config) as gate:
        assert gate.ready(1)  # boot waited for the secure channel: in service when start() returns
        assert wait_for(lambda: (osdp.CommandLEDColor.Blue, False) in leds(reader))  # ready: steady blue
        text = a_pass(entries=1).encode()
        assert len(text) > 64  # more than one card read can carry: it comes in parts
        reader.show_parts(encode_parts(text, message=1, size=40))
        first = gate.decided(1)[0]
        assert (first["decision"], first["reason"], first["direction"]) == ("admit", "admit", "entry")
        assert wait_for(lambda: (osdp.CommandLEDColor.Green, True) in leds(reader))
        assert wait_for(lambda: buzzes(reader) == [1])
        relay = gate.gate.io.relay_entry.pin
        assert any(s.state for s in relay.states)  # the entry relay was pulsed for it
        reader.show_parts(encode_parts(text, message=2, size=40))  # the one entry is used now
        assert gate.decided(2)[1]["reason"] == "used_up"
        assert wait_for(lambda: (osdp.CommandLEDColor.Red, True) in leds(reader))
        assert wait_for(lambda: buzzes(reader) == [1, 3])
        assert wait_for(lambda: gate.gate.state is State.IDLE and not gate.gate.machine.next_deadline())
        time.sleep(0.3)  # a few polls: any command still queued reaches the reader
        # back to ready twice (after the passage, after the refusal's display) and the steady blue was
        # sent once: a decision's LED is temporary and returns to it by itself, each command costs a poll
        assert leds(reader).count((osdp.CommandLEDColor.Blue, False)) == 1
    events = Journal(tmp_path / "journal.db", "gate-osdp", recover=False).events()
    assert not [e for e in events if e["kind"] == "state" and "FAULT" in e["detail"]]  # none at boot


def test_cards_broken_parts_and_noise_are_refused_with_reasons(tmp_path: Path, bus: Bus) -> None:
    reader, config = one_reader(tmp_path, bus)
    with Gate(config) as gate:
        assert wait_for(lambda: gate.ready(1), ONLINE_S)
        reader.show_card()  # a Wiegand card number: no signature
        assert gate.decided(1)[0]["reason"] == "card_not_accepted"
        parts = encode_parts(a_pass().encode(), message=3, size=50)
        reader.show_parts([parts[0], parts[2]])  # the middle part is lost
        assert gate.decided(2)[1]["reason"] == "incomplete_read"
        reader.show_parts(parts[:1])  # and the rest never comes
        assert gate.decided(3, timeout=PART_TIMEOUT_S + 10)[2]["reason"] == "incomplete_read"
        reader.show_code("NOT-A-PASS")  # a short code in one card read
        assert gate.decided(4)[3]["reason"] == "unreadable"
        reader.show_parts([b"VENDOR-STATUS"])  # a manufacturer reply that is no QR part: dropped
        # dropped: that reply, and the third part of the payload refused when it came without the second
        assert wait_for(lambda: gate.scanner.health().dropped == 2)
    events = Journal(tmp_path / "journal.db", "gate-osdp", recover=False).events()
    details = [e["detail"] for e in events if e["kind"] == "decision"]
    assert "a card number (26 bits)" in details[0]
    assert f"1 of {len(parts)} parts arrived" in details[1] and "did not come within" in details[2]


def entry_and_exit(tmp_path: Path, bus: Bus) -> tuple[Reader, Reader, Path]:
    """Two running readers on the bus, 1 facing in and 2 out, and a gate.toml that has their keys."""
    k1, k2 = secrets.token_bytes(16), secrets.token_bytes(16)
    entry, exit_ = bus.add(1, k1), bus.add(2, k2)
    entry.start()
    exit_.start()
    config = write_config(tmp_path, f"osdp:{bus.port}?addr=1:entry,2:exit",
                          keys=keys_for(tmp_path, r1=k1, r2=k2))
    return entry, exit_, config


def test_two_readers_on_one_bus_are_entry_and_exit(tmp_path: Path, bus: Bus) -> None:
    entry, exit_, config = entry_and_exit(tmp_path, bus)
    with Gate(config) as gate:
        assert wait_for(lambda: gate.ready(1, 2), ONLINE_S)
        exit_.show_parts(encode_parts(a_pass().encode(), message=9))
        assert gate.decided(1)[0]["direction"] == "exit"
        entry.show_parts(encode_parts(a_pass().encode(), message=9))
        assert gate.decided(2)[1]["direction"] == "entry"
        verdicts = [(d["decision"], d["reason"]) for d in gate.decisions]
        assert verdicts == [("admit", "admit")] * 2, gate.decisions
        assert any(s.state for s in gate.gate.io.relay_exit.pin.states)
        # each decision lit the reader it came from: two greens in all, one each
        assert wait_for(lambda: (osdp.CommandLEDColor.Green, True) in leds(entry)
                        and (osdp.CommandLEDColor.Green, True) in leds(exit_))
        assert leds(entry).count((osdp.CommandLEDColor.Green, True)) == 1


def test_a_reader_that_goes_offline_faults_the_gate_until_it_is_back(tmp_path: Path, bus: Bus) -> None:
    entry, exit_, config = entry_and_exit(tmp_path, bus)
    with Gate(config) as gate:
        assert wait_for(lambda: gate.ready(1, 2), ONLINE_S)
        exit_.unplug()  # its cable cut: it stops answering, the other reader goes on
        assert wait_for(lambda: gate.gate.state is State.FAULT, OFFLINE_S)
        fault = gate.gate.machine.fault or ""
        assert "Scanner disconnected" in fault and f"osdp:{bus.port}#2 offline" in fault
        assert wait_for(lambda: (osdp.CommandLEDColor.Red, False) in leds(entry))  # the others show it
        entry.show_parts(encode_parts(a_pass().encode()))
        assert gate.decided(1)[0]["reason"] == "out_of_service"  # refused, not lost
        exit_.plug()
        assert wait_for(lambda: gate.gate.state is State.IDLE, OFFLINE_S)
    events = Journal(tmp_path / "journal.db", "gate-osdp", recover=False).events()
    links = [(e["kind"], e["detail"]) for e in events if e["kind"].startswith("reader_")]
    assert links == [("reader_offline", f"osdp:{bus.port}#2"), ("reader_online", f"osdp:{bus.port}#2")]


def test_a_reader_without_the_right_key_stays_out(tmp_path: Path, bus: Bus) -> None:
    impostor = bus.add(1, secrets.token_bytes(16))  # not the key the gate holds
    impostor.start()
    config = write_config(tmp_path, f"osdp:{bus.port}?addr=1",
                          keys=keys_for(tmp_path, r1=secrets.token_bytes(16)))
    with Gate(config) as gate:
        assert wait_for(lambda: gate.gate.state is State.FAULT, ONLINE_S)
        time.sleep(3)  # several attempts to bring it back (retry 0.5 s): none falls back to SCBK-D
        assert gate.gate.state is State.FAULT and not gate.reader(1).connected
        impostor.show_parts(encode_parts(a_pass().encode()))
        time.sleep(0.5)
    assert gate.decisions == []  # nothing it sends reaches the gate
    assert not impostor.keys  # and it was never sent a key


def tamper_records(where: Path) -> list[tuple[str, str]]:
    events = Journal(where / "journal.db", "gate-osdp", recover=False).events()
    return [(e["kind"], e["detail"]) for e in events if e["kind"].startswith("tamper")]


def test_tamper_is_an_event_and_faults_by_default(tmp_path: Path, bus: Bus) -> None:
    k1, k2 = secrets.token_bytes(16), secrets.token_bytes(16)
    faulting, recording = Bus(), bus
    try:
        readers = []
        for b, k in ((faulting, k1), (recording, k2)):
            r = b.add(1, k)
            r.start()
            readers.append(r)
        cases = [(faulting, k1, "", State.FAULT), (recording, k2, 'on_tamper = "event"', State.IDLE)]
        for (b, k, extra, expected), reader in zip(cases, readers, strict=True):
            where = tmp_path / expected
            where.mkdir()
            config = write_config(where, f"osdp:{b.port}?addr=1", keys=keys_for(where, r1=k), extra=extra)
            with Gate(config) as gate:
                assert wait_for(lambda g=gate: g.ready(1), ONLINE_S)
                assert reader.tamper(True)
                assert wait_for(lambda g=gate: g.reader(1).tamper)
                assert wait_for(lambda g=gate, e=expected: g.gate.state is e and g.gate.wait_settled(5))
                time.sleep(0.3)
                assert gate.gate.state is expected
                assert reader.tamper(False)
                expected_records = [("tamper", f"osdp:{b.port}#1"), ("tamper_cleared", f"osdp:{b.port}#1")]
                assert wait_for(lambda w=where, r=expected_records: tamper_records(w) == r)
                assert wait_for(lambda g=gate: g.gate.state is State.IDLE)
    finally:
        faulting.close()


def test_hostile_frames_never_crash_the_gate(tmp_path: Path, bus: Bus) -> None:
    reader, config = one_reader(tmp_path, bus)
    rng = random.Random(18)
    with Gate(config) as gate:
        assert wait_for(lambda: gate.ready(1), ONLINE_S)
        # noise, then frames with OSDP's start byte and plausible headers but lies inside
        bus.inject(rng.randbytes(4096))
        for _ in range(200):
            length = rng.randrange(0, 300)
            frame = bytes([0x53, rng.choice((0x81, 0x01, 0x7F)), length & 0xFF, length >> 8,
                           rng.randrange(256)]) + rng.randbytes(rng.randrange(0, 64))
            bus.inject(frame)
        time.sleep(0.5)
        assert gate.gate.loop.errors == 0 and all(t.is_alive() for t in gate.gate._source_threads)
        # the reader comes back (the noise may have cost it its session) and is decided again
        assert wait_for(lambda: gate.ready(1), OFFLINE_S)
        reader.show_parts(encode_parts(a_pass().encode()))
        assert gate.decided(1, timeout=15)[0]["decision"] == "admit"


def test_install_sets_a_fresh_key_once_and_the_gate_then_uses_it(tmp_path: Path, bus: Bus) -> None:
    reader = bus.add(1, None)  # a new reader: install mode (it accepts SCBK-D)
    reader.start()
    keys = tmp_path / "osdp.keys"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "passgated.cli", "osdp", "install", f"osdp:{bus.port}?addr=1",
               "--keys", str(keys), "--timeout", "15"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    assert "reader 1: a fresh key is set and proven" in done.stdout
    assert oct(keys.stat().st_mode & 0o777) == "0o600"
    assert reader.keys and load_keys(keys) == {1: reader.keys[-1]}
    again = subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)
    assert again.returncode == 2 and "already has a key" in again.stderr  # once: no silent re-keying
    reader.stop()
    with Bus() as second:  # the reader, restarted with the key it was given (no install mode)
        keyed = second.add(1, reader.keys[-1])
        keyed.start()
        with Gate(write_config(tmp_path, f"osdp:{second.port}?addr=1", keys=keys)) as gate:
            assert wait_for(lambda: gate.ready(1), ONLINE_S)


def test_passgated_simulate_runs_an_osdp_gate(tmp_path: Path, bus: Bus) -> None:
    reader, config = one_reader(tmp_path, bus, "exit")
    process = subprocess.Popen([sys.executable, "-m", "passgated.cli", "simulate", "--config", str(config),
                                "--walk-ms", "50"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert wait_for(lambda: any(c["command"] == osdp.Command.LED for c in reader.commands), ONLINE_S)
        reader.show_parts(encode_parts(a_pass().encode()))
        assert process.stdout is not None
        line = process.stdout.readline()
    finally:
        process.terminate()
        process.wait(10)
    assert '"decision": "admit"' in line and '"direction": "exit"' in line, line


def test_the_keys_file_must_be_private(tmp_path: Path, bus: Bus) -> None:
    keys = keys_for(tmp_path, r1=secrets.token_bytes(16))
    keys.chmod(0o644)
    config = write_config(tmp_path, f"osdp:{bus.port}?addr=1", keys=keys)
    done = subprocess.run([sys.executable, "-m", "passgated.cli", "simulate", "--config", str(config)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "can be read or written by others (mode 0644): chmod 600 it" in done.stderr
    assert "Traceback" not in done.stderr
