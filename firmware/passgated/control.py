"""Operator control of a running gate over a Unix domain socket: the message contract, the server
the daemon runs and the client ``passgated reset|maintenance`` uses.

Control can hold a gate open, so who may use it is decided by the operating system, not by an
address: the socket is mode 0660, owned by the daemon's user and group, in a directory that only
its owner (the daemon's user or root) can write; the daemon also reads the peer's credentials
(``SO_PEERCRED``) and answers only root, its own user or a member of the socket's group, and logs
who asked. A web page cannot reach a Unix socket, so DNS rebinding and cross-site requests are out.

One JSON object per connection, one line each way, at most ``MAX_MESSAGE`` bytes::

    → {"command": "maintenance", "mode": "free"}        (mode: "free", "locked" or null = off)
    ← {"ok": true, "command": "maintenance", "state": "MAINTENANCE_FREE"}
    → {"command": "reset"}
    ← {"ok": false, "error": "still in EMERGENCY: the fire loop is still open: close it, then reset"}

A malformed message is answered ``ok: false`` with the reason; nothing a client sends ends the server.
"""

from __future__ import annotations

import contextlib
import grp
import json
import logging
import os
import pwd
import socket
import stat
import struct
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Any

from .machine import MaintenanceMode

__all__ = ["MAX_MESSAGE", "SOCKET_MODE", "Command", "ControlDenied", "ControlError", "ControlRefused",
           "ControlRequest", "ControlServer", "parse_request", "send"]

log = logging.getLogger("passgated")

MAX_MESSAGE = 4096
"""Largest request or answer line: a command is a few fields, so more is a mistake or abuse."""

SOCKET_MODE = 0o660
"""Read and write (connect) for the daemon's user and group, nothing for others."""

TIMEOUT_S = 10.0
"""A client that does not finish its line in this time is answered with an error and dropped; the
gate's control loop answers a command within 5 s or the command is refused."""

_PATH_MAX = 107  # sun_path holds 108 bytes with the terminating NUL


class Command(StrEnum):
    RESET = "reset"  # after an emergency, once the fire loop is closed
    MAINTENANCE = "maintenance"  # free passage, locked, or back to normal


class ControlError(ValueError):
    """A control message that is malformed or names no known command (answered with the reason)."""


class ControlRefused(Exception):
    """A command that was understood but did not take, or a peer that may not control the gate."""


class ControlDenied(PermissionError):
    """The client may not open the control socket (file permissions): this user has no access."""


@dataclass(frozen=True, slots=True)
class ControlRequest:
    """One operator command; ``mode`` only for ``maintenance`` (None turns maintenance off)."""

    command: Command
    mode: MaintenanceMode | None = None

    def to_json(self) -> dict[str, Any]:
        if self.command is Command.MAINTENANCE:
            return {"command": str(self.command), "mode": None if self.mode is None else str(self.mode)}
        return {"command": str(self.command)}


_FIELDS = {Command.RESET: {"command"}, Command.MAINTENANCE: {"command", "mode"}}


def parse_request(message: object) -> ControlRequest:
    """A decoded JSON message as a request; raises ``ControlError`` saying what is wrong."""
    if not isinstance(message, dict):
        raise ControlError("a control message is a JSON object")
    raw = message.get("command")
    if not isinstance(raw, str) or raw not in set(Command):
        raise ControlError(f"unknown command {raw!r} (known: {', '.join(Command)})")
    command = Command(raw)
    extra = set(message) - _FIELDS[command]
    if extra:
        raise ControlError(f"{command}: unknown field {sorted(extra)[0]!r}")
    if command is Command.RESET:
        return ControlRequest(command)
    if "mode" not in message:
        raise ControlError("maintenance: mode is required ('free', 'locked' or null)")
    mode = message["mode"]
    if mode is not None and (not isinstance(mode, str) or mode not in set(MaintenanceMode)):
        raise ControlError("maintenance: mode must be 'free', 'locked' or null")
    return ControlRequest(command, None if mode is None else MaintenanceMode(mode))


def _decode(line: bytes) -> object:
    try:
        return json.loads(line)
    except (UnicodeDecodeError, ValueError):
        raise ControlError("not a JSON line") from None


