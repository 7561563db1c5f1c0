"""What the operator gives the hub is checked, through ``passgate-hub`` on a temp SQLite database
and through the real hub over loopback HTTP (SQLite and PostgreSQL): zones that exist, pass ids the
hub issued (unless external), the SDK's time forms, the SDK's CSV, and gate settings within the
wire's bounds."""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from passgate import TrustStore, verify_pass, wire
from passgate.batch import CSV_FIELDS
from passgate.cli import main as sdk_main
from passgate_hub import cli, db, ops

from .server import HubServer
from .test_api import gate_client, setup_venue

TIMEOUT = 10
Run = Callable[..., tuple[int, str, str]]
TIME_ERROR = "is not a time (give epoch seconds, ISO 8601 with a zone, now, or +4h)"


@pytest.fixture
def database(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'hub.db'}"


@pytest.fixture
def hub_cli(database: str, capsys: pytest.CaptureFixture[str]) -> Run:
    """``run(*argv)`` → ``(exit status, stdout, stderr)`` of ``passgate-hub`` on a venue "arena"
    with zones floor and vip and a hub-held issuer key."""

    def run(*argv: str) -> tuple[int, str, str]:
        status = cli.main(["--database", database, *argv])
        out, err = capsys.readouterr()
        return status, out, err

    for argv in (["venue", "create", "arena"], ["zone", "create", "arena", "floor"],
                 ["zone", "create", "arena", "vip"], ["key", "add", "arena"]):
        assert run(*argv)[0] == 0
    return run


def issued_rows(run: Run, out: Path, *extra: str) -> list[dict[str, str]]:
    status, _, err = run("issue", "arena", "--count", "2", "--valid-until", "+4h", "--zone", "floor",
                         "--out", str(out), *extra)
    assert status == 0, err
    return list(csv.DictReader((out / "passes.csv").open()))


# -- zones ---------------------------------------------------------------------------------------


def test_cli_refuses_a_zone_the_venue_lacks(hub_cli: Run, tmp_path: Path) -> None:
    status, out, err = hub_cli("issue", "arena", "--count", "1", "--valid-until", "+4h",
                               "--zone", "flor", "--out", str(tmp_path / "p"))
    assert (status, out) == (1, "")
    assert err == "passgate-hub issue: no zone 'flor' in 'arena' (its zones: floor, vip)\n"
    assert not (tmp_path / "p").exists()
    status, _, err = hub_cli("gate", "create", "arena", "g1", "--zone", "flor")
    assert status == 1 and err.startswith("passgate-hub gate create: no zone 'flor' in 'arena'")


# -- revoke / block / unblock --------------------------------------------------------------------


def test_cli_deny_lists_take_only_passes_the_hub_issued_unless_external(hub_cli: Run, tmp_path: Path) -> None:
    real = [row["pass_id"] for row in issued_rows(hub_cli, tmp_path / "p")]
    stranger, other = "ab" * 16, "cd" * 16
    for command in ("revoke", "block", "unblock"):
        status, out, err = hub_cli(command, "arena", real[0], stranger, other)
        assert (status, out) == (1, "")
        assert err == (f"passgate-hub {command}: 2 of 3 pass ids were not issued by this hub for "
                       f"'arena' (first: {stranger}); mark them external if another issuer signed them\n")
    status, out, _ = hub_cli("revoke", "arena", real[0].upper())  # nothing was listed before
    assert status == 0 and '"version": 1' in out and '"changed": 1' in out
    (tmp_path / "ids.txt").write_text(f"{stranger}\n\n{other}\n")
    status, out, err = hub_cli("block", "arena", "--file", str(tmp_path / "ids.txt"), "--external")
    assert status == 0, err
    assert '"changed": 2' in out
    status, _, err = hub_cli("block", "arena", "xyz", "--external")
    assert (status, err) == (1, "passgate-hub block: not a pass id: 'xyz' (give 32 hex characters)\n")
    assert hub_cli("block", "arena")[2] == "passgate-hub block: no pass ids given\n"
    (tmp_path / "none.txt").write_text("")  # a pull's ids/unblocked.txt on most days: nothing to do
    status, out, err = hub_cli("unblock", "arena", "--file", str(tmp_path / "none.txt"), "--external")
    assert status == 0, err
    assert '"changed": 0' in out and "holds no pass ids: nothing changed" in out


