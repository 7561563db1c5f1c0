"""Freshness statements: signed, scoped like the lists they speak of, and refused with a reason
(never anything but ``FreshnessError``) whatever the input."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from passgate import cose, freshness, generate_private_key
from passgate.freshness import FreshnessError
from passgate.keys import TrustedKey, TrustStore, key_id
from passgate.wire import KeyPurpose
from tests.helpers import examples

LIST_KEY = generate_private_key()
NOW = 1_796_000_000


def trust_of(*keys: TrustedKey) -> TrustStore:
    store = TrustStore()
    for key in keys:
        store.add(key)
    return store


def list_key(scope: str = "arena", **window: datetime) -> TrustedKey:
    return TrustedKey(LIST_KEY.public_key(), purpose=KeyPurpose.DENYLIST, scope=scope, **window)


def statement(**given: object) -> bytes:
    fields: dict = {"kind": "revoked", "scope": "arena", "version": 7, "as_of": NOW, **given}
    return freshness.sign(LIST_KEY, **fields)


def test_a_statement_round_trips_and_speaks_of_one_version_only() -> None:
    fresh = freshness.read(statement(), trust_of(list_key()))
    assert (fresh.kind, fresh.scope, fresh.version, fresh.as_of) == ("revoked", "arena", 7, NOW)
    assert fresh.signer == key_id(LIST_KEY)
    assert fresh.applies_to("revoked", "arena", 7)
    for other in (("blocked", "arena", 7), ("revoked", "dome", 7), ("revoked", "arena", 8)):
        assert not fresh.applies_to(*other)
    assert len(statement()) < 200


def test_only_the_scopes_list_key_in_its_window_may_say_so() -> None:
    cases = [
        (trust_of(), "not in the trust store"),
        (trust_of(TrustedKey(LIST_KEY.public_key())), "may sign passes"),  # a pass key
        (trust_of(list_key("dome")), "deny lists of scope 'dome'"),
        (trust_of(list_key(revoked=datetime(2026, 1, 1, tzinfo=UTC))), "revoked"),
        (trust_of(list_key(retired=datetime.fromtimestamp(NOW - 1, UTC))), "retired"),
    ]
    for trust, reason in cases:
        with pytest.raises(FreshnessError, match=reason):
            freshness.read(statement(), trust)
    retired_later = trust_of(list_key(retired=datetime.fromtimestamp(NOW + 1, UTC)))
    assert freshness.read(statement(), retired_later).as_of == NOW


def test_every_bit_flip_is_refused() -> None:
    data = statement()
    trust = trust_of(list_key())
    for bit in range(len(data) * 8):
        flipped = bytearray(data)
        flipped[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(FreshnessError):
            freshness.read(bytes(flipped), trust)


def test_a_list_file_or_pass_signature_is_no_statement() -> None:
    """The same key signing the same payload for another use (another external AAD) is refused."""
    payload = cbor2.dumps({"fmt": 1, "type": "fresh", "kind": "revoked", "scope": "arena",
                           "version": 7, "as_of": NOW})
    for aad in (b"", b"passgate deny list v1"):
        forged = cose.sign1(payload, LIST_KEY, kid=key_id(LIST_KEY), external_aad=aad)
        with pytest.raises(FreshnessError, match="does not verify"):
            freshness.read(forged, trust_of(list_key()))


@pytest.mark.parametrize("fields, reason", [
    ({"kind": "maybe"}, "unknown list kind"), ({"scope": ""}, "scope"), ({"scope": "x" * 65}, "scope"),
    ({"version": -1}, "version"), ({"version": 2**63}, "version"), ({"as_of": 2**41}, "as_of"),
])
def test_out_of_bounds_statements_are_neither_signed_nor_read(fields: dict, reason: str) -> None:
    with pytest.raises(FreshnessError, match=reason):
        statement(**fields)
    payload = cbor2.dumps({"fmt": 1, "type": "fresh", "kind": "revoked", "scope": "arena", "version": 7,
                           "as_of": NOW, **fields})
    with pytest.raises(FreshnessError, match=reason):
        freshness.read(cose.sign1(payload, LIST_KEY, kid=key_id(LIST_KEY), external_aad=freshness.AAD),
                       trust_of(list_key()))


@settings(max_examples=examples(100, 300), deadline=None)
@given(st.one_of(st.binary(max_size=2048), st.builds(lambda p: cbor2.dumps(cbor2.CBORTag(18, p)), st.lists(
    st.one_of(st.binary(max_size=64), st.dictionaries(st.integers(), st.integers(), max_size=3),
              st.integers()), max_size=5))))
def test_any_input_is_a_statement_or_a_freshness_error(data: bytes) -> None:
    with contextlib.suppress(FreshnessError):  # anything else escaping fails the test
        freshness.read(data, trust_of(list_key()))
