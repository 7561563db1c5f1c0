"""Private keys sealed with a key-encryption key (KEK) the database never holds.

Every private key the hub signs with is stored as a sealed blob, opened in memory only when it
signs. A copy of the database (a backup, a replica, read access) then holds nothing that signs.

Where the KEK comes from, first found wins:

1. ``$PASSGATE_HUB_KEK_FILE``: a file holding the KEK;
2. ``$PASSGATE_HUB_KEK``: the KEK itself;
3. ``$CREDENTIALS_DIRECTORY/passgate-hub-kek``: a systemd credential (``LoadCredential=``);
4. for an SQLite file database only: ``<database>.kek`` beside it, created (mode 0600) the first
   time a key is sealed, with a log line saying so. Zero set-up, not for production: a copy of
   the directory holds both.

A KEK is 32 random bytes written as base64 (``new_kek_text``). A sealed blob is
``version (1) | KEK id (8) | nonce (12) | AES-256-GCM(PKCS#8 DER) with tag``, sealed with the
key's kid as associated data, so a blob moved to another row does not open. The KEK id (a hash
of the KEK) says which KEK sealed a blob: a wrong KEK is named as such, not as damage.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy.engine import URL, make_url

from passgate.cose import PrivateKey

ENV_FILE = "PASSGATE_HUB_KEK_FILE"
ENV_KEY = "PASSGATE_HUB_KEK"
CREDENTIAL = "passgate-hub-kek"
DEFAULT_SUFFIX = ".kek"
VERSION = 1
KEK_SIZE = 32
KEK_ID_SIZE = 8
NONCE_SIZE = 12
_AAD = b"passgate-hub sealed key v1\x00"
log = logging.getLogger(__name__)


class SealingError(Exception):
    """No KEK, a malformed one, or a blob it cannot open: one line saying which and what to do."""


@dataclass(frozen=True)
class Kek:
    """A key-encryption key and where it came from (for messages, never the key)."""

    key: bytes
    source: str

    @property
    def kek_id(self) -> bytes:
        return kek_id(self.key)


def kek_id(key: bytes) -> bytes:
    """A KEK's public name: the first 8 bytes of a domain-separated SHA-256 of it."""
    return hashlib.sha256(b"passgate-hub kek id\x00" + key).digest()[:KEK_ID_SIZE]


def new_kek_text() -> str:
    """A fresh KEK as the text a KEK file, ``$PASSGATE_HUB_KEK`` or a credential holds."""
    return base64.b64encode(os.urandom(KEK_SIZE)).decode() + "\n"


def parse_kek(text: str | bytes, source: str) -> Kek:
    """A KEK from its base64 text; anything else is refused naming ``source``."""
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != KEK_SIZE:
        raise SealingError(f"{source}: not a sealing key (base64 of {KEK_SIZE} random bytes; make "
                           "one with 'passgate-hub seal new-key FILE')")
    return Kek(key, source)


def read_kek_file(path: str | Path) -> Kek:
    try:
        return parse_kek(Path(path).read_bytes(), str(path))
    except OSError as exc:
        raise SealingError(f"{path}: cannot read the sealing key ({exc.strerror})") from None


def write_kek_file(path: str | Path, text: str | None = None) -> Kek:
    """Write a KEK file with mode 0600; an existing file is never overwritten."""
    text = text if text is not None else new_kek_text()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise SealingError(f"{path}: exists; a sealing key is never overwritten") from None
    except OSError as exc:
        raise SealingError(f"{path}: cannot write the sealing key ({exc.strerror})") from None
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    return parse_kek(text, str(path))


