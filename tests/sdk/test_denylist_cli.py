"""``passgate denylist build|delta|inspect`` end to end, in process."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from passgate.cli import main
from passgate.denylist import DenyList, LiveDenyList, read_signed
from passgate.keys import TrustStore

IDS = [bytes([i]) * 16 for i in range(40)]


@pytest.fixture()
def work(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    assert main(["keygen", "--out", str(tmp_path / "keys")]) == 0
    assert main(["keygen", "--out", str(tmp_path / "keys"), "--name", "lists", "--purpose", "denylist",
                 "--scope", "acme"]) == 0
    (tmp_path / "ids.txt").write_text("# revoked today\n" + "\n".join(i.hex() for i in IDS[:20]))
    capsys.readouterr()
    return tmp_path


def run(*argv: str | Path) -> int:
    return main([str(a) for a in argv])


def test_build_delta_inspect_round_trip(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key, trust = work / "keys/lists.key.pem", work / "keys"
    assert run("denylist", "build", "--key", key, "--kind", "blocked", "--scope", "acme",
               work / "ids.txt", "--out", work / "v1.pgdl") == 0
    (work / "add.csv").write_text("pass_id,text\n" + "".join(f"{i.hex()},PG1:x\n" for i in IDS[20:25]))
    (work / "rm.txt").write_text("\n".join(i.hex() for i in IDS[:3]) + "\n")
    assert run("denylist", "delta", "--key", key, "--base", work / "v1.pgdl", "--add",
               work / "add.csv", "--remove", work / "rm.txt", "--out", work / "d12.pgdl",
               "--snapshot-out", work / "v2.pgdl") == 0
    capsys.readouterr()
    assert run("denylist", "inspect", work / "d12.pgdl", "--trust", trust) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["type"] == "delta" and (summary["base"], summary["version"]) == (1, 2)
    assert (summary["adds"], summary["removes"], summary["ok"]) == (5, 3, True)

    store = TrustStore.load(trust)
    live = LiveDenyList(work / "gate.pgdl", kind="blocked", scope="acme")
    live.apply_signed(work / "v1.pgdl", store)
    live.apply_signed((work / "d12.pgdl").read_bytes(), store)
    assert {i for i in IDS if i in live} == set(IDS[3:25])
    v2 = read_signed(work / "v2.pgdl", store)
    assert isinstance(v2, DenyList) and v2.same_entries(live.current) and v2.version == 2


def test_delta_from_a_complete_id_file(work: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = work / "keys/lists.key.pem"
    assert run("denylist", "build", "--key", key, "--kind", "blocked", "--scope", "acme", "--version", "4",
               work / "ids.txt", "--out", work / "v4.pgdl") == 0
    monkeypatch.setattr("sys.stdin", io.StringIO("\n".join(i.hex() for i in IDS[10:30])))
    assert run("denylist", "delta", "--key", key, "--base", work / "v4.pgdl", "--ids", "-",
               "--out", work / "d45.pgdl") == 0
    delta = read_signed(work / "d45.pgdl", TrustStore.load(work / "keys"))
    assert (len(delta.adds), len(delta.removes), delta.version) == (10, 10, 5)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("00ff\n", "entry 1: not a 16-byte hex pass id"),
        ("name,other\nx,y\n", "no pass_id column"),
    ],
)
def test_bad_id_files_are_one_line_errors(
    work: Path, capsys: pytest.CaptureFixture[str], content: str, message: str
) -> None:
    (work / "bad.txt").write_text(content)
    assert run("denylist", "build", "--key", work / "keys/issuer.key.pem", "--kind", "revoked",
               work / "bad.txt", "--out", work / "x.pgdl") == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (work / "x.pgdl").exists()


def test_refusals_exit_2_or_1(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = work / "keys/lists.key.pem"
    assert run("denylist", "build", "--key", key, "--kind", "revoked", work / "ids.txt",
               "--out", work / "r1.pgdl") == 0
    assert run("denylist", "delta", "--key", key, "--base", work / "r1.pgdl", "--remove",
               work / "ids.txt", "--out", work / "x.pgdl") == 2
    assert "permanent" in capsys.readouterr().err
    assert run("denylist", "inspect", work / "ids.txt") == 2
    assert "bad magic" in capsys.readouterr().err
    assert run("keygen", "--out", work / "other") == 0
    capsys.readouterr()
    assert run("denylist", "inspect", work / "r1.pgdl", "--trust", work / "other") == 1
    assert json.loads(capsys.readouterr().out)["status"].startswith("INVALID")
