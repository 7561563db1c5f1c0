"""Fuzz ``PG2:`` presentations: only ``PassRefused`` may leave ``verify_pass``, nothing verifies unless
both the issuer and the holder signed it, and ``present`` only returns a text or raises ``ValueError``.

The first input byte picks how the rest reaches the verifier:

- 0: as the scanned text itself (the prefix, Base45, case and whitespace handling); ``present``
  gets it too, as a pass to present;
- 1: as the CBOR inside Base45, behind ``PG2:`` (so mutations land in the array, the step, the
  signature and the pass inside);
- 2: as a CWT payload the harness signs with a trusted issuer key and presents with the holder key
  (built by hand: ``present`` would refuse an unbound pass): it verifies or is refused as unreadable
  (no or a malformed ``cnf``), bad signature (another key in ``cnf``), expired, not yet valid or
  presentation expired (another step length), but must never raise anything else.

Forgery oracle (modes 0 and 1): a presentation that verifies must carry exactly the signed content of
one of the seed passes, at the step its seed was made for, and decode to that seed's claims.
"""

from __future__ import annotations

import contextlib
import hashlib

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from fuzz.common import ATTACKER_KEY, ED25519_KEY, ES256_KEY, NOW, Forgery, main, signed_content, trust_store
from passgate import base45, cose, issue_pass, key_id
from passgate.holder import PREFIX, decode_presentation, present, signed_bytes
from passgate.passes import CLAIM_CTI, Pass, PassRefused, decode_text, verify_pass
from passgate.passes import PREFIX as PG1
from passgate.reasons import Reason

TRUST = trust_store()
TEXT, BODY, SIGN = 0, 1, 2
HOUR = 3600
STEP = NOW // 15
HOLDER_KEY = ec.derive_private_key(
    int.from_bytes(hashlib.sha256(b"passgate fuzz holder").digest(), "big") >> 8, ec.SECP256R1())
OTHER_HOLDER = ec.derive_private_key(
    int.from_bytes(hashlib.sha256(b"passgate fuzz other holder").digest(), "big") >> 8, ec.SECP256R1())
SIGNED_REFUSALS = {Reason.UNREADABLE, Reason.BAD_SIGNATURE, Reason.EXPIRED, Reason.NOT_YET_VALID,
                   Reason.PRESENTATION_EXPIRED}


def _issue(key: cose.PrivateKey, n: int, **claims: object) -> str:
    return issue_pass(key, valid_from=NOW - HOUR, valid_until=NOW + HOUR, issued_at=NOW - 2 * HOUR,
                      pass_id=bytes([n]) * 16, holder_key=HOLDER_KEY.public_key(),
                      **claims)  # type: ignore[arg-type]


def _bound_passes() -> list[str]:
    typical = {"zones": ["A", "B"], "entries": 1, "product": "Day", "issuer": "Fuzz", "reentry": True}
    return [_issue(ED25519_KEY, 1), _issue(ED25519_KEY, 2, **typical), _issue(ES256_KEY, 3),
            _issue(ES256_KEY, 4, holder_step=30, **typical)]


