"""The hub's database goes away and comes back: PostgreSQL restarted under a running hub, and
PostgreSQL down. The hub answers 503 with a reason and a Retry-After (a gate tries again at its
next round), never a 500 with a traceback, and serves again as soon as the database is back; a
restart costs at most one answer per connection pool."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator

import pytest
import requests

from passgate_hub import db
from tests.parts import require_part

from .pgcluster import PgCluster, bindir
from .server import HubServer
from .test_api import TIMEOUT, event, gate_client, setup_venue


@pytest.fixture
def cluster() -> Iterator[PgCluster]:
    require_part(bindir() is not None, "PostgreSQL", "apt-get install postgresql")
    own = PgCluster().start()  # its own: the test restarts it under the hub
    yield own
    own.stop()


def upload(token: str, hub: HubServer) -> requests.Response:
    return gate_client(token).post(f"{hub.url}/v1/gates/arena-g1/events", timeout=TIMEOUT, json={
        "events": [event("arena-g1", "decision", detail=uuid.uuid4().hex)]})


def test_a_restart_costs_at_most_one_answer_and_down_is_a_503(cluster: PgCluster, caplog) -> None:
    hub = HubServer(cluster.create_database("hub")).start()
    try:
        admin = hub.admin()
        token = setup_venue(hub, admin)["g1"]
        assert upload(token, hub).status_code == 200

        cluster.restart()  # every pooled connection is now cut
        answers = [upload(token, hub) for _ in range(3)]
        codes = [r.status_code for r in answers]
        assert set(codes) <= {200, 503} and codes.count(503) <= 1 and codes[-1] == 200, codes
        assert admin.get(f"{hub.url}/v1/admin/venues", timeout=TIMEOUT).status_code == 200

        cluster.halt()
        with caplog.at_level(logging.ERROR, logger="passgate_hub"):
            for r in (upload(token, hub), admin.get(f"{hub.url}/v1/admin/venues", timeout=TIMEOUT)):
                assert r.status_code == 503, r.text
                assert "database" in r.json()["detail"] and "Traceback" not in r.text
                assert r.headers["Retry-After"].isdigit()
        logged = [rec for rec in caplog.records if rec.name.startswith("passgate_hub")]
        assert logged and all("\n" not in rec.getMessage() for rec in logged)

        cluster.restart()
        codes = [upload(token, hub).status_code for _ in range(2)]
        assert codes[-1] == 200 and set(codes) <= {200, 503}, codes
    finally:
        hub.close()


def test_after_a_quiet_spell_a_restart_costs_no_answer(cluster: PgCluster, monkeypatch) -> None:
    """A pooled connection idle for ``IDLE_PING_S`` is pinged before use: a restart while the hub
    was quiet is found by the ping, and the request gets a fresh connection (here every
    connection counts as idle)."""
    hub = HubServer(cluster.create_database("hub")).start()
    try:
        token = setup_venue(hub, hub.admin())["g1"]
        assert upload(token, hub).status_code == 200
        monkeypatch.setattr(db, "IDLE_PING_S", 0.0)
        cluster.restart()
        assert [upload(token, hub).status_code for _ in range(2)] == [200, 200]
    finally:
        hub.close()
