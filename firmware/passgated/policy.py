"""The gate's decision, pure: a verified pass (or a refusal) plus context in, a ``Decision`` out.

Order, as proven ticketing scanners do it: unreadable → unknown key → bad signature (those arrive
as ``PassRefused`` from the SDK) → revoked → blocked → stale deny list (if configured to refuse) →
not yet valid / expired → wrong zone → entries used up → anti-passback → admit.

Exits are never refused for being expired, revoked or used up: a gate must not trap anyone inside.
An exit scan only needs a genuine pass, and it records the exit for anti-passback and re-entry.
This module does no I/O: usage and deny lists come in through small protocols.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from passgate import Pass, PassRefused, Reason, check_time
from passgate.wire import Direction, StaleListPolicy, Verdict


class DenyCheck(Protocol):
    def __contains__(self, pass_id: bytes) -> bool: ...


@dataclass(frozen=True, slots=True)
class Usage:
    """What the gate's journal knows about one pass."""

    entries_used: int = 0
    inside: bool = False
    exited: bool = False
    last_entry_t: float | None = None


class UsageLookup(Protocol):
    def usage(self, pass_id: bytes) -> Usage: ...


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    zones: tuple[str, ...] = ()
    anti_passback: bool = True
    anti_passback_timeout_s: float = 0.0  # 0: inside until an exit is recorded
    stale_list: StaleListPolicy = StaleListPolicy.GUARD
    skew_s: float = 60.0


@dataclass(frozen=True)
class Context:
    now: float
    direction: Direction
    revoked: DenyCheck
    blocked: DenyCheck
    usage: UsageLookup
    lists_stale: bool = False

    def __init__(self, now: float, direction: Direction, revoked: DenyCheck, blocked: DenyCheck,
                 usage: UsageLookup, lists_stale: bool = False) -> None:
        # Written out, as passgate.Pass: each scan builds one, and a frozen dataclass's generated
        # __init__ (one object.__setattr__ a field) costs twice a dict update.
        self.__dict__.update(now=now, direction=direction, revoked=revoked, blocked=blocked, usage=usage,
                             lists_stale=lists_stale)


@dataclass(frozen=True)
class Decision:
    """The gate's answer for one scan. ``text`` is what the guard reads (plain words, what to do);
    ``detail`` the technical why, for the journal and the page's small print."""

    admit: bool
    reason: Reason
    text: str
    direction: Direction
    pass_: Pass | None = None
    guard_check: bool = False
    detail: str = ""

    def __init__(self, admit: bool, reason: Reason, text: str, direction: Direction,
                 pass_: Pass | None = None, guard_check: bool = False, detail: str = "") -> None:
        # Written out, as Context.
        self.__dict__.update(admit=admit, reason=reason, text=text, direction=direction, pass_=pass_,
                             guard_check=guard_check, detail=detail)

    @property
    def pass_id(self) -> bytes | None:
        return self.pass_.pass_id if self.pass_ else None

    @property
    def verdict(self) -> Verdict:
        return Verdict.ADMIT if self.admit else Verdict.REFUSE

    def refused_for_fault(self, cause: str) -> Decision:
        """This scan refused because the gate could not do its part (its record failed): the
        guard sees a gate fault, and the journal says the same."""
        return Decision(False, Reason.GATE_FAULT, Reason.GATE_FAULT.text, self.direction, self.pass_,
                        detail=cause)


# Refusals whose SDK detail is already guard's words ("Valid from 18:00", "Expired 21:40").
_DETAIL_FOR_GUARD = frozenset({Reason.NOT_YET_VALID, Reason.EXPIRED})


def _refuse(reason: Reason, direction: Direction, p: Pass | None, text: str | None = None) -> Decision:
    return Decision(False, reason, text or reason.text, direction, p)


def _refused(refused: PassRefused, direction: Direction, p: Pass | None) -> Decision:
    """A refusal from the SDK: its detail is technical unless it is a time the guard can read."""
    if refused.reason in _DETAIL_FOR_GUARD:
        return _refuse(refused.reason, direction, p, refused.detail)
    detail = "" if refused.detail == refused.reason.text else refused.detail
    return Decision(False, refused.reason, refused.reason.text, direction, p, detail=detail)


def _hhmm(epoch: float) -> str:
    return datetime.fromtimestamp(epoch).astimezone().strftime("%H:%M")


def decide(result: Pass | PassRefused, ctx: Context, cfg: PolicyConfig) -> Decision:
    """Decide one scan. Pure: same inputs, same decision."""
    direction = ctx.direction
    if isinstance(result, PassRefused):
        return _refused(result, direction, None)
    p = result
    if direction is Direction.EXIT:
        return Decision(True, Reason.ADMIT, "Goodbye", direction, p)
    if p.pass_id in ctx.revoked:
        return _refuse(Reason.REVOKED, direction, p)
    if p.pass_id in ctx.blocked:
        return _refuse(Reason.BLOCKED, direction, p)
    if ctx.lists_stale and cfg.stale_list is StaleListPolicy.REFUSE:
        return _refuse(Reason.DENY_LIST_STALE, direction, p)
    try:
        check_time(p, now=ctx.now, skew=cfg.skew_s)
    except PassRefused as refused:
        return _refused(refused, direction, p)
    if cfg.zones and not p.valid_in_zone(cfg.zones):
        return _refuse(Reason.WRONG_ZONE, direction, p, f"Pass for zone {', '.join(p.zones)}")
    usage = ctx.usage.usage(p.pass_id)
    if p.entries is not None and usage.entries_used >= p.entries:
        text = f"All entries used ({usage.entries_used} of {p.entries})"
        return _refuse(Reason.USED_UP, direction, p, text)
    if usage.exited and not usage.inside and not p.reentry and usage.entries_used:
        return _refuse(Reason.USED_UP, direction, p, "No re-entry after exit")
    if cfg.anti_passback and usage.inside and not _passback_expired(usage, ctx.now, cfg):
        since = f" since {_hhmm(usage.last_entry_t)}" if usage.last_entry_t else ""
        return _refuse(Reason.ALREADY_INSIDE, direction, p, f"Already inside{since}")
    guard = ctx.lists_stale and cfg.stale_list is StaleListPolicy.GUARD
    text = "Welcome" if not guard else "Check pass: deny list out of date"
    return Decision(True, Reason.ADMIT, text, direction, p, guard)  # positional: the scan path


def _passback_expired(usage: Usage, now: float, cfg: PolicyConfig) -> bool:
    """Timed anti-passback: after the timeout the holder is assumed to have left."""
    if cfg.anti_passback_timeout_s <= 0 or usage.last_entry_t is None:
        return False
    return now - usage.last_entry_t >= cfg.anti_passback_timeout_s
