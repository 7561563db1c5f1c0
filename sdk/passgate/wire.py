"""The gate↔hub wire: the one place where the messages between a gate and its hub are defined.

Both sides import this module; neither spells an event kind, a field name or a limit of its own.
Each message is a frozen dataclass whose fields carry their bounds (``limits``); ``parse(Message,
obj)`` turns a decoded JSON object into one or raises ``ProtocolError`` (one exception for every
malformed message), and ``dump(message)`` turns it back into JSON-ready data. The hub derives its
Pydantic request and response models from these classes.

Versions: a gate names ``PROTOCOL_VERSION`` in the ``Passgate-Protocol`` header. Messages only grow
(new optional fields), so a newer hub can serve an older gate; a hub answers a gate newer than
itself with 426. A gate that sends no header speaks version 1 (before this module existed).

    batch = parse(EventBatch, response_json)     # ProtocolError when malformed
    body = dump(Heartbeat(t=time.time(), protocol=PROTOCOL_VERSION))
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from typing import Any, TypeVar

__all__ = [
    "COUNTED_KINDS",
    "PROTOCOL_HEADER",
    "PROTOCOL_VERSION",
    "REDEMPTION_KINDS",
    "Bundle",
    "Direction",
    "EnrollRequest",
    "Enrolled",
    "Event",
    "EventAck",
    "EventBatch",
    "EventKind",
    "EventRejected",
    "GateSettings",
    "GateState",
    "Heartbeat",
    "HeartbeatAck",
    "KeyPurpose",
    "ListFile",
    "ListHealth",
    "ListHeld",
    "ListUpdate",
    "ProtocolError",
    "Redemption",
    "RedemptionPage",
    "StaleListPolicy",
    "SyncAnswer",
    "SyncRequest",
    "TrustedKey",
    "Verdict",
    "bounds",
    "counts_as_passage",
    "dump",
    "limits",
    "parse",
]

# 3: lists kept fresh by signed statements (ListUpdate.fresh), not new versions; 4: a quiet list's
# statements come in the sync answer (SyncAnswer.fresh), so the bundle's ETag does not step with them
PROTOCOL_VERSION = 4
PROTOCOL_HEADER = "Passgate-Protocol"
MAX_BATCH = 1000  # events in one upload
MAX_REDEMPTIONS = 5000  # redemptions in one page
MAX_ENTRIES = 2**31 - 1  # a pass's entry limit that gates record and the hub stores (a 32-bit column)


class ProtocolError(ValueError):
    """A message that does not follow this contract; the text names the field."""


class EventKind(StrEnum):
    """What a gate's journal records, one row each; the hub stores the same kinds."""

    DECISION = "decision"  # every scan's answer, admit or refuse
    REDEEMED = "redeemed"  # a reservation the holder walked through with: one passage
    RELEASED = "released"  # a reservation given back (nobody passed)
    RESERVATION_ASSUMED = "reservation_assumed"  # left by a crash: counted as used (and as a passage)
    PASSAGE = "passage"  # a passage without a scan (free exit, free passage); its detail says which
    NOT_PASSED = "not_passed"
    FORCED_PASSAGE = "forced_passage"
    TAMPER = "tamper"
    TAMPER_CLEARED = "tamper_cleared"
    READER_OFFLINE = "reader_offline"  # a reader on a bus stopped answering (its detail names it)
    READER_ONLINE = "reader_online"  # ... and answers again
    STATE = "state"
    EMERGENCY_RESET = "emergency_reset"
    FAULT_CLEARED = "fault_cleared"  # the journal records again after a fault (with its cause)
    JOURNAL_SET_ASIDE = "journal_set_aside"  # a damaged journal was moved aside at start
    HISTORY_RESTORED = "history_restored"  # redemptions are back (from the hub or a recovery)


# Kinds that use up an entry of a pass: shared with the venue's other gates.
REDEMPTION_KINDS = (EventKind.REDEEMED, EventKind.RESERVATION_ASSUMED)
# One passage is one event of these kinds (a scanned passage is its ``redeemed``; a gate speaking
# protocol 1 also sent a ``passage`` without detail for it, which is therefore not counted).
COUNTED_KINDS = (EventKind.REDEEMED, EventKind.RESERVATION_ASSUMED, EventKind.FORCED_PASSAGE,
                 EventKind.PASSAGE)