# -- times ---------------------------------------------------------------------------------------


def test_cli_takes_the_sdks_time_forms(hub_cli: Run, tmp_path: Path) -> None:
    before = time.time()
    for n, (start, end) in enumerate([("now", "+4h"), ("+0h", "+2d"), (str(int(before)), "+90m"),
                                      ("2026-07-01T18:00Z", "2026-07-01T20:00:00+02:00")]):
        status, _, err = hub_cli("issue", "arena", "--count", "1", "--valid-from", start,
                                 "--valid-until", end, "--out", str(tmp_path / str(n)))
        if n == 3:  # 20:00+02:00 is 18:00Z: the zone is read, so the window is empty
            assert status == 1 and "valid_until must be after valid_from" in err
        else:
            assert status == 0, err
    status, _, err = hub_cli("issue", "arena", "--count", "1", "--valid-until", "+4h",
                             "--out", str(tmp_path / "default"))
    assert status == 0, err  # --valid-from defaults to now, as in the SDK
    assert hub_cli("events", "arena", "--since=-30m", "--until", "now")[0] == 0


def test_issued_pass_has_the_window_asked_for(hub_cli: Run, database: str, tmp_path: Path) -> None:
    row = issued_rows(hub_cli, tmp_path / "p", "--valid-from", "now")[0]
    now = time.time()
    engine = db.make_engine(database)
    with db.session_factory(engine)() as session:
        keys = ops.list_keys(session, ops.get_venue(session, "arena"))
    engine.dispose()
    trust = TrustStore(load_pem_public_key(k.public_pem.encode()) for k in keys  # type: ignore[misc]
                       if k.purpose == "passes")
    p = verify_pass(row["text"], trust)
    assert p.pass_id_hex == row["pass_id"]
    assert abs(p.valid_from - now) < 60 and abs(p.valid_until - (now + 4 * 3600)) < 60


@pytest.mark.parametrize(("argv", "flag", "value"), [
    (["issue", "arena", "--count", "1", "--valid-from", "tomorrow", "--valid-until", "+4h"],
     "--valid-from", "tomorrow"),
    (["issue", "arena", "--count", "1", "--valid-until", "4h"], "--valid-until", "4h"),
    (["events", "arena", "--since", "yesterday"], "--since", "yesterday"),
    (["events", "arena", "--until", "nan"], "--until", "nan"),
])
def test_cli_bad_times_name_the_flag_and_the_forms(hub_cli: Run, tmp_path: Path, argv: list[str],
                                                    flag: str, value: str) -> None:
    if argv[0] == "issue":
        argv = [*argv, "--out", str(tmp_path / "p")]
    status, out, err = hub_cli(*argv)
    assert (status, out) == (1, "")
    assert err == f"passgate-hub {argv[0]}: {flag}: {value!r} {TIME_ERROR}\n"


def test_a_time_without_a_zone_is_refused_not_guessed(hub_cli: Run, tmp_path: Path) -> None:
    status, _, err = hub_cli("issue", "arena", "--count", "1", "--valid-from", "2026-07-01T18:00",
                             "--valid-until", "+4h", "--out", str(tmp_path / "p"))
    assert status == 1
    assert err == ("passgate-hub issue: --valid-from: '2026-07-01T18:00' has no time zone "
                   "(add Z or an offset such as +02:00)\n")


# -- CSV -----------------------------------------------------------------------------------------


