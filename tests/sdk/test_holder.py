"""Holder-bound passes and PG2 presentations: round trips, every refusal, forgery, size and scanners."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
from datetime import UTC, datetime

import cbor2
import pytest
import segno
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given, settings
from hypothesis import strategies as st

from passgate import (
    PassRefused,
    Reason,
    TrustStore,
    base45,
    cose,
    generate_private_key,
    issue_pass,
    key_id,
    verify_pass,
    verify_signature,
)
from passgate.cli import main as cli_main
from passgate.holder import (
    CONTEXT,
    PREFIX,
    check_presentation_time,
    decode_presentation,
    present,
    public_key_from_jwk,
    signed_bytes,
)
from passgate.passes import CLAIM_CNF, CLAIM_CTI, CLAIM_EXP, CLAIM_NBF, CLAIM_STEP, MAX_TEXT, Pass
from passgate.passes import PREFIX as PG1
from passgate.scanners import Framer, KeyMap, SerialScanner
from tests.helpers import Pty, examples, wait_for
from tests.sdk.test_scanner_serial import Reader, stop
from tests.sdk.test_scanner_sources import key_events

NOW = 1_800_000_000  # a fixed, injected clock; a multiple of 15 and of 30
HOUR = 3600
STEP = NOW // 15


def holder_key(label: str) -> ec.EllipticCurvePrivateKey:
    """A fixed P-256 key per label (no randomness: a failure replays)."""
    return ec.derive_private_key(int.from_bytes(hashlib.sha256(label.encode()).digest(), "big") >> 8,
                                 ec.SECP256R1())


HOLDER = holder_key("holder")
OTHER_HOLDER = holder_key("another phone")


def point(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)


def trust_for(key) -> TrustStore:
    store = TrustStore()
    store.add(key.public_key())
    return store


@pytest.fixture(params=["ed25519", "es256"])
def issuer(request):
    return generate_private_key(request.param)


def bound(key, holder: ec.EllipticCurvePrivateKey = HOLDER, **claims) -> str:
    claims.setdefault("pass_id", bytes(range(16)))
    return issue_pass(key, valid_from=NOW - HOUR, valid_until=NOW + HOUR, issued_at=NOW - HOUR,
                      holder_key=holder.public_key(), **claims)


def refused(text, trust, **kw) -> PassRefused:
    with pytest.raises(PassRefused) as info:
        verify_pass(text, trust, **kw)
    return info.value


def pass_cose(text: str) -> bytes:
    return base45.decode(text[len(PG1):])


def raw_sig(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def by_hand(cose_bytes: bytes, step: int, sig: bytes) -> str:
    """A presentation assembled without ``present``: what an attacker or another wallet could send."""
    return PREFIX + base45.encode(cbor2.dumps([cose_bytes, step, sig]))


def body_of(presentation: str) -> bytes:
    return base45.decode(presentation[len(PREFIX):])


# -- round trips ---------------------------------------------------------------------------------


def test_round_trip_proves_the_holder_and_keeps_every_claim(issuer) -> None:
    text = bound(issuer, zones=["A", "B"], entries=3, product="SEASON", issuer="FC", reentry=True,
                 holder_ref=b"r")
    shown = present(text, HOLDER, now=NOW)
    assert shown.startswith("PG2:") and shown == shown.upper()
    p = verify_pass(shown, trust_for(issuer), now=NOW)
    assert (p.holder_verified, p.presentation_step, p.holder_step) == (True, STEP, 15)
    assert p.holder_key == point(HOLDER)
    plain = verify_pass(text, trust_for(issuer), now=NOW)
    assert (plain.holder_verified, plain.presentation_step, plain.holder_key) == (False, None, point(HOLDER))
    for field in ("pass_id", "kid", "alg", "valid_from", "valid_until", "issued_at", "issuer", "zones",
                  "entries", "product", "reentry", "holder_ref", "holder_key", "holder_step"):
        assert getattr(p, field) == getattr(plain, field), field
    assert verify_signature(shown, trust_for(issuer)) == p  # the time step is verify_pass's, not this


def test_a_presentation_carries_the_pass_bytes_exactly_and_a_raw_signature(issuer) -> None:
    text = bound(issuer)
    inner, step, sig = decode_presentation(present(text, HOLDER, now=NOW + 7))
    assert (inner, step, len(sig)) == (pass_cose(text), STEP, 64)
    expected = b"passgate-presentation-v1\x00" + bytes(range(16)) + STEP.to_bytes(8, "big")
    assert signed_bytes(bytes(range(16)), STEP) == expected and expected.startswith(CONTEXT)
    # r || s as WebCrypto gives it: DER only inside ``cryptography``
    der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
    HOLDER.public_key().verify(der, expected, ec.ECDSA(hashes.SHA256()))


def test_a_by_hand_presentation_as_the_contract_describes_it_verifies(issuer) -> None:
    """Another implementation (the wallet page) following the contract word for word."""
    text = bound(issuer)
    shown = by_hand(pass_cose(text), STEP, raw_sig(HOLDER, signed_bytes(bytes(range(16)), STEP)))
    assert verify_pass(shown, trust_for(issuer), now=NOW).holder_verified


def test_lower_case_whitespace_and_bytes_as_scanners_give_them(issuer) -> None:
    shown = present(bound(issuer), HOLDER, now=NOW)
    trust = trust_for(issuer)
    expected = verify_pass(shown, trust, now=NOW)
    for variant in (shown.lower(), f"  {shown}\r\n", shown.encode(), bytearray(shown.encode())):
        assert verify_pass(variant, trust, now=NOW) == expected


def test_a_compressed_pass_is_presented_inflated(issuer) -> None:
    import zlib

    text = bound(issuer)
    compressed = PG1 + base45.encode(zlib.compress(pass_cose(text), 9))
    inner, _, _ = decode_presentation(present(compressed, HOLDER, now=NOW))
    assert inner == pass_cose(text)


def test_an_unbound_pass_has_no_holder(issuer) -> None:
    p = verify_pass(issue_pass(issuer, valid_from=NOW, valid_until=NOW + HOUR), trust_for(issuer), now=NOW)
    assert (p.holder_key, p.holder_step, p.holder_verified, p.presentation_step) == (None, 15, False, None)
    assert check_presentation_time(p, NOW + 10 * HOUR) is p  # nothing to check


def test_a_bound_pass_shown_as_plain_pg1_verifies_unproven(issuer) -> None:
    """The SDK does not refuse it (an integrator may inspect it); the gate refuses it."""
    p = verify_pass(bound(issuer), trust_for(issuer), now=NOW)
    assert (p.holder_verified, p.presentation_step, p.holder_key) == (False, None, point(HOLDER))
    assert check_presentation_time(p, NOW + 10 * HOUR) is p


def test_the_pass_stays_byte_identical_without_a_holder(issuer) -> None:
    """An unbound pass gets neither claim 8 nor -6."""
    text = issue_pass(issuer, valid_from=NOW, valid_until=NOW + HOUR)
    claims = cbor2.loads(cose.decode_sign1(pass_cose(text)).payload)
    assert CLAIM_CNF not in claims and CLAIM_STEP not in claims


def test_the_cnf_claim_is_the_contracts_cose_key(issuer) -> None:
    claims = cbor2.loads(cose.decode_sign1(pass_cose(bound(issuer))).payload)
    numbers = HOLDER.public_key().public_numbers()
    assert claims[CLAIM_CNF] == {1: {1: 2, -1: 1, -2: numbers.x.to_bytes(32, "big"),
                                     -3: numbers.y.to_bytes(32, "big")}}
    assert CLAIM_STEP not in claims  # 15 s is the default: not written


def test_a_point_is_accepted_as_the_holder_key(issuer) -> None:
    by_point = issue_pass(issuer, valid_from=NOW, valid_until=NOW + HOUR, pass_id=bytes(16),
                          issued_at=NOW, holder_key=point(HOLDER))
    by_key = issue_pass(issuer, valid_from=NOW, valid_until=NOW + HOUR, pass_id=bytes(16),
                        issued_at=NOW, holder_key=HOLDER.public_key())
    payload = lambda text: cose.decode_sign1(pass_cose(text)).payload  # noqa: E731
    assert payload(by_point) == payload(by_key)


# -- the time step ---------------------------------------------------------------------------------


def test_the_window_is_one_step_either_side(issuer) -> None:
    shown = present(bound(issuer), HOLDER, now=NOW)  # step NOW // 15, covering NOW .. NOW + 14
    trust = trust_for(issuer)
    for at in (NOW - 15, NOW, NOW + 14, NOW + 29):
        assert verify_pass(shown, trust, now=at).presentation_step == STEP
    future = refused(shown, trust, now=NOW - 16)
    assert (future.reason, future.detail) == (Reason.PRESENTATION_EXPIRED,
                                              "code from the future: check the phone's clock")
    old = refused(shown, trust, now=NOW + 30)
    assert (old.reason, old.detail) == (Reason.PRESENTATION_EXPIRED, "old code (a screenshot?)")


def test_old_and_future_presentations_are_refused(issuer) -> None:
    text, trust = bound(issuer), trust_for(issuer)
    screenshot = present(text, HOLDER, now=NOW - 45)
    assert refused(screenshot, trust, now=NOW).detail == "old code (a screenshot?)"
    ahead = present(text, HOLDER, now=NOW + 30)
    assert refused(ahead, trust, now=NOW).detail == "code from the future: check the phone's clock"
    # verify_signature leaves the step to the caller (a gate checks revocation first)
    assert verify_signature(screenshot, trust).presentation_step == STEP - 3


def test_the_window_and_clock_are_the_callers(issuer) -> None:
    p = verify_signature(present(bound(issuer), HOLDER, now=NOW), trust_for(issuer))
    assert check_presentation_time(p, now=NOW + 15 * 3, window_steps=3) is p
    with pytest.raises(PassRefused, match="old code"):
        check_presentation_time(p, now=NOW + 15, window_steps=0)
    assert check_presentation_time(p, datetime.fromtimestamp(NOW + 20, UTC)) is p
    with pytest.raises(PassRefused, match="from the future"):
        check_presentation_time(p, datetime.fromtimestamp(NOW - 16, UTC))


def test_the_clock_defaults_to_now(issuer) -> None:
    text = issue_pass(issuer, valid_from=0, valid_until=2**40, holder_key=HOLDER.public_key())
    p = verify_pass(present(text, HOLDER), trust_for(issuer))  # made and checked by this machine's clock
    assert p.holder_verified and check_presentation_time(p) is p


@pytest.mark.parametrize("step", [5, 30, 300])
def test_a_pass_may_set_its_own_step(issuer, step: int) -> None:
    text = bound(issuer, holder_step=step)
    assert cbor2.loads(cose.decode_sign1(pass_cose(text)).payload)[CLAIM_STEP] == step
    trust = trust_for(issuer)
    p = verify_pass(present(text, HOLDER, now=NOW), trust, now=NOW + step)
    assert (p.holder_step, p.presentation_step) == (step, NOW // step)
    assert refused(present(text, HOLDER, now=NOW), trust, now=NOW + 2 * step).reason is \
        Reason.PRESENTATION_EXPIRED
    assert verify_pass(text, trust, now=NOW).holder_step == step


def test_a_presentation_made_for_another_step_length_is_refused(issuer) -> None:
    """A 30-s pass presented as if its step were 15 s: the step number is twice too large, from the
    future; the signature is right, so only the window catches it."""
    text = bound(issuer, holder_step=30)
    shown = by_hand(pass_cose(text), STEP, raw_sig(HOLDER, signed_bytes(bytes(range(16)), STEP)))
    assert refused(shown, trust_for(issuer), now=NOW).reason is Reason.PRESENTATION_EXPIRED


# -- forgery -----------------------------------------------------------------------------------------


def test_another_holders_signature_is_refused(issuer) -> None:
    text = bound(issuer)
    stolen = by_hand(pass_cose(text), STEP, raw_sig(OTHER_HOLDER, signed_bytes(bytes(range(16)), STEP)))
    refusal = refused(stolen, trust_for(issuer), now=NOW)
    assert (refusal.reason, refusal.detail) == (Reason.BAD_SIGNATURE, "holder signature")
    with pytest.raises(ValueError, match="not the one the pass is bound to"):
        present(text, OTHER_HOLDER, now=NOW)


def test_a_signature_for_another_pass_of_the_same_holder_is_refused(issuer) -> None:
    first, second = bound(issuer, pass_id=b"\x01" * 16), bound(issuer, pass_id=b"\x02" * 16)
    _, step, sig = decode_presentation(present(first, HOLDER, now=NOW))
    swapped = by_hand(pass_cose(second), step, sig)
    assert refused(swapped, trust_for(issuer), now=NOW).detail == "holder signature"


def test_a_signature_for_another_step_is_refused(issuer) -> None:
    inner, step, sig = decode_presentation(present(bound(issuer), HOLDER, now=NOW))
    for other in (step - 1, step + 1, 0, 2**64 - 1):
        assert refused(by_hand(inner, other, sig), trust_for(issuer), now=NOW).reason is Reason.BAD_SIGNATURE


def test_a_signature_over_other_bytes_is_refused(issuer) -> None:
    """The context string is part of what is signed: a signature the holder key made over the bare
    pass id and step (say, for another protocol) is no presentation."""
    bare = raw_sig(HOLDER, bytes(range(16)) + STEP.to_bytes(8, "big"))
    assert refused(by_hand(pass_cose(bound(issuer)), STEP, bare), trust_for(issuer), now=NOW).reason is \
        Reason.BAD_SIGNATURE


def test_an_unbound_pass_shown_as_a_presentation_is_refused(issuer) -> None:
    text = issue_pass(issuer, valid_from=NOW - HOUR, valid_until=NOW + HOUR, pass_id=bytes(range(16)))
    shown = by_hand(pass_cose(text), STEP, raw_sig(HOLDER, signed_bytes(bytes(range(16)), STEP)))
    refusal = refused(shown, trust_for(issuer), now=NOW)
    assert (refusal.reason, refusal.detail) == (Reason.UNREADABLE, "a presentation of an unbound pass")
    with pytest.raises(ValueError, match="not bound to a holder"):
        present(text, HOLDER, now=NOW)


def test_the_inner_pass_is_checked_as_a_pg1_pass(issuer) -> None:
    text = bound(issuer)
    shown = present(text, HOLDER, now=NOW)
    assert refused(shown, TrustStore(), now=NOW).reason is Reason.UNKNOWN_KEY
    assert refused(shown, trust_for(generate_private_key()), now=NOW).reason is Reason.UNKNOWN_KEY
    assert refused(shown, trust_for(issuer), now=NOW + 2 * HOUR).reason is Reason.EXPIRED
    forger = generate_private_key("es256")
    forged = issue_pass(forger, valid_from=NOW - HOUR, valid_until=NOW + HOUR, pass_id=bytes(range(16)),
                        holder_key=HOLDER.public_key())
    msg = cose.decode_sign1(pass_cose(forged))  # the forger's pass under the issuer's kid
    relabelled = cose.sign1(msg.payload, forger, kid=key_id(issuer))
    refusal = refused(present(PG1 + base45.encode(relabelled), HOLDER, now=NOW), trust_for(issuer), now=NOW)
    assert refusal.reason in (Reason.BAD_SIGNATURE, Reason.UNSUPPORTED_ALGORITHM)


@pytest.mark.parametrize("alg", ["ed25519", "es256"])
def test_every_single_bit_flip_of_a_presentation_is_refused(alg: str) -> None:
    issuer = generate_private_key(alg)
    trust = trust_for(issuer)
    body = body_of(present(bound(issuer, zones=["A"], entries=1), HOLDER, now=NOW))
    reasons = set()
    for bit in range(len(body) * 8):
        flipped = bytearray(body)
        flipped[bit // 8] ^= 1 << (bit % 8)
        reasons.add(refused(PREFIX + base45.encode(bytes(flipped)), trust, now=NOW).reason)
    # the pass's signature, the holder's, and the structure each catch some
    assert {Reason.BAD_SIGNATURE, Reason.UNREADABLE} <= reasons


@pytest.mark.parametrize("alg", ["ed25519", "es256"])
def test_every_single_bit_flip_of_the_inner_pass_is_refused_under_a_good_holder_signature(alg: str) -> None:
    """The holder signs whatever pass bytes it is handed: the issuer's signature must catch them."""
    issuer = generate_private_key(alg)
    trust = trust_for(issuer)
    inner = pass_cose(bound(issuer, zones=["A"], entries=1))
    sig = raw_sig(HOLDER, signed_bytes(bytes(range(16)), STEP))
    reasons = set()
    for bit in range(len(inner) * 8):
        flipped = bytearray(inner)
        flipped[bit // 8] ^= 1 << (bit % 8)
        reasons.add(refused(by_hand(bytes(flipped), STEP, sig), trust, now=NOW).reason)
    assert {Reason.BAD_SIGNATURE, Reason.UNREADABLE} <= reasons


def test_every_truncation_of_a_presentation_is_refused(issuer) -> None:
    shown = present(bound(issuer), HOLDER, now=NOW)
    body, trust = body_of(shown), trust_for(issuer)
    for size in range(len(body)):
        refused(PREFIX + base45.encode(body[:size]), trust, now=NOW)
    for size in range(0, len(shown), 7):
        refused(shown[:size], trust, now=NOW)


# -- the decoder: every malformed presentation is named ---------------------------------------------


def _good(issuer) -> tuple[bytes, int, bytes]:
    return decode_presentation(present(bound(issuer), HOLDER, now=NOW))


@pytest.mark.parametrize(("mangle", "detail"), [
    (lambda c, n, s: cbor2.dumps([c, n, s]) + b"\x00", "Damaged presentation (not canonical CBOR)"),
    (lambda c, n, s: b"\x9f" + cbor2.dumps([c, n, s])[1:] + b"\xff",
     "Damaged presentation (not canonical CBOR)"),
    (lambda c, n, s: b"\x83" + cbor2.dumps(c) + b"\x1b" + n.to_bytes(8, "big") + cbor2.dumps(s),
     "Damaged presentation (not canonical CBOR)"),
    (lambda c, n, s: cbor2.dumps([c, n]), "Damaged presentation (not an array of pass, step and signature)"),
    (lambda c, n, s: cbor2.dumps([c, n, s, b""]),
     "Damaged presentation (not an array of pass, step and signature)"),
    (lambda c, n, s: cbor2.dumps({0: c, 1: n, 2: s}),
     "Damaged presentation (not an array of pass, step and signature)"),
    (lambda c, n, s: cbor2.dumps(cbor2.CBORTag(18, [c, n, s])),
     "Damaged presentation (not an array of pass, step and signature)"),
    (lambda c, n, s: cbor2.dumps([c.hex(), n, s]), "Damaged presentation (the pass must be a byte string)"),
    (lambda c, n, s: cbor2.dumps([c, -n, s]),
     "Damaged presentation (the time step must be an unsigned integer)"),
    (lambda c, n, s: cbor2.dumps([c, float(n), s]),
     "Damaged presentation (the time step must be an unsigned integer)"),
    (lambda c, n, s: cbor2.dumps([c, True, s]),
     "Damaged presentation (the time step must be an unsigned integer)"),
    (lambda c, n, s: cbor2.dumps([c, 2**64, s]),
     "Damaged presentation (the time step must be an unsigned integer)"),
    (lambda c, n, s: cbor2.dumps([c, n, s[:63]]), "Damaged presentation (the signature must be 64 bytes)"),
    (lambda c, n, s: cbor2.dumps([c, n, s + b"\x00"]),
     "Damaged presentation (the signature must be 64 bytes)"),
    (lambda c, n, s: b"\xff", "Damaged presentation (not an array of pass, step and signature)"),
    (lambda c, n, s: b"", "Damaged presentation (not an array of pass, step and signature)"),
    (lambda c, n, s: b"\x83", "Damaged presentation (the pass must be a byte string)"),
    (lambda c, n, s: b"\x83\x59\x01", "Damaged presentation (the pass must be a byte string)"),
    (lambda c, n, s: b"\x83\x5c" + c, "Damaged presentation (the pass must be a byte string)"),  # reserved
    (lambda c, n, s: b"\x83\x5f" + cbor2.dumps(c) + b"\xff" + cbor2.dumps(n) + cbor2.dumps(s),
     "Damaged presentation (not canonical CBOR)"),  # an indefinite-length byte string
    (lambda c, n, s: b"\x83\x5a" + len(c).to_bytes(4, "big") + c + cbor2.dumps(n) + cbor2.dumps(s),
     "Damaged presentation (not canonical CBOR)"),  # the pass's length in 4 bytes
    (lambda c, n, s: b"\x83" + cbor2.dumps(c)[:-1], "Damaged presentation (cut short)"),
    (lambda c, n, s: b"\x83" + cbor2.dumps(c) + b"\x18\x05" + cbor2.dumps(s),
     "Damaged presentation (not canonical CBOR)"),  # 5 in two bytes
    (lambda c, n, s: b"\x83" + cbor2.dumps(c) + b"\x1b" + bytes(4),
     "Damaged presentation (the time step must be an unsigned integer)"),  # its argument cut short
    (lambda c, n, s: b"\x83" + cbor2.dumps(c) + b"\x1f" + cbor2.dumps(s),
     "Damaged presentation (the time step must be an unsigned integer)"),
    (lambda c, n, s: cbor2.dumps([c, n, s])[:-40], "Damaged presentation (the signature must be 64 bytes)"),
    (lambda c, n, s: b"\x83" + cbor2.dumps(c) + cbor2.dumps(n) + b"\x59\x00\x40" + s,
     "Damaged presentation (the signature must be 64 bytes)"),
])
def test_every_malformed_presentation_is_named(issuer, mangle, detail: str) -> None:
    inner, step, sig = _good(issuer)
    text = PREFIX + base45.encode(mangle(inner, step, sig))
    refusal = refused(text, trust_for(issuer), now=NOW)
    assert (refusal.reason, refusal.detail) == (Reason.UNREADABLE, detail)


@pytest.mark.parametrize(("text", "detail"), [
    ("PG2:AB!", "Damaged code (character outside the Base45 alphabet)"),
    ("PG2:GGW", "Damaged code (Base45 triplet above 65535)"),
    ("PG2:" + "0" * (MAX_TEXT - 3), "Not a pass (too long)"),
    ("PG3:ABC", "Not a passgate pass"),
    (b"PG2:\xff", "Not a pass (binary data)"),
])
def test_unreadable_presentation_texts_are_named(text, detail: str) -> None:
    refusal = refused(text, TrustStore(), now=NOW)
    assert (refusal.reason, refusal.detail) == (Reason.UNREADABLE, detail)


def test_a_compressed_pass_inside_a_presentation_is_damaged(issuer) -> None:
    """PG2 carries the pass inflated: a zlib body inside is not a COSE message."""
    import zlib

    inner, step, sig = _good(issuer)
    refusal = refused(by_hand(zlib.compress(inner), step, sig), trust_for(issuer), now=NOW)
    assert refusal.reason is Reason.UNREADABLE and refusal.detail.startswith("Damaged code")


@pytest.mark.parametrize(("r", "s"), [(1, 1), (0, 5), (2**255, 2**255 - 1), (2**256 - 1, 2**248), (128, 127),
                                      (2**247 + 1, 0), (12345, 2**200)])
def test_the_signature_becomes_the_der_cryptography_wants(r: int, s: int) -> None:
    from passgate.cose import raw_to_der as _der

    assert _der(r.to_bytes(32, "big") + s.to_bytes(32, "big")) == encode_dss_signature(r, s)


def test_decode_presentation_refuses_a_pg1_text(issuer) -> None:
    with pytest.raises(PassRefused, match="Not a passgate presentation"):
        decode_presentation(bound(issuer))


def test_nothing_but_a_refusal_escapes_a_presentation() -> None:
    class Broken(TrustStore):
        def find_signer(self, msg, external_aad=b""):  # type: ignore[no-untyped-def]
            raise RuntimeError("a bug somewhere")

    issuer = generate_private_key()
    trust = Broken()
    trust.add(issuer.public_key())
    refusal = refused(present(bound(issuer), HOLDER, now=NOW), trust, now=NOW)
    assert (refusal.reason, refusal.detail) == (Reason.UNREADABLE, "Not a valid pass (RuntimeError)")


# -- the cnf and step claims: strict ------------------------------------------------------------------

X = HOLDER.public_key().public_numbers().x.to_bytes(32, "big")
Y = HOLDER.public_key().public_numbers().y.to_bytes(32, "big")
COSE_KEY = {1: 2, -1: 1, -2: X, -3: Y}
GOOD = {CLAIM_NBF: NOW - HOUR, CLAIM_EXP: NOW + HOUR, CLAIM_CTI: bytes(16)}


def _off_curve_y() -> bytes:
    y = int.from_bytes(Y, "big")
    return ((y + 1) % (2**256 - 2**224 + 2**192 + 2**96 - 1)).to_bytes(32, "big")


@pytest.mark.parametrize(("cnf", "detail"), [
    ([COSE_KEY], "holder key: cnf must be a map of one COSE_Key"),
    ({2: COSE_KEY}, "holder key: cnf must be a map of one COSE_Key"),
    ({1: COSE_KEY, 3: b"kid"}, "holder key: cnf must be a map of one COSE_Key"),
    ({1: [2, 1, X, Y]}, "holder key: a COSE_Key with kty, crv, x and y only"),
    ({1: {1: 2, -1: 1, -2: X}}, "holder key: a COSE_Key with kty, crv, x and y only"),
    ({1: {**COSE_KEY, 3: -7}}, "holder key: a COSE_Key with kty, crv, x and y only"),
    ({1: {**COSE_KEY, 1: 1}}, "holder key: not an EC2 P-256 key"),
    ({1: {**COSE_KEY, 1: "EC2"}}, "holder key: not an EC2 P-256 key"),
    ({1: {**COSE_KEY, -1: 2}}, "holder key: not an EC2 P-256 key"),
    ({1: {**COSE_KEY, -1: True}}, "holder key: not an EC2 P-256 key"),
    ({1: {**COSE_KEY, -2: X[1:]}}, "holder key: x and y must be 32-byte strings"),
    ({1: {**COSE_KEY, -3: Y + b"\x00"}}, "holder key: x and y must be 32-byte strings"),
    ({1: {**COSE_KEY, -3: True}}, "holder key: x and y must be 32-byte strings"),  # COSE's compressed y
    ({1: {**COSE_KEY, -2: X.hex()}}, "holder key: x and y must be 32-byte strings"),
    ({1: {**COSE_KEY, -3: _off_curve_y()}}, "holder key: the point is not on the P-256 curve"),
    ({1: {**COSE_KEY, -2: bytes(32), -3: bytes(32)}}, "holder key: the point is not on the P-256 curve"),
])
def test_every_malformed_cnf_claim_is_named(issuer, cnf, detail: str) -> None:
    text = PG1 + base45.encode(cose.sign1(cbor2.dumps({**GOOD, CLAIM_CNF: cnf}), issuer, kid=key_id(issuer)))
    refusal = refused(text, trust_for(issuer), now=NOW)
    assert (refusal.reason, refusal.detail) == (Reason.UNREADABLE, f"Invalid pass contents ({detail})")


@pytest.mark.parametrize("step", [4, 301, 0, -15, "15", 15.0, True, None])
def test_a_step_claim_out_of_range_is_unreadable(issuer, step) -> None:
    claims = {**GOOD, CLAIM_CNF: {1: COSE_KEY}, CLAIM_STEP: step}
    text = PG1 + base45.encode(cose.sign1(cbor2.dumps(claims), issuer, kid=key_id(issuer)))
    refusal = refused(text, trust_for(issuer), now=NOW)
    assert refusal.reason is Reason.UNREADABLE
    assert refusal.detail == "Invalid pass contents (presentation time step)"


@pytest.mark.parametrize(("kwargs", "error"), [
    ({"holder_key": ec.generate_private_key(ec.SECP384R1()).public_key()}, TypeError),
    ({"holder_key": ed25519.Ed25519PrivateKey.generate().public_key()}, TypeError),
    ({"holder_key": HOLDER}, TypeError),  # the private key by mistake: it must never leave the phone
    ({"holder_key": "04ab"}, TypeError),
    ({"holder_key": point(HOLDER)[:64]}, ValueError),
    ({"holder_key": b"\x04" + bytes(64)}, ValueError),
    ({"holder_key": b"\x02" + X}, ValueError),  # compressed: the contract carries both coordinates
    ({"holder_key": HOLDER.public_key(), "holder_step": 4}, ValueError),
    ({"holder_key": HOLDER.public_key(), "holder_step": 301}, ValueError),
    ({"holder_key": HOLDER.public_key(), "holder_step": 15.0}, ValueError),
    ({"holder_step": 30}, ValueError),  # a step without a holder
])
def test_issue_refuses_bad_holder_arguments(issuer, kwargs, error) -> None:
    with pytest.raises(error):
        issue_pass(issuer, valid_from=NOW, valid_until=NOW + HOUR, **kwargs)


def test_present_refuses_what_it_cannot_present(issuer) -> None:
    text = bound(issuer)
    for bad_key in (ec.generate_private_key(ec.SECP384R1()), HOLDER.public_key(), generate_private_key()):
        with pytest.raises(TypeError):
            present(text, bad_key, now=NOW)  # type: ignore[arg-type]
    for bad_text in ("PG1:AB!", "hello", present(text, HOLDER, now=NOW), b"\xff", 42):
        with pytest.raises(ValueError, match="not a readable pass"):
            present(bad_text, HOLDER, now=NOW)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no time step"):
        present(text, HOLDER, now=-1)


# -- arbitrary input: a Pass or a refusal, nothing else ----------------------------------------------

ISSUER = generate_private_key()
TRUST = trust_for(ISSUER)
INNER = pass_cose(bound(ISSUER))


@given(st.text(max_size=600))
@settings(max_examples=examples(200, 600))
def test_arbitrary_text_is_refused_and_nothing_else_escapes(text: str) -> None:
    for candidate in (text, PREFIX + text, PREFIX.lower() + text):
        try:
            result = verify_pass(candidate, TRUST, now=NOW)
        except PassRefused as exc:
            assert isinstance(exc.reason, Reason)
        else:
            raise AssertionError(f"verified without a signature: {result}")


@given(st.binary(max_size=600))
@settings(max_examples=examples(200, 600))
def test_arbitrary_bytes_are_refused_and_nothing_else_escapes(data: bytes) -> None:
    for candidate in (data, PREFIX + base45.encode(data), (PREFIX.encode() + data)):
        with pytest.raises(PassRefused):
            verify_pass(candidate, TRUST, now=NOW)
        with pytest.raises(PassRefused):
            decode_presentation(candidate)


CBOR_ANY = st.recursive(
    st.none() | st.booleans() | st.integers() | st.binary(max_size=70) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4), max_leaves=8)