def _read_line(sock: socket.socket) -> bytes:
    """One newline-terminated line of at most MAX_MESSAGE bytes (without the newline)."""
    buffer = b""
    while b"\n" not in buffer:
        chunk = sock.recv(MAX_MESSAGE + 1 - len(buffer))
        if not chunk:
            raise ControlError("message ended before its newline")
        buffer += chunk
        if len(buffer) > MAX_MESSAGE and b"\n" not in buffer:
            raise ControlError(f"message longer than {MAX_MESSAGE} bytes")
    return buffer.split(b"\n", 1)[0]


def _line(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, default=str).encode() + b"\n"


@contextlib.contextmanager
def _reachable(path: Path) -> Iterator[str]:
    """An address for ``path`` that fits in sun_path: long paths (deep test directories) go
    through the parent directory's descriptor, ``/proc/self/fd/N/name``."""
    if len(os.fsencode(path)) <= _PATH_MAX:
        yield str(path)
        return
    directory = os.open(path.parent, os.O_PATH | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{directory}/{path.name}"
    finally:
        os.close(directory)


def send(path: Path | str, request: ControlRequest, timeout: float = TIMEOUT_S) -> dict[str, Any]:
    """Send one command to the gate listening on ``path``; its answer when the command took.

    Raises ``ControlDenied`` without access to the socket, ``FileNotFoundError`` /
    ``ConnectionRefusedError`` when no gate listens there, ``ControlRefused`` with the gate's reason
    when the command did not take, ``ControlError`` for an answer that is not the contract's.
    """
    path = Path(path)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            with _reachable(path) as address:
                sock.connect(address)
        except PermissionError:
            raise ControlDenied(f"no permission to use the gate's control socket {path}") from None
        sock.sendall(_line(request.to_json()))
        answer = _decode(_read_line(sock))
    if not isinstance(answer, dict) or not isinstance(answer.get("ok"), bool):
        raise ControlError("the gate's answer is not a control answer")
    if not answer["ok"]:
        raise ControlRefused(str(answer.get("error") or "refused without a reason"))
    return answer


def _check_directory(directory: Path) -> None:
    """Refuse a directory where another user could swap the socket for their own."""
    info = directory.stat()
    if info.st_uid not in (0, os.geteuid()):
        raise PermissionError(f"control socket directory {directory} belongs to uid {info.st_uid}, "
                              "not to the gate's user or root")
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise PermissionError(f"control socket directory {directory} is writable by group or others "
                              f"(mode {stat.S_IMODE(info.st_mode):04o}): use a directory only the gate's "
                              "user can write, e.g. /run/passgate")


@dataclass(frozen=True, slots=True)
class Peer:
    pid: int
    uid: int
    gid: int

    def __str__(self) -> str:
        try:
            name = pwd.getpwuid(self.uid).pw_name
        except KeyError:
            name = "?"
        return f"uid {self.uid} ({name}), pid {self.pid}"


def _peer(connection: socket.socket) -> Peer:
    pid, uid, gid = struct.unpack("3i", connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                              struct.calcsize("3i")))
    return Peer(pid, uid, gid)