def counts_as_passage(kind: str, detail: str | None) -> bool:
    """Whether an event is one passage (for counts): see ``COUNTED_KINDS``."""
    return kind in COUNTED_KINDS and (kind != EventKind.PASSAGE or bool(detail))


class KeyPurpose(StrEnum):
    PASSES = "passes"  # signs passes
    DENYLIST = "denylist"  # signs one venue's deny lists, nothing else


class Direction(StrEnum):
    ENTRY = "entry"
    EXIT = "exit"


class Verdict(StrEnum):
    ADMIT = "admit"
    REFUSE = "refuse"


class GateState(StrEnum):
    """A gate's state as its heartbeat names it (``passgated.machine.State`` has the same values)."""

    BOOT = "BOOT"
    IDLE = "IDLE"
    GRANTED = "GRANTED"
    REFUSED = "REFUSED"
    EMERGENCY = "EMERGENCY"
    FAULT = "FAULT"
    MAINTENANCE_FREE = "MAINTENANCE_FREE"
    MAINTENANCE_LOCKED = "MAINTENANCE_LOCKED"

    @property
    def words(self) -> str:
        """The state written for a person (the console's fleet page)."""
        return _STATE_WORDS[self]


_STATE_WORDS = {
    GateState.BOOT: "Starting", GateState.IDLE: "Ready", GateState.GRANTED: "Admitting",
    GateState.REFUSED: "Refused", GateState.EMERGENCY: "Emergency: free passage",
    GateState.FAULT: "Fault: out of service", GateState.MAINTENANCE_FREE: "Maintenance: free passage",
    GateState.MAINTENANCE_LOCKED: "Maintenance: closed",
}


class StaleListPolicy(StrEnum):
    """What a gate does while a deny list it should have is older than allowed, or damaged beyond
    rebuilding. The default is ``GUARD``: a gate offline for a day keeps its queue moving (offline
    first), while a guard checks each admit, since revocations may be missing."""

    ADMIT = "admit"  # decide as usual; the status page shows the age
    GUARD = "guard"  # decide as usual, but flag every admit on the guard page for a manual check
    REFUSE = "refuse"  # refuse entries until a fresh list arrives


# -- field bounds ----------------------------------------------------------------------------

HEX_ID = r"^[0-9a-f]{32}$"
NAME = r"^[A-Za-z0-9._-]+$"


def limits(*, max_length: int | None = None, min_length: int | None = None, pattern: str | None = None,
           ge: float | None = None, le: float | None = None, item: dict[str, Any] | None = None,
           default: Any = dataclasses.MISSING, factory: Any = dataclasses.MISSING) -> Any:
    """A dataclass field with bounds the parser (and the hub's derived models) enforce; ``item``:
    the bounds of each element of a list, or each value of a dict."""
    bounds = {k: v for k, v in (("max_length", max_length), ("min_length", min_length),
                                ("pattern", pattern), ("ge", ge), ("le", le), ("item", item))
              if v is not None}
    if factory is not dataclasses.MISSING:
        return field(default_factory=factory, metadata=bounds)
    return field(default=default, metadata=bounds)


def _name(**kw: Any) -> Any:
    return limits(min_length=1, max_length=64, pattern=NAME, **kw)


# -- gate → hub ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Event:
    """One journal row, as the gate's journal holds it."""

    event_id: str = limits(min_length=1, max_length=64)
    gate_id: str = _name()
    t: float = limits()  # the gate's clock, epoch seconds
    kind: str = limits(min_length=1, max_length=32)  # an ``EventKind`` (an older hub stores any)
    direction: str | None = limits(max_length=8, default=None)
    pass_id: str | None = limits(max_length=32, default=None)
    decision: str | None = limits(max_length=16, default=None)
    reason: str | None = limits(max_length=32, default=None)
    latency_ms: float | None = limits(default=None)
    detail: str | None = limits(max_length=2000, default=None)
    # An admit decision's pass's signed entry limit (protocol 2, optional): lets the hub tell a
    # double redemption of a pass it did not issue.
    entries: int | None = limits(ge=1, le=MAX_ENTRIES, default=None)


