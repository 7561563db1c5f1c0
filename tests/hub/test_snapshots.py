"""A list's snapshot built from the previous one a worker keeps and the signed deltas since, not from
the rows (8 bytes an entry instead of a Python object); from the rows when none is kept."""

from __future__ import annotations

import uuid

import pytest

from passgate import TrustStore, denylist
from passgate.wire import KeyPurpose
from passgate_hub import denylists, ops

from .server import HubServer


def change(hub: HubServer, kind: str, ids: list[str], remove: bool = False) -> None:
    with hub.session() as s:
        ops.deny(s, ops.get_venue(s, "arena"), kind, ids, remove=remove, external=True)
        s.commit()


def test_the_next_snapshot_comes_from_the_previous_and_the_deltas(hub: HubServer,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    with hub.session() as s:
        ops.create_venue(s, "arena")
        s.commit()
    ids = [uuid.uuid4().hex for _ in range(50)]
    change(hub, "blocked", ids[:30])
    cache = denylists.SnapshotCache()
    with hub.session() as s:
        venue = ops.get_venue(s, "arena")
        first = cache.get(s, venue, "blocked", *denylists.current_versions(s, venue)["blocked"])
    change(hub, "blocked", ids[30:])
    change(hub, "blocked", ids[:10], remove=True)
    with hub.session() as s:
        venue = ops.get_venue(s, "arena")
        newest = denylists.current_versions(s, venue)["blocked"]
        from_rows = denylists.SnapshotCache().get(s, venue, "blocked", *newest)

        def no_rows(*args: object) -> set[str]:
            raise AssertionError("built from the rows")

        monkeypatch.setattr(denylists, "_active", no_rows)
        built = cache.get(s, venue, "blocked", *newest)
        store = TrustStore()
        store.add(denylists.signing_key(s, venue).public_key(), purpose=KeyPurpose.DENYLIST, scope="arena")
    assert built == from_rows  # the same signed bytes: entries, version, signing time
    listed = denylist.read_signed(built, store)
    assert isinstance(listed, denylist.DenyList) and listed.version == newest[0]
    assert [bytes.fromhex(p) in listed for p in ids] == [False] * 10 + [True] * 40
    assert first != built
