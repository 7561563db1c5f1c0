"""Fuzz the gate's config loader: any file gives a ``GateConfig`` or a ``ConfigError``.

The input is written to an in-memory file and read by ``load_config`` exactly as the daemon reads
``gate.toml``, so TOML syntax errors, bad encodings and every validation rule are all in reach.
An accepted config must also be usable: every duration and tolerance a finite number, because a
NaN skew or timeout silently disables the comparison it takes part in.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from fuzz.common import main
from passgated.config import ConfigError, GateConfig, load_config

EXAMPLE = Path(__file__).resolve().parent.parent / "packaging" / "gate.toml"
_FD = os.memfd_create("passgate-fuzz-config")
_PATH = Path(f"/proc/self/fd/{_FD}")


def seeds() -> dict[str, bytes]:
    """Seed inputs: the documented example of every key, a minimal file, a few refusals."""
    return {
        "example": EXAMPLE.read_bytes(),
        "empty": b"",
        "minimal": b'[gate]\nid = "g"\n[[scanner]]\nsource = "stdin:"\n',
        "hub": b'[hub]\nurl = "https://hub/"\ntoken = "t"\ninterval_seconds = 2.5\n',
        "pins": b"[pins]\nfire_loop = { pin = 4, pull_up = false }\nreset = false\nred = 4\n",
        "numbers": b"[timing]\nrelay_pulse_ms = 1e3\n[policy]\nskew_seconds = -0.0\n",
        "nested": b"[gate]\nzones = [[\"A\"], {x = 1}]\ndirections = \"both\"\n",
    }


def _durations(config: GateConfig) -> list[float]:
    timing, policy = config.timing, config.policy
    numbers = [timing.relay_pulse_s, timing.passage_timeout_s, timing.refusal_display_s,
               config.glitch_filter_s, config.max_list_age_s, config.retention_days,
               policy.anti_passback_timeout_s, policy.skew_s]
    return numbers + ([config.hub.interval_s] if config.hub else [])


def test_one_input(data: bytes) -> None:
    """One config file: ``ConfigError`` or a config whose numbers are all finite."""
    os.ftruncate(_FD, 0)
    os.pwrite(_FD, data, 0)
    try:
        config = load_config(_PATH)
    except ConfigError:
        return
    assert all(math.isfinite(n) for n in _durations(config)), f"non-finite setting in {data[:200]!r}"


if __name__ == "__main__":
    main(test_one_input)
