"""The hub's tables (SQLAlchemy 2 declarative), the same on SQLite and PostgreSQL.

Pass ids are stored as 32 hex characters, tokens and API keys only as SHA-256 hex. ``Event.seq``
is the hub's own sequence (admin paging); ``Event.pos`` the commit-safe key of the cursor gates use
to pull other gates' redemptions. What each table holds and for how long is README's "Privacy"
section (``retention`` enforces it; tests/test_privacy_claims.py checks the two agree).
"""

from __future__ import annotations

import zlib
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Double,
    FetchedValue,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    event,
    inspect,
    text,
    update,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from passgate import wire

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit identity.
BigId = BigInteger().with_variant(Integer(), "sqlite")
REDEMPTION_KINDS = tuple(str(kind) for kind in wire.REDEMPTION_KINDS)
_IS_REDEMPTION = text(f"kind IN ({', '.join(repr(kind) for kind in REDEMPTION_KINDS)})")
_HAS_PASS = text("pass_id IS NOT NULL")
# PostgreSQL's ``Event.pos`` is the inserting transaction's id plus this, so it stays above every
# ``seq`` a gate may hold as its cursor from before positions existed (a seq never reaches 2^40).
POS_OFFSET = 2**40
# A venue's retention unless the operator sets one (README "Privacy"; ``retention`` purges).
DEFAULT_RETENTION_DAYS = 30
DEFAULT_WINDOW_HOURS = 48


class Base(DeclarativeBase):
    pass


class Venue(Base):
    __tablename__ = "venues"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    keys_rev: Mapped[int] = mapped_column(Integer, default=0)  # bumped on key changes (ETag input)
    # bumped when a gate of the venue changes what lets it sync (``bump_gates_rev``; ``rounds``)
    gates_rev: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    created_at: Mapped[float] = mapped_column(Double)
    # offline issuer: the hub holds only public keys; passes and lists are signed elsewhere
    offline: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    # how long the hub keeps the venue's events and alerts, and their pass ids (see ``retention``)
    retention_days: Mapped[int] = mapped_column(Integer, server_default=text(str(DEFAULT_RETENTION_DAYS)))
    window_hours: Mapped[int] = mapped_column(Integer, server_default=text(str(DEFAULT_WINDOW_HOURS)))
    # the IANA time zone the console shows the venue's times in, and whose midnight starts its day
    timezone: Mapped[str] = mapped_column(String(64), server_default=text("'UTC'"))


