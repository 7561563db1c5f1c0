"""What a copy of the hub's database holds, and every form of a private key a grep would find."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from sqlalchemy.engine import make_url

from passgate.cose import PrivateKey

from .pgcluster import bindir

PEM_MARKERS = (b"PRIVATE KEY", b"PRIVATE-KEY")  # "BEGIN PRIVATE KEY", "BEGIN EC PRIVATE KEY"
# the start of every PKCS#8 DER of an Ed25519 key, and of a P-256 key (as OpenSSL writes them)
DER_PREFIXES = (bytes.fromhex("302e020100300506032b657004220420"),
                bytes.fromhex("308187020100301306072a8648ce3d020106082a8648ce3d030107"))


def database_bytes(url: str) -> bytes:
    """The SQLite file and its write-ahead log as they are on disk, or a plain ``pg_dump``."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = Path(parsed.database or "")
        wal = path.with_name(path.name + "-wal")
        return path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")
    server = bindir()
    assert server is not None
    return subprocess.run([str(server / "pg_dump"), "-h", parsed.host or "127.0.0.1",
                           "-p", str(parsed.port), "-U", parsed.username or "postgres",
                           parsed.database or ""], check=True, capture_output=True, timeout=120).stdout


def secret_forms(key: PrivateKey) -> dict[str, bytes]:
    """The key's secret as raw bytes (Ed25519 seed, P-256 scalar) and its PKCS#8 DER and PEM,
    each also in hex (as ``pg_dump`` writes bytea) and base64."""
    if isinstance(key, ed25519.Ed25519PrivateKey):
        raw = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                serialization.NoEncryption())
    else:
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        raw = key.private_numbers().private_value.to_bytes(32, "big")
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    forms = {"raw": raw, "der": der}
    for name, value in list(forms.items()):
        forms[f"{name} hex"] = value.hex().encode()
        forms[f"{name} base64"] = base64.b64encode(value)
    return forms


def leaks(dump: bytes, keys: list[PrivateKey]) -> list[str]:
    """Every private-key form found in ``dump`` (empty: nothing a grep finds)."""
    found = [f"PEM marker {m!r}" for m in PEM_MARKERS if m in dump]
    found += [f"PKCS#8 prefix {p.hex()}" for p in DER_PREFIXES
              if p in dump or p.hex().encode() in dump]
    for number, key in enumerate(keys):
        found += [f"key {number}: {name}" for name, value in secret_forms(key).items() if value in dump]
    return found
