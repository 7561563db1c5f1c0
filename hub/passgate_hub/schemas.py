"""Request and response bodies. Strict bounds on every field: a malformed or hostile body is a
422 with a reason, never a 500 and never an unbounded allocation."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

MAX_BATCH = 1000
Name = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")]
PassIdHex = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")]
Finite = Annotated[float, Field(allow_inf_nan=False)]
Direction = Literal["entry", "exit"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- gate API ------------------------------------------------------------------------------


class EventIn(Strict):
    """One journal row, as the gate's journal holds it (``EVENT_FIELDS``)."""

    event_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    gate_id: Name
    t: Finite
    kind: Annotated[str, StringConstraints(min_length=1, max_length=32)]
    direction: Annotated[str, StringConstraints(max_length=8)] | None = None
    pass_id: Annotated[str, StringConstraints(max_length=32)] | None = None
    decision: Annotated[str, StringConstraints(max_length=16)] | None = None
    reason: Annotated[str, StringConstraints(max_length=32)] | None = None
    latency_ms: Finite | None = None
    detail: Annotated[str, StringConstraints(max_length=2000)] | None = None


class EventBatch(Strict):
    events: Annotated[list[EventIn], Field(max_length=MAX_BATCH)]


class EventAck(BaseModel):
    """``acked``: every id of the batch, new or already held; the gate marks them sent."""

    acked: list[str]
    stored: int
    duplicates: int


class TrustedKeyOut(BaseModel):
    kid: str
    pem: str
    issuer: str | None
    purpose: str
    retired_at: float | None


class ListUpdate(BaseModel):
    version: int
    issued_at: int
    updates: list[str]  # base64 of signed delta or snapshot files, to apply in order


class Bundle(BaseModel):
    gate_id: str
    venue: str
    zone: str | None
    scope: str
    keys: list[TrustedKeyOut]
    denylists: dict[str, ListUpdate]
    config: dict[str, Any]


class RedemptionOut(BaseModel):
    redemption_id: str
    pass_id: str
    gate_id: str
    direction: str
    t: float
    valid_until: float | None


class Redemptions(BaseModel):
    redemptions: list[RedemptionOut]
    cursor: int  # pass it back as ``after``


class ListHealth(Strict):
    version: Annotated[int, Field(ge=0)]
    age_s: Finite | None = None


class Heartbeat(Strict):
    """The gate's health and wall clock; the hub answers with its own time."""

    t: Finite
    version: Annotated[str, StringConstraints(max_length=64)] | None = None
    backlog: Annotated[int, Field(ge=0)] = 0
    lists: Annotated[dict[Annotated[str, StringConstraints(max_length=16)], ListHealth],
                     Field(max_length=8)] = {}
    health: Annotated[dict[Annotated[str, StringConstraints(max_length=64)], Any],
                      Field(max_length=64)] = {}


class HeartbeatAck(BaseModel):
    server_time: float


# --- admin API -----------------------------------------------------------------------------


class VenueIn(Strict):
    name: Name


class VenueOut(BaseModel):
    name: str
    zones: list[str]
    denylist_kid: str


class ZoneIn(Strict):
    name: Name


class GateIn(Strict):
    gate_id: Name
    zone: Name | None = None
    config: Annotated[dict[Annotated[str, StringConstraints(max_length=64)], Any],
                      Field(max_length=64)] = {}


class GateCreated(BaseModel):
    gate_id: str
    venue: str
    token: str  # shown once; the hub keeps only its hash


class GateOut(BaseModel):
    gate_id: str
    venue: str
    zone: str | None
    last_seen: float | None
    backlog: int | None
    version: str | None
    lists: dict[str, Any]
    clock_skew_s: float | None


class KeyIn(Strict):
    """Either a public key PEM (passes issued elsewhere) or ``generate`` (hub-side issuing)."""

    public_pem: Annotated[str, StringConstraints(max_length=4096)] | None = None
    generate: bool = False
    alg: Literal["ed25519", "es256"] = "ed25519"
    issuer: Annotated[str, StringConstraints(max_length=128)] | None = None


class KeyOut(BaseModel):
    kid: str
    purpose: str
    issuer: str | None
    has_private: bool
    retired_at: float | None


class IssueIn(Strict):
    count: Annotated[int, Field(ge=1, le=10000)]
    valid_from: Finite
    valid_until: Finite
    zones: Annotated[list[Name], Field(max_length=32)] = []
    entries: Annotated[int, Field(ge=1)] | None = None
    product: Annotated[str, StringConstraints(max_length=64)] | None = None
    reentry: bool = False
    record: bool = True  # keep a record of the issued passes on the hub


class IssuedPassOut(BaseModel):
    pass_id: str
    text: str


class Issued(BaseModel):
    kid: str
    passes: list[IssuedPassOut]


class DenyIn(Strict):
    pass_ids: Annotated[list[PassIdHex], Field(min_length=1, max_length=100000)]
    reason: Annotated[str, StringConstraints(max_length=200)] | None = None


class DenyOut(BaseModel):
    kind: str
    version: int
    changed: int


class EventOut(BaseModel):
    seq: int
    event_id: str
    gate_id: str
    t: float
    kind: str
    direction: str | None
    pass_id: str | None
    decision: str | None
    reason: str | None
    latency_ms: float | None
    detail: str | None


class ZoneCount(BaseModel):
    zone: str
    entries: int
    exits: int
    inside: int
