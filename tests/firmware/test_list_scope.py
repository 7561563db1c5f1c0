"""A real SyncClient against a real hub (SQLite and PostgreSQL): key roles reach the gate's two
trust directories within one sync, a partner's pass key cannot touch the venue's lists, and a gate
ahead of a restored hub is brought forward while an old snapshot stays refused."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from passgate import PassRefused, Reason, TrustStore, generate_private_key, issue_pass, verify_pass
from passgate.denylist import DenyListError, sign_snapshot
from passgate.keys import public_pem
from passgate_hub import denylists
from passgate_hub.models import DenyDelta, DenyEntry, DenyList, Venue
from passgated.config import HubSpec
from passgated.sync import SyncClient
from tests.helpers import gate_lists
from tests.hub.fixtures import db_url, hub
from tests.hub.server import HubServer, issue
from tests.hub.test_api import setup_venue

__all__ = ["db_url", "hub"]
TIMEOUT = 10
PARTNER = generate_private_key()


class Gate:
    """A gate's lists and both trust directories, with its sync client."""

    def __init__(self, root: Path, hub: HubServer, token: str) -> None:
        self.lists = gate_lists(root)
        self.trust_dir, self.list_trust_dir = root / "hub-trust", root / "hub-list-trust"
        self.sync = SyncClient(HubSpec(hub.url, token, interval_s=0.2), journal_path=root / "journal.db",
                               gate_id="arena-g1", lists=self.lists, trust_dir=self.trust_dir,
                               list_trust_dir=self.list_trust_dir)

    def round(self) -> None:
        result = self.sync.sync_once()
        assert "bundle" not in result.errors, result.errors

    def list_trust(self) -> TrustStore:
        """What the gate rebuilds and drop-folder files verify against: every key it holds."""
        trust = TrustStore.load(self.trust_dir)
        for key in TrustStore.load(self.list_trust_dir):
            trust.add(key)
        return trust


@pytest.fixture
def arena(hub: HubServer, tmp_path: Path) -> Iterator[tuple[HubServer, requests.Session, Gate]]:
    admin = hub.admin()
    tokens = setup_venue(hub, admin)
    r = admin.post(f"{hub.url}/v1/admin/venues/arena/keys",
                   json={"public_pem": public_pem(PARTNER).decode(), "issuer": "Partner"}, timeout=TIMEOUT)
    assert r.status_code == 201
    gate = Gate(tmp_path / "g1", hub, tokens["g1"])
    yield hub, admin, gate
    gate.sync.close()


def revoke(hub: HubServer, admin: requests.Session, pass_id: str) -> None:
    r = admin.post(f"{hub.url}/v1/admin/venues/arena/revocations",
                   json={"pass_ids": [pass_id], "external": True}, timeout=TIMEOUT)
    assert r.status_code == 200, r.text


def test_roles_reach_the_trust_dirs_and_a_partner_cannot_touch_the_lists(arena) -> None:
    hub, admin, gate = arena
    revoke(hub, admin, "01" * 16)
    gate.round()
    (list_key,) = TrustStore.load(gate.list_trust_dir)
    assert (list_key.purpose, list_key.scope) == ("denylist", "arena")
    assert {k.purpose for k in TrustStore.load(gate.trust_dir)} == {"passes"}
    live = gate.lists.live["revoked"]
    before = live.current.version
    attack = sign_snapshot(PARTNER, [], kind="revoked", scope="arena", version=2**62)
    with pytest.raises(DenyListError, match="may sign passes, not the deny lists of scope 'arena'"):
        gate.lists.apply_signed(attack, gate.list_trust())
    assert live.current.version == before and bytes.fromhex("01" * 16) in live.current
    revoke(hub, admin, "02" * 16)  # the venue's next update still applies
    gate.round()
    assert live.current.version == before + 1 and bytes.fromhex("02" * 16) in live.current