@given(st.one_of(st.just(INNER), CBOR_ANY), st.one_of(st.integers(), CBOR_ANY),
       st.one_of(st.binary(min_size=64, max_size=64), CBOR_ANY), st.integers(0, 3))
@settings(max_examples=examples(200, 600))
def test_arbitrary_presentation_shapes_give_a_refusal(inner, step, sig, extra: int) -> None:
    """Near-misses of the real shape: the real pass with any step and signature, any items at all."""
    items = [inner, step, sig][: 3 - (extra == 1)] + [b""] * (extra == 2)
    with pytest.raises(PassRefused):
        verify_pass(PREFIX + base45.encode(cbor2.dumps(items)), TRUST, now=NOW)


@given(st.binary(min_size=64, max_size=64), st.integers(0, 2**64 - 1))
@settings(max_examples=examples(100, 300))
def test_random_signatures_never_verify(sig: bytes, step: int) -> None:
    refusal = refused(by_hand(INNER, step, sig), TRUST, now=NOW)
    assert refusal.reason is Reason.BAD_SIGNATURE


# -- size: a phone screen's QR code ---------------------------------------------------------------


@pytest.mark.parametrize("alg", ["ed25519", "es256"])
def test_a_typical_presentation_fits_qr_version_13_at_level_m(alg: str) -> None:
    """A season ticket: two zones, entries, a product and an issuer name."""
    issuer = generate_private_key(alg)
    text = issue_pass(issuer, valid_from=NOW, valid_until=NOW + 365 * 86400, zones=["NORTH", "SOUTH"],
                      entries=100, product="SEASON", issuer="FC Example", holder_key=HOLDER.public_key())
    shown = present(text, HOLDER, now=NOW)
    qr = segno.make(shown, error="M", mode="alphanumeric", micro=False)
    assert qr.mode == "alphanumeric"
    assert qr.version <= 13, (len(shown), qr.version)
    assert len(shown) > len(text)  # the pass rides inside, plus a step and a signature


