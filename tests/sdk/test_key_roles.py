"""Trust that cannot be borrowed: a key signs only what its role allows (passes, or one scope's
deny lists), a retired key keeps only the passes issued before it retired, a revoked key keeps
none, and a list's version epoch moves a gate forward without opening a rollback."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import cbor2
import pytest

from passgate import PassRefused, Reason, TrustStore, base45, cose, issue_pass, key_id, verify_pass
from passgate.cli import main
from passgate.denylist import (
    FormatError,
    LiveDenyList,
    SequenceError,
    UntrustedKeyError,
    epoch_of,
    make_version,
    sign_delta,
    sign_snapshot,
)
from passgate.keys import KeyFileError, TrustedKey, generate_private_key, write_keypair
from passgate.passes import CLAIM_CTI, CLAIM_EXP, CLAIM_IAT, CLAIM_NBF, PREFIX

NOW = 1_800_000_000
HOUR = 3600
RETIRED = datetime.fromtimestamp(NOW - HOUR, UTC)
VENUE_LISTS = generate_private_key()  # the venue's list key ("arena")
PARTNER = generate_private_key()  # a partner issuer: its passes are welcome, nothing else
IDS = [bytes([i]) * 16 for i in range(8)]


def pass_text(key, *, iat: int | None) -> str:
    """A pass valid now, with ``iat`` as given (``None``: no issue time at all)."""
    claims = {CLAIM_NBF: NOW - HOUR, CLAIM_EXP: NOW + HOUR, CLAIM_CTI: bytes(16)}
    if iat is not None:
        claims[CLAIM_IAT] = iat
    return PREFIX + base45.encode(cose.sign1(cbor2.dumps(claims), key, kid=key_id(key)))


def venue_trust() -> TrustStore:
    """A gate of the venue "arena": the partner's passes, the venue's lists."""
    trust = TrustStore()
    trust.add(PARTNER.public_key(), issuer="Partner")
    trust.add(VENUE_LISTS.public_key(), purpose="denylist", scope="arena")
    return trust


def refusal(text: str, trust: TrustStore) -> PassRefused:
    with pytest.raises(PassRefused) as info:
        verify_pass(text, trust, now=NOW)
    return info.value


# --- passes ---------------------------------------------------------------------------------


def test_a_list_key_never_verifies_a_pass() -> None:
    text = issue_pass(VENUE_LISTS, valid_from=NOW - HOUR, valid_until=NOW + HOUR)
    refused = refusal(text, venue_trust())
    assert refused.reason is Reason.UNKNOWN_KEY
    assert refused.detail == f"Key {key_id(VENUE_LISTS).hex()} signs deny lists of scope 'arena', not passes"


def test_a_key_trusted_in_both_roles_still_verifies_passes() -> None:
    trust = venue_trust()
    trust.add(VENUE_LISTS.public_key())  # the same key, also as a pass key
    assert verify_pass(pass_text(VENUE_LISTS, iat=NOW), trust, now=NOW).kid == key_id(VENUE_LISTS)


@pytest.mark.parametrize(("iat", "admitted"), [
    (NOW - 2 * HOUR, True),  # issued before the retirement
    (NOW - HOUR, False),  # at it
    (NOW, False),  # after it
    (None, False),  # no issue time: it could be any time, so not before the retirement
])
def test_a_retired_key_keeps_only_passes_issued_before_it_retired(iat: int | None, admitted: bool) -> None:
    key = generate_private_key()
    trust = TrustStore([TrustedKey(key.public_key(), retired=RETIRED)])
    text = pass_text(key, iat=iat)
    if admitted:
        assert verify_pass(text, trust, now=NOW).issued_at == iat
    else:
        assert refusal(text, trust).reason is Reason.KEY_RETIRED


def test_without_retirement_a_pass_without_issue_time_is_still_fine() -> None:
    key = generate_private_key()
    assert verify_pass(pass_text(key, iat=None), TrustStore([TrustedKey(key.public_key())]),
                       now=NOW).issued_at is None


@pytest.mark.parametrize("iat", [NOW - 400 * 86400, NOW - 2 * HOUR, NOW, None])
def test_a_revoked_key_refuses_every_pass(iat: int | None) -> None:
    key = generate_private_key()
    revoked = datetime.fromtimestamp(NOW - 60, UTC)
    trust = TrustStore([TrustedKey(key.public_key(), retired=RETIRED, revoked=revoked)])
    refused = refusal(pass_text(key, iat=iat), trust)
    assert refused.reason is Reason.KEY_REVOKED and refused.detail == Reason.KEY_REVOKED.text


def test_the_manifest_gives_roles_and_revocation(tmp_path: Path) -> None:
    write_keypair(PARTNER, tmp_path, "partner")
    write_keypair(VENUE_LISTS, tmp_path, "lists")
    (tmp_path / "trust.toml").write_text(
        '[[key]]\nfile = "partner.pub.pem"\nrevoked = 2027-01-01T00:00:00Z\n'
        '[[key]]\nfile = "lists.pub.pem"\npurpose = "denylist"\nscope = "arena"\n')
    by_kid = {k.kid: k for k in TrustStore.load(tmp_path)}
    partner, lists = by_kid[key_id(PARTNER)], by_kid[key_id(VENUE_LISTS)]
    assert partner.purpose == "passes" and partner.revoked is not None and partner.revoked.year == 2027
    assert (lists.purpose, lists.scope) == ("denylist", "arena")
    assert refusal(pass_text(PARTNER, iat=NOW), TrustStore.load(tmp_path)).reason is Reason.KEY_REVOKED


@pytest.mark.parametrize(("entry", "message"), [
    ('purpose = "denylist"', "lists.pub.pem: a denylist key needs the scope of the lists it signs"),
    ('scope = "arena"', "lists.pub.pem: scope is for denylist keys"),
    ('purpose = "everything"', "key[0].purpose must be one of passes, denylist, not 'everything'"),
    ('purpose = 1', "key[0].purpose must be a string"),
    ('revoked = "yesterday"', "key[0].revoked must be a TOML date-time"),
    ('trusted = true', "key[0] has unknown fields ['trusted']"),
])
def test_a_manifest_role_that_does_not_fit_is_one_line(tmp_path: Path, entry: str, message: str) -> None:
    write_keypair(VENUE_LISTS, tmp_path, "lists")
    (tmp_path / "trust.toml").write_text(f'[[key]]\nfile = "lists.pub.pem"\n{entry}\n')
    with pytest.raises(KeyFileError) as info:
        TrustStore.load(tmp_path)
    assert message in str(info.value) and "\n" not in str(info.value)


# --- deny lists -----------------------------------------------------------------------------


def test_a_partner_key_cannot_touch_the_venues_lists(tmp_path: Path) -> None:
    trust = venue_trust()
    live = LiveDenyList(tmp_path / "revoked.pgdl", kind="revoked", scope="arena")
    live.apply_signed(sign_snapshot(VENUE_LISTS, IDS[:3], kind="revoked", scope="arena", version=1), trust)
    on_disk = (tmp_path / "revoked.pgdl").read_bytes()
    attack = sign_snapshot(PARTNER, [], kind="revoked", scope="arena", version=2**62)
    with pytest.raises(UntrustedKeyError) as info:
        live.apply_signed(attack, trust)
    assert str(info.value) == (f"key {key_id(PARTNER).hex()} may sign passes, not the deny lists of "
                               "scope 'arena'")
    assert live.current.version == 1 and IDS[0] in live.current
    assert (tmp_path / "revoked.pgdl").read_bytes() == on_disk
    with pytest.raises(UntrustedKeyError):  # nor a delta
        live.apply_signed(sign_delta(PARTNER, kind="revoked", scope="arena", base=1), trust)
    later = sign_delta(VENUE_LISTS, kind="revoked", scope="arena", base=1, adds=[IDS[5]])
    assert live.apply_signed(later, trust).version == 2 and IDS[5] in live.current


def test_a_list_key_signs_only_its_own_scope(tmp_path: Path) -> None:
    other = generate_private_key()
    trust = venue_trust()
    trust.add(other.public_key(), purpose="denylist", scope="zoo")
    live = LiveDenyList(tmp_path / "revoked.pgdl", kind="revoked", scope="arena")
    with pytest.raises(UntrustedKeyError, match="may sign deny lists of scope 'zoo', not the deny "
                                                "lists of scope 'arena'"):
        live.apply_signed(sign_snapshot(other, [], kind="revoked", scope="arena", version=9), trust)
    assert live.current.version == 0


def test_a_revoked_list_key_signs_nothing(tmp_path: Path) -> None:
    trust = TrustStore([TrustedKey(VENUE_LISTS.public_key(), purpose="denylist", scope="arena",
                                   revoked=RETIRED)])
    live = LiveDenyList(tmp_path / "revoked.pgdl", kind="revoked", scope="arena")
    with pytest.raises(UntrustedKeyError, match="is revoked"):
        live.apply_signed(sign_snapshot(VENUE_LISTS, [], kind="revoked", scope="arena", version=1,
                                        issued_at=NOW - 2 * HOUR), trust)


def test_inspect_names_a_pass_key_that_signed_a_list(tmp_path: Path, capsys) -> None:
    write_keypair(PARTNER, tmp_path / "trust", "partner")
    (tmp_path / "l.pgdl").write_bytes(sign_snapshot(PARTNER, [], kind="revoked", scope="arena", version=1))
    assert main(["denylist", "inspect", str(tmp_path / "l.pgdl"), "--trust", str(tmp_path / "trust")]) == 1
    assert "may sign passes, not the deny lists of scope 'arena'" in capsys.readouterr().out


def test_keygen_for_lists_writes_its_role_beside_it(tmp_path: Path, capsys) -> None:
    assert main(["keygen", "--out", str(tmp_path), "--name", "lists", "--purpose", "denylist",
                 "--scope", "arena"]) == 0
    (key,) = TrustStore.load(tmp_path)
    assert (key.purpose, key.scope) == ("denylist", "arena")
    assert main(["keygen", "--out", str(tmp_path), "--name", "x", "--purpose", "denylist"]) == 2
    assert "needs one" in capsys.readouterr().err


# --- epochs ---------------------------------------------------------------------------------


def test_a_new_epoch_moves_a_gate_forward_and_an_old_snapshot_stays_refused(tmp_path: Path) -> None:
    trust = venue_trust()
    live = LiveDenyList(tmp_path / "revoked.pgdl", kind="revoked", scope="arena")
    old = sign_snapshot(VENUE_LISTS, IDS[:2], kind="revoked", scope="arena", version=5)
    live.apply_signed(old, trust)
    live.apply_signed(sign_delta(VENUE_LISTS, kind="revoked", scope="arena", base=5, adds=[IDS[2]]), trust)
    # the hub, restored to version 3, starts epoch 7: its snapshot is newer than anything before
    restored = make_version(7)
    assert epoch_of(restored) == 7 and restored > 2**32
    live.apply_signed(sign_snapshot(VENUE_LISTS, IDS[:1], kind="revoked", scope="arena",
                                    version=restored), trust)
    assert live.current.version == restored and IDS[1] not in live.current
    for replay in (old, sign_snapshot(VENUE_LISTS, IDS[:1], kind="revoked", scope="arena", version=3)):
        with pytest.raises(SequenceError, match=f"not newer than {restored} \\(epoch 7, change 0\\)"):
            live.apply_signed(replay, trust)
    assert live.current.version == restored
    delta = sign_delta(VENUE_LISTS, kind="revoked", scope="arena", base=restored, adds=[IDS[3]])
    assert live.apply_signed(delta, trust).version == restored + 1


def test_versions_beyond_what_hubs_carry_are_refused() -> None:
    with pytest.raises(FormatError, match="version 9223372036854775808 is beyond"):
        sign_snapshot(VENUE_LISTS, [], kind="revoked", scope="arena", version=2**63)
    with pytest.raises(ValueError, match="out of range"):
        make_version(1, 2**32)
