"""Property tests for the parsers that the existing suites leave open, and regressions that the
harnesses in ``fuzz/`` found: each input here once escaped its parser as an untyped exception."""

from __future__ import annotations

import math
import zlib
from pathlib import Path
from typing import Any

import cbor2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from passgate import PassRefused, Reason, base45, cose, generate_private_key, issue_pass, verify_pass
from passgate.denylist import (
    DenyList,
    DenyListError,
    FormatError,
    _head,
    inspect,
    read_signed,
    sign_delta,
    sign_snapshot,
)
from passgate.keys import TrustStore, key_id
from passgate.passes import CLAIM_CTI, CLAIM_EXP, CLAIM_NBF, PREFIX, Pass
from passgated.config import SECTIONS, ConfigError, load_config, parse_config
from tests.helpers import examples

NOW = 1_800_000_000
KEY = generate_private_key()
TRUST = TrustStore()  # KEY signs passes and the "acme" lists: one key in two roles
TRUST.add(KEY.public_key())
TRUST.add(KEY.public_key(), purpose="denylist", scope="acme")

CBOR_SCALARS = (st.none() | st.booleans() | st.integers() | st.floats() | st.binary(max_size=20)
                | st.text(max_size=10))
CBOR_VALUES = st.recursive(
    CBOR_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.integers(-8, 8) | st.text(max_size=4),
                                                                inner, max_size=4),
    max_leaves=12,
)
IDS = [bytes([i]) * 16 for i in range(8)]
SNAPSHOT = sign_snapshot(KEY, IDS[:4], kind="blocked", scope="acme", version=2, issued_at=1000)
DELTA = sign_delta(KEY, kind="blocked", scope="acme", base=2, adds=IDS[4:], removes=IDS[:1],
                   issued_at=1001)


# --- COSE ----------------------------------------------------------------------------------


@given(st.binary(max_size=300))
@settings(max_examples=examples(100, 300))
def test_cose_decode_of_arbitrary_bytes_only_raises_cose_errors(data: bytes) -> None:
    for candidate in (data, b"\xd2" + data, b"\x84" + data):
        try:
            msg = cose.decode_sign1(candidate)
            assert msg.kid is None or isinstance(msg.kid, bytes)
            assert msg.alg in cose.ALGORITHM_NAMES
        except cose.CoseError:
            continue


@given(header=st.dictionaries(st.integers(-8, 8), CBOR_VALUES, max_size=4), unprotected=CBOR_VALUES)
@settings(max_examples=examples(100, 300))
def test_any_header_values_only_raise_cose_errors(header: dict[int, Any], unprotected: Any) -> None:
    """Header values are read (alg, kid) before any signature check, so they are attacker input."""
    envelope = cbor2.dumps([cbor2.dumps(header), unprotected, b"", bytes(64)])
    with pytest.raises(cose.CoseError):
        cose.verify_sign1(envelope, KEY.public_key())


# --- passes: content a trusted key really signed ----------------------------------------------

CLAIMS = st.fixed_dictionaries(
    {CLAIM_NBF: st.integers(), CLAIM_EXP: st.integers(), CLAIM_CTI: st.binary(min_size=16, max_size=16)},
    optional={key: CBOR_VALUES for key in (1, 6, -1, -2, -3, -4, -5)},
)


@given(claims=CLAIMS | st.dictionaries(st.integers(-8, 8), CBOR_VALUES, max_size=8))
@settings(max_examples=examples(100, 300))
def test_signed_arbitrary_claims_verify_or_are_refused(claims: dict[int, Any]) -> None:
    """Random bytes never get signed, so only here do the claim checks and the time-window texts
    meet hostile values (huge dates, wrong types) behind a valid signature."""
    text = PREFIX + base45.encode(cose.sign1(cbor2.dumps(claims), KEY, kid=key_id(KEY)))
    try:
        p = verify_pass(text, TRUST, now=NOW)
    except PassRefused as exc:
        assert isinstance(exc.reason, Reason)
        return
    assert isinstance(p, Pass)
    signed = (claims[CLAIM_CTI], claims[CLAIM_NBF], claims[CLAIM_EXP])
    assert (p.pass_id, p.valid_from, p.valid_until) == signed
    assert p.valid_from - 60 <= NOW < p.valid_until + 60


