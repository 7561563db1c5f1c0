"""The audit log: every change an operator makes, recorded by the operation itself (``ops``,
``apikeys``) in the same transaction, so a change and its record commit or vanish together.

Who acts is set on the session once (``act_as``): by the admin API for the API key of the
request (with the client's address), by the CLI for the OS user (with the host). A change on a
session nobody acts on is refused: no path changes the hub unrecorded.
"""

from __future__ import annotations

import getpass
import os
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from .models import AuditEntry, Venue

_ACTOR = "passgate_hub.audit.actor"


@dataclass(frozen=True)
class Actor:
    name: str  # "apikey:NAME", "cli:USER"
    source: str | None  # the client's address, or the host the CLI ran on


def act_as(db: Session, actor: Actor) -> None:
    db.info[_ACTOR] = actor


def cli_actor() -> Actor:
    """The OS user running ``passgate-hub`` (its uid when the name is unknown, as in a container)."""
    try:
        user = getpass.getuser()
    except (OSError, KeyError):
        user = f"uid {os.getuid()}"
    return Actor(f"cli:{user}", socket.gethostname())


def record(db: Session, action: str, target: str | None, *, venues: Iterable[Venue | None] = (None,),
           **detail: Any) -> None:
    """One entry per venue the change touches (``None``: hub-wide), in the caller's transaction."""
    actor = db.info.get(_ACTOR)
    if not isinstance(actor, Actor):
        raise RuntimeError(f"{action}: a change with nobody acting (call audit.act_as on the session)")
    now = time.time()
    for venue in venues:
        db.add(AuditEntry(at=now, actor=actor.name, source=actor.source, action=action,
                          venue_id=venue.id if venue is not None else None, target=target,
                          detail=detail))


def entries(db: Session, venue_ids: set[int] | None, *, venue: Venue | None = None, after: int = 0,
            limit: int = 1000) -> list[dict[str, Any]]:
    """Entries oldest first (page with ``after`` = the last ``id``): of ``venue``, else of the
    venues in ``venue_ids`` (``None``: every entry, the hub-wide ones too)."""
    query = (select(AuditEntry, Venue.name).outerjoin(Venue, Venue.id == AuditEntry.venue_id)
             .where(AuditEntry.id > after))
    if venue is not None:
        query = query.where(AuditEntry.venue_id == venue.id)
    if venue_ids is not None:
        query = query.where(AuditEntry.venue_id.in_(venue_ids))
    rows = db.execute(query.order_by(AuditEntry.id).limit(limit))
    return [{"id": e.id, "at": e.at, "actor": e.actor, "source": e.source, "action": e.action,
             "venue": name, "target": e.target, "detail": e.detail} for e, name in rows]
