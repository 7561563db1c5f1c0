"""Small helpers shared by the tests: waiting on a condition, a pty standing in for a scanner,
property tests' example counts, a gate whose scanner is a test's own source."""

from __future__ import annotations

import os
import time
import tty
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from passgated.denylists import DenyLists
from passgated.layout import ListsLayout

if TYPE_CHECKING:
    from passgate.scanners import ScannerSource
    from passgated.gate import Gate

# The journal's write bound for tests whose subject is not that bound: the suite must pass while other
# processes load both cores, where an fsync can take longer than the product's 300 ms. The fault tests
# set the product's bound themselves.
LOADED_WRITE_TIMEOUT_S = 10.0


THOROUGH = os.environ.get("HYPOTHESIS_PROFILE") == "thorough"  # the longer search (tests/conftest.py)


def examples(default: int, thorough: int) -> int:
    """A property test's example count: ``default`` in the default run, which has to stay within its
    time limit, ``thorough`` under ``HYPOTHESIS_PROFILE=thorough``."""
    return thorough if THOROUGH else default


def wait_for(condition: Callable[[], object], timeout: float = 5.0, poll: float = 0.002) -> bool:
    """Poll ``condition`` until it is true or ``timeout`` seconds pass (tests wait on what they
    expect instead of sleeping a fixed time); returns its last value as a bool."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(poll)
    return bool(condition())


class Pty:
    """A pty pair standing in for a USB-CDC scanner; ``link`` is a stable symlink to it (like
    /dev/serial/by-id), so unplug/replug can swap the pty behind the same path."""

    def __init__(self, link: Path) -> None:
        self.link = link
        self.plug()

    def plug(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        tmp = self.link.with_suffix(".new")
        tmp.symlink_to(os.ttyname(self.slave))
        tmp.replace(self.link)

    def unplug(self) -> None:
        os.close(self.master)
        os.close(self.slave)

    def write(self, data: bytes) -> None:
        os.write(self.master, data)


def gate_lists(root: Path, scope: str = "arena") -> DenyLists:
    """Both deny lists of a gate in ``root/lists``, as the gate holds them with a hub."""
    from passgate import TrustStore

    return DenyLists(ListsLayout(root / "lists"), ("revoked", "blocked"), scope=scope, trust=TrustStore,
                     max_age_s=86400)


def gate_with_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str, source: type[ScannerSource],
                     options: str = "") -> Gate:
    """A gate on mock pins (fire loop closed, not started) whose one scanner is ``source``, registered
    as ``kind:`` for the test only and built from gate.toml as a real source is (``options``: more
    lines of its [[scanner]] table). The journal is ``tmp_path/journal.db``, the gate id ``gate-1``."""
    from gpiozero.pins.mock import MockFactory

    from passgate import generate_private_key
    from passgate import scanners as scanner_registry
    from passgate.keys import public_pem
    from passgated.config import load_config
    from passgated.gate import Gate

    monkeypatch.setitem(scanner_registry._SOURCES, kind, source)
    trust = tmp_path / "trust"
    trust.mkdir()
    (trust / "issuer.pub.pem").write_bytes(public_pem(generate_private_key()))
    path = tmp_path / "gate.toml"
    path.write_text(f'[trust]\ndir = "{trust}"\n[journal]\npath = "{tmp_path / "journal.db"}"\n'
                    f'[display]\nlisten = ""\n[[scanner]]\nsource = "{kind}:x"\n{options}')
    config = load_config(path, journal_write_timeout_s=LOADED_WRITE_TIMEOUT_S, pin_factory="mock")
    gate = Gate(config, pin_factory=MockFactory())
    gate.io.fire_loop.pin.drive_low()
    return gate
