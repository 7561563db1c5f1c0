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


def test_check_config() -> None:
    ok = passgated("check-config", str(ROOT / "packaging/gate.toml"))
    assert ok.returncode == 0 and "OK" in ok.stdout


@pytest.mark.parametrize("args", [["check-config", "/nonexistent.toml"], ["run", "--config", "/nope"],
                                  ["simulate", "--trust", "/nonexistent"], ["reset", "--url",
                                                                             "http://127.0.0.1:9"]])
def test_errors_are_one_line_exit_2(args: list[str]) -> None:
    result = passgated(*args, stdin="")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and result.stderr.strip().count("\n") == 0