class Zone(Base):
    __tablename__ = "zones"
    __table_args__ = (UniqueConstraint("venue_id", "name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    venue_id: Mapped[int] = mapped_column(ForeignKey("venues.id"))
    name: Mapped[str] = mapped_column(String(64))


class Gate(Base):
    __tablename__ = "gates"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    gate_id: Mapped[str] = mapped_column(String(64), unique=True)
    venue_id: Mapped[int] = mapped_column(ForeignKey("venues.id"))
    zone_id: Mapped[int | None] = mapped_column(ForeignKey("zones.id"))
    token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)  # None: token revoked
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[float] = mapped_column(Double)
    last_seen: Mapped[float | None] = mapped_column(Double)
    health: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # the last heartbeat, as sent
    # gate clock minus hub clock at the last heartbeat (its t minus the hub's receive time)
    clock_offset_s: Mapped[float | None] = mapped_column(Double)
    protocol: Mapped[int | None] = mapped_column(Integer)  # named in its last heartbeat's header
    token_changed_at: Mapped[float | None] = mapped_column(Double)  # last rotated or revoked
    disabled_at: Mapped[float | None] = mapped_column(Double)  # its token is refused (403)
    # A deleted gate is kept as a tombstone (its token void, gone from lists): its events keep
    # its id and zone, so counts and alerts stay right, and the id is not given out again.
    deleted_at: Mapped[float | None] = mapped_column(Double)
    # a one-time enrollment code (its hash) an operator hands the gate instead of its token
    enroll_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    enroll_expires_at: Mapped[float | None] = mapped_column(Double)


# What a worker keeps of a gate between its sync rounds (``auth.GateCard``): a change to any of these
# bumps the venue's ``gates_rev``, so every worker reads the gate again within a second.
GATE_SYNC_FIELDS = ("gate_id", "venue_id", "zone_id", "token_hash", "config", "disabled_at", "deleted_at")


@event.listens_for(Session, "before_flush")
def bump_gates_rev(session: Session, _context: Any, _instances: Any) -> None:
    """Any session's flush (the API, the console, the CLI) that changes a gate's sync fields bumps
    its venue's ``gates_rev`` (both venues', for a gate moved), in the same transaction."""
    venues = set()
    for row in (*session.new, *session.dirty, *session.deleted):
        if isinstance(row, Gate):
            state = inspect(row)
            if row in session.new or row in session.deleted or any(
                    state.attrs[name].history.has_changes() for name in GATE_SYNC_FIELDS):
                venues.add(row.venue_id)
                venues.update(v for v in state.attrs.venue_id.history.deleted if v is not None)
    for venue_id in venues - {None}:
        session.execute(update(Venue).where(Venue.id == venue_id).values(gates_rev=Venue.gates_rev + 1))


class Principal(Base):
    """Whoever acts with a credential of their own: an admin API key (``kind`` "api_key"), later
    an operator account. Grants hang off the principal, whatever its credential."""

    __tablename__ = "principals"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[float] = mapped_column(Double)


class Grant(Base):
    """A role (``scope.Role``) on one venue, or on every venue (``venue_id`` None: hub-wide)."""

    __tablename__ = "grants"
    __table_args__ = (UniqueConstraint("principal_id", "venue_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    principal_id: Mapped[int] = mapped_column(ForeignKey("principals.id", ondelete="CASCADE"), index=True)
    venue_id: Mapped[int | None] = mapped_column(ForeignKey("venues.id"))
    role: Mapped[str] = mapped_column(String(16))


class ApiKey(Base):
    __tablename__ = "api_keys"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[float] = mapped_column(Double)
    principal_id: Mapped[int] = mapped_column(ForeignKey("principals.id"), unique=True)
    last_used_at: Mapped[float | None] = mapped_column(Double)  # to the minute (see ``auth``)
    rotated_at: Mapped[float | None] = mapped_column(Double)
    revoked_at: Mapped[float | None] = mapped_column(Double)  # refused from then on (401)


class Operator(Base):
    """A person who signs in to the console: a principal (grants as an API key has them), an
    argon2 password hash, a TOTP secret sealed like the private keys (``sealing``), and what the
    lock-out counts. ``totp_step`` is the last time step used: a code works once."""

    __tablename__ = "operators"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    principal_id: Mapped[int] = mapped_column(ForeignKey("principals.id"), unique=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    totp_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    totp_step: Mapped[int | None] = mapped_column(BigInteger)
    failures: Mapped[int] = mapped_column(Integer, default=0)  # in a row, since the last sign-in or lock
    locked_until: Mapped[float | None] = mapped_column(Double)
    created_at: Mapped[float] = mapped_column(Double)
    last_login_at: Mapped[float | None] = mapped_column(Double)
    disabled_at: Mapped[float | None] = mapped_column(Double)


class ConsoleSession(Base):
    """A signed-in browser: the cookie's token, only as SHA-256."""

    __tablename__ = "console_sessions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    operator_id: Mapped[int] = mapped_column(ForeignKey("operators.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[float] = mapped_column(Double)
    last_seen_at: Mapped[float] = mapped_column(Double)
    expires_at: Mapped[float] = mapped_column(Double, index=True)


class AuditEntry(Base):
    """One change by an operator: who (``actor``: "apikey:NAME", "cli:USER"), what (``action``,
    ``target``, ``detail``: never a secret), when, from where (the client's address, or the host
    the CLI ran on). ``venue_id`` None: a hub-wide change, shown only to hub-wide admins."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("audit_log_venue", "venue_id", "id"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    at: Mapped[float] = mapped_column(Double)
    actor: Mapped[str] = mapped_column(String(128))
    source: Mapped[str | None] = mapped_column(String(256))
    action: Mapped[str] = mapped_column(String(64))
    venue_id: Mapped[int | None] = mapped_column(ForeignKey("venues.id"))
    target: Mapped[str | None] = mapped_column(String(256))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class IssuerKey(Base):
    """A public key gates of the venue trust; ``private_sealed`` only when the hub signs with it:
    the private key sealed with the hub's sealing key (``sealing``), never in plain text."""

    __tablename__ = "issuer_keys"
    __table_args__ = (UniqueConstraint("venue_id", "kid"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    venue_id: Mapped[int] = mapped_column(ForeignKey("venues.id"))
    kid: Mapped[str] = mapped_column(String(16))
    purpose: Mapped[str] = mapped_column(String(16))  # "passes" or "denylist"
    issuer: Mapped[str | None] = mapped_column(String(128))
    public_pem: Mapped[str] = mapped_column(Text)
    private_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    retired_at: Mapped[float | None] = mapped_column(Double)  # no new passes; older ones stay valid
    revoked_at: Mapped[float | None] = mapped_column(Double)  # leaked: every pass under it refused
    created_at: Mapped[float] = mapped_column(Double)

    @property
    def has_private(self) -> bool:
        return self.private_sealed is not None


class IssuedPass(Base):
    """The optional record of a pass the hub issued (no personal data, as in the pass)."""

    __tablename__ = "passes"
    __table_args__ = (Index("passes_venue_valid_until", "venue_id", "valid_until"),)
    pass_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    venue_id: Mapped[int] = mapped_column(ForeignKey("venues.id"))
    kid: Mapped[str] = mapped_column(String(16))
    product: Mapped[str | None] = mapped_column(String(64))
    zones: Mapped[list[str]] = mapped_column(JSON, default=list)
    entries: Mapped[int | None] = mapped_column(Integer)
    valid_from: Mapped[float] = mapped_column(Double)
    valid_until: Mapped[float] = mapped_column(Double)
    issued_at: Mapped[float] = mapped_column(Double)


class PassClaim(Base):
    """A holder-bound pass's claim (``claims``): the SHA-256 of its one-time claim code, what its
    signature at claim time needs beyond the pass record, and once claimed, when and the holder
    key's RFC 7638 thumbprint (no personal data). Deleted with the pass record."""

    __tablename__ = "pass_claims"
    pass_id: Mapped[str] = mapped_column(String(32), ForeignKey("passes.pass_id", ondelete="CASCADE"),
                                         primary_key=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    code_made_at: Mapped[float] = mapped_column(Double)  # at issue, or at the last reset
    reentry: Mapped[bool] = mapped_column(Boolean)
    holder_step: Mapped[int] = mapped_column(Integer)  # the presentation's time step, seconds
    claimed_at: Mapped[float | None] = mapped_column(Double)  # None: the current code is unclaimed
    holder_thumbprint: Mapped[str | None] = mapped_column(String(64))
    claims: Mapped[int] = mapped_column(Integer, default=0)  # devices it was claimed by (resets allow more)


class DenyList(Base):
    """The current version of one venue's revoked or blocked list."""

    __tablename__ = "deny_lists"
    venue_id: Mapped[int] = mapped_column(ForeignKey("venues.id"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8), primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger, default=0)  # epoch << 32 | change
    issued_at: Mapped[int] = mapped_column(BigInteger, default=0)


class DenyEntry(Base):
    """One pass on a list from ``version_added`` until ``version_removed`` (unblocked), if ever."""

    __tablename__ = "deny_entries"
    __table_args__ = (Index("deny_entries_pass", "venue_id", "kind", "pass_id"),
                      # the changes between two versions (a compacted delta), from either end
                      Index("deny_entries_added", "venue_id", "kind", "version_added"),
                      Index("deny_entries_removed", "venue_id", "kind", "version_removed"))
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    venue_id: Mapped[int] = mapped_column(ForeignKey("venues.id"))
    kind: Mapped[str] = mapped_column(String(8))
    pass_id: Mapped[str] = mapped_column(String(32))
    version_added: Mapped[int] = mapped_column(BigInteger)
    version_removed: Mapped[int | None] = mapped_column(BigInteger)
    reason: Mapped[str | None] = mapped_column(String(200))


class DenyDelta(Base):
    """The signed delta file from ``base`` to ``base + 1``, built once when the list changed."""

    __tablename__ = "deny_deltas"
    venue_id: Mapped[int] = mapped_column(ForeignKey("venues.id"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8), primary_key=True)
    base: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class DenySnapshot(Base):
    """The newest signed snapshot of a list: for an offline-issuer venue, as uploaded (the hub
    cannot build one: it holds no signing key for it); for any other, the newest the hub built,
    which the next is built from (``denylists.SnapshotCache``). Which of the two a row is follows
    from ``Venue.offline``, set when the venue is created and never changed."""

    __tablename__ = "deny_snapshots"
    venue_id: Mapped[int] = mapped_column(ForeignKey("venues.id"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8), primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class Event(Base):
    """A gate's journal row as the hub holds it: the gate's claimed ``t``, when the hub received
    it, and ``hub_t``: ``t`` corrected by the gate's measured clock offset, never later than
    ``received_at`` (the time other gates are given). ``pos``: one value per ingest transaction,
    in an order a reader can page without ever skipping a late commit (see ``api.gates``)."""

    __tablename__ = "events"
    __table_args__ = (
        Index("events_gate_seq", "gate_id", "seq"),  # a gate's events in hub order (the console's pages)
        Index("events_venue_t", "venue_id", "t", "seq"),  # pages filtered by time, in time order
        Index("events_venue_redemption_pos", "venue_id", "pos", "seq",
              sqlite_where=_IS_REDEMPTION, postgresql_where=_IS_REDEMPTION),
        Index("events_pass", "pass_id", sqlite_where=_HAS_PASS, postgresql_where=_HAS_PASS),
        # the retention purge: oldest first, per venue (all rows; those still holding a pass id)
        Index("events_venue_received", "venue_id", "received_at"),
        Index("events_venue_received_pass", "venue_id", "received_at",
              sqlite_where=_HAS_PASS, postgresql_where=_HAS_PASS),
    )
    seq: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(64), unique=True)
    venue_id: Mapped[int] = mapped_column(Integer)
    gate_id: Mapped[str] = mapped_column(String(64))
    t: Mapped[float] = mapped_column(Double)
    kind: Mapped[str] = mapped_column(String(32))
    direction: Mapped[str | None] = mapped_column(String(8))
    pass_id: Mapped[str | None] = mapped_column(String(32))
    decision: Mapped[str | None] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(32))
    latency_ms: Mapped[float | None] = mapped_column(Double)
    detail: Mapped[str | None] = mapped_column(Text)
    entries: Mapped[int | None] = mapped_column(Integer)  # the admitted pass's entry limit, if sent
    received_at: Mapped[float] = mapped_column(Double)
    hub_t: Mapped[float] = mapped_column(Double)
    pos: Mapped[int] = mapped_column(BigInteger, server_default=FetchedValue())


class AlertKind(StrEnum):
    DOUBLE_REDEMPTION = "double_redemption"  # a pass redeemed (entry) more often than it allows


class Alert(Base):
    """Something the operator must hear about, raised by ingest: one row per finding (for a
    double redemption, per excess redemption: ``event_id``), so a re-sent batch raises nothing."""

    __tablename__ = "alerts"
    __table_args__ = (UniqueConstraint("kind", "event_id"), Index("alerts_venue", "venue_id", "id"))
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    venue_id: Mapped[int] = mapped_column(ForeignKey("venues.id"))
    kind: Mapped[str] = mapped_column(String(32))  # an ``AlertKind``
    pass_id: Mapped[str | None] = mapped_column(String(32))
    event_id: Mapped[str] = mapped_column(String(64))
    entries: Mapped[int | None] = mapped_column(Integer)  # what the pass allows
    redemptions: Mapped[list[dict[str, Any]]] = mapped_column(JSON)  # gate_id, t (hub), event_id
    apart_s: Mapped[float | None] = mapped_column(Double)  # from the one before, in hub time
    created_at: Mapped[float] = mapped_column(Double)


class PassageTotal(Base):
    """Every passage the hub has stored, per gate and direction: counted by ingest in the
    transaction that stores the events (``ingest``), so the live counts read a few rows a gate
    instead of the events, and they outlive the events the retention purge deletes."""

    __tablename__ = "passage_totals"
    venue_id: Mapped[int] = mapped_column(ForeignKey("venues.id"), primary_key=True)
    gate_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    direction: Mapped[str] = mapped_column(String(8), primary_key=True)
    passages: Mapped[int] = mapped_column(BigInteger)


# Rows of one venue's minute in ``EntryMinute``: a gate always adds to the same one (``shard_of``),
# so on PostgreSQL the gates of a venue uploading at once wait for each other's commit only
# within their shard, and a day's chart reads at most 1440 × ``ENTRY_SHARDS`` rows.
ENTRY_SHARDS = 8


def shard_of(gate_id: str) -> int:
    """The ``EntryMinute`` shard a gate's entries are added to (stable across processes, unlike
    ``hash``)."""
    return zlib.crc32(gate_id.encode()) % ENTRY_SHARDS


class EntryMinute(Base):
    """Entries (passages in, as ``PassageTotal`` counts them) per venue and minute of hub time
    (``Event.hub_t`` // 60), the live page's chart; counted by ingest with the events, deleted
    after the venue's retention."""

    __tablename__ = "entry_minutes"
    venue_id: Mapped[int] = mapped_column(ForeignKey("venues.id"), primary_key=True)
    minute: Mapped[int] = mapped_column(Integer, primary_key=True)  # minutes since 1970-01-01 (UTC)
    shard: Mapped[int] = mapped_column(Integer, primary_key=True)  # ``shard_of`` the gate
    entries: Mapped[int] = mapped_column(BigInteger)
