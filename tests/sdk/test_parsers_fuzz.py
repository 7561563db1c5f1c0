"""Property tests for the parsers that the existing suites leave open, and regressions that the
harnesses in ``fuzz/`` found: each input here once escaped its parser as an untyped exception."""

from __future__ import annotations

from pathlib import Path

import cbor2
import pytest

from passgate import PassRefused, Reason, cose, generate_private_key, issue_pass, verify_pass
from passgate.denylist import DenyList, FormatError, _head, inspect, read_signed
from passgate.keys import TrustStore
from passgated.config import ConfigError, load_config

NOW = 1_800_000_000
KEY = generate_private_key()
TRUST = TrustStore()
TRUST.add(KEY.public_key())

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
