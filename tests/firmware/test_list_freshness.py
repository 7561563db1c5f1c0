"""Freshness statements on the gate: a list is as fresh as the newest statement for the version it
holds, kept across restarts; statements for another version, scope or signer change nothing; and
with a real hub (protocol 3 and later) quiet lists stay fresh without new versions, while a gate of
protocol 2 still gets the hourly re-signed versions it relies on."""

from __future__ import annotations

import base64
import time
from pathlib import Path

import pytest
import requests

from passgate import TrustStore, freshness, generate_private_key, wire
from passgate.denylist import sign_delta, sign_snapshot
from passgate.freshness import FreshnessError
from passgate_hub import denylists as hub_lists
from passgate_hub import ops
from passgated.denylists import DenyLists
from passgated.layout import ListsLayout
from tests.hub.fixtures import db_url, hub
from tests.hub.server import HubServer
from tests.hub.test_api import setup_venue

from .test_sync import Gate

__all__ = ["db_url", "hub"]
LIST_KEY, OTHER_KEY, PASS_KEY = generate_private_key(), generate_private_key(), generate_private_key()
NOW = 1_800_000_000
DAY = 86_400
ID = [bytes([i]) * 16 for i in range(4)]


def trust() -> TrustStore:
    store = TrustStore()
    store.add(LIST_KEY.public_key(), purpose="denylist", scope="acme")
    store.add(PASS_KEY.public_key())
    return store


def lists(root: Path) -> DenyLists:
    return DenyLists(ListsLayout(root), ("revoked",), scope="acme", trust=trust, max_age_s=DAY)


def statement(version: int, as_of: int, *, key=LIST_KEY, scope: str = "acme") -> bytes:
    return freshness.sign(key, kind="revoked", scope=scope, version=version, as_of=as_of)


def held_for_two_days(root: Path) -> DenyLists:
    gate = lists(root)
    gate.apply_signed(sign_snapshot(LIST_KEY, ID[:2], kind="revoked", scope="acme", version=1,
                                    issued_at=NOW - 2 * DAY), trust())
    assert gate.stale(NOW) and gate.age("revoked", NOW) == 2 * DAY
    return gate


def test_a_statement_for_the_version_held_makes_the_list_fresh_and_survives_a_restart(tmp_path: Path) -> None:
    gate = held_for_two_days(tmp_path)
    assert gate.apply_fresh(statement(1, NOW - 60), trust()) is True
    assert not gate.stale(NOW) and gate.age("revoked", NOW) == 60
    assert gate.status(NOW)["revoked"]["age_s"] == 60 and gate.status(NOW)["revoked"]["stale"] is False
    assert gate.apply_fresh(statement(1, NOW - 600), trust()) is False  # older: the newer one stays
    assert gate.age("revoked", NOW) == 60
    restarted = lists(tmp_path)
    assert not restarted.stale(NOW) and restarted.age("revoked", NOW) == 60
    assert gate.stale(NOW + DAY)  # a statement ages like a signature


def test_statements_that_do_not_speak_for_the_list_held_change_nothing(tmp_path: Path) -> None:
    gate = held_for_two_days(tmp_path)
    assert gate.apply_fresh(statement(2, NOW), trust()) is False  # a version not held (yet)
    for bad, why in ((statement(1, NOW, scope="other"), "not in the trust store|scope"),
                     (statement(1, NOW, key=OTHER_KEY), "not in the trust store"),
                     (statement(1, NOW, key=PASS_KEY), "not the deny lists"),
                     (b"\x00" * 40, "not a freshness statement")):
        with pytest.raises(FreshnessError, match=why):
            gate.apply_fresh(bad, trust())
    assert gate.stale(NOW) and not (tmp_path / "revoked.fresh").exists()


def test_a_new_version_is_judged_by_its_own_signature_not_an_older_statement(tmp_path: Path) -> None:
    gate = held_for_two_days(tmp_path)
    gate.apply_fresh(statement(1, NOW), trust())
    gate.apply_signed(sign_delta(LIST_KEY, kind="revoked", scope="acme", base=1, adds=[ID[2]],
                                 issued_at=NOW - 3 * DAY), trust())  # signed long ago, delivered now
    assert gate.stale(NOW) and gate.age("revoked", NOW) == 3 * DAY
    assert lists(tmp_path).stale(NOW)  # the kept statement, for version 1, is not taken at restart


