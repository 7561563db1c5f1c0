"""The gate's decision, pure: a verified pass (or a refusal) plus context in, a ``Decision`` out.

Order, as proven ticketing scanners do it: unreadable → unknown key → bad signature (those arrive
as ``PassRefused`` from the SDK) → revoked → blocked → stale deny list (if configured to refuse) →
not yet valid / expired → wrong zone → entries used up → anti-passback → admit.

A holder-bound pass (``passgate.holder``) admits only through its live presentation: after the
pass's own window, a bound pass without its holder's signature is refused (``holder_proof_required``),
a presentation of a time step outside the window too (``presentation_expired``: a screenshot), and
after the zone, one whose time step was already used for an entry (``presentation_replayed``).

Exits are never refused for being expired, revoked or used up: a gate must not trap anyone inside.
An exit scan only needs a genuine pass, and it records the exit for anti-passback and re-entry.
This module does no I/O: usage and deny lists come in through small protocols.

A pretix ticket (``passgate.pretix``) is decided in pretixSCAN's offline order: genuine → revoked →
blocked → its validity window → product, variation and date on the zone's check-in list → the list's
rules (``passgate.rules``) → entries and re-entry → anti-passback.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from typing import Any, Protocol

from passgate import Pass, PassRefused, Reason, check_time
from passgate.holder import check_presentation_time
from passgate.pretix import PretixTicket, check_ticket_time
from passgate.rules import CheckinFacts, check_rules
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
    entry_times: tuple[float, ...] = ()  # oldest first: pretix's rules count entries by day and time


class UsageLookup(Protocol):
    def usage(self, pass_id: bytes) -> Usage: ...


@dataclass(frozen=True, slots=True)
class CheckinList:
    """A pretix check-in list as the gate applies it offline. ``products`` and ``variations`` None:
    all of them; ``rules``: JsonLogic as pretix stores it (None or ``{}``: no rules)."""

    name: str
    products: frozenset[int] | None = None
    variations: frozenset[int] | None = None
    subevent: int | None = None
    allow_multiple_entries: bool = False
    allow_entry_after_exit: bool = True
    rules: Any = None

    def admits(self, ticket: PretixTicket) -> bool:
        """The ticket's product, variation and date are on this list."""
        if self.subevent is not None and ticket.subevent != self.subevent:
            return False
        if self.products is not None and ticket.item not in self.products:
            return False
        return self.variations is None or ticket.variation is None or ticket.variation in self.variations


@dataclass(frozen=True, slots=True)
class PretixPolicy:
    """What the gate knows of its pretix event: the check-in list of each zone (``""``: the list of
    a gate whose zones have none of their own), the event's time zone and times (its rules read
    them), and the gate's id in pretix (the rules' ``gate``)."""

    tz: tzinfo
    date_from: datetime
    lists: Mapping[str, CheckinList] = field(default_factory=dict)
    gate: int | str | None = None
    date_to: datetime | None = None
    date_admission: datetime | None = None

    def lists_for(self, zones: Iterable[str]) -> list[CheckinList]:
        chosen = [self.lists[zone] for zone in zones if zone in self.lists]
        if not chosen and "" in self.lists:
            chosen = [self.lists[""]]
        return chosen

    def keep_until(self, ticket: PretixTicket) -> int:
        """Until when the journal keeps the ticket's passages (and the hub its redemptions): its
        own end, else the event's end, else a day after the event's start."""
        if ticket.valid_until is not None:
            return ticket.valid_until
        return int((self.date_to or self.date_from + timedelta(days=1)).timestamp())


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    zones: tuple[str, ...] = ()
    anti_passback: bool = True
    anti_passback_timeout_s: float = 0.0  # 0: inside until an exit is recorded
    stale_list: StaleListPolicy = StaleListPolicy.GUARD
    skew_s: float = 60.0
    pretix: PretixPolicy | None = None  # None: pretix tickets are not accepted here
    presentation_window_steps: int = 1  # a holder's code is accepted this many steps early or late


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


def decide(result: Pass | PretixTicket | PassRefused, ctx: Context, cfg: PolicyConfig) -> Decision:
    """Decide one scan. Pure: same inputs, same decision."""
    direction = ctx.direction
    if type(result) is not Pass:  # one test for the usual case, a verified PG1 pass or presentation
        if isinstance(result, PretixTicket):
            return decide_ticket(result, ctx, cfg)
        if isinstance(result, PassRefused):
            return _refused(result, direction, None)
    p: Pass = result  # type: ignore[assignment]  # (a Pass: the test above, which mypy cannot follow)
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
        if p.holder_key is not None:  # a holder-bound pass: only its live presentation admits
            _holder_proof(p, ctx.now, cfg)
    except PassRefused as refused:
        return _refused(refused, direction, p)
    if cfg.zones and not p.valid_in_zone(cfg.zones):
        return _refuse(Reason.WRONG_ZONE, direction, p, f"Pass for zone {', '.join(p.zones)}")
    usage = ctx.usage.usage(p.pass_id)
    if p.holder_key is not None and _replayed(p, usage, cfg):
        since = f" at {_hhmm(usage.last_entry_t)}" if usage.last_entry_t else ""
        return Decision(False, Reason.PRESENTATION_REPLAYED, Reason.PRESENTATION_REPLAYED.text, direction, p,
                        detail=f"this code's time step was already used for an entry{since}")
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


def _holder_proof(p: Pass, now: float, cfg: PolicyConfig) -> None:
    """A bound pass shown without its holder's signature (printed, copied from the wallet's store) is
    refused; a presentation must be of a time step within the window (not a screenshot)."""
    if not p.holder_verified:
        raise PassRefused(Reason.HOLDER_PROOF_REQUIRED, "a holder-bound pass shown without its live code")
    check_presentation_time(p, now=now, window_steps=cfg.presentation_window_steps)


