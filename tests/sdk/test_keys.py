"""Key files and trust directories: modes, refusals, windows from trust.toml, clear errors."""

import stat
from pathlib import Path

import pytest

from passgate import KeyFileError, TrustStore, generate_private_key, issue_pass, key_id, verify_pass
from passgate.keys import load_private_key, load_public_key, write_keypair


def test_keypair_files(tmp_path: Path) -> None:
    key = generate_private_key("es256")
    priv, pub = write_keypair(key, tmp_path / "keys", "acme")
    assert stat.S_IMODE(priv.stat().st_mode) == 0o600
    assert key_id(load_private_key(priv)) == key_id(load_public_key(pub)) == key_id(key)
    with pytest.raises(FileExistsError):
        write_keypair(generate_private_key(), tmp_path / "keys", "acme")
    assert key_id(load_private_key(priv)) == key_id(key)  # untouched


def test_kid_is_sha256_of_spki_prefix() -> None:
    import hashlib

    from cryptography.hazmat.primitives import serialization

    key = generate_private_key()
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert key_id(key) == hashlib.sha256(der).digest()[:8]


def test_trust_directory_skips_private_keys_and_reads_manifest(tmp_path: Path) -> None:
    old, new = generate_private_key(), generate_private_key("es256")
    write_keypair(old, tmp_path, "old")
    write_keypair(new, tmp_path, "new")
    (tmp_path / "trust.toml").write_text(
        '[[key]]\nfile = "old.pub.pem"\nissuer = "ACME"\nretired = 2027-01-01T00:00:00Z\n'
    )
    trust = TrustStore.load(tmp_path)
    assert len(trust) == 2
    (old_entry,) = trust.candidates(key_id(old))
    assert old_entry.issuer == "ACME" and old_entry.retired.year == 2027
    text = issue_pass(old, valid_from=0, valid_until=2**31, issued_at=1_700_000_000)
    assert verify_pass(text, trust, now=1_700_000_000).issuer == "ACME"


def test_single_file_trust(tmp_path: Path) -> None:
    key = generate_private_key()
    _, pub = write_keypair(key, tmp_path, "k")
    assert [k.kid for k in TrustStore.load(pub)] == [key_id(key)]


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"bad.pem": "not a key"}, "bad.pem"),
        ({}, "no public keys"),
        ({"trust.toml": '[[key]]\nfile = "gone.pem"\n'}, "gone.pem"),
        ({"trust.toml": "[[key]\n"}, "trust.toml"),
        ({"trust.toml": '[[key]]\nfile = "x.pem"\nretired = "soon"\n'}, "retired"),
        ({"trust.toml": '[[key]]\nfile = "x.pem"\ncolour = 1\n'}, "colour"),
        ({"trust.toml": "x = " + "[" * 2000 + "]" * 2000 + "\n"}, "nested too deeply"),
    ],
)
def test_bad_trust_directories_name_the_problem(tmp_path: Path, files, message) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(KeyFileError, match=message):
        TrustStore.load(tmp_path)


def test_missing_trust_path(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="no such"):
        TrustStore.load(tmp_path / "nowhere")
