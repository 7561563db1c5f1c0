"""README stays true: CI runs its test command verbatim, and its examples run."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]
README = (ROOT / "README.md").read_text()


def fenced_blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def test_ci_runs_readmes_test_command() -> None:
    (test_command,) = [b.strip() for b in fenced_blocks("sh") if "pytest" in b]
    ci_lines = [line.strip() for line in (ROOT / ".ci/run").read_text().splitlines()]
    assert test_command in ci_lines


def run_example(name: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the shell block marked ``<!-- example:NAME -->`` in README, with the venv on PATH."""
    block = README.split(f"<!-- example:{name} -->", 1)[1].split("<!-- /example -->", 1)[0]
    script = block.split("```sh\n", 1)[1].rsplit("```", 1)[0]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result


def test_cli_examples_run(tmp_path: Path) -> None:
    result = run_example("sdk", tmp_path)
    assert result.stdout.count('"valid": true') == 21
    assert (tmp_path / "pass.png").exists()


def test_python_example_runs(capsys) -> None:
    (example,) = [b for b in fenced_blocks("python") if "issue_pass" in b and "holder" not in b]
    exec(compile(example, "README.md", "exec"), {})
    out = capsys.readouterr().out.split()
    assert len(out[0]) == 32 and out[1] == "('A',)"


def test_holder_example_runs(capsys) -> None:
    (example,) = [b for b in fenced_blocks("python") if "passgate.holder" in b]
    exec(compile(example, "README.md", "exec"), {})
    verified, step, now_step = capsys.readouterr().out.split()
    assert verified == "True" and int(now_step) - int(step) in (0, 1)  # 1: a step ended in between


def test_hub_examples_run(tmp_path: Path) -> None:
    result = run_example("hub", tmp_path)
    assert '"token": "pgg_' in result.stdout and '"kind": "revoked"' in result.stdout
    assert len(list((tmp_path / "passes").glob("*.png"))) == 5


def test_hub_and_gate_operator_flow_runs_verbatim(tmp_path: Path) -> None:
    """README's operator flow: a hub, a gate set up with only its [hub], the hub's zone enforced."""
    result = run_example("hub-gate", tmp_path)
    decisions = [json.loads(line) for line in result.stdout.splitlines() if line.startswith('{"t"')]
    assert [(d["decision"], d["reason"]) for d in decisions] == [("admit", "admit"), ("refuse", "wrong_zone")]
    assert "OK — gate north-1 at arena" in result.stdout and "no keys yet" in result.stdout
    counts = json.loads(result.stdout[result.stdout.rindex("["):])
    assert {c["zone"]: (c["entries"], c["exits"], c["inside"]) for c in counts} == {
        "balcony": (0, 0, 0), "floor": (1, 0, 1)}


def test_readme_lists_every_reason_code() -> None:
    from passgate import Reason

    for reason in Reason:
        assert f"| `{reason.value}` | {reason.text} |" in README