def _replayed(p: Pass, usage: Usage, cfg: PolicyConfig) -> bool:
    """Whether an entry (at this gate or, shared through the hub, at another) happened while this
    presentation could already be shown: from the first moment its step is accepted. The same code
    shown again, here or at the next gate, is then refused; the holder's next code, a step or two
    later, is not (the pass's own rules still apply)."""
    if usage.last_entry_t is None or p.presentation_step is None:
        return False
    return usage.last_entry_t >= (p.presentation_step - cfg.presentation_window_steps) * p.holder_step


def _passback_expired(usage: Usage, now: float, cfg: PolicyConfig) -> bool:
    """Timed anti-passback: after the timeout the holder is assumed to have left."""
    if cfg.anti_passback_timeout_s <= 0 or usage.last_entry_t is None:
        return False
    return now - usage.last_entry_t >= cfg.anti_passback_timeout_s


# EdDSA in COSE's numbering: a pretix ticket's signature, for the journal's pass record.
_EDDSA = -8


def ticket_pass(ticket: PretixTicket, checkin: CheckinList | None, pretix: PretixPolicy) -> Pass:
    """A pretix ticket as the gate's journal, hub and display know a pass: its id derived from the
    ticket's seed (never the secret), one entry when its list admits one, and a product name."""
    single = checkin is not None and not checkin.allow_multiple_entries and not checkin.allow_entry_after_exit
    product = f"pretix {ticket.item}" + (f"/{ticket.variation}" if ticket.variation is not None else "")
    return Pass(ticket.pass_id, b"", _EDDSA, ticket.valid_from or 0, pretix.keep_until(ticket),
                entries=1 if single else None, product=product,
                reentry=checkin is not None and checkin.allow_entry_after_exit)


def decide_ticket(ticket: PretixTicket, ctx: Context, cfg: PolicyConfig) -> Decision:
    """Decide a genuine pretix ticket, in pretixSCAN's offline order (module docstring)."""
    direction, pretix = ctx.direction, cfg.pretix
    if pretix is None:
        return _refuse(Reason.UNKNOWN_KEY, direction, None)
    lists = pretix.lists_for(cfg.zones)
    p = ticket_pass(ticket, lists[0] if lists else None, pretix)
    if direction is Direction.EXIT:
        return Decision(True, Reason.ADMIT, "Goodbye", direction, p)
    if p.pass_id in ctx.revoked:
        return _refuse(Reason.REVOKED, direction, p)
    if p.pass_id in ctx.blocked:
        return _refuse(Reason.BLOCKED, direction, p)
    if ctx.lists_stale and cfg.stale_list is StaleListPolicy.REFUSE:
        return _refuse(Reason.DENY_LIST_STALE, direction, p)
    try:
        check_ticket_time(ticket, now=ctx.now, skew=cfg.skew_s)
    except PassRefused as refused:
        return _refused(refused, direction, p)
    checkin = next((candidate for candidate in lists if candidate.admits(ticket)), None)
    if checkin is None:
        what = f"product {ticket.item}" + (f", variation {ticket.variation}" if ticket.variation else "")
        if ticket.subevent:
            what += f", date {ticket.subevent}"
        detail = f"{what}: not on check-in list {', '.join(c.name for c in lists)}" if lists else \
            "no pretix check-in list for this gate's zones"
        return Decision(False, Reason.WRONG_ZONE, "Ticket not valid for this entrance", direction, p,
                        detail=detail)
    p = ticket_pass(ticket, checkin, pretix)
    usage = ctx.usage.usage(p.pass_id)
    if checkin.rules:
        refusal = _rules_refusal(ticket, checkin, pretix, usage, ctx.now)
        if refusal is not None:
            return Decision(False, Reason.RULES, Reason.RULES.text, direction, p, detail=refusal)
    if usage.entries_used and not checkin.allow_multiple_entries:
        back_in = checkin.allow_entry_after_exit and usage.exited and not usage.inside
        if not back_in:
            since = f" at {_hhmm(usage.last_entry_t)}" if usage.last_entry_t else ""
            return _refuse(Reason.USED_UP, direction, p, f"Already checked in{since}")
    if cfg.anti_passback and usage.inside and not _passback_expired(usage, ctx.now, cfg):
        since = f" since {_hhmm(usage.last_entry_t)}" if usage.last_entry_t else ""
        return _refuse(Reason.ALREADY_INSIDE, direction, p, f"Already inside{since}")
    guard = ctx.lists_stale and cfg.stale_list is StaleListPolicy.GUARD
    return Decision(True, Reason.ADMIT, "Check pass: deny list out of date" if guard else "Welcome",
                    direction, p, guard)


def _rules_refusal(ticket: PretixTicket, checkin: CheckinList, pretix: PretixPolicy, usage: Usage,
                   now: float) -> str | None:
    """None when the list's rules admit the ticket now; else why not, for the journal. A rule that
    cannot be evaluated refuses (fail closed), as pretix does."""
    tz = pretix.tz
    try:
        facts = CheckinFacts(now=datetime.fromtimestamp(now, tz), tz=tz, product=ticket.item,
                             variation=ticket.variation, gate=pretix.gate,
                             entries=tuple(datetime.fromtimestamp(t, tz) for t in usage.entry_times),
                             inside=usage.inside, date_from=pretix.date_from, date_to=pretix.date_to,
                             date_admission=pretix.date_admission)
        admitted = check_rules(checkin.rules, facts)
    except ValueError as exc:  # RuleError, or facts the rules cannot read
        return f"check-in list {checkin.name}: rule cannot be evaluated ({exc})"
    return None if admitted else f"check-in list {checkin.name}: its rules do not admit this ticket now"
