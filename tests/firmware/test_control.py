"""Operator control over the gate's Unix socket: a real gate, the real socket, the real CLI.

Who may control the gate is the file system's and the kernel's word (mode 0660 and SO_PEERCRED), so
a client without the credential is a client of another uid. That needs root to set up: as root the
tests run a forked client as ``nobody`` (refused by the file mode, then, with the mode widened on
purpose, by the daemon's peer check; accepted as a member of the socket's group). Without root the
owner's own access is taken away with chmod 000 instead, which exercises the CLI's refusal but not
the peer check.
"""

from __future__ import annotations

import json
import os
import pwd
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from passgate import TrustStore, generate_private_key
from passgated import cli
from passgated.config import load_config
from passgated.control import (
    MAX_MESSAGE,
    SOCKET_MODE,
    Command,
    ControlDenied,
    ControlError,
    ControlRefused,
    ControlRequest,
    ControlServer,
    parse_request,
    send,
)
from passgated.machine import MaintenanceMode, State
from passgated.simulate import SimulatedGate

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="a client of another uid needs root to set up; "
                                "test_a_client_without_access_to_the_socket_is_refused covers non-root")
FREE = ControlRequest(Command.MAINTENANCE, MaintenanceMode.FREE)


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    """A directory ``nobody`` can reach but not write (pytest's tmp_path sits in a private one)."""
    directory = Path(tempfile.mkdtemp(prefix="passgate-control-"))
    directory.chmod(0o755)
    yield directory
    for child in directory.iterdir():
        child.unlink()
    directory.rmdir()


@pytest.fixture
def make_gate(tmp_path: Path) -> Iterator[Callable[..., SimulatedGate]]:
    gates: list[SimulatedGate] = []

    def make(**overrides: object) -> SimulatedGate:
        trust = TrustStore()
        trust.add(generate_private_key().public_key())
        config = load_config(None, journal_path=tmp_path / "journal.db", **overrides)
        gate = SimulatedGate(config, trust=trust, sources=[])
        gates.append(gate)
        gate.start()
        assert gate.wait_settled()
        return gate

    yield make
    for gate in gates:
        gate.stop()


@pytest.fixture
def gate(make_gate: Callable[..., SimulatedGate]) -> SimulatedGate:
    return make_gate(display_listen=False)


def passgated(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "passgated.cli", *args], capture_output=True, text=True,
                          timeout=60)