def test_alg_swapped_from_es256_to_eddsa_is_refused() -> None:
    """Issue 7 item 2: test_passes swaps EdDSA to ES256; this is the other direction (an ES256
    signature presented as EdDSA under the ES256 key's kid)."""
    es_key = generate_private_key("es256")
    text = issue_pass(es_key, valid_from=NOW, valid_until=NOW + 60, issued_at=NOW)
    msg = cose.decode_sign1(base45.decode(text[len(PREFIX):]))
    protected = cbor2.dumps({cose.HEADER_ALG: cose.EDDSA, cose.HEADER_KID: msg.kid})
    swapped = PREFIX + base45.encode(cbor2.dumps([protected, {}, msg.payload, msg.signature]))
    trust = TrustStore()
    trust.add(es_key.public_key())
    with pytest.raises(PassRefused) as info:
        verify_pass(swapped, trust, now=NOW)
    assert info.value.reason is Reason.BAD_SIGNATURE
    assert verify_pass(text, trust, now=NOW).alg == cose.ES256


# --- deny lists ----------------------------------------------------------------------------


def _refused_everywhere(data: bytes, tmp_path: Path) -> None:
    """Every reader refuses ``data`` with a DenyListError: bytes, path, inspect, local load."""
    path = tmp_path / "list.pgdl"
    path.write_bytes(data)
    for source in (data, path):
        with pytest.raises(DenyListError):
            read_signed(source, TRUST)
    with pytest.raises(DenyListError):
        DenyList.load(path)