def test_a_damaged_statement_file_is_ignored_at_start(tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    gate = held_for_two_days(tmp_path)
    gate.apply_fresh(statement(1, NOW), trust())
    path = tmp_path / "revoked.fresh"
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    restarted = lists(tmp_path)
    assert restarted.stale(NOW) and "freshness statement" in caplog.text
    assert restarted.live["revoked"].current.version == 1  # the list itself is untouched


def test_with_a_hub_quiet_lists_stay_fresh_without_new_versions(hub: HubServer, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The hub's hour and grid step shrunk to a second: past them, a gate of protocol 4 keeps its
    versions and is vouched for by newer statements; one of protocol 2 gets a re-signed version."""
    monkeypatch.setattr(hub_lists, "REFRESH_S", 1.0)
    monkeypatch.setattr(hub_lists, "FRESH_EVERY_S", 1)
    tokens = setup_venue(hub, hub.admin())
    gate = Gate(tmp_path / "g1", "arena-g1", hub.url, tokens["g1"])
    try:
        gate.sync.sync_once()
        first = gate.lists.versions()
        assert set(gate.lists.fresh) == {"revoked", "blocked"} and min(first.values()) >= 1
        time.sleep(2.5)
        gate.sync.sync_once()  # a new grid step: its statements in the answer (protocol 4)
        assert gate.lists.versions() == first  # no new version of a list nothing changed in
        now = time.time()
        for kind in first:
            signed_age = gate.lists.live[kind].current.age(now)
            assert signed_age >= 2 and gate.lists.age(kind, now) <= signed_age - 1
        old_gate = requests.get(f"{hub.url}/v1/gates/arena-g2/bundle", timeout=10,
                                headers={"Authorization": f"Bearer {tokens['g2']}",
                                         wire.PROTOCOL_HEADER: "2"}).json()
        assert all(info["fresh"] is None for info in old_gate["denylists"].values())
        assert {kind: info["version"] for kind, info in old_gate["denylists"].items()} == {
            kind: version + 1 for kind, version in first.items()}
    finally:
        gate.close()


def test_the_hub_signs_one_statement_a_grid_step(hub: HubServer) -> None:
    """Every worker, every gate: the same bytes for a list's version within a step of the grid."""
    tokens = setup_venue(hub, hub.admin())

    def fresh(gate: str) -> dict[str, str]:
        r = requests.get(f"{hub.url}/v1/gates/arena-{gate}/bundle", timeout=10,
                         headers={"Authorization": f"Bearer {tokens[gate]}", wire.PROTOCOL_HEADER: "3"})
        return {kind: info["fresh"] for kind, info in r.json()["denylists"].items()}

    first, second = fresh("g1"), fresh("g2")
    if first != second:  # the grid stepped between the two requests
        first, second = fresh("g1"), fresh("g2")
    assert first == second
    with hub.session() as s:
        venue = ops.get_venue(s, "arena")
        store = TrustStore()
        store.add(hub_lists.signing_key(s, venue).public_key(), purpose="denylist", scope="arena")
        versions = hub_lists.current_versions(s, venue)
    for kind, text in first.items():
        read = freshness.read(base64.b64decode(text), store)
        assert read.applies_to(kind, "arena", versions[kind][0])
        assert read.as_of % hub_lists.FRESH_EVERY_S == 0
        assert time.time() - read.as_of < hub_lists.FRESH_EVERY_S + 60


def test_the_stale_check_a_scan_makes_follows_every_change_at_once(tmp_path: Path) -> None:
    """The gate keeps the oldest vouching time between changes: after each new list, statement,
    second kind or maximum age, the scan's answer is the one the lists' own ages give."""
    gate = DenyLists(ListsLayout(tmp_path), ("revoked", "blocked"), scope="acme", trust=trust, max_age_s=DAY)
    store = trust()

    def agree(now: float) -> bool:
        by_ages = any(gate.age(kind, now) > gate.max_age_s for kind in gate.live)
        assert gate.stale(now) is by_ages
        return by_ages

    assert agree(NOW)  # nothing held yet: version 0 of each, always stale
    versions = {"revoked": 0, "blocked": 0}
    steps = [("revoked", NOW - 2 * DAY, None), ("blocked", NOW - 60, None), ("revoked", None, NOW - 30),
             ("revoked", NOW - 3 * DAY, None), ("blocked", None, NOW), ("revoked", NOW - 10, None)]
    for kind, signed_at, fresh_as_of in steps:
        if signed_at is not None:
            versions[kind] += 1
            gate.apply_signed(sign_snapshot(LIST_KEY, ID[:versions[kind]], kind=kind, scope="acme",
                                            version=versions[kind], issued_at=signed_at), store)
        else:
            assert fresh_as_of is not None
            gate.apply_fresh(freshness.sign(LIST_KEY, kind=kind, scope="acme", version=versions[kind],
                                            as_of=fresh_as_of), store)
        for now in (NOW, NOW + DAY / 2, NOW + 2 * DAY):
            agree(now)
    assert not agree(NOW)
    gate.max_age_s = 5.0  # the hub's settings: taken at the next scan
    assert agree(NOW)