def test_retire_revoke_rotate_reach_the_gate_within_one_sync(arena) -> None:
    hub, admin, gate = arena
    early = issue(hub, admin)[0]["text"]
    gate.round()
    old = verify_pass(early, TrustStore.load(gate.trust_dir)).kid.hex()
    r = admin.post(f"{hub.url}/v1/admin/venues/arena/keys/rotate", json={}, timeout=TIMEOUT)
    assert r.status_code == 201 and r.json()["retired"] == [old]
    fresh = issue(hub, admin)[0]["text"]
    gate.round()
    trust = TrustStore.load(gate.trust_dir)
    assert verify_pass(early, trust).kid.hex() == old  # issued before the retirement: still valid
    assert verify_pass(fresh, trust).kid.hex() == r.json()["new"]["kid"]
    partner = issue_pass(PARTNER, valid_from=time.time() - 60, valid_until=time.time() + 3600)
    assert verify_pass(partner, trust).issuer == "Partner"  # another issuer's key is untouched
    r = admin.post(f"{hub.url}/v1/admin/venues/arena/keys/{old}/revoke", timeout=TIMEOUT)
    assert r.status_code == 200
    gate.round()
    with pytest.raises(PassRefused) as info:
        verify_pass(early, TrustStore.load(gate.trust_dir))
    assert info.value.reason is Reason.KEY_REVOKED


def restore_back(s: Session, to: int, *, rows: bool) -> Venue:
    """The revoked list as a restored backup leaves it: at version ``to``, the later deltas gone
    (and with ``rows``, the later entries too). Returns the venue, in session ``s``."""
    venue = s.scalar(select(Venue).where(Venue.name == "arena"))
    assert venue is not None
    row = s.scalar(select(DenyList).where(DenyList.venue_id == venue.id, DenyList.kind == "revoked"))
    assert row is not None
    row.version = to
    if rows:
        s.execute(delete(DenyEntry).where(DenyEntry.venue_id == venue.id, DenyEntry.version_added > to))
    s.execute(delete(DenyDelta).where(DenyDelta.venue_id == venue.id, DenyDelta.base >= to))
    s.commit()
    return venue


def test_a_gate_ahead_of_a_restored_hub_comes_forward_and_old_snapshots_stay_refused(arena) -> None:
    hub, admin, gate = arena
    for i in range(3):
        revoke(hub, admin, f"{i + 1:02x}" * 16)
    gate.round()
    live = gate.lists.live["revoked"]
    ahead = live.current.version
    old = admin.get(f"{hub.url}/v1/admin/venues/arena/denylists/revoked", timeout=TIMEOUT).content
    # the restore: the hub's list goes back two versions and forgets the third revocation's delta
    with hub.session() as s:
        restore_back(s, ahead - 2, rows=False)
    gate.round()  # the hub sees the gate ahead and begins an epoch; the gate takes its snapshot
    assert live.current.version > 2**32 and live.current.version > ahead
    assert bytes.fromhex("03" * 16) in live.current  # the rows survived: the snapshot holds them
    with pytest.raises(DenyListError, match="not newer"):
        gate.lists.apply_signed(old, gate.list_trust())
    revoke(hub, admin, "09" * 16)
    gate.round()
    assert bytes.fromhex("09" * 16) in live.current
    assert gate.sync.sync_once().lists["revoked"] == live.current.version


def test_a_restored_hub_that_reaches_the_gates_version_again_is_told_apart(arena) -> None:
    """The fork: restored two versions back, the hub makes two new changes and is at the gate's
    version number again, with other contents. The signing time tells them apart."""
    hub, admin, gate = arena
    for i in range(3):
        revoke(hub, admin, f"{i + 1:02x}" * 16)
    gate.round()
    live = gate.lists.live["revoked"]
    held = live.current.version
    with hub.session() as s:  # the restore: two versions back, their rows and deltas gone
        venue = restore_back(s, held - 2, rows=True)
        for i in (7, 8):  # two new changes, signed later: the same number as the gate holds
            denylists.change(s, venue, "revoked", adds=[f"{i:02x}" * 16], now=time.time() + 5 + i)
        s.commit()
        assert s.scalar(select(DenyList.version).where(DenyList.venue_id == venue.id,
                                                       DenyList.kind == "revoked")) == held
    gate.round()
    assert live.current.version > held  # a new epoch, and the hub's contents
    assert bytes.fromhex("07" * 16) in live.current and bytes.fromhex("08" * 16) in live.current
    assert bytes.fromhex("03" * 16) not in live.current  # what the restore lost, the hub no longer says
