"""The OSDP source's own parts without a bus: the spec, the keys file, and the joining of QR payloads
sent in parts (property tests: any bytes from a reader end in a scan, a refusal or a drop, never in
an exception or a guess)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from passgate.scanners import ScanKind, ScannerSpecError, check_scanner
from passgate.scanners.osdp import (
    PART_MAGIC,
    PART_MAX,
    OsdpError,
    OsdpScanner,
    encode_parts,
    load_keys,
    parse_bus,
    store_key,
)
from passgate.wire import Direction
from tests.helpers import examples

NOW = 1000.0


def test_a_bus_spec_names_port_readers_directions_and_baud() -> None:
    bus = parse_bus("/dev/ttyUSB0?addr=1:entry,2:exit,5&baud=38400")
    assert bus.port == "/dev/ttyUSB0" and bus.baud == 38400
    assert bus.readers == {1: Direction.ENTRY, 2: Direction.EXIT, 5: None}
    assert parse_bus("socket://192.0.2.7:4001?addr=0").readers == {0: None}
    assert OsdpScanner.target_directions("/dev/x?addr=1:exit,2") == {Direction.EXIT}


@pytest.mark.parametrize(("target", "fragment"), [
    ("/dev/ttyUSB0", "name the readers' addresses"),
    ("?addr=1", "needs a port"),
    ("/dev/x?addr=127", "address is 0-126"),
    ("/dev/x?addr=one", "address is 0-126"),
    ("/dev/x?addr=1,1", "given twice"),
    ("/dev/x?addr=1:in", "entry or exit"),
    ("/dev/x?addr=1&baud=9601", "baud must be one of"),
    ("/dev/x?addr=1&parity=N", "unknown bus parameter"),
    ("/dev/x?addr=1&addr=2", "addr is given twice"),
])
def test_bad_bus_specs_are_refused_at_check_config(target: str, fragment: str) -> None:
    with pytest.raises(OsdpError, match=fragment):
        parse_bus(target)
    with pytest.raises(ScannerSpecError, match=fragment) as refused:
        check_scanner(f"osdp:{target}", {})
    assert str(refused.value).startswith("source: bad scanner spec")


def test_options_are_checked_like_every_source() -> None:
    assert check_scanner("osdp:/dev/x?addr=1", {"keys": "/k", "part_timeout": 0.5}) is OsdpScanner
    with pytest.raises(ScannerSpecError, match="part_timeout: must be positive"):
        check_scanner("osdp:/dev/x?addr=1", {"part_timeout": 0})
    with pytest.raises(ScannerSpecError, match="keys: expected str"):
        check_scanner("osdp:/dev/x?addr=1", {"keys": 7})
    with pytest.raises(ScannerSpecError, match="unknown option 'baud'"):
        check_scanner("osdp:/dev/x?addr=1", {"baud": 9600})  # the baud is part of the bus spec


def test_keys_file_round_trip_and_privacy(tmp_path: Path) -> None:
    path = tmp_path / "etc" / "osdp.keys"
    k1, k2 = secrets.token_bytes(16), secrets.token_bytes(16)
    store_key(path, 1, k1)
    store_key(path, 2, k2)
    store_key(path, 1, k2)  # replaced, not added
    assert load_keys(path) == {1: k2, 2: k2}
    assert path.stat().st_mode & 0o777 == 0o600
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".osdp-keys-")]  # no temp left
    path.chmod(0o640)
    with pytest.raises(OsdpError, match=r"read or written by others \(mode 0640\): chmod 600 it"):
        load_keys(path)
    path.chmod(0o600)
    link = tmp_path / "link.keys"
    link.symlink_to(path)
    with pytest.raises(OsdpError, match="cannot read"):
        load_keys(link)  # a symlink could point anywhere: refused
    with pytest.raises(OsdpError, match="no OSDP keys file"):
        load_keys(tmp_path / "missing")


@pytest.mark.parametrize("line", ["1 00112233", "x " + "00" * 16, "200 " + "00" * 16, "1 " + "zz" * 16])
def test_a_malformed_keys_line_is_refused_with_its_number(tmp_path: Path, line: str) -> None:
    path = tmp_path / "osdp.keys"
    path.write_text("# comment\n\n" + line + "\n")
    path.chmod(0o600)
    with pytest.raises(OsdpError, match=r"osdp.keys:3: expected 'ADDRESS KEY'"):
        load_keys(path)


def test_a_reader_without_a_key_is_refused_at_start(tmp_path: Path) -> None:
    path = tmp_path / "osdp.keys"
    store_key(path, 1, secrets.token_bytes(16))
    message = r'no key for reader 2 .* run passgated osdp install "osdp:/dev/null\?addr=2" --keys '
    with pytest.raises(OsdpError, match=message):
        OsdpScanner("/dev/null?addr=1,2", keys=str(path))


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> OsdpScanner:
    path = tmp_path_factory.mktemp("keys") / "osdp.keys"
    store_key(path, 1, secrets.token_bytes(16))
    return OsdpScanner("/dev/null?addr=1:exit", keys=str(path), max_len=600)


def feed(source: OsdpScanner, parts: list[bytes], *, expire: bool = True) -> list:
    """Every scan the parts make (and, with ``expire``, what a timeout makes of what is left)."""
    reader = source.readers[1]
    source._messages.clear()
    source._broken.clear()
    scans = [scan for part in parts for scan in source._part(reader, part, NOW)]
    if expire:
        scans += list(source._expire(NOW + source.part_timeout + 1))
    return scans


@settings(max_examples=examples(150, 2000), deadline=None)
@given(payload=st.binary(min_size=0, max_size=600), size=st.integers(1, PART_MAX),
       message=st.integers(0, 255))
def test_property_parts_join_to_the_payload(source: OsdpScanner, payload: bytes, size: int,
                                            message: int) -> None:
    scans = feed(source, encode_parts(payload, message, size))
    assert [(s.kind, s.bytes) for s in scans] == [(ScanKind.CODE, payload)]
    assert scans[0].direction is Direction.EXIT and scans[0].reader.endswith("#1")


@settings(max_examples=examples(150, 2000), deadline=None)
@given(payload=st.binary(min_size=2, max_size=600), size=st.integers(1, 60), data=st.data())
def test_property_a_lost_or_swapped_part_is_never_a_code(source: OsdpScanner, payload: bytes, size: int,
                                                         data: st.DataObject) -> None:
    parts = encode_parts(payload, 5, size)
    if len(parts) < 2:
        return
    i = data.draw(st.integers(0, len(parts) - 1))
    if data.draw(st.booleans()):
        del parts[i]
    else:
        j = data.draw(st.integers(0, len(parts) - 1).filter(lambda j: j != i))
        parts[i], parts[j] = parts[j], parts[i]
    scans = feed(source, parts)
    assert scans and all(s.kind is ScanKind.INCOMPLETE and s.bytes == b"" for s in scans)
    assert all("parts" in s.detail for s in scans)


@settings(max_examples=examples(300, 5000), deadline=None)
@given(st.lists(st.one_of(
    st.binary(max_size=128),
    st.builds(lambda m, i, n, body: PART_MAGIC + bytes((m, i, n)) + body, st.integers(0, 3),
              st.integers(0, 4), st.integers(0, 4), st.binary(max_size=123)),
), max_size=30))
def test_property_any_replies_end_in_a_scan_a_refusal_or_a_drop(source: OsdpScanner,
                                                                 replies: list[bytes]) -> None:
    dropped = source.health().dropped
    scans = feed(source, replies)
    for scan in scans:
        assert scan.kind in (ScanKind.CODE, ScanKind.INCOMPLETE)
        assert len(scan.bytes) <= source.max_len
        assert scan.kind is ScanKind.CODE or (scan.bytes == b"" and scan.detail)
    assert source.health().dropped >= dropped


def test_the_rest_of_a_refused_payload_is_counted_not_decided(source: OsdpScanner) -> None:
    parts = encode_parts(os.urandom(200), 4, 50)
    dropped = source.health().dropped
    scans = feed(source, [parts[0], parts[2], parts[3]], expire=False)
    assert [(s.kind, s.detail) for s in scans] == [
        (ScanKind.INCOMPLETE, "a part is missing or out of order: 1 of 4 parts arrived")]
    assert source.health().dropped - dropped == 2  # parts 3 and 4: one refusal, every part accounted for


def test_a_payload_over_max_len_is_refused_not_truncated(source: OsdpScanner) -> None:
    scans = feed(source, encode_parts(os.urandom(700), 1, 100))
    assert [(s.kind, s.detail) for s in scans] == [
        (ScanKind.INCOMPLETE, "longer than max_len (600 bytes): 7 of 7 parts arrived")]


def test_card_reads(source: OsdpScanner) -> None:
    reader = source.readers[1]
    raw, wiegand = source._osdp.CardFormat.Unspecified, source._osdp.CardFormat.Wiegand
    text = source._card(reader, {"format": raw, "length": 80, "data": b"PG1:ABCDEF"}, NOW)
    assert (text.kind, text.bytes) == (ScanKind.CODE, b"PG1:ABCDEF")
    for event in ({"format": wiegand, "length": 26, "data": b"\x12\x34\x56\x40"},
                  {"format": raw, "length": 32, "data": b"\x00\x01\x02\x03"},  # bytes, but no text
                  {"format": raw, "length": 30, "data": b"ABCD"},  # not whole bytes
                  {"format": raw}):
        assert source._card(reader, event, NOW).kind is ScanKind.CARD


def test_the_fuzz_oracle_catches_a_source_that_guesses(monkeypatch) -> None:
    """fuzz/fuzz_osdp.py's oracle fires on a source that would pass on what it has of a payload."""
    from fuzz import fuzz_osdp
    from passgate.scanners.base import Scan

    def guess(self, reader, message, why, now):  # type: ignore[no-untyped-def]
        self._messages.pop(reader.address, None)
        return Scan(b"".join(message.parts), self.source, now, reader=reader.name, direction=reader.direction)

    seeds = fuzz_osdp.seeds()
    fuzz_osdp.test_one_input(seeds["lost-part"])  # the real source: refused, the oracle is content
    monkeypatch.setattr(OsdpScanner, "_incomplete", guess)
    with pytest.raises(AssertionError, match="a code the reader never sent whole"):
        fuzz_osdp.test_one_input(seeds["lost-part"])


