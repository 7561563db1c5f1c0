"""Issuer keys: generation, PEM files, key ids, and the ``TrustStore`` a gate verifies against.

A kid is the first 8 bytes of SHA-256 over the public key's DER SubjectPublicKeyInfo, so anyone
holding the public key can compute it and no registry of ids is needed.
"""

from __future__ import annotations

import hashlib
import json
import os
import tomllib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TypedDict, Unpack

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from . import cose
from .cose import PrivateKey, PublicKey
from .wire import KeyPurpose

KID_SIZE = 8
ALGORITHMS = ("ed25519", "es256")
TRUST_MANIFEST = "trust.toml"


class KeyFileError(Exception):
    """A key file or trust directory could not be used; the message names the file."""


def generate_private_key(alg: str = "ed25519") -> PrivateKey:
    """A new issuer private key: ``"ed25519"`` (default, smaller and faster) or ``"es256"``."""
    if alg == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if alg == "es256":
        return ec.generate_private_key(ec.SECP256R1())
    raise ValueError(f"unknown algorithm {alg!r}; choose one of {', '.join(ALGORITHMS)}")


def key_id(key: PublicKey | PrivateKey) -> bytes:
    """The 8-byte kid of a key (its public half)."""
    public = key.public_key() if hasattr(key, "public_key") else key
    der = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).digest()[:KID_SIZE]


