"""One event the hub refuses must not hold back the outbox: the batch is retried event by event,
the refused one is quarantined (kept locally, never re-sent), everything else is delivered."""

from __future__ import annotations

import logging
from pathlib import Path

from passgated.config import HubSpec
from passgated.journal import Journal
from passgated.sync import SyncClient
from tests.helpers import gate_lists
from tests.hub.server import HubServer
from tests.hub.test_api import setup_venue


def test_a_poison_event_is_quarantined_and_the_rest_delivered(tmp_path: Path, caplog) -> None:
    hub = HubServer(f"sqlite:///{tmp_path / 'hub.db'}").start()
    try:
        admin = hub.admin()
        token = setup_venue(hub, admin)["g1"]
        journal = Journal(tmp_path / "journal.db", "arena-g1")
        good = [journal.record("passage", direction="entry") for _ in range(3)]
        journal.record("")  # a row the hub's schema refuses (an event kind must not be empty)
        poison = journal.events()[-1]["event_id"]
        good += [journal.record("passage", direction="entry") for _ in range(3)]
        lists = gate_lists(tmp_path)
        client = SyncClient(HubSpec(hub.url, token), journal_path=tmp_path / "journal.db",
                            gate_id="arena-g1", lists=lists, trust_dir=tmp_path / "trust")
        with caplog.at_level(logging.ERROR):
            result = client.sync_once()
        assert result.ok and result.uploaded == 6 and result.rejected == 1
        assert poison in caplog.text
        assert journal.backlog() == 0  # nothing held back
        again = client.sync_once()
        assert again.ok and again.uploaded == 0 and again.rejected == 0  # never re-sent
        held = {e["event_id"] for e in admin.get(f"{hub.url}/v1/admin/venues/arena/events",
                                                 params={"gate_id": "arena-g1"}, timeout=10).json()}
        assert set(good) <= held and poison not in held
        assert poison in {e["event_id"] for e in journal.events()}  # kept for audit
        client.close()
    finally:
        hub.close()
