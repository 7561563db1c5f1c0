"""Issue 7.7: schemathesis against the hub's own OpenAPI schema finds no 5xx, with an admin key
(on a real venue) and with a gate's token (on its own gate id, so the gate routes' logic is
reached rather than the 403 in front of it)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from .server import HubServer
from .test_api import setup_venue

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")


def run_schemathesis(tmp_path: Path, examples: int) -> None:
    hub = HubServer(f"sqlite:///{tmp_path / 'hub.db'}").start()
    try:
        admin = hub.admin()
        tokens = setup_venue(hub, admin)
        # each credential on the routes it opens: a gate's token on the admin routes (or an admin
        # key on a gate's) only meets the 401/403 in front of them, at the cost of a whole run
        runs = {
            "admin": (admin.headers["Authorization"], '"path.venue" = "arena"', "--exclude-path-regex"),
            "gate": (f"Bearer {tokens['g1']}", '"path.gate_id" = "arena-g1"', "--include-path-regex"),
        }
        for name, (auth, parameter, gate_paths) in runs.items():
            config = tmp_path / f"schemathesis-{name}.toml"
            config.write_text(f"[parameters]\n{parameter}\n")
            result = subprocess.run(
                [str(SCHEMATHESIS), "--config-file", str(config), "run", f"{hub.url}/openapi.json",
                 "--checks", "not_a_server_error", "-H", f"Authorization: {auth}",
                 "-n", str(examples), "--generation-deterministic", gate_paths, "^/v1/gates/"],
                capture_output=True, text=True, timeout=1200,
            )
            assert result.returncode == 0, f"{name}: {result.stdout[-4000:]}"
            generated = re.findall(r"(\d+) generated", result.stdout)
            assert generated and int(generated[-1]) > 0, f"{name}: no test case ran"
            print(f"\nschemathesis ({name}): {generated[-1]} requests, no 5xx")
    finally:
        hub.close()


def test_no_server_errors(tmp_path: Path) -> None:
    run_schemathesis(tmp_path, examples=10)


@pytest.mark.soak
def test_no_server_errors_long(tmp_path: Path) -> None:
    run_schemathesis(tmp_path, examples=300)
