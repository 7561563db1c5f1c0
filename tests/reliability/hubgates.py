"""Real gates (the daemon on simulated pins, with a ``[hub]`` section) against a real hub over
loopback HTTP, for the sync and outage tests."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import requests

from passgated.config import HubSpec, load_config
from passgated.simulate import SimulatedGate
from tests.helpers import LOADED_WRITE_TIMEOUT_S
from tests.hub.server import HubServer, issue
from tests.hub.test_api import setup_venue

TIMEOUT = 10
__all__ = ["hub_event_ids", "issue", "start_gate", "start_hub"]


def start_hub(tmp_path: Path) -> tuple[HubServer, requests.Session, dict[str, str]]:
    hub = HubServer(f"sqlite:///{tmp_path / 'hub.db'}").start()
    admin = hub.admin()
    return hub, admin, setup_venue(hub, admin)


def start_gate(tmp_path: Path, name: str, hub: HubServer, token: str,
               decisions: list[dict[str, Any]], **gate_options: Any) -> SimulatedGate:
    config = load_config(None, gate_id=f"arena-{name}", venue="arena", zones=["floor"],
                         journal_path=tmp_path / name / "journal.db",
                         journal_write_timeout_s=LOADED_WRITE_TIMEOUT_S)
    config = replace(config, hub=HubSpec(hub.url, token, interval_s=0.1))
    gate = SimulatedGate(config, walk_s=0.0, sources=[], display=False, on_decision=decisions.append,
                         **gate_options)
    gate.start()
    return gate


def hub_event_ids(hub: HubServer, admin: requests.Session, gate_id: str) -> list[str]:
    """Every event the hub holds for a gate, paged through the admin API."""
    ids: list[str] = []
    after = 0
    while True:
        r = admin.get(f"{hub.url}/v1/admin/venues/arena/events",
                      params={"gate_id": gate_id, "after": after, "limit": 10000}, timeout=TIMEOUT)
        assert r.status_code == 200, r.text
        page = r.json()
        if not page:
            return ids
        ids += [e["event_id"] for e in page]
        after = page[-1]["seq"]