# -- scanners: serial and keyboard wedge -----------------------------------------------------------

QR_ALPHANUMERIC = set("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:")
_SHOWN_ISSUER = generate_private_key("es256")
_SHOWN_TRUST = trust_for(_SHOWN_ISSUER)
_SHOWN = present(bound(_SHOWN_ISSUER, zones=["A"], entries=1, product="DAY", issuer="ACME"), HOLDER, now=NOW)


def _presentations() -> list[str]:
    issuer = generate_private_key()
    text = bound(issuer, zones=["A"], entries=1)
    return [present(text, HOLDER, now=NOW + 15 * i) for i in range(20)]


def test_a_presentation_is_qr_alphanumeric_only() -> None:
    for shown in _presentations():
        assert set(shown) <= QR_ALPHANUMERIC
        assert shown == shown.strip()  # nothing a scanner or ``strip`` could drop


@given(st.lists(st.integers(1, 64), min_size=1, max_size=40), st.sampled_from(["any", "cr", "lf", "crlf"]))
@settings(max_examples=examples(50, 200))
def test_a_presentation_through_serial_framing_is_one_scan(cuts: list[int], framing: str) -> None:
    """However a UART's reads cut it, with the AIM id a scanner may put in front. The line end arrives
    in one read here: ``crlf`` framing does not find a CR and LF split across two reads (reported)."""
    shown = _SHOWN
    end = {"any": b"\r\n", "cr": b"\r", "lf": b"\n", "crlf": b"\r\n"}[framing]
    data = b"]Q1" + shown.encode()
    framer = Framer(framing, min_len=8)  # the serial source's defaults but the framing
    frames, at, t = [], 0, 1.0
    for cut in cuts * (len(data) // len(cuts) + 1):
        if at >= len(data):
            break
        frames += framer.feed(data[at : at + cut], t)
        at, t = at + cut, t + 0.001
    frames += framer.feed(end, t)
    assert [(f.data, f.error) for f in frames] == [(shown.encode(), None)]
    assert verify_pass(frames[0].data, _SHOWN_TRUST, now=NOW).holder_verified


def test_a_presentation_through_a_keyboard_wedge_is_one_scan() -> None:
    """US layout, Shift for the symbols, Enter or a gap at the end, Caps Lock on: one scan that verifies."""
    shown = _SHOWN
    keys, framer = KeyMap(), Framer("cr", gap=0.1, min_len=8)  # KeyboardScanner's framer
    frames = framer.feed(keys.feed(key_events(shown)), 1.0)
    frames += framer.feed(keys.feed(key_events(shown, enter=False)), 2.0) + framer.expire(2.2)
    caps = [(1, 58, 1), (1, 58, 0)]
    frames += framer.feed(keys.feed([*caps, *key_events(shown)]), 3.0)
    assert [f.error for f in frames] == [None, None, None]
    assert [f.data for f in frames] == [shown.encode(), shown.encode(), shown.lower().encode()]
    for frame in frames:
        assert verify_pass(frame.data, _SHOWN_TRUST, now=NOW).holder_verified


def test_a_presentation_through_a_serial_scanner(tmp_path) -> None:
    """The real ``SerialScanner`` on a pty: written in small pieces like a slow UART, one scan."""
    pty = Pty(tmp_path / "ttyScanner")
    try:
        source = SerialScanner(str(pty.link), dedupe=0)  # its defaults: any line end, 8 bytes at least
        reader = Reader(source)
        assert wait_for(lambda: source.health().connected)
        data = _SHOWN.encode() + b"\r\n"
        for at in range(0, len(data), 50):
            pty.write(data[at : at + 50])
        (scan,) = reader.take()
        stop(reader)
        assert scan.text == _SHOWN and reader.nothing_more()
        assert source.health().dropped == 0
        assert verify_pass(scan.bytes, _SHOWN_TRUST, now=NOW).holder_verified
    finally:
        for fd in (pty.master, pty.slave):
            with contextlib.suppress(OSError):
                os.close(fd)


# -- CLI and the wallet's key ----------------------------------------------------------------------


def test_passgate_verify_reads_a_presentation(tmp_path, capsys) -> None:
    from passgate.keys import public_pem

    (tmp_path / "issuer.pub.pem").write_bytes(public_pem(_SHOWN_ISSUER))
    now = datetime.fromtimestamp(NOW, UTC).isoformat()
    assert cli_main(["verify", "--trust", str(tmp_path), "--now", now, _SHOWN]) == 0
    verdict = json.loads(capsys.readouterr().out)
    assert (verdict["valid"], verdict["holder_bound"], verdict["holder_verified"]) == (True, True, True)
    text = bound(_SHOWN_ISSUER)
    assert cli_main(["verify", "--trust", str(tmp_path), "--now", now, text]) == 0
    verdict = json.loads(capsys.readouterr().out)
    assert (verdict["valid"], verdict["holder_bound"], verdict["holder_verified"]) == (True, True, False)
    later = datetime.fromtimestamp(NOW + 60, UTC).isoformat()
    assert cli_main(["verify", "--trust", str(tmp_path), "--now", later, _SHOWN]) == 1
    assert json.loads(capsys.readouterr().out)["reason"] == "presentation_expired"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_a_webcrypto_jwk_becomes_the_holder_key() -> None:
    jwk = {"kty": "EC", "crv": "P-256", "x": _b64url(X), "y": _b64url(Y), "ext": True, "key_ops": ["verify"]}
    key = public_key_from_jwk(jwk)
    assert key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint) == point(HOLDER)


@pytest.mark.parametrize("change", [
    {"kty": "OKP"}, {"crv": "P-384"}, {"x": None}, {"y": _b64url(Y)[:-1]}, {"y": _b64url(Y) + "A"},
    {"x": _b64url(X)[:-1] + "="}, {"x": "+" + _b64url(X)[1:]}, {"y": _b64url(_off_curve_y())},
    {"x": _b64url(bytes(32)), "y": _b64url(bytes(32))},
])
def test_a_bad_jwk_is_a_value_error(change: dict) -> None:
    jwk = {"kty": "EC", "crv": "P-256", "x": _b64url(X), "y": _b64url(Y), **change}
    with pytest.raises(ValueError):
        public_key_from_jwk(jwk)
    with pytest.raises(ValueError):
        public_key_from_jwk("not a map")  # type: ignore[arg-type]


def test_a_pass_built_by_hand_has_the_holder_defaults() -> None:
    p = Pass(pass_id=bytes(16), kid=b"k", alg=cose.EDDSA, valid_from=1, valid_until=2)
    assert (p.holder_key, p.holder_step, p.holder_verified, p.presentation_step) == (None, 15, False, None)
