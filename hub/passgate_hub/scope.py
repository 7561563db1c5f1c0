"""Who may do what where: roles, and a principal's grants (a role on a venue, or on every venue).

A principal is whoever presents a credential: an admin API key today, an operator account of the
console later; both hold their grants in the one ``grants`` table, keyed by principal. Refusals
(``Forbidden``, 403 over HTTP) name what is missing.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from .models import Grant, Venue


class Role(StrEnum):
    """Each role can do what the ones before it can."""

    VIEWER = "viewer"  # reads: venues, gates, keys (public halves), events, counts, alerts, lists
    OPERATOR = "operator"  # also issues passes, revokes, blocks and unblocks them
    ADMIN = "admin"  # also zones, gates, issuer keys, API keys of its venues, the audit log

    @property
    def rank(self) -> int:
        return list(Role).index(self)

    def covers(self, needed: Role) -> bool:
        return self.rank >= needed.rank


class Forbidden(Exception):
    """A valid credential asked for something outside its grants (403)."""


@dataclass(frozen=True)
class Scope:
    """A principal's grants: ``hub_wide`` (every venue, also those created later) and per venue
    (by name; the ids alongside for filtering queries)."""

    hub_wide: Role | None = None
    venues: Mapping[str, Role] = field(default_factory=dict)
    venue_ids: Mapping[str, int] = field(default_factory=dict)

    def role_in(self, venue: str) -> Role | None:
        roles = [r for r in (self.hub_wide, self.venues.get(venue)) if r is not None]
        return max(roles, key=lambda r: r.rank) if roles else None

    def check(self, venue: str, needed: Role) -> None:
        """Refuse unless the grants hold ``needed`` (or more) on ``venue``."""
        held = self.role_in(venue)
        if held is None:
            raise Forbidden(f"no grant on venue {venue!r} (this credential's venues: {self.describe()})")
        if not held.covers(needed):
            raise Forbidden(f"a {held} of {venue!r} cannot do this; it needs {needed}")

    def check_hub_wide(self, needed: Role) -> None:
        if self.hub_wide is None or not self.hub_wide.covers(needed):
            raise Forbidden(f"this needs a hub-wide {needed} (a key made with --all-venues); "
                            f"this credential's venues: {self.describe()}")

    def check_any(self, needed: Role) -> None:
        """Refuse unless some venue (or every venue) is granted with ``needed``."""
        if self.ids_with(needed) == set():
            raise Forbidden(f"this needs {needed} on some venue; this credential's venues: {self.describe()}")

    def ids_with(self, needed: Role) -> set[int] | None:
        """The ids of the venues granted with ``needed`` or more; ``None``: every venue."""
        if self.hub_wide is not None and self.hub_wide.covers(needed):
            return None
        return {self.venue_ids[name] for name, role in self.venues.items() if role.covers(needed)}

    def covers_all(self, venues: Collection[str | None], needed: Role) -> bool:
        """``needed`` on each venue named (``None``: hub-wide) — may these grants hand them out
        or take them away?"""
        held = [self.hub_wide if venue is None else self.role_in(venue) for venue in venues]
        return all(role is not None and role.covers(needed) for role in held)

    def describe(self) -> str:
        parts = ([f"every venue ({self.hub_wide})"] if self.hub_wide is not None else []) + [
            f"{name} ({role})" for name, role in sorted(self.venues.items())]
        return ", ".join(parts) or "none"


# What the CLI acts as: it works straight on the database, so whoever runs it holds everything.
EVERYTHING = Scope(hub_wide=Role.ADMIN)


def load(db: Session, principal_id: int) -> Scope:
    """A principal's grants, in one query."""
    hub_wide: Role | None = None
    venues: dict[str, Role] = {}
    ids: dict[str, int] = {}
    rows = db.execute(select(Grant.venue_id, Venue.name, Grant.role)
                      .outerjoin(Venue, Venue.id == Grant.venue_id)
                      .where(Grant.principal_id == principal_id))
    for venue_id, name, role in rows:
        if venue_id is None:
            hub_wide = Role(role)
        else:
            venues[name], ids[name] = Role(role), venue_id
    return Scope(hub_wide=hub_wide, venues=venues, venue_ids=ids)
