"""A real ``passgate-hub serve`` for a benchmark: on a free loopback port, waited for, stopped at
the end (the scripts put the project's root on ``sys.path`` before importing this)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

from tests.hub.pgcluster import free_port


@contextmanager
def served_hub(url: str, workers: int) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """(base URL, the serve process) of a hub on the database ``url`` with ``workers`` workers."""
    base = f"http://127.0.0.1:{free_port()}"
    hub = Path(sys.executable).with_name("passgate-hub")
    proc = subprocess.Popen([str(hub), "--database", url, "serve", "--port", base.rsplit(":", 1)[1],
                             "--workers", str(workers), "--log-level", "warning"])
    try:
        wait_up(f"{base}/openapi.json", proc, "passgate-hub serve")
        yield base, proc
    finally:
        proc.terminate()
        proc.wait(30)


def wait_up(url: str, proc: subprocess.Popen[bytes], what: str) -> None:
    """Until ``url`` answers (a busy machine may take seconds over a server's first answer)."""
    for _ in range(300):
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited")
        try:
            requests.get(url, timeout=10)
            return
        except requests.RequestException:
            time.sleep(0.2)
    raise RuntimeError(f"{what} did not start")
