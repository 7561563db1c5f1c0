"""A quiet gate's sync round answered from what this worker knows: no query, no commit.

At 10,000 gates polling every 10 s, one replica answers 1,000 rounds a second. Almost all of them are
quiet: the gate holds the bundle, no redemption was made at the venue since its cursor, and its
heartbeat says what the last one said. Read from the database, each such round cost about 6 ms of the
hub's CPU (the token's gate, the newest redemption, the heartbeat's update and commit, and a hop to a
worker thread for them). This worker keeps instead, each for ``TTL_S`` or until its own sessions
change it (``forget``):

- each token's gate, as the round needs it (``auth.GateCard``), while its venue's ``gates_rev`` is the
  one it was read with: every change to a gate's token, zone, settings or state through the hub's code
  (API, console, CLI) bumps it (``models.bump_gates_rev``), and the venue's is read again every
  ``TTL_S``, so a disabled, deleted or re-tokened gate is refused by every worker within a second
  while a gate that polls every 10 s is still known at its next round;
- each venue's newest redemption position (``Horizons``): a gate whose cursor is there gets an empty
  page; a redemption uploaded through another worker reaches it at most ``TTL_S`` later;

and writes heartbeats in batches (``Beats``): one that changes what the hub shows of the gate (its
state, fault, scanners, lists, backlog or version, or a clock offset moved by more than
``OFFSET_MOVED_S``) is written at once; one that only says "still here" is written with the others
every ``FLUSH_S``, so a gate's ``last_seen`` is at most that late. A batch never overwrites a newer
heartbeat another worker wrote, nor what a token sent that was rotated, revoked or disabled since: such
a token's quiet rounds are answered (nothing changed, no redemption) for at most ``TTL_S`` by a worker
that knew it, and change nothing. The bundle's own "unchanged" comes from ``api.gates.VersionVectors``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

from sqlalchemy import Table, bindparam, func, select
from sqlalchemy.orm import Session

from passgate import wire

from .auth import ADMIN_PREFIX, GateCard, bearer, hash_secret
from .models import REDEMPTION_KINDS, Event, Gate

log = logging.getLogger(__name__)

TTL_S = 1.0  # as api.gates.VECTOR_TTL_S: how long a worker answers from what it last read
FLUSH_S = 1.0  # heartbeats that only say "still here" are written together this often
OFFSET_MOVED_S = 1.0  # a gate's clock offset that moved more than this is written at once
# A gate read is trusted while its venue's gates_rev is unchanged (every change through the hub's
# code bumps it); this only bounds how long an edit made beside it (SQL by hand) goes unseen.
CARD_TTL_S = 300.0
MAX_KEPT = 100_000  # gates (and venues) remembered; past it, everything is read again

_GATES: Table = Gate.__table__  # type: ignore[assignment]  # a mapped class's table is a Table
# A batch never takes a gate's row back to an older heartbeat (one another worker wrote since), and
# never writes what a token sent that was rotated, revoked or disabled since (on another worker).
_WRITE_BEAT = (_GATES.update()
               .where(_GATES.c.id == bindparam("b_id"), _GATES.c.token_hash == bindparam("b_token"),
                      _GATES.c.disabled_at.is_(None),
                      (_GATES.c.last_seen.is_(None)) | (_GATES.c.last_seen < bindparam("b_last_seen")))
               .values(last_seen=bindparam("b_last_seen"), clock_offset_s=bindparam("b_offset"),
                       protocol=bindparam("b_protocol"), health=bindparam("b_health")))
_NEWEST_REDEMPTION = select(func.max(Event.pos)).where(Event.venue_id == bindparam("venue_id"),
                                                       Event.kind.in_(REDEMPTION_KINDS))


class Known:
    """Gates by token digest and venues' newest redemption positions, each until its expiry."""

    def __init__(self) -> None:
        self._gates: dict[str, tuple[float, GateCard]] = {}
        self._newest: dict[int, tuple[float, int]] = {}

    def gate(self, digest: str, now: float) -> GateCard | None:
        kept = self._gates.get(digest)
        return kept[1] if kept is not None and kept[0] >= now else None

    def keep_gate(self, digest: str, card: GateCard, now: float) -> None:
        if len(self._gates) >= MAX_KEPT:
            self._gates.clear()
        self._gates[digest] = (now + CARD_TTL_S, card)

    def nothing_after(self, venue_id: int, after: int, now: float) -> bool:
        """Whether the venue's newest redemption is at ``after``, as last read."""
        kept = self._newest.get(venue_id)
        return kept is not None and kept[0] >= now and kept[1] == after

    def read_newest(self, db: Session, venue_id: int, now: float) -> None:
        if len(self._newest) >= MAX_KEPT:
            self._newest.clear()
        newest = db.connection().execute(_NEWEST_REDEMPTION, {"venue_id": venue_id}).scalar()
        self._newest[venue_id] = (now + TTL_S, newest or 0)

    def forget(self, venue_id: int | None = None) -> None:
        """Everything (a gate, key or list changed here), or one venue's redemptions (stored here)."""
        if venue_id is not None:
            self._newest.pop(venue_id, None)
            return
        self._gates.clear()
        self._newest.clear()


