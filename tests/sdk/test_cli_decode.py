"""``passgate decode`` as a real process: JSON lines, exit codes, --verify."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from passgate import generate_private_key, issue_pass
from passgate.cli import main
from passgate.keys import load_private_key
from passgate.qr import save_qr


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "passgate", "decode", *args],
        capture_output=True, text=True, timeout=60,
    )


def test_decode_prints_one_json_line_per_image(tmp_path: Path) -> None:
    save_qr("PG1:HELLO", tmp_path / "a.png")
    Image.fromarray(np.full((100, 100), 200, np.uint8)).save(tmp_path / "blank.png")
    result = run(str(tmp_path / "a.png"), str(tmp_path / "blank.png"))
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert lines[0]["path"] == str(tmp_path / "a.png")
    assert lines[0]["codes"] == [
        {"text": "PG1:HELLO", "bytes": b"PG1:HELLO".hex(), "format": "qr"}
    ]
    assert lines[0]["ms"] >= 0
    assert lines[1]["codes"] == []
    assert result.returncode == 1  # an image without a code
    assert result.stderr == ""


def test_decode_verify_checks_the_passes_found(tmp_path: Path) -> None:
    assert main(["keygen", "--out", str(tmp_path / "keys")]) == 0
    key_file = tmp_path / "keys" / "issuer.key.pem"
    good = issue_pass(load_private_key(key_file), valid_from=0, valid_until=2**31)
    forged = issue_pass(generate_private_key(), valid_from=0, valid_until=2**31)
    save_qr(good, tmp_path / "good.png")
    save_qr(forged, tmp_path / "forged.png")
    trust = str(tmp_path / "keys")
    ok = run("--verify", "--trust", trust, str(tmp_path / "good.png"))
    assert ok.returncode == 0
    assert json.loads(ok.stdout)["codes"][0]["pass"]["valid"] is True
    bad = run("--verify", "--trust", trust, str(tmp_path / "good.png"), str(tmp_path / "forged.png"))
    verdicts = [json.loads(line)["codes"][0]["pass"] for line in bad.stdout.splitlines()]
    assert [v["valid"] for v in verdicts] == [True, False]
    assert verdicts[1]["reason"] == "unknown_key"
    assert bad.returncode == 1


def test_decode_errors(tmp_path: Path) -> None:
    (tmp_path / "junk.png").write_bytes(b"not an image")
    result = run(str(tmp_path / "junk.png"))
    assert result.returncode == 1
    assert "error" in json.loads(result.stdout)
    usage = run("--verify", str(tmp_path / "junk.png"))
    assert usage.returncode == 2
    assert "--verify needs --trust" in usage.stderr and "Traceback" not in usage.stderr
