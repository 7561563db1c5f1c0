"""The hub's ingest over real loopback HTTP, on SQLite and PostgreSQL: passages counted once,
time the hub can trust, redemptions only a gate could have made, double-redemption alerts,
protocol versions, and a redemption cursor that never skips a late commit."""

from __future__ import annotations

import json
import logging
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from sqlalchemy import text

from passgate import wire
from passgate_hub import cli, ingest
from passgate_hub.models import Gate

from .server import HubServer, issue
from .test_api import TIMEOUT, event, gate_client, setup_venue

V2 = {wire.PROTOCOL_HEADER: str(wire.PROTOCOL_VERSION)}


def post(hub: HubServer, token: str, gate: str, events: list[dict[str, object]],
         headers: dict[str, str] | None = None) -> dict:
    r = gate_client(token).post(f"{hub.url}/v1/gates/arena-{gate}/events", json={"events": events},
                                headers=V2 if headers is None else headers, timeout=TIMEOUT)
    assert r.status_code == 200, r.text
    return r.json()


def beat(hub: HubServer, token: str, gate: str, t: float, **fields: object) -> requests.Response:
    return gate_client(token).post(f"{hub.url}/v1/gates/arena-{gate}/heartbeat",
                                   json={"t": t, **fields}, headers=V2, timeout=TIMEOUT)


def pull(hub: HubServer, token: str, gate: str, after: int = 0, **params: object) -> dict:
    r = gate_client(token).get(f"{hub.url}/v1/gates/arena-{gate}/redemptions",
                               params={"after": after, **params}, timeout=TIMEOUT)
    assert r.status_code == 200, r.text
    return r.json()


def admitted(gate: str, pass_id: str, direction: str = "entry", t: float | None = None,
             **decision: object) -> list[dict[str, object]]:
    """What a gate of protocol 2 sends for one scanned passage: its admit decision, then the
    redemption (whose detail is the redemption id)."""
    t = time.time() if t is None else t
    return [event(f"arena-{gate}", "decision", direction=direction, pass_id=pass_id, decision="admit",
                  reason="admit", detail="Welcome", t=t, **decision),
            event(f"arena-{gate}", "redeemed", direction=direction, pass_id=pass_id,
                  detail=uuid.uuid4().hex, t=t + 1)]


def run_cli(db_url: str, capsys: pytest.CaptureFixture[str], *argv: str) -> object:
    """The CLI's answer with times as the API gives them (epoch seconds), to compare the two."""
    assert cli.main(["--database", db_url, "--epoch", *argv]) == 0
    return json.loads(capsys.readouterr().out)