def _substance(beat: dict[str, Any], protocol: int) -> str:
    """What the hub shows of a gate from its heartbeat, without what changes every round: the
    times (a list's age is kept as the moment it was vouched for, to the second)."""
    lists = {kind: (held["version"], None if held["age_s"] is None else round(beat["t"] - held["age_s"]))
             for kind, held in beat["lists"].items()}
    rest = {key: value for key, value in beat.items() if key not in ("t", "lists")}
    return json.dumps([protocol, lists, rest], sort_keys=True, default=str)


class Beats:
    """Heartbeats: written at once when they change something, else in batches (see the module)."""

    def __init__(self) -> None:
        self._pending: dict[int, dict[str, Any]] = {}
        self._written: dict[int, tuple[str, float]] = {}  # gate id -> (substance, clock offset)
        self._lock = threading.Lock()

    @staticmethod
    def row(card: GateCard, beat: dict[str, Any], protocol: int, now: float) -> dict[str, Any]:
        return {"b_id": card.id, "b_token": card.token_hash, "b_last_seen": now, "b_offset": beat["t"] - now,
                "b_protocol": protocol, "b_health": {**beat, "received": now}}

    def batched(self, card: GateCard, beat: dict[str, Any], protocol: int, now: float) -> bool:
        """Join the batch if this heartbeat changes nothing this worker last wrote of the gate;
        False (and nothing done) when it must be written at once (``take``)."""
        row = self.row(card, beat, protocol, now)
        substance = _substance(beat, protocol)
        with self._lock:
            if not self._unchanged(card.id, substance, row["b_offset"]):
                return False
            self._pending[card.id] = row
        return True

    def take(self, card: GateCard, beat: dict[str, Any], protocol: int, now: float) -> dict[str, Any] | None:
        """The row to write now, or None when the heartbeat joined the batch."""
        row = self.row(card, beat, protocol, now)
        substance = _substance(beat, protocol)
        with self._lock:
            if self._unchanged(card.id, substance, row["b_offset"]):
                self._pending[card.id] = row
                return None
            if len(self._written) >= MAX_KEPT:
                self._written.clear()
            self._written[card.id] = (substance, row["b_offset"])
            self._pending.pop(card.id, None)  # older than this one
        return row

    def _unchanged(self, gate: int, substance: str, offset: float) -> bool:
        written = self._written.get(gate)
        return written is not None and written[0] == substance and abs(written[1] - offset) <= OFFSET_MOVED_S

    @staticmethod
    def write(db: Session, rows: list[dict[str, Any]]) -> None:
        if rows:
            db.connection().execute(_WRITE_BEAT, rows)

    def flush(self, sessions: Callable[[], Session]) -> int:
        """Write the batch; returns how many heartbeats. On an error they are dropped (each says
        only "still here", and the gate's next one says it again)."""
        with self._lock:
            rows, self._pending = list(self._pending.values()), {}
        if rows:
            with sessions() as db:
                self.write(db, rows)
                db.commit()
        return len(rows)

    @contextlib.asynccontextmanager
    async def flushing(self, sessions: Callable[[], Session]) -> AsyncIterator[None]:
        """While the app serves: the batch written every ``FLUSH_S``, and once more at the end."""
        async def run() -> None:
            while True:
                await asyncio.sleep(FLUSH_S)
                try:
                    await asyncio.to_thread(self.flush, sessions)
                except Exception:  # the database away: the next batch tries again
                    log.exception("heartbeats not written")

        task = asyncio.create_task(run())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            try:
                await asyncio.to_thread(self.flush, sessions)
            except Exception:
                log.exception("the last heartbeats not written")


def quiet_gate(request: Any, gate_id: str, known: Known, gates_rev: Callable[[int, float], int | None],
               now: float) -> GateCard | None:
    """The token's gate when this worker knows it, it may sync, and its venue's ``gates_rev`` (as
    read within ``TTL_S``) is still the one it was read with; None: the full path decides (and
    refuses what must be refused, with its reason)."""
    secret = bearer(request)
    if secret.startswith(ADMIN_PREFIX):
        return None
    card = known.gate(hash_secret(secret), now)
    if (card is None or card.gate_id != gate_id or card.disabled_at is not None
            or gates_rev(card.venue_id, now) != card.gates_rev):
        return None
    return card


def quiet_answer(now: float, etag: str, after: int) -> bytes:
    """The answer to a quiet round: the hub's clock, the bundle unchanged, no redemption."""
    return json.dumps(wire.dump(wire.SyncAnswer(server_time=now, etag=etag, bundle=None,
                                                redemptions=wire.RedemptionPage(cursor=after)))).encode()
