"""Request and response bodies. Strict bounds on every field: a malformed or hostile body is a
422 with a reason, never a 500 and never an unbounded allocation."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, create_model

from passgate import wire

from .retention import RETENTION_DAYS, WINDOW_HOURS

Name = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")]
PassIdHex = Annotated[str, StringConstraints(pattern=wire.HEX_ID)]
Finite = Annotated[float, Field(allow_inf_nan=False)]
# Text in a request holds no NUL: PostgreSQL's text cannot store one (a 500 deep in the insert,
# where SQLite would store it). Fields with a pattern of their own exclude it already.
NO_NUL = r"^[^\x00]*$"
# The most one request may carry (``passgate-hub --url`` splits larger work into requests of these).
MAX_ISSUE, MAX_DENY_IDS, MAX_RECORD = 10_000, 100_000, 10_000


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- gate API: derived from the contract ------------------------------------------------


def _annotation(hint: Any, bounds: dict[str, Any], request: bool) -> Any:
    """A wire field's type with its bounds as Pydantic constraints (nested messages derived too)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return _annotation(inner[0], bounds, request) | None
    constraints = {k: v for k, v in bounds.items() if k != "item"}
    if origin is list:
        item = _annotation(args[0], bounds.get("item", {}), request)
        return Annotated[list[item], Field(**constraints)]  # type: ignore[valid-type]
    if origin is dict:
        key = Annotated[str, StringConstraints(max_length=64)]
        return Annotated[dict[key, _annotation(args[1], bounds.get("item", {}), request)],  # type: ignore[misc]
                         Field(**constraints)]
    if dataclasses.is_dataclass(hint):
        return derive(hint, request=request)  # type: ignore[arg-type]
    if hint is str:
        if request and "pattern" not in constraints:
            constraints["pattern"] = NO_NUL
        return Annotated[str, StringConstraints(**constraints)]
    if hint in (int, float):
        return Annotated[hint, Field(allow_inf_nan=False, strict=True, **constraints)]  # no bools
    return hint


_DERIVED: dict[tuple[type, bool], type[BaseModel]] = {}


def derive(message: type, *, request: bool = False) -> type[BaseModel]:
    """The Pydantic model of a ``passgate.wire`` message: same fields, same bounds. Request
    models forbid unknown fields (a hostile body is a 422); responses are built from the wire
    dataclasses themselves (``wire.dump``)."""
    key = (message, request)
    if key not in _DERIVED:
        hints = typing.get_type_hints(message)
        fields: dict[str, Any] = {}
        for f in dataclasses.fields(message):
            annotation = _annotation(hints[f.name], dict(f.metadata), request)
            if f.default is not dataclasses.MISSING:
                fields[f.name] = (annotation, f.default)
            elif f.default_factory is not dataclasses.MISSING:
                fields[f.name] = (annotation, Field(default_factory=f.default_factory))
            else:
                fields[f.name] = (annotation, ...)
        config = ConfigDict(extra="forbid") if request else ConfigDict()
        _DERIVED[key] = create_model(message.__name__, __config__=config, __doc__=message.__doc__,
                                     **fields)
    return _DERIVED[key]


# Named subclasses, so FastAPI's OpenAPI and mypy see classes (the base is built at import).
class EventBatch(derive(wire.EventBatch, request=True)):  # type: ignore[misc]
    """A batch of journal events, oldest first."""


class EnrollRequest(derive(wire.EnrollRequest, request=True)):  # type: ignore[misc]
    """The one-time code an operator was shown for the gate."""


class Enrolled(derive(wire.Enrolled)):  # type: ignore[misc]
    """The gate's id, venue and token (this once)."""


class Heartbeat(derive(wire.Heartbeat, request=True)):  # type: ignore[misc]
    """The gate's health and wall clock."""


class EventAck(derive(wire.EventAck)):  # type: ignore[misc]
    """What the hub holds of a batch, and what it refused for good."""


class HeartbeatAck(derive(wire.HeartbeatAck)):  # type: ignore[misc]
    """The hub's clock, for the gate's offset."""


