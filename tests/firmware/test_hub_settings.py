"""The hub's word is the gate's configuration (issue 12): a gate set up with only a ``[hub]`` starts,
waits for its first bundle refusing with a reason, then enforces the zone and settings the hub gave
it, keeps them across a restart without the hub, and ``/status`` says where each setting came from.
A sync round's parts fail alone."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import requests

from passgate import wire
from passgated.config import load_config, parse_config
from passgated.gate import load_gate_trust
from passgated.machine import State
from passgated.settings import DEFAULT, FILE, HUB, effective
from passgated.simulate import SimulatedGate, feed
from tests.helpers import LOADED_WRITE_TIMEOUT_S, wait_for
from tests.hub.server import HubServer

TIMEOUT = 10
WAIT_S = 20.0


def test_effective_settings_name_their_source() -> None:
    config = parse_config({"gate": {"zones": ["balcony"]}, "timing": {"relay_pulse_ms": 200}})
    alone = effective(config, None)
    assert alone.policy.zones == ("balcony",) and alone.timing.relay_pulse_s == pytest.approx(0.2)
    assert alone.sources["gate.zones"] == FILE and alone.sources["policy.anti_passback"] == DEFAULT
    hub_says = wire.GateSettings(zones=["floor"], anti_passback_minutes=30,
                                 stale_policy=wire.StaleListPolicy.REFUSE, max_list_age_hours=2,
                                 passage_timeout_ms=8000)
    merged = effective(config, hub_says)
    assert merged.policy.zones == ("floor",) and merged.sources["gate.zones"] == HUB  # the hub wins
    assert merged.policy.anti_passback_timeout_s == 1800 and merged.max_list_age_s == 7200
    assert merged.policy.stale_list is wire.StaleListPolicy.REFUSE
    assert merged.timing.passage_timeout_s == 8.0 and merged.sources["timing.passage_timeout_ms"] == HUB
    assert merged.timing.relay_pulse_s == pytest.approx(0.2)
    assert merged.sources["timing.relay_pulse_ms"] == FILE
    assert merged.values["gate.zones"] == ["floor"] and merged.values["denylist.stale_policy"] == "refuse"


def hub_venue(hub: HubServer, **settings: Any) -> tuple[requests.Session, str]:
    """Venue arena, zones floor and balcony, a hub-held issuer key, gate north-1 on the floor with
    ``settings``; returns the admin client and the gate's token."""
    admin = hub.admin()
    r = admin.post(f"{hub.url}/v1/admin/venues", json={"name": "arena"}, timeout=TIMEOUT)
    assert r.status_code == 201, r.text
    for zone in ("floor", "balcony"):
        r = admin.post(f"{hub.url}/v1/admin/venues/arena/zones", json={"name": zone}, timeout=TIMEOUT)
        assert r.status_code == 201, r.text
    r = admin.post(f"{hub.url}/v1/admin/venues/arena/gates",
                   json={"gate_id": "north-1", "zone": "floor", "settings": settings}, timeout=TIMEOUT)
    assert r.status_code == 201, r.text
    token = r.json()["token"]
    r = admin.post(f"{hub.url}/v1/admin/venues/arena/keys", json={"generate": True}, timeout=TIMEOUT)
    assert r.status_code == 201, r.text
    return admin, token


def issue(hub: HubServer, admin: requests.Session, zone: str) -> dict[str, str]:
    body = {"count": 1, "valid_from": time.time() - 60, "valid_until": time.time() + 3600, "zones": [zone]}
    r = admin.post(f"{hub.url}/v1/admin/venues/arena/passes", json=body, timeout=TIMEOUT)
    assert r.status_code == 201, r.text
    return r.json()["passes"][0]


def hub_only_gate(tmp_path: Path, hub_url: str, token: str, decisions: list[dict[str, Any]]) -> SimulatedGate:
    """gate.toml as a new operator writes it for a hub: an id, an empty trust directory, a [hub]."""
    (tmp_path / "trust").mkdir(exist_ok=True)
    path = tmp_path / "gate.toml"
    path.write_text(f'[gate]\nid = "north-1"\nvenue = "arena"\n[trust]\ndir = "trust"\n'
                    f'[hub]\nurl = "{hub_url}"\ntoken = "{token}"\n')
    config = load_config(path, journal_path=tmp_path / "state" / "journal.db",
                         journal_write_timeout_s=LOADED_WRITE_TIMEOUT_S)
    assert config.hub is not None
    config = replace(config, hub=replace(config.hub, interval_s=0.1))
    gate = SimulatedGate(config, walk_s=0.0, sources=[], display=False, on_decision=decisions.append)
    gate.start()
    return gate


