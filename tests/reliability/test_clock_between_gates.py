"""Issue 12: a gate whose clock is 2 h fast cannot reopen anti-passback. Two gates (the real daemon
on simulated pins, clocks injected) sync with a real hub over loopback HTTP; the hub puts each
gate's events on its own clock (measured at each heartbeat) and each gate turns the shared
redemptions back into its own clock, so entries and exits keep their real order everywhere."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from passgated.journal import Journal
from passgated.loop import Clock
from passgated.policy import Direction
from passgated.simulate import feed
from tests.helpers import wait_for

from .hubgates import issue, start_gate, start_hub

HUB_WAIT_S = 20.0
TWO_HOURS = 7200.0


def answer(decisions: list[dict[str, Any]]) -> tuple[str, str]:
    return decisions[-1]["decision"], decisions[-1]["reason"]


def test_a_fast_gate_cannot_let_a_reentry_pass_in_again(tmp_path: Path) -> None:
    hub, admin, tokens = start_hub(tmp_path)
    fast_clock = Clock(wall=lambda: time.time() + TWO_HOURS)
    d_fast: list[dict[str, Any]] = []
    d_true: list[dict[str, Any]] = []
    fast = start_gate(tmp_path, "g1", hub, tokens["g1"], d_fast, clock=fast_clock)
    true = start_gate(tmp_path, "g2", hub, tokens["g2"], d_true)
    try:
        assert wait_for(lambda: len(fast.trust) == 1 and len(true.trust) == 1, timeout=HUB_WAIT_S)
        assert wait_for(lambda: fast.sync.clock_offset_s is not None, timeout=HUB_WAIT_S)
        assert abs(fast.sync.clock_offset_s + TWO_HOURS) < 60  # measured: the hub is 2 h behind it
        [season] = issue(hub, admin, valid_until=time.time() + 6 * 3600, entries=None, reentry=True)
        pass_id = bytes.fromhex(season["pass_id"])
        readers = {name: Journal(tmp_path / name / "journal.db", f"arena-{name}", recover=False)
                   for name in ("g1", "g2")}

        def seen(name: str, redemptions: int) -> bool:
            rows = readers[name].db.execute("SELECT count(*) FROM redemptions WHERE pass_id = ? AND "
                                            "state IN ('committed', 'assumed', 'remote')",
                                            (pass_id.hex(),)).fetchone()
            return bool(rows[0] >= redemptions)

        feed(true, [season["text"]])  # in at the true gate
        assert answer(d_true) == ("admit", "admit")
        assert wait_for(lambda: seen("g1", 1), timeout=HUB_WAIT_S)
        feed(fast, [season["text"]])
        assert answer(d_fast) == ("refuse", "already_inside")
        feed(fast, [season["text"]], Direction.EXIT)  # out at the fast gate, at its time (+2 h)
        assert answer(d_fast) == ("admit", "admit")
        assert wait_for(lambda: seen("g2", 2), timeout=HUB_WAIT_S)
        feed(true, [season["text"]])  # back in at the true gate: the exit came before, as it did
        assert answer(d_true) == ("admit", "admit")
        for _ in range(4):  # and no more: inside is inside, whichever clock is asked
            feed(true, [season["text"]])
            assert answer(d_true) == ("refuse", "already_inside")
        assert wait_for(lambda: seen("g1", 3), timeout=HUB_WAIT_S)
        feed(fast, [season["text"]])
        assert answer(d_fast) == ("refuse", "already_inside")
        usage = readers["g2"].usage(pass_id)
        assert usage.inside and usage.entries_used == 2
        for reader in readers.values():
            reader.close()
    finally:
        fast.stop()
        true.stop()
        hub.close()