class Bundle(derive(wire.Bundle)):  # type: ignore[misc]
    """Keys, deny-list updates and settings for one gate."""


class Redemptions(derive(wire.RedemptionPage)):  # type: ignore[misc]
    """Redemptions at the venue's other gates, after a cursor."""


class SyncRequest(derive(wire.SyncRequest, request=True)):  # type: ignore[misc]
    """A gate's round: its heartbeat, the lists it holds, its bundle ETag and redemption cursor."""


class SyncAnswer(derive(wire.SyncAnswer)):  # type: ignore[misc]
    """The hub's clock, the bundle if it changed, and the first page of redemptions."""


M = TypeVar("M", bound=BaseModel)
PARSED_BY_ROUTE: list[type[BaseModel]] = []  # bodies a route parses itself (``app.Hub.openapi``)


def parsed_by_route(model: type[BaseModel]) -> dict[str, Any]:
    """The ``openapi_extra`` of a route that reads its body with ``parse_body``: the body is
    ``model``, whose schema the app's OpenAPI then carries."""
    PARSED_BY_ROUTE.append(model)
    return {"requestBody": {"required": True, "content": {"application/json": {
        "schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}}}


def parse_body(model: type[M], body: bytes) -> M:
    """A request body a route reads itself, as the model: JSON parsed and validated in one pass.
    Refused as FastAPI refuses a declared body (``RequestValidationError``: a 422 naming where)."""
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        from fastapi.exceptions import RequestValidationError  # (not at import: the CLI needs no FastAPI)

        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])}
                                      for e in exc.errors(include_url=False, include_input=False)]) from None



# --- admin API -----------------------------------------------------------------------------


class VenueIn(Strict):
    """``offline``: an offline-issuer venue, whose deny-list public key is ``denylist_public_pem``
    (the hub then holds no private key of it)."""

    name: Name
    offline: bool = False
    denylist_public_pem: Annotated[str, StringConstraints(max_length=4096)] | None = None


class VenueOut(BaseModel):
    name: str
    zones: list[str]
    denylist_kid: str
    offline: bool = False
    retention_days: int  # events and alerts are kept this long (README "Privacy")
    window_hours: int  # pass ids are kept this long, unless a still-valid pass needs them
    timezone: str = "UTC"  # the console's times and days for this venue


class VenuePatch(Strict):
    """How long the hub keeps the venue's data (``null`` or absent: unchanged); bounds as
    ``passgate_hub.retention`` says."""

    retention_days: Annotated[int, Field(strict=True, ge=RETENTION_DAYS[0],
                                         le=RETENTION_DAYS[1])] | None = None
    window_hours: Annotated[int, Field(strict=True, ge=WINDOW_HOURS[0], le=WINDOW_HOURS[1])] | None = None
    timezone: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None


class ZoneIn(Strict):
    name: Name


# The settings the hub manages for a gate (``wire.GateSettings`` without zones), checked by
# ``ops.gate_settings`` so the CLI and the API refuse the same values with the same words.
Settings = Annotated[dict[Annotated[str, StringConstraints(max_length=64)], Any], Field(max_length=64)]


class GateIn(Strict):
    gate_id: Name
    zone: Name | None = None
    settings: Settings = {}


class GatePatch(Strict):
    """A gate's new zone and settings; a setting set to ``null`` is unset."""

    zone: Name | None = None
    settings: Settings = {}


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
    settings: dict[str, Any]
    protocol: int | None = None  # named in its last heartbeat
    state: str | None = None  # the gate's state at its last heartbeat
    disabled_at: float | None = None  # its token is refused (403) until it is enabled again
    has_token: bool = True  # false once its token is revoked (until a rotation gives a new one)
    token_changed_at: float | None = None  # the token last rotated or revoked


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
    revoked_at: float | None

    @classmethod
    def of(cls, row: Any) -> KeyOut:
        """A key as the API and the CLI show it (an ``IssuerKey`` row; never its private half)."""
        return cls(kid=row.kid, purpose=row.purpose, issuer=row.issuer,
                   has_private=row.has_private, retired_at=row.retired_at,
                   revoked_at=row.revoked_at)


