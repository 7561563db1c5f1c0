"""Freshness statements: "list KIND of SCOPE at VERSION is still current as of T", signed.

A gate judges a deny list's age to decide whether it may still trust it (the stale-list policy).
Re-signing an unchanged list as a new version only to show it is recent makes every gate that was
offline for a day download deltas or a whole snapshot of nothing. A freshness statement says the
same in about 150 bytes, for the version the gate already holds: versions then change only when
entries change, and a gate's list is as fresh as the newest statement for its version.

A statement is a tagged COSE_Sign1 whose payload is a CBOR map ``{"fmt": 1, "type": "fresh",
"kind", "scope", "version", "as_of"}``, signed with ``external_aad = AAD`` (so it can never pass
for a list file or a pass) by a key trusted for the deny lists of its scope (``purpose =
"denylist"``), exactly as the list files are. ``read`` verifies it against a ``TrustStore``;
``Freshness.applies_to`` tells whether it speaks of the list a gate holds. Every refusal is a
``FreshnessError`` with a one-line reason; nothing else escapes, whatever the input.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import cbor2

from . import cose
from .cose import PrivateKey
from .denylist import KINDS
from .keys import TrustStore, key_id
from .wire import KeyPurpose

AAD = b"passgate deny list freshness v1"
FORMAT = 1
TYPE = "fresh"
MAX_BYTES = 1024  # a statement is ~150 bytes; anything larger is refused before parsing
MAX_VERSION = 2**63 - 1
_FIELDS = {"fmt", "type", "kind", "scope", "version", "as_of"}


class FreshnessError(ValueError):
    """A statement that is malformed, untrusted or badly signed (one line: why)."""


@dataclass(frozen=True)
class Freshness:
    """A verified statement: the list ``kind`` of ``scope`` at ``version`` is current as of
    ``as_of`` (epoch seconds, the signer's clock)."""

    kind: str
    scope: str
    version: int
    as_of: int
    signer: bytes  # the kid that signed it

    def applies_to(self, kind: str, scope: str, version: int) -> bool:
        """Whether it speaks of exactly this list: a statement for another version says nothing
        of the one held (a newer version may remove or add entries)."""
        return (self.kind, self.scope, self.version) == (kind, scope, version)


def sign(private_key: PrivateKey, *, kind: str, scope: str, version: int,
         as_of: int | None = None) -> bytes:
    """A signed statement (the hub's, or an offline issuer's with its deny-list key)."""
    payload = {"fmt": FORMAT, "type": TYPE, "kind": kind, "scope": scope, "version": version,
               "as_of": int(time.time()) if as_of is None else as_of}
    _check(payload)
    return cose.sign1(cbor2.dumps(payload), private_key, kid=key_id(private_key), external_aad=AAD)


def read(data: bytes, trust: TrustStore) -> Freshness:
    """Verify a statement against ``trust``: signed by a deny-list key of its own scope that is
    not revoked and was not retired when it signed. Raises ``FreshnessError``."""
    if not isinstance(data, bytes | bytearray) or len(data) > MAX_BYTES:
        raise FreshnessError(f"a freshness statement is bytes of at most {MAX_BYTES}")
    try:
        msg = cose.decode_sign1(bytes(data))
        payload = cbor2.loads(msg.payload)
    except Exception as exc:  # cose.MalformedError, and cbor2's several types on hostile input
        raise FreshnessError(f"not a freshness statement: {exc}") from None
    _check(payload)
    if not trust.candidates(msg.kid):
        kid = msg.kid.hex() if msg.kid else "none"
        raise FreshnessError(f"signed by a key not in the trust store (kid {kid})")
    try:
        signers = trust.signers(msg, AAD)
    except Exception as exc:  # an algorithm the store cannot check
        raise FreshnessError(f"signature cannot be checked: {exc}") from None
    if not signers:
        raise FreshnessError("signature does not verify")
    scope = payload["scope"]
    signer = next((k for k in signers if k.purpose is KeyPurpose.DENYLIST and k.scope == scope), None)
    if signer is None:
        raise FreshnessError(f"key {signers[0].kid.hex()} may sign {signers[0].role()}, not the deny "
                             f"lists of scope {scope!r}")
    if signer.revoked is not None:
        raise FreshnessError(f"key {signer.kid.hex()} is revoked")
    if not signer.accepts_issue_time(payload["as_of"]):
        raise FreshnessError(f"key {signer.kid.hex()} was retired when this was signed")
    return Freshness(payload["kind"], payload["scope"], payload["version"], payload["as_of"], signer.kid)


def _check(payload: Any) -> None:
    """The payload's shape and bounds, before any key is looked at."""
    if not isinstance(payload, dict) or set(payload) != _FIELDS:
        raise FreshnessError("a freshness statement is a map of fmt, type, kind, scope, version, as_of")
    if payload["fmt"] != FORMAT or payload["type"] != TYPE:
        raise FreshnessError(f"unknown statement format {payload['fmt']!r}/{payload['type']!r}")
    if payload["kind"] not in KINDS:
        raise FreshnessError(f"unknown list kind {payload['kind']!r}")
    if not isinstance(payload["scope"], str) or not 0 < len(payload["scope"]) <= 64:
        raise FreshnessError("scope: 1 to 64 characters")
    for name, high in (("version", MAX_VERSION), ("as_of", 2**40)):
        value = payload[name]
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= high:
            raise FreshnessError(f"{name}: a whole number from 0 to {high}")
