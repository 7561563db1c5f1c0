"""The PG1 pass: issue/verify round trips, every refusal reason, forgery and robustness."""

import dataclasses
import zlib
from datetime import UTC, datetime, timedelta

import cbor2
import pytest
import segno
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from hypothesis import given, settings
from hypothesis import strategies as st

from passgate import (
    PassRefused,
    Reason,
    TrustedKey,
    TrustStore,
    base45,
    cose,
    generate_private_key,
    issue_pass,
    key_id,
    verify_pass,
)
from passgate.passes import CLAIM_CTI, CLAIM_EXP, CLAIM_NBF, PREFIX
from tests.helpers import examples

NOW = 1_800_000_000  # a fixed, injected clock
HOUR = 3600


def trust_for(*keys) -> TrustStore:
    store = TrustStore()
    for key in keys:
        store.add(key.public_key())
    return store


@pytest.fixture(params=["ed25519", "es256"])
def key(request):
    return generate_private_key(request.param)


def refused(text, trust, **kw) -> PassRefused:
    with pytest.raises(PassRefused) as info:
        verify_pass(text, trust, **kw)
    return info.value


def body_of(text: str) -> bytes:
    return base45.decode(text[len(PREFIX):])


def text_of(body: bytes) -> str:
    return PREFIX + base45.encode(body)


def test_round_trip_keeps_every_claim(key) -> None:
    pass_id = bytes(range(16))
    text = issue_pass(
        key, valid_from=NOW, valid_until=NOW + HOUR, zones=["A", "VIP"], entries=3,
        product="DAY", reentry=True, pass_id=pass_id, issuer="ACME", holder_ref=b"\x01\x02",
        issued_at=NOW - 10,
    )
    p = verify_pass(text, trust_for(key), now=NOW)
    assert (p.pass_id, p.valid_from, p.valid_until, p.issued_at) == (pass_id, NOW, NOW + HOUR, NOW - 10)
    assert (p.zones, p.entries, p.product, p.reentry, p.issuer) == (("A", "VIP"), 3, "DAY", True, "ACME")
    assert p.holder_ref == b"\x01\x02"
    assert p.kid == key_id(key)
    assert p.alg == (cose.EDDSA if isinstance(key, ed25519.Ed25519PrivateKey) else cose.ES256)
    assert p.valid_in_zone(["VIP"]) and not p.valid_in_zone(["B"])


def test_defaults_mean_any_zone_unlimited_entries(key) -> None:
    p = verify_pass(issue_pass(key, valid_from=NOW, valid_until=NOW + 1), trust_for(key), now=NOW)
    assert p.zones == () and p.entries is None and p.reentry is False and p.valid_in_zone(["X"])
    assert len(p.pass_id) == 16


def test_aware_datetimes_are_accepted_naive_refused(key) -> None:
    start = datetime.fromtimestamp(NOW, UTC)
    text = issue_pass(key, valid_from=start, valid_until=start + timedelta(hours=1))
    assert verify_pass(text, trust_for(key), now=start).valid_until == NOW + HOUR
    with pytest.raises(ValueError, match="timezone-aware"):
        issue_pass(key, valid_from=datetime(2026, 1, 1), valid_until=datetime(2026, 1, 2))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"valid_until": NOW},  # empty window
        {"entries": 0},
        {"pass_id": b"short"},
        {"zones": [""]},
    ],
)
def test_issue_refuses_bad_arguments(key, kwargs) -> None:
    with pytest.raises(ValueError):
        issue_pass(key, **{"valid_from": NOW, "valid_until": NOW + 1, **kwargs})


def test_time_window_with_skew(key) -> None:
    trust = trust_for(key)
    text = issue_pass(key, valid_from=NOW, valid_until=NOW + HOUR)
    assert refused(text, trust, now=NOW - 61, skew=60).reason is Reason.NOT_YET_VALID
    assert verify_pass(text, trust, now=NOW - 60, skew=60)
    assert verify_pass(text, trust, now=NOW + HOUR + 59, skew=60)
    assert refused(text, trust, now=NOW + HOUR + 60, skew=60).reason is Reason.EXPIRED
    assert refused(text, trust, now=NOW - 1, skew=0).reason is Reason.NOT_YET_VALID
    early = refused(text, trust, now=NOW - HOUR, skew=0)
    assert early.detail.startswith("Valid from ")


def test_unknown_key(key) -> None:
    text = issue_pass(key, valid_from=NOW, valid_until=NOW + HOUR)
    stranger = trust_for(generate_private_key())
    assert refused(text, stranger, now=NOW).reason is Reason.UNKNOWN_KEY