def raw_exchange(path: Path, data: bytes) -> bytes:
    """Send raw bytes, then read the answer until the server closes."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(20)
        sock.connect(str(path))
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


# The message contract


@pytest.mark.parametrize(("message", "request_"), [
    ({"command": "reset"}, ControlRequest(Command.RESET)),
    ({"command": "maintenance", "mode": "free"}, FREE),
    ({"command": "maintenance", "mode": "locked"},
     ControlRequest(Command.MAINTENANCE, MaintenanceMode.LOCKED)),
    ({"command": "maintenance", "mode": None}, ControlRequest(Command.MAINTENANCE, None)),
])
def test_requests_round_trip(message: dict, request_: ControlRequest) -> None:
    assert parse_request(message) == request_
    assert parse_request(request_.to_json()) == request_


@pytest.mark.parametrize(("message", "says"), [
    ([1, 2], "JSON object"),
    ("reset", "JSON object"),
    ({}, "unknown command None"),
    ({"command": "open"}, "unknown command 'open'"),
    ({"command": ["reset"]}, "unknown command"),
    ({"command": "reset", "mode": "free"}, "unknown field 'mode'"),
    ({"command": "maintenance"}, "mode is required"),
    ({"command": "maintenance", "mode": "open"}, "mode must be"),
    ({"command": "maintenance", "mode": ["free"]}, "mode must be"),
    ({"command": "maintenance", "mode": 1}, "mode must be"),
    ({"command": "maintenance", "mode": "free", "minutes": 5}, "unknown field 'minutes'"),
])
def test_malformed_requests_are_refused_with_the_reason(message: object, says: str) -> None:
    with pytest.raises(ControlError, match=says):
        parse_request(message)


# The socket on a real gate


def test_the_socket_is_0660_owned_by_the_daemon_in_a_private_directory(gate: SimulatedGate) -> None:
    path = gate.layout.control_socket
    assert path == gate.layout.state_dir / "control.sock"
    info = path.lstat()
    assert stat.S_ISSOCK(info.st_mode)
    assert stat.S_IMODE(info.st_mode) == SOCKET_MODE == 0o660
    assert (info.st_uid, info.st_gid) == (os.geteuid(), os.getegid())
    assert not path.parent.stat().st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".control")] == []  # no leftovers


def test_commands_with_the_credential_change_the_gate(gate: SimulatedGate) -> None:
    path = gate.layout.control_socket
    assert send(path, FREE) == {"ok": True, "command": "maintenance", "state": "MAINTENANCE_FREE"}
    assert gate.state is State.MAINTENANCE_FREE
    assert send(path, ControlRequest(Command.MAINTENANCE, None))["state"] == "IDLE"
    assert send(path, ControlRequest(Command.RESET)) == {"ok": True, "command": "reset", "state": "IDLE"}


def test_the_cli_uses_the_socket(gate: SimulatedGate) -> None:
    path = str(gate.layout.control_socket)
    locked = passgated("maintenance", "locked", "--socket", path)
    assert (locked.returncode, locked.stderr) == (0, "")
    assert json.loads(locked.stdout) == {"ok": True, "command": "maintenance", "state": "MAINTENANCE_LOCKED"}
    assert gate.state is State.MAINTENANCE_LOCKED
    assert passgated("maintenance", "off", "--socket", path).returncode == 0
    assert gate.state is State.IDLE


@pytest.mark.parametrize(("data", "says"), [
    (b"\xff\xfe\n", "not a JSON line"),
    (b"reset\n", "not a JSON line"),
    (b"[]\n", "JSON object"),
    (b'{"command": "open"}\n', "unknown command 'open'"),
    (b'{"command": "maintenance", "mode": "wide-open"}\n', "mode must be"),
    (b'{"command": "maintenance", "mode": "free"}', "ended before its newline"),
    (b"x" * (MAX_MESSAGE + 10), f"longer than {MAX_MESSAGE} bytes"),
])
def test_a_malformed_message_is_refused_and_the_server_keeps_serving(
    gate: SimulatedGate, data: bytes, says: str
) -> None:
    path = gate.layout.control_socket
    answer = json.loads(raw_exchange(path, data))
    assert answer["ok"] is False and says in answer["error"]
    assert gate.state is State.IDLE  # nothing changed
    assert send(path, FREE)["state"] == "MAINTENANCE_FREE"  # and the next client is served


def test_a_command_that_does_not_take_says_why(gate: SimulatedGate) -> None:
    gate.io.fire_loop.pin.drive_high()  # the fire loop opens and stays open
    assert gate.wait_settled() and gate.state is State.EMERGENCY
    with pytest.raises(ControlRefused, match="fire loop is still open"):
        send(gate.layout.control_socket, ControlRequest(Command.RESET))
    result = passgated("reset", "--socket", str(gate.layout.control_socket))
    assert result.returncode == 1
    assert result.stderr == ("passgated reset: did not take: still in EMERGENCY: the fire loop is still "
                             "open: close it, then reset\n")


def test_no_gate_listening_is_one_line(tmp_path: Path) -> None:
    result = passgated("reset", "--socket", str(tmp_path / "control.sock"))
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "no gate is listening there" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.skipif(ROOT, reason="root ignores file modes; the other-uid tests cover root")
def test_a_client_without_access_to_the_socket_is_refused(
    gate: SimulatedGate, capsys: pytest.CaptureFixture[str]
) -> None:
    path = gate.layout.control_socket
    path.chmod(0)  # the owner's own access taken away: connect() fails as for another user
    with pytest.raises(ControlDenied):
        send(path, FREE)
    assert cli.main(["maintenance", "free", "--socket", str(path)]) == 1
    assert capsys.readouterr().err == (f"passgated maintenance: refused: no permission to use the gate's "
                                       f"control socket {path} (run as root or the gate's user, or join "
                                       "the socket's group)\n")
    assert gate.state is State.IDLE


# Another uid: file mode, then the daemon's peer check


def as_nobody(action: Callable[[], int]) -> tuple[int, str]:
    """Run ``action`` in a forked child switched to ``nobody``; its exit code and output."""
    nobody = pwd.getpwnam("nobody")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no return from here
        code = 99
        try:
            os.close(read)
            sys.stdout = sys.stderr = open(write, "w", closefd=False)  # noqa: SIM115
            os.setgroups([])
            os.setresgid(nobody.pw_gid, nobody.pw_gid, nobody.pw_gid)
            os.setresuid(nobody.pw_uid, nobody.pw_uid, nobody.pw_uid)
            code = action()
        except BaseException as exc:  # reported to the parent, whose assertion fails
            print(f"child failed: {exc!r}")
        finally:
            sys.stdout.flush()
            os._exit(code)
    os.close(write)
    with open(read, "rb") as pipe:
        output = pipe.read().decode()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), output


def try_free(path: Path) -> Callable[[], int]:
    def action() -> int:
        try:
            send(path, FREE)
        except ControlDenied:
            return 10
        except ControlRefused as refused:
            print(refused)
            return 11
        return 0
    return action


@needs_root
def test_another_uid_is_refused_by_the_sockets_mode(
    make_gate: Callable[..., SimulatedGate], socket_dir: Path
) -> None:
    gate = make_gate(display_listen=False, control_socket=socket_dir / "control.sock")
    assert as_nobody(try_free(gate.layout.control_socket)) == (10, "")  # connect(): EACCES
    code, output = as_nobody(lambda: cli.main(["maintenance", "free", "--socket",
                                               str(gate.layout.control_socket)]))
    assert code == 1
    assert output == (f"passgated maintenance: refused: no permission to use the gate's control socket "
                      f"{gate.layout.control_socket} (run as root or the gate's user, or join the "
                      "socket's group)\n")
    assert gate.state is State.IDLE


@needs_root
def test_the_daemon_checks_the_peer_even_when_the_mode_is_too_wide(
    make_gate: Callable[..., SimulatedGate], socket_dir: Path
) -> None:
    gate = make_gate(display_listen=False, control_socket=socket_dir / "control.sock")
    gate.layout.control_socket.chmod(0o666)  # a mistake by hand: the peer check still holds
    code, output = as_nobody(try_free(gate.layout.control_socket))
    nobody = pwd.getpwnam("nobody").pw_uid
    assert (code, output) == (11, f"uid {nobody} may not control this gate: run as root or the gate's user, "
                                  "or join the control socket's group\n")
    assert gate.state is State.IDLE


@needs_root
def test_a_member_of_the_sockets_group_is_accepted(
    make_gate: Callable[..., SimulatedGate], socket_dir: Path
) -> None:
    gate = make_gate(display_listen=False, control_socket=socket_dir / "control.sock")
    os.chown(gate.layout.control_socket, -1, pwd.getpwnam("nobody").pw_gid)  # as Group= does under systemd
    assert as_nobody(try_free(gate.layout.control_socket)) == (0, "")
    assert gate.state is State.MAINTENANCE_FREE


# Where the socket may live


def test_a_directory_others_can_write_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(OSError, match="writable by group or others"):
        ControlServer(shared / "control.sock", lambda request: {})
    assert list(shared.iterdir()) == []


def test_a_file_in_the_way_is_not_replaced(tmp_path: Path) -> None:
    (tmp_path / "control.sock").write_text("not a socket")
    with pytest.raises(OSError, match="exists and is not a socket"):
        ControlServer(tmp_path / "control.sock", lambda request: {})
    assert (tmp_path / "control.sock").read_text() == "not a socket"


def test_a_stale_socket_is_replaced_and_a_live_one_is_not(tmp_path: Path) -> None:
    path = tmp_path / "control.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # a crashed daemon's socket: nobody listens
    with ControlServer(path, lambda request: {"state": "IDLE"}) as server:
        assert send(path, ControlRequest(Command.RESET)) == {"ok": True, "state": "IDLE"}
        with pytest.raises(OSError, match="another gate is listening"):
            ControlServer(path, lambda request: {})
        assert server.alive()
    assert not path.exists()  # close() removes its socket


def test_a_long_path_works(tmp_path: Path) -> None:
    """sun_path holds 107 bytes; deep directories (as pytest's) go through the directory's descriptor."""
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    path = deep / "control.sock"
    assert len(str(path)) > 108
    with ControlServer(path, lambda request: {"state": "IDLE"}):
        assert stat.S_IMODE(path.lstat().st_mode) == SOCKET_MODE
        assert send(path, ControlRequest(Command.RESET))["ok"] is True


def test_the_config_names_the_socket(make_gate: Callable[..., SimulatedGate], tmp_path: Path) -> None:
    config = tmp_path / "gate.toml"
    config.write_text('[control]\nsocket = "run/gate.sock"\n')
    assert load_config(config).control_socket == tmp_path / "run" / "gate.sock"
    gate = make_gate(display_listen=False, control_socket=tmp_path / "run" / "gate.sock")
    assert stat.S_ISSOCK((tmp_path / "run" / "gate.sock").lstat().st_mode)
    result = passgated("reset", "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert gate.state is State.IDLE
