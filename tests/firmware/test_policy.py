"""The policy pinned down: every reason with its exact guard text, every boundary (nbf, exp, skew,
entries, anti-passback timeout), the order of the checks, and the defaults."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from passgate import Pass, PassRefused, Reason, TrustStore, generate_private_key, issue_pass, verify_signature
from passgated.policy import (
    Context,
    Decision,
    Direction,
    PolicyConfig,
    StaleListPolicy,
    Usage,
    decide,
)

NOW = 1_800_000_000.0  # 2027-01-15 08:00:00 UTC
HOUR = 3600
KEY = generate_private_key()
TRUST = TrustStore()
TRUST.add(KEY.public_key())


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Clock texts in UTC, so they can be written out literally."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@dataclass
class Usages:
    table: dict[bytes, Usage] = field(default_factory=dict)

    def usage(self, pass_id: bytes) -> Usage:
        return self.table.get(pass_id, Usage())


def make(**kw: object) -> Pass:
    args = {"valid_from": NOW - HOUR, "valid_until": NOW + HOUR, **kw}
    return verify_signature(issue_pass(KEY, **args), TRUST)  # type: ignore[arg-type]


def run(p: Pass | PassRefused, *, direction: Direction = Direction.ENTRY, revoked: tuple[bytes, ...] = (),
        blocked: tuple[bytes, ...] = (), usage: Usage | None = None, stale: bool = False,
        now: float = NOW, **cfg: object) -> Decision:
    table = {p.pass_id: usage} if usage is not None and isinstance(p, Pass) else {}
    ctx = Context(now=now, direction=direction, revoked=set(revoked), blocked=set(blocked),
                  usage=Usages(table), lists_stale=stale)
    return decide(p, ctx, PolicyConfig(**{"zones": ("A",), **cfg}))  # type: ignore[arg-type]


def test_the_config_values_and_defaults() -> None:
    assert [d.value for d in Direction] == ["entry", "exit"]
    assert [s.value for s in StaleListPolicy] == ["admit", "guard", "refuse"]
    assert PolicyConfig() == PolicyConfig(zones=(), anti_passback=True, anti_passback_timeout_s=0.0,
                                          stale_list=StaleListPolicy.GUARD, skew_s=60.0)
    assert Usage() == Usage(entries_used=0, inside=False, exited=False, last_entry_t=None)
    context = Context(now=NOW, direction=Direction.ENTRY, revoked=set(), blocked=set(), usage=Usages())
    assert context.lists_stale is False


@pytest.mark.parametrize("record", [
    Context(NOW, Direction.ENTRY, set(), set(), Usages(), True),
    Decision(False, Reason.EXPIRED, "Pass expired", Direction.EXIT, None, True, "why"),
])
def test_context_and_decision_are_frozen_dataclasses_with_every_field_set(record: object) -> None:
    """Both have an ``__init__`` of their own (built on every scan; the generated one is slower):
    every field is set, positional or by keyword, and none can be changed afterwards."""
    values = {f.name: getattr(record, f.name) for f in dataclasses.fields(record)}  # type: ignore[arg-type]
    assert type(record)(**values) == record == type(record)(*values.values())
    assert dataclasses.replace(record) == record  # type: ignore[type-var]
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.direction = Direction.ENTRY  # type: ignore[attr-defined]


def test_admit() -> None:
    p = make(zones=["A"])
    assert run(p) == Decision(True, Reason.ADMIT, "Welcome", Direction.ENTRY, p, guard_check=False, detail="")
    assert run(p).verdict == "admit" and run(p).pass_id == p.pass_id


def test_a_single_entry_pass_end_to_end() -> None:
    p = make(zones=["A"], entries=1)
    assert run(p).admit
    used = run(p, usage=Usage(entries_used=1, inside=True, last_entry_t=NOW - 60))
    assert (used.admit, used.reason, used.text) == (False, Reason.USED_UP, "All entries used (1 of 1)")


@pytest.mark.parametrize("entries", [1, 2, 5])
def test_entries_boundary(entries: int) -> None:
    p = make(zones=["A"], entries=entries, reentry=True)
    assert run(p, usage=Usage(entries_used=entries - 1, exited=True)).admit
    d = run(p, usage=Usage(entries_used=entries, exited=True))
    assert (d.reason, d.text) == (Reason.USED_UP, f"All entries used ({entries} of {entries})")
    assert run(p, usage=Usage(entries_used=entries + 1, exited=True)).reason is Reason.USED_UP


@pytest.mark.parametrize("reason", [Reason.UNREADABLE, Reason.UNKNOWN_KEY, Reason.BAD_SIGNATURE,
                                    Reason.UNSUPPORTED_ALGORITHM, Reason.KEY_RETIRED])
def test_sdk_refusals_show_the_guard_words_and_keep_the_detail(reason: Reason) -> None:
    d = run(PassRefused(reason, "Damaged code (Base45 triplet above 65535)"))
    assert d == Decision(False, reason, reason.text, Direction.ENTRY, None, guard_check=False,
                         detail="Damaged code (Base45 triplet above 65535)")
    assert d.verdict == "refuse" and d.pass_id is None


@pytest.mark.parametrize("reason", [Reason.NOT_YET_VALID, Reason.EXPIRED])
def test_a_time_from_the_sdk_is_the_guards_text(reason: Reason) -> None:
    d = run(PassRefused(reason, "Valid from 18:00"))
    assert (d.text, d.detail) == ("Valid from 18:00", "")


def test_a_refusal_without_detail_has_none() -> None:
    assert run(PassRefused(Reason.BAD_SIGNATURE)).detail == ""


def test_the_guard_texts_of_every_refusal() -> None:
    p = make(zones=["A"])
    expected = {
        "revoked": (run(p, revoked=(p.pass_id,)), Reason.REVOKED, "Pass cancelled: send to the box office"),
        "blocked": (run(p, blocked=(p.pass_id,)), Reason.BLOCKED, "Pass blocked: send to the box office"),
        "stale": (run(p, stale=True, stale_list=StaleListPolicy.REFUSE), Reason.DENY_LIST_STALE,
                  "Gate lists out of date: call a supervisor"),
        "zone": (run(make(zones=["B", "C"])), Reason.WRONG_ZONE, "Pass for zone B, C"),
        "reentry": (run(p, usage=Usage(entries_used=1, exited=True)), Reason.USED_UP,
                    "No re-entry after exit"),
        "inside": (run(p, usage=Usage(entries_used=1, inside=True, last_entry_t=NOW - 1200)),
                   Reason.ALREADY_INSIDE, "Already inside since 07:40"),
        "inside, time unknown": (run(p, usage=Usage(entries_used=1, inside=True)), Reason.ALREADY_INSIDE,
                                 "Already inside"),
    }
    for name, (decision, reason, text) in expected.items():
        assert (decision.admit, decision.reason, decision.text) == (False, reason, text), name
        assert (decision.guard_check is False and decision.pass_ == p) or name == "zone", name


def test_the_time_window_at_its_edges() -> None:
    opens, closes = NOW + 100, NOW + HOUR
    p = make(valid_from=opens, valid_until=closes)
    assert run(p, now=opens - 61).reason is Reason.NOT_YET_VALID  # the skew is 60 s by default
    assert run(p, now=opens - 60).admit
    assert run(p, now=opens - 11, skew_s=10).reason is Reason.NOT_YET_VALID
    assert run(p, now=opens - 10, skew_s=10).admit
    assert run(p, now=closes + 59).admit  # exp is the first second the pass is no longer valid (RFC 8392)
    assert run(p, now=closes + 60).reason is Reason.EXPIRED
    assert run(p, now=opens, skew_s=0).admit and run(p, now=closes - 1, skew_s=0).admit
    assert run(p, now=closes, skew_s=0).reason is Reason.EXPIRED
    early = run(p, now=opens - 3600)
    assert (early.text, early.detail) == ("Valid from 2027-01-15 08:01", "")


def test_zones() -> None:
    assert run(make(zones=["B"]), zones=("A", "B")).admit  # a gate serving several zones
    assert run(make(zones=["B"]), zones=("A", "C")).reason is Reason.WRONG_ZONE
    assert run(make()).admit  # no zones on the pass: any zone
    assert run(make(zones=["B"]), zones=()).admit  # a gate with no zone takes every pass


def test_the_order_of_the_checks() -> None:
    """revoked → blocked → stale (refuse) → time → zone → entries → re-entry → anti-passback."""
    expired_elsewhere = make(valid_from=NOW - 3 * HOUR, valid_until=NOW - 2 * HOUR, zones=["B"], entries=1)
    used = Usage(entries_used=1, inside=True, last_entry_t=NOW - 60)
    refuse = {"stale": True, "stale_list": StaleListPolicy.REFUSE}
    ids = (expired_elsewhere.pass_id,)
    assert run(expired_elsewhere, revoked=ids, blocked=ids, usage=used, **refuse).reason is Reason.REVOKED
    assert run(expired_elsewhere, blocked=ids, usage=used, **refuse).reason is Reason.BLOCKED
    assert run(expired_elsewhere, usage=used, **refuse).reason is Reason.DENY_LIST_STALE
    assert run(expired_elsewhere, usage=used).reason is Reason.EXPIRED
    wrong_zone_used = make(zones=["B"], entries=1)
    assert run(wrong_zone_used, usage=used).reason is Reason.WRONG_ZONE
    assert run(make(zones=["A"], entries=1), usage=used).reason is Reason.USED_UP
    exited = Usage(entries_used=1, exited=True, inside=False)
    assert run(make(zones=["A"]), usage=exited).text == "No re-entry after exit"


def test_reentry_after_an_exit() -> None:
    p = make(zones=["A"])
    assert run(p, usage=Usage(entries_used=1, exited=True)).reason is Reason.USED_UP
    reentry = make(zones=["A"], reentry=True)
    assert run(reentry, usage=Usage(entries_used=1, exited=True)).admit
    # an exit recorded before any entry (a free exit) does not use the pass up
    assert run(p, usage=Usage(entries_used=0, exited=True)).admit
    # back inside after an exit: anti-passback answers, not re-entry
    back_in = run(p, usage=Usage(entries_used=2, exited=True, inside=True, last_entry_t=NOW - 60))
    assert back_in.reason is Reason.ALREADY_INSIDE


def test_anti_passback_strict_timed_and_off() -> None:
    p = make(zones=["A"], reentry=True)
    inside = Usage(entries_used=1, inside=True, last_entry_t=NOW - 300)
    assert run(p, usage=inside).reason is Reason.ALREADY_INSIDE  # strict: until an exit
    assert run(p, usage=inside, anti_passback_timeout_s=300).admit  # exactly at the timeout
    assert run(p, usage=inside, anti_passback_timeout_s=301).reason is Reason.ALREADY_INSIDE
    assert run(p, usage=inside, anti_passback_timeout_s=0.5).admit  # any positive timeout counts
    unknown = Usage(entries_used=1, inside=True, last_entry_t=None)
    assert run(p, usage=unknown, anti_passback_timeout_s=300).reason is Reason.ALREADY_INSIDE
    assert run(p, usage=inside, anti_passback=False).admit
    assert run(p, usage=Usage(entries_used=1, inside=False)).admit


def test_exit_is_never_refused_for_a_genuine_pass() -> None:
    p = make(valid_from=NOW - 3 * HOUR, valid_until=NOW - 2 * HOUR, entries=1, zones=["B"])
    d = run(p, direction=Direction.EXIT, revoked=(p.pass_id,), blocked=(p.pass_id,),
            usage=Usage(entries_used=1), stale=True, stale_list=StaleListPolicy.REFUSE)
    assert d == Decision(True, Reason.ADMIT, "Goodbye", Direction.EXIT, p, guard_check=False, detail="")
    forged = run(PassRefused(Reason.BAD_SIGNATURE), direction=Direction.EXIT)
    assert (forged.admit, forged.reason, forged.direction) == (False, Reason.BAD_SIGNATURE, Direction.EXIT)


def test_stale_lists() -> None:
    p = make(zones=["A"])
    assert run(p, stale=True, stale_list=StaleListPolicy.REFUSE).reason is Reason.DENY_LIST_STALE
    guarded = run(p, stale=True, stale_list=StaleListPolicy.GUARD)
    assert (guarded.admit, guarded.guard_check) == (True, True)
    assert guarded.text == "Check pass: deny list out of date"
    admitted = run(p, stale=True, stale_list=StaleListPolicy.ADMIT)
    assert (admitted.admit, admitted.guard_check, admitted.text) == (True, False, "Welcome")
    assert run(p, stale=True).guard_check  # the default is guard
    fresh = run(p, stale=False, stale_list=StaleListPolicy.GUARD)
    assert (fresh.guard_check, fresh.text) == (False, "Welcome")
    assert run(p, stale=False, stale_list=StaleListPolicy.REFUSE).admit
    # a refusal is never flagged for a check: there is nothing to let through
    assert run(make(zones=["B"]), stale=True).guard_check is False


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