def test_untrusted_key_with_a_trusted_kid_is_forged(key) -> None:
    attacker = generate_private_key("ed25519" if isinstance(key, ed25519.Ed25519PrivateKey) else "es256")
    claims = {CLAIM_NBF: NOW, CLAIM_EXP: NOW + HOUR, CLAIM_CTI: bytes(16)}
    forged = text_of(cose.sign1(cbor2.dumps(claims), attacker, kid=key_id(key)))
    assert refused(forged, trust_for(key), now=NOW).reason is Reason.BAD_SIGNATURE


def test_alg_in_unprotected_header_is_refused(key) -> None:
    """Algorithm confusion: a message whose alg is only unprotected never verifies."""
    msg = cose.decode_sign1(body_of(issue_pass(key, valid_from=NOW, valid_until=NOW + HOUR)))
    protected = cbor2.dumps({cose.HEADER_KID: msg.kid})
    body = cbor2.dumps([protected, {cose.HEADER_ALG: msg.alg}, msg.payload, msg.signature])
    assert refused(text_of(body), trust_for(key), now=NOW).reason is Reason.UNSUPPORTED_ALGORITHM


def test_alg_swapped_to_the_other_algorithm_is_refused() -> None:
    ed_key = generate_private_key("ed25519")
    msg = cose.decode_sign1(body_of(issue_pass(ed_key, valid_from=NOW, valid_until=NOW + HOUR)))
    protected = cbor2.dumps({cose.HEADER_ALG: cose.ES256, cose.HEADER_KID: msg.kid})
    body = cbor2.dumps([protected, {}, msg.payload, msg.signature])
    assert refused(text_of(body), trust_for(ed_key), now=NOW).reason is Reason.BAD_SIGNATURE


def test_untagged_and_compressed_bodies_are_accepted(key) -> None:
    trust = trust_for(key)
    body = body_of(issue_pass(key, valid_from=NOW, valid_until=NOW + HOUR))
    assert body[0] == 0xD2  # we emit tagged
    untagged = body[1:]
    for variant in (untagged, zlib.compress(body), zlib.compress(untagged, 9)):
        assert verify_pass(text_of(variant), trust, now=NOW)


def test_zip_bomb_is_refused(key) -> None:
    bomb = zlib.compress(b"\x00" * 1_000_000)
    assert refused(text_of(bomb), trust_for(key), now=NOW).reason is Reason.UNREADABLE


def test_lower_case_from_caps_lock_is_accepted(key) -> None:
    text = issue_pass(key, valid_from=NOW, valid_until=NOW + HOUR)
    assert verify_pass("  " + text.lower() + "\r\n", trust_for(key), now=NOW)