def public_pem(key: PublicKey | PrivateKey) -> bytes:
    """PEM text of the public half of a key."""
    public = key.public_key() if hasattr(key, "public_key") else key
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def write_keypair(private_key: PrivateKey, out_dir: str | Path, name: str) -> tuple[Path, Path]:
    """Write ``NAME.key.pem`` (mode 0600) and ``NAME.pub.pem``; refuses to overwrite either."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    priv_path, pub_path = out / f"{name}.key.pem", out / f"{name}.pub.pem"
    for path in (priv_path, pub_path):
        if path.exists():
            raise FileExistsError(f"{path} already exists; refusing to overwrite a key")
    pem = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(priv_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    pub_path.write_bytes(public_pem(private_key))
    return priv_path, pub_path


def load_private_key(path: str | Path) -> PrivateKey:
    """Load an unencrypted PEM private key (Ed25519 or P-256)."""
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"{path}: not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey):
        raise _unsupported(path)
    _check_supported(key, path)
    return key


def load_public_key(path: str | Path) -> PublicKey:
    """Load a PEM public key (Ed25519 or P-256)."""
    try:
        key = serialization.load_pem_public_key(Path(path).read_bytes())
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"{path}: not a PEM public key ({exc})") from None
    if not isinstance(key, ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey):
        raise _unsupported(path)
    _check_supported(key, path)
    return key


def _check_supported(key: PublicKey | PrivateKey, path: str | Path) -> None:
    """Refuse an elliptic-curve key on any curve but P-256."""
    try:
        cose.algorithm_for(key)
    except cose.UnsupportedAlgorithmError:
        raise _unsupported(path) from None


def _unsupported(path: str | Path) -> KeyFileError:
    return KeyFileError(f"{path}: only Ed25519 and P-256 keys are supported")


def _as_utc(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


class TrustWindow(TypedDict, total=False):
    """The optional fields of a ``TrustedKey`` beside its public key (as in ``trust.toml``)."""

    issuer: str | None
    valid_from: datetime | None
    retired: datetime | None
    revoked: datetime | None
    purpose: KeyPurpose
    scope: str | None


@dataclass(frozen=True)
class TrustedKey:
    """One public key, what it may sign (``purpose``) and the window in which it is accepted.

    A ``passes`` key signs passes; a ``denylist`` key signs the deny lists of its one ``scope`` and
    never a pass, so trusting a partner's pass key never lets it rewrite a venue's lists.
    ``retired``: passes *issued* (``iat``) at or after this moment, or with no ``iat`` at all, are
    refused, while passes issued before it stay valid (rotation without reissuing sold passes).
    ``revoked``: the key leaked, so every pass under it is refused, back-dated or not.
    """

    public_key: PublicKey
    issuer: str | None = None
    valid_from: datetime | None = None
    retired: datetime | None = None
    revoked: datetime | None = None
    purpose: KeyPurpose = KeyPurpose.PASSES
    scope: str | None = None
    kid: bytes = field(init=False)
    alg: int = field(init=False)
    verify: cose.Verify = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "kid", key_id(self.public_key))
        object.__setattr__(self, "alg", cose.algorithm_for(self.public_key))
        object.__setattr__(self, "verify", cose.make_verifier(self.public_key))
        object.__setattr__(self, "valid_from", _as_utc(self.valid_from))
        object.__setattr__(self, "retired", _as_utc(self.retired))
        object.__setattr__(self, "revoked", _as_utc(self.revoked))
        try:
            object.__setattr__(self, "purpose", KeyPurpose(self.purpose))
        except ValueError:
            raise ValueError(f"purpose must be one of {', '.join(KeyPurpose)}, not {self.purpose!r}"
                             ) from None
        if self.purpose is KeyPurpose.DENYLIST and not isinstance(self.scope, str):
            raise ValueError("a denylist key needs the scope of the lists it signs")
        if self.purpose is KeyPurpose.PASSES and self.scope is not None:
            raise ValueError("scope is for denylist keys; a passes key signs no lists")

    def accepts_issue_time(self, issued_at: float | None) -> bool:
        """Whether something issued at ``issued_at`` (epoch seconds) falls in this key's window.

        Unknown (``None``) passes only a key that is not retired: a pass could leave ``iat`` out
        to dodge the retirement otherwise."""
        if issued_at is None:
            return self.retired is None
        if self.valid_from is not None and issued_at < self.valid_from.timestamp():
            return False
        return self.retired is None or issued_at < self.retired.timestamp()

    def role(self) -> str:
        """What this key may sign, in words for a refusal (``passes``, ``deny lists of 'acme'``)."""
        if self.purpose is KeyPurpose.DENYLIST:
            return f"deny lists of scope {self.scope!r}"
        return "passes"


class TrustStore:
    """The public keys a gate trusts, looked up by kid; several issuers may be trusted at once.

    >>> trust = TrustStore.load("/etc/passgate/trust")      # doctest: +SKIP
    >>> verify_pass(text, trust)                            # doctest: +SKIP

    A directory holds ``*.pem`` public keys (private keys there are ignored: a gate never needs
    one) and optionally ``trust.toml`` giving a key an issuer name, a validity window, and a role
    (``purpose`` "passes", the default, or "denylist" with the ``scope`` of the lists it signs)::

        [[key]]
        file = "acme-2025.pub.pem"
        issuer = "ACME Events"
        retired = 2026-06-01T00:00:00Z

        [[key]]
        file = "acme-lists.pub.pem"
        purpose = "denylist"
        scope = "acme"
    """

    def __init__(self, keys: Iterable[TrustedKey] = ()) -> None:
        self._by_kid: dict[bytes, tuple[TrustedKey, ...]] = {}
        for key in keys:
            self.add(key)

    def add(self, key: TrustedKey | PublicKey, **window: Unpack[TrustWindow]) -> TrustedKey:
        """Trust one more key (a ``TrustedKey``, or a public key plus issuer/valid_from/retired)."""
        trusted = key if isinstance(key, TrustedKey) else TrustedKey(key, **window)
        self._by_kid[trusted.kid] = (*self._by_kid.get(trusted.kid, ()), trusted)
        return trusted

    def candidates(self, kid: bytes | None) -> tuple[TrustedKey, ...]:
        """Keys with this kid (normally one; 8-byte kids can collide, so all are tried)."""
        return self._by_kid.get(kid, ()) if kid is not None else ()

    def find_signer(self, msg: cose.Sign1, external_aad: bytes = b"",
                    purpose: KeyPurpose = KeyPurpose.PASSES) -> TrustedKey | None:
        """The trusted key whose signature verifies ``msg`` (same kid and algorithm), or None;
        a key of ``purpose`` first, else one of another purpose (the caller refuses it, naming it).

        ``msg.alg`` must already be known to be supported (it raises otherwise)."""
        signers = self.signers(msg, external_aad)
        for key in signers:
            if key.purpose is purpose:
                return key
        return signers[0] if signers else None

    def signers(self, msg: cose.Sign1, external_aad: bytes = b"") -> tuple[TrustedKey, ...]:
        """Every trusted key whose signature verifies ``msg`` (one, unless a key is trusted in two
        roles)."""
        tbs, alg, signature = msg.to_be_signed(external_aad), msg.alg, msg.signature
        found = []
        for candidate in self.candidates(msg.kid):
            if candidate.alg != alg:
                continue
            try:
                candidate.verify(tbs, signature)
            except cose.SignatureError:
                continue
            found.append(candidate)
        return tuple(found)

    def __iter__(self) -> Iterator[TrustedKey]:
        for keys in self._by_kid.values():
            yield from keys

    def __len__(self) -> int:
        return sum(len(keys) for keys in self._by_kid.values())

    @classmethod
    def load(cls, path: str | Path) -> TrustStore:
        """Load a trust directory (or a single PEM file); raises ``KeyFileError`` naming the bad file."""
        root = Path(path)
        if root.is_file():
            return cls([TrustedKey(load_public_key(root))])
        if not root.is_dir():
            raise KeyFileError(f"{root}: no such trust directory or key file")
        manifest = _read_manifest(root)
        store = cls()
        for pem in sorted(root.glob("*.pem")):
            if b"PRIVATE KEY" in pem.read_bytes()[:64]:
                continue
            entry = manifest.pop(pem.name, {})
            try:
                store.add(TrustedKey(load_public_key(pem), **entry))
            except ValueError as exc:  # a role that does not fit (a denylist key without scope)
                raise KeyFileError(f"{root / TRUST_MANIFEST}: {pem.name}: {exc}") from None
        if manifest:
            raise KeyFileError(f"{root / TRUST_MANIFEST}: names missing key files {sorted(manifest)}")
        if not len(store):
            raise KeyFileError(f"{root}: no public keys (*.pem) found")
        return store


def manifest_entry(file: str, *, purpose: KeyPurpose = KeyPurpose.PASSES, scope: str | None = None,
                   issuer: str | None = None, retired: datetime | None = None,
                   revoked: datetime | None = None) -> str:
    """One ``[[key]]`` table of ``trust.toml``, as ``TrustStore.load`` reads it (the one writer of
    the format: the SDK's keygen and the gate's copy of the hub's keys)."""
    lines = [f"file = {json.dumps(file)}", f'purpose = "{purpose.value}"']
    lines += [f"{name} = {json.dumps(value)}" for name, value in (("scope", scope), ("issuer", issuer))
              if value is not None]
    lines += [f"{name} = {value.isoformat()}" for name, value in (("retired", retired), ("revoked", revoked))
              if value is not None]
    return "[[key]]\n" + "\n".join(lines) + "\n"


def _read_manifest(root: Path) -> dict[str, TrustWindow]:
    path = root / TRUST_MANIFEST
    if not path.exists():
        return {}
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise KeyFileError(f"{path}: {exc}") from None
    except RecursionError:  # tomllib recurses once per level of nesting
        raise KeyFileError(f"{path}: nested too deeply") from None
    entries: dict[str, TrustWindow] = {}
    for i, item in enumerate(data.get("key", [])):
        if not isinstance(item, dict) or not isinstance(item.get("file"), str):
            raise KeyFileError(f"{path}: key[{i}] needs a 'file' string")
        unknown = set(item) - {"file", "issuer", "valid_from", "retired", "revoked", "purpose", "scope"}
        if unknown:
            raise KeyFileError(f"{path}: key[{i}] has unknown fields {sorted(unknown)}")
        for name in ("valid_from", "retired", "revoked"):
            if name in item and not isinstance(item[name], datetime):
                raise KeyFileError(f"{path}: key[{i}].{name} must be a TOML date-time")
        for name in ("issuer", "purpose", "scope"):
            if name in item and not isinstance(item[name], str):
                raise KeyFileError(f"{path}: key[{i}].{name} must be a string")
        purpose = item.get("purpose", KeyPurpose.PASSES.value)
        if purpose not in set(KeyPurpose):
            raise KeyFileError(f"{path}: key[{i}].purpose must be one of "
                               f"{', '.join(KeyPurpose)}, not {purpose!r}")
        entries[item["file"]] = TrustWindow(
            issuer=item.get("issuer"), valid_from=item.get("valid_from"), retired=item.get("retired"),
            revoked=item.get("revoked"), purpose=KeyPurpose(purpose), scope=item.get("scope"),
        )
    return entries
