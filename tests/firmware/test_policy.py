"""Policy table: one row per reason, in the documented order, with the guard's text."""

from dataclasses import dataclass, field

import pytest

from passgate import PassRefused, Reason, TrustStore, generate_private_key, issue_pass, verify_signature
from passgated.policy import (
    Context,
    Direction,
    PolicyConfig,
    StaleListPolicy,
    Usage,
    decide,
)

NOW = 1_800_000_000.0
HOUR = 3600
KEY = generate_private_key()
TRUST = TrustStore()
TRUST.add(KEY.public_key())


@dataclass
class Usages:
    table: dict[bytes, Usage] = field(default_factory=dict)

    def usage(self, pass_id: bytes) -> Usage:
        return self.table.get(pass_id, Usage())


def make(**kw):
    args = {"valid_from": NOW - HOUR, "valid_until": NOW + HOUR, **kw}
    return verify_signature(issue_pass(KEY, **args), TRUST)


def run(p, *, direction=Direction.ENTRY, revoked=(), blocked=(), usage=None, stale=False, **cfg):
    ctx = Context(now=NOW, direction=direction, revoked=set(revoked), blocked=set(blocked),
                  usage=usage or Usages(), lists_stale=stale)
    return decide(p, ctx, PolicyConfig(**{"zones": ("A",), **cfg}))


def test_admit() -> None:
    d = run(make(zones=["A"]))
    assert (d.admit, d.reason, d.verdict) == (True, Reason.ADMIT, "admit")


@pytest.mark.parametrize("reason", [Reason.UNREADABLE, Reason.UNKNOWN_KEY, Reason.BAD_SIGNATURE,
                                    Reason.UNSUPPORTED_ALGORITHM, Reason.KEY_RETIRED])
def test_sdk_refusals_show_the_guard_words_and_keep_the_detail(reason: Reason) -> None:
    d = run(PassRefused(reason, "Damaged code (Base45 triplet above 65535)"))
    assert (d.admit, d.reason, d.pass_) == (False, reason, None)
    assert d.text == reason.text and "Base45" not in d.text  # plain words for the guard
    assert d.detail == "Damaged code (Base45 triplet above 65535)"  # for the journal and small print


@pytest.mark.parametrize("reason", [Reason.NOT_YET_VALID, Reason.EXPIRED])
def test_a_time_from_the_sdk_is_the_guards_text(reason: Reason) -> None:
    d = run(PassRefused(reason, "Valid from 18:00"))
    assert (d.text, d.detail) == ("Valid from 18:00", "")


def test_a_refusal_without_detail_has_none() -> None:
    assert run(PassRefused(Reason.BAD_SIGNATURE)).detail == ""


def test_revoked_comes_before_expired_and_blocked() -> None:
    p = make(valid_from=NOW - 3 * HOUR, valid_until=NOW - 2 * HOUR, zones=["B"])
    assert run(p, revoked=[p.pass_id], blocked=[p.pass_id]).reason is Reason.REVOKED
    assert run(p, blocked=[p.pass_id]).reason is Reason.BLOCKED
    assert run(p).reason is Reason.EXPIRED


def test_time_window_uses_the_skew() -> None:
    early = make(valid_from=NOW + 30, valid_until=NOW + HOUR)
    assert run(early, skew_s=60).admit
    refused = run(early, skew_s=10)
    assert refused.reason is Reason.NOT_YET_VALID and refused.text.startswith("Valid from")


def test_wrong_zone_names_the_pass_zone() -> None:
    d = run(make(zones=["B", "C"]))
    assert (d.reason, d.text) == (Reason.WRONG_ZONE, "Pass for zone B, C")
    assert run(make()).admit  # no zones on the pass: any zone
    assert run(make(zones=["B"]), zones=()).admit  # a gate with no zone takes every pass


def test_entries_used_up() -> None:
    p = make(zones=["A"], entries=2)
    usage = Usages({p.pass_id: Usage(entries_used=2, exited=True)})
    d = run(p, usage=usage)
    assert (d.reason, d.text) == (Reason.USED_UP, "All entries used (2 of 2)")
    assert run(p, usage=Usages({p.pass_id: Usage(entries_used=1, exited=True)})).reason is Reason.USED_UP
    reentry = make(zones=["A"], entries=2, reentry=True)
    assert run(reentry, usage=Usages({reentry.pass_id: Usage(entries_used=1, exited=True)})).admit


def test_anti_passback_strict_timed_and_off() -> None:
    p = make(zones=["A"], reentry=True)
    inside = Usages({p.pass_id: Usage(entries_used=1, inside=True, last_entry_t=NOW - 600)})
    d = run(p, usage=inside)
    assert d.reason is Reason.ALREADY_INSIDE and d.text.startswith("Already inside since ")
    assert run(p, usage=inside, anti_passback_timeout_s=300).admit
    assert run(p, usage=inside, anti_passback_timeout_s=900).reason is Reason.ALREADY_INSIDE
    assert run(p, usage=inside, anti_passback=False).admit


def test_exit_is_never_refused_for_a_genuine_pass() -> None:
    p = make(valid_from=NOW - 3 * HOUR, valid_until=NOW - 2 * HOUR, entries=1, zones=["B"])
    used = Usages({p.pass_id: Usage(entries_used=1)})
    d = run(p, direction=Direction.EXIT, revoked=[p.pass_id], usage=used)
    assert d.admit and d.direction is Direction.EXIT
    assert not run(PassRefused(Reason.BAD_SIGNATURE), direction=Direction.EXIT).admit


def test_stale_lists() -> None:
    p = make(zones=["A"])
    assert run(p, stale=True, stale_list=StaleListPolicy.REFUSE).reason is Reason.DENY_LIST_STALE
    guarded = run(p, stale=True, stale_list=StaleListPolicy.GUARD)
    assert guarded.admit and guarded.guard_check
    assert run(p, stale=True, stale_list=StaleListPolicy.ADMIT).admit
    assert not run(p, stale=True, stale_list=StaleListPolicy.ADMIT).guard_check
    assert run(p, stale=True).guard_check  # the default is guard
    assert run(p, stale=False, stale_list=StaleListPolicy.REFUSE).admit


def test_policy_and_machine_import_nothing_that_does_io() -> None:
    """The design's wall: the pure core takes inputs and returns decisions and actions; I/O
    (sqlite, sockets, threads, GPIO, HTTP, the clock) lives at the edges."""
    import ast
    from pathlib import Path

    import passgated

    forbidden = {"sqlite3", "socket", "threading", "gpiozero", "requests", "time", "os", "subprocess",
                 "asyncio", "urllib", "http", "serial"}
    for name in ("policy.py", "machine.py"):
        tree = ast.parse((Path(passgated.__file__).parent / name).read_text())
        imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                    for alias in node.names}
        imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                     if isinstance(node, ast.ImportFrom) and node.module and not node.level}
        assert not imported & forbidden, (name, imported & forbidden)