@pytest.mark.parametrize("original", [SNAPSHOT, DELTA], ids=["snapshot", "delta"])
def test_every_single_bit_flip_of_a_signed_list_is_refused(original: bytes) -> None:
    assert read_signed(original, TRUST)
    for bit in range(len(original) * 8):
        flipped = bytearray(original)
        flipped[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(DenyListError):
            read_signed(bytes(flipped), TRUST)


@given(
    original=st.sampled_from([SNAPSHOT, DELTA]),
    edits=st.lists(st.tuples(st.integers(0, 10**6), st.sampled_from(["set", "insert", "delete"]),
                             st.integers(0, 255)), min_size=1, max_size=6),
)
@settings(max_examples=examples(100, 300), suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_mutated_signed_lists_never_load(original: bytes, edits: list[tuple[int, str, int]],
                                        tmp_path: Path) -> None:
    """Overwrites, insertions and deletions anywhere: refused unless the bytes are unchanged."""
    data = bytearray(original)
    for position, edit, value in edits:
        at = position % (len(data) + 1)
        if edit == "insert":
            data.insert(at, value)
        elif at < len(data):
            if edit == "set":
                data[at] = value
            else:
                del data[at]
    if bytes(data) == original:
        return
    _refused_everywhere(bytes(data), tmp_path)
    try:
        summary = inspect(bytes(data), TRUST)
    except DenyListError:
        return
    assert summary["ok"] is not True


@given(header=st.dictionaries(st.sampled_from(["fmt", "hash", "type", "kind", "scope", "version",
                                                "issued_at", "count", "signer", "digest"]),
                              CBOR_VALUES, max_size=10),
       entries=st.lists(st.integers(0, 2**64 - 1), max_size=8))
@settings(max_examples=examples(100, 300), suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_local_files_with_any_header_only_raise_deny_list_errors(
    header: dict[str, Any], entries: list[int], tmp_path: Path
) -> None:
    """Local files are read without a signature, so their header is parsed on trust: any value."""
    head = _head(cbor2.dumps(header))
    body = head + np.array(entries, dtype="<u8").tobytes()
    path = tmp_path / "local.pgdl"
    path.write_bytes(body + zlib.crc32(body).to_bytes(4, "little"))
    try:
        loaded = DenyList.load(path)
    except DenyListError:
        return
    assert loaded.keys.tolist() == sorted(set(entries)) == entries


# --- the gate's config ---------------------------------------------------------------------

TOML_SCALARS = (st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats() | st.text(max_size=12)
                | st.sampled_from(["entry", "exit", "both", "mock", "guard", "127.0.0.1:8080", "stdin:"]))
TOML_VALUES = st.recursive(
    TOML_SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)


@st.composite
def configs(draw: st.DrawFn) -> dict[str, Any]:
    """Config mappings with the real section and key names (so validation is reached)."""
    data: dict[str, Any] = {}
    for section in draw(st.lists(st.sampled_from(sorted(SECTIONS)), max_size=4, unique=True)):
        keys = st.sampled_from(sorted(SECTIONS[section])) | st.text(max_size=6)
        table = draw(st.dictionaries(keys, TOML_VALUES, max_size=4))
        data[section] = [table] if section == "scanner" else table
    return data


@given(configs() | st.dictionaries(st.text(max_size=8), TOML_VALUES, max_size=3))
@settings(max_examples=examples(150, 500))
def test_any_config_mapping_is_valid_or_a_config_error(data: dict[str, Any]) -> None:
    try:
        config = parse_config(data)
    except ConfigError:
        return
    numbers = [config.timing.relay_pulse_s, config.max_list_age_s, config.retention_days,
               config.policy.skew_s, config.policy.anti_passback_timeout_s]
    assert all(math.isfinite(n) for n in numbers)


@given(content=st.text(max_size=300) | st.binary(max_size=300))
@settings(max_examples=examples(100, 300), suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_config_file_loads_or_is_a_config_error(content: str | bytes, tmp_path: Path) -> None:
    path = tmp_path / "gate.toml"
    if isinstance(content, str):
        path.write_text(content, errors="surrogatepass")
    else:
        path.write_bytes(content)
    try:
        load_config(path)
    except ConfigError:
        return


# --- regressions found by fuzz/ ------------------------------------------------------------


@pytest.mark.parametrize("alg", [[1], {}, {-8: 1}], ids=["list", "map", "map-with-key"])
def test_unhashable_alg_is_unsupported_not_a_type_error(alg: object) -> None:
    """fuzz_cose: ``Sign1.alg`` looked an unhashable header value up in a dict (TypeError)."""
    envelope = cbor2.dumps(cbor2.CBORTag(18, [cbor2.dumps({1: alg}), {}, b"", b""]))
    with pytest.raises(cose.UnsupportedAlgorithmError):
        _ = cose.decode_sign1(envelope).alg
    with pytest.raises(FormatError):  # a deny list reads alg before any signature check
        read_signed(_head(envelope), TrustStore())


def test_float_alg_is_not_taken_for_an_integer_one() -> None:
    """-8.0 hashes like -8 (EdDSA); COSE algorithms are integers, so it is unsupported."""
    envelope = cbor2.dumps([cbor2.dumps({1: -8.0}), {}, b"", b""])
    with pytest.raises(cose.UnsupportedAlgorithmError):
        _ = cose.decode_sign1(envelope).alg


@pytest.mark.parametrize("file_type", [[], {}, ["local"]], ids=["list", "map", "list-of-str"])
def test_unhashable_file_type_is_a_format_error(file_type: object, tmp_path: Path) -> None:
    """fuzz_denylist: the header's ``type`` was looked up in a dict before being checked (TypeError),
    in ``inspect`` and in ``DenyList.load`` before the checksum."""
    header = {"fmt": 1, "hash": "sha256/8", "type": file_type, "kind": "blocked", "scope": "",
              "version": 1, "issued_at": 0, "count": 0}
    data = _head(cbor2.dumps(header)) + bytes(4)
    with pytest.raises(FormatError, match="file type"):
        inspect(data)
    path = tmp_path / "local.pgdl"
    path.write_bytes(data)
    with pytest.raises(FormatError, match="file type"):
        DenyList.load(path)


def test_deeply_nested_toml_is_a_config_error(tmp_path: Path) -> None:
    """fuzz_config: tomllib recurses once per nesting level, so 500 ``[`` raised RecursionError."""
    path = tmp_path / "gate.toml"
    path.write_text("zones = " + "[" * 5000)
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path)


@pytest.mark.parametrize(
    "toml",
    [
        "[policy]\nskew_seconds = nan",  # every time-window comparison with NaN is False: no expiry
        "[policy]\nanti_passback_minutes = -nan",
        "[denylist]\nmax_age_hours = inf",
        "[timing]\nrelay_pulse_ms = nan",
        "[hub]\nurl = 'https://hub'\ntoken = 't'\ninterval_seconds = inf",
    ],
)
def test_non_finite_numbers_are_config_errors(toml: str, tmp_path: Path) -> None:
    """fuzz_config's invariant (every accepted number finite): TOML's nan and inf passed every check
    (``nan <= 0`` is False)."""
    path = tmp_path / "gate.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError, match="finite"):
        load_config(path)


@pytest.mark.parametrize(
    ("valid_from", "valid_until", "reason"),
    [
        (NOW * 1000, NOW * 1000 + 1, Reason.NOT_YET_VALID),  # an issuer writing milliseconds
        (-(2**40), -(2**40) + 1, Reason.EXPIRED),
        (2**62, 2**63, Reason.NOT_YET_VALID),
    ],
)
def test_signed_pass_with_dates_beyond_datetime_is_refused(
    valid_from: int, valid_until: int, reason: Reason
) -> None:
    """The refusal text formats the date, and ``datetime`` stops at year 9999: ValueError or
    OSError escaped ``verify_pass`` (and the gate's policy) for a validly signed pass."""
    text = issue_pass(KEY, valid_from=valid_from, valid_until=valid_until, issued_at=NOW)
    with pytest.raises(PassRefused) as info:
        verify_pass(text, TRUST, now=NOW)
    assert info.value.reason is reason
    assert str(valid_from if reason is Reason.NOT_YET_VALID else valid_until) in info.value.detail