class KeyRetireIn(Strict):
    """``at``: passes issued from then on are refused (default: now)."""

    at: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None


class KeyRotateIn(Strict):
    alg: Literal["ed25519", "es256"] = "ed25519"


class KeyRotated(BaseModel):
    new: KeyOut
    retired: list[str]  # the kids of the hub-held pass keys retired by the rotation


class IssueIn(Strict):
    count: Annotated[int, Field(ge=1, le=MAX_ISSUE)]
    valid_from: Finite
    valid_until: Finite
    zones: Annotated[list[Name], Field(max_length=32)] = []
    entries: Annotated[int, Field(ge=1, le=wire.MAX_ENTRIES)] | None = None
    product: Annotated[str, StringConstraints(max_length=64)] | None = None
    reentry: bool = False
    record: bool = True  # keep a record of the issued passes on the hub
    # each pass gets a one-time claim code instead of a text: signed when a wallet claims it, with
    # the holder's key inside (``claims``); needs the record
    holder_bound: bool = False
    holder_step: Annotated[int, Field(strict=True, ge=5, le=300)] = 15  # a presentation's seconds


class IssuedPassOut(BaseModel):
    """An unbound pass: its ``text``. A holder-bound one: its one-time ``claim_code`` (shown once;
    the hub keeps only its hash) and ``claim_url``, the wallet link that claims it."""

    pass_id: str
    text: str | None = None
    claim_code: str | None = None
    claim_url: str | None = None


class Issued(BaseModel):
    kid: str
    passes: list[IssuedPassOut]


class ClaimReset(BaseModel):
    pass_id: str
    claim_code: str  # shown once; the old code is void
    claim_url: str
    note: str  # the device that claimed it before keeps a valid pass: revoke it if that phone was stolen


# --- the wallet ---------------------------------------------------------------------------------


class Jwk(BaseModel):
    """A P-256 public key as WebCrypto exports it (JWK); only these members are read, and a
    private ``d`` is refused."""

    model_config = ConfigDict(extra="allow")
    kty: Annotated[str, StringConstraints(max_length=8)]
    crv: Annotated[str, StringConstraints(max_length=16)]
    x: Annotated[str, StringConstraints(max_length=64)]
    y: Annotated[str, StringConstraints(max_length=64)]


class ClaimIn(BaseModel):
    """A claim code (as in the claim link) and the wallet's public key."""

    code: Annotated[str, StringConstraints(max_length=64)]
    public_key: Jwk


class ClaimOut(BaseModel):
    """The pass, bound to the key sent (``PG1:...``), and what the wallet shows of it."""

    model_config = ConfigDict(populate_by_name=True)
    pass_: str = Field(alias="pass")
    pass_id: str
    step: int  # seconds each presentation code lasts
    venue: str
    valid_from: int
    valid_until: int


class ClaimError(BaseModel):
    """A refused claim: ``code`` is claim_unknown (404), claim_taken (409), claim_revoked or
    claim_expired (410), claim_bad_key or claim_bad_request (422), claim_rate_limited (429),
    claim_cannot_sign (503)."""

    detail: str
    code: str


class DenyIn(Strict):
    """``external``: the passes were issued elsewhere (another issuer's key), so the hub holds no
    record of them; otherwise every id must be a pass the hub issued for the venue."""

    pass_ids: Annotated[list[PassIdHex], Field(min_length=1, max_length=MAX_DENY_IDS)]
    reason: Annotated[str, StringConstraints(max_length=200)] | None = None
    external: bool = False


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
    entries: int | None = None
    received_at: float  # the hub's clock
    hub_t: float  # ``t`` corrected by the gate's clock offset, never after ``received_at``


class ZoneCount(BaseModel):
    zone: str
    entries: int
    exits: int
    inside: int


