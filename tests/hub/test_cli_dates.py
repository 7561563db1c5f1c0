"""The CLI prints moments as dates a person reads, in the venue's time zone (ISO 8601 with its
offset, which scripts still parse); ``--epoch`` gives the API's seconds."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from passgate_hub import cli, dates


def test_moments_follow_the_venue_named_in_each_record() -> None:
    zones = {"arena": "Europe/Berlin", "dome": "America/New_York"}
    answer = [{"venue": "arena", "last_seen": 1796277600.0, "clock_skew_s": 1796277600.0,
               "lists": {"revoked": {"age_s": 12.5, "version": 3}}},
              {"venue": "dome", "last_seen": 1796277600, "disabled_at": None, "has_token": True},
              {"venue": "gone", "created_at": 0.0, "redemptions": [{"t": 1796277600.5}]}]
    assert dates.readable(answer, zones, ZoneInfo("Asia/Tokyo")) == [
        {"venue": "arena", "last_seen": "2026-12-03T07:00:00+01:00", "clock_skew_s": 1796277600.0,
         "lists": {"revoked": {"age_s": 12.5, "version": 3}}},
        {"venue": "dome", "last_seen": "2026-12-03T01:00:00-05:00", "disabled_at": None, "has_token": True},
        # a venue the zones do not know: the command's zone, for it and the records inside it
        {"venue": "gone", "created_at": "1970-01-01T09:00:00+09:00",
         "redemptions": [{"t": "2026-12-03T15:00:00+09:00"}]}]
    berlin = dates.iso(1796277600.0, ZoneInfo("Europe/Berlin"))
    assert datetime.fromisoformat(berlin).timestamp() == 1796277600.0


def test_the_cli_prints_dates_in_the_venues_zone_and_seconds_on_request(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    database = f"sqlite:///{tmp_path / 'hub.db'}"

    def run(*argv: str) -> object:
        assert cli.main(["--database", database, *argv]) == 0, capsys.readouterr().err
        return json.loads(capsys.readouterr().out)

    run("venue", "create", "arena")
    run("venue", "set", "arena", "--timezone", "Asia/Kolkata")
    run("gate", "create", "arena", "north-1")
    code = run("gate", "enroll-code", "arena", "north-1")
    assert isinstance(code, dict) and code["expires_at"].endswith("+05:30")
    run("gate", "disable", "arena", "north-1")
    [listed] = run("gate", "list")  # type: ignore[misc]
    assert listed["disabled_at"].endswith("+05:30")
    [seconds] = run("--epoch", "gate", "list")  # type: ignore[misc]
    assert datetime.fromisoformat(listed["disabled_at"]).timestamp() == int(seconds["disabled_at"])
