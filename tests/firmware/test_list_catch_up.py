"""A gate that was away catches up by one compacted delta, not a snapshot: every change between its
version and the newest at once (an entry unblocked and blocked again, or blocked and unblocked, in
between: no change), applied through the real sync client from a real hub, and the list it ends
with is the hub's own snapshot of the newest version."""

from __future__ import annotations

import uuid
from pathlib import Path

from passgate import TrustStore, denylist
from passgate.denylist import read_header
from passgate_hub import denylists as hub_lists
from passgate_hub import ops
from tests.hub.fixtures import db_url, hub
from tests.hub.server import HubServer
from tests.hub.test_api import setup_venue

from .test_sync import Gate

__all__ = ["db_url", "hub"]


def change(hub: HubServer, kind: str, ids: list[str], *, remove: bool = False) -> int:
    with hub.session() as s:
        version, _ = ops.deny(s, ops.get_venue(s, "arena"), kind, ids, remove=remove, external=True)
        s.commit()
    return version


def test_a_gate_away_for_many_changes_gets_one_delta(hub: HubServer, tmp_path: Path) -> None:
    tokens = setup_venue(hub, hub.admin())
    ids = [uuid.uuid4().hex for _ in range(8)]
    change(hub, "blocked", ids[:3])  # on the list when the gate last synced
    gate = Gate(tmp_path / "g1", "arena-g1", hub.url, tokens["g1"])
    try:
        gate.sync.sync_once()
        have = gate.lists.versions()["blocked"]
        change(hub, "blocked", [ids[0]], remove=True)  # unblocked: goes
        change(hub, "blocked", [ids[1]], remove=True)  # unblocked, then blocked again: stays
        change(hub, "blocked", [ids[1]])
        change(hub, "blocked", [ids[3]])  # blocked, then unblocked: never reaches the gate
        change(hub, "blocked", [ids[3]], remove=True)
        for pass_id in ids[4:]:  # many changes: far more versions than MAX_DELTAS
            for _ in range(hub_lists.MAX_DELTAS // 4 + 1):
                change(hub, "blocked", [pass_id])
                change(hub, "blocked", [pass_id], remove=True)
            change(hub, "blocked", [pass_id])
        revoked = change(hub, "revoked", [ids[7]])
        with hub.session() as s:
            venue = ops.get_venue(s, "arena")
            newest = hub_lists.current_versions(s, venue)["blocked"]
            key = hub_lists.signing_key(s, venue)
            snapshot = hub.app.state.snapshots.get(s, venue, "blocked", *newest)
        assert newest[0] - have > hub_lists.MAX_DELTAS
        gate.sync._etag = None
        gate.sync.sync_once()
        store = TrustStore()
        store.add(key.public_key(), purpose="denylist", scope="arena")
        applied = sorted(p.name for p in gate.lists.layout.applied.iterdir() if p.name.startswith("blocked"))
        assert applied[-1] == f"blocked-{newest[0]:010d}.delta.pgdl"
        header = read_header(gate.lists.layout.applied / applied[-1], store)
        assert header.is_delta and (header.base, header.version, header.entries) == (have, newest[0], 5)
        held = gate.lists.live["blocked"].current
        assert held.version == newest[0] and held.same_entries(denylist.read_signed(snapshot, store))
        assert [bytes.fromhex(p) in held for p in ids] == [False, True, True, False, True, True, True, True]
        assert gate.lists.versions()["revoked"] == revoked  # one delta: the plain chain
    finally:
        gate.close()