def test_both_clis_write_the_same_csv(hub_cli: Run, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    hub_rows = issued_rows(hub_cli, tmp_path / "hub")
    assert sdk_main(["keygen", "--out", str(tmp_path / "keys")]) == 0
    assert sdk_main(["issue", "--key", str(tmp_path / "keys" / "issuer.key.pem"), "--valid-until", "+4h",
                     "--count", "2", "--out", str(tmp_path / "sdk")]) == 0
    capsys.readouterr()
    headers = [next(csv.reader((tmp_path / d / "passes.csv").open())) for d in ("hub", "sdk")]
    assert headers == [list(CSV_FIELDS)] * 2 == [["pass_id", "text", "qr_file"]] * 2
    for row in hub_rows:
        assert row["text"].startswith("PG1:") and row["qr_file"] == f"{row['pass_id']}.png"
        assert (tmp_path / "hub" / row["qr_file"]).read_bytes()[:4] == b"\x89PNG"
    no_qr = issued_rows(hub_cli, tmp_path / "csv-only", "--no-qr")
    assert [row["qr_file"] for row in no_qr] == ["", ""]
    assert list((tmp_path / "csv-only").iterdir()) == [tmp_path / "csv-only" / "passes.csv"]
    # a second batch into the same directory would overwrite passes already handed out
    status, _, err = hub_cli("issue", "arena", "--count", "1", "--valid-until", "+4h", "--out",
                             str(tmp_path / "hub"))
    assert status == 1 and err.endswith("passes.csv already exists; choose an empty directory\n")


# -- gate settings -------------------------------------------------------------------------------


def gates(run: Run) -> dict[str, dict[str, object]]:
    status, out, _ = run("gate", "list")
    assert status == 0
    return {g["gate_id"]: g for g in json.loads(out)}


def test_cli_gate_settings_are_checked_stored_and_listed(hub_cli: Run) -> None:
    status, _, err = hub_cli("gate", "create", "arena", "g1", "--zone", "floor", "--anti-passback",
                             "--anti-passback-minutes", "20", "--stale-policy", "refuse",
                             "--max-list-age-hours", "6", "--skew-seconds", "90", "--relay-pulse-ms", "300",
                             "--passage-timeout-ms", "8000", "--refusal-display-ms", "1500")
    assert status == 0, err
    every = {"anti_passback": True, "anti_passback_minutes": 20.0, "stale_policy": "refuse",
             "max_list_age_hours": 6.0, "skew_seconds": 90.0, "relay_pulse_ms": 300.0,
             "passage_timeout_ms": 8000.0, "refusal_display_ms": 1500.0}
    assert set(every) == {f for f in wire.GateSettings.__dataclass_fields__ if f != "zones"}
    assert gates(hub_cli)["g1"]["settings"] == every
    assert hub_cli("gate", "create", "arena", "g2")[0] == 0
    assert gates(hub_cli)["g2"]["settings"] == {}

    status, out, err = hub_cli("gate", "set", "arena", "g1", "--no-anti-passback",
                               "--unset", "relay-pulse-ms", "--zone", "vip")
    assert status == 0, err
    g1 = gates(hub_cli)["g1"]
    assert g1["zone"] == "vip"
    assert g1["settings"] == {**{k: v for k, v in every.items() if k != "relay_pulse_ms"},
                              "anti_passback": False}

    for argv, message in [
        (["create", "arena", "g3", "--relay-pulse-ms", "5"],
         "settings.relay_pulse_ms: must be between 10 and 5000, got 5.0"),
        (["set", "arena", "g1", "--skew-seconds", "-1"],
         "settings.skew_seconds: must be between 0 and 3600, got -1.0"),
        (["set", "arena", "g1", "--skew-seconds", "9", "--unset", "skew-seconds"],
         "--skew-seconds is both given and unset"),
        (["set", "arena", "nope", "--skew-seconds", "9"], "no gate 'nope' in 'arena'"),
        (["set", "arena", "g1", "--zone", "flor"], "no zone 'flor' in 'arena' (its zones: floor, vip)"),
    ]:
        status, out, err = hub_cli("gate", *argv)
        assert (status, out, err) == (1, "", f"passgate-hub gate {argv[0]}: {message}\n")
    assert gates(hub_cli)["g1"] == g1 and "g3" not in gates(hub_cli)


# -- the admin API over loopback -----------------------------------------------------------------


def test_api_refuses_unknown_zones_and_pass_ids(hub: HubServer) -> None:
    admin = hub.admin()
    setup_venue(hub, admin)
    base = f"{hub.url}/v1/admin/venues/arena"
    body = {"count": 1, "valid_from": time.time(), "valid_until": time.time() + 3600}
    r = admin.post(f"{base}/passes", json={**body, "zones": ["floor", "flor"]}, timeout=TIMEOUT)
    assert r.status_code == 404
    assert r.json() == {"detail": "no zone 'flor' in 'arena' (its zones: floor, vip)"}
    r = admin.post(f"{base}/passes", json={**body, "zones": ["floor"]}, timeout=TIMEOUT)
    [issued] = r.json()["passes"]

    stranger = "ef" * 16
    for route in ("revocations", "blocks", "unblocks"):
        r = admin.post(f"{base}/{route}", json={"pass_ids": [stranger, issued["pass_id"]]}, timeout=TIMEOUT)
        assert r.status_code == 404, r.text
        assert r.json()["detail"].startswith(f"1 of 2 pass ids were not issued by this hub for 'arena' "
                                             f"(first: {stranger})")
    r = admin.post(f"{base}/revocations", json={"pass_ids": [issued["pass_id"]]}, timeout=TIMEOUT)
    assert r.json() == {"kind": "revoked", "version": 1, "changed": 1}
    r = admin.post(f"{base}/blocks", json={"pass_ids": [stranger], "external": True}, timeout=TIMEOUT)
    assert r.json() == {"kind": "blocked", "version": 1, "changed": 1}
    # a pass of another venue is not one this venue issued
    assert admin.post(f"{hub.url}/v1/admin/venues", json={"name": "stadium"}, timeout=TIMEOUT).ok
    r = admin.post(f"{hub.url}/v1/admin/venues/stadium/blocks", json={"pass_ids": [issued["pass_id"]]},
                   timeout=TIMEOUT)
    assert r.status_code == 404


def test_api_gate_settings_are_checked_stored_and_sent(hub: HubServer) -> None:
    admin = hub.admin()
    setup_venue(hub, admin)
    base = f"{hub.url}/v1/admin/venues/arena/gates"
    settings = {"anti_passback": True, "anti_passback_minutes": 15, "stale_policy": "guard"}
    r = admin.post(base, json={"gate_id": "arena-g9", "zone": "vip", "settings": settings}, timeout=TIMEOUT)
    assert r.status_code == 201, r.text
    token = r.json()["token"]
    listed = {g["gate_id"]: g for g in admin.get(f"{hub.url}/v1/admin/gates", timeout=TIMEOUT).json()}
    assert listed["arena-g9"]["settings"] == {**settings, "anti_passback_minutes": 15.0}
    assert listed["arena-g1"]["settings"] == {}

    for bad, detail in [
        ({"relay_pulse_ms": 1}, "settings.relay_pulse_ms: must be between 10 and 5000, got 1"),
        ({"stale_policy": "maybe"}, "settings.stale_policy: one of admit, guard, refuse, got 'maybe'"),
        ({"anti_passback": "yes"}, "settings.anti_passback: expected true or false"),
        ({"beep": True}, "settings.beep: not a gate setting"),
        ({"zones": ["vip"]}, "settings.zones: not a gate setting"),
    ]:
        r = admin.post(base, json={"gate_id": "arena-g8", "settings": bad}, timeout=TIMEOUT)
        assert r.status_code == 422, (bad, r.text)
        assert r.json()["detail"].startswith(detail), r.text
        r = admin.patch(f"{base}/arena-g9", json={"settings": bad}, timeout=TIMEOUT)
        assert r.status_code == 422 and r.json()["detail"].startswith(detail), r.text
    assert admin.post(base, json={"gate_id": "arena-g8", "config": {}}, timeout=TIMEOUT).status_code == 422

    r = admin.patch(f"{base}/arena-g9", json={"zone": "floor",
                                              "settings": {"anti_passback": None, "skew_seconds": 30}},
                    timeout=TIMEOUT)
    assert r.status_code == 200, r.text
    assert (r.json()["zone"], r.json()["settings"]) == (
        "floor", {"anti_passback_minutes": 15.0, "stale_policy": "guard", "skew_seconds": 30.0})
    bundle = gate_client(token).get(f"{hub.url}/v1/gates/arena-g9/bundle", timeout=TIMEOUT).json()
    sent = wire.parse(wire.GateSettings, bundle["settings"])
    assert sent.given() == {"zones": ["floor"], "anti_passback_minutes": 15.0,
                            "stale_policy": wire.StaleListPolicy.GUARD, "skew_seconds": 30.0}

    assert admin.patch(f"{base}/nope", json={}, timeout=TIMEOUT).status_code == 404
    r = admin.patch(f"{base}/arena-g9", json={"zone": "flor"}, timeout=TIMEOUT)
    assert r.status_code == 404 and "its zones: floor, vip" in r.json()["detail"]
    # a gate of another venue is not reached through this one
    assert admin.post(f"{hub.url}/v1/admin/venues", json={"name": "stadium"}, timeout=TIMEOUT).ok
    r = admin.patch(f"{hub.url}/v1/admin/venues/stadium/gates/arena-g9", json={}, timeout=TIMEOUT)
    assert r.status_code == 404
