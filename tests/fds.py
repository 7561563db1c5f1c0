"""What this process holds open, for tests that a function leaves no file behind.

Only files under a test's own directory are counted: other threads of the test process (a hub
server, a browser) open and close files of their own at any moment.
"""

from __future__ import annotations

import os
from pathlib import Path


def open_files(under: Path) -> list[str]:
    """The paths of this process's open file descriptors that lie under ``under``, sorted."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # closed since the listing (the listing's own descriptor among them)
            continue
        if target.startswith(f"{under}{os.sep}") or target == str(under):
            found.append(target)
    return sorted(found)
