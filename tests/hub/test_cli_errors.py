"""``passgate-hub`` says what went wrong in one line (exit 1), never a traceback: a database it
cannot open or reach, a number out of range, a reader that stopped reading (every command's
--help: ``tests/test_cli_help.py``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .pgcluster import free_port


def hub(*argv: str, cwd: Path, stdout: int | None = subprocess.PIPE) -> subprocess.CompletedProcess[str]:
    """The real command in a child process (a traceback there is what an operator would see)."""
    command = str(Path(sys.executable).with_name("passgate-hub"))
    return subprocess.run([command, *argv], cwd=cwd, stdout=stdout, stderr=subprocess.PIPE, text=True,
                          timeout=60, check=False)


@pytest.mark.parametrize(("url", "says"), [
    ("sqlite:////no/such/dir/hub.db", "unable to open database file (does its directory exist"),
    ("mysql+nosuchdriver://hub@localhost/hub", "no database driver for mysql+nosuchdriver://"),
    ("not a url", "'not a url' is not a database URL"),
    ("postgresql+psycopg://hub:s3cret@127.0.0.1:{port}/hub", "Connection refused"),
])
@pytest.mark.parametrize("command", [["venue", "list"], ["serve", "--port", "{port}"], ["migrate"]])
def test_a_database_the_hub_cannot_use_is_one_line(tmp_path: Path, url: str, says: str,
                                                   command: list[str]) -> None:
    port = str(free_port())  # nothing listens there
    argv = ["--database", url.format(port=port), *(a.format(port=port) for a in command)]
    done = hub(*argv, cwd=tmp_path)
    assert done.returncode == 1, done
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"passgate-hub {command[0]}"), done.stderr
    assert says in lines[0]
    assert "s3cret" not in done.stderr  # the URL's password is never printed


def test_a_reader_that_stops_early_is_no_traceback(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    assert hub("--database", url, "venue", "create", "arena", cwd=tmp_path).returncode == 0
    read, write = os.pipe()
    os.close(read)  # ``| head`` that has already exited: every write is EPIPE
    try:
        done = hub("--database", url, "venue", "list", cwd=tmp_path, stdout=write)
    finally:
        os.close(write)
    assert done.returncode == 0 and done.stderr == "", done.stderr


@pytest.mark.parametrize(("argv", "says"), [
    (["issue", "arena", "--count", "1", "--valid-until", "+1h", "--out", "o", "--entries", str(2**63)],
     "argument --entries: 9223372036854775808 is outside 1..2147483647"),
    (["issue", "arena", "--count", "0", "--valid-until", "+1h", "--out", "o"],
     "argument --count: 0 is outside"),
    (["events", "arena", "--after", str(2**63)], "argument --after: 9223372036854775808 is outside 0.."),
    (["alerts", "arena", "--limit", "many"], "argument --limit: not a whole number: 'many'"),
])
def test_numbers_out_of_range_are_refused_before_the_database(tmp_path: Path, argv: list[str],
                                                              says: str) -> None:
    done = hub("--database", f"sqlite:///{tmp_path / 'hub.db'}", *argv, cwd=tmp_path)
    assert done.returncode == 2 and says in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
