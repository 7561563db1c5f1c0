"""The ``passgated`` command as a user runs it: demo, simulate from stdin, check-config."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from passgate import generate_private_key, issue_pass
from passgate.keys import write_keypair

ROOT = Path(__file__).parents[2]


def passgated(*args: str, stdin: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "passgated.cli", *args], input=stdin,
                          capture_output=True, text=True, timeout=timeout)


def test_demo_shows_every_kind_of_decision() -> None:
    result = passgated("demo")
    assert result.returncode == 0, result.stderr
    for reason in ("admit", "used_up", "expired", "not_yet_valid", "wrong_zone", "already_inside",
                   "bad_signature", "unreadable"):
        assert f" {reason} " in result.stdout
    assert "relay pulses on the entry relay: 2" in result.stdout
    assert "Traceback" not in result.stderr


def test_simulate_from_stdin(tmp_path: Path) -> None:
    key = generate_private_key()
    write_keypair(key, tmp_path / "keys", "issuer")
    single = issue_pass(key, valid_from=0, valid_until=2**31, zones=["A"], entries=1)
    zone_b = issue_pass(key, valid_from=0, valid_until=2**31, zones=["B"])
    journal = tmp_path / "j.db"
    args = ("simulate", "--trust", str(tmp_path / "keys"), "--zone", "A", "--journal", str(journal),
            "--walk-ms", "0", "--display", "127.0.0.1:0")
    result = passgated(*args, stdin=f"{single}\n{single}\n{zone_b}\nnonsense\n")
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(d["decision"], d["reason"]) for d in lines] == [
        ("admit", "admit"), ("refuse", "used_up"), ("refuse", "wrong_zone"), ("refuse", "unreadable")]
    assert set(lines[0]) >= {"t", "pass_id", "direction", "decision", "reason", "latency_ms"}
    again = passgated(*args, stdin=f"{single}\n")
    assert json.loads(again.stdout)["reason"] == "used_up"  # the journal remembers across runs


def shipped_config(tmp_path: Path, *, keys: bool = True) -> Path:
    """packaging/gate.toml with its trust directory in ``tmp_path`` (holding a key when ``keys``)."""
    trust = tmp_path / "trust"
    trust.mkdir()
    if keys:
        write_keypair(generate_private_key(), trust, "issuer")
    path = tmp_path / "gate.toml"
    path.write_text((ROOT / "packaging/gate.toml").read_text().replace("/etc/passgate/trust", str(trust)))
    return path


def test_check_config(tmp_path: Path) -> None:
    ok = passgated("check-config", str(shipped_config(tmp_path)))
    assert ok.returncode == 0 and "OK" in ok.stdout, ok.stderr


@pytest.mark.parametrize("args", [["check-config", "/nonexistent.toml"], ["run", "--config", "/nope"],
                                  ["simulate", "--trust", "/nonexistent"],
                                  ["reset", "--socket", "/nonexistent/control.sock"]])
def test_errors_are_one_line_exit_2(args: list[str]) -> None:
    result = passgated(*args, stdin="")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and result.stderr.strip().count("\n") == 0


@pytest.mark.parametrize(("extra", "key"), [
    ('[[scanner]]\nsource = "serial:/dev/ttyACM0"\nbaud = "9600"\n', "scanner[0].baud"),
    ('[[scanner]]\nsource = "serial:/dev/ttyACM0"\nbauds = 9600\n', "scanner[0].bauds"),
    ('[[scanner]]\nsource = "seriall:/dev/ttyACM0"\n', "scanner[0].source"),
    ('[[scanner]]\nsource = "serial:socket://127.0.0.1:80900"\n', "scanner[0].source"),
    ("[timing]\nrelay_pulse_ms = 300000000\n", "timing.relay_pulse_ms"),
    ('[display]\nlisten = "127.0.0.1:99999"\n', "display.listen"),
    ('[display]\ncontrol_from = ["127.0.0.1"]\n', "display.control_from"),  # control left HTTP
    ('[display]\nhosts = ["gate 3"]\n', "display.hosts"),
    ("[journal]\nwrite_timeout_ms = 50000\n", "journal.write_timeout_ms"),
    ('[denylist]\nlists = ["revoked", "banned"]\n', "denylist.lists"),
    ('[hub]\nurl = "ftp://hub"\ntoken = "x"\n', "hub.url"),
])
def test_check_config_catches_what_run_would_fail_on(tmp_path: Path, extra: str, key: str) -> None:
    config = tmp_path / "gate.toml"
    write_keypair(generate_private_key(), tmp_path / "trust", "issuer")
    config.write_text('[trust]\ndir = "trust"\n' + extra)
    for command in (["check-config", str(config)], ["run", "--config", str(config)]):
        result = passgated(*command)
        assert result.returncode == 2, result.stdout
        assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1
        assert f"error: {key}" in result.stderr


@pytest.mark.parametrize(("trust", "says"), [
    (None, "trust.dir: not set"),
    ("empty", "no public keys"),
    ("missing", "no such directory"),
])
def test_a_gate_without_keys_is_a_config_error(tmp_path: Path, trust: str | None, says: str) -> None:
    config = tmp_path / "gate.toml"
    (tmp_path / "empty").mkdir()
    config.write_text(f'[trust]\ndir = "{trust}"\n' if trust else "[gate]\n")
    result = passgated("check-config", str(config))
    assert result.returncode == 2 and says in result.stderr and "Traceback" not in result.stderr


def test_simulate_bad_display_address_is_one_line(tmp_path: Path) -> None:
    write_keypair(generate_private_key(), tmp_path / "keys", "issuer")
    result = passgated("simulate", "--trust", str(tmp_path / "keys"), "--display", "127.0.0.1:99999",
                       stdin="")
    assert result.returncode == 2 and "--display" in result.stderr and "Traceback" not in result.stderr


def test_an_address_in_use_is_named(tmp_path: Path) -> None:
    import socket

    write_keypair(generate_private_key(), tmp_path / "keys", "issuer")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = passgated("simulate", "--trust", str(tmp_path / "keys"), "--display", f"127.0.0.1:{port}",
                           stdin="")
    assert result.returncode == 2 and f"127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr


def test_simulate_decides_every_line_of_a_file(tmp_path: Path) -> None:
    """A file is not a scanner: no flood limit, no duplicate suppression. 305 passes, 305 answers."""
    key = generate_private_key()
    write_keypair(key, tmp_path / "keys", "issuer")
    texts = [issue_pass(key, valid_from=0, valid_until=2**31) for _ in range(300)]
    texts += texts[:5]  # shown again: each decided (already inside), not dropped as a duplicate
    result = passgated("simulate", "--trust", str(tmp_path / "keys"), "--walk-ms", "0", "--display",
                       "127.0.0.1:0", "--journal", str(tmp_path / "j.db"), stdin="\n".join(texts) + "\n")
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == 305
    assert [d["reason"] for d in lines[-5:]] == ["already_inside"] * 5


def test_reset_that_does_not_take_exits_non_zero(tmp_path: Path) -> None:
    """``passgated reset`` against a gate whose fire loop is still open says so and exits 1; both
    commands reach the running daemon through its control socket."""
    import re
    import time

    write_keypair(generate_private_key(), tmp_path / "keys", "issuer")
    # simulate without a closed fire loop is impossible (the simulator closes it), so run the gate
    # with mock pins: the mock fire loop reads open, as a cut wire would.
    config = tmp_path / "gate.toml"
    config.write_text('[trust]\ndir = "keys"\n[journal]\npath = "j.db"\n[display]\nlisten = "127.0.0.1:0"\n'
                      '[[scanner]]\nsource = "stdin:"\n')
    child = subprocess.Popen([sys.executable, "-m", "passgated.cli", "run", "--config", str(config)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True)
    try:
        socket_path = None
        assert child.stdout is not None
        for line in child.stdout:
            found = re.search(r"control socket (\S+)", line)
            if found:
                socket_path = found.group(1)
            if "ready: state" in line:
                assert "EMERGENCY" in line
                break
        assert socket_path == str(tmp_path / "control.sock")  # beside the journal by default
        result = passgated("reset", "--socket", socket_path)
        assert result.returncode == 1
        assert "fire loop is still open" in result.stderr and "Traceback" not in result.stderr
        locked = passgated("maintenance", "locked", "--config", str(config))  # the socket from the config
        assert locked.returncode == 0 and '"state": "EMERGENCY"' in locked.stdout
    finally:
        child.terminate()
        child.wait(timeout=20)
        time.sleep(0)


def test_sync_needs_a_hub_and_says_what_failed(tmp_path: Path) -> None:
    (tmp_path / "alone.toml").write_text('[gate]\nid = "n1"\n')
    alone = passgated("sync", "--config", str(tmp_path / "alone.toml"))
    assert (alone.returncode, alone.stderr.strip()) == (
        2, "passgated sync: error: hub: no [hub] section in the config: nothing to sync with")
    (tmp_path / "gate.toml").write_text('[gate]\nid = "n1"\n[hub]\nurl = "http://127.0.0.1:9"\n'
                                        'token = "pgg_x"\n')
    down = passgated("sync", "--config", str(tmp_path / "gate.toml"), "--wait", "1")
    answer = json.loads(down.stdout)
    assert down.returncode == 1 and answer["ok"] is False and answer["keys"] == 0
    assert list(answer["errors"]) == ["heartbeat"] and "ConnectionError" in answer["errors"]["heartbeat"]
    assert "Traceback" not in down.stderr
