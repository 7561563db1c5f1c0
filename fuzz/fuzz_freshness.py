"""Fuzz freshness statements: only ``FreshnessError``, and no statement verifies unless the harness
signed its content (``passgate.freshness``).

Forgery oracle: a statement ``read`` returns must carry exactly the fields of one the harness
signed with a trusted deny-list key of its scope.
"""

from __future__ import annotations

import cbor2

from fuzz.common import ATTACKER_KEY, ED25519_KEY, ES256_KEY, Forgery, main
from passgate import cose, freshness
from passgate.keys import KeyPurpose, TrustedKey, TrustStore, key_id

TRUST = TrustStore()
TRUST.add(TrustedKey(ED25519_KEY.public_key(), purpose=KeyPurpose.DENYLIST, scope="acme"))
TRUST.add(TrustedKey(ES256_KEY.public_key()))  # a pass key: it may not vouch for a list
SEED_STATEMENTS = {
    "revoked-acme": dict(kind="revoked", scope="acme", version=3, as_of=1_800_000_000),
    "blocked-acme": dict(kind="blocked", scope="acme", version=(7 << 32) | 2, as_of=0),
}
SIGNED = {tuple(fields.values()) for fields in SEED_STATEMENTS.values()}


def seeds() -> dict[str, bytes]:
    """Statements signed by the trusted list key, by a pass key, by an untrusted key, and shapes."""
    out = {name: freshness.sign(ED25519_KEY, **fields) for name, fields in SEED_STATEMENTS.items()}
    out["pass-key"] = freshness.sign(ES256_KEY, **SEED_STATEMENTS["revoked-acme"])
    payload = cose.decode_sign1(out["revoked-acme"]).payload
    out["untrusted"] = cose.sign1(payload, ATTACKER_KEY, kid=key_id(ED25519_KEY), external_aad=freshness.AAD)
    out["no-aad"] = cose.sign1(payload, ED25519_KEY, kid=key_id(ED25519_KEY))
    out["not-a-map"] = cose.sign1(cbor2.dumps([1, 2]), ED25519_KEY, kid=key_id(ED25519_KEY),
                                  external_aad=freshness.AAD)
    return out


def test_one_input(data: bytes) -> None:
    """One input: read it against the trust store; only ``FreshnessError``, and nothing forged."""
    try:
        fresh = freshness.read(data, TRUST)
    except freshness.FreshnessError:
        return
    if (fresh.kind, fresh.scope, fresh.version, fresh.as_of) not in SIGNED:
        raise Forgery(f"verified without a valid signature: {data[:200]!r}")


if __name__ == "__main__":
    main(test_one_input)