def _raw_sig(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def _by_hand(pass_cose: bytes, step: int, sig: bytes) -> bytes:
    return cbor2.dumps([pass_cose, step, sig])


def _seed_presentations() -> dict[tuple[bytes, bytes, int], Pass]:
    """(signed content of the pass, step) of every valid seed, mapped to what it verifies to."""
    seeds = {}
    for text in _bound_passes():
        shown = present(text, HOLDER_KEY, now=NOW)
        inner, step, _ = decode_presentation(shown)
        seeds[(*signed_content(inner), step)] = verify_pass(shown, TRUST, now=NOW)
    return seeds


SEED_PRESENTATIONS = _seed_presentations()
SEED_PASSES = {content[:2] for content in SEED_PRESENTATIONS}  # the bound passes, shown as PG1


def _refused_bodies(passes: list[str]) -> dict[str, bytes]:
    """Near-misses worth mutating: another holder, another step, an unbound pass, a stale code."""
    inner = base45.decode(passes[0][len(PG1):])
    unbound = issue_pass(ED25519_KEY, valid_from=NOW - HOUR, valid_until=NOW + HOUR, pass_id=bytes(16))
    unbound_inner = base45.decode(unbound[len(PG1):])
    return {
        "other-holder": _by_hand(inner, STEP, _raw_sig(OTHER_HOLDER, signed_bytes(b"\x01" * 16, STEP))),
        "other-step": _by_hand(inner, STEP + 1, _raw_sig(HOLDER_KEY, signed_bytes(b"\x01" * 16, STEP))),
        "unbound": _by_hand(unbound_inner, STEP, _raw_sig(HOLDER_KEY, signed_bytes(bytes(16), STEP))),
        "stale": base45.decode(present(passes[0], HOLDER_KEY, now=NOW - HOUR)[len(PREFIX):]),
        "attacker-issuer": _by_hand(
            cose.sign1(cose.decode_sign1(inner).payload, ATTACKER_KEY, kid=key_id(ED25519_KEY)), STEP,
            _raw_sig(HOLDER_KEY, signed_bytes(b"\x01" * 16, STEP))),
    }


def seeds() -> dict[str, bytes]:
    """Seed inputs: valid presentations as texts and as CBOR, near-misses and a payload to sign."""
    passes = _bound_passes()
    out: dict[str, bytes] = {}
    for i, text in enumerate(passes):
        shown = present(text, HOLDER_KEY, now=NOW)
        out[f"text-{i}"] = bytes([TEXT]) + shown.encode()
        out[f"body-{i}"] = bytes([BODY]) + base45.decode(shown[len(PREFIX):])
    lower = " " + present(passes[1], HOLDER_KEY, now=NOW).lower() + "\r\n"
    out["text-lower"] = bytes([TEXT]) + lower.encode()
    out["text-pass"] = bytes([TEXT]) + passes[2].encode()  # a bound pass without its proof
    for name, body in _refused_bodies(passes).items():
        out[f"body-{name}"] = bytes([BODY]) + body
    out["sign-claims"] = bytes([SIGN]) + cose.decode_sign1(base45.decode(passes[1][len(PG1):])).payload
    return out


def test_one_input(data: bytes) -> None:
    """One input: only ``PassRefused`` may escape; a verified presentation must be a seed's."""
    if not data:
        return
    mode, rest = data[0] % 3, data[1:]
    if mode == SIGN:
        _signed(rest)
        return
    candidate: bytes = rest if mode == TEXT else (PREFIX + base45.encode(rest)).encode()
    _check(candidate)
    if mode == TEXT:
        with contextlib.suppress(ValueError):  # present: a text, or ValueError for what is no bound pass
            _check(present(rest, HOLDER_KEY, now=NOW).encode())


def _check(candidate: bytes) -> None:
    """Verify: a refusal, a seed's presentation, or a seed's pass shown without its proof."""
    try:
        result = verify_pass(candidate, TRUST, now=NOW)
    except PassRefused:
        return
    if result.holder_verified:
        inner, step, _ = decode_presentation(candidate)
        known = SEED_PRESENTATIONS.get((*signed_content(inner), step)) == result
    else:
        known = signed_content(decode_text(candidate)) in SEED_PASSES
    if not known:
        raise Forgery(f"verified without a valid signature: {candidate[:200]!r}")


def _signed(payload: bytes) -> None:
    """Sign ``payload`` as a pass and present it with the holder key: a refusal from the list or a pass."""
    inner = cose.sign1(payload, ED25519_KEY, kid=key_id(ED25519_KEY))
    try:
        cti = cbor2.loads(payload).get(CLAIM_CTI)
    except Exception:  # not a claims map: the verifier must say so
        cti = None
    pass_id = cti if isinstance(cti, bytes) and len(cti) == 16 else bytes(16)
    text = PREFIX + base45.encode(_by_hand(inner, STEP, _raw_sig(HOLDER_KEY, signed_bytes(pass_id, STEP))))
    try:
        verify_pass(text, TRUST, now=NOW)
    except PassRefused as refusal:
        if refusal.reason not in SIGNED_REFUSALS:
            raise AssertionError(f"signed presentation refused as {refusal.reason}") from None


if __name__ == "__main__":
    main(test_one_input)