def test_check_config_finds_a_missing_key_before_the_gate_starts(tmp_path: Path, capsys) -> None:
    from passgated.cli import main

    trust = tmp_path / "trust"
    trust.mkdir()
    from passgate import generate_private_key
    from passgate.keys import public_pem

    (trust / "issuer.pub.pem").write_bytes(public_pem(generate_private_key()))
    keys = tmp_path / "osdp.keys"
    store_key(keys, 1, secrets.token_bytes(16))
    config = tmp_path / "gate.toml"
    config.write_text(f'[trust]\ndir = "{trust}"\n[journal]\npath = "{tmp_path / "j.db"}"\n'
                      f'[[scanner]]\nsource = "osdp:/dev/ttyUSB0?addr=1,2"\nkeys = "{keys}"\n')
    assert main(["check-config", str(config)]) == 2
    assert ("scanner[0]: no key for reader 2 in " + str(keys)) in capsys.readouterr().err
    store_key(keys, 2, secrets.token_bytes(16))
    assert main(["check-config", str(config)]) == 0


def test_install_names_a_port_it_cannot_open_and_writes_nothing(tmp_path: Path) -> None:
    from passgate.scanners.osdp import install_reader

    keys = tmp_path / "osdp.keys"
    with pytest.raises(OsdpError, match=r"cannot open /dev/ttyUSB-passgate-none: .*No such file"):
        install_reader("/dev/ttyUSB-passgate-none?addr=1", keys, timeout=1)
    assert not keys.exists()