def default_path(database_url: str | URL) -> Path | None:
    """``<database>.kek`` for an SQLite file database; None for any other database."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return Path(url.database + DEFAULT_SUFFIX)


def configured(database_url: str | URL) -> tuple[str, Path | None, str | None]:
    """Where the KEK comes from: ``(description, file, text)``; file and text both None when
    nothing is configured and the database has no default place for one."""
    if os.environ.get(ENV_FILE):
        path = Path(os.environ[ENV_FILE])
        return str(path), path, None
    if os.environ.get(ENV_KEY):
        return f"${ENV_KEY}", None, os.environ[ENV_KEY]
    credentials = os.environ.get("CREDENTIALS_DIRECTORY")
    if credentials and (Path(credentials) / CREDENTIAL).exists():
        path = Path(credentials) / CREDENTIAL
        return f"systemd credential {CREDENTIAL}", path, None
    default = default_path(database_url)
    return (str(default) if default else "none"), default, None


def load_kek(database_url: str | URL, *, create: bool = False) -> Kek:
    """The configured KEK. ``create``: the default file beside an SQLite database is made when
    missing (only when a key is about to be sealed and no other KEK is configured)."""
    source, path, text = configured(database_url)
    if text is not None:
        return parse_kek(text, source)
    if path is None:
        raise SealingError(f"no sealing key: set ${ENV_FILE}, ${ENV_KEY} or the systemd credential "
                           f"{CREDENTIAL} (see README, 'Keys the database cannot leak')")
    if not path.exists() and create and path == default_path(database_url):
        kek = write_kek_file(path)
        log.warning("created the sealing key %s beside the database (mode 0600): fine to try the "
                    "hub, not for production (see README, 'Keys the database cannot leak')", path)
        return kek
    if not path.exists():
        raise SealingError(f"no sealing key: {path} does not exist (restore it if it sealed this "
                           "hub's keys; a new hub makes one with 'passgate-hub seal new-key')")
    return read_kek_file(path)


def _aad(kid: str) -> bytes:
    return _AAD + kid.encode()


def seal(kek: Kek, kid: str, private_key: PrivateKey) -> bytes:
    """The sealed blob of a private key, bound to its ``kid``."""
    der = private_key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    return _seal(kek, _aad(kid), der)


def _seal(kek: Kek, aad: bytes, data: bytes) -> bytes:
    nonce = os.urandom(NONCE_SIZE)
    return bytes([VERSION]) + kek.kek_id + nonce + AESGCM(kek.key).encrypt(nonce, data, aad)


def _open(kek: Kek, what: str, aad: bytes, blob: bytes) -> bytes:
    sealed_by = blob_kek_id(blob)
    if sealed_by != kek.kek_id:
        raise SealingError(f"{what} was sealed with sealing key {sealed_by.hex()}, but "
                           f"{kek.source} is sealing key {kek.kek_id.hex()}")
    start = 1 + KEK_ID_SIZE
    try:
        return AESGCM(kek.key).decrypt(blob[start:start + NONCE_SIZE], blob[start + NONCE_SIZE:], aad)
    except InvalidTag:
        raise SealingError(f"{what}: the sealed secret does not open (damaged, or moved from "
                           "another row)") from None


def _secret_aad(owner: str) -> bytes:
    return b"passgate-hub sealed secret v1\x00" + owner.encode()


def seal_secret(kek: Kek, owner: str, secret: bytes) -> bytes:
    """Another secret the database must not leak (an operator's TOTP secret), bound to ``owner``."""
    return _seal(kek, _secret_aad(owner), secret)


def open_secret(kek: Kek, owner: str, blob: bytes) -> bytes:
    return _open(kek, f"the secret of {owner}", _secret_aad(owner), blob)


def blob_kek_id(blob: bytes) -> bytes:
    """The id of the KEK that sealed ``blob``."""
    if len(blob) < 1 + KEK_ID_SIZE + NONCE_SIZE or blob[0] != VERSION:
        raise SealingError("not a sealed key of a format this hub reads")
    return blob[1:1 + KEK_ID_SIZE]


def open_sealed(kek: Kek, kid: str, blob: bytes) -> PrivateKey:
    """The private key in ``blob``, in memory; refused when another KEK sealed it, or the blob was
    changed or belongs to another key."""
    der = _open(kek, f"key {kid}", _aad(kid), blob)
    return serialization.load_der_private_key(der, password=None)  # type: ignore[return-value]