@dataclass(frozen=True, slots=True)
class EventBatch:
    events: list[Event] = limits(max_length=MAX_BATCH, factory=list)


@dataclass(frozen=True, slots=True)
class EventRejected:
    """An event the hub will never store (the gate keeps it for audit and does not send it again)."""

    event_id: str = limits(max_length=64)
    why: str = limits(max_length=200)


@dataclass(frozen=True, slots=True)
class EventAck:
    """``acked``: every id the hub holds (new or already held); ``rejected``: refused for good;
    ``deferred``: not judged yet (their time is ahead of the hub's and the gate's clock offset is
    unknown or old): not held, send them again after a heartbeat."""

    acked: list[str] = limits(item={"max_length": 64}, factory=list)
    stored: int = limits(ge=0, default=0)
    duplicates: int = limits(ge=0, default=0)
    rejected: list[EventRejected] = limits(factory=list)
    deferred: list[EventRejected] = limits(factory=list)


@dataclass(frozen=True, slots=True)
class ListHealth:
    version: int = limits(ge=0, le=2**63 - 1)
    age_s: float | None = limits(default=None)


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """The gate's health and wall clock; the hub answers with its own time."""

    t: float = limits()
    version: str | None = limits(max_length=64, default=None)
    protocol: int = limits(ge=1, le=1000, default=1)
    backlog: int = limits(ge=0, le=2**62, default=0)  # events not sent yet
    state: str | None = limits(max_length=32, default=None)
    lists: dict[str, ListHealth] = limits(max_length=8, factory=dict)
    health: dict[str, Any] = limits(max_length=64, factory=dict)


@dataclass(frozen=True, slots=True)
class EnrollRequest:
    """A gate joining its hub with the one-time code an operator was shown (``POST /v1/enroll``)."""

    code: str = limits(min_length=8, max_length=32, pattern=r"^[0-9A-Za-z -]+$")


@dataclass(frozen=True, slots=True)
class Enrolled:
    """The hub's answer to an enrollment: who the gate is and its token (sent this once)."""

    gate_id: str = _name()
    venue: str = _name()
    token: str = limits(max_length=128)


@dataclass(frozen=True, slots=True)
class HeartbeatAck:
    server_time: float = limits()


# -- hub → gate ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TrustedKey:
    """A public key the gate trusts for ``purpose``. A retired key keeps passes issued (``iat``)
    before ``retired_at`` and refuses the rest; a revoked key refuses every pass under it. A
    deny-list key signs only the lists of ``scope``."""

    kid: str = limits(max_length=64)
    pem: str = limits(max_length=4096)
    purpose: KeyPurpose = limits(default=KeyPurpose.PASSES)
    issuer: str | None = limits(max_length=128, default=None)
    retired_at: float | None = limits(default=None)
    revoked_at: float | None = limits(default=None)
    scope: str | None = limits(max_length=64, default=None)


@dataclass(frozen=True, slots=True)
class ListFile:
    """A signed list file (snapshot or delta) a gate downloads from a static server (protocol 3):
    the bundle names it, never carries its bytes; the gate checks the size and SHA-256 before it
    verifies the signature and applies it."""

    url: str = limits(min_length=1, max_length=2048)  # absolute, or relative to the hub's URL
    size: int = limits(ge=1, le=2**40)
    sha256: str = limits(min_length=64, max_length=64, pattern=r"^[0-9a-f]{64}$")


@dataclass(frozen=True, slots=True)
class ListUpdate:
    version: int = limits(ge=0, le=2**63 - 1)
    issued_at: int = limits(ge=0)
    updates: list[str] = limits(factory=list)  # base64 of signed delta or snapshot files, in order
    # base64 of a signed ``passgate.freshness`` statement for ``version`` (protocol 3): the list is
    # current as of its time, so a quiet list needs no new version to stay fresh
    fresh: str | None = limits(max_length=2048, default=None)
    # the same updates as files to download, in order (protocol 3, when the hub publishes them)
    files: list[ListFile] = limits(max_length=64, factory=list)


