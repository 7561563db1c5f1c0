"""Hub fixtures: every hub test runs on SQLite and on a throwaway PostgreSQL cluster."""

from __future__ import annotations

from tests.hub.fixtures import db_url, hub

__all__ = ["db_url", "hub"]