@pytest.mark.parametrize("alg", ["ed25519", "es256"])
def test_every_single_bit_flip_is_refused(alg: str) -> None:
    key = generate_private_key(alg)
    trust = trust_for(key)
    body = body_of(issue_pass(key, valid_from=NOW, valid_until=NOW + HOUR, zones=["A"], entries=1))
    reasons = set()
    for bit in range(len(body) * 8):
        flipped = bytearray(body)
        flipped[bit // 8] ^= 1 << (bit % 8)
        reasons.add(refused(text_of(bytes(flipped)), trust, now=NOW).reason)
    assert Reason.BAD_SIGNATURE in reasons and Reason.UNREADABLE in reasons


@pytest.mark.parametrize("alg", ["ed25519", "es256"])
def test_every_truncation_is_refused(alg: str) -> None:
    key = generate_private_key(alg)
    text = issue_pass(key, valid_from=NOW, valid_until=NOW + HOUR)
    body = body_of(text)
    for size in range(len(body)):
        refused(text_of(body[:size]), trust_for(key), now=NOW)
    for size in range(len(text)):
        refused(text[:size], trust_for(key), now=NOW)


def test_signed_but_malformed_claims_are_unreadable(key) -> None:
    trust = trust_for(key)
    good = {CLAIM_NBF: NOW, CLAIM_EXP: NOW + HOUR, CLAIM_CTI: bytes(16)}
    for claims in [
        [1, 2],
        {**good, CLAIM_CTI: b"short"},
        {**good, CLAIM_NBF: "yesterday"},
        {**good, -2: "A"},  # zones must be a list
        {**good, -3: 0},  # entries >= 1
        {**good, -4: 1},  # reentry must be a bool
    ]:
        text = text_of(cose.sign1(cbor2.dumps(claims), key, kid=key_id(key)))
        assert refused(text, trust, now=NOW).reason is Reason.UNREADABLE


def test_key_rotation_keeps_passes_issued_before_retirement() -> None:
    old, new = generate_private_key(), generate_private_key()
    retired = datetime.fromtimestamp(NOW, UTC)
    trust = TrustStore([TrustedKey(old.public_key(), issuer="ACME", retired=retired),
                        TrustedKey(new.public_key(), issuer="ACME")])
    before = issue_pass(old, valid_from=NOW, valid_until=NOW + HOUR, issued_at=NOW - 1)
    after = issue_pass(old, valid_from=NOW, valid_until=NOW + HOUR, issued_at=NOW)
    fresh = issue_pass(new, valid_from=NOW, valid_until=NOW + HOUR, issued_at=NOW)
    assert verify_pass(before, trust, now=NOW).issuer == "ACME"
    assert refused(after, trust, now=NOW).reason is Reason.KEY_RETIRED
    assert verify_pass(fresh, trust, now=NOW)


def test_several_issuers_at_once() -> None:
    keys = [generate_private_key("ed25519"), generate_private_key("es256"), generate_private_key()]
    trust = trust_for(*keys)
    for k in keys:
        assert verify_pass(issue_pass(k, valid_from=NOW, valid_until=NOW + 1), trust, now=NOW)


def test_typical_pass_fits_qr_version_8_at_level_m() -> None:
    key = generate_private_key()
    minimal = issue_pass(key, valid_from=NOW, valid_until=NOW + HOUR)
    typical = issue_pass(key, valid_from=NOW, valid_until=NOW + HOUR, zones=["A"], entries=1)
    assert len(minimal) < len(typical)
    for text in (minimal, typical):
        qr = segno.make_qr(text, error="m", boost_error=False)
        assert qr.mode == "alphanumeric"
        assert qr.version <= 8


@given(st.text(max_size=400))
@settings(max_examples=300)
def test_arbitrary_text_only_raises_pass_refused(text: str) -> None:
    trust = TrustStore()
    for candidate in (text, PREFIX + text):
        try:
            verify_pass(candidate, trust, now=NOW)
        except PassRefused as exc:
            assert isinstance(exc.reason, Reason)


@given(st.binary(max_size=400))
@settings(max_examples=300)
def test_arbitrary_bytes_only_raise_pass_refused(data: bytes) -> None:
    for candidate in (data, text_of(data), text_of(b"\xd2" + data), text_of(b"\x78" + data)):
        with pytest.raises(PassRefused):
            verify_pass(candidate, TrustStore(), now=NOW)


CBOR_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.binary(max_size=20) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.integers(-8, 8), inner, max_size=5),
    max_leaves=20,
)


@given(protected=CBOR_VALUES, unprotected=CBOR_VALUES, payload=CBOR_VALUES)
@settings(max_examples=examples(100, 300))
def test_arbitrary_cose_shapes_only_raise_pass_refused(protected, unprotected, payload) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    trust = trust_for(key)
    kid_header = cbor2.dumps({cose.HEADER_ALG: cose.EDDSA, cose.HEADER_KID: key_id(key)})
    for body in (
        [cbor2.dumps(protected), unprotected, cbor2.dumps(payload), bytes(64)],
        [kid_header, unprotected, cbor2.dumps(payload), bytes(64)],
        [protected, unprotected, payload, payload],
    ):
        with pytest.raises(PassRefused):
            verify_pass(text_of(cbor2.dumps(cbor2.CBORTag(18, body))), trust, now=NOW)


def test_non_string_input_is_refused() -> None:
    for value in (None, 12, b"\xff\xfe", bytearray(b"PG1:"), ["PG1:"]):
        with pytest.raises(PassRefused):
            verify_pass(value, TrustStore(), now=NOW)  # type: ignore[arg-type]


def test_p384_keys_are_not_accepted_for_issuing() -> None:
    with pytest.raises(cose.UnsupportedAlgorithmError):
        issue_pass(ec.generate_private_key(ec.SECP384R1()), valid_from=NOW, valid_until=NOW + 1)


# -- the contract, pinned down ----------------------------------------------------------------
from passgate.passes import (  # noqa: E402
    MAX_INFLATED,
    MAX_TEXT,
    Pass,
    check_time,
    decode_text,
    iso_utc,
    verify_signature,
)


@pytest.fixture
def utc(monkeypatch: pytest.MonkeyPatch):
    import time

    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def signed(key, claims: dict) -> str:
    return text_of(cose.sign1(cbor2.dumps(claims), key, kid=key_id(key)))