def test_each_passage_counts_once_through_api_and_cli(hub: HubServer, db_url: str,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    admin = hub.admin()
    tokens = setup_venue(hub, admin)
    ids = [uuid.uuid4().hex for _ in range(7)]
    # g1 (protocol 2): three scanned entries, a refusal, and a free exit
    post(hub, tokens["g1"], "g1", [*admitted("g1", ids[0]), *admitted("g1", ids[1]), *admitted("g1", ids[2]),
                                   event("arena-g1", "decision", pass_id=ids[3], decision="refuse",
                                         reason="revoked"),
                                   event("arena-g1", "passage", direction="exit", detail="free exit")])
    # g2 speaks protocol 1: each scanned passage also sent a detail-less ``passage``
    old: list[dict[str, object]] = []
    for pass_id, direction in ((ids[3], "entry"), (ids[4], "entry"), (ids[0], "exit")):
        old += [*admitted("g2", pass_id, direction),
                event("arena-g2", "passage", direction=direction, detail=None)]
    post(hub, tokens["g2"], "g2", old, headers={})
    # g3 (vip): one scanned entry, one free passage
    post(hub, tokens["g3"], "g3", [*admitted("g3", ids[5]),
                                   event("arena-g3", "passage", direction="entry", detail="free passage")])
    expected = [{"zone": "floor", "entries": 5, "exits": 2, "inside": 3},
                {"zone": "vip", "entries": 2, "exits": 0, "inside": 2}]
    assert admin.get(f"{hub.url}/v1/admin/venues/arena/counts", timeout=TIMEOUT).json() == expected
    assert run_cli(db_url, capsys, "counts", "arena") == expected


def test_a_gate_token_cannot_burn_a_pass_it_never_admitted(hub: HubServer, caplog) -> None:
    admin = hub.admin()
    tokens = setup_venue(hub, admin)
    victim, other = (p["pass_id"] for p in issue(hub, admin, count=2))
    caplog.set_level(logging.WARNING, logger="passgate_hub")
    forged = event("arena-g1", "redeemed", pass_id=victim, detail="r-forged")
    assumed = event("arena-g1", "reservation_assumed", pass_id=victim)
    refused = event("arena-g1", "decision", pass_id=victim, decision="refuse", reason="revoked")
    exit_admit = admitted("g1", other, "exit")[0]  # an admit for the other direction
    wrong_way = event("arena-g1", "redeemed", pass_id=other, direction="entry")
    not_hex = event("arena-g1", "redeemed", pass_id="zz" * 16)
    fine = event("arena-g1", "tamper", detail="door forced")
    ack = post(hub, tokens["g1"], "g1", [forged, refused, assumed, exit_admit, wrong_way, not_hex, fine])
    assert {r["event_id"] for r in ack["rejected"]} == {e["event_id"] for e in
                                                       (forged, assumed, wrong_way, not_hex)}
    assert all("no admit decision of this gate" in r["why"] for r in ack["rejected"][:2])
    assert sorted(ack["acked"]) == sorted(e["event_id"] for e in (refused, exit_admit, fine))
    assert ack["stored"] == 3
    assert forged["event_id"] in caplog.text and "arena-g1" in caplog.text
    for gate in ("g2", "g3"):
        assert pull(hub, tokens[gate], gate)["redemptions"] == []
    assert pull(hub, tokens["g1"], "g1", include_own="true")["redemptions"] == []
    # one admit backs one redemption; another gate's admit backs nothing here
    post(hub, tokens["g2"], "g2", [admitted("g2", victim)[0]])
    first, again = admitted("g1", victim), event("arena-g1", "redeemed", pass_id=victim)
    ack = post(hub, tokens["g1"], "g1", [*first, again])
    assert [r["event_id"] for r in ack["rejected"]] == [again["event_id"]]
    shared = pull(hub, tokens["g2"], "g2")["redemptions"]
    assert [(r["pass_id"], r["gate_id"]) for r in shared] == [(victim, "arena-g1")]


def test_future_events_are_refused_for_good_and_the_rest_stored(hub: HubServer, caplog) -> None:
    admin = hub.admin()
    tokens = setup_venue(hub, admin)
    pass_id = issue(hub, admin)[0]["pass_id"]
    entry = admitted("g1", pass_id)
    exit_ = admitted("g1", pass_id, "exit", t=4e9)
    caplog.set_level(logging.WARNING, logger="passgate_hub")
    # no heartbeat yet: the hub cannot tell a wrong clock from a lie, so it stores nothing of it
    # and refuses nothing for good
    ack = post(hub, tokens["g1"], "g1", [*entry, *exit_])
    assert ack["rejected"] == []
    assert [d["event_id"] for d in ack["deferred"]] == [e["event_id"] for e in exit_]
    assert sorted(ack["acked"]) == sorted(e["event_id"] for e in entry)
    assert beat(hub, tokens["g1"], "g1", time.time()).status_code == 200
    ack = post(hub, tokens["g1"], "g1", exit_)
    assert [r["event_id"] for r in ack["rejected"]] == [e["event_id"] for e in exit_]
    assert "ahead of the hub's clock" in ack["rejected"][0]["why"]
    assert (ack["acked"], ack["stored"], ack["deferred"]) == ([], 0, [])
    assert exit_[1]["event_id"] in caplog.text
    shared = pull(hub, tokens["g2"], "g2")["redemptions"]
    assert [r["direction"] for r in shared] == ["entry"]
    rows = admin.get(f"{hub.url}/v1/admin/venues/arena/events", timeout=TIMEOUT).json()
    assert sorted(r["event_id"] for r in rows) == sorted(e["event_id"] for e in entry)
    assert all(r["hub_t"] <= r["received_at"] for r in rows)


def test_a_gate_two_hours_fast_is_served_at_hub_time(hub: HubServer) -> None:
    admin = hub.admin()
    tokens = setup_venue(hub, admin)
    pass_id = issue(hub, admin)[0]["pass_id"]
    fast = 7200.0
    assert beat(hub, tokens["g1"], "g1", time.time() + fast, state="idle").status_code == 200
    sent = time.time()
    ack = post(hub, tokens["g1"], "g1", admitted("g1", pass_id, t=sent + fast))
    assert ack["rejected"] == [] and ack["stored"] == 2
    (shared,) = pull(hub, tokens["g2"], "g2")["redemptions"]
    assert abs(shared["t"] - sent) < 60  # hub time, not the gate's clock two hours ahead
    rows = admin.get(f"{hub.url}/v1/admin/venues/arena/events", timeout=TIMEOUT).json()
    assert all(r["t"] > sent + fast - 60 for r in rows)  # the gate's claim is kept beside it
    gates = {g["gate_id"]: g for g in admin.get(f"{hub.url}/v1/admin/gates", timeout=TIMEOUT).json()}
    assert (gates["arena-g1"]["protocol"], gates["arena-g1"]["state"]) == (wire.PROTOCOL_VERSION, "idle")
    assert gates["arena-g1"]["clock_skew_s"] > fast - 60


def test_double_redemption_raises_one_alert_listing_both_gates(hub: HubServer, db_url: str,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    admin = hub.admin()
    tokens = setup_venue(hub, admin)
    single, double = (p["pass_id"] for p in issue(hub, admin, count=2))
    twice = issue(hub, admin, entries=2)[0]["pass_id"]
    external = uuid.uuid4().hex  # issued elsewhere: its entry limit comes with the admits
    now = time.time()
    # both gates were cut off from the hub and from each other: each admitted ``single``
    g1 = [*admitted("g1", single, t=now - 300), *admitted("g1", twice, t=now - 300),
          *admitted("g1", external, t=now - 200, entries=2)]
    g2 = [*admitted("g2", single, t=now - 100), *admitted("g2", twice, t=now - 90),
          *admitted("g2", external, t=now - 80, entries=2), *admitted("g2", double, t=now - 50)]
    g3 = [*admitted("g3", external, t=now - 10, entries=2)]
    for gate, events in (("g1", g1), ("g2", g2), ("g3", g3)):
        assert post(hub, tokens[gate], gate, events)["stored"] == len(events)
    alerts = admin.get(f"{hub.url}/v1/admin/venues/arena/alerts", timeout=TIMEOUT).json()
    assert [(a["kind"], a["pass_id"], a["gates"]) for a in alerts] == [
        ("double_redemption", single, ["arena-g1", "arena-g2"]),
        ("double_redemption", external, ["arena-g1", "arena-g2", "arena-g3"])]
    first = alerts[0]
    assert first["event_id"] == g2[1]["event_id"] and first["entries"] == 1 and first["venue"] == "arena"
    assert first["apart_s"] == pytest.approx(200, abs=1)
    assert [r["t"] for r in first["redemptions"]] == pytest.approx([now - 299, now - 99], abs=1)
    # re-sent batches store nothing twice and raise nothing again
    for gate, events in (("g1", g1), ("g2", g2), ("g3", g3)):
        ack = post(hub, tokens[gate], gate, events)
        assert (ack["stored"], ack["duplicates"], ack["rejected"]) == (0, len(events), [])
    assert admin.get(f"{hub.url}/v1/admin/venues/arena/alerts", timeout=TIMEOUT).json() == alerts
    assert run_cli(db_url, capsys, "alerts", "arena") == alerts
    # a third admission of ``single`` is one more excess redemption: one more alert
    post(hub, tokens["g3"], "g3", admitted("g3", single))
    latest = admin.get(f"{hub.url}/v1/admin/venues/arena/alerts", params={"after": alerts[-1]["id"]},
                       timeout=TIMEOUT).json()
    assert [(a["pass_id"], a["gates"]) for a in latest] == [(single, ["arena-g1", "arena-g2", "arena-g3"])]


@pytest.mark.parametrize("route", ["bundle", "events", "redemptions", "heartbeat"])
def test_protocol_header(hub: HubServer, route: str) -> None:
    admin = hub.admin()
    tokens = setup_venue(hub, admin)
    method, body = ("POST", {"events": []} if route == "events" else {"t": time.time()}) \
        if route in ("events", "heartbeat") else ("GET", None)
    url = f"{hub.url}/v1/gates/arena-g1/{route}"

    def call(value: str | None) -> requests.Response:
        headers = {} if value is None else {wire.PROTOCOL_HEADER: value}
        return gate_client(tokens["g1"]).request(method, url, json=body, headers=headers, timeout=TIMEOUT)

    assert call(None).status_code == 200  # a gate from before the header: protocol 1
    assert call(str(wire.PROTOCOL_VERSION)).status_code == 200
    newer = call(str(wire.PROTOCOL_VERSION + 1))
    assert newer.status_code == 426 and "upgrade the hub" in newer.json()["detail"]
    assert newer.headers[wire.PROTOCOL_HEADER] == str(wire.PROTOCOL_VERSION)
    for bad in ("0", "two", "-1", "9" * 40):
        r = call(bad)
        assert r.status_code == 400 and wire.PROTOCOL_HEADER in r.json()["detail"], bad


def test_heartbeat_records_the_protocol_it_names(hub: HubServer) -> None:
    tokens = setup_venue(hub, hub.admin())
    url = f"{hub.url}/v1/gates/arena-g1/heartbeat"
    for headers, protocol in (({}, 1), (V2, wire.PROTOCOL_VERSION)):
        r = gate_client(tokens["g1"]).post(url, json={"t": time.time()}, headers=headers, timeout=TIMEOUT)
        assert r.status_code == 200
        with hub.session() as s:
            assert s.query(Gate).filter_by(gate_id="arena-g1").one().protocol == protocol


def test_a_page_holds_whole_transactions(hub: HubServer) -> None:
    admin = hub.admin()
    tokens = setup_venue(hub, admin)
    passes = [p["pass_id"] for p in issue(hub, admin, count=3)]
    post(hub, tokens["g1"], "g1", [e for p in passes for e in admitted("g1", p)])
    post(hub, tokens["g1"], "g1", admitted("g1", passes[0], "exit"))
    page = pull(hub, tokens["g2"], "g2", limit=1)
    assert [r["pass_id"] for r in page["redemptions"]] == passes  # one batch: never split
    page = pull(hub, tokens["g2"], "g2", page["cursor"], limit=1)
    assert [r["direction"] for r in page["redemptions"]] == ["exit"]
    assert pull(hub, tokens["g2"], "g2", page["cursor"]) == {"redemptions": [], "cursor": page["cursor"],
                                                            "more": False}


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # SQLite has one writer: no late commits
def test_the_cursor_never_passes_a_redemption_that_commits_late(hub: HubServer) -> None:
    """Ingest takes no venue-wide lock: on PostgreSQL a batch that began first may commit last.
    (SQLite has one writer, so commits come in position order there by construction.)"""
    admin = hub.admin()
    tokens = setup_venue(hub, admin)
    early, late = (p["pass_id"] for p in issue(hub, admin, count=2))
    with hub.session() as slow:
        gate = slow.query(Gate).filter_by(gate_id="arena-g1").one()
        done = ingest.ingest(slow, gate, admitted("g1", early))  # inserted, not yet committed
        assert done.stored == 2
        post(hub, tokens["g3"], "g3", admitted("g3", late))  # begins later, commits first
        seen = pull(hub, tokens["g2"], "g2")
        assert seen["redemptions"] == [] and seen["cursor"] == 0  # held back: one may commit below
        slow.commit()
    after = pull(hub, tokens["g2"], "g2", seen["cursor"])
    assert [r["pass_id"] for r in after["redemptions"]] == [early, late]
    with hub.session() as s:  # both batches took a position of their own, in commit-safe order
        positions = s.execute(text("SELECT DISTINCT pos FROM events ORDER BY pos")).scalars().all()
    assert len(positions) == 2 and after["cursor"] == positions[-1]


def waiting(hub: HubServer, deadline_s: float = 30.0) -> None:
    """Return once a transaction waits for a pass lock (the deadline only keeps a broken hub from
    hanging the run)."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        with hub.session() as s:
            if s.execute(text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                              "AND NOT granted")).scalar():
                return
        time.sleep(0.02)
    raise AssertionError("no batch waited for the pass")


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # SQLite: batches never overlap
def test_two_gates_redeeming_one_pass_at_once_raise_the_alert(hub: HubServer) -> None:
    """Without a venue-wide lock, two batches redeeming one pass may run at once on PostgreSQL:
    neither may miss the other's redemption."""
    admin = hub.admin()
    tokens = setup_venue(hub, admin)
    pass_id = issue(hub, admin)[0]["pass_id"]
    with hub.session() as slow:
        gate = slow.query(Gate).filter_by(gate_id="arena-g1").one()
        assert ingest.ingest(slow, gate, admitted("g1", pass_id)).stored == 2  # not yet committed
        with ThreadPoolExecutor(1) as pool:
            other = pool.submit(post, hub, tokens["g2"], "g2", admitted("g2", pass_id))
            waiting(hub)  # g2's batch waits for the pass, held by the open batch
            slow.commit()
            assert other.result(timeout=TIMEOUT)["stored"] == 2
    alerts = admin.get(f"{hub.url}/v1/admin/venues/arena/alerts", timeout=TIMEOUT).json()
    assert [(a["pass_id"], a["gates"]) for a in alerts] == [(pass_id, ["arena-g1", "arena-g2"])]


@pytest.mark.parametrize(("text", "loc"), [("nul \x00 inside", ["body", "events", 1, "detail"]),
                                           ("\ud800 lone surrogate", ["body"])])
def test_text_a_database_cannot_hold_is_a_422(hub: HubServer, text: str, loc: list[object]) -> None:
    """PostgreSQL's text holds no NUL (the field is named), and no encoding a lone surrogate (not
    valid JSON text): the batch is refused with 422, never a 500, on both databases; the gate then
    sends its events one by one and keeps the refused one."""
    tokens = setup_venue(hub, hub.admin())
    events = [event("arena-g1", "decision", detail="fine"), event("arena-g1", "decision", detail=text)]
    body = json.dumps({"events": events}).encode()  # \u escapes: what a JSON encoder sends
    r = gate_client(tokens["g1"]).post(f"{hub.url}/v1/gates/arena-g1/events", data=body, headers={
        **V2, "Content-Type": "application/json"}, timeout=TIMEOUT)
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == loc
    assert post(hub, tokens["g1"], "g1", events[:1])["stored"] == 1
