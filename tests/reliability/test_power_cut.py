"""Issue 7.3: SIGKILL the real gate at random moments under traffic; nothing acknowledged is lost,
no single-use pass admits twice, no redemption disappears."""

from pathlib import Path

import pytest

from .powercut import run_power_cuts


def test_twenty_power_cuts(tmp_path: Path) -> None:
    report = run_power_cuts(tmp_path, cuts=20)
    print(f"\npower cuts: {report.summary()}")
    assert report.cuts == 20
    admits = [d for d in report.acknowledged if d["decision"] == "admit"]
    refusals = {d["reason"] for d in report.acknowledged}
    assert len(admits) >= 20 and "used_up" in refusals  # the traffic really exercised both


@pytest.mark.soak
def test_two_hundred_power_cuts(tmp_path: Path) -> None:
    report = run_power_cuts(tmp_path, cuts=200, seed=11)
    print(f"\npower cuts: {report.summary()}")
    assert report.cuts == 200