GOOD = {CLAIM_NBF: NOW, CLAIM_EXP: NOW + HOUR, CLAIM_CTI: bytes(16)}


@pytest.mark.parametrize(("claims", "detail"), [
    (b"\xff", "Invalid pass contents (not CBOR)"),
    ([1, 2], "Invalid pass contents (not a claims map)"),
    ({**GOOD, CLAIM_CTI: b"short"}, "Invalid pass contents (pass id)"),
    ({**GOOD, CLAIM_CTI: "0" * 16}, "Invalid pass contents (pass id)"),
    ({**GOOD, CLAIM_NBF: "yesterday"}, "Invalid pass contents (validity window)"),
    ({**GOOD, CLAIM_EXP: 1.5}, "Invalid pass contents (validity window)"),
    ({**GOOD, 6: "today"}, "Invalid pass contents (issue time)"),
    ({**GOOD, 1: 42}, "Invalid pass contents (issuer)"),
    ({**GOOD, -1: 7}, "Invalid pass contents (product)"),
    ({**GOOD, -2: "A"}, "Invalid pass contents (zones)"),
    ({**GOOD, -2: ["A", 1]}, "Invalid pass contents (zones)"),
    ({**GOOD, -3: 0}, "Invalid pass contents (entries)"),
    ({**GOOD, -3: True}, "Invalid pass contents (entries)"),
    ({**GOOD, -4: 1}, "Invalid pass contents (re-entry)"),
    ({**GOOD, -5: "ref"}, "Invalid pass contents (holder reference)"),
])
def test_every_malformed_claim_is_named(claims, detail: str) -> None:
    key = generate_private_key()
    payload = claims if isinstance(claims, bytes) else cbor2.dumps(claims)
    text = text_of(cose.sign1(payload, key, kid=key_id(key)))
    refusal = refused(text, trust_for(key), now=NOW)
    assert (refusal.reason, refusal.detail) == (Reason.UNREADABLE, detail)


def test_optional_claims_may_be_absent() -> None:
    key = generate_private_key()
    p = verify_pass(signed(key, GOOD), trust_for(key), now=NOW)  # no iat, iss, zones, entries, ...
    assert (p.issued_at, p.issuer, p.zones, p.entries, p.product, p.reentry, p.holder_ref) == (
        None, None, (), None, None, False, None)
    assert p.kid == key_id(key) and p.pass_id_hex == "00" * 16
    assert p.valid_from_dt == datetime(2027, 1, 15, 8, 0, tzinfo=UTC)
    assert p.valid_until_dt == datetime(2027, 1, 15, 9, 0, tzinfo=UTC)


def test_the_pass_names_its_issuer_before_the_key_does() -> None:
    key = generate_private_key()
    trust = TrustStore()
    trust.add(key.public_key(), issuer="Key's issuer")
    assert verify_pass(signed(key, {**GOOD, 1: "Pass's issuer"}), trust, now=NOW).issuer == "Pass's issuer"
    assert verify_pass(signed(key, GOOD), trust, now=NOW).issuer == "Key's issuer"


def test_a_pass_built_by_hand_has_the_documented_defaults() -> None:
    p = Pass(pass_id=bytes(16), kid=b"k", alg=cose.EDDSA, valid_from=1, valid_until=2)
    assert (p.issued_at, p.issuer, p.zones, p.entries, p.product, p.reentry, p.holder_ref) == (
        None, None, (), None, None, False, None)


def test_a_pass_and_a_cose_message_are_frozen_dataclasses_with_every_field_set(key) -> None:
    """Both have an ``__init__`` of their own (built on every scan; the generated one is slower):
    every field is set, positional or by keyword, and none can be changed afterwards."""
    text = issue_pass(key, valid_from=NOW, valid_until=NOW + HOUR, zones=["A"], entries=2, product="DAY",
                      reentry=True, issuer="ACME", holder_ref=b"r")
    for record in (verify_pass(text, trust_for(key), now=NOW), cose.decode_sign1(body_of(text))):
        values = {f.name: getattr(record, f.name) for f in dataclasses.fields(record)}
        assert type(record)(**values) == record == type(record)(*values.values())
        assert dataclasses.replace(record) == record
        with pytest.raises(dataclasses.FrozenInstanceError):
            record.payload = b""  # type: ignore[union-attr]


