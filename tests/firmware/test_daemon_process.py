"""``passgated run`` as systemd runs it: a real child process, a real notify socket, SIGTERM."""

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from passgate import generate_private_key
from passgate.keys import write_keypair


def write_config(tmp_path: Path) -> Path:
    write_keypair(generate_private_key(), tmp_path / "trust", "issuer")
    config = tmp_path / "gate.toml"
    config.write_text(
        '[gate]\nid = "t1"\n[trust]\ndir = "trust"\n[journal]\npath = "journal.db"\n'
        '[display]\nlisten = false\n[[scanner]]\nsource = "stdin:"\n'
    )
    return config


def test_ready_watchdog_and_clean_sigterm(tmp_path: Path) -> None:
    notify = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(notify))
    sock.settimeout(20)
    env = {**os.environ, "NOTIFY_SOCKET": str(notify), "WATCHDOG_USEC": "400000"}
    env.pop("WATCHDOG_PID", None)
    child = subprocess.Popen(
        [sys.executable, "-m", "passgated.cli", "run", "--config", str(write_config(tmp_path))],
        env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        messages = [sock.recv(256).decode()]
        assert messages[0] == "READY=1"
        deadline = time.monotonic() + 10
        while messages.count("WATCHDOG=1") < 3 and time.monotonic() < deadline:
            messages.append(sock.recv(256).decode())
        assert messages.count("WATCHDOG=1") >= 3  # pinged from the control loop, every ~0.2 s
        child.send_signal(signal.SIGTERM)
        output, _ = child.communicate(timeout=20)
        assert child.returncode == 0
        while "STOPPING=1" not in messages:
            messages.append(sock.recv(256).decode())
        assert "outputs safe" in output and "Traceback" not in output
        # Logs go to stdout for journald; a mock fire loop is not wired, so the gate booted in
        # EMERGENCY, which is what real hardware with an open loop must do too.
        assert "ready: state EMERGENCY" in output
    finally:
        if child.poll() is None:
            child.kill()
        sock.close()


def test_sigterm_while_boot_waits_for_a_scanner_is_a_clean_stop(tmp_path: Path) -> None:
    """A scanner that never comes holds READY back (up to 5 s); SIGTERM meanwhile still stops the
    gate cleanly (outputs safe, exit 0), as it does once the gate runs."""
    config = write_config(tmp_path)
    config.write_text(config.read_text().replace('"stdin:"', '"serial:/dev/ttyUSB-passgate-none"'))
    child = subprocess.Popen(
        [sys.executable, "-m", "passgated.cli", "run", "--config", str(config)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    deadline = threading.Timer(60, child.kill)  # bounds the read below if its line never came
    deadline.start()
    try:
        assert child.stdout is not None
        lines = []
        for line in child.stdout:  # the control socket is the last thing boot starts before the wait
            lines.append(line)
            if "control socket" in line:
                break
        child.send_signal(signal.SIGTERM)
        output, _ = child.communicate(timeout=30)
        output = "".join(lines) + output
        assert child.returncode == 0, output
        assert "scanners not ready after 5 s: serial:/dev/ttyUSB-passgate-none" in output
        assert "outputs safe" in output and "Traceback" not in output
    finally:
        deadline.cancel()
        if child.poll() is None:
            child.kill()
