"""The ``passgate`` CLI, run as a real process where exit codes and stderr matter."""

import csv
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from passgate.cli import main


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "passgate", *args],
        input=stdin, capture_output=True, text=True, timeout=60,
    )


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    out = tmp_path / "keys"
    assert main(["keygen", "--out", str(out)]) == 0
    return out


def test_keygen_writes_protected_key_and_refuses_overwrite(keys: Path) -> None:
    assert stat.S_IMODE((keys / "issuer.key.pem").stat().st_mode) == 0o600
    result = run("keygen", "--out", str(keys))
    assert result.returncode == 2
    assert "refusing to overwrite" in result.stderr and "Traceback" not in result.stderr


def test_issue_then_verify(keys: Path, capsys) -> None:
    assert main(["issue", "--key", str(keys / "issuer.key.pem"), "--valid-until", "+2h",
                 "--zones", "A,B", "--entries", "2", "--product", "DAY"]) == 0
    text = capsys.readouterr().out.strip()
    assert text.startswith("PG1:")
    assert main(["verify", "--trust", str(keys), text]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["valid"] and result["zones"] == ["A", "B"] and result["entries"] == 2
    assert len(result["pass_id"]) == 32
    assert main(["verify", "--trust", str(keys), text, "--now", "+3h"]) == 1
    assert json.loads(capsys.readouterr().out)["reason"] == "expired"


def test_verify_stdin_one_line_per_pass(keys: Path, capsys) -> None:
    main(["issue", "--key", str(keys / "issuer.key.pem"), "--valid-until", "+1h", "--count", "3"])
    texts = [line for line in capsys.readouterr().out.splitlines() if line.startswith("PG1:")]
    assert len(set(texts)) == 3
    result = run("verify", "--trust", str(keys), "-", stdin="\n".join([*texts, "PG1:NOPE", ""]))
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["valid"] for line in lines] == [True, True, True, False]
    assert lines[3]["reason"] == "unreadable"
    assert result.returncode == 1


def test_issue_many_into_a_directory(keys: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "batch"
    assert main(["issue", "--key", str(keys / "issuer.key.pem"), "--valid-until", "+1h",
                 "--count", "4", "--out", str(out), "--format", "svg"]) == 0
    rows = list(csv.DictReader((out / "passes.csv").open()))
    assert len(rows) == 4
    for row in rows:
        assert (out / row["qr_file"]).read_text().startswith("<?xml")
        assert row["qr_file"] == f"{row['pass_id']}.svg"


def test_qr_png(keys: Path, tmp_path: Path, capsys) -> None:
    main(["issue", "--key", str(keys / "issuer.key.pem"), "--valid-until", "+1h"])
    text = capsys.readouterr().out.strip()
    assert main(["qr", text, "--out", str(tmp_path / "p.png")]) == 0
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    "args",
    [
        ["issue", "--key", "/nonexistent.pem", "--valid-until", "+1h"],
        ["issue", "--key", "{keys}/issuer.pub.pem", "--valid-until", "+1h"],
        ["issue", "--key", "{keys}/issuer.key.pem", "--valid-until", "someday"],
        ["issue", "--key", "{keys}/issuer.key.pem", "--valid-until", "+1h", "--valid-from", "+2h"],
        ["issue", "--key", "{keys}/issuer.key.pem", "--valid-until", "+1h", "--entries", "0"],
        ["issue", "--key", "{keys}/issuer.key.pem", "--valid-until", "+1h", "--count", "0"],
        ["verify", "--trust", "/nonexistent", "PG1:"],
        ["qr", "PG1:X", "--out", "{keys}/p.gif"],
        ["keygen", "--alg", "rsa", "--out", "{keys}"],
        ["issue"],
    ],
)
def test_bad_arguments_give_one_line_and_exit_2(keys: Path, args: list[str]) -> None:
    result = run(*[a.replace("{keys}", str(keys)) for a in args])
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(("passgate", "usage"))


def test_private_key_is_not_world_readable_even_with_lax_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        assert main(["keygen", "--out", str(tmp_path / "k"), "--alg", "es256"]) == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "k" / "issuer.key.pem").stat().st_mode) == 0o600


def test_verify_reports_dates_beyond_datetimes_range(keys: Path, capsys) -> None:
    """An issuer writing milliseconds signs dates past year 9999: reported, never a traceback."""
    from passgate import issue_pass
    from passgate.keys import load_private_key

    text = issue_pass(load_private_key(keys / "issuer.key.pem"), valid_from=0, valid_until=10**15)
    assert main(["verify", "--trust", str(keys), text]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["valid_until"] == "epoch 1000000000000000"