class ControlServer:
    """The gate's end of the control socket: binds at construction (a bad path fails the start),
    serves on a daemon thread after ``start()``, removes the socket on ``close()``.

    ``handler`` runs each valid request on the server's thread and returns the answer's fields;
    it raises ``ControlRefused`` or ``ValueError`` (answered with the reason) when the command did
    not take. Commands are few and short, so connections are served one at a time.

        with ControlServer(Path("/run/passgate/control.sock"), gate.run_command) as server:
            ...
    """

    def __init__(self, path: Path, handler: Callable[[ControlRequest], dict[str, Any]]) -> None:
        self.path = path
        self.handler = handler
        self.failures = 0  # connections that failed unexpectedly (each logged)
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None
        self._sock = self._bind(path)
        self._inode = path.stat().st_ino  # close() removes this socket, never a successor's

    @staticmethod
    def _bind(path: Path) -> socket.socket:
        """Bind under a temporary name, set the mode, then rename into place: the socket is never
        reachable with a wider mode, and a stale socket from a crash is replaced."""
        where = f"control socket {path}"
        try:
            path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
            _check_directory(path.parent)
            if path.is_symlink() or (path.exists() and not stat.S_ISSOCK(path.lstat().st_mode)):
                raise FileExistsError(f"{path} exists and is not a socket")
            if path.exists() and _listening(path):
                raise FileExistsError(f"another gate is listening on {path}")
            temporary = path.with_name(f".{path.name}.{os.getpid()}")
            with contextlib.suppress(FileNotFoundError):
                temporary.unlink()
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                with _reachable(temporary) as address:
                    sock.bind(address)
                os.chmod(temporary, SOCKET_MODE)
                sock.listen(8)
                os.replace(temporary, path)
            except BaseException:
                sock.close()
                with contextlib.suppress(FileNotFoundError):
                    temporary.unlink()
                raise
        except OSError as exc:  # say which socket: "permission denied" alone helps nobody
            raise OSError(exc.errno, f"{where}: {exc.strerror or exc}") from None
        return sock

    def start(self) -> None:
        if self._thread is not None or self._closed.is_set():
            raise RuntimeError("ControlServer.start() called twice or after close()")
        self._sock.settimeout(0.05)  # close() waits for the accept loop to notice: keep it short
        self._thread = threading.Thread(target=self._serve, name="control-socket", daemon=True)
        self._thread.start()

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _serve(self) -> None:
        while not self._closed.is_set():
            try:
                connection, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._closed.is_set():
                    return
                self.failures += 1
                log.exception("control socket: accept failed")
                self._closed.wait(0.5)
                continue
            with connection:
                try:
                    self._serve_one(connection)
                except (ConnectionError, TimeoutError):
                    pass  # the client went away or stalled; it got no answer
                except Exception:
                    self.failures += 1
                    log.exception("control socket: error while serving a client")

    def _serve_one(self, connection: socket.socket) -> None:
        connection.settimeout(TIMEOUT_S)
        peer = _peer(connection)
        try:
            line = _read_line(connection)  # first, so a refused peer still reads its answer
            self._allow(peer)
            request = parse_request(_decode(line))
            log.warning("control: %s by %s", json.dumps(request.to_json()), peer)
            try:
                answer: dict[str, Any] = {"ok": True, **self.handler(request)}
            except TimeoutError as exc:
                raise ControlRefused(str(exc)) from None
        except (ControlError, ControlRefused, ValueError) as refused:
            answer = {"ok": False, "error": str(refused)}
        except (ConnectionError, TimeoutError):
            raise  # the client went away or stalled: nobody to answer
        except Exception:
            log.exception("control: the command failed")
            answer = {"ok": False, "error": "control failed; see the gate's log"}
        connection.sendall(_line(answer))
        _drain(connection)

    def _allow(self, peer: Peer) -> None:
        """The peer check behind the file mode: root, the daemon's user, or the socket's group."""
        if peer.uid in (0, os.geteuid()):
            return
        group = self._sock_gid()
        if peer.gid == group:
            return
        try:
            group_entry = grp.getgrgid(group)
            name = pwd.getpwuid(peer.uid).pw_name
        except KeyError:
            pass
        else:
            if name in group_entry.gr_mem:
                return
        log.warning("control: refused %s (not root, the gate's user or in the socket's group)", peer)
        raise ControlRefused(f"uid {peer.uid} may not control this gate: run as root or the gate's "
                             "user, or join the control socket's group")

    def _sock_gid(self) -> int:
        try:
            return self.path.stat().st_gid
        except OSError:
            return os.getegid()

    def close(self) -> None:
        """Stop serving and remove the socket (idempotent)."""
        if self._closed.is_set():
            return
        self._closed.set()
        if self._thread is not None:
            self._thread.join(timeout=TIMEOUT_S)
        self._sock.close()
        with contextlib.suppress(OSError):
            if self.path.lstat().st_ino == self._inode:
                self.path.unlink()

    def __enter__(self) -> ControlServer:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def _listening(path: Path) -> bool:
    """Whether a process accepts connections on the socket at ``path`` (a stale one refuses)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            with _reachable(path) as address:
                probe.connect(address)
        except OSError:
            return False
        return True


def _drain(connection: socket.socket) -> None:
    """Read what the client still sends (a message cut off as too long) until it closes: a socket
    closed with unread data resets the connection, and the client would lose its answer."""
    connection.shutdown(socket.SHUT_WR)
    left = 16 * MAX_MESSAGE
    with contextlib.suppress(OSError):
        while left > 0 and (chunk := connection.recv(MAX_MESSAGE)):
            left -= len(chunk)
