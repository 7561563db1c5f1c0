"""Holder-bound passes at the gate: only the live presentation admits (never the bare pass, a
screenshot of an old code, or a code already used for an entry at this or another gate), and every
rule of the pass still applies."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import cbor2
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from passgate import (
    Pass,
    PassRefused,
    Reason,
    TrustStore,
    base45,
    generate_private_key,
    issue_pass,
    verify_signature,
)
from passgate.holder import present, signed_bytes
from passgate.keys import write_keypair
from passgate.passes import decode_text
from passgate.wire import Direction
from passgated.config import ConfigError, parse_config
from passgated.policy import Context, Decision, PolicyConfig, Usage, decide

ISSUER = generate_private_key()
HOLDER = ec.generate_private_key(ec.SECP256R1())
THIEF = ec.generate_private_key(ec.SECP256R1())
TRUST = TrustStore()
TRUST.add(ISSUER.public_key())
NOW = 1_900_000_020.0  # the start of a 15 s time step: step 126,666,668
STEP = 15


class Journal:
    def __init__(self, usage: Usage | None = None) -> None:
        self._usage = usage or Usage()

    def usage(self, pass_id: bytes) -> Usage:
        return self._usage


def bound(**claims: object) -> str:
    return issue_pass(ISSUER, valid_from=0, valid_until=2**31, holder_key=HOLDER.public_key(),
                      **claims)  # type: ignore[arg-type]


def decide_at(text: str, *, now: float = NOW, usage: Usage | None = None,
              cfg: PolicyConfig | None = None, direction: Direction = Direction.ENTRY,
              revoked: frozenset[bytes] = frozenset()) -> Decision:
    result: Pass | PassRefused
    try:
        result = verify_signature(text, TRUST)
    except PassRefused as refused:  # decided as the gate does
        result = refused
    ctx = Context(now, direction, revoked, frozenset(), Journal(usage))
    return decide(result, ctx, cfg or PolicyConfig())


def test_the_live_code_admits_and_the_bare_bound_pass_does_not() -> None:
    pass_text = bound()
    live = decide_at(present(pass_text, HOLDER, now=NOW))
    assert (live.admit, live.reason) == (True, Reason.ADMIT)
    bare = decide_at(pass_text)
    assert bare.reason is Reason.HOLDER_PROOF_REQUIRED
    assert bare.text == Reason.HOLDER_PROOF_REQUIRED.text


def test_a_screenshot_is_refused_once_its_window_has_passed() -> None:
    code = present(bound(), HOLDER, now=NOW)
    assert decide_at(code, now=NOW + STEP).admit  # one step late: the window
    late = decide_at(code, now=NOW + 2 * STEP)
    assert late.reason is Reason.PRESENTATION_EXPIRED
    early = decide_at(code, now=NOW - 2 * STEP)
    assert early.reason is Reason.PRESENTATION_EXPIRED
    strict = PolicyConfig(presentation_window_steps=0)
    assert decide_at(code, now=NOW + STEP, cfg=strict).reason is Reason.PRESENTATION_EXPIRED


def test_a_code_used_for_an_entry_is_refused_at_any_gate_and_the_next_code_is_not() -> None:
    pass_text = bound(reentry=True)
    code = present(pass_text, HOLDER, now=NOW)
    # admitted here a moment ago (or at another gate, its redemption shared through the hub), then left
    used = Usage(entries_used=1, inside=False, exited=True, last_entry_t=NOW - 2, entry_times=(NOW - 2,))
    replayed = decide_at(code, usage=used)
    assert replayed.reason is Reason.PRESENTATION_REPLAYED
    later = NOW + 2 * STEP
    assert decide_at(present(pass_text, HOLDER, now=later), now=later, usage=used).admit


def test_the_pass_rules_still_apply_to_a_presentation() -> None:
    single = bound(entries=1, zones=["A"])
    code = present(single, HOLDER, now=NOW)
    cfg = PolicyConfig(zones=("B",))
    assert decide_at(code, cfg=cfg).reason is Reason.WRONG_ZONE
    pass_id = verify_signature(single, TRUST).pass_id
    assert decide_at(code, revoked=frozenset({pass_id})).reason is Reason.REVOKED
    once = Usage(entries_used=1, exited=True, last_entry_t=NOW - 3600, entry_times=(NOW - 3600,))
    assert decide_at(code, usage=once).reason is Reason.USED_UP
    inside = Usage(entries_used=1, inside=True, last_entry_t=NOW - 3600, entry_times=(NOW - 3600,))
    many = present(bound(), HOLDER, now=NOW)
    assert decide_at(many, usage=inside).reason is Reason.ALREADY_INSIDE


def forged(pass_text: str, key: ec.EllipticCurvePrivateKey, step: int) -> str:
    """A presentation of ``pass_text`` signed with ``key`` (``present`` refuses another device's key)."""
    pass_cose = decode_text(pass_text)
    pass_id = verify_signature(pass_text, TRUST).pass_id
    r, s = decode_dss_signature(key.sign(signed_bytes(pass_id, step), ec.ECDSA(hashes.SHA256())))
    body = cbor2.dumps([pass_cose, step, r.to_bytes(32, "big") + s.to_bytes(32, "big")])
    return "PG2:" + base45.encode(body)


def test_a_code_signed_by_another_device_is_refused() -> None:
    pass_text = bound()
    step = int(NOW // STEP)
    assert decide_at(forged(pass_text, HOLDER, step)).admit  # the recipe, with the right key, works
    refused = decide_at(forged(pass_text, THIEF, step))
    assert refused.reason is Reason.BAD_SIGNATURE


def test_exits_need_no_live_code() -> None:
    assert decide_at(bound(), direction=Direction.EXIT).admit


def test_unbound_passes_work_as_before() -> None:
    plain = issue_pass(ISSUER, valid_from=0, valid_until=2**31)
    assert decide_at(plain).admit


def test_the_window_is_a_policy_setting(tmp_path: Path) -> None:
    assert parse_config({}).policy.presentation_window_steps == 1
    assert parse_config({"policy": {"presentation_window_steps": 0}}).policy.presentation_window_steps == 0
    with pytest.raises(ConfigError, match=r"policy\.presentation_window_steps: must be between 0 and 4"):
        parse_config({"policy": {"presentation_window_steps": 9}})


def test_passgated_simulate_admits_the_live_code_and_refuses_the_printed_pass(tmp_path: Path) -> None:
    write_keypair(ISSUER, tmp_path / "keys", "issuer")
    pass_text = bound()
    code = present(pass_text, HOLDER, now=time.time())
    stale = present(pass_text, HOLDER, now=time.time() - 10 * STEP)
    args = ["simulate", "--trust", str(tmp_path / "keys"), "--walk-ms", "0", "--display", "127.0.0.1:0",
            "--journal", str(tmp_path / "j.db")]
    result = subprocess.run([sys.executable, "-m", "passgated.cli", *args],
                            input=f"{pass_text}\n{stale}\n{code}\n{code}\n", capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    reasons = [json.loads(line)["reason"] for line in result.stdout.splitlines()]
    assert reasons == ["holder_proof_required", "presentation_expired", "admit", "presentation_replayed"]