def test_a_gate_with_only_a_hub_waits_then_enforces_the_hubs_zone(tmp_path: Path, hub: HubServer) -> None:
    admin, token = hub_venue(hub, anti_passback_minutes=30, relay_pulse_ms=250)
    floor, balcony = issue(hub, admin, "floor"), issue(hub, admin, "balcony")
    hub.stop()  # the gate boots before it ever reached the hub
    decisions: list[dict[str, Any]] = []
    gate = hub_only_gate(tmp_path, hub.url, token, decisions)
    try:
        assert gate.state is State.FAULT and "first bundle" in (gate.machine.fault or "")
        feed(gate, [floor["text"]])
        assert (decisions[-1]["decision"], decisions[-1]["reason"]) == ("refuse", "gate_fault")
        assert gate.status()["settings"]["gate.zones"] == {"value": [], "source": DEFAULT}
        hub.start()
        assert wait_for(lambda: gate.state is State.IDLE, timeout=WAIT_S), gate.machine.fault
        feed(gate, [balcony["text"]])
        assert (decisions[-1]["decision"], decisions[-1]["reason"]) == ("refuse", "wrong_zone")
        feed(gate, [floor["text"]])
        assert decisions[-1]["decision"] == "admit"
        settings = gate.status()["settings"]
        assert settings["gate.zones"] == {"value": ["floor"], "source": HUB}
        assert settings["policy.anti_passback_minutes"] == {"value": 30, "source": HUB}
        assert settings["timing.relay_pulse_ms"] == {"value": 250, "source": HUB}
        assert gate.machine.timing.relay_pulse_s == pytest.approx(0.25)
        assert settings["denylist.stale_policy"]["source"] == DEFAULT
    finally:
        gate.stop()
    hub.stop()  # a restart without the hub keeps its keys and its settings
    again: list[dict[str, Any]] = []
    gate = hub_only_gate(tmp_path, hub.url, token, again)
    try:
        assert gate.state is State.IDLE and len(load_gate_trust(gate.config, gate.layout)) == 1
        feed(gate, [balcony["text"]])
        assert again[-1]["reason"] == "wrong_zone"
        assert gate.status()["settings"]["gate.zones"]["source"] == HUB
    finally:
        gate.stop()


def test_a_change_of_settings_on_the_hub_reaches_the_gate(tmp_path: Path, hub: HubServer) -> None:
    admin, token = hub_venue(hub)
    decisions: list[dict[str, Any]] = []
    gate = hub_only_gate(tmp_path, hub.url, token, decisions)
    try:
        assert wait_for(lambda: gate.status()["settings"]["gate.zones"]["source"] == HUB, timeout=WAIT_S)
        r = admin.patch(f"{hub.url}/v1/admin/venues/arena/gates/north-1",
                        json={"zone": "balcony", "settings": {"stale_policy": "admit"}}, timeout=TIMEOUT)
        assert r.status_code == 200, r.text
        assert wait_for(lambda: gate.status()["settings"]["gate.zones"]["value"] == ["balcony"],
                        timeout=WAIT_S)
        assert gate.status()["settings"]["denylist.stale_policy"] == {"value": "admit", "source": HUB}
        feed(gate, [issue(hub, admin, "floor")["text"]])
        assert decisions[-1]["reason"] == "wrong_zone"
    finally:
        gate.stop()


class BrokenBundle(requests.adapters.HTTPAdapter):
    """Fault injection on the wire: the hub's bundle arrives malformed, everything else intact."""

    def build_response(self, req: requests.PreparedRequest, resp: Any) -> requests.Response:
        response = super().build_response(req, resp)
        path = req.path_url.split("?")[0]
        broken = {"gate_id": "north-1", "keys": "not a list"}
        if path.endswith("/bundle") and response.status_code == 200:
            response._content = json.dumps(broken).encode()
        elif path.endswith("/sync") and response.status_code == 200:  # the bundle in the one request
            response._content = json.dumps({**json.loads(response.content), "bundle": broken}).encode()
        return response


def test_a_part_of_a_round_that_fails_does_not_stop_the_others(tmp_path: Path, hub: HubServer) -> None:
    _, token = hub_venue(hub)
    decisions: list[dict[str, Any]] = []
    gate = hub_only_gate(tmp_path, hub.url, token, decisions)
    try:
        assert wait_for(lambda: gate.state is State.IDLE, timeout=WAIT_S)
        gate.sync.close()  # rounds by hand from here
        session = requests.Session()
        session.mount("http://", BrokenBundle())
        from passgated.sync import SyncClient

        assert gate.config.hub is not None
        client = SyncClient(gate.config.hub, journal_path=gate.layout.journal, gate_id="north-1",
                            lists=None, trust_dir=None, session=session)
        try:
            client._etag = None
            result = client.sync_once()
            assert not result.ok and set(result.errors) == {"bundle"}
            assert "ProtocolError" in result.errors["bundle"] or "TypeError" in result.errors["bundle"]
            parts = client.status()["parts"]
            assert parts["heartbeat"]["ok"] and parts["redemptions"]["ok"] and parts["upload"]["ok"]
            assert parts["bundle"]["ok"] is False and client.clock_offset_s is not None
        finally:
            client.close()
    finally:
        gate.stop()
