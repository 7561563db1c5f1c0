"""Gate and hub as one system, through real processes: ``passgate-hub serve`` and the hub CLI on a
real database, and ``passgated simulate`` (the real daemon on gpiozero's MockFactory pins, passage
feedback played back) fed by two real ptys, one for the entry reader and one for the exit reader.

Every wait is bounded; every process is stopped by ``close()``.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import requests

from tests.helpers import Pty
from tests.hub.pgcluster import free_port

WAIT_S = 30.0
BIN = Path(sys.executable).parent


def run_hub_cli(database: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """``passgate-hub --database DB ARGS`` as an operator types it."""
    done = subprocess.run([str(BIN / "passgate-hub"), "--database", database, *args], capture_output=True,
                          text=True, timeout=120)
    if check:
        assert done.returncode == 0, f"passgate-hub {' '.join(args)}: {done.stderr}"
    return done


def hub_json(database: str, *args: str) -> Any:
    return json.loads(run_hub_cli(database, *args).stdout)


def stop(child: subprocess.Popen[str] | None) -> None:
    """SIGTERM, as systemd stops a service; SIGKILL only if it does not end in time."""
    if child is not None and child.poll() is None:
        child.terminate()
        try:
            child.wait(timeout=WAIT_S)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(timeout=WAIT_S)


class HubProcess:
    """``passgate-hub serve`` on a free loopback port; ``stop()`` / ``start()`` any number of times."""

    def __init__(self, database: str, *, workers: int = 1) -> None:
        self.database, self.workers = database, workers
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.child: subprocess.Popen[str] | None = None

    def start(self) -> HubProcess:
        self.child = subprocess.Popen(
            [str(BIN / "passgate-hub"), "--database", self.database, "serve", "--port", str(self.port),
             "--workers", str(self.workers), "--log-level", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        end = time.monotonic() + WAIT_S
        while time.monotonic() < end:
            if self.child.poll() is not None:
                raise RuntimeError(f"the hub exited: {self.child.stderr.read() if self.child.stderr else ''}")
            try:  # (the first /openapi.json builds the schema: seconds on a loaded machine)
                if requests.get(f"{self.url}/openapi.json", timeout=5).status_code == 200:
                    return self
            except (requests.ConnectionError, requests.Timeout):
                time.sleep(0.05)
        self.stop()  # not left serving (and holding its database) after the test gave up on it
        raise RuntimeError(f"the hub did not start within {WAIT_S:g} s")

    def stop(self) -> None:
        stop(self.child)
        self.child = None


class GateProcess:
    """One gate: ``passgated simulate --config gate.toml`` with an entry and an exit reader on ptys,
    configured only with its ``[hub]`` (no keys, no zones: the hub supplies both)."""

    def __init__(self, root: Path, gate_id: str, hub_url: str, token: str) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.readers = {"entry": Pty(root / "entry-reader"), "exit": Pty(root / "exit-reader")}
        (root / "gate.toml").write_text(
            f'[gate]\nid = "{gate_id}"\nvenue = "arena"\ndirections = "both"\nexit_mode = "scanned"\n'
            f'[hub]\nurl = "{hub_url}"\ntoken = "{token}"\ninterval_seconds = 1\n'
            '[journal]\npath = "journal.db"\nwrite_timeout_ms = 5000\n'
            '[display]\nlisten = "127.0.0.1:0"\n'
            '[timing]\nrelay_pulse_ms = 30\nrefusal_display_ms = 30\n'
            + "".join(f'[[scanner]]\nsource = "serial:{pty.link}"\ndirection = "{direction}"\ndedupe = 0\n'
                      for direction, pty in self.readers.items()))
        self.lines: list[dict[str, Any]] = []
        self.stderr: list[str] = []
        self.url: str | None = None
        self._changed = threading.Condition()
        self.child: subprocess.Popen[str] | None = None

    def start(self) -> GateProcess:
        self.lines.clear()
        self.url = None
        self.child = subprocess.Popen(
            [str(BIN / "passgated"), "simulate", "--config", str(self.root / "gate.toml"), "--walk-ms", "5"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
        for read in (self._read_out, self._read_err):
            threading.Thread(target=read, args=(self.child,), daemon=True).start()
        if not self._wait(lambda: self.url is not None or (self.child and self.child.poll() is not None)):
            raise RuntimeError("the gate did not start")
        if self.url is None:
            raise RuntimeError(f"the gate exited: {''.join(self.stderr)[-2000:]}")
        return self

    def _read_out(self, child: subprocess.Popen[str]) -> None:
        assert child.stdout is not None
        for line in child.stdout:
            with self._changed:
                self.lines.append(json.loads(line))
                self._changed.notify_all()

    def _read_err(self, child: subprocess.Popen[str]) -> None:
        assert child.stderr is not None
        for line in child.stderr:
            with self._changed:
                self.stderr.append(line)
                found = re.search(r"guard page: (http://\S+)", line)
                if found:
                    self.url = found.group(1)
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def _wait(self, condition: Any, timeout: float = WAIT_S) -> bool:
        with self._changed:
            return self._changed.wait_for(condition, timeout)

    def scan(self, text: str, direction: str = "entry") -> dict[str, Any]:
        """Show a pass to a reader; the gate's answer (after the simulated walk-through)."""
        passed = sum(self.status()["passages_today"].values())
        start = len(self.lines)
        self.readers[direction].write(text.encode() + b"\r")
        assert self._wait(lambda: len(self.lines) > start), \
            f"no answer within {WAIT_S} s: {''.join(self.stderr)[-2000:]}"
        answer = self.lines[start]
        walked = passed + (answer["decision"] == "admit")  # the simulated person walks through
        self.wait_status(lambda s: sum(s["passages_today"].values()) == walked and s["state"] == "IDLE")
        return answer

    def status(self) -> dict[str, Any]:
        assert self.url is not None
        with urllib.request.urlopen(f"{self.url}/status", timeout=5) as response:
            return dict(json.load(response))

    def wait_status(self, condition: Any, timeout: float = WAIT_S) -> dict[str, Any]:
        """Poll /status until ``condition(status)``; returns that status (asserts it came)."""
        end = time.monotonic() + timeout
        while True:
            status = self.status()
            if condition(status):
                return status
            assert time.monotonic() < end, f"condition not met within {timeout} s: {status}"
            time.sleep(0.05)

    def synced(self) -> dict[str, Any]:
        """Wait until the gate has sent everything and finished a round after that."""
        first = self.wait_status(lambda s: s["sync"]["backlog"] == 0)
        since = first["sync"]["last_success"] or 0.0
        return self.wait_status(lambda s: (s["sync"]["last_success"] or 0.0) > since)

    def stop(self) -> None:
        stop(self.child)
        self.child = None

    def close(self) -> None:
        self.stop()
        for pty in self.readers.values():
            pty.unplug()
