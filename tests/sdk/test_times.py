"""The time forms every passgate command line takes (``passgate.times.parse_time``)."""

from __future__ import annotations

import pytest

from passgate.cli import main
from passgate.times import parse_time

NOW = 1_782_928_800.0  # 2026-07-01T18:00:00Z


@pytest.mark.parametrize(("text", "expected"), [
    ("now", NOW), ("+0h", NOW), ("+4h", NOW + 4 * 3600), ("-30m", NOW - 1800), ("+2d", NOW + 2 * 86400),
    ("+1w", NOW + 7 * 86400), ("+90s", NOW + 90), (" +4h ", NOW + 4 * 3600),
    ("1782928800", NOW), ("1782928800.5", NOW + 0.5),
    ("2026-07-01T18:00:00Z", NOW), ("2026-07-01T18:00Z", NOW), ("2026-07-01T20:00:00+02:00", NOW),
])
def test_forms(text: str, expected: float) -> None:
    assert parse_time(text, now=NOW) == expected


@pytest.mark.parametrize(("text", "message"), [
    ("tomorrow", "--at: 'tomorrow' is not a time (give epoch seconds, ISO 8601 with a zone, now, or +4h)"),
    ("4h", "--at: '4h' is not a time"), ("+4x", "--at: '+4x' is not a time"),
    ("nan", "--at: 'nan' is not a time"), ("", "--at: '' is not a time"),
    ("2026-07-01T18:00", "--at: '2026-07-01T18:00' has no time zone (add Z or an offset such as +02:00)"),
    ("2026-07-01", "--at: '2026-07-01' has no time zone"),
    ("-1", "--at: '-1' is out of range (1970 to 9999)"), ("1e300", "--at: '1e300' is out of range"),
    ("+999999999w", "--at: '+999999999w' is out of range"),
])
def test_errors_are_one_line_naming_the_flag(text: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_time(text, name="--at", now=NOW)
    assert str(caught.value).startswith(message)


def test_the_sdk_cli_takes_the_same_forms(tmp_path, capsys) -> None:
    assert main(["keygen", "--out", str(tmp_path)]) == 0
    key = str(tmp_path / "issuer.key.pem")
    assert main(["issue", "--key", key, "--valid-from", "now", "--valid-until", "2099-01-01T00:00Z"]) == 0
    assert main(["issue", "--key", key, "--valid-from=-30m", "--valid-until", "+4h"]) == 0
    capsys.readouterr()
    assert main(["issue", "--key", key, "--valid-until", "tomorrow"]) == 2
    assert capsys.readouterr().err == ("passgate issue: error: --valid-until: 'tomorrow' is not a time "
                                       "(give epoch seconds, ISO 8601 with a zone, now, or +4h)\n")