@dataclass(frozen=True, slots=True)
class GateSettings:
    """What the hub decides for a gate; ``None`` leaves the gate's own file (or default) in force."""

    zones: list[str] | None = limits(max_length=32, item={"min_length": 1, "max_length": 64,
                                                          "pattern": NAME}, default=None)
    anti_passback: bool | None = limits(default=None)
    anti_passback_minutes: float | None = limits(ge=0, le=7 * 1440, default=None)
    stale_policy: StaleListPolicy | None = limits(default=None)
    max_list_age_hours: float | None = limits(ge=0.01, le=24 * 366, default=None)
    skew_seconds: float | None = limits(ge=0, le=3600, default=None)
    relay_pulse_ms: float | None = limits(ge=10, le=5000, default=None)
    passage_timeout_ms: float | None = limits(ge=500, le=60_000, default=None)
    refusal_display_ms: float | None = limits(ge=10, le=60_000, default=None)

    def given(self) -> dict[str, Any]:
        """The settings the hub set, by name."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if getattr(self, f.name) is not None}


@dataclass(frozen=True, slots=True)
class Bundle:
    """Everything a gate needs from its hub, fetched with ``If-None-Match``."""

    gate_id: str = _name()
    venue: str = _name()
    zone: str | None = limits(max_length=64, default=None)
    scope: str = limits(max_length=64, default="")  # the scope of the venue's deny lists
    protocol: int = limits(ge=1, le=1000, default=1)
    keys: list[TrustedKey] = limits(factory=list)
    denylists: dict[str, ListUpdate] = limits(max_length=8, factory=dict)
    settings: GateSettings = limits(factory=GateSettings)
    config: dict[str, Any] = limits(factory=dict)  # protocol 1's name for the settings


@dataclass(frozen=True, slots=True)
class Redemption:
    """A redemption made at another gate. ``t`` is hub time (the other gate's clock corrected by
    its measured offset and never later than the hub received it): the receiving gate converts it
    to its own clock with its own offset."""

    redemption_id: str = limits(max_length=64)
    pass_id: str = limits(pattern=HEX_ID)
    gate_id: str = _name()
    direction: Direction = limits()
    t: float = limits()
    valid_until: float | None = limits(default=None)


@dataclass(frozen=True, slots=True)
class RedemptionPage:
    redemptions: list[Redemption] = limits(max_length=MAX_REDEMPTIONS, factory=list)
    cursor: int = limits(ge=0, le=2**63 - 1, default=0)  # pass it back as ``after``
    more: bool = limits(default=False)  # the page was cut at its limit: ask again at once


# -- one round, one request (protocol 3) -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class ListHeld:
    """A list as the gate holds it: its version and when that version was signed."""

    version: int = limits(ge=0, le=2**63 - 1, default=0)
    issued_at: int | None = limits(ge=0, le=2**62, default=None)
    # the time the newest freshness statement the gate holds for this version vouches for (protocol 4)
    as_of: int | None = limits(ge=0, le=2**62, default=None)


@dataclass(frozen=True, slots=True)
class SyncRequest:
    """A gate's sync round in one request (``POST .../sync``): its heartbeat, the lists it holds,
    the ETag of the last bundle it applied and its redemption cursor. Events still go in their
    own upload first (only when there are any), so a quiet round is one request."""

    heartbeat: Heartbeat
    lists: dict[str, ListHeld] = limits(max_length=8, factory=dict)
    etag: str | None = limits(max_length=128, default=None)
    redemptions_after: int = limits(ge=0, le=2**62, default=0)


@dataclass(frozen=True, slots=True)
class SyncAnswer:
    """The hub's clock (for the gate's offset), the bundle when it changed since ``etag`` (None:
    unchanged, what a 304 says), its new ETag, and the first page of redemptions after the cursor.
    ``fresh`` (protocol 4): by kind, base64 of a freshness statement newer than the one the gate
    holds (``ListHeld.as_of``) for the version it holds, when that is the hub's."""

    server_time: float = limits()
    etag: str = limits(max_length=128, default="")
    bundle: Bundle | None = limits(default=None)
    redemptions: RedemptionPage = limits(factory=RedemptionPage)
    fresh: dict[str, str] = limits(max_length=8, item={"max_length": 2048}, factory=dict)