def test_refusals_read_as_code_and_detail() -> None:
    refusal = PassRefused(Reason.EXPIRED, "Expired 09:00")
    assert str(refusal) == "expired: Expired 09:00" and refusal.detail == "Expired 09:00"
    assert PassRefused(Reason.BAD_SIGNATURE).detail == "Forged or damaged pass: ask for another copy"


@pytest.mark.parametrize(("text", "detail"), [
    (b"\xff\xfe", "Not a pass (binary data)"),
    (42, "Not a pass"),
    ("PG1:" + "A" * (MAX_TEXT - 4 + 1), "Not a pass (too long)"),
    ("XX1:ABC", "Not a passgate pass"),
    ("PG1:AB!", "Damaged code (character outside the Base45 alphabet)"),
    ("PG1:GGW", "Damaged code (Base45 triplet above 65535)"),
    ("PG1:" + base45.encode(b"\x78\x9c garbage"), "Damaged code (bad compression)"),
    ("PG1:" + base45.encode(zlib.compress(b"x" * 100)[:-6]), "Damaged code (bad compression)"),
    ("PG1:" + base45.encode(zlib.compress(b"x" * (MAX_INFLATED + 1))), "Damaged code (bad compression)"),
    ("PG1:" + base45.encode(cbor2.dumps([1, 2])), "Damaged code (COSE_Sign1 must be an array of 4 items)"),
])
def test_unreadable_input_is_named(text, detail: str) -> None:
    refusal = refused(text, TrustStore())
    assert (refusal.reason, refusal.detail) == (Reason.UNREADABLE, detail)


def test_the_size_limits_are_inclusive() -> None:
    longest = "PG1:" + "0" * (MAX_TEXT - 4)  # exactly 4,096 characters: read, then found damaged
    assert len(longest) == MAX_TEXT == 4096
    assert refused(longest, TrustStore()).detail != "Not a pass (too long)"
    inflated = b"\xa0" * MAX_INFLATED
    assert MAX_INFLATED == 4096
    assert decode_text("PG1:" + base45.encode(zlib.compress(inflated))) == inflated


def test_text_as_bytes_as_a_scanner_gives_it(key) -> None:
    text = issue_pass(key, valid_from=NOW, valid_until=NOW + HOUR)
    assert verify_pass(text.encode(), trust_for(key), now=NOW) == verify_pass(text, trust_for(key), now=NOW)
    assert verify_pass(f"  {text}\r\n", trust_for(key), now=NOW).valid_from == NOW


def test_the_default_skew_is_sixty_seconds(key, utc) -> None:
    p = verify_signature(issue_pass(key, valid_from=NOW, valid_until=NOW + HOUR), trust_for(key))
    assert check_time(p, now=NOW - 60) is p
    with pytest.raises(PassRefused) as early:
        check_time(p, now=NOW - 61)
    assert (early.value.reason, early.value.detail) == (Reason.NOT_YET_VALID, "Valid from 2027-01-15 08:00")
    with pytest.raises(PassRefused) as late:
        verify_pass(issue_pass(key, valid_from=NOW, valid_until=NOW + HOUR), trust_for(key),
                    now=NOW + HOUR + 60)
    assert (late.value.reason, late.value.detail) == (Reason.EXPIRED, "Expired 2027-01-15 09:00")
    assert verify_pass(issue_pass(key, valid_from=NOW, valid_until=NOW + HOUR), trust_for(key),
                       now=NOW + HOUR + 59).valid_until == NOW + HOUR


def test_dates_beyond_the_calendar_are_still_words(utc) -> None:
    key = generate_private_key()
    far = verify_signature(signed(key, {**GOOD, CLAIM_NBF: 2**62, CLAIM_EXP: 2**62 + 1}), trust_for(key))
    with pytest.raises(PassRefused) as info:
        check_time(far, now=NOW)
    assert info.value.detail == f"Valid from epoch {2**62}"
    assert iso_utc(NOW) == "2027-01-15T08:00:00Z" and iso_utc(2**62) == f"epoch {2**62}"


def test_nothing_but_a_refusal_escapes_verification() -> None:
    class Broken(TrustStore):
        def find_signer(self, msg, external_aad=b""):  # type: ignore[no-untyped-def]
            raise RuntimeError("a bug somewhere")

    key = generate_private_key()
    trust = Broken()
    trust.add(key.public_key())
    refusal = refused(issue_pass(key, valid_from=NOW, valid_until=NOW + HOUR), trust, now=NOW)
    assert (refusal.reason, refusal.detail) == (Reason.UNREADABLE, "Not a valid pass (RuntimeError)")
