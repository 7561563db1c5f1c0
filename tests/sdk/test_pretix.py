"""pretix's signed tickets (pretix_sig1): libpretixsync's vectors, round trips with our own keys, every
refusal path, and the CLI's --pretix-event."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from hypothesis import given, settings
from hypothesis import strategies as st

from passgate import KeyFileError, PassRefused, Reason, generate_private_key, issue_pass, key_id
from passgate.cli import main
from passgate.keys import write_keypair
from passgate.pretix import (
    MAX_TEXT,
    EventKeysError,
    PretixKey,
    PretixTicket,
    check_ticket_time,
    decode_sig1,
    event_keys_resource,
    is_sig1,
    issue_sig1,
    load_event_keys,
    seed_pass_id,
    verify_sig1,
    verify_sig1_signature,
)
from passgate.qr import save_qr
from tests.helpers import examples

VECTORS = Path(__file__).resolve().parent.parent / "vectors" / "pretix"
TICKETS = json.loads((VECTORS / "tickets.json").read_text())["tickets"]
KEY = ed25519.Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"test_pretix key").digest())
OTHER = ed25519.Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"test_pretix other").digest())
KEYS = load_event_keys(event_keys_resource([KEY]))
T0 = 1_800_000_000


def vector(name: str) -> dict:
    return next(t for t in TICKETS if t["name"] == name)


def raw_of(secret: str) -> bytes:
    """The bytes inside a secret, decoded here independently: un-reverse, then Base64."""
    return base64.b64decode(secret[::-1], validate=True)


def secret_of(raw: bytes) -> str:
    return base64.b64encode(raw).decode()[::-1]


def frame(payload: bytes, key: ed25519.Ed25519PrivateKey = KEY, *, version: int = 1,
          signature: bytes | None = None, declared: tuple[int, int] | None = None) -> str:
    """A secret around ``payload``, built here from pretix's description (not the module's code)."""
    sig = key.sign(payload) if signature is None else signature
    n, m = declared or (len(payload), len(sig))
    return secret_of(bytes([version]) + n.to_bytes(2, "big") + m.to_bytes(2, "big") + payload + sig)


def refused(call, *args, **kwargs) -> PassRefused:
    with pytest.raises(PassRefused) as info:
        call(*args, **kwargs)
    return info.value


def fields(t: PretixTicket) -> dict:
    return {"seed": t.seed, "item": t.item, "variation": t.variation, "subevent": t.subevent,
            "valid_from": t.valid_from, "valid_until": t.valid_until}


# --- libpretixsync's vectors -------------------------------------------------------------------


def test_vector_event_lists_two_keys_and_fingerprints_are_passgate_kids() -> None:
    keys = load_event_keys(VECTORS / "event1.json")
    assert len(keys) == 2
    for key in keys:
        assert key.fingerprint == key_id(key.public_key).hex()
    assert load_event_keys(str(VECTORS / "event1.json")) == keys
    assert len(load_event_keys(VECTORS / "event2.json")) == 1


@pytest.mark.parametrize("ticket", TICKETS, ids=[t["name"] for t in TICKETS])
def test_vector_secrets_decode_to_their_fields(ticket: dict) -> None:
    decoded = decode_sig1(ticket["secret"])
    assert fields(decoded) == ticket["ticket"]
    assert decoded.key is None
    assert decoded.pass_id == seed_pass_id(ticket["ticket"]["seed"])
    assert raw_of(ticket["secret"])[5:5 + len(ticket["payload_hex"]) // 2].hex() == ticket["payload_hex"]
    assert is_sig1(ticket["secret"])


@pytest.mark.parametrize("ticket", [t for t in TICKETS if t["key_index"] is not None],
                         ids=lambda t: t["name"])
def test_vector_secrets_verify_with_the_key_that_signed_them(ticket: dict) -> None:
    keys = load_event_keys(VECTORS / "event1.json")
    signer, other = keys[ticket["key_index"]], keys[1 - ticket["key_index"]]
    verified = verify_sig1_signature(ticket["secret"], keys)
    assert fields(verified) == ticket["ticket"] and verified.key == signer.fingerprint
    assert verify_sig1_signature(ticket["secret"], (signer,)).key == signer.fingerprint
    assert refused(verify_sig1_signature, ticket["secret"], (other,)).reason is Reason.BAD_SIGNATURE
    event2 = load_event_keys(VECTORS / "event2.json")
    assert refused(verify_sig1_signature, ticket["secret"], event2).reason is Reason.BAD_SIGNATURE


def test_vector_with_a_changed_signature_is_refused() -> None:
    keys = load_event_keys(VECTORS / "event1.json")
    result = refused(verify_sig1, vector("bad-signature")["secret"], keys, now=T0)
    assert result.reason is Reason.BAD_SIGNATURE and "2 keys" in result.detail


@pytest.mark.parametrize(("name", "reason"), [("valid-from", Reason.NOT_YET_VALID),
                                              ("valid-until", Reason.EXPIRED)])
def test_vector_time_windows_as_libpretixsync_tests_them(name: str, reason: Reason) -> None:
    ticket, keys = vector(name), load_event_keys(VECTORS / "event1.json")
    at = {k: datetime.fromisoformat(ticket[k]) for k in ("refused_at", "admitted_at")}
    assert refused(verify_sig1, ticket["secret"], keys, now=at["refused_at"], skew=0).reason is reason
    assert verify_sig1(ticket["secret"], keys, now=at["admitted_at"], skew=0).seed == ticket["ticket"]["seed"]


# --- round trips with our own keys -------------------------------------------------------------


def test_issue_writes_the_layout_pretix_writes() -> None:
    secret = issue_sig1(KEY, seed="ab", item=1)
    raw = raw_of(secret)
    # seed "ab", item 1, then validFromUnixTime and validUntilUnixTime written as 0 (no limit)
    payload = bytes.fromhex("0a026162" "1001" "2800" "3000")
    assert raw[0] == 1 and int.from_bytes(raw[1:3], "big") == len(payload)
    assert int.from_bytes(raw[3:5], "big") == 64 and raw[5:5 + len(payload)] == payload
    KEY.public_key().verify(raw[5 + len(payload):], payload)  # raises if it does not verify
    assert len(raw) == 5 + len(payload) + 64


@settings(max_examples=examples(60, 200), deadline=None)
@given(
    seed=st.text(min_size=1, max_size=40),
    item=st.integers(1, 2**63 - 1),
    variation=st.none() | st.integers(1, 2**40),
    subevent=st.none() | st.integers(1, 2**40),
    valid_from=st.none() | st.integers(1, 2**40),
    length=st.none() | st.integers(0, 2**30),
    padding=st.sampled_from(["", "\n", "\r\n", "  ", "\t"]),
)
def test_round_trip(seed: str, item: int, variation: int | None, subevent: int | None,
                    valid_from: int | None, length: int | None, padding: str) -> None:
    valid_until = None if length is None else (valid_from or 1) + length
    secret = issue_sig1(KEY, seed=seed, item=item, variation=variation, subevent=subevent,
                        valid_from=valid_from, valid_until=valid_until)
    expected = {"seed": seed, "item": item, "variation": variation, "subevent": subevent,
                "valid_from": valid_from, "valid_until": valid_until}
    scanned = padding + secret + padding
    assert is_sig1(scanned) and is_sig1(scanned.encode())
    assert fields(decode_sig1(scanned)) == expected
    verified = verify_sig1_signature(scanned.encode(), KEYS)
    assert fields(verified) == expected and verified.key == KEYS[0].fingerprint
    assert verified.pass_id == seed_pass_id(seed) and len(verified.pass_id_hex) == 32


def test_pass_id_is_the_documented_derivation() -> None:
    for seed in ("CTJqJOl1H", "é🎫", "a"):
        expected = hashlib.sha256(b"passgate/pretix-sig1-seed\x00" + seed.encode()).digest()[:16]
        assert seed_pass_id(seed) == expected
        assert decode_sig1(issue_sig1(KEY, seed=seed, item=1)).pass_id == expected
    assert seed_pass_id("a") != seed_pass_id("b")


def test_rotation_a_second_key_in_valid_keys_verifies() -> None:
    keys = load_event_keys(event_keys_resource([KEY, OTHER.public_key()]))
    assert [k.fingerprint for k in keys] == [key_id(KEY).hex(), key_id(OTHER).hex()]
    ticket = verify_sig1(issue_sig1(OTHER, seed="new", item=2), keys)
    assert ticket.key == keys[1].fingerprint and ticket.seed == "new"
    assert refused(verify_sig1, issue_sig1(OTHER, seed="new", item=2), KEYS).reason is Reason.BAD_SIGNATURE


def test_unknown_signer_and_no_keys() -> None:
    stranger = issue_sig1(generate_private_key(), seed="x", item=1)
    result = refused(verify_sig1, stranger, KEYS)
    assert result.reason is Reason.BAD_SIGNATURE and "1 key" in result.detail
    assert refused(verify_sig1, issue_sig1(KEY, seed="x", item=1), ()).reason is Reason.UNKNOWN_KEY
    assert refused(verify_sig1, issue_sig1(KEY, seed="x", item=1), iter([])).reason is Reason.UNKNOWN_KEY
    # Structure is read first: garbage is unreadable even without keys.
    assert refused(verify_sig1, "garbage", ()).reason is Reason.UNREADABLE


def test_keys_of_another_type_are_a_programming_error_not_a_refusal() -> None:
    with pytest.raises(TypeError, match="PretixKey"):
        verify_sig1(issue_sig1(KEY, seed="x", item=1), [KEY.public_key()])  # type: ignore[list-item]


def test_time_window_with_skew() -> None:
    secret = issue_sig1(KEY, seed="w", item=1, valid_from=T0, valid_until=T0 + 3600)
    assert verify_sig1(secret, KEYS, now=T0 - 60).seed == "w"
    early = refused(verify_sig1, secret, KEYS, now=T0 - 61)
    assert early.reason is Reason.NOT_YET_VALID and early.detail.startswith("Valid from ")
    assert verify_sig1(secret, KEYS, now=T0 + 3600 + 60).seed == "w"  # valid_until itself is valid
    late = refused(verify_sig1, secret, KEYS, now=T0 + 3601, skew=0)
    assert late.reason is Reason.EXPIRED and late.detail.startswith("Expired ")
    assert verify_sig1(secret, KEYS, now=T0 + 3600, skew=0).seed == "w"
    assert verify_sig1(secret, KEYS, now=datetime.fromtimestamp(T0 + 10, UTC)).seed == "w"
    with pytest.raises(ValueError, match="timezone-aware"):
        verify_sig1(secret, KEYS, now=datetime(2027, 1, 1))


def test_no_time_limits_is_valid_at_any_time_and_signature_check_ignores_time() -> None:
    open_ended = issue_sig1(KEY, seed="o", item=1)
    for now in (0, T0, 2**40):
        assert verify_sig1(open_ended, KEYS, now=now, skew=0).valid_until is None
    past = issue_sig1(KEY, seed="p", item=1, valid_until=1000)
    assert verify_sig1_signature(past, KEYS).valid_until == 1000
    assert refused(check_ticket_time, decode_sig1(past), now=T0).reason is Reason.EXPIRED
    assert decode_sig1(past).valid_until_dt == datetime.fromtimestamp(1000, UTC)
    assert decode_sig1(open_ended).valid_from_dt is None


def test_dates_beyond_datetimes_range_are_refused_with_a_readable_detail() -> None:
    far = issue_sig1(KEY, seed="f", item=1, valid_from=10**15)
    result = refused(verify_sig1, far, KEYS, now=T0)
    assert result.reason is Reason.NOT_YET_VALID and "epoch 1000000000000000" in result.detail


# --- tampering ---------------------------------------------------------------------------------


def test_every_bit_flip_of_the_decoded_bytes_is_refused() -> None:
    secret = issue_sig1(KEY, seed="flip", item=7, variation=3, subevent=9, valid_from=T0, valid_until=T0 + 1)
    raw = raw_of(secret)
    reasons = set()
    for bit in range(len(raw) * 8):
        flipped = bytearray(raw)
        flipped[bit // 8] ^= 1 << (bit % 8)
        reasons.add(refused(verify_sig1_signature, secret_of(bytes(flipped)), KEYS).reason)
    assert reasons == {Reason.UNREADABLE, Reason.BAD_SIGNATURE}


@pytest.mark.parametrize("name", ["valid", "padded"])
def test_every_bit_flip_of_the_texts_characters_is_refused(name: str) -> None:
    secret, keys = vector(name)["secret"], load_event_keys(VECTORS / "event1.json")
    assert verify_sig1_signature(secret, keys)
    for at in range(len(secret)):
        for bit in range(8):
            changed = secret[:at] + chr(ord(secret[at]) ^ (1 << bit)) + secret[at + 1:]
            refused(verify_sig1_signature, changed, keys)


def test_spare_bits_in_the_base64_are_refused() -> None:
    """A padded secret's last group has spare bits: setting one gives a second text for the same
    bytes, which pretix never writes."""
    secret = vector("padded")["secret"]
    assert secret.startswith("==Q")
    other = "==R" + secret[3:]
    assert raw_of(other) == raw_of(secret)
    result = refused(decode_sig1, other)
    assert result.reason is Reason.UNREADABLE and "standard form" in result.detail


# --- malformed frames and protobufs ------------------------------------------------------------


SIG = bytes(64)
GOOD = bytes.fromhex("0a0161" "1001")  # seed "a", item 1


@pytest.mark.parametrize(("secret", "detail"), [
    (frame(GOOD, version=2), "version 2, expected 1"),
    (frame(GOOD, version=0), "version 0, expected 1"),
    (secret_of(b"\x01\x00\x05"), "shorter than its header"),
    (frame(GOOD, declared=(len(GOOD) + 1, 64)), "header declares 6 + 64 bytes, 69 follow"),
    (frame(GOOD, declared=(len(GOOD) - 1, 64)), "header declares 4 + 64 bytes, 69 follow"),
    (frame(GOOD, signature=bytes(63)), "signature of 63 bytes"),
    (frame(GOOD, signature=bytes(65)), "signature of 65 bytes"),
    (frame(GOOD, declared=(0xFFFF, 0xFFFF)), "header declares 65535 + 65535 bytes"),
], ids=["version-2", "version-0", "short", "long-payload", "short-payload", "sig-63", "sig-65", "huge"])
def test_malformed_frames_are_unreadable_with_a_detail(secret: str, detail: str) -> None:
    for call in (decode_sig1, lambda s: verify_sig1_signature(s, KEYS)):
        result = refused(call, secret)
        assert result.reason is Reason.UNREADABLE and detail in result.detail, result.detail


def _varint(value: int) -> bytes:
    out = bytearray()
    value &= (1 << 64) - 1
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    return bytes([*out, value])


MALFORMED = {
    "truncated-tag": (GOOD + b"\x80", "field tag: truncated varint"),
    "truncated-value": (b"\x0a\x01a\x10\x81", "item: truncated varint"),
    "varint-11-bytes": (b"\x0a\x01a\x10" + b"\xff" * 10 + b"\x01", "item: varint longer than 10 bytes"),
    "varint-65-bits": (b"\x0a\x01a\x10" + b"\xff" * 9 + b"\x02", "item: varint beyond 64 bits"),
    "varint-padded": (b"\x0a\x01a\x10\x81\x00", "item: varint not in its shortest form"),
    "field-0": (GOOD + b"\x00\x00", "field number 0 out of range"),
    "field-too-big": (GOOD + _varint((1 << 29) << 3), "field number 536870912 out of range"),
    "seed-as-varint": (b"\x08\x01\x10\x01", "seed has wire type 0, expected 2"),
    "item-as-bytes": (b"\x0a\x01a\x12\x01x", "item has wire type 2, expected 0"),
    "time-as-fixed64": (GOOD + b"\x29" + bytes(8), "validFromUnixTime has wire type 1, expected 0"),
    "seed-twice": (GOOD + b"\x0a\x01b", "seed appears twice"),
    "item-twice": (GOOD + b"\x10\x02", "item appears twice"),
    "seed-past-end": (b"\x0a\x05ab", "seed of 5 bytes runs past the payload's end"),
    "seed-length-truncated": (b"\x0a", "seed length: truncated varint"),
    "seed-not-utf8": (b"\x0a\x02\xff\xfe\x10\x01", "seed is not UTF-8"),
    "seed-surrogate": (b"\x0a\x03\xed\xa0\x80\x10\x01", "seed is not UTF-8"),
    "no-seed": (b"\x10\x01", "no seed"),
    "empty-seed": (b"\x0a\x00\x10\x01", "no seed"),
    "empty-payload": (b"", "no seed"),
    "no-item": (b"\x0a\x01a", "no product (item 0)"),
    "item-0": (b"\x0a\x01a\x10\x00", "no product (item 0)"),
    "item-negative": (b"\x0a\x01a\x10" + _varint(-1), "item -1 is negative"),
    "variation-negative": (GOOD + b"\x18" + _varint(-5), "variation -5 is negative"),
    "subevent-negative": (GOOD + b"\x20" + _varint(-2**63), "subevent -9223372036854775808 is negative"),
    "valid-from-negative": (GOOD + b"\x28" + _varint(-1), "validFromUnixTime -1 is negative"),
    "valid-until-negative": (GOOD + b"\x30" + _varint(-1), "validUntilUnixTime -1 is negative"),
    "group-start": (GOOD + b"\x3b", "field 7 is a group"),
    "group-end": (GOOD + b"\x3c", "field 7 is a group"),
    "wire-type-6": (GOOD + b"\x3e", "field 7 has wire type 6, which protobuf does not define"),
    "wire-type-7": (GOOD + b"\x3f", "field 7 has wire type 7"),
    "unknown-fixed64-short": (GOOD + b"\x39" + bytes(7), "field 7 of 8 bytes runs past"),
    "unknown-fixed32-short": (GOOD + b"\x3d" + bytes(3), "field 7 of 4 bytes runs past"),
    "unknown-bytes-short": (GOOD + b"\x3a\x09" + bytes(8), "field 7 of 9 bytes runs past"),
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_protobufs_are_unreadable_with_a_detail(name: str) -> None:
    payload, detail = MALFORMED[name]
    secret = frame(payload)  # validly signed: only the payload's structure is wrong
    for call in (decode_sig1, lambda s: verify_sig1_signature(s, KEYS)):
        result = refused(call, secret)
        assert result.reason is Reason.UNREADABLE, result
        assert result.detail.startswith("Damaged pretix ticket (") and detail in result.detail, result.detail


def test_unknown_fields_are_skipped_by_wire_type() -> None:
    extra = (b"\x38\x96\x01"  # field 7, varint 150
             + b"\x42\x03xyz"  # field 8, bytes
             + b"\x49" + bytes(8)  # field 9, fixed64
             + b"\x55" + bytes(4)  # field 10, fixed32
             + _varint((1 << 29) - 1 << 3) + b"\x00")  # the largest field number, varint 0
    payload = extra + b"\x20\x05" + GOOD + b"\x18\x02"  # in any order
    ticket = verify_sig1(frame(payload), KEYS)
    assert fields(ticket) == {"seed": "a", "item": 1, "variation": 2, "subevent": 5,
                              "valid_from": None, "valid_until": None}


@pytest.mark.parametrize(("secret", "detail"), [
    ("", "empty"),
    ("   \n", "empty"),
    ("PG1:6BFOXN*TS0BI$ZDFRH", "a passgate PG1 pass"),
    ("not base64!", "not base64"),
    ("abc", "not base64"),
    ("ÄÖÜ" * 40, "not base64"),
    ("A" * (MAX_TEXT + 1), "too long"),
    (b"\xff\xfe" * 50, "binary data"),
    ("====", "not base64"),
], ids=["empty", "blank", "pg1", "punctuation", "short", "unicode", "too-long", "binary", "padding"])
def test_texts_that_are_no_ticket(secret: str | bytes, detail: str) -> None:
    for call in (decode_sig1, lambda s: verify_sig1(s, KEYS)):
        result = refused(call, secret)
        assert result.reason is Reason.UNREADABLE and detail in result.detail, result.detail
    assert not is_sig1(secret)


@pytest.mark.parametrize("thing", [None, 42, 1.5, ["x"], object()])
def test_values_that_are_no_text_are_unreadable(thing: object) -> None:
    assert refused(verify_sig1, thing, KEYS).reason is Reason.UNREADABLE  # type: ignore[arg-type]
    assert refused(decode_sig1, thing).reason is Reason.UNREADABLE  # type: ignore[arg-type]
    assert is_sig1(thing) is False  # type: ignore[arg-type]


@settings(max_examples=examples(150, 500), deadline=None)
@given(st.text(max_size=300) | st.binary(max_size=300) | st.from_regex(r"\A[A-Za-z0-9+/=]{96,200}\Z"))
def test_any_input_gives_a_ticket_or_a_refusal(data: str | bytes) -> None:
    assert isinstance(is_sig1(data), bool)
    for call in (decode_sig1, lambda d: verify_sig1(d, KEYS, now=T0)):
        try:
            assert isinstance(call(data), PretixTicket)
        except PassRefused as exc:
            assert isinstance(exc.reason, Reason)


@settings(max_examples=examples(60, 200), deadline=None)
@given(st.binary(min_size=1, max_size=120))
def test_any_signed_payload_gives_a_ticket_or_unreadable(payload: bytes) -> None:
    """Payloads the decoder could only see signed: a ticket, or a refusal saying it is damaged."""
    try:
        ticket = verify_sig1(frame(payload), KEYS, now=T0, skew=float("inf"))
    except PassRefused as exc:
        assert exc.reason is Reason.UNREADABLE and exc.detail.startswith("Damaged pretix ticket ("), exc
    else:
        assert ticket.item >= 1 and ticket.seed and ticket.pass_id == seed_pass_id(ticket.seed)


# --- routing -----------------------------------------------------------------------------------


@settings(max_examples=examples(60, 200), deadline=None)
@given(st.text(max_size=200))
def test_is_sig1_is_never_true_for_a_pg1_text(rest: str) -> None:
    assert not is_sig1("PG1:" + rest)
    assert not is_sig1(" pg1:" + rest)


def test_is_sig1_is_false_for_real_pg1_passes_and_pretix_random_secrets() -> None:
    key = generate_private_key()
    for zones in ((), ("A", "B")):
        text = issue_pass(key, valid_from=0, valid_until=2**31, zones=zones)
        assert not is_sig1(text) and not is_sig1(text.encode())
    assert not is_sig1("abcdefghjkmnpqrstuvwxyz23456789ab")  # pretix's default (random) secrets
    assert not is_sig1("2" * 100)


# --- event keys --------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _pem(key: object) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM,  # type: ignore[attr-defined]
                            serialization.PublicFormat.SubjectPublicKeyInfo)


P256_PEM = _pem(ec.generate_private_key(ec.SECP256R1()).public_key())
ED_PEM = _pem(KEY.public_key())


@pytest.mark.parametrize(("event", "message"), [
    ({}, "no valid_keys"),
    ({"valid_keys": None}, "no valid_keys"),
    ({"valid_keys": []}, "valid_keys is not an object"),
    ({"valid_keys": {}}, "no pretix_sig1 list"),
    ({"valid_keys": {"pretix_sig1": "abc"}}, "pretix_sig1 is not a list"),
    ({"valid_keys": {"pretix_sig1": []}}, "pretix_sig1 is empty"),
    ({"valid_keys": {"pretix_sig1": [_b64(ED_PEM)] * 33}}, "lists 33 keys, at most 32"),
    ({"valid_keys": {"pretix_sig1": [1]}}, "pretix_sig1[0] is not a string"),
    ({"valid_keys": {"pretix_sig1": [_b64(ED_PEM), "not base64!"]}}, "pretix_sig1[1] is not base64"),
    ({"valid_keys": {"pretix_sig1": [_b64(b"hello")]}}, "pretix_sig1[0] is not a PEM public key"),
    ({"valid_keys": {"pretix_sig1": [_b64(ED_PEM.replace(b"MCow", b"MCox"))]}},
     "pretix_sig1[0] is not a readable PEM public key"),
    ({"valid_keys": {"pretix_sig1": [_b64(P256_PEM)]}}, "not an Ed25519 key"),
], ids=["none", "null", "list", "no-kind", "not-list", "empty", "too-many", "not-string", "not-base64",
        "not-pem", "bad-pem", "p256"])
def test_unusable_event_keys_are_named(event: dict, message: str) -> None:
    with pytest.raises(EventKeysError) as info:
        load_event_keys(event)
    assert message in str(info.value)
    assert isinstance(info.value, KeyFileError) and isinstance(info.value, ValueError)


@pytest.mark.parametrize(("content", "message"), [
    (None, "cannot read the event file"),
    (b"{not json", "not JSON"),
    (b"\xff\xfe", "not JSON"),
    (b"[1, 2]", "not a JSON object"),
    (b"{}", "no valid_keys"),
])
def test_unusable_event_files_are_named(tmp_path: Path, content: bytes | None, message: str) -> None:
    path = tmp_path / "event.json"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(EventKeysError) as info:
        load_event_keys(path)
    assert str(info.value).startswith(f"{path}: ") and message in str(info.value)


def test_duplicate_keys_are_listed_once_and_private_keys_give_their_public_half() -> None:
    event = event_keys_resource([KEY, KEY.public_key(), OTHER])
    assert event["valid_keys"]["pretix_sig1"][0] == _b64(ED_PEM)
    assert len(load_event_keys(event)) == 2
    with pytest.raises(TypeError):
        event_keys_resource([ec.generate_private_key(ec.SECP256R1()).public_key()])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="32 bytes"):
        PretixKey(b"short", "x")


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"seed": "", "item": 1}, "seed"),
    ({"seed": "s", "item": 0}, "item must be a positive"),
    ({"seed": "s", "item": True}, "item must be a positive"),
    ({"seed": "s", "item": 1, "variation": -1}, "variation must be a positive"),
    ({"seed": "s", "item": 1, "subevent": 2**63}, "subevent must be a positive"),
    ({"seed": "s", "item": 1, "valid_from": 0}, "valid_from must be after 1970"),
    ({"seed": "s", "item": 1, "valid_until": -5}, "valid_until must be after 1970"),
    ({"seed": "s", "item": 1, "valid_from": 20, "valid_until": 10}, "valid_until must not be before"),
    ({"seed": "s", "item": 1, "valid_from": datetime(2027, 1, 1)}, "timezone-aware"),
    ({"seed": "s" * 70_000, "item": 1}, "too long"),
])
def test_issue_refuses_what_pretix_would_not_write(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        issue_sig1(KEY, **kwargs)


def test_issue_needs_an_ed25519_private_key() -> None:
    with pytest.raises(TypeError, match="Ed25519"):
        issue_sig1(generate_private_key("es256"), seed="s", item=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Ed25519"):
        issue_sig1(KEY.public_key(), seed="s", item=1)  # type: ignore[arg-type]


# --- the CLI -----------------------------------------------------------------------------------


@pytest.fixture
def event_file(tmp_path: Path) -> Path:
    path = tmp_path / "event.json"
    path.write_text(json.dumps({"slug": "demo", **event_keys_resource([KEY])}))
    return path


def _lines(capsys: pytest.CaptureFixture[str]) -> list[dict]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_cli_verify_a_pretix_ticket(event_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    secret = issue_sig1(KEY, seed="cli", item=5, variation=6, valid_from=T0, valid_until=T0 + 3600)
    assert main(["verify", "--pretix-event", str(event_file), secret, "--now", str(T0 + 10)]) == 0
    [result] = _lines(capsys)
    assert result == {"valid": True, "reason": "admit", "format": "pretix_sig1",
                      "pass_id": seed_pass_id("cli").hex(), "key": key_id(KEY).hex(), "seed": "cli",
                      "item": 5, "variation": 6, "subevent": None, "valid_from": "2027-01-15T08:00:00Z",
                      "valid_until": "2027-01-15T09:00:00Z"}
    assert main(["verify", "--pretix-event", str(event_file), secret, "--now", str(T0 + 7200)]) == 1
    [late] = _lines(capsys)
    assert late["valid"] is False and late["reason"] == "expired" and late["detail"].startswith("Expired")


def test_cli_verify_libpretixsync_vector(capsys: pytest.CaptureFixture[str]) -> None:
    event = str(VECTORS / "event1.json")
    assert main(["verify", "--pretix-event", event, vector("padded")["secret"]]) == 0
    assert _lines(capsys)[0]["seed"] == "aaaaaaaaa"
    assert main(["verify", "--pretix-event", event, vector("bad-signature")["secret"]]) == 1
    assert _lines(capsys)[0]["reason"] == "bad_signature"


def test_cli_verify_routes_pg1_and_pretix_on_stdin(
    event_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    pg1_key = generate_private_key()
    write_keypair(pg1_key, tmp_path / "trust", "issuer")
    pg1 = issue_pass(pg1_key, valid_from=0, valid_until=2**31)
    good, forged = issue_sig1(KEY, seed="a", item=1), issue_sig1(OTHER, seed="a", item=1)
    texts = [pg1, good + "\r", forged, "PG1:NOPE", "hello"]
    monkeypatch.setattr("sys.stdin", io.StringIO("\n".join(texts) + "\n"))
    args = ["verify", "--trust", str(tmp_path / "trust"), "--pretix-event", str(event_file), "-"]
    assert main(args) == 1
    results = _lines(capsys)
    assert [r["valid"] for r in results] == [True, True, False, False, False]
    assert "format" not in results[0] and results[1]["format"] == "pretix_sig1"
    assert [r["reason"] for r in results[2:]] == ["bad_signature", "unreadable", "unreadable"]
    assert results[4]["detail"] == "Not a passgate pass"  # with --trust, a non-sig1 text is read as PG1

    monkeypatch.setattr("sys.stdin", io.StringIO(pg1 + "\n"))  # only the event: a PG1 text is no ticket
    assert main(["verify", "--pretix-event", str(event_file), "-"]) == 1
    [only] = _lines(capsys)
    assert only["reason"] == "unreadable" and "a passgate PG1 pass" in only["detail"]

    assert main(["verify", "--trust", str(tmp_path / "trust"), good]) == 1  # no event: read as PG1
    assert _lines(capsys)[0]["reason"] == "unreadable"


def test_cli_verify_option_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", "X"]) == 2
    assert "--trust DIR (PG1 passes), --pretix-event FILE" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text(json.dumps({"valid_keys": {"pretix_sig1": []}}))
    assert main(["verify", "--pretix-event", str(tmp_path / "bad.json"), "X"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("passgate verify: error: ") and "pretix_sig1 is empty" in err
    assert len(err.strip().splitlines()) == 1
    assert main(["verify", "--pretix-event", str(tmp_path / "missing.json"), "X"]) == 2
    assert "cannot read the event file" in capsys.readouterr().err


def test_cli_help_mentions_pretix_event(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("verify", "decode"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert "--pretix-event FILE" in capsys.readouterr().out


def test_cli_decode_verify_with_a_pretix_event(
    event_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good, forged = issue_sig1(KEY, seed="qr", item=2), issue_sig1(OTHER, seed="qr", item=2)
    save_qr(good, tmp_path / "good.png")
    save_qr(forged, tmp_path / "forged.png")
    assert main(["decode", "--verify", "--pretix-event", str(event_file), str(tmp_path / "good.png")]) == 0
    [line] = _lines(capsys)
    assert line["codes"][0]["text"] == good
    assert line["codes"][0]["pass"]["valid"] is True and line["codes"][0]["pass"]["seed"] == "qr"
    assert main(["decode", "--verify", "--pretix-event", str(event_file),
                 str(tmp_path / "good.png"), str(tmp_path / "forged.png")]) == 1
    verdicts = [line["codes"][0]["pass"] for line in _lines(capsys)]
    assert [v["valid"] for v in verdicts] == [True, False] and verdicts[1]["reason"] == "bad_signature"
    assert main(["decode", "--verify", str(tmp_path / "good.png")]) == 2
    assert "--verify needs --trust DIR (PG1 passes), --pretix-event FILE" in capsys.readouterr().err