class AlertRedemption(BaseModel):
    gate_id: str
    t: float  # hub time
    event_id: str


class AlertOut(BaseModel):
    """A double redemption: the excess redemption (``event_id``) and those before it."""

    id: int
    kind: str
    venue: str
    pass_id: str | None
    event_id: str
    entries: int | None
    redemptions: list[AlertRedemption]
    gates: list[str]
    apart_s: float | None
    created_at: float


# --- operators: API keys, gate tokens, the audit log ----------------------------------------


class ApiKeyIn(Strict):
    """A key with ``role`` on each of ``venues``, or on every venue (``all_venues``)."""

    name: Name
    role: Literal["viewer", "operator", "admin"]
    venues: Annotated[list[Name], Field(max_length=256)] = []
    all_venues: bool = False


class ApiKeyGrant(BaseModel):
    venue: str | None  # None: every venue, also those created later
    role: str


class ApiKeyOut(BaseModel):
    """A key as listed: never its secret, nor its hash."""

    name: str
    grants: list[ApiKeyGrant]
    created_at: float
    last_used_at: float | None  # to the minute
    rotated_at: float | None
    revoked_at: float | None


class ApiKeySecret(BaseModel):
    name: str
    key: str  # shown once; the hub keeps only its hash


class GateToken(BaseModel):
    gate_id: str
    venue: str
    token: str  # shown once; the hub keeps only its hash


class EnrollmentCode(BaseModel):
    gate_id: str
    venue: str
    code: str  # shown once; the hub keeps only its hash
    expires_at: float


class OperatorIn(Strict):
    """A console operator with ``role`` on each of ``venues`` or every venue; ``password``
    absent: the hub chooses one and answers it once."""

    name: Name
    role: Literal["viewer", "operator", "admin"]
    venues: Annotated[list[Name], Field(max_length=256)] = []
    all_venues: bool = False
    password: Annotated[str, StringConstraints(max_length=1024, pattern=NO_NUL)] | None = None


class OperatorCreated(BaseModel):
    name: str
    totp_uri: str  # for the authenticator app; shown once
    password: str | None = None  # when the hub chose it; shown once


class OperatorOut(BaseModel):
    """An operator as listed: never a password hash or a second factor."""

    name: str
    grants: list[ApiKeyGrant]
    created_at: float
    last_login_at: float | None
    locked_until: float | None
    disabled_at: float | None


class PurgeIn(Strict):
    """Purge now what retention says is due: of ``venue`` (an admin of it), or of every venue and
    the hub-wide rows (a hub-wide admin); ``dry_run`` counts and removes nothing."""

    venue: Name | None = None
    dry_run: bool = False


class PurgeOut(BaseModel):
    dry_run: bool
    venues: dict[str, dict[str, int]]
    hub_wide: dict[str, int] | None = None


class AuditOut(BaseModel):
    id: int
    at: float
    actor: str  # "apikey:NAME" or "cli:USER"
    source: str | None  # the client's address, or the host the CLI ran on
    action: str
    venue: str | None  # None: a hub-wide change
    target: str | None
    detail: dict[str, Any]


# --- offline issuing -----------------------------------------------------------------------

PassText = Annotated[str, StringConstraints(min_length=1, max_length=4096, pattern=NO_NUL)]


class PassesIn(Strict):
    """Pass texts (``PG1:...``) signed outside the hub, to record after checking their signature."""

    passes: Annotated[list[PassText], Field(min_length=1, max_length=MAX_RECORD)]


class PassesRecorded(BaseModel):
    recorded: int
    already: int  # recorded for the venue before


class PendingListOut(BaseModel):
    """The unsigned next version of an offline venue's list (``passgate.pending``), to sign with
    ``passgate denylist sign``: hex pass ids."""

    format: str
    kind: str
    scope: str
    base: int
    version: int
    ids: list[str]
    adds: list[str]
    removes: list[str]


class SignedListOut(BaseModel):
    kind: str
    file: str  # "snapshot" or "delta"
    version: int