# -- parsing and dumping ---------------------------------------------------------------------

M = TypeVar("M")


def parse(cls: type[M], obj: Any, *, where: str = "") -> M:
    """Build a ``cls`` message from decoded JSON, or raise ``ProtocolError`` naming the field.
    Unknown fields are ignored (a newer peer may send more)."""
    where = where or cls.__name__
    if not isinstance(obj, dict):
        raise ProtocolError(f"{where}: expected an object, got {type(obj).__name__}")
    hints = _hints(cls)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name not in obj:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ProtocolError(f"{where}.{f.name}: required")
            continue
        values[f.name] = _value(hints[f.name], obj[f.name], f.metadata, f"{where}.{f.name}")
    return cls(**values)


def dump(message: Any) -> Any:
    """JSON-ready data of a message (enums as their strings, ``None`` fields kept)."""
    if dataclasses.is_dataclass(message) and not isinstance(message, type):
        return {f.name: dump(getattr(message, f.name)) for f in dataclasses.fields(message)}
    if isinstance(message, Enum):
        return message.value
    if isinstance(message, list | tuple):
        return [dump(v) for v in message]
    if isinstance(message, dict):
        return {k: dump(v) for k, v in message.items()}
    return message


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _value(hint: Any, value: Any, bounds: Any, where: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (hint,) = [a for a in args if a is not type(None)]
        origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is list:
        if not isinstance(value, list):
            raise ProtocolError(f"{where}: expected a list")
        _length(len(value), bounds, where)
        item = bounds.get("item", {})
        return [_value(args[0], v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ProtocolError(f"{where}: expected an object")
        _length(len(value), bounds, where)
        item = bounds.get("item", {})
        return {_value(str, k, {"max_length": 64}, f"{where} key"): _value(args[1], v, item, f"{where}.{k}")
                for k, v in value.items()}
    if hint is Any:
        return value
    if dataclasses.is_dataclass(hint):
        return parse(hint, value, where=where)  # type: ignore[arg-type]
    if isinstance(hint, type) and issubclass(hint, Enum):
        try:
            return hint(value)
        except ValueError:
            raise ProtocolError(f"{where}: one of {', '.join(m.value for m in hint)}, got {value!r}"
                                ) from None
    if hint is bool:
        if not isinstance(value, bool):
            raise ProtocolError(f"{where}: expected true or false")
        return value
    if hint in (int, float):
        if isinstance(value, bool) or not isinstance(value, int | float) or (
                hint is int and not isinstance(value, int)):
            raise ProtocolError(f"{where}: expected {'an integer' if hint is int else 'a number'}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ProtocolError(f"{where}: expected a finite number")
        if ("ge" in bounds and value < bounds["ge"]) or ("le" in bounds and value > bounds["le"]):
            raise ProtocolError(f"{where}: must be between {bounds.get('ge', '-inf')} and "
                                f"{bounds.get('le', 'inf')}, got {value!r}")
        return hint(value)
    if hint is str:
        if not isinstance(value, str):
            raise ProtocolError(f"{where}: expected a string")
        _length(len(value), bounds, where)
        if "pattern" in bounds and not _match(bounds["pattern"], value):
            raise ProtocolError(f"{where}: does not match {bounds['pattern']}")
        return value
    raise ProtocolError(f"{where}: no rule for {hint!r}")  # a contract bug, caught by its tests


def _length(n: int, bounds: Any, where: str) -> None:
    if n > bounds.get("max_length", n) or n < bounds.get("min_length", 0):
        raise ProtocolError(f"{where}: length {n} outside {bounds.get('min_length', 0)}.."
                            f"{bounds.get('max_length', 'any')}")


def _match(pattern: str, value: str) -> bool:
    return re.fullmatch(pattern, value) is not None


def bounds(cls: type, name: str) -> dict[str, Any]:
    """The bounds of one field (``ge``, ``le``, ``max_length``, ...), for checks made elsewhere
    (the gate's own file, the hub's forms) that must agree with the wire."""
    return dict(next(f for f in dataclasses.fields(cls) if f.name == name).metadata)
